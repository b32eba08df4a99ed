import { imapKind } from '../../connections/imap';
import { microsoftAppOnlyKind } from '../../connections/microsoft-app-only';
import { microsoftDelegatedKind } from '../../connections/microsoft-delegated';
import { appOnly, closedPort, delegated, diagnose, MAILBOX, PASSWORD, PASSWORD_USER, startPeers, statuses, stopPeers, TENANT, USER, type Peers } from './exchange-fixture';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

let peers: Peers;
beforeAll(async () => {
	peers = await startPeers();
}, 120_000);
afterAll(async () => stopPeers(peers));

const IMAP_SCOPE = 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access';

describe('IMAP checks of the Microsoft app-only kind against Dovecot and the fake identity platform', () => {
	it('a working app: every stage passes and the read counts what Dovecot holds', async () => {
		const app = appOnly(peers);
		const { results, at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'imap' });
		expect(statuses(results)).toEqual(['reach:pass', 'reach:pass', 'tls:pass', 'tls:pass', 'credential:pass', 'token:pass', 'permission:pass', 'login:pass', 'read:pass']);
		const held = await peers.dovecot.status(MAILBOX);
		expect(at('read', 'INBOX').facts).toMatchObject({ total: held.messages, unread: held.unseen });
		expect(held.messages).toBe(3);
		expect(at('reach').target).toBe(new URL(peers.idp.authorityHost).host);
		expect(JSON.stringify(results)).not.toContain(app.secret);
	});

	it('app not registered in Exchange: login fails with the New-ServicePrincipal and Add-MailboxPermission lines for this app and mailbox', async () => {
		const app = appOnly(peers, { grant: false });
		const { results, at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'imap' });
		const login = at('login', 'imap');
		expect(login).toMatchObject({ status: 'fail', code: 'IMAP_AUTH_FAILED' });
		expect(login.hint).toContain(`New-ServicePrincipal -AppId ${app.clientId} -ObjectId <Enterprise Application object id>`);
		expect(login.hint).toContain(`Add-MailboxPermission -Identity '${MAILBOX}' -User <Enterprise Application object id> -AccessRights FullAccess`);
		expect(login.hint).toContain(`Set-CASMailbox -Identity '${MAILBOX}' -ImapEnabled $true`);
		expect(login.hint.indexOf('New-ServicePrincipal')).toBeLessThan(login.hint.indexOf('Set-CASMailbox'));
		expect(at('permission', 'imap').status).toBe('pass');
		expect(at('read').status).toBe('skipped');
		expect(JSON.stringify(results)).not.toContain(app.secret);
	});

	it('IMAP switched off for the mailbox: the hint names Set-CASMailbox -ImapEnabled $true for it', async () => {
		const app = appOnly(peers);
		peers.idp.disableProtocol(MAILBOX, 'imap');
		try {
			const { at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'imap' });
			expect(at('login')).toMatchObject({ status: 'fail', code: 'IMAP_AUTH_FAILED' });
			expect(at('login').hint).toContain(`Set-CASMailbox -Identity '${MAILBOX}' -ImapEnabled $true`);
		} finally {
			peers.idp.enableProtocol(MAILBOX, 'imap');
		}
	});

	it('a mailbox permission still propagating: the retried login passes later and says propagation was the cause', async () => {
		const app = appOnly(peers, { pendingTries: 3 });
		const { at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'imap', propagationRetry: { maxMs: 8_000, firstDelayMs: 200, maxDelayMs: 1_000 } });
		const login = at('login');
		expect(login).toMatchObject({ status: 'warn', code: 'PROPAGATION_DELAY' });
		expect(login.detail).toMatch(/passed on try \d+ .*propagation delay/);
		expect(at('read').status).toBe('pass');
		record({ transport: 'diagnostics', kind: 'fault', name: 'imap app-only: mailbox permission propagating', survived: true, behaviour: `login retried with back-off, then warned: ${login.detail}` });
	});

	it('a role consented a moment ago: the retried permission check asks for a fresh token until it carries IMAP.AccessAsApp', async () => {
		const app = appOnly(peers, { roles: ['Application.Read.All'] });
		// admin consent lands once the first Exchange token was issued (without the role): only later tokens carry it
		const exchangeTokens = () => peers.idp.counts({ grantType: 'client_credentials', clientId: app.clientId, scope: 'https://outlook.office365.com/.default' });
		const consent = setInterval(() => {
			if (exchangeTokens() < 1) return;
			peers.idp.findApp({ tenant: TENANT, clientId: app.clientId }).appRoles.push('IMAP.AccessAsApp');
			clearInterval(consent);
		}, 10);
		try {
			const { at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'imap', propagationRetry: { maxMs: 5_000, firstDelayMs: 200, maxDelayMs: 400 } });
			expect(at('permission')).toMatchObject({ status: 'warn', code: 'PROPAGATION_DELAY', detail: expect.stringMatching(/^IMAP\.AccessAsApp is in the token .*passed on try [2-9]/) });
			expect(at('login').status).toBe('pass');
			expect(at('read').status).toBe('pass');
			expect(exchangeTokens()).toBeGreaterThan(1);
		} finally {
			clearInterval(consent);
		}
	});

	it('a missing role without the retry option: permission fails with the admin consent path for this app', async () => {
		const app = appOnly(peers, { roles: ['SMTP.SendAsApp'] });
		const { at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'imap' });
		expect(at('permission')).toMatchObject({ status: 'fail', code: 'PERMISSION_MISSING', hint: expect.stringContaining(`(app ${app.clientId}) > API permissions`) });
		expect(at('login')).toMatchObject({ status: 'fail', code: 'IMAP_AUTH_FAILED' });
	});

	it('a certificate credential: the credential step reads the certificate expiry from the credential itself', async () => {
		const app = appOnly(peers, { certificate: true });
		const { results, at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'imap' });
		expect(at('credential')).toMatchObject({ status: 'pass' });
		expect(at('credential').detail).toMatch(/certificate/i);
		expect(results.filter((r) => r.status !== 'pass')).toEqual([]);
		expect(JSON.stringify(results)).not.toContain('PRIVATE KEY');
	});

	it('without the retry option the same propagation delay is a plain failure', async () => {
		const app = appOnly(peers, { pendingTries: 3 });
		const { at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'imap' });
		expect(at('login')).toMatchObject({ status: 'fail', code: 'IMAP_AUTH_FAILED' });
	});

	it('an unreachable IMAP port: reach fails and everything talking to it is skipped', async () => {
		const app = appOnly(peers);
		const port = await closedPort();
		const { results, at } = await diagnose(microsoftAppOnlyKind, app.data({ imapServer: `127.0.0.1:${port}` }), { protocol: 'imap' });
		expect(at('reach', `127.0.0.1:${port}`).status).toBe('fail');
		expect(at('tls', `127.0.0.1:${port}`).status).toBe('skipped');
		expect(at('token').status).toBe('pass');
		expect(at('login')).toMatchObject({ status: 'skipped', detail: expect.stringMatching(/did not pass/) });
		expect(at('read').status).toBe('skipped');
		expect(results.filter((r) => r.status === 'fail')).toHaveLength(1);
	});

	it('a mailbox outside Allowed Mailboxes is refused before anything connects', async () => {
		const app = appOnly(peers);
		const tokens = peers.idp.counts({ grantType: 'client_credentials', clientId: app.clientId });
		await expect(diagnose(microsoftAppOnlyKind, app.data({ allowedMailboxes: '@fabrikam.example' }), { protocol: 'imap', mailbox: MAILBOX })).rejects.toMatchObject({ code: 'MAILBOX_NOT_ALLOWED' });
		expect(peers.idp.counts({ grantType: 'client_credentials', clientId: app.clientId })).toBe(tokens);
	});

	it('a protocol the kind does not serve is refused, naming those it does', async () => {
		const app = appOnly(peers);
		await expect(diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'graph' })).rejects.toMatchObject({ code: 'PROTOCOL_NOT_SERVED', hint: expect.stringContaining('IMAP, SMTP') });
	});
});

