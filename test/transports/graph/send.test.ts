import { randomBytes } from 'node:crypto';

import { DelegatedTokenProvider } from '../../../auth/delegated-token-provider';
import { GraphSender } from '../../../transports/graph/graph-sender';
import { MB, message, RCPT, requestLines, SENDER, sha256, startGraphFixture, TENANT, type GraphFixture } from './graph-fixture';

let fx: GraphFixture;

beforeAll(async () => {
	fx = await startGraphFixture({
		mailboxes: [{ address: SENDER, maxSendSize: 150 * MB }, { address: RCPT }, { address: 'onprem@contoso.example', restEnabled: false }, { address: 'small@contoso.example' }],
	});
});

afterAll(() => fx?.close());

beforeEach(() => {
	fx.graph.requests.length = 0;
	fx.graph.deliveries.length = 0;
	fx.graph.clearFaults();
});

const ENC_SENDER = `/v1.0/users/${encodeURIComponent(SENDER)}`;
const inbox = (address: string) => fx.graph.messages(address, 'inbox');
const sentItems = () => fx.graph.messages(SENDER, 'sentitems');

describe('Graph sender: one sendMail', () => {
	it('sends every field in one POST sendMail (202) and the recipient holds the attachments byte for byte', async () => {
		const logo = randomBytes(40_000);
		const report = randomBytes(2 * MB);
		const sender = fx.sender();
		const result = await sender.send(
			message({
				from: { address: 'sales@contoso.example', name: 'Contoso Sales' },
				sender: { address: SENDER, name: 'Robot' },
				to: [{ address: RCPT, name: 'Rick Recipient' }],
				cc: [{ address: 'cc@fabrikam.example' }],
				bcc: [{ address: 'bcc@fabrikam.example' }],
				replyTo: [{ address: 'replies@contoso.example', name: 'Replies' }],
				subject: 'Quarterly report ✓',
				text: 'plain text is superseded by the HTML body',
				html: '<p>See <img src="cid:logo@contoso"></p>',
				attachments: [
					{ filename: 'logo.png', contentType: 'image/png', contentId: 'logo@contoso', open: async () => logo },
					{ filename: 'report.bin', contentType: 'application/octet-stream', size: report.length, open: async () => (await import('node:stream')).Readable.from([report.subarray(0, MB), report.subarray(MB)]) },
				],
				headers: [{ name: 'X-Campaign', value: 'q3' }],
				priority: 'high',
				readReceipt: true,
			}),
		);
		expect(requestLines(fx.graph)).toEqual([`POST ${ENC_SENDER}/sendMail`]);
		expect(fx.graph.requests[0]).toMatchObject({ status: 202, headers: { authorization: 'Bearer <redacted>', contentType: expect.stringMatching(/^application\/json/) } });
		expect(result).toMatchObject({ accepted: [RCPT, 'cc@fabrikam.example', 'bcc@fabrikam.example'], rejected: [], envelope: { from: SENDER }, attempts: 1 });

		expect(fx.graph.deliveries).toHaveLength(1);
		expect(fx.graph.deliveries[0]).toMatchObject({
			via: 'sendMail',
			subject: 'Quarterly report ✓',
			from: 'sales@contoso.example',
			sender: SENDER,
			to: [RCPT],
			cc: ['cc@fabrikam.example'],
			bcc: ['bcc@fabrikam.example'],
			body: { contentType: 'html', content: '<p>See <img src="cid:logo@contoso"></p>' },
			importance: 'high',
			isReadReceiptRequested: true,
			internetMessageHeaders: [{ name: 'X-Campaign', value: 'q3' }],
			saveToSentItems: true,
		});
		const [received] = inbox(RCPT);
		expect(received.replyTo).toEqual([{ emailAddress: { address: 'replies@contoso.example', name: 'Replies' } }]);
		expect(received.attachments.map((a: { name: string; isInline: boolean; contentId: string | null }) => [a.name, a.isInline, a.contentId])).toEqual([
			['logo.png', true, 'logo@contoso'],
			['report.bin', false, null],
		]);
		expect(sha256(fx.graph.attachmentBytes(received.attachments[0]))).toBe(sha256(logo));
		expect(sha256(fx.graph.attachmentBytes(received.attachments[1]))).toBe(sha256(report));
		expect(sentItems().filter((m: { subject: string }) => m.subject === 'Quarterly report ✓')).toHaveLength(1);
	});

	it('keeps no copy in Sent Items when saveToSentItems is off', async () => {
		const subject = 'no copy kept';
		await fx.sender().send(message({ subject, saveToSentItems: false }));
		expect(fx.graph.deliveries).toMatchObject([{ subject, saveToSentItems: false }]);
		expect(sentItems().filter((m: { subject: string }) => m.subject === subject)).toHaveLength(0);
		expect(inbox(RCPT).filter((m: { subject: string }) => m.subject === subject)).toHaveLength(1);
	});

	it('refuses a header Graph would refuse (not X-) before any request', async () => {
		await expect(fx.sender().send(message({ headers: [{ name: 'In-Reply-To', value: '<a@b>' }] }))).rejects.toMatchObject({
			code: 'GRAPH_HEADER_NOT_SUPPORTED',
			message: expect.stringContaining('In-Reply-To'),
		});
		expect(fx.graph.requests).toHaveLength(0);
	});

	it('goes through a draft when small attachments together exceed one 4 MB request', async () => {
		const parts = [randomBytes(2 * MB), randomBytes(2 * MB)];
		await fx.sender().send(message({ attachments: parts.map((p, i) => ({ filename: `part${i}.bin`, contentType: 'application/octet-stream', open: async () => p })) }));
		expect(requestLines(fx.graph)).toEqual([
			`POST ${ENC_SENDER}/messages`,
			`POST ${ENC_SENDER}/messages/{id}/attachments`,
			`POST ${ENC_SENDER}/messages/{id}/attachments`,
			`POST ${ENC_SENDER}/messages/{id}/send`,
		]);
		expect(fx.graph.requests.every((r: { bodySize: number }) => r.bodySize < 4 * MB)).toBe(true);
		expect(fx.graph.deliveries).toHaveLength(1);
		expect(fx.graph.deliveries[0].attachments.map((a: { sha256: string }) => a.sha256)).toEqual(parts.map(sha256));
		expect(fx.graph.messages(SENDER, 'drafts')).toHaveLength(0);
	});
});

