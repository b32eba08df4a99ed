import { NodeHelpers, type INodeProperties } from 'n8n-workflow';

import { ewsKind } from '../../connections/ews';
import { readEwsCredential } from '../../connections/ews-credential';
import { EXCHANGE_ONLINE_URL_PATTERN, ModernAuthEwsApi } from '../../credentials/ModernAuthEwsApi.credentials';
import { runChecks } from '../../diagnostics/checks';
import { isExchangeOnline } from '../../transports/ews/exchange-online';
import { appOnlyCredential, issuedTokens, NTLM_PASSWORD, ntlmCredential, RECIPIENT, registerEwsApp, ROBOT, startEwsPeers, stopEwsPeers, tokenRequests, type EwsPeers } from '../nodes/ews-fixture';
import { expectFirstFailure, expectNoSecrets, itemsOf, statusByStep, testConnection } from '../nodes/test-connection-run';

// The Test Connection node's EWS stages, run by n8n-core against the fake EWS server and the
// fake identity platform: each step passes, or the first failing one says why and how to fix it.
let peers: EwsPeers;

beforeAll(async () => {
	peers = await startEwsPeers();
}, 60_000);
afterAll(async () => await stopEwsPeers(peers));

const run = (credentials: Record<string, unknown>, parameters: Record<string, unknown> = {}) =>
	testConnection({ parameters: { authentication: 'ews', protocol: 'default', mailbox: '', options: {}, ...parameters }, credentials: credentials as never });

describe('Test Connection (Modern Auth) through EWS', () => {
	it('NTLM: reach, TLS, login (GetFolder Inbox) and read (Inbox counts) pass', async () => {
		const { output, error, serialized } = await run(ntlmCredential(peers));
		expect(error).toBeUndefined();
		const { checks, summary } = itemsOf(output);
		expect(checks.map((c) => `${c.step}:${c.status}`)).toEqual(['reach:pass', 'tls:pass', 'login:pass', 'read:pass']);
		expect(checks.every((c) => c.protocol === 'ews' && c.authentication === 'ews')).toBe(true);
		expect(checks.find((c) => c.step === 'read')?.facts).toMatchObject({ total: expect.any(Number) });
		expect(summary.verdict).toBe('pass');
		expectNoSecrets(serialized, [NTLM_PASSWORD]);
	});

	it('app-only: token and permission stages before the login; a round trip sends through EWS and finds the message in the Inbox', async () => {
		const app = registerEwsApp(peers);
		const { output, serialized } = await run(appOnlyCredential(peers, app), { options: { roundTripTo: ROBOT, roundTripTimeoutSeconds: 20 } });
		const { checks, summary } = itemsOf(output);
		expect(statusByStep(checks)).toMatchObject({ reach: 'pass', tls: 'pass', token: 'pass', permission: 'pass', login: 'pass', read: 'pass', 'round-trip': 'pass' });
		expect(checks.find((c) => c.step === 'permission')?.detail).toMatch(/full_access_as_app is in the token/);
		expect(summary.verdict).toBe('pass');
		expectNoSecrets(serialized, [app.secret, ...issuedTokens(peers)]);
	});

	it('NTLM with a wrong password: login fails first with the fix, read is skipped', async () => {
		const { output } = await run(ntlmCredential(peers, { password: 'Not-The-Passw0rd' }));
		const { checks, summary } = itemsOf(output);
		const failed = expectFirstFailure(checks, summary, 'login');
		expect(failed.code).toBe('EWS_UNAUTHORIZED');
		expect(failed.hint).toMatch(/Check Username, Password and Domain/);
		expect(checks.find((c) => c.step === 'read')?.status).toBe('skipped');
	});

	it('an Exchange Online URL warns with the dates and "prefer Graph" before anything else', async () => {
		const connection = await ewsKind.open(ntlmCredential(peers, { ewsAuth: 'basic', url: 'https://outlook.office365.com/EWS/Exchange.asmx' }).modernAuthEwsApi.data, {});
		const list = await connection.checks({ protocol: 'ews', mailbox: '' });
		expect(list[0]).toMatchObject({ step: 'credential', target: 'EWS in Exchange Online' });
		const [warning] = await runChecks([list[0]]);
		expect(warning).toMatchObject({ status: 'warn', code: 'EWS_EXCHANGE_ONLINE' });
		expect(warning.detail).toMatch(/1 October 2026/);
		expect(warning.detail).toMatch(/1 April 2027/);
		expect(warning.hint).toMatch(/Prefer Graph/);
		// An on-premises URL has no such stage.
		const onPremises = await (await ewsKind.open(ntlmCredential(peers).modernAuthEwsApi.data, {})).checks({ protocol: 'ews', mailbox: '' });
		expect(onPremises.map((c) => c.step)).not.toContain('credential');
	});

	it('a credential refused for a bad field fails the item naming it (On Error: Continue), with 0 requests and 0 token requests', async () => {
		const requests = peers.ews.counts().requests;
		const tokens = tokenRequests(peers);
		const result = await testConnection({
			parameters: { authentication: 'ews', protocol: 'default', mailbox: '', options: {} },
			credentials: ntlmCredential(peers, { ewsAuth: 'oauthAppOnly', tenantId: 'common', clientId: '00000000-0000-0000-0000-000000000001', clientSecret: 'some-secret-value' }) as never,
			onError: 'continueRegularOutput',
		});
		const summary = result.output.at(-1)!.json;
		expect(summary).toMatchObject({ step: 'summary', verdict: 'fail', firstFailingStep: 'credential', code: 'TENANT_ID_INVALID' });
		expect(peers.ews.counts().requests).toBe(requests);
		expect(tokenRequests(peers)).toBe(tokens);
	});
});

