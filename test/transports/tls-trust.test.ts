/**
 * Defect 7: the credential's Trusted CA is added to what the process trusts (bundled roots,
 * NODE_EXTRA_CA_CERTS), never put in its place, and no connection speaks less than TLS 1.2,
 * even in a process started with a lower default (`--tls-min-v1.0`).
 */
import net from 'node:net';
import tls from 'node:tls';

import { ImapReader } from '../../transports/imap/imap-reader';
import { SmtpSender } from '../../transports/smtp/smtp-sender';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createTestPki, sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');

const USER = 'tls@example.com';
const PASSWORD = 'Tls-Trust-Passw0rd';

let processPki: ReturnType<typeof sharedTestPki>;
/** A CA nobody signed these servers' certificates with: what a user pastes for another server. */
let otherCa: string;
let smtpPeer: Awaited<ReturnType<typeof startSmtpPeer>>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;

beforeAll(async () => {
	processPki = sharedTestPki();
	if (!processPki.trustedByProcess) throw new Error('Run with `npm run test:unit`: the test CA must be in NODE_EXTRA_CA_CERTS');
	otherCa = createTestPki().ca;
	smtpPeer = await startSmtpPeer({ pki: processPki, users: { [USER]: PASSWORD } });
	dovecot = await startDovecot({ pki: processPki, users: { [USER]: PASSWORD } });
}, 120_000);

afterAll(async () => {
	await smtpPeer?.close();
	await dovecot?.stop();
});

const smtpSender = (port: number, security: 'starttls' | 'tls', ca?: string) =>
	new SmtpSender({
		host: '127.0.0.1',
		port,
		security,
		auth: { type: 'password', user: USER, pass: PASSWORD },
		rejectUnauthorized: true,
		ca,
		retry: { retries: 0 },
	});

describe('Trusted CA adds to the trust store', () => {
	it('SMTP: a server signed by the CA in NODE_EXTRA_CA_CERTS still connects when Trusted CA holds another CA', async () => {
		const sender = smtpSender(smtpPeer.port, 'starttls', otherCa);
		try {
			await sender.send({
				from: { address: USER },
				to: [{ address: 'someone@example.org' }],
				cc: [],
				bcc: [],
				replyTo: [],
				subject: 'trust',
				text: 'added, not replaced',
				attachments: [],
				headers: [],
				priority: 'normal',
			});
		} finally {
			await sender.close();
		}
		expect(smtpPeer.received).toHaveLength(1);
		expect(smtpPeer.received[0].secure).toBe(true);
	});

	it('IMAP: the same holds for the reader', async () => {
		const reader = new ImapReader({
			host: dovecot.host,
			port: dovecot.tlsPort,
			security: 'tls',
			auth: { type: 'password', user: USER, pass: PASSWORD },
			rejectUnauthorized: true,
			ca: otherCa,
		});
		try {
			await reader.connect();
			expect((await reader.listFolders()).map((f) => f.path)).toContain('INBOX');
		} finally {
			await reader.close();
		}
	});
});

describe('TLS 1.2 is the minimum, whatever the process default', () => {
	const defaults = { minVersion: tls.DEFAULT_MIN_VERSION, ciphers: tls.DEFAULT_CIPHERS };
	let legacy: tls.Server;
	let handshakes = 0;

	beforeAll(async () => {
		// What `node --tls-min-v1.0 --tls-cipher-list=DEFAULT@SECLEVEL=0` (an n8n started to
		// reach an old server) gives every connection that does not set its own minimum.
		tls.DEFAULT_MIN_VERSION = 'TLSv1';
		tls.DEFAULT_CIPHERS = 'DEFAULT@SECLEVEL=0';
		legacy = tls.createServer(
			{ key: processPki.key, cert: processPki.cert, minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' },
			(socket) => {
				handshakes++;
				socket.end('421 4.3.2 test server speaks TLS 1.1 only\r\n');
			},
		);
		await new Promise<void>((resolve) => legacy.listen(0, '127.0.0.1', resolve));
	});

	afterAll(async () => {
		tls.DEFAULT_MIN_VERSION = defaults.minVersion;
		tls.DEFAULT_CIPHERS = defaults.ciphers;
		await new Promise((resolve) => legacy.close(resolve));
	});

	beforeEach(() => {
		handshakes = 0;
	});

	const legacyPort = () => (legacy.address() as net.AddressInfo).port;

	for (const ca of [undefined, 'otherCa'] as const) {
		const label = ca ? 'with a Trusted CA' : 'without a Trusted CA';
		it(`SMTP (${label}): a TLS 1.1-only server is refused`, async () => {
			const sender = smtpSender(legacyPort(), 'tls', ca ? otherCa : undefined);
			try {
				await expect(sender.verify()).rejects.toMatchObject({ code: 'SMTP_TLS_VERSION' });
			} finally {
				await sender.close();
			}
			expect(handshakes).toBe(0);
		});

		it(`IMAP (${label}): a TLS 1.1-only server is refused`, async () => {
			const reader = new ImapReader({
				host: '127.0.0.1',
				port: legacyPort(),
				security: 'tls',
				auth: { type: 'password', user: USER, pass: PASSWORD },
				rejectUnauthorized: true,
				ca: ca ? otherCa : undefined,
				connectionTimeoutMs: 5000,
			});
			try {
				await expect(reader.connect()).rejects.toThrow();
			} finally {
				await reader.close();
			}
			expect(handshakes).toBe(0);
		});
	}
});
