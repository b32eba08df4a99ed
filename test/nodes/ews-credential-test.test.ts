import net from 'node:net';

import type { INodeCredentialTestResult } from 'n8n-workflow';

import { ModernAuthReadMailbox } from '../../nodes/ModernAuthReadMailbox/ModernAuthReadMailbox.node';
import { ModernAuthSendEmail } from '../../nodes/ModernAuthSendEmail/ModernAuthSendEmail.node';
import { appOnlyCredential, DANA, DANA_PASSWORD, issuedTokens, NTLM_PASSWORD, ntlmCredential, OTHER, registerEwsApp, ROBOT, ropcCredential, startEwsPeers, stopEwsPeers, tokenRequests, type EwsPeers } from './ews-fixture';

// The EWS credential's Test button as n8n presses it (the node's credentialTest method), against
// the fake EWS server (NTLM verified by impacket, Bearer tokens asked of the fake identity
// platform): it passes, or names the step that failed and its fix, within 15 s and without a secret.
let peers: EwsPeers;
let online: EwsPeers;

beforeAll(async () => {
	peers = await startEwsPeers();
	online = await startEwsPeers({ exchangeOnline: true });
}, 60_000);
afterAll(async () => {
	await stopEwsPeers(peers);
	await stopEwsPeers(online);
});

const press = async (credentials: { modernAuthEwsApi: { data: Record<string, unknown> } }): Promise<INodeCredentialTestResult> => {
	const started = Date.now();
	const result = await new ModernAuthSendEmail().methods.credentialTest.modernAuthEwsConnectionTest.call({} as never, {
		id: 'ewsCredTest0001',
		name: 'ews',
		type: 'modernAuthEwsApi',
		data: credentials.modernAuthEwsApi.data as never,
	});
	expect(Date.now() - started).toBeLessThan(15_000);
	return result;
};

async function closedPort(): Promise<number> {
	const server = net.createServer();
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	const { port } = server.address() as net.AddressInfo;
	await new Promise<void>((resolve) => server.close(() => resolve()));
	return port;
}

