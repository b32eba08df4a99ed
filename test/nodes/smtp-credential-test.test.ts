import type { ICredentialTestFunctions } from 'n8n-workflow';

import { ModernAuthSendEmail } from '../../nodes/ModernAuthSendEmail/ModernAuthSendEmail.node';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');

const PASSWORD = 'Another-Secret-123';
let pki: ReturnType<typeof createTestPki>;
let peer: Awaited<ReturnType<typeof startSmtpPeer>>;

beforeAll(async () => {
	pki = createTestPki();
	peer = await startSmtpPeer({ pki, users: { 'robot@example.com': PASSWORD } });
});
afterAll(async () => peer?.close());
beforeEach(() => peer.reset());

// The function n8n calls for the credential's Test button (wired with `testedBy`).
async function pressTest(data: Record<string, unknown>) {
	const node = new ModernAuthSendEmail();
	const credentialTest = node.methods.credentialTest.modernAuthSmtpConnectionTest;
	return credentialTest.call({} as ICredentialTestFunctions, {
		id: 'c1',
		name: 'SMTP',
		type: 'modernAuthSmtpApi',
		data: {
			host: peer.host,
			port: peer.port,
			security: 'starttls',
			user: 'robot@example.com',
			password: PASSWORD,
			caCertificate: pki.ca,
			...data,
		},
	});
}

describe('SMTP credential Test button', () => {
	it('connects, upgrades to TLS and authenticates, masking the user', async () => {
		const result = await pressTest({});
		expect(result).toEqual({
			status: 'OK',
			message: `3 checks passed; login: 127.0.0.1:${peer.port}: EHLO and AUTH with the password accepted for ****.com.`,
		});
		expect(peer.stats.authentications).toBe(1);
		expect(peer.stats.authFailures).toBe(0);
		expect(peer.stats.messages).toBe(0);
	});

	it('reports a wrong password with a fix and without the password', async () => {
		const result = await pressTest({ password: 'totally-wrong-pw' });
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/SMTP authentication failed .* Fix: Check the user name and password/);
		expect(result.message).not.toContain('totally-wrong-pw');
		expect(peer.stats.authFailures).toBe(1);
	});

	it('reports an untrusted certificate', async () => {
		const result = await pressTest({ caCertificate: '' });
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^tls \(127\.0\.0\.1:\d+\) failed: .*not trusted.*Fix: /);
	});

	it('warns when certificate checks are off', async () => {
		const result = await pressTest({ caCertificate: '', ignoreCertificateErrors: true });
		expect(result.status).toBe('OK');
		expect(result.message).toMatch(/^2 checks passed; login: .* WARNING tls \(127\.0\.0\.1:\d+\): .*certificate checks are switched off/);
	});

	it('names the mismatch between Security and port', async () => {
		const result = await pressTest({ security: 'tls' });
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(/^tls \(127\.0\.0\.1:\d+\) failed: .*answered in plain text.* where SSL\/TLS was expected\. Fix: .*set Security to STARTTLS/);
	});
});
