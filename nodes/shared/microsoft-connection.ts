import type { ICredentialDataDecryptedObject } from 'n8n-workflow';

import {
	appOnlyTokenProvider,
	type AppOnlyConfig,
	type TokenProvider,
} from '../../auth/app-only-token-provider';
import { resolveCloud } from '../../auth/clouds';
import { IdentityError } from '../../auth/identity-errors';
import { DelegatedTokenProvider } from '../../auth/delegated-token-provider';
import { SmtpSender, type SmtpSenderOptions } from '../../transports/smtp/smtp-sender';
import { maskIdentifier } from './redact';

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
	/** Values that must never show up in messages. */
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
		secrets: [clientSecret, privateKeyPem, passphrase].filter(Boolean),
	};
}

function hostAndPort(value: string, defaultHost: string, defaultPort: number): [string, number] {
	if (!value) return [defaultHost, defaultPort];
	const match = /^(.+?)(?::(\d{1,5}))?$/.exec(value.replace(/^(smtps?|imaps?):\/\//i, ''));
	return [match?.[1] ?? defaultHost, match?.[2] ? Number(match[2]) : defaultPort];
}

export function appOnlyTokens(credential: AppOnlyCredential): TokenProvider {
	return appOnlyTokenProvider(credential.config);
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

export function delegatedTokens(credential: DelegatedCredential, refresh: () => Promise<string>): DelegatedTokenProvider {
	return new DelegatedTokenProvider({
		audience: credential.audience,
		accessToken: credential.accessToken,
		authorityHost: credential.authorityHost,
		refresh,
	});
}

/** SMTP submission with SASL XOAUTH2 as `mailbox`, tokens for the Exchange audience. */
export function createMicrosoftSmtpSender(
	target: { smtpHost: string; smtpPort: number; caCertificate?: string },
	tokens: TokenProvider,
	flavour: 'app-only' | 'delegated',
	mailbox: string,
	options: Pick<SmtpSenderOptions, 'maxConnections' | 'retry'> = {},
): SmtpSender {
	return new SmtpSender({
		host: target.smtpHost,
		port: target.smtpPort,
		security: 'starttls',
		auth: {
			type: 'oauth2',
			flavour,
			user: mailbox,
			getAccessToken: (rejectedToken) => tokens.getToken('exchange', { rejectedToken }),
		},
		rejectUnauthorized: true,
		ca: target.caCertificate || undefined,
		maxConnections: options.maxConnections,
		retry: options.retry,
	});
}
