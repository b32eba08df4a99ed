import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { runNode, type InputItem } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');

const TENANT = '6f1c2b7e-3d4a-4c5b-9e8f-0a1b2c3d4e5f';
const MAILBOX = 'robot@contoso.example';
const EXCHANGE = 'https://outlook.office365.com';

let pki: ReturnType<typeof sharedTestPki>;
let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let peer: Awaited<ReturnType<typeof startSmtpPeer>>;
/** Tokens the SMTP server treats as expired (what Exchange does once `exp` has passed). */
const expiredTokens = new Set<string>();
const tokensSeen: string[] = [];

beforeAll(async () => {
	pki = sharedTestPki();
	if (!pki.trustedByProcess) {
		throw new Error('These tests need the test CA trusted at process start: run them with `npm run test:unit`');
	}
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	peer = await startSmtpPeer({
		pki,
		// Exchange Online's check: a valid token for the Exchange audience, with the
		// SMTP.SendAsApp role, for a mailbox the app was granted (Add-MailboxPermission).
		validateBearer: (token: string, user: string) => {
			tokensSeen.push(token);
			if (expiredTokens.has(token)) return false;
			return idp.introspect(token, { audience: EXCHANGE, mailbox: user, role: 'SMTP.SendAsApp' }).active;
		},
	});
});

afterAll(async () => {
	await peer?.close();
	await idp?.close();
});

beforeEach(() => peer.reset());

function registerApp(options: { secret?: string; certificatePem?: string; roles?: string[]; grant?: boolean } = {}) {
	const clientId = randomUUID();
	idp.addApp({
		tenant: TENANT,
		clientId,
		secrets: options.secret ? [{ value: options.secret }] : [],
		certificates: options.certificatePem ? [{ pem: options.certificatePem }] : [],
		appRoles: options.roles ?? ['SMTP.SendAsApp'],
	});
	if (options.grant !== false) idp.grantMailbox({ tenant: TENANT, clientId, mailbox: MAILBOX });
	return clientId;
}

function appOnlyCredential(clientId: string, overrides: Record<string, unknown> = {}) {
	return {
		modernAuthMicrosoftAppOnlyApi: {
			id: `app${clientId.slice(0, 13)}`,
			name: 'Contoso app-only',
			data: {
				tenantId: TENANT,
				clientId,
				authType: 'secret',
				cloud: 'custom',
				authorityHost: idp.authorityHost,
				exchangeHost: EXCHANGE,
				smtpServer: `127.0.0.1:${peer.port}`,
				mailbox: MAILBOX,
				...overrides,
			},
		},
	};
}

const parameters = {
	authentication: 'microsoftAppOnly',
	toEmail: '={{ $json.to }}',
	subject: '={{ $json.subject }}',
	emailFormat: 'text',
	text: 'sent with XOAUTH2',
};

const items = (count: number): InputItem[] =>
	Array.from({ length: count }, (_, i) => ({ json: { to: `user${i}@example.org`, subject: `App-only ${i}` } }));

const tokenRequests = (clientId: string) => idp.counts({ grantType: 'client_credentials', clientId });

