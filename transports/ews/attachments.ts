import { Readable } from 'node:stream';

import type { AttachmentInfo, MessageSink } from '../contracts';
import type { IncomingAttachment } from '../../model/incoming-message';
import type { EwsClient } from './types';
import { attrOf, boolOf, childOf, listOf, textOf, type XmlNode } from './to-message';

/** An attachment as GetItem lists it (item:Attachments), before its content is read. */
export interface ListedAttachment {
	id: string;
	/** ItemAttachment: an attached Outlook item (a message comes out as .eml). */
	isItem: boolean;
	info: AttachmentInfo;
}

/** Bytes handed to a sink per chunk: the content is in memory already, the sink still reads a stream. */
const CHUNK = 64 * 1024;

/** The file and item attachments of a GetItem Message; reference attachments (cloud links) have no bytes and are left out. */
export function listAttachments(message: XmlNode): ListedAttachment[] {
	const container = childOf(message, 'Attachments');
	if (!container) return [];
	const listed: ListedAttachment[] = [];
	for (const [element, isItem] of [
		['FileAttachment', false],
		['ItemAttachment', true],
	] as const) {
		for (const attachment of listOf(container[element])) {
			const id = attrOf(childOf(attachment, 'AttachmentId'), 'Id');
			if (id) listed.push({ id, isItem, info: describe(attachment, isItem) });
		}
	}
	return listed;
}

/** A failure of one attachment (refused or unreadable); the message becomes unreadable, the others go on. */
export class AttachmentReadError extends Error {
	constructor(
		message: string,
		readonly ewsCode?: string,
	) {
		super(message);
		this.name = 'AttachmentReadError';
	}
}

/**
 * Reads each attachment with its own GetAttachment (one at a time, so one attachment is in
 * memory, not all of them): a file attachment's Content, an attached message's MimeContent
 * (saved as .eml). An attached item that is not a message (a contact, a meeting) has no MIME
 * and is listed without content. Into the sink as a stream, or collected on the attachment.
 * Sizes are the bytes read, as the IMAP and Graph readers count them.
 */
export async function readAttachments(
	client: EwsClient,
	messageId: string,
	listed: ListedAttachment[],
	sink: MessageSink | undefined,
	signal: AbortSignal,
): Promise<IncomingAttachment[]> {
	const result: IncomingAttachment[] = [];
	for (const attachment of listed) {
		signal.throwIfAborted();
		const [response] = await client.call(
			'GetAttachment',
			{
				...(attachment.isItem ? { 'm:AttachmentShape': { 't:IncludeMimeContent': true } } : {}),
				'm:AttachmentIds': { 't:AttachmentId': { '@_Id': attachment.id } },
			},
			{ signal },
		);
		if (!response || response.responseClass === 'Error') {
			throw new AttachmentReadError(
				`Attachment "${attachment.info.filename}" could not be read: ${response ? `${response.code}${response.text ? ` (${response.text})` : ''}` : 'no answer'}`,
				response?.code,
			);
		}
		const bytes = contentOf(childOf(response.element, 'Attachments'), attachment.isItem);
		const index = result.length;
		if (!bytes) {
			result.push({ ...attachment.info, size: attachment.info.size ?? 0 });
			continue;
		}
		const entry: IncomingAttachment = { ...attachment.info, size: bytes.length };
		result.push(entry);
		if (sink) {
			try {
				await sink.attachment(messageId, index, { ...attachment.info, size: bytes.length }, streamOf(bytes));
			} catch (error) {
				throw Object.assign(error instanceof Error ? error : new Error(String(error)), { storing: true });
			}
		} else entry.content = bytes;
	}
	return result;
}

/** Raw bytes (the whole message's MIME) into the sink, or back to be put on the message. */
export async function storeRaw(messageId: string, bytes: Buffer, sink: MessageSink | undefined): Promise<Buffer | undefined> {
	if (!sink) return bytes;
	try {
		await sink.raw(messageId, streamOf(bytes));
	} catch (error) {
		throw Object.assign(error instanceof Error ? error : new Error(String(error)), { storing: true });
	}
	return undefined;
}

/** A GetAttachment answer's bytes: FileAttachment/Content, or ItemAttachment/<item>/MimeContent (undefined when the item has none). */
function contentOf(attachments: XmlNode | undefined, isItem: boolean): Buffer | undefined {
	if (!attachments) return undefined;
	if (!isItem) {
		const file = childOf(attachments, 'FileAttachment');
		return Buffer.from(textOf(file?.Content) ?? '', 'base64');
	}
	const item = childOf(attachments, 'ItemAttachment');
	if (!item) return undefined;
	for (const [name, value] of Object.entries(item)) {
		if (name.startsWith('@_') || typeof value !== 'object' || value === null) continue;
		const mime = textOf((value as XmlNode).MimeContent);
		if (mime) return Buffer.from(mime, 'base64');
	}
	return undefined;
}

/** The GetItem MimeContent of a message as bytes (undefined when the answer had none). */
export function mimeOf(message: XmlNode): Buffer | undefined {
	const mime = textOf(message.MimeContent);
	return mime === undefined ? undefined : Buffer.from(mime, 'base64');
}

export function streamOf(bytes: Buffer): Readable {
	let offset = 0;
	return new Readable({
		read() {
			if (offset >= bytes.length) return void this.push(null);
			this.push(bytes.subarray(offset, offset + CHUNK));
			offset += CHUNK;
		},
	});
}

function describe(attachment: XmlNode, isItem: boolean): AttachmentInfo {
	const name = textOf(attachment.Name)?.trim() || 'attachment';
	const size = Number(textOf(attachment.Size));
	const contentId = textOf(attachment.ContentId)?.trim();
	return {
		filename: isItem && !/\.eml$/i.test(name) ? `${name}.eml` : name,
		contentType: isItem ? 'message/rfc822' : textOf(attachment.ContentType)?.trim() || 'application/octet-stream',
		...(Number.isSafeInteger(size) && size >= 0 ? { size } : {}),
		...(contentId ? { contentId: contentId.replace(/^<|>$/g, '') } : {}),
		inline: boolOf(attachment.IsInline),
	};
}
