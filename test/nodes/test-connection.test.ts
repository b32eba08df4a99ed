import { dovecotImapCredential } from '../harness/imap-credential';
import { expectFirstFailure, expectNoSecrets, itemsOf, statusByStep, testConnection } from './test-connection-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

// The Test Connection node with password credentials, through n8n's engine, against a real
// Dovecot and a real SMTP server: one item per check, a summary, and the failing step's fix.
const IMAP_USER = 'tester@example.com';
const IMAP_PASSWORD = 'Imap-Test-Passw0rd!';
const SMTP_USER = 'robot@example.com';
const SMTP_PASSWORD = 'Smtp-Test-Passw0rd!';
const WRONG_PASSWORD = 'Wrong-Passw0rd-Canary!';

let pki: ReturnType<typeof sharedTestPki>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;
let smtp: Awaited<ReturnType<typeof startSmtpPeer>>;

beforeAll(async () => {
	pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	dovecot = await startDovecot({ pki, users: { [IMAP_USER]: IMAP_PASSWORD } });
	smtp = await startSmtpPeer({ pki, users: { [SMTP_USER]: SMTP_PASSWORD } });
}, 120_000);

afterAll(async () => {
	await dovecot?.stop();
	await smtp?.close();
});

const imapCredential = (password: string) => dovecotImapCredential({ dovecot, pki, user: IMAP_USER, password }, { id: 'imapTestConn0001', name: 'Dovecot (test)' });
const smtpCredential = (overrides: Record<string, unknown> = {}) => ({
	modernAuthSmtpApi: {
		id: 'smtpTestConn0001',
		name: 'SMTP peer (test)',
		data: { host: smtp.host, port: smtp.port, security: 'starttls', user: SMTP_USER, password: SMTP_PASSWORD, fromAddress: SMTP_USER, caCertificate: pki.ca, ...overrides },
	},
});

