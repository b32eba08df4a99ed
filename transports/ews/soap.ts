import { EwsError } from './errors';
import { EWS_CODES, type EwsResponseMessage, type EwsServerVersion, type XmlObject } from './types';
import { asArray, assertXmlSafe, buildXml, MESSAGES_NS, parseXml, SOAP_NS, textOf, TYPES_NS } from './xml';

export interface EnvelopeOptions {
	version: EwsServerVersion;
	/** Sent as ExchangeImpersonation / ConnectingSID / PrimarySmtpAddress (app-only). */
	impersonate?: string;
}

function envelopeObject(operation: string, body: XmlObject, options: EnvelopeOptions): XmlObject {
	const header: XmlObject = { 't:RequestServerVersion': { '@_Version': options.version } };
	if (options.impersonate) {
		header['t:ExchangeImpersonation'] = { 't:ConnectingSID': { 't:PrimarySmtpAddress': options.impersonate } };
	}
	return {
		'soap:Envelope': {
			'@_xmlns:soap': SOAP_NS,
			'@_xmlns:t': TYPES_NS,
			'@_xmlns:m': MESSAGES_NS,
			'soap:Header': header,
			'soap:Body': { [`m:${operation}`]: body },
		},
	};
}

const DECLARATION = '<?xml version="1.0" encoding="utf-8"?>';

/** The whole SOAP request for `operation`; values checked and escaped by the builder. */
export function buildEnvelope(operation: string, body: XmlObject, options: EnvelopeOptions): string {
	// Checked here first so an error names the field from the operation on (CreateItem.Items.Message.Subject).
	assertXmlSafe(body, operation);
	return DECLARATION + buildXml(envelopeObject(operation, body, options));
}

/**
 * The request split around `placeholder` (a text node of `body`, present exactly once), so a
 * large value can be streamed between the two halves.
 */
export function buildSplitEnvelope(operation: string, body: XmlObject, placeholder: string, options: EnvelopeOptions): { head: string; tail: string } {
	if (!/^[A-Za-z0-9_-]+$/.test(placeholder)) throw new Error('the placeholder must be plain letters and digits, so the builder leaves it as is');
	const xml = buildEnvelope(operation, body, options);
	const at = xml.indexOf(placeholder);
	if (at < 0 || xml.indexOf(placeholder, at + placeholder.length) >= 0) throw new Error('the placeholder must occur exactly once in the request body');
	return { head: xml.slice(0, at), tail: xml.slice(at + placeholder.length) };
}

/** What a SOAP fault said (detail's ResponseCode and MessageXml values when present). */
export interface SoapFault {
	faultcode?: string;
	faultstring?: string;
	responseCode?: string;
	details: Record<string, string>;
}

export type SoapResponse = { fault: SoapFault; messages?: undefined; serverVersion?: undefined } | { fault?: undefined; messages: EwsResponseMessage[]; serverVersion?: Record<string, string> };

/** Parses an EWS response into its response messages (request order) or its SOAP fault. */
export function parseSoapResponse(xml: string, operation: string): SoapResponse {
	const document = parseXml(xml);
	const envelope = document.Envelope as Record<string, unknown> | undefined;
	const body = envelope?.Body as Record<string, unknown> | undefined;
	if (!envelope || !body || typeof body !== 'object') {
		throw new EwsError(
			`The answer to ${operation} is not a SOAP envelope`,
			EWS_CODES.RESPONSE_INVALID,
			'Check that the URL is the EWS endpoint (https://<server>/EWS/Exchange.asmx) and not a proxy or login page',
		);
	}
	const fault = body.Fault as Record<string, unknown> | undefined;
	if (fault) return { fault: parseFault(fault) };
	const response = body[`${operation}Response`] as Record<string, unknown> | undefined;
	const container = response?.ResponseMessages as Record<string, unknown> | undefined;
	if (!response || !container || typeof container !== 'object') {
		throw new EwsError(
			`The answer to ${operation} has no ResponseMessages`,
			EWS_CODES.RESPONSE_INVALID,
			'The server did not answer like Exchange; check the EWS URL and the Server Version of the credential',
		);
	}
	const messages: EwsResponseMessage[] = [];
	for (const [name, value] of Object.entries(container)) {
		if (name.startsWith('@_') || name === '#text') continue;
		for (const element of asArray(value as Record<string, unknown> | Array<Record<string, unknown>>)) messages.push(responseMessage(element));
	}
	const versionInfo = (envelope.Header as Record<string, unknown> | undefined)?.ServerVersionInfo as Record<string, unknown> | undefined;
	return { messages, serverVersion: versionInfo ? attributesOf(versionInfo) : undefined };
}

function responseMessage(raw: Record<string, unknown>): EwsResponseMessage {
	const element = raw && typeof raw === 'object' ? raw : {};
	const responseClass = String(element['@_ResponseClass'] ?? 'Error');
	const code = textOf(element.ResponseCode) ?? (responseClass === 'Success' ? 'NoError' : '');
	const text = textOf(element.MessageText);
	const details = messageXmlValues(element.MessageXml);
	return {
		responseClass: responseClass === 'Success' || responseClass === 'Warning' ? responseClass : 'Error',
		code,
		...(text ? { text } : {}),
		...(Object.keys(details).length ? { details } : {}),
		element,
	};
}

/** MessageXml flattened: `<t:Value Name="BackOffMilliseconds">299</t:Value>` -> { BackOffMilliseconds: '299' }. */
function messageXmlValues(messageXml: unknown): Record<string, string> {
	const values: Record<string, string> = {};
	if (!messageXml || typeof messageXml !== 'object') return values;
	for (const [name, entries] of Object.entries(messageXml as Record<string, unknown>)) {
		if (name.startsWith('@_') || name === '#text') continue;
		for (const entry of asArray(entries)) {
			if (name === 'Value' && entry && typeof entry === 'object') {
				const key = String((entry as Record<string, unknown>)['@_Name'] ?? 'Value');
				values[key] = textOf(entry) ?? '';
			} else if (entry && typeof entry === 'object') {
				const attributes = attributesOf(entry as Record<string, unknown>);
				values[name] = textOf(entry) || Object.values(attributes)[0] || '';
			} else {
				values[name] = textOf(entry) ?? '';
			}
		}
	}
	return values;
}

function parseFault(fault: Record<string, unknown>): SoapFault {
	const detail = fault.detail as Record<string, unknown> | undefined;
	return {
		faultcode: textOf(fault.faultcode),
		faultstring: textOf(fault.faultstring),
		responseCode: detail ? textOf(detail.ResponseCode) : undefined,
		details: detail ? messageXmlValues(detail.MessageXml) : {},
	};
}

function attributesOf(element: Record<string, unknown>): Record<string, string> {
	const attributes: Record<string, string> = {};
	for (const [name, value] of Object.entries(element)) if (name.startsWith('@_')) attributes[name.slice(2)] = String(value);
	return attributes;
}

/** BackOffMilliseconds of a whole-request ErrorServerBusy (a fault or every message busy), else undefined. */
export function serverBusyBackOff(response: SoapResponse): number | undefined {
	if (response.fault) {
		if (response.fault.responseCode !== 'ErrorServerBusy') return undefined;
		return Number(response.fault.details.BackOffMilliseconds) || 0;
	}
	const busy = response.messages.find((message) => message.code === 'ErrorServerBusy');
	if (!busy) return undefined;
	return Number(busy.details?.BackOffMilliseconds) || 0;
}
