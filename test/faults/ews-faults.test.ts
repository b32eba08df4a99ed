/**
 * Exchange Web Services fault injection: the fake EWS server (test/peers/fake-ews.js) answers
 * ErrorServerBusy with a back-off hint, drops the connection after it acted on a request,
 * stalls, refuses a bearer token with 401 and forgets sync states, while the package sends,
 * reads and follows the trigger's SyncFolderItems cursor; mail from strangers is malformed on
 * purpose. Every count comes from what the fake holds or recorded as sent: 0 lost,
 * 0 duplicated, each new message emitted by the trigger exactly once.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';

import { appOnlyTokenProvider } from '../../auth/app-only-token-provider';
import { resolveCloud } from '../../auth/clouds';
import type { IncomingMessage, UnreadableMessage } from '../../model/incoming-message';
import type { OutgoingMessage } from '../../model/outgoing-message';
import { createEwsClient } from '../../transports/ews/ews-client';
import { EwsReader } from '../../transports/ews/ews-reader';
import { EwsSender } from '../../transports/ews/ews-sender';
import type { EwsAuth, EwsClient, EwsClientOptions } from '../../transports/ews/types';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeEws } = require('../peers/fake-ews');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

type FakeEws = Awaited<ReturnType<typeof startFakeEws>>;
type FakeIdentity = Awaited<ReturnType<typeof startFakeIdentity>>;
type HeldItem = { id: string; mime: Buffer; subject: string; isRead: boolean };
type SentRecord = { mailbox: string; mime: Buffer };

const TENANT = '7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d';
const SECRET = 'ews-faults-app-secret-value';
const USER = { username: 'faults', domain: 'CONTOSO', password: 'Ews-faults-Passw0rd', mailbox: 'faults@contoso.example' };
const APP_MAILBOX = 'faults-app@contoso.example';

let pki: ReturnType<typeof sharedTestPki>;
let idp: FakeIdentity;
let ews: FakeEws;
let clientId: string;
const clients: EwsClient[] = [];

beforeAll(async () => {
	pki = sharedTestPki();
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	clientId = randomUUID();
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: SECRET }], appRoles: ['full_access_as_app'] });
	idp.grantMailbox({ tenant: TENANT, clientId, mailbox: APP_MAILBOX });
	ews = await startFakeEws({ pki, identity: idp });
	ews.addMailbox({ address: USER.mailbox });
	ews.addMailbox({ address: APP_MAILBOX });
	ews.addUser(USER);
	ews.grantApp({ clientId, mailboxes: [APP_MAILBOX] });
});

afterAll(async () => {
	for (const client of clients) await client.close().catch(() => undefined);
	await ews?.close();
	await idp?.close();
});

afterEach(() => ews.faults.clear());

const basic = (): EwsAuth => ({ type: 'basic', username: USER.username, password: USER.password });
function bearer(): EwsAuth {
	const cloud = resolveCloud('custom', { authorityHost: idp.authorityHost, exchangeHost: 'https://outlook.office365.com' });
	return { type: 'bearer', flavour: 'app-only', tokens: appOnlyTokenProvider({ tenantId: TENANT, clientId, clientSecret: SECRET, cloud }) };
}

/** Client options as the connection builds them, with back-off shrunk so the suite stays quick (the policy is the same). */
function client(options: Partial<EwsClientOptions> & { app?: boolean } = {}): EwsClient {
	const { app, ...rest } = options;
	const made = createEwsClient({
		url: ews.url,
		auth: app ? bearer() : basic(),
		version: 'Exchange2013_SP1',
		mailbox: app ? APP_MAILBOX : '',
		impersonate: Boolean(app),
		trust: { rejectUnauthorized: true, ca: pki.ca },
		retry: { attempts: 4, firstBackoffMs: 5, maxBackoffMs: 100 },
		...rest,
	});
	clients.push(made);
	return made;
}
const mailboxOf = (app?: boolean) => (app ? APP_MAILBOX : USER.mailbox);

