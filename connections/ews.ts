import { certificateExpiryCheck } from '../diagnostics/credential-expiry';
import { outcomeOfError, PROPAGATION_CODES, runChecks, testButtonVerdict, TEST_BUTTON_BUDGET_MS, withPropagationRetry, type Check, type CheckOutcome, type DiagnoseOptions } from '../diagnostics/checks';
import { ewsLoginCheck, ewsPermissionCheck, ewsReadCheck, EWS_INBOX, type EwsLoginContext, type EwsSignIn } from '../diagnostics/ews-login';
import { tokenCheck, type TokenFindings } from '../diagnostics/microsoft-token';
import { ActionableError } from '../model/actionable-error';
import { maskIdentifier } from '../model/redact';
import { createEwsClient } from '../transports/ews/ews-client';
import { EwsReader } from '../transports/ews/ews-reader';
import { EwsSender } from '../transports/ews/ews-sender';
import { EXCHANGE_ONLINE_EWS_NOTICE, isExchangeOnline } from '../transports/ews/exchange-online';
import { EWS_CODES, type EwsAuth, type EwsClientOptions } from '../transports/ews/types';
import type { Connection, ConnectionKind, SenderTuning, SendIdentity } from './connection';
import { identityEndpoint, overEndpoint, reachOf, roundTripOver, servedProtocol, targetOf, tlsOf, type Endpoint } from './connection-checks';
import { EWS_CREDENTIAL, ewsAuthOf, ewsUrlOf, ewsWarning, readEwsCredential, signInDescription, type EwsCredential } from './ews-credential';
import { TEST_BUTTON_TOKEN_TIMEOUT_MS } from './exchange-checks';
import { assertMailboxAllowed } from './microsoft-credential';

/** EWS throttling allows few requests in flight per mailbox; the node's Max Connections is capped here. */
const MAX_CONCURRENCY = 4;

/** Requests of a check: few retries and a short idle time-out, so a check answers inside its own time. */
const CHECK_REQUESTS: Partial<EwsClientOptions> = { retry: { attempts: 1, firstBackoffMs: 200, maxBackoffMs: 1_000 }, timeoutMs: 8_000, maxConcurrency: 1 };

/** Refusals a consent or role assignment made minutes ago still produces. */
const EWS_PROPAGATION_CODES = new Set<string>([EWS_CODES.UNAUTHORIZED, EWS_CODES.ACCESS_DENIED, EWS_CODES.IMPERSONATION_DENIED, EWS_CODES.APP_NOT_ALLOWED]);
const propagating = (code: string) => PROPAGATION_CODES.has(code) || EWS_PROPAGATION_CODES.has(code);

const PLAIN_ADDRESS = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+$/;

const SIGN_IN: Record<EwsCredential['method'], EwsSignIn> = { ntlm: 'ntlm', basic: 'basic', oauthAppOnly: 'app-only', oauthRopc: 'ropc' };

/** Exchange Web Services: on-premises Exchange (NTLM, Basic) and Exchange Online tenants that still allow EWS (OAuth). */
export const ewsKind: ConnectionKind = {
	authentication: 'ews',
	displayName: 'Exchange Web Services (EWS)',
	description: 'On-premises Exchange with NTLM or Basic, or Exchange Online (OAuth) while the tenant still allows EWS',
	notice: `If the credential's URL is Exchange Online (outlook.office365.com): ${EXCHANGE_ONLINE_EWS_NOTICE} In these nodes that is the Authentication "Microsoft 365 App-Only (Graph)".`,
	credentialType: EWS_CREDENTIAL,
	protocols: ['ews'],
	send: true,
	read: true,
	selectsMailbox: true,
	async open(data): Promise<Connection> {
		const credential = readEwsCredential(data);
		const auth = ewsAuthOf(credential);
		return ewsConnection(credential, auth);
	},
};

function noMailbox(): ActionableError {
	return new ActionableError(
		'App-only EWS needs a mailbox to impersonate',
		'MAILBOX_REQUIRED',
		'Set Default Mailbox in the credential, or the node option Mailbox',
	);
}

