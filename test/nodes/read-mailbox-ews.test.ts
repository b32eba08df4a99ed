import { Container } from '@n8n/di';
import { BinaryDataService } from 'n8n-core';
import type { IBinaryData } from 'n8n-workflow';
import { createHash, randomBytes } from 'node:crypto';

import { createPoller, runNode } from '../harness/n8n-run';
import { appOnlyCredential, issuedTokens, NTLM_PASSWORD, ntlmCredential, OTHER, rawMessage, registerEwsApp, ROBOT, SHARED, startEwsPeers, stopEwsPeers, tokenRequests, type EwsPeers } from './ews-fixture';

// Read Mailbox (Modern Auth) and its trigger with Authentication "Exchange Web Services (EWS)",
// run by n8n-core against the fake EWS server.
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const bytesOf = (binary: IBinaryData) => Container.get(BinaryDataService).getAsBuffer(binary);

let peers: EwsPeers;

beforeAll(async () => {
	peers = await startEwsPeers();
}, 60_000);
afterAll(async () => await stopEwsPeers(peers));

describe('Read Mailbox (Modern Auth) with Authentication "Exchange Web Services (EWS)"', () => {
	it('NTLM: emits the unread messages with their attachments as binary data, byte for byte, then marks them read', async () => {
		const pdf = randomBytes(600 * 1024 + 3);
		const subject = `Order <1> & "Zoë" ${randomBytes(3).toString('hex')}`;
		const unread = peers.ews.deliver(ROBOT, rawMessage({ subject, attachment: { name: 'order – ünï.pdf', type: 'application/pdf', content: pdf } }));
		const read = peers.ews.deliver(ROBOT, rawMessage({ subject: 'already read' }), { isRead: true });
		const { output, error, run } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'ews', folder: 'INBOX', limit: 10, filters: { unreadOnly: true, subject }, postAction: 'markRead', options: {} },
			items: [{ json: {} }],
			credentials: ntlmCredential(peers),
		});
		expect(error).toBeUndefined();
		expect(output.map((o) => o.json.subject)).toEqual([subject]);
		expect(output[0].json).toMatchObject({
			id: unread,
			from: expect.objectContaining({ address: 'shop@example.org' }),
			attachments: [expect.objectContaining({ filename: 'order – ünï.pdf', contentType: 'application/pdf', binaryProperty: 'attachment_0' })],
		});
		const binary = output[0].binary!;
		expect(binary.attachment_0).toMatchObject({ fileName: 'order – ünï.pdf', mimeType: 'application/pdf' });
		expect(sha256(await bytesOf(binary.attachment_0))).toBe(sha256(pdf));
		const items = peers.ews.items(ROBOT, 'inbox') as Array<{ id: string; isRead: boolean }>;
		expect(items.find((i) => i.id === unread)?.isRead).toBe(true);
		expect(items.find((i) => i.id === read)?.isRead).toBe(true);
		expect(JSON.stringify(run)).not.toContain(NTLM_PASSWORD);
	});

	it('app-only: reads the impersonated mailbox; no secret or token in the output', async () => {
		const app = registerEwsApp(peers, { mailboxes: [SHARED] });
		const subject = `for the shared mailbox ${randomBytes(3).toString('hex')}`;
		peers.ews.deliver(SHARED, rawMessage({ subject, to: SHARED }));
		const { output, error, run } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'ews', folder: 'INBOX', limit: 5, filters: { subject }, options: { downloadAttachments: false } },
			items: [{ json: {} }],
			credentials: appOnlyCredential(peers, app, { mailbox: SHARED }),
		});
		expect(error).toBeUndefined();
		expect(output.map((o) => o.json.subject)).toEqual([subject]);
		const bearer = (peers.ews.requests as Array<{ scheme: string; impersonated: string; anchor: string }>).filter((r) => r.scheme === 'Bearer').slice(-2);
		for (const request of bearer) expect(request).toMatchObject({ impersonated: SHARED, anchor: SHARED });
		const everything = JSON.stringify(run);
		expect(everything).not.toContain(app.secret);
		for (const token of issuedTokens(peers)) expect(everything).not.toContain(token);
	});

	it('continueOnFail: a mailbox outside Allowed Mailboxes fails the item naming the field; EWS and the identity platform see nothing', async () => {
		const app = registerEwsApp(peers);
		const requests = peers.ews.counts().requests;
		const tokens = tokenRequests(peers);
		const { output, error } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'ews', folder: 'INBOX', limit: 5, options: { mailbox: OTHER } },
			items: [{ json: {} }],
			onError: 'continueRegularOutput',
			credentials: appOnlyCredential(peers, app, { allowedMailboxes: ROBOT }),
		});
		expect(error).toBeUndefined();
		expect(output[0].json.error).toMatchObject({ message: `Mailbox: "${OTHER}" is not in the credential's Allowed Mailboxes`, code: 'MAILBOX_NOT_ALLOWED' });
		expect(peers.ews.counts().requests).toBe(requests);
		expect(tokenRequests(peers)).toBe(tokens);
	});
});

describe('Read Mailbox (Modern Auth) Trigger with Authentication "Exchange Web Services (EWS)"', () => {
	let run = 0;
	beforeEach(() => void run++);
	// Subjects unique per run: both runs watch the same Inbox.
	const deliver = (subject: string) => peers.ews.deliver(SHARED, rawMessage({ subject: `${subject} (run ${run})`, to: SHARED }));
	const subjects = (items: Array<{ json: Record<string, unknown> }>) => items.map((i) => String(i.json.subject).replace(/ \(run \d+\)$/, ''));

	it.each(['NTLM', 'app-only'])('%s: starts from now and emits each new message once, across restarts and an invalid sync state; a change is not new mail', async (signIn) => {
		const credentials = signIn === 'NTLM' ? ntlmCredential(peers, { mailbox: SHARED }) : appOnlyCredential(peers, registerEwsApp(peers, { mailboxes: [SHARED] }), { mailbox: SHARED });
		const parameters = { authentication: 'ews', folder: 'INBOX', options: { downloadAttachments: false } };
		const old = deliver('old');
		let poller = await createPoller({ parameters, credentials });
		expect(await poller.poll()).toEqual([]); // first activation: a baseline, no flood of old mail

		deliver('new 1');
		deliver('new 2');
		expect(subjects(await poller.poll())).toEqual(['new 1', 'new 2']);
		expect(await poller.poll()).toEqual([]);

		// Read in Outlook: a change, not new mail.
		const marked = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'ews', folder: 'INBOX', limit: 1, filters: { subject: `old (run ${run})` }, postAction: 'markRead', options: { mailbox: SHARED, downloadAttachments: false } },
			items: [{ json: {} }],
			credentials,
		});
		expect(marked.error).toBeUndefined();
		expect((peers.ews.items(SHARED, 'inbox') as Array<{ id: string; isRead: boolean }>).find((i) => i.id === old)?.isRead).toBe(true);
		deliver('new 3');
		expect(subjects(await poller.poll())).toEqual(['new 3']);

		// n8n restarts: the trigger continues from its saved sync state.
		poller = await createPoller({ parameters, credentials, staticData: poller.staticData() });
		deliver('new 4');
		expect(subjects(await poller.poll())).toEqual(['new 4']);

		// Exchange forgets the sync state: re-synced silently, only the mail after the last seen one.
		peers.ews.faults.invalidateSyncStates(SHARED);
		deliver('new 5');
		expect(subjects(await poller.poll())).toEqual(['new 5']);
		expect(await poller.poll()).toEqual([]);
		expect(JSON.stringify(poller.emitted())).not.toContain(NTLM_PASSWORD);
	});
});
