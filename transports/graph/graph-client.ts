import { Client, type Context, type Middleware, type MiddlewareOptions, ResponseType } from '@microsoft/microsoft-graph-client';
import https from 'node:https';
import { PassThrough, Readable } from 'node:stream';

import type { TokenProvider } from '../../auth/app-only-token-provider';
import { tlsClientOptions, type TlsTrust } from '../tls-options';
import { GraphApiError, graphError } from './graph-errors';
import { mailboxPath } from './mailbox-path';

/**
 * The one Graph client the sender and reader use: the SDK's request builder and middleware
 * chain (`Client.initWithMiddleware`) with four middlewares of ours, outermost first:
 *
 *   token (Bearer for the 'graph' audience; one renewal + retry on 401)
 *   -> retry (Retry-After on 429/503/504, else exponential back-off with full jitter)
 *   -> mailbox limiter (at most 4 requests in flight per mailbox, Graph's MailboxConcurrency)
 *   -> HTTPS transport (node:https with the credential's CA added to the default trust)
 *
 * Why our own retry and transport instead of the SDK's RetryHandler and HTTPMessageHandler:
 * RetryHandler counts in whole seconds with at most 1 s of jitter, cannot tell a POST that is
 * unsafe to repeat from one that is safe and never retries a connection that failed before the
 * request left; HTTPMessageHandler calls the global fetch, which can only take a custom CA
 * through an undici dispatcher, and undici is not importable on Node 20 without installing a
 * second copy that must match the bundled one. node:https takes `ca` directly on every Node line.
 */

export interface GraphRetryOptions {
	/** Attempts per request, the first included (default 5). */
	attempts?: number;
	/** First back-off without Retry-After (default 500 ms); doubles per attempt, full jitter. */
	firstBackoffMs?: number;
	/** Cap of one back-off (default 30 s). */
	maxBackoffMs?: number;
	/** A Retry-After longer than this is not waited for; the request fails as throttled (default 120 s). */
	maxRetryAfterMs?: number;
	/** Multiplies Retry-After (tests use a small factor; default 1). */
	retryAfterScale?: number;
}

export interface GraphClientOptions {
	/** The cloud's Graph host, e.g. https://graph.microsoft.com (auth/clouds.ts graphHost). */
	graphHost: string;
	tokens: TokenProvider;
	/** Mailbox to address (`/users/{mailbox}`); absent: `/me` (delegated). */
	mailbox?: string;
	trust?: TlsTrust;
	retry?: GraphRetryOptions;
	/** Requests in flight per mailbox (default and maximum 4). */
	maxConcurrency?: number;
	/** Idle socket time-out per request (default 120 s). */
	timeoutMs?: number;
}

export interface RequestOptions {
	headers?: Record<string, string>;
	/**
	 * Whether repeating the request after an ambiguous failure is harmless. Default: true for
	 * GET/PUT/PATCH/DELETE, false for POST (a POST is repeated only after 429/503 or when the
	 * connection failed before the request was sent).
	 */
	idempotent?: boolean;
	/** Ask for immutable ids (default true; off for upload URLs, which are not Graph). */
	prefer?: boolean;
}

export interface GraphResponse<T> {
	status: number;
	headers: Headers;
	body: T;
	/** Attempts it took (retries included). */
	attempts: number;
}

export interface BatchRequest {
	method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
	/** Path below the version, e.g. /users/x/messages/AAM.. */
	url: string;
	body?: unknown;
	headers?: Record<string, string>;
}

export interface BatchResult {
	status: number;
	body: unknown;
	headers: Record<string, string>;
	/** Set when the sub-request failed (status >= 400 after its retries). */
	error?: GraphApiError;
}

