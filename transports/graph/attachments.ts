import type { Readable } from 'node:stream';
import { Transform } from 'node:stream';

import type { AttachmentInfo, MessageSink } from '../contracts';
import type { IncomingAttachment } from '../../model/incoming-message';
import type { GraphClient } from './graph-client';
import { withQuery, type GraphPage } from './odata';

/** An attachment as listed, without its content (`$select` keeps contentBytes out of the JSON). */
export interface ListedAttachment {
	'@odata.type'?: string;
	id?: string;
	name?: string | null;
	contentType?: string | null;
	size?: number | null;
	isInline?: boolean | null;
	contentId?: string | null;
}

/** contentId is a fileAttachment property: selected with its type cast (OData), not on the base type. */
const ATTACHMENT_FIELDS = 'id,name,contentType,size,isInline,microsoft.graph.fileAttachment/contentId';
/** `$expand` that lists the attachments in the message's own answer (no contentBytes: only these properties). */
export const ATTACHMENTS_EXPAND = `attachments($select=${ATTACHMENT_FIELDS})`;
const FILE = '#microsoft.graph.fileAttachment';
const ITEM = '#microsoft.graph.itemAttachment';

/**
 * Reads a message's attachments: each file attachment's bytes from `/attachments/{id}/$value`
 * and each item attachment (an attached Outlook message) as MIME from the same `/$value`, saved
 * as `.eml`, streamed into the sink one after another (never whole in memory) or, without a
 * sink, collected into Buffers. Reference attachments (cloud links) have no bytes (405) and are
 * left out. Sizes are the bytes read, as the IMAP reader counts them.
 */
export async function readAttachments(
	graph: GraphClient,
	messageId: string,
	sink: MessageSink | undefined,
	downloads: Downloads,
	expanded?: ListedAttachment[],
): Promise<IncomingAttachment[]> {
	const base = `${graph.mailbox}/messages/${encodeURIComponent(messageId)}/attachments`;
	const listed = expanded ?? (await listAttachments(graph, base));
	const result: IncomingAttachment[] = [];
	for (const attachment of listed) {
		downloads.check();
		const type = attachment['@odata.type'] ?? FILE;
		if ((type !== FILE && type !== ITEM) || !attachment.id) continue;
		const info = describe(attachment, type === ITEM);
		const index = result.length;
		const entry: IncomingAttachment = { ...info, size: 0 };
		result.push(entry);
		const source = await graph.stream(`${base}/${encodeURIComponent(attachment.id)}/$value`);
		const counted = counter((n) => (entry.size += n));
		downloads.add(source, counted);
		const consume = sink ? sink.attachment(messageId, index, info, counted) : collect(counted).then((content) => void (entry.content = content));
		await settleBoth(source, pipeInto(source, counted), consume);
	}
	return result;
}

/** The attachment list on its own (when the message's answer did not expand it). */
async function listAttachments(graph: GraphClient, base: string): Promise<ListedAttachment[]> {
	const listed: ListedAttachment[] = [];
	let link: string | undefined = withQuery(base, { $select: ATTACHMENT_FIELDS });
	while (link) {
		const page: GraphPage<ListedAttachment> = await graph.get<GraphPage<ListedAttachment>>(link);
		listed.push(...(page.value ?? []));
		link = page['@odata.nextLink'];
	}
	return listed;
}

/** The whole message as MIME (`/messages/{id}/$value`) into the sink, or collected when there is none. */
export async function readRaw(graph: GraphClient, messageId: string, sink: MessageSink | undefined, downloads: Downloads): Promise<Buffer | undefined> {
	const source = await graph.stream(`${graph.mailbox}/messages/${encodeURIComponent(messageId)}/$value`);
	const content = counter(() => {});
	downloads.add(source, content);
	let raw: Buffer | undefined;
	const consume = sink ? sink.raw(messageId, content) : collect(content).then((bytes) => void (raw = bytes));
	await settleBoth(source, pipeInto(source, content), consume);
	return raw;
}

/**
 * The downloads of one message, so that a deadline can give them up: each consumer's stream ends
 * with the error, and what is left of each download is read and dropped rather than cancelled
 * (the connection stays usable, and the client's stream is never cancelled half-way).
 */
export class Downloads {
	private readonly open = new Set<{ source: Readable; consumer: Transform }>();
	private abandoned?: Error;

	add(source: Readable, consumer: Transform): void {
		if (this.abandoned) return Downloads.drop(source, consumer, this.abandoned);
		this.open.add({ source, consumer });
	}

	/** Throws once the message was given up, so its reading makes no further requests. */
	check(): void {
		if (this.abandoned) throw this.abandoned;
	}

	abandon(error: Error): void {
		this.abandoned = error;
		for (const { source, consumer } of this.open) Downloads.drop(source, consumer, error);
	}

	/** After the message: any download not read to its end (a consumer stopped early) is drained. */
	finish(): void {
		for (const { source } of this.open) if (!source.readableEnded && !source.destroyed) discardRest(source);
	}

	private static drop(source: Readable, consumer: Transform, error: Error): void {
		discardRest(source);
		consumer.destroy(error);
	}
}

/**
 * Waits for the download and its consumer. A failure of the consumer (the sink could not store)
 * is marked `storing`: that message is unreadable, the others go on; the rest of the download is
 * read and dropped, so the connection is not cut (and the client's stream is never cancelled
 * half-way). A failure of the download itself is the connection's and is not marked.
 */
async function settleBoth(source: Readable, download: Promise<void>, consume: Promise<void>): Promise<void> {
	let downloadFailed = false;
	source.once('error', () => (downloadFailed = true));
	try {
		await Promise.all([download, consume]);
	} catch (error) {
		download.catch(() => {});
		consume.catch(() => {});
		const failure = error instanceof Error ? error : new Error(String(error));
		if (downloadFailed) throw failure;
		discardRest(source);
		throw Object.assign(failure, { storing: true });
	}
}

/** source.pipe(target) as a promise of the source's end; a source error ends the target too. */
function pipeInto(source: Readable, target: Transform): Promise<void> {
	return new Promise<void>((resolve, reject) => {
		source.once('error', (error) => {
			target.destroy(error);
			reject(error);
		});
		source.once('end', () => resolve());
		source.pipe(target);
	});
}

/** Reads what is left of a download and drops it. */
export function discardRest(source: Readable): void {
	source.unpipe();
	source.on('error', () => {});
	source.resume();
}

function describe(attachment: ListedAttachment, isItem: boolean): AttachmentInfo {
	const name = attachment.name?.trim() || 'attachment';
	return {
		filename: isItem && !/\.eml$/i.test(name) ? `${name}.eml` : name,
		contentType: isItem ? 'message/rfc822' : attachment.contentType || 'application/octet-stream',
		size: Number(attachment.size) || 0,
		...(attachment.contentId ? { contentId: attachment.contentId.replace(/^<|>$/g, '') } : {}),
		inline: attachment.isInline === true,
	};
}

function counter(count: (bytes: number) => void): Transform {
	const stream = new Transform({
		transform(chunk: Buffer, _encoding, done) {
			count(chunk.length);
			done(null, chunk);
		},
	});
	// Ended with an error when the download fails or is given up: a sink that never started
	// reading has no listener, and an unheard stream error would crash n8n.
	stream.on('error', () => {});
	return stream;
}

export async function collect(content: Readable): Promise<Buffer> {
	const chunks: Buffer[] = [];
	for await (const chunk of content) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
	return Buffer.concat(chunks);
}
