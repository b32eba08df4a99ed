import { microsoftAppOnlyKind } from '../../connections/microsoft-app-only';
import { microsoftDelegatedKind } from '../../connections/microsoft-delegated';
import { smtpKind } from '../../connections/smtp';
import { appOnly, closedPort, delegated, diagnose, MAILBOX, PASSWORD, PASSWORD_USER, startPeers, statuses, stopPeers, type Peers } from './exchange-fixture';

let peers: Peers;
beforeAll(async () => {
	peers = await startPeers();
}, 120_000);
afterAll(async () => stopPeers(peers));
beforeEach(() => peers.smtp.reset());

const BASIC_AUTH_OFF = '5.7.139 Authentication unsuccessful, basic authentication is disabled.';
const smtpData = (overrides: Record<string, unknown> = {}) => ({
	host: peers.smtp.host,
	port: peers.smtp.port,
	security: 'starttls',
	user: PASSWORD_USER,
	password: PASSWORD,
	fromAddress: PASSWORD_USER,
	caCertificate: peers.pki.ca,
	...overrides,
});

describe('SMTP checks of the password kind', () => {
	it('all pass: EHLO and AUTH are the last step, nothing is sent', async () => {
		const { results, at } = await diagnose(smtpKind, smtpData());
		expect(statuses(results)).toEqual(['reach:pass', 'tls:pass', 'login:pass']);
		expect(at('login').detail).toMatch(/EHLO and AUTH with the password accepted/);
		expect(peers.smtp.stats.authentications).toBe(1);
		expect(peers.smtp.received).toHaveLength(0);
		expect(JSON.stringify(results)).not.toContain(PASSWORD);
	});

	it('535 5.7.139: the provider switched password sign-in off, use an OAuth credential (or the Set-CASMailbox line)', async () => {
		peers.smtp.authRefusal = BASIC_AUTH_OFF;
		const { at } = await diagnose(smtpKind, smtpData());
		const login = at('login', 'smtp');
		expect(login).toMatchObject({ status: 'fail', code: 'SMTP_BASIC_AUTH_DISABLED' });
		expect(login.detail).toMatch(/535 5\.7\.139/);
		expect(login.hint).toMatch(/^The provider switched password sign-in off: use an OAuth credential/);
		expect(login.hint).toContain(`Set-CASMailbox -Identity '${PASSWORD_USER}' -SmtpClientAuthenticationDisabled $false`);
		expect(login.hint).toContain('Set-TransportConfig -SmtpClientAuthenticationDisabled $false');
	});

	it('an unreachable port: reach fails, TLS and login are skipped', async () => {
		const port = await closedPort();
		const { results, at } = await diagnose(smtpKind, smtpData({ port }));
		expect(statuses(results)).toEqual(['reach:fail', 'tls:skipped', 'login:skipped']);
		expect(at('login').detail).toMatch(/^skipped: tls did not pass|^skipped: .*did not pass/);
	});

	it('a round trip asked of the SMTP kind sends the message and says it cannot read it back', async () => {
		const { at } = await diagnose(smtpKind, smtpData(), { roundTrip: { to: 'someone@example.org', timeoutMs: 5_000 } });
		expect(at('round-trip')).toMatchObject({ status: 'pass', detail: expect.stringMatching(/not read back/) });
		expect(peers.smtp.received).toHaveLength(1);
		expect(peers.smtp.received[0].envelope.to).toEqual(['someone@example.org']);
	});
});