export function ewsConnection(credential: EwsCredential, auth: EwsAuth): Connection {
	const appOnly = credential.method === 'oauthAppOnly';
	// Autodiscover's answer, once known (mailboxFor and identityFor come before any sender or reader).
	let resolvedUrl = credential.url;
	const url = async () => (resolvedUrl ||= await ewsUrlOf(credential, auth));
	const ownAddress = credential.username.includes('@') ? credential.username : '';

	const options = (mailbox: string, extra: Partial<EwsClientOptions> = {}): EwsClientOptions => {
		if (!resolvedUrl) throw new Error('The EWS URL is not known yet: the mailbox must be resolved first');
		return { url: resolvedUrl, auth, version: credential.version, mailbox, impersonate: appOnly, trust: credential.trust, ...extra };
	};

	const mailboxFor = async (requested: string, field = 'Mailbox'): Promise<string> => {
		const mailbox = (requested || credential.mailbox).trim();
		const shownField = requested ? field : 'Default Mailbox';
		if (mailbox) {
			if (!PLAIN_ADDRESS.test(mailbox)) {
				throw new ActionableError(`${shownField}: "${mailbox}" is not a mailbox address`, 'EWS_INVALID_MAILBOX', `Enter ${shownField} as one plain address, e.g. shared@contoso.com`);
			}
			assertMailboxAllowed(credential, mailbox, shownField);
		} else if (appOnly) {
			throw noMailbox();
		} else if (credential.allowedMailboxes.length) {
			// The account's own mailbox must itself be allowed; a Windows account name is no address to check.
			if (!ownAddress) {
				throw new ActionableError(
					`${field}: Allowed Mailboxes is set, but the account's own mailbox has no address here to check against it`,
					'MAILBOX_NOT_ALLOWED',
					`Name the mailbox in Default Mailbox (credential) or the node option ${field}`,
				);
			}
			assertMailboxAllowed(credential, ownAddress, field);
		}
		await url();
		return mailbox;
	};

	const connection: Connection = {
		secrets: credential.secrets,
		warning: ewsWarning(credential),
		mailboxFor,
		async identityFor(requested: string): Promise<SendIdentity> {
			const mailbox = await mailboxFor(requested);
			return { key: (mailbox || 'own').toLowerCase(), mailbox, fromAddress: mailbox || ownAddress, allowedFrom: credential.allowedMailboxes };
		},
		sender: (identity: SendIdentity, tuning: SenderTuning) =>
			new EwsSender(
				createEwsClient(
					options(identity.mailbox, {
						maxConcurrency: Math.min(MAX_CONCURRENCY, Math.max(1, tuning.maxConnections)),
						retry: {
							...(tuning.retry.retries !== undefined ? { attempts: tuning.retry.retries + 1 } : {}),
							firstBackoffMs: tuning.retry.firstBackoffMs,
							maxBackoffMs: tuning.retry.maxBackoffMs,
						},
					}),
				),
			),
		// One client per reader: it holds the mailbox's request slots and closes with the reader.
		reader: (mailbox: string) => new EwsReader(createEwsClient(options(mailbox))),
		checks: (diagnose: DiagnoseOptions) => ewsChecks(credential, auth, diagnose, { mailboxFor, url, options }),
		async test(): Promise<string> {
			const checks = await ewsChecks(credential, auth, { protocol: 'ews', mailbox: '' }, { mailboxFor, url, options }, true);
			const verdict = testButtonVerdict(await runChecks(checks, { budgetMs: TEST_BUTTON_BUDGET_MS, secrets: credential.secrets }));
			return `EWS at ${resolvedUrl ? new URL(resolvedUrl).host : 'an unknown server'} with ${signInDescription(credential)}: ${verdict}`;
		},
	};
	return connection;
}

interface ConnectionParts {
	mailboxFor(requested: string, field?: string): Promise<string>;
	url(): Promise<string>;
	options(mailbox: string, extra?: Partial<EwsClientOptions>): EwsClientOptions;
}

/** The Exchange Online stage: EWS there ends; said as a warning, never a failure. */
function exchangeOnlineCheck(url: string): Check {
	return {
		step: 'credential',
		target: 'EWS in Exchange Online',
		run: async () => ({ status: 'warn', detail: `${new URL(url).host} is Exchange Online: ${EXCHANGE_ONLINE_EWS_NOTICE}`, hint: 'Prefer Graph: Authentication "Microsoft 365 App-Only (Graph)" with the same app registration (Mail.Send, Mail.ReadWrite)', code: 'EWS_EXCHANGE_ONLINE' }),
	};
}

/** A stage that reports a failure found while preparing the run (Autodiscover), so the answer says which step it was. */
const failedStage = (step: Check['step'], target: string, outcome: CheckOutcome): Check => ({ step, target, run: async () => outcome });

function endpointOf(url: string, credential: EwsCredential): Endpoint {
	const parsed = new URL(url);
	const https = parsed.protocol === 'https:';
	const ca = credential.trust.ca ? String(credential.trust.ca) : undefined;
	return { host: parsed.hostname.replace(/^\[|\]$/g, ''), port: Number(parsed.port || (https ? 443 : 80)), mode: https ? 'tls' : 'none', role: 'EWS', ca, rejectUnauthorized: credential.trust.rejectUnauthorized };
}

/**
 * The staged checks: (Autodiscover), the Exchange Online warning, reach and TLS of the EWS host
 * (and of the identity platform for OAuth), the token and its permission (OAuth), GetFolder
 * Inbox, the Inbox's counts, and when asked a round trip (CreateItem, then FindItem in the Inbox).
 */
