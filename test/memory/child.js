'use strict';
// One job of test/memory/peak-memory.test.ts, run in a fresh Node process so the jest worker's
// own heap (and earlier tests) cannot inflate the figure. It requires the BUILT package from
// dist/, does the one thing it is told, and prints one JSON line at the end:
// { maxRssKiB, vmHwmKiB, ... } with process.resourceUsage().maxRSS (the peak resident set,
// KiB) and, on Linux, VmHWM from /proc/self/status (the same peak, of this process image only).
// Linux carries maxRSS over fork + exec: a child spawned straight from the jest worker would
// start with the worker's peak, so the test starts this script through a shell (see
// peak-memory.test.ts) and checks that both figures agree.
// The job comes as JSON in MAM_MEMORY_JOB:
//   { mode: 'imap-idle' | 'imap-read', dist, host, port, user, pass, caPath, folder?, uid? }
//   { mode: 'smtp-idle' | 'smtp-send', dist, host, port, user, pass, caPath, from?, file? }
// The idle modes require the same module and connect (and sign in), nothing more: the
// baseline the streaming modes are compared with.
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const job = JSON.parse(process.env.MAM_MEMORY_JOB || '{}');

function vmHwmKiB() {
	try {
		const match = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
		return match ? Number(match[1]) : undefined;
	} catch {
		return undefined; // not Linux
	}
}

function done(result) {
	process.stdout.write(`${JSON.stringify({ ...result, maxRssKiB: process.resourceUsage().maxRSS, vmHwmKiB: vmHwmKiB() })}\n`);
}

async function imap() {
	const { ImapReader } = require(path.join(job.dist, 'transports/imap/imap-reader.js'));
	const reader = new ImapReader({
		host: job.host,
		port: job.port,
		security: 'tls',
		auth: { type: 'password', user: job.user, pass: job.pass },
		rejectUnauthorized: true,
		ca: fs.readFileSync(job.caPath, 'utf8'),
	});
	await reader.connect();
	try {
		// Opens the folder; its cursor carries the UIDVALIDITY the message's id needs.
		const { uidValidity } = JSON.parse((await reader.changesSince(job.folder ?? 'INBOX', undefined)).cursor);
		if (job.mode === 'imap-idle') return done({});
		const attachments = [];
		const sink = {
			async attachment(_id, _index, info, content) {
				const hash = createHash('sha256');
				let size = 0;
				for await (const chunk of content) {
					hash.update(chunk);
					size += chunk.length;
				}
				attachments.push({ filename: info.filename, sha256: hash.digest('hex'), size });
			},
			async raw(_id, content) {
				content.resume();
				await new Promise((resolve, reject) => content.once('end', resolve).once('error', reject));
			},
		};
		const items = [];
		// a generous parse deadline: this test measures memory, not a slow machine's speed
		for await (const message of reader.fetch(job.folder ?? 'INBOX', [`${uidValidity}:${job.uid}`], { sink, limits: { timeoutMs: 300_000 } })) {
			items.push(message.error ? { error: message.error.message } : { subject: message.subject, attachments: message.attachments.length });
		}
		const [first] = attachments;
		done({ items, attachments, sha256: first?.sha256, size: first?.size });
	} finally {
		await reader.close();
	}
}

async function smtp() {
	const { SmtpSender } = require(path.join(job.dist, 'transports/smtp/smtp-sender.js'));
	const sender = new SmtpSender({
		host: job.host,
		port: job.port,
		security: 'starttls',
		auth: { type: 'password', user: job.user, pass: job.pass },
		rejectUnauthorized: true,
		ca: fs.readFileSync(job.caPath, 'utf8'),
		maxConnections: 1,
		retry: { retries: 0 },
	});
	try {
		if (job.mode === 'smtp-idle') {
			await sender.verify();
			return done({});
		}
		const result = await sender.send({
			from: { address: job.from },
			to: [{ address: 'rcpt@example.org' }],
			cc: [],
			bcc: [],
			replyTo: [],
			subject: 'peak memory: 50 MB attachment',
			text: 'see attached',
			attachments: [
				{
					filename: path.basename(job.file),
					contentType: 'application/octet-stream',
					size: fs.statSync(job.file).size,
					open: async () => fs.createReadStream(job.file),
				},
			],
			headers: [],
			priority: 'normal',
		});
		done({ messageId: result.messageId, accepted: result.accepted });
	} finally {
		await sender.close();
	}
}

const modes = { 'imap-idle': imap, 'imap-read': imap, 'smtp-idle': smtp, 'smtp-send': smtp };
if (!modes[job.mode]) {
	console.error(`test/memory/child.js: unknown mode ${JSON.stringify(job.mode)}`);
	process.exit(2);
}
modes[job.mode]().then(
	() => process.exit(0),
	(error) => {
		console.error(error && error.stack ? error.stack : String(error));
		process.exit(1);
	},
);
