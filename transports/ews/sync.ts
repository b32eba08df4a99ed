import { ActionableError } from '../../model/actionable-error';
import type { FolderChanges } from '../contracts';
import { EWS_CODES, type EwsClient, type EwsResponseMessage, type XmlObject } from './types';
import { errorOf } from './folders';
import { boolOf, childOf, idOf, listOf, MESSAGE_ELEMENTS, textOf } from './to-message';

/** Changes per SyncFolderItems page (EWS allows 1 to 512). */
export const MAX_CHANGES_RETURNED = 512;
/**
 * How far below the newest receipt a Create may lie and still be new mail. A Create of a message
 * received long before (an old message moved or copied into the folder) is not new mail; one a
 * little older than the newest (committed by the store a moment after a newer one) is.
 */
export const GRACE_MS = 10 * 60 * 1000;

/**
 * The trigger's cursor for one folder. `watermark` is the newest DateTimeReceived among the
 * Create changes seen so far and the ids received at exactly that instant (EWS gives whole
 * seconds, so a burst shares it); it is what survives a sync state Exchange no longer accepts.
 */
export interface SyncCursor {
	v: 1;
	folderId: string;
	syncState: string;
	watermark: { receivedAt: string; ids: string[] };
}

/** One Create change of a sync round. */
interface Created {
	id: string;
	at: number;
}

/** Before any mail: a watermark below every real receipt. */
const EPOCH = new Date(0).toISOString();

/**
 * New mail in a folder since the cursor, through SyncFolderItems (all pages in one call, 512
 * changes a page). Only Create changes are new mail; Update, ReadFlagChange and Delete are not.
 *
 * - No cursor: a sync to the present (every page) without emitting anything; baseline 'first'.
 * - A cursor that is not one of ours, or of another folder: the same, baseline 'invalid'.
 * - A sync state Exchange refuses (ErrorInvalidSyncStateData): a sync from scratch, of which only
 *   Creates received after the watermark (or at its instant and not among its ids) come out:
 *   nothing that arrived meanwhile is lost and nothing old floods the workflow, so no baseline is
 *   reported. A message that arrived meanwhile with a receipt time older than the watermark (a
 *   late commit, an old message moved in) is not told apart from old mail then.
 * - Otherwise every Create once (Exchange's sync state says what is new), oldest first, except a
 *   message received more than GRACE_MS before the watermark: an old message moved or copied
 *   into the folder, not new mail.
 */
export async function changesSince(client: EwsClient, folderId: string, folderElement: XmlObject, cursorText: string | undefined): Promise<FolderChanges> {
	const previous = decodeCursor(cursorText);
	if (!previous || previous.folderId !== folderId) {
		const round = await syncRound(client, folderElement, undefined);
		const watermark = advance({ receivedAt: EPOCH, ids: [] }, round.created);
		return { ids: [], cursor: encodeCursor({ v: 1, folderId, syncState: round.syncState, watermark }), baseline: cursorText === undefined ? 'first' : 'invalid' };
	}
	let round: SyncRound;
	let fromScratch = false;
	try {
		round = await syncRound(client, folderElement, previous.syncState);
	} catch (error) {
		if (!invalidSyncState(error)) throw error;
		round = await syncRound(client, folderElement, undefined);
		fromScratch = true;
	}
	const mark = Date.parse(previous.watermark.receivedAt);
	const known = new Set(previous.watermark.ids);
	const fresh = round.created
		.filter((c) => !known.has(c.id) && (fromScratch ? c.at > mark || (c.at === mark && !known.has(c.id)) : c.at >= mark - GRACE_MS))
		// Oldest first; messages of the same second keep the order the server listed them in (a stable sort).
		.sort((a, b) => a.at - b.at);
	const watermark = advance(previous.watermark, fresh);
	return { ids: fresh.map((c) => c.id), cursor: encodeCursor({ v: 1, folderId, syncState: round.syncState, watermark }) };
}

export function encodeCursor(cursor: SyncCursor): string {
	return JSON.stringify(cursor);
}

