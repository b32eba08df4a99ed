import type { IExecuteFunctions } from 'n8n-workflow';

import { splitList } from '../../model/validate';
import type { MailSender } from '../../transports/contracts';
import { IdentityError } from '../../auth/identity-errors';
import {
	APP_ONLY_CREDENTIAL,
	appOnlyTokens,
	assertMailboxAllowed,
	createMicrosoftSmtpSender,
	DELEGATED_CREDENTIAL,
	delegatedTokensThroughN8n,
	readAppOnlyCredential,
	readDelegatedCredential,
	tokenUser,
} from './microsoft-connection';
import { createSmtpSender, readSmtpCredential, SMTP_CREDENTIAL } from './smtp-connection';

export type SendAuthentication = 'smtp' | 'microsoftAppOnly' | 'microsoftDelegated';

export interface SenderSetup {
	fromAddress: string;
	allowedFrom: string[];
	/** Values to scrub from any message that leaves the node. */
	secrets: string[];
	/** Shown once in the n8n log, never in items. */
	warning?: string;
	create(options: { maxConnections: number }): MailSender;
}

function noMailbox(): IdentityError {
	return new IdentityError(
		'No mailbox to sign in as',
		'MAILBOX_REQUIRED',
		'Set Default Mailbox in the credential, or the node option Mailbox',
	);
}

/**
 * Reads the credential chosen by "Authentication" and says how to send with it. Connections
 * open only when `create` is called, after every item has been validated.
 */
export async function prepareSender(ctx: IExecuteFunctions, authentication: SendAuthentication): Promise<SenderSetup> {
	if (authentication === 'microsoftAppOnly') {
		const credential = readAppOnlyCredential(await ctx.getCredentials(APP_ONLY_CREDENTIAL));
		const mailbox = String(ctx.getNodeParameter('options.mailbox', 0, '') || credential.mailbox).trim();
		if (!mailbox) throw noMailbox();
		assertMailboxAllowed(credential, mailbox, 'Mailbox');
		const tokens = appOnlyTokens(credential);
		return {
			fromAddress: mailbox,
			allowedFrom: credential.allowedMailboxes,
			secrets: credential.secrets,
			create: ({ maxConnections }) =>
				createMicrosoftSmtpSender(credential, tokens, 'app-only', mailbox, { maxConnections }),
		};
	}
	if (authentication === 'microsoftDelegated') {
		const credential = readDelegatedCredential(await ctx.getCredentials(DELEGATED_CREDENTIAL));
		const tokens = delegatedTokensThroughN8n(ctx, credential);
		let mailbox = String(ctx.getNodeParameter('options.mailbox', 0, '') || credential.mailbox).trim();
		if (!mailbox) mailbox = tokenUser((await tokens.getToken(credential.audience)).token);
		if (!mailbox) throw noMailbox();
		assertMailboxAllowed(credential, mailbox, 'Mailbox');
		return {
			fromAddress: mailbox,
			allowedFrom: credential.allowedMailboxes,
			secrets: credential.secrets,
			create: ({ maxConnections }) =>
				createMicrosoftSmtpSender(credential, tokens, 'delegated', mailbox, { maxConnections }),
		};
	}
	const credential = readSmtpCredential(await ctx.getCredentials(SMTP_CREDENTIAL));
	return {
		fromAddress: credential.fromAddress,
		allowedFrom: splitList(credential.allowedFrom),
		secrets: [credential.password],
		warning: credential.ignoreCertificateErrors
			? `TLS certificate checks are OFF for ${credential.host} (credential option "Ignore Certificate Errors")`
			: undefined,
		create: ({ maxConnections }) => createSmtpSender(credential, { maxConnections }),
	};
}
