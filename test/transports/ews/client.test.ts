import { randomUUID } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

import { appOnlyTokenProvider } from '../../../auth/app-only-token-provider';
import type { CloudEndpoints } from '../../../auth/clouds';
import { ropcTokenProvider } from '../../../auth/ropc-token-provider';
import { createEwsClient } from '../../../transports/ews/ews-client';
import { EwsError } from '../../../transports/ews/errors';
import { EWS_CODES, type EwsAuth, type EwsClientOptions } from '../../../transports/ews/types';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki, issueServerCertificate } = require('../../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeEws } = require('../../peers/fake-ews');

const TENANT = '5b8f3c2a-1d4e-4f6a-9b0c-7d8e9f0a1b2c';
const ALICE = 'alice@contoso.example';
const SHARED = 'shared@contoso.example';
const ROBOT = 'robot@contoso.example';
const OUTSIDE = 'outside@contoso.example';
const DANA = 'dana@contoso.example';
// Characters that break naive XML, URL and header handling.
const PASSWORD = 'Pa55-wörd&<x>"\'';
const DANA_PASSWORD = 'Dana-R0pc-Passw0rd!';

let pki: any;
let identity: any;
let ews: any;
let cloud: CloudEndpoints;
let app: { clientId: string; secret: string };
let publicApp: string;

beforeAll(async () => {
	pki = sharedTestPki();
	identity = await startFakeIdentity({ pki });
	identity.addTenant({ id: TENANT, domains: ['contoso.example'] });
	app = { clientId: randomUUID(), secret: `ews-app-secret-${randomUUID()}` };
	identity.addApp({ tenant: TENANT, clientId: app.clientId, secrets: [app.secret], appRoles: ['full_access_as_app'] });
	publicApp = randomUUID();
	identity.addApp({ tenant: TENANT, clientId: publicApp, publicClient: true });
	identity.addUser({ tenant: TENANT, username: DANA, password: DANA_PASSWORD });
	ews = await startFakeEws({ pki, identity });
	for (const address of [ALICE, SHARED, ROBOT, OUTSIDE, DANA]) ews.addMailbox({ address });
	ews.addUser({ username: 'alice', password: PASSWORD, mailbox: ALICE, delegateOf: [SHARED] });
	ews.grantApp({ clientId: app.clientId, mailboxes: [ROBOT] });
	cloud = {
		name: 'custom',
		authorityHost: identity.authorityHost,
		graphHost: 'https://graph.microsoft.com',
		exchangeHost: 'https://outlook.office365.com',
		smtpHost: 'smtp.office365.com',
		imapHost: 'outlook.office365.com',
	};
}, 60_000);

afterAll(async () => {
	await ews?.close();
	await identity?.close();
});

beforeEach(() => ews.faults.clear());

const ntlm: EwsAuth = { type: 'ntlm', username: 'alice', password: PASSWORD, domain: 'CONTOSO' };
const basic: EwsAuth = { type: 'basic', username: 'alice', password: PASSWORD };

function client(auth: EwsAuth, overrides: Partial<EwsClientOptions> = {}) {
	return createEwsClient({
		url: ews.url,
		auth,
		version: 'Exchange2013_SP1',
		mailbox: '',
		impersonate: false,
		trust: { rejectUnauthorized: true, ca: pki.ca },
		retry: { firstBackoffMs: 20, maxBackoffMs: 2000 },
		...overrides,
	});
}

function appOnly(): EwsAuth {
	return { type: 'bearer', flavour: 'app-only', tokens: appOnlyTokenProvider({ tenantId: TENANT, clientId: app.clientId, clientSecret: app.secret, cloud }) };
}

function getInbox(ewsClient: ReturnType<typeof client>) {
	return ewsClient.call('GetFolder', {
		'm:FolderShape': { 't:BaseShape': 'Default' },
		'm:FolderIds': { 't:DistinguishedFolderId': { '@_Id': 'inbox', ...ewsClient.mailboxElement() } },
	});
}

function newRequests<T>(before: number): any[] {
	return ews.requests.slice(before) as T[];
}

function expectNoSecret(error: unknown, ...secrets: string[]) {
	const e = error as EwsError;
	const text = `${e.message}\n${e.hint}\n${e.stack}`;
	for (const secret of secrets) expect(text).not.toContain(secret);
}

describe('authentication', () => {
	test('NTLMv2: one handshake, verified by impacket; later requests reuse the signed-in socket', async () => {
		const c = client(ntlm);
		const handshakesBefore = ews.counts().ntlmHandshakes;
		try {
			const [answer] = await getInbox(c);
			expect(answer).toMatchObject({ responseClass: 'Success', code: 'NoError' });
			const folder = (answer.element.Folders as any).Folder[0];
			expect(folder.DisplayName).toBe('Inbox');
			await getInbox(c);
			await getInbox(c);
			expect(ews.counts().ntlmHandshakes - handshakesBefore).toBe(1);
			const last = ews.requests[ews.requests.length - 1];
			expect(last).toMatchObject({ operation: 'GetFolder', scheme: 'NTLM', version: 'Exchange2013_SP1' });
		} finally {
			await c.close();
		}
	});

	test('NTLM: a socket the server signed out signs in again (new handshake), the request succeeds', async () => {
		const c = client(ntlm);
		try {
			await getInbox(c);
			const before = ews.counts().ntlmHandshakes;
			ews.faults.http401(1);
			const [answer] = await getInbox(c);
			expect(answer.code).toBe('NoError');
			expect(ews.counts().ntlmHandshakes - before).toBe(1);
		} finally {
			await c.close();
		}
	});

	test('NTLM: after the server closed an idle signed-in socket, the next request signs in on a new one', async () => {
		// Whole seconds: Node's server announces Keep-Alive: timeout=<seconds>, and the client agent drops a socket announced with 0 at once.
		const quick = await startFakeEws({ pki, keepAliveTimeoutMs: 2000 });
		quick.addMailbox({ address: ALICE });
		quick.addUser({ username: 'alice', password: PASSWORD, mailbox: ALICE });
		const c = client(ntlm, { url: quick.url });
		try {
			await getInbox(c);
			await new Promise((resolve) => setTimeout(resolve, 2500));
			const [answer] = await getInbox(c);
			expect(answer.code).toBe('NoError');
			expect(quick.counts().ntlmHandshakes).toBe(2);
		} finally {
			await c.close();
			await quick.close();
		}
	});

	test('NTLM: concurrent requests each get their own signed-in socket, at most the concurrency limit', async () => {
		const c = client(ntlm, { maxConcurrency: 3 });
		const before = ews.counts().ntlmHandshakes;
		try {
			const answers = await Promise.all(Array.from({ length: 9 }, () => getInbox(c)));
			expect(answers.every(([a]) => a.code === 'NoError')).toBe(true);
			const handshakes = ews.counts().ntlmHandshakes - before;
			expect(handshakes).toBeGreaterThanOrEqual(1);
			expect(handshakes).toBeLessThanOrEqual(3);
		} finally {
			await c.close();
		}
	});

	test('NTLM with a wrong password: EWS_UNAUTHORIZED naming user/domain/password, no password in the error', async () => {
		const wrong = 'Wr0ng-Passw0rd-<&>';
		const c = client({ ...ntlm, password: wrong } as EwsAuth);
		try {
			const error = await getInbox(c).catch((e) => e);
			expect(error).toBeInstanceOf(EwsError);
			expect(error.code).toBe(EWS_CODES.UNAUTHORIZED);
			expect(error.responseCode).toBe(401);
			expect(error.message).toContain('NTLM');
			expect(error.hint).toMatch(/user name, domain and password/);
			expectNoSecret(error, wrong, PASSWORD);
		} finally {
			await c.close();
		}
	});

	test('Basic over HTTPS; the fake records the scheme and the user', async () => {
		const c = client(basic);
		const before = ews.requests.length;
		try {
			const [answer] = await getInbox(c);
			expect(answer.code).toBe('NoError');
			expect(newRequests(before)).toEqual([expect.objectContaining({ operation: 'GetFolder', scheme: 'Basic', status: 200 })]);
			expect(JSON.stringify(newRequests(before))).not.toContain(PASSWORD);
		} finally {
			await c.close();
		}
	});

	test('Basic with a wrong password: 401 with the Basic hint, password redacted', async () => {
		const c = client({ type: 'basic', username: 'alice', password: 'Not-The-Passw0rd' });
		try {
			const error = await getInbox(c).catch((e) => e);
			expect(error.code).toBe(EWS_CODES.UNAUTHORIZED);
			expect(error.hint).toMatch(/Basic authentication is enabled on the EWS virtual directory/);
			expectNoSecret(error, 'Not-The-Passw0rd', Buffer.from('alice:Not-The-Passw0rd').toString('base64'));
		} finally {
			await c.close();
		}
	});

	test('certificate checks are on by default: a self-signed server certificate is EWS_TLS with the trusted-CA fix', async () => {
		const selfSigned = issueServerCertificate(pki, { selfSigned: true });
		const server = https.createServer({ cert: selfSigned.cert, key: selfSigned.key }, (_req, res) => res.end());
		await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
		const c = client(basic, { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/EWS/Exchange.asmx` });
		try {
			const error = await getInbox(c).catch((e) => e);
			expect(error.code).toBe(EWS_CODES.TLS);
			expect(error.hint).toMatch(/Trusted CA/);
		} finally {
			await c.close();
			await new Promise((resolve) => server.close(resolve));
		}
	});

	test('http:// is refused before anything is sent', () => {
		const before = ews.requests.length;
		expect(() => client(basic, { url: ews.url.replace('https://', 'http://') })).toThrow(/must use https:\/\/.*Basic would send the password/);
		expect(ews.requests.length).toBe(before);
	});

	test('Bearer app-only: the mailbox is impersonated and anchored; the fake checked the token (audience, full_access_as_app)', async () => {
		const c = client(appOnly(), { mailbox: ROBOT, impersonate: true });
		const before = ews.requests.length;
		try {
			expect(c.mailboxElement()).toBeUndefined();
			const [answer] = await getInbox(c);
			expect(answer.code).toBe('NoError');
			expect(newRequests(before)).toEqual([expect.objectContaining({ operation: 'GetFolder', scheme: 'Bearer', impersonated: ROBOT, anchor: ROBOT, status: 200 })]);
		} finally {
			await c.close();
		}
	});

	test('Bearer app-only outside the app scope: ErrorImpersonateUserDenied with the RBAC / full_access_as_app fix', async () => {
		const c = client(appOnly(), { mailbox: OUTSIDE, impersonate: true });
		try {
			// Exchange refuses the whole request (a SOAP fault), not one response message.
			const error = await getInbox(c).catch((e) => e);
			expect(error).toBeInstanceOf(EwsError);
			expect(error.ewsCode).toBe('ErrorImpersonateUserDenied');
			expect(error.code).toBe(EWS_CODES.IMPERSONATION_DENIED);
			expect(error.hint).toMatch(/ApplicationImpersonation.*RBAC for Applications/);
		} finally {
			await c.close();
		}
	});

	test('Bearer: a refused token is renewed once with rejectedToken and the request repeated', async () => {
		const c = client(appOnly(), { mailbox: ROBOT, impersonate: true });
		try {
			await getInbox(c);
			const tokensBefore = identity.requests.filter((r: any) => r.grantType === 'client_credentials').length;
			ews.faults.http401(1);
			const [answer] = await getInbox(c);
			expect(answer.code).toBe('NoError');
			expect(identity.requests.filter((r: any) => r.grantType === 'client_credentials').length - tokensBefore).toBe(1);
		} finally {
			await c.close();
		}
	});

	test('ROPC: the user token comes from the identity platform with grant_type=password and opens the own mailbox', async () => {
		const tokens = ropcTokenProvider({ tenantId: TENANT, clientId: publicApp, username: DANA, password: DANA_PASSWORD, cloud });
		const c = client({ type: 'bearer', flavour: 'ropc', tokens });
		const before = ews.requests.length;
		try {
			const [answer] = await getInbox(c);
			expect(answer.code).toBe('NoError');
			const grant = identity.requests.filter((r: any) => r.grantType === 'password').pop();
			expect(grant).toMatchObject({ clientId: publicApp, scope: expect.stringContaining('https://outlook.office365.com/EWS.AccessAsUser.All') });
			expect(newRequests(before)).toEqual([expect.objectContaining({ scheme: 'Bearer', impersonated: null })]);
		} finally {
			await c.close();
		}
	});

	test('ROPC with a wrong password: AADSTS50126 mapped with its hint, the password nowhere', async () => {
		const tokens = ropcTokenProvider({ tenantId: TENANT, clientId: publicApp, username: DANA, password: 'Wrong-R0pc-Pass', cloud });
		const c = client({ type: 'bearer', flavour: 'ropc', tokens });
		try {
			const error = await getInbox(c).catch((e) => e);
			expect(error.code).toBe('AADSTS50126');
			expect(error.hint).toMatch(/account name and password/);
			expectNoSecret(error, 'Wrong-R0pc-Pass');
		} finally {
			await c.close();
		}
	});

	test('delegate access to another mailbox: Mailbox element and X-AnchorMailbox', async () => {
		const c = client(ntlm, { mailbox: SHARED });
		const before = ews.requests.length;
		try {
			expect(c.mailboxElement()).toEqual({ 't:Mailbox': { 't:EmailAddress': SHARED } });
			const [answer] = await getInbox(c);
			expect(answer.code).toBe('NoError');
			expect(newRequests(before).pop()).toMatchObject({ anchor: SHARED, impersonated: null, scheme: 'NTLM' });
		} finally {
			await c.close();
		}
	});
});

describe('Exchange Online refusing the app', () => {
	let exo: any;
	beforeAll(async () => {
		exo = await startFakeEws({ pki, identity, exchangeOnline: true });
		exo.addMailbox({ address: ROBOT });
		exo.grantApp({ clientId: app.clientId, mailboxes: '*' });
		exo.blockApp(app.clientId);
	});
	afterAll(async () => exo?.close());

	test('HTTP 403 "EWS is not allowed for this app" -> EWS_APP_NOT_ALLOWED with the allow-list fix, no token in it', async () => {
		const c = client(appOnly(), { url: exo.url, mailbox: ROBOT, impersonate: true });
		try {
			const error = await getInbox(c).catch((e) => e);
			expect(error.code).toBe(EWS_CODES.APP_NOT_ALLOWED);
			expect(error.responseCode).toBe(403);
			expect(error.hint).toContain('EwsAllowedAppIDs');
			expect(error.hint).toContain('1 April 2027');
			expectNoSecret(error, app.secret, ...identity.issuedTokens.map((t: any) => (typeof t === 'string' ? t : t.token ?? '')).filter(Boolean));
		} finally {
			await c.close();
		}
	});
});

describe('throttling, faults and bad input', () => {
	test('ErrorServerBusy is retried after BackOffMilliseconds', async () => {
		const c = client(basic);
		try {
			await getInbox(c);
			const before = ews.requests.length;
			ews.faults.serverBusy(2, 300);
			const started = Date.now();
			const [answer] = await getInbox(c);
			expect(answer.code).toBe('NoError');
			expect(Date.now() - started).toBeGreaterThanOrEqual(600);
			expect(newRequests(before).map((r) => r.responseCodes)).toEqual([['ErrorServerBusy'], ['ErrorServerBusy'], ['NoError']]);
		} finally {
			await c.close();
		}
	});

	test('ErrorServerBusy as a SOAP fault is retried the same way', async () => {
		const c = client(basic);
		try {
			ews.faults.serverBusy(1, 100, { as: 'fault' });
			const [answer] = await getInbox(c);
			expect(answer.code).toBe('NoError');
		} finally {
			await c.close();
		}
	});

	test('out of attempts: EWS_SERVER_BUSY with the back-off in the hint', async () => {
		const c = client(basic, { retry: { attempts: 2, firstBackoffMs: 10, maxBackoffMs: 1000 } });
		try {
			ews.faults.serverBusy(5, 250);
			const error = await getInbox(c).catch((e) => e);
			expect(error.code).toBe(EWS_CODES.SERVER_BUSY);
			expect(error.hint).toContain('BackOffMilliseconds 250');
			expect(error.attempts).toBe(2);
		} finally {
			await c.close();
		}
	});

	test('a stalled answer ends in EWS_TIMEOUT after the idle time-out, not a hang', async () => {
		const c = client(basic, { timeoutMs: 700 });
		try {
			await getInbox(c);
			ews.faults.stall(1);
			const started = Date.now();
			const error = await getInbox(c).catch((e) => e);
			expect(error.code).toBe(EWS_CODES.TIMEOUT);
			expect(Date.now() - started).toBeLessThan(5000);
		} finally {
			await c.close();
		}
	});

	test('a read whose connection dies after the request is repeated (harmless), and succeeds', async () => {
		const c = client(basic);
		try {
			ews.faults.dropAfterRequest(1, 'GetFolder');
			const [answer] = await getInbox(c);
			expect(answer.code).toBe('NoError');
		} finally {
			await c.close();
		}
	});

	test('a character XML 1.0 cannot carry is refused naming the field; nothing reaches the server', async () => {
		const c = client(basic);
		const before = ews.requests.length;
		try {
			const error = await c
				.call('CreateFolder', { 'm:ParentFolderId': { 't:DistinguishedFolderId': { '@_Id': 'inbox' } }, 'm:Folders': { 't:Folder': { 't:DisplayName': 'Bad \u0001 name' } } })
				.catch((e) => e);
			expect(error.code).toBe(EWS_CODES.INVALID_XML_CHARACTER);
			expect(error.message).toContain('CreateFolder.Folders.Folder.DisplayName');
			expect(error.message).toContain('U+0001');
			expect(ews.requests.length).toBe(before);
		} finally {
			await c.close();
		}
	});

	test('folder names with spaces, markup characters and non-ASCII round-trip exactly', async () => {
		const c = client(basic, { mailbox: ALICE });
		const name = '  Q&A <"Projekte"> \'Grüße\' 日本 😀  ';
		try {
			const [created] = await c.call('CreateFolder', {
				'm:ParentFolderId': { 't:DistinguishedFolderId': { '@_Id': 'inbox', ...c.mailboxElement() } },
				'm:Folders': { 't:Folder': { 't:DisplayName': name } },
			});
			expect(created.code).toBe('NoError');
			expect(ews.folders(ALICE).some((f: any) => f.displayName === name)).toBe(true);
			const [found] = await c.call('FindFolder', {
				'@_Traversal': 'Shallow',
				'm:FolderShape': { 't:BaseShape': 'Default' },
				'm:ParentFolderIds': { 't:DistinguishedFolderId': { '@_Id': 'inbox', ...c.mailboxElement() } },
			});
			const folders = ((found.element.RootFolder as any).Folders.Folder as any[]).map((f) => f.DisplayName);
			expect(folders).toContain(name);
		} finally {
			await c.close();
		}
	});

	test('an unknown server version: EWS_INVALID_SERVER_VERSION with the fix', async () => {
		const c = client(basic, { version: 'Exchange2099' as any });
		try {
			const error = await getInbox(c).catch((e) => e);
			expect(error.code).toBe(EWS_CODES.INVALID_SERVER_VERSION);
			expect(error.hint).toMatch(/older Server Version/);
		} finally {
			await c.close();
		}
	});

	test('a mailbox that does not exist: EWS_MAILBOX_NOT_FOUND naming the address', async () => {
		const c = client(appOnly(), { mailbox: 'nobody@contoso.example', impersonate: true });
		ews.grantApp({ clientId: app.clientId, mailboxes: ['nobody@contoso.example'] });
		try {
			const error = await getInbox(c).catch((e) => e);
			expect(error.ewsCode).toBe('ErrorNonExistentMailbox');
			expect(error.code).toBe(EWS_CODES.MAILBOX_NOT_FOUND);
			expect(error.hint).toContain('nobody@contoso.example');
		} finally {
			await c.close();
		}
	});
});
