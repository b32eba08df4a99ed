/**
 * The bounds parseMessage promises (defect 1): a deadline, a header budget, and exceptions
 * thrown in callbacks during parsing landing in its promise. Then the same through the IMAP
 * reader against Dovecot: a message whose attachment store stalls (large, so streamed) is
 * abandoned at the deadline, the messages after it are read, the connection stays usable.
 */
import nodemailer from 'nodemailer';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';

import type { MessageSink } from '../../transports/contracts';
import { ImapReader } from '../../transports/imap/imap-reader';
import { parseMessage } from '../../transports/imap/parse-message';

/** The header budget parse-message documents (Exchange Online's limit). */
const HEADER_BUDGET = 256 * 1024;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');

const USER = 'limits@example.com';
const PASSWORD = 'Limits-imap-Passw0rd';
const build = async (options: Record<string, unknown>) =>
	(await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({ from: 'sender@example.org', to: USER, ...options })).message as Buffer;
const drain = async (_info: unknown, _index: number, content: NodeJS.ReadableStream) => {
	content.resume();
	await finished(content);
};

/** Longest gap between timer ticks while `work` runs: how long the event loop was blocked. */
async function loopLag<T>(work: () => Promise<T>): Promise<{ result: T | Error; lagMs: number; elapsedMs: number }> {
	let last = Date.now();
	let lagMs = 0;
	const timer = setInterval(() => {
		lagMs = Math.max(lagMs, Date.now() - last);
		last = Date.now();
	}, 5);
	const started = Date.now();
	const result = await work().catch((error: Error) => error);
	clearInterval(timer);
	lagMs = Math.max(lagMs, Date.now() - last);
	return { result, lagMs, elapsedMs: Date.now() - started };
}

describe('parseMessage bounds', () => {
	it('a 1 MB To header is refused within a second without blocking the event loop, naming the subject', async () => {
		const to = Array.from({ length: 45_000 }, (_, k) => `u${k}@example.com`).join(', ');
		const raw = Buffer.from(`From: a@example.org\r\nSubject: huge to\r\nTo: ${to}\r\n\r\nbody\r\n`);
		// Just under 1 MiB: mailparser 3.9.0 spent 8 s of blocked event loop on it; above that its own limit applied.
		expect(raw.length).toBeGreaterThan(850_000);
		const { result, lagMs, elapsedMs } = await loopLag(() => parseMessage(raw, drain));
		expect(result).toMatchObject({ code: 'MESSAGE_HEADER_TOO_LARGE', subject: 'huge to' });
		expect(elapsedMs).toBeLessThan(1000);
		expect(lagMs).toBeLessThan(500);
	});

	it('a header just under the budget is parsed', async () => {
		const raw = Buffer.from(`From: a@example.org\r\nSubject: fits\r\nX-Pad: ${'p'.repeat(HEADER_BUDGET - 1024)}\r\n\r\nbody\r\n`);
		await expect(parseMessage(raw, drain)).resolves.toMatchObject({ subject: 'fits' });
	});

	it('a consumer that never finishes makes the parse fail at its deadline', async () => {
		const raw = await build({ subject: 'stalled', text: 'x', attachments: [{ filename: 'a.bin', content: randomBytes(10_000) }] });
		const started = Date.now();
		const never = () => new Promise<void>(() => {});
		await expect(parseMessage(raw, never, { timeoutMs: 300 })).rejects.toMatchObject({ code: 'MESSAGE_PARSE_TIMEOUT', subject: 'stalled' });
		expect(Date.now() - started).toBeLessThan(2000);
	});

	it('an exception thrown by the attachment consumer lands in the promise, not as an uncaught exception', async () => {
		const raw = await build({ subject: 'thrower', text: 'x', attachments: [{ filename: 'a.bin', content: randomBytes(1000) }] });
		const uncaught: Error[] = [];
		const onUncaught = (error: Error) => uncaught.push(error);
		// jest installs its own handler; ours only records that nothing reached the process.
		process.on('uncaughtException', onUncaught);
		try {
			// Thrown at once when the parser hands over the attachment: it must fail the parse.
			const thrower = () => {
				throw new RangeError('Maximum call stack size exceeded (simulated)');
			};
			await expect(parseMessage(raw, thrower, { timeoutMs: 5000 })).rejects.toMatchObject({
				code: 'MESSAGE_STORE_FAILED',
				message: expect.stringContaining('Maximum call stack size exceeded'),
			});
			// The same from a stream source, fed chunk by chunk.
			await expect(parseMessage(Readable.from([raw.subarray(0, 200), raw.subarray(200)]), thrower, { timeoutMs: 5000 })).rejects.toMatchObject({
				code: 'MESSAGE_STORE_FAILED',
			});
			await new Promise((resolve) => setTimeout(resolve, 50));
			expect(uncaught).toEqual([]);
		} finally {
			process.off('uncaughtException', onUncaught);
		}
	});
});

