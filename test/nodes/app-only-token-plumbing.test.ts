import { randomUUID } from 'node:crypto';

import {
	appOnlyClientCount,
	appOnlyTokenProvider,
	configureAppOnlyClientCache,
	type AppOnlyConfig,
} from '../../auth/app-only-token-provider';
import { resolveCloud } from '../../auth/clouds';
import { IdentityError } from '../../auth/identity-errors';
import { runNode } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');

// Defect 8: the MSAL client cache is bounded (size and idle time) and a token request that
// the identity platform does not answer ends with its own clear error, not fetch's ~300 s.
const TENANT = '7d2e4f60-1a2b-4c3d-8e9f-a0b1c2d3e4f5';
const MAILBOX = 'robot@contoso.example';
const EXCHANGE = 'https://outlook.office365.com';

let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let peer: Awaited<ReturnType<typeof startSmtpPeer>>;

beforeAll(async () => {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	peer = await startSmtpPeer({
		pki,
		validateBearer: (token: string, user: string) => idp.introspect(token, { audience: EXCHANGE, mailbox: user, role: 'SMTP.SendAsApp' }).active,
	});
});

afterAll(async () => {
	configureAppOnlyClientCache();
	await peer?.close();
	await idp?.close();
});

afterEach(() => {
	idp.delayAnswers(0);
	delete process.env.MAM_TOKEN_TIMEOUT_MS;
});

/** An app with one secret per credential "version" (as if the secret was edited). */
function registerApp(versions: number) {
	const clientId = randomUUID();
	const secrets = Array.from({ length: versions }, (_, i) => `secret-v${i}-${randomUUID()}`);
	idp.addApp({ tenant: TENANT, clientId, secrets: secrets.map((value) => ({ value })), appRoles: ['SMTP.SendAsApp'] });
	idp.grantMailbox({ tenant: TENANT, clientId, mailbox: MAILBOX });
	const config = (secret: string, extra: Partial<AppOnlyConfig> = {}): AppOnlyConfig => ({
		tenantId: TENANT,
		clientId,
		cloud: resolveCloud('custom', { authorityHost: idp.authorityHost, exchangeHost: EXCHANGE }),
		clientSecret: secret,
		...extra,
	});
	return { clientId, secrets, config };
}

const tokenRequests = (clientId: string) => idp.counts({ grantType: 'client_credentials', clientId });

describe('app-only token provider: bounded client cache', () => {
	it('keeps at most 50 clients: the least recently used one is dropped with its tokens', async () => {
		configureAppOnlyClientCache();
		const { clientId, secrets, config } = registerApp(52);
		const first = appOnlyTokenProvider(config(secrets[0]));
		await first.getToken('exchange');
		expect(tokenRequests(clientId)).toBe(1);
		await first.getToken('exchange');
		expect(tokenRequests(clientId)).toBe(1); // cached while the client lives

		for (const secret of secrets.slice(1)) appOnlyTokenProvider(config(secret));
		expect(appOnlyClientCount()).toBe(50);
		// The first version was evicted with its token: using it again builds a new client.
		await first.getToken('exchange');
		expect(tokenRequests(clientId)).toBe(2);
		expect(appOnlyClientCount()).toBe(50);
	});

	it('drops a client unused for the idle time (fake clock), and never holds more than the bound', async () => {
		let now = 1_000_000;
		configureAppOnlyClientCache({ maxClients: 3, idleMs: 30 * 60 * 1000, now: () => now });
		const { clientId, secrets, config } = registerApp(5);
		const providers = secrets.map((secret) => appOnlyTokenProvider(config(secret)));
		expect(appOnlyClientCount()).toBe(3);

		await providers[4].getToken('exchange');
		expect(tokenRequests(clientId)).toBe(1);
		now += 29 * 60 * 1000;
		await providers[4].getToken('exchange'); // touched: stays
		expect(tokenRequests(clientId)).toBe(1);
		now += 29 * 60 * 1000;
		// Versions 2 and 3 have been idle for 58 minutes; version 4 was used 29 minutes ago.
		expect(appOnlyClientCount()).toBe(1);
		now += 31 * 60 * 1000;
		expect(appOnlyClientCount()).toBe(0);
		await providers[4].getToken('exchange');
		expect(tokenRequests(clientId)).toBe(2); // rebuilt: the old client's token went with it
	});
});

describe('app-only token provider: time-out of the identity platform', () => {
	beforeAll(() => configureAppOnlyClientCache());

	it('a token endpoint that does not answer fails within the configured bound, with one clear line and a hint', async () => {
		const { secrets, config } = registerApp(1);
		idp.delayAnswers(8_000);
		const started = Date.now();
		const error = await appOnlyTokenProvider(config(secrets[0], { tokenTimeoutMs: 700 }))
			.getToken('exchange')
			.then(
				() => undefined,
				(e: unknown) => e,
			);
		const elapsed = Date.now() - started;
		expect(error).toBeInstanceOf(IdentityError);
		expect((error as IdentityError).code).toBe('IDENTITY_TIMEOUT');
		expect((error as IdentityError).message).toBe(`The Microsoft identity platform did not answer within 0.7 s (${idp.authorityHost})`);
		expect((error as IdentityError).hint).toMatch(/MAM_TOKEN_TIMEOUT_MS/);
		expect(elapsed).toBeLessThan(4_000);
	});

	it('a discovery request that hangs is reported the same way (not as "tenant not found")', async () => {
		const { secrets, config } = registerApp(1);
		idp.delayAnswers(8_000, 'all');
		const started = Date.now();
		await expect(appOnlyTokenProvider(config(secrets[0], { tokenTimeoutMs: 600 })).getToken('exchange')).rejects.toMatchObject({
			code: 'IDENTITY_TIMEOUT',
			message: expect.stringMatching(/^The Microsoft identity platform did not answer within 0\.6 s/),
		});
		expect(Date.now() - started).toBeLessThan(4_000);
	});

	it('Send Email: MAM_TOKEN_TIMEOUT_MS bounds the wait, the item error says so, nothing is sent', async () => {
		const { clientId, secrets } = registerApp(1);
		process.env.MAM_TOKEN_TIMEOUT_MS = '800';
		idp.delayAnswers(8_000);
		peer.reset();
		const started = Date.now();
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { authentication: 'microsoftAppOnly', toEmail: 'someone@example.org', subject: 'timeout', emailFormat: 'text', text: 'x' },
			items: [{ json: {} }],
			credentials: {
				modernAuthMicrosoftAppOnlyApi: {
					id: `tmo${clientId.slice(0, 13)}`,
					name: 'timeout',
					data: { tenantId: TENANT, clientId, authType: 'secret', clientSecret: secrets[0], cloud: 'custom', authorityHost: idp.authorityHost, exchangeHost: EXCHANGE, smtpServer: `127.0.0.1:${peer.port}`, mailbox: MAILBOX },
				},
			},
		});
		expect(Date.now() - started).toBeLessThan(6_000);
		expect(error?.message).toBe(`Item 0: The Microsoft identity platform did not answer within 0.8 s (${idp.authorityHost})`);
		expect(error?.description).toMatch(/Try again later/);
		expect(peer.received).toHaveLength(0);
	});
});
