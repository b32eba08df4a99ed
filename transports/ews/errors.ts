import { MailTransportError } from '../contracts';
import { EWS_CODES, type EwsResponseMessage } from './types';

type EwsCode = (typeof EWS_CODES)[keyof typeof EWS_CODES];

export interface EwsErrorDetails {
	/** HTTP status, when the server answered. */
	responseCode?: number;
	/** The server's ResponseCode (ErrorAccessDenied, ...). */
	ewsCode?: string;
	/** ErrorServerBusy: how long the server asked to wait. */
	backOffMs?: number;
	/** Attempts made, retries included. */
	attempts?: number;
}

/** A failed EWS request: stable `code` (EWS_CODES), one-line message, a hint naming the fix. */
export class EwsError extends MailTransportError {
	readonly ewsCode?: string;
	readonly backOffMs?: number;
	attempts: number;

	constructor(message: string, code: EwsCode | string, hint: string, details: EwsErrorDetails = {}) {
		super(message, code, hint, details.responseCode);
		this.name = 'EwsError';
		this.ewsCode = details.ewsCode;
		this.backOffMs = details.backOffMs;
		this.attempts = details.attempts ?? 1;
	}
}

export interface EwsErrorContext {
	operation: string;
	mailbox: string;
	clientId?: string;
}

const EWS_ALLOW_LIST_FIX =
	"Allow the app in Exchange Online: Set-OrganizationConfig -EWSEnabled $true, then add its client id to EwsAllowedAppIDs (read Get-OrganizationConfig first: the list is written whole; changes take up to 24 h), or better move this workflow to Microsoft Graph: EWS in Exchange Online is off for good on 1 April 2027";

function mailboxText(mailbox: string): string {
	return mailbox ? `mailbox ${mailbox}` : "the account's own mailbox";
}

/** Turns one Error (or Warning) response message into the error a user can act on. */
export function ewsErrorFor(message: EwsResponseMessage, context: EwsErrorContext): EwsError {
	const ewsCode = message.code || 'ErrorUnknown';
	const said = message.text ? `: ${oneLine(message.text)}` : '';
	const where = `${context.operation}, ${mailboxText(context.mailbox)}`;
	const make = (code: EwsCode, text: string, hint: string, extra: EwsErrorDetails = {}) =>
		new EwsError(`${text} (${ewsCode}, ${where})${said}`, code, hint, { ewsCode, ...extra });
	switch (ewsCode) {
		case 'ErrorAccessDenied':
		case 'ErrorDelegateNoUser':
		case 'ErrorNotDelegate':
			return make(
				EWS_CODES.ACCESS_DENIED,
				'Exchange denied access to the mailbox',
				context.mailbox
					? `Give the account FullAccess to ${context.mailbox} (Add-MailboxPermission -AccessRights FullAccess), or for app-only the ApplicationImpersonation role / RBAC for Applications scope on it`
					: 'Check that the account has a mailbox and may use EWS (Set-CASMailbox -EwsEnabled $true)',
			);
		case 'ErrorImpersonateUserDenied':
		case 'ErrorImpersonationDenied':
		case 'ErrorImpersonationFailed':
			return make(
				EWS_CODES.IMPERSONATION_DENIED,
				'Exchange refused to impersonate the mailbox',
				`On-premises: assign the ApplicationImpersonation role to the account (New-ManagementRoleAssignment -Role ApplicationImpersonation); Exchange Online: grant the app full_access_as_app with admin consent${context.clientId ? ` (app ${context.clientId})` : ''} and include ${context.mailbox || 'the mailbox'} in its RBAC for Applications scope`,
			);
		case 'ErrorNonExistentMailbox':
		case 'ErrorMailboxNotFound':
		case 'ErrorInvalidSmtpAddress':
			return make(
				EWS_CODES.MAILBOX_NOT_FOUND,
				'Exchange knows no such mailbox',
				`Check the address ${context.mailbox || ''}`.trim() + ' and that the mailbox is on this Exchange server (a mailbox moved to Exchange Online or another forest is not)',
			);
		case 'ErrorServerBusy': {
			const backOffMs = Number(message.details?.BackOffMilliseconds);
			const wait = Number.isFinite(backOffMs) && backOffMs > 0 ? backOffMs : undefined;
			return make(
				EWS_CODES.SERVER_BUSY,
				'Exchange is throttling this account (server busy)',
				`Wait ${wait !== undefined ? `${Math.ceil(wait / 1000)} s (BackOffMilliseconds ${wait})` : 'a while'} and run again with fewer requests at once; the admin can relax the EWS throttling policy (New-ThrottlingPolicy / Set-ThrottlingPolicyAssociation)`,
				{ backOffMs: wait },
			);
		}
		case 'ErrorInvalidSyncStateData':
		case 'ErrorInvalidWatermark':
			return make(EWS_CODES.INVALID_SYNC_STATE, 'Exchange no longer accepts the saved sync state', 'Sync the folder again from scratch (the trigger does this by itself)');
		case 'ErrorSendAsDenied':
			return make(
				EWS_CODES.SEND_AS_DENIED,
				'The mailbox may not send as this From address',
				'Grant Send As on the From address (Add-ADPermission -ExtendedRights "Send As" on-premises, Add-RecipientPermission in Exchange Online), or send From the mailbox itself',
			);
		case 'ErrorItemNotFound':
		case 'ErrorInvalidIdMalformed':
		case 'ErrorInvalidIdNotAnItemAttachmentId':
		case 'ErrorAttachmentNotFound':
			return make(EWS_CODES.ITEM_NOT_FOUND, 'The item is not in the mailbox', 'It may have been moved or deleted; fetch the folder again for current ids');
		case 'ErrorFolderNotFound':
		case 'ErrorInvalidFolderId':
			return make(EWS_CODES.FOLDER_NOT_FOUND, 'The folder is not in the mailbox', 'Pick the folder from the list again, or use a well-known folder (inbox, sentitems)');
		case 'ErrorInvalidServerVersion':
		case 'ErrorIncorrectSchemaVersion':
			return make(
				EWS_CODES.INVALID_SERVER_VERSION,
				'Exchange does not accept the requested server version',
				'Pick an older Server Version in the credential (Exchange2013_SP1 or Exchange2010_SP2 work with every supported Exchange)',
			);
		case 'ErrorMessageSizeExceeded':
		case 'ErrorRequestTooLarge':
			return make(
				EWS_CODES.MESSAGE_TOO_LARGE,
				'The message is larger than Exchange accepts',
				'Send smaller attachments or a link; the admin can raise MaxSendSize / maxAllowedContentLength of the EWS virtual directory',
			);
		case 'ErrorExceededConnectionCount':
		case 'ErrorExceededSubscriptionCount':
		case 'ErrorExceededFindCountLimit':
			return make(
				EWS_CODES.SERVER_BUSY,
				'Exchange refused the request: a throttling limit was reached',
				'Run with fewer requests at once or smaller pages; the admin can relax the EWS throttling policy',
			);
		default:
			return make(EWS_CODES.REQUEST_FAILED, 'Exchange refused the request', 'See the Exchange response code in the message; check the input of this operation');
	}
}

