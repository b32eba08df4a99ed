import { maskIdentifier } from '../../model/redact';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import type { Connection } from '../../connections/connection';
import { microsoftAppOnlyGraph } from '../../connections/microsoft-graph-app-only';
import { microsoftDelegatedGraph } from '../../connections/microsoft-graph-delegated';
import { runChecks, type CheckResult, type DiagnoseOptions } from '../../diagnostics/checks';
import { ActionableError } from '../../model/actionable-error';
import {
	appOnlyGraphCredential,
	ASSISTANT,
	delegatedGraphData,
	issuedTokens,
	registerDelegatedApp,
	ROBOT,
	SHARED,
	startGraphPeers,
	TENANT,
	USER,
	type GraphPeers,
} from '../nodes/graph-fixture';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

/** A mailbox Graph does not serve (on-premises / unlicensed): MailboxNotEnabledForRESTAPI. */
const ON_PREMISES = 'onprem@contoso.example';
const FULL_ROLES = ['Mail.Send', 'Mail.ReadWrite', 'Application.Read.All'];

let peers: GraphPeers;
let delegatedApp: { clientId: string; secret: string };

beforeAll(async () => {
	peers = await startGraphPeers();
	peers.graph.addMailbox({ address: ON_PREMISES, restEnabled: false });
	delegatedApp = registerDelegatedApp(peers);
	peers.graph.addMessage(ROBOT, { subject: 'unread one', from: { address: 'x@example.org' }, to: [{ address: ROBOT }] });
	peers.graph.addMessage(ROBOT, { subject: 'read one', from: { address: 'x@example.org' }, to: [{ address: ROBOT }], isRead: true });
	peers.graph.addMessage(USER, { subject: 'for dana', from: { address: 'x@example.org' }, to: [{ address: USER }] });
});
afterAll(async () => {
	await peers?.graph.close();
	await peers?.idp.close();
});

/** An app registration with a secret valid for a year, Graph roles and mailbox grants (RBAC for Applications). */
function graphApp(options: { roles?: string[]; mailboxes?: string[]; pendingTries?: number } = {}) {
	const clientId = randomUUID();
	const secret = `graph-checks-${randomUUID()}`;
	peers.idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret, expiresAt: new Date(Date.now() + 365 * 86_400_000) }], appRoles: options.roles ?? FULL_ROLES });
	for (const mailbox of options.mailboxes ?? [ROBOT]) peers.idp.grantMailbox({ tenant: TENANT, clientId, mailbox, pendingTries: options.pendingTries ?? 0 });
	return { clientId, secret };
}

const openAppOnly = (app: { clientId: string; secret: string }, overrides: Record<string, unknown> = {}) =>
	microsoftAppOnlyGraph.open(appOnlyGraphCredential(peers, app, overrides).modernAuthMicrosoftAppOnlyApi.data, {});
const openDelegated = async (overrides: Record<string, unknown> = {}) => microsoftDelegatedGraph.open(await delegatedGraphData(peers, delegatedApp, overrides), {});

async function diagnose(connection: Connection, options: Partial<DiagnoseOptions> = {}): Promise<CheckResult[]> {
	const results = await runChecks(await connection.checks({ protocol: 'graph', mailbox: '', ...options }), { secrets: connection.secrets });
	// Nothing a run prints may carry a secret or a token.
	const printed = JSON.stringify(results);
	for (const secret of [...connection.secrets, ...issuedTokens(peers)]) expect(printed).not.toContain(secret);
	return results;
}

const stepOf = (results: CheckResult[], step: string, target?: string) => {
	const found = results.find((r) => r.step === step && (target === undefined || r.target === target));
	if (!found) throw new Error(`no ${step} result in ${results.map((r) => `${r.step}:${r.target}`).join(', ')}`);
	return found;
};
const statuses = (results: CheckResult[]) => results.map((r) => `${r.step}:${r.status}`);
const inboxCounts = (mailbox: string) => {
	const held = peers.graph.messages(mailbox, 'inbox') as Array<{ isRead: boolean }>;
	return { total: held.length, unread: held.filter((m) => !m.isRead).length };
};

