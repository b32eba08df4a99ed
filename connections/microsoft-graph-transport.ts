import type { TokenProvider } from '../auth/app-only-token-provider';
import { outcomeOfError, runChecks, testButtonVerdict, TEST_BUTTON_BUDGET_MS, withPropagationRetry, type Check, type CheckOutcome, type DiagnoseOptions } from '../diagnostics/checks';
import { certificateExpiryCheck, secretExpiryCheck } from '../diagnostics/credential-expiry';
import { graphLoginCheck, graphReadCheck, GRAPH_INBOX, type GraphLoginContext } from '../diagnostics/graph-login';
import { mailboxAccessCheck, permissionCheck, tokenCheck, type Flavour, type TokenFindings } from '../diagnostics/microsoft-token';
import { withRelease } from '../diagnostics/login-context';
import { roundTripCheck, roundTripTimeoutMs } from '../diagnostics/round-trip';
import { ActionableError } from '../model/actionable-error';
import { createGraphClient, type GraphClientOptions } from '../transports/graph/graph-client';
import { GraphReader } from '../transports/graph/graph-reader';
import { GraphSender } from '../transports/graph/graph-sender';
import { isValidMailbox } from '../transports/graph/mailbox-path';
import type { TlsTrust } from '../transports/tls-options';
import type { Connection, SenderTuning, SendIdentity } from './connection';
import { identityEndpoint, overEndpoint, reachOf, targetOf, tlsOf, type Endpoint } from './connection-checks';
import { assertMailboxAllowed } from './microsoft-credential';

/**
 * What both Graph kinds (app-only, delegated) share once their credential is parsed: the
 * Graph host and token provider, the mailbox rules, and how senders and readers are made.
 */
export interface GraphAccess {
	graphHost: string;
	tokens: TokenProvider;
	trust: TlsTrust;
	/** Credential's default mailbox; '' for delegated means the signed-in account (`/me`). */
	defaultMailbox: string;
	allowedMailboxes: string[];
	secrets: string[];
	/** The signed-in account's address (delegated, from the token), for From and Allowed Mailboxes. */
	signedInUser?: () => Promise<string>;
	/** What the staged checks (Test button, Test Connection node) need beyond sending and reading. */
	diagnostics: GraphDiagnostics;
}

export interface GraphDiagnostics {
	flavour: Flavour;
	authorityHost: string;
	tenantId: string;
	clientId: string;
	/** App-only: the credential's own proof, whose expiry the credential stage reports. */
	certificatePem?: string;
	clientSecret?: string;
	/** The token check's provider when it differs (delegated without n8n's refresh: the stored token, not a forced renewal). */
	tokens?: TokenProvider;
}

/** Graph's MailboxConcurrency: requests in flight per mailbox. */
const MAX_CONCURRENCY = 4;

function noMailbox(): ActionableError {
	return new ActionableError(
		'No mailbox to use through Graph',
		'MAILBOX_REQUIRED',
		'Set Default Mailbox in the credential, or the node option Mailbox',
	);
}

/** Checked before anything connects, so the refusal names the field (the client checks again). */
function notAddressable(field: string, mailbox: string): ActionableError {
	return new ActionableError(
		`${field}: "${mailbox}" is not a mailbox Graph can address`,
		'GRAPH_INVALID_MAILBOX',
		`Enter ${field} as a plain address (user@contoso.com) or the mailbox's object id (GUID)`,
	);
}

