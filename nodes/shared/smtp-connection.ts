import type { ICredentialDataDecryptedObject } from 'n8n-workflow';

import { MailTransportError } from '../../transports/contracts';
import { SmtpSender, type SmtpSecurity, type SmtpSenderOptions } from '../../transports/smtp/smtp-sender';

export const SMTP_CREDENTIAL = 'modernAuthSmtpApi';

export interface SmtpCredentialData {
	host: string;
	port: number;
	security: SmtpSecurity;
	allowUnencrypted: boolean;
	user: string;
	password: string;
	fromAddress: string;
	allowedFrom: string;
	clientHostName: string;
	ignoreCertificateErrors: boolean;
	caCertificate: string;
	connectionTimeout: number;
	socketTimeout: number;
}

/** Reads the stored credential with the same defaults its form shows. */
export function readSmtpCredential(data: ICredentialDataDecryptedObject): SmtpCredentialData {
	const text = (key: string) => (typeof data[key] === 'string' ? (data[key] as string).trim() : '');
	const num = (key: string, fallback: number) => {
		const value = Number(data[key]);
		return Number.isFinite(value) && value > 0 ? value : fallback;
	};
	const security = (text('security') || 'starttls') as SmtpSecurity;
	return {
		host: text('host'),
		port: num('port', 587),
		security: ['starttls', 'tls', 'none'].includes(security) ? security : 'starttls',
		allowUnencrypted: data.allowUnencrypted === true,
		user: text('user'),
		// Passwords may legitimately start or end with spaces: never trim them.
		password: typeof data.password === 'string' ? data.password : '',
		fromAddress: text('fromAddress'),
		allowedFrom: text('allowedFrom'),
		clientHostName: text('clientHostName'),
		ignoreCertificateErrors: data.ignoreCertificateErrors === true,
		caCertificate: text('caCertificate'),
		connectionTimeout: num('connectionTimeout', 30),
		socketTimeout: num('socketTimeout', 120),
	};
}

/** Refuses settings that would silently put secrets on the wire in clear text. */
export function assertSmtpCredentialUsable(credential: SmtpCredentialData): void {
	if (!credential.host) {
		throw new MailTransportError(
			'The SMTP credential has no host',
			'SMTP_CONFIG',
			'Open the credential and fill in Host',
		);
	}
	if (credential.security === 'none' && !credential.allowUnencrypted) {
		throw new MailTransportError(
			'The SMTP credential uses Security "None" without "Allow Unencrypted Connection"',
			'SMTP_UNENCRYPTED_REFUSED',
			'Choose STARTTLS or SSL/TLS, or switch on "Allow Unencrypted Connection" if you really mean it',
		);
	}
}

export function createSmtpSender(
	credential: SmtpCredentialData,
	options: Pick<SmtpSenderOptions, 'maxConnections' | 'retry'> = {},
): SmtpSender {
	assertSmtpCredentialUsable(credential);
	return new SmtpSender({
		host: credential.host,
		port: credential.port,
		security: credential.security,
		auth: credential.user
			? { type: 'password', user: credential.user, pass: credential.password }
			: undefined,
		clientHostName: credential.clientHostName,
		rejectUnauthorized: !credential.ignoreCertificateErrors,
		ca: credential.caCertificate || undefined,
		connectionTimeoutMs: credential.connectionTimeout * 1000,
		greetingTimeoutMs: credential.connectionTimeout * 1000,
		socketTimeoutMs: credential.socketTimeout * 1000,
		maxConnections: options.maxConnections,
		retry: options.retry,
	});
}

export function securityLabel(credential: SmtpCredentialData): string {
	if (credential.security === 'tls') return 'SSL/TLS';
	if (credential.security === 'starttls') return 'STARTTLS';
	return 'no encryption';
}
