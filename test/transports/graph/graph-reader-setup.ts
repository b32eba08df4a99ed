import { randomUUID } from 'node:crypto';

import { appOnlyTokenProvider } from '../../../auth/app-only-token-provider';
import { resolveCloud } from '../../../auth/clouds';
import { createGraphClient } from '../../../transports/graph/graph-client';
import { GraphReader } from '../../../transports/graph/graph-reader';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeGraph } = require('../../peers/fake-graph');

export const TENANT = '3a1c2b7e-3d4a-4c5b-9e8f-0a1b2c3d4e5f';
export const MAILBOX = 'reader@contoso.example';
const SECRET = 'graph-reader-secret-value';

/** A fake identity platform and a fake Graph over HTTPS, and readers for one app-only mailbox. */
export async function startGraphPeers() {
	const pki = sharedTestPki();
	const idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	const graph = await startFakeGraph({ identity: idp, pki });
	graph.addMailbox({ address: MAILBOX });
	const clientId = randomUUID();
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: SECRET }], appRoles: ['Mail.ReadWrite'] });
	idp.grantMailbox({ tenant: TENANT, clientId, mailbox: MAILBOX });
	// Tokens for Graph's own audience (https://graph.microsoft.com) from the fake identity;
	// requests go to the fake Graph's address.
	const cloud = resolveCloud('custom', { authorityHost: idp.authorityHost });
	const tokens = appOnlyTokenProvider({ tenantId: TENANT, clientId, clientSecret: SECRET, cloud });
	const readers: GraphReader[] = [];
	return {
		pki,
		idp,
		graph,
		/** A new reader (as after an n8n restart: nothing shared but the stored cursor). */
		reader(): GraphReader {
			const client = createGraphClient({ graphHost: graph.url, tokens, mailbox: MAILBOX, trust: { rejectUnauthorized: true, ca: pki.ca }, retry: { retryAfterScale: 0.01, firstBackoffMs: 5 } });
			const reader = new GraphReader(client);
			readers.push(reader);
			return reader;
		},
		/** Requests the fake Graph received since `from` (an index into its log), Graph calls only. */
		requestsSince(from: number): Array<{ method: string; path: string; query: string; status: number | null; batch: string | null }> {
			return graph.requests.slice(from);
		},
		async close() {
			for (const reader of readers) await reader.close();
			await graph?.close();
			await idp?.close();
		},
	};
}

export type GraphPeers = Awaited<ReturnType<typeof startGraphPeers>>;