describe('Send Email (Modern Auth) with the Microsoft app-only credential (SMTP XOAUTH2)', () => {
	it('100 items: all delivered as the mailbox, with exactly one token request', async () => {
		const secret = `secret-${randomUUID()}`;
		const clientId = registerApp({ secret });
		const { output, error, run } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...parameters, options: { maxConnections: 4 } },
			items: items(100),
			credentials: appOnlyCredential(clientId, { clientSecret: secret }),
		});
		expect(error).toBeUndefined();
		expect(output).toHaveLength(100);
		expect(peer.received).toHaveLength(100);
		expect(new Set(peer.received.map((m: { user: string }) => m.user))).toEqual(new Set([MAILBOX]));
		expect(peer.received.every((m: { envelope: { from: string } }) => m.envelope.from === MAILBOX)).toBe(true);
		expect(tokenRequests(clientId)).toBe(1);
		expect(JSON.stringify(run)).not.toContain(secret);
		for (const token of tokensSeen) expect(JSON.stringify(run)).not.toContain(token);

		// A second execution in the same process reuses the token: still one request.
		const again = await runNode({
			type: 'modernAuthSendEmail',
			parameters,
			items: items(5),
			credentials: appOnlyCredential(clientId, { clientSecret: secret }),
		});
		expect(again.error).toBeUndefined();
		expect(tokenRequests(clientId)).toBe(1);
	});

	it('a token the server says has expired is renewed once, and no item fails', async () => {
		const secret = `secret-${randomUUID()}`;
		const clientId = registerApp({ secret });
		await runNode({ type: 'modernAuthSendEmail', parameters, items: items(1), credentials: appOnlyCredential(clientId, { clientSecret: secret }) });
		expect(tokenRequests(clientId)).toBe(1);
		// Exchange now refuses the cached token, as it does once the token's lifetime is over.
		for (const token of tokensSeen) expiredTokens.add(token);
		peer.reset();
		const { output, error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...parameters, options: { maxConnections: 3 } },
			items: items(30),
			credentials: appOnlyCredential(clientId, { clientSecret: secret }),
		});
		expect(error).toBeUndefined();
		expect(output.filter((o) => o.json.error)).toEqual([]);
		expect(peer.received).toHaveLength(30);
		expect(tokenRequests(clientId)).toBe(2);
	});

	it('certificate with an encrypted key: MSAL signs the assertion, the platform verifies it', async () => {
		const dir = fs.mkdtempSync(path.join(pki.dir, 'app-cert-'));
		execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-keyout', 'app.key', '-out', 'app.pem', '-days', '2', '-subj', '/CN=n8n app', '-passout', 'pass:key-pass-123'], { cwd: dir, stdio: 'ignore' });
		const certificatePem = fs.readFileSync(path.join(dir, 'app.pem'), 'utf8');
		const privateKeyPem = fs.readFileSync(path.join(dir, 'app.key'), 'utf8');
		const clientId = registerApp({ certificatePem });
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters,
			items: items(2),
			credentials: appOnlyCredential(clientId, { authType: 'certificate', certificatePem, privateKeyPem, passphrase: 'key-pass-123' }),
		});
		expect(error).toBeUndefined();
		expect(peer.received).toHaveLength(2);
		expect(tokenRequests(clientId)).toBe(1);
	});

	const failures: Array<{ name: string; setup: () => { clientId: string; data: Record<string, unknown> }; message: RegExp; hint: RegExp }> = [
		{
			name: 'wrong secret → AADSTS7000215 with "secret VALUE" hint',
			setup: () => ({ clientId: registerApp({ secret: 'right-secret-value' }), data: { clientSecret: 'wrong-secret-value' } }),
			message: /client secret is invalid \(AADSTS7000215/,
			hint: /secret VALUE, not the secret ID/,
		},
		{
			name: 'expired secret → AADSTS7000222',
			setup: () => {
				const clientId = randomUUID();
				idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: 'old-secret-value', expiresAt: new Date(Date.now() - 86_400_000) }], appRoles: ['SMTP.SendAsApp'] });
				return { clientId, data: { clientSecret: 'old-secret-value' } };
			},
			message: /client secret has expired \(AADSTS7000222/,
			hint: /new client secret/,
		},
		{
			name: 'unknown tenant → tenant / cloud hint',
			setup: () => ({ clientId: registerApp({ secret: 's-1' }), data: { clientSecret: 's-1', tenantId: '99999999-9999-4999-8999-999999999999' } }),
			message: /tenant was not found/,
			hint: /Tenant ID .* Cloud/,
		},
		{
			name: 'certificate not uploaded → AADSTS700027',
			setup: () => {
				const dir = fs.mkdtempSync(path.join(pki.dir, 'other-cert-'));
				execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'k.pem', '-out', 'c.pem', '-days', '2', '-subj', '/CN=other'], { cwd: dir, stdio: 'ignore' });
				return {
					clientId: registerApp({ secret: 'unused' }),
					data: { authType: 'certificate', certificatePem: fs.readFileSync(path.join(dir, 'c.pem'), 'utf8'), privateKeyPem: fs.readFileSync(path.join(dir, 'k.pem'), 'utf8') },
				};
			},
			message: /certificate assertion was rejected \(AADSTS700027/,
			hint: /Upload this certificate/,
		},
		{
			name: 'app not registered in the tenant → AADSTS700016',
			setup: () => ({ clientId: randomUUID(), data: { clientSecret: 'some-secret' } }),
			message: /application \(client ID\) was not found in the tenant \(AADSTS700016/,
			hint: /Check Client ID and Tenant ID/,
		},
		{
			name: 'admin consent missing → AADSTS65001',
			setup: () => {
				const clientId = randomUUID();
				idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: 'consent-secret' }], appRoles: ['SMTP.SendAsApp'], consented: false });
				return { clientId, data: { clientSecret: 'consent-secret' } };
			},
			message: /has not been granted consent \(AADSTS65001/,
			hint: /Grant admin consent/,
		},
		{
			name: 'no mailbox permission → XOAUTH2 refused with Exchange steps',
			setup: () => ({ clientId: registerApp({ secret: 's-2', grant: false }), data: { clientSecret: 's-2' } }),
			message: /SMTP server refused the app-only OAuth token/,
			hint: /New-ServicePrincipal .*ENTERPRISE APPLICATION object id.*Add-MailboxPermission/,
		},
		{
			name: 'client ID that is not a GUID is named, masked',
			setup: () => ({ clientId: 'not-a-guid-abcd', data: { clientSecret: 'x' } }),
			message: /Client ID \*\*\*\*abcd is not a GUID/,
			hint: /Application \(client\) ID/,
		},
	];

	for (const failure of failures) {
		it(failure.name, async () => {
			const { clientId, data } = failure.setup();
			const { error, run } = await runNode({
				type: 'modernAuthSendEmail',
				parameters,
				items: items(2),
				credentials: appOnlyCredential(clientId, data),
			});
			expect(error?.message).toMatch(failure.message);
			expect(error?.description).toMatch(failure.hint);
			expect(peer.received).toHaveLength(0);
			for (const key of ['clientSecret', 'privateKeyPem', 'passphrase']) {
				const value = data[key];
				if (typeof value === 'string' && value.length > 2) expect(JSON.stringify(run)).not.toContain(value);
			}
		});
	}
});

