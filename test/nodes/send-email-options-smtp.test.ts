import { runNode } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');

type Peer = Awaited<ReturnType<typeof startSmtpPeer>>;

const PASSWORD = 'Opt10ns-Passw0rd!';
let pki: ReturnType<typeof createTestPki>;
let peer: Peer;

beforeAll(async () => {
	pki = createTestPki();
	peer = await startSmtpPeer({ pki, users: { robot: PASSWORD } });
});
afterAll(async () => await peer?.close());
beforeEach(() => peer.reset());

const credentials = (allowedFrom = '') => ({
	modernAuthSmtpApi: {
		id: 'smtpOptions00001',
		name: 'SMTP options',
		data: {
			host: peer.host,
			port: peer.port,
			security: 'starttls',
			user: 'robot',
			password: PASSWORD,
			fromAddress: 'Robot <robot@example.com>',
			caCertificate: pki.ca,
			allowedFrom,
		},
	},
});

function send(options: Record<string, unknown>, allowedFrom = '') {
	return runNode({
		type: 'modernAuthSendEmail',
		parameters: {
			authentication: 'smtp',
			fromEmail: 'Boss <boss@example.com>',
			toEmail: 'ann@example.org',
			subject: 'Options',
			emailFormat: 'text',
			text: 'body',
			options,
		},
		items: [{ json: {} }],
		credentials: credentials(allowedFrom),
	});
}

/** The header block exactly as the peer received it, unfolded into one entry per field. */
function receivedHeaderLines(): string[] {
	expect(peer.received).toHaveLength(1);
	const block = (peer.received[0].raw as Buffer).toString('utf8').split('\r\n\r\n')[0];
	return block.replace(/\r\n[ \t]+/g, ' ').split('\r\n');
}

describe('Send Email options over SMTP: Sender, Read Receipt, Importance, Save to Sent Items', () => {
	it('writes Sender and Disposition-Notification-To header lines; MAIL FROM stays From', async () => {
		const { error } = await send({ sender: 'Assistant <assistant@example.com>', readReceipt: true, priority: 'low' });
		expect(error).toBeUndefined();
		const lines = receivedHeaderLines();
		expect(lines).toContain('From: Boss <boss@example.com>');
		expect(lines).toContain('Sender: Assistant <assistant@example.com>');
		expect(lines).toContain('Disposition-Notification-To: boss@example.com');
		expect(lines).toContain('X-Priority: 5 (Lowest)');
		expect(lines).toContain('Importance: Low');
		expect(peer.received[0].envelope.from).toBe('boss@example.com');
	});

	it('writes neither header when the options are off; Save to Sent Items off changes nothing on SMTP', async () => {
		const { error } = await send({ readReceipt: false, saveToSentItems: false });
		expect(error).toBeUndefined();
		const names = receivedHeaderLines().map((line) => line.split(':')[0].toLowerCase());
		expect(names).not.toContain('sender');
		expect(names).not.toContain('disposition-notification-to');
		expect(names).not.toContain('x-priority');
	});

	it('a read-receipt custom header is kept, not doubled', async () => {
		const { error } = await send({
			readReceipt: true,
			customHeaders: { header: [{ name: 'Disposition-Notification-To', value: 'receipts@example.com' }] },
		});
		expect(error).toBeUndefined();
		const receipts = receivedHeaderLines().filter((line) => /^disposition-notification-to:/i.test(line));
		expect(receipts).toEqual(['Disposition-Notification-To: receipts@example.com']);
	});

	it('a Sender outside the allowed addresses fails the item naming the field, and nothing is sent', async () => {
		const { error } = await send({ sender: 'intruder@other.example' }, '@example.com');
		expect(error?.message).toBe('Item 0: Sender (On Behalf Of): "intruder@other.example" is not allowed by this credential');
		expect(peer.received).toHaveLength(0);
	});

	it('a Sender with a line break or two addresses is refused before sending', async () => {
		const injected = await send({ sender: 'a@example.com\r\nBcc: victim@example.org' });
		expect(injected.error?.message).toMatch(/^Item 0: Sender \(On Behalf Of\): contains a line break/);
		const two = await send({ sender: 'a@example.com, b@example.com' });
		expect(two.error?.message).toMatch(/^Item 0: Sender \(On Behalf Of\): must be a single address/);
		expect(peer.received).toHaveLength(0);
	});
});
