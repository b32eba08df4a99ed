import { microsoftAppOnlyGraph } from '../../connections/microsoft-graph-app-only';
import { microsoftDelegatedGraph } from '../../connections/microsoft-graph-delegated';
import {
	appOnlyGraphCredential,
	delegatedGraphData,
	registerDelegatedApp,
	registerGraphApp,
	ROBOT,
	SHARED,
	startGraphPeers,
	USER,
	type GraphPeers,
} from './graph-fixture';
import { maskIdentifier } from '../../model/redact';

/** The mailbox as the checks' details show it (masked), as a regular expression. */
const masked = (address: string) => maskIdentifier(address).replace(/[*]/g, '\\*');

let peers: GraphPeers;
let delegatedApp: { clientId: string; secret: string };

beforeAll(async () => {
	peers = await startGraphPeers();
	delegatedApp = registerDelegatedApp(peers);
});
afterAll(async () => {
	await peers?.graph.close();
	await peers?.idp.close();
});

const appOnlyData = (app: { clientId: string; secret: string }, overrides: Record<string, unknown> = {}) =>
	appOnlyGraphCredential(peers, app, overrides).modernAuthMicrosoftAppOnlyApi.data;

const delegatedData = (overrides: Record<string, unknown> = {}) => delegatedGraphData(peers, delegatedApp, overrides);

const inboxReads = (mailboxSegment: string) =>
	(peers.graph.requests as Array<{ method: string; path: string }>).filter((r) => r.method === 'GET' && r.path === `/v1.0${mailboxSegment}/mailFolders/inbox`).length;

