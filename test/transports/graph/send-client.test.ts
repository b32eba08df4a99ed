import { randomUUID } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

import { appOnlyTokenProvider } from '../../../auth/app-only-token-provider';
import { resolveCloud } from '../../../auth/clouds';
import { createGraphClient } from '../../../transports/graph/graph-client';
import { graphError } from '../../../transports/graph/graph-errors';
import { mailboxPath } from '../../../transports/graph/mailbox-path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki, createTestPki } = require('../../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../../peers/fake-identity');

const TENANT = '6f1c2b7e-3d4a-4c5b-9e8f-0a1b2c3d4e5f';
const MAILBOX = 'robot@contoso.example';
const SECRET = 'graph-client-secret-value';

type Handler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, body: Buffer) => void;

/** A bare HTTPS endpoint whose answers each test scripts; it records what arrived. */
async function startEndpoint(pki: { cert: string; key: string }) {
	const seen: Array<{ method: string; url: string; headers: Record<string, unknown>; body: Buffer }> = [];
	let handler: Handler = (_req, res) => res.end('{}');
	const server = https.createServer({ cert: pki.cert, key: pki.key }, (req, res) => {
		const chunks: Buffer[] = [];
		req.on('data', (chunk: Buffer) => chunks.push(chunk));
		req.on('end', () => {
			const body = Buffer.concat(chunks);
			seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
			handler(req, res, body);
		});
	});
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	return {
		host: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
		seen,
		answer(next: Handler) {
			handler = next;
		},
		close: () => new Promise<void>((resolve) => server.close(() => resolve())),
	};
}

let pki: ReturnType<typeof sharedTestPki>;
let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let endpoint: Awaited<ReturnType<typeof startEndpoint>>;
/** Serves a certificate of a CA the process does not trust. */
let otherPki: ReturnType<typeof createTestPki>;
let otherEndpoint: Awaited<ReturnType<typeof startEndpoint>>;
const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000';

beforeAll(async () => {
	pki = sharedTestPki();
	endpoint = await startEndpoint(pki);
	otherPki = createTestPki();
	otherEndpoint = await startEndpoint(otherPki);
	// Both endpoints stand for Graph (a Custom cloud's graphHost), so tokens are minted for them.
	idp = await startFakeIdentity({ pki, resources: { [endpoint.host]: GRAPH_APP_ID, [otherEndpoint.host]: GRAPH_APP_ID } });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
});

afterAll(async () => {
	await endpoint?.close();
	await otherEndpoint?.close();
	await idp?.close();
});

beforeEach(() => {
	endpoint.seen.length = 0;
});

function tokensFor(graphHost: string) {
	const clientId = randomUUID();
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: SECRET }], appRoles: ['Mail.Send'] });
	idp.grantMailbox({ tenant: TENANT, clientId, mailbox: MAILBOX });
	const cloud = resolveCloud('custom', { authorityHost: idp.authorityHost, graphHost });
	return { clientId, tokens: appOnlyTokenProvider({ tenantId: TENANT, clientId, clientSecret: SECRET, cloud }) };
}

const json = (res: import('node:http').ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
	res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
	res.end(JSON.stringify(body));
};

describe('mailbox path', () => {
	it('encodes a plain address or an object id', () => {
		expect(mailboxPath('robot+x@contoso.example')).toBe('/users/robot%2Bx%40contoso.example');
		expect(mailboxPath('0d7c3c0a-1b2c-4d5e-8f90-a1b2c3d4e5f6')).toBe('/users/0d7c3c0a-1b2c-4d5e-8f90-a1b2c3d4e5f6');
		expect(mailboxPath(undefined)).toBe('/me');
	});

	it.each(['a/b@contoso.example', '../admin@contoso.example', 'x@contoso.example?$select=id', 'x@contoso.example#', 'x%2f@contoso.example', 'x@contoso..example', 'robot@contoso.example/messages', 'not an address'])(
		'refuses %s',
		(mailbox) => {
			expect(() => mailboxPath(mailbox)).toThrow(expect.objectContaining({ code: 'GRAPH_INVALID_MAILBOX' }));
		},
	);
});