describe('Test Connection (Modern Auth) with password credentials, run by n8n-core', () => {
	it('IMAP password: a working credential passes reach, TLS, login and the INBOX read, one item per check for each input item', async () => {
		const { output, error, serialized } = await testConnection({ parameters: { authentication: 'imap', protocol: 'default' }, credentials: imapCredential(IMAP_PASSWORD), items: 2 });
		expect(error).toBeUndefined();
		for (const item of [0, 1]) {
			const { checks, summary } = itemsOf(output, item);
			expect(statusByStep(checks)).toMatchObject({ reach: 'pass', tls: 'pass', login: 'pass', read: 'pass' });
			expect(checks.every((c) => c.status === 'pass' && c.authentication === 'imap' && c.protocol === 'imap')).toBe(true);
			expect(checks.find((c) => c.step === 'reach')?.target).toBe(`${dovecot.host}:${dovecot.tlsPort}`);
			expect(checks.find((c) => c.step === 'read')?.target).toBe('INBOX');
			expect(summary).toMatchObject({ verdict: 'pass', firstFailingStep: '', firstFailingTarget: '', hint: '', authentication: 'imap', protocol: 'imap' });
			expect(summary.durationMs).toBeGreaterThanOrEqual(Math.max(...checks.map((c) => c.durationMs)));
		}
		expectNoSecrets(serialized, [IMAP_PASSWORD]);
	});

	it('IMAP password: a wrong password fails at login with a hint, the read is skipped naming why, and the password shows nowhere', async () => {
		const { output, error, serialized } = await testConnection({ parameters: { authentication: 'imap' }, credentials: imapCredential(WRONG_PASSWORD) });
		expect(error).toBeUndefined(); // Fail Workflow on Failure is off by default
		const { checks, summary } = itemsOf(output);
		expect(statusByStep(checks)).toMatchObject({ reach: 'pass', tls: 'pass', login: 'fail', read: 'skipped' });
		const login = expectFirstFailure(checks, summary, 'login');
		expect(login.hint).toMatch(/password/i);
		expect(checks.find((c) => c.step === 'read')?.detail).toMatch(/^skipped: login/);
		expectNoSecrets(serialized, [WRONG_PASSWORD]);
	});

	it('SMTP password: a working credential passes reach, TLS (STARTTLS) and login; a wrong password fails at login', async () => {
		const good = await testConnection({ parameters: { authentication: 'smtp' }, credentials: smtpCredential() });
		expect(good.error).toBeUndefined();
		const passing = itemsOf(good.output);
		expect(statusByStep(passing.checks)).toMatchObject({ reach: 'pass', tls: 'pass', login: 'pass' });
		expect(passing.summary).toMatchObject({ verdict: 'pass', firstFailingStep: '', protocol: 'smtp' });

		const bad = await testConnection({ parameters: { authentication: 'smtp' }, credentials: smtpCredential({ password: WRONG_PASSWORD }) });
		const failing = itemsOf(bad.output);
		expect(statusByStep(failing.checks)).toMatchObject({ reach: 'pass', tls: 'pass', login: 'fail' });
		expect(expectFirstFailure(failing.checks, failing.summary, 'login').hint).toMatch(/password/i);
		expectNoSecrets(good.serialized + bad.serialized, [SMTP_PASSWORD, WRONG_PASSWORD]);
	});

	it('an unreachable port fails at reach and every later step is skipped', async () => {
		const closed = await closedPort();
		const { output } = await testConnection({ parameters: { authentication: 'smtp' }, credentials: smtpCredential({ port: closed }) });
		const { checks, summary } = itemsOf(output);
		expectFirstFailure(checks, summary, 'reach');
		expect(checks[0]).toMatchObject({ step: 'reach', target: `${smtp.host}:${closed}`, status: 'fail' });
		expect(checks.slice(1).every((c) => c.status === 'skipped')).toBe(true);
	});

	it('Time Budget: against a server that accepts TCP and never answers, the item ends within its budget naming the step that hung', async () => {
		const stalled = await stalledServer();
		try {
			const started = Date.now();
			const { output } = await testConnection({ parameters: { authentication: 'smtp', options: { timeBudgetSeconds: 2 } }, credentials: smtpCredential({ port: stalled.port }) });
			const ms = Date.now() - started;
			const { checks, summary } = itemsOf(output);
			expect(statusByStep(checks)).toMatchObject({ reach: 'pass', tls: 'fail', login: 'skipped' });
			const tls = expectFirstFailure(checks, summary, 'tls');
			expect(tls.durationMs).toBeLessThan(2_500); // a check's own ceiling is 10 s: the budget cut it
			expect(ms).toBeLessThan(5_000);
			record({ transport: 'diagnostics', kind: 'fault', name: 'Test Connection node: stalled SMTP server within a 2 s Time Budget', survived: true, behaviour: `item ended after ${ms} ms, tls failed: ${tls.detail.slice(0, 100)}` });
		} finally {
			await stalled.close();
		}
	}, 30_000);

	it('Fail Workflow on Failure: stops the workflow naming the failing step and its fix; with On Error: Continue the items come out', async () => {
		const parameters = { authentication: 'smtp', options: { failOnFailure: true } };
		const stopped = await testConnection({ parameters, credentials: smtpCredential({ password: WRONG_PASSWORD }) });
		expect(stopped.error?.message).toMatch(/^Item 0: login \(smtp\) failed: /);
		expect(stopped.error?.description).toMatch(/password/i);
		expect(stopped.output).toEqual([]);

		const continued = await testConnection({ parameters, credentials: smtpCredential({ password: WRONG_PASSWORD }), onError: 'continueRegularOutput' });
		expect(continued.error).toBeUndefined();
		expect(itemsOf(continued.output).summary).toMatchObject({ verdict: 'fail', firstFailingStep: 'login' });

		// A host that does not resolve: the message says so in words (n8n would replace one carrying ENOTFOUND).
		const unresolved = await testConnection({ parameters, credentials: smtpCredential({ host: 'no-such-host.invalid' }) });
		expect(unresolved.error?.message).toMatch(/^Item 0: reach \(no-such-host\.invalid:\d+\) failed: .*host name not found/);
		expect(unresolved.error?.message).not.toMatch(/ENOTFOUND/);

		// A passing credential with the option on runs as usual.
		const passing = await testConnection({ parameters, credentials: smtpCredential() });
		expect(passing.error).toBeUndefined();
		expect(itemsOf(passing.output).summary.verdict).toBe('pass');
		expectNoSecrets(stopped.serialized + continued.serialized, [WRONG_PASSWORD, SMTP_PASSWORD]);
	});

	it('a protocol the Authentication does not serve is refused before the credential is used, naming the field and what it serves', async () => {
		const before = smtp.stats.connections;
		const refused = await testConnection({ parameters: { authentication: 'smtp', protocol: 'imap' }, credentials: smtpCredential() });
		expect(refused.error?.message).toBe('Item 0: Protocol: IMAP is not served by Authentication "SMTP (Password or None)"');
		expect(refused.error?.description).toBe('Set Protocol to Default or one of: SMTP');
		expect(smtp.stats.connections).toBe(before);

		const continued = await testConnection({ parameters: { authentication: 'imap', protocol: 'graph' }, credentials: imapCredential(IMAP_PASSWORD), onError: 'continueRegularOutput' });
		expect(continued.error).toBeUndefined();
		expect(continued.output).toHaveLength(1);
		const { checks, summary } = itemsOf(continued.output);
		expect(checks).toEqual([]);
		expect(summary).toMatchObject({
			verdict: 'fail',
			firstFailingStep: 'parameters',
			code: 'PROTOCOL_NOT_SERVED',
			detail: 'Item 0: Protocol: Microsoft Graph is not served by Authentication "IMAP (Password)"',
			hint: 'Set Protocol to Default or one of: IMAP',
		});
	});
});

/** Accepts connections and never says a word (a firewall black hole past the TCP handshake). */
async function stalledServer() {
	const net = await import('node:net');
	const sockets = new Set<import('node:net').Socket>();
	const server = net.createServer((socket) => void sockets.add(socket));
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	return {
		port: (server.address() as import('node:net').AddressInfo).port,
		close: () => new Promise<void>((resolve) => {
			for (const socket of sockets) socket.destroy();
			server.close(() => resolve());
		}),
	};
}

async function closedPort(): Promise<number> {
	const net = await import('node:net');
	const server = net.createServer();
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	const { port } = server.address() as import('node:net').AddressInfo;
	await new Promise<void>((resolve) => server.close(() => resolve()));
	return port;
}
