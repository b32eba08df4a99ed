import type { PostAction } from '../../model/incoming-message';
import { POST_ACTION_NOT_ATTEMPTED, type PostActionOptions, type PostActionOutcome } from '../contracts';
import type { EwsClient, EwsResponseMessage, XmlObject } from './types';
import { boolOf, childOf, flaggedOf, idOf, itemsOf } from './to-message';

/** Ids per UpdateItem / MoveItem / DeleteItem request. */
export const POST_ACTION_BATCH = 100;
const GONE = 'no longer in the mailbox (removed by someone else meanwhile)';

type FlagAction = { type: 'markRead' } | { type: 'flag' };
export type Change = { type: 'markRead' | 'flag' | 'delete' } | { type: 'move'; to: XmlObject };

/**
 * Applies a post-action through UpdateItem (read: message:IsRead, read receipts suppressed;
 * flag: item:Flag Flagged), MoveItem (the new ids back) or DeleteItem (MoveToDeletedItems, as
 * Graph's delete does), 100 ids per request, and checks every ResponseMessage: refusals are
 * outcomes with Exchange's code and words.
 *
 * Atomic: the first refusal stops the rest (not attempted) and what this call did is taken back,
 * so the folder is left as found: read/flag changes it made are reverted (the state before is
 * read first, so a message that already was read stays read), moved messages are moved back to
 * `source`. A delete cannot be taken back through EWS (DeleteItem gives no id in Deleted Items)
 * and stays done, as with IMAP and Graph.
 */
export async function applyPostAction(
	client: EwsClient,
	ids: string[],
	action: PostAction,
	options: PostActionOptions,
	targets: { destination?: XmlObject; source?: XmlObject },
): Promise<PostActionOutcome[]> {
	if (action.type === 'none' || ids.length === 0) return [];
	const unique = [...new Set(ids)];
	const outcomes = new Map<string, PostActionOutcome>(unique.map((id) => [id, { id, done: false, reason: POST_ACTION_NOT_ATTEMPTED }]));
	const change: Change = action.type === 'move' ? { type: 'move', to: targets.destination ?? {} } : { type: action.type };
	const flagAction = action.type === 'markRead' || action.type === 'flag' ? (action as FlagAction) : undefined;
	const before = options.atomic && flagAction ? await currentState(client, unique, flagAction) : undefined;
	const changedHere: string[] = [];
	const movedHere: Array<{ id: string; newId: string }> = [];
	let refused = false;
	try {
		for (let i = 0; i < unique.length && !(refused && options.atomic); i += POST_ACTION_BATCH) {
			const chunk = unique.slice(i, i + POST_ACTION_BATCH);
			const responses = await client.call(...request(chunk, change));
			for (const [n, id] of chunk.entries()) {
				const outcome = judge(id, change, responses[n]);
				outcomes.set(id, outcome);
				if (!outcome.done) refused = true;
				else if (before && before.get(id) === false) changedHere.push(id);
				else if (outcome.newId) movedHere.push({ id, newId: outcome.newId });
			}
		}
	} catch (error) {
		// The request itself failed (connection, sign-in): what was confirmed stays, the rest is unknown.
		const reason = `not confirmed: the request failed during the post-action (${(error as Error).message}); the server may have applied it`;
		for (const outcome of outcomes.values()) if (outcome.reason === POST_ACTION_NOT_ATTEMPTED) Object.assign(outcome, { reason, unconfirmed: true });
		return ids.map((id) => outcomes.get(id)!);
	}
	if (refused && options.atomic) {
		if (flagAction && changedHere.length) await undoFlags(client, changedHere, flagAction, outcomes);
		if (change.type === 'move' && movedHere.length && targets.source) await moveBack(client, movedHere, targets.source, outcomes);
	}
	return ids.map((id) => outcomes.get(id)!);
}

function itemIds(ids: string[]): XmlObject {
	return { 't:ItemId': ids.map((id) => ({ '@_Id': id })) };
}

function setField(ids: string[], field: string, value: XmlObject): XmlObject {
	return {
		'@_MessageDisposition': 'SaveOnly',
		'@_ConflictResolution': 'AlwaysOverwrite',
		// Marking read must not send the sender a read receipt the user never chose to send.
		'@_SuppressReadReceipts': true,
		'm:ItemChanges': {
			't:ItemChange': ids.map((id) => ({
				't:ItemId': { '@_Id': id },
				't:Updates': { 't:SetItemField': { 't:FieldURI': { '@_FieldURI': field }, 't:Message': value } },
			})),
		},
	};
}

