import type { INodeExecutionData } from 'n8n-workflow';

import { isErrorItem } from '../ModernAuthReadMailbox/actions/read-request';

/** How many skipped messages the state remembers (the newest), so it stays small. */
export const SKIPPED_KEPT = 50;

/** Why one message failed so far. `uid` only where the message had one (IMAP), for the error item. */
export interface Failure {
	attempts: number;
	reason: string;
	code: string;
	subject?: string;
	uid?: number;
}

/** What the trigger remembers per folder, in the workflow's static data. Message ids are the reader's opaque ids. */
export interface FolderState {
	/** The reader's opaque cursor (MailReader.changesSince): every message before it is emitted, skipped or in `carry`. */
	cursor: string;
	/**
	 * Messages still to emit, oldest first: new mail a poll did not get to (time budget, the
	 * per-poll maximum), the existing unread mail of the first activation, and failing messages.
	 */
	carry?: string[];
	/** Messages that failed and are retried by later polls: id -> attempts and last reason. */
	failing?: Record<string, Failure>;
	/** The newest messages given up on after the last attempt (at most SKIPPED_KEPT). */
	skipped?: Array<{ id: string; uid?: number; subject?: string; reason: string; attempts: number; at: string }>;
}

/** The state this trigger saved before it read through MailReader: IMAP UIDs of one UIDVALIDITY. */
interface LegacyFolderState {
	uidValidity: number;
	lastUid: number;
	carry?: number[];
	failing?: Record<string, Omit<Failure, 'uid'>>;
	skipped?: Array<{ uid: number; subject?: string; reason: string; attempts: number; at: string }>;
}

function isLegacy(saved: unknown): saved is LegacyFolderState {
	const state = saved as Partial<LegacyFolderState> | undefined;
	return typeof state?.uidValidity === 'number' && typeof state.lastUid === 'number' && !('cursor' in state);
}

/**
 * The state of a version before MailReader, in today's shape, so the first poll after the
 * upgrade neither re-emits nor loses anything. Then every Authentication read over IMAP; the
 * ids and the cursor written here are exactly the IMAP reader's (`<uidValidity>:<uid>`,
 * `{"uidValidity","lastUid"}`, transports/imap/ids.ts), which this node otherwise never reads
 * into. Failing messages join `carry` in UID order, where they are retried from now on.
 */
export function upgradeFolderState(saved: unknown): FolderState | undefined {
	if (!isLegacy(saved)) return saved as FolderState | undefined;
	const id = (uid: number) => `${saved.uidValidity}:${uid}`;
	const failingUids = Object.keys(saved.failing ?? {}).map(Number);
	const carry = [...new Set([...(saved.carry ?? []), ...failingUids])].sort((a, b) => a - b).map(id);
	return {
		cursor: JSON.stringify({ uidValidity: saved.uidValidity, lastUid: saved.lastUid }),
		...(carry.length ? { carry } : {}),
		...(saved.failing ? { failing: Object.fromEntries(Object.entries(saved.failing).map(([uid, entry]) => [id(Number(uid)), { ...entry, uid: Number(uid) }])) } : {}),
		...(saved.skipped ? { skipped: saved.skipped.map(({ uid, ...entry }) => ({ id: id(uid), uid, ...entry })) } : {}),
	};
}

/** Ids once each, first occurrence kept. */
export const unique = (ids: string[]) => [...new Set(ids)];

export function dropFromCarry(state: FolderState, ids: Iterable<string>): void {
	const drop = new Set(ids);
	if (!state.carry || drop.size === 0) return;
	state.carry = state.carry.filter((id) => !drop.has(id));
	if (state.carry.length === 0) delete state.carry;
}

/**
 * Keeps the items to emit: good messages (clearing their failure count) and unreadable ones
 * on their last attempt (as error items, remembered in `skipped`). Other unreadable ones are
 * counted and stay for the next poll. `settled`: the ids done with either way.
 */
export function settle(state: FolderState, items: INodeExecutionData[], maxAttempts: number): { out: INodeExecutionData[]; settled: string[] } {
	const out: INodeExecutionData[] = [];
	const settled: string[] = [];
	for (const item of items) {
		const id = String(item.json.id);
		if (!isErrorItem(item)) {
			if (state.failing) delete state.failing[id];
			out.push(item);
			settled.push(id);
			continue;
		}
		const error = item.json.error as { message: string; code: string };
		const subject = item.json.subject === undefined ? undefined : String(item.json.subject);
		const uid = typeof item.json.uid === 'number' ? item.json.uid : undefined;
		const attempts = countFailure(state, id, Object.assign(new Error(error.message), { code: error.code }), maxAttempts, { subject, uid });
		if (attempts >= maxAttempts) {
			skip(state, id);
			out.push({ ...item, json: { ...item.json, attempts } });
			settled.push(id);
		}
	}
	return { out, settled };
}

/** One more failed attempt for a message; returns the count so far. */
export function countFailure(state: FolderState, id: string, error: unknown, maxAttempts: number, known: { subject?: string; uid?: number } = {}): number {
	state.failing ??= {};
	const previous = state.failing[id];
	const e = error as { message?: string; code?: string };
	const attempts = Math.min(maxAttempts, (previous?.attempts ?? 0) + 1);
	const subject = known.subject ?? previous?.subject;
	const uid = known.uid ?? previous?.uid;
	state.failing[id] = {
		attempts,
		reason: String(e?.message ?? error).slice(0, 500),
		code: typeof e?.code === 'string' ? e.code : 'POLL_FAILED',
		...(subject !== undefined ? { subject } : {}),
		...(uid !== undefined ? { uid } : {}),
	};
	return attempts;
}

/** Stops retrying a message and remembers it among the newest skipped ones. */
function skip(state: FolderState, id: string) {
	const entry = state.failing?.[id];
	if (!entry) return;
	delete state.failing![id];
	dropFromCarry(state, [id]);
	state.skipped = [
		...(state.skipped ?? []),
		{
			id,
			...(entry.uid !== undefined ? { uid: entry.uid } : {}),
			...(entry.subject !== undefined ? { subject: entry.subject } : {}),
			reason: entry.reason,
			attempts: entry.attempts,
			at: new Date().toISOString(),
		},
	].slice(-SKIPPED_KEPT);
}

/** Error items for messages whose attempts failed polls used up (reading them gives up in settle). */
export function giveUpExhausted(state: FolderState, maxAttempts: number): INodeExecutionData[] {
	const out: INodeExecutionData[] = [];
	for (const [id, entry] of Object.entries(state.failing ?? {})) {
		if (entry.attempts < maxAttempts) continue;
		skip(state, id);
		out.push({
			json: {
				id,
				...(entry.uid !== undefined ? { uid: entry.uid } : {}),
				...(entry.subject !== undefined ? { subject: entry.subject } : {}),
				attempts: entry.attempts,
				error: { message: entry.reason, code: entry.code, hint: 'Reading this message failed every time; it was skipped' },
			},
		});
	}
	return out;
}

/** Forgets messages that no longer exist (deleted meanwhile, or the folder was renumbered). */
export function forget(state: FolderState, ids: string[]): void {
	for (const id of ids) if (state.failing) delete state.failing[id];
	dropFromCarry(state, ids);
}