describe('Graph sender: draft path on request', () => {
	it("sendPath 'draft' sends even a small message as a draft sent by id (retry-safe), attachments inline on the draft", async () => {
		const note = randomBytes(10_000);
		const result = await fx.sender({ sendPath: 'draft' }).send(message({ subject: 'via draft', attachments: [{ filename: 'note.bin', contentType: 'application/octet-stream', open: async () => note }] }));
		expect(requestLines(fx.graph)).toEqual([`POST ${ENC_SENDER}/messages`, `POST ${ENC_SENDER}/messages/{id}/attachments`, `POST ${ENC_SENDER}/messages/{id}/send`]);
		expect(fx.graph.deliveries).toMatchObject([{ via: 'draft', subject: 'via draft', attachments: [{ name: 'note.bin', sha256: sha256(note) }] }]);
		expect(result.messageId).toMatch(/^<.+>$/);
	});
});

describe('Graph sender: delegated', () => {
	/** A delegated credential of RCPT's user; n8n's refresh is the identity minting a new token. */
	function delegatedTokens(scp: string[]) {
		const mint = () => fx.idp.mintAccessToken({ tenant: TENANT, clientId: fx.clientId, username: RCPT, audience: fx.cloud.graphHost, scp });
		return new DelegatedTokenProvider({ audience: 'graph', accessToken: mint(), refresh: async () => mint(), authorityHost: fx.cloud.authorityHost });
	}

	it('sends from the signed-in user through /me/sendMail when no mailbox is given', async () => {
		const sender = fx.sender({ mailbox: undefined, tokens: delegatedTokens(['Mail.Send']) });
		await sender.send(message({ from: { address: RCPT }, to: [{ address: SENDER }], subject: 'delegated me' }));
		expect(requestLines(fx.graph)).toEqual(['POST /v1.0/me/sendMail']);
		expect(fx.graph.deliveries).toMatchObject([{ mailbox: RCPT, from: RCPT, subject: 'delegated me' }]);
	});

	it('sends from a shared mailbox with Mail.Send.Shared through /users/{shared}/sendMail', async () => {
		fx.idp.grantMailbox({ tenant: TENANT, username: RCPT, mailbox: SENDER });
		const sender = fx.sender({ mailbox: SENDER, tokens: delegatedTokens(['Mail.Send.Shared']) });
		await sender.send(message({ subject: 'delegated shared' }));
		expect(requestLines(fx.graph)).toEqual([`POST ${ENC_SENDER}/sendMail`]);
		expect(fx.graph.deliveries).toMatchObject([{ mailbox: SENDER, from: SENDER, subject: 'delegated shared' }]);
	});
});

