import type { Connection } from '../../connections/connection';
import type { MailReader } from '../../transports/contracts';

/**
 * The readers of one execution: one connection per distinct mailbox, opened when the first
 * item asks for it and shared by the items after it (a failed sign-in is not retried for
 * every item). The credential is the node's (item 0's Authentication). closeAll() ends them.
 */
export class ReaderPool {
	private readonly readers = new Map<string, Promise<MailReader>>();

	constructor(private readonly connection: Connection) {}

	get secrets(): string[] {
		return this.connection.secrets;
	}

	get warning(): string | undefined {
		return this.connection.warning;
	}

	/** The connected reader for the mailbox `requested` resolves to. */
	async reader(requested: string): Promise<MailReader> {
		const mailbox = await this.connection.mailboxFor(requested);
		const key = mailbox.toLowerCase();
		let reader = this.readers.get(key);
		if (!reader) {
			const created = readerOf(this.connection, mailbox);
			reader = created.connect().then(() => created);
			// closeAll() must not meet an unhandled rejection of a failed sign-in
			reader.catch(() => {});
			this.readers.set(key, reader);
		}
		const connected = await reader;
		// An earlier item's connection may have been reset or timed out: the next item gets a new one.
		if (!connected.connected) await connected.reconnect();
		return connected;
	}

	async closeAll(): Promise<void> {
		const readers = [...this.readers.values()];
		this.readers.clear();
		await Promise.all(readers.map((reader) => reader.then((r) => r.close(), () => undefined)));
	}
}

/** A reader for one mailbox (not yet connected). */
export function readerOf(connection: Connection, mailbox: string): MailReader {
	if (!connection.reader) throw new Error('This Authentication cannot read mail');
	return connection.reader(mailbox);
}
