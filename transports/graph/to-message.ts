import type { Message, Recipient } from '@microsoft/microsoft-graph-types';

import type { FetchOptions } from '../contracts';
import type { IncomingAttachment, IncomingMessage } from '../../model/incoming-message';
import type { MailAddress } from '../../model/outgoing-message';

/** Exchange's PidTagMessageSize (bytes), the one size Graph has for a message, as an extended property. */
export const MESSAGE_SIZE_PROPERTY = 'Integer 0x0E08';
/** `$expand` that brings only that property along with the message. */
export const MESSAGE_SIZE_EXPAND = `singleValueExtendedProperties($filter=id eq '${MESSAGE_SIZE_PROPERTY}')`;

/** The message fields toIncomingMessage reads: `$select` asks for these and nothing else. */
export function messageSelect(options: Pick<FetchOptions, 'includeHeaders'>): string[] {
	return [
		'id',
		'internetMessageId',
		'conversationId',
		'from',
		'toRecipients',
		'ccRecipients',
		'replyTo',
		'subject',
		'sentDateTime',
		'receivedDateTime',
		'isRead',
		'flag',
		'body',
		...(options.includeHeaders ? ['internetMessageHeaders'] : []),
	];
}

/** What is read besides the message resource itself. */
export interface MessageParts {
	text?: string;
	html?: string;
	attachments: IncomingAttachment[];
	raw?: Buffer;
}

/**
 * A Graph message in the shape the IMAP reader gives for the same mail: flags from isRead and
 * flag.flagStatus, date = sentDateTime (the Date header), addresses without a display name
 * where the header had none (Exchange repeats the address as the name then), header names in
 * lower case with the last occurrence winning, as mailparser keys them.
 */
export function toIncomingMessage(message: Message, folder: string, parts: MessageParts, options: FetchOptions = {}): IncomingMessage {
	const seen = message.isRead === true;
	const flagged = message.flag?.flagStatus === 'flagged';
	const flags = [...(seen ? ['\\Seen'] : []), ...(flagged ? ['\\Flagged'] : [])];
	const from = message.from ? address(message.from) : undefined;
	return {
		id: String(message.id),
		...(message.internetMessageId ? { messageId: message.internetMessageId } : {}),
		...(message.conversationId ? { conversationId: message.conversationId } : {}),
		folder,
		...(from ? { from } : {}),
		to: addresses(message.toRecipients),
		cc: addresses(message.ccRecipients),
		replyTo: addresses(message.replyTo),
		subject: message.subject ?? '',
		...optionalDate('date', message.sentDateTime),
		...optionalDate('receivedDate', message.receivedDateTime),
		flags,
		seen,
		flagged,
		size: sizeOf(message),
		...(parts.text !== undefined ? { text: parts.text } : {}),
		...(options.includeHtml && parts.html ? { html: parts.html } : {}),
		...(options.includeHeaders ? { headers: headersOf(message) } : {}),
		attachments: parts.attachments,
		...(parts.raw ? { raw: parts.raw } : {}),
	};
}

/**
 * PidTagMessageSize when the message carries it, else 0. It is the store's size of the message,
 * close to but not the same number as IMAP's RFC822.SIZE.
 */
export function sizeOf(message: Message): number {
	const property = message.singleValueExtendedProperties?.find((p) => p.id?.toLowerCase() === MESSAGE_SIZE_PROPERTY.toLowerCase());
	const size = Number(property?.value);
	return Number.isSafeInteger(size) && size >= 0 ? size : 0;
}

export function address(recipient: Recipient): MailAddress | undefined {
	const mail = recipient.emailAddress;
	const value = mail?.address?.trim();
	if (!value) return undefined;
	const name = mail?.name?.trim();
	return name && name.toLowerCase() !== value.toLowerCase() ? { name, address: value } : { address: value };
}

function addresses(recipients: Recipient[] | null | undefined): MailAddress[] {
	return (recipients ?? []).map(address).filter((a): a is MailAddress => a !== undefined);
}

function headersOf(message: Message): Record<string, string> {
	const headers: Record<string, string> = {};
	for (const header of message.internetMessageHeaders ?? []) {
		if (header.name) headers[header.name.toLowerCase()] = header.value ?? '';
	}
	return headers;
}

function optionalDate<K extends string>(key: K, value: string | null | undefined): Partial<Record<K, string>> {
	const time = value ? Date.parse(value) : NaN;
	return Number.isNaN(time) ? {} : ({ [key]: new Date(time).toISOString() } as Record<K, string>);
}
