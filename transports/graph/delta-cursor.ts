import { createHash } from 'node:crypto';

/**
 * The trigger's state for one folder, and the rule that makes each new message come out once.
 *
 * Graph's delta returns every change since the delta link: new messages, but also messages that
 * were only read or flagged, moved away and back, or appeared twice in one round. So a message
 * is NEW only when it was received after `floor` and is not in `seen` (keys of messages already
 * emitted or already present at the baseline, by id and by Internet Message-ID, so a message
 * moved away and back is recognised even if its id changed). `floor` trails the newest receipt
 * by GRACE_MS, so a message that becomes visible a little after a newer one is still caught;
 * `seen` keeps only what lies above the floor (at most MAX_SEEN entries; when it overflows,
 * the floor rises to the oldest entry kept, so nothing dropped from `seen` can come out again).
 */
export interface DeltaCursor {
	v: 1;
	/** The folder as the trigger names it; another folder means a fresh baseline. */
	folder: string;
	/** Graph's @odata.deltaLink, used as given. */
	deltaLink: string;
	/** ISO 8601: only messages received after this can be new. */
	floor: string;
	/** [key, receivedDateTime ISO] of messages received after `floor` that are not new any more. */
	seen: Array<[string, string]>;
}

export const GRACE_MS = 10 * 60 * 1000;
export const MAX_SEEN = 2000;

/** What a delta round says about one message (only the fields this rule needs). */
export interface DeltaItem {
	id: string;
	receivedDateTime?: string | null;
	internetMessageId?: string | null;
	removed?: boolean;
}

/** Short, stable keys: a Graph id is ~150 characters, the cursor lives in n8n's static data. */
export function seenKeys(item: Pick<DeltaItem, 'id' | 'internetMessageId'>): string[] {
	const hash = (value: string) => createHash('sha256').update(value).digest('base64url').slice(0, 22);
	return [`i${hash(item.id)}`, ...(item.internetMessageId ? [`m${hash(item.internetMessageId)}`] : [])];
}

export function encodeCursor(cursor: DeltaCursor): string {
	return JSON.stringify(cursor);
}

/** The cursor, or undefined when it is missing, not ours (an IMAP cursor) or for another folder. */
export function decodeCursor(text: string | undefined, folder: string): DeltaCursor | undefined {
	if (!text) return undefined;
	try {
		const value = JSON.parse(text) as Partial<DeltaCursor>;
		const valid =
			value?.v === 1 &&
			value.folder === folder &&
			typeof value.deltaLink === 'string' &&
			typeof value.floor === 'string' &&
			!Number.isNaN(Date.parse(value.floor)) &&
			Array.isArray(value.seen) &&
			value.seen.every((e) => Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'string');
		return valid ? (value as DeltaCursor) : undefined;
	} catch {
		return undefined;
	}
}

/**
 * Picks the new messages of a delta round (oldest first, each once) and the state after it.
 * `previous` undefined is a baseline: nothing is new, everything present is remembered.
 */
export function advance(
	previous: Pick<DeltaCursor, 'floor' | 'seen'> | undefined,
	items: DeltaItem[],
	now: Date = new Date(),
): { newIds: string[]; floor: string; seen: Array<[string, string]> } {
	const floorTime = previous ? Date.parse(previous.floor) : -Infinity;
	const seen = new Map<string, number>((previous?.seen ?? []).map(([key, at]) => [key, Date.parse(at)]));
	const fresh = new Map<string, { id: string; at: number }>();
	for (const item of items) {
		if (item.removed) continue;
		const at = item.receivedDateTime ? Date.parse(item.receivedDateTime) : NaN;
		if (Number.isNaN(at)) continue; // not a received message (a draft being written)
		const keys = seenKeys(item);
		const isNew = previous !== undefined && at > floorTime && !keys.some((key) => seen.has(key)) && !fresh.has(item.id);
		if (isNew) fresh.set(item.id, { id: item.id, at });
		if (at > floorTime) for (const key of keys) seen.set(key, at);
	}
	let newest = previous ? floorTime : now.getTime();
	for (const at of seen.values()) if (at > newest) newest = at;
	let floor = Math.max(floorTime, newest - GRACE_MS);
	let kept = [...seen.entries()].filter(([, at]) => at > floor).sort((a, b) => b[1] - a[1]);
	if (kept.length > MAX_SEEN) {
		// Never cut between entries of the same second: the floor must lie below all kept ones.
		floor = Math.max(floor, kept[MAX_SEEN][1]);
		kept = kept.filter(([, at]) => at > floor);
	}
	// Oldest first; messages of the same second keep the order the delta listed them in (a stable sort).
	const newIds = [...fresh.values()].sort((a, b) => a.at - b.at).map((m) => m.id);
	return { newIds, floor: new Date(floor).toISOString(), seen: kept.map(([key, at]) => [key, new Date(at).toISOString()]) };
}
