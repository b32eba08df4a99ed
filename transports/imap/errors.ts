import { ActionableError } from '../../model/actionable-error';
import { MailTransportError } from '../contracts';
import type { ImapReaderOptions } from './options';

/**
 * Any failure as an ActionableError naming the server and the fix. imapflow's own errors
 * ("Connection not available") name neither.
 */
export function describeImapError(error: unknown, options: Pick<ImapReaderOptions, 'host' | 'port' | 'auth'>): ActionableError {
	if (error instanceof ActionableError) return error;
	const e = error as { message?: string; responseText?: string; authenticationFailed?: boolean; code?: string };
	const where = `${options.host}:${options.port}`;
	const raw = String(e.responseText || e.message || error).replace(/\s+/g, ' ').trim();
	if (e.authenticationFailed) {
		const auth = options.auth;
		const hint =
			auth.type === 'password'
				? 'Check user name and password (some providers need an app password); Microsoft 365 needs an OAuth credential'
				: auth.flavour === 'app-only'
					? 'Grant the app IMAP.AccessAsApp with admin consent, register it in Exchange (New-ServicePrincipal with the ENTERPRISE APPLICATION object id) and give it the mailbox (Add-MailboxPermission)'
					: 'Add the delegated permission IMAP.AccessAsUser.All to the app registration and consent to it (an admin grants consent if users may not), click Connect my account again so the token carries it, and check the signed-in user may open this mailbox';
		return new MailTransportError(`IMAP sign-in refused at ${where} (AUTHENTICATE failed): ${raw}`, 'IMAP_AUTH_FAILED', hint);
	}
	if (/certificate|self[- ]signed|unable to verify/i.test(raw)) {
		return new MailTransportError(
			`TLS certificate of ${where} is not trusted: ${raw}`,
			'IMAP_TLS_UNTRUSTED',
			'Use the host name the certificate was issued for, or trust the issuing CA; "Ignore Certificate Errors" works too but is insecure',
		);
	}
	return new MailTransportError(`IMAP error at ${where}: ${raw}`, e.code || 'IMAP_ERROR', 'Check host, port and security settings of the credential');
}

/** An unknown folder is named with the folders that do exist, so the fix is one look away. */
export function unknownFolder(folder: string, known: string[], role = ''): ActionableError {
	return new ActionableError(`Folder "${folder}"${role} does not exist`, 'IMAP_UNKNOWN_FOLDER', `Folders in this mailbox: ${known.join(', ')}`);
}