/** One opened Graph credential: mailbox rules first, then senders, readers and the Test button. */
export function graphConnection(access: GraphAccess): Connection {
	const endpoint = (mailbox: string, extra: Partial<GraphClientOptions> = {}): GraphClientOptions => ({
		graphHost: access.graphHost,
		tokens: access.tokens,
		trust: access.trust,
		...(mailbox ? { mailbox } : {}),
		...extra,
	});

	const mailboxFor = async (requested: string, field = 'Mailbox'): Promise<string> => {
		const mailbox = (requested || access.defaultMailbox).trim();
		if (mailbox) {
			assertMailboxAllowed(access, mailbox, field);
			if (!isValidMailbox(mailbox)) throw notAddressable(field, mailbox);
			return mailbox;
		}
		if (!access.signedInUser) throw noMailbox();
		// `/me`: the signed-in account must itself be allowed.
		if (access.allowedMailboxes.length) assertMailboxAllowed(access, await access.signedInUser(), field);
		return '';
	};

	return {
		secrets: access.secrets,
		mailboxFor,
		async identityFor(requested: string): Promise<SendIdentity> {
			const mailbox = await mailboxFor(requested);
			const fromAddress = mailbox || (await access.signedInUser?.()) || '';
			return {
				key: (mailbox || 'me').toLowerCase(),
				mailbox,
				fromAddress,
				allowedFrom: access.allowedMailboxes,
			};
		},
		sender: (identity: SendIdentity, tuning: SenderTuning) =>
			new GraphSender(
				endpoint(identity.mailbox, {
					maxConcurrency: Math.min(MAX_CONCURRENCY, Math.max(1, tuning.maxConnections)),
					retry: {
						...(tuning.retry.retries !== undefined ? { attempts: tuning.retry.retries + 1 } : {}),
						firstBackoffMs: tuning.retry.firstBackoffMs,
						maxBackoffMs: tuning.retry.maxBackoffMs,
					},
				}),
			),
		// One client per reader: it holds the mailbox's request slots and closes with the reader.
		reader: (mailbox: string) => new GraphReader(createGraphClient(endpoint(mailbox))),
		checks: (options: DiagnoseOptions) => graphChecks(access, options, mailboxFor),
		async test(): Promise<string> {
			const checks = await graphChecks(access, { protocol: 'graph', mailbox: '' }, mailboxFor);
			return testButtonVerdict(await runChecks(checks, { budgetMs: TEST_BUTTON_BUDGET_MS, secrets: access.secrets }));
		},
	};
}

/** Graph requests of a check: few retries and a short idle time-out, so a check answers inside its own time. */
const CHECK_REQUESTS: Partial<GraphClientOptions> = { retry: { attempts: 2, firstBackoffMs: 200, maxBackoffMs: 1_000 }, timeoutMs: 8_000 };

/**
 * The staged checks for Graph: reach and TLS of the identity platform and the Graph host, the
 * credential's expiry (app-only), the Graph token and its permission, whose account signed in
 * (delegated), the first mailbox call, the Inbox counts and, when asked, a round trip.
 */
async function graphChecks(access: GraphAccess, options: DiagnoseOptions, mailboxFor: (requested: string, field?: string) => Promise<string>): Promise<Check[]> {
	if (options.protocol && options.protocol !== 'graph') {
		throw new ActionableError(
			`This credential connects through Microsoft Graph; it cannot be tested for ${options.protocol.toUpperCase()}`,
			'PROTOCOL_NOT_SERVED',
			'Choose Protocol Graph, or pick the Authentication option of this credential for SMTP / IMAP',
		);
	}
	const d = access.diagnostics;
	// MSAL reaches the identity platform with Node's own trust store, not the credential's CA.
	const identity = identityEndpoint(d.authorityHost);
	// The Graph host is an https endpoint like the identity platform's, trusted as the transports trust it.
	const graph: Endpoint = { ...identityEndpoint(access.graphHost), role: 'Graph', ca: caText(access.trust), rejectUnauthorized: access.trust.rejectUnauthorized !== false };
	const sameHost = targetOf(graph) === targetOf(identity);
	const findings: TokenFindings = {};
	const retry = options.propagationRetry;

	// The mailbox is settled here; a refused one becomes the login stage's failure, not an exception.
	let mailbox: string | undefined;
	let noMailbox: CheckOutcome | undefined;
	try {
		mailbox = await mailboxFor(options.mailbox, options.mailbox ? 'Mailbox' : 'Default Mailbox');
	} catch (error) {
		noMailbox =
			error instanceof ActionableError && error.code === 'MAILBOX_REQUIRED'
				? { status: 'warn', detail: 'no mailbox to open, so only the token was checked', hint: 'Set Default Mailbox in the credential (or the Mailbox option) to also check that the app can read it', code: 'MAILBOX_REQUIRED' }
				: outcomeOfError(error);
	}
	const shown = mailbox || '';
	const ctx: GraphLoginContext = {
		flavour: d.flavour,
		clientId: d.clientId,
		mailbox: shown,
		findings,
		openReader: () => new GraphReader(createGraphClient(endpointOf(access, shown))),
	};
	// Without a mailbox the login stage says why (warn: none set; fail: one refused) and the later ones are skipped.
	const withMailbox = (check: Check, skippedDetail?: string): Check =>
		mailbox === undefined ? { ...check, run: async () => (skippedDetail ? { status: 'skipped', detail: skippedDetail } : noMailbox!) } : check;

	const token = tokenCheck({ tokens: d.tokens ?? access.tokens, audience: 'graph', authorityHost: d.authorityHost, tenantId: d.tenantId, findings });
	const checks: Check[] = [
		reachOf(identity),
		...(sameHost ? [] : [reachOf(graph)]),
		tlsOf(graph),
		...(sameHost ? [] : [tlsOf(identity)]),
		...certificateChecks(access),
		{ ...token, needs: overEndpoint(identity) },
		// After the token: it reads the app registration with that token (and a failed token is reported once, by its own stage).
		...secretChecks(access, graph),
		withPropagationRetry(refreshingToken(permissionCheck({ protocol: 'graph', flavour: d.flavour, findings, clientId: d.clientId, mailbox: shown }), token), retry),
		...(d.flavour === 'delegated' ? [mailboxAccessCheck({ mailbox: shown, findings })] : []),
		withPropagationRetry(withMailbox({ ...graphLoginCheck(ctx), needs: ['token:graph', ...overEndpoint(graph)] }), retry),
		withPropagationRetry(withMailbox(graphReadCheck(ctx, GRAPH_INBOX), 'skipped: no mailbox to read'), retry),
	];
	if (options.roundTrip) checks.push(withMailbox(graphRoundTrip(access, shown, options.roundTrip), 'skipped: no mailbox to send from'));
	return checks;
}