/** The cursor, or undefined when it is missing or not an EWS sync cursor (an IMAP or Graph one, an edited one). */
export function decodeCursor(text: string | undefined): SyncCursor | undefined {
	if (!text) return undefined;
	try {
		const value = JSON.parse(text) as Partial<SyncCursor>;
		const mark = value?.watermark;
		const valid =
			value?.v === 1 &&
			typeof value.folderId === 'string' &&
			typeof value.syncState === 'string' &&
			typeof mark === 'object' &&
			mark !== null &&
			typeof mark.receivedAt === 'string' &&
			!Number.isNaN(Date.parse(mark.receivedAt)) &&
			Array.isArray(mark.ids) &&
			mark.ids.every((id) => typeof id === 'string');
		return valid ? (value as SyncCursor) : undefined;
	} catch {
		return undefined;
	}
}

/** The watermark after these Creates: the newest instant, and every id received at it. */
export function advance(watermark: SyncCursor['watermark'], created: Created[]): SyncCursor['watermark'] {
	let at = Date.parse(watermark.receivedAt);
	let ids = new Set(watermark.ids);
	for (const change of created) {
		if (change.at > at) {
			at = change.at;
			ids = new Set([change.id]);
		} else if (change.at === at) ids.add(change.id);
	}
	return { receivedAt: new Date(at).toISOString(), ids: [...ids] };
}

interface SyncRound {
	syncState: string;
	/** Creates of the round, in the server's order, without those deleted again later in the round. */
	created: Created[];
}

/** SyncFolderItems page after page until the server says it gave the last change. */
async function syncRound(client: EwsClient, folderElement: XmlObject, syncState: string | undefined): Promise<SyncRound> {
	const created = new Map<string, Created>();
	let state = syncState;
	for (;;) {
		const [response] = await client.call('SyncFolderItems', {
			'm:ItemShape': { 't:BaseShape': 'IdOnly', 't:AdditionalProperties': { 't:FieldURI': { '@_FieldURI': 'item:DateTimeReceived' } } },
			'm:SyncFolderId': folderElement,
			...(state ? { 'm:SyncState': state } : {}),
			'm:MaxChangesReturned': MAX_CHANGES_RETURNED,
			'm:SyncScope': 'NormalItems',
		});
		const element = checkedSync(response, client);
		const changes = childOf(element, 'Changes');
		for (const create of listOf(changes?.Create)) {
			for (const name of MESSAGE_ELEMENTS) {
				for (const item of listOf(create[name])) {
					const id = idOf(item);
					const at = Date.parse(textOf(item.DateTimeReceived) ?? '');
					// No receipt time: not received mail (a draft being written).
					if (id && !Number.isNaN(at) && !created.has(id)) created.set(id, { id, at });
				}
			}
		}
		for (const deleted of listOf(changes?.Delete)) {
			const id = idOf(deleted);
			if (id) created.delete(id);
		}
		const next = textOf(element.SyncState);
		if (next) state = next;
		if (boolOf(element.IncludesLastItemInRange) || !next) break;
	}
	return { syncState: state ?? '', created: [...created.values()] };
}

function checkedSync(response: EwsResponseMessage | undefined, client: EwsClient): Record<string, unknown> {
	if (!response) throw new ActionableError('EWS answered SyncFolderItems without a response message', EWS_CODES.RESPONSE_INVALID, 'The server is not a working Exchange EWS endpoint; check the EWS URL');
	if (response.responseClass === 'Error') throw Object.assign(errorOf(response, 'SyncFolderItems', client), { syncStateRefused: response.code === 'ErrorInvalidSyncStateData' });
	return response.element;
}

function invalidSyncState(error: unknown): boolean {
	const e = error as { syncStateRefused?: boolean; ewsCode?: string; code?: string };
	return e?.syncStateRefused === true || e?.ewsCode === 'ErrorInvalidSyncStateData' || e?.code === EWS_CODES.INVALID_SYNC_STATE;
}
