import { createHash, randomBytes } from 'node:crypto';

import { runNode, type InputItem } from '../harness/n8n-run';
import {
	appOnlyGraphCredential,
	ASSISTANT,
	delegatedGraphData,
	issuedTokens,
	RECIPIENT,
	registerDelegatedApp,
	registerGraphApp,
	ROBOT,
	SHARED,
	startGraphPeers,
	USER,
	type GraphPeers,
} from './graph-fixture';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let peers: GraphPeers;

beforeAll(async () => {
	peers = await startGraphPeers();
});
afterAll(async () => {
	await peers?.graph.close();
	await peers?.idp.close();
});
beforeEach(() => {
	peers.graph.deliveries.length = 0;
	peers.graph.requests.length = 0;
});

interface Delivery {
	mailbox: string;
	subject: string;
	from: string;
	sender: string;
	to: string[];
	cc: string[];
	bcc: string[];
	body: { contentType: string; content: string };
	importance: string;
	isReadReceiptRequested: boolean;
	internetMessageHeaders: Array<{ name: string; value: string }>;
	attachments: Array<{ name: string; contentType: string; size: number; sha256: string | null }>;
	saveToSentItems: boolean;
}

const deliveries = () => peers.graph.deliveries as Delivery[];
/** Requests that reached a mailbox (not the fake's control endpoints). */
const graphRequests = () => (peers.graph.requests as Array<{ path: string }>).filter((r) => r.path.startsWith('/v1.0/'));

const baseParameters = {
	authentication: 'microsoftAppOnlyGraph',
	toEmail: '={{ $json.to }}',
	subject: '={{ $json.subject }}',
	emailFormat: 'text',
	text: 'sent through Graph',
};

