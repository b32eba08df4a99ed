/**
 * Microsoft Graph fault injection: the fake Graph (test/peers/fake-graph.js) answers 429/503/504
 * with Retry-After, 500, and drops the connection before or after it processed a request, while
 * the package sends, reads, applies post-actions and follows the trigger's delta. Every count
 * comes from what the fake holds or recorded as delivered: 0 lost, 0 duplicated, and each new
 * message emitted by the trigger exactly once.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';

import { appOnlyTokenProvider } from '../../auth/app-only-token-provider';
import { resolveCloud } from '../../auth/clouds';
import type { IncomingMessage, UnreadableMessage } from '../../model/incoming-message';
import type { OutgoingMessage } from '../../model/outgoing-message';
import { createGraphClient, type GraphClient } from '../../transports/graph/graph-client';
import { GraphReader } from '../../transports/graph/graph-reader';
import { GraphSender } from '../../transports/graph/graph-sender';
import { createPoller } from '../harness/n8n-run';
import { appOnlyGraphCredential, ASSISTANT, registerGraphApp, startGraphPeers, type GraphPeers } from '../nodes/graph-fixture';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeGraph } = require('../peers/fake-graph');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

type FakeGraph = Awaited<ReturnType<typeof startFakeGraph>>;
type FakeIdentity = Awaited<ReturnType<typeof startFakeIdentity>>;
type Fault = { kind: 'fail'; status: number; retryAfter?: number } | { kind: 'reset'; when: 'before' | 'after' };

const TENANT = '5b1c2b7e-3d4a-4c5b-9e8f-0a1b2c3d4e5f';
const SENDER = 'robot@contoso.example';
const READER = 'inbox-owner@contoso.example';
const SECRET = 'graph-faults-secret-value';

let pki: ReturnType<typeof sharedTestPki>;
let idp: FakeIdentity;
let graph: FakeGraph;
let clientId: string;
const clients: GraphClient[] = [];

beforeAll(async () => {
	pki = sharedTestPki();
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	graph = await startFakeGraph({ identity: idp, pki });
	clientId = randomUUID();
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: SECRET }], appRoles: ['Mail.Send', 'Mail.ReadWrite'] });
	for (const address of [SENDER, READER]) {
		graph.addMailbox({ address });
		idp.grantMailbox({ tenant: TENANT, clientId, mailbox: address });
	}
});

afterAll(async () => {
	for (const client of clients) client.close();
	await graph?.close();
	await idp?.close();
});

afterEach(() => graph.clearFaults());

/** Client options as the connections build them, with back-off shrunk so the suite stays quick (the policy is the same). */
function clientOptions(mailbox: string, app = clientId) {
	const cloud = resolveCloud('custom', { authorityHost: idp.authorityHost });
	const tokens = appOnlyTokenProvider({ tenantId: TENANT, clientId: app, clientSecret: SECRET, cloud });
	return { graphHost: graph.url, tokens, mailbox, trust: { rejectUnauthorized: true, ca: pki.ca }, retry: { retryAfterScale: 0.01, firstBackoffMs: 5, maxBackoffMs: 50 } };
}
function client(mailbox: string): GraphClient {
	const made = createGraphClient(clientOptions(mailbox));
	clients.push(made);
	return made;
}
const reader = (mailbox = READER) => new GraphReader(client(mailbox), { ownsClient: false });

function inject(fault: Fault, count: number, scope: { method?: string; path: string }, target: FakeGraph = graph) {
	if (fault.kind === 'fail') target.failNext(count, { status: fault.status, retryAfter: fault.retryAfter, ...scope });
	else target.resetNext(count, { when: fault.when, ...scope });
}
const faultName = (fault: Fault) => (fault.kind === 'fail' ? `${fault.status}${fault.retryAfter !== undefined ? '-retry-after' : ''}` : `reset-${fault.when}-processing`);
const FAULTS: Fault[] = [
	{ kind: 'fail', status: 429, retryAfter: 2 },
	{ kind: 'fail', status: 503, retryAfter: 1 },
	{ kind: 'fail', status: 504 },
	{ kind: 'fail', status: 500 },
	{ kind: 'reset', when: 'before' },
	{ kind: 'reset', when: 'after' },
];