export type EwsAuthScheme = 'ntlm' | 'basic' | 'bearer';

/** An HTTP status other than 200 (SOAP faults are parsed first, by the caller). */
export function ewsHttpError(
	status: number,
	body: string,
	context: { operation: string; url: string; scheme: EwsAuthScheme; flavour?: 'app-only' | 'ropc'; clientId?: string; wwwAuthenticate?: string },
): EwsError {
	const where = `${context.operation}, ${hostOf(context.url)}`;
	const details = { responseCode: status };
	if (/EWS is not allowed for this app|EwsAllowedAppIDs|EWSEnabled/i.test(body)) {
		return new EwsError(
			`Exchange Online does not allow this app to use EWS (HTTP ${status}, ${where})${context.clientId ? `; app ${context.clientId}` : ''}`,
			EWS_CODES.APP_NOT_ALLOWED,
			EWS_ALLOW_LIST_FIX,
			details,
		);
	}
	if (status === 401) {
		const hint =
			context.scheme === 'ntlm'
				? 'Check user name, domain and password (NTLMv2), and that Windows (NTLM) authentication is enabled on the EWS virtual directory (Get-WebServicesVirtualDirectory | fl *Authentication)'
				: context.scheme === 'basic'
					? 'Check user name (DOMAIN\\user or user@domain) and password, and that Basic authentication is enabled on the EWS virtual directory (Set-WebServicesVirtualDirectory -BasicAuthentication $true); Exchange Online has no Basic'
					: context.flavour === 'ropc'
						? 'The token was refused: the app needs the delegated permission EWS.AccessAsUser.All (Office 365 Exchange Online) with consent, for the Exchange host of this URL'
						: 'The token was refused: the app needs the application permission full_access_as_app (Office 365 Exchange Online) with admin consent, and the token audience must be the Exchange host of this URL (the Exchange Host of the credential)';
		const said = tokenError(context.wwwAuthenticate);
		return new EwsError(`Exchange refused the sign-in (HTTP 401, ${context.scheme.toUpperCase()}, ${where})${said}`, EWS_CODES.UNAUTHORIZED, hint, details);
	}
	if (status === 403) {
		return new EwsError(
			`Exchange refused the request (HTTP 403, ${where})${bodyText(body)}`,
			EWS_CODES.ACCESS_DENIED,
			'Check that EWS is enabled for the account (Set-CASMailbox -EwsEnabled $true) and for the organization (Set-OrganizationConfig -EwsEnabled $true), and no EWS application policy blocks this client',
			details,
		);
	}
	if (status === 404) {
		return new EwsError(
			`No EWS endpoint at this URL (HTTP 404, ${where})`,
			EWS_CODES.REQUEST_FAILED,
			'Use https://<server>/EWS/Exchange.asmx, or find it through Autodiscover',
			details,
		);
	}
	if (status === 413) {
		return new EwsError(
			`The request is larger than the server accepts (HTTP 413, ${where})`,
			EWS_CODES.MESSAGE_TOO_LARGE,
			'Send smaller attachments; the admin can raise maxAllowedContentLength / maxReceivedMessageSize of the EWS virtual directory',
			details,
		);
	}
	if (status === 503 || status === 429) {
		return new EwsError(
			`Exchange is unavailable or throttling (HTTP ${status}, ${where})`,
			EWS_CODES.SERVER_BUSY,
			'Try again later with fewer requests at once',
			details,
		);
	}
	return new EwsError(`Exchange answered HTTP ${status} (${where})${bodyText(body)}`, EWS_CODES.REQUEST_FAILED, 'Retry later if it is a server error; check the EWS URL otherwise', details);
}

