import { randomUUID } from 'node:crypto';
import nodemailer from 'nodemailer';

import { runNode } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');

// Microsoft 365 over IMAP XOAUTH2: Dovecot asks the fake identity platform about every token,
// demanding what Exchange demands (audience, IMAP.AccessAsApp role or IMAP.AccessAsUser.All
// scope, and for app-only tokens a mailbox permission).
const TENANT = '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d';
const MAILBOX = 'robot@contoso.example';
const USER = 'ann@contoso.example';
const USER_PASSWORD = 'Ann-imap-Passw0rd!';
const DELEGATED_APP = '9b8a7f6e-5d4c-4b3a-8f1e-0d9c8b7a6f5e';
const DELEGATED_SECRET = `delegated-${randomUUID()}`;

let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;

const mime = async (to: string, subject: string) =>
	(await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({ from: 'sender@example.org', to, subject, text: subject })).message as Buffer;

beforeAll(async () => {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	idp.addApp({ tenant: TENANT, clientId: DELEGATED_APP, secrets: [{ value: DELEGATED_SECRET }] });
	idp.addUser({ tenant: TENANT, username: USER, password: USER_PASSWORD });
	dovecot = await startDovecot({ pki, users: {}, oauth2: { introspectionUrl: idp.introspectionUrl, mailboxes: [MAILBOX, USER] } });
	await dovecot.deliver(MAILBOX, await mime(MAILBOX, 'For the robot'));
	await dovecot.deliver(USER, await mime(USER, 'For Ann'));
}, 120_000);

afterAll(async () => {
	await dovecot?.stop();
	await idp?.close();
});

function appOnly(options: { roles: string[]; grant: boolean }) {
	const clientId = randomUUID();
	const secret = `secret-${randomUUID()}`;
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }], appRoles: options.roles });
	if (options.grant) idp.grantMailbox({ tenant: TENANT, clientId, mailbox: MAILBOX });
	const credentials = {
		modernAuthMicrosoftAppOnlyApi: {
			id: `app${clientId.slice(0, 13)}`,
			name: 'Contoso IMAP app-only',
			data: {
				tenantId: TENANT,
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
	return { secret, credentials };
}

async function delegated(scope: string) {
	const response = await fetch(idp.tokenEndpoint(TENANT), {
		method: 'POST',
		headers: { 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({ grant_type: 'password', client_id: DELEGATED_APP, client_secret: DELEGATED_SECRET, username: USER, password: USER_PASSWORD, scope }),
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
				scope,
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

const read = (authentication: string, credentials: Record<string, unknown>) =>
	runNode({ type: 'modernAuthReadMailbox', parameters: { authentication, folder: 'INBOX', limit: 5 }, items: [{ json: {} }], credentials: credentials as never });

describe('Read Mailbox (Modern Auth) with Microsoft XOAUTH2 against Dovecot and the fake identity platform', () => {
	it('app-only: reads the granted mailbox; without the mailbox permission or the IMAP role the hint names the Exchange steps', async () => {
		const good = appOnly({ roles: ['IMAP.AccessAsApp'], grant: true });
		const ok = await read('microsoftAppOnly', good.credentials);
		expect(ok.error).toBeUndefined();
		expect(ok.output.map((o) => o.json.subject)).toEqual(['For the robot']);

		for (const setup of [appOnly({ roles: ['IMAP.AccessAsApp'], grant: false }), appOnly({ roles: ['SMTP.SendAsApp'], grant: true })]) {
			const { error, run } = await read('microsoftAppOnly', setup.credentials);
			expect(error?.message).toMatch(/^Item 0: IMAP sign-in refused at 127\.0\.0\.1:\d+ \(AUTHENTICATE failed\)/);
			expect(error?.description).toMatch(/IMAP\.AccessAsApp.*New-ServicePrincipal with the ENTERPRISE APPLICATION object id.*Add-MailboxPermission/);
			expect(JSON.stringify(run)).not.toContain(setup.secret);
		}
	});

	it('delegated: reads the signed-in mailbox; a token without IMAP.AccessAsUser.All is refreshed once, then the hint asks for consent and a reconnect', async () => {
		const refreshes = () => idp.counts({ grantType: 'refresh_token', clientId: DELEGATED_APP });
		const good = await delegated('https://outlook.office.com/IMAP.AccessAsUser.All offline_access');
		const ok = await read('microsoftDelegated', good.credentials);
		expect(ok.error).toBeUndefined();
		expect(ok.output.map((o) => o.json.subject)).toEqual(['For Ann']);

		const smtpOnly = await delegated('https://outlook.office.com/SMTP.Send offline_access');
		const before = refreshes();
		const { error, run } = await read('microsoftDelegated', smtpOnly.credentials);
		expect(refreshes()).toBe(before + 1); // the refused token was renewed once, then given up
		expect(error?.message).toMatch(/^Item 0: IMAP sign-in refused at 127\.0\.0\.1:\d+ \(AUTHENTICATE failed\)/);
		expect(error?.description).toMatch(/IMAP\.AccessAsUser\.All.*consent.*Connect my account again.*mailbox/);
		const serialized = JSON.stringify(run);
		for (const secret of [DELEGATED_SECRET, smtpOnly.tokens.refresh_token, smtpOnly.tokens.access_token]) expect(serialized).not.toContain(secret);
	});
});
