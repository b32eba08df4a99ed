import { runChecks, testButtonVerdict, TEST_BUTTON_BUDGET_MS, type Check, type DiagnoseOptions } from '../diagnostics/checks';
import { smtpLoginCheck } from '../diagnostics/smtp-login';
import { splitList } from '../model/validate';
import { SmtpSender, type SmtpSecurity } from '../transports/smtp/smtp-sender';
import type { Connection, ConnectionKind, CredentialData, SendIdentity, SenderTuning } from './connection';
import { overEndpoint, reachOf, retried, roundTripOver, servedProtocol, targetOf, tlsOf, type Endpoint } from './connection-checks';
import { assertServerUsable, certificateWarning, positive, secretField, text } from './credential-fields';

export const SMTP_CREDENTIAL = 'modernAuthSmtpApi';

export interface SmtpCredential {
	host: string;
	port: number;
	security: SmtpSecurity;
	allowUnencrypted: boolean;
	user: string;
	password: string;
	fromAddress: string;
	allowedFrom: string[];
	clientHostName: string;
	ignoreCertificateErrors: boolean;
	caCertificate: string;
	connectionTimeoutMs: number;
	socketTimeoutMs: number;
}

/** Reads the stored credential with the same defaults its form shows. */
export function readSmtpCredential(data: CredentialData): SmtpCredential {
	const security = text(data, 'security') as SmtpSecurity;
	return {
		host: text(data, 'host'),
		port: positive(data, 'port', 587),
		security: ['starttls', 'tls', 'none'].includes(security) ? security : 'starttls',
		allowUnencrypted: data.allowUnencrypted === true,
		user: text(data, 'user'),
		password: secretField(data, 'password'),
		fromAddress: text(data, 'fromAddress'),
		allowedFrom: splitList(text(data, 'allowedFrom')),
		clientHostName: text(data, 'clientHostName'),
		ignoreCertificateErrors: data.ignoreCertificateErrors === true,
		caCertificate: text(data, 'caCertificate'),
		connectionTimeoutMs: positive(data, 'connectionTimeout', 30) * 1000,
		socketTimeoutMs: positive(data, 'socketTimeout', 120) * 1000,
	};
}

/** Checked when a sender is made (after the items were validated), as before the registry. */
export function smtpSender(credential: SmtpCredential, tuning: Partial<SenderTuning> = {}): SmtpSender {
	assertServerUsable('SMTP', credential);
	return new SmtpSender({
		host: credential.host,
		port: credential.port,
		security: credential.security,
		auth: credential.user ? { type: 'password', user: credential.user, pass: credential.password } : undefined,
		clientHostName: credential.clientHostName,
		rejectUnauthorized: !credential.ignoreCertificateErrors,
		ca: credential.caCertificate || undefined,
		connectionTimeoutMs: credential.connectionTimeoutMs,
		greetingTimeoutMs: credential.connectionTimeoutMs,
		socketTimeoutMs: credential.socketTimeoutMs,
		maxConnections: tuning.maxConnections,
		retry: tuning.retry,
	});
}

/** A sender for one check: one connection, no retries, timeouts inside the check's. */
function probeSender(credential: SmtpCredential, timeoutMs: number): SmtpSender {
	const bounded = { ...credential, connectionTimeoutMs: Math.min(credential.connectionTimeoutMs, timeoutMs), socketTimeoutMs: Math.min(credential.socketTimeoutMs, timeoutMs) };
	return smtpSender(bounded, { maxConnections: 1, retry: { retries: 0 } });
}

const TLS_MODE = { tls: 'tls', starttls: 'starttls-smtp', none: 'none' } as const;

/** reach, TLS, EHLO + AUTH, and (asked for) a test message: it can be sent, not read back. */
function smtpChecks(credential: SmtpCredential, identity: SendIdentity, options: DiagnoseOptions): Check[] {
	servedProtocol(smtpKind, options);
	assertServerUsable('SMTP', credential);
	const server: Endpoint = {
		host: credential.host,
		port: credential.port,
		mode: TLS_MODE[credential.security],
		role: 'SMTP',
		ca: credential.caCertificate || undefined,
		rejectUnauthorized: !credential.ignoreCertificateErrors,
	};
	const checks: Check[] = [reachOf(server), tlsOf(server)];
	checks.push(
		retried(
			smtpLoginCheck({
				server: targetOf(server),
				signIn: credential.user ? 'password' : 'none',
				values: { clientId: '', mailbox: credential.user || identity.fromAddress },
				needs: overEndpoint(server),
				sender: (timeoutMs) => probeSender(credential, timeoutMs),
			}),
			options,
		),
	);
	if (options.roundTrip) {
		const { to, timeoutMs } = options.roundTrip;
		// An SMTP password credential has no mailbox to read from: the check says it only sent.
		checks.push(roundTripOver(() => ({ sender: probeSender(credential, timeoutMs) }), { fromAddress: identity.fromAddress || credential.user, to, timeoutMs }, ['login:smtp']));
	}
	return checks;
}

export const smtpKind: ConnectionKind = {
	authentication: 'smtp',
	displayName: 'SMTP (Password or None)',
	description: 'Any SMTP server, signing in with user and password or not at all',
	credentialType: SMTP_CREDENTIAL,
	protocols: ['smtp'],
	send: true,
	read: false,
	async open(data): Promise<Connection> {
		const credential = readSmtpCredential(data);
		// One identity for every item: an SMTP password signs in as its own user.
		const identity: SendIdentity = { key: '', mailbox: credential.user, fromAddress: credential.fromAddress, allowedFrom: credential.allowedFrom };
		return {
			secrets: [credential.password].filter(Boolean),
			warning: certificateWarning(credential),
			mailboxFor: async () => credential.user,
			identityFor: async () => identity,
			sender: (_identity, tuning) => smtpSender(credential, tuning),
			checks: async (options) => smtpChecks(credential, identity, options),
			/** Test button: the staged checks (no round trip), the failed step and its fix within 15 s. */
			async test() {
				const checks = smtpChecks(credential, identity, { protocol: 'smtp', mailbox: '' }).filter((c) => c.step !== 'round-trip');
				return testButtonVerdict(await runChecks(checks, { budgetMs: TEST_BUTTON_BUDGET_MS, secrets: [credential.password].filter(Boolean) }));
			},
		};
	},
};