describe('Send Email (Modern Auth) with Authentication "Microsoft 365 App-Only (Graph)"', () => {
	it('delivers every field to the mailbox through Graph: recipients, bodies, importance, sender, read receipt, headers, a 5 MB attachment byte for byte', async () => {
		const app = registerGraphApp(peers);
		// The robot mailbox sends on behalf of the boss (Set-Mailbox boss -GrantSendOnBehalfTo robot).
		peers.graph.grantSendAs(ROBOT, 'boss@contoso.example', { onBehalf: true });
		const file = randomBytes(5 * 1024 * 1024);
		const { output, error, run } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: {
				authentication: 'microsoftAppOnlyGraph',
				fromEmail: 'Boss <boss@contoso.example>',
				toEmail: `Ann <${RECIPIENT}>, bob@example.org`,
				subject: 'Quarterly report – ünïcödé',
				emailFormat: 'html',
				html: '<p>Figures <b>attached</b></p>',
				options: {
					ccEmail: 'carol@example.org',
					bccEmail: 'audit@example.net',
					priority: 'high',
					sender: `Robot <${ROBOT}>`,
					readReceipt: true,
					customHeaders: { header: [{ name: 'X-Ticket-ID', value: 'T-1001' }] },
					attachments: 'report',
				},
			},
			items: [{ json: {}, binary: { report: { data: file, fileName: 'q3-report.bin', mimeType: 'application/octet-stream' } } }],
			credentials: appOnlyGraphCredential(peers, app),
		});
		expect(error).toBeUndefined();
		expect(output).toHaveLength(1);
		expect(output[0].json.status).toBe('sent');

		expect(deliveries()).toHaveLength(1);
		const [delivery] = deliveries();
		expect(delivery).toMatchObject({
			mailbox: ROBOT,
			subject: 'Quarterly report – ünïcödé',
			from: 'boss@contoso.example',
			sender: ROBOT,
			to: [RECIPIENT, 'bob@example.org'],
			cc: ['carol@example.org'],
			bcc: ['audit@example.net'],
			body: { contentType: 'html', content: '<p>Figures <b>attached</b></p>' },
			importance: 'high',
			isReadReceiptRequested: true,
			saveToSentItems: true,
		});
		expect(delivery.internetMessageHeaders).toEqual([{ name: 'X-Ticket-ID', value: 'T-1001' }]);
		expect(delivery.attachments).toEqual([
			expect.objectContaining({ name: 'q3-report.bin', contentType: 'application/octet-stream', size: file.length, sha256: sha256(file) }),
		]);

		// What the recipient's mailbox holds: the attachment's bytes exactly as sent.
		const received = peers.graph.messages(RECIPIENT, 'inbox').filter((m: { subject: string }) => m.subject === delivery.subject);
		expect(received).toHaveLength(1);
		const bytes: Buffer = peers.graph.attachmentBytes(received[0].attachments[0]);
		expect(bytes.equals(file)).toBe(true);
		// Save to Sent Items defaults to on.
		expect(peers.graph.messages(ROBOT, 'sentitems').some((m: { subject: string }) => m.subject === delivery.subject)).toBe(true);

		const everything = JSON.stringify(run);
		expect(everything).not.toContain(app.secret);
		for (const token of issuedTokens(peers)) expect(everything).not.toContain(token);
	});

	it('Save to Sent Items off: delivered, no copy in Sent Items', async () => {
		const app = registerGraphApp(peers);
		const before = peers.graph.messages(ROBOT, 'sentitems').length;
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, options: { saveToSentItems: false } },
			items: [{ json: { to: RECIPIENT, subject: 'not kept' } }],
			credentials: appOnlyGraphCredential(peers, app),
		});
		expect(error).toBeUndefined();
		expect(deliveries()).toMatchObject([{ subject: 'not kept', saveToSentItems: false }]);
		expect(peers.graph.messages(ROBOT, 'sentitems')).toHaveLength(before);
	});

	it('continueOnFail: the bad item fails naming its field, the others are delivered once each', async () => {
		const app = registerGraphApp(peers);
		const items: InputItem[] = [
			{ json: { to: 'one@example.org', subject: 'item 0' } },
			{ json: { to: 'not-an-address', subject: 'item 1' } },
			{ json: { to: 'three@example.org', subject: 'item 2' } },
		];
		const { output, error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items,
			onError: 'continueRegularOutput',
			credentials: appOnlyGraphCredential(peers, app),
		});
		expect(error).toBeUndefined();
		expect(output).toHaveLength(3);
		expect(output[0].json.status).toBe('sent');
		expect((output[1].json.error as { message: string }).message).toMatch(/^To: "not-an-address" is not a valid email address/);
		expect(output[2].json.status).toBe('sent');
		expect(deliveries().map((d) => d.subject).sort()).toEqual(['item 0', 'item 2']);
	});

	it('a custom header Graph cannot carry (not X-) fails the item with the fix; nothing is sent', async () => {
		const app = registerGraphApp(peers);
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, options: { customHeaders: { header: [{ name: 'Keywords', value: 'q3' }] } } },
			items: [{ json: { to: RECIPIENT, subject: 'header' } }],
			credentials: appOnlyGraphCredential(peers, app),
		});
		expect(error?.message).toMatch(/^Item 0: Graph cannot send the header "Keywords": it accepts only custom headers starting with X-/);
		expect(error?.description).toMatch(/Rename the header to X-/);
		expect(deliveries()).toHaveLength(0);
	});

	it('a From the mailbox has neither Send As nor Send on Behalf for: Graph refuses, the item fails with its words', async () => {
		const app = registerGraphApp(peers);
		const { output } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, fromEmail: 'ceo@contoso.example' },
			items: [{ json: { to: RECIPIENT, subject: 'not allowed to send as' } }],
			onError: 'continueRegularOutput',
			credentials: appOnlyGraphCredential(peers, app),
		});
		const failure = output[0].json.error as { message: string; code: string; hint: string };
		expect(failure.code).toBe('GRAPH_ACCESS_DENIED');
		expect(failure.message).toMatch(/does not have the right to send mail on behalf of the specified sending account/);
		expect(failure.hint).toMatch(/Send As on the From address.*Send on Behalf and set Sender/);
		expect(deliveries()).toHaveLength(0);
	});

	it('Allowed Mailboxes: a Mailbox or Sender outside the list fails the item naming the field; Graph sees no request', async () => {
		const app = registerGraphApp(peers, { mailboxes: [ROBOT, ASSISTANT] });
		const credentials = appOnlyGraphCredential(peers, app, { allowedMailboxes: ROBOT });
		const mailbox = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, options: { mailbox: ASSISTANT } },
			items: [{ json: { to: RECIPIENT, subject: 'refused' } }],
			credentials,
		});
		expect(mailbox.error?.message).toBe(`Item 0: Mailbox: "${ASSISTANT}" is not in the credential's Allowed Mailboxes`);
		expect(mailbox.error?.description).toMatch(/allows only: robot@contoso\.example/);

		const sender = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, options: { sender: ASSISTANT } },
			items: [{ json: { to: RECIPIENT, subject: 'refused' } }],
			credentials,
		});
		expect(sender.error?.message).toBe(`Item 0: Sender (On Behalf Of): "${ASSISTANT}" is not allowed by this credential`);
		expect(graphRequests()).toHaveLength(0);
		expect(deliveries()).toHaveLength(0);
	});

	it('a mailbox the app has no RBAC scope on: Graph refuses, the item fails with the fix, no secret or token in the output', async () => {
		const app = registerGraphApp(peers, { mailboxes: [] });
		const { output, run } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items: [{ json: { to: RECIPIENT, subject: 'no scope' } }],
			onError: 'continueRegularOutput',
			credentials: appOnlyGraphCredential(peers, app),
		});
		const failure = output[0].json.error as { message: string; code?: string };
		expect(failure.code).toBe('GRAPH_ACCESS_DENIED');
		expect(deliveries()).toHaveLength(0);
		const everything = JSON.stringify(run);
		expect(everything).not.toContain(app.secret);
		for (const token of issuedTokens(peers)) expect(everything).not.toContain(token);
	});
});

