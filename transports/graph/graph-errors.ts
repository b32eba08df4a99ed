import { MailTransportError } from '../contracts';

/** What Graph (or the connection to it) said about a failed request. */
export interface GraphFailure {
	/** HTTP status; absent when no answer came. */
	status?: number;
	/** Graph's `error.code`, e.g. ErrorAccessDenied. */
	graphCode?: string;
	/** Graph's `error.message`. */
	graphMessage?: string;
	/** METHOD and path without query, for the message. */
	request: string;
	/** The request may have been processed although no answer says so (reset after it was sent, 5xx on a POST). */
	ambiguous?: boolean;
	/** Connection-level failure (reset, refused, TLS, time-out), when there was one. */
	networkError?: string;
	/** Attempts made, retries included. */
	attempts?: number;
}

/** A failed Graph request: stable `code`, one-line `hint` naming the fix, HTTP status as `responseCode`. */
export class GraphApiError extends MailTransportError {
	readonly graphCode?: string;
	readonly ambiguous: boolean;
	readonly attempts: number;

	constructor(message: string, code: string, hint: string, failure: GraphFailure) {
		super(message, code, hint, failure.status);
		this.name = 'GraphApiError';
		this.graphCode = failure.graphCode;
		this.ambiguous = Boolean(failure.ambiguous);
		this.attempts = failure.attempts ?? 1;
	}
}

export const GRAPH_CODES = {
	accessDenied: 'GRAPH_ACCESS_DENIED',
	mailboxNotRest: 'GRAPH_MAILBOX_NOT_REST',
	notFound: 'GRAPH_NOT_FOUND',
	tooLarge: 'GRAPH_TOO_LARGE',
	throttled: 'GRAPH_THROTTLED',
	unauthorized: 'GRAPH_UNAUTHORIZED',
	error: 'GRAPH_ERROR',
	deliveryUnknown: 'GRAPH_DELIVERY_UNKNOWN',
} as const;

/** Turns what Graph answered into the error a user can act on. */
export function graphError(failure: GraphFailure): GraphApiError {
	const { status, graphCode = '' } = failure;
	const said = failure.graphMessage ? `: ${oneLine(failure.graphMessage)}` : '';
	const make = (code: string, text: string, hint: string) => new GraphApiError(`${text} (${failure.request})`, code, hint, failure);

	if (status === undefined) {
		return make(
			GRAPH_CODES.error,
			`No answer from Microsoft Graph${failure.networkError ? `: ${oneLine(failure.networkError)}` : ''}`,
			'Check the network path to the Graph host (proxy, firewall, TLS inspection) and try again',
		);
	}
	if (graphCode === 'MailboxNotEnabledForRESTAPI' || graphCode === 'MailboxNotSupportedForRESTAPI') {
		return make(
			GRAPH_CODES.mailboxNotRest,
			`The mailbox cannot be used through Graph${said}`,
			'Use a licensed Exchange Online mailbox (not on-premises, a guest or unlicensed), or use SMTP/IMAP for it',
		);
	}
	if (graphCode === 'ErrorMessageSizeExceeded' || status === 413) {
		return make(
			GRAPH_CODES.tooLarge,
			`The message is too large for the mailbox${said}`,
			status === 413
				? 'A single Graph request may carry at most 4 MB; larger attachments go through an upload session'
				: "Make the message smaller or ask the Exchange admin to raise the mailbox's MaxSendSize (Set-Mailbox -MaxSendSize, up to 150 MB)",
		);
	}
	if (status === 401) {
		const audience = graphCode === 'InvalidAudience' || /audience/i.test(failure.graphMessage ?? '');
		return make(
			GRAPH_CODES.unauthorized,
			`Microsoft Graph refused the token${said}`,
			audience
				? 'The token is not for Graph: use the Graph scope of the same cloud (https://graph.microsoft.com/.default or the national Graph host)'
				: "Check the app's Graph application permissions (Mail.Send / Mail.ReadWrite) and grant admin consent",
		);
	}
	if (graphCode === 'ErrorSendAsDenied') {
		return make(
			GRAPH_CODES.accessDenied,
			`The mailbox may not send as this From address${said}`,
			'Grant the mailbox Send As on the From address (Add-RecipientPermission) or Send on Behalf and set Sender, or send From the mailbox itself',
		);
	}
	if (status === 403 || graphCode === 'ErrorAccessDenied') {
		return make(
			GRAPH_CODES.accessDenied,
			`Access to the mailbox was denied${said}`,
			'Give the app the Graph application permission (Mail.Send / Mail.Read / Mail.ReadWrite) with admin consent, and include this mailbox in its RBAC for Applications scope (changes can take over an hour)',
		);
	}
	if (status === 404 || graphCode === 'ErrorItemNotFound' || graphCode === 'ResourceNotFound') {
		return make(
			GRAPH_CODES.notFound,
			`Not found in the mailbox${said}`,
			'Check the mailbox address and the folder or message id; the item may have been moved or deleted',
		);
	}
	if (status === 429 || status === 503 || status === 504) {
		return make(
			GRAPH_CODES.throttled,
			`Microsoft Graph is throttling or unavailable (HTTP ${status})${said}`,
			'Send fewer requests at once (Graph allows 4 concurrent requests per mailbox) or retry later',
		);
	}
	return make(GRAPH_CODES.error, `Microsoft Graph answered HTTP ${status}${said}`, 'Check the request details above; retry later if it is a server error');
}

function oneLine(text: string): string {
	const line = text.replace(/\s+/g, ' ').trim();
	return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}
