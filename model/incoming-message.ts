import type { MailAddress } from './outgoing-message';

/**
 * One received message in the shape every reader (IMAP now; Graph and EWS later) returns,
 * so workflows do not change when the protocol does.
 */
export interface IncomingAttachment {
	filename: string;
	contentType: string;
	size: number;
	/** Set for inline parts referenced as cid: from the HTML body. */
	contentId?: string;
	inline: boolean;
	/** The decoded bytes, when the reader was not given a sink to stream them into. */
	content?: Buffer;
}

export interface IncomingMessage {
	/** Stable within the protocol: for IMAP `<uidValidity>:<uid>`. */
	id: string;
	uid?: number;
	messageId?: string;
	folder: string;
	from?: MailAddress;
	to: MailAddress[];
	cc: MailAddress[];
	replyTo: MailAddress[];
	subject: string;
	/** ISO 8601 */
	date?: string;
	flags: string[];
	seen: boolean;
	flagged: boolean;
	size: number;
	text?: string;
	html?: string;
	headers?: Record<string, string>;
	attachments: IncomingAttachment[];
	/** The whole message as received (RFC 822), when asked for and not streamed into a sink. */
	raw?: Buffer;
}

/** What to look for; every field narrows the result (AND). */
export interface ReadCriteria {
	unreadOnly?: boolean;
	since?: Date;
	before?: Date;
	from?: string;
	to?: string;
	subjectContains?: string;
	/** Only messages with at least one attachment (inline images of the HTML body do not count). */
	hasAttachments?: boolean;
	/** Raw IMAP SEARCH keys for power users, e.g. `OR FROM a@x FROM b@y`. */
	rawImapSearch?: string;
	/** Only messages with a UID greater than this (triggers resume from the last one seen). */
	uidAfter?: number;
}

export type PostAction =
	| { type: 'none' }
	| { type: 'markRead' }
	| { type: 'flag' }
	| { type: 'move'; folder: string }
	| { type: 'delete' };

/**
 * A message that could not be read (malformed, too large a header, its parse timed out, its
 * attachments could not be stored). Readers report it in place of the message, so one bad
 * message never stops the others; nodes emit it as an error item and leave it on the server.
 */
export interface UnreadableMessage {
	id: string;
	uid?: number;
	folder: string;
	/** As far as it could be read from the raw header. */
	subject?: string;
	size: number;
	flags: string[];
	error: { message: string; code: string; hint: string };
}

export function isUnreadable(message: IncomingMessage | UnreadableMessage): message is UnreadableMessage {
	return 'error' in message;
}