describe('Send Email through Graph: Delivery Guarantee when the answer to sendMail is lost', () => {
	const lostAnswer = async (deliveryGuarantee: string) => {
		const app = registerGraphApp(peers);
		// The connection drops after Graph took the message: delivered, but the node cannot know.
		peers.graph.resetNext(1, { when: 'after', method: 'POST', path: '/sendMail$' });
		return await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, options: { deliveryGuarantee } },
			items: [{ json: { to: RECIPIENT, subject: `lost answer, ${deliveryGuarantee}` } }],
			retryOnFail: { maxTries: 2, waitBetweenTries: 0 },
			credentials: appOnlyGraphCredential(peers, app),
		});
	};

	it('At Most Once: n8n\'s Retry On Fail does not send it again; the item fails as delivery unknown', async () => {
		const { error } = await lostAnswer('atMostOnce');
		const delivered = deliveries().length;
		record({
			transport: 'graph',
			kind: 'fault',
			name: 'node: sendMail answer lost after Graph took it, Retry On Fail, At Most Once',
			survived: delivered === 1 && /Not sent again/.test(error?.message ?? ''),
			behaviour: 'the item fails as delivery unknown and the retry does not send it again',
			sent: 1,
			delivered,
			lost: delivered === 0 ? 1 : 0,
			duplicated: Math.max(0, delivered - 1),
			deliveryUnknown: 1,
			allowsDeliveryUnknown: true,
		});
		expect(delivered).toBe(1);
		expect(error?.message).toMatch(/^Item 0: Not sent again/);
	});

	it('At Least Once: the retry sends it again (it arrives twice, as the option says)', async () => {
		const { error } = await lostAnswer('atLeastOnce');
		expect(error).toBeUndefined();
		expect(deliveries()).toHaveLength(2);
	});
});

describe('Send Email (Modern Auth) with Authentication "Microsoft 365 Delegated (Graph)"', () => {
	const send = async (options: Record<string, unknown>, overrides: Record<string, unknown> = {}) => {
		const app = registerDelegatedApp(peers);
		const data = await delegatedGraphData(peers, app, overrides);
		return runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, authentication: 'microsoftDelegatedGraph', options },
			items: [{ json: { to: RECIPIENT, subject: 'delegated' } }],
			credentials: { modernAuthMicrosoftDelegatedOAuth2Api: { id: `del${app.clientId.slice(0, 13)}`, name: 'Dana (Graph)', data } },
		});
	};
	const sendMailPaths = () => graphRequests().filter((r) => r.path.endsWith('/sendMail')).map((r) => r.path);

	it('without a mailbox sends as the signed-in account through /me', async () => {
		const { error, run } = await send({});
		expect(error).toBeUndefined();
		expect(sendMailPaths()).toEqual(['/v1.0/me/sendMail']);
		expect(deliveries()).toMatchObject([{ mailbox: USER, from: USER, to: [RECIPIENT] }]);
		const everything = JSON.stringify(run);
		for (const token of issuedTokens(peers)) expect(everything).not.toContain(token);
	});

	it('with a shared mailbox sends from it through /users/{mailbox}', async () => {
		const { error } = await send({ mailbox: SHARED });
		expect(error).toBeUndefined();
		expect(sendMailPaths()).toEqual([`/v1.0/users/${encodeURIComponent(SHARED)}/sendMail`]);
		expect(deliveries()).toMatchObject([{ mailbox: SHARED, from: SHARED }]);
	});

	it('a credential connected for IMAP and SMTP is refused with the fix; Graph sees no request', async () => {
		const { error } = await send({}, { useFor: 'imapSmtp' });
		expect(error?.message).toMatch(/connected for IMAP and SMTP/);
		expect(error?.description).toMatch(/Use For.*Microsoft Graph Mail/);
		expect(graphRequests()).toHaveLength(0);
	});
});
