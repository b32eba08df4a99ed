'use strict';
// One job of test/memory/graph-peak-memory.test.ts in a fresh Node process (see child.js for
// why: the jest worker's heap must not count, and a shell in between keeps Linux from carrying
// the worker's maxRSS over). It requires the BUILT Graph sender from dist/ and prints one JSON
// line: { maxRssKiB, vmHwmKiB, ... }. The fake Graph and identity run in the test process.
// The job comes as JSON in MAM_MEMORY_JOB:
//   { mode: 'graph-send', dist, graphUrl, authorityHost, tenantId, clientId, clientSecret,
//     mailbox, rcpt, subject, file }
// It gets a token, does verify()'s one read and sends one message with `file` attached. The
// test's baseline is the same job with a small file through the same path (draft + upload session).
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

async function graph() {
	const { GraphSender } = require(path.join(job.dist, 'transports/graph/graph-sender.js'));
	const { appOnlyTokenProvider } = require(path.join(job.dist, 'auth/app-only-token-provider.js'));
	const { resolveCloud } = require(path.join(job.dist, 'auth/clouds.js'));
	const cloud = resolveCloud('custom', { authorityHost: job.authorityHost, graphHost: job.graphUrl });
	const sender = new GraphSender({
		graphHost: cloud.graphHost,
		tokens: appOnlyTokenProvider({ tenantId: job.tenantId, clientId: job.clientId, clientSecret: job.clientSecret, cloud }),
		mailbox: job.mailbox,
	});
	try {
		await sender.verify();
		const result = await sender.send({
			from: { address: job.mailbox },
			to: [{ address: job.rcpt }],
			cc: [],
			bcc: [],
			replyTo: [],
			subject: job.subject,
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
		done({ response: result.response, attempts: result.attempts });
	} finally {
		await sender.close();
	}
}

if (job.mode !== 'graph-send') {
	console.error(`test/memory/graph-child.js: unknown mode ${JSON.stringify(job.mode)}`);
	process.exit(2);
}
graph().then(
	() => process.exit(0),
	(error) => {
		console.error(error && error.stack ? error.stack : String(error));
		process.exit(1);
	},
);
