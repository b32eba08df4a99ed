/**
 * Identity platform faults: the token endpoint of the fake Microsoft identity platform fails
 * (HTTP 500, AADSTS50000), never answers, or answers late, while Send Email (app-only,
 * SMTP XOAUTH2) runs through n8n-core. Counted at the SMTP peer: nothing half-sent, nothing
 * sent twice; and at the identity platform: how many token requests the package made.
 */
import { randomUUID } from 'node:crypto';

import { runNode, type InputItem, type RunNodeResult } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

const TENANT = '0b7c5e2a-94f1-4d3e-8a6b-5c4d3e2f1a0b';
const MAILBOX = 'robot@faults.example';
const EXCHANGE = 'https://outlook.office365.com';
/** The token request deadline these tests configure (MAM_TOKEN_TIMEOUT_MS, read per request). */
const TOKEN_TIMEOUT_MS = 1500;
/** A stalled token request must have failed by then (the deadline plus slack for a busy machine). */
const TIMEOUT_BOUND_MS = TOKEN_TIMEOUT_MS + 8000;

let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let peer: Awaited<ReturnType<typeof startSmtpPeer>>;

beforeAll(async () => {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('These tests need the test CA trusted at process start: run them with `npm run test:unit`');
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['faults.example'] });
	peer = await startSmtpPeer({
		pki,
		validateBearer: (token: string, user: string) => idp.introspect(token, { audience: EXCHANGE, mailbox: user, role: 'SMTP.SendAsApp' }).active,
	});
});

afterAll(async () => {
	idp?.resumeTokenRequests();
	await peer?.close();
	await idp?.close();
});

const savedTimeout = process.env.MAM_TOKEN_TIMEOUT_MS;
beforeEach(() => {
	peer.reset();
	process.env.MAM_TOKEN_TIMEOUT_MS = String(TOKEN_TIMEOUT_MS);
});
afterEach(() => {
	idp.failTokenRequests(0);
	idp.resumeTokenRequests();
	idp.delayAnswers(0);
	if (savedTimeout === undefined) delete process.env.MAM_TOKEN_TIMEOUT_MS;
	else process.env.MAM_TOKEN_TIMEOUT_MS = savedTimeout;
});

/** A fresh app registration (its own MSAL client and token cache in the package). */
function newApp() {
	const clientId = randomUUID();
	const secret = `secret-${randomUUID()}`;
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }], appRoles: ['SMTP.SendAsApp'] });
	idp.grantMailbox({ tenant: TENANT, clientId, mailbox: MAILBOX });
	const credentials = {
		modernAuthMicrosoftAppOnlyApi: {
			id: `app${clientId.slice(0, 13)}`,
			name: 'Faults app-only',
			data: {
				tenantId: TENANT,
				clientId,
				clientSecret: secret,
				authType: 'secret',
				cloud: 'custom',
				authorityHost: idp.authorityHost,
				exchangeHost: EXCHANGE,
				smtpServer: `127.0.0.1:${peer.port}`,
				mailbox: MAILBOX,
			},
		},
	};
	return { clientId, credentials, tokenRequests: () => idp.counts({ grantType: 'client_credentials', clientId }) };
}

let sentSubjects = 0;
const items = (count: number): InputItem[] => Array.from({ length: count }, () => ({ json: { to: 'someone@example.org', subject: `identity fault ${++sentSubjects}` } }));

function send(app: ReturnType<typeof newApp>, input: InputItem[]): Promise<RunNodeResult> {
	return runNode({
		type: 'modernAuthSendEmail',
		parameters: { authentication: 'microsoftAppOnly', toEmail: '={{ $json.to }}', subject: '={{ $json.subject }}', emailFormat: 'text', text: 'token faults' },
		items: input,
		credentials: app.credentials,
	});
}

/**
 * Figures from the SMTP peer: delivered = distinct subjects received, duplicated = received
 * more than once, lost = reported sent by a successful run yet never received.
 */
