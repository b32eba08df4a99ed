import type { ImapFlow } from 'imapflow';

import type { FolderChanges } from '../contracts';
import type { OpenedFolder } from './folders';
import { decodeCursor, encodeCursor, imapId } from './ids';
import { uidsAfter } from './search';

/**
 * New mail in the just opened folder since `cursor` ({uidValidity, lastUid}). Without a
 * cursor, or when the server renumbered the folder (UIDVALIDITY changed, RFC 3501 2.3.1.1),
 * the cursor starts at the newest message, so nothing old comes back as new mail.
 */
export async function changesSince(client: ImapFlow, opened: OpenedFolder, cursor: string | undefined): Promise<FolderChanges> {
	const saved = cursor === undefined ? undefined : decodeCursor(cursor);
	if (!saved || saved.uidValidity !== opened.uidValidity) {
		return {
			ids: [],
			cursor: encodeCursor({ uidValidity: opened.uidValidity, lastUid: Math.max(0, opened.uidNext - 1) }),
			baseline: cursor === undefined ? 'first' : 'invalid',
		};
	}
	const uids = await uidsAfter(client, saved.lastUid);
	const lastUid = uids.length ? uids[uids.length - 1] : saved.lastUid;
	return { ids: uids.map((uid) => imapId(opened.uidValidity, uid)), cursor: encodeCursor({ uidValidity: opened.uidValidity, lastUid }) };
}