describe('Graph connection kinds', () => {
	it('are the Authentication values the nodes offer, on the existing credential types', () => {
		expect([microsoftAppOnlyGraph, microsoftDelegatedGraph].map(({ authentication, displayName, credentialType, send, read }) => ({ authentication, displayName, credentialType, send, read }))).toEqual([
			{ authentication: 'microsoftAppOnlyGraph', displayName: 'Microsoft 365 App-Only (Graph)', credentialType: 'modernAuthMicrosoftAppOnlyApi', send: true, read: true },
			{ authentication: 'microsoftDelegatedGraph', displayName: 'Microsoft 365 Delegated (Graph)', credentialType: 'modernAuthMicrosoftDelegatedOAuth2Api', send: true, read: true },
		]);
	});

	it('app-only test(): a Graph token, then the Default Mailbox\'s Inbox is read', async () => {
		const app = registerGraphApp(peers);
		peers.graph.addMessage(ROBOT, { subject: 'counted', from: { address: 'x@example.org' }, to: [{ address: ROBOT }] });
		const before = inboxReads(`/users/${encodeURIComponent(ROBOT)}`);
		const connection = await microsoftAppOnlyGraph.open(appOnlyData(app), {});
		const held = peers.graph.messages(ROBOT, 'inbox') as Array<{ isRead: boolean }>;
		// The staged checks' verdict (test/diagnostics/graph-checks.test.ts has every stage).
		expect(await connection.test()).toMatch(
			new RegExp(`^\\d+ checks passed; read: Inbox of ${masked(ROBOT)}: ${held.length} messages, ${held.filter((m) => !m.isRead).length} unread\\.$`),
		);
		expect(inboxReads(`/users/${encodeURIComponent(ROBOT)}`)).toBe(before + 1);
		expect(peers.idp.counts({ grantType: 'client_credentials', clientId: app.clientId, scope: `${peers.graphHost}/.default` })).toBe(1);
	});

	it('app-only test() without a Default Mailbox: the Graph token only, and says what else it could check', async () => {
		const app = registerGraphApp(peers);
		const connection = await microsoftAppOnlyGraph.open(appOnlyData(app, { mailbox: '' }), {});
		const mailboxRequests = () => (peers.graph.requests as Array<{ path: string }>).filter((r) => r.path.startsWith('/v1.0/users/')).length;
		const before = mailboxRequests();
		expect(await connection.test()).toMatch(/ WARNING login \(graph\): no mailbox to open, so only the token was checked\. Set Default Mailbox in the credential/);
		expect(mailboxRequests()).toBe(before);
		await expect(connection.mailboxFor('', 'Mailbox')).rejects.toMatchObject({ code: 'MAILBOX_REQUIRED' });
	});

	it('app-only test() without RBAC scope on the mailbox: Graph\'s refusal with the fix', async () => {
		const app = registerGraphApp(peers, { mailboxes: [] });
		const connection = await microsoftAppOnlyGraph.open(appOnlyData(app), {});
		const refusal = await connection.test().then(
			() => undefined,
			(error: unknown) => error as { code: string; message: string; hint: string },
		);
		expect(refusal).toMatchObject({ code: 'GRAPH_ACCESS_DENIED' });
		expect(`${refusal?.message} ${refusal?.hint}`).not.toContain(app.secret);
	});

	it('a mailbox Graph cannot address is refused naming the field, before any request', async () => {
		const app = registerGraphApp(peers);
		const connection = await microsoftAppOnlyGraph.open(appOnlyData(app), {});
		const before = peers.graph.requests.length;
		for (const mailbox of ['../../admin@contoso.example', 'robot@contoso.example/messages', 'robot%40contoso.example', 'robot@contoso.example?$top=1']) {
			await expect(connection.mailboxFor(mailbox, 'Mailbox')).rejects.toMatchObject({ code: 'GRAPH_INVALID_MAILBOX', message: `Mailbox: "${mailbox}" is not a mailbox Graph can address` });
		}
		expect(peers.graph.requests.length).toBe(before);
	});

	it('delegated without a mailbox works on /me; with a shared mailbox on /users/{mailbox}', async () => {
		const me = await microsoftDelegatedGraph.open(await delegatedData(), {});
		const meBefore = inboxReads('/me');
		expect(await me.test()).toMatch(/^\d+ checks passed; read: Inbox of the signed-in account \(\*{4}.{4}\): \d+ messages, \d+ unread\.$/);
		expect(inboxReads('/me')).toBe(meBefore + 1);
		expect(await me.identityFor!('')).toEqual({ key: 'me', mailbox: '', fromAddress: USER, allowedFrom: [] });

		const shared = await microsoftDelegatedGraph.open(await delegatedData({ mailbox: SHARED }), {});
		const sharedBefore = inboxReads(`/users/${encodeURIComponent(SHARED)}`);
		expect(await shared.test()).toMatch(new RegExp(`; read: Inbox of ${masked(SHARED)}: `));
		expect(inboxReads(`/users/${encodeURIComponent(SHARED)}`)).toBe(sharedBefore + 1);
	});

	it('delegated with Allowed Mailboxes: /me is checked as the signed-in account', async () => {
		const refused = await microsoftDelegatedGraph.open(await delegatedData({ allowedMailboxes: ROBOT }), {});
		await expect(refused.mailboxFor('', 'Mailbox')).rejects.toMatchObject({ code: 'MAILBOX_NOT_ALLOWED', message: `Mailbox: "${USER}" is not in the credential's Allowed Mailboxes` });
		const allowed = await microsoftDelegatedGraph.open(await delegatedData({ allowedMailboxes: '@contoso.example' }), {});
		expect(await allowed.mailboxFor('', 'Mailbox')).toBe('');
	});

	it('a delegated credential connected for IMAP and SMTP is refused with the fix, before any request', async () => {
		const before = peers.graph.requests.length;
		await expect(microsoftDelegatedGraph.open(await delegatedData({ useFor: 'imapSmtp' }), {})).rejects.toMatchObject({
			code: 'WRONG_AUDIENCE',
			hint: expect.stringMatching(/Use For.*Microsoft Graph Mail.*Connect my account/),
		});
		expect(peers.graph.requests.length).toBe(before);
	});
});
