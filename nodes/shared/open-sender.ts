import type { IExecuteFunctions } from 'n8n-workflow';

import { splitList } from '../../model/validate';
import type { MailSender } from '../../transports/contracts';
import {
	APP_ONLY_CREDENTIAL,
	createAppOnlySmtpSender,
	readAppOnlyCredential,
} from './microsoft-connection';
import { createSmtpSender, readSmtpCredential, SMTP_CREDENTIAL } from './smtp-connection';

export type SendAuthentication = 'smtp' | 'microsoftAppOnly';

export interface SenderSetup {
	fromAddress: string;
	allowedFrom: string[];
	/** Values to scrub from any message that leaves the node. */
	secrets: string[];
	/** Shown once in the n8n log, never in items. */
	warning?: string;
	create(options: { maxConnections: number }): MailSender;
}

/**
 * Reads the credential chosen by "Authentication" and says how to send with it. Connections
 * open only when `create` is called, after every item has been validated.
 */
export async function prepareSender(ctx: IExecuteFunctions, authentication: SendAuthentication): Promise<SenderSetup> {
	if (authentication === 'microsoftAppOnly') {
		const credential = readAppOnlyCredential(await ctx.getCredentials(APP_ONLY_CREDENTIAL));
		const mailbox = String(ctx.getNodeParameter('options.mailbox', 0, '') || credential.mailbox).trim();
		return {
			fromAddress: mailbox,
			allowedFrom: [],
			secrets: credential.secrets,
			create: ({ maxConnections }) => createAppOnlySmtpSender(credential, mailbox, { maxConnections }),
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
