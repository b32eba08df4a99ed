import { PassThrough, pipeline, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import nodemailer from 'nodemailer';
import type { Transporter } from 'nodemailer';
import type SMTPPool from 'nodemailer/lib/smtp-pool';

import type { MailAddress, OutgoingMessage, RefusedRecipient, SendResult } from '../../model/outgoing-message';
import { DEFAULT_SEND_RETRY, type MailSender } from '../contracts';
import { tlsClientOptions } from '../tls-options';
import { describeSmtpError, isRetryableSmtpFailure, withAttempts } from './smtp-errors';

export type SmtpSecurity = 'starttls' | 'tls' | 'none';

export interface SmtpPasswordAuth {
	type: 'password';
	user: string;
	pass: string;
}

/** SASL XOAUTH2: `user` is the mailbox to act as; tokens come from an auth provider. */
export interface SmtpOAuth2Auth {
	type: 'oauth2';
	user: string;
	/** `rejectedToken` is set after the server refused that token. */
	getAccessToken(rejectedToken?: string): Promise<{ token: string; expiresAt: Date }>;
	/** For hints: whose token it is (app-only needs Exchange service principal steps). */
	flavour: 'app-only' | 'delegated';
}

export type SmtpAuth = SmtpPasswordAuth | SmtpOAuth2Auth;

/** Retries of temporary failures (4xx, or a connection lost before the end of DATA). */
export interface SmtpRetryPolicy {
	/** Further attempts after the first one; 0 turns retrying off. */
	retries: number;
	/** Wait before the first retry; doubled for every further one. */
	firstBackoffMs: number;
	maxBackoffMs: number;
}

export const DEFAULT_SMTP_RETRY: SmtpRetryPolicy = { ...DEFAULT_SEND_RETRY };

export interface SmtpSenderOptions {
	host: string;
	port: number;
	security: SmtpSecurity;
	auth?: SmtpAuth;
	/** Name sent in EHLO; nodemailer uses the OS host name when empty. */
	clientHostName?: string;
	/** false only when the user explicitly chose to ignore certificate errors. */
	rejectUnauthorized: boolean;
	/** Extra trusted CA certificates (PEM), added to the default trust. */
	ca?: string | Buffer;
	connectionTimeoutMs?: number;
	greetingTimeoutMs?: number;
	socketTimeoutMs?: number;
	/** Parallel SMTP connections in the pool; messages are pipelined over them. */
	maxConnections?: number;
	retry?: Partial<SmtpRetryPolicy>;
}

/** How far one attempt got: after the end of DATA a lost connection leaves delivery unknown. */
interface AttemptProgress {
	endOfData: boolean;
}

/** The mail data key our stream plugin reads the attempt's progress from. */
const PROGRESS_KEY = 'modernAuthMailProgress';

/**
 * What the provision callback hands nodemailer instead of the provider's own error:
 * nodemailer overwrites the code of the error it is given with EAUTH, and this keeps the
 * original with the send that met it (never in a field shared by concurrent sends).
 */
class TokenCallbackError extends Error {
	constructor(readonly original: unknown) {
		super(original instanceof Error ? original.message : String(original));
		this.name = 'TokenCallbackError';
	}
}

/**
 * SMTP sender over one pooled nodemailer transport: connections are opened on demand,
 * reused for every message of the execution, and closed by close(). Temporary failures are
 * retried with exponential back-off; a connection lost after the end of DATA never is.
 */
export class SmtpSender implements MailSender {
	private readonly transporter: Transporter<SMTPPool.SentMessageInfo>;
	private readonly retry: SmtpRetryPolicy;
	private closed = false;

	constructor(private readonly options: SmtpSenderOptions) {
		this.retry = { ...DEFAULT_SMTP_RETRY, ...stripUndefined(options.retry ?? {}) };
		const poolOptions: SMTPPool.Options = {
			pool: true,
			host: options.host,
			port: options.port,
			secure: options.security === 'tls',
			requireTLS: options.security === 'starttls',
			ignoreTLS: options.security === 'none',
			name: options.clientHostName || undefined,
			maxConnections: Math.max(1, options.maxConnections ?? 3),
			maxMessages: Infinity,
			connectionTimeout: options.connectionTimeoutMs ?? 30_000,
			greetingTimeout: options.greetingTimeoutMs ?? 30_000,
			socketTimeout: options.socketTimeoutMs ?? 120_000,
			tls: tlsClientOptions({ rejectUnauthorized: options.rejectUnauthorized, ca: options.ca }),
			// Credentials must never reach a log line.
			logger: false,
			debug: false,
		};
		if (options.auth?.type === 'password') {
			poolOptions.auth = { type: 'login', user: options.auth.user, pass: options.auth.pass };
		} else if (options.auth?.type === 'oauth2') {
			const auth = options.auth;
			poolOptions.auth = {
				type: 'OAuth2',
				user: auth.user,
				// Called by every pooled connection when it signs in, and with renew=true once
				// after the server refused a token; the provider serves it from its cache.
				// nodemailer calls it on the connection's XOAuth2 object, whose accessToken is the
				// token that connection last used (the refused one when renewing).
				provisionCallback: function (this: { accessToken?: string } | undefined, _user, renew, callback) {
					auth.getAccessToken(renew ? (this?.accessToken ?? '') : undefined).then(
						({ token, expiresAt }) => callback(null, token, expiresAt.getTime() - 60_000),
						(error: unknown) => callback(new TokenCallbackError(error)),
					);
				},
			};
		}
		this.transporter = nodemailer.createTransport(poolOptions);
		// Marks the moment the connection has read the whole message (the end of DATA follows).
		// The last stage of the message stream is watched: earlier stages buffer a small message
		// whole before the connection reads any of it.
		this.transporter.use('stream', (mail, done) => {
			const progress = (mail.data as Record<string, unknown>)[PROGRESS_KEY] as AttemptProgress | undefined;
			if (progress) {
				(mail.message as unknown as { processFunc(fn: (input: Readable) => Readable): void }).processFunc(
					(input) => endOfDataWatcher(input, progress),
				);
			}
			done();
		});
	}

	async verify(): Promise<void> {
		try {
			await this.transporter.verify();
		} catch (error) {
			throw this.describe(error, false);
		}
	}

	async send(message: OutgoingMessage): Promise<SendResult> {
		for (let attempt = 1; ; attempt++) {
			const progress: AttemptProgress = { endOfData: false };
			try {
				return { ...(await this.sendOnce(message, progress)), attempts: attempt };
			} catch (error) {
				const failure = this.describe(error, progress.endOfData);
				const retryable = !this.closed && isRetryableSmtpFailure(failure, progress.endOfData);
				if (!retryable || attempt > this.retry.retries) {
					throw attempt > 1 ? withAttempts(failure, attempt) : failure;
				}
				await sleep(Math.min(this.retry.maxBackoffMs, this.retry.firstBackoffMs * 2 ** (attempt - 1)));
			}
		}
	}

	private async sendOnce(message: OutgoingMessage, progress: AttemptProgress): Promise<Omit<SendResult, 'attempts'>> {
		const opened: Array<Readable | Buffer> = [];
		try {
			const attachments = [];
			// Opened anew for every attempt: a stream read by a failed attempt is spent.
			for (const attachment of message.attachments) {
				const content = await attachment.open();
				opened.push(content);
				attachments.push({
					filename: attachment.filename,
					contentType: attachment.contentType,
					content,
					...(attachment.contentId
						? { cid: attachment.contentId, contentDisposition: 'inline' as const }
						: {}),
				});
			}
			const info = await this.transporter.sendMail({
				from: toNodemailerAddress(message.from),
				to: message.to.map(toNodemailerAddress),
				cc: message.cc.map(toNodemailerAddress),
				bcc: message.bcc.map(toNodemailerAddress),
				replyTo: message.replyTo.map(toNodemailerAddress),
				subject: message.subject,
				text: message.text,
				html: message.html,
				attachments,
				...(message.sender ? { sender: toNodemailerAddress(message.sender) } : {}),
				headers: smtpHeaders(message),
				priority: message.priority,
				[PROGRESS_KEY]: progress,
			} as SMTPPool.MailOptions);
			return {
				messageId: info.messageId,
				accepted: (info.accepted ?? []).map(addressText),
				rejected: (info.rejected ?? []).map(addressText),
				refused: refusedRecipients(info),
				response: info.response,
				envelope: {
					from: String(info.envelope?.from ?? ''),
					to: (info.envelope?.to ?? []).map(String),
				},
			};
		} catch (error) {
			for (const content of opened) {
				if (!Buffer.isBuffer(content)) content.destroy();
			}
			throw error;
		}
	}

	private describe(error: unknown, afterEndOfData: boolean) {
		return describeSmtpError(error instanceof TokenCallbackError ? error.original : error, {
			host: this.options.host,
			port: this.options.port,
			auth: this.options.auth?.type === 'oauth2' ? this.options.auth.flavour : 'password',
			afterEndOfData,
		});
	}

	async close(): Promise<void> {
		this.closed = true;
		this.transporter.close();
	}
}

function endOfDataWatcher(input: Readable, progress: AttemptProgress): Readable {
	const output = new PassThrough();
	// 'end' comes once the reader (the SMTP connection, after the server's 354) took it all.
	output.once('end', () => {
		progress.endOfData = true;
	});
	pipeline(input, output, () => {});
	return output;
}

/** Recipients the server refused while it accepted others, with its reply to each. */
function refusedRecipients(info: SMTPPool.SentMessageInfo): RefusedRecipient[] {
	const errors = ((info as { rejectedErrors?: unknown[] }).rejectedErrors ?? []) as Array<{
		recipient?: string;
		response?: string;
		responseCode?: number;
	}>;
	return errors.map((error) => ({
		address: String(error.recipient ?? ''),
		reply: String(error.response ?? '').replace(/\s+/g, ' ').trim(),
		...(error.responseCode ? { responseCode: error.responseCode } : {}),
	}));
}

const READ_RECEIPT_HEADER = 'Disposition-Notification-To';

/** The item's headers, plus the read-receipt request (RFC 8098) to From unless a custom header already asks. */
function smtpHeaders(message: OutgoingMessage): Array<{ key: string; value: string }> {
	const headers = message.headers.map(({ name, value }) => ({ key: name, value }));
	const asked = headers.some(({ key }) => key.toLowerCase() === READ_RECEIPT_HEADER.toLowerCase());
	if (message.readReceipt && !asked) headers.push({ key: READ_RECEIPT_HEADER, value: message.from.address });
	return headers;
}

function toNodemailerAddress(address: MailAddress): { name: string; address: string } {
	return { name: address.name ?? '', address: address.address };
}

function addressText(entry: string | { address: string }): string {
	return typeof entry === 'string' ? entry : entry.address;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
	return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined && Number.isFinite(v))) as Partial<T>;
}
