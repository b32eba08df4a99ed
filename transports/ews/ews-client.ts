import { setTimeout as sleep } from 'node:timers/promises';

import { ActionableError } from '../../model/actionable-error';
import { redactError } from '../../model/redact';
import { ewsDeliveryUnknown, EwsError, ewsFaultError, ewsHttpError, ewsNetworkError, type EwsAuthScheme } from './errors';
import { EwsHttp, type HttpAnswer, type RequestBody, TransportFailure } from './http';
import { buildEnvelope, buildSplitEnvelope, parseSoapResponse, serverBusyBackOff, type SoapResponse } from './soap';
import { EWS_CODES, type EwsCallOptions, type EwsClient, type EwsClientOptions, type EwsResponseMessage } from './types';

const DEFAULT_RETRY = { attempts: 4, firstBackoffMs: 500, maxBackoffMs: 30_000 };
const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_CONCURRENCY = 4;

/**
 * The SOAP client of one credential and mailbox. Every call goes through a concurrency limit
 * (EWS throttles per account), then the retry loop:
 *   - whole-request ErrorServerBusy (message or fault): waits BackOffMilliseconds (capped), again;
 *   - HTTP 503 and connections that failed before the request was written: back-off, again;
 *   - a connection lost after a notIdempotent request was written (CreateItem that sends) is
 *     never repeated: EWS_DELIVERY_UNKNOWN, the server may have acted on it.
 * Errors are redacted of every password and token this client used.
 */
export function createEwsClient(options: EwsClientOptions): EwsClient {
	const retry = { ...DEFAULT_RETRY, ...definedOnly(options.retry ?? {}) };
	const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
	const secrets: string[] = [];
	const mailbox = options.mailbox.trim();
	const impersonate = options.impersonate && mailbox ? mailbox : undefined;
	const limiter = new Limiter(Math.max(1, options.maxConcurrency ?? DEFAULT_CONCURRENCY));
	const http = new EwsHttp({
		url: options.url,
		auth: options.auth,
		trust: options.trust,
		timeoutMs,
		anchorMailbox: mailbox || undefined,
		maxConnections: limiter.limit,
		secrets,
	});
	const scheme: EwsAuthScheme = options.auth.type;
	const flavour = options.auth.type === 'bearer' ? options.auth.flavour : undefined;

	async function exchange(operation: string, body: RequestBody, callOptions: EwsCallOptions = {}): Promise<EwsResponseMessage[]> {
		await limiter.acquire();
		try {
			return await withRetries(operation, body, callOptions);
		} catch (error) {
			throw redactError(error, secrets);
		} finally {
			limiter.release();
		}
	}

	async function withRetries(operation: string, body: RequestBody, callOptions: EwsCallOptions): Promise<EwsResponseMessage[]> {
		const context = { operation, mailbox };
		for (let attempt = 1; ; attempt++) {
			const last = attempt >= retry.attempts;
			let answer: HttpAnswer;
			try {
				answer = await http.post(operation, body, callOptions.signal);
			} catch (error) {
				if (!(error instanceof TransportFailure)) throw error;
				const failure = ewsNetworkError(error.cause ?? error, { operation, url: options.url, timeoutMs });
				failure.attempts = attempt;
				if (error.aborted) throw failure;
				if (error.written && callOptions.notIdempotent) throw ewsDeliveryUnknown(failure, operation);
				// A server that stopped answering a request it has read is not asked again (and again).
				if ((error.timedOut && error.written) || last) throw failure;
				await sleep(backoff(attempt), undefined, { signal: callOptions.signal });
				continue;
			}
			const parsed = parseAnswer(answer, operation);
			if (!parsed) {
				if (answer.status === 503 && !last) {
					await sleep(backoff(attempt), undefined, { signal: callOptions.signal });
					continue;
				}
				throw withAttempts(
					ewsHttpError(answer.status, answer.body, {
						operation,
						url: options.url,
						scheme,
						flavour,
						wwwAuthenticate: String(answer.headers['www-authenticate'] ?? ''),
					}),
					attempt,
				);
			}
			const busy = serverBusyBackOff(parsed);
			if (busy !== undefined) {
				if (last) throw withAttempts(serverBusyError(parsed, context, busy, attempt), attempt);
				await sleep(Math.min(retry.maxBackoffMs, Math.max(busy, 0) || backoff(attempt)), undefined, { signal: callOptions.signal });
				continue;
			}
			if (parsed.fault) throw withAttempts(ewsFaultError(parsed.fault, context, answer.status), attempt);
			return parsed.messages;
		}
	}

	/** The SOAP answer (200, or 500 with a fault), or undefined for any other HTTP answer. */
	function parseAnswer(answer: HttpAnswer, operation: string): SoapResponse | undefined {
		if (answer.status !== 200 && answer.status !== 500) return undefined;
		if (answer.status === 500 && !/<([A-Za-z]+:)?Envelope[\s>]/.test(answer.body)) return undefined;
		return parseSoapResponse(answer.body, operation);
	}

	function backoff(attempt: number): number {
		const ceiling = Math.min(retry.maxBackoffMs, retry.firstBackoffMs * 2 ** (attempt - 1));
		return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
	}

	function envelopeOptions() {
		return { version: options.version, impersonate };
	}

	return {
		url: options.url,
		mailbox,
		version: options.version,
		async call(operation, body, callOptions) {
			let xml: string;
			try {
				xml = buildEnvelope(operation, body, envelopeOptions());
			} catch (error) {
				throw redactError(error, secrets);
			}
			return exchange(operation, { head: xml }, callOptions);
		},
		async callStreaming(operation, body, placeholder, content, callOptions) {
			let parts: { head: string; tail: string };
			try {
				parts = buildSplitEnvelope(operation, body, placeholder, envelopeOptions());
			} catch (error) {
				throw redactError(error, secrets);
			}
			return exchange(operation, { ...parts, content }, callOptions);
		},
		mailboxElement() {
			// Impersonation makes the mailbox the caller's own; otherwise another mailbox is named.
			if (!mailbox || impersonate) return undefined;
			return { 't:Mailbox': { 't:EmailAddress': mailbox } };
		},
		async close() {
			http.close();
		},
	};
}