let counter = 0;
function strangerMime(subject: string, extra = ''): Buffer {
	return Buffer.from(
		[
			'From: Outside <outside@example.org>',
			`To: ${USER.mailbox}`,
			`Subject: ${subject}`,
			`Message-ID: <${randomUUID()}@example.org>`,
			'MIME-Version: 1.0',
			'Content-Type: text/plain; charset=utf-8',
			'',
			`body of ${subject}${extra}`,
			'',
		].join('\r\n'),
	);
}
/** Messages that arrive from outside into a folder (its id); returns their subjects (unique per run). */
function arrive(count: number, scenario: string, options: { folder?: string; app?: boolean } = {}): string[] {
	return Array.from({ length: count }, () => {
		const subject = `${scenario} #${++counter}`;
		ews.deliver(mailboxOf(options.app), strangerMime(subject), { folder: options.folder ?? 'inbox' });
		return subject;
	});
}
type RequestEntry = { operation: string | null; status: number; scheme: string | null; responseCodes: string[]; dropped?: boolean; stalled?: boolean };
/** The fake's request log from `from` on: what fired where. */
const requestsSince = (from: number) => (ews.requests as RequestEntry[]).slice(from);
const held = (mailbox: string, folder = 'inbox') => ews.items(mailbox, folder) as HeldItem[];
const subjectOfId = (mailbox: string, id: string, folder = 'inbox') => held(mailbox, folder).find((item) => item.id === id)?.subject ?? `unknown:${id}`;

/** What the package handed over, against what the mailbox holds: lost = expected but not handed over. */
function count(expected: string[], handedOver: Array<string | undefined>) {
	const seen = new Map<string, number>();
	for (const subject of handedOver) if (subject) seen.set(subject, (seen.get(subject) ?? 0) + 1);
	const lost = expected.filter((subject) => !seen.has(subject)).length;
	const duplicated = [...seen.values()].reduce((n, copies) => n + copies - 1, 0);
	const unexpected = handedOver.filter((subject) => !subject || !expected.includes(subject)).length;
	return { sent: expected.length, delivered: expected.length - lost, lost, duplicated, unexpected };
}

function row(name: string, tally: { sent: number; delivered: number; lost: number; duplicated: number; deliveryUnknown?: number }, survived: boolean, behaviour: string, allowsDeliveryUnknown = false) {
	record({
		transport: 'ews',
		kind: 'fault',
		name,
		survived,
		behaviour,
		sent: tally.sent,
		delivered: tally.delivered,
		lost: tally.lost,
		duplicated: tally.duplicated,
		...(tally.deliveryUnknown !== undefined ? { deliveryUnknown: tally.deliveryUnknown } : {}),
		...(allowsDeliveryUnknown ? { allowsDeliveryUnknown: true } : {}),
	});
}

/** A folder of its own per scenario (named after it, under the mailbox root), so counts never mix: its id. */
function folderFor(name: string, app = false): string {
	return ews.addFolder(mailboxOf(app), name, 'msgfolderroot');
}

/** Reads a whole folder (search + fetch) with a reader of its own client. */
async function readFolder(folder: string, options: { app?: boolean; timeoutMs?: number } = {}) {
	const reader = new EwsReader(client({ app: options.app, ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}) }), { pageSize: 10, fetchBatch: 5 });
	try {
		const ids = await reader.search(folder, {}, { newestFirst: false, limit: 1000 });
		const messages: Array<IncomingMessage | UnreadableMessage> = [];
		for await (const message of reader.fetch(folder, ids, {})) messages.push(message);
		return messages;
	} finally {
		await reader.close();
	}
}
const subjectOf = (m: IncomingMessage | UnreadableMessage) => ('error' in m ? undefined : m.subject);

