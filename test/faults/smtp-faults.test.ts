/**
 * SMTP fault injection: the peer answers 421/451/452/454/535 (and others) or drops the
 * connection at each protocol step, and we count at the peer what it holds. Temporary
 * failures are retried with back-off; permanent ones fail the item clearly; a connection
 * lost after the end of DATA is "delivery unknown" and never sent again.
 */
import type { INodeExecutionData } from 'n8n-workflow';

import { runNode, type RunNodeOptions } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

type Peer = Awaited<ReturnType<typeof startSmtpPeer>>;
type Step = 'greeting' | 'auth' | 'mail' | 'rcpt' | 'data' | 'end-of-data';
type Reply = 'drop' | { code: number; message: string };

const PASSWORD = 'Fault-Test-Passw0rd';
const ITEMS = 3;

let pki: ReturnType<typeof sharedTestPki>;
let peer: Peer;

beforeAll(async () => {
	pki = sharedTestPki();
	peer = await startSmtpPeer({ pki, users: { robot: PASSWORD } });
});

afterAll(async () => {
	await peer?.close();
});

beforeEach(() => peer.reset());

const credentials = () => ({
	modernAuthSmtpApi: {
		id: 'smtpFaults000001',
		name: 'Fault SMTP',
		data: { host: peer.host, port: peer.port, security: 'starttls', user: 'robot', password: PASSWORD, fromAddress: 'robot@example.com', caCertificate: pki.ca },
	},
});

const parameters = (options: Record<string, unknown> = {}) => ({
	authentication: 'smtp',
	toEmail: '={{ $json.to }}',
	subject: '={{ $json.subject }}',
	emailFormat: 'text',
	text: 'fault test',
	// Small back-off so the suite stays quick; the policy is the same at 1 s.
	options: { maxConnections: 1, sendRetries: 2, retryBackoffSeconds: 0.02, ...options },
});

/** Subjects are unique per scenario, so the peer's copies can be told apart and counted. */
const itemsFor = (scenario: string, count = ITEMS) =>
	Array.from({ length: count }, (_, i) => ({ json: { to: `rcpt${i}@example.org`, subject: `${scenario} #${i}` } }));

interface Tally {
	sent: number;
	delivered: number;
	lost: number;
	duplicated: number;
	deliveryUnknown: number;
	errorCodes: string[];
	attempts: number[];
}

/** Counts from what the peer holds, compared with what each item says happened. */
function tally(scenario: string, output: INodeExecutionData[], count = ITEMS): Tally {
	const held: Map<string, number> = peer.subjects();
	let delivered = 0;
	let lost = 0;
	let duplicated = 0;
	let deliveryUnknown = 0;
	const errorCodes: string[] = [];
	const attempts: number[] = [];
	for (let i = 0; i < count; i++) {
		const copies = held.get(`${scenario} #${i}`) ?? 0;
		if (copies > 0) delivered++;
		duplicated += Math.max(0, copies - 1);
		const json = output[i]?.json as Record<string, unknown> | undefined;
		const error = json?.error as { code?: string } | undefined;
		if (error?.code === 'SMTP_DELIVERY_UNKNOWN') deliveryUnknown++;
		if (error?.code) errorCodes.push(error.code);
		if (typeof json?.attempts === 'number') attempts.push(json.attempts);
		// Lost: reported as sent but not held, or neither sent nor clearly failed.
		const reportedSent = json?.status === 'sent' || json?.status === 'partial';
		if ((reportedSent && copies === 0) || (!reportedSent && !error?.code)) lost++;
	}
	return { sent: count, delivered, lost, duplicated, deliveryUnknown, errorCodes, attempts };
}

async function run(scenario: string, extra: Partial<RunNodeOptions> = {}, options: Record<string, unknown> = {}, count = ITEMS) {
	return await runNode({
		type: 'modernAuthSendEmail',
		parameters: parameters(options),
		items: itemsFor(scenario, count),
		credentials: credentials(),
		onError: 'continueRegularOutput',
		...extra,
	});
}

const STEPS: Step[] = ['greeting', 'auth', 'mail', 'rcpt', 'data', 'end-of-data'];
const TEMPORARY: Array<{ code: number; message: string }> = [
	{ code: 421, message: '4.3.2 Service not available, closing transmission channel' },
	{ code: 451, message: '4.3.0 Temporary server error, please try again later' },
	{ code: 452, message: '4.3.1 Insufficient system storage' },
	{ code: 454, message: '4.7.0 Temporary authentication failure' },
];

describe('temporary failures (4xx) at every step are retried with back-off: nothing lost, nothing doubled', () => {
	for (const step of STEPS) {
		for (const reply of TEMPORARY) {
			const name = `${step}-${reply.code}`;
			it(name, async () => {
				peer.inject(step, reply);
				const { output, error } = await run(name);
				const t = tally(name, output);
				const survived = !error && t.delivered === ITEMS && t.lost === 0 && t.duplicated === 0 && t.errorCodes.length === 0;
				record({
					transport: 'smtp',
					kind: 'fault',
					name,
					survived,
					behaviour: `${reply.code} at ${step}: retried with back-off (attempts ${t.attempts.join('/')}), ${t.delivered}/${ITEMS} delivered`,
					sent: t.sent,
					delivered: t.delivered,
					lost: t.lost,
					duplicated: t.duplicated,
					deliveryUnknown: t.deliveryUnknown,
				});
				expect(peer.stats.faults).toBe(1);
				expect(t).toMatchObject({ delivered: ITEMS, lost: 0, duplicated: 0, deliveryUnknown: 0, errorCodes: [] });
				expect(Math.max(...t.attempts)).toBe(2);
			});
		}
	}
});

