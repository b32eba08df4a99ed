import { createHash } from 'node:crypto';
import type { IDataObject } from 'n8n-workflow';

import type { OutgoingMessage } from '../../../model/outgoing-message';

/**
 * What this process knows about items an execution already handed to a server, so that
 * n8n's Retry On Fail (which re-runs the node with every item, in the same process, also in
 * queue mode) never sends one of them twice.
 *  - 'sent': the server accepted it; a retry outputs the recorded result instead.
 *  - 'unknown': the connection was lost after the end of DATA (at-most-once); a retry
 *    reports it again instead of sending it.
 */
/** `code`: the transport's delivery-unknown code, so a later try reports it as the first did. */
export type SentOutcome = { outcome: 'sent'; json: IDataObject } | { outcome: 'unknown'; code: string };

/** Bounds: enough for the largest batch one execution retries, small enough to never matter. */
const MAX_ENTRIES = 20_000;
/** n8n waits at most 5 s between at most 5 tries; an hour covers slow batches too. */
const TTL_MS = 60 * 60 * 1000;

const entries = new Map<string, SentOutcome & { at: number }>();

export interface ItemIdentity {
	executionId: string;
	nodeName: string;
	/** The node's run in this execution: a loop that runs it again sends again; a retry does not. */
	runIndex: number;
	itemIndex: number;
	/** From messageFingerprint: a changed item is a different message. */
	fingerprint: string;
}

function keyOf(item: ItemIdentity): string {
	return createHash('sha256')
		.update([item.executionId, item.nodeName, String(item.runIndex), String(item.itemIndex), item.fingerprint].join('\n'))
		.digest('hex');
}

export function recordOutcome(item: ItemIdentity, outcome: SentOutcome, now = Date.now()): void {
	const key = keyOf(item);
	entries.delete(key);
	entries.set(key, { ...outcome, at: now });
	// Map order is insertion order: the oldest entries go first.
	for (const [oldKey, entry] of entries) {
		if (entries.size <= MAX_ENTRIES && now - entry.at <= TTL_MS) break;
		entries.delete(oldKey);
	}
}

export function recordedOutcome(item: ItemIdentity, now = Date.now()): SentOutcome | undefined {
	const key = keyOf(item);
	const entry = entries.get(key);
	if (!entry) return undefined;
	if (now - entry.at > TTL_MS) {
		entries.delete(key);
		return undefined;
	}
	return entry.outcome === 'sent' ? { outcome: 'sent', json: entry.json } : { outcome: 'unknown', code: entry.code };
}

/** A hash of everything that goes into the message except attachment bytes (sizes count). */
export function messageFingerprint(senderKey: string, message: OutgoingMessage): string {
	const { attachments, ...fields } = message;
	const parts = attachments.map(({ filename, contentType, size, contentId }) => ({ filename, contentType, size, contentId }));
	return createHash('sha256').update(JSON.stringify({ senderKey, fields, parts })).digest('hex');
}
