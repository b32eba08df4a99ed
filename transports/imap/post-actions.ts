import type { ImapFlow } from 'imapflow';
import { parseCopyUid } from 'imapflow/lib/commands/copyuid-parser';
import { encodePath, normalizePath, packMessageRange } from 'imapflow/lib/tools';

import type { PostAction } from '../../model/incoming-message';
import { POST_ACTION_NOT_ATTEMPTED, type PostActionOptions } from '../contracts';
import { runCommand, ServerRefusal } from './command';
import { uidSearch } from './search';

/**
 * Longest UID set put on one command line. Dovecot refuses lines over 64 KB, RFC 7162 asks
 * clients to stay under 8 KB; 4,000 characters leave room for the rest of any command.
 */
export const MAX_UID_SET_CHARS = 4000;

/**
 * What the server did with one message, by UID (the reader turns UIDs into ids). `newUid` is
 * its UID in the target folder after a move and `newUidValidity` that folder's UIDVALIDITY,
 * when the server said (COPYUID). Atomic (PostActionOptions): stop at the first refusal and
 * undo what can be undone (added flags; delete flags before EXPUNGE), so a failure leaves the
 * folder as found apart from messages already moved.
 */
export interface UidOutcome {
	uid: number;
	done: boolean;
	newUid?: number;
	newUidValidity?: number;
	/** Why not done: the server's words, or what checking the folder afterwards showed. */
	reason?: string;
	/** The connection failed before the server's answer for this message was known. */
	unconfirmed?: boolean;
}

interface UidChunk {
	set: string;
	uids: number[];
}

/** Sorted, de-duplicated UIDs as packed sets (1:3,7) of at most maxChars each. */
export function uidSetChunks(uids: number[], maxChars = MAX_UID_SET_CHARS): UidChunk[] {
	const sorted = [...new Set(uids)].sort((a, b) => a - b);
	const chunks: UidChunk[] = [];
	let current: UidChunk | undefined;
	for (let i = 0; i < sorted.length; ) {
		let end = i;
		while (end + 1 < sorted.length && sorted[end + 1] === sorted[end] + 1) end++;
		const run = sorted.slice(i, end + 1);
		const text = packMessageRange(run);
		if (!current || current.set.length + 1 + text.length > maxChars) chunks.push((current = { set: text, uids: run }));
		else {
			current.set += `,${text}`;
			current.uids.push(...run);
		}
		i = end + 1;
	}
	return chunks;
}

const FLAG_OF: Record<string, string> = { markRead: '\\Seen', flag: '\\Flagged' };
const NOT_ATTEMPTED = POST_ACTION_NOT_ATTEMPTED;
const GONE = 'no longer in the folder (removed by someone else meanwhile)';

type Outcomes = Map<number, UidOutcome>;

/**
 * Applies a post-action to UIDs of the selected folder (opened read-write) in chunks that
 * keep every command line short, and checks on the server what each message now is: a
 * STORE answered OK can still have changed nothing (an ACL without the right is silently
 * ignored), and a MOVE answers OK for UIDs it did not find. One outcome per UID, in order
 * (none for action `none`).
 */
export async function applyPostAction(
	client: ImapFlow,
	uids: number[],
	action: PostAction,
	options: PostActionOptions = {},
): Promise<UidOutcome[]> {
	if (action.type === 'none') return [];
	const outcomes: Outcomes = new Map(uids.map((uid) => [uid, { uid, done: false, reason: NOT_ATTEMPTED }]));
	const chunks = uidSetChunks(uids);
	try {
		if (action.type === 'markRead' || action.type === 'flag') await addFlag(client, chunks, FLAG_OF[action.type], outcomes, options);
		else if (action.type === 'delete') await deleteMessages(client, chunks, outcomes, options);
		else await moveMessages(client, chunks, action.folder, outcomes, options);
	} catch (error) {
		// Connection lost or timed out: what was confirmed stays done, the rest is unknown.
		const reason = `not confirmed: the connection failed during the post-action (${(error as Error).message}); the server may have applied it`;
		for (const outcome of outcomes.values()) if (outcome.reason === NOT_ATTEMPTED) Object.assign(outcome, { reason, unconfirmed: true });
	}
	return uids.map((uid) => outcomes.get(uid)!);
}

