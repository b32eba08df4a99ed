/**
 * The package's Graph side as a node gets it: the app-only Graph connection kind (credential
 * parsing, MSAL token provider, Graph client with retry and the per-mailbox limiter), and the
 * sender and reader it builds. Benchmarks use only the fixed contracts (ConnectionKind,
 * Connection, MailSender, MailReader).
 */
import type { MailReader, MailSender } from '../transports/contracts';
import { microsoftAppOnlyGraph } from '../connections/microsoft-graph-app-only';

export interface PackageGraph {
	sender(mailbox: string, maxConnections: number): Promise<MailSender>;
	reader(mailbox: string): Promise<MailReader>;
}

export async function openPackageGraph(credential: Record<string, unknown>): Promise<PackageGraph> {
	const connection = await microsoftAppOnlyGraph.open(credential, {});
	return {
		async sender(mailbox, maxConnections) {
			if (!connection.identityFor || !connection.sender) throw new Error('the Graph connection builds no sender');
			const identity = await connection.identityFor(mailbox);
			return connection.sender(identity, { maxConnections, retry: {} });
		},
		async reader(mailbox) {
			if (!connection.reader) throw new Error('the Graph connection builds no reader');
			return connection.reader(await connection.mailboxFor(mailbox));
		},
	};
}