describe('reading through EWS under faults: every message once, or a clear failure', () => {
	it('read-server-busy-burst', async () => {
		const name = 'read-server-busy-burst';
		const folder = folderFor(name);
		const expected = arrive(23, name, { folder });
		const from = ews.requests.length;
		ews.faults.serverBusy(3, 20);
		const messages = await readFolder(name);
		const tally = count(expected, messages.map(subjectOf));
		expect(requestsSince(from).filter((r) => r.responseCodes.includes('ErrorServerBusy'))).toHaveLength(3);
		expect(tally).toEqual({ sent: 23, delivered: 23, lost: 0, duplicated: 0, unexpected: 0 });
		row(name, tally, true, `3 requests in a row answered ErrorServerBusy (BackOffMilliseconds 20): waited as told and repeated, all 23 messages read once`);
	});

	it('read-connection-dropped-after-get-item', async () => {
		const name = 'read-connection-dropped-after-get-item';
		const folder = folderFor(name);
		const expected = arrive(12, name, { folder });
		const from = ews.requests.length;
		ews.faults.dropAfterRequest(2, 'GetItem');
		const messages = await readFolder(name);
		const tally = count(expected, messages.map(subjectOf));
		expect(requestsSince(from).filter((r) => r.dropped && r.operation === 'GetItem')).toHaveLength(2);
		expect(tally).toEqual({ sent: 12, delivered: 12, lost: 0, duplicated: 0, unexpected: 0 });
		row(name, tally, true, 'the connection was dropped after two GetItem requests were answered server-side: reads are safe to repeat, repeated, all 12 read once');
	});

	it('read-stall-times-out-within-bound', async () => {
		const name = 'read-stall-times-out-within-bound';
		const folder = folderFor(name);
		const expected = arrive(6, name, { folder });
		const from = ews.requests.length;
		ews.faults.stall(1);
		const started = Date.now();
		let messages: Array<IncomingMessage | UnreadableMessage> = [];
		let failure: (Error & { code?: string }) | undefined;
		try {
			messages = await readFolder(name, { timeoutMs: 700 });
		} catch (error) {
			failure = error as Error & { code?: string };
		}
		const elapsed = Date.now() - started;
		// One stalled request: the idle time-out ends it, the read is repeated and completes,
		// or it fails with a clear time-out; never hangs past a few time-outs.
		expect(requestsSince(from).filter((r) => r.stalled)).toHaveLength(1);
		expect(elapsed).toBeGreaterThanOrEqual(700); // it did wait for the idle time-out
		expect(elapsed).toBeLessThan(8000);
		if (failure) expect(failure.code).toBe('EWS_TIMEOUT');
		const tally = count(failure ? [] : expected, messages.map(subjectOf));
		expect(tally.duplicated).toBe(0);
		expect(tally.lost).toBe(0);
		row(name, { ...tally, sent: expected.length, delivered: messages.length }, true, `one request stalled (accepted, never answered): ${failure ? `failed with ${failure.code} after ${elapsed} ms` : `timed out after 700 ms idle, repeated, all ${messages.length} read once in ${elapsed} ms`}`);
	});

	it('read-bearer-refused-mid-run-renewed', async () => {
		const name = 'read-bearer-refused-mid-run-renewed';
		const folder = folderFor(name, true);
		const expected = arrive(15, name, { folder, app: true });
		const reader = new EwsReader(client({ app: true }), { pageSize: 10, fetchBatch: 5 });
		const ids = await reader.search(name, {}, { newestFirst: false, limit: 100 });
		const tokensBefore = idp.counts({ grantType: 'client_credentials', clientId, status: 200 });
		ews.faults.http401(1); // the cached token is refused once, mid-run
		const messages: Array<IncomingMessage | UnreadableMessage> = [];
		for await (const message of reader.fetch(name, ids, {})) messages.push(message);
		await reader.close();
		const tally = count(expected, messages.map(subjectOf));
		const tokens = idp.counts({ grantType: 'client_credentials', clientId, status: 200 }) - tokensBefore;
		expect(requestsSince(0).some((r) => r.status === 401 && r.scheme === 'Bearer')).toBe(true);
		expect(tokens).toBe(1); // one renewal after the 401, nothing more
		expect(tally).toEqual({ sent: 15, delivered: 15, lost: 0, duplicated: 0, unexpected: 0 });
		row(name, tally, true, 'a request mid-run answered 401 Bearer error="invalid_token": one new token, the request repeated, all 15 read once');
	});
});

