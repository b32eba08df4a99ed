import type { ImapFlow } from 'imapflow';

import { ActionableError } from '../../model/actionable-error';
import type { IncomingMessage, PostAction, ReadFilter, UnreadableMessage } from '../../model/incoming-message';
import type { FetchOptions, FolderChanges, FolderInfo, FolderStatus, MailReader, PostActionOptions, PostActionOutcome } from '../contracts';
import { changesSince } from './changes';
import { closeConnection, openConnection } from './connect';
import { describeImapError } from './errors';
import { fetchMessages } from './fetch';
import { assertFolderExists, listFolders, openFolder, type OpenedFolder } from './folders';
import { imapId, uidOf } from './ids';
import type { ImapReaderOptions } from './options';
import { applyPostAction, confirmAfterReconnect, type UidOutcome } from './post-actions';
import { parseRawSearch, selectUids } from './search';

export type { ImapAuth, ImapReaderOptions, ImapSecurity } from './options';
export { STREAM_ABOVE_BYTES } from './fetch';

/**
 * Reads one mailbox over IMAP (imapflow for the protocol, mailparser for the messages). A thin
 * facade over one module per command: it owns the connection and the selected folder, so its
 * callers speak in folder paths and opaque ids (`<uidValidity>:<uid>`) and never carry
 * UIDVALIDITY around. One connection per reader; close() always ends it.
 */
export class ImapReader implements MailReader {
	readonly name = 'imap';
	private client?: ImapFlow;
	private selected?: OpenedFolder;

	constructor(private readonly options: ImapReaderOptions) {}

	async connect(): Promise<void> {
		this.selected = undefined;
		this.client = await openConnection(this.options);
	}

	async verify(): Promise<void> {
		if (!this.connected) await this.connect();
		await this.listFolders();
	}

	async listFolders(): Promise<FolderInfo[]> {
		return await this.guard(() => listFolders(this.imap));
	}

	/** SELECT (read-only, EXAMINE) of the folder: its message count, and the unseen ones by SEARCH UNSEEN. */
	async status(folder: string): Promise<FolderStatus> {
		const opened = await this.open(folder, { readOnly: true, fresh: true });
		const unseen = await this.guard(() => this.imap.search({ seen: false }, { uid: true }));
		return { path: opened.path, total: opened.exists, unread: unseen ? unseen.length : 0 };
	}

	async search(folder: string, filter: ReadFilter, order: { newestFirst: boolean; limit: number }): Promise<string[]> {
		// A malformed raw search is refused before anything is read, and cannot smuggle in a command.
		if (filter.rawQuery?.trim()) await parseRawSearch(filter.rawQuery.trim());
		// Opened afresh: SELECT/EXAMINE brings the folder's current state.
		const opened = await this.open(folder, { readOnly: true, fresh: true });
		const uids = await this.guard(() => selectUids(this.imap, filter, order));
		return uids.map((uid) => imapId(opened.uidValidity, uid));
	}

	/**
	 * Ascending UID order, larger messages last (see fetchMessages). Ids of another UIDVALIDITY
	 * (the folder was renumbered) name no message here and are left out, like deleted ones.
	 */
	async *fetch(folder: string, ids: string[], options: FetchOptions = {}): AsyncGenerator<IncomingMessage | UnreadableMessage> {
		if (ids.length === 0) return;
		const opened = await this.open(folder, { readOnly: true });
		const uids = this.uidsOf(ids, opened);
		try {
			yield* fetchMessages({ client: this.imap, folder, uidValidity: opened.uidValidity }, uids, options);
		} catch (error) {
			throw this.describe(error);
		}
	}

	/**
	 * Applies a post-action (folder opened read-write for it) and says per id what the server
	 * did; a refusal or a lost connection is an outcome, not an exception (see post-actions.ts).
	 */
	async apply(folder: string, ids: string[], action: PostAction, options: PostActionOptions = {}): Promise<PostActionOutcome[]> {
		if (ids.length === 0 || action.type === 'none') return [];
		let opened = await this.open(folder, { readOnly: false, fresh: true });
		if (action.type === 'move') await this.guard(() => assertFolderExists(this.imap, action.folder, ' to move to'));
		const uids = this.uidsOf(ids, opened);
		let outcomes = await applyPostAction(this.imap, uids, action, options);
		const unconfirmed = outcomes.filter((o) => o.unconfirmed).map((o) => o.uid);
		if (unconfirmed.length) {
			// The connection failed before the server's answer: reconnect once and look.
			try {
				await this.reconnect();
				const reopened = await this.open(folder, { readOnly: false, fresh: true });
				if (reopened.uidValidity === opened.uidValidity) {
					opened = reopened;
					const confirmed = new Map((await confirmAfterReconnect(this.imap, unconfirmed, action, options)).map((o) => [o.uid, o]));
					outcomes = outcomes.map((o) => confirmed.get(o.uid) ?? o);
				}
			} catch {
				// still unknown: the outcomes say so
			}
		}
		const byUid = new Map(outcomes.map((o) => [o.uid, o]));
		return ids.map((id) => {
			const uid = uidOf(id, opened.uidValidity);
			const outcome = uid === undefined ? undefined : byUid.get(uid);
			return outcome ? toOutcome(id, outcome) : { id, done: false, reason: 'not in this folder (it was renumbered, or the id is not from it)' };
		});
	}

	async changesSince(folder: string, cursor: string | undefined): Promise<FolderChanges> {
		const opened = await this.open(folder, { readOnly: true, fresh: true });
		return await this.guard(() => changesSince(this.imap, opened, cursor));
	}

	/** Whether the connection is still open and signed in (a reset or time-out ends it). */
	get connected(): boolean {
		return Boolean(this.client?.usable);
	}

	async reconnect(): Promise<void> {
		await this.close();
		await this.connect();
	}

	async close(): Promise<void> {
		const client = this.client;
		this.client = undefined;
		this.selected = undefined;
		if (client) await closeConnection(client);
	}

	private get imap(): ImapFlow {
		if (!this.client) throw new Error('IMAP reader used before connect()');
		return this.client;
	}

	/** The folder, selected in the mode asked; kept selected between calls unless `fresh`. */
	private async open(folder: string, how: { readOnly: boolean; fresh?: boolean }): Promise<OpenedFolder> {
		const current = this.selected;
		if (!how.fresh && current && current.path === folder && current.readOnly === how.readOnly && this.connected) return current;
		this.selected = undefined;
		this.selected = await this.guard(() => openFolder(this.imap, folder, how.readOnly));
		return this.selected;
	}

	private uidsOf(ids: string[], opened: OpenedFolder): number[] {
		return ids.flatMap((id) => {
			const uid = uidOf(id, opened.uidValidity);
			return uid === undefined ? [] : [uid];
		});
	}

	private async guard<T>(work: () => Promise<T>): Promise<T> {
		try {
			return await work();
		} catch (error) {
			throw this.describe(error);
		}
	}

	private describe(error: unknown): ActionableError {
		return describeImapError(error, this.options);
	}
}

function toOutcome(id: string, outcome: UidOutcome): PostActionOutcome {
	const { done, reason, unconfirmed, newUid, newUidValidity } = outcome;
	return {
		id,
		done,
		...(reason !== undefined ? { reason } : {}),
		...(unconfirmed ? { unconfirmed } : {}),
		...(newUid !== undefined ? { newUid } : {}),
		...(newUid !== undefined && newUidValidity !== undefined ? { newId: imapId(newUidValidity, newUid) } : {}),
	};
}