describe('IMAP reader: a stalled message is abandoned at its deadline, the others are read', () => {
	let pki: ReturnType<typeof sharedTestPki>;
	let dovecot: Awaited<ReturnType<typeof startDovecot>>;

	beforeAll(async () => {
		pki = sharedTestPki();
		dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD } });
	}, 120_000);

	afterAll(async () => dovecot?.stop());

	it.each([
		['attachment', 'fetched whole', 50_000],
		['attachment', 'streamed', 3 * 1024 * 1024],
		['raw message', 'fetched whole', 50_000],
		['raw message', 'streamed', 3 * 1024 * 1024],
	])('%s store stalls on a message %s', async (stalling, _label, size) => {
		const folder = `Stall${stalling === 'raw message' ? 'Raw' : ''}${size}`;
		await dovecot.createFolder(USER, folder);
		await dovecot.deliver(USER, await build({ subject: 'first', text: '1' }), { folder });
		const { uid: stalledUid } = await dovecot.deliver(USER, await build({ subject: 'stalls', text: '2', attachments: [{ filename: 'stall.bin', content: randomBytes(size) }] }), { folder });
		await dovecot.deliver(USER, await build({ subject: 'third', text: '3', attachments: [{ filename: 'ok.bin', content: randomBytes(1000) }] }), { folder });
		const sink: MessageSink = {
			async attachment(_id, _index, info, content) {
				if (stalling === 'attachment' && info.filename === 'stall.bin') return new Promise<void>(() => {});
				content.resume();
				await finished(content);
			},
			async raw(id, content) {
				if (stalling === 'raw message' && id.endsWith(`:${stalledUid}`)) return new Promise<void>(() => {});
				content.resume();
				await finished(content);
			},
		};
		const reader = new ImapReader({ host: dovecot.host, port: dovecot.tlsPort, security: 'tls', auth: { type: 'password', user: USER, pass: PASSWORD }, rejectUnauthorized: true, ca: pki.ca });
		await reader.connect();
		try {
			const ids = await reader.search(folder, {}, { newestFirst: false, limit: 100 });
			const started = Date.now();
			const out: Array<{ subject?: string; error?: { code: string } }> = [];
			const options = { sink, includeRaw: stalling === 'raw message', limits: { timeoutMs: 1000 } };
			for await (const message of reader.fetch(folder, ids, options)) out.push(message);
			expect(Date.now() - started).toBeLessThan(10_000);
			expect(out.map((m) => [m.subject, m.error?.code ?? 'read'])).toEqual(
				expect.arrayContaining([
					['first', 'read'],
					['stalls', 'MESSAGE_PARSE_TIMEOUT'],
					['third', 'read'],
				]),
			);
			expect(out).toHaveLength(3);
			// The connection is still in a usable state for the next command.
			expect(await reader.search(folder, {}, { newestFirst: false, limit: 100 })).toEqual(ids);
		} finally {
			await reader.close();
		}
	}, 60_000);
});
