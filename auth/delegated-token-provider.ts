import type { AccessToken, TokenAudience, TokenProvider, TokenRequestOptions } from './app-only-token-provider';
import { describeIdentityError, IdentityError } from './identity-errors';

/** Renew this long before expiry, so a token never expires in the middle of a send. */
const EXPIRY_MARGIN_MS = 5 * 60 * 1000;

export interface DelegatedTokenSource {
	/** Audience the credential's scopes were consented for; one token serves one audience. */
	audience: TokenAudience;
	/** The access token n8n has stored for the credential, if connected. */
	accessToken?: string;
	/** Refreshes through n8n, which persists the rotated refresh token; returns the new access token. */
	refresh(): Promise<string>;
	authorityHost: string;
}

/** Reads `exp` from a JWT access token; undefined for opaque tokens. */
export function tokenExpiry(token: string): Date | undefined {
	try {
		const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
		return typeof payload.exp === 'number' ? new Date(payload.exp * 1000) : undefined;
	} catch {
		return undefined;
	}
}

// Refused refresh: n8n's OAuth2 client reports RFC 6749's invalid_grant text, Entra adds codes.
const RECONNECT =
	/invalid_grant|AADSTS(70008|50173|700082|700084|54005)|needs to be reconnected|not connected|authorization grant .*is invalid/i;

/**
 * Tokens of a connected (delegated) credential: the stored one while it is fresh, else one
 * refresh through n8n, shared by every connection of the execution.
 */
export class DelegatedTokenProvider implements TokenProvider {
	private current?: AccessToken;
	/** How early to renew the current token: 5 minutes, or half its lifetime if it is shorter. */
	private margin = EXPIRY_MARGIN_MS;
	private pending?: Promise<AccessToken>;

	constructor(private readonly source: DelegatedTokenSource) {
		if (source.accessToken) {
			this.current = {
				token: source.accessToken,
				// An opaque token of unknown age is used once; a refusal renews it.
				expiresAt: tokenExpiry(source.accessToken) ?? new Date(Date.now() + EXPIRY_MARGIN_MS + 60_000),
			};
		}
	}

	async getToken(audience: TokenAudience, options: TokenRequestOptions = {}): Promise<AccessToken> {
		if (audience !== this.source.audience) {
			const wanted = audience === 'graph' ? 'Microsoft Graph Mail' : 'IMAP and SMTP (Exchange)';
			throw new IdentityError(
				`This delegated credential was connected for ${this.source.audience === 'graph' ? 'Microsoft Graph' : 'IMAP and SMTP'}, not ${wanted}`,
				'WRONG_AUDIENCE',
				`One Microsoft token serves one audience: create a second credential with "Use For" = ${wanted} and connect it`,
			);
		}
		const cached = this.current;
		const renew =
			Boolean(options.forceRefresh) ||
			!cached ||
			(options.rejectedToken !== undefined && cached.token === options.rejectedToken) ||
			cached.expiresAt.getTime() - Date.now() <= this.margin;
		if (!renew && cached) return cached;
		this.pending ??= this.refresh().finally(() => {
			this.pending = undefined;
		});
		return await this.pending;
	}

	private async refresh(): Promise<AccessToken> {
		try {
			const token = await this.source.refresh();
			const expiresAt = tokenExpiry(token) ?? new Date(Date.now() + 50 * 60 * 1000);
			this.margin = Math.min(EXPIRY_MARGIN_MS, (expiresAt.getTime() - Date.now()) / 2);
			this.current = { token, expiresAt };
			return this.current;
		} catch (error) {
			const e = error as { message?: string; cause?: unknown; body?: unknown; code?: unknown };
			const text = [e?.message, e?.code, JSON.stringify(e?.body ?? ''), JSON.stringify(e?.cause ?? '')].join(' ');
			if (RECONNECT.test(text)) {
				throw new IdentityError(
					'The Microsoft sign-in of this credential has expired or was revoked',
					'RECONNECT_CREDENTIAL',
					'Open the credential and click "Connect my account" again',
				);
			}
			throw describeIdentityError(error, { authorityHost: this.source.authorityHost });
		}
	}
}
