import type { OutgoingMessage, SendResult } from '../model/outgoing-message';

/**
 * What every outgoing transport (SMTP now; Graph and EWS later) offers the nodes.
 * One sender lives for one execution: it may pool connections and must be closed.
 */
export interface MailSender {
	/** Sends one complete message, or fails without the server accepting any part of it. */
	send(message: OutgoingMessage): Promise<SendResult>;
	/** Connects, secures and authenticates without sending anything (credential test). */
	verify(): Promise<void>;
	close(): Promise<void>;
}

/** A failure a user can act on: one-line message, a stable code and a hint naming the fix. */
export class MailTransportError extends Error {
	constructor(
		message: string,
		readonly code: string,
		readonly hint: string,
		readonly responseCode?: number,
	) {
		super(message);
		this.name = 'MailTransportError';
	}
}
