import { redactError } from '../../model/redact';
import type { TlsTrust } from '../tls-options';
import { EwsError, ewsNetworkError, oneLine } from './errors';
import { EwsHttp, TransportFailure } from './http';
import { EWS_CODES, type EwsAuth } from './types';
import { asArray, buildXml, parseXml, textOf } from './xml';

const REQUEST_SCHEMA = 'http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006';
const RESPONSE_SCHEMA = 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a';
/** Redirects followed at most (HTTP, redirectUrl and redirectAddr together), as Outlook does. */
const MAX_HOPS = 10;

export interface AutodiscoverOptions {
	email: string;
	auth: EwsAuth;
	trust: TlsTrust;
	/** Tried alone when set; else https://<domain>/... then https://autodiscover.<domain>/... */
	autodiscoverUrl?: string;
	timeoutMs?: number;
}

/**
 * The EWS URL of a mailbox through POX Autodiscover (on-premises Exchange): POST the outlook
 * request schema to each candidate URL, signed in like EWS, following redirectAddr / redirectUrl
 * and HTTP redirects (https only, at most 10 hops); the answer's EXCH (else EXPR) EwsUrl.
 */
export async function discoverEwsUrl(options: AutodiscoverOptions): Promise<string> {
	const secrets: string[] = [];
	const tried: string[] = [];
	let email = options.email.trim();
	let hops = 0;
	try {
		if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) {
			throw new EwsError(`"${email}" is not an email address to look up with Autodiscover`, EWS_CODES.AUTODISCOVER_FAILED, 'Enter the mailbox address (user@domain), or the EWS URL directly');
		}
		restart: for (;;) {
			const candidates = options.autodiscoverUrl ? [options.autodiscoverUrl.trim()] : defaultUrls(email);
			for (let url of candidates) {
				for (;;) {
					const outcome = await ask(url, email, options, secrets);
					if (outcome.kind === 'failed') {
						tried.push(`${url} (${outcome.reason})`);
						break;
					}
					if (outcome.kind === 'found') return outcome.ewsUrl;
					if (++hops > MAX_HOPS) {
						tried.push(`${url} (redirect number ${hops})`);
						throw failed(email, tried, `more than ${MAX_HOPS} redirects`);
					}
					if (outcome.kind === 'redirectUrl') {
						tried.push(`${url} (redirected to ${outcome.url})`);
						url = outcome.url;
						continue;
					}
					tried.push(`${url} (redirected to address ${outcome.email})`);
					email = outcome.email;
					continue restart;
				}
			}
			throw failed(email, tried);
		}
	} catch (error) {
		throw redactError(error, secrets);
	}
}

function defaultUrls(email: string): string[] {
	const domain = email.slice(email.lastIndexOf('@') + 1).toLowerCase();
	return [`https://${domain}/autodiscover/autodiscover.xml`, `https://autodiscover.${domain}/autodiscover/autodiscover.xml`];
}

type Outcome =
	| { kind: 'found'; ewsUrl: string }
	| { kind: 'redirectUrl'; url: string }
	| { kind: 'redirectAddr'; email: string }
	| { kind: 'failed'; reason: string };

async function ask(url: string, email: string, options: AutodiscoverOptions, secrets: string[]): Promise<Outcome> {
	let http: EwsHttp;
	try {
		http = new EwsHttp({ url, auth: options.auth, trust: options.trust, timeoutMs: options.timeoutMs ?? 20_000, maxConnections: 1, secrets });
	} catch (error) {
		return { kind: 'failed', reason: error instanceof Error ? 'not https' : 'invalid URL' };
	}
	const request =
		'<?xml version="1.0" encoding="utf-8"?>' +
		buildXml({ Autodiscover: { '@_xmlns': REQUEST_SCHEMA, Request: { EMailAddress: email, AcceptableResponseSchema: RESPONSE_SCHEMA } } }, 'Autodiscover');
	try {
		const answer = await http.post('Autodiscover', { head: request });
		const location = answer.headers.location;
		if ([301, 302, 303, 307, 308].includes(answer.status) && location) {
			const next = new URL(location, url).toString();
			if (!next.startsWith('https://')) return { kind: 'failed', reason: `HTTP ${answer.status} to a non-https URL` };
			return { kind: 'redirectUrl', url: next };
		}
		if (answer.status !== 200) return { kind: 'failed', reason: answer.status === 401 ? 'HTTP 401: the sign-in was refused' : `HTTP ${answer.status}` };
		return readAnswer(answer.body);
	} catch (error) {
		if (error instanceof TransportFailure) return { kind: 'failed', reason: oneLine(ewsNetworkError(error.cause ?? error, { operation: 'Autodiscover', url, timeoutMs: options.timeoutMs ?? 20_000 }).message) };
		if (error instanceof EwsError) return { kind: 'failed', reason: oneLine(error.message) };
		throw error;
	} finally {
		http.close();
	}
}

function readAnswer(xml: string): Outcome {
	let document: Record<string, unknown>;
	try {
		document = parseXml(xml);
	} catch {
		return { kind: 'failed', reason: 'the answer is not XML' };
	}
	const response = (document.Autodiscover as Record<string, unknown> | undefined)?.Response as Record<string, unknown> | undefined;
	if (!response) return { kind: 'failed', reason: 'not an Autodiscover answer' };
	const error = response.Error as Record<string, unknown> | undefined;
	if (error) return { kind: 'failed', reason: `Autodiscover error ${textOf(error.ErrorCode) ?? ''}: ${oneLine(textOf(error.Message) ?? '')}`.trim() };
	const account = response.Account as Record<string, unknown> | undefined;
	if (!account) return { kind: 'failed', reason: 'the answer has no Account' };
	const action = (textOf(account.Action) ?? '').trim();
	if (action === 'redirectUrl') {
		const next = (textOf(account.RedirectUrl) ?? '').trim();
		if (!next.startsWith('https://')) return { kind: 'failed', reason: 'redirectUrl to a non-https URL' };
		return { kind: 'redirectUrl', url: next };
	}
	if (action === 'redirectAddr') {
		const next = (textOf(account.RedirectAddr) ?? '').trim();
		if (!next.includes('@')) return { kind: 'failed', reason: 'redirectAddr without an address' };
		return { kind: 'redirectAddr', email: next };
	}
	const protocols = asArray(account.Protocol as Record<string, unknown> | Array<Record<string, unknown>>);
	for (const type of ['EXCH', 'EXPR']) {
		const protocol = protocols.find((entry) => (textOf(entry.Type) ?? '').trim() === type);
		const ewsUrl = (textOf(protocol?.EwsUrl) ?? '').trim();
		if (ewsUrl) return { kind: 'found', ewsUrl };
	}
	return { kind: 'failed', reason: 'the answer names no EWS URL (no EXCH or EXPR EwsUrl)' };
}

function failed(email: string, tried: string[], why?: string): EwsError {
	const refused = tried.some((entry) => entry.includes('HTTP 401'));
	return new EwsError(
		`Autodiscover found no EWS URL for ${email}${why ? ` (${why})` : ''}; tried: ${tried.join('; ') || 'nothing'}`,
		EWS_CODES.AUTODISCOVER_FAILED,
		refused
			? 'Autodiscover refused the sign-in: check user name, domain and password; or enter the EWS URL directly (https://<server>/EWS/Exchange.asmx)'
			: 'Enter the EWS URL directly (https://<server>/EWS/Exchange.asmx) or the Autodiscover URL, or check the autodiscover DNS record of the domain',
	);
}