describe('EWS credential Test button', () => {
	it('is the same method on every node that offers EWS', () => {
		expect(typeof new ModernAuthReadMailbox().methods.credentialTest.modernAuthEwsConnectionTest).toBe('function');
	});

	it('NTLM: passes reach, TLS, GetFolder Inbox and the Inbox counts; the password is in no message', async () => {
		const before = peers.ews.counts().ntlmHandshakes;
		const result = await press(ntlmCredential(peers));
		expect(result.status).toBe('OK');
		expect(result.message).toMatch(/^EWS at 127\.0\.0\.1:\d+ with NTLM as CONTOSO\\robot: 4 checks passed; read: Inbox of CONTOSO\\robot's own mailbox: \d+ messages, \d+ unread\.$/);
		expect(peers.ews.counts().ntlmHandshakes).toBeGreaterThan(before);
		expect(peers.ews.requests.some((r: { operation: string; scheme: string; user: string }) => r.operation === 'GetFolder' && r.scheme === 'NTLM' && /robot/i.test(r.user))).toBe(true);
		expect(result.message).not.toContain(NTLM_PASSWORD);
	});

	it('NTLM with a wrong password: the login step failed, with the fix naming the fields', async () => {
		const result = await press(ntlmCredential(peers, { password: 'Wrong-Passw0rd-123' }));
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^login \(ews\) failed: Exchange refused the sign-in \(HTTP 401, NTLM/);
		expect(result.message).toMatch(/Fix: Check Username, Password and Domain/);
		expect(result.message).not.toContain('Wrong-Passw0rd-123');
	});

	it('Basic over HTTPS: passes; the server saw Basic, not NTLM', async () => {
		const result = await press(ntlmCredential(peers, { ewsAuth: 'basic', domain: '' }));
		expect(result.status).toBe('OK');
		expect(result.message).toMatch(/^EWS at 127\.0\.0\.1:\d+ with Basic as robot: 4 checks passed; read: Inbox of robot's own mailbox/);
		expect((peers.ews.requests as Array<{ operation: string; scheme: string }>).filter((r) => r.operation === 'GetFolder').at(-1)?.scheme).toBe('Basic');
	});

	it('an unreachable port: the reach step failed, nothing else was tried', async () => {
		const port = await closedPort();
		const result = await press(ntlmCredential(peers, { url: `https://127.0.0.1:${port}/EWS/Exchange.asmx` }));
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(new RegExp(`^reach \\(127\\.0\\.0\\.1:${port}\\) failed: `));
	});

	it('Autodiscover: finds the EWS URL from the address once, remembers it, and the test passes against it', async () => {
		const credentials = ntlmCredential(peers, { endpoint: 'autodiscover', url: '', autodiscoverEmail: ROBOT, autodiscoverUrl: peers.ews.autodiscoverUrl });
		const answered = () => (peers.ews.requests as Array<{ operation: string; status: number }>).filter((r) => r.operation === 'Autodiscover' && r.status === 200).length;
		const before = answered();
		for (let i = 0; i < 2; i++) {
			const result = await press(credentials);
			expect(result.status).toBe('OK');
			expect(result.message).toMatch(new RegExp(`^EWS at 127\\.0\\.0\\.1:${peers.ews.port} with NTLM as CONTOSO\\\\robot: 4 checks passed`));
		}
		expect(answered() - before).toBe(1);
	});

	it('Autodiscover for an address the server does not know: the answer names the Autodiscover step and its fix', async () => {
		const result = await press(ntlmCredential(peers, { endpoint: 'autodiscover', url: '', autodiscoverEmail: 'nobody@contoso.example', autodiscoverUrl: peers.ews.autodiscoverUrl }));
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^reach \(Autodiscover for nobody@contoso\.example\) failed: .*Fix: /);
	});

	it('app-only: token, permission (full_access_as_app), GetFolder Inbox impersonating the mailbox, Inbox counts', async () => {
		const app = registerEwsApp(peers);
		const result = await press(appOnlyCredential(peers, app));
		expect(result.status).toBe('OK');
		expect(result.message).toMatch(/^EWS at 127\.0\.0\.1:\d+ with app-only OAuth \(app \*\*\*\*\w{4}\): \d+ checks passed; read: \w+ of \*\*\*\*mple: \d+ messages/);
		const getFolder = (peers.ews.requests as Array<{ operation: string; scheme: string; impersonated: string; anchor: string }>).filter((r) => r.operation === 'GetFolder' && r.scheme === 'Bearer');
		expect(getFolder.length).toBeGreaterThan(0);
		for (const request of getFolder.slice(-2)) expect(request).toMatchObject({ impersonated: ROBOT, anchor: ROBOT });
		expect(result.message).not.toContain(app.secret);
		for (const token of issuedTokens(peers)) expect(result.message).not.toContain(token);
	});

	it('app-only without full_access_as_app: the permission step failed (Exchange refused the app too), with the consent fix', async () => {
		const app = registerEwsApp(peers, { roles: ['Mail.Read'] });
		const result = await press(appOnlyCredential(peers, app));
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^permission \(ews\) failed: full_access_as_app .* is not in the token/);
		expect(result.message).toMatch(/Fix: Add the Office 365 Exchange Online application permission full_access_as_app and grant admin consent/);
		expect(result.message).toContain(app.clientId);
	});

	it('app-only on a mailbox the app may not impersonate: the login step failed with ErrorImpersonateUserDenied and its fix', async () => {
		const app = registerEwsApp(peers, { mailboxes: [ROBOT] });
		const result = await press(appOnlyCredential(peers, app, { mailbox: OTHER }));
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^login \(ews\) failed: .*ErrorImpersonateUserDenied|^login \(ews\) failed: .*imperson/i);
	});

	it('app-only against Exchange Online with the app not allow-listed (HTTP 403): the login step failed naming EwsAllowedAppIDs', async () => {
		const app = registerEwsApp(online);
		online.ews.blockApp(app.clientId);
		const result = await press(appOnlyCredential(online, app));
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^login \(ews\) failed: /);
		expect(result.message).toMatch(/EwsAllowedAppIDs/);
	});

	it('OAuth username/password (ROPC): token with EWS.AccessAsUser.All, permission, GetFolder of her own Inbox', async () => {
		const { credentials, secret } = ropcCredential(peers);
		const result = await press(credentials);
		expect(result.status).toBe('OK');
		expect(result.message).toMatch(new RegExp(`^EWS at 127\\.0\\.0\\.1:\\d+ with OAuth username/password as ${DANA.replace('.', '\\.')} \\(app \\*{4}\\w{4}\\): 8 checks passed`));
		expect(peers.ews.requests.some((r: { scheme: string; user: string }) => r.scheme === 'Bearer' && r.user === DANA)).toBe(true);
		for (const value of [secret, DANA_PASSWORD, ...issuedTokens(peers)]) expect(result.message).not.toContain(value);
	});

	it('ROPC with a wrong password: the token step failed with the AADSTS code and its fix; EWS saw nothing', async () => {
		const requests = peers.ews.counts().requests;
		const { credentials } = ropcCredential(peers, { password: 'Not-Danas-Passw0rd' });
		const result = await press(credentials);
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^token \(exchange\) failed: .*AADSTS50126/);
		expect(result.message).toMatch(/Fix: /);
		expect(result.message).not.toContain('Not-Danas-Passw0rd');
		expect(peers.ews.counts().requests).toBe(requests);
	});

	it('app-only without a mailbox: the token is checked and the answer says a mailbox is needed for the rest', async () => {
		const app = registerEwsApp(peers);
		const result = await press(appOnlyCredential(peers, app, { mailbox: '' }));
		expect(result.status).toBe('OK');
		expect(result.message).toMatch(/WARNING login \(ews\): no mailbox to impersonate/);
	});

	it.each([
		['an empty EWS URL', { url: '' }, /EWS URL is empty/],
		['Basic over http://', { ewsAuth: 'basic', url: 'http://127.0.0.1:1/EWS/Exchange.asmx' }, /EWS URL is http:\/\/: Basic sends the password/],
		['NTLM over http://', { url: 'http://127.0.0.1:1/EWS/Exchange.asmx' }, /EWS URL is http:\/\/: NTLM would leave every message readable/],
		['an empty Username', { username: '' }, /Username is empty/],
		['a tenant that is no tenant', { ewsAuth: 'oauthAppOnly', tenantId: 'not a tenant', clientId: '00000000-0000-0000-0000-000000000001', clientSecret: 'x-secret-x' }, /Tenant ID "not a tenant" is neither a GUID nor a domain/],
		['an unknown Server Version', { serverVersion: 'Exchange2003' }, /Server Version "Exchange2003"/],
	])('refuses %s naming the field, with no request to EWS or the identity platform', async (_what, overrides, message) => {
		const requests = peers.ews.counts().requests;
		const tokens = tokenRequests(peers);
		const result = await press(ntlmCredential(peers, overrides));
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(message);
		expect(result.message).toMatch(/Fix: /);
		expect(peers.ews.counts().requests).toBe(requests);
		expect(tokenRequests(peers)).toBe(tokens);
	});
});
