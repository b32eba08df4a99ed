import { randomUUID } from 'node:crypto';

import { microsoftAppOnlyKind } from '../../connections/microsoft-app-only';
import { testCredential } from '../../nodes/shared/open-connection';
import { createPoller, runLoadOptions, runNode } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startEchoImap } = require('../peers/echo-imap');

// Defect 10: "Allowed Mailboxes" on the Microsoft credentials is enforced by every node for
// the mailbox and for From before anything connects: no SMTP or IMAP connection, and no
// token request at the identity platform.
const TENANT = '4d5e6f70-8192-4a3b-9c4d-5e6f708192a3';
const ROBOT = 'robot@contoso.example';
const HR = 'hr@contoso.example';
const USER = 'ann@contoso.example';
const EXCHANGE = 'https://outlook.office365.com';
const DELEGATED_APP = randomUUID();
const SCOPE = 'https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access';

let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let peer: Awaited<ReturnType<typeof startSmtpPeer>>;
let imap: Awaited<ReturnType<typeof startEchoImap>>;

beforeAll(async () => {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	idp.addApp({ tenant: TENANT, clientId: DELEGATED_APP, secrets: [{ value: 'delegated-secret-value' }] });
	idp.addUser({ tenant: TENANT, username: USER, password: 'Ann-Passw0rd!' });
	peer = await startSmtpPeer({
		pki,
		validateBearer: (token: string, user: string) =>
			idp.introspect(token, { audience: EXCHANGE, mailbox: user }).active || idp.introspect(token, { audience: 'https://outlook.office.com', mailbox: user }).active,
	});
	imap = await startEchoImap({ pki });
});

afterAll(async () => {
	await peer?.close();
	await imap?.close();
	await idp?.close();
});

beforeEach(() => {
	peer.reset();
	imap.reset();
});

const smtpConnections = () => peer.stats.connections as number;
const tokenRequests = () => idp.counts({});

function appOnly(allowedMailboxes: string) {
	const clientId = randomUUID();
	const secret = `secret-${randomUUID()}`;
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }], appRoles: ['SMTP.SendAsApp', 'IMAP.AccessAsApp'] });
	for (const mailbox of [ROBOT, HR]) idp.grantMailbox({ tenant: TENANT, clientId, mailbox });
	return {
		modernAuthMicrosoftAppOnlyApi: {
			id: `alw${clientId.slice(0, 13)}`,
			name: 'allowed app-only',
			data: {
				tenantId: TENANT,
				clientId,
				authType: 'secret',
				clientSecret: secret,
				cloud: 'custom',
				authorityHost: idp.authorityHost,
				exchangeHost: EXCHANGE,
				smtpServer: `127.0.0.1:${peer.port}`,
				imapServer: `127.0.0.1:${imap.port}`,
				mailbox: ROBOT,
				allowedMailboxes,
			},
		},
	};
}

