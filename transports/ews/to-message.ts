import type { FetchOptions } from '../contracts';
import type { IncomingAttachment, IncomingMessage } from '../../model/incoming-message';
import type { MailAddress } from '../../model/outgoing-message';

/**
 * Reading parsed EWS responses (fast-xml-parser objects, namespace prefixes removed) and turning
 * a GetItem Message into the shared model.
 *
 * The parser gives one child as an object and several as an array, attributes as '@_Name' and
 * the text of an element that also has attributes as '#text'; numbers and booleans may already
 * be converted. These accessors take all of those shapes, so no caller depends on them.
 */
export type XmlNode = Record<string, unknown>;

/** The children of one name as a list, whether the parser gave none, one or several. */
export function listOf(value: unknown): XmlNode[] {
	if (value === undefined || value === null || value === '') return [];
	const list = Array.isArray(value) ? value : [value];
	return list.map((entry) => (typeof entry === 'object' && entry !== null ? (entry as XmlNode) : { '#text': entry }));
}

export function childOf(node: unknown, name: string): XmlNode | undefined {
	if (typeof node !== 'object' || node === null) return undefined;
	return listOf((node as XmlNode)[name])[0];
}

/** An element's text ('' for an empty element, undefined when absent). */
export function textOf(value: unknown): string | undefined {
	if (value === undefined || value === null) return undefined;
	if (Array.isArray(value)) return textOf(value[0]);
	if (typeof value === 'object') {
		const text = (value as XmlNode)['#text'];
		return text === undefined || text === null ? '' : String(text);
	}
	return String(value);
}

export function attrOf(node: unknown, name: string): string | undefined {
	if (typeof node !== 'object' || node === null) return undefined;
	const record = node as XmlNode;
	const value = record[`@_${name}`] ?? record[`@${name}`];
	return value === undefined || value === null ? undefined : String(value);
}

export function boolOf(value: unknown): boolean {
	return textOf(value)?.trim().toLowerCase() === 'true';
}

/** The Id attribute of an ItemId / FolderId / AttachmentId child. */
export function idOf(node: unknown, element = 'ItemId'): string | undefined {
	return attrOf(childOf(node, element), 'Id');
}

/** Item elements a message folder can hold; other items (calendar, contacts) come as their own names. */
export const MESSAGE_ELEMENTS = ['Message', 'MeetingRequest', 'MeetingResponse', 'MeetingCancellation', 'Item', 'PostItem'] as const;

/** Every item of an `Items` container, whatever its element name, in document order per name. */
export function itemsOf(items: unknown): XmlNode[] {
	if (typeof items !== 'object' || items === null) return [];
	return Object.entries(items as XmlNode)
		.filter(([name]) => !name.startsWith('@_') && name !== '#text')
		.flatMap(([, value]) => listOf(value));
}

/** What is read besides the Message element itself. */
export interface MessageParts {
	text?: string;
	html?: string;
	headers?: Record<string, string>;
	attachments: IncomingAttachment[];
	raw?: Buffer;
}

/**
 * A GetItem Message in the shape the IMAP and Graph readers give for the same mail: flags from
 * IsRead and Flag/FlagStatus, date = DateTimeSent (the Date header), addresses without a display
 * name where Exchange repeats the address as the name.
 */
export function toIncomingMessage(message: XmlNode, folder: string, parts: MessageParts, options: FetchOptions = {}): IncomingMessage {
	const seen = boolOf(message.IsRead);
	const flagged = flaggedOf(message);
	const flags = [...(seen ? ['\\Seen'] : []), ...(flagged ? ['\\Flagged'] : [])];
	const from = mailboxesOf(message.From)[0];
	const messageId = textOf(message.InternetMessageId);
	const conversationId = attrOf(childOf(message, 'ConversationId'), 'Id');
	return {
		id: idOf(message) ?? '',
		...(messageId ? { messageId } : {}),
		...(conversationId ? { conversationId } : {}),
		folder,
		...(from ? { from } : {}),
		to: mailboxesOf(message.ToRecipients),
		cc: mailboxesOf(message.CcRecipients),
		replyTo: mailboxesOf(message.ReplyTo),
		subject: textOf(message.Subject) ?? '',
		...optionalDate('date', textOf(message.DateTimeSent)),
		...optionalDate('receivedDate', textOf(message.DateTimeReceived)),
		flags,
		seen,
		flagged,
		size: sizeOf(message),
		...(parts.text !== undefined ? { text: parts.text } : {}),
		...(options.includeHtml && parts.html ? { html: parts.html } : {}),
		...(options.includeHeaders ? { headers: parts.headers ?? {} } : {}),
		attachments: parts.attachments,
		...(parts.raw ? { raw: parts.raw } : {}),
	};
}

export function flaggedOf(message: XmlNode): boolean {
	return textOf(childOf(message, 'Flag')?.FlagStatus)?.trim() === 'Flagged';
}

/** item:Size: the store's size of the message (close to, not the same as, IMAP's RFC822.SIZE). */
export function sizeOf(message: XmlNode): number {
	const size = Number(textOf(message.Size));
	return Number.isSafeInteger(size) && size >= 0 ? size : 0;
}

/** The Body or TextBody text, line ends as mailparser gives them for IMAP. */
export function bodyText(body: unknown): string | undefined {
	const text = textOf(body);
	return text === undefined ? undefined : text.replace(/\r\n/g, '\n');
}

/** The Mailbox elements of a recipient list (or of From / Sender, which hold one). */
export function mailboxesOf(container: unknown): MailAddress[] {
	return listOf(typeof container === 'object' && container !== null && !Array.isArray(container) ? (container as XmlNode).Mailbox : undefined)
		.map(addressOf)
		.filter((a): a is MailAddress => a !== undefined);
}

function addressOf(mailbox: XmlNode): MailAddress | undefined {
	const value = textOf(mailbox.EmailAddress)?.trim();
	if (!value) return undefined;
	const name = textOf(mailbox.Name)?.trim();
	return name && name.toLowerCase() !== value.toLowerCase() ? { name, address: value } : { address: value };
}

function optionalDate<K extends string>(key: K, value: string | undefined): Partial<Record<K, string>> {
	const time = value ? Date.parse(value) : NaN;
	return Number.isNaN(time) ? {} : ({ [key]: new Date(time).toISOString() } as Record<K, string>);
}
