import {
	NodeConnectionTypes,
	NodeOperationError,
	type IDataObject,
	type INodeExecutionData,
	type INodeType,
	type INodeTypeDescription,
	type IPollFunctions,
} from 'n8n-workflow';

import type { ImapReader } from '../../transports/imap/imap-reader';
import { DEFAULT_PARSE_TIMEOUT_MS } from '../../transports/imap/parse-message';
import { BinaryDataSink, isErrorItem, outputOptions, toItem, type ReadRequest } from '../ModernAuthReadMailbox/actions/read-request';
import { readMailboxProperties } from '../ModernAuthReadMailbox/description';
import { APP_ONLY_CREDENTIAL, DELEGATED_CREDENTIAL } from '../shared/microsoft-connection';
import { checkFolderName } from '../../model/validate';
import { describeItemError } from '../shared/node-errors';
import { IMAP_CREDENTIAL, prepareReader, type ReadAuthentication } from '../shared/open-reader';

/** Messages per execution: a larger backlog is emitted as several executions of this size. */
export const BATCH_SIZE = 500;
/** Most messages one poll emits (in batches); the rest follow in the next polls. */
export const MAX_PER_POLL = 20 * BATCH_SIZE;
/** Messages per FETCH, so a poll can stop between two of them when its time budget runs out. */
const FETCH_CHUNK = 50;
/** How many skipped messages the state remembers (the newest), so it stays small. */
export const SKIPPED_KEPT = 50;
export const DEFAULT_MAX_ATTEMPTS = 3;

/** What the trigger remembers per folder, in the workflow's static data. */
export interface FolderState {
	uidValidity: number;
	/** Every UID up to this one was emitted or given up on, except those in `failing`. */
	lastUid: number;
	/**
	 * UIDs at or below lastUid still to emit: the existing unread mail of the first activation,
	 * or messages a poll cut short by its time budget did not get to.
	 */
	carry?: number[];
	/** Messages that failed and are retried by later polls: UID -> attempts and last reason. */
	failing?: Record<string, { attempts: number; reason: string; code: string; subject?: string }>;
	/** The newest messages given up on after the last attempt (at most SKIPPED_KEPT). */
	skipped?: Array<{ uid: number; subject?: string; reason: string; attempts: number; at: string }>;
}

const shared = (name: string) => readMailboxProperties.find((p) => p.name === name)!;

