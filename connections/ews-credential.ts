import type { CloudEndpoints } from '../auth/clouds';
import { IdentityError } from '../auth/identity-errors';
import { IdleLruCache } from '../auth/idle-lru-cache';
import { ropcTokenProvider } from '../auth/ropc-token-provider';
import { ActionableError } from '../model/actionable-error';
import { maskIdentifier, redactError } from '../model/redact';
import { splitList } from '../model/validate';
import { discoverEwsUrl } from '../transports/ews/autodiscover';
import { DEFAULT_EWS_SERVER_VERSION, EWS_SERVER_VERSIONS, type EwsAuth, type EwsServerVersion } from '../transports/ews/types';
import type { TlsTrust } from '../transports/tls-options';
import type { CredentialData } from './connection';
import { secretField, text } from './credential-fields';
import { appOnlyTokens, collectingSecrets, readAppOnlyCredential, type AppOnlyCredential } from './microsoft-credential';

export const EWS_CREDENTIAL = 'modernAuthEwsApi';

export type EwsAuthMethod = 'ntlm' | 'basic' | 'oauthAppOnly' | 'oauthRopc';
const METHODS: readonly EwsAuthMethod[] = ['ntlm', 'basic', 'oauthAppOnly', 'oauthRopc'];

/** The stored EWS credential, read and checked; nothing connected yet. */
export interface EwsCredential {
	/** Set when the credential names the URL; '' when Autodiscover finds it. */
	url: string;
	autodiscover?: { email: string; url?: string };
	method: EwsAuthMethod;
	/** NTLM / Basic / ROPC account. */
	username: string;
	password: string;
	domain: string;
	/** App-only: the app registration (tenant, client, secret or certificate, cloud). */
	appOnly?: AppOnlyCredential;
	/** ROPC: the app registration the user signs in through. */
	ropc?: { tenantId: string; clientId: string; clientSecret: string };
	/** OAuth: the cloud (identity platform, Exchange token audience). */
	cloud?: CloudEndpoints;
	/** Default mailbox ('' = the account's own; app-only: none set). */
	mailbox: string;
	allowedMailboxes: string[];
	version: EwsServerVersion;
	trust: TlsTrust;
	/** Values that must never show up in messages; live: tokens join as they are handed out. */
	secrets: string[];
}

const fieldError = (message: string, hint: string, code = 'EWS_CONFIG') => new ActionableError(message, code, hint);

