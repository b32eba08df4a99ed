import {
	NodeConnectionTypes,
	NodeOperationError,
	type IDataObject,
	type INodeExecutionData,
	type INodeType,
	type INodeTypeDescription,
	type IPollFunctions,
} from 'n8n-workflow';

import type { Connection } from '../../connections/connection';
import { authenticationNotices, credentialsFor } from '../../connections/registry';
import { checkFolderName } from '../../model/validate';
import { DEFAULT_MESSAGE_TIMEOUT_MS, type MailReader } from '../../transports/contracts';
import { BinaryDataSink, outputOptions, toItem, type ReadRequest } from '../ModernAuthReadMailbox/actions/read-request';
import { readMailboxProperties } from '../ModernAuthReadMailbox/description';
import { describeItemError } from '../shared/node-errors';
import { credentialTestMethods, openConnection } from '../shared/open-connection';
import { readerOf } from '../shared/reader-pool';
import { countFailure, dropFromCarry, forget, giveUpExhausted, settle, unique, upgradeFolderState, type FolderState } from './folder-state';

export { SKIPPED_KEPT, type FolderState } from './folder-state';

/** Messages per execution: a larger backlog is emitted as several executions of this size. */
export const BATCH_SIZE = 500;
/** Most messages one poll emits (in batches); the rest follow in the next polls. */
export const MAX_PER_POLL = 20 * BATCH_SIZE;
/** Messages per FETCH, so a poll can stop between two of them when its time budget runs out. */
const FETCH_CHUNK = 50;
export const DEFAULT_MAX_ATTEMPTS = 3;

const shared = (name: string) => readMailboxProperties.find((p) => p.name === name)!;

export class ModernAuthReadMailboxTrigger implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Read Mailbox (Modern Auth) Trigger',
		name: 'modernAuthReadMailboxTrigger',
		icon: { light: 'file:../../icons/mail.svg', dark: 'file:../../icons/mail.dark.svg' },
		group: ['trigger'],
		version: 1,
		subtitle: '={{$parameter["folder"]}}',
		description: 'Starts the workflow once for every new message in a folder (IMAP, Microsoft Graph, Microsoft 365 OAuth, EWS)',
		defaults: { name: 'Read Mailbox (Modern Auth) Trigger' },
		polling: true,
		inputs: [],
		outputs: [NodeConnectionTypes.Main],
		credentials: credentialsFor('read'),
		properties: [
			shared('authentication'),
			...authenticationNotices('read'),
			{ ...shared('folder'), type: 'string', typeOptions: undefined, description: 'Folder to watch, e.g. INBOX' },
			{
				displayName: 'Include Existing Unread Messages',
				name: 'includeExistingUnread',
				type: 'boolean',
				default: false,
				description:
					'Whether the first poll after activation also emits messages that are already unread. Off: only mail that arrives after activation.',
			},
			{
				displayName: 'Attempts Before Skipping a Message',
				name: 'maxAttempts',
				type: 'number',
				typeOptions: { minValue: 1 },
				default: DEFAULT_MAX_ATTEMPTS,
				description:
					'A message that fails this many polls in a row (it cannot be parsed, its attachments cannot be stored, ...) is emitted once as an item with "error" and skipped, so later mail still flows',
			},
			shared('options'),
		],
	};

	methods = {
		credentialTest: credentialTestMethods('read'),
	};

	async poll(this: IPollFunctions): Promise<INodeExecutionData[][] | null> {
		const deadline = pollDeadline(this);
		const authentication = String(this.getNodeParameter('authentication'));
		// Not trimmed: " Archive" and "Archive" can both exist; control characters are refused.
		const folder = watchedFolder(this);
		const options = this.getNodeParameter('options', {}) as IDataObject;
		const request: ReadRequest = {
			authentication,
			mailbox: String(options.mailbox ?? ''),
			folder,
			limit: MAX_PER_POLL,
			newestFirst: false,
			filter: {},
			postAction: { type: 'none' },
			...outputOptions(options),
		};
		const manual = this.getMode() === 'manual';
		const state = this.getWorkflowStaticData('node') as { folders?: Record<string, FolderState> };
		state.folders ??= {};

		let connection: Connection | undefined;
		let reader: MailReader | undefined;
		try {
			connection = await openConnection(this, authentication);
			reader = readerOf(connection, await connection.mailboxFor(request.mailbox));
			// No connection is kept between polls: open, read, close.
			await reader.connect();

			if (manual) {
				// "Fetch test event": show the newest message, leave the trigger's state alone.
				const ids = await reader.search(folder, {}, { newestFirst: true, limit: 1 });
				const sink = new BinaryDataSink(this, request);
				const { items } = await emit(this, reader, sink, folder, ids, request, Infinity, () => {});
				return items.length ? [items] : null;
			}

			const maxAttempts = Math.max(1, Math.floor(Number(this.getNodeParameter('maxAttempts', DEFAULT_MAX_ATTEMPTS))) || DEFAULT_MAX_ATTEMPTS);
			const saved = upgradeFolderState(state.folders[folder]);
			const changes = await reader.changesSince(folder, saved?.cursor);
			let current: FolderState;
			if (changes.baseline) {
				// First activation, or the reader no longer accepts the cursor (IMAP: the server
				// renumbered the folder): start from now instead of replaying the whole folder as new mail.
				state.folders[folder] = { cursor: changes.cursor };
				if (!(changes.baseline === 'first' && this.getNodeParameter('includeExistingUnread', false))) return null;
				const unread = await reader.search(folder, { unreadOnly: true }, { newestFirst: false, limit: Number.MAX_SAFE_INTEGER });
				// Mail that arrived during the search is after the baseline cursor: move the cursor past
				// it now, so the next poll does not bring it a second time.
				const since = await reader.changesSince(folder, changes.cursor);
				if (since.baseline) {
					state.folders[folder] = { cursor: since.cursor };
					return null;
				}
				current = { cursor: since.cursor };
				const carry = unique([...unread, ...since.ids]);
				if (carry.length) current.carry = carry;
			} else {
				current = saved!;
				current.cursor = changes.cursor;
				const carry = unique([...(current.carry ?? []), ...changes.ids]);
				if (carry.length) current.carry = carry;
			}
			state.folders[folder] = current;
			// Messages whose attempts failed polls used up are emitted as error items, not fetched again.
			let batch = giveUpExhausted(current, maxAttempts);
			const ids = (current.carry ?? []).slice(0, MAX_PER_POLL);
			const sink = new BinaryDataSink(this, request);
			// Only one batch is in memory at a time: each but the last starts its own execution
			// (n8n saves the advanced static data with it), the last is this poll's result.
			let pending = ids;
			while (pending.length) {
				// Out of time budget: the rest is the next poll's (the first batch always runs, so polls progress).
				if (pending !== ids && Date.now() >= deadline) break;
				const chunk = pending.slice(0, BATCH_SIZE);
				const { items, unprocessed, gone } = await emit(this, reader, sink, folder, chunk, request, deadline, (id, error) =>
					countFailure(current, id, error, maxAttempts),
				);
				pending = unprocessed.length ? [] : pending.slice(chunk.length);
				const { out, settled } = settle(current, items, maxAttempts);
				batch.push(...out);
				// Emitted or given up on leaves `carry`; failing ones stay for the next poll, and so
				// does what the time budget left (`unprocessed`).
				dropFromCarry(current, settled);
				forget(current, gone);
				if (pending.length && batch.length) {
					this.__emit([batch]);
					batch = [];
				}
			}
			return batch.length ? [batch] : null;
		} catch (error) {
			const { message, hint } = describeItemError(error, connection?.secrets ?? []);
			throw new NodeOperationError(this.getNode(), message, { description: hint });
		} finally {
			// n8n marks static data changed only through its watched object: a folders object made on
			// first activation is not watched, so reassign it or later cursors are never saved.
			state.folders = { ...state.folders };
			await reader?.close();
		}
	}
}

