import { MailTransportError } from '../transports/contracts';
import type { CredentialData } from './connection';

/** A text field as the credential form stores it, trimmed ('' when absent). */
export function text(data: CredentialData, key: string): string {
	const value = data[key];
	return typeof value === 'string' ? value.trim() : '';
}

/** A password-like field: never trimmed, since secrets may legitimately start or end with spaces. */
export function secretField(data: CredentialData, key: string): string {
	const value = data[key];
	return typeof value === 'string' ? value : '';
}

/** A positive number field, else the default the form shows. */
export function positive(data: CredentialData, key: string, fallback: number): number {
	const value = Number(data[key]);
	return Number.isFinite(value) && value > 0 ? value : fallback;
}

/** `host[:port]` (an smtp:// or imap:// prefix pasted along is ignored); empty means the defaults. */
export function hostAndPort(value: string, defaultHost: string, defaultPort: number): [string, number] {
	if (!value) return [defaultHost, defaultPort];
	const match = /^(.+?)(?::(\d{1,5}))?$/.exec(value.replace(/^(smtps?|imaps?):\/\//i, ''));
	return [match?.[1] ?? defaultHost, match?.[2] ? Number(match[2]) : defaultPort];
}

/** Refuses a password credential that would connect nowhere, or put its secret on the wire in clear text. */
export function assertServerUsable(
	protocol: 'SMTP' | 'IMAP',
	credential: { host: string; security: string; allowUnencrypted: boolean },
): void {
	if (!credential.host) {
		throw new MailTransportError(`The ${protocol} credential has no host`, `${protocol}_CONFIG`, 'Open the credential and fill in Host');
	}
	if (credential.security === 'none' && !credential.allowUnencrypted) {
		throw new MailTransportError(
			`The ${protocol} credential uses Security "None" without "Allow Unencrypted Connection"`,
			`${protocol}_UNENCRYPTED_REFUSED`,
			'Choose STARTTLS or SSL/TLS, or switch on "Allow Unencrypted Connection" if you really mean it',
		);
	}
}

/** The log line for a credential that switched certificate checks off. */
export function certificateWarning(credential: { host: string; ignoreCertificateErrors: boolean }): string | undefined {
	return credential.ignoreCertificateErrors
		? `TLS certificate checks are OFF for ${credential.host} (credential option "Ignore Certificate Errors")`
		: undefined;
}