let counter = 0;
/** Messages that arrive in the reader's mailbox from outside; returns their Internet Message-IDs. */
function arrive(count: number, scenario: string, folder = 'inbox'): string[] {
	return Array.from({ length: count }, () => {
		const n = ++counter;
		return graph.addMessage(READER, {
			folder,
			subject: `${scenario} #${n}`,
			from: { address: 'outside@example.org' },
			to: [{ address: READER }],
			receivedDateTime: new Date(Date.now() - 60_000 + n).toISOString(),
			attachments: n % 2 ? [{ name: `a${n}.bin`, contentType: 'application/octet-stream', content: Buffer.from(`attachment ${n}`) }] : [],
		}).internetMessageId as string;
	});
}

/** What the package handed over, against what the mailbox holds: lost = expected but not handed over. */
function count(expected: string[], handedOver: Array<string | undefined>) {
	const seen = new Map<string, number>();
	for (const id of handedOver) if (id) seen.set(id, (seen.get(id) ?? 0) + 1);
	const lost = expected.filter((id) => !seen.has(id)).length;
	const duplicated = [...seen.values()].reduce((n, copies) => n + copies - 1, 0);
	const unexpected = handedOver.filter((id) => !id || !expected.includes(id)).length;
	return { sent: expected.length, delivered: expected.length - lost, lost, duplicated, unexpected };
}

function row(name: string, tally: { sent: number; delivered: number; lost: number; duplicated: number }, survived: boolean, behaviour: string) {
	record({ transport: 'graph', kind: 'fault', name, survived, behaviour, sent: tally.sent, delivered: tally.delivered, lost: tally.lost, duplicated: tally.duplicated });
}

/** Reads a whole folder (search + fetch); unreadable messages count as not handed over. */
async function readFolder(r: GraphReader, folder: string) {
	const ids = await r.search(folder, {}, { newestFirst: false, limit: 500 });
	const messages: Array<IncomingMessage | UnreadableMessage> = [];
	for await (const message of r.fetch(folder, ids, {})) messages.push(message);
	return messages;
}
const messageIdOf = (m: IncomingMessage | UnreadableMessage) => ('error' in m ? undefined : m.messageId);