async function ewsChecks(credential: EwsCredential, auth: EwsAuth, diagnose: DiagnoseOptions, parts: ConnectionParts, testButton = false): Promise<Check[]> {
	servedProtocol(ewsKind, diagnose);
	let url: string;
	try {
		url = await parts.url();
	} catch (error) {
		return [failedStage('reach', `Autodiscover for ${credential.autodiscover?.email}`, { ...outcomeOfError(error), status: 'fail' })];
	}
	const retry = (check: Check) => withPropagationRetry(check, diagnose.propagationRetry, propagating);
	const ews = endpointOf(url, credential);
	const oauth = auth.type === 'bearer';
	const flavour = credential.method === 'oauthAppOnly' ? 'app-only' : 'delegated';

	// The mailbox is settled here; a refused one becomes the login stage's failure, not an exception.
	let mailbox: string | undefined;
	let mailboxProblem: CheckOutcome | undefined;
	try {
		mailbox = await parts.mailboxFor(diagnose.mailbox, diagnose.mailbox ? 'Mailbox' : 'Default Mailbox');
	} catch (error) {
		mailboxProblem =
			error instanceof ActionableError && error.code === 'MAILBOX_REQUIRED'
				? { status: 'warn', detail: 'no mailbox to impersonate, so only the token was checked', hint: 'Set Default Mailbox in the credential (or the Mailbox option) to also check that the app can open it', code: 'MAILBOX_REQUIRED' }
				: outcomeOfError(error);
	}
	const findings: TokenFindings = {};
	const shown = mailbox ?? '';
	const ctx: EwsLoginContext = {
		signIn: SIGN_IN[credential.method],
		account: accountOf(credential),
		mailbox: shown,
		clientId: credential.appOnly?.config.clientId ?? credential.ropc?.clientId ?? '',
		openClient: () => createEwsClient(parts.options(shown, CHECK_REQUESTS)),
		openReader: () => new EwsReader(createEwsClient(parts.options(shown, CHECK_REQUESTS))),
		findings,
	};
	// Without a mailbox the login stage says why (warn: none set; fail: one refused) and the later ones are skipped.
	const withMailbox = (check: Check, skippedDetail?: string): Check =>
		mailbox === undefined ? { ...check, run: async () => (skippedDetail ? { status: 'skipped', detail: skippedDetail } : mailboxProblem!) } : check;

	const checks: Check[] = [];
	if (isExchangeOnline(url)) checks.push(exchangeOnlineCheck(url));
	checks.push(reachOf(ews), tlsOf(ews));
	const loginNeeds = [...overEndpoint(ews)];
	if (oauth) {
		const cloud = credential.cloud!;
		const identity = identityEndpoint(cloud.authorityHost);
		const sameHost = targetOf(identity) === targetOf(ews);
		if (!sameHost) checks.push(reachOf(identity), tlsOf(identity));
		const certificate = credential.appOnly?.config.certificate;
		if (certificate) checks.push(certificateExpiryCheck(certificate.certificatePem));
		const tenantId = credential.appOnly?.config.tenantId ?? credential.ropc?.tenantId ?? '';
		const token = tokenCheck({ tokens: auth.tokens, audience: 'exchange', authorityHost: cloud.authorityHost, tenantId, findings });
		checks.push({ ...token, needs: overEndpoint(identity), ...(testButton ? { timeoutMs: TEST_BUTTON_TOKEN_TIMEOUT_MS } : {}) });
		checks.push(retry(ewsPermissionCheck(ctx, flavour)));
		loginNeeds.push('token:exchange');
	}
	checks.push(retry(withMailbox(ewsLoginCheck(ctx, loginNeeds))));
	checks.push(retry(withMailbox(ewsReadCheck(ctx), 'skipped: no mailbox to read')));
	if (diagnose.roundTrip && !testButton) {
		const { to, timeoutMs } = diagnose.roundTrip;
		const fromAddress = shown || (credential.username.includes('@') ? credential.username : '');
		checks.push(
			withMailbox(
				roundTripOver(() => ({ sender: new EwsSender(createEwsClient(parts.options(shown, CHECK_REQUESTS))), reader: new EwsReader(createEwsClient(parts.options(shown, CHECK_REQUESTS))) }), { fromAddress, to, timeoutMs, folder: EWS_INBOX }, ['login:ews']),
				'skipped: no mailbox to send from',
			),
		);
	}
	return checks;
}

/** Who signs in, as the stages name it. */
function accountOf(credential: EwsCredential): string {
	if (credential.method === 'oauthAppOnly') return `the app ${maskIdentifier(credential.appOnly!.config.clientId)}`;
	return credential.domain ? `${credential.domain}\\${credential.username}` : credential.username;
}
