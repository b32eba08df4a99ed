import type { Readable } from 'node:stream';
import tls from 'node:tls';
import nodemailer from 'nodemailer';
import type { Transporter } from 'nodemailer';
import type SMTPPool from 'nodemailer/lib/smtp-pool';

import type { MailAddress, OutgoingMessage, SendResult } from '../../model/outgoing-message';
import type { MailSender } from '../contracts';
import { describeSmtpError } from './smtp-errors';

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

export interface SmtpSenderOptions {
	host: string;
	port: number;
	security: SmtpSecurity;
	auth?: SmtpAuth;
	/** Name sent in EHLO; nodemailer uses the OS host name when empty. */
	clientHostName?: string;
	/** false only when the user explicitly chose to ignore certificate errors. */
	rejectUnauthorized: boolean;
	/** Extra trusted CA certificates (PEM). */
	ca?: string | Buffer;
	connectionTimeoutMs?: number;
	greetingTimeoutMs?: number;
	socketTimeoutMs?: number;
	/** Parallel SMTP connections in the pool; messages are pipelined over them. */
	maxConnections?: number;
}

/**
 * SMTP sender over one pooled nodemailer transport: connections are opened on demand,
 * reused for every message of the execution, and closed by close().
 */
export class SmtpSender implements MailSender {
	private readonly transporter: Transporter<SMTPPool.SentMessageInfo>;
	/** The auth provider's own error, which nodemailer would flatten into a plain EAUTH. */
	private tokenFailure: unknown;

	constructor(private readonly options: SmtpSenderOptions) {
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
			tls: {
				rejectUnauthorized: options.rejectUnauthorized,
				// Added to, not instead of, the public roots (and NODE_EXTRA_CA_CERTS).
				...(options.ca ? { ca: [...tls.rootCertificates, String(options.ca)] } : {}),
			},
			// Credentials must never reach a log line.
			logger: false,
			debug: false,
		};
		if (options.auth?.type === 'password') {
			poolOptions.auth = { type: 'login', user: options.auth.user, pass: options.auth.pass };
		} else if (options.auth?.type === 'oauth2') {
			const auth = options.auth;
			// eslint-disable-next-line @typescript-eslint/no-this-alias -- the callback's own `this` is nodemailer's
			const sender = this;
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
						(error: unknown) => {
							sender.tokenFailure = error;
							callback(error instanceof Error ? error : new Error(String(error)));
						},
					);
				},
			};
		}
		this.transporter = nodemailer.createTransport(poolOptions);
	}

	async verify(): Promise<void> {
		try {
			await this.transporter.verify();
		} catch (error) {
			throw this.describe(error);
		}
	}

	async send(message: OutgoingMessage): Promise<SendResult> {
		const opened: Array<Readable | Buffer> = [];
		try {
			const attachments = [];
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
				headers: message.headers.map(({ name, value }) => ({ key: name, value })),
				priority: message.priority,
			});
			return {
				messageId: info.messageId,
				accepted: (info.accepted ?? []).map(addressText),
				rejected: (info.rejected ?? []).map(addressText),
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
			throw this.describe(error);
		}
	}

	private describe(error: unknown) {
		const tokenFailure = this.tokenFailure;
		this.tokenFailure = undefined;
		return describeSmtpError(tokenFailure ?? error, {
			host: this.options.host,
			port: this.options.port,
			auth: this.options.auth?.type === 'oauth2' ? this.options.auth.flavour : 'password',
		});
	}

	async close(): Promise<void> {
		this.transporter.close();
	}
}

function toNodemailerAddress(address: MailAddress): { name: string; address: string } {
	return { name: address.name ?? '', address: address.address };
}

function addressText(entry: string | { address: string }): string {
	return typeof entry === 'string' ? entry : entry.address;
}