const outgoing = (subject: string, from = USER.mailbox): OutgoingMessage => ({
	from: { address: from },
	to: [{ address: 'someone@example.org' }],
	cc: [],
	bcc: [],
	replyTo: [],
	subject,
	text: 'fault test',
	headers: [],
	priority: 'normal',
	attachments: [{ filename: 'payload.txt', contentType: 'text/plain', open: async () => Readable.from([Buffer.from(`payload of ${subject}`)]) }],
});

interface SendTally {
	sent: number;
	delivered: number;
	lost: number;
	duplicated: number;
	deliveryUnknown: number;
	codes: string[];
}

/** Sends `count` messages one after another and counts what the fake recorded as sent. */
async function sendSome(scenario: string, count: number, options: { app?: boolean; timeoutMs?: number } = {}): Promise<SendTally> {
	const sender = new EwsSender(client({ app: options.app, ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}) }));
	const outcomes: Array<{ ok: boolean; code?: string }> = [];
	try {
		for (let i = 0; i < count; i++) {
			try {
				await sender.send(outgoing(`${scenario} #${i}`, mailboxOf(options.app)));
				outcomes.push({ ok: true });
			} catch (error) {
				if (process.env.DEBUG_FAULTS) console.log(error);
				outcomes.push({ ok: false, code: (error as { code?: string }).code });
			}
		}
	} finally {
		await sender.close();
	}
	let delivered = 0;
	let lost = 0;
	let duplicated = 0;
	let deliveryUnknown = 0;
	for (const [i, outcome] of outcomes.entries()) {
		const copies = (ews.sent as SentRecord[]).filter((s) => s.mime.includes(`payload of ${scenario} #${i}`) || s.mime.includes(Buffer.from(`payload of ${scenario} #${i}`).toString('base64')));
		if (copies.length) delivered++;
		duplicated += Math.max(0, copies.length - 1);
		if (outcome.code === 'EWS_DELIVERY_UNKNOWN') deliveryUnknown++;
		// Lost: reported sent but never sent, or failed without a code to act on.
		if ((outcome.ok && copies.length === 0) || (!outcome.ok && !outcome.code)) lost++;
	}
	return { sent: outcomes.length, delivered, lost, duplicated, deliveryUnknown, codes: outcomes.filter((o) => !o.ok).map((o) => o.code ?? 'NONE') };
}