export class ModernAuthReadMailboxTrigger implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Read Mailbox (Modern Auth) Trigger',
		name: 'modernAuthReadMailboxTrigger',
		icon: { light: 'file:../../icons/mail.svg', dark: 'file:../../icons/mail.dark.svg' },
		group: ['trigger'],
		version: 1,
		subtitle: '={{$parameter["folder"]}}',
		description: 'Starts the workflow once for every new message in a folder (IMAP, Microsoft 365 OAuth)',
		defaults: { name: 'Read Mailbox (Modern Auth) Trigger' },
		polling: true,
		inputs: [],
		outputs: [NodeConnectionTypes.Main],
		credentials: [
			{ name: IMAP_CREDENTIAL, required: true, displayOptions: { show: { authentication: ['imap'] } } },
			{ name: APP_ONLY_CREDENTIAL, required: true, displayOptions: { show: { authentication: ['microsoftAppOnly'] } } },
			{ name: DELEGATED_CREDENTIAL, required: true, displayOptions: { show: { authentication: ['microsoftDelegated'] } } },
		],
		properties: [
			shared('authentication'),
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

	async poll(this: IPollFunctions): Promise<INodeExecutionData[][] | null> {
		const deadline = pollDeadline(this);
		const authentication = this.getNodeParameter('authentication') as ReadAuthentication;
		// Not trimmed: " Archive" and "Archive" can both exist; control characters are refused.
		const folder = watchedFolder(this);
		const options = this.getNodeParameter('options', {}) as IDataObject;
		const request: ReadRequest = {
			authentication,
			mailbox: String(options.mailbox ?? ''),
			folder,
			limit: MAX_PER_POLL,
			newestFirst: false,
			criteria: {},
			postAction: { type: 'none' },
			...outputOptions(options),
		};
		const manual = this.getMode() === 'manual';
		const state = this.getWorkflowStaticData('node') as { folders?: Record<string, FolderState> };
		state.folders ??= {};

		let setup;
		try {
			setup = await prepareReader(this as never, authentication, request.mailbox);
			// No connection is kept between polls: open, read, close.
			await setup.reader.connect();
			const { uidValidity, uidNext } = await setup.reader.openFolder(folder);
			const saved = state.folders[folder];

			if (manual) {
				// "Fetch test event": show the newest message, leave the trigger's state alone.
				const uids = (await setup.reader.search({})).slice(-1);
				const sink = new BinaryDataSink(this, request);
				const { items } = await emit(this, setup.reader, sink, folder, uidValidity, uids, request, Infinity, () => {});
				return items.length ? [items] : null;
			}

			const maxAttempts = Math.max(1, Math.floor(Number(this.getNodeParameter('maxAttempts', DEFAULT_MAX_ATTEMPTS))) || DEFAULT_MAX_ATTEMPTS);
			let uids: number[];
			if (!saved || saved.uidValidity !== uidValidity) {
				// First activation, or the server renumbered the folder (UIDVALIDITY changed): start
				// from now instead of replaying the whole folder as new mail.
				const firstActivation = !saved;
				state.folders[folder] = { uidValidity, lastUid: Math.max(0, uidNext - 1) };
				if (!(firstActivation && this.getNodeParameter('includeExistingUnread', false))) return null;
				uids = await setup.reader.search({ unreadOnly: true });
				if (uids.length) state.folders[folder].lastUid = Math.max(state.folders[folder].lastUid, uids[uids.length - 1]);
				state.folders[folder].carry = uids;
			} else {
				uids = await pendingUids(setup.reader, saved);
			}
			const current = state.folders[folder];
			// Messages whose attempts failed polls used up are emitted as error items, not fetched again.
			let batch = giveUpExhausted(current, maxAttempts);
			const given = new Set(batch.map((item) => Number(item.json.uid)));
			uids = uids.filter((uid) => !given.has(uid)).slice(0, MAX_PER_POLL);
			const sink = new BinaryDataSink(this, request);
			// Only one batch is in memory at a time: each but the last starts its own execution
			// (n8n saves the advanced static data with it), the last is this poll's result.
			let pending = uids;
			while (pending.length) {
				// Out of time budget: the rest is the next poll's (the first batch always runs, so polls progress).
				if (pending !== uids && Date.now() >= deadline) break;
				const chunk = pending.slice(0, BATCH_SIZE);
				const { items, unprocessed } = await emit(this, setup.reader, sink, folder, uidValidity, chunk, request, deadline, (uid, error) =>
					countFailure(current, uid, error, maxAttempts),
				);
				const left = new Set(unprocessed);
				const processed = chunk.filter((uid) => !left.has(uid));
				pending = unprocessed.length ? [] : pending.slice(chunk.length);
				batch.push(...settle(current, items, maxAttempts));
				// Advance past what was emitted or is retried from `failing`; the rest is read next
				// poll, those below the new position (not read after a reconnect) from `carry`.
				if (processed.length) current.lastUid = Math.max(current.lastUid, ...processed);
				const done = new Set(processed);
				const carry = new Set((current.carry ?? []).filter((uid) => !done.has(uid)));
				for (const uid of unprocessed) if (uid <= current.lastUid && !current.failing?.[uid]) carry.add(uid);
				if (carry.size) current.carry = [...carry].sort((a, b) => a - b);
				else delete current.carry;
				if (pending.length && batch.length) {
					this.__emit([batch]);
					batch = [];
				}
			}
			return batch.length ? [batch] : null;
		} catch (error) {
			const { message, hint } = describeItemError(error, setup?.secrets ?? []);
			throw new NodeOperationError(this.getNode(), message, { description: hint });
		} finally {
			await setup?.reader.close();
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

/** New UIDs after lastUid plus the failing and carried ones still in the folder, oldest first. */
async function pendingUids(reader: ImapReader, saved: FolderState): Promise<number[]> {
	const failing = Object.keys(saved.failing ?? {}).map(Number);
	const retry = new Set([...failing, ...(saved.carry ?? [])]);
	const from = Math.min(saved.lastUid, ...[...retry].map((uid) => uid - 1));
	const found = await reader.search({ uidAfter: from });
	const existing = new Set(found);
	// A message deleted meanwhile is forgotten.
	for (const uid of failing) if (!existing.has(uid)) delete saved.failing![uid];
	if (saved.carry) saved.carry = saved.carry.filter((uid) => existing.has(uid));
	return found.filter((uid) => uid > saved.lastUid || retry.has(uid));
}

/**
 * Keeps the items to emit: good messages (clearing their failure count) and unreadable ones
 * on their last attempt (as error items, remembered in `skipped`). Other unreadable ones are
 * counted and left for the next poll.
 */
function settle(state: FolderState, items: INodeExecutionData[], maxAttempts: number): INodeExecutionData[] {
	const out: INodeExecutionData[] = [];
	for (const item of items) {
		const uid = Number(item.json.uid);
		if (!isErrorItem(item)) {
			if (state.failing) delete state.failing[uid];
			out.push(item);
			continue;
		}
		const error = item.json.error as { message: string; code: string };
		const subject = item.json.subject === undefined ? undefined : String(item.json.subject);
		const attempts = countFailure(state, uid, Object.assign(new Error(error.message), { code: error.code }), maxAttempts, subject);
		if (attempts >= maxAttempts) {
			skip(state, uid);
			out.push({ ...item, json: { ...item.json, attempts } });
		}
	}
	return out;
}

/** One more failed attempt for a message; returns the count so far. */
function countFailure(state: FolderState, uid: number, error: unknown, maxAttempts: number, subject?: string): number {
	state.failing ??= {};
	const previous = state.failing[uid];
	const e = error as { message?: string; code?: string };
	const attempts = Math.min(maxAttempts, (previous?.attempts ?? 0) + 1);
	state.failing[uid] = {
		attempts,
		reason: String(e?.message ?? error).slice(0, 500),
		code: typeof e?.code === 'string' ? e.code : 'POLL_FAILED',
		...((subject ?? previous?.subject) !== undefined ? { subject: subject ?? previous?.subject } : {}),
	};
	return attempts;
}

/** Stops retrying a message and remembers it among the newest skipped ones. */
function skip(state: FolderState, uid: number) {
	const entry = state.failing?.[uid];
	if (!entry) return;
	delete state.failing![uid];
	state.skipped = [
		...(state.skipped ?? []),
		{ uid, ...(entry.subject !== undefined ? { subject: entry.subject } : {}), reason: entry.reason, attempts: entry.attempts, at: new Date().toISOString() },
	].slice(-SKIPPED_KEPT);
}

/** Error items for messages whose attempts failed polls used up (reading them gives up in settle). */
function giveUpExhausted(state: FolderState, maxAttempts: number): INodeExecutionData[] {
	const out: INodeExecutionData[] = [];
	for (const [key, entry] of Object.entries(state.failing ?? {})) {
		if (entry.attempts < maxAttempts) continue;
		const uid = Number(key);
		skip(state, uid);
		out.push({
			json: {
				id: `${state.uidValidity}:${uid}`,
				uid,
				...(entry.subject !== undefined ? { subject: entry.subject } : {}),
				attempts: entry.attempts,
				error: { message: entry.reason, code: entry.code, hint: 'Reading this message failed every time; it was skipped' },
			},
		});
	}
	return out;
}

/**
 * Fetches the UIDs in order, FETCH_CHUNK at a time, until the deadline. If the connection
 * drops midway, reconnects once and resumes after the last message already read, so nothing
 * is skipped or read twice. `unprocessed`: the UIDs left for later (deadline reached).
 */
async function emit(
	ctx: IPollFunctions,
	reader: ImapReader,
	sink: BinaryDataSink,
	folder: string,
	uidValidity: number,
	uids: number[],
	request: ReadRequest,
	deadline: number,
	/** The poll fails at this message (the first not read): counted as its attempt. */
	onStuck: (uid: number, error: unknown) => void,
): Promise<{ items: INodeExecutionData[]; unprocessed: number[] }> {
	const items: INodeExecutionData[] = [];
	let queue = uids;
	let reconnected = false;
	// The first chunk always runs, so a poll makes progress however small its budget.
	while (queue.length && (queue === uids || Date.now() < deadline)) {
		const chunk = queue.slice(0, FETCH_CHUNK);
		const done = new Set<number>();
		// A message that stalls may not take longer than what is left of the budget.
		const timeoutMs = Math.min(DEFAULT_PARSE_TIMEOUT_MS, Math.max(1000, deadline - Date.now()));
		try {
			for await (const message of reader.fetch(folder, uidValidity, chunk, { ...request.fetch, sink, limits: { timeoutMs } })) {
				done.add(message.uid!);
				items.push(toItem(message, sink, 0, request));
			}
			queue = queue.slice(chunk.length);
		} catch (error) {
			// Resume with the messages of this chunk not read yet.
			queue = queue.filter((uid) => !done.has(uid));
			if (reconnected) {
				if (queue.length) onStuck(queue[0], error);
				throw error;
			}
			reconnected = true;
			await reader.reconnect();
			const reopened = await reader.openFolder(folder);
			if (reopened.uidValidity !== uidValidity) break;
		}
	}
	for (const item of items) delete item.pairedItem;
	// Oldest first, as the mail arrived (the reader brings large messages last).
	items.sort((a, b) => Number(a.json.uid) - Number(b.json.uid));
	return { items, unprocessed: queue };
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
