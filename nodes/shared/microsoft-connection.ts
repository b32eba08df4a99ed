import type { ICredentialDataDecryptedObject, IExecuteFunctions, ILoadOptionsFunctions } from 'n8n-workflow';

import {
	appOnlyTokenProvider,
	type AppOnlyConfig,
	type TokenProvider,
} from '../../auth/app-only-token-provider';
import { resolveCloud } from '../../auth/clouds';
import { IdentityError } from '../../auth/identity-errors';
import { DelegatedTokenProvider } from '../../auth/delegated-token-provider';
import { ActionableError } from '../../model/actionable-error';
import { isFromAllowed, splitList } from '../../model/validate';
import { ImapReader } from '../../transports/imap/imap-reader';
import { SmtpSender, type SmtpSenderOptions } from '../../transports/smtp/smtp-sender';
import { addSecret, maskIdentifier, redactError } from './redact';

export const APP_ONLY_CREDENTIAL = 'modernAuthMicrosoftAppOnlyApi';
export const DELEGATED_CREDENTIAL = 'modernAuthMicrosoftDelegatedOAuth2Api';

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DOMAIN = /^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i;

export interface AppOnlyCredential {
	config: AppOnlyConfig;
	smtpHost: string;
	smtpPort: number;
	imapHost: string;
	imapPort: number;
	mailbox: string;
	caCertificate: string;
	/** Mailboxes (addresses, `@domains`) nodes may open or send as; empty allows any. */
	allowedMailboxes: string[];
	/** Values that must never show up in messages; live: tokens are added as they are handed out. */
	secrets: string[];
}

export function readAppOnlyCredential(data: ICredentialDataDecryptedObject): AppOnlyCredential {
	const text = (key: string) => (typeof data[key] === 'string' ? (data[key] as string).trim() : '');
	const tenantId = text('tenantId');
	const clientId = text('clientId');
	if (!GUID.test(tenantId) && !DOMAIN.test(tenantId)) {
		throw new IdentityError(
			`Tenant ID "${tenantId || '(empty)'}" is neither a GUID nor a domain`,
			'TENANT_ID_INVALID',
			'Copy Directory (tenant) ID from the app registration overview in the Entra admin center',
		);
	}
	if (['common', 'organizations', 'consumers'].includes(tenantId.toLowerCase())) {
		throw new IdentityError('App-only sign-in needs a specific tenant', 'TENANT_REQUIRED', 'Use your tenant GUID or domain');
	}
	if (!GUID.test(clientId)) {
		throw new IdentityError(
			`Client ID ${maskIdentifier(clientId) || '(empty)'} is not a GUID`,
			'CLIENT_ID_INVALID',
			'Copy Application (client) ID from the app registration overview',
		);
	}
	const cloud = resolveCloud(text('cloud') || 'global', {
		authorityHost: text('authorityHost'),
		exchangeHost: text('exchangeHost'),
		graphHost: text('graphHost'),
	});
	const useCertificate = text('authType') === 'certificate';
	const clientSecret = typeof data.clientSecret === 'string' ? data.clientSecret : '';
	const certificatePem = text('certificatePem');
	const privateKeyPem = text('privateKeyPem');
	const passphrase = typeof data.passphrase === 'string' ? data.passphrase : '';
	const [smtpHost, smtpPort] = hostAndPort(text('smtpServer'), cloud.smtpHost, 587);
	const [imapHost, imapPort] = hostAndPort(text('imapServer'), cloud.imapHost, 993);
	return {
		imapHost,
		imapPort,
		config: {
			tenantId,
			clientId,
			cloud,
			...(useCertificate
				? { certificate: { certificatePem, privateKeyPem, passphrase: passphrase || undefined } }
				: { clientSecret }),
		},
		smtpHost,
		smtpPort,
		mailbox: text('mailbox'),
		caCertificate: text('caCertificate'),
		allowedMailboxes: splitList(text('allowedMailboxes')),
		secrets: [clientSecret, privateKeyPem, passphrase].filter(Boolean),
	};
}