describe('SMTP checks of the Microsoft kinds (XOAUTH2)', () => {
	it('app-only, working: all pass as the mailbox', async () => {
		const app = appOnly(peers);
		const { results } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'smtp' });
		expect(statuses(results)).toEqual(['reach:pass', 'reach:pass', 'tls:pass', 'tls:pass', 'credential:pass', 'token:pass', 'permission:pass', 'login:pass']);
		expect(peers.smtp.received).toHaveLength(0);
	});

	it('app-only, not registered in Exchange: 535 refusal with New-ServicePrincipal, Add-RecipientPermission and the SMTP AUTH line', async () => {
		const app = appOnly(peers, { grant: false });
		const { at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'smtp' });
		const login = at('login', 'smtp');
		expect(login).toMatchObject({ status: 'fail', code: 'SMTP_XOAUTH2_REJECTED' });
		expect(login.hint).toContain(`New-ServicePrincipal -AppId ${app.clientId}`);
		expect(login.hint).toContain(`Add-RecipientPermission -Identity '${MAILBOX}'`);
		expect(login.hint).toContain(`Set-CASMailbox -Identity '${MAILBOX}' -SmtpClientAuthenticationDisabled $false`);
	});

	it('SMTP AUTH off for the tenant (535 5.7.139 to an OAuth sign-in): the Set-CASMailbox and Set-TransportConfig lines', async () => {
		const app = appOnly(peers);
		peers.smtp.authRefusal = BASIC_AUTH_OFF;
		const { at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'smtp' });
		expect(at('login')).toMatchObject({ status: 'fail', code: 'SMTP_BASIC_AUTH_DISABLED' });
		expect(at('login').hint).toMatch(new RegExp(`^SMTP AUTH is switched off.*Set-CASMailbox -Identity '${MAILBOX}' -SmtpClientAuthenticationDisabled \\$false.*Set-TransportConfig`));
	});

	it("delegated, the account's own mailbox: all pass, nothing sent", async () => {
		const ann = await delegated(peers, 'https://outlook.office.com/SMTP.Send offline_access');
		const { results } = await diagnose(microsoftDelegatedKind, ann.data, { protocol: 'smtp' });
		expect(statuses(results)).toEqual(['reach:pass', 'reach:pass', 'tls:pass', 'tls:pass', 'token:pass', 'permission:pass', 'mailbox-access:pass', 'login:pass']);
		expect(peers.smtp.stats.authentications).toBe(1);
		expect(peers.smtp.received).toHaveLength(0);
	});

	it('delegated, sending as a mailbox the account may not use: mailbox-access warns, the refusal names the wrong account', async () => {
		const ann = await delegated(peers, 'https://outlook.office.com/SMTP.Send offline_access');
		const { at } = await diagnose(microsoftDelegatedKind, ann.data, { protocol: 'smtp', mailbox: MAILBOX });
		expect(at('mailbox-access').status).toBe('warn');
		expect(at('login')).toMatchObject({ status: 'fail', code: 'SMTP_XOAUTH2_REJECTED' });
		expect(at('login').hint).toContain(`Connect my account again in a private window and choose ${MAILBOX}`);
	});

	it('app-only round trip: sent over SMTP as the mailbox, read back over IMAP from it, then deleted', async () => {
		const app = appOnly(peers);
		const before = (await peers.dovecot.status(MAILBOX)).messages;
		const { at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'smtp', roundTrip: { to: MAILBOX, timeoutMs: 5_000 } });
		expect(at('round-trip', MAILBOX)).toMatchObject({ status: 'pass', detail: expect.stringMatching(/^arrived in INBOX after \d+ ms .*deleted/) });
		expect(at('round-trip').facts?.roundTripMs).toEqual(expect.any(Number));
		expect(peers.smtp.received.map((m: { user: string }) => m.user)).toEqual([MAILBOX]);
		expect((await peers.dovecot.status(MAILBOX)).messages).toBe(before);
	});

	it('a round trip to an address that never reaches the mailbox: not arrived, with the hint', async () => {
		const app = appOnly(peers);
		const { at } = await diagnose(microsoftAppOnlyKind, app.data(), { protocol: 'smtp', roundTrip: { to: 'elsewhere@example.org', timeoutMs: 1_000 } });
		expect(at('round-trip')).toMatchObject({ status: 'fail', code: 'ROUND_TRIP_NOT_ARRIVED' });
		expect(peers.smtp.received).toHaveLength(1);
	});
});
