import type { TokenProvider } from '../auth/app-only-token-provider';
import type { Check, CheckResult, DiagnoseOptions } from '../diagnostics/checks';
import { imapLoginCheck, imapReadCheck } from '../diagnostics/imap-login';
import type { LoginContext } from '../diagnostics/login-context';
import { mailboxAccessCheck, permissionCheck, tokenCheck, wrongAccountHint, type TokenFindings } from '../diagnostics/microsoft-token';
import { smtpLoginCheck } from '../diagnostics/smtp-login';
import type { ConnectionKind } from './connection';
import { identityEndpoint, observed, onlyIf, overEndpoint, reachOf, retried, roundTripOver, servedProtocol, targetOf, tlsOf, type Endpoint } from './connection-checks';
import { microsoftImapReader, microsoftSmtpSender } from './microsoft-exchange';
import type { MicrosoftCredential } from './microsoft-credential';

type Flavour = 'app-only' | 'delegated';
type ExchangeProtocol = 'smtp' | 'imap';

/** What the staged checks of a Microsoft Exchange (SMTP / IMAP with XOAUTH2) connection are made from. */
export interface ExchangeCheckSetup {
	kind: Pick<ConnectionKind, 'displayName' | 'protocols'>;
	credential: MicrosoftCredential;
	tokens: TokenProvider;
	flavour: Flavour;
	clientId: string;
	tenantId: string;
	/** The connection's own mailbox resolution (node option, Default Mailbox, signed-in account; Allowed Mailboxes). */
	mailboxFor(requested: string): Promise<string>;
	/** App-only: the certificate's or the client secret's expiry. */
	credentialCheck?: () => Check;
}

/** The permission each protocol needs in the Exchange token. */
const PERMISSION: Record<Flavour, Record<ExchangeProtocol, string>> = {
	'app-only': { imap: 'IMAP.AccessAsApp', smtp: 'SMTP.SendAsApp' },
	delegated: { imap: 'IMAP.AccessAsUser.All', smtp: 'SMTP.Send' },
};

const granted = (findings: TokenFindings): string[] => [...(findings.claims?.roles ?? []), ...(findings.claims?.scp ?? [])];

/** One run's shared state and the endpoints its checks talk to. */
function prepare(setup: ExchangeCheckSetup, mailbox: string) {
	const { credential } = setup;
	const ca = credential.caCertificate || undefined;
	const identity = identityEndpoint(credential.cloud.authorityHost, ca);
	const endpoints: Record<ExchangeProtocol, Endpoint> = {
		smtp: { host: credential.smtpHost, port: credential.smtpPort, mode: 'starttls-smtp', role: 'SMTP', ca, rejectUnauthorized: true },
		imap: { host: credential.imapHost, port: credential.imapPort, mode: 'tls', role: 'IMAP', ca, rejectUnauthorized: true },
	};
	const findings: TokenFindings = {};
	const context: LoginContext = {};
	const values = { clientId: setup.clientId, mailbox };
	const sender = (timeoutMs?: number) => microsoftSmtpSender(credential, setup.tokens, setup.flavour, mailbox, { maxConnections: 1, retry: { retries: 0 } }, timeoutMs);
	const reader = (timeoutMs?: number) => microsoftImapReader(credential, setup.tokens, setup.flavour, mailbox, timeoutMs);
	const token = (): Check => {
		const check = tokenCheck({ tokens: setup.tokens, audience: 'exchange', authorityHost: credential.cloud.authorityHost, tenantId: setup.tenantId, findings });
		return { ...check, needs: [...new Set([...(check.needs ?? []), ...overEndpoint(identity)])] };
	};
	const mailboxAccess = (): Check =>
		observed(mailboxAccessCheck({ mailbox, findings }), (outcome) => {
			if (outcome.status === 'warn' || outcome.status === 'fail') context.wrongAccountHint = wrongAccountHint(findings.claims?.upn ?? '', mailbox);
		});
	return { identity, endpoints, findings, context, values, sender, reader, token, mailboxAccess };
}

type Prepared = ReturnType<typeof prepare>;

/**
 * A permission added minutes ago shows only in a token issued after it: each repeat of the
 * permission check (propagation retry) first asks for a fresh token, then reads it again.
 */
function withFreshTokenOnRetry(permission: Check, token: Check): Check {
	let tries = 0;
	return {
		...permission,
		async run(signal) {
			if (tries++ > 0) await token.run(signal);
			return await permission.run(signal);
		},
	};
}

/** permission, login and (IMAP) read of one protocol; the propagation retry wraps each. */
function protocolSteps(setup: ExchangeCheckSetup, run: Prepared, protocol: ExchangeProtocol, options: Pick<DiagnoseOptions, 'propagationRetry'>): Check[] {
	const endpoint = run.endpoints[protocol];
	const probe = { server: targetOf(endpoint), signIn: setup.flavour, values: run.values, context: run.context };
	const loginNeeds = [...overEndpoint(endpoint), 'token:exchange'];
	const retry = (check: Check) => retried(check, { protocol, mailbox: run.values.mailbox, propagationRetry: options.propagationRetry });
	const permission = permissionCheck({ protocol, flavour: setup.flavour, findings: run.findings, clientId: setup.clientId, mailbox: run.values.mailbox });
	const steps = [retry(withFreshTokenOnRetry(permission, run.token()))];
	if (protocol === 'smtp') {
		steps.push(retry(smtpLoginCheck({ ...probe, needs: loginNeeds, sender: run.sender })));
	} else {
		steps.push(retry(imapLoginCheck({ ...probe, needs: loginNeeds, reader: run.reader })), retry(imapReadCheck({ ...probe, reader: run.reader })));
	}
	return steps;
}