function hostAndPort(value: string, defaultHost: string, defaultPort: number): [string, number] {
	if (!value) return [defaultHost, defaultPort];
	const match = /^(.+?)(?::(\d{1,5}))?$/.exec(value.replace(/^(smtps?|imaps?):\/\//i, ''));
	return [match?.[1] ?? defaultHost, match?.[2] ? Number(match[2]) : defaultPort];
}

/**
 * Hands out the provider's tokens and adds each one to the credential's live secret list;
 * identity errors are redacted here, so even a failure before any node code sees the
 * secrets (e.g. while finding the signed-in user) carries none.
 */
function collectingSecrets(provider: TokenProvider, secrets: string[]): TokenProvider {
	return {
		async getToken(audience, options) {
			try {
				const token = await provider.getToken(audience, options);
				addSecret(secrets, token.token);
				return token;
			} catch (error) {
				throw redactError(error, secrets);
			}
		},
	};
}

export function appOnlyTokens(credential: AppOnlyCredential): TokenProvider {
	return collectingSecrets(appOnlyTokenProvider(credential.config), credential.secrets);
}

export interface DelegatedCredential {
	audience: 'exchange' | 'graph';
	mailbox: string;
	accessToken?: string;
	authorityHost: string;
	smtpHost: string;
	smtpPort: number;
	imapHost: string;
	imapPort: number;
	allowedMailboxes: string[];
	secrets: string[];
}

export function readDelegatedCredential(data: ICredentialDataDecryptedObject): DelegatedCredential {
	const text = (key: string) => (typeof data[key] === 'string' ? (data[key] as string).trim() : '');
	const cloud = resolveCloud(text('cloud') || 'global', { authorityHost: text('authorityHost') });
	const tokenData = (data.oauthTokenData ?? {}) as { access_token?: string; refresh_token?: string };
	const [smtpHost, smtpPort] = hostAndPort(text('smtpServer'), cloud.smtpHost, 587);
	const [imapHost, imapPort] = hostAndPort(text('imapServer'), cloud.imapHost, 993);
	return {
		imapHost,
		imapPort,
		audience: text('useFor') === 'graph' ? 'graph' : 'exchange',
		mailbox: text('mailbox'),
		accessToken: tokenData.access_token,
		authorityHost: cloud.authorityHost,
		smtpHost,
		smtpPort,
		allowedMailboxes: splitList(text('allowedMailboxes')),
		secrets: [
			typeof data.clientSecret === 'string' ? data.clientSecret : '',
			tokenData.access_token ?? '',
			tokenData.refresh_token ?? '',
		].filter(Boolean),
	};
}

/** The signed-in account's address from a delegated token, for the XOAUTH2 user. */
export function tokenUser(token: string): string {
	try {
		const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
		return String(claims.upn ?? claims.preferred_username ?? claims.unique_name ?? '');
	} catch {
		return '';
	}
}

export function delegatedTokens(credential: DelegatedCredential, refresh: () => Promise<string>): TokenProvider {
	const provider = new DelegatedTokenProvider({
		audience: credential.audience,
		accessToken: credential.accessToken,
		authorityHost: credential.authorityHost,
		refresh,
	});
	return collectingSecrets(provider, credential.secrets);
}

/**
 * Delegated tokens refreshed through n8n, which stores the rotated refresh token in its
 * encrypted store (with a lock, so queue-mode workers do not race each other). Both new
 * tokens join the credential's secrets.
 */
export function delegatedTokensThroughN8n(ctx: IExecuteFunctions | ILoadOptionsFunctions, credential: DelegatedCredential): TokenProvider {
	return delegatedTokens(credential, async () => {
		const fresh = (await (ctx as IExecuteFunctions).helpers.refreshOAuth2Token.call(ctx, DELEGATED_CREDENTIAL)) as {
			access_token?: string;
			refresh_token?: string;
		};
		addSecret(credential.secrets, fresh?.refresh_token);
		if (!fresh?.access_token) throw new Error('the token endpoint returned no access token');
		addSecret(credential.secrets, fresh.access_token);
		return fresh.access_token;
	});
}

// One plain address: a list or a display name would slip past a suffix rule ("x@evil, a@ok").
const PLAIN_ADDRESS = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+$/;

/**
 * Refuses a mailbox (or From address) outside the credential's Allowed Mailboxes, before
 * anything connects: an app-only credential can usually reach every mailbox in the tenant,
 * and both nodes can be driven by an AI agent.
 */
export function assertMailboxAllowed(credential: { allowedMailboxes: string[] }, mailbox: string, field: string): void {
	const rules = credential.allowedMailboxes;
	if (rules.length === 0) return;
	if (PLAIN_ADDRESS.test(mailbox) && isFromAllowed(mailbox, rules)) return;
	throw new ActionableError(
		`${field}: "${mailbox}" is not in the credential's Allowed Mailboxes`,
		'MAILBOX_NOT_ALLOWED',
		`The credential allows only: ${rules.join(', ')}. Change ${field}, or add the mailbox to Allowed Mailboxes in the credential`,
	);
}

/** SASL XOAUTH2 as `mailbox` with tokens for the Exchange audience (SMTP and IMAP alike). */
function exchangeXoauth2(tokens: TokenProvider, flavour: 'app-only' | 'delegated', mailbox: string) {
	return {
		type: 'oauth2' as const,
		flavour,
		user: mailbox,
		getAccessToken: (rejectedToken?: string) => tokens.getToken('exchange', { rejectedToken }),
	};
}

/** SMTP submission with SASL XOAUTH2 as `mailbox`, tokens for the Exchange audience. */
export function createMicrosoftSmtpSender(
	target: { smtpHost: string; smtpPort: number; caCertificate?: string; allowedMailboxes: string[] },
	tokens: TokenProvider,
	flavour: 'app-only' | 'delegated',
	mailbox: string,
	options: Pick<SmtpSenderOptions, 'maxConnections' | 'retry'> & { field?: string } = {},
): SmtpSender {
	assertMailboxAllowed(target, mailbox, options.field ?? 'Mailbox');
	return new SmtpSender({
		host: target.smtpHost,
		port: target.smtpPort,
		security: 'starttls',
		auth: exchangeXoauth2(tokens, flavour, mailbox),
		rejectUnauthorized: true,
		ca: target.caCertificate || undefined,
		maxConnections: options.maxConnections,
		retry: options.retry,
	});
}

/** IMAP over implicit TLS with SASL XOAUTH2 as `mailbox`, tokens for the Exchange audience. */
export function microsoftImapReader(
	target: { imapHost: string; imapPort: number; caCertificate?: string; allowedMailboxes: string[] },
	tokens: TokenProvider,
	flavour: 'app-only' | 'delegated',
	mailbox: string,
	options: { field?: string } = {},
): ImapReader {
	assertMailboxAllowed(target, mailbox, options.field ?? 'Mailbox');
	return new ImapReader({
		host: target.imapHost,
		port: target.imapPort,
		security: 'tls',
		auth: exchangeXoauth2(tokens, flavour, mailbox),
		rejectUnauthorized: true,
		ca: target.caCertificate || undefined,
	});
}
