import type { IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { pipeline, Readable } from 'node:stream';

import { addSecret } from '../../model/redact';
import { tlsClientOptions, type TlsTrust } from '../tls-options';
import { EwsError } from './errors';
import { ntlmAuthenticate, ntlmChallengeOf, ntlmNegotiate, NtlmSession } from './ntlm';
import { EWS_CODES, type EwsAuth } from './types';
import { maxResponseBytes } from './xml';

/** A request body: `head`, then (streamed) `content()`, then `tail`. Without content, head + tail go in one write. */
export interface RequestBody {
	head: string;
	tail?: string;
	content?: () => Promise<NodeJS.ReadableStream>;
}

export interface HttpAnswer {
	status: number;
	headers: IncomingHttpHeaders;
	body: string;
	/** The scheme the answer was obtained with (for messages). */
	scheme: 'ntlm' | 'basic' | 'bearer';
}

/**
 * The connection failed before a whole answer came. `written`: the whole request had been handed
 * to the connection (Exchange may have acted on it); `timedOut`: no byte either way for the idle time.
 */
export class TransportFailure extends Error {
	constructor(
		message: string,
		readonly cause: unknown,
		readonly written: boolean,
		readonly timedOut: boolean,
		readonly aborted: boolean,
	) {
		super(message);
		this.name = 'TransportFailure';
	}
}

/** The agent handed the request a socket other than the signed-in one (NTLM): nothing was written. */
class SocketChanged extends Error {}

export interface EwsHttpOptions {
	url: string;
	auth: EwsAuth;
	trust: TlsTrust;
	timeoutMs: number;
	/** X-AnchorMailbox: routes the request to the mailbox's server (impersonation, delegate access). */
	anchorMailbox?: string;
	/** Sockets at most (the client's concurrency). */
	maxConnections: number;
	/** Live list of secrets of this client (passwords, tokens handed out), for redaction. */
	secrets: string[];
}

interface RawAnswer {
	status: number;
	headers: IncomingHttpHeaders;
	body: string;
	socket: Socket;
}

interface OnceOptions {
	agent: https.Agent;
	headers: Record<string, string>;
	body?: RequestBody;
	operation: string;
	signal?: AbortSignal;
	/** Checked when the agent assigns the socket, before anything is written. */
	acceptSocket?: (socket: Socket) => boolean;
}

/**
 * HTTPS POSTs to the EWS URL with the credential's scheme. Basic and Bearer share one kept-alive
 * agent; NTLM signs in each socket once (NtlmSession) and reuses it.
 */
export class EwsHttp {
	private readonly url: URL;
	private readonly tls: https.AgentOptions;
	private readonly shared?: https.Agent;
	private readonly sessions: NtlmSession[] = [];
	private readonly waiting: Array<(session: NtlmSession) => void> = [];
	private closed = false;

	constructor(private readonly options: EwsHttpOptions) {
		this.url = new URL(options.url);
		if (this.url.protocol !== 'https:') {
			throw new EwsError(
				`The EWS URL must use https:// (${this.url.protocol}//${this.url.host}): ${options.auth.type === 'basic' ? 'Basic would send the password readable by anyone on the way' : 'credentials and mail would travel unencrypted'}`,
				EWS_CODES.REQUEST_FAILED,
				'Use https://<server>/EWS/Exchange.asmx; add the server CA to Trusted CA if its certificate is private',
			);
		}
		this.tls = tlsClientOptions(options.trust) as https.AgentOptions;
		if (options.auth.type !== 'ntlm') {
			// Idle sockets are dropped before a front end would drop them: a CreateItem on a socket
			// the server has just closed fails ambiguously (delivery unknown).
			this.shared = new https.Agent({ ...this.tls, keepAlive: true, maxSockets: Math.max(1, options.maxConnections), timeout: 15_000 });
		}
		if (options.auth.type !== 'bearer') {
			addSecret(options.secrets, options.auth.password);
		}
	}

	async post(operation: string, body: RequestBody, signal?: AbortSignal): Promise<HttpAnswer> {
		const auth = this.options.auth;
		if (auth.type === 'basic') {
			const basic = `Basic ${Buffer.from(`${auth.username}:${auth.password}`, 'utf8').toString('base64')}`;
			addSecret(this.options.secrets, basic.slice(6));
			const answer = await this.once({ agent: this.shared!, headers: { Authorization: basic }, body, operation, signal });
			return { ...answer, scheme: 'basic' };
		}
		if (auth.type === 'bearer') {
			const token = await auth.tokens.getToken('exchange');
			addSecret(this.options.secrets, token.token);
			let answer = await this.once({ agent: this.shared!, headers: { Authorization: `Bearer ${token.token}` }, body, operation, signal });
			if (answer.status === 401) {
				// One renewal: the provider asks the identity platform only if the refused token is still its cached one.
				const fresh = await auth.tokens.getToken('exchange', { rejectedToken: token.token });
				addSecret(this.options.secrets, fresh.token);
				answer = await this.once({ agent: this.shared!, headers: { Authorization: `Bearer ${fresh.token}` }, body, operation, signal });
			}
			return { ...answer, scheme: 'bearer' };
		}
		const session = await this.acquireSession();
		try {
			return { ...(await this.ntlmPost(session, operation, body, signal)), scheme: 'ntlm' };
		} finally {
			this.releaseSession(session);
		}
	}

	/** The NTLM sign-ins made so far that are still open (for tests and diagnostics). */
	get signedInSockets(): number {
		return this.sessions.filter((session) => session.authenticated).length;
	}

	close(): void {
		this.closed = true;
		this.shared?.destroy();
		for (const session of this.sessions) session.close();
	}

	private async ntlmPost(session: NtlmSession, operation: string, body: RequestBody, signal?: AbortSignal): Promise<RawAnswer> {
		const auth = this.options.auth as Extract<EwsAuth, { type: 'ntlm' }>;
		// A signed-in socket can close between two requests (server idle time-out): then sign in again.
		for (let round = 1; round <= 3; round++) {
			if (session.authenticated) {
				try {
					const answer = await this.once({ agent: session.agent, headers: {}, body, operation, signal, acceptSocket: (socket) => session.isSignedIn(socket) });
					if (answer.status !== 401) return answer;
					session.forget();
				} catch (error) {
					if (!(error instanceof SocketChanged)) throw error;
					session.forget();
				}
				continue;
			}
			// The first leg carries no body, so a large streamed body goes out once, with the third leg.
			const challengeAnswer = await this.once({ agent: session.agent, headers: { Authorization: ntlmNegotiate(auth) }, operation, signal });
			const challenge = challengeAnswer.status === 401 ? ntlmChallengeOf(challengeAnswer.headers['www-authenticate']) : undefined;
			if (!challenge) {
				if (challengeAnswer.status === 401) return challengeAnswer;
				throw new EwsError(
					`The server did not start an NTLM sign-in (HTTP ${challengeAnswer.status} to the NTLM negotiate message, ${operation})`,
					EWS_CODES.UNAUTHORIZED,
					'Check that Windows (NTLM) authentication is enabled on the EWS virtual directory, or choose Basic',
					{ responseCode: challengeAnswer.status },
				);
			}
			const handshakeSocket = challengeAnswer.socket;
			const authenticate = ntlmAuthenticate(challenge, auth);
			try {
				const answer = await this.once({
					agent: session.agent,
					headers: { Authorization: authenticate },
					body,
					operation,
					signal,
					acceptSocket: (socket) => socket === handshakeSocket && !socket.destroyed,
				});
				if (answer.status !== 401) session.markSignedIn(handshakeSocket);
				return answer;
			} catch (error) {
				if (!(error instanceof SocketChanged)) throw error;
			}
		}
		throw new EwsError(
			`The server closed the connection during every NTLM sign-in (${operation})`,
			EWS_CODES.UNAUTHORIZED,
			'NTLM needs one kept-alive connection from the first message to the last: a proxy or load balancer in between must keep it (or use Basic over HTTPS)',
		);
	}

	private async acquireSession(): Promise<NtlmSession> {
		const free = this.sessions.find((session) => !session.busy && session.authenticated) ?? this.sessions.find((session) => !session.busy);
		if (free) {
			free.busy = true;
			return free;
		}
		if (this.sessions.length < Math.max(1, this.options.maxConnections)) {
			const session = new NtlmSession(this.tls);
			this.sessions.push(session);
			session.busy = true;
			return session;
		}
		return new Promise((resolve) => this.waiting.push(resolve));
	}

	private releaseSession(session: NtlmSession): void {
		const next = this.waiting.shift();
		if (next) next(session);
		else session.busy = false;
	}

	private async once(options: OnceOptions): Promise<RawAnswer> {
		if (this.closed) throw new TransportFailure('the EWS client was closed', undefined, false, false, true);
		const headers: Record<string, string> = {
			'Content-Type': 'text/xml; charset=utf-8',
			Accept: 'text/xml',
			'User-Agent': 'n8n-nodes-modern-auth-mail (EWS)',
			'X-PreferServerAffinity': 'true',
			...(this.options.anchorMailbox ? { 'X-AnchorMailbox': this.options.anchorMailbox } : {}),
			...options.headers,
		};
		const body = options.body;
		let payload: Buffer | undefined;
		let content: NodeJS.ReadableStream | undefined;
		if (!body) headers['Content-Length'] = '0';
		else if (!body.content) {
			payload = Buffer.from(body.head + (body.tail ?? ''), 'utf8');
			headers['Content-Length'] = String(payload.length);
		} else {
			content = await body.content();
		}
		const timeoutMs = this.options.timeoutMs;
		return await new Promise<RawAnswer>((resolve, reject) => {
			let written = false;
			let timedOut = false;
			let settled = false;
			let contentError: unknown;
			const settle = (fn: () => void) => {
				if (settled) return;
				settled = true;
				fn();
			};
			const fail = (error: unknown) =>
				settle(() => {
					(content as Readable | undefined)?.destroy?.();
					// Reading the streamed body failed (the attachment, not the connection): its own error.
					if (contentError !== undefined) return reject(contentError);
					if (error instanceof SocketChanged || error instanceof EwsError) return reject(error);
					const aborted = Boolean(options.signal?.aborted);
					const message = error instanceof Error ? error.message : String(error);
					reject(new TransportFailure(message, error, written, timedOut, aborted));
				});
			const request = https.request(this.url, { method: 'POST', headers, agent: options.agent, signal: options.signal }, (response) => {
				// Taken now: once the answer is read, a kept-alive socket goes back to the agent and the response lets go of it.
				const socket = response.socket as Socket;
				const chunks: Buffer[] = [];
				let size = 0;
				const limit = maxResponseBytes();
				response.on('data', (chunk: Buffer) => {
					size += chunk.length;
					if (size > limit) {
						response.destroy();
						request.destroy();
						fail(
							new EwsError(
								`The answer to ${options.operation} is larger than ${limit} bytes; it was not read`,
								EWS_CODES.RESPONSE_INVALID,
								'Ask for fewer items or properties per request (smaller page size, no MIME content); MAM_EWS_MAX_RESPONSE_BYTES raises the limit',
							),
						);
						return;
					}
					chunks.push(chunk);
				});
				response.on('error', fail);
				response.on('aborted', () => fail(new Error('the connection closed in the middle of the answer')));
				response.on('end', () =>
					settle(() =>
						resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8'), socket }),
					),
				);
			});
			request.setTimeout(timeoutMs, () => {
				timedOut = true;
				request.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'EWS_IDLE_TIMEOUT' }));
			});
			request.on('error', fail);
			request.on('finish', () => (written = true));
			request.on('close', () => fail(new Error('the connection closed before the answer')));
			request.once('socket', (socket: Socket) => {
				if (options.acceptSocket && !options.acceptSocket(socket)) {
					request.destroy(new SocketChanged());
					return;
				}
				if (payload) request.end(payload);
				else if (!body) request.end();
				else {
					const source = Readable.from(streamParts(body, content!, (error) => (contentError = error)));
					pipeline(source, request, (error) => {
						if (error) fail(error);
					});
				}
			});
		});
	}
}

async function* streamParts(body: RequestBody, content: NodeJS.ReadableStream, onContentError: (error: unknown) => void): AsyncGenerator<Buffer> {
	yield Buffer.from(body.head, 'utf8');
	try {
		for await (const chunk of content as AsyncIterable<Buffer | string>) yield typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
	} catch (error) {
		onContentError(error);
		throw error;
	}
	yield Buffer.from(body.tail ?? '', 'utf8');
}
