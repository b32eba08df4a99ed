import type { IExecuteFunctions } from 'n8n-workflow';

import { splitList } from '../../model/validate';
import type { MailSender } from '../../transports/contracts';
import type { SmtpRetryPolicy } from '../../transports/smtp/smtp-sender';
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

/** Who one item signs in and sends as. */
export interface SendIdentity {
	/** Items with the same key share one pooled sender (for XOAUTH2 the sign-in mailbox). */
	key: string;
	fromAddress: string;
	allowedFrom: string[];
}

export interface SenderTuning {
	maxConnections: number;
	retry: Partial<SmtpRetryPolicy>;
}

export interface SenderSetup {
	/** Values to scrub from any message that leaves the node. */
	secrets: string[];
	/** Shown once in the n8n log, never in items. */
	warning?: string;
	/** Evaluated per item: Mailbox is an item parameter. */
	identityFor(itemIndex: number): Promise<SendIdentity>;
	create(identity: SendIdentity, tuning: SenderTuning): MailSender;
}

function noMailbox(): IdentityError {
	return new IdentityError(
		'No mailbox to sign in as',
		'MAILBOX_REQUIRED',
		'Set Default Mailbox in the credential, or the node option Mailbox',
	);
}

function mailboxOption(ctx: IExecuteFunctions, itemIndex: number, fallback: string): string {
	return String(ctx.getNodeParameter('options.mailbox', itemIndex, '') || fallback).trim();
}

/** Checked here, as soon as the item's mailbox is known, so a refusal names Mailbox (not From). */
function mailboxIdentity(mailbox: string, credential: { allowedMailboxes: string[] }): SendIdentity {
	if (!mailbox) throw noMailbox();
	assertMailboxAllowed(credential, mailbox, 'Mailbox');
	return { key: mailbox.toLowerCase(), fromAddress: mailbox, allowedFrom: credential.allowedMailboxes };
}

/**
 * Reads the credential chosen by "Authentication" and says how to send with it. Connections
 * open only when `create` is called, after every item has been validated.
 */
export async function prepareSender(ctx: IExecuteFunctions, authentication: SendAuthentication): Promise<SenderSetup> {
	if (authentication === 'microsoftAppOnly') {
		const credential = readAppOnlyCredential(await ctx.getCredentials(APP_ONLY_CREDENTIAL));
		const tokens = appOnlyTokens(credential);
		return {
			secrets: credential.secrets,
			identityFor: async (itemIndex) => mailboxIdentity(mailboxOption(ctx, itemIndex, credential.mailbox), credential),
			create: (identity, tuning) =>
				createMicrosoftSmtpSender(credential, tokens, 'app-only', identity.fromAddress, tuning),
		};
	}
	if (authentication === 'microsoftDelegated') {
		const credential = readDelegatedCredential(await ctx.getCredentials(DELEGATED_CREDENTIAL));
		const tokens = delegatedTokensThroughN8n(ctx, credential);
		// The signed-in account, read from the token once, for items that name no mailbox.
		let signedIn: Promise<string> | undefined;
		const signedInUser = () => (signedIn ??= tokens.getToken(credential.audience).then(({ token }) => tokenUser(token)));
		return {
			secrets: credential.secrets,
			identityFor: async (itemIndex) =>
				mailboxIdentity(mailboxOption(ctx, itemIndex, credential.mailbox) || (await signedInUser()), credential),
			create: (identity, tuning) =>
				createMicrosoftSmtpSender(credential, tokens, 'delegated', identity.fromAddress, tuning),
		};
	}
	const credential = readSmtpCredential(await ctx.getCredentials(SMTP_CREDENTIAL));
	const identity: SendIdentity = {
		key: '',
		fromAddress: credential.fromAddress,
		allowedFrom: splitList(credential.allowedFrom),
	};
	return {
		secrets: [credential.password],
		warning: credential.ignoreCertificateErrors
			? `TLS certificate checks are OFF for ${credential.host} (credential option "Ignore Certificate Errors")`
			: undefined,
		identityFor: async () => identity,
		create: (_identity, tuning) => createSmtpSender(credential, tuning),
	};
}
