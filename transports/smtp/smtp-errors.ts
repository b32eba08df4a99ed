import { ActionableError } from '../../model/actionable-error';
import { MailTransportError } from '../contracts';

interface NodemailerLikeError {
	message?: string;
	code?: string;
	responseCode?: number;
	response?: string;
	command?: string;
	cause?: { code?: string; message?: string };
}

const CERT_PROBLEMS =
	/self[- ]signed|unable to (get|verify)|certificate (has expired|is not yet valid)|CERT_|altnames|Hostname\/IP does not match/i;
const OLD_TLS = /unsupported protocol|protocol version|UNSUPPORTED_PROTOCOL/i;
const WRONG_TLS_MODE = /wrong version number|packet length too long|unknown protocol|ssl3_get_record|EPROTO/i;

const CONNECTION_LOSS_CODES = new Set(['ECONNECTION', 'ESOCKET', 'ETIMEDOUT']);

/** Code of a connection lost after the server had the whole message: it may or may not hold it. */
export const DELIVERY_UNKNOWN = 'SMTP_DELIVERY_UNKNOWN';
const TEMPORARY_FAILURE = 'SMTP_TEMPORARY_FAILURE';

/** Turns a nodemailer / socket failure into one line plus a hint that names the fix. */
export function describeSmtpError(
	error: unknown,
	target: { host: string; port: number; auth?: 'password' | 'app-only' | 'delegated'; afterEndOfData?: boolean },
): ActionableError {
	if (error instanceof ActionableError) return error;
	const e = (error ?? {}) as NodemailerLikeError;
	const raw = oneLine(e.response || e.message || String(error));
	const where = `${target.host}:${target.port}`;
	const code = e.code ?? e.cause?.code ?? 'ESMTP';
	const responseCode = e.responseCode;
	const enhanced = /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(raw)?.[1];

	if (target.afterEndOfData && !responseCode && CONNECTION_LOSS_CODES.has(code)) {
		return new MailTransportError(
			`Connection to ${where} was lost after the whole message was sent, before the server confirmed it: delivery unknown (${raw})`,
			DELIVERY_UNKNOWN,
			'The server may or may not have accepted the message. Check the recipient or the Sent Items before sending it again',
		);
	}
	if (responseCode && responseCode >= 400 && responseCode < 500) {
		return new MailTransportError(
			`SMTP server ${where} answered with a temporary failure (${responseCode}): ${raw}`,
			TEMPORARY_FAILURE,
			'The server asked to try again later (greylisting, rate limit, maintenance). Retried with back-off; run it again later or raise Send Retries',
			responseCode,
		);
	}

	if (responseCode === 535 && enhanced === '5.7.139') {
		return new MailTransportError(
			`SMTP server refused password sign-in (535 5.7.139): ${raw}`,
			'SMTP_BASIC_AUTH_DISABLED',
			'Basic authentication is switched off for this tenant or mailbox. Use a Microsoft OAuth credential (app-only or delegated) instead of a password, or ask the admin to enable SMTP AUTH for the mailbox',
			responseCode,
		);
	}
	if (responseCode === 550 && enhanced === '5.7.60') {
		return new MailTransportError(
			`SMTP server refused the From address (550 5.7.60): ${raw}`,
			'SMTP_SEND_AS_DENIED',
			'The signed-in account may not send as this From address. Grant Send As (Add-RecipientPermission) or use the account’s own address',
			responseCode,
		);
	}
	if ((code === 'EAUTH' || responseCode === 535) && target.auth === 'app-only') {
		return new MailTransportError(
			`SMTP server refused the app-only OAuth token at ${where}: ${raw}`,
			'SMTP_XOAUTH2_REJECTED',
			'Grant the app SMTP.SendAsApp with admin consent, register it in Exchange (New-ServicePrincipal with the ENTERPRISE APPLICATION object id), give it the mailbox (Add-MailboxPermission), and enable SMTP AUTH for the mailbox',
			responseCode,
		);
	}
	if ((code === 'EAUTH' || responseCode === 535) && target.auth === 'delegated') {
		return new MailTransportError(
			`SMTP server refused the delegated OAuth token at ${where}: ${raw}`,
			'SMTP_XOAUTH2_REJECTED',
			'Check the credential has the SMTP.Send scope (reconnect it after changing scopes), the signed-in user may send as the mailbox, and SMTP AUTH is enabled for the mailbox',
			responseCode,
		);
	}
	if (code === 'EAUTH' || responseCode === 535 || responseCode === 534) {
		return new MailTransportError(
			`SMTP authentication failed at ${where}: ${raw}`,
			'SMTP_AUTH_FAILED',
			'Check the user name and password in the credential (some providers need an app password); for Microsoft 365 use an OAuth credential',
			responseCode,
		);
	}
	if (code === 'ENOAUTH') {
		return new MailTransportError(
			`SMTP server at ${where} requires authentication but the credential has no user`,
			'SMTP_AUTH_REQUIRED',
			'Fill in User and Password in the credential',
			responseCode,
		);
	}
	if (CERT_PROBLEMS.test(raw) || CERT_PROBLEMS.test(e.cause?.code ?? '')) {
		return new MailTransportError(
			`TLS certificate of ${where} is not trusted: ${raw}`,
			'SMTP_TLS_UNTRUSTED',
			'Use the host name the certificate was issued for, or trust the issuing CA (NODE_EXTRA_CA_CERTS). "Ignore Certificate Errors" works too but is insecure',
			responseCode,
		);
	}
	if (OLD_TLS.test(raw) || OLD_TLS.test(e.cause?.code ?? '')) {
		return new MailTransportError(
			`TLS handshake with ${where} failed: the server offers no TLS 1.2 or newer (${raw})`,
			'SMTP_TLS_VERSION',
			'Connections need TLS 1.2 or newer; ask the mail server admin to enable TLS 1.2/1.3',
			responseCode,
		);
	}
	if (WRONG_TLS_MODE.test(raw)) {
		return new MailTransportError(
			`TLS handshake with ${where} failed: ${raw}`,
			'SMTP_TLS_MODE',
			'The Security setting does not match the port: use STARTTLS for 587/25 and SSL/TLS for 465',
			responseCode,
		);
	}
	if (code === 'ETLS' || /STARTTLS/i.test(raw)) {
		return new MailTransportError(
			`SMTP server at ${where} did not allow STARTTLS: ${raw}`,
			'SMTP_STARTTLS_UNAVAILABLE',
			'Choose SSL/TLS if the port expects TLS from the first byte (465), or a port that offers STARTTLS',
			responseCode,
		);
	}
	if (code === 'ETIMEDOUT' || /timeout/i.test(raw)) {
		return new MailTransportError(
			`Timed out talking to ${where}: ${raw}`,
			'SMTP_TIMEOUT',
			'Check host and port, and that a firewall lets this n8n instance reach the server; raise the timeouts for slow servers',
			responseCode,
		);
	}
	if (code === 'ECONNECTION' || code === 'ESOCKET' || code === 'EDNS' || /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ECONNRESET|EHOSTUNREACH/.test(raw)) {
		return new MailTransportError(
			`Cannot connect to SMTP server ${where}: ${raw}`,
			'SMTP_CONNECTION',
			'Check the host name and port in the credential and that the server is reachable from n8n',
			responseCode,
		);
	}
	if (code === 'EENVELOPE') {
		return new MailTransportError(
			`SMTP server refused the recipients or sender: ${raw}`,
			'SMTP_ENVELOPE_REJECTED',
			'Check the From and recipient addresses; the server may not relay to external domains for this account',
			responseCode,
		);
	}
	if (code === 'EMESSAGE' && responseCode === 552) {
		return new MailTransportError(
			`SMTP server refused the message size: ${raw}`,
			'SMTP_MESSAGE_TOO_LARGE',
			'Send smaller attachments or lower their total size below the server limit',
			responseCode,
		);
	}
	if (code === 'EMESSAGE' && responseCode && responseCode >= 500) {
		return new MailTransportError(
			`SMTP server refused the message: ${raw}`,
			'SMTP_MESSAGE_REJECTED',
			'The server took the whole message and then refused it (policy, spam or content filter); see its reply',
			responseCode,
		);
	}
	return new MailTransportError(
		`SMTP error from ${where}: ${raw}`,
		code,
		'See the server response above; check the credential and message fields',
		responseCode,
	);
}

/**
 * Whether another attempt is safe and may help: 4xx replies (the server said it did not take
 * the message) and a connection lost before the end of DATA. Never after the end of DATA
 * without a reply, never a permanent (5xx) refusal, a certificate or a sign-in token problem.
 */
export function isRetryableSmtpFailure(described: ActionableError, afterEndOfData: boolean): boolean {
	if (!(described instanceof MailTransportError)) return false;
	if (described.code === TEMPORARY_FAILURE) return true;
	if (described.responseCode) return false;
	return !afterEndOfData && (described.code === 'SMTP_CONNECTION' || described.code === 'SMTP_TIMEOUT');
}

/** The same failure, saying how many attempts were made before giving up. */
export function withAttempts(failure: ActionableError, attempts: number): ActionableError {
	if (!(failure instanceof MailTransportError)) return failure;
	return new MailTransportError(`${failure.message} (gave up after ${attempts} attempts)`, failure.code, failure.hint, failure.responseCode);
}

function oneLine(text: string): string {
	return text.replace(/\s+/g, ' ').trim().slice(0, 500);
}