describe('IMAP checks of the Microsoft delegated kind', () => {
	it("the signed-in account's own mailbox: all pass, the read counts Ann's Inbox", async () => {
		const ann = await delegated(peers, IMAP_SCOPE);
		const { results, at } = await diagnose(microsoftDelegatedKind, ann.data, { protocol: 'imap' });
		expect(results.filter((r) => r.status !== 'pass')).toEqual([]);
		expect(at('mailbox-access').status).toBe('pass');
		expect(at('read').facts?.total).toBe((await peers.dovecot.status(USER)).messages);
		for (const secret of ann.secrets) expect(JSON.stringify(results)).not.toContain(secret);
	});

	it('authorized as another account than the mailbox: mailbox-access warns, the login refusal carries the wrong-account fix', async () => {
		const ann = await delegated(peers, IMAP_SCOPE);
		const { at } = await diagnose(microsoftDelegatedKind, ann.data, { protocol: 'imap', mailbox: MAILBOX });
		expect(at('mailbox-access')).toMatchObject({ status: 'warn', code: 'MAILBOX_OTHER_ACCOUNT' });
		const login = at('login');
		expect(login).toMatchObject({ status: 'fail', code: 'IMAP_AUTH_FAILED' });
		expect(login.hint).toContain(`Connect my account again in a private window and choose ${MAILBOX}`);
		expect(login.hint).toContain(`Set-CASMailbox -Identity '${MAILBOX}' -ImapEnabled $true`);
		expect(login.hint).not.toContain(USER);
	});

	it('a token without IMAP.AccessAsUser.All: permission fails with the fix, login is refused too', async () => {
		const ann = await delegated(peers, 'https://outlook.office.com/SMTP.Send offline_access');
		const { at } = await diagnose(microsoftDelegatedKind, ann.data, { protocol: 'imap' });
		expect(at('permission')).toMatchObject({ status: 'fail', code: 'PERMISSION_MISSING' });
		expect(at('login').status).toBe('fail');
	});
});

describe('IMAP checks of the password kind', () => {
	const data = (overrides: Record<string, unknown> = {}) => ({ host: peers.dovecot.host, port: peers.dovecot.tlsPort, security: 'tls', user: PASSWORD_USER, password: PASSWORD, caCertificate: peers.pki.ca, ...overrides });

	it('all pass; the read counts what Dovecot holds', async () => {
		const { results, at } = await diagnose(imapKind, data());
		expect(statuses(results)).toEqual(['reach:pass', 'tls:pass', 'login:pass', 'read:pass']);
		expect(at('read').facts?.total).toBe((await peers.dovecot.status(PASSWORD_USER)).messages);
		expect(JSON.stringify(results)).not.toContain(PASSWORD);
	});

	it('a wrong password: login fails with its code, the read is skipped', async () => {
		const { at } = await diagnose(imapKind, data({ password: 'not-the-password' }));
		expect(at('login')).toMatchObject({ status: 'fail', code: 'IMAP_AUTH_FAILED' });
		expect(at('read').status).toBe('skipped');
	});

	it('a round trip is not offered: skipped, saying why', async () => {
		const { at } = await diagnose(imapKind, data(), { roundTrip: { to: PASSWORD_USER, timeoutMs: 1000 } });
		expect(at('round-trip')).toMatchObject({ status: 'skipped', detail: expect.stringMatching(/cannot send/) });
	});
});
