import { MailParser, type AddressObject, type AttachmentStream, type HeaderLines, type Headers } from 'mailparser';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { ActionableError } from '../../model/actionable-error';
import { DEFAULT_MESSAGE_TIMEOUT_MS } from '../contracts';
import type { MailAddress } from '../../model/outgoing-message';

/** What is known about an attachment before its content has been read. */
export interface AttachmentInfo {
	filename: string;
	contentType: string;
	contentId?: string;
	inline: boolean;
}

/**
 * Takes an attachment's decoded bytes as mailparser produces them. The stream must be read to
 * its end before the promise settles: parsing waits for it, so memory holds one chunk, not the
 * attachment.
 */
export type AttachmentConsumer = (info: AttachmentInfo, index: number, content: Readable) => Promise<void>;

export interface ParsedMessage {
	messageId?: string;
	from?: MailAddress;
	to: MailAddress[];
	cc: MailAddress[];
	replyTo: MailAddress[];
	subject: string;
	date?: string;
	text?: string;
	html?: string;
	headerLines: HeaderLines;
	attachments: Array<AttachmentInfo & { size: number }>;
}

/** Bounds for one message; every message ends as a result or a MessageParseError within them. */
export interface ParseLimits {
	/** Parsing (attachments' consumers included) is abandoned after this. */
	timeoutMs?: number;
	/** The largest header block of one MIME part. */
	maxHeaderBytes?: number;
}

export const DEFAULT_PARSE_TIMEOUT_MS = DEFAULT_MESSAGE_TIMEOUT_MS;
/**
 * Exchange Online's own limit for a message's header (256 KB), so nothing Microsoft 365 accepts
 * is refused here, while a header of 1 MB or more (seconds of address parsing) is.
 */
export const DEFAULT_MAX_HEADER_BYTES = 256 * 1024;
/** How much of the raw header is searched for a Subject to name a message that failed. */
const SUBJECT_SCAN_BYTES = 64 * 1024;

/** One message could not be parsed; the other messages are unaffected. */
export class MessageParseError extends ActionableError {
	constructor(
		message: string,
		code: 'MESSAGE_PARSE_TIMEOUT' | 'MESSAGE_HEADER_TOO_LARGE' | 'MESSAGE_TOO_MANY_PARTS' | 'MESSAGE_UNPARSEABLE' | 'MESSAGE_STORE_FAILED',
		hint: string,
		/** The Subject as far as it could be read from the raw header. */
		readonly subject?: string,
	) {
		super(message, code, hint);
		this.name = 'MessageParseError';
	}
}

/**
 * Parses one RFC 822 message with mailparser's streaming parser (what simpleParser wraps),
 * handing each attachment to `consume` as a stream instead of collecting it into a Buffer.
 * Settles within `timeoutMs` with the message or a MessageParseError, whatever the input.
 */
export async function parseMessage(source: Buffer | Readable, consume: AttachmentConsumer, limits: ParseLimits = {}): Promise<ParsedMessage> {
	const timeoutMs = limits.timeoutMs ?? DEFAULT_PARSE_TIMEOUT_MS;
	const maxHeaderBytes = limits.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
	const head = new HeadCapture(Buffer.isBuffer(source) ? source : undefined);
	if (!Buffer.isBuffer(source)) source.on('data', head.listener);
	let parser: MailParser | undefined;
	let timer: NodeJS.Timeout | undefined;
	const stop = (error: Error) => {
		parser?.destroy(error);
		// A stream source is closed too: imapflow then stops downloading the rest.
		if (!Buffer.isBuffer(source)) source.destroy();
	};
	try {
		return await new Promise<ParsedMessage>((resolve, reject) => {
			timer = setTimeout(() => {
				const error = parseTimeout(timeoutMs);
				reject(error);
				stop(error);
			}, timeoutMs);
			// No node:domain here: creating one switches on domain tracking for every async
			// operation of the whole n8n process for good (about 5x slower). The bytes are fed to
			// the parser by parse() itself, so what mailparser throws while taking them (as the
			// address parser's RangeError once did) lands in this promise.
			parser = new MailParser({ skipImageLinks: true, maxHeadSize: maxHeaderBytes });
			// The first error settles the promise; later ones (after destroy) must not crash n8n.
			parser.on('error', () => {});
			const fail = (error: Error) => {
				reject(error);
				stop(error);
			};
			parse(parser, source, consume, fail).then(resolve, reject);
		});
	} catch (error) {
		throw asParseError(error, head.subject(), maxHeaderBytes);
	} finally {
		clearTimeout(timer);
		if (!Buffer.isBuffer(source)) source.off('data', head.listener);
	}
}