export interface GraphClient {
	/** `/users/{encoded mailbox}` or `/me`: prefix of every mailbox call. */
	readonly mailbox: string;
	readonly baseUrl: string;
	get<T = unknown>(path: string, options?: RequestOptions): Promise<T>;
	post<T = unknown>(path: string, body: unknown, options?: RequestOptions): Promise<GraphResponse<T>>;
	patch<T = unknown>(path: string, body: unknown, options?: RequestOptions): Promise<T>;
	delete(path: string, options?: RequestOptions): Promise<void>;
	request<T = unknown>(method: string, path: string, body?: unknown, options?: RequestOptions): Promise<GraphResponse<T>>;
	/** The raw bytes of e.g. `/messages/{id}/$value`; hold a limiter slot until read or destroyed. */
	stream(path: string, options?: RequestOptions): Promise<Readable>;
	/** Every item of a collection, following `@odata.nextLink`; `onItem` returning false stops. Resolves to the last page (its deltaLink, if any). */
	pages<T = unknown>(path: string, onItem: (item: T) => unknown, options?: RequestOptions): Promise<Record<string, unknown>>;
	/** `$batch` in groups of 20; each sub-response checked and sub-requests throttled with 429/503 retried. Results in request order. */
	batch(requests: BatchRequest[]): Promise<BatchResult[]>;
	/**
	 * A pre-authorized URL (upload session): requests to it go out WITHOUT Authorization (Graph
	 * refuses the header there with 401 InvalidAudience).
	 */
	preauthorize(url: string): void;
	/** The SDK client behind it (LargeFileUploadTask and friends take it). */
	readonly sdk: Client;
	close(): void;
}

const DEFAULTS = { attempts: 5, firstBackoffMs: 500, maxBackoffMs: 30_000, maxRetryAfterMs: 120_000, retryAfterScale: 1 };
export const MAILBOX_CONCURRENCY = 4;
const BATCH_SIZE = 20;
/** Immutable ids survive moves between folders (reader ids, sent drafts). */
const PREFER_IMMUTABLE = 'IdType="ImmutableId"';

