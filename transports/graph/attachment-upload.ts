import { type FileObject, LargeFileUploadTask, Range } from '@microsoft/microsoft-graph-client';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { ActionableError } from '../../model/actionable-error';
import type { OutgoingAttachment } from '../../model/outgoing-message';
import type { GraphClient } from './graph-client';
import { GraphApiError } from './graph-errors';

/** Attachments under this go inline (JSON, base64); from it on through an upload session (Graph's documented 3 MB). */
export const INLINE_LIMIT = 3 * 1024 * 1024;
/** Graph's cap for one attachment / message (with MaxSendSize raised to its maximum). */
export const MAX_ATTACHMENT = 150 * 1024 * 1024;
/** 12 x 320 KiB: a multiple of 320 KiB as upload sessions require, and under the 4 MB request cap. */
export const UPLOAD_CHUNK = 12 * 320 * 1024;

/** An attachment whose size is known before anything is sent (upload sessions need it up front). */
export interface SizedAttachment {
	filename: string;
	contentType: string;
	contentId?: string;
	size: number;
	open(): Promise<Readable | Buffer>;
	/** Removes a spool file, if one was needed. */
	dispose(): Promise<void>;
}

/**
 * Gives every attachment a size. A declared size is taken (and checked while streaming); a
 * stream of unknown size is read up to INLINE_LIMIT and, if longer, spooled to a temp file
 * (disk, never memory) so its size is known before the upload session is created.
 */
export async function sizeAttachment(attachment: OutgoingAttachment): Promise<SizedAttachment> {
	const base = { filename: attachment.filename, contentType: attachment.contentType, contentId: attachment.contentId, dispose: async () => undefined };
	if (attachment.size !== undefined) return { ...base, size: attachment.size, open: attachment.open };
	const content = await attachment.open();
	if (Buffer.isBuffer(content)) return { ...base, size: content.length, open: async () => content };
	const head: Buffer[] = [];
	let headBytes = 0;
	const iterator = content[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
	for (;;) {
		const next = await iterator.next();
		if (next.done) {
			const whole = Buffer.concat(head);
			return { ...base, size: whole.length, open: async () => whole };
		}
		const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
		head.push(chunk);
		headBytes += chunk.length;
		if (headBytes >= INLINE_LIMIT) break;
	}
	const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'mam-graph-spool-'));
	const file = path.join(dir, 'attachment');
	async function* rest() {
		yield* head;
		head.length = 0;
		for (;;) {
			const next = await iterator.next();
			if (next.done) return;
			yield next.value;
		}
	}
	try {
		await pipeline(Readable.from(rest()), fs.createWriteStream(file));
	} catch (error) {
		await fs.promises.rm(dir, { recursive: true, force: true });
		throw error;
	}
	const { size } = await fs.promises.stat(file);
	return {
		...base,
		size,
		open: async () => fs.createReadStream(file),
		dispose: () => fs.promises.rm(dir, { recursive: true, force: true }),
	};
}

/** Reads an attachment that is small enough to go inline, checking its size. */
export async function readWhole(attachment: SizedAttachment): Promise<Buffer> {
	const content = await attachment.open();
	const bytes = Buffer.isBuffer(content) ? content : await collect(content);
	if (bytes.length !== attachment.size) throw sizeMismatch(attachment, bytes.length);
	return bytes;
}

async function collect(stream: Readable): Promise<Buffer> {
	const chunks: Buffer[] = [];
	for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
	return Buffer.concat(chunks);
}

function sizeMismatch(attachment: SizedAttachment, actual: number | string): ActionableError {
	return new ActionableError(
		`Attachment "${attachment.filename}" has ${actual} bytes, not the ${attachment.size} declared`,
		'GRAPH_ATTACHMENT_SIZE_MISMATCH',
		'Pass the binary data unchanged (its file size must match its content), or leave the size out',
	);
}

/**
 * The SDK's FileObject over a Readable, one slice at a time: only the current slice (UPLOAD_CHUNK)
 * is in memory. The SDK's own StreamUpload adds 'readable' and 'end' listeners on every slice and
 * never removes them (a MaxListenersExceededWarning after ten slices of a 150 MB file); this one
 * pulls from the stream's async iterator. The slice before is kept, so the task may ask for the
 * same range again after a failed PUT.
 */
export class StreamSlices implements FileObject<Readable> {
	private readonly iterator: AsyncIterator<Buffer | string>;
	private leftover: Buffer = Buffer.alloc(0);
	/**
	 * One buffer for every slice: a slice is done with (its PUT answered) before the next is read,
	 * and a fresh 3.75 MiB buffer per slice would leave tens of MB of garbage for the GC to find.
	 */
	private readonly buffer: Buffer;
	private previous?: { range: Range; bytes: Buffer };
	private consumed = 0;