describe('Graph staged checks, app-only', () => {
	it('a working credential passes every stage; the read counts what the mailbox holds', async () => {
		const app = graphApp();
		const results = await diagnose(await openAppOnly(app));
		expect(statuses(results)).toEqual(['reach:pass', 'reach:pass', 'tls:pass', 'tls:pass', 'token:pass', 'credential:pass', 'permission:pass', 'login:pass', 'read:pass']);
		const graphTarget = peers.graphHost.replace('https://', '');
		expect(results.map((r) => r.target)).toEqual([
			peers.idp.authorityHost.replace('https://', ''),
			graphTarget,
			graphTarget,
			peers.idp.authorityHost.replace('https://', ''),
			'graph',
			'client secret',
			'graph',
			'graph',
			'Inbox',
		]);
		const { total, unread } = inboxCounts(ROBOT);
		expect(total).toBe(2);
		expect(stepOf(results, 'read').facts).toMatchObject({ folder: 'Inbox', total, unread });
		expect(stepOf(results, 'read').detail).toBe(`Inbox of ${maskIdentifier(ROBOT)}: ${total} messages, ${unread} unread`);
		expect(stepOf(results, 'token').detail).toContain(`****${app.clientId.slice(-4)}`);
		expect(stepOf(results, 'token').detail).not.toContain(app.clientId);
	});

	it('no grant on the mailbox: login fails with ErrorAccessDenied and the RBAC fix naming the real client id and mailbox', async () => {
		const app = graphApp({ mailboxes: [] });
		const results = await diagnose(await openAppOnly(app));
		const login = stepOf(results, 'login');
		expect(login).toMatchObject({ status: 'fail', code: 'GRAPH_ACCESS_DENIED' });
		expect(login.detail).toMatch(/Access to the mailbox was denied.*AccessPolicy/);
		expect(login.hint).toContain(`Test-ServicePrincipalAuthorization -Identity ${app.clientId} -Resource '${ROBOT}'`);
		expect(login.hint).toContain(`New-ManagementRoleAssignment -App <Enterprise Application object id> -Role 'Application Mail.ReadWrite'`);
		expect(login.hint).not.toMatch(/no Mail role/);
		expect(stepOf(results, 'permission').status).toBe('pass');
		expect(stepOf(results, 'read')).toMatchObject({ status: 'skipped', detail: 'skipped: login:graph did not pass' });
	});

	it('no Mail role in the token: permission warns, then login fails 403 with admin consent ahead of RBAC', async () => {
		const app = graphApp({ roles: ['Mail.Send'] });
		const results = await diagnose(await openAppOnly(app));
		expect(stepOf(results, 'permission')).toMatchObject({ status: 'warn', code: 'PERMISSION_MISSING' });
		const login = stepOf(results, 'login');
		expect(login).toMatchObject({ status: 'fail', code: 'GRAPH_ACCESS_DENIED' });
		expect(login.hint).toMatch(new RegExp(`^The token has no Mail role\\. Add the Microsoft Graph application permission Mail\\.ReadWrite and grant admin consent: .*\\(app ${app.clientId}\\) > API permissions`));
		expect(login.hint).toContain(`-Resource '${ROBOT}'`);
	});

	it('a mailbox Graph does not serve: MailboxNotEnabledForRESTAPI with the licence fix', async () => {
		const app = graphApp({ mailboxes: [ON_PREMISES] });
		const results = await diagnose(await openAppOnly(app), { mailbox: ON_PREMISES });
		const login = stepOf(results, 'login');
		expect(login).toMatchObject({ status: 'fail', code: 'GRAPH_MAILBOX_NOT_REST' });
		expect(login.detail).toMatch(/^The mailbox cannot be used through Graph: The mailbox is either inactive, soft-deleted, or is hosted on-premise/);
		expect(login.hint).toBe(`${ON_PREMISES} is not an Exchange Online mailbox Graph can open: give the user an Exchange Online licence (or use the mailbox's primary address); on-premises and guest mailboxes are not served by Graph`);
	});

	it('Graph refusing the token (401 after the one renewal): login fails GRAPH_UNAUTHORIZED and says a fresh token is needed', async () => {
		const app = graphApp();
		// The client renews the token once on 401: both answers refuse it.
		peers.graph.failNext(2, { status: 401, path: /mailFolders\/inbox\/messages$/ });
		try {
			const results = await diagnose(await openAppOnly(app));
			const login = stepOf(results, 'login');
			expect(login).toMatchObject({ status: 'fail', code: 'GRAPH_UNAUTHORIZED' });
			expect(login.detail).toMatch(/^Microsoft Graph refused the token: Access token has expired/);
			expect(login.hint).toMatch(/Mail\.Send \/ Mail\.ReadWrite.*then run the check again \(a token issued before a consent change/);
		} finally {
			peers.graph.clearFaults();
		}
	});

	it('a grant still propagating: refused twice, then passes; with the retry option a warning naming propagation', async () => {
		const refused = graphApp({ pendingTries: 2 });
		const once = await diagnose(await openAppOnly(refused));
		expect(stepOf(once, 'login')).toMatchObject({ status: 'fail', code: 'GRAPH_ACCESS_DENIED' });

		const app = graphApp({ pendingTries: 2 });
		const results = await diagnose(await openAppOnly(app), { propagationRetry: { maxMs: 5_000, firstDelayMs: 50 } });
		const login = stepOf(results, 'login');
		expect(login).toMatchObject({ status: 'warn', code: 'PROPAGATION_DELAY' });
		expect(login.detail).toMatch(/^Graph accepted the token and opened the mailbox of .* \(passed on try 3 after [\d.]+ s: the earlier refusals were propagation delay/);
		expect(stepOf(results, 'read').status).toBe('pass');
	});

	it('an optional round trip sends from the mailbox through Graph and finds it in its Inbox', async () => {
		const app = graphApp();
		const before = peers.graph.deliveries.length;
		const results = await diagnose(await openAppOnly(app), { roundTrip: { to: ROBOT, timeoutMs: 5_000 } });
		const roundTrip = stepOf(results, 'round-trip');
		expect(roundTrip).toMatchObject({ status: 'pass', target: ROBOT });
		expect(roundTrip.detail).toMatch(/^arrived in Inbox after \d+ ms \(sent in \d+ ms\); the test message was deleted$/);
		expect(Number(roundTrip.facts?.roundTripMs)).toBeGreaterThanOrEqual(Number(roundTrip.facts?.sendMs));
		const sent = peers.graph.deliveries.slice(before);
		expect(sent).toMatchObject([{ mailbox: ROBOT, from: ROBOT, to: [ROBOT] }]);
		expect(sent[0].subject).toMatch(/^Modern Auth Mail connection test [0-9a-f-]{36}$/);
		expect((peers.graph.messages(ROBOT, 'inbox') as Array<{ subject: string }>).map((m) => m.subject)).not.toContain(sent[0].subject);
	});

	it('the Test button runs the same stages: the verdict line, or the failing step with its fix', async () => {
		const app = graphApp();
		const { total, unread } = inboxCounts(ROBOT);
		expect(await (await openAppOnly(app)).test()).toBe(`9 checks passed; read: Inbox of ${maskIdentifier(ROBOT)}: ${total} messages, ${unread} unread.`);

		const denied = graphApp({ mailboxes: [] });
		const error = await (await openAppOnly(denied)).test().catch((e: unknown) => e);
		expect(error).toBeInstanceOf(ActionableError);
		expect(error).toMatchObject({ code: 'GRAPH_ACCESS_DENIED', message: expect.stringMatching(/^login \(graph\) failed: Access to the mailbox was denied/) });
		expect((error as ActionableError).hint).toContain(`-Identity ${denied.clientId}`);
	});

	it('a protocol the Graph kinds do not serve is refused when the checks are built', async () => {
		const connection = await openAppOnly(graphApp());
		await expect(connection.checks({ protocol: 'imap', mailbox: '' })).rejects.toMatchObject({ code: 'PROTOCOL_NOT_SERVED', message: expect.stringContaining('cannot be tested for IMAP') });
	});

	it('without a Default Mailbox the Test button checks the token and says what it could not check', async () => {
		const app = graphApp();
		const verdict = await (await openAppOnly(app, { mailbox: '' })).test();
		expect(verdict).toMatch(/^7 checks passed; permission: .*WARNING login \(graph\): no mailbox to open, so only the token was checked\. Set Default Mailbox/);
	});
});

describe('GraphReader.status: the read stage\'s counts', () => {
	it('counts a well-known or nested folder from its mailFolder resource; an unknown folder names those that exist', async () => {
		const app = graphApp();
		const reader = (await openAppOnly(app)).reader!(ROBOT);
		try {
			const projects = peers.graph.addFolder(ROBOT, { displayName: 'Projects', parent: 'inbox' });
			peers.graph.addMessage(ROBOT, { folder: projects.id, subject: 'p1', isRead: true });
			peers.graph.addMessage(ROBOT, { folder: projects.id, subject: 'p2' });
			peers.graph.addMessage(ROBOT, { folder: projects.id, subject: 'p3' });
			expect(await reader.status!('inbox')).toEqual({ path: 'Inbox', ...inboxCounts(ROBOT) });
			expect(await reader.status!('Inbox/Projects')).toEqual({ path: 'Projects', total: 3, unread: 2 });
			await expect(reader.status!('Inbox/Nope')).rejects.toMatchObject({ code: 'GRAPH_UNKNOWN_FOLDER', hint: expect.stringContaining('Inbox/Projects') });
		} finally {
			await reader.close();
		}
	});
});

describe('Graph staged checks, app-only credential stage', () => {
	it('a certificate credential: its expiry comes from the credential itself, before the token; 10 days left warns', async () => {
		const dir = fs.mkdtempSync(path.join(peers.pki.dir, 'graph-check-cert-'));
		execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'app.key', '-out', 'app.pem', '-days', '10', '-subj', '/CN=graph check app'], { cwd: dir, stdio: 'ignore' });
		const certificatePem = fs.readFileSync(path.join(dir, 'app.pem'), 'utf8');
		const privateKeyPem = fs.readFileSync(path.join(dir, 'app.key'), 'utf8');
		const clientId = randomUUID();
		peers.idp.addApp({ tenant: TENANT, clientId, certificates: [{ pem: certificatePem }], appRoles: ['Mail.ReadWrite'] });
		peers.idp.grantMailbox({ tenant: TENANT, clientId, mailbox: ROBOT });
		const results = await diagnose(await openAppOnly({ clientId, secret: '' }, { authType: 'certificate', certificatePem, privateKeyPem, clientSecret: '' }));
		expect(statuses(results)).toEqual(['reach:pass', 'reach:pass', 'tls:pass', 'tls:pass', 'credential:warn', 'token:pass', 'permission:pass', 'login:pass', 'read:pass']);
		expect(stepOf(results, 'credential')).toMatchObject({ target: 'certificate', code: 'CERTIFICATE_EXPIRING' });
		expect(stepOf(results, 'credential').detail).toMatch(/CN=graph check app.* in (9|10) days$/);
	});

	it('an app that may not read its own registration: the secret stage is skipped with how to allow it, the rest passes', async () => {
		const app = graphApp({ roles: ['Mail.ReadWrite'] });
		const results = await diagnose(await openAppOnly(app));
		expect(stepOf(results, 'credential')).toMatchObject({ status: 'skipped', code: 'SECRET_EXPIRY_UNREADABLE' });
		expect(stepOf(results, 'credential').hint).toContain(`(app ${app.clientId}) > API permissions`);
		expect(stepOf(results, 'read').status).toBe('pass');
	});

	it('a stalled Graph host: the Test button still answers within its budget, naming the stage that got no answer', async () => {
		const app = graphApp();
		const connection = await openAppOnly(app);
		peers.graph.setServiceTime(60_000);
		const started = Date.now();
		let error: unknown;
		try {
			await connection.test();
		} catch (failure) {
			error = failure;
		} finally {
			peers.graph.setServiceTime(0);
		}
		const took = Date.now() - started;
		const answered = took < 15_000 && error instanceof ActionableError && /^login \(graph\) failed: no answer within/.test(error.message);
		record({ transport: 'diagnostics', kind: 'fault', name: 'graph stalled: the Test button answered within its budget', survived: answered, behaviour: `answered after ${took} ms: ${error instanceof Error ? error.message : 'no failure'}` });
		expect(error).toMatchObject({ code: 'CHECK_TIMEOUT', message: expect.stringMatching(/^login \(graph\) failed: no answer within [\d.]+ s$/) });
		expect(took).toBeLessThan(15_000);
	}, 30_000);
});