describe('sending through EWS under faults: never lost, never twice', () => {
	it('send-server-busy-burst', async () => {
		const name = 'send-server-busy-burst';
		const from = ews.requests.length;
		ews.faults.serverBusy(3, 20);
		const tally = await sendSome(name, 3);
		expect(requestsSince(from).filter((r) => r.responseCodes.includes('ErrorServerBusy'))).toHaveLength(3);
		// ErrorServerBusy says the server did not act: repeating is safe and each goes out once.
		expect(tally).toMatchObject({ sent: 3, delivered: 3, lost: 0, duplicated: 0, deliveryUnknown: 0 });
		row(name, tally, true, '3 requests in a row answered ErrorServerBusy (BackOffMilliseconds 20): waited, repeated, 3/3 sent once');
	});

	it('send-connection-dropped-during-create-item', async () => {
		const name = 'send-connection-dropped-during-create-item';
		const from = ews.requests.length;
		ews.faults.dropAfterRequest(1, 'CreateItem');
		const tally = await sendSome(name, 3);
		expect(requestsSince(from).filter((r) => r.dropped && r.operation === 'CreateItem')).toHaveLength(1);
		// The server acted on the CreateItem (it sent the mail) and the answer was lost: the
		// package must say delivery unknown and must not send it again.
		expect(tally.duplicated).toBe(0);
		expect(tally.lost).toBe(0);
		expect(tally.deliveryUnknown).toBe(1);
		expect(tally.codes).toEqual(['EWS_DELIVERY_UNKNOWN']);
		expect(tally.delivered).toBe(3);
		row(name, tally, true, `the connection dropped after the server took a CreateItem (SendAndSaveCopy): reported EWS_DELIVERY_UNKNOWN, not repeated; 3/3 sent, none twice`, true);
	});

	it('send-stall-times-out-within-bound', async () => {
		const name = 'send-stall-times-out-within-bound';
		const from = ews.requests.length;
		ews.faults.stall(1);
		const started = Date.now();
		const tally = await sendSome(name, 2, { timeoutMs: 700 });
		const elapsed = Date.now() - started;
		expect(requestsSince(from).filter((r) => r.stalled)).toHaveLength(1);
		expect(elapsed).toBeGreaterThanOrEqual(700);
		expect(elapsed).toBeLessThan(8000);
		expect(tally.duplicated).toBe(0);
		expect(tally.lost).toBe(0);
		// a stalled CreateItem cannot be told from one the server is still acting on: not repeated
		for (const code of tally.codes) expect(['EWS_TIMEOUT', 'EWS_DELIVERY_UNKNOWN']).toContain(code);
		row(name, tally, tally.duplicated === 0 && tally.lost === 0, `one CreateItem stalled: ${tally.codes.length ? `failed clearly (${tally.codes.join(', ')}) after the 700 ms idle time-out, not repeated` : 'repeated'}; ${tally.delivered}/2 sent, none twice, ${elapsed} ms in all`, tally.deliveryUnknown > 0);
	});

	it('send-bearer-refused-mid-run-renewed', async () => {
		const name = 'send-bearer-refused-mid-run-renewed';
		const sender = new EwsSender(client({ app: true }));
		const subjects = [`${name} #0`, `${name} #1`, `${name} #2`];
		await sender.send(outgoing(subjects[0], APP_MAILBOX));
		const tokensBefore = idp.counts({ grantType: 'client_credentials', clientId, status: 200 });
		ews.faults.http401(1);
		await sender.send(outgoing(subjects[1], APP_MAILBOX));
		await sender.send(outgoing(subjects[2], APP_MAILBOX));
		await sender.close();
		const sent = (ews.sent as SentRecord[]).filter((s) => subjects.some((subject) => s.mime.includes(subject)));
		const tally = { sent: 3, delivered: sent.length, lost: 3 - Math.min(3, sent.length), duplicated: Math.max(0, sent.length - 3), deliveryUnknown: 0 };
		expect(idp.counts({ grantType: 'client_credentials', clientId, status: 200 }) - tokensBefore).toBe(1); // one renewal
		expect(tally).toMatchObject({ delivered: 3, lost: 0, duplicated: 0 });
		row(name, tally, true, 'a CreateItem answered 401 Bearer error="invalid_token" (refused before acting): one new token, repeated, 3/3 sent once');
	});
});

interface TriggerRun {
	emitted: string[];
	cursor: string | undefined;
}

/** One trigger poll as n8n runs it: a fresh client and reader (as after a restart) and the stored cursor. */
async function poll(run: TriggerRun, folder: { name: string; id: string }, app = false): Promise<{ ids: string[]; baseline?: string }> {
	const reader = new EwsReader(client({ app }));
	try {
		const changes = await reader.changesSince(folder.name, run.cursor);
		run.cursor = changes.cursor;
		for (const id of changes.ids) run.emitted.push(subjectOfId(mailboxOf(app), id, folder.id));
		return changes;
	} finally {
		await reader.close();
	}
}

