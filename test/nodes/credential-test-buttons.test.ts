import type { INodeCredentialTestResult } from 'n8n-workflow';

import { microsoftDelegatedKind } from '../../connections/microsoft-delegated';
import { TEST_BUTTON_BUDGET_MS } from '../../diagnostics/checks';
import { ModernAuthReadMailbox } from '../../nodes/ModernAuthReadMailbox/ModernAuthReadMailbox.node';
import { ModernAuthSendEmail } from '../../nodes/ModernAuthSendEmail/ModernAuthSendEmail.node';
import { testCredential } from '../../nodes/shared/open-connection';
import { appOnly, delegated, MAILBOX, PASSWORD, PASSWORD_USER, stalledServer, startPeers, stopPeers, TENANT, USER, type Peers } from '../diagnostics/exchange-fixture';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

let peers: Peers;
beforeAll(async () => {
	peers = await startPeers();
}, 120_000);
afterAll(async () => stopPeers(peers));
beforeEach(() => peers.smtp.reset());

type Data = Record<string, unknown>;

/** What n8n calls for a credential's Test button (`testedBy` -> the node's credentialTest method). */
async function pressTest(type: 'modernAuthSmtpApi' | 'modernAuthImapApi' | 'modernAuthMicrosoftAppOnlyApi', data: Data): Promise<INodeCredentialTestResult & { ms: number }> {
	const node = type === 'modernAuthImapApi' ? new ModernAuthReadMailbox() : new ModernAuthSendEmail();
	const method = { modernAuthSmtpApi: 'modernAuthSmtpConnectionTest', modernAuthImapApi: 'modernAuthImapConnectionTest', modernAuthMicrosoftAppOnlyApi: 'modernAuthMicrosoftAppOnlyTest' }[type];
	const started = Date.now();
	const result = await node.methods.credentialTest[method].call({} as never, { id: 'cred-test-1', name: type, type, data: data as never });
	return { ...result, ms: Date.now() - started };
}

const smtpData = (overrides: Data = {}): Data => ({ host: peers.smtp.host, port: peers.smtp.port, security: 'starttls', user: PASSWORD_USER, password: PASSWORD, caCertificate: peers.pki.ca, ...overrides });
const imapData = (overrides: Data = {}): Data => ({ host: peers.dovecot.host, port: peers.dovecot.tlsPort, security: 'tls', user: PASSWORD_USER, password: PASSWORD, caCertificate: peers.pki.ca, ...overrides });
const masked = (id: string) => `****${id.slice(-4)}`;

describe('SMTP credential Test button', () => {
	it('passes: reach, TLS, EHLO + AUTH, nothing sent', async () => {
		const result = await pressTest('modernAuthSmtpApi', smtpData());
		expect(result).toMatchObject({ status: 'OK', message: `3 checks passed; login: 127.0.0.1:${peers.smtp.port}: EHLO and AUTH with the password accepted for ****.com.` });
		expect(peers.smtp.stats.authentications).toBe(1);
		expect(peers.smtp.received).toHaveLength(0);
	});

	it('535 5.7.139: names the login step and says to use an OAuth credential', async () => {
		peers.smtp.authRefusal = '5.7.139 Authentication unsuccessful, basic authentication is disabled.';
		const result = await pressTest('modernAuthSmtpApi', smtpData());
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^login \(smtp\) failed: SMTP server refused password sign-in \(535 5\.7\.139\).*\. Fix: The provider switched password sign-in off: use an OAuth credential/);
		expect(result.message).toContain(`Set-CASMailbox -Identity '${PASSWORD_USER}' -SmtpClientAuthenticationDisabled $false`);
		expect(result.message).not.toContain(PASSWORD);
	});
});

describe('IMAP credential Test button', () => {
	it('passes with the Inbox count Dovecot holds', async () => {
		const held = await peers.dovecot.status(PASSWORD_USER);
		const result = await pressTest('modernAuthImapApi', imapData());
		expect(result).toMatchObject({ status: 'OK', message: `4 checks passed; read: INBOX: ${held.messages} messages, ${held.unseen} unread.` });
	});

	it('a wrong password: the login step with the fix, no password in it', async () => {
		const result = await pressTest('modernAuthImapApi', imapData({ password: 'wrong-imap-password' }));
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^login \(imap\) failed: IMAP sign-in refused .*AUTHENTICATE failed.*Fix: Check user name and password/);
		expect(result.message).not.toContain('wrong-imap-password');
		// Dovecot's reply ends in a full stop: one before the fix, not two
		expect(result.message).toMatch(/Authentication failed\. Fix: /);
	});
});

describe('a server that accepts TCP and never answers', () => {
	for (const [type, data] of [
		['modernAuthImapApi', (port: number) => imapData({ port })],
		['modernAuthSmtpApi', (port: number) => smtpData({ port })],
	] as const) {
		it(`${type}: the Test button answers within 15 s, naming the step that hung`, async () => {
			const stalled = await stalledServer();
			try {
				const result = await pressTest(type, data(stalled.port));
				expect(result.status).toBe('Error');
				expect(result.message).toMatch(new RegExp(`^tls \\(127\\.0\\.0\\.1:${stalled.port}\\) failed: .*Fix: `));
				expect(result.ms).toBeLessThan(15_000);
				expect(result.ms).toBeLessThan(TEST_BUTTON_BUDGET_MS + 500);
				record({ transport: 'diagnostics', kind: 'fault', name: `${type} Test button against a stalled server`, survived: true, behaviour: `answered in ${result.ms} ms: ${result.message.slice(0, 120)}` });
			} finally {
				await stalled.close();
			}
		}, 30_000);
	}
});

