import { AuthError, type INetworkModule, type NetworkRequestOptions, type NetworkResponse } from '@azure/msal-node';

/** MSAL error code of a request the identity platform did not answer in time. */
export const IDENTITY_TIMEOUT_CODE = 'identity_timeout';

const DEFAULT_TOKEN_TIMEOUT_MS = 30_000;
/** One more try for a 5xx/429 answer: a passing platform fault should not fail the execution. */
const TRANSIENT_RETRIES = 1;
const RETRY_DELAYS_MS = [1000];
const MAX_RETRY_AFTER_MS = 5_000;

/**
 * How long one request to the identity platform may take: the config's value, else
 * MAM_TOKEN_TIMEOUT_MS (read per request, so an administrator or a fault test can set it),
 * else 30 s. Without it a silent platform holds an execution for fetch's ~300 s.
 */
export function tokenTimeoutMs(configured?: number): number {
	if (configured && configured > 0) return configured;
	const fromEnv = Number(process.env.MAM_TOKEN_TIMEOUT_MS);
	return Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : DEFAULT_TOKEN_TIMEOUT_MS;
}

export function formatSeconds(ms: number): string {
	return `${Number((ms / 1000).toFixed(ms < 1000 ? 2 : 1))} s`;
}

/**
 * MSAL's network client (fetch, JSON bodies, headers as a plain object, the same error
 * codes) with a deadline on every request. Counts time-outs so the caller can tell one
 * from the "endpoints could not be resolved" MSAL reports when discovery times out.
 */
export class TimedNetworkClient implements INetworkModule {
	timeouts = 0;

	constructor(private readonly timeoutMs: () => number) {}

	sendGetRequestAsync<T>(url: string, options?: NetworkRequestOptions, timeout?: number): Promise<NetworkResponse<T>> {
		return this.send<T>(url, 'GET', options, timeout);
	}

	/**
	 * Token requests answered 5xx or 429 are tried again shortly (Retry-After honoured up to 5 s),
	 * because MSAL itself would remember the failure and refuse the same request for 60 s
	 * without asking the platform again.
	 */
	async sendPostRequestAsync<T>(url: string, options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
		for (let attempt = 0; ; attempt++) {
			const response = await this.send<T>(url, 'POST', options);
			const transient = response.status === 429 || response.status >= 500;
			if (!transient || attempt >= TRANSIENT_RETRIES) return response;
			const retryAfterMs = Number(response.headers['retry-after']) * 1000;
			const delay = Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? Math.min(retryAfterMs, MAX_RETRY_AFTER_MS) : RETRY_DELAYS_MS[attempt];
			await new Promise((resolve) => setTimeout(resolve, delay));
		}
	}

	private async send<T>(url: string, method: 'GET' | 'POST', options?: NetworkRequestOptions, timeout?: number): Promise<NetworkResponse<T>> {
		const limit = Math.min(this.timeoutMs(), timeout || Infinity);
		const signal = AbortSignal.timeout(limit);
		const headers = new Headers();
		for (const [key, value] of Object.entries(options?.headers ?? {})) headers.append(key, value);
		let response: Response;
		try {
			response = await fetch(url, { method, headers, signal, ...(method === 'POST' ? { body: options?.body ?? '' } : {}) });
			const body = (await response.json()) as T;
			const responseHeaders: Record<string, string> = {};
			response.headers.forEach((value, key) => {
				responseHeaders[key] = value;
			});
			return { headers: responseHeaders, body, status: response.status };
		} catch (error) {
			if (signal.aborted) {
				this.timeouts++;
				throw new AuthError(IDENTITY_TIMEOUT_CODE, `the Microsoft identity platform did not answer within ${formatSeconds(limit)}`);
			}
			const reason = error instanceof Error ? error.message : 'unknown';
			// The same codes MSAL's own client uses: a failed request, or a body that is not JSON.
			if (error instanceof SyntaxError) throw new AuthError('token_parsing_error', `Failed to parse response: ${reason}`);
			throw new AuthError('network_error', `Network request failed: ${reason}`);
		}
	}
}