export function createGraphClient(options: GraphClientOptions): GraphClient {
	const host = options.graphHost.replace(/\/+$/, '');
	const baseUrl = `${host}/v1.0`;
	const mailbox = mailboxPath(options.mailbox);
	const retry = { ...DEFAULTS, ...definedOnly(options.retry ?? {}) };
	const preauthorized = new Set<string>();
	// Idle sockets are dropped before Graph's front ends would drop them: a POST on a socket the server
	// has just closed fails ambiguously (GRAPH_DELIVERY_UNKNOWN), so stale sockets are not kept around.
	const agent = new https.Agent({ ...tlsClientOptions(options.trust ?? { rejectUnauthorized: true }), keepAlive: true, timeout: 15_000 });
	const limiterKey = options.mailbox ? `${host}|${options.mailbox.toLowerCase()}` : undefined;
	const slots = limiterFor(limiterKey, Math.min(options.maxConcurrency ?? MAILBOX_CONCURRENCY, MAILBOX_CONCURRENCY));

	const transport = new HttpsTransport(agent, options.timeoutMs ?? 120_000);
	const chain: Middleware[] = [
		new TokenMiddleware(options.tokens, (url) => !url.startsWith(`${baseUrl}/`) || isPreauthorized(preauthorized, url)),
		new RetryMiddleware(retry),
		new LimiterMiddleware(slots.limiter),
		transport,
	];
	const sdk = Client.initWithMiddleware({ baseUrl: host, defaultVersion: 'v1.0', middleware: chain });

	async function request<T>(method: string, path: string, body?: unknown, requestOptions: RequestOptions = {}): Promise<GraphResponse<T>> {
		const record = new CallRecord(requestOptions.idempotent ?? method !== 'POST');
		const raw = await send(method, path, body, requestOptions, record, false);
		const text = await raw.text();
		const parsed = text ? parseJson(text) : undefined;
		if (!raw.ok) throw failureOf(method, path, raw.status, parsed, record);
		return { status: raw.status, headers: raw.headers, body: parsed as T, attempts: record.attempts };
	}

	async function send(method: string, path: string, body: unknown, requestOptions: RequestOptions, record: CallRecord, stream: boolean): Promise<Response> {
		record.streamResponse = stream;
		let builder = sdk.api(path).responseType(ResponseType.RAW).middlewareOptions([record]);
		if (requestOptions.prefer !== false) builder = builder.header('Prefer', PREFER_IMMUTABLE);
		for (const [name, value] of Object.entries(requestOptions.headers ?? {})) builder = builder.header(name, value);
		try {
			switch (method) {
				case 'GET':
					return (await builder.get()) as Response;
				case 'POST':
					return (await builder.post(body)) as Response;
				case 'PATCH':
					return (await builder.patch(body)) as Response;
				case 'PUT':
					return (await builder.put(body)) as Response;
				case 'DELETE':
					return (await builder.delete()) as Response;
				default:
					throw new Error(`Unsupported method ${method}`);
			}
		} catch (error) {
			if (record.networkError) {
				throw graphError({ request: describe(method, path), networkError: record.networkError.message, ambiguous: record.sent && !record.idempotent, attempts: record.attempts });
			}
			throw error;
		}
	}

	const client: GraphClient = {
		mailbox,
		baseUrl,
		sdk,
		request,
		async get<T>(path: string, requestOptions?: RequestOptions) {
			return (await request<T>('GET', path, undefined, requestOptions)).body;
		},
		post: (path, body, requestOptions) => request('POST', path, body, requestOptions),
		async patch<T>(path: string, body: unknown, requestOptions?: RequestOptions) {
			return (await request<T>('PATCH', path, body, requestOptions)).body;
		},
		async delete(path, requestOptions) {
			await request('DELETE', path, undefined, requestOptions);
		},
		async stream(path, requestOptions = {}) {
			const record = new CallRecord(true);
			const raw = await send('GET', path, undefined, requestOptions, record, true);
			if (!raw.ok) {
				const text = await raw.text();
				throw failureOf('GET', path, raw.status, text ? parseJson(text) : undefined, record);
			}
			return (raw as ResponseWithRelease)[NODE_BODY] ?? Readable.from([]);
		},
		// Not the SDK's PageIterator: its callback is synchronous (3.0.7), so an async consumer could
		// not hold the next page back while it stores attachments.
		async pages<T>(path: string, onItem: (item: T) => unknown, requestOptions?: RequestOptions) {
			let next: string | undefined = path;
			let page: Record<string, unknown> = {};
			while (next) {
				page = (await client.get<Record<string, unknown>>(next, requestOptions)) ?? {};
				for (const item of (page.value as T[] | undefined) ?? []) {
					if ((await onItem(item)) === false) return page;
				}
				next = typeof page['@odata.nextLink'] === 'string' ? page['@odata.nextLink'] : undefined;
			}
			return page;
		},
		batch: (requests) => runBatch(client, requests, retry),
		preauthorize(url) {
			preauthorized.add(withoutQuery(url));
		},
		close() {
			slots.release();
			agent.destroy();
		},
	};
	return client;
}

/** Per-call state the middlewares share with the caller (passed as SDK middleware options). */
class CallRecord implements MiddlewareOptions {
	attempts = 0;
	/** The last attempt's connection was open (bytes may have reached Graph) when it failed. */
	sent = false;
	networkError?: Error;
	streamResponse = false;
	constructor(readonly idempotent: boolean) {}
}

function recordOf(context: Context): CallRecord | undefined {
	return context.middlewareControl?.getMiddlewareOptions(CallRecord) as CallRecord | undefined;
}

function methodOf(context: Context): string {
	return String(context.options?.method ?? 'GET').toUpperCase();
}

function urlOf(context: Context): string {
	return typeof context.request === 'string' ? context.request : (context.request as { url: string }).url;
}

function headersOf(context: Context): Record<string, string> {
	const options = (context.options ??= {});
	const current = options.headers as unknown;
	if (current && typeof (current as Headers).forEach === 'function' && !(current instanceof Array)) {
		const copy: Record<string, string> = {};
		(current as Headers).forEach((value, name) => (copy[name] = value));
		options.headers = copy;
	} else if (!current) {
		options.headers = {};
	}
	return options.headers as Record<string, string>;
}

function setHeader(context: Context, name: string, value: string | undefined): void {
	const headers = headersOf(context);
	for (const key of Object.keys(headers)) if (key.toLowerCase() === name.toLowerCase()) delete headers[key];
	if (value !== undefined) headers[name] = value;
}