function serverBusyError(parsed: SoapResponse, context: { operation: string; mailbox: string }, backOffMs: number, attempts: number): EwsError {
	const message: EwsResponseMessage = parsed.fault
		? { responseClass: 'Error', code: 'ErrorServerBusy', text: parsed.fault.faultstring, details: parsed.fault.details, element: {} }
		: parsed.messages.find((entry) => entry.code === 'ErrorServerBusy')!;
	const error = ewsErrorForBusy(message, context, backOffMs);
	error.attempts = attempts;
	return error;
}

function ewsErrorForBusy(message: EwsResponseMessage, context: { operation: string; mailbox: string }, backOffMs: number): EwsError {
	const wait = backOffMs > 0 ? `${Math.ceil(backOffMs / 1000)} s (BackOffMilliseconds ${backOffMs})` : 'a while';
	return new EwsError(
		`Exchange is throttling this account (ErrorServerBusy, ${context.operation}${context.mailbox ? `, mailbox ${context.mailbox}` : ''}); still busy after the retries`,
		EWS_CODES.SERVER_BUSY,
		`Wait ${wait} before running again, with fewer requests at once; the admin can relax the EWS throttling policy (Set-ThrottlingPolicy)${message.text ? `. Exchange said: ${message.text.replace(/\s+/g, ' ').slice(0, 200)}` : ''}`,
		{ ewsCode: 'ErrorServerBusy', backOffMs: backOffMs || undefined },
	);
}

function withAttempts<T extends ActionableError>(error: T, attempts: number): T {
	if (error instanceof EwsError) error.attempts = attempts;
	return error;
}

/** A counting semaphore: at most `limit` holders, the rest wait in order. */
class Limiter {
	private active = 0;
	private readonly waiting: Array<() => void> = [];
	constructor(readonly limit: number) {}
	acquire(): Promise<void> {
		if (this.active < this.limit) {
			this.active++;
			return Promise.resolve();
		}
		return new Promise((resolve) => this.waiting.push(resolve));
	}
	release(): void {
		const next = this.waiting.shift();
		if (next) next();
		else this.active--;
	}
}

function definedOnly<T extends object>(value: T): Partial<T> {
	return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined && Number.isFinite(v))) as Partial<T>;
}
