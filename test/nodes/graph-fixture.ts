import { randomUUID } from 'node:crypto';
import net from 'node:net';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeGraph } = require('../peers/fake-graph');

/** Microsoft Graph's first-party app id: the resource principal behind every Graph host. */
const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000';

export const TENANT = '3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f';
export const ROBOT = 'robot@contoso.example';
export const ASSISTANT = 'assistant@contoso.example';
export const RECIPIENT = 'ann@contoso.example';
export const USER = 'dana@contoso.example';
export const USER_PASSWORD = 'Dana-Passw0rd!';
export const SHARED = 'shared@contoso.example';

export type FakeIdentity = Awaited<ReturnType<typeof startFakeIdentity>>;
export type FakeGraph = Awaited<ReturnType<typeof startFakeGraph>>;

async function freePort(): Promise<number> {
	const server = net.createServer();
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	const { port } = server.address() as net.AddressInfo;
	await new Promise<void>((resolve) => server.close(() => resolve()));
	return port;
}

/**
 * The fake identity platform and the fake Graph, wired like a national cloud: the Custom
 * cloud's Graph host (https://127.0.0.1:port) is both the base URL and, as in every cloud, the
 * token audience the identity platform knows as Microsoft Graph.
 */
export async function startGraphPeers() {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	const port = await freePort();
	const graphHost = `https://127.0.0.1:${port}`;
	const idp: FakeIdentity = await startFakeIdentity({ pki, resources: { [graphHost]: GRAPH_APP_ID } });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	// As Exchange: a From other than the mailbox needs Send As or Send on Behalf (grantSendAs).
	const graph: FakeGraph = await startFakeGraph({ identity: idp, pki, port, enforceSendAs: true });
	for (const address of [ROBOT, ASSISTANT, RECIPIENT, USER, SHARED]) graph.addMailbox({ address });
	idp.addUser({ tenant: TENANT, username: USER, password: USER_PASSWORD });
	return { pki, idp, graph, graphHost };
}

export type GraphPeers = Awaited<ReturnType<typeof startGraphPeers>>;

/** An app registration with Graph application permissions and an RBAC scope on `mailboxes`. */
export function registerGraphApp(peers: GraphPeers, options: { roles?: string[]; mailboxes?: string[] } = {}) {
	const clientId = randomUUID();
	const secret = `graph-app-secret-${randomUUID()}`;
	peers.idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }], appRoles: options.roles ?? ['Mail.Send', 'Mail.ReadWrite'] });
	for (const mailbox of options.mailboxes ?? [ROBOT]) peers.idp.grantMailbox({ tenant: TENANT, clientId, mailbox });
	return { clientId, secret };
}

export function appOnlyGraphCredential(peers: GraphPeers, app: { clientId: string; secret: string }, overrides: Record<string, unknown> = {}) {
	return {
		modernAuthMicrosoftAppOnlyApi: {
			id: `graph${app.clientId.slice(0, 11)}`,
			name: 'Contoso Graph app-only',
			data: {
				tenantId: TENANT,
				clientId: app.clientId,
				authType: 'secret',
				clientSecret: app.secret,
				cloud: 'custom',
				authorityHost: peers.idp.authorityHost,
				graphHost: peers.graphHost,
				mailbox: ROBOT,
				...overrides,
			},
		},
	};
}

/** Every access token the identity platform issued: none may show up in a node's output. */
export function issuedTokens(peers: GraphPeers): string[] {
	return peers.idp.issuedTokens as string[];
}

export const GRAPH_DELEGATED_SCOPE =
	'https://graph.microsoft.com/Mail.ReadWrite https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/Mail.ReadWrite.Shared https://graph.microsoft.com/Mail.Send.Shared offline_access';

/** An app registration for "Connect my account"; the user may open SHARED (Full Access / Send As). */
export function registerDelegatedApp(peers: GraphPeers) {
	const clientId = randomUUID();
	const secret = `delegated-graph-${randomUUID()}`;
	peers.idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }], redirectUris: ['http://localhost:5678/rest/oauth2-credential/callback'] });
	peers.idp.grantMailbox({ tenant: TENANT, username: USER, mailbox: SHARED });
	return { clientId, secret };
}

/** What n8n stores after "Connect my account" with Use For = Microsoft Graph Mail (tokens from the password grant here). */
export async function delegatedGraphData(peers: GraphPeers, app: { clientId: string; secret: string }, overrides: Record<string, unknown> = {}) {
	const response = await fetch(peers.idp.tokenEndpoint(TENANT), {
		method: 'POST',
		headers: { 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({ grant_type: 'password', client_id: app.clientId, client_secret: app.secret, username: USER, password: USER_PASSWORD, scope: GRAPH_DELEGATED_SCOPE }),
	});
	if (response.status !== 200) throw new Error(`password grant failed: ${response.status} ${await response.text()}`);
	const tokens = (await response.json()) as { access_token: string; refresh_token: string };
	return {
		grantType: 'authorizationCode',
		clientId: app.clientId,
		clientSecret: app.secret,
		authUrl: `${peers.idp.authorityHost}/${TENANT}/oauth2/v2.0/authorize`,
		accessTokenUrl: peers.idp.tokenEndpoint(TENANT),
		scope: GRAPH_DELEGATED_SCOPE,
		authentication: 'body',
		cloud: 'custom',
		authorityHost: peers.idp.authorityHost,
		graphHost: peers.graphHost,
		tenant: TENANT,
		useFor: 'graph',
		mailbox: '',
		oauthTokenData: { ...tokens, token_type: 'Bearer' },
		...overrides,
	};
}
