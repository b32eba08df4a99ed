import { randomUUID } from 'node:crypto';

import { runNode, TestCredentialsHelper, type InputItem } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');

const TENANT = '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d';
const USER = 'ann@fabrikam.example';
const CLIENT_ID = randomUUID();
const CLIENT_SECRET = `delegated-secret-${randomUUID()}`;
const SCOPE = 'https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access';

let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let peer: Awaited<ReturnType<typeof startSmtpPeer>>;
const refusedTokens = new Set<string>();

beforeAll(async () => {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['fabrikam.example'] });
	idp.addApp({ tenant: TENANT, clientId: CLIENT_ID, secrets: [{ value: CLIENT_SECRET }], redirectUris: ['http://localhost:5678/rest/oauth2-credential/callback'] });
	idp.addUser({ tenant: TENANT, username: USER, password: 'Ann-Passw0rd!' });
	// Short-lived access tokens: every execution must refresh before it sends.
	idp.setTokenLifetime(120);
	peer = await startSmtpPeer({
		pki,
		validateBearer: (token: string, user: string) =>
			!refusedTokens.has(token) &&
			idp.introspect(token, { audience: 'https://outlook.office.com', mailbox: user, scope: 'SMTP.Send' }).active,
	});
});

afterAll(async () => {
	await peer?.close();
	await idp?.close();
});

beforeEach(() => peer.reset());

/** What n8n holds after "Connect my account": tokens from the authorization (here: ROPC). */
async function connectAccount() {
	const response = await fetch(idp.tokenEndpoint(TENANT), {
		method: 'POST',
		headers: { 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({ grant_type: 'password', client_id: CLIENT_ID, client_secret: CLIENT_SECRET, username: USER, password: 'Ann-Passw0rd!', scope: SCOPE }),
	});
	expect(response.status).toBe(200);
	return (await response.json()) as { access_token: string; refresh_token: string };
}

function delegatedCredential(tokens: { access_token: string; refresh_token: string }) {
	return {
		id: 'delegatedCred001',
		name: 'Ann (delegated)',
		data: {
			grantType: 'authorizationCode',
			clientId: CLIENT_ID,
			clientSecret: CLIENT_SECRET,
			// n8n resolves these hidden fields from Cloud/Tenant; the test store holds them resolved.
			authUrl: `${idp.authorityHost}/${TENANT}/oauth2/v2.0/authorize`,
			accessTokenUrl: idp.tokenEndpoint(TENANT),
			scope: SCOPE,
			authentication: 'body',
			cloud: 'custom',
			authorityHost: idp.authorityHost,
			tenant: TENANT,
			useFor: 'imapSmtp',
			mailbox: '',
			smtpServer: `127.0.0.1:${peer.port}`,
			oauthTokenData: { ...tokens, token_type: 'Bearer' },
		},
	};
}

const parameters = { authentication: 'microsoftDelegated', toEmail: '={{ $json.to }}', subject: 'delegated', emailFormat: 'text', text: 'hi' };
const items = (n: number): InputItem[] => Array.from({ length: n }, (_, i) => ({ json: { to: `r${i}@example.org` } }));
const refreshes = () => idp.counts({ grantType: 'refresh_token', clientId: CLIENT_ID });

describe('Send Email (Modern Auth) with the Microsoft delegated credential', () => {
	it('refreshes through n8n once per execution, persists the rotated refresh token, and the next execution uses it', async () => {
		const connected = await connectAccount();
		const store = new TestCredentialsHelper();
		const credential = delegatedCredential(connected);
		const before = refreshes();

		const first = await runNode({ type: 'modernAuthSendEmail', parameters: { ...parameters, options: { maxConnections: 3 } }, items: items(10), credentials: { modernAuthMicrosoftDelegatedOAuth2Api: credential }, credentialsHelper: store });
		expect(first.error).toBeUndefined();
		expect(peer.received).toHaveLength(10);
		expect(peer.received[0].user).toBe(USER); // XOAUTH2 user taken from the token's upn
		expect(refreshes()).toBe(before + 1);
		expect(store.updates.length).toBeGreaterThanOrEqual(1);
		const rotated = (store.updates[store.updates.length - 1].data.oauthTokenData as { refresh_token: string }).refresh_token;
		expect(rotated).toBeTruthy();
		expect(rotated).not.toBe(connected.refresh_token);
		expect(JSON.stringify(first.run)).not.toContain(rotated);
		expect(JSON.stringify(first.run)).not.toContain(CLIENT_SECRET);

		// Next execution reads the stored (rotated) token; the old one is already refused.
		peer.reset();
		const second = await runNode({ type: 'modernAuthSendEmail', parameters, items: items(2), credentials: { modernAuthMicrosoftDelegatedOAuth2Api: { ...credential, data: store.store.get(credential.id)! } }, credentialsHelper: store });
		expect(second.error).toBeUndefined();
		expect(peer.received).toHaveLength(2);
		expect(refreshes()).toBe(before + 2);
		const rotatedAgain = (store.store.get(credential.id)!.oauthTokenData as { refresh_token: string }).refresh_token;
		expect(rotatedAgain).not.toBe(rotated);
	});

	it('a token the server refuses is refreshed once through n8n, and no item fails', async () => {
		const connected = await connectAccount();
		// A stored access token that is still "valid" by its exp, but the server refuses it.
		refusedTokens.add(connected.access_token);
		idp.setTokenLifetime(3600);
		try {
			const fresh = await connectAccount();
			refusedTokens.add(fresh.access_token);
			const before = refreshes();
			const { error, output } = await runNode({
				type: 'modernAuthSendEmail',
				parameters: { ...parameters, options: { maxConnections: 2, mailbox: USER } },
				items: items(6),
				credentials: { modernAuthMicrosoftDelegatedOAuth2Api: delegatedCredential(fresh) },
			});
			expect(error).toBeUndefined();
			expect(output.filter((o) => o.json.error)).toEqual([]);
			expect(peer.received).toHaveLength(6);
			expect(refreshes()).toBe(before + 1);
		} finally {
			idp.setTokenLifetime(120);
		}
	});

	it('a revoked sign-in says to reconnect the credential', async () => {
		const connected = await connectAccount();
		idp.revokeRefreshTokens({ username: USER });
		const { error } = await runNode({ type: 'modernAuthSendEmail', parameters, items: items(1), credentials: { modernAuthMicrosoftDelegatedOAuth2Api: delegatedCredential(connected) } });
		expect(error?.message).toMatch(/sign-in of this credential has expired or was revoked/);
		expect(error?.description).toMatch(/Connect my account/);
		expect(peer.received).toHaveLength(0);
	});
});
