/**
 * The TLS stage against real servers: smtp-server (STARTTLS and implicit TLS), Dovecot (IMAP
 * STARTTLS on its plain port, implicit TLS on its TLS port), and node TLS servers presenting
 * the odd certificates certs.js issues (self-signed, expired, expiring, wrong name, another CA).
 * A tiny scripted IMAP greeter stands in for a server without STARTTLS (Dovecot always offers
 * it), and a TCP server that never speaks for a stalled one.
 */
import net from 'node:net';
import tls from 'node:tls';

import { runChecks, type CheckResult } from '../../diagnostics/checks';
import { reachCheck } from '../../diagnostics/network';
import { tlsCheck, type TlsEndpoint } from '../../diagnostics/tls-probe';
import { closeAllServers, listen, startSilentServer, until } from './network-peers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createTestPki, sharedTestPki, issueServerCertificate } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

type Pki = ReturnType<typeof sharedTestPki>;
type Peer = { port: number; close(): Promise<void> };

const CHECKS_OFF_HINT = 'Ignore Certificate Errors is on: anyone on the path can read the password; turn it off and trust the CA instead';
const day = (date: Date) => date.toISOString().slice(0, 10);

let processPki: Pki;
/** A CA this process does not trust: only the credential's CA field can make its certificates trusted. */
let ownPki: Pki;
let smtpStartTls: Peer;
let smtpImplicit: Peer;
let smtpNoStartTls: Peer;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;

beforeAll(async () => {
	processPki = sharedTestPki();
	if (!processPki.trustedByProcess) throw new Error('Run with `node scripts/jest.js`: the test CA must be in NODE_EXTRA_CA_CERTS');
	ownPki = createTestPki();
	smtpStartTls = await startSmtpPeer({ pki: processPki });
	smtpImplicit = await startSmtpPeer({ pki: processPki, implicitTls: true });
	smtpNoStartTls = await startSmtpPeer({ pki: processPki, disableStartTls: true });
	dovecot = await startDovecot({ pki: processPki, users: { 'probe@example.com': 'Probe-Passw0rd' } });
}, 120_000);

afterAll(async () => {
	await Promise.all([smtpStartTls?.close(), smtpImplicit?.close(), smtpNoStartTls?.close(), dovecot?.stop(), closeAllServers()]);
});

/** An implicit-TLS server presenting `cert` (it never says anything: the handshake is all the probe needs). */
const startTlsServer = (cert: { cert: string; key: string }) => listen(tls.createServer({ cert: cert.cert, key: cert.key }));

/** A plain IMAP server that greets and refuses every command, STARTTLS included. */
const startImapWithoutStartTls = () =>
	listen(
		net.createServer((socket) => {
			socket.write('* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] plain only\r\n');
			socket.on('data', (chunk) => {
				const tag = chunk.toString('latin1').split(' ')[0];
				socket.write(`${tag} BAD command unknown or arguments invalid\r\n`);
			});
		}),
	);

/** reach, then tls (which needs it), through the runner as the node runs them; the tls result. */
const probe = async (port: number, endpoint: Partial<TlsEndpoint> = {}): Promise<CheckResult> => {
	const [reach, result] = await runChecks([reachCheck('127.0.0.1', port), tlsCheck({ host: '127.0.0.1', port, mode: 'tls', role: 'SMTP', rejectUnauthorized: true, ...endpoint })]);
	expect(reach.status).toBe('pass');
	return result;
};