describe('Microsoft app-only credential Test button', () => {
	it('passes: both tokens with their roles, and for the Default Mailbox SMTP login and IMAP login + read', async () => {
		const app = appOnly(peers);
		const held = await peers.dovecot.status(MAILBOX);
		const result = await pressTest('modernAuthMicrosoftAppOnlyApi', app.data());
		expect(result.status).toBe('OK');
		expect(result.message).toBe(
			`Tokens acquired for app ${masked(app.clientId)} in tenant ${masked(TENANT)} (valid 60 min). ` +
				`Graph ${peers.graphHost}: roles Application.Read.All. Exchange (SMTP, IMAP) https://outlook.office365.com: roles IMAP.AccessAsApp, SMTP.SendAsApp. ` +
				`14 checks passed; read: INBOX: ${held.messages} messages, ${held.unseen} unread.`,
		);
		expect(peers.smtp.stats.authentications).toBe(1);
		expect(result.message).not.toContain(app.secret);
	});

	it('a wrong secret: the token step with AADSTS7000215, said once, and the secret VALUE fix', async () => {
		const app = appOnly(peers);
		const result = await pressTest('modernAuthMicrosoftAppOnlyApi', app.data({ clientSecret: 'pasted-the-secret-id' }));
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^token \(exchange\) failed: .*AADSTS7000215.*Fix: Paste the secret VALUE/);
		expect(result.message.match(/AADSTS7000215/g)).toHaveLength(1);
		expect(result.message).not.toContain('pasted-the-secret-id');
	});

	it('app not registered in Exchange: the IMAP login step with the New-ServicePrincipal line for this app', async () => {
		const app = appOnly(peers, { grant: false, roles: ['IMAP.AccessAsApp', 'Application.Read.All'] });
		const result = await pressTest('modernAuthMicrosoftAppOnlyApi', app.data());
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^login \(imap\) failed: IMAP sign-in refused .*AUTHENTICATE failed/);
		expect(result.message).toContain(`New-ServicePrincipal -AppId ${app.clientId}`);
		expect(result.message).toContain(`Add-MailboxPermission -Identity '${MAILBOX}'`);
	});

	it('an identity platform that takes token requests and never answers: the token step, within 15 s', async () => {
		const app = appOnly(peers);
		peers.idp.stallTokenRequests();
		try {
			const result = await pressTest('modernAuthMicrosoftAppOnlyApi', app.data());
			expect(result.status).toBe('Error');
			expect(result.message).toMatch(/^token \(exchange\) failed: no answer within 6 s\. Fix: /);
			// both token requests hang their 6 s: the answer comes well inside the 14 s budget
			expect(result.ms).toBeLessThan(13_000);
			record({ transport: 'diagnostics', kind: 'fault', name: 'app-only Test button against a stalled token endpoint', survived: true, behaviour: `answered in ${result.ms} ms naming the token step` });
		} finally {
			peers.idp.resumeTokenRequests();
		}
	}, 30_000);

	it('without a Default Mailbox: tokens only, no mail server asked', async () => {
		const app = appOnly(peers);
		const result = await pressTest('modernAuthMicrosoftAppOnlyApi', app.data({ mailbox: '' }));
		expect(result).toMatchObject({ status: 'OK', message: expect.stringMatching(/^Tokens acquired for app .* 5 checks passed; credential: client secret \(key \*{4}\w{4}\) of app \*{4}\w{4} valid until /) });
		expect(peers.smtp.stats.authentications).toBe(0);
	});
});

describe('Microsoft delegated credential: the staged test (n8n shows no Test button for OAuth2 credentials)', () => {
	it("passes for the connected account's own mailbox, with its Inbox count", async () => {
		const ann = await delegated(peers, 'https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access');
		const held = await peers.dovecot.status(USER);
		const result = await testCredential(microsoftDelegatedKind, ann.data as never);
		expect(result).toEqual({ status: 'OK', message: expect.stringMatching(new RegExp(`checks passed; read: INBOX: ${held.messages} messages`)) });
		for (const secret of ann.secrets) expect(result.message).not.toContain(secret);
	});

	it('a token for IMAP only: IMAP passes, the answer says SMTP was not tested and why', async () => {
		const ann = await delegated(peers, 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access');
		const result = await testCredential(microsoftDelegatedKind, ann.data as never);
		expect(result.status).toBe('OK');
		expect(result.message).toMatch(/; read: INBOX: \d+ messages, \d+ unread\. Not tested: SMTP \(the Exchange token carries no SMTP\.Send, so this credential is not set up for SMTP\)\.$/);
		expect(peers.smtp.stats.connections).toBe(0);
	});

	it('authorized as another account than the Default Mailbox: the login refusal carries the wrong-account fix', async () => {
		const ann = await delegated(peers, 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access', { mailbox: MAILBOX });
		const result = await testCredential(microsoftDelegatedKind, ann.data as never);
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^login \(imap\) failed: IMAP sign-in refused/);
		expect(result.message).toContain(`Connect my account again in a private window and choose ${MAILBOX}`);
	});
});
