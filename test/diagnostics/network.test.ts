/**
 * The reach stage against real sockets: a listening port passes (and is hung up on at once),
 * a closed port is REACH_REFUSED naming the usual ports, a name under .invalid is REACH_DNS.
 */
import { runChecks } from '../../diagnostics/checks';
import { reachCheck } from '../../diagnostics/network';
import { tlsCheck } from '../../diagnostics/tls-probe';
import { closeAllServers, closedPort, startSilentServer, until } from './network-peers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

afterAll(closeAllServers);

describe('reachCheck', () => {
	it('passes for a listening port, with the addresses, timings and the address used, and leaves no socket open', async () => {
		const server = await startSilentServer();
		try {
			const [result] = await runChecks([reachCheck('127.0.0.1', server.port, { role: 'SMTP' })]);
			expect(result).toMatchObject({ step: 'reach', target: `127.0.0.1:${server.port}`, status: 'pass' });
			expect(result.facts).toMatchObject({ addresses: ['127.0.0.1'], address: '127.0.0.1' });
			expect(typeof result.facts?.dnsMs).toBe('number');
			expect(typeof result.facts?.connectMs).toBe('number');
			expect(server.connections).toBe(1);
			expect(await until(() => server.open === 0)).toBe(true);
		} finally {
			await server.close();
		}
	});

	it('resolves a name to all its addresses and connects to one that listens', async () => {
		const server = await startSilentServer();
		try {
			const [result] = await runChecks([reachCheck('localhost', server.port, { role: 'IMAP' })]);
			expect(result.status).toBe('pass');
			expect(result.facts?.addresses).toContain('127.0.0.1');
			// localhost may resolve to ::1 first; nothing listens there, so 127.0.0.1 is the one used
			expect(result.facts?.address).toBe('127.0.0.1');
		} finally {
			await server.close();
		}
	});

	it.each([
		['SMTP', ['587', '465', '25', 'STARTTLS']],
		['IMAP', ['993', '143']],
		['Graph', ['443']],
	])('a closed port is REACH_REFUSED, and the %s hint names the usual ports', async (role, ports) => {
		const port = await closedPort();
		const started = Date.now();
		const [result] = await runChecks([reachCheck('127.0.0.1', port, { role })]);
		expect(result).toMatchObject({ status: 'fail', code: 'REACH_REFUSED' });
		expect(result.detail).toContain(`${role} host 127.0.0.1:${port}`);
		expect(result.detail).toContain('nothing listens');
		for (const usual of ports) expect(result.hint).toContain(usual);
		if (role === 'SMTP') {
			record({ transport: 'diagnostics', kind: 'fault', name: 'reach: closed port', survived: true, behaviour: `reach failed REACH_REFUSED naming the usual ports in ${Date.now() - started} ms` });
		}
	});

	it('an unknown host is REACH_DNS; for a Microsoft host the hint points at the cloud setting', async () => {
		const [mail, identity] = await runChecks([reachCheck('no-such-mail-host.invalid', 587, { role: 'SMTP' }), reachCheck('login.no-such-cloud.invalid', 443, { role: 'identity platform' })]);
		expect(mail).toMatchObject({ status: 'fail', code: 'REACH_DNS' });
		expect(mail.detail).toContain('no-such-mail-host.invalid');
		expect(mail.hint).toMatch(/host name/);
		expect(mail.hint).not.toMatch(/Cloud/);
		expect(identity).toMatchObject({ status: 'fail', code: 'REACH_DNS' });
		expect(identity.hint).toMatch(/Cloud setting/);
	});

	it('stops at once when aborted, with no socket left open', async () => {
		const server = await startSilentServer();
		try {
			const controller = new AbortController();
			controller.abort();
			await expect(reachCheck('127.0.0.1', server.port).run(controller.signal)).resolves.toMatchObject({ status: 'fail', code: 'CHECK_ABORTED' });
			expect(await until(() => server.open === 0)).toBe(true);
		} finally {
			await server.close();
		}
	});

	it('a refused reach skips the TLS check that needs it, naming the reason', async () => {
		const port = await closedPort();
		const results = await runChecks([reachCheck('127.0.0.1', port, { role: 'IMAP' }), tlsCheck({ host: '127.0.0.1', port, mode: 'tls', role: 'IMAP', rejectUnauthorized: true })]);
		expect(results.map((r) => [r.step, r.status])).toEqual([
			['reach', 'fail'],
			['tls', 'skipped'],
		]);
		expect(results[1].detail).toBe(`skipped: reach:127.0.0.1:${port} did not pass`);
	});
});