function request(ids: string[], change: Change): [string, XmlObject] {
	switch (change.type) {
		case 'markRead':
			return ['UpdateItem', setField(ids, 'message:IsRead', { 't:IsRead': true })];
		case 'flag':
			return ['UpdateItem', setField(ids, 'item:Flag', { 't:Flag': { 't:FlagStatus': 'Flagged' } })];
		case 'delete':
			return ['DeleteItem', { '@_DeleteType': 'MoveToDeletedItems', 'm:ItemIds': itemIds(ids) }];
		case 'move':
			return ['MoveItem', { 'm:ToFolderId': change.to, 'm:ItemIds': itemIds(ids), 'm:ReturnNewItemIds': true }];
	}
}

function judge(id: string, change: Change, response: EwsResponseMessage | undefined): PostActionOutcome {
	if (!response) return { id, done: false, reason: 'the answer had no response message for this message', unconfirmed: true };
	if (response.responseClass !== 'Success') {
		if (response.code === 'ErrorItemNotFound') return { id, done: false, reason: GONE };
		return { id, done: false, reason: `EWS answered ${response.code}${response.text ? `: ${response.text}` : ''}` };
	}
	if (change.type !== 'move') return { id, done: true };
	const newId = idOf(itemsOf(childOf(response.element, 'Items'))[0]);
	return { id, done: true, ...(newId ? { newId } : {}) };
}

/** Whether each message already has what the action sets (true), lacks it (false), or is unknown. */
async function currentState(client: EwsClient, ids: string[], action: FlagAction): Promise<Map<string, boolean | undefined>> {
	const state = new Map<string, boolean | undefined>();
	const field = action.type === 'markRead' ? 'message:IsRead' : 'item:Flag';
	for (let i = 0; i < ids.length; i += POST_ACTION_BATCH) {
		const chunk = ids.slice(i, i + POST_ACTION_BATCH);
		const responses = await client.call('GetItem', {
			'm:ItemShape': { 't:BaseShape': 'IdOnly', 't:AdditionalProperties': { 't:FieldURI': { '@_FieldURI': field } } },
			'm:ItemIds': itemIds(chunk),
		});
		for (const [n, id] of chunk.entries()) {
			const response = responses[n];
			const message = response?.responseClass === 'Success' ? itemsOf(childOf(response.element, 'Items'))[0] : undefined;
			state.set(id, message ? (action.type === 'markRead' ? boolOf(message.IsRead) : flaggedOf(message)) : undefined);
		}
	}
	return state;
}

/** Takes back the read/flag changes this call made (atomic failure), and says so per message. */
async function undoFlags(client: EwsClient, ids: string[], action: FlagAction, outcomes: Map<string, PostActionOutcome>): Promise<void> {
	const what = action.type === 'markRead' ? 'marked read' : 'flagged';
	const [field, value] = action.type === 'markRead' ? ['message:IsRead', { 't:IsRead': false }] : ['item:Flag', { 't:Flag': { 't:FlagStatus': 'NotFlagged' } }];
	await takeBack(ids, outcomes, what, (chunk) => client.call('UpdateItem', setField(chunk, field as string, value)));
}

/** Moves messages this call moved back where they were (atomic failure). */
async function moveBack(client: EwsClient, moved: Array<{ id: string; newId: string }>, source: XmlObject, outcomes: Map<string, PostActionOutcome>): Promise<void> {
	const byNewId = new Map(moved.map((m) => [m.newId, m.id]));
	await takeBack(
		moved.map((m) => m.newId),
		outcomes,
		'moved',
		(chunk) => client.call('MoveItem', { 'm:ToFolderId': source, 'm:ItemIds': itemIds(chunk), 'm:ReturnNewItemIds': true }),
		(newId) => byNewId.get(newId) ?? newId,
	);
}

async function takeBack(
	ids: string[],
	outcomes: Map<string, PostActionOutcome>,
	what: string,
	send: (chunk: string[]) => Promise<EwsResponseMessage[]>,
	originalOf: (id: string) => string = (id) => id,
): Promise<void> {
	for (let i = 0; i < ids.length; i += POST_ACTION_BATCH) {
		const chunk = ids.slice(i, i + POST_ACTION_BATCH);
		let responses: EwsResponseMessage[];
		try {
			responses = await send(chunk);
		} catch (error) {
			for (const id of chunk) {
				const original = originalOf(id);
				outcomes.set(original, { ...outcomes.get(original)!, id: original, done: false, reason: `${what}, and could not be taken back after another message was refused: ${(error as Error).message}` });
			}
			continue;
		}
		for (const [n, id] of chunk.entries()) {
			const original = originalOf(id);
			const response = responses[n];
			const undone = response?.responseClass === 'Success';
			outcomes.set(original, {
				id: original,
				done: false,
				// Still in the target folder: its id there, as a done move would say.
				...(what === 'moved' && !undone ? { newId: id } : {}),
				reason: undone
					? `${what}, then taken back because the server refused another message of this post-action`
					: `${what}, and could not be taken back (EWS answered ${response?.code ?? 'nothing'}) after another message was refused`,
			});
		}
	}
}