/** When this poll should stop fetching: n8n 2.x gives each poll a time budget (1.x has none). */
function pollDeadline(ctx: IPollFunctions): number {
	const budget = (ctx as { getPollBudgetMs?: () => number }).getPollBudgetMs;
	if (typeof budget !== 'function') return Infinity;
	const ms = Number(budget.call(ctx));
	if (!Number.isFinite(ms) || ms <= 0) return Infinity;
	// Leave a margin for the batch in flight, closing the connection and emitting.
	return Date.now() + ms - Math.min(30_000, ms / 5);
}

/**
 * Fetches the ids in order, FETCH_CHUNK at a time, until the deadline. If the connection
 * drops midway, reconnects once and resumes after the last message already read, so nothing
 * is skipped or read twice. `unprocessed`: the ids left for later (deadline reached); `gone`:
 * ids the reader left out because they no longer exist.
 */
async function emit(
	ctx: IPollFunctions,
	reader: MailReader,
	sink: BinaryDataSink,
	folder: string,
	ids: string[],
	request: ReadRequest,
	deadline: number,
	/** The poll fails at this message (the first not read): counted as its attempt. */
	onStuck: (id: string, error: unknown) => void,
): Promise<{ items: INodeExecutionData[]; unprocessed: string[]; gone: string[] }> {
	const items: INodeExecutionData[] = [];
	const gone: string[] = [];
	let queue = ids;
	let reconnected = false;
	// The first chunk always runs, so a poll makes progress however small its budget.
	while (queue.length && (queue === ids || Date.now() < deadline)) {
		const chunk = queue.slice(0, FETCH_CHUNK);
		const done = new Set<string>();
		// A message that stalls may not take longer than what is left of the budget.
		const timeoutMs = Math.min(DEFAULT_MESSAGE_TIMEOUT_MS, Math.max(1000, deadline - Date.now()));
		try {
			for await (const message of reader.fetch(folder, chunk, { ...request.fetch, sink, limits: { timeoutMs } })) {
				done.add(message.id);
				items.push(toItem(message, sink, 0, request));
			}
			gone.push(...chunk.filter((id) => !done.has(id)));
			queue = queue.slice(chunk.length);
		} catch (error) {
			// Resume with the messages of this chunk not read yet.
			queue = queue.filter((id) => !done.has(id));
			if (reconnected) {
				if (queue.length) onStuck(queue[0], error);
				throw error;
			}
			reconnected = true;
			await reader.reconnect();
		}
	}
	for (const item of items) delete item.pairedItem;
	// Oldest first, as the mail arrived (the reader may bring large messages last).
	const position = new Map(ids.map((id, index) => [id, index]));
	items.sort((a, b) => position.get(String(a.json.id))! - position.get(String(b.json.id))!);
	return { items, unprocessed: queue, gone };
}

function watchedFolder(ctx: IPollFunctions): string {
	const name = String(ctx.getNodeParameter('folder', 'INBOX'));
	if (!name.trim()) return 'INBOX';
	try {
		return checkFolderName('Folder', name, 'Name the folder to watch, e.g. INBOX');
	} catch (error) {
		const { message, hint } = describeItemError(error, []);
		throw new NodeOperationError(ctx.getNode(), message, { description: hint });
	}
}
