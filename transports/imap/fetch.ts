import type { ImapFlow } from 'imapflow';
import { Readable } from 'node:stream';

import type { IncomingMessage, UnreadableMessage } from '../../model/incoming-message';
import type { FetchOptions } from '../contracts';
import { imapId } from './ids';
import {
	collect,
	DEFAULT_PARSE_TIMEOUT_MS,
	MessageParseError,
	parseMessage,
	subjectOf,
	tee,
	within,
	type AttachmentConsumer,
	type ParsedMessage,
} from './parse-message';
import { uidSetChunks } from './post-actions';

/** Messages above this are downloaded in chunks and parsed as they arrive. */
export const STREAM_ABOVE_BYTES = 1024 * 1024;
const DOWNLOAD_CHUNK_BYTES = 1024 * 1024;

/** The selected folder the messages are read from. */
export interface FetchSource {
	client: ImapFlow;
	folder: string;
	uidValidity: number;
}

/**
 * Fetches and parses the given UIDs of the selected folder, one message at a time. One FETCH
 * brings every message up to STREAM_ABOVE_BYTES whole (imapflow reads the next response only
 * when the previous one is consumed, so one message is in memory at a time). Larger ones,
 * of which that FETCH brought only the first part, are then downloaded in chunks and parsed
 * as they arrive, so their attachments stream into the sink and never sit in memory whole.
 * Messages come in ascending UID order, larger ones after the smaller ones. A message that
 * cannot be read comes as an UnreadableMessage in its place; only a failing connection throws
 * (with imapflow's error: the reader describes it).
 */
export async function* fetchMessages(source: FetchSource, uids: number[], options: FetchOptions = {}): AsyncGenerator<IncomingMessage | UnreadableMessage> {
	if (uids.length === 0) return;
	const { client } = source;
	const large: number[] = [];
	const query = { uid: true, flags: true, size: true, source: { start: 0, maxLength: STREAM_ABOVE_BYTES } };
	// Scattered UIDs (filters leave gaps) would make one FETCH line longer than servers take.
	for (const chunk of uidSetChunks(uids)) {
		for await (const message of client.fetch(chunk.set, query, { uid: true })) {
			const bytes = message.source as Buffer;
			if ((message.size ?? 0) > STREAM_ABOVE_BYTES || !bytes) {
				large.push(message.uid);
				continue;
			}
			yield await toMessage(source, message.uid, message.flags, message.size ?? bytes.length, bytes, options);
		}
		// imapflow's fetch ends quietly when the connection drops: that is not "no more mail".
		if (!client.usable) throw new Error('the connection closed during FETCH');
	}
	// Not inside the FETCH loop above: imapflow runs one command at a time.
	for (const uid of large) {
		const meta = await client.fetchOne(String(uid), { uid: true, flags: true, size: true }, { uid: true });
		if (!meta) continue; // deleted meanwhile
		const download = await client.download(String(uid), undefined, { uid: true, chunkSize: DOWNLOAD_CHUNK_BYTES });
		if (!download.content) continue;
		yield await toMessage(source, uid, meta.flags, meta.size ?? 0, download.content, options);
	}
}

async function toMessage(
	{ client, folder, uidValidity }: FetchSource,
	uid: number,
	flagSet: Set<string> | undefined,
	size: number,
	source: Buffer | Readable,
	options: FetchOptions,
): Promise<IncomingMessage | UnreadableMessage> {
	const id = imapId(uidValidity, uid);
	const flags = [...(flagSet ?? new Set<string>())];
	let read: Awaited<ReturnType<typeof readMessage>>;
	// The parser keeps its own deadline; this one also covers storing the raw message.
	const timeoutMs = options.limits?.timeoutMs ?? DEFAULT_PARSE_TIMEOUT_MS;
	try {
		read = await within(readMessage(id, source, options), timeoutMs + 1000, () => {
			if (!Buffer.isBuffer(source)) source.destroy();
		});
	} catch (error) {
		if (!Buffer.isBuffer(source)) source.destroy();
		// A dropped connection is not the message's fault: the caller reconnects and retries.
		if (!client.usable) throw error;
		const failure = error instanceof MessageParseError ? error : undefined;
		const e = error as { message?: string };
		const subject = failure?.subject ?? (Buffer.isBuffer(source) ? subjectOf(source) : undefined);
		return {
			id,
			uid,
			folder,
			...(subject !== undefined ? { subject } : {}),
			size,
			flags,
			error: {
				message: failure?.message ?? `Message could not be read: ${String(e?.message ?? error)}`,
				code: failure?.code ?? 'MESSAGE_UNREADABLE',
				hint: failure?.hint ?? 'Storing or parsing this message failed; the other messages are unaffected',
			},
		};
	}
	const { parsed, collected, raw } = read;
	const headers: Record<string, string> = {};
	if (options.includeHeaders) {
		for (const line of parsed.headerLines) headers[line.key] = line.line.slice(line.line.indexOf(':') + 1).trim();
	}
	return {
		id,
		uid,
		messageId: parsed.messageId,
		folder,
		from: parsed.from,
		to: parsed.to,
		cc: parsed.cc,
		replyTo: parsed.replyTo,
		subject: parsed.subject,
		date: parsed.date,
		flags,
		seen: flags.includes('\\Seen'),
		flagged: flags.includes('\\Flagged'),
		size,
		text: parsed.text,
		...(options.includeHtml && parsed.html ? { html: parsed.html } : {}),
		...(options.includeHeaders ? { headers } : {}),
		attachments: parsed.attachments.map((a, index) => ({
			...a,
			...(collected.has(index) ? { content: collected.get(index) } : {}),
		})),
		...(raw ? { raw } : {}),
	};
}

/** Parses one message, its attachments (and raw bytes, if asked) going to the sink. */
async function readMessage(id: string, source: Buffer | Readable, options: FetchOptions) {
	const sink = options.sink;
	const collected = new Map<number, Buffer>();
	const consume: AttachmentConsumer = sink
		? (info, index, content) => sink.attachment(id, index, info, content)
		: async (_info, index, content) => void collected.set(index, await collect(content));
	let raw: Buffer | undefined;
	let parsed: ParsedMessage;
	if (!options.includeRaw) parsed = await parseMessage(source, consume, options.limits);
	else if (Buffer.isBuffer(source)) {
		if (sink) await sink.raw(id, Readable.from([source]));
		else raw = source;
		parsed = await parseMessage(source, consume, options.limits);
	} else {
		const [toParser, toRaw] = tee(source);
		const keepRaw = sink ? sink.raw(id, toRaw) : collect(toRaw).then((buffer) => void (raw = buffer));
		try {
			[parsed] = await Promise.all([parseMessage(toParser, consume, options.limits), keepRaw]);
		} catch (error) {
			// Ends the raw copy too, so its consumer does not wait for bytes that never come
			// (without an error: that consumer may not listen for one).
			toRaw.destroy();
			keepRaw.catch(() => {});
			throw error;
		}
	}
	return { parsed, collected, raw };
}
