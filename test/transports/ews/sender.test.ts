import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { simpleParser } from 'mailparser';

import { isDeliveryUnknown } from '../../../transports/contracts';
import { createEwsClient } from '../../../transports/ews/ews-client';
import { EwsSender } from '../../../transports/ews/ews-sender';
import { EWS_CODES, type EwsAuth, type EwsClient, type EwsClientOptions } from '../../../transports/ews/types';
import type { OutgoingMessage } from '../../../model/outgoing-message';
import { mb, runChild } from '../../memory/memory-child';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeEws } = require('../../peers/fake-ews');

const ALICE = 'alice@contoso.example';
const BOB = 'bob@contoso.example';
const SHARED = 'shared@contoso.example';
const HIDDEN = 'hidden@contoso.example';
const PASSWORD = 'Alice-Passw0rd&<>';

let pki: any;
let ews: any;

beforeAll(async () => {
	pki = sharedTestPki();
	ews = await startFakeEws({ pki });
	for (const address of [ALICE, BOB, SHARED, HIDDEN]) ews.addMailbox({ address });
	ews.addUser({ username: 'alice', password: PASSWORD, mailbox: ALICE, delegateOf: [SHARED], sendAs: [] });
}, 60_000);

afterAll(async () => ews?.close());
beforeEach(() => ews.faults.clear());

const ntlm: EwsAuth = { type: 'ntlm', username: 'alice', password: PASSWORD, domain: 'CONTOSO' };

function options(overrides: Partial<EwsClientOptions> = {}): EwsClientOptions {
	return {
		url: ews.url,
		auth: ntlm,
		version: 'Exchange2013_SP1',
		mailbox: '',
		impersonate: false,
		trust: { rejectUnauthorized: true, ca: pki.ca },
		retry: { firstBackoffMs: 20, maxBackoffMs: 500 },
		...overrides,
	};
}

/** The client, and the base64 each CreateItem streamed (decoded): what the sender composed, as sent. */
function tappedClient(overrides: Partial<EwsClientOptions> = {}): { client: EwsClient; composed: Buffer[] } {
	const client = createEwsClient(options(overrides));
	const composed: Buffer[] = [];
	const tapped: EwsClient = {
		...client,
		url: client.url,
		mailbox: client.mailbox,
		version: client.version,
		call: client.call.bind(client),
		mailboxElement: client.mailboxElement.bind(client),
		close: client.close.bind(client),
		callStreaming(operation, body, placeholder, content, callOptions) {
			return client.callStreaming(
				operation,
				body,
				placeholder,
				async () => {
					const source = (await content()) as Readable;
					const parts: Buffer[] = [];
					// A pass-through that keeps a copy: the client reads it as it would the original.
					const copy = new Transform({
						transform(chunk: Buffer | string, _encoding, callback) {
							parts.push(Buffer.from(chunk));
							callback(null, chunk);
						},
						flush(callback) {
							composed.push(Buffer.from(Buffer.concat(parts).toString('latin1'), 'base64'));
							callback();
						},
					});
					return source.pipe(copy);
				},
				callOptions,
			);
		},
	};
	return { client: tapped, composed };
}

function message(overrides: Partial<OutgoingMessage> = {}): OutgoingMessage {
	return {
		from: { name: 'Alice Ä. <Example>', address: ALICE },
		to: [{ name: 'Bob', address: BOB }],
		cc: [{ address: SHARED }],
		bcc: [{ address: HIDDEN }],
		replyTo: [],
		subject: '  Q&A <"Projekt"> \'Grüße\' 日本 😀  ',
		text: 'Hello & <welcome>\r\nline two',
		html: '<p>Hello &amp; <b>welcome</b> 😀</p>',
		attachments: [
			{ filename: 'Bericht <März> & "Q1".txt', contentType: 'text/plain', open: async () => Buffer.from('Zahlen & Fakten\r\n') },
		],
		headers: [{ name: 'X-Workflow', value: 'ews test' }],
		priority: 'high',
		...overrides,
	};
}

