import { randomUUID } from 'node:crypto';

import { appOnlyGraphCredential, issuedTokens, registerGraphApp, ROBOT, startGraphPeers, type GraphPeers } from './graph-fixture';
import { expectFirstFailure, expectNoSecrets, itemsOf, statusByStep, testConnection } from './test-connection-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');

// The Test Connection node with Microsoft credentials, through n8n's engine: IMAP
// XOAUTH2 against Dovecot (which asks the fake identity platform about every token, as
// Exchange decides) and Microsoft Graph against the fake Graph.
const TENANT = '5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b';
const MAILBOX = 'robot@contoso.example';
const USER = 'ann@contoso.example';
const USER_PASSWORD = 'Ann-test-conn-Passw0rd!';
const DELEGATED_APP = '0d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a';
const DELEGATED_SECRET = `delegated-${randomUUID()}`;

let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;
let graphPeers: GraphPeers;

beforeAll(async () => {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	idp.addApp({ tenant: TENANT, clientId: DELEGATED_APP, secrets: [{ value: DELEGATED_SECRET }] });
	idp.addUser({ tenant: TENANT, username: USER, password: USER_PASSWORD });
	dovecot = await startDovecot({ pki, users: {}, oauth2: { introspectionUrl: idp.introspectionUrl, mailboxes: [MAILBOX, USER] } });
	graphPeers = await startGraphPeers();
}, 120_000);

afterAll(async () => {
	await dovecot?.stop();
	await idp?.close();
	await graphPeers?.graph.close();
	await graphPeers?.idp.close();
});

/** An app registration for IMAP app-only; `grant` = registered in Exchange with a mailbox permission. */
function imapApp(options: { roles?: string[]; grant?: boolean; pendingTries?: number; tenantId?: string } = {}) {
	const clientId = randomUUID();
	const secret = `imap-app-secret-${randomUUID()}`;
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }], appRoles: options.roles ?? ['IMAP.AccessAsApp'] });
	if (options.grant !== false) idp.grantMailbox({ tenant: TENANT, clientId, mailbox: MAILBOX, pendingTries: options.pendingTries ?? 0 });
	const credentials = {
		modernAuthMicrosoftAppOnlyApi: {
			id: `imapapp${clientId.slice(0, 9)}`,
			name: 'Contoso IMAP app-only',
			data: {
				tenantId: options.tenantId ?? TENANT,
				clientId,
				authType: 'secret',
				clientSecret: secret,
				cloud: 'custom',
				authorityHost: idp.authorityHost,
				exchangeHost: 'https://outlook.office365.com',
				imapServer: `${dovecot.host}:${dovecot.tlsPort}`,
				mailbox: MAILBOX,
			},
		},
	};
	return { clientId, secret, credentials };
}

