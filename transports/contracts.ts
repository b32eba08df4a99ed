import { ActionableError } from '../model/actionable-error';
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

/** A protocol failure with the server's response code, when there was one. */
export class MailTransportError extends ActionableError {
	constructor(
		message: string,
		code: string,
		hint: string,
		readonly responseCode?: number,
	) {
		super(message, code, hint);
		this.name = 'MailTransportError';
	}
}