class TokenMiddleware implements Middleware {
	private next!: Middleware;
	constructor(
		private readonly tokens: TokenProvider,
		private readonly anonymous: (url: string) => boolean,
	) {}
	setNext(next: Middleware): void {
		this.next = next;
	}
	async execute(context: Context): Promise<void> {
		if (this.anonymous(urlOf(context))) {
			setHeader(context, 'Authorization', undefined);
			return this.next.execute(context);
		}
		const token = await this.tokens.getToken('graph');
		setHeader(context, 'Authorization', `Bearer ${token.token}`);
		await this.next.execute(context);
		if (context.response?.status !== 401 || !resendable(context)) return;
		// One renewal: the provider fetches a new token only if the refused one is still cached.
		await discard(context.response);
		const fresh = await this.tokens.getToken('graph', { rejectedToken: token.token });
		setHeader(context, 'Authorization', `Bearer ${fresh.token}`);
		await this.next.execute(context);
	}
}

type RetrySettings = typeof DEFAULTS;

class RetryMiddleware implements Middleware {
	private next!: Middleware;
	constructor(private readonly settings: RetrySettings) {}
	setNext(next: Middleware): void {
		this.next = next;
	}
	async execute(context: Context): Promise<void> {
		const record = recordOf(context) ?? new CallRecord(methodOf(context) !== 'POST');
		for (let attempt = 1; ; attempt++) {
			record.attempts++;
			record.sent = false;
			record.networkError = undefined;
			try {
				await this.next.execute(context);
			} catch (error) {
				if (!(error instanceof TransportFailure)) throw error;
				record.sent = error.sent;
				record.networkError = error;
				// No connection: Graph cannot have acted on it. Connected: only if repeating is harmless.
				if ((error.sent && !record.idempotent) || attempt >= this.settings.attempts || !resendable(context)) throw error;
				await sleep(backoff(this.settings, attempt));
				continue;
			}
			const response = context.response!;
			if (attempt >= this.settings.attempts || !resendable(context) || !retryableStatus(response.status, record.idempotent)) return;
			const retryAfter = retryAfterMs(response.headers.get('retry-after'), this.settings.retryAfterScale);
			if (retryAfter !== undefined && retryAfter > this.settings.maxRetryAfterMs) return;
			await discard(response);
			await sleep(retryAfter ?? backoff(this.settings, attempt));
		}
	}
}

/** 429 and 503 mean "not processed"; 504 and other 5xx only say nothing came back, so only idempotent requests repeat. */
function retryableStatus(status: number, idempotent: boolean): boolean {
	if (status === 429 || status === 503) return true;
	return idempotent && (status === 504 || status === 500 || status === 502);
}

export function retryAfterMs(header: string | null | undefined, scale = 1): number | undefined {
	if (!header) return undefined;
	const seconds = Number(header);
	if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000 * scale);
	const date = Date.parse(header);
	return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) * scale);
}

function backoff(settings: RetrySettings, attempt: number): number {
	const ceiling = Math.min(settings.maxBackoffMs, settings.firstBackoffMs * 2 ** (attempt - 1));
	return Math.round(Math.random() * ceiling);
}

function resendable(context: Context): boolean {
	const body = context.options?.body as unknown;
	return body === undefined || body === null || typeof body === 'string' || Buffer.isBuffer(body) || body instanceof Uint8Array;
}

class LimiterMiddleware implements Middleware {
	private next!: Middleware;
	constructor(private readonly limiter: Limiter) {}
	setNext(next: Middleware): void {
		this.next = next;
	}
	async execute(context: Context): Promise<void> {
		await this.limiter.acquire();
		let handedOver = false;
		try {
			await this.next.execute(context);
			const release = (context.response as ResponseWithRelease | undefined)?.[RELEASE];
			if (release) {
				release(() => this.limiter.release());
				handedOver = true;
			}
		} finally {
			if (!handedOver) this.limiter.release();
		}
	}
}

