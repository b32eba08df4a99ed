import { MailParser, type AddressObject, type AttachmentStream, type HeaderLines, type Headers } from 'mailparser';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

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

/**
 * Parses one RFC 822 message with mailparser's streaming parser (what simpleParser wraps),
 * handing each attachment to `consume` as a stream instead of collecting it into a Buffer.
 */
export async function parseMessage(source: Buffer | Readable, consume: AttachmentConsumer): Promise<ParsedMessage> {
	const parser = new MailParser({ skipImageLinks: true, keepCidLinks: true });
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
			} finally {
				attachment.release();
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
	if (Buffer.isBuffer(source)) parser.end(source);
	else {
		source.once('error', (error) => parser.destroy(error));
		source.pipe(parser);
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