describe('the EWS trigger (SyncFolderItems) under faults: each new message emitted exactly once', () => {
	it('trigger-invalid-sync-state', async () => {
		const name = 'trigger-invalid-sync-state';
		const folder = { name, id: folderFor(name) };
		arrive(4, `${name} old`, { folder: folder.id });
		const run: TriggerRun = { emitted: [], cursor: undefined };
		expect((await poll(run, folder)).baseline).toBe('first');
		const expected = arrive(10, name, { folder: folder.id });
		await poll(run, folder);
		expected.push(...arrive(5, name, { folder: folder.id }));
		ews.faults.invalidateSyncStates(USER.mailbox);
		const recovered = await poll(run, folder);
		expect(recovered.baseline).toBeUndefined(); // nothing lost, so nothing to flag
		expected.push(...arrive(3, name, { folder: folder.id }));
		await poll(run, folder);
		const tally = count(expected, run.emitted);
		expect(requestsSince(0).some((r) => r.responseCodes.includes('ErrorInvalidSyncStateData'))).toBe(true);
		expect(tally).toEqual({ sent: 18, delivered: 18, lost: 0, duplicated: 0, unexpected: 0 });
		row(name, tally, true, 'Exchange forgot the sync state between polls (ErrorInvalidSyncStateData): synced again from scratch, only mail newer than the watermark emitted; 18 new messages once, the 4 old never');
	});

	it('trigger-burst-200-across-restarts', async () => {
		const name = 'trigger-burst-200-across-restarts';
		const folder = { name, id: folderFor(name) };
		arrive(7, `${name} old`, { folder: folder.id });
		const run: TriggerRun = { emitted: [], cursor: undefined };
		await poll(run, folder);
		const from = ews.requests.length;
		const expected: string[] = [];
		let failedPolls = 0;
		for (let round = 0; round < 5; round++) {
			expected.push(...arrive(40, name, { folder: folder.id }));
			if (round === 1) ews.faults.serverBusy(2, 10);
			if (round === 2) ews.faults.dropAfterRequest(1, 'SyncFolderItems');
			if (round === 3) ews.faults.invalidateSyncStates(USER.mailbox);
			try {
				await poll(run, folder); // a fresh reader each time: n8n restarted in between
			} catch {
				failedPolls++; // a poll may fail clearly; the next one catches up from the stored cursor
			}
			ews.faults.clear();
		}
		await poll(run, folder);
		const tally = count(expected, run.emitted);
		const fired = requestsSince(from);
		expect(fired.filter((r) => r.responseCodes.includes('ErrorServerBusy'))).toHaveLength(2);
		expect(fired.filter((r) => r.dropped && r.operation === 'SyncFolderItems')).toHaveLength(1);
		expect(fired.some((r) => r.responseCodes.includes('ErrorInvalidSyncStateData'))).toBe(true);
		expect(tally).toEqual({ sent: 200, delivered: 200, lost: 0, duplicated: 0, unexpected: 0 });
		row(name, tally, true, `5 bursts of 40 with a fresh reader per poll (simulated restarts), ErrorServerBusy, a dropped SyncFolderItems answer and a forgotten sync state among them${failedPolls ? ` (${failedPolls} poll(s) failed, the next caught up)` : ''}: 200 emitted once, the 7 old never`);
	});

	it('trigger-many-pages-and-changes-only', async () => {
		const name = 'trigger-many-pages-and-changes-only';
		const folder = { name, id: folderFor(name) };
		const run: TriggerRun = { emitted: [], cursor: undefined };
		await poll(run, folder);
		// more than one SyncFolderItems page (MaxChangesReturned 512)
		const expected = arrive(600, name, { folder: folder.id });
		await poll(run, folder);
		// marked read and moved: changes, not new mail
		const reader = new EwsReader(client());
		const some = held(USER.mailbox, folder.id).slice(0, 5).map((item) => item.id);
		await reader.apply(name, some, { type: 'markRead' });
		await reader.close();
		await poll(run, folder);
		const tally = count(expected, run.emitted);
		expect(tally).toEqual({ sent: 600, delivered: 600, lost: 0, duplicated: 0, unexpected: 0 });
		row(name, tally, true, '600 new messages over two SyncFolderItems pages, then 5 of them marked read (ReadFlagChange): 600 emitted once, none again');
	});
});