/** A counting semaphore: at most `limit` holders, the rest wait in order. */
export class Limiter {
	private active = 0;
	private readonly waiting: Array<() => void> = [];
	constructor(readonly limit: number) {}
	get inFlight(): number {
		return this.active;
	}
	acquire(): Promise<void> {
		if (this.active < this.limit) {
			this.active++;
			return Promise.resolve();
		}
		return new Promise((resolve) => this.waiting.push(resolve));
	}
	release(): void {
		const next = this.waiting.shift();
		// The slot passes straight to the next waiter, so `active` stays at the limit.
		if (next) next();
		else this.active--;
	}
}

/** One limiter per Graph host and mailbox in this process, shared by every client for it. */
const limiters = new Map<string, { limiter: Limiter; users: number }>();

function limiterFor(key: string | undefined, limit: number): { limiter: Limiter; release: () => void } {
	if (key === undefined) return { limiter: new Limiter(limit), release: () => undefined };
	let entry = limiters.get(key);
	if (!entry) limiters.set(key, (entry = { limiter: new Limiter(limit), users: 0 }));
	entry.users++;
	let released = false;
	return {
		limiter: entry.limiter,
		release: () => {
			if (released) return;
			released = true;
			if (--entry.users === 0 && entry.limiter.inFlight === 0) limiters.delete(key);
		},
	};
}

const RELEASE = Symbol('releaseWhenBodyDone');
const NODE_BODY = Symbol('nodeBody');
type ResponseWithRelease = Response & { [RELEASE]?: (release: () => void) => void; [NODE_BODY]?: Readable };

/** A connection-level failure; `sent` says whether the connection was open (the request may have arrived). */
class TransportFailure extends Error {
	constructor(
		message: string,
		readonly sent: boolean,
	) {
		super(message);
		this.name = 'TransportFailure';
	}
}

/**
 * The end of the chain: the request over node:https. Bodies of ordinary calls are read here in
 * full before the limiter slot is given back (Graph counts a request until its answer is done);
 * a stream call's body is handed on and its slot released when it ends or is destroyed.
 */
class HttpsTransport implements Middleware {
	constructor(
		private readonly agent: https.Agent,
		private readonly timeoutMs: number,
	) {}
	async execute(context: Context): Promise<void> {
		const record = recordOf(context);
		const url = new URL(urlOf(context));
		const method = methodOf(context);
		const headers = { ...headersOf(context) };
		const body = context.options?.body as string | Buffer | undefined;
		const payload = typeof body === 'string' ? Buffer.from(body) : body instanceof Uint8Array ? Buffer.from(body.buffer, body.byteOffset, body.byteLength) : undefined;
		if (payload) headers['Content-Length'] = String(payload.length);
		context.response = await new Promise<Response>((resolve, reject) => {
			// Once connected, bytes may have reached Graph: a kernel buffer can hold a whole 4 MB
			// request, so "written out" (finish) says nothing about what the server has read.
			let connected = false;
			const req = https.request(url, { method, headers, agent: this.agent }, (res) => {
				const status = res.statusCode ?? 0;
				const responseHeaders = new Headers();
				for (const [name, value] of Object.entries(res.headers)) {
					if (value === undefined) continue;
					for (const one of Array.isArray(value) ? value : [value]) responseHeaders.append(name, one);
				}
				const noBody = method === 'HEAD' || status === 204 || status === 205 || status === 304;
				if (noBody) {
					res.resume();
					resolve(new Response(null, { status, headers: responseHeaders }));
					return;
				}
				if (record?.streamResponse && status >= 200 && status < 300) {
					const out = new PassThrough();
					res.on('error', (error) => out.destroy(error));
					res.pipe(out);
					// The bytes travel as the Node stream itself: a web-stream detour would cost a copy per chunk.
					const response = new Response(null, { status, headers: responseHeaders }) as ResponseWithRelease;
					response[NODE_BODY] = out;
					// PassThrough closes once read to its end or destroyed (the consumer gave up).
					response[RELEASE] = (release) => out.once('close', release);
					resolve(response);
					return;
				}
				const chunks: Buffer[] = [];
				res.on('data', (chunk: Buffer) => chunks.push(chunk));
				res.on('error', (error) => reject(new TransportFailure(error.message, true)));
				res.on('end', () => resolve(new Response(Buffer.concat(chunks), { status, headers: responseHeaders })));
			});
			req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
			req.on('socket', (socket) => {
				if (!socket.connecting) connected = true;
				else socket.once('secureConnect', () => (connected = true));
			});
			req.on('error', (error) => reject(new TransportFailure(error.message, connected)));
			req.end(payload);
		});
	}
}