/** A SOAP fault other than ErrorServerBusy (whose detail carries a ResponseCode the caller maps first). */
export function ewsFaultError(fault: { faultcode?: string; faultstring?: string; responseCode?: string }, context: EwsErrorContext, status?: number): EwsError {
	if (fault.responseCode) {
		const mapped = ewsErrorFor({ responseClass: 'Error', code: fault.responseCode, text: fault.faultstring, element: {} }, context);
		if (mapped.code !== EWS_CODES.REQUEST_FAILED) {
			return new EwsError(mapped.message, mapped.code, mapped.hint, { responseCode: status, ewsCode: mapped.ewsCode, backOffMs: mapped.backOffMs });
		}
	}
	return new EwsError(
		`Exchange answered with a SOAP fault (${fault.responseCode ?? fault.faultcode ?? 'fault'}, ${context.operation})${fault.faultstring ? `: ${oneLine(fault.faultstring)}` : ''}`,
		EWS_CODES.SOAP_FAULT,
		'Check the values of this operation; if the fault names the server version, pick an older Server Version in the credential',
		{ responseCode: status, ewsCode: fault.responseCode },
	);
}

/** A connection that failed before an answer came. */
export function ewsNetworkError(error: unknown, context: { operation: string; url: string; timeoutMs?: number }): EwsError {
	const e = (error ?? {}) as { code?: string; message?: string };
	const code = e.code ?? '';
	const where = `${context.operation}, ${hostOf(context.url)}`;
	if (code === 'EWS_IDLE_TIMEOUT' || code === 'ETIMEDOUT' || code === 'ESOCKETTIMEDOUT') {
		return new EwsError(
			`Exchange did not answer within ${Math.round((context.timeoutMs ?? 0) / 1000)} s (${where})`,
			EWS_CODES.TIMEOUT,
			'Check that the server is reachable and not overloaded; large folders answer faster with a smaller page size',
		);
	}
	if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|SSL|HOSTNAME|altnames/i.test(`${code} ${e.message ?? ''}`)) {
		return new EwsError(
			`The TLS connection to ${hostOf(context.url)} failed: ${oneLine(e.message ?? code)}`,
			EWS_CODES.TLS,
			"Add the server's CA certificate (PEM) to the credential's Trusted CA, or use the host name the certificate was issued for; turning certificate checks off is unsafe",
		);
	}
	return new EwsError(
		`Cannot reach Exchange at ${hostOf(context.url)} (${context.operation}): ${oneLine(e.message ?? code) || 'connection failed'}`,
		EWS_CODES.NETWORK,
		'Check the EWS URL, DNS, firewall and proxy between n8n and the server',
	);
}

/** The connection died after the whole request went out: the server may have acted on it. */
export function ewsDeliveryUnknown(cause: EwsError | Error, operation: string): EwsError {
	return new EwsError(
		`The connection failed after ${operation} was handed to Exchange; the message may or may not have been sent: ${cause.message}`,
		EWS_CODES.DELIVERY_UNKNOWN,
		"Check the mailbox's Sent Items (or ask a recipient) before sending it again; it was not resent automatically to avoid a duplicate",
	);
}

function tokenError(header: string | undefined): string {
	if (!header) return '';
	const error = /error="([^"]*)"/i.exec(header)?.[1];
	const description = /error_description="([^"]*)"/i.exec(header)?.[1];
	if (!error && !description) return '';
	return `: ${oneLine([error, description].filter(Boolean).join(', '))}`;
}

function bodyText(body: string): string {
	const text = oneLine(body.replace(/<[^>]*>/g, ' '));
	return text ? `: ${text.slice(0, 200)}` : '';
}

function hostOf(url: string): string {
	try {
		return new URL(url).host;
	} catch {
		return url;
	}
}

export function oneLine(text: string): string {
	const line = text.replace(/\s+/g, ' ').trim();
	return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}