describe('a connection dropped before the end of DATA is retried; after it, delivery is unknown and nothing is resent', () => {
	for (const step of STEPS) {
		const name = `${step}-drop`;
		const afterData = step === 'end-of-data';
		it(name, async () => {
			peer.inject(step, 'drop');
			const { output, error } = await run(name);
			const t = tally(name, output);
			const survived = afterData
				? t.deliveryUnknown === 1 && t.duplicated === 0 && t.lost === 0 && t.delivered === ITEMS
				: !error && t.delivered === ITEMS && t.lost === 0 && t.duplicated === 0 && t.errorCodes.length === 0;
			record({
				transport: 'smtp',
				kind: 'fault',
				name,
				survived,
				behaviour: afterData
					? `connection dropped after the end of DATA: item reported ${t.errorCodes.join(',')}, not resent; peer holds ${t.delivered}/${ITEMS}`
					: `connection dropped at ${step}: retried (attempts ${t.attempts.join('/')}), ${t.delivered}/${ITEMS} delivered`,
				sent: t.sent,
				delivered: t.delivered,
				lost: t.lost,
				duplicated: t.duplicated,
				deliveryUnknown: t.deliveryUnknown,
				allowsDeliveryUnknown: afterData,
			});
			expect(t.lost).toBe(0);
			expect(t.duplicated).toBe(0);
			expect(t.delivered).toBe(ITEMS);
			if (afterData) {
				expect(t.errorCodes).toEqual(['SMTP_DELIVERY_UNKNOWN']);
				const failed = output.find((o) => o.json.error)!.json.error as Record<string, string>;
				expect(failed.message).toMatch(/delivery unknown/);
			} else {
				// A close before the greeting is retried by nodemailer's pool itself, after it by us.
				expect(t.errorCodes).toEqual([]);
				if (step !== 'greeting') expect(Math.max(...t.attempts)).toBe(2);
			}
		});
	}
});

describe('permanent failures fail the item clearly and are not retried', () => {
	const PERMANENT: Array<{ step: Step; reply: Reply; code: RegExp }> = [
		{ step: 'greeting', reply: { code: 535, message: '5.7.3 Authentication unsuccessful' }, code: /^SMTP_AUTH_FAILED$/ },
		{ step: 'auth', reply: { code: 535, message: '5.7.3 Authentication unsuccessful' }, code: /^SMTP_AUTH_FAILED$/ },
		{ step: 'mail', reply: { code: 535, message: '5.7.3 Authentication unsuccessful' }, code: /^SMTP_AUTH_FAILED$/ },
		{ step: 'rcpt', reply: { code: 535, message: '5.7.3 Authentication unsuccessful' }, code: /^SMTP_AUTH_FAILED$/ },
		{ step: 'data', reply: { code: 535, message: '5.7.3 Authentication unsuccessful' }, code: /^SMTP_AUTH_FAILED$/ },
		{ step: 'end-of-data', reply: { code: 535, message: '5.7.3 Authentication unsuccessful' }, code: /^SMTP_AUTH_FAILED$/ },
		{ step: 'rcpt', reply: { code: 550, message: '5.1.1 User unknown' }, code: /^SMTP_ENVELOPE_REJECTED$/ },
		{ step: 'end-of-data', reply: { code: 554, message: '5.6.0 Message rejected as spam' }, code: /^SMTP_MESSAGE_REJECTED$/ },
	];
	for (const { step, reply, code } of PERMANENT) {
		const name = `${step}-${(reply as { code: number }).code}`;
		it(name, async () => {
			peer.inject(step, reply);
			const { output } = await run(name);
			const t = tally(name, output);
			const survived = t.lost === 0 && t.duplicated === 0 && t.errorCodes.length === 1 && t.delivered === ITEMS - 1;
			record({
				transport: 'smtp',
				kind: 'fault',
				name,
				survived,
				behaviour: `${(reply as { code: number }).code} at ${step}: clear failure ${t.errorCodes.join(',')} on that item, not retried; others delivered`,
				sent: t.sent,
				delivered: t.delivered,
				lost: t.lost,
				duplicated: t.duplicated,
				deliveryUnknown: t.deliveryUnknown,
			});
			expect(t.errorCodes).toHaveLength(1);
			expect(t.errorCodes[0]).toMatch(code);
			expect(t).toMatchObject({ delivered: ITEMS - 1, lost: 0, duplicated: 0 });
			expect(peer.stats.faults).toBe(1);
		});
	}

	it('mail-451-persistent: retries run out and the item says so', async () => {
		const name = 'mail-451-persistent';
		peer.inject('mail', { code: 451, message: '4.3.0 Try again later' }, { times: 3 });
		const { output } = await run(name, {}, {}, 1);
		const t = tally(name, output, 1);
		const failed = output[0].json.error as Record<string, string> | undefined;
		record({
			transport: 'smtp',
			kind: 'fault',
			name,
			survived: t.lost === 0 && t.duplicated === 0 && failed?.code === 'SMTP_TEMPORARY_FAILURE',
			behaviour: `451 at MAIL on every attempt: gave up after ${peer.stats.faults} attempts with ${failed?.code}`,
			sent: t.sent,
			delivered: t.delivered,
			lost: t.lost,
			duplicated: t.duplicated,
			deliveryUnknown: t.deliveryUnknown,
		});
		expect(failed?.code).toBe('SMTP_TEMPORARY_FAILURE');
		expect(failed?.message).toMatch(/temporary failure \(451\).*gave up after 3 attempts/);
		expect(peer.stats.faults).toBe(3);
		expect(t.lost).toBe(0);
	});
});

