/**
 * IMAP message ids and trigger cursors. A UID means something only together with the folder's
 * UIDVALIDITY (RFC 3501 2.3.1.1), so both travel in every id: an id from before the server
 * renumbered the folder can never address a different message after it.
 */
export function imapId(uidValidity: number, uid: number): string {
	return `${uidValidity}:${uid}`;
}

/** The UID of an id made for this UIDVALIDITY; undefined for any other id. */
export function uidOf(id: string, uidValidity: number): number | undefined {
	const match = /^(\d+):(\d+)$/.exec(id);
	if (!match || Number(match[1]) !== uidValidity) return undefined;
	const uid = Number(match[2]);
	return Number.isSafeInteger(uid) && uid > 0 ? uid : undefined;
}

/** Where a trigger stands in a folder: every UID up to lastUid was reported. */
export interface ImapCursor {
	uidValidity: number;
	lastUid: number;
}

export function encodeCursor(cursor: ImapCursor): string {
	return JSON.stringify({ uidValidity: cursor.uidValidity, lastUid: cursor.lastUid });
}

/** undefined for anything that is not a cursor this reader wrote. */
export function decodeCursor(text: string): ImapCursor | undefined {
	try {
		const { uidValidity, lastUid } = JSON.parse(text) as Partial<ImapCursor>;
		if (Number.isSafeInteger(uidValidity) && Number.isSafeInteger(lastUid) && lastUid! >= 0) return { uidValidity: uidValidity!, lastUid: lastUid! };
	} catch {
		// not JSON: treated as no longer valid
	}
	return undefined;
}