describe('Graph sender: mailbox and errors', () => {
	it('refuses a mailbox that would step out of /users/{mailbox}, before any request', () => {
		for (const mailbox of [`${SENDER}/../../admin@contoso.example`, `${SENDER}?$x=1`, 'x%2F@contoso.example', `..%2f${SENDER}`]) {
			expect(() => fx.sender({ mailbox })).toThrow(expect.objectContaining({ code: 'GRAPH_INVALID_MAILBOX' }));
		}
		expect(fx.graph.requests).toHaveLength(0);
	});

	it('verify() signs in and reads the inbox id, nothing more', async () => {
		await fx.sender().verify();
		expect(requestLines(fx.graph)).toEqual([`GET ${ENC_SENDER}/mailFolders/inbox`]);
		expect(fx.graph.requests[0]).toMatchObject({ query: '$select=id', status: 200 });
	});

	it('names RBAC for Applications and the app permission on ErrorAccessDenied', async () => {
		// No grantMailbox for this one: outside the app's RBAC for Applications scope.
		fx.graph.addMailbox({ address: 'outside@contoso.example' });
		const sender = fx.sender({ mailbox: 'outside@contoso.example' });
		await expect(sender.send(message({ from: { address: 'outside@contoso.example' } }))).rejects.toMatchObject({
			code: 'GRAPH_ACCESS_DENIED',
			responseCode: 403,
			hint: expect.stringMatching(/RBAC for Applications/),
		});
		await expect(sender.verify()).rejects.toMatchObject({ code: 'GRAPH_ACCESS_DENIED', hint: expect.stringMatching(/admin consent/) });
		expect(fx.graph.deliveries).toHaveLength(0);
	});

	it('says when the mailbox is not in Exchange Online (MailboxNotEnabledForRESTAPI)', async () => {
		await expect(fx.sender({ mailbox: 'onprem@contoso.example' }).send(message())).rejects.toMatchObject({ code: 'GRAPH_MAILBOX_NOT_REST', hint: expect.stringMatching(/Exchange Online/) });
	});

	it('names MaxSendSize when the message exceeds the mailbox limit, and removes the draft', async () => {
		const size = 36 * MB; // over the 35 MB default of small@
		const { stream } = (await import('./graph-fixture')).randomStream(size);
		await expect(
			fx.sender({ mailbox: 'small@contoso.example' }).send(message({ from: { address: 'small@contoso.example' }, attachments: [{ filename: 'big.bin', contentType: 'application/octet-stream', size, open: async () => stream }] })),
		).rejects.toMatchObject({ code: 'GRAPH_TOO_LARGE', hint: expect.stringMatching(/MaxSendSize/) });
		expect(fx.graph.messages('small@contoso.example', 'drafts')).toHaveLength(0);
		expect(fx.graph.deliveries).toHaveLength(0);
	});

	it('refuses an attachment over 150 MB before any request', async () => {
		const sender: GraphSender = fx.sender();
		await expect(sender.send(message({ attachments: [{ filename: 'huge.bin', contentType: 'application/octet-stream', size: 151 * MB, open: async () => Buffer.alloc(0) }] }))).rejects.toMatchObject({ code: 'GRAPH_TOO_LARGE' });
		expect(fx.graph.requests).toHaveLength(0);
	});
});