describe('Microsoft app-only credential Test button', () => {
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const { ModernAuthSendEmail } = require('../../nodes/ModernAuthSendEmail/ModernAuthSendEmail.node');
	const pressTest = (data: Record<string, unknown>) =>
		new ModernAuthSendEmail().methods.credentialTest.modernAuthMicrosoftAppOnlyTest.call({}, {
			id: 'x',
			name: 'app-only',
			type: 'modernAuthMicrosoftAppOnlyApi',
			data,
		});

	it('acquires a Graph and an Exchange token and shows only masked identifiers and the roles', async () => {
		const secret = `secret-${randomUUID()}`;
		const clientId = registerApp({ secret });
		const before = tokenRequests(clientId);
		const result = await pressTest(appOnlyCredential(clientId, { clientSecret: secret }).modernAuthMicrosoftAppOnlyApi.data);
		expect(result.status).toBe('OK');
		// Then the Default Mailbox's SMTP stage (the token carries SMTP.SendAsApp only, so no IMAP stage): EHLO + AUTH, nothing sent.
		expect(result.message).toBe(
			`Tokens acquired for app ****${clientId.slice(-4)} in tenant ****${TENANT.slice(-4)} (valid 60 min). ` +
				'Graph https://graph.microsoft.com: no app roles in the token (fine with RBAC for Applications). ' +
				`Exchange (SMTP, IMAP) ${EXCHANGE}: roles SMTP.SendAsApp. ` +
				`8 checks passed; login: 127.0.0.1:${peer.port}: EHLO and AUTH XOAUTH2 accepted for ****mple. ` +
				'Not tested: IMAP (the Exchange token carries no IMAP.AccessAsApp, so this credential is not set up for IMAP).',
		);
		expect(tokenRequests(clientId)).toBe(before + 2);
		expect(peer.stats.authentications).toBe(1);
		expect(peer.received).toHaveLength(0);
	});

	it('explains a wrong secret', async () => {
		const clientId = registerApp({ secret: 'the-real-secret' });
		const result = await pressTest(appOnlyCredential(clientId, { clientSecret: 'a-wrong-secret' }).modernAuthMicrosoftAppOnlyApi.data);
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^token \(exchange\) failed: .*AADSTS7000215.*Fix: Paste the secret VALUE/);
		expect(result.message).not.toContain('a-wrong-secret');
	});
});