async function discard(response: Response): Promise<void> {
	try {
		await response.arrayBuffer();
	} catch {
		// The body is not needed; a broken one changes nothing.
	}
}

function failureOf(method: string, path: string, status: number, body: unknown, record: CallRecord): GraphApiError {
	const error = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
	return graphError({
		status,
		graphCode: error?.code,
		graphMessage: error?.message ?? (typeof body === 'string' ? body : undefined),
		request: describe(method, path),
		ambiguous: !record.idempotent && status >= 500 && status !== 503,
		attempts: record.attempts,
	});
}

async function runBatch(client: GraphClient, requests: BatchRequest[], retry: RetrySettings): Promise<BatchResult[]> {
	const results: BatchResult[] = new Array(requests.length);
	for (let start = 0; start < requests.length; start += BATCH_SIZE) {
		let pending = requests.slice(start, start + BATCH_SIZE).map((request, offset) => ({ request, index: start + offset }));
		for (let attempt = 1; pending.length > 0; attempt++) {
			const idempotent = pending.every(({ request }) => request.method !== 'POST');
			const response = await client.post<{ responses?: Array<{ id: string; status: number; headers?: Record<string, string>; body?: unknown }> }>(
				'/$batch',
				{
					requests: pending.map(({ request, index }) => ({
						id: String(index),
						method: request.method,
						url: request.url,
						// Headers of the $batch request do not reach its parts: each asks for immutable ids itself.
						headers: { Prefer: PREFER_IMMUTABLE, ...(request.body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...request.headers },
						...(request.body !== undefined ? { body: request.body } : {}),
					})),
				},
				{ idempotent },
			);
			const byId = new Map((response.body?.responses ?? []).map((sub) => [sub.id, sub]));
			const again: typeof pending = [];
			let wait = 0;
			for (const item of pending) {
				const sub = byId.get(String(item.index));
				const status = sub?.status ?? 0;
				const retryable = sub !== undefined && retryableStatus(status, item.request.method !== 'POST');
				if (retryable && attempt < retry.attempts) {
					again.push(item);
					const headerValue = Object.entries(sub.headers ?? {}).find(([name]) => name.toLowerCase() === 'retry-after')?.[1];
					wait = Math.max(wait, retryAfterMs(headerValue, retry.retryAfterScale) ?? backoff(retry, attempt));
					continue;
				}
				const result: BatchResult = { status, body: sub?.body, headers: sub?.headers ?? {} };
				if (!sub || status >= 400) {
					result.error = failureOf(item.request.method, item.request.url, status, sub?.body ?? 'no answer for this request in the batch', new CallRecord(true));
				}
				results[item.index] = result;
			}
			pending = again;
			if (pending.length > 0) await sleep(Math.min(wait, retry.maxRetryAfterMs));
		}
	}
	return results;
}

function isPreauthorized(urls: Set<string>, url: string): boolean {
	return urls.has(withoutQuery(url));
}

function withoutQuery(url: string): string {
	const cut = url.search(/[?#]/);
	return cut === -1 ? url : url.slice(0, cut);
}

function describe(method: string, path: string): string {
	return `${method} ${withoutQuery(path.replace(/^https?:\/\/[^/]+/, ''))}`;
}

function parseJson(text: string): unknown {
	try {
		return JSON.parse(text);
	} catch {
		return text;
	}
}

function definedOnly<T extends object>(value: T): Partial<T> {
	return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function sleep(ms: number): Promise<void> {
	return new Promise((resolve) => setTimeout(resolve, ms));
}