describe('mail from strangers through EwsReader: each an item or an UnreadableMessage in bounded time', () => {
	const HOSTILE: Array<{ name: string; mime: () => Buffer }> = [
		{ name: 'no-header-at-all', mime: () => Buffer.from('just some bytes with no header and no blank line') },
		{ name: 'binary-garbage', mime: () => Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)) },
		{ name: 'empty', mime: () => Buffer.alloc(0) },
		{ name: 'huge-header-2mb', mime: () => Buffer.concat([Buffer.from(`Subject: huge\r\nX-Huge: ${'a'.repeat(2 * 1024 * 1024)}\r\n`), strangerMime('after huge')]) },
		{ name: 'ten-thousand-headers', mime: () => Buffer.from(`${Array.from({ length: 10_000 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\nSubject: many headers\r\n\r\nbody\r\n`) },
		{ name: 'unknown-charset', mime: () => Buffer.from('Subject: =?x-unknown-charset?B?SGVsbG8=?=\r\nContent-Type: text/plain; charset=x-made-up\r\n\r\n\xff\xfe bytes\r\n', 'latin1') },
		{ name: 'invalid-utf8-declared-utf8', mime: () => Buffer.concat([Buffer.from('Subject: bad utf-8 \xc3\x28\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n', 'latin1'), Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0x0d, 0x0a])]) },
		{ name: 'bad-base64-attachment', mime: () => Buffer.from('Subject: bad base64\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\ntext\r\n--b\r\nContent-Type: application/octet-stream; name=x.bin\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=x.bin\r\n\r\n!!!not*base64***\r\n--b--\r\n') },
		{ name: 'unterminated-multipart', mime: () => Buffer.from('Subject: unterminated\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nno end boundary') },
		{ name: 'nested-multipart-200-deep', mime: () => Buffer.from(`Subject: deep\r\nMIME-Version: 1.0\r\n${Array.from({ length: 200 }, (_, i) => `Content-Type: multipart/mixed; boundary=b${i}\r\n\r\n--b${i}\r\n`).join('')}Content-Type: text/plain\r\n\r\ndeep\r\n`) },
		{ name: 'nul-and-control-bytes', mime: () => Buffer.from('Subject: nul\u0000 and \u0007 bell\r\nFrom: \u0001odd\u0002 <x@example.org>\r\n\r\nbody \u0000\u0000 with NULs\r\n') },
		{ name: 'bare-lf-and-cr', mime: () => Buffer.from('Subject: bare newlines\nFrom: a@example.org\r\rTo: b@example.org\n\nbody\rmore\n') },
	];

	it('hostile-mime-from-strangers', async () => {
		const name = 'hostile-mime-from-strangers';
		const folder = folderFor(name);
		const deliveredIds: string[] = [];
		for (const hostile of HOSTILE) deliveredIds.push(ews.deliver(USER.mailbox, hostile.mime(), { folder }));
		const reader = new EwsReader(client(), { pageSize: 10, fetchBatch: 3 });
		const started = Date.now();
		const ids = await reader.search(name, {}, { newestFirst: false, limit: 100 });
		const outcomes = new Map<string, 'item' | 'unreadable'>();
		const slowest = { ms: 0 };
		let last = Date.now();
		for await (const message of reader.fetch(name, ids, { limits: { timeoutMs: 5000 } })) {
			outcomes.set(message.id, 'error' in message ? 'unreadable' : 'item');
			slowest.ms = Math.max(slowest.ms, Date.now() - last);
			last = Date.now();
		}
		await reader.close();
		const elapsed = Date.now() - started;
		const missing = deliveredIds.filter((id) => !outcomes.has(id));
		expect(missing).toEqual([]);
		expect(outcomes.size).toBe(HOSTILE.length);
		expect(elapsed).toBeLessThan(30_000);
		const unreadable = [...outcomes.values()].filter((o) => o === 'unreadable').length;
		const asUnreadable = HOSTILE.filter((_, index) => outcomes.get(deliveredIds[index]) === 'unreadable').map((h) => h.name);
		record({ transport: 'ews', kind: 'hostile', name, survived: missing.length === 0, cases: HOSTILE.length, behaviour: `${HOSTILE.length} malformed messages (no header, garbage, 2 MB header, 10,000 headers, unknown and broken charsets, bad base64, unterminated and 200-deep multipart, NULs, bare CR/LF): ${HOSTILE.length - unreadable} items, ${unreadable} UnreadableMessage${asUnreadable.length ? ` (${asUnreadable.join(', ')})` : ''}, none lost, ${elapsed} ms in all (slowest ${slowest.ms} ms)` });
	});
});