// One plain address, as Autodiscover and the mailbox headers need it.
const PLAIN_ADDRESS = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+\.[^\s@<>()[\]\\,;:"]+$/;

function parseUrl(field: string, value: string, example: string): URL {
	let url: URL;
	try {
		url = new URL(value);
	} catch {
		throw fieldError(`${field} "${value}" is not a URL`, `Enter ${field} as a full address, e.g. ${example}`);
	}
	if (url.protocol !== 'https:' && url.protocol !== 'http:') {
		throw fieldError(`${field} "${value}" is not an http(s) URL`, `Enter ${field} as a full address, e.g. ${example}`);
	}
	if (url.username || url.password) {
		throw fieldError(`${field} carries a user name or password`, `Remove them from ${field}: the account goes into Username and Password`);
	}
	return url;
}

/** Where the requests go: a URL (checked) or Autodiscover from an address. */
function readEndpoint(data: CredentialData): Pick<EwsCredential, 'url' | 'autodiscover'> {
	if (text(data, 'endpoint') === 'autodiscover') {
		const email = text(data, 'autodiscoverEmail');
		if (!email) throw fieldError('Email Address is empty: Autodiscover needs a mailbox address', 'Enter the address of a mailbox on the Exchange server in Email Address, or choose Find the Server By "EWS URL"');
		if (!PLAIN_ADDRESS.test(email)) throw fieldError(`Email Address "${email}" is not a plain address`, 'Enter one address, e.g. robot@contoso.com');
		const override = text(data, 'autodiscoverUrl');
		if (override) {
			const url = parseUrl('Autodiscover URL', override, 'https://autodiscover.contoso.com/autodiscover/autodiscover.xml');
			if (url.protocol !== 'https:') throw fieldError('Autodiscover URL must be https://', 'Autodiscover is asked with the account\'s password or token: enter an https:// address');
		}
		return { url: '', autodiscover: { email, ...(override ? { url: override } : {}) } };
	}
	const url = text(data, 'url');
	if (!url) throw fieldError('EWS URL is empty', 'Enter the EWS URL (https://your-exchange-server/EWS/Exchange.asmx), or choose Find the Server By "Autodiscover"');
	parseUrl('EWS URL', url, 'https://mail.contoso.com/EWS/Exchange.asmx');
	return { url };
}

/** NTLM's account: "DOMAIN\name" in Username fills an empty Domain. */
function ntlmAccount(username: string, domain: string): { username: string; domain: string } {
	const slash = username.indexOf('\\');
	if (slash > 0 && !domain) return { domain: username.slice(0, slash), username: username.slice(slash + 1) };
	return { username, domain };
}

function readVersion(data: CredentialData): EwsServerVersion {
	const version = text(data, 'serverVersion') || DEFAULT_EWS_SERVER_VERSION;
	if (!(EWS_SERVER_VERSIONS as readonly string[]).includes(version)) {
		throw fieldError(`Server Version "${version}" is not one this package speaks`, `Choose one of: ${EWS_SERVER_VERSIONS.join(', ')}`);
	}
	return version as EwsServerVersion;
}

function readCa(data: CredentialData): string {
	const ca = text(data, 'caCertificate');
	if (ca && !ca.includes('-----BEGIN CERTIFICATE-----')) {
		throw fieldError('Trusted CA Certificate is not a PEM certificate', 'Paste the CA certificate including -----BEGIN CERTIFICATE----- and -----END CERTIFICATE----- (public certificates only, no private key)');
	}
	return ca;
}

/** Reads and checks every field the chosen authentication uses, before anything is asked of a server. */
export function readEwsCredential(data: CredentialData): EwsCredential {
	const method = (text(data, 'ewsAuth') || 'ntlm') as EwsAuthMethod;
	if (!METHODS.includes(method)) throw fieldError(`Authentication "${method}" is not an EWS sign-in method`, `Choose one of: NTLM, Basic, OAuth App-Only, OAuth Username and Password`);
	const endpoint = readEndpoint(data);
	const caCertificate = readCa(data);
	const base = {
		...endpoint,
		method,
		username: '',
		password: '',
		domain: '',
		mailbox: text(data, 'mailbox'),
		allowedMailboxes: splitList(text(data, 'allowedMailboxes')),
		version: readVersion(data),
		trust: { rejectUnauthorized: data.allowUnauthorizedCerts !== true, ...(caCertificate ? { ca: caCertificate } : {}) },
	};
	if (base.mailbox && !PLAIN_ADDRESS.test(base.mailbox)) throw fieldError(`Default Mailbox "${base.mailbox}" is not a plain address`, 'Enter one address, e.g. shared@contoso.com, or leave it empty');
	// The password, the tokens and the mail go in every request: never over plain http. NTLM
	// hides the password but not the mail, and its session can be taken over on the path.
	if (endpoint.url && new URL(endpoint.url).protocol === 'http:') {
		const what = method === 'basic' ? 'Basic sends the password in every request' : method === 'ntlm' ? 'NTLM would leave every message readable and its signed-in connection open to takeover' : 'OAuth sends the token in every request';
		throw fieldError(`EWS URL is http://: ${what} and would go out in clear text`, 'Use the https:// address of the EWS URL', 'EWS_UNENCRYPTED_REFUSED');
	}

	if (method === 'oauthAppOnly') {
		const appOnly = readAppOnlyCredential(data);
		return { ...base, appOnly, cloud: appOnly.cloud, secrets: appOnly.secrets };
	}

	const password = secretField(data, 'password');
	let username = text(data, 'username');
	let domain = text(data, 'domain');
	if (!username) throw fieldError('Username is empty', method === 'ntlm' ? 'Enter the Windows account in Username (name or DOMAIN\\name) and its Password' : 'Enter the account (user@contoso.com) in Username and its Password');
	if (!password) throw fieldError(`Password is empty for ${username}`, 'Enter the account\'s Password in the credential');
	if (method === 'ntlm') ({ username, domain } = ntlmAccount(username, domain));
	const secrets = [password];

	if (method === 'oauthRopc') {
		// ROPC signs in one user of one tenant: 'organizations' would leave MSAL to guess the home tenant.
		if (['common', 'organizations', 'consumers'].includes(text(data, 'tenantId').toLowerCase())) {
			throw new IdentityError('Username/password sign-in (ROPC) needs a specific tenant', 'TENANT_REQUIRED', 'Enter your tenant GUID or domain in Tenant ID');
		}
		// The same tenant, client and cloud fields as app-only; the secret is optional here.
		const registration = readAppOnlyCredential({ ...data, authType: 'secret' });
		const clientSecret = registration.config.clientSecret ?? '';
		if (clientSecret) secrets.push(clientSecret);
		return {
			...base,
			username,
			password,
			ropc: { tenantId: registration.config.tenantId, clientId: registration.config.clientId, clientSecret },
			cloud: registration.cloud,
			secrets,
		};
	}
	return { ...base, username, password, domain: method === 'ntlm' ? domain : '', secrets };
}

/** The log line for a credential whose certificate checks are off. */
export function ewsWarning(credential: EwsCredential): string | undefined {
	const where = credential.url ? new URL(credential.url).host : `the server Autodiscover finds for ${credential.autodiscover?.email}`;
	const warnings: string[] = [];
	if (!credential.trust.rejectUnauthorized) warnings.push(`TLS certificate checks are OFF for ${where} (credential option "Ignore Certificate Problems")`);
	return warnings.length ? warnings.join('; ') : undefined;
}

/** How requests of this credential prove who they are; token providers ask nothing until the first request. */
export function ewsAuthOf(credential: EwsCredential): EwsAuth {
	switch (credential.method) {
		case 'ntlm':
			return { type: 'ntlm', username: credential.username, password: credential.password, domain: credential.domain };
		case 'basic':
			return { type: 'basic', username: credential.username, password: credential.password };
		case 'oauthAppOnly':
			return { type: 'bearer', flavour: 'app-only', tokens: appOnlyTokens(credential.appOnly!) };
		case 'oauthRopc': {
			const { tenantId, clientId, clientSecret } = credential.ropc!;
			const provider = ropcTokenProvider({ tenantId, clientId, ...(clientSecret ? { clientSecret } : {}), username: credential.username, password: credential.password, cloud: credential.cloud! });
			return { type: 'bearer', flavour: 'ropc', tokens: collectingSecrets(provider, credential.secrets) };
		}
	}
}

/** Who signs in, for messages (masked where it identifies a tenant or app). */
export function signInDescription(credential: EwsCredential): string {
	switch (credential.method) {
		case 'ntlm':
			return `NTLM as ${credential.domain ? `${credential.domain}\\` : ''}${credential.username}`;
		case 'basic':
			return `Basic as ${credential.username}`;
		case 'oauthAppOnly':
			return `app-only OAuth (app ${maskIdentifier(credential.appOnly!.config.clientId)})`;
		case 'oauthRopc':
			return `OAuth username/password as ${credential.username} (app ${maskIdentifier(credential.ropc!.clientId)})`;
	}
}

/**
 * Autodiscover answers, kept per credential (address, override, account) for an hour of
 * idleness: every execution and poll opens the credential again, and Autodiscover walks up to
 * two hosts and ten redirects.
 */
const discovered = new IdleLruCache<string>({ maxEntries: 200, idleMs: 60 * 60_000 });
const discovering = new Map<string, Promise<string>>();

const AUTODISCOVER_TIMEOUT_MS = 20_000;

function cacheKey(credential: EwsCredential): string {
	const who = credential.method === 'oauthAppOnly' ? credential.appOnly!.config.clientId : `${credential.domain}\\${credential.username}`;
	return JSON.stringify([credential.autodiscover?.email.toLowerCase(), credential.autodiscover?.url ?? '', credential.method, who.toLowerCase(), credential.trust.rejectUnauthorized]);
}

/** The EWS URL: the credential's own, or Autodiscover's answer (cached; concurrent opens share one lookup). */
export async function ewsUrlOf(credential: EwsCredential, auth: EwsAuth, timeoutMs = AUTODISCOVER_TIMEOUT_MS): Promise<string> {
	if (credential.url || !credential.autodiscover) return credential.url;
	const key = cacheKey(credential);
	const known = discovered.get(key);
	if (known) return known;
	let pending = discovering.get(key);
	if (!pending) {
		pending = discoverEwsUrl({ email: credential.autodiscover.email, auth, trust: credential.trust, ...(credential.autodiscover.url ? { autodiscoverUrl: credential.autodiscover.url } : {}), timeoutMs })
			.then((url) => {
				discovered.set(key, url);
				return url;
			})
			.catch((error: unknown) => {
				throw redactError(error, credential.secrets);
			})
			.finally(() => discovering.delete(key));
		discovering.set(key, pending);
	}
	return await pending;
}

/** Forgets every Autodiscover answer (tests; a server that moved). */
export function forgetDiscoveredUrls(): void {
	discovered.clear();
}
