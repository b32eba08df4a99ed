import type { ICredentialDataDecryptedObject, IExecuteFunctions, ILoadOptionsFunctions } from 'n8n-workflow';

import { IdentityError } from '../../auth/identity-errors';
import { ActionableError } from '../../model/actionable-error';
import { ImapReader, type ImapSecurity } from '../../transports/imap/imap-reader';
import {
	APP_ONLY_CREDENTIAL,
	appOnlyTokens,
	DELEGATED_CREDENTIAL,
	delegatedTokensThroughN8n,
	microsoftImapReader,
	readAppOnlyCredential,
	readDelegatedCredential,
	tokenUser,
} from './microsoft-connection';

export const IMAP_CREDENTIAL = 'modernAuthImapApi';

export type ReadAuthentication = 'imap' | 'microsoftAppOnly' | 'microsoftDelegated';

export interface ReaderSetup {
	reader: ImapReader;
	/** Values to scrub from any message that leaves the node. */
	secrets: string[];
	warning?: string;
}

function readImapCredential(data: ICredentialDataDecryptedObject) {
	const text = (key: string) => (typeof data[key] === 'string' ? (data[key] as string).trim() : '');
	const security = (['tls', 'starttls', 'none'].includes(text('security')) ? text('security') : 'tls') as ImapSecurity;
	const port = Number(data.port) > 0 ? Number(data.port) : 993;
	return {
		host: text('host'),
		port,
		security,
		allowUnencrypted: data.allowUnencrypted === true,
		user: text('user'),
		password: typeof data.password === 'string' ? data.password : '',
		caCertificate: text('caCertificate'),
		ignoreCertificateErrors: data.ignoreCertificateErrors === true,
	};
}

/** Builds the reader for the credential chosen by "Authentication" (not yet connected). */
export async function prepareReader(
	ctx: IExecuteFunctions | ILoadOptionsFunctions,
	authentication: ReadAuthentication,
	mailboxOverride = '',
): Promise<ReaderSetup> {
	if (authentication === 'imap') {
		const credential = readImapCredential(await ctx.getCredentials(IMAP_CREDENTIAL));
		if (!credential.host) throw new ActionableError('The IMAP credential has no host', 'IMAP_CONFIG', 'Open the credential and fill in Host');
		if (credential.security === 'none' && !credential.allowUnencrypted) {
			throw new ActionableError(
				'The IMAP credential uses Security "None" without "Allow Unencrypted Connection"',
				'IMAP_UNENCRYPTED_REFUSED',
				'Choose SSL/TLS or STARTTLS, or switch on "Allow Unencrypted Connection" if you really mean it',
			);
		}
		return {
			secrets: [credential.password],
			warning: credential.ignoreCertificateErrors
				? `TLS certificate checks are OFF for ${credential.host} (credential option "Ignore Certificate Errors")`
				: undefined,
			reader: new ImapReader({
				host: credential.host,
				port: credential.port,
				security: credential.security,
				auth: { type: 'password', user: credential.user, pass: credential.password },
				rejectUnauthorized: !credential.ignoreCertificateErrors,
				ca: credential.caCertificate || undefined,
			}),
		};
	}
	if (authentication === 'microsoftAppOnly') {
		const credential = readAppOnlyCredential(await ctx.getCredentials(APP_ONLY_CREDENTIAL));
		const mailbox = (mailboxOverride || credential.mailbox).trim();
		if (!mailbox) throw noMailbox();
		return {
			secrets: credential.secrets,
			reader: microsoftImapReader(credential, appOnlyTokens(credential), 'app-only', mailbox),
		};
	}
	const credential = readDelegatedCredential(await ctx.getCredentials(DELEGATED_CREDENTIAL));
	const tokens = delegatedTokensThroughN8n(ctx, credential);
	let mailbox = (mailboxOverride || credential.mailbox).trim();
	if (!mailbox) mailbox = tokenUser((await tokens.getToken(credential.audience)).token);
	if (!mailbox) throw noMailbox();
	return { secrets: credential.secrets, reader: microsoftImapReader(credential, tokens, 'delegated', mailbox) };
}

function noMailbox(): IdentityError {
	return new IdentityError('No mailbox to open', 'MAILBOX_REQUIRED', 'Set the mailbox in the credential, or the node option Mailbox');
}