const caText = (trust: TlsTrust) => (trust.ca ? String(trust.ca) : undefined);

function endpointOf(access: GraphAccess, mailbox: string): GraphClientOptions {
	return { graphHost: access.graphHost, tokens: access.tokens, trust: access.trust, ...(mailbox ? { mailbox } : {}), ...CHECK_REQUESTS };
}

/** App-only with a certificate: its dates, from the credential itself. */
function certificateChecks(access: GraphAccess): Check[] {
	const d = access.diagnostics;
	return d.flavour === 'app-only' && d.certificatePem ? [certificateExpiryCheck(d.certificatePem)] : [];
}

/** App-only with a client secret: its end date, from the app registration (when the app may read it). */
function secretChecks(access: GraphAccess, graph: Endpoint): Check[] {
	const d = access.diagnostics;
	if (d.flavour !== 'app-only' || d.certificatePem || !d.clientSecret) return [];
	const secret = secretExpiryCheck({ graphHost: access.graphHost, clientId: d.clientId, clientSecret: d.clientSecret, tokens: access.tokens, ca: caText(access.trust) });
	return [informational({ ...secret, needs: ['token:graph', ...overEndpoint(graph)] }, SECRET_LOOKUP_MS, "the secret's expiry is unknown")];
}

/** The secret's end date is extra information: a slow answer must not eat the Test button's 14 s. */
const SECRET_LOOKUP_MS = 4_000;

/** A stage that only informs: no answer in time is `skipped` (the login stage reports a stalled host), not a failure. */
function informational(check: Check, withinMs: number, unknown: string): Check {
	return {
		...check,
		timeoutMs: withinMs + 1_000,
		async run(signal) {
			let timer: NodeJS.Timeout | undefined;
			const late = new Promise<CheckOutcome>((resolve) => {
				timer = setTimeout(() => resolve({ status: 'skipped', detail: `skipped: no answer within ${withinMs / 1000} s, so ${unknown}` }), withinMs);
			});
			try {
				return await Promise.race([check.run(signal), late]);
			} finally {
				clearTimeout(timer);
			}
		},
	};
}

/**
 * A permission check whose repeats (propagation retry) decode a new token: the roles of a
 * consent given a minute ago are only in tokens issued after it.
 */
function refreshingToken(permission: Check, token: Check): Check {
	let tries = 0;
	return {
		...permission,
		async run(signal) {
			if (tries++ > 0) await token.run(signal);
			return permission.run(signal);
		},
	};
}

/** Sends a test message from the mailbox to `to` through Graph and reads it back from the mailbox's Inbox. */
function graphRoundTrip(access: GraphAccess, mailbox: string, roundTrip: { to: string; timeoutMs: number }): Check {
	return {
		step: 'round-trip',
		target: roundTrip.to,
		timeoutMs: roundTripTimeoutMs(roundTrip.timeoutMs),
		needs: ['login:graph'],
		async run(signal) {
			const fromAddress = mailbox || (await access.signedInUser?.()) || '';
			const sender = new GraphSender(endpointOf(access, mailbox));
			const reader = new GraphReader(createGraphClient(endpointOf(access, mailbox)));
			const release = async () => void (await Promise.all([sender.close(), reader.close()]));
			return await withRelease(signal, release, () => roundTripCheck({ sender, fromAddress, to: roundTrip.to, reader, folder: GRAPH_INBOX, timeoutMs: roundTrip.timeoutMs }).run(signal));
		},
	};
}