/** What n8n stores after Connect my account as Ann (tokens from the password grant here). */
async function delegatedImap() {
	const response = await fetch(idp.tokenEndpoint(TENANT), {
		method: 'POST',
		headers: { 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({ grant_type: 'password', client_id: DELEGATED_APP, client_secret: DELEGATED_SECRET, username: USER, password: USER_PASSWORD, scope: 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access' }),
	});
	expect(response.status).toBe(200);
	const tokens = (await response.json()) as { access_token: string; refresh_token: string };
	const credentials = {
		modernAuthMicrosoftDelegatedOAuth2Api: {
			id: `del${randomUUID().slice(0, 13)}`,
			name: 'Ann (delegated)',
			data: {
				grantType: 'authorizationCode',
				clientId: DELEGATED_APP,
				clientSecret: DELEGATED_SECRET,
				authUrl: `${idp.authorityHost}/${TENANT}/oauth2/v2.0/authorize`,
				accessTokenUrl: idp.tokenEndpoint(TENANT),
				scope: 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access',
				authentication: 'body',
				cloud: 'custom',
				authorityHost: idp.authorityHost,
				tenant: TENANT,
				useFor: 'imapSmtp',
				mailbox: '',
				imapServer: `${dovecot.host}:${dovecot.tlsPort}`,
				oauthTokenData: { ...tokens, token_type: 'Bearer' },
			},
		},
	};
	return { tokens, credentials };
}

const appOnlyImap = (credentials: Record<string, unknown>, options: Record<string, unknown> = {}) =>
	testConnection({ parameters: { authentication: 'microsoftAppOnly', protocol: 'imap', mailbox: '', options }, credentials: credentials as never });

describe('Test Connection (Modern Auth) with Microsoft credentials, run by n8n-core', () => {
	it('app-only IMAP: a registered, granted app passes token, permission, login and read; the token itself is in no item', async () => {
		const app = imapApp();
		const { output, error, serialized } = await appOnlyImap(app.credentials);
		expect(error).toBeUndefined();
		const { checks, summary } = itemsOf(output);
		expect(statusByStep(checks)).toMatchObject({ reach: 'pass', tls: 'pass', token: 'pass', permission: 'pass', login: 'pass', read: 'pass' });
		expect(checks.find((c) => c.step === 'token')?.target).toBe('exchange');
		expect(checks.find((c) => c.step === 'permission')?.detail).toMatch(/IMAP\.AccessAsApp/);
		expect(summary.verdict).not.toBe('fail');
		expect(summary.firstFailingStep).toBe('');
		expectNoSecrets(serialized, [app.secret, ...idp.issuedTokens]);
		// Identifiers only masked: the client id's last 4 may show, never the whole of it.
		expect(serialized).not.toContain(app.clientId);
	});

	it('app-only IMAP: an app not registered in Exchange fails at login with the New-ServicePrincipal and Add-MailboxPermission lines for its own client id', async () => {
		const app = imapApp({ grant: false });
		const { output, serialized } = await appOnlyImap(app.credentials);
		const { checks, summary } = itemsOf(output);
		expect(statusByStep(checks)).toMatchObject({ token: 'pass', permission: 'pass', login: 'fail', read: 'skipped' });
		const login = expectFirstFailure(checks, summary, 'login');
		expect(login.hint).toMatch(/New-ServicePrincipal/);
		expect(login.hint).toMatch(/Add-MailboxPermission/);
		expect(login.hint).toContain(app.clientId); // the PowerShell lines carry the real id (not a secret)
		expect(login.hint).toContain(MAILBOX);
		expectNoSecrets(serialized, [app.secret, ...idp.issuedTokens]);
	});

	it('app-only IMAP: a token without IMAP.AccessAsApp fails at permission; a wrong secret fails at token and skips the rest', async () => {
		const noRole = imapApp({ roles: ['SMTP.SendAsApp'] });
		const missing = itemsOf((await appOnlyImap(noRole.credentials)).output);
		expect(statusByStep(missing.checks)).toMatchObject({ token: 'pass', permission: 'fail' });
		expect(expectFirstFailure(missing.checks, missing.summary, 'permission').hint).toMatch(/IMAP\.AccessAsApp/);

		const wrong = imapApp();
		const wrongSecret = `wrong-secret-${randomUUID()}`;
		wrong.credentials.modernAuthMicrosoftAppOnlyApi.data.clientSecret = wrongSecret;
		const { output, serialized } = await appOnlyImap(wrong.credentials);
		const refused = itemsOf(output);
		const token = expectFirstFailure(refused.checks, refused.summary, 'token');
		expect(token.code).toBe('AADSTS7000215');
		const after = refused.checks.slice(refused.checks.indexOf(token) + 1);
		expect(after.filter((c) => ['permission', 'login', 'read'].includes(c.step)).every((c) => c.status === 'skipped')).toBe(true);
		expectNoSecrets(serialized, [wrongSecret, wrong.secret]);
	});

	it('Retry Permission Errors For: a mailbox permission still propagating passes on a later try as a warning naming propagation delay', async () => {
		// Each sign-in is refused twice (the reader renews a refused token once): 3 pending refusals clear on the second try.
		const without = itemsOf((await appOnlyImap(imapApp({ pendingTries: 3 }).credentials)).output);
		expect(expectFirstFailure(without.checks, without.summary, 'login').code).toBe('IMAP_AUTH_FAILED');

		const app = imapApp({ pendingTries: 3 });
		const { output } = await appOnlyImap(app.credentials, { propagationRetryMinutes: 1 });
		const { checks, summary } = itemsOf(output);
		const login = checks.find((c) => c.step === 'login')!;
		expect(login).toMatchObject({ status: 'warn', code: 'PROPAGATION_DELAY' });
		expect(login.detail).toMatch(/propagation delay/);
		expect(statusByStep(checks).read).toBe('pass');
		expect(summary).toMatchObject({ verdict: 'warn', firstFailingStep: '' });
	}, 60_000);

	it('a credential whose fields are wrong fails the item naming it; with On Error: Continue it is a failed summary', async () => {
		const app = imapApp({ tenantId: 'organizations' });
		const stopped = await appOnlyImap(app.credentials);
		expect(stopped.error?.message).toBe('Item 0: Tenant ID "organizations" is neither a GUID nor a domain');
		expect(stopped.error?.description).toMatch(/^Copy Directory \(tenant\) ID/);

		const continued = await testConnection({ parameters: { authentication: 'microsoftAppOnly' }, credentials: app.credentials as never, onError: 'continueRegularOutput', items: 2 });
		for (const item of [0, 1]) {
			const { checks, summary } = itemsOf(continued.output, item);
			expect(checks).toEqual([]);
			expect(summary).toMatchObject({ verdict: 'fail', firstFailingStep: 'credential', code: 'TENANT_ID_INVALID', detail: `Item ${item}: Tenant ID "organizations" is neither a GUID nor a domain`, protocol: 'imap' });
		}
		expectNoSecrets(stopped.serialized + continued.serialized, [app.secret]);
	});

	it('delegated IMAP: the signed-in account passes mailbox access; a Mailbox it may not open warns at mailbox access and fails at login with the wrong-account fix', async () => {
		const own = await delegatedImap();
		const passing = await testConnection({ parameters: { authentication: 'microsoftDelegated', protocol: 'imap', mailbox: '' }, credentials: own.credentials });
		const signedIn = itemsOf(passing.output);
		expect(statusByStep(signedIn.checks)).toMatchObject({ token: 'pass', permission: 'pass', 'mailbox-access': 'pass', login: 'pass', read: 'pass' });
		expect(signedIn.summary.firstFailingStep).toBe('');

		const other = await delegatedImap();
		const wrong = await testConnection({ parameters: { authentication: 'microsoftDelegated', mailbox: MAILBOX }, credentials: other.credentials });
		const { checks, summary } = itemsOf(wrong.output);
		expect(checks.find((c) => c.step === 'mailbox-access')).toMatchObject({ target: MAILBOX, status: 'warn', code: 'MAILBOX_OTHER_ACCOUNT' });
		const login = expectFirstFailure(checks, summary, 'login');
		expect(login.hint).toMatch(/Connect my account again in a private window/);
		expectNoSecrets(passing.serialized + wrong.serialized, [DELEGATED_SECRET, USER_PASSWORD, own.tokens.access_token, own.tokens.refresh_token, other.tokens.access_token, other.tokens.refresh_token]);
	});

	it('Graph app-only: a consented app passes token, permission and the Inbox read; a wrong secret fails at token', async () => {
		const app = registerGraphApp(graphPeers);
		const good = await testConnection({ parameters: { authentication: 'microsoftAppOnlyGraph', protocol: 'default' }, credentials: appOnlyGraphCredential(graphPeers, app) });
		expect(good.error).toBeUndefined();
		const passing = itemsOf(good.output);
		expect(statusByStep(passing.checks)).toMatchObject({ reach: 'pass', tls: 'pass', token: 'pass', read: 'pass' });
		expect(passing.checks.find((c) => c.step === 'token')?.target).toBe('graph');
		expect(passing.checks.every((c) => c.protocol === 'graph')).toBe(true);
		expect(passing.summary.firstFailingStep).toBe('');
		expect(passing.summary.verdict).not.toBe('fail');

		const wrongSecret = `wrong-graph-secret-${randomUUID()}`;
		const bad = await testConnection({ parameters: { authentication: 'microsoftAppOnlyGraph' }, credentials: appOnlyGraphCredential(graphPeers, { ...app, secret: wrongSecret }) });
		const failing = itemsOf(bad.output);
		expect(expectFirstFailure(failing.checks, failing.summary, 'token').code).toBe('AADSTS7000215');
		expect(statusByStep(failing.checks).read).toBe('skipped');
		expectNoSecrets(good.serialized + bad.serialized, [app.secret, wrongSecret, ...issuedTokens(graphPeers)]);
	});

	it('Round Trip To: the Graph test sends one message to the address and reads it back; without the option nothing is sent', async () => {
		const app = registerGraphApp(graphPeers);
		const credentials = appOnlyGraphCredential(graphPeers, app);
		const before = graphPeers.graph.deliveries.length;
		const plain = itemsOf((await testConnection({ parameters: { authentication: 'microsoftAppOnlyGraph' }, credentials })).output);
		expect(plain.checks.some((c) => c.step === 'round-trip')).toBe(false);
		expect(graphPeers.graph.deliveries.length).toBe(before);

		const { output } = await testConnection({ parameters: { authentication: 'microsoftAppOnlyGraph', options: { roundTripTo: ROBOT, roundTripTimeoutSeconds: 20 } }, credentials });
		const { checks, summary } = itemsOf(output);
		expect(checks.at(-1)).toMatchObject({ step: 'round-trip', target: ROBOT, status: 'pass' });
		expect(checks.at(-1)?.detail).toMatch(/^arrived in Inbox after \d+ ms/);
		expect(graphPeers.graph.deliveries.slice(before)).toMatchObject([{ mailbox: ROBOT, to: [ROBOT] }]);
		expect(summary.firstFailingStep).toBe('');
	});
});