describe('EwsSender', () => {
	test('SendAndSaveCopy: the fake received exactly the composed MIME; Bcc delivered but not in the delivered headers; a copy in Sent Items', async () => {
		const { client, composed } = tappedClient();
		const sender = new EwsSender(client);
		const sentBefore = ews.sent.length;
		try {
			const result = await sender.send(message());
			expect(ews.sent.length - sentBefore).toBe(1);
			const sent = ews.sent[ews.sent.length - 1];
			expect(composed).toHaveLength(1);
			expect(Buffer.compare(sent.mime, composed[0])).toBe(0);
			expect(sent).toMatchObject({ mailbox: ALICE, disposition: 'SendAndSaveCopy', from: ALICE, to: [BOB], cc: [SHARED], bcc: [HIDDEN], importance: 'High' });
			expect(sent.messageId).toBe(result.messageId);
			expect(result).toMatchObject({ accepted: [BOB, SHARED, HIDDEN], rejected: [], envelope: { from: ALICE, to: [BOB, SHARED, HIDDEN] }, attempts: 1 });

			const parsed = await simpleParser(sent.mime);
			expect(parsed.subject).toBe(message().subject);
			expect(parsed.text).toBe('Hello & <welcome>\nline two');
			expect(parsed.attachments[0].filename).toBe('Bericht <März> & "Q1".txt');
			expect(parsed.headers.get('x-workflow')).toBe('ews test');
			expect(sent.mime.toString('latin1')).toMatch(/^Importance: High\r$/m);
			expect(sent.mime.toString('latin1')).toMatch(/^X-Priority: 1 \(Highest\)\r$/m);

			const hidden = ews.items(HIDDEN, 'inbox');
			expect(hidden).toHaveLength(1);
			expect(hidden[0].mime.toString('latin1')).not.toMatch(/^Bcc:/im);
			expect(ews.items(BOB, 'inbox')[0].mime.toString('latin1')).not.toContain(HIDDEN);
			const copies = ews.items(ALICE, 'sentitems');
			expect(copies).toHaveLength(1);
			expect(copies[0].subject).toBe(message().subject);
		} finally {
			await sender.close();
		}
	});

	test('SendOnly (saveToSentItems false) leaves nothing in Sent Items; importance low', async () => {
		const { client } = tappedClient();
		const sender = new EwsSender(client);
		const copiesBefore = ews.items(ALICE, 'sentitems').length;
		try {
			await sender.send(message({ saveToSentItems: false, priority: 'low', bcc: [], subject: 'send only' }));
			const sent = ews.sent[ews.sent.length - 1];
			expect(sent).toMatchObject({ disposition: 'SendOnly', subject: 'send only', importance: 'Low' });
			expect(ews.items(ALICE, 'sentitems').length).toBe(copiesBefore);
		} finally {
			await sender.close();
		}
	});

	test('From a mailbox without Send As: EWS_SEND_AS_DENIED, nothing sent', async () => {
		const sender = new EwsSender(createEwsClient(options()));
		const sentBefore = ews.sent.length;
		try {
			const error = await sender.send(message({ from: { address: SHARED } })).catch((e) => e);
			expect(error.code).toBe(EWS_CODES.SEND_AS_DENIED);
			expect(error.ewsCode).toBe('ErrorSendAsDenied');
			expect(error.hint).toMatch(/Send As/);
			expect(ews.sent.length).toBe(sentBefore);
		} finally {
			await sender.close();
		}
	});

	test('the connection dies after CreateItem went out: EWS_DELIVERY_UNKNOWN, sent exactly once, not repeated', async () => {
		const sender = new EwsSender(createEwsClient(options()));
		const sentBefore = ews.sent.length;
		try {
			await sender.verify();
			const requestsBefore = ews.requests.length;
			ews.faults.dropAfterRequest(1, 'CreateItem');
			const error = await sender.send(message({ subject: 'maybe sent' })).catch((e) => e);
			expect(error.code).toBe(EWS_CODES.DELIVERY_UNKNOWN);
			expect(isDeliveryUnknown(error)).toBe(true);
			expect(error.hint).toMatch(/Sent Items/);
			expect(ews.sent.length - sentBefore).toBe(1);
			expect(ews.requests.slice(requestsBefore).filter((r: any) => r.operation === 'CreateItem')).toHaveLength(1);
		} finally {
			await sender.close();
		}
	});

	test('ErrorServerBusy on CreateItem: the server did not act, so it is retried and sent once', async () => {
		const sender = new EwsSender(createEwsClient(options({ auth: { type: 'basic', username: 'alice', password: PASSWORD } })));
		const sentBefore = ews.sent.length;
		try {
			ews.faults.serverBusy(1, 100);
			const result = await sender.send(message({ subject: 'after busy' }));
			expect(ews.sent.length - sentBefore).toBe(1);
			expect(ews.sent[ews.sent.length - 1].messageId).toBe(result.messageId);
		} finally {
			await sender.close();
		}
	});

	test('a subject with a character XML cannot carry goes inside the base64 MIME, so it is sent intact (no XML field holds it)', async () => {
		const sender = new EwsSender(createEwsClient(options()));
		try {
			await sender.send(message({ subject: 'bell \u0007 inside', bcc: [] }));
			const parsed = await simpleParser(ews.sent[ews.sent.length - 1].mime);
			expect(parsed.subject).toBe('bell \u0007 inside');
		} finally {
			await sender.close();
		}
	});

	test('verify() opens the Inbox (GetFolder) and sends nothing', async () => {
		const sender = new EwsSender(createEwsClient(options({ mailbox: SHARED })));
		const before = ews.requests.length;
		const sentBefore = ews.sent.length;
		try {
			await sender.verify();
			// The NTLM negotiate leg has no SOAP body (no operation).
			expect(ews.requests.slice(before).map((r: any) => r.operation).filter(Boolean)).toEqual(['GetFolder']);
			expect(ews.sent.length).toBe(sentBefore);
		} finally {
			await sender.close();
		}
	});
});

