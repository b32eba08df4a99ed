import { ConfidentialClientApplication, type Configuration, PublicClientApplication } from '@azure/msal-node';
import { createHash } from 'node:crypto';

import type { AccessToken, TokenAudience, TokenProvider, TokenRequestOptions } from './app-only-token-provider';
import type { CloudEndpoints } from './clouds';
import { describeIdentityError, IdentityError, identityTimeoutError } from './identity-errors';
import { IdleLruCache } from './idle-lru-cache';
import { TimedNetworkClient, tokenTimeoutMs } from './timed-network-client';

export interface RopcConfig {
	tenantId: string;
	clientId: string;
	/** Set for a confidential app registration; a public client signs in without one. */
	clientSecret?: string;
	username: string;
	password: string;
	cloud: CloudEndpoints;
	/** Deadline per request to the identity platform; default MAM_TOKEN_TIMEOUT_MS, else 30 s. */
	tokenTimeoutMs?: number;
}

/** Renew this long before expiry, so a token never expires in the middle of a request. */
const EXPIRY_MARGIN_MS = 5 * 60 * 1000;

/** The delegated EWS scope of the cloud's Exchange host. */
export function ropcScope(cloud: CloudEndpoints, audience: TokenAudience): string {
	if (audience !== 'exchange') {
		throw new IdentityError(
			'The username/password (ROPC) sign-in of the EWS credential gets Exchange tokens only',
			'ROPC_AUDIENCE',
			'Use a Microsoft Graph credential for Graph',
		);
	}
	return `${cloud.exchangeHost.replace(/\/+$/, '')}/EWS.AccessAsUser.All`;
}

/**
 * Resource owner password credentials (MSAL acquireTokenByUsernamePassword): the user's own
 * token for EWS. Microsoft discourages it (no MFA, no Conditional Access prompts); the credential
 * warns. MSAL keeps no account cache for this flow, so tokens are cached here until shortly before
 * expiry, and concurrent requests share one request to the identity platform.
 */
class RopcClient implements TokenProvider {
	private msal?: PublicClientApplication | ConfidentialClientApplication;
	private token?: AccessToken;
	private pending?: Promise<AccessToken>;
	private readonly network: TimedNetworkClient;
	private readonly timeoutMs: () => number;

	constructor(private readonly config: RopcConfig) {
		const configuredTimeout = config.tokenTimeoutMs;
		this.timeoutMs = () => tokenTimeoutMs(configuredTimeout);
		this.network = new TimedNetworkClient(this.timeoutMs);
		const msalConfig: Configuration = {
			auth: {
				clientId: config.clientId,
				authority: `${config.cloud.authorityHost}/${config.tenantId}`,
				// Known authority: no instance discovery, which national clouds and private endpoints fail.
				knownAuthorities: [new URL(config.cloud.authorityHost).host],
				...(config.clientSecret ? { clientSecret: config.clientSecret } : {}),
			},
			system: {
				loggerOptions: { piiLoggingEnabled: false, loggerCallback: () => {} },
				networkClient: this.network,
			},
		};
		this.msal = config.clientSecret ? new ConfidentialClientApplication(msalConfig) : new PublicClientApplication(msalConfig);
	}

	dispose(): void {
		void this.msal?.clearCache();
		this.msal = undefined;
		this.token = undefined;
	}

	async getToken(audience: TokenAudience, options: TokenRequestOptions = {}): Promise<AccessToken> {
		const scope = ropcScope(this.config.cloud, audience);
		const cached = this.token;
		const renew = Boolean(options.forceRefresh) || (options.rejectedToken !== undefined && cached?.token === options.rejectedToken);
		if (!renew && cached && cached.expiresAt.getTime() - Date.now() > EXPIRY_MARGIN_MS) return cached;
		if (this.pending) return await this.pending;
		this.pending = this.acquire(scope).finally(() => {
			this.pending = undefined;
		});
		return await this.pending;
	}

	private async acquire(scope: string): Promise<AccessToken> {
		const timeoutsBefore = this.network.timeouts;
		try {
			if (!this.msal) throw new Error('the Microsoft sign-in client was released');
			const result = await this.msal.acquireTokenByUsernamePassword({ scopes: [scope], username: this.config.username, password: this.config.password });
			if (!result?.accessToken) throw new Error('the identity platform returned no access token');
			const token: AccessToken = { token: result.accessToken, expiresAt: result.expiresOn ?? new Date(Date.now() + 55 * 60 * 1000) };
			if (this.msal) this.token = token;
			return token;
		} catch (error) {
			this.token = undefined;
			await this.msal?.clearCache();
			if (this.network.timeouts > timeoutsBefore) throw identityTimeoutError(this.config.cloud.authorityHost, this.timeoutMs());
			throw describeIdentityError(error, { authorityHost: this.config.cloud.authorityHost });
		}
	}
}

// Bounded like the app-only clients: each edited credential is a new entry with its own password.
const clients = new IdleLruCache<RopcClient>({ maxEntries: 50, idleMs: 30 * 60 * 1000, onEvict: (client) => client.dispose() });

/** Everything that identifies the sign-in, hashed: never the password itself as a key. */
function fingerprint(config: RopcConfig): string {
	return createHash('sha256')
		.update(
			JSON.stringify([
				config.cloud.authorityHost,
				config.cloud.exchangeHost,
				config.tenantId.toLowerCase(),
				config.clientId.toLowerCase(),
				config.clientSecret ?? '',
				config.username.toLowerCase(),
				config.password,
			]),
		)
		.digest('hex');
}

/** The process-wide token provider for a username/password (ROPC) EWS credential. */
export function ropcTokenProvider(config: RopcConfig): TokenProvider {
	if (!config.username || !config.password) {
		throw new IdentityError(
			'The username/password sign-in needs both a user name and a password',
			'CREDENTIAL_INCOMPLETE',
			'Open the credential and fill in User Name (user@domain) and Password',
		);
	}
	const key = fingerprint(config);
	const clientFor = () => {
		let client = clients.get(key);
		if (!client) {
			client = new RopcClient(config);
			clients.set(key, client);
		}
		return client;
	};
	clientFor();
	return { getToken: (audience, options) => clientFor().getToken(audience, options) };
}