describe('graph client', () => {
	it('sends the Graph token as Bearer, renews it once on 401 and retries once', async () => {
		const { clientId, tokens } = tokensFor(endpoint.host);
		const client = createGraphClient({ graphHost: endpoint.host, tokens, mailbox: MAILBOX });
		let refused = 0;
		endpoint.answer((req, res) => {
			if (refused++ === 0) return json(res, 401, { error: { code: 'InvalidAuthenticationToken', message: 'Lifetime validation failed, the token is expired.' } });
			json(res, 200, { id: 'inbox-id' });
		});
		await expect(client.get(`${client.mailbox}/mailFolders/inbox?$select=id`)).resolves.toEqual({ id: 'inbox-id' });
		expect(endpoint.seen.map((r) => `${r.method} ${r.url}`)).toEqual([
			'GET /v1.0/users/robot%40contoso.example/mailFolders/inbox?$select=id',
			'GET /v1.0/users/robot%40contoso.example/mailFolders/inbox?$select=id',
		]);
		const [first, second] = endpoint.seen.map((r) => String(r.headers.authorization));
		expect(first).toMatch(/^Bearer ey/);
		expect(second).toMatch(/^Bearer ey/);
		expect(second).not.toBe(first);
		expect(idp.introspect(second.slice(7), { audience: endpoint.host, mailbox: MAILBOX, role: 'Mail.Send' })).toMatchObject({ active: true });
		expect(idp.counts({ clientId })).toBe(2);
		client.close();
	});

	it('maps a second 401 to GRAPH_UNAUTHORIZED without a third request', async () => {
		const { tokens } = tokensFor(endpoint.host);
		const client = createGraphClient({ graphHost: endpoint.host, tokens, mailbox: MAILBOX });
		endpoint.answer((_req, res) => json(res, 401, { error: { code: 'InvalidAudience', message: 'Invalid audience.' } }));
		await expect(client.get(`${client.mailbox}/messages`)).rejects.toMatchObject({ code: 'GRAPH_UNAUTHORIZED', responseCode: 401, hint: expect.stringMatching(/Graph scope/) });
		expect(endpoint.seen).toHaveLength(2);
		client.close();
	});

	it('waits Retry-After on 429 and keeps at most 4 requests in flight per mailbox', async () => {
		const { clientId, tokens } = tokensFor(endpoint.host);
		const one = createGraphClient({ graphHost: endpoint.host, tokens, mailbox: MAILBOX, retry: { retryAfterScale: 0.05 } });
		const other = createGraphClient({ graphHost: endpoint.host, tokens, mailbox: MAILBOX.toUpperCase(), retry: { retryAfterScale: 0.05 } });
		let inFlight = 0;
		let peak = 0;
		let throttled = 0;
		const throttledAt = new Map<string, number>();
		endpoint.answer((req, res) => {
			const n = new URL(req.url ?? '', 'https://x').searchParams.get('n') ?? '';
			if (n === '3' && !throttledAt.has(n)) {
				throttled++;
				throttledAt.set(n, Date.now());
				return json(res, 429, { error: { code: 'ApplicationThrottled', message: 'Too many requests' } }, { 'Retry-After': '2' });
			}
			inFlight++;
			peak = Math.max(peak, inFlight);
			setTimeout(() => {
				inFlight--;
				json(res, 200, { n, waited: throttledAt.has(n) ? Date.now() - throttledAt.get(n)! : 0 });
			}, 30);
		});
		const answers = await Promise.all(Array.from({ length: 12 }, (_, n) => (n % 2 ? one : other).get<{ n: string; waited: number }>(`${one.mailbox}/messages?n=${n}`)));
		expect(answers.map((a) => a.n)).toEqual(Array.from({ length: 12 }, (_, n) => String(n)));
		expect(throttled).toBe(1);
		// Retry-After 2 s scaled by 0.05: about 100 ms.
		expect(answers[3].waited).toBeGreaterThanOrEqual(90);
		expect(endpoint.seen).toHaveLength(13);
		expect(peak).toBe(4);
		expect(idp.counts({ clientId })).toBe(1);
		one.close();
		other.close();
	});

	it('trusts a CA given with the credential on top of the default trust, certificate checks on', async () => {
		const other = otherEndpoint;
		other.answer((_req, res) => json(res, 200, { id: 'ok' }));
		const { tokens } = tokensFor(other.host);
		const untrusted = createGraphClient({ graphHost: other.host, tokens, mailbox: MAILBOX, retry: { attempts: 1 } });
		await expect(untrusted.get('/me')).rejects.toMatchObject({ code: 'GRAPH_ERROR', message: expect.stringMatching(/certificate/) });
		// No connection was made, so even a POST is repeated: Graph cannot have acted on it
		const retrying = createGraphClient({ graphHost: other.host, tokens, mailbox: MAILBOX, retry: { attempts: 3, firstBackoffMs: 1 } });
		await expect(retrying.post('/users/x/sendMail', {})).rejects.toMatchObject({ code: 'GRAPH_ERROR', attempts: 3, ambiguous: false });
		retrying.close();
		expect(other.seen).toHaveLength(0);
		const trusted = createGraphClient({ graphHost: other.host, tokens, mailbox: MAILBOX, trust: { rejectUnauthorized: true, ca: otherPki.ca } });
		await expect(trusted.get('/me')).resolves.toEqual({ id: 'ok' });
		untrusted.close();
		trusted.close();
	});
});

describe('Graph error mapping', () => {
	it.each([
		[{ status: 403, graphCode: 'ErrorAccessDenied' }, 'GRAPH_ACCESS_DENIED', /RBAC for Applications/],
		[{ status: 403, graphCode: 'ErrorSendAsDenied' }, 'GRAPH_ACCESS_DENIED', /Send As/],
		[{ status: 404, graphCode: 'MailboxNotEnabledForRESTAPI' }, 'GRAPH_MAILBOX_NOT_REST', /Exchange Online/],
		[{ status: 404, graphCode: 'ErrorItemNotFound' }, 'GRAPH_NOT_FOUND', /moved or deleted/],
		[{ status: 413, graphCode: 'RequestEntityTooLarge' }, 'GRAPH_TOO_LARGE', /upload session/],
		[{ status: 400, graphCode: 'ErrorMessageSizeExceeded' }, 'GRAPH_TOO_LARGE', /MaxSendSize/],
		[{ status: 401, graphCode: 'InvalidAuthenticationToken', graphMessage: 'Access token validation failure. Invalid audience.' }, 'GRAPH_UNAUTHORIZED', /Graph scope/],
		[{ status: 429, graphCode: 'ApplicationThrottled' }, 'GRAPH_THROTTLED', /4 concurrent/],
		[{ status: 500, graphCode: 'InternalServerError' }, 'GRAPH_ERROR', /retry later/],
	])('%j -> %s', (failure, code, hint) => {
		const error = graphError({ request: 'POST /users/x/sendMail', ...failure });
		expect(error).toMatchObject({ code, responseCode: failure.status });
		expect(error.hint).toMatch(hint);
		expect(error.message).not.toMatch(/\n/);
	});
});
