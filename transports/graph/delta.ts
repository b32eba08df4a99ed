import { ActionableError } from '../../model/actionable-error';
import type { FolderChanges } from '../contracts';
import { advance, decodeCursor, encodeCursor, type DeltaCursor, type DeltaItem } from './delta-cursor';
import type { GraphClient } from './graph-client';
import { withQuery } from './graph-calls';
import { graphCodeOf, statusOf } from './graph-status';
import { preferHeader } from './prefer';

/** Messages per delta page (Prefer: odata.maxpagesize; Graph's default is 10). */
export const DELTA_PAGE_SIZE = 200;
const SYNC_STATE_GONE = new Set(['syncstatenotfound', 'syncstateinvalid', 'resyncrequired']);

interface DeltaMessage {
	id?: string;
	receivedDateTime?: string | null;
	internetMessageId?: string | null;
	'@removed'?: unknown;
}

/**
 * New mail in a folder since the cursor, through Graph's message delta for that folder
 * (the delta link is kept in the cursor; see delta-cursor.ts for the exactly-once rule).
 *
 * - No cursor (first activation, or a cursor of another folder or transport): a baseline. The
 *   folder's delta is walked to its delta link without emitting anything (Graph documents
 *   `$deltatoken=latest` only for directory and drive resources, not for messages).
 * - A delta link Graph no longer accepts (410 Gone, SyncStateNotFound: tokens are dropped from
 *   Exchange's cache after a while): the delta is walked afresh and only messages received after
 *   the old cursor's floor and not already emitted come out, so an expired link neither floods
 *   the workflow with old mail nor loses what arrived while the trigger was away. The result
 *   says baseline 'invalid' (with those ids).
 */
export async function changesSince(graph: GraphClient, folder: string, folderRef: string, cursorText: string | undefined): Promise<FolderChanges> {
	const previous = decodeCursor(cursorText, folder);
	if (!previous) {
		const walk = await walkDelta(graph, initialLink(graph, folderRef));
		const next = advance(undefined, walk.items);
		return { ids: [], cursor: encodeCursor({ v: 1, folder, deltaLink: walk.deltaLink, floor: next.floor, seen: next.seen }), baseline: 'first' };
	}
	let walk: Awaited<ReturnType<typeof walkDelta>>;
	let baseline: FolderChanges['baseline'];
	// A cursor is state, and state can be edited: its link is followed only on this client's Graph.
	const own = previous.deltaLink.startsWith(`${graph.baseUrl}/`);
	try {
		if (!own) throw Object.assign(new Error('delta link of another host'), { status: 410 });
		walk = await walkDelta(graph, previous.deltaLink);
	} catch (error) {
		if (!syncStateGone(error)) throw error;
		walk = await walkDelta(graph, initialLink(graph, folderRef));
		baseline = 'invalid';
	}
	const next = advance(previous, walk.items);
	const cursor: DeltaCursor = { v: 1, folder, deltaLink: walk.deltaLink, floor: next.floor, seen: next.seen };
	return { ids: next.newIds, cursor: encodeCursor(cursor), ...(baseline ? { baseline } : {}) };
}

function initialLink(graph: GraphClient, folderRef: string): string {
	return withQuery(`${graph.mailbox}/mailFolders/${encodeURIComponent(folderRef)}/messages/delta`, { $select: 'id,receivedDateTime,internetMessageId' });
}

/** Follows one delta round to its @odata.deltaLink, collecting what each page says. */
async function walkDelta(graph: GraphClient, link: string): Promise<{ items: DeltaItem[]; deltaLink: string }> {
	const items: DeltaItem[] = [];
	const headers = { Prefer: preferHeader(`odata.maxpagesize=${DELTA_PAGE_SIZE}`) };
	const last = await graph.pages<DeltaMessage>(
		link,
		(message) => {
			if (message.id) items.push({ id: message.id, receivedDateTime: message.receivedDateTime, internetMessageId: message.internetMessageId, removed: message['@removed'] !== undefined });
		},
		{ headers },
	);
	const deltaLink = last['@odata.deltaLink'];
	if (typeof deltaLink !== 'string') {
		throw new ActionableError('Graph ended a delta round without a delta link', 'GRAPH_ERROR', 'Retry later; if it persists, the folder cannot be tracked with delta');
	}
	return { items, deltaLink };
}

function syncStateGone(error: unknown): boolean {
	return statusOf(error) === 410 || SYNC_STATE_GONE.has(String(graphCodeOf(error) ?? '').toLowerCase());
}
