import type { FetchOptions } from '../contracts';
import type { EwsClient, EwsResponseMessage } from './types';
import { EWS_CODES } from './types';
import { itemsOf, childOf, type XmlNode } from './to-message';

export const DEFAULT_FETCH_BATCH = 50;

/** What GetItem said about one id. */
export type ItemResult =
	| { kind: 'item'; message: XmlNode }
	/** ErrorItemNotFound: deleted or moved since the search. */
	| { kind: 'gone' }
	| { kind: 'refused'; response: EwsResponseMessage }
	/** The whole request failed for a reason of its content (the answer could not be read): this id alone. */
	| { kind: 'failed'; error: Error };

/**
 * Errors of a GetItem request that say nothing about the connection, only that this answer could
 * not be made or read (a message Exchange cannot convert, an answer too large or malformed). A
 * batch failing so is asked again one id at a time, so one such message spoils only itself.
 */
export const CONTENT_FAILURES = new Set<string>([EWS_CODES.RESPONSE_INVALID, EWS_CODES.SOAP_FAULT, EWS_CODES.REQUEST_FAILED, EWS_CODES.MESSAGE_TOO_LARGE, EWS_CODES.INVALID_XML_CHARACTER]);

/** Whether the server can give the properties Exchange 2013 added (item:TextBody, item:Flag). */
export function hasModernProperties(client: EwsClient): boolean {
	return client.version !== 'Exchange2010_SP2';
}

/** Whether the MIME is asked for with the properties (headers, raw; the text of an HTML read on Exchange 2010). */
export function needsMime(client: EwsClient, options: FetchOptions): boolean {
	return options.includeRaw === true || options.includeHeaders === true || (!hasModernProperties(client) && options.includeHtml === true);
}

/** The ItemShape of a fetch: the properties toIncomingMessage reads and nothing else. */
export function itemShape(client: EwsClient, options: FetchOptions): Record<string, unknown> {
	const modern = hasModernProperties(client);
	const html = options.includeHtml === true;
	const fields = [
		'item:Subject',
		'message:From',
		'message:ToRecipients',
		'message:CcRecipients',
		'message:ReplyTo',
		'item:DateTimeSent',
		'item:DateTimeReceived',
		'message:IsRead',
		'item:Size',
		'message:InternetMessageId',
		'item:ConversationId',
		'item:HasAttachments',
		'item:Attachments',
		// Exchange 2010 has no TextBody: there the body is asked for as text, or (HTML read) taken from the MIME.
		...(modern ? ['item:Flag', 'item:TextBody'] : []),
		...(html || !modern ? ['item:Body'] : []),
	];
	return {
		't:BaseShape': 'IdOnly',
		...(needsMime(client, options) ? { 't:IncludeMimeContent': true } : {}),
		...(html || !modern ? { 't:BodyType': html ? 'HTML' : 'Text' } : {}),
		't:AdditionalProperties': { 't:FieldURI': fields.map((uri) => ({ '@_FieldURI': uri })) },
	};
}

/**
 * GetItem for a batch of ids, one result per id in order. A request failing for a reason of its
 * content is repeated one id at a time; any other failure (connection, sign-in, throttling after
 * the client's retries) is thrown: it would fail the next request too.
 */
export async function getItems(client: EwsClient, ids: string[], options: FetchOptions): Promise<ItemResult[]> {
	const shape = itemShape(client, options);
	let responses: EwsResponseMessage[];
	try {
		responses = await client.call('GetItem', {
			'm:ItemShape': shape,
			'm:ItemIds': { 't:ItemId': ids.map((id) => ({ '@_Id': id })) },
		});
	} catch (error) {
		if (!CONTENT_FAILURES.has(String((error as { code?: unknown }).code))) throw error;
		if (ids.length === 1) return [{ kind: 'failed', error: error as Error }];
		const results: ItemResult[] = [];
		for (const id of ids) results.push(...(await getItems(client, [id], options)));
		return results;
	}
	return ids.map((_id, index) => resultOf(responses[index]));
}

function resultOf(response: EwsResponseMessage | undefined): ItemResult {
	if (!response) return { kind: 'failed', error: new Error('EWS answered GetItem without a response for this message') };
	if (response.responseClass === 'Error') return response.code === 'ErrorItemNotFound' ? { kind: 'gone' } : { kind: 'refused', response };
	const message = itemsOf(childOf(response.element, 'Items'))[0];
	return message ? { kind: 'item', message } : { kind: 'gone' };
}