/**
 * After the connection failed mid post-action (on a new connection, folder selected
 * read-write): finds out what the server did with the unconfirmed UIDs and finishes the job.
 * Adding a flag again is harmless and is read back; a message gone from the folder after a
 * move or delete was taken by that command (its new UID is unknown); one still there gets
 * the action again. Without this, a lost OK would drop read mail from the run's output
 * while the server had already marked it read or moved it.
 */
export async function confirmAfterReconnect(
	client: ImapFlow,
	uids: number[],
	action: PostAction,
	options: PostActionOptions = {},
): Promise<UidOutcome[]> {
	if (action.type === 'none' || uids.length === 0) return [];
	if (action.type === 'markRead' || action.type === 'flag') return applyPostAction(client, uids, action, options);
	const stillThere = new Set<number>();
	for (const chunk of uidSetChunks(uids)) for (const uid of await present(client, chunk.set)) stillThere.add(uid);
	const retried = new Map((await applyPostAction(client, [...stillThere], action, options)).map((o) => [o.uid, o]));
	return uids.map((uid) => retried.get(uid) ?? { uid, done: true, reason: 'confirmed after reconnecting: no longer in the folder' });
}

const settle = (outcomes: Outcomes, uid: number, done: boolean, reason?: string, newUid?: number, newUidValidity?: number) =>
	outcomes.set(uid, {
		uid,
		done,
		...(newUid !== undefined ? { newUid } : {}),
		...(newUid !== undefined && newUidValidity !== undefined ? { newUidValidity } : {}),
		...(reason ? { reason } : {}),
	});

const refusedText = (error: ServerRefusal) => `the server refused ${error.command}: ${error.serverText}`;

async function flagsOf(client: ImapFlow, set: string): Promise<Map<number, Set<string>>> {
	const flags = new Map<number, Set<string>>();
	for await (const message of client.fetch(set, { uid: true, flags: true }, { uid: true })) flags.set(message.uid, message.flags ?? new Set());
	// imapflow's fetch ends quietly on a closed connection: that must not read as "messages gone".
	if (!client.usable) throw new Error('the IMAP connection closed');
	return flags;
}

async function store(client: ImapFlow, set: string, operation: '+FLAGS.SILENT' | '-FLAGS.SILENT', flag: string): Promise<void> {
	await runCommand(client, 'UID STORE', [
		{ type: 'SEQUENCE', value: set },
		{ type: 'ATOM', value: operation },
		[{ type: 'ATOM', value: flag }],
	]);
}

/** UIDs of the set still in the selected folder. */
async function present(client: ImapFlow, set: string): Promise<Set<number>> {
	return new Set(await uidSearch(client, [{ type: 'ATOM', value: 'UID' }, { type: 'SEQUENCE', value: set }]));
}

/**
 * Adds the flag chunk by chunk and reads the flags back. Returns the UIDs that got the flag
 * from this call (had it not before), which an atomic failure takes it away from again.
 */
async function addFlag(client: ImapFlow, chunks: UidChunk[], flag: string, outcomes: Outcomes, options: PostActionOptions): Promise<number[] | undefined> {
	const added: number[] = [];
	let failed = false;
	for (const chunk of chunks) {
		const before = await flagsOf(client, chunk.set);
		try {
			await store(client, chunk.set, '+FLAGS.SILENT', flag);
		} catch (error) {
			if (!(error instanceof ServerRefusal)) throw error;
			for (const uid of chunk.uids) settle(outcomes, uid, false, refusedText(error));
			failed = true;
			if (options.atomic) break;
			continue;
		}
		const after = await flagsOf(client, chunk.set);
		for (const uid of chunk.uids) {
			const flags = after.get(uid);
			if (!flags) settle(outcomes, uid, false, GONE);
			else if (!flags.has(flag)) settle(outcomes, uid, false, `the server answered OK but ${flag} is not set (no right to set it?)`);
			else {
				settle(outcomes, uid, true);
				if (!before.get(uid)?.has(flag)) added.push(uid);
			}
		}
		if (chunk.uids.some((uid) => !outcomes.get(uid)!.done)) failed = true;
		if (failed && options.atomic) break;
	}
	if (!failed) return added;
	if (options.atomic) await undoFlag(client, added, flag, outcomes, 'the server refused other messages');
	return undefined;
}