	constructor(
		readonly content: Readable,
		readonly name: string,
		readonly size: number,
		private readonly attachment: SizedAttachment,
	) {
		this.iterator = content[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
		this.buffer = Buffer.allocUnsafeSlow(Math.min(UPLOAD_CHUNK, size));
	}

	async sliceFile(range: Range): Promise<Buffer> {
		const previous = this.previous;
		if (previous && range.minValue === previous.range.minValue && range.maxValue === previous.range.maxValue) return previous.bytes;
		if (range.minValue !== this.consumed) {
			throw new ActionableError(
				`The upload of "${this.name}" asked for bytes ${range.minValue}-${range.maxValue}, but the stream is at ${this.consumed}`,
				'GRAPH_UPLOAD_OUT_OF_ORDER',
				'Send the message again; the draft with the partial upload was removed',
			);
		}
		const want = range.maxValue - range.minValue + 1;
		const bytes = await this.take(want);
		this.consumed += bytes.length;
		if (this.consumed === this.size && (await this.hasMore())) throw sizeMismatch(this.attachment, `more than ${this.size}`);
		this.previous = { range, bytes };
		return bytes;
	}

	private async take(want: number): Promise<Buffer> {
		if (want > this.buffer.length) throw new Error(`slice of ${want} bytes is larger than the upload buffer`);
		let have = 0;
		if (this.leftover.length > 0) {
			have = this.leftover.copy(this.buffer, 0, 0, Math.min(want, this.leftover.length));
			this.leftover = this.leftover.subarray(have);
		}
		while (have < want) {
			const next = await this.iterator.next();
			if (next.done) throw sizeMismatch(this.attachment, this.consumed + have);
			const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
			const used = chunk.copy(this.buffer, have, 0, Math.min(chunk.length, want - have));
			have += used;
			if (used < chunk.length) this.leftover = chunk.subarray(used);
		}
		return this.buffer.subarray(0, want);
	}

	private async hasMore(): Promise<boolean> {
		if (this.leftover.length > 0) return true;
		for (;;) {
			const next = await this.iterator.next();
			if (next.done) return false;
			if (next.value.length > 0) {
				this.leftover = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
				return true;
			}
		}
	}
}

interface UploadSessionAnswer {
	uploadUrl: string;
	expirationDateTime?: string;
	nextExpectedRanges?: string[];
}

/**
 * The SDK's LargeFileUploadTask (range bookkeeping, completion on 201) with each slice PUT sent
 * through our client: no Authorization on the pre-authorized upload URL, retries of 429/5xx and
 * resets (a PUT of one range is idempotent), and when a retried PUT finds its range already
 * taken (the lost answer was a success) the session's own status decides what comes next.
 */
class AttachmentUploadTask extends LargeFileUploadTask<Readable> {
	/** A slice's outcome was taken from the session's status instead of its own answer. */
	recovered = false;

	constructor(
		private readonly graph: GraphClient,
		file: StreamSlices,
		private readonly uploadUrl: string,
		expiry: Date,
	) {
		super(graph.sdk, file, { url: uploadUrl, expiry }, { rangeSize: UPLOAD_CHUNK });
	}

	async uploadSliceGetRawResponse(fileSlice: unknown, range: Range, totalSize: number): Promise<Response> {
		const headers = { 'Content-Range': `bytes ${range.minValue}-${range.maxValue}/${totalSize}`, 'Content-Type': 'application/octet-stream' };
		try {
			const answer = await this.graph.request('PUT', this.uploadUrl, fileSlice, { headers, prefer: false });
			// Exchange may answer the last slice 201 without a body: then no JSON type, or the SDK parses nothing.
			if (answer.body === undefined) return new Response(null, { status: answer.status });
			return new Response(JSON.stringify(answer.body), { status: answer.status, headers: { 'content-type': 'application/json' } });
		} catch (error) {
			const status = await this.statusAfter(error, range, totalSize);
			if (!status) throw error;
			return status;
		}
	}

	/** After a PUT whose answer was lost and whose retry was refused: what the session says it holds. */
	private async statusAfter(error: unknown, range: Range, totalSize: number): Promise<Response | undefined> {
		// Only a repeated PUT can find its own range taken; a first attempt's refusal stands.
		if (!(error instanceof GraphApiError) || error.attempts < 2 || ![400, 404, 416].includes(error.responseCode ?? 0)) return undefined;
		if (range.maxValue === totalSize - 1) {
			// The last range was taken: the session is complete (or gone with it). The sender checks the draft.
			this.recovered = true;
			return new Response(null, { status: 201 });
		}
		try {
			const status = await this.graph.get<UploadSessionAnswer>(this.uploadUrl, { prefer: false });
			const next = Number.parseInt(String(status?.nextExpectedRanges?.[0] ?? ''), 10);
			if (Number.isInteger(next) && next > range.maxValue) {
				this.recovered = true;
				return new Response(JSON.stringify(status), { status: 200, headers: { 'content-type': 'application/json' } });
			}
		} catch {
			// The original error says more than a failed status read.
		}
		return undefined;
	}
}

/**
 * Uploads one attachment of INLINE_LIMIT..MAX_ATTACHMENT bytes to a draft, streamed slice by
 * slice. Resolves true when a lost answer was recovered from the session's status (the caller
 * then checks the draft holds the attachment).
 */
export async function uploadAttachment(graph: GraphClient, draftPath: string, attachment: SizedAttachment): Promise<boolean> {
	const session = await graph.post<UploadSessionAnswer>(
		`${draftPath}/attachments/createUploadSession`,
		{
			AttachmentItem: {
				attachmentType: 'file',
				name: attachment.filename,
				size: attachment.size,
				contentType: attachment.contentType,
				...(attachment.contentId ? { isInline: true, contentId: attachment.contentId } : {}),
			},
		},
		// A second session after a lost answer is harmless: an unused one expires.
		{ idempotent: true },
	);
	const uploadUrl = session.body.uploadUrl;
	graph.preauthorize(uploadUrl);
	const content = await attachment.open();
	const stream = Buffer.isBuffer(content) ? Readable.from([content]) : content;
	try {
		const expiry = session.body.expirationDateTime ? new Date(session.body.expirationDateTime) : new Date(Date.now() + 3_600_000);
		const task = new AttachmentUploadTask(graph, new StreamSlices(stream, attachment.filename, attachment.size, attachment), uploadUrl, expiry);
		await task.upload();
		return task.recovered;
	} finally {
		stream.destroy();
	}
}
