import type { Message } from '@microsoft/microsoft-graph-types';

import type { PostAction } from '../../model/incoming-message';
import type { PostActionOptions, PostActionOutcome } from '../contracts';
import type { BatchRequest, BatchResult, GraphClient } from './graph-client';

/** Graph's `$batch` limit (JSON batching docs). */
export const BATCH_SIZE = 20;
export const NOT_ATTEMPTED = 'not attempted: the server refused an earlier part of this post-action';
const GONE = 'no longer in the mailbox (removed by someone else meanwhile)';

type FlagAction = { type: 'markRead' } | { type: 'flag' };
type Change = { type: 'markRead' | 'flag' | 'delete' } | { type: 'move'; destinationId: string };

/**
 * Applies a post-action to messages through `$batch`, 20 at a time, and checks every
 * sub-response: a PATCH answered 200 must show the change, a move 201 gives the new id, a delete
 * 204 (the client re-sends a throttled sub-request after its Retry-After). Refusals are
 * outcomes with Graph's words. Atomic: the first refusal stops the rest (not attempted), and the
 * read/flag changes made here are taken back, so the folder is left as found (moves and deletes
 * already done stay done, as with IMAP). `destinationId` is the resolved target of a move.
 */
export async function applyPostAction(
	graph: GraphClient,
	ids: string[],
	action: PostAction,
	options: PostActionOptions = {},
	destinationId?: string,
): Promise<PostActionOutcome[]> {
	if (action.type === 'none' || ids.length === 0) return [];
	const unique = [...new Set(ids)];
	const outcomes = new Map<string, PostActionOutcome>(unique.map((id) => [id, { id, done: false, reason: NOT_ATTEMPTED }]));
	const change: Change = action.type === 'move' ? { type: 'move', destinationId: destinationId ?? action.folder } : { type: action.type };
	const flagAction = action.type === 'markRead' || action.type === 'flag' ? (action as FlagAction) : undefined;
	// Atomic read/flag: only what this call changes is taken back, so the state before is read first.
	const before = options.atomic && flagAction ? await currentState(graph, unique, flagAction) : undefined;
	const changedHere: string[] = [];
	let refused = false;
	try {
		for (let i = 0; i < unique.length && !(refused && options.atomic); i += BATCH_SIZE) {
			const chunk = unique.slice(i, i + BATCH_SIZE);
			const results = await graph.batch(chunk.map((id) => request(graph, id, change)));
			for (const [n, id] of chunk.entries()) {
				const outcome = judge(id, change, results[n]);
				outcomes.set(id, outcome);
				if (!outcome.done) refused = true;
				else if (before && before.get(id) === false) changedHere.push(id);
			}
		}
	} catch (error) {
		// The batch itself failed (connection, token): what was confirmed stays, the rest is unknown.
		const reason = `not confirmed: the request failed during the post-action (${(error as Error).message}); the server may have applied it`;
		for (const outcome of outcomes.values()) if (outcome.reason === NOT_ATTEMPTED) Object.assign(outcome, { reason, unconfirmed: true });
		return ids.map((id) => outcomes.get(id)!);
	}
	if (refused && options.atomic && flagAction && changedHere.length) await undo(graph, changedHere, flagAction, outcomes);
	return ids.map((id) => outcomes.get(id)!);
}

function request(graph: GraphClient, messageId: string, change: Change): BatchRequest {
	const url = `${graph.mailbox}/messages/${encodeURIComponent(messageId)}`;
	switch (change.type) {
		case 'markRead':
			return { method: 'PATCH', url, body: { isRead: true } };
		case 'flag':
			return { method: 'PATCH', url, body: { flag: { flagStatus: 'flagged' } } };
		case 'delete':
			return { method: 'DELETE', url };
		case 'move':
			// Immutable ids: the id after the move is the id a later run will see.
			return { method: 'POST', url: `${url}/move`, headers: { Prefer: 'IdType="ImmutableId"' }, body: { destinationId: change.destinationId } };
	}
}

function judge(id: string, change: Change, response: BatchResult | undefined): PostActionOutcome {
	if (!response) return { id, done: false, reason: 'the $batch answer had no response for this message', unconfirmed: true };
	const body = (response.body ?? {}) as Message & { error?: { code?: string; message?: string } };
	if (response.status === 404) return { id, done: false, reason: GONE };
	if (response.status >= 400 || response.status < 200) {
		return { id, done: false, reason: `Graph answered ${response.status}${body.error?.code ? ` ${body.error.code}` : ''}${body.error?.message ? `: ${body.error.message}` : ''}` };
	}
	switch (change.type) {
		case 'markRead':
			if (response.body !== undefined && body.isRead !== true) return { id, done: false, reason: `Graph answered ${response.status} but the message is not marked read` };
			return { id, done: true };
		case 'flag':
			if (response.body !== undefined && body.flag?.flagStatus !== 'flagged') return { id, done: false, reason: `Graph answered ${response.status} but the message is not flagged` };
			return { id, done: true };
		case 'delete':
			return { id, done: true };
		case 'move':
			return { id, done: true, ...(body.id ? { newId: body.id } : {}) };
	}
}

/** Whether each message already has the flag the action sets (true), lacks it (false), or is unknown. */
async function currentState(graph: GraphClient, ids: string[], action: FlagAction): Promise<Map<string, boolean | undefined>> {
	const state = new Map<string, boolean | undefined>();
	for (let i = 0; i < ids.length; i += BATCH_SIZE) {
		const chunk = ids.slice(i, i + BATCH_SIZE);
		const results = await graph.batch(chunk.map((id) => ({ method: 'GET' as const, url: `${graph.mailbox}/messages/${encodeURIComponent(id)}?$select=id,isRead,flag` })));
		for (const [n, id] of chunk.entries()) {
			const response = results[n];
			const body = response?.body as Message | undefined;
			state.set(id, response?.status === 200 && body ? (action.type === 'markRead' ? body.isRead === true : body.flag?.flagStatus === 'flagged') : undefined);
		}
	}
	return state;
}

/** Takes back the read/flag changes this call made (atomic failure), and says so per message. */
async function undo(graph: GraphClient, ids: string[], action: FlagAction, outcomes: Map<string, PostActionOutcome>): Promise<void> {
	const what = action.type === 'markRead' ? 'marked read' : 'flagged';
	const body = action.type === 'markRead' ? { isRead: false } : { flag: { flagStatus: 'notFlagged' } };
	for (let i = 0; i < ids.length; i += BATCH_SIZE) {
		const chunk = ids.slice(i, i + BATCH_SIZE);
		let results: BatchResult[];
		try {
			results = await graph.batch(chunk.map((id) => ({ method: 'PATCH' as const, url: `${graph.mailbox}/messages/${encodeURIComponent(id)}`, body })));
		} catch (error) {
			for (const id of chunk) outcomes.set(id, { id, done: false, reason: `${what}, and could not be taken back after another message was refused: ${(error as Error).message}` });
			continue;
		}
		for (const [n, id] of chunk.entries()) {
			const status = results[n]?.status ?? 0;
			outcomes.set(id, {
				id,
				done: false,
				reason:
					status >= 200 && status < 300
						? `${what}, then taken back because the server refused another message of this post-action`
						: `${what}, and could not be taken back (Graph answered ${status}) after another message was refused`,
			});
		}
	}
}
