/**
 * Defect 6: recipients the server refuses while it takes the message for others are reported
 * one by one with the server's reply (item status "partial"), can fail the item on request,
 * and a message with more recipients than allowed fails before anything is sent.
 */
import { runNode } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');

const PASSWORD = 'Recipients-Passw0rd';
let pki: ReturnType<typeof sharedTestPki>;
let peer: Awaited<ReturnType<typeof startSmtpPeer>>;

beforeAll(async () => {
	pki = sharedTestPki();
	peer = await startSmtpPeer({ pki, users: { robot: PASSWORD } });
});

afterAll(async () => {
	await peer?.close();
});

beforeEach(() => {
	peer.reset();
	peer.refuseRecipient('nobody@example.org', { code: 550, message: '5.1.1 User unknown' });
	peer.refuseRecipient('full@example.org', { code: 452, message: '4.2.2 Mailbox full' });
});

const credentials = {
	modernAuthSmtpApi: {
		id: 'smtpRecipients01',
		name: 'Recipients SMTP',
		data: { host: '127.0.0.1', port: 0, security: 'starttls', user: 'robot', password: PASSWORD, fromAddress: 'robot@example.com' },
	},
};

async function send(to: string, options: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
	return await runNode({
		type: 'modernAuthSendEmail',
		parameters: { authentication: 'smtp', toEmail: to, subject: 'recipients', emailFormat: 'text', text: 'hi', options: { sendRetries: 0, ...options } },
		items: [{ json: {} }],
		credentials: { modernAuthSmtpApi: { ...credentials.modernAuthSmtpApi, data: { ...credentials.modernAuthSmtpApi.data, port: peer.port } } },
		...extra,
	});
}

describe('partly refused recipients', () => {
	it('the item is "partial" and names each refused recipient with the reply', async () => {
		const { output, error } = await send('ann@example.org, nobody@example.org, full@example.org');
		expect(error).toBeUndefined();
		expect(peer.received).toHaveLength(1);
		expect(peer.received[0].envelope.to).toEqual(['ann@example.org']);
		const json = output[0].json as Record<string, unknown>;
		expect(json.status).toBe('partial');
		expect(json.accepted).toEqual(['ann@example.org']);
		expect(json.refused).toEqual([
			{ address: 'nobody@example.org', reply: expect.stringMatching(/^550 5\.1\.1 User unknown/), responseCode: 550 },
			{ address: 'full@example.org', reply: expect.stringMatching(/^452 4\.2\.2 Mailbox full/), responseCode: 452 },
		]);
	});

	it('every recipient accepted: status "sent", nothing refused', async () => {
		const { output } = await send('ann@example.org, bob@example.org');
		expect(output[0].json).toMatchObject({ status: 'sent', refused: [] });
	});

	it('"Fail When Any Recipient Is Refused" fails the item, says who and why, and that the others have it', async () => {
		const { output } = await send('ann@example.org, nobody@example.org', { failOnRefusedRecipient: true }, { onError: 'continueRegularOutput' });
		const failure = output[0].json.error as Record<string, string>;
		expect(failure.code).toBe('SMTP_RECIPIENTS_REFUSED');
		expect(failure.message).toMatch(/refused 1 of 2 recipients: nobody@example\.org \(550 5\.1\.1 User unknown.*\)\. The message went to the others/);
		expect(peer.received).toHaveLength(1);
	});

	it('with that option and Retry On Fail the accepted recipients do not get it twice', async () => {
		const { error } = await send(
			'ann@example.org, nobody@example.org',
			{ failOnRefusedRecipient: true },
			{ retryOnFail: { maxTries: 2, waitBetweenTries: 10 } },
		);
		expect(error?.message).toMatch(/^Item 0: The server refused 1 of 2 recipients/);
		expect(peer.received).toHaveLength(1);
	});
});

describe('recipients per message are capped before anything is sent', () => {
	const addresses = (n: number) => Array.from({ length: n }, (_, i) => `r${i}@example.org`).join(', ');

	it('501 recipients (default cap 500) fail the item naming the limit; the peer sees no connection', async () => {
		const { error } = await send(addresses(501));
		expect(error?.message).toMatch(/^Item 0: To: 501 recipients \(To, CC and BCC together\) are more than the 500 allowed per message/);
		expect(error?.description).toMatch(/Max Recipients Per Message/);
		expect(peer.stats.connections).toBe(0);
	});

	it('To, CC and BCC count together against a configured cap', async () => {
		const { error } = await send('a@example.org', { maxRecipients: 2, ccEmail: 'b@example.org', bccEmail: 'c@example.org' });
		expect(error?.message).toMatch(/^Item 0: To: 3 recipients .* more than the 2 allowed/);
		expect(peer.stats.connections).toBe(0);
	});

	it('exactly at the cap is sent', async () => {
		const { error } = await send(addresses(500));
		expect(error).toBeUndefined();
		expect(peer.received[0].envelope.to).toHaveLength(500);
	});
});
