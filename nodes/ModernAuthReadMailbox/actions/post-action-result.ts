import type { INodeExecutionData } from 'n8n-workflow';

import { ActionableError } from '../../../model/actionable-error';
import type { PostAction } from '../../../model/incoming-message';
import { POST_ACTION_NOT_ATTEMPTED, type PostActionOutcome } from '../../../transports/contracts';

export const POST_ACTION_FAILED = 'IMAP_POST_ACTION_FAILED';

const HINT =
	'Check that the credential may change this folder (and the target folder of a move): a read-only folder, an ACL without the right, or a full quota make the server refuse';

function label(action: PostAction): string {
	if (action.type === 'move') return `Move to "${action.folder}"`;
	return { markRead: 'Mark as read', flag: 'Flag', delete: 'Delete', none: 'No post-action' }[action.type];
}

export interface PostActionFailure {
	/** For the item as a whole (thrown when continueOnFail is off). */
	error: ActionableError;
	/** For each message the action did not reach (continueOnFail: carried by its item). */
	perMessage: Array<{ item: INodeExecutionData; error: ActionableError }>;
}

/**
 * Writes what the server did into each message's item (`postAction`), and describes the
 * messages it did not do it for. The messages themselves were read either way; the error
 * says which ones the action reached, so whoever re-runs knows where each one is.
 */
export function recordPostAction(
	byId: Map<string, INodeExecutionData>,
	outcomes: PostActionOutcome[],
	action: PostAction,
	folder: string,
): PostActionFailure | undefined {
	for (const outcome of outcomes) {
		const item = byId.get(outcome.id);
		if (!item) continue;
		item.json.postAction = {
			action: action.type,
			...(action.type === 'move' ? { folder: action.folder } : {}),
			done: outcome.done,
			...(outcome.newUid !== undefined ? { newUid: outcome.newUid } : outcome.newId !== undefined ? { newId: outcome.newId } : {}),
			...(outcome.reason ? { reason: outcome.reason } : {}),
		};
	}
	const missed = outcomes.filter((o) => !o.done);
	if (missed.length === 0) return undefined;
	const reached = outcomes.filter((o) => o.done);
	const unconfirmed = missed.filter((o) => o.unconfirmed);
	const notReached = missed.filter((o) => !o.unconfirmed);
	const what = label(action);
	const moved = reached.filter((o) => o.newUid !== undefined || o.newId !== undefined);
	const where = action.type === 'move' ? `moved to "${action.folder}"${moved.length ? ` as ${describeMessages(moved.map((o) => ({ uid: o.newUid, id: o.newId ?? '' })))}` : ''}` : 'done';
	const firstReason = missed.find((o) => o.reason && o.reason !== POST_ACTION_NOT_ATTEMPTED)?.reason ?? missed[0].reason ?? 'unknown';
	const of = (list: PostActionOutcome[]) => describeMessages(list.map((o) => ({ id: o.id, uid: uidOf(byId.get(o.id)) })));
	const error = new ActionableError(
		`${what} failed for ${missed.length} of ${outcomes.length} messages read from "${folder}": ${firstReason}`,
		POST_ACTION_FAILED,
		[
			`The messages were read. Reached: ${reached.length ? `${of(reached)} (${where})` : 'none'}.`,
			notReached.length ? `Not reached: ${of(notReached)}, still in "${folder}" as before, so a new run reads them again.` : '',
			unconfirmed.length ? `Not confirmed (connection failed): ${of(unconfirmed)}; check them in "${folder}".` : '',
			HINT,
		]
			.filter(Boolean)
			.join(' '),
	);
	const perMessage = missed.flatMap((o) => {
		const item = byId.get(o.id);
		const uid = uidOf(item);
		const which = uid !== undefined ? `UID ${uid}` : `message ${o.id}`;
		return item ? [{ item, error: new ActionableError(`${what} failed for ${which}: ${o.reason ?? 'unknown'}`, POST_ACTION_FAILED, HINT) }] : [];
	});
	return { error, perMessage };
}

const uidOf = (item: INodeExecutionData | undefined) => (typeof item?.json.uid === 'number' ? item.json.uid : undefined);

/**
 * Messages named the way their transport's users know them: IMAP UIDs as a packed set
 * (`UIDs 1:3,7`), other transports by id; cut short after maxChars.
 */
export function describeMessages(messages: Array<{ id: string; uid?: number }>, maxChars = 200): string {
	const uids = messages.map((m) => m.uid);
	const byUid = uids.every((uid): uid is number => uid !== undefined);
	const list = byUid ? packRuns([...new Set(uids)].sort((a, b) => a - b)) : messages.map((m) => m.id).join(',');
	const cut = list.lastIndexOf(',', maxChars);
	const shown = list.length <= maxChars ? list : `${list.slice(0, cut > 0 ? cut : maxChars)},... (${messages.length} in all)`;
	return `${byUid ? 'UIDs' : 'ids'} ${shown}`;
}

/** Sorted numbers as runs: 1,2,3,7 -> 1:3,7. */
function packRuns(sorted: number[]): string {
	const runs: string[] = [];
	for (let i = 0; i < sorted.length; ) {
		let end = i;
		while (end + 1 < sorted.length && sorted[end + 1] === sorted[end] + 1) end++;
		runs.push(end > i ? `${sorted[i]}:${sorted[end]}` : String(sorted[i]));
		i = end + 1;
	}
	return runs.join(',');
}
