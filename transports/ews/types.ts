import type { TokenProvider } from '../../auth/app-only-token-provider';
import type { TlsTrust } from '../tls-options';

/**
 * The fixed shapes of the EWS transport (Exchange Web Services, SOAP over HTTPS). Nothing here
 * imports n8n. The layers, each in its own file under transports/ews/:
 *   xml.ts         fast-xml-parser's builder and parser, configured once; every value is escaped by
 *                  the builder, and characters XML 1.0 cannot carry are refused, naming the field
 *   soap.ts        the envelope (RequestServerVersion, ExchangeImpersonation), response messages
 *   ntlm.ts        the NTLMv2 handshake on one kept-alive socket (@ewsjs/ntlm-client builds the messages)
 *   http.ts        POST with NTLM / Basic / Bearer, TLS trust, time-outs, ErrorServerBusy back-off
 *   errors.ts      SOAP faults, response codes and HTTP statuses -> EwsError (one line + the fix)
 *   ews-client.ts  createEwsClient(options): EwsClient
 *   autodiscover.ts POX Autodiscover (on-premises) -> the EWS URL
 *   ews-sender.ts  MailSender: CreateItem with the MIME the package composes (transports/mime)
 *   ews-reader.ts  MailReader: FindFolder/FindItem/GetItem/GetAttachment/UpdateItem/MoveItem/
 *                  DeleteItem/SyncFolderItems, one small module per operation
 */

/** RequestServerVersion values the credential offers; the server answers in its own version or refuses an unknown one. */
export const EWS_SERVER_VERSIONS = ['Exchange2010_SP2', 'Exchange2013', 'Exchange2013_SP1', 'Exchange2016'] as const;
export type EwsServerVersion = (typeof EWS_SERVER_VERSIONS)[number];
export const DEFAULT_EWS_SERVER_VERSION: EwsServerVersion = 'Exchange2013_SP1';

/** Exchange Online's EWS endpoint (the credential's default URL). */
export const EXCHANGE_ONLINE_EWS_URL = 'https://outlook.office365.com/EWS/Exchange.asmx';

/** How a request proves who it is. */
export type EwsAuth =
	/** NTLMv2 (on-premises): handshake per socket, the socket then stays signed in. */
	| { type: 'ntlm'; username: string; password: string; domain: string; workstation?: string }
	/** Basic over HTTPS only (on-premises). */
	| { type: 'basic'; username: string; password: string }
	/**
	 * OAuth bearer (Exchange Online): app-only (full_access_as_app, the mailbox impersonated) or
	 * ROPC (a user's token with EWS.AccessAsUser.All). The provider renews a refused token once.
	 */
	| { type: 'bearer'; tokens: TokenProvider; flavour: 'app-only' | 'ropc' };

export interface EwsClientOptions {
	/** https://host/EWS/Exchange.asmx (already discovered when the credential uses Autodiscover). */
	url: string;
	auth: EwsAuth;
	version: EwsServerVersion;
	/**
	 * The mailbox every operation works on ('' = the signed-in account's own). App-only bearer:
	 * always set, sent as ExchangeImpersonation (PrimarySmtpAddress) and X-AnchorMailbox. NTLM /
	 * Basic / ROPC: another mailbox (shared, delegate access) is addressed through
	 * `<t:Mailbox><t:EmailAddress>` in DistinguishedFolderId, and X-AnchorMailbox is sent too.
	 */
	mailbox: string;
	/** App-only: impersonate `mailbox` (ExchangeImpersonation header). */
	impersonate: boolean;
	trust: TlsTrust;
	/** Idle time-out of one request (no byte either way for this long): default 60 s. */
	timeoutMs?: number;
	/** Retries of ErrorServerBusy / 503 / connection failures before the request was sent. */
	retry?: { attempts?: number; firstBackoffMs?: number; maxBackoffMs?: number };
	/** Requests in flight at once for this client (EWS throttling: default 4). */
	maxConcurrency?: number;
}

