import type { TokenProvider } from '../auth/app-only-token-provider';
import { IdentityError } from '../auth/identity-errors';
import { ImapReader } from '../transports/imap/imap-reader';
import { SmtpSender } from '../transports/smtp/smtp-sender';
import type { Connection, SenderTuning } from './connection';
import { assertMailboxAllowed, type MicrosoftCredential } from './microsoft-credential';

/** SASL XOAUTH2 as `mailbox` with tokens for the Exchange audience (SMTP and IMAP alike). */
function exchangeXoauth2(tokens: TokenProvider, flavour: 'app-only' | 'delegated', mailbox: string) {
	return {
		type: 'oauth2' as const,
		flavour,
		user: mailbox,
		getAccessToken: (rejectedToken?: string) => tokens.getToken('exchange', { rejectedToken }),
	};
}

/** SMTP submission (STARTTLS) with SASL XOAUTH2 as `mailbox`. */
export function microsoftSmtpSender(
	credential: MicrosoftCredential,
	tokens: TokenProvider,
	flavour: 'app-only' | 'delegated',
	mailbox: string,
	tuning: Partial<SenderTuning> = {},
	timeoutMs?: number,
): SmtpSender {
	assertMailboxAllowed(credential, mailbox, 'Mailbox');
	return new SmtpSender({
		...(timeoutMs ? { connectionTimeoutMs: timeoutMs, greetingTimeoutMs: timeoutMs, socketTimeoutMs: timeoutMs } : {}),
		host: credential.smtpHost,
		port: credential.smtpPort,
		security: 'starttls',
		auth: exchangeXoauth2(tokens, flavour, mailbox),
		rejectUnauthorized: true,
		ca: credential.caCertificate || undefined,
		maxConnections: tuning.maxConnections,
		retry: tuning.retry,
	});
}

/** IMAP over implicit TLS with SASL XOAUTH2 as `mailbox`. */
export function microsoftImapReader(credential: MicrosoftCredential, tokens: TokenProvider, flavour: 'app-only' | 'delegated', mailbox: string, timeoutMs?: number): ImapReader {
	assertMailboxAllowed(credential, mailbox, 'Mailbox');
	return new ImapReader({
		...(timeoutMs ? { connectionTimeoutMs: timeoutMs, socketTimeoutMs: timeoutMs } : {}),
		host: credential.imapHost,
		port: credential.imapPort,
		security: 'tls',
		auth: exchangeXoauth2(tokens, flavour, mailbox),
		rejectUnauthorized: true,
		ca: credential.caCertificate || undefined,
	});
}

/**
 * The parts of a Microsoft connection that read and send over Exchange's SMTP and IMAP. The
 * one place that decides which mailbox an item works on: the node's Mailbox option, else the
 * credential's mailbox, else (delegated) the signed-in account, read from the token once.
 */
export function exchangeConnection(
	credential: MicrosoftCredential,
	tokens: TokenProvider,
	flavour: 'app-only' | 'delegated',
	signedInUser?: () => Promise<string>,
): Omit<Connection, 'test' | 'checks'> {
	let signedIn: Promise<string> | undefined;
	const resolve = async (requested: string) => {
		let mailbox = (requested.trim() || credential.mailbox).trim();
		if (!mailbox && signedInUser) mailbox = (await (signedIn ??= signedInUser())).trim();
		return mailbox;
	};
	return {
		secrets: credential.secrets,
		async mailboxFor(requested, field = 'Mailbox') {
			const mailbox = await resolve(requested);
			if (!mailbox) throw new IdentityError('No mailbox to open', 'MAILBOX_REQUIRED', 'Set the mailbox in the credential, or the node option Mailbox');
			assertMailboxAllowed(credential, mailbox, field);
			return mailbox;
		},
		async identityFor(requested) {
			const mailbox = await resolve(requested);
			if (!mailbox) {
				throw new IdentityError('No mailbox to sign in as', 'MAILBOX_REQUIRED', 'Set Default Mailbox in the credential, or the node option Mailbox');
			}
			// Checked here, as soon as the item's mailbox is known, so a refusal names Mailbox (not From).
			assertMailboxAllowed(credential, mailbox, 'Mailbox');
			return { key: mailbox.toLowerCase(), mailbox, fromAddress: mailbox, allowedFrom: credential.allowedMailboxes };
		},
		sender: (identity, tuning) => microsoftSmtpSender(credential, tokens, flavour, identity.mailbox, tuning),
		reader: (mailbox) => microsoftImapReader(credential, tokens, flavour, mailbox),
	};
}