async function delegated(allowedMailboxes: string, mailbox: string) {
	const response = await fetch(idp.tokenEndpoint(TENANT), {
		method: 'POST',
		headers: { 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({ grant_type: 'password', client_id: DELEGATED_APP, client_secret: 'delegated-secret-value', username: USER, password: 'Ann-Passw0rd!', scope: SCOPE }),
	});
	const tokens = (await response.json()) as Record<string, string>;
	return {
		modernAuthMicrosoftDelegatedOAuth2Api: {
			id: `dal${randomUUID().slice(0, 13)}`,
			name: 'Ann',
			data: {
				grantType: 'authorizationCode',
				clientId: DELEGATED_APP,
				clientSecret: 'delegated-secret-value',
				accessTokenUrl: idp.tokenEndpoint(TENANT),
				scope: SCOPE,
				authentication: 'body',
				cloud: 'custom',
				authorityHost: idp.authorityHost,
				tenant: TENANT,
				useFor: 'imapSmtp',
				mailbox,
				smtpServer: `127.0.0.1:${peer.port}`,
				imapServer: `127.0.0.1:${imap.port}`,
				allowedMailboxes,
				oauthTokenData: { ...tokens, token_type: 'Bearer' },
			},
		},
	};
}

const send = (authentication: string, credentials: object, extra: Record<string, unknown> = {}, count = 1) =>
	runNode({
		type: 'modernAuthSendEmail',
		parameters: { authentication, toEmail: 'someone@example.org', subject: 'allowed?', emailFormat: 'text', text: 'x', fromEmail: '={{ $json.from }}', ...extra },
		items: Array.from({ length: count }, (_, i) => ({ json: { from: i === 1 ? 'ceo@contoso.example' : '' } })),
		credentials: credentials as never,
	});

const read = (authentication: string, credentials: object, mailbox: string) =>
	runNode({ type: 'modernAuthReadMailbox', parameters: { authentication, folder: 'INBOX', limit: 5, options: { mailbox } }, items: [{ json: {} }], credentials: credentials as never });

describe('Allowed Mailboxes on the Microsoft credentials', () => {
	it('Send Email (app-only): a mailbox outside the list fails the item naming the field; nothing connects, no token is requested', async () => {
		const credentials = appOnly(`${HR}, @fabrikam.example`);
		const tokensBefore = tokenRequests();
		const { error } = await send('microsoftAppOnly', credentials);
		expect(error?.name).toBe('NodeOperationError');
		expect(error?.message).toBe(`Item 0: Mailbox: "${ROBOT}" is not in the credential's Allowed Mailboxes`);
		expect(error?.description).toMatch(/allows only: hr@contoso\.example, @fabrikam\.example/);
		expect(smtpConnections()).toBe(0);
		expect(tokenRequests()).toBe(tokensBefore);

		// The node option Mailbox is checked the same way; a list or display name cannot sneak past a rule.
		for (const mailbox of ['boss@contoso.example', `evil@elsewhere.example, ${HR}`, `Evil <evil@elsewhere.example>${HR}`]) {
			const again = await send('microsoftAppOnly', credentials, { options: { mailbox } });
			expect(again.error?.message).toBe(`Item 0: Mailbox: "${mailbox}" is not in the credential's Allowed Mailboxes`);
		}
		expect(smtpConnections()).toBe(0);
		expect(tokenRequests()).toBe(tokensBefore);

		// An allowed mailbox (by address or by @domain) sends.
		for (const allowed of [HR, '@contoso.example']) {
			const ok = await send('microsoftAppOnly', appOnly(allowed), { options: { mailbox: HR } });
			expect(ok.error).toBeUndefined();
		}
		expect(peer.received.map((m: { envelope: { from: string } }) => m.envelope.from)).toEqual([HR, HR]);
	});

	it('Send Email: From is held to the same list (item 1 asks for another address); nothing is sent', async () => {
		const { error } = await send('microsoftAppOnly', appOnly(ROBOT), {}, 2);
		expect(error?.message).toBe('Item 1: From: "ceo@contoso.example" is not allowed by this credential');
		expect(error?.description).toMatch(/allows only: robot@contoso\.example/);
		expect(smtpConnections()).toBe(0);
		expect(peer.received).toHaveLength(0);
	});

	it('Send Email (delegated): a Mailbox outside the list is refused before any token refresh or connection', async () => {
		const credentials = await delegated(USER, HR);
		const tokensBefore = tokenRequests();
		const { error } = await send('microsoftDelegated', credentials);
		expect(error?.message).toBe(`Item 0: Mailbox: "${HR}" is not in the credential's Allowed Mailboxes`);
		expect(smtpConnections()).toBe(0);
		expect(tokenRequests()).toBe(tokensBefore);
	});

	it('Read Mailbox (app-only and delegated): a mailbox outside the list fails the item; the IMAP server sees no connection', async () => {
		const appCredentials = appOnly(ROBOT);
		const delegatedCredentials = await delegated('@fabrikam.example', '');
		const tokensBefore = tokenRequests();
		const app = await read('microsoftAppOnly', appCredentials, HR);
		expect(app.error?.name).toBe('NodeOperationError');
		expect(app.error?.message).toBe(`Item 0: Mailbox: "${HR}" is not in the credential's Allowed Mailboxes`);
		const del = await read('microsoftDelegated', delegatedCredentials, HR);
		expect(del.error?.message).toBe(`Item 0: Mailbox: "${HR}" is not in the credential's Allowed Mailboxes`);
		expect(imap.stats.connections).toBe(0);
		expect(tokenRequests()).toBe(tokensBefore);

		// continueOnFail: the refusal becomes the item's error.
		const kept = await runNode({ type: 'modernAuthReadMailbox', parameters: { authentication: 'microsoftAppOnly', folder: 'INBOX', options: { mailbox: HR } }, items: [{ json: {} }], credentials: appCredentials as never, onError: 'continueRegularOutput' });
		expect(kept.output.map((o) => (o.json.error as { code: string }).code)).toEqual(['MAILBOX_NOT_ALLOWED']);
		expect(imap.stats.connections).toBe(0);
	});

	it('Read Mailbox Trigger and the folder picker refuse the same way, before connecting', async () => {
		const credentials = appOnly('@fabrikam.example');
		const tokensBefore = tokenRequests();
		const poller = await createPoller({ parameters: { authentication: 'microsoftAppOnly', folder: 'INBOX', options: {} }, credentials: credentials as never });
		await expect(poller.poll()).rejects.toMatchObject({ name: 'NodeOperationError', message: `Mailbox: "${ROBOT}" is not in the credential's Allowed Mailboxes` });
		await expect(
			runLoadOptions({ type: 'modernAuthReadMailbox', method: 'getFolders', parameters: { authentication: 'microsoftAppOnly' }, credentials: credentials as never }),
		).rejects.toMatchObject({ name: 'NodeOperationError', message: `Mailbox: "${ROBOT}" is not in the credential's Allowed Mailboxes` });
		expect(imap.stats.connections).toBe(0);
		expect(tokenRequests()).toBe(tokensBefore);
	});

	it('the credential Test button reports a Default Mailbox outside the list, without asking for a token', async () => {
		const { data } = appOnly('@fabrikam.example').modernAuthMicrosoftAppOnlyApi;
		const tokensBefore = tokenRequests();
		const result = await testCredential(microsoftAppOnlyKind, data);
		expect(result).toEqual({ status: 'Error', message: expect.stringMatching(/^Default Mailbox: "robot@contoso\.example" is not in the credential's Allowed Mailboxes\. Fix: /) });
		expect(tokenRequests()).toBe(tokensBefore);
		// Allowed, the Test button goes on to the mailbox's IMAP login, which this echoing server refuses (echoing the SASL string)
		const allowed = await testCredential(microsoftAppOnlyKind, { ...data, allowedMailboxes: '@contoso.example' });
		expect(allowed).toEqual({ status: 'Error', message: expect.stringMatching(/^login \(imap\) failed: IMAP sign-in refused at 127\.0\.0\.1:\d+ \(AUTHENTICATE failed\)/) });
		expect(allowed.message).not.toMatch(/Allowed Mailboxes/);
		expect(allowed.message).not.toContain(data.clientSecret);
	});
});