describe('EWS credential', () => {
	const properties = new ModernAuthEwsApi().properties;
	const shown = (values: Record<string, unknown>) =>
		properties.filter((p) => NodeHelpers.displayParameter({ ...defaults(properties), ...values } as never, p as INodeProperties, null, null)).map((p) => p.name);

	it('has the field names the nodes and the end-to-end run use', () => {
		const names = new Set(properties.map((p) => p.name));
		for (const name of ['endpoint', 'url', 'autodiscoverEmail', 'autodiscoverUrl', 'ewsAuth', 'username', 'password', 'domain', 'tenantId', 'clientId', 'cloud', 'authorityHost', 'exchangeHost', 'authType', 'clientSecret', 'certificatePem', 'privateKeyPem', 'passphrase', 'mailbox', 'allowedMailboxes', 'serverVersion', 'caCertificate', 'allowUnauthorizedCerts']) {
			expect(names).toContain(name);
		}
		expect(properties.find((p) => p.name === 'allowUnauthorizedCerts')?.default).toBe(false);
		expect(properties.find((p) => p.name === 'password')?.typeOptions?.password).toBe(true);
	});

	it('shows the Exchange Online notice exactly for the URLs the transport counts as Exchange Online', () => {
		const urls = [
			'https://outlook.office365.com/EWS/Exchange.asmx',
			'https://outlook.office.de/EWS/Exchange.asmx',
			'https://partner.outlook.cn/EWS/Exchange.asmx',
			'https://outlook.office365.us/EWS/Exchange.asmx',
			'https://contoso.mail.protection.outlook.com/EWS/Exchange.asmx',
			'https://mail.contoso.com/EWS/Exchange.asmx',
			'https://outlook.office365.com.evil.example/EWS/Exchange.asmx',
			'https://127.0.0.1:8443/EWS/Exchange.asmx',
		];
		for (const url of urls) {
			const notice = shown({ endpoint: 'url', url }).includes('exchangeOnlineNotice');
			expect([url, notice]).toEqual([url, isExchangeOnline(url)]);
		}
		expect(new RegExp(EXCHANGE_ONLINE_URL_PATTERN).test('https://outlook.office365.com/EWS/Exchange.asmx')).toBe(true);
		// Shown by default (the default URL is Exchange Online), not with Autodiscover.
		expect(shown({})).toContain('exchangeOnlineNotice');
		expect(shown({ endpoint: 'autodiscover' })).not.toContain('exchangeOnlineNotice');
	});

	it('shows the fields of the chosen authentication: ROPC with its warning, app-only with its permissions', () => {
		expect(shown({ ewsAuth: 'ntlm' })).toEqual(expect.arrayContaining(['username', 'password', 'domain']));
		expect(shown({ ewsAuth: 'ntlm' })).not.toContain('tenantId');
		expect(shown({ ewsAuth: 'basic' })).not.toContain('domain');
		expect(shown({ ewsAuth: 'oauthRopc' })).toEqual(expect.arrayContaining(['ropcNotice', 'username', 'password', 'tenantId', 'clientId', 'clientSecret', 'cloud']));
		expect(properties.find((p) => p.name === 'ropcNotice')?.displayName).toMatch(/does not work .* MFA.*Microsoft deprecates it/);
		expect(shown({ ewsAuth: 'oauthAppOnly' })).toEqual(expect.arrayContaining(['appOnlyNotice', 'tenantId', 'clientId', 'authType', 'clientSecret', 'cloud']));
		expect(properties.find((p) => p.name === 'appOnlyNotice')?.displayName).toMatch(/full_access_as_app.*ApplicationImpersonation.*X-AnchorMailbox/);
		expect(shown({ ewsAuth: 'oauthAppOnly' })).not.toContain('password');
	});

	it.each([
		[{ endpoint: 'autodiscover', autodiscoverEmail: '' }, 'Email Address is empty'],
		[{ endpoint: 'autodiscover', autodiscoverEmail: 'a@b.example', autodiscoverUrl: 'http://autodiscover.b.example/autodiscover/autodiscover.xml' }, 'Autodiscover URL must be https://'],
		[{ url: 'mail.contoso.com' }, 'EWS URL "mail.contoso.com" is not a URL'],
		[{ password: '' }, 'Password is empty for robot'],
		[{ ewsAuth: 'oauthRopc', username: 'ann@contoso.example', tenantId: 'organizations', clientId: '00000000-0000-0000-0000-000000000001' }, 'Username/password sign-in (ROPC) needs a specific tenant'],
		[{ mailbox: 'two@a.example, three@a.example' }, 'Default Mailbox "two@a.example, three@a.example" is not a plain address'],
		[{ caCertificate: 'not a certificate' }, 'Trusted CA Certificate is not a PEM certificate'],
	])('refuses %j: %s', (overrides, message) => {
		const data = ntlmCredential(peers, overrides).modernAuthEwsApi.data;
		expect(() => readEwsCredential(data)).toThrow(message);
	});

	it('splits DOMAIN\\name into the NTLM account; Ignore Certificate Problems is a warning of the connection', async () => {
		const credential = readEwsCredential(ntlmCredential(peers, { username: 'CONTOSO\\robot', domain: '' }).modernAuthEwsApi.data);
		expect(credential).toMatchObject({ username: 'robot', domain: 'CONTOSO' });
		const connection = await ewsKind.open(ntlmCredential(peers, { allowUnauthorizedCerts: true }).modernAuthEwsApi.data, {});
		expect(connection.warning).toMatch(/TLS certificate checks are OFF for 127\.0\.0\.1:\d+ \(credential option "Ignore Certificate Problems"\)/);
		expect((await ewsKind.open(ntlmCredential(peers).modernAuthEwsApi.data, {})).warning).toBeUndefined();
	});

	it('app-only needs a mailbox: a send or read without one fails naming where to set it', async () => {
		const app = registerEwsApp(peers);
		const connection = await ewsKind.open(appOnlyCredential(peers, app, { mailbox: '' }).modernAuthEwsApi.data, {});
		await expect(connection.mailboxFor('')).rejects.toMatchObject({ code: 'MAILBOX_REQUIRED', hint: expect.stringMatching(/Default Mailbox/) });
		await expect(connection.mailboxFor(RECIPIENT)).resolves.toBe(RECIPIENT);
	});
});

function defaults(properties: INodeProperties[]): Record<string, unknown> {
	const values: Record<string, unknown> = {};
	for (const p of properties) if (p.type !== 'notice' && !(p.name in values)) values[p.name] = p.default;
	return values;
}