/**
 * Resolves the mailbox. A delegated account whose token cannot be had yet leaves it to the
 * token check to say why; without `required` (the Test button) no mailbox means no mail stage.
 */
async function mailboxOf(setup: ExchangeCheckSetup, requested: string, required: boolean): Promise<string> {
	let timer: NodeJS.Timeout | undefined;
	// Finding the signed-in account may refresh the token: bounded, so a stalled identity platform cannot hold the run before its budget starts.
	const slow = new Promise<string>((_, reject) => {
		timer = setTimeout(() => reject(new Error('the signed-in account could not be found in time')), MAILBOX_LOOKUP_MS);
	});
	try {
		return await Promise.race([setup.mailboxFor(requested), slow]);
	} catch (error) {
		const code = (error as { code?: string }).code;
		if (code === 'MAILBOX_NOT_ALLOWED') throw error;
		if (setup.flavour === 'delegated' || (!required && code === 'MAILBOX_REQUIRED')) return '';
		throw error;
	} finally {
		clearTimeout(timer);
	}
}

const MAILBOX_LOOKUP_MS = 4_000;

/**
 * The Test Connection node's checks for one protocol: reach (identity platform, mail host),
 * TLS of both, the credential's expiry (app-only), the Exchange token, the permission,
 * mailbox access (delegated), login, read (IMAP), and the optional round trip (sent over
 * SMTP, read back over IMAP from the mailbox).
 */
export async function exchangeChecks(setup: ExchangeCheckSetup, options: DiagnoseOptions): Promise<Check[]> {
	const protocol = servedProtocol(setup.kind, options) as ExchangeProtocol;
	const mailbox = await mailboxOf(setup, options.mailbox, true);
	const run = prepare(setup, mailbox);
	const mail = run.endpoints[protocol];
	const checks: Check[] = [reachOf(run.identity), reachOf(mail), tlsOf(run.identity), tlsOf(mail)];
	if (setup.credentialCheck) checks.push(setup.credentialCheck());
	checks.push(run.token());
	const [permission, ...rest] = protocolSteps(setup, run, protocol, options);
	checks.push(permission);
	if (setup.flavour === 'delegated') checks.push(run.mailboxAccess());
	checks.push(...rest);
	if (options.roundTrip) {
		const { to, timeoutMs } = options.roundTrip;
		checks.push(roundTripOver(() => ({ sender: run.sender(), reader: run.reader() }), { fromAddress: mailbox, to, timeoutMs }, [`login:${protocol}`]));
	}
	return checks;
}

const NOT_SET_UP = 'the Exchange token carries no ';

/** What a passing Test button did not test (a protocol the token has no permission for), as one sentence; '' when it tested all. */
export function notTestedNote(results: CheckResult[]): string {
	// the stage's first check says why; those after it were skipped for needing it
	const reasons = new Set(results.filter((r) => r.status === 'skipped' && r.detail.startsWith(`skipped: ${NOT_SET_UP}`)).map((r) => r.detail.slice('skipped: '.length)));
	return [...reasons].map((reason) => ` Not tested: ${/for (\w+)$/.exec(reason)?.[1] ?? 'one protocol'} (${reason}).`).join('');
}

/** A token request in a Test button: two that hang must still leave the answer well inside 15 s. */
export const TEST_BUTTON_TOKEN_TIMEOUT_MS = 6_000;

/**
 * The credential's Test button: the identity platform, the Exchange token, and then, for
 * each protocol whose permission the token carries (and a mailbox to open), its mail host,
 * permission, login and read. `extra` joins after the Exchange token (app-only: the Graph token).
 */
export async function exchangeTestChecks(setup: ExchangeCheckSetup, extra: Check[] = []): Promise<{ checks: Check[]; findings: TokenFindings }> {
	const mailbox = await mailboxOf(setup, '', false);
	const run = prepare(setup, mailbox);
	const checks: Check[] = [reachOf(run.identity), tlsOf(run.identity), { ...run.token(), timeoutMs: TEST_BUTTON_TOKEN_TIMEOUT_MS }, ...extra];
	// After the tokens: the secret's expiry is read from Graph with the token just acquired (one fresh token per audience).
	if (setup.credentialCheck) checks.push(setup.credentialCheck());
	if (setup.flavour === 'delegated') checks.push(run.mailboxAccess());
	if (mailbox) {
		// IMAP last: its read (the message count) is the answer's closing line
		for (const protocol of (['smtp', 'imap'] as const).filter((p) => setup.kind.protocols.includes(p))) {
			const permission = PERMISSION[setup.flavour][protocol];
			const unused = () => {
				if (!run.findings.claims) return 'no Exchange token, so which protocols this credential serves is unknown';
				if (!granted(run.findings).includes(permission)) return `${NOT_SET_UP}${permission}, so this credential is not set up for ${protocol.toUpperCase()}`;
				return undefined;
			};
			const mail = run.endpoints[protocol];
			const stage = [reachOf(mail), tlsOf(mail), ...protocolSteps(setup, run, protocol, {})];
			checks.push(...stage.map((check) => onlyIf(check, unused)));
		}
	}
	return { checks, findings: run.findings };
}