describe('reading through Graph under faults: every message once, or a clear failure', () => {
	for (const fault of FAULTS) {
		for (const target of [
			{ label: 'list', method: 'GET', path: '/mailFolders/[^/]+/messages$' },
			// message GETs travel as $batch parts: a part answers the failure; a reset cuts the whole $batch
			fault.kind === 'reset' ? { label: 'message', method: 'POST', path: '/\\$batch$' } : { label: 'message', method: 'GET', path: '/messages/[^/]+$' },
			// the attachment list comes with the message ($expand); the attachment's own request is its bytes
			{ label: 'attachment', method: 'GET', path: '/attachments/[^/]+/\\$value$' },
		]) {
			const name = `read-${target.label}-${faultName(fault)}`;
			it(name, async () => {
				const folder = graph.addFolder(READER, { displayName: name }).id;
				const expected = arrive(6, name, folder);
				const from = graph.requests.length;
				inject(fault, 2, { method: target.method, path: target.path });
				let messages: Array<IncomingMessage | UnreadableMessage> = [];
				let failure: (Error & { code?: string }) | undefined;
				try {
					messages = await readFolder(reader(), folder);
				} catch (error) {
					failure = error as Error & { code?: string };
				}
				const tally = count(expected, messages.map(messageIdOf));
				// GETs are safe to repeat: every fault here is retried and the read completes.
				expect(failure).toBeUndefined();
				expect(tally).toEqual({ sent: 6, delivered: 6, lost: 0, duplicated: 0, unexpected: 0 });
				const withAttachment = messages.filter((m) => !('error' in m) && m.attachments.length) as IncomingMessage[];
				for (const m of withAttachment) {
					const n = Number(/#(\d+)$/.exec(m.subject)?.[1]);
					expect(m.attachments[0].content?.toString()).toBe(`attachment ${n}`);
				}
				expect(graph.requests.slice(from).filter((r: { fault: string | null; path: string }) => r.fault && new RegExp(target.path).test(r.path)).length).toBe(2);
				row(name, tally, !failure && tally.lost === 0 && tally.duplicated === 0, `${target.label} ${target.method === 'POST' ? '$batch' : 'GET'} answered ${faultName(fault)} twice: retried, all ${tally.delivered} messages read once`);
			});
		}
	}

	it('read-message-deleted-between-search-and-fetch', async () => {
		const folder = graph.addFolder(READER, { displayName: 'deleted meanwhile' }).id;
		const expected = arrive(5, 'deleted meanwhile', folder);
		const r = reader();
		const ids = await r.search(folder, {}, { newestFirst: false, limit: 50 });
		const gone = graph.messages(READER, folder)[2] as { immutableId: string; internetMessageId: string };
		graph.deleteMessage(READER, gone.immutableId);
		const messages: Array<IncomingMessage | UnreadableMessage> = [];
		for await (const m of r.fetch(folder, ids, {})) messages.push(m);
		const stillThere = expected.filter((id) => id !== gone.internetMessageId);
		const tally = count(stillThere, messages.map(messageIdOf));
		expect(tally).toEqual({ sent: 4, delivered: 4, lost: 0, duplicated: 0, unexpected: 0 });
		row('read-message-deleted-between-search-and-fetch', tally, true, 'a listed message was deleted before it was fetched (404): left out, the other 4 read once');
	});

	it('read-throttled-10-percent-everywhere', async () => {
		const folder = graph.addFolder(READER, { displayName: 'throttled read' }).id;
		const expected = arrive(40, 'throttled read', folder);
		graph.throttleRatio(0.1, { retryAfter: 1 });
		const messages = await readFolder(reader(), folder);
		graph.clearFaults();
		const tally = count(expected, messages.map(messageIdOf));
		const throttled = graph.requests.filter((r: { fault: string | null }) => r.fault === 'ratio:429').length;
		expect(throttled).toBeGreaterThan(0);
		expect(tally).toEqual({ sent: 40, delivered: 40, lost: 0, duplicated: 0, unexpected: 0 });
		row('read-throttled-10-percent-everywhere', tally, true, `10% of all requests answered 429 Retry-After (${throttled} times): all 40 messages read once`);
	});
});

describe('post-actions through $batch under faults: each message changed once, every outcome true to the mailbox', () => {
	const readIds = async (folder: string) => await reader().search(folder, {}, { newestFirst: false, limit: 500 });
	for (const fault of FAULTS) {
		const name = `post-action-mark-read-batch-${faultName(fault)}`;
		it(name, async () => {
			const folder = graph.addFolder(READER, { displayName: name }).id;
			const expected = arrive(25, name, folder); // two batches
			const ids = await readIds(folder);
			inject(fault, 1, { method: 'POST', path: '/\\$batch$' });
			let outcomes: Awaited<ReturnType<GraphReader['apply']>> = [];
			let failure: Error | undefined;
			try {
				outcomes = await reader().apply(folder, ids, { type: 'markRead' });
			} catch (error) {
				failure = error as Error;
			}
			const held = graph.messages(READER, folder) as Array<{ immutableId: string; isRead: boolean; internetMessageId: string }>;
			const readNow = new Set(held.filter((m) => m.isRead).map((m) => m.immutableId));
			// An outcome may say "not confirmed" after a lost answer, but never "done" for a message that was not changed.
			const wrong = outcomes.filter((o) => o.done && !readNow.has(o.id));
			expect(wrong).toEqual([]);
			expect(failure).toBeUndefined();
			const done = outcomes.filter((o) => o.done).length;
			const unconfirmed = outcomes.filter((o) => o.unconfirmed).length;
			// Every message is either confirmed (and really read) or reported as not confirmed:
			// none is silently left unread while the node would say it was handled.
			expect(done + unconfirmed).toBe(25);
			const silentlyMissed = outcomes.filter((o) => !o.done && !o.unconfirmed).length;
			const tally = { sent: expected.length, delivered: readNow.size, lost: silentlyMissed, duplicated: 0 };
			row(name, tally, wrong.length === 0 && silentlyMissed === 0, `$batch answered ${faultName(fault)}: ${done} confirmed, ${unconfirmed} reported unconfirmed, ${readNow.size} of 25 read in the mailbox, no outcome contradicts it`);
		});
	}

	it('post-action-move-batch-part-throttled', async () => {
		const folder = graph.addFolder(READER, { displayName: 'move throttled' }).id;
		const target = graph.addFolder(READER, { displayName: 'move target' }).id;
		const expected = arrive(12, 'move throttled', folder);
		const ids = await readIds(folder);
		// three parts of the batch answer 429 with Retry-After inside a 200 $batch answer
		graph.failNext(3, { status: 429, retryAfter: 1, method: 'POST', path: '/move$' });
		const outcomes = await reader().apply(folder, ids, { type: 'move', folder: target });
		const inTarget = graph.messages(READER, target) as Array<{ internetMessageId: string }>;
		const tally = count(expected, inTarget.map((m) => m.internetMessageId));
		expect(outcomes.every((o) => o.done)).toBe(true);
		expect(graph.messages(READER, folder)).toHaveLength(0);
		expect(tally).toEqual({ sent: 12, delivered: 12, lost: 0, duplicated: 0, unexpected: 0 });
		row('post-action-move-batch-part-throttled', tally, true, 'three move parts of a $batch answered 429: re-sent after Retry-After, all 12 moved once');
	});
});

interface TriggerRun {
	emitted: string[];
	cursor: string | undefined;
}

/** One trigger poll as n8n runs it: a fresh reader (as after a restart) and the stored cursor. */
async function poll(run: TriggerRun, folder = 'inbox'): Promise<{ ids: string[]; baseline?: string }> {
	const changes = await reader().changesSince(folder, run.cursor);
	run.cursor = changes.cursor;
	for (const id of changes.ids) {
		const message = graph.message(READER, id) as { internetMessageId: string } | null;
		run.emitted.push(message?.internetMessageId ?? `unknown:${id}`);
	}
	return changes;
}

describe('the Graph trigger (delta) under faults: each new message emitted exactly once', () => {
	for (const fault of FAULTS) {
		const name = `trigger-delta-${faultName(fault)}`;
		it(name, async () => {
			const folder = graph.addFolder(READER, { displayName: name }).id;
			arrive(3, `${name} old`, folder);
			const run: TriggerRun = { emitted: [], cursor: undefined };
			expect((await poll(run, folder)).baseline).toBe('first');
			const expected = arrive(15, name, folder);
			inject(fault, 2, { method: 'GET', path: '/messages/delta$' });
			let failures = 0;
			for (let i = 0; i < 4; i++) {
				try {
					await poll(run, folder);
				} catch {
					failures++; // a poll may fail clearly; the next one catches up from the stored cursor
				}
				if (i === 1) expected.push(...arrive(5, `${name} later`, folder));
			}
			const tally = count(expected, run.emitted);
			expect(tally).toEqual({ sent: 20, delivered: 20, lost: 0, duplicated: 0, unexpected: 0 });
			row(name, tally, true, `delta pages answered ${faultName(fault)} twice${failures ? ` (${failures} poll(s) failed and the next caught up)` : ', retried'}: 20 new messages emitted once, 3 old ones never`);
		});
	}

	it('trigger-delta-expired-token-rebaseline', async () => {
		const folder = graph.addFolder(READER, { displayName: 'expired delta' }).id;
		arrive(10, 'expired old', folder);
		const run: TriggerRun = { emitted: [], cursor: undefined };
		await poll(run, folder);
		const expected = arrive(4, 'expired before', folder);
		await poll(run, folder);
		graph.expireDeltaTokens();
		expected.push(...arrive(3, 'expired during', folder));
		const from = graph.requests.length;
		const after = await poll(run, folder);
		expected.push(...arrive(2, 'expired after', folder));
		await poll(run, folder);
		const tally = count(expected, run.emitted);
		// the saved link was really refused (410 Gone), and the poll recovered from it
		expect(graph.requests.slice(from).filter((r: { status: number | null }) => r.status === 410)).toHaveLength(1);
		// Recovered, not a baseline: the contract's baseline carries no ids, and the trigger drops them then.
		expect(after.baseline).toBeUndefined();
		expect(tally).toEqual({ sent: 9, delivered: 9, lost: 0, duplicated: 0, unexpected: 0 });
		row('trigger-delta-expired-token-rebaseline', tally, true, 'delta link answered 410 syncStateNotFound: a fresh delta round, the 3 messages that arrived meanwhile emitted once, no old mail replayed');
	});

	it('trigger-delta-replays-and-changes-only', async () => {
		const folder = graph.addFolder(READER, { displayName: 'replays' }).id;
		const run: TriggerRun = { emitted: [], cursor: undefined };
		await poll(run, folder);
		const expected = arrive(6, 'replay', folder);
		await poll(run, folder);
		const [a, b, c] = graph.messages(READER, folder) as Array<{ immutableId: string }>;
		graph.updateMessage(READER, a.immutableId, { isRead: true });
		graph.updateMessage(READER, b.immutableId, { flag: { flagStatus: 'flagged' } });
		graph.moveMessage(READER, c.immutableId, 'archive');
		await poll(run, folder);
		graph.moveMessage(READER, c.immutableId, folder);
		graph.replayDelta(3); // Graph documents that a change may be reported again
		expected.push(...arrive(2, 'replay new', folder));
		await poll(run, folder);
		const tally = count(expected, run.emitted);
		expect(tally).toEqual({ sent: 8, delivered: 8, lost: 0, duplicated: 0, unexpected: 0 });
		row('trigger-delta-replays-and-changes-only', tally, true, 'read, flagged, moved away and back, and replayed messages not emitted again; 8 new ones once');
	});

	it('trigger-delta-burst-throttled-across-restarts', async () => {
		const folder = graph.addFolder(READER, { displayName: 'burst' }).id;
		const run: TriggerRun = { emitted: [], cursor: undefined };
		await poll(run, folder);
		const expected: string[] = [];
		graph.throttleRatio(0.15, { retryAfter: 1, path: '/messages/delta$' });
		for (let round = 0; round < 5; round++) {
			expected.push(...arrive(50, `burst ${round}`, folder));
			try {
				await poll(run, folder);
			} catch {
				// throttled beyond the retries: the next poll catches up
			}
		}
		graph.clearFaults();
		await poll(run, folder);
		const tally = count(expected, run.emitted);
		expect(tally).toEqual({ sent: 250, delivered: 250, lost: 0, duplicated: 0, unexpected: 0 });
		row('trigger-delta-burst-throttled-across-restarts', tally, true, 'bursts of 50 per poll, 15% of delta pages throttled, a fresh reader per poll: 250 emitted once');
	});

	it('trigger-delta-mail-arrives-between-pages', async () => {
		const folder = graph.addFolder(READER, { displayName: 'between pages' }).id;
		const run: TriggerRun = { emitted: [], cursor: undefined };
		await poll(run, folder);
		const expected = arrive(450, 'paged', folder); // more than two delta pages
		let added = 0;
		const stop = graph.onRequest((request: { path: string; query: string }) => {
			// while the round pages on, more mail lands (and one paged message is marked read)
			if (request.path.endsWith('/messages/delta') && request.query.includes('skiptoken') && added < 3) {
				added++;
				expected.push(...arrive(7, `between ${added}`, folder));
				const first = graph.messages(READER, folder)[0] as { immutableId: string };
				graph.updateMessage(READER, first.immutableId, { isRead: true });
			}
		});
		await poll(run, folder);
		stop();
		await poll(run, folder);
		const tally = count(expected, run.emitted);
		expect(added).toBeGreaterThan(0);
		expect(tally).toEqual({ sent: expected.length, delivered: expected.length, lost: 0, duplicated: 0, unexpected: 0 });
		row('trigger-delta-mail-arrives-between-pages', tally, true, `${expected.length - 450} messages arrived while a 450-message delta round was paging: each emitted once, in this round or the next`);
	});

	it('trigger-delta-token-rejected-once', async () => {
		const folder = graph.addFolder(READER, { displayName: 'token renewal' }).id;
		const run: TriggerRun = { emitted: [], cursor: undefined };
		const r = reader();
		run.cursor = (await r.changesSince(folder, undefined)).cursor;
		const expected = arrive(4, 'token renewal', folder);
		graph.revokeIssuedTokens(); // the cached token is refused: one renewal, one retry
		const changes = await r.changesSince(folder, run.cursor);
		for (const id of changes.ids) run.emitted.push((graph.message(READER, id) as { internetMessageId: string }).internetMessageId);
		const tally = count(expected, run.emitted);
		expect(tally).toEqual({ sent: 4, delivered: 4, lost: 0, duplicated: 0, unexpected: 0 });
		expect(graph.requests.some((q: { status: number | null }) => q.status === 401)).toBe(true);
		row('trigger-delta-token-rejected-once', tally, true, 'Graph refused the cached token with 401: renewed once and retried, 4 new messages emitted once');
	});
});

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

function outgoing(subject: string, attachment?: Buffer): OutgoingMessage {
	return {
		from: { address: SENDER },
		to: [{ address: READER }],
		cc: [],
		bcc: [],
		replyTo: [],
		subject,
		text: 'fault test',
		headers: [],
		priority: 'normal',
		attachments: attachment ? [{ filename: 'payload.bin', contentType: 'application/octet-stream', size: attachment.length, open: async () => Readable.from([attachment]) }] : [],
	};
}

interface SendTally {
	sent: number;
	delivered: number;
	lost: number;
	duplicated: number;
	deliveryUnknown: number;
	intact: boolean;
	codes: string[];
}

/** Sends `count` messages one after another and counts what the fake Graph recorded as delivered. */
async function sendSome(scenario: string, count: number, options: { sendPath?: 'auto' | 'draft'; attachment?: Buffer; app?: string } = {}): Promise<SendTally> {
	const sender = new GraphSender({ ...clientOptions(SENDER, options.app), sendPath: options.sendPath ?? 'auto' });
	const outcomes: Array<{ ok: boolean; code?: string }> = [];
	try {
		for (let i = 0; i < count; i++) {
			try {
				await sender.send(outgoing(`${scenario} #${i}`, options.attachment));
				outcomes.push({ ok: true });
			} catch (error) {
				if (process.env.DEBUG_FAULTS) console.log(error);
				outcomes.push({ ok: false, code: (error as { code?: string }).code });
			}
		}
	} finally {
		await sender.close();
	}
	return tallySends(scenario, outcomes, options.attachment);
}

function tallySends(scenario: string, outcomes: Array<{ ok: boolean; code?: string }>, attachment?: Buffer): SendTally {
	let delivered = 0;
	let lost = 0;
	let duplicated = 0;
	let deliveryUnknown = 0;
	let intact = true;
	for (const [i, outcome] of outcomes.entries()) {
		const copies = graph.deliveries.filter((d: { subject: string }) => d.subject === `${scenario} #${i}`) as Array<{ attachments: Array<{ sha256: string }> }>;
		if (copies.length) delivered++;
		duplicated += Math.max(0, copies.length - 1);
		if (outcome.code === 'GRAPH_DELIVERY_UNKNOWN') deliveryUnknown++;
		// Lost: reported sent but never delivered, or failed without a code to act on.
		if ((outcome.ok && copies.length === 0) || (!outcome.ok && !outcome.code)) lost++;
		if (attachment) for (const copy of copies) intact &&= copy.attachments.length === 1 && copy.attachments[0].sha256 === sha256(attachment);
	}
	return { sent: outcomes.length, delivered, lost, duplicated, deliveryUnknown, intact, codes: outcomes.filter((o) => !o.ok).map((o) => o.code ?? 'NONE') };
}

function sendRow(name: string, tally: SendTally, behaviour: string, allowsDeliveryUnknown = false) {
	const survived = tally.lost === 0 && tally.duplicated === 0 && tally.intact && (allowsDeliveryUnknown || tally.deliveryUnknown === 0);
	record({ transport: 'graph', kind: 'fault', name, survived, behaviour, sent: tally.sent, delivered: tally.delivered, lost: tally.lost, duplicated: tally.duplicated, deliveryUnknown: tally.deliveryUnknown, ...(allowsDeliveryUnknown ? { allowsDeliveryUnknown: true } : {}) });
	return survived;
}

/**
 * Graph says it did not act on these (429/503), so repeating is safe and the message must go
 * out once. A reset is not among them for a POST: the request had been written, and the client
 * cannot tell "before processing" from "after", so either is the ambiguous case.
 */
const SAFE_FOR_POST = (fault: Fault) => fault.kind === 'fail' && (fault.status === 429 || fault.status === 503);
/** PUTs of upload ranges are safe to repeat after any of the faults (a taken range is asked for). */
const SAFE_FOR_PUT = (fault: Fault) => SAFE_FOR_POST(fault) || fault.kind === 'reset';

describe('sending through Graph under faults: never lost, never twice', () => {
	for (const fault of FAULTS) {
		const name = `send-mail-${faultName(fault)}`;
		it(name, async () => {
			inject(fault, 1, { method: 'POST', path: '/sendMail$' });
			const tally = await sendSome(name, 3);
			expect(tally.duplicated).toBe(0);
			expect(tally.lost).toBe(0);
			if (SAFE_FOR_POST(fault)) expect(tally).toMatchObject({ delivered: 3, deliveryUnknown: 0 });
			const ambiguous = !SAFE_FOR_POST(fault);
			// the one message hit is either delivered or reported delivery unknown, never sent twice
			if (ambiguous) expect(tally.delivered + tally.deliveryUnknown).toBeGreaterThanOrEqual(3);
			// sendMail is not repeated after an answer Graph may have acted on: that one is reported, not re-sent
			expect(sendRow(name, tally, `sendMail answered ${faultName(fault)} once: ${tally.delivered}/3 delivered, ${tally.deliveryUnknown} reported delivery unknown${tally.codes.length ? ` (${[...new Set(tally.codes)].join(', ')})` : ''}, none twice`, ambiguous)).toBe(true);
		});
	}

	for (const fault of FAULTS) {
		const name = `send-draft-by-id-${faultName(fault)}`;
		it(name, async () => {
			inject(fault, 1, { method: 'POST', path: '/messages/[^/]+/send$' });
			const tally = await sendSome(name, 3, { sendPath: 'draft' });
			// a repeated send of a sent draft cannot deliver again (404), so even ambiguous failures end in one delivery
			expect(tally).toMatchObject({ delivered: 3, lost: 0, duplicated: 0 });
			expect(sendRow(name, tally, `draft send answered ${faultName(fault)} once: repeated by draft id, 3/3 delivered once`)).toBe(true);
		});
	}

	const payload = randomBytes(5 * 1024 * 1024 + 4321);
	for (const fault of FAULTS) {
		const name = `send-upload-session-chunk-${faultName(fault)}`;
		it(name, async () => {
			inject(fault, 1, { method: 'PUT', path: "AttachmentSessions\\('" });
			const tally = await sendSome(name, 1, { attachment: payload });
			expect(tally.duplicated).toBe(0);
			expect(tally.lost).toBe(0);
			expect(tally.intact).toBe(true);
			if (SAFE_FOR_PUT(fault)) expect({ delivered: tally.delivered, codes: tally.codes }).toEqual({ delivered: 1, codes: [] });
			const leftDrafts = graph.messages(SENDER, 'drafts').filter((m: { subject: string }) => m.subject.startsWith(name)).length;
			expect(leftDrafts).toBe(0);
			expect(sendRow(name, tally, `a 5 MB upload-session chunk answered ${faultName(fault)}: ${tally.delivered ? 'resumed, delivered once, bytes intact' : `failed clearly (${tally.codes.join(', ')}), draft removed, nothing sent`}`)).toBe(true);
		});
	}

	it('send-token-endpoint-503-then-ok', async () => {
		const name = 'send-token-endpoint-503-then-ok';
		// an app of its own, so no cached token hides the token endpoint's failure
		const app = randomUUID();
		idp.addApp({ tenant: TENANT, clientId: app, secrets: [{ value: SECRET }], appRoles: ['Mail.Send'] });
		idp.grantMailbox({ tenant: TENANT, clientId: app, mailbox: SENDER });
		idp.failTokenRequests(1, { status: 503, retryAfterSeconds: 0 });
		const tally = await sendSome(name, 2, { app });
		idp.failTokenRequests(0);
		expect(idp.counts({ clientId: app, error: 'AADSTS50000' })).toBe(1);
		expect(tally.duplicated).toBe(0);
		expect(tally.lost).toBe(0);
		expect(sendRow(name, tally, `the token endpoint answered 503 once: ${tally.delivered}/2 delivered${tally.codes.length ? `, ${tally.codes.join(', ')} reported` : ''}, none twice`)).toBe(true);
	});

	it('send-throttled-5-percent-concurrent', async () => {
		graph.throttleRatio(0.05, { retryAfter: 1 });
		// with service time, requests overlap at the server; above 4 in flight it would answer 429 ApplicationThrottled
		graph.setServiceTime(30);
		graph.setMailboxConcurrencyLimit(4);
		const stats = graph.concurrency(SENDER);
		Object.assign(stats, { max: 0, throttled: 0 });
		const sender = new GraphSender(clientOptions(SENDER));
		const name = 'send-throttled-5-percent-concurrent';
		const outcomes = await Promise.all(
			Array.from({ length: 40 }, (_, i) =>
				sender.send(outgoing(`${name} #${i}`)).then(
					() => ({ ok: true }),
					(error) => ({ ok: false, code: (error as { code?: string }).code ?? 'NONE' }),
				),
			),
		);
		await sender.close();
		graph.clearFaults();
		graph.setServiceTime(0);
		graph.setMailboxConcurrencyLimit(null);
		const tally = tallySends(name, outcomes);
		expect(tally).toMatchObject({ sent: 40, delivered: 40, lost: 0, duplicated: 0, deliveryUnknown: 0 });
		expect(stats.max).toBeLessThanOrEqual(4);
		expect(stats.throttled).toBe(0);
		expect(sendRow(name, tally, `40 sends started at once, 5% of requests answered 429 Retry-After, 30 ms service time: all delivered once, ${stats.max} in flight at most (MailboxConcurrency 4 never exceeded)`)).toBe(true);
	});
});

describe('the Read Mailbox Trigger node through n8n (Graph) under faults and restarts: each new message emitted exactly once', () => {
	let peers: GraphPeers;
	beforeAll(async () => {
		peers = await startGraphPeers();
	});
	afterAll(async () => {
		await peers?.graph.close();
		await peers?.idp.close();
	});

	it('trigger-node-delta-faults-and-restarts', async () => {
		const app = registerGraphApp(peers, { mailboxes: [ASSISTANT] });
		const credentials = appOnlyGraphCredential(peers, app, { mailbox: ASSISTANT });
		const parameters = { authentication: 'microsoftAppOnlyGraph', folder: 'INBOX', options: { downloadAttachments: false } };
		const subjectOf = (item: { json: Record<string, unknown> }) => String(item.json.subject);
		let n = 0;
		const deliver = (count: number) =>
			Array.from({ length: count }, () => {
				const subject = `node trigger #${++n}`;
				peers.graph.addMessage(ASSISTANT, { subject, from: { address: 'x@example.org' }, to: [{ address: ASSISTANT }] });
				return subject;
			});
		deliver(5); // old mail: never emitted
		let poller = await createPoller({ parameters, credentials });
		expect(await poller.poll()).toEqual([]);
		const from = peers.graph.requests.length;
		const expected: string[] = [];
		const emitted: string[] = [];
		// Retry-After kept small: the node runs with the package's real retry policy.
		const faults: Fault[] = [
			{ kind: 'fail', status: 429, retryAfter: 0 },
			{ kind: 'fail', status: 503, retryAfter: 0 },
			{ kind: 'fail', status: 500 },
			{ kind: 'reset', when: 'before' },
			{ kind: 'reset', when: 'after' },
			{ kind: 'fail', status: 504 },
		];
		let failedPolls = 0;
		for (const [round, fault] of faults.entries()) {
			expected.push(...deliver(30));
			inject(fault, 1, { method: 'GET', path: '/messages/delta$' }, peers.graph);
			if (round === 2) peers.graph.expireDeltaTokens(); // the saved delta link stops working too
			try {
				emitted.push(...(await poller.poll()).map(subjectOf));
			} catch {
				failedPolls++;
			}
			peers.graph.clearFaults();
			// every other round n8n restarts and the trigger continues from its saved state
			if (round % 2 === 1) poller = await createPoller({ parameters, credentials, staticData: poller.staticData() });
		}
		emitted.push(...(await poller.poll()).map(subjectOf));
		const tally = count(expected, emitted);
		expect(peers.graph.requests.slice(from).filter((r: { fault: string | null }) => r.fault).length).toBe(faults.length);
		expect(tally).toEqual({ sent: 180, delivered: 180, lost: 0, duplicated: 0, unexpected: 0 });
		row('trigger-node-delta-faults-and-restarts', tally, true, `n8n's poller over Graph delta: 6 rounds of 30 new messages, each with a fault on a delta page (429, 503, 500, resets before/after, 504), an expired delta link, 3 restarts from saved state${failedPolls ? `, ${failedPolls} poll(s) failed and the next caught up` : ''}: 180 emitted once, no old mail`);
	});
});