describe('Graph staged checks, delegated', () => {
	it('the signed-in account\'s own mailbox passes every stage (no credential stage: nothing of the app to expire here)', async () => {
		const results = await diagnose(await openDelegated());
		expect(statuses(results)).toEqual(['reach:pass', 'reach:pass', 'tls:pass', 'tls:pass', 'token:pass', 'permission:pass', 'mailbox-access:pass', 'login:pass', 'read:pass']);
		const { total, unread } = inboxCounts(USER);
		expect(total).toBeGreaterThan(0);
		expect(stepOf(results, 'read').facts).toMatchObject({ total, unread });
		expect(stepOf(results, 'read').detail).toBe(`Inbox of the signed-in account (****${USER.slice(-4)}): ${total} messages, ${unread} unread`);
	});

	it('a round trip on /me: sent as the signed-in account, read back from its own Inbox', async () => {
		const before = peers.graph.deliveries.length;
		const results = await diagnose(await openDelegated(), { roundTrip: { to: USER, timeoutMs: 5_000 } });
		expect(stepOf(results, 'round-trip')).toMatchObject({ status: 'pass', target: USER });
		expect(peers.graph.deliveries.slice(before)).toMatchObject([{ mailbox: USER, from: USER, to: [USER] }]);
	});

	it('a shared mailbox the account may open: mailbox-access warns, the mailbox is read', async () => {
		const results = await diagnose(await openDelegated(), { mailbox: SHARED });
		expect(stepOf(results, 'mailbox-access')).toMatchObject({ status: 'warn', code: 'MAILBOX_OTHER_ACCOUNT' });
		expect(stepOf(results, 'login').status).toBe('pass');
		expect(stepOf(results, 'read').facts).toMatchObject(inboxCounts(SHARED));
	});

	it('signed in as another account than the mailbox: mailbox-access warns, login is refused with the wrong-account fix', async () => {
		const results = await diagnose(await openDelegated(), { mailbox: ASSISTANT });
		expect(stepOf(results, 'mailbox-access')).toMatchObject({ status: 'warn', code: 'MAILBOX_OTHER_ACCOUNT' });
		const login = stepOf(results, 'login');
		expect(login).toMatchObject({ status: 'fail', code: 'GRAPH_ACCESS_DENIED' });
		expect(login.hint).toContain(`Add-MailboxPermission -Identity '${ASSISTANT}' -User '${USER}' -AccessRights FullAccess`);
		expect(login.hint).toContain(`Connect my account again in a private window and choose ${ASSISTANT}`);
		expect(stepOf(results, 'read').status).toBe('skipped');
	});
});