describe('tlsCheck: trust, judged as the transports would', () => {
	it('passes for SMTP STARTTLS and implicit TLS signed by a CA the process trusts, reporting protocol, certificate and expiry', async () => {
		const results = await runChecks([
			reachCheck('127.0.0.1', smtpStartTls.port, { role: 'SMTP' }),
			tlsCheck({ host: '127.0.0.1', port: smtpStartTls.port, mode: 'starttls-smtp', role: 'SMTP', rejectUnauthorized: true }),
			reachCheck('localhost', smtpImplicit.port, { role: 'SMTP' }),
			tlsCheck({ host: 'localhost', port: smtpImplicit.port, mode: 'tls', role: 'SMTP', rejectUnauthorized: true }),
		]);
		expect(results.map((r) => `${r.step}:${r.status}`)).toEqual(['reach:pass', 'tls:pass', 'reach:pass', 'tls:pass']);
		const { facts } = results[1];
		expect(facts).toMatchObject({ mode: 'starttls-smtp', subject: 'localhost', subjectAltNames: ['DNS:localhost', 'IP Address:127.0.0.1'], issuer: 'modern-auth-mail test CA', trusted: true, selfSigned: false });
		expect(String(facts?.protocol)).toMatch(/^TLSv1\.[23]$/);
		expect(facts?.cipher).toBeTruthy();
		// the default test certificate is long-lived, so it does not warn about its expiry
		expect(Number(facts?.daysLeft)).toBeGreaterThan(30);
		expect(results[1].detail).toContain('trusted');
	});

	it("the credential's CA makes another CA's certificate trusted; without it the check fails naming the issuer", async () => {
		const server = await startTlsServer(ownPki);
		const withCa = await probe(server.port, { ca: ownPki.ca });
		expect(withCa).toMatchObject({ status: 'pass', facts: { trusted: true } });
		const without = await probe(server.port);
		expect(without).toMatchObject({ status: 'fail', code: 'TLS_UNTRUSTED', facts: { trusted: false, selfSigned: false } });
		expect(without.hint).toContain('Trusted CA Certificate');
		expect(without.hint).toContain('modern-auth-mail test CA');
		// the CA adds to the default trust, never replaces it (as the transports do)
		expect(await probe(smtpImplicit.port, { ca: ownPki.ca })).toMatchObject({ status: 'pass' });
		expect(await until(() => server.open === 0)).toBe(true);
	});

	it('a self-signed certificate fails with TLS_SELF_SIGNED', async () => {
		const server = await startTlsServer(issueServerCertificate(processPki, { selfSigned: true }));
		const result = await probe(server.port);
		expect(result).toMatchObject({ status: 'fail', code: 'TLS_SELF_SIGNED', facts: { selfSigned: true, trusted: false } });
		expect(result.detail).toMatch(/self-signed/);
		expect(result.hint).toMatch(/Trusted CA Certificate \(PEM\) field/);
	});

	it('an expired certificate fails with TLS_EXPIRED, naming the date', async () => {
		const expired = issueServerCertificate(processPki, { days: -3 });
		const result = await probe((await startTlsServer(expired)).port);
		expect(result).toMatchObject({ status: 'fail', code: 'TLS_EXPIRED', facts: { trusted: false } });
		expect(result.detail).toContain(`expired on ${day(expired.notAfter)}`);
		expect(result.hint).toMatch(/^Renew the server certificate/);
	});

	it('a certificate expiring in 10 days warns with TLS_EXPIRES_SOON, naming the date', async () => {
		const expiring = issueServerCertificate(processPki, { days: 10 });
		const result = await probe((await startTlsServer(expiring)).port);
		expect(result).toMatchObject({ status: 'warn', code: 'TLS_EXPIRES_SOON', facts: { trusted: true, daysLeft: 10 } });
		expect(result.detail).toContain(`expires on ${day(expiring.notAfter)} (in 10 days)`);
		expect(result.hint).toContain(`before ${day(expiring.notAfter)}`);
	});

	it('a certificate for another name fails with TLS_NAME_MISMATCH, listing the names it carries', async () => {
		const port = (await startTlsServer(issueServerCertificate(processPki, { names: ['mail.example.org', 'smtp.example.org'] }))).port;
		const result = await probe(port);
		expect(result).toMatchObject({ status: 'fail', code: 'TLS_NAME_MISMATCH' });
		expect(result.hint).toBe('Use the host name the certificate names: mail.example.org, smtp.example.org');
		// the same server passes when the name the certificate carries is the one expected
		expect(await probe(port, { servername: 'smtp.example.org' })).toMatchObject({ status: 'pass' });
	});

	it('with certificate checks off it warns, even for a certificate that would fail, and says what is wrong', async () => {
		const bad = await probe((await startTlsServer(issueServerCertificate(processPki, { selfSigned: true }))).port, { rejectUnauthorized: false });
		expect(bad).toMatchObject({ status: 'warn', code: 'TLS_CHECKS_OFF', facts: { trusted: false } });
		expect(bad.detail).toMatch(/switched off \(and the certificate is self-signed/);
		expect(bad.hint).toBe(CHECKS_OFF_HINT);
		const good = await probe(smtpImplicit.port, { rejectUnauthorized: false });
		expect(good).toMatchObject({ status: 'warn', code: 'TLS_CHECKS_OFF', facts: { trusted: true }, hint: CHECKS_OFF_HINT });
	});

	it('a server that speaks only TLS 1.1 or older fails with TLS_OLD_PROTOCOL (the transports refuse it too)', async () => {
		const server = await listen(tls.createServer({ cert: processPki.cert, key: processPki.key, minVersion: 'TLSv1', maxVersion: 'TLSv1.1' }));
		const result = await probe(server.port);
		expect(result).toMatchObject({ status: 'fail', code: 'TLS_OLD_PROTOCOL' });
		expect(result.hint).toMatch(/TLS 1\.2 or 1\.3/);
	});

	it('Security None warns that nothing is encrypted', async () => {
		const result = await probe(smtpStartTls.port, { mode: 'none' });
		expect(result).toMatchObject({ status: 'warn', code: 'TLS_NONE' });
		expect(result.hint).toMatch(/STARTTLS or SSL\/TLS/);
	});
});

describe('tlsCheck: port and Security setting', () => {
	it('SMTP: SSL/TLS against a STARTTLS port, and STARTTLS against an implicit-TLS port, both name the fix', async () => {
		const implicitOnPlain = await probe(smtpStartTls.port, { mode: 'tls' });
		expect(implicitOnPlain).toMatchObject({ status: 'fail', code: 'TLS_MODE_MISMATCH' });
		expect(implicitOnPlain.detail).toMatch(/answered in plain text \("220 /);
		expect(implicitOnPlain.hint).toBe(`Port ${smtpStartTls.port} speaks plain text first: set Security to STARTTLS, or use port 465 for SSL/TLS`);
		const startTlsOnImplicit = await probe(smtpImplicit.port, { mode: 'starttls-smtp' });
		expect(startTlsOnImplicit).toMatchObject({ status: 'fail', code: 'TLS_MODE_MISMATCH' });
		expect(startTlsOnImplicit.hint).toBe(`Port ${smtpImplicit.port} expects TLS from the first byte: set Security to SSL/TLS, or use port 587 for STARTTLS`);
	});

	it('IMAP (Dovecot): STARTTLS on the plain port and TLS on the TLS port pass; swapped, both name the fix', async () => {
		const startTls = await probe(dovecot.port, { mode: 'starttls-imap', role: 'IMAP' });
		expect(startTls).toMatchObject({ status: 'pass', facts: { mode: 'starttls-imap', trusted: true } });
		expect(await probe(dovecot.tlsPort, { mode: 'tls', role: 'IMAP' })).toMatchObject({ status: 'pass' });
		const implicitOnPlain = await probe(dovecot.port, { mode: 'tls', role: 'IMAP' });
		expect(implicitOnPlain).toMatchObject({ status: 'fail', code: 'TLS_MODE_MISMATCH' });
		expect(implicitOnPlain.detail).toMatch(/\("\* OK/);
		expect(implicitOnPlain.hint).toBe(`Port ${dovecot.port} speaks plain text first: set Security to STARTTLS, or use port 993 for SSL/TLS`);
		const startTlsOnImplicit = await probe(dovecot.tlsPort, { mode: 'starttls-imap', role: 'IMAP' });
		expect(startTlsOnImplicit).toMatchObject({ status: 'fail', code: 'TLS_MODE_MISMATCH' });
		expect(startTlsOnImplicit.hint).toBe(`Port ${dovecot.tlsPort} expects TLS from the first byte: set Security to SSL/TLS, or use port 143 for STARTTLS`);
	});

	it('a server that does not offer STARTTLS fails with TLS_STARTTLS_MISSING (SMTP and IMAP)', async () => {
		const smtp = await probe(smtpNoStartTls.port, { mode: 'starttls-smtp' });
		expect(smtp).toMatchObject({ status: 'fail', code: 'TLS_STARTTLS_MISSING' });
		expect(smtp.detail).toMatch(/does not offer STARTTLS after EHLO/);
		expect(smtp.hint).toMatch(/port 465 with Security SSL\/TLS/);
		const imapServer = await startImapWithoutStartTls();
		const imap = await probe(imapServer.port, { mode: 'starttls-imap', role: 'IMAP' });
		expect(imap).toMatchObject({ status: 'fail', code: 'TLS_STARTTLS_MISSING' });
		expect(imap.detail).toMatch(/refused STARTTLS: a1 BAD/);
		expect(imap.hint).toMatch(/port 993/);
		expect(await until(() => imapServer.open === 0)).toBe(true);
	});

	it('a server that turns the session away at its greeting says so, with its reply', async () => {
		const busy = await listen(net.createServer((socket) => socket.end('554 5.3.2 Too many connections, try later\r\n')));
		const result = await probe(busy.port, { mode: 'starttls-smtp' });
		expect(result).toMatchObject({ status: 'fail', code: 'TLS_GREETING_REFUSED' });
		expect(result.detail).toContain('"554 5.3.2 Too many connections, try later"');
	});
});

describe('tlsCheck: time-bounded, sockets always closed', () => {
	it.each([
		['tls', 'TLS_NO_HANDSHAKE'],
		['starttls-smtp', 'TLS_NO_GREETING'],
		['starttls-imap', 'TLS_NO_GREETING'],
	] as const)('a server that accepts TCP and never speaks: %s ends inside its own timeout with %s', async (mode, code) => {
		const stalled = await startSilentServer();
		const timeoutMs = 1_500;
		const result = await probe(stalled.port, { mode, timeoutMs });
		expect(result).toMatchObject({ status: 'fail', code });
		expect(result.durationMs).toBeLessThan(timeoutMs + 500);
		const closed = await until(() => stalled.open === 0);
		expect(closed).toBe(true);
		if (mode === 'tls') {
			record({ transport: 'diagnostics', kind: 'fault', name: 'tls: stalled server', survived: result.durationMs < timeoutMs + 500 && closed, behaviour: `tls check failed ${code} after ${result.durationMs} ms (timeout ${timeoutMs} ms), every socket closed` });
		}
	});

	it("the runner's budget aborts a probe in flight, and the probe closes its sockets", async () => {
		const stalled = await startSilentServer();
		const [result] = await runChecks([{ ...tlsCheck({ host: '127.0.0.1', port: stalled.port, mode: 'starttls-smtp', role: 'SMTP', rejectUnauthorized: true }), needs: [] }], { budgetMs: 300 });
		expect(result).toMatchObject({ status: 'fail', code: 'CHECK_TIMEOUT' });
		expect(stalled.connections).toBe(1);
		expect(await until(() => stalled.open === 0)).toBe(true);
	});
});