function tally(offered: InputItem[], runs: RunNodeResult[]) {
	const received: string[] = peer.received.map((m: { raw: Buffer }) => (/^Subject: (.*)$/m.exec(String(m.raw))?.[1] ?? '').trim());
	const subjects = offered.map((i) => String(i.json.subject));
	const got = new Set(received);
	const reportedSent = runs.filter((r) => !r.error).flatMap((r) => r.output.filter((o) => !o.json.error)).length;
	return {
		sent: subjects.length,
		delivered: subjects.filter((s) => got.has(s)).length,
		lost: Math.max(0, reportedSent - subjects.filter((s) => got.has(s)).length),
		duplicated: received.filter((s) => subjects.includes(s)).length - subjects.filter((s) => got.has(s)).length,
	};
}

/** Runs `work`; if it has not settled after `ms`, ends the stall so it does. */
async function bounded<T>(ms: number, work: () => Promise<T>) {
	const started = Date.now();
	let overran = false;
	const guard = setTimeout(() => {
		overran = true;
		idp.resumeTokenRequests();
	}, ms);
	try {
		return { result: await work(), ms: Date.now() - started, overran };
	} finally {
		clearTimeout(guard);
	}
}

describe('identity platform faults (app-only token for SMTP)', () => {
	// MSAL answers a 5xx by caching a "throttle" for that request for 60 s (msal-common
	// ThrottlingUtils) and replays the error without asking the identity platform again; the
	// package retries once and clears MSAL's cache after a failure, so one transient 500 does
	// not block the credential's sign-in in the whole process for a minute.
	it('one 500 from the token endpoint: a clear error or a recovery; the next run signs in again', async () => {
		const app = newApp();
		idp.failTokenRequests(1);
		const input = items(3);
		const first = await send(app, input);
		const afterFirst = { requests: app.tokenRequests(), received: peer.received.length };
		const second = first.error ? await send(app, input) : undefined;
		const runs = [first, ...(second ? [second] : [])];
		const figures = tally(input, runs);
		const recovered = !first.error || second?.error === undefined;
		record({
			transport: 'identity',
			kind: 'fault',
			name: 'token endpoint 500 once, then healthy',
			survived: recovered && figures.lost === 0 && figures.duplicated === 0 && (!first.error || /sign-in|identity/i.test(first.error.message)),
			behaviour: first.error
				? `run 1 failed (${first.error.message}) after ${afterFirst.requests} token request(s), ${afterFirst.received} sent; the next run ${second?.error ? `failed too (${second.error.message}) after ${app.tokenRequests() - afterFirst.requests} more request(s)` : `signed in and sent ${figures.delivered}`}`
				: `recovered within the run (${afterFirst.requests} token requests) and sent ${figures.delivered}`,
			...figures,
		});
		if (first.error) {
			expect(first.error.message).toMatch(/Microsoft sign-in failed|identity platform/i);
			expect(afterFirst.received).toBe(0); // nothing half-sent
		}
		expect(second?.error).toBeUndefined();
		expect(figures).toEqual({ sent: 3, delivered: 3, lost: 0, duplicated: 0 });
	});

	it('a 500 outlasting the retry fails the run clearly; the next run asks the platform again at once (no 60 s MSAL throttle)', async () => {
		const app = newApp();
		idp.failTokenRequests(2); // the request and the package's one retry
		const input = items(2);
		const first = await send(app, input);
		const afterFirst = { requests: app.tokenRequests(), received: peer.received.length };
		const second = await send(app, input);
		const secondRequests = app.tokenRequests() - afterFirst.requests;
		const figures = tally(input, [first, second]);
		record({
			transport: 'identity',
			kind: 'fault',
			name: 'token endpoint 500 twice, next run within the throttle window',
			survived: Boolean(first.error) && !second.error && secondRequests >= 1 && figures.lost === 0 && figures.duplicated === 0,
			behaviour: `run 1 ${first.error ? `failed (${first.error.message})` : 'succeeded'} after ${afterFirst.requests} token request(s); run 2 made ${secondRequests} request(s) and ${second.error ? `failed (${second.error.message})` : `sent ${figures.delivered}`}`,
			...figures,
		});
		expect(first.error?.message).toMatch(/AADSTS50000/);
		expect(afterFirst.received).toBe(0);
		expect(secondRequests).toBeGreaterThanOrEqual(1);
		expect(second.error).toBeUndefined();
		expect(figures).toEqual({ sent: 2, delivered: 2, lost: 0, duplicated: 0 });
	});

	it('a token endpoint that keeps failing: a clear error, nothing sent, no retry storm', async () => {
		const app = newApp();
		idp.failTokenRequests(1000);
		const input = items(5);
		const run = await send(app, input);
		const requests = app.tokenRequests();
		const figures = tally(input, [run]);
		record({
			transport: 'identity',
			kind: 'fault',
			name: 'token endpoint keeps answering 500',
			survived: Boolean(run.error) && peer.received.length === 0 && requests <= 5,
			behaviour: `failed clearly (${run.error?.message}); ${requests} token request(s); ${peer.received.length} sent`,
			...figures,
		});
		expect(run.error?.message).toMatch(/AADSTS50000/);
		expect(peer.received).toHaveLength(0);
		expect(requests).toBeGreaterThanOrEqual(1);
		expect(requests).toBeLessThanOrEqual(5);
	});

	// Without the package's own deadline the request would wait for fetch's limit of about 300 s.
	it('a token endpoint that never answers: "did not answer" within the configured deadline, nothing sent', async () => {
		const app = newApp();
		idp.stallTokenRequests();
		const input = items(2);
		const run = await bounded(TIMEOUT_BOUND_MS, () => send(app, input));
		const figures = tally(input, [run.result]);
		const message = run.result.error?.message ?? '';
		record({
			transport: 'identity',
			kind: 'fault',
			name: 'token endpoint never answers',
			survived: !run.overran && /did not answer/i.test(message) && peer.received.length === 0,
			behaviour: run.overran
				? `still waiting after ${run.ms} ms with a ${TOKEN_TIMEOUT_MS} ms deadline configured; released by dropping the request (${message})`
				: `failed after ${run.ms} ms (${message}); ${peer.received.length} sent`,
			...figures,
		});
		expect(run.overran).toBe(false);
		expect(message).toMatch(/identity platform did not answer/i);
		expect(peer.received).toHaveLength(0);
	}, 60_000);

	it('a slow token endpoint within the deadline: sent once each; one answering after it: a time-out, and the late token sends nothing', async () => {
		const slowApp = newApp();
		idp.delayAnswers(TOKEN_TIMEOUT_MS / 3);
		const slowInput = items(3);
		const slow = await send(slowApp, slowInput);
		const slowFigures = tally(slowInput, [slow]);

		peer.reset();
		const lateApp = newApp();
		idp.delayAnswers(TOKEN_TIMEOUT_MS * 3);
		const lateInput = items(3);
		const late = await bounded(TIMEOUT_BOUND_MS, () => send(lateApp, lateInput));
		// give the late answer time to arrive: nothing may be sent with it
		await new Promise((resolve) => setTimeout(resolve, TOKEN_TIMEOUT_MS * 3));
		const lateFigures = tally(lateInput, [late.result]);
		const survived = !slow.error && !late.overran && Boolean(late.result.error) && peer.received.length === 0;
		record({
			transport: 'identity',
			kind: 'fault',
			name: 'token endpoint slow, then later than the deadline',
			survived: survived && slowFigures.lost === 0 && slowFigures.duplicated === 0,
			behaviour: `answer after ${TOKEN_TIMEOUT_MS / 3} ms: ${slow.error ? `failed (${slow.error.message})` : `sent ${slowFigures.delivered}`}; answer after ${TOKEN_TIMEOUT_MS * 3} ms with a ${TOKEN_TIMEOUT_MS} ms deadline: ${late.result.error ? `failed after ${late.ms} ms (${late.result.error.message})` : 'sent'}, ${peer.received.length} sent later`,
			sent: slowFigures.sent + lateFigures.sent,
			delivered: slowFigures.delivered + lateFigures.delivered,
			lost: slowFigures.lost + lateFigures.lost,
			duplicated: slowFigures.duplicated + lateFigures.duplicated,
		});
		expect(slow.error).toBeUndefined();
		expect(slowFigures).toEqual({ sent: 3, delivered: 3, lost: 0, duplicated: 0 });
		expect(late.overran).toBe(false);
		expect(late.result.error?.message).toMatch(/identity platform did not answer/i);
		expect(peer.received).toHaveLength(0);
	}, 60_000);
});
