import { splitList } from '../model/validate';
import { maskIdentifier } from '../model/redact';
import { SmtpSender, type SmtpSecurity } from '../transports/smtp/smtp-sender';
import type { Connection, ConnectionKind, CredentialData, SendIdentity, SenderTuning } from './connection';
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

const SECURITY_LABEL: Record<SmtpSecurity, string> = { tls: 'SSL/TLS', starttls: 'STARTTLS', none: 'no encryption' };

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
			async test() {
				const sender = smtpSender(credential, { maxConnections: 1 });
				try {
					await sender.verify();
				} finally {
					await sender.close();
				}
				const who = credential.user ? `authenticated as ${maskIdentifier(credential.user)}` : 'no sign-in';
				const warning = credential.ignoreCertificateErrors ? ' WARNING: certificate checks are off.' : '';
				return `Connected to ${credential.host}:${credential.port} with ${SECURITY_LABEL[credential.security]}, ${who}.${warning}`;
			},
		};
	},
};
