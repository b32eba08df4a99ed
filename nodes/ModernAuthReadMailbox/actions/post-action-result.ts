import type { INodeExecutionData } from 'n8n-workflow';

import { ActionableError } from '../../../model/actionable-error';
import type { PostAction } from '../../../model/incoming-message';
import { describeUids, NOT_ATTEMPTED, type PostActionOutcome } from '../../../transports/imap/post-actions';

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
	byUid: Map<number, INodeExecutionData>,
	outcomes: PostActionOutcome[],
	action: PostAction,
	folder: string,
): PostActionFailure | undefined {
	for (const outcome of outcomes) {
		const item = byUid.get(outcome.uid);
		if (!item) continue;
		item.json.postAction = {
			action: action.type,
			...(action.type === 'move' ? { folder: action.folder } : {}),
			done: outcome.done,
			...(outcome.newUid !== undefined ? { newUid: outcome.newUid } : {}),
			...(outcome.reason ? { reason: outcome.reason } : {}),
		};
	}
	const missed = outcomes.filter((o) => !o.done);
	if (missed.length === 0) return undefined;
	const reached = outcomes.filter((o) => o.done);
	const unconfirmed = missed.filter((o) => o.unconfirmed);
	const notReached = missed.filter((o) => !o.unconfirmed);
	const what = label(action);
	const newUids = reached.flatMap((o) => (o.newUid ? [o.newUid] : []));
	const where = action.type === 'move' ? `moved to "${action.folder}"${newUids.length ? ` as UIDs ${describeUids(newUids)}` : ''}` : 'done';
	const firstReason = missed.find((o) => o.reason && o.reason !== NOT_ATTEMPTED)?.reason ?? missed[0].reason ?? 'unknown';
	const error = new ActionableError(
		`${what} failed for ${missed.length} of ${outcomes.length} messages read from "${folder}": ${firstReason}`,
		POST_ACTION_FAILED,
		[
			`The messages were read. Reached: ${reached.length ? `UIDs ${describeUids(reached.map((o) => o.uid))} (${where})` : 'none'}.`,
			notReached.length ? `Not reached: UIDs ${describeUids(notReached.map((o) => o.uid))}, still in "${folder}" as before, so a new run reads them again.` : '',
			unconfirmed.length ? `Not confirmed (connection failed): UIDs ${describeUids(unconfirmed.map((o) => o.uid))}; check them in "${folder}".` : '',
			HINT,
		]
			.filter(Boolean)
			.join(' '),
	);
	const perMessage = missed.flatMap((o) => {
		const item = byUid.get(o.uid);
		return item ? [{ item, error: new ActionableError(`${what} failed for UID ${o.uid}: ${o.reason ?? 'unknown'}`, POST_ACTION_FAILED, HINT) }] : [];
	});
	return { error, perMessage };
}
