import type { Readable } from 'node:stream';

/**
 * The one message shape every sender (SMTP now; Graph and EWS later) accepts.
 * It carries no n8n types so transports can be tested on their own.
 */
export interface MailAddress {
	name?: string;
	address: string;
}

export type AttachmentContent = Readable | Buffer;

export interface OutgoingAttachment {
	filename: string;
	contentType: string;
	/** Size in bytes when known up front (used for limits before anything is sent). */
	size?: number;
	/** Set for inline parts referenced from HTML as `cid:<contentId>`. */
	contentId?: string;
	/**
	 * Opened lazily, right before the message goes out, so a large batch never holds
	 * every attachment stream (or file handle) open at once.
	 */
	open: () => Promise<AttachmentContent>;
}

export type MessagePriority = 'high' | 'normal' | 'low';

export interface OutgoingMessage {
	from: MailAddress;
	to: MailAddress[];
	cc: MailAddress[];
	bcc: MailAddress[];
	replyTo: MailAddress[];
	subject: string;
	text?: string;
	html?: string;
	attachments: OutgoingAttachment[];
	headers: Array<{ name: string; value: string }>;
	/** Importance: SMTP writes X-Priority/Importance headers, Graph its importance property. */
	priority: MessagePriority;
	/** "On behalf of": the mailbox that actually sends when it differs from From (Sender header / Graph sender). */
	sender?: MailAddress;
	/** Ask for a read receipt (Disposition-Notification-To / Graph isReadReceiptRequested). */
	readReceipt?: boolean;
	/** Keep a copy in Sent Items where the server decides that (Graph, EWS); SMTP ignores it. Default true. */
	saveToSentItems?: boolean;
}

/** A recipient the server refused while it took the message for others. */
export interface RefusedRecipient {
	address: string;
	/** The server's reply to that recipient, e.g. "550 5.1.1 User unknown". */
	reply: string;
	responseCode?: number;
}

export interface SendResult {
	messageId: string;
	accepted: string[];
	rejected: string[];
	refused: RefusedRecipient[];
	response: string;
	envelope: { from: string; to: string[] };
	/** Attempts it took, retries of temporary failures included. */
	attempts?: number;
}
