import { ConfidentialClientApplication, type Configuration } from '@azure/msal-node';
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';

import { appOnlyScope, type CloudEndpoints } from './clouds';
import { describeIdentityError, IdentityError, identityTimeoutError } from './identity-errors';
import { IdleLruCache } from './idle-lru-cache';
import { TimedNetworkClient, tokenTimeoutMs } from './timed-network-client';

export type TokenAudience = 'exchange' | 'graph';

export interface AccessToken {
	token: string;
	expiresAt: Date;
}


export interface TokenRequestOptions {
	/** Skip every cache (credential Test button). */
	forceRefresh?: boolean;
	/**
	 * The token a server just refused. A new one is fetched only if the cached token is that
	 * one, so many pooled connections refusing the same token cost one request.
	 */
	rejectedToken?: string;
}

/** What transports ask for: a bearer token for one audience, renewed when told it failed. */
export interface TokenProvider {
	getToken(audience: TokenAudience, options?: TokenRequestOptions): Promise<AccessToken>;
}

export interface AppOnlyCertificate {
	certificatePem: string;
	privateKeyPem: string;
	passphrase?: string;
}

export interface AppOnlyConfig {
	tenantId: string;
	clientId: string;
	cloud: CloudEndpoints;
	clientSecret?: string;
	certificate?: AppOnlyCertificate;
	/** Deadline per request to the identity platform; default MAM_TOKEN_TIMEOUT_MS, else 30 s. */
	tokenTimeoutMs?: number;
}

/** Renew this long before expiry, so a token never expires in the middle of a send. */
const EXPIRY_MARGIN_MS = 5 * 60 * 1000;


export interface CertificateInfo {
	thumbprintSha1: string;
	thumbprintSha256: string;
	privateKeyPem: string;
	notAfter: Date;
}

/** Parses the PEM pair, checks they belong together, and computes the thumbprints. */
export function inspectCertificate(input: AppOnlyCertificate): CertificateInfo {
	let certificate: X509Certificate;
	try {
		certificate = new X509Certificate(input.certificatePem);
	} catch {
		throw new IdentityError(
			'The certificate is not a valid PEM certificate',
			'CERTIFICATE_INVALID',
			'Paste the public certificate including -----BEGIN CERTIFICATE----- and -----END CERTIFICATE-----',
		);
	}
	let privateKeyPem: string;
	try {
		const key = createPrivateKey({ key: input.privateKeyPem, passphrase: input.passphrase || undefined });
		if (
			!createPublicKey(key)
				.export({ type: 'spki', format: 'der' })
				.equals(certificate.publicKey.export({ type: 'spki', format: 'der' }))
		) {
			throw new IdentityError(
				'The private key does not belong to the certificate',
				'CERTIFICATE_KEY_MISMATCH',
				'Paste the private key that was created together with this certificate',
			);
		}
		privateKeyPem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
	} catch (error) {
		if (error instanceof IdentityError) throw error;
		throw new IdentityError(
			'The private key cannot be read',
			'CERTIFICATE_KEY_INVALID',
			'Paste a PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN ENCRYPTED PRIVATE KEY-----) and, if encrypted, its passphrase',
		);
	}
	const hex = (fingerprint: string) => fingerprint.replace(/:/g, '').toLowerCase();
	return {
		thumbprintSha1: hex(certificate.fingerprint),
		thumbprintSha256: hex(certificate.fingerprint256),
		privateKeyPem,
		notAfter: new Date(certificate.validTo),
	};
}

/**
 * One MSAL client per credential, shared by every item and execution in this process.
 * Tokens are kept per audience until shortly before expiry, and concurrent requests for
 * the same token wait for one request to the identity platform.
 */
class AppOnlyClient implements TokenProvider {
	private msal?: ConfidentialClientApplication;
	private readonly tokens = new Map<TokenAudience, AccessToken>();
	private readonly pending = new Map<TokenAudience, Promise<AccessToken>>();
	private readonly network: TimedNetworkClient;
	private readonly cloud: CloudEndpoints;
	private readonly timeoutMs: () => number;

	constructor(config: AppOnlyConfig) {
		this.cloud = config.cloud;
		const configuredTimeout = config.tokenTimeoutMs;
		this.timeoutMs = () => tokenTimeoutMs(configuredTimeout);
		this.network = new TimedNetworkClient(this.timeoutMs);
		const authorityUrl = new URL(config.cloud.authorityHost);
		const msalConfig: Configuration = {
			auth: {
				clientId: config.clientId,
				authority: `${config.cloud.authorityHost}/${config.tenantId}`,
				// Known authority: MSAL trusts the host without instance discovery, which national
				// clouds and private endpoints would otherwise fail.
				knownAuthorities: [authorityUrl.host],
			},
			system: {
				loggerOptions: { piiLoggingEnabled: false, loggerCallback: () => {} },
				networkClient: this.network,
			},
		};
		if (config.certificate) {
			const info = inspectCertificate(config.certificate);
			msalConfig.auth.clientCertificate = {
				thumbprintSha256: info.thumbprintSha256,
				privateKey: info.privateKeyPem,
				x5c: config.certificate.certificatePem,
			};
		} else {
			msalConfig.auth.clientSecret = config.clientSecret;
		}
		this.msal = new ConfidentialClientApplication(msalConfig);
	}

