import { appOnlyTokenProvider, type AppOnlyConfig, type TokenProvider } from '../auth/app-only-token-provider';
import { resolveCloud, type CloudEndpoints } from '../auth/clouds';
import { DelegatedTokenProvider } from '../auth/delegated-token-provider';
import { IdentityError } from '../auth/identity-errors';
import { ActionableError } from '../model/actionable-error';
import { addSecret, maskIdentifier, redactError } from '../model/redact';
import { isFromAllowed, splitList } from '../model/validate';
import type { CredentialData } from './connection';
import { hostAndPort, secretField, text } from './credential-fields';

export const APP_ONLY_CREDENTIAL = 'modernAuthMicrosoftAppOnlyApi';
export const DELEGATED_CREDENTIAL = 'modernAuthMicrosoftDelegatedOAuth2Api';

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DOMAIN = /^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i;

/** What both Microsoft credentials say about where mail is served and who may be opened. */
export interface MicrosoftCredential {
	cloud: CloudEndpoints;
	smtpHost: string;
	smtpPort: number;
	imapHost: string;
	imapPort: number;
	/** The credential's default mailbox ('' = none; delegated: the signed-in account). */
	mailbox: string;
	caCertificate: string;
	/** Mailboxes (addresses, `@domains`) nodes may open or send as; empty allows any. */
	allowedMailboxes: string[];
	/** Values that must never show up in messages; live: tokens are added as they are handed out. */
	secrets: string[];
}

export interface AppOnlyCredential extends MicrosoftCredential {
	config: AppOnlyConfig;
}

export interface DelegatedCredential extends MicrosoftCredential {
	audience: 'exchange' | 'graph';
	accessToken?: string;
}

function mailHosts(data: CredentialData, cloud: CloudEndpoints) {
	const [smtpHost, smtpPort] = hostAndPort(text(data, 'smtpServer'), cloud.smtpHost, 587);
	const [imapHost, imapPort] = hostAndPort(text(data, 'imapServer'), cloud.imapHost, 993);
	return { cloud, smtpHost, smtpPort, imapHost, imapPort, mailbox: text(data, 'mailbox'), caCertificate: text(data, 'caCertificate'), allowedMailboxes: splitList(text(data, 'allowedMailboxes')) };
}

/** The cloud the credential chose; the Custom cloud's hosts come from its own fields. */
function cloudOf(data: CredentialData): CloudEndpoints {
	return resolveCloud(text(data, 'cloud') || 'global', {
		authorityHost: text(data, 'authorityHost'),
		exchangeHost: text(data, 'exchangeHost'),
		graphHost: text(data, 'graphHost'),
	});
}

export function readAppOnlyCredential(data: CredentialData): AppOnlyCredential {
	const tenantId = text(data, 'tenantId');
	const clientId = text(data, 'clientId');
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
	const cloud = cloudOf(data);
	const clientSecret = secretField(data, 'clientSecret');
	const privateKeyPem = text(data, 'privateKeyPem');
	const passphrase = secretField(data, 'passphrase');
	return {
		...mailHosts(data, cloud),
		config: {
			tenantId,
			clientId,
			cloud,
			...(text(data, 'authType') === 'certificate'
				? { certificate: { certificatePem: text(data, 'certificatePem'), privateKeyPem, passphrase: passphrase || undefined } }
				: { clientSecret }),
		},
		secrets: [clientSecret, privateKeyPem, passphrase].filter(Boolean),
	};
}

export function readDelegatedCredential(data: CredentialData): DelegatedCredential {
	const tokenData = (data.oauthTokenData ?? {}) as { access_token?: string; refresh_token?: string };
	return {
		...mailHosts(data, cloudOf(data)),
		audience: text(data, 'useFor') === 'graph' ? 'graph' : 'exchange',
		accessToken: tokenData.access_token,
		secrets: [secretField(data, 'clientSecret'), tokenData.access_token ?? '', tokenData.refresh_token ?? ''].filter(Boolean),
	};
}

/**
 * Hands out the provider's tokens and adds each one to the credential's live secret list;
 * identity errors are redacted here, so even a failure before any node code sees the
 * secrets (e.g. while finding the signed-in user) carries none.
 */
export function collectingSecrets(provider: TokenProvider, secrets: string[]): TokenProvider {
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

/**
 * Delegated tokens: the stored access token while it lasts, then `refresh` (n8n redeems the
 * refresh token and stores the rotated one, with a lock so queue-mode workers do not race).
 * Without `refresh` (credential tests) an expired token is an error saying to reconnect.
 */
export function delegatedTokens(credential: DelegatedCredential, refresh?: () => Promise<string>): TokenProvider {
	const provider = new DelegatedTokenProvider({
		audience: credential.audience,
		accessToken: credential.accessToken,
		authorityHost: credential.cloud.authorityHost,
		refresh: async () => {
			if (!refresh) throw noRefresh();
			const token = await refresh();
			addSecret(credential.secrets, token);
			return token;
		},
	});
	return collectingSecrets(provider, credential.secrets);
}

function noRefresh(): IdentityError {
	return new IdentityError('The stored Microsoft token has expired and cannot be renewed here', 'TOKEN_EXPIRED', 'Click "Connect my account" in the credential again');
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
