import { createHash, randomBytes } from 'node:crypto';

import { simpleParser } from 'mailparser';

import { runNode, type InputItem } from '../harness/n8n-run';
import { appOnlyCredential, issuedTokens, NTLM_PASSWORD, ntlmCredential, OTHER, RECIPIENT, registerEwsApp, ROBOT, SHARED, startEwsPeers, stopEwsPeers, tokenRequests, type EwsPeers } from './ews-fixture';

// Send Email (Modern Auth) with Authentication "Exchange Web Services (EWS)", run by n8n-core,
// against the fake EWS server: what the server received (the MIME of CreateItem) is checked
// field by field and the attachment byte for byte.
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let peers: EwsPeers;

beforeAll(async () => {
	peers = await startEwsPeers();
}, 60_000);
afterAll(async () => await stopEwsPeers(peers));
beforeEach(() => {
	peers.ews.sent.length = 0;
});

interface Sent {
	mailbox: string;
	disposition: string;
	mime: Buffer;
	from: string;
	to: string[];
	cc: string[];
	bcc: string[];
}

const sent = () => peers.ews.sent as Sent[];

const baseParameters = {
	authentication: 'ews',
	toEmail: '={{ $json.to }}',
	subject: '={{ $json.subject }}',
	emailFormat: 'text',
	text: 'sent through EWS',
};