/** One element of a response's ResponseMessages, namespace prefixes removed (fast-xml-parser `removeNSPrefix`). */
export interface EwsResponseMessage {
	/** ResponseClass attribute. */
	responseClass: 'Success' | 'Warning' | 'Error';
	/** ResponseCode text: 'NoError', 'ErrorAccessDenied', ... */
	code: string;
	/** MessageText, when the server gave one. */
	text?: string;
	/** MessageXml values (e.g. BackOffMilliseconds), flattened to name -> text. */
	details?: Record<string, string>;
	/** The whole parsed element (e.g. `{ Folders: { Folder: [...] } }`). */
	element: Record<string, unknown>;
}

/** A request body: the operation element as a fast-xml-parser builder object ('@_' attributes, '#text' text). */
export type XmlObject = Record<string, unknown>;

export interface EwsCallOptions {
	signal?: AbortSignal;
	/** Do not repeat after an ambiguous failure (CreateItem that sends): the caller decides. */
	notIdempotent?: boolean;
}

/** The SOAP client every EWS operation goes through. */
export interface EwsClient {
	readonly url: string;
	readonly mailbox: string;
	readonly version: EwsServerVersion;
	/**
	 * Sends one operation (`operation` is the m: element name, e.g. 'GetFolder'; `body` its
	 * content) and resolves with its ResponseMessages in request order. A SOAP fault, an HTTP
	 * error or a whole-request ErrorServerBusy (after the back-off retries) throws an EwsError;
	 * per-item Error responses are returned, not thrown (the caller checks each).
	 */
	call(operation: string, body: XmlObject, options?: EwsCallOptions): Promise<EwsResponseMessage[]>;
	/**
	 * The same for a body too large to hold (CreateItem with MIME): `body` contains the string
	 * `placeholder` exactly once as a text node; the request streams `content()` (already
	 * base64, XML-safe) in its place. `content` is called again for each attempt.
	 */
	callStreaming(
		operation: string,
		body: XmlObject,
		placeholder: string,
		content: () => Promise<NodeJS.ReadableStream>,
		options?: EwsCallOptions,
	): Promise<EwsResponseMessage[]>;
	/** The mailbox element for DistinguishedFolderId when `mailbox` is someone else's (undefined: own / impersonated). */
	mailboxElement(): XmlObject | undefined;
	close(): Promise<void>;
}

/** EwsError codes (ActionableError.code): nodes and tests key on them. */
export const EWS_CODES = {
	ACCESS_DENIED: 'EWS_ACCESS_DENIED',
	IMPERSONATION_DENIED: 'EWS_IMPERSONATION_DENIED',
	MAILBOX_NOT_FOUND: 'EWS_MAILBOX_NOT_FOUND',
	SERVER_BUSY: 'EWS_SERVER_BUSY',
	INVALID_SYNC_STATE: 'EWS_INVALID_SYNC_STATE',
	UNAUTHORIZED: 'EWS_UNAUTHORIZED',
	/** Exchange Online: EWS off for the tenant or the app is not in EwsAllowedAppIDs. */
	APP_NOT_ALLOWED: 'EWS_APP_NOT_ALLOWED',
	SEND_AS_DENIED: 'EWS_SEND_AS_DENIED',
	FOLDER_NOT_FOUND: 'EWS_FOLDER_NOT_FOUND',
	ITEM_NOT_FOUND: 'EWS_ITEM_NOT_FOUND',
	INVALID_SERVER_VERSION: 'EWS_INVALID_SERVER_VERSION',
	MESSAGE_TOO_LARGE: 'EWS_MESSAGE_TOO_LARGE',
	INVALID_XML_CHARACTER: 'EWS_INVALID_XML_CHARACTER',
	TIMEOUT: 'EWS_TIMEOUT',
	NETWORK: 'EWS_NETWORK',
	TLS: 'EWS_TLS',
	SOAP_FAULT: 'EWS_SOAP_FAULT',
	RESPONSE_INVALID: 'EWS_RESPONSE_INVALID',
	AUTODISCOVER_FAILED: 'EWS_AUTODISCOVER_FAILED',
	/** The connection was lost after the whole CreateItem went out: the server may have sent it. */
	DELIVERY_UNKNOWN: 'EWS_DELIVERY_UNKNOWN',
	/** A response code with no mapping of its own. */
	REQUEST_FAILED: 'EWS_REQUEST_FAILED',
} as const;