	/** Evicted from the cache: drop the MSAL client (with the decrypted secret or key) and its tokens. */
	dispose(): void {
		this.msal?.clearCache();
		this.msal = undefined;
		this.tokens.clear();
	}

	async getToken(audience: TokenAudience, options: TokenRequestOptions = {}): Promise<AccessToken> {
		const cached = this.tokens.get(audience);
		const renew = Boolean(options.forceRefresh) || (options.rejectedToken !== undefined && cached?.token === options.rejectedToken);
		if (!renew && cached && cached.expiresAt.getTime() - Date.now() > EXPIRY_MARGIN_MS) return cached;
		const inFlight = this.pending.get(audience);
		if (inFlight) return await inFlight;
		const request = this.acquire(audience, renew).finally(() => {
			this.pending.delete(audience);
		});
		this.pending.set(audience, request);
		return await request;
	}

	private async acquire(audience: TokenAudience, skipCache: boolean): Promise<AccessToken> {
		const timeoutsBefore = this.network.timeouts;
		try {
			if (!this.msal) throw new Error('the Microsoft sign-in client was released');
			const result = await this.msal.acquireTokenByClientCredential({
				scopes: [appOnlyScope(this.cloud, audience)],
				skipCache: skipCache || undefined,
			});
			if (!result?.accessToken) throw new Error('the identity platform returned no access token');
			const token: AccessToken = {
				token: result.accessToken,
				expiresAt: result.expiresOn ?? new Date(Date.now() + 55 * 60 * 1000),
			};
			if (this.msal) this.tokens.set(audience, token);
			return token;
		} catch (error) {
			this.tokens.delete(audience);
			// MSAL keeps a 60 s throttle entry after a 5xx/429 and replays that failure without a
			// request; clearing its cache lets the next execution ask the platform again.
			await this.msal?.clearCache();
			// MSAL reports a timed-out discovery request only as "endpoints could not be resolved".
			if (this.network.timeouts > timeoutsBefore) throw identityTimeoutError(this.cloud.authorityHost, this.timeoutMs());
			throw describeIdentityError(error, { authorityHost: this.cloud.authorityHost });
		}
	}
}

export interface AppOnlyClientCacheOptions {
	/** Most MSAL clients kept (one per credential version); default 50. */
	maxClients?: number;
	/** A client unused this long is dropped with its keys; default 30 minutes. */
	idleMs?: number;
	/** Clock, for tests. */
	now?: () => number;
}

function createClientCache(options: AppOnlyClientCacheOptions = {}): IdleLruCache<AppOnlyClient> {
	return new IdleLruCache<AppOnlyClient>({
		maxEntries: options.maxClients ?? 50,
		idleMs: options.idleMs ?? 30 * 60 * 1000,
		now: options.now,
		onEvict: (client) => client.dispose(),
	});
}

// Every edited credential is a new version with its own decrypted secret: without a bound,
// each would stay in memory for the life of the process.
let clients = createClientCache();

/** Replaces the client cache (dropping every client); for tuning and tests. */
export function configureAppOnlyClientCache(options: AppOnlyClientCacheOptions = {}): void {
	clients.clear();
	clients = createClientCache(options);
}

/** How many MSAL clients are held right now. */
export function appOnlyClientCount(): number {
	return clients.size;
}

/** A hash of everything that identifies the credential; never the raw secret as a key. */
export function credentialFingerprint(config: AppOnlyConfig): string {
	return createHash('sha256')
		.update(
			JSON.stringify([
				config.cloud.authorityHost,
				config.cloud.exchangeHost,
				config.cloud.graphHost,
				config.tenantId.toLowerCase(),
				config.clientId.toLowerCase(),
				config.clientSecret ?? '',
				config.certificate?.certificatePem ?? '',
				config.certificate?.privateKeyPem ?? '',
				config.certificate?.passphrase ?? '',
			]),
		)
		.digest('hex');
}

/** The process-wide token provider for an app-only credential. */
export function appOnlyTokenProvider(config: AppOnlyConfig): TokenProvider {
	if (!config.clientSecret && !config.certificate) {
		throw new IdentityError(
			'The Microsoft app-only credential has neither a client secret nor a certificate',
			'CREDENTIAL_INCOMPLETE',
			'Open the credential and fill in Client Secret, or choose Certificate and paste certificate and private key',
		);
	}
	const key = credentialFingerprint(config);
	const clientFor = () => {
		let client = clients.get(key);
		if (!client) {
			client = new AppOnlyClient(config);
			clients.set(key, client);
		}
		return client;
	};
	// Built now, so a bad certificate fails before any item is processed.
	clientFor();
	// Callers hold this handle, not the client: an evicted client is rebuilt on next use.
	return { getToken: (audience, options) => clientFor().getToken(audience, options) };
}
