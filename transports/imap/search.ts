import type { ImapFlow, MessageStructureObject, SearchObject } from 'imapflow';
// UIDs as a compact IMAP set (1:3,7,9:10), so a 10,000-message FETCH stays one short line.
import { packMessageRange } from 'imapflow/lib/tools';
import { parser as parseImap } from 'imapflow/lib/handler/imap-handler';
import { searchCompiler, type SearchAttribute } from 'imapflow/lib/search-compiler';

import { ActionableError } from '../../model/actionable-error';
import type { ReadFilter } from '../../model/incoming-message';
import { runCommand, ServerRefusal } from './command';

const COMMAND_PREFIX = 'A1 UID SEARCH ';
const RAW_SEARCH_HINT =
	'Write IMAP SEARCH keys as in RFC 3501 section 6.4.4, e.g. OR FROM alice@example.com FROM bob@example.com, or SINCE 1-Nov-2026 LARGER 100000; quote values with spaces';

/**
 * Turns a raw IMAP SEARCH string into command attributes with imapflow's own IMAP parser, so
 * a malformed one is refused before it reaches the server and cannot smuggle in a command.
 */
export async function parseRawSearch(raw: string): Promise<SearchAttribute[]> {
	if (/[\r\n\0]/.test(raw)) {
		throw new ActionableError('Raw IMAP Search: must be one line', 'IMAP_BAD_SEARCH', RAW_SEARCH_HINT);
	}
	if (/\{\d+\+?\}/.test(raw)) {
		throw new ActionableError('Raw IMAP Search: literals ({n}) are not supported', 'IMAP_BAD_SEARCH', RAW_SEARCH_HINT);
	}
	try {
		const parsed = await parseImap(`${COMMAND_PREFIX}${raw}`);
		const attributes = (parsed.attributes ?? []) as SearchAttribute[];
		if (attributes.length === 0) throw new Error('no search keys');
		return attributes;
	} catch (error) {
		// imapflow counts from the start of the command line; users count from their own text.
		const reason = String((error as Error).message)
			.replace(/ at position (\d+)/, (_m, at: string) => ` at character ${Math.max(1, Number(at) - COMMAND_PREFIX.length + 1)}`)
			.replace(/\s*\[E\d+(?::\s*([^\]]*))?\]/, (_m, char?: string) => (char ? ` ${char}` : ''));
		throw new ActionableError(`Raw IMAP Search: "${raw}" is not valid IMAP search syntax (${reason})`, 'IMAP_BAD_SEARCH', RAW_SEARCH_HINT);
	}
}

/** BODYSTRUCTUREs asked for at once when judging attachments. */
const STRUCTURE_CHUNK = 500;

/** The filter as IMAP SEARCH keys (imapflow's compiler), plus the raw keys in parentheses. */
export async function searchAttributes(client: ImapFlow, criteria: ReadFilter): Promise<SearchAttribute[]> {
	const query: SearchObject = {};
	if (criteria.unreadOnly) query.seen = false;
	if (criteria.since) query.since = criteria.since;
	if (criteria.before) query.before = criteria.before;
	if (criteria.from) query.from = criteria.from;
	if (criteria.to) query.to = criteria.to;
	if (criteria.subjectContains) query.subject = criteria.subjectContains;
	const attributes = Object.keys(query).length ? searchCompiler(client, query) : [];
	if (criteria.rawQuery?.trim()) attributes.push(await parseRawSearch(criteria.rawQuery.trim()));
	return attributes.length ? attributes : [{ type: 'ATOM', value: 'ALL' }];
}

/**
 * UID SEARCH with the server's own error text. imapflow's search() answers `false` on any
 * failure, which would read as "no mail" - wrong for a typo in a raw search.
 */
export async function uidSearch(client: ImapFlow, attributes: SearchAttribute[], rawSearch?: string): Promise<number[]> {
	const uids = new Set<number>();
	try {
		await runCommand(client, 'UID SEARCH', attributes, {
			SEARCH: async (untagged) => {
				for (const attribute of (untagged as { attributes?: Array<{ value?: string }> })?.attributes ?? []) {
					const uid = Number(attribute?.value);
					if (Number.isSafeInteger(uid) && uid > 0) uids.add(uid);
				}
			},
		});
	} catch (error) {
		if (error instanceof ServerRefusal) {
			throw new ActionableError(
				rawSearch ? `Raw IMAP Search: the server refused "${rawSearch}": ${error.serverText}` : `IMAP SEARCH refused by the server: ${error.serverText}`,
				'IMAP_BAD_SEARCH',
				RAW_SEARCH_HINT,
			);
		}
		throw error;
	}
	return [...uids].sort((a, b) => a - b);
}

/**
 * Whether a message carries attachments, judged from its BODYSTRUCTURE the way mail clients
 * show a paper clip: a part marked as attachment, or a named non-text part that is not an
 * inline image of the HTML body.
 */
export function hasAttachments(structure: MessageStructureObject | undefined): boolean {
	if (!structure) return false;
	const disposition = String(structure.disposition ?? '').toLowerCase();
	const type = String(structure.type ?? '').toLowerCase();
	// Before the children: a forwarded message (message/rfc822) has a structure of its own.
	if (disposition === 'attachment' || type === 'message/rfc822') return true;
	if (structure.childNodes?.length) return structure.childNodes.some(hasAttachments);
	const named = Boolean(structure.dispositionParameters?.filename || structure.parameters?.name);
	if (!named || type.startsWith('text/')) return false;
	return !(disposition === 'inline' && structure.id);
}

/**
 * The UIDs to read from the selected folder, in reading order, at most `limit`: search, order,
 * then (if asked) keep only messages with attachments, judged from BODYSTRUCTURE a chunk at a time.
 */
export async function selectUids(client: ImapFlow, filter: ReadFilter, order: { newestFirst: boolean; limit: number }): Promise<number[]> {
	const uids = await uidSearch(client, await searchAttributes(client, filter), filter.rawQuery?.trim());
	if (order.newestFirst) uids.reverse();
	if (!filter.hasAttachments) return uids.slice(0, order.limit);
	const chosen: number[] = [];
	for (let i = 0; i < uids.length && chosen.length < order.limit; i += STRUCTURE_CHUNK) {
		const chunk = uids.slice(i, i + STRUCTURE_CHUNK);
		const matching = new Set<number>();
		for await (const message of client.fetch(packMessageRange(chunk), { uid: true, bodyStructure: true }, { uid: true })) {
			if (hasAttachments(message.bodyStructure)) matching.add(message.uid);
		}
		for (const uid of chunk) if (matching.has(uid) && chosen.length < order.limit) chosen.push(uid);
	}
	return chosen;
}

/** UIDs above `lastUid` in the selected folder, oldest first. */
export async function uidsAfter(client: ImapFlow, lastUid: number): Promise<number[]> {
	const uids = await uidSearch(client, [{ type: 'ATOM', value: 'UID' }, { type: 'SEQUENCE', value: `${lastUid + 1}:*` }]);
	// `N:*` always matches the highest UID even when it is <= N (RFC 3501); drop those.
	return uids.filter((uid) => uid > lastUid);
}
