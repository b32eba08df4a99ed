/**
 * Peak memory while the package streams a 50 MB attachment, measured in a fresh Node process
 * (test/memory/child.js) that requires the built package from dist/, so neither the jest
 * worker nor earlier tests count. Each scenario also runs an idle child that requires the same
 * module and connects, and the streaming child must stay below that baseline plus what holding
 * the data would cost. Sending streams tightly: below the baseline + the 50 MB attachment.
 * Reading does not as tightly (imapflow's 1 MB download chunks, the base64 decoder and the
 * allocator keep tens of MB in flight: about baseline + 100 MB on Node 20 / Linux), so its
 * bound is what holding the message would need at least, its 68 MB of raw MIME plus the
 * 50 MB decoded attachment; without a sink (attachments collected into Buffers) it peaks
 * near baseline + 190 MB.
 * The peak RSS is recorded as a memory row; scripts/reliability-report.js fails CI when it
 * grows more than 25 % over docs/reliability-baseline.json.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';

import { DIST, mb, medianPeak, runChild, RUNS } from './memory-child';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

const MB = 1024 * 1024;
const ATTACHMENT_BYTES = 50 * MB;
const ATTACHMENT_MB = ATTACHMENT_BYTES / MB;
const CHILD = path.join(__dirname, 'child.js');
const USER = 'memory@example.com';
const PASSWORD = 'Memory-Passw0rd';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
let pki: ReturnType<typeof sharedTestPki>;
let tmp: string;

beforeAll(() => {
	for (const file of ['transports/imap/imap-reader.js', 'transports/smtp/smtp-sender.js']) {
		if (!fs.existsSync(path.join(DIST, file))) {
			throw new Error(`dist/${file} is missing: the memory tests measure the built package, run \`npm run build\` first (npm test does)`);
		}
	}
	pki = sharedTestPki();
	tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-memory-'));
});

afterAll(() => {
	if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('peak memory in a fresh process', () => {
	it('IMAP: reading a message with a 50 MB attachment into a hashing sink stays below the idle baseline + what holding it would cost', async () => {
		const dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD } });
		try {
			const attachment = randomBytes(ATTACHMENT_BYTES);
			const expected = sha256(attachment);
			const info = await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({
				from: 'ops@example.org',
				to: USER,
				subject: 'peak memory: 50 MB attachment',
				text: 'see attached',
				attachments: [{ filename: 'big.bin', content: attachment, contentType: 'application/octet-stream' }],
			});
			const raw = info.message as Buffer;
			const messageMb = Math.round((raw.length / MB) * 10) / 10;
			await dovecot.seed(USER, [raw]);
			const [{ uid }] = await dovecot.list(USER, 'INBOX');

			const job = { host: dovecot.host, port: dovecot.tlsPort, user: USER, pass: PASSWORD, caPath: pki.caPath, folder: 'INBOX' };
			const idle = await runChild(CHILD, { ...job, mode: 'imap-idle' });
			const { peak, peaks, results } = await medianPeak(CHILD, { ...job, mode: 'imap-read', uid });
			const baseline = mb(idle.maxRssKiB);
			const intact = results.every((read) => read.sha256 === expected && read.size === ATTACHMENT_BYTES);
			// holding the message: its raw MIME and the decoded attachment
			const limit = Math.round((baseline + messageMb + ATTACHMENT_MB) * 10) / 10;
			const bounded = peak < limit;
			record({
				transport: 'imap',
				kind: 'memory',
				name: 'read 50 MB attachment, peak RSS',
				survived: intact && bounded,
				behaviour: `a ${messageMb} MB message with a 50 MB attachment read from Dovecot and streamed into a hashing sink${intact ? ' (SHA-256 matches)' : ' (SHA-256 DIFFERS)'}: peak RSS ${peak} MB in a fresh process (median of ${peaks.join(' / ')}), idle baseline (same module, connected) ${baseline} MB, bound (baseline + raw message + attachment) ${limit} MB`,
				value: peak,
				unit: 'MB',
				sent: RUNS,
				delivered: results.filter((read) => read.sha256 === expected).length,
				lost: 0,
				duplicated: 0,
			});
			for (const read of results) {
				expect(read.items).toEqual([{ subject: 'peak memory: 50 MB attachment', attachments: 1 }]);
				expect({ sha256: read.sha256, size: read.size }).toEqual({ sha256: expected, size: ATTACHMENT_BYTES });
			}
			expect(peak).toBeLessThan(limit);
		} finally {
			await dovecot.stop();
		}
	}, 300_000);

	it('SMTP: sending a 50 MB attachment streamed from a file stays below the idle baseline + 50 MB', async () => {
		// 50 MB of attachment is about 68 MB of base64 on the wire; the peer (in this process) keeps it
		const peer = await startSmtpPeer({ pki, users: { robot: PASSWORD }, maxSize: 100 * MB });
		try {
			const attachment = randomBytes(ATTACHMENT_BYTES);
			const expected = sha256(attachment);
			const file = path.join(tmp, 'big.bin');
			fs.writeFileSync(file, attachment);

			const job = { host: peer.host, port: peer.port, user: 'robot', pass: PASSWORD, caPath: pki.caPath, from: 'robot@example.com' };
			const idle = await runChild(CHILD, { ...job, mode: 'smtp-idle' });
			// each message is checked and dropped before the next run (the peer holds them in this process)
			const got: Array<Array<{ filename?: string; size: number; sha256: string }>> = [];
			const messageIds: Array<string | undefined> = [];
			const { peak, peaks, results } = await medianPeak(CHILD, { ...job, mode: 'smtp-send', file }, async () => {
				expect(peer.received).toHaveLength(1);
				const mail = await simpleParser(peer.received[0].raw);
				got.push(mail.attachments.map((a) => ({ filename: a.filename, size: a.content.length, sha256: sha256(a.content) })));
				messageIds.push(mail.messageId);
				peer.reset();
			});
			const baseline = mb(idle.maxRssKiB);

			const intact = got.every((atts) => atts.length === 1 && atts[0].sha256 === expected && atts[0].size === ATTACHMENT_BYTES);
			// holding the attachment alone would cost more
			const limit = Math.round((baseline + ATTACHMENT_MB) * 10) / 10;
			const bounded = peak < limit;
			record({
				transport: 'smtp',
				kind: 'memory',
				name: 'send 50 MB attachment, peak RSS',
				survived: intact && bounded,
				behaviour: `a 50 MB attachment streamed from a file over STARTTLS to the SMTP peer${intact ? ' (SHA-256 matches at the peer)' : ' (SHA-256 DIFFERS at the peer)'}: peak RSS ${peak} MB in a fresh process (median of ${peaks.join(' / ')}), idle baseline (same module, connected and signed in) ${baseline} MB, bound (baseline + attachment) ${limit} MB`,
				value: peak,
				unit: 'MB',
				sent: RUNS,
				delivered: got.filter((atts) => atts.length === 1 && atts[0].sha256 === expected).length,
				lost: 0,
				duplicated: 0,
			});
			expect(results.map((send) => send.messageId)).toEqual(messageIds);
			expect(got).toEqual(Array(RUNS).fill([{ filename: 'big.bin', size: ATTACHMENT_BYTES, sha256: expected }]));
			expect(peak).toBeLessThan(limit);
		} finally {
			await peer.close();
		}
	}, 300_000);
});