export function parseTimeout(timeoutMs: number): MessageParseError {
	return new MessageParseError(
		`Message could not be read within ${timeoutMs / 1000} s`,
		'MESSAGE_PARSE_TIMEOUT',
		'The message is malformed or very large, or storing it stalled; it was skipped',
	);
}

/**
 * Settles like `work`, or fails with a timeout after `timeoutMs` (then calls `abandon`), for
 * work around the parser that its own deadline does not cover, such as storing the raw message.
 */
export async function within<T>(work: Promise<T>, timeoutMs: number, abandon: (error: Error) => void): Promise<T> {
	let timer: NodeJS.Timeout | undefined;
	const timeout = new Promise<never>((_resolve, reject) => {
		timer = setTimeout(() => {
			const error = parseTimeout(timeoutMs);
			abandon(error);
			reject(error);
		}, timeoutMs);
	});
	work.catch(() => {}); // settles later, after the timeout, unobserved
	try {
		return await Promise.race([work, timeout]);
	} finally {
		clearTimeout(timer);
	}
}

async function parse(parser: MailParser, source: Buffer | Readable, consume: AttachmentConsumer, fail: (error: Error) => void): Promise<ParsedMessage> {
	let headers: Headers = new Map();
	let headerLines: HeaderLines = [];
	let text: string | undefined;
	let html: string | undefined;
	const attachments: ParsedMessage['attachments'] = [];
	// Attachments are consumed one after another, in the order mailparser releases them.
	let consuming: Promise<void> = Promise.resolve();

	parser.on('headers', (parsed: Headers) => {
		headers = parsed;
		headerLines = (parser as unknown as { headerLines: HeaderLines }).headerLines ?? [];
	});
	parser.on('data', (data: { type: 'text'; text?: string; html?: string | false } | AttachmentStream) => {
		if (data.type === 'text') {
			text = data.text;
			html = data.html || undefined;
			return;
		}
		const attachment = data;
		const info: AttachmentInfo = {
			filename: attachment.filename ?? 'attachment',
			contentType: attachment.contentType,
			...(attachment.contentId ? { contentId: attachment.contentId.replace(/^<|>$/g, '') } : {}),
			inline: attachment.contentDisposition === 'inline',
		};
		const entry = { ...info, size: 0 };
		attachments.push(entry);
		const counted = new Transform({
			transform(chunk: Buffer, _encoding, done) {
				entry.size += chunk.length;
				done(null, chunk);
			},
		});
		const index = attachments.length - 1;
		consuming = consuming.then(async () => {
			try {
				await Promise.all([pipeline(attachment.content as Readable, counted), consume(info, index, counted)]);
			} catch (error) {
				throw Object.assign(error as Error, { storing: true });
			} finally {
				attachment.release?.();
			}
		});
		// A failing consumer stops the parser; the error surfaces from the promise below.
		consuming.catch((error: Error) => parser.destroy(error));
	});

	const done = new Promise<void>((resolve, reject) => {
		parser.once('end', resolve);
		parser.once('error', reject);
		parser.once('close', () => reject(new Error('Message parser closed before the end of the message')));
	});
	// Fed by hand rather than with pipe(): a throw inside the parser's transform then comes
	// back to these calls instead of escaping from the source's event handler.
	const feed = (write: () => void) => {
		try {
			write();
		} catch (error) {
			fail(error instanceof Error ? error : new Error(String(error)));
		}
	};
	if (Buffer.isBuffer(source)) feed(() => parser.end(source));
	else {
		source.once('error', (error) => parser.destroy(error));
		source.on('data', (chunk: Buffer) => feed(() => void (parser.write(chunk) || source.pause())));
		parser.on('drain', () => source.resume());
		source.once('end', () => feed(() => parser.end()));
	}
	await done;
	await consuming;

	const get = <T>(key: string) => headers.get(key) as T | undefined;
	const date = get<Date>('date');
	return {
		messageId: get<string>('message-id'),
		from: addresses(get('from'))[0],
		to: addresses(get('to')),
		cc: addresses(get('cc')),
		replyTo: addresses(get('reply-to')),
		subject: get<string>('subject') ?? '',
		date: date instanceof Date && !Number.isNaN(date.getTime()) ? date.toISOString() : undefined,
		text,
		html,
		headerLines,
		attachments,
	};
}