describe('Send Email (Modern Auth) with Authentication "Exchange Web Services (EWS)"', () => {
	it('NTLM: CreateItem carries the whole MIME (recipients, Bcc, importance, header, a 3 MB attachment byte for byte), saved to Sent Items', async () => {
		const file = randomBytes(3 * 1024 * 1024 + 5);
		const subject = 'Quarterly <report> & "figures" – ünïcödé';
		const { output, error, run } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: {
				authentication: 'ews',
				fromEmail: `Robot <${ROBOT}>`,
				toEmail: `Ann <${RECIPIENT}>, bob@example.org`,
				subject,
				emailFormat: 'text',
				text: 'Figures attached',
				options: { ccEmail: 'carol@example.org', bccEmail: 'audit@example.net', priority: 'high', customHeaders: { header: [{ name: 'X-Ticket-ID', value: 'T-2002' }] }, attachments: 'report' },
			},
			items: [{ json: {}, binary: { report: { data: file, fileName: 'q3 report.bin', mimeType: 'application/octet-stream' } } }],
			credentials: ntlmCredential(peers),
		});
		expect(error).toBeUndefined();
		expect(output).toHaveLength(1);
		expect(output[0].json.status).toBe('sent');
		expect(sent()).toHaveLength(1);
		const [message] = sent();
		expect(message).toMatchObject({ mailbox: ROBOT, disposition: 'SendAndSaveCopy' });
		const parsed = await simpleParser(message.mime);
		expect(parsed.subject).toBe(subject);
		expect(parsed.from?.value).toEqual([{ address: ROBOT, name: 'Robot' }]);
		expect((Array.isArray(parsed.to) ? parsed.to : [parsed.to]).flatMap((a) => a!.value.map((v) => v.address))).toEqual([RECIPIENT, 'bob@example.org']);
		expect(message.bcc).toEqual(['audit@example.net']);
		expect(parsed.headers.get('x-ticket-id')).toBe('T-2002');
		const head = message.mime.toString('latin1').split('\r\n\r\n')[0];
		expect(head).toMatch(/^X-Priority: 1 \(Highest\)\r$/m);
		expect(head).toMatch(/^Importance: High\r$/m);
		expect(parsed.text?.trim()).toBe('Figures attached');
		expect(parsed.attachments).toHaveLength(1);
		expect(parsed.attachments[0].filename).toBe('q3 report.bin');
		expect(sha256(parsed.attachments[0].content)).toBe(sha256(file));
		// Delivered to the local recipient's Inbox and kept in Sent Items.
		expect(peers.ews.items(RECIPIENT, 'inbox').some((i: { subject: string }) => i.subject === subject)).toBe(true);
		expect(peers.ews.items(ROBOT, 'sentitems').some((i: { subject: string }) => i.subject === subject)).toBe(true);
		expect(JSON.stringify(run)).not.toContain(NTLM_PASSWORD);
	});

	it('app-only: impersonates the Mailbox option (ExchangeImpersonation + X-AnchorMailbox), Save to Sent Items off is SendOnly', async () => {
		const app = registerEwsApp(peers, { mailboxes: [ROBOT, SHARED] });
		const { output, error, run } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, options: { mailbox: SHARED, saveToSentItems: false } },
			items: [{ json: { to: RECIPIENT, subject: 'from the shared mailbox' } }],
			credentials: appOnlyCredential(peers, app),
		});
		expect(error).toBeUndefined();
		expect(output[0].json.status).toBe('sent');
		expect(sent()).toMatchObject([{ mailbox: SHARED, disposition: 'SendOnly' }]);
		const createItem = (peers.ews.requests as Array<{ operation: string; scheme: string; impersonated: string; anchor: string }>).filter((r) => r.operation === 'CreateItem').at(-1);
		expect(createItem).toMatchObject({ scheme: 'Bearer', impersonated: SHARED, anchor: SHARED });
		const parsed = await simpleParser(sent()[0].mime);
		expect(parsed.from?.value[0].address).toBe(SHARED);
		const everything = JSON.stringify(run);
		expect(everything).not.toContain(app.secret);
		for (const token of issuedTokens(peers)) expect(everything).not.toContain(token);
	});

	it('continueOnFail: the bad item fails naming its field, the others are sent once each', async () => {
		const items: InputItem[] = [
			{ json: { to: 'one@example.org', subject: 'item 0' } },
			{ json: { to: 'not-an-address', subject: 'item 1' } },
			{ json: { to: 'three@example.org', subject: 'item 2' } },
		];
		const { output, error } = await runNode({ type: 'modernAuthSendEmail', parameters: { ...baseParameters, fromEmail: ROBOT }, items, onError: 'continueRegularOutput', credentials: ntlmCredential(peers) });
		expect(error).toBeUndefined();
		expect(output).toHaveLength(3);
		expect(output[0].json.status).toBe('sent');
		expect((output[1].json.error as { message: string }).message).toMatch(/^To: "not-an-address" is not a valid email address/);
		expect(output[2].json.status).toBe('sent');
		expect(sent().map((s) => s.mime.toString('utf8').match(/^Subject: (.*)$/m)?.[1]).sort()).toEqual(['item 0', 'item 2']);
	});

	it('a mailbox the NTLM account has no Full Access to: the item fails with the server\'s refusal and its fix; nothing is sent', async () => {
		const { output } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, options: { mailbox: OTHER } },
			items: [{ json: { to: RECIPIENT, subject: 'not allowed' } }],
			onError: 'continueRegularOutput',
			credentials: ntlmCredential(peers),
		});
		const failure = output[0].json.error as { code: string; hint: string };
		expect(failure.code).toMatch(/^EWS_(ACCESS_DENIED|SEND_AS_DENIED)$/);
		expect(failure.hint).not.toBe('');
		expect(sent()).toHaveLength(0);
	});

	it('a credential refused for a bad field fails naming it: 0 EWS requests, 0 token requests', async () => {
		const app = registerEwsApp(peers);
		const requests = peers.ews.counts().requests;
		const tokens = tokenRequests(peers);
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items: [{ json: { to: RECIPIENT, subject: 'never' } }],
			credentials: appOnlyCredential(peers, app, { clientId: 'not-a-guid' }),
		});
		expect(error?.message).toMatch(/Client ID .* is not a GUID/);
		const refusedBasic = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items: [{ json: { to: RECIPIENT, subject: 'never' } }],
			credentials: ntlmCredential(peers, { ewsAuth: 'basic', url: peers.ews.url.replace('https:', 'http:') }),
		});
		expect(refusedBasic.error?.message).toMatch(/EWS URL is http:\/\/: Basic sends the password/);
		expect(peers.ews.counts().requests).toBe(requests);
		expect(tokenRequests(peers)).toBe(tokens);
		expect(sent()).toHaveLength(0);
	});

	it('Allowed Mailboxes: a Mailbox outside the list fails naming the field before any request', async () => {
		const requests = peers.ews.counts().requests;
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, options: { mailbox: OTHER } },
			items: [{ json: { to: RECIPIENT, subject: 'never' } }],
			credentials: ntlmCredential(peers, { allowedMailboxes: SHARED }),
		});
		expect(error?.message).toBe(`Item 0: Mailbox: "${OTHER}" is not in the credential's Allowed Mailboxes`);
		expect(peers.ews.counts().requests).toBe(requests);
	});
});
