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
	/** Opaque, stable within the folder and transport (IMAP `<uidValidity>:<uid>`, Graph message id). */
	id: string;
	/** IMAP only: the UID, kept in the output for existing workflows. Nodes key on `id`. */
	uid?: number;
	/** The Internet Message-ID header. */
	messageId?: string;
	/** Thread id where the server keeps one (Graph conversationId). */
	conversationId?: string;
	folder: string;
	from?: MailAddress;
	to: MailAddress[];
	cc: MailAddress[];
	replyTo: MailAddress[];
	subject: string;
	/** ISO 8601: the Date header (Graph sentDateTime). */
	date?: string;
	/** ISO 8601: when the mailbox received it (IMAP INTERNALDATE, Graph receivedDateTime). */
	receivedDate?: string;
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

/** What to look for, the same for every transport; every field narrows the result (AND). */
export interface ReadFilter {
	unreadOnly?: boolean;
	since?: Date;
	before?: Date;
	from?: string;
	to?: string;
	subjectContains?: string;
	/** Only messages with at least one attachment (inline images of the HTML body do not count). */
	hasAttachments?: boolean;
	/**
	 * The transport's own query language for power users (IMAP SEARCH keys such as
	 * `OR FROM a@x FROM b@y`); a transport without one refuses it with a clear error.
	 */
	rawQuery?: string;
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
