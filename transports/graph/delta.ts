import { ActionableError } from '../../model/actionable-error';
import type { FolderChanges } from '../contracts';
import { advance, decodeCursor, encodeCursor, type DeltaCursor, type DeltaItem } from './delta-cursor';
import type { GraphClient } from './graph-client';
import { withQuery } from './odata';
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
 * - No cursor (first activation, or a cursor of another folder or transport): baseline 'first'.
 *   The folder's delta is walked to its delta link without emitting anything (Graph documents
 *   `$deltatoken=latest` only for directory and drive resources, not for messages).
 * - A delta link Graph no longer accepts (410 Gone / SyncStateNotFound: Exchange drops old
 *   tokens from its cache): the delta is walked afresh to a new link, and by the cursor's rule
 *   only messages received after its floor and not already emitted come out. Nothing old floods
 *   the workflow and nothing that arrived meanwhile is lost; since `ids` are exactly the new mail,
 *   this is not a baseline in the contract's sense (which would drop them) and none is reported.
 * - A delta link on another host (edited state): baseline 'invalid', started afresh, nothing emitted.
 */
export async function changesSince(graph: GraphClient, folder: string, folderRef: string, cursorText: string | undefined): Promise<FolderChanges> {
	const previous = decodeCursor(cursorText, folder);
	// A cursor is state, and state can be edited: its link is followed only on this client's Graph.
	if (!previous || !previous.deltaLink.startsWith(`${graph.baseUrl}/`)) {
		const walk = await walkDelta(graph, initialLink(graph, folderRef));
		const next = advance(undefined, walk.items);
		return { ids: [], cursor: encode(folder, walk.deltaLink, next), baseline: previous ? 'invalid' : 'first' };
	}
	let walk: Awaited<ReturnType<typeof walkDelta>>;
	try {
		walk = await walkDelta(graph, previous.deltaLink);
	} catch (error) {
		if (!syncStateGone(error)) throw error;
		walk = await walkDelta(graph, initialLink(graph, folderRef));
	}
	const next = advance(previous, walk.items);
	return { ids: next.newIds, cursor: encode(folder, walk.deltaLink, next) };
}

function encode(folder: string, deltaLink: string, state: Pick<DeltaCursor, 'floor' | 'seen'>): string {
	return encodeCursor({ v: 1, folder, deltaLink, floor: state.floor, seen: state.seen });
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
