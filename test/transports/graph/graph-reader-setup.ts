import { appOnlyTokenProvider } from '../../../auth/app-only-token-provider';
import { createGraphClient } from '../../../transports/graph/graph-client';
import { GraphReader } from '../../../transports/graph/graph-reader';
import { startGraphFixture, TENANT } from './graph-fixture';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../../peers/certs');

export const MAILBOX = 'reader@contoso.example';

/**
 * The fake Graph and identity as the sender tests wire them (graph-fixture.ts: the Custom
 * cloud's graphHost is the fake Graph), with readers for one app-only mailbox.
 */
export async function startGraphPeers() {
	const pki = sharedTestPki();
	const fixture = await startGraphFixture({ roles: ['Mail.ReadWrite'], mailboxes: [{ address: MAILBOX }] });
	const tokens = appOnlyTokenProvider({ tenantId: TENANT, clientId: fixture.clientId, clientSecret: fixture.secret, cloud: fixture.cloud });
	const readers: GraphReader[] = [];
	return {
		pki,
		idp: fixture.idp,
		graph: fixture.graph,
		/** A new reader (as after an n8n restart: nothing shared but the stored cursor). */
		reader(): GraphReader {
			const client = createGraphClient({
				graphHost: fixture.cloud.graphHost,
				tokens,
				mailbox: MAILBOX,
				trust: { rejectUnauthorized: true, ca: pki.ca },
				retry: { firstBackoffMs: 20, maxBackoffMs: 200, retryAfterScale: 0.05 },
			});
			const reader = new GraphReader(client);
			readers.push(reader);
			return reader;
		},
		/** What the fake Graph logged since `from` (an index into its request log). */
		requestsSince(from: number): Array<{ method: string; path: string; query: string; status: number | null; batch: string | null }> {
			return fixture.graph.requests.slice(from);
		},
		async close() {
			for (const reader of readers) await reader.close();
			await fixture.close();
		},
	};
}

export type GraphPeers = Awaited<ReturnType<typeof startGraphPeers>>;