function asParseError(error: unknown, subject: string | undefined, maxHeaderBytes: number): MessageParseError {
	if (error instanceof MessageParseError) return new MessageParseError(error.message, error.code as never, error.hint, subject);
	const e = error as Error & { code?: string; storing?: boolean };
	const reason = String(e?.message ?? error);
	if (e?.storing) {
		return new MessageParseError(`An attachment of the message could not be stored: ${reason}`, 'MESSAGE_STORE_FAILED', 'Check the binary data storage of n8n (disk space, permissions)', subject);
	}
	if (/header size/i.test(reason)) {
		return new MessageParseError(
			`Message header is larger than ${Math.round(maxHeaderBytes / 1024)} KiB`,
			'MESSAGE_HEADER_TOO_LARGE',
			'Such a header is not legitimate mail (Exchange Online refuses headers over 256 KB); the message was skipped',
			subject,
		);
	}
	if (/child nodes/i.test(reason)) {
		return new MessageParseError('Message has more than 1,000 MIME parts', 'MESSAGE_TOO_MANY_PARTS', 'Such a message is not legitimate mail; it was skipped', subject);
	}
	return new MessageParseError(`Message could not be parsed: ${reason}`, 'MESSAGE_UNPARSEABLE', 'The message is malformed; it was skipped', subject);
}

/** Keeps the first bytes of a message, to read a Subject from them when parsing fails. */
class HeadCapture {
	private chunks: Buffer[] = [];
	private length = 0;

	constructor(private readonly whole?: Buffer) {}

	readonly listener = (chunk: Buffer) => {
		if (this.length >= SUBJECT_SCAN_BYTES) return;
		this.chunks.push(chunk);
		this.length += chunk.length;
	};

	subject(): string | undefined {
		return subjectOf(this.whole ?? Buffer.concat(this.chunks));
	}
}

/** The Subject of a raw header, unfolded and with encoded words decoded where possible. */
export function subjectOf(raw: Buffer): string | undefined {
	const text = raw.subarray(0, SUBJECT_SCAN_BYTES).toString('latin1');
	const end = text.search(/\r?\n\r?\n/);
	const header = end === -1 ? text : text.slice(0, end);
	const match = /(?:^|\n)subject:[ \t]*((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)/i.exec(header);
	if (!match) return undefined;
	const folded = Buffer.from(match[1], 'latin1').toString('utf8').replace(/\r?\n[ \t]/g, ' ');
	return decodeWords(folded).replace(/[\u0000-\u001f]/g, ' ').trim().slice(0, 998);
}

/** RFC 2047 encoded words (=?charset?B|Q?...?=); one that cannot be decoded is left as it is. */
function decodeWords(value: string): string {
	return value
		.replace(/\?=\s+=\?/g, '?==?')
		.replace(/=\?([^?\s]+)\?([bqBQ])\?([^?\s]*)\?=/g, (word, charset: string, encoding: string, data: string) => {
			try {
				const bytes =
					encoding.toUpperCase() === 'B'
						? Buffer.from(data, 'base64')
						: Buffer.from(data.replace(/_/g, ' ').replace(/=([0-9a-f]{2})/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1');
				return new TextDecoder(charset.split('*')[0]).decode(bytes);
			} catch {
				return word;
			}
		});
}

/** Collects a stream into one Buffer, for callers that want attachments in memory. */
export async function collect(content: Readable): Promise<Buffer> {
	const chunks: Buffer[] = [];
	for await (const chunk of content) chunks.push(chunk as Buffer);
	return Buffer.concat(chunks);
}

/** Duplicates a stream for two consumers, moving at the pace of the slower one. */
export function tee(source: Readable): [PassThrough, PassThrough] {
	const a = new PassThrough();
	const b = new PassThrough();
	source.once('error', (error) => {
		a.destroy(error);
		b.destroy(error);
	});
	source.pipe(a);
	source.pipe(b);
	return [a, b];
}

function addresses(value: AddressObject | AddressObject[] | undefined): MailAddress[] {
	const list = Array.isArray(value) ? value : value ? [value] : [];
	return list.flatMap((a) =>
		a.value.filter((v) => v.address).map((v) => (v.name ? { name: v.name, address: v.address! } : { address: v.address! })),
	);
}