/** Takes the flag this post-action added away again (atomic failure); `why` explains. */
async function undoFlag(client: ImapFlow, added: number[], flag: string, outcomes: Outcomes, why: string): Promise<void> {
	for (const chunk of uidSetChunks(added)) {
		try {
			await store(client, chunk.set, '-FLAGS.SILENT', flag);
			for (const uid of chunk.uids) settle(outcomes, uid, false, `${flag} was set, then removed again because ${why}`);
		} catch (error) {
			if (!(error instanceof ServerRefusal)) throw error;
			// Not done, but not as found either: say so rather than pretend it was undone.
			for (const uid of chunk.uids) settle(outcomes, uid, false, `${flag} is set and could not be removed again (${why}): ${refusedText(error)}`);
		}
	}
}

/**
 * \Deleted on every chunk first; EXPUNGE only the messages that carry it. Atomic: if any
 * chunk is refused, nothing is expunged and the flags set here are removed again.
 */
async function deleteMessages(client: ImapFlow, chunks: UidChunk[], outcomes: Outcomes, options: PostActionOptions): Promise<void> {
	const added = await addFlag(client, chunks, '\\Deleted', outcomes, options);
	if (!added && options.atomic) return;
	const toExpunge = uidSetChunks([...outcomes.values()].filter((o) => o.done).map((o) => o.uid));
	// Without UIDPLUS, EXPUNGE also removes messages others marked \Deleted (as imapflow does).
	const byUid = client.capabilities.has('UIDPLUS');
	// Atomic: a refused or incomplete EXPUNGE stops here and unflags what this call flagged and is still there.
	const flaggedHere = new Set(added);
	const undoRest = (rest: number[], why: string) => undoFlag(client, rest.filter((uid) => flaggedHere.has(uid)), '\\Deleted', outcomes, why);
	for (const [index, chunk] of toExpunge.entries()) {
		const later = () => toExpunge.slice(index + 1).flatMap((c) => c.uids);
		try {
			await runCommand(client, byUid ? 'UID EXPUNGE' : 'EXPUNGE', byUid ? [{ type: 'SEQUENCE', value: chunk.set }] : []);
		} catch (error) {
			if (!(error instanceof ServerRefusal)) throw error;
			for (const uid of chunk.uids) settle(outcomes, uid, false, `marked \\Deleted, but ${refusedText(error)}`);
			if (!options.atomic) continue;
			return undoRest([...chunk.uids, ...later()], refusedText(error));
		}
		const left = await present(client, chunk.set);
		for (const uid of chunk.uids) settle(outcomes, uid, !left.has(uid), left.has(uid) ? 'still in the folder after EXPUNGE' : undefined);
		if (options.atomic && left.size > 0) return undoRest([...left, ...later()], 'the server did not expunge all of them');
	}
}

/** UID MOVE per chunk (RFC 6851), the new UIDs from COPYUID (RFC 4315), checked against the source folder. */
async function moveMessages(client: ImapFlow, chunks: UidChunk[], target: string, outcomes: Outcomes, options: PostActionOptions): Promise<void> {
	for (const chunk of chunks) {
		const map: { path: string; destination: string; uidValidity?: bigint; uidMap?: Map<number, number> } = { path: '', destination: target };
		try {
			if (client.capabilities.has('MOVE')) {
				const response = await runCommand(client, 'UID MOVE', [{ type: 'SEQUENCE', value: chunk.set }, { type: 'ATOM', value: encodePath(client as never, normalizePath(client as never, target)) }], {
					OK: async (untagged) => parseCopyUid(untagged as never, map as never),
				});
				parseCopyUid(response.response as never, map as never);
			} else if (!(await client.messageMove(chunk.set, target, { uid: true }))) {
				// imapflow's COPY + EXPUNGE emulation keeps the server's words to itself
				throw new ServerRefusal('COPY', 'NO', 'copying or expunging the messages failed');
			}
		} catch (error) {
			if (!(error instanceof ServerRefusal)) throw error;
			for (const uid of chunk.uids) settle(outcomes, uid, false, refusedText(error));
			if (options.atomic) return;
			continue;
		}
		const left = await present(client, chunk.set);
		for (const uid of chunk.uids) {
			if (left.has(uid)) settle(outcomes, uid, false, 'the server answered OK but the message is still in the folder');
			else if (map.uidMap) {
				const newUidValidity = map.uidValidity === undefined ? undefined : Number(map.uidValidity);
				settle(outcomes, uid, map.uidMap.has(uid), map.uidMap.has(uid) ? undefined : GONE, map.uidMap.get(uid), newUidValidity);
			}
			else settle(outcomes, uid, true);
		}
		if (options.atomic && chunk.uids.some((uid) => !outcomes.get(uid)!.done)) return;
	}
}