describe("n8n's Retry On Fail never sends an accepted item twice", () => {
	const retryOnFail = { maxTries: 3, waitBetweenTries: 10 };

	it('retry-on-fail-partial-batch: a batch that failed part-way re-sends only what the server did not accept', async () => {
		const name = 'retry-on-fail-partial-batch';
		// The third message is refused for good, once: the node fails, n8n runs it again.
		peer.inject('end-of-data', { code: 554, message: '5.7.1 Rejected by policy' }, { skip: 2 });
		const { output, error } = await run(name, { onError: undefined, retryOnFail }, {}, 5);
		const t = tally(name, output, 5);
		const replayed = output.filter((o) => o.json.alreadySent === true).length;
		record({
			transport: 'smtp',
			kind: 'fault',
			name,
			survived: !error && t.delivered === 5 && t.duplicated === 0 && t.lost === 0,
			behaviour: `554 on one message of 5, node retried by n8n: ${replayed} already-accepted items output from the record, not re-sent`,
			sent: t.sent,
			delivered: t.delivered,
			lost: t.lost,
			duplicated: t.duplicated,
			deliveryUnknown: t.deliveryUnknown,
		});
		expect(error).toBeUndefined();
		expect(t).toMatchObject({ delivered: 5, duplicated: 0, lost: 0 });
		expect(peer.received).toHaveLength(5);
		expect(replayed).toBeGreaterThanOrEqual(2);
	});

	it('the error of the failed try names the items the server already accepted', async () => {
		const name = 'retry-note';
		peer.inject('end-of-data', { code: 554, message: '5.7.1 Rejected by policy' }, { skip: 1 });
		const { error } = await run(name, { onError: undefined }, {}, 3);
		const heldItems = [...peer.subjects().keys()].map((s) => Number(/#(\d+)$/.exec(s)![1])).sort();
		expect(error?.message).toMatch(/^Item 1: SMTP server refused the message: .*554.*Already accepted by the server, not sent again when the node is retried: items? /);
		expect(error?.message).toContain(`: item${heldItems.length > 1 ? 's' : ''} ${heldItems.join(', ')}`);
	});

	for (const guarantee of ['atMostOnce', 'atLeastOnce'] as const) {
		const name = `retry-on-fail-delivery-unknown-${guarantee}`;
		it(name, async () => {
			peer.inject('end-of-data', 'drop', { skip: 1 });
			const { error } = await run(name, { onError: undefined, retryOnFail }, { deliveryGuarantee: guarantee }, 3);
			const held: Map<string, number> = peer.subjects();
			const copies = held.get(`${name} #1`) ?? 0;
			const duplicated = [...held.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0);
			const unknown = error?.message.match(/delivery unknown/) ? 1 : 0;
			const survived =
				guarantee === 'atMostOnce' ? duplicated === 0 && copies === 1 && unknown === 1 : !error && copies === 2 && held.size === 3;
			record({
				transport: 'smtp',
				kind: 'fault',
				name,
				survived,
				behaviour:
					guarantee === 'atMostOnce'
						? 'connection lost after the end of DATA, node retried by n8n: the item is reported delivery unknown on every try, never resent'
						: 'connection lost after the end of DATA, node retried by n8n: the item is resent (at-least-once, documented duplicate)',
				sent: 3,
				delivered: held.size,
				// The node fails as a whole here (no continueOnFail), saying why: lost is what the peer lacks.
				lost: 3 - held.size,
				duplicated,
				deliveryUnknown: guarantee === 'atMostOnce' ? unknown : copies > 1 ? 1 : 0,
				allowsDeliveryUnknown: true,
			});
			if (guarantee === 'atMostOnce') {
				expect(error?.message).toMatch(/^Item 1: .*delivery unknown/);
				expect(duplicated).toBe(0);
				expect(copies).toBe(1);
				expect(held.size).toBe(3);
			} else {
				expect(error).toBeUndefined();
				expect(copies).toBe(2);
				expect(held.size).toBe(3);
				expect(duplicated).toBe(1);
			}
		});
	}
});
