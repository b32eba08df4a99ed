import { Container } from '@n8n/di';
import { BinaryDataService } from 'n8n-core';
import type { IBinaryData } from 'n8n-workflow';
import { createHash, randomBytes } from 'node:crypto';

import { createPoller, runNode } from '../harness/n8n-run';
import { appOnlyGraphCredential, ASSISTANT, issuedTokens, registerGraphApp, ROBOT, startGraphPeers, type GraphPeers } from './graph-fixture';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const bytesOf = (binary: IBinaryData) => Container.get(BinaryDataService).getAsBuffer(binary);

let peers: GraphPeers;

beforeAll(async () => {
	peers = await startGraphPeers();
});
afterAll(async () => {
	await peers?.graph.close();
	await peers?.idp.close();
});

const graphRequests = () => (peers.graph.requests as Array<{ path: string }>).filter((r) => r.path.startsWith('/v1.0/'));

describe('Read Mailbox (Modern Auth) with Authentication "Microsoft 365 App-Only (Graph)"', () => {
	it('emits the unread messages with their file attachments as binary data, byte for byte, then marks them read', async () => {
		const app = registerGraphApp(peers);
		const pdf = randomBytes(4 * 1024 * 1024 + 17); // over 4 MB: only /$value can carry it
		const csv = Buffer.from('id;name\n1;Zoë\n', 'utf8');
		const seeded = [
			peers.graph.addMessage(ROBOT, {
				subject: 'Order 1',
				from: { address: 'shop@example.org', name: 'Shop' },
				to: [{ address: ROBOT }],
				body: { contentType: 'text', content: 'first order' },
				attachments: [
					{ name: 'order.pdf', contentType: 'application/pdf', content: pdf },
					{ name: 'lines.csv', contentType: 'text/csv', content: csv },
				],
			}),
			peers.graph.addMessage(ROBOT, { subject: 'Already read', isRead: true, from: { address: 'old@example.org' }, to: [{ address: ROBOT }] }),
		];
		const { output, error, run } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'microsoftAppOnlyGraph', folder: 'INBOX', limit: 10, filters: { unreadOnly: true }, postAction: 'markRead', options: {} },
			items: [{ json: {} }],
			credentials: appOnlyGraphCredential(peers, app),
		});
		expect(error).toBeUndefined();
		expect(output.map((o) => o.json.subject)).toEqual(['Order 1']);
		expect(output[0].json).toMatchObject({
			from: expect.objectContaining({ address: 'shop@example.org' }),
			text: 'first order',
			attachments: [
				{ filename: 'order.pdf', contentType: 'application/pdf', size: pdf.length, inline: false, binaryProperty: 'attachment_0' },
				{ filename: 'lines.csv', contentType: 'text/csv', size: csv.length, inline: false, binaryProperty: 'attachment_1' },
			],
		});
		const binary = output[0].binary!;
		expect(binary.attachment_0).toMatchObject({ fileName: 'order.pdf', mimeType: 'application/pdf' });
		expect(sha256(await bytesOf(binary.attachment_0))).toBe(sha256(pdf));
		expect((await bytesOf(binary.attachment_1)).equals(csv)).toBe(true);

		// Post-action: exactly the emitted message is now read in the mailbox.
		expect(peers.graph.message(ROBOT, seeded[0].immutableId).isRead).toBe(true);
		expect(peers.graph.message(ROBOT, seeded[1].immutableId).isRead).toBe(true);
		const everything = JSON.stringify(run);
		expect(everything).not.toContain(app.secret);
		for (const token of issuedTokens(peers)) expect(everything).not.toContain(token);
	});

	it('Allowed Mailboxes: a Mailbox outside the list fails naming the field; Graph sees no request', async () => {
		const app = registerGraphApp(peers, { mailboxes: [ROBOT, ASSISTANT] });
		peers.graph.requests.length = 0;
		const { error } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'microsoftAppOnlyGraph', folder: 'INBOX', limit: 5, options: { mailbox: ASSISTANT } },
			items: [{ json: {} }],
			credentials: appOnlyGraphCredential(peers, app, { allowedMailboxes: ROBOT }),
		});
		expect(error?.message).toBe(`Item 0: Mailbox: "${ASSISTANT}" is not in the credential's Allowed Mailboxes`);
		expect(graphRequests()).toHaveLength(0);
	});
});

describe('Read Mailbox (Modern Auth) Trigger with Authentication "Microsoft 365 App-Only (Graph)"', () => {
	const subjects = (items: Array<{ json: Record<string, unknown> }>) => items.map((i) => String(i.json.subject));
	const deliver = (subject: string) => peers.graph.addMessage(ASSISTANT, { subject, from: { address: 'x@example.org' }, to: [{ address: ASSISTANT }] });

	it('starts from now, emits each new message once (also after a restart from saved state), not a message that is only changed', async () => {
		const app = registerGraphApp(peers, { mailboxes: [ASSISTANT] });
		const credentials = appOnlyGraphCredential(peers, app, { mailbox: ASSISTANT });
		const parameters = { authentication: 'microsoftAppOnlyGraph', folder: 'INBOX', options: { downloadAttachments: false } };
		const old = deliver('old');
		let poller = await createPoller({ parameters, credentials });
		expect(await poller.poll()).toEqual([]); // first activation: a baseline, no flood of old mail

		deliver('new 1');
		deliver('new 2');
		expect(subjects(await poller.poll())).toEqual(['new 1', 'new 2']);
		expect(await poller.poll()).toEqual([]);

		// Read and flagged in Outlook: a change, not new mail.
		peers.graph.updateMessage(ASSISTANT, old.immutableId, { isRead: true, flag: { flagStatus: 'flagged' } });
		deliver('new 3');
		expect(subjects(await poller.poll())).toEqual(['new 3']);

		// n8n restarts: the trigger continues from its saved delta state.
		poller = await createPoller({ parameters, credentials, staticData: poller.staticData() });
		deliver('new 4');
		expect(subjects(await poller.poll())).toEqual(['new 4']);
		expect(await poller.poll()).toEqual([]);
	});
});