/**
 * A child process (fresh heap, maxRSS of its own) sends one message with an attachment streamed
 * from a generator; the fake server runs here, out of the measurement. The TypeScript sources are
 * transpiled on load, the same way for the baseline (8 MB: enough churn that the collector is at its steady
 * state) and the 25 MB run. Held whole, the 17 MB more would cost 17 MB raw plus twice its base64.
 */
const ROOT = path.resolve(__dirname, '..', '..', '..');
const CHILD_SOURCE = `'use strict';
const fs = require('node:fs');
const crypto = require('node:crypto');
const { Readable } = require('node:stream');
const ts = require(${JSON.stringify(path.join(ROOT, 'node_modules/typescript'))});
require.extensions['.ts'] = (module, filename) => {
	const output = ts.transpileModule(fs.readFileSync(filename, 'utf8'), { fileName: filename, compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText;
	module._compile(output, filename);
};
const job = JSON.parse(process.env.MAM_MEMORY_JOB);
const { createEwsClient } = require(${JSON.stringify(path.join(ROOT, 'transports/ews/ews-client.ts'))});
const { EwsSender } = require(${JSON.stringify(path.join(ROOT, 'transports/ews/ews-sender.ts'))});
function vmHwmKiB() {
	const match = /^VmHWM:\\s+(\\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
	return match ? Number(match[1]) : undefined;
}
async function main() {
	const hash = crypto.createHash('sha256');
	let seed = crypto.createHash('sha256').update('ews-large').digest();
	const open = async () => Readable.from((function* () {
		for (let left = job.bytes; left > 0; ) {
			const size = Math.min(256 * 1024, left);
			const chunk = Buffer.alloc(size);
			for (let at = 0; at < size; at += 32) { seed = crypto.createHash('sha256').update(seed).digest(); seed.copy(chunk, at); }
			hash.update(chunk);
			left -= size;
			yield chunk;
		}
	})());
	const sender = new EwsSender(createEwsClient({ url: job.url, auth: { type: 'basic', username: 'alice', password: job.password }, version: 'Exchange2013_SP1', mailbox: '', impersonate: false, trust: { rejectUnauthorized: true, ca: job.ca } }));
	await sender.verify();
	const result = await sender.send({ from: { address: job.from }, to: [{ address: job.to }], cc: [], bcc: [], replyTo: [], subject: job.subject, text: 'see attached', attachments: [{ filename: 'large.bin', contentType: 'application/octet-stream', size: job.bytes, open }], headers: [], priority: 'normal' });
	await sender.close();
	process.stdout.write(JSON.stringify({ messageId: result.messageId, sha256: hash.digest('hex'), maxRssKiB: process.resourceUsage().maxRSS, vmHwmKiB: vmHwmKiB() }) + '\\n');
}
main().then(() => process.exit(0), (error) => { console.error(error && error.stack || String(error)); process.exit(1); });
`;

describe('large attachments', () => {
	let tmp: string;
	beforeAll(() => {
		tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-ews-send-'));
		fs.writeFileSync(path.join(tmp, 'child.js'), CHILD_SOURCE);
	});
	afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

	test('a 25 MB attachment goes through whole, streamed: peak memory does not grow with the attachment (8 MB baseline + less than 12 MB)', async () => {
		const job = { url: ews.url, password: PASSWORD, ca: pki.ca, from: ALICE, to: BOB };
		const baseline = await runChild(path.join(tmp, 'child.js'), { ...job, mode: 'ews-send', bytes: 8 * 1024 * 1024, subject: 'baseline' });
		const large = await runChild(path.join(tmp, 'child.js'), { ...job, mode: 'ews-send', bytes: 25 * 1024 * 1024, subject: 'large' });

		const sent = ews.sent.find((entry: any) => entry.messageId === large.messageId);
		expect(sent).toBeDefined();
		const parsed = await simpleParser(sent.mime);
		expect(parsed.attachments).toHaveLength(1);
		expect(parsed.attachments[0].size).toBe(25 * 1024 * 1024);
		expect(createHash('sha256').update(parsed.attachments[0].content).digest('hex')).toBe(large.sha256);

		const growth = mb(large.maxRssKiB) - mb(baseline.maxRssKiB);
		console.log(`EWS send peak RSS: ${mb(baseline.maxRssKiB)} MB with 8 MB, ${mb(large.maxRssKiB)} MB with 25 MB (+${growth.toFixed(1)} MB)`);
		// Holding the attachment would cost at least its 25 MB plus 33 MB of base64.
		expect(growth).toBeLessThan(12);
	}, 180_000);
});
