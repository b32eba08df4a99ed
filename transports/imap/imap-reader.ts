import { ImapFlow, type ImapFlowOptions } from 'imapflow';
// UIDs as a compact IMAP set (1:3,7,9:10), so a 10,000-message FETCH stays one short line.
import { packMessageRange } from 'imapflow/lib/tools';
import { Readable } from 'node:stream';

import { ActionableError } from '../../model/actionable-error';
import type { IncomingMessage, PostAction, ReadCriteria, UnreadableMessage } from '../../model/incoming-message';
import { MailTransportError } from '../contracts';
import { tlsClientOptions } from '../tls-options';
import {
	collect,
	DEFAULT_PARSE_TIMEOUT_MS,
	MessageParseError,
	parseMessage,
	subjectOf,
	tee,
	within,
	type AttachmentConsumer,
	type AttachmentInfo,
	type ParseLimits,
	type ParsedMessage,
} from './parse-message';
import { applyPostAction, confirmAfterReconnect, uidSetChunks, type PostActionOptions, type PostActionOutcome } from './post-actions';
import { hasAttachments, searchAttributes, uidSearch } from './search';

/** Messages above this are downloaded in chunks and parsed as they arrive. */
export const STREAM_ABOVE_BYTES = 1024 * 1024;
const DOWNLOAD_CHUNK_BYTES = 1024 * 1024;
const STRUCTURE_CHUNK = 500;

export type ImapSecurity = 'tls' | 'starttls' | 'none';

export type ImapAuth =
	| { type: 'password'; user: string; pass: string }
	| {
			type: 'oauth2';
			user: string;
			/** `rejectedToken` is set after the server refused that token. */
			getAccessToken(rejectedToken?: string): Promise<{ token: string }>;
			flavour: 'app-only' | 'delegated';
	  };

export interface ImapReaderOptions {
	host: string;
	port: number;
	security: ImapSecurity;
	auth: ImapAuth;
	rejectUnauthorized: boolean;
	ca?: string;
	connectionTimeoutMs?: number;
	socketTimeoutMs?: number;
}

/**
 * Where attachment and raw-message bytes go as they are parsed. Each stream must be read to its
 * end before the promise settles. Without a sink they are collected into Buffers on the message.
 */
export interface MessageSink {
	attachment(uid: number, index: number, info: AttachmentInfo, content: Readable): Promise<void>;
	raw(uid: number, content: Readable): Promise<void>;
}

export interface FetchOptions {
	includeHtml?: boolean;
	includeHeaders?: boolean;
	includeRaw?: boolean;
	sink?: MessageSink;
	/** Per message: parse deadline and header budget (defaults in parse-message). */
	limits?: ParseLimits;
}

/**
 * Reads one mailbox over IMAP with imapflow and turns each message into the shared model
 * with mailparser. One connection per reader; close() always ends it.
 */
export class ImapReader {
	private client?: ImapFlow;

	constructor(private readonly options: ImapReaderOptions) {}

	async connect(): Promise<void> {
		let rejected: string | undefined;
		for (let attempt = 0; attempt < 2; attempt++) {
			const auth: ImapFlowOptions['auth'] =
				this.options.auth.type === 'password'
					? { user: this.options.auth.user, pass: this.options.auth.pass }
					: { user: this.options.auth.user, accessToken: (await this.options.auth.getAccessToken(rejected)).token };
			const client = new ImapFlow({
				host: this.options.host,
				port: this.options.port,
				secure: this.options.security === 'tls',
				doSTARTTLS: this.options.security === 'starttls' ? true : this.options.security === 'none' ? false : undefined,
				auth,
				tls: tlsClientOptions({ rejectUnauthorized: this.options.rejectUnauthorized, ca: this.options.ca }),
				logger: false,
				disableAutoIdle: true,
				connectionTimeout: this.options.connectionTimeoutMs ?? 30_000,
				socketTimeout: this.options.socketTimeoutMs ?? 120_000,
			} as ImapFlowOptions);
			// imapflow reports late socket errors as events; without a listener they would crash n8n.
			client.on('error', () => {});
			try {
				await client.connect();
				this.client = client;
				return;
			} catch (error) {
				await client.close();
				const refused = (error as { authenticationFailed?: boolean }).authenticationFailed;
				if (refused && this.options.auth.type === 'oauth2' && attempt === 0) {
					rejected = (auth as { accessToken: string }).accessToken;
					continue;
				}
				throw this.describe(error);
			}
		}
	}

	private get imap(): ImapFlow {
		if (!this.client) throw new Error('IMAP reader used before connect()');
		return this.client;
	}

	async listFolders(): Promise<Array<{ path: string; name: string; specialUse?: string }>> {
		const folders = await this.imap.list();
		return folders.map((f) => ({ path: f.path, name: f.name, ...(f.specialUse ? { specialUse: f.specialUse } : {}) }));
	}

	/** Opens a folder; an unknown one is an error that lists the folders that exist. */
	async openFolder(folder: string, readOnly = true): Promise<{ uidValidity: number; uidNext: number; exists: number }> {
		try {
			const mailbox = await this.imap.mailboxOpen(folder, { readOnly });
			return { uidValidity: Number(mailbox.uidValidity), uidNext: mailbox.uidNext, exists: mailbox.exists };
		} catch (error) {
			const known = (await this.listFolders()).map((f) => f.path);
			if (!known.includes(folder)) {
				throw new ActionableError(
					`Folder "${folder}" does not exist`,
					'IMAP_UNKNOWN_FOLDER',
					`Folders in this mailbox: ${known.join(', ')}`,
				);
			}
			throw this.describe(error);
		}
	}

	/** UIDs matching the criteria, oldest first. */
	async search(criteria: ReadCriteria): Promise<number[]> {
		try {
			const uids = await uidSearch(this.imap, await searchAttributes(this.imap, criteria), criteria.rawImapSearch?.trim());
			// `N:*` always matches the highest UID even when it is <= N (RFC 3501); drop those.
			return uids.filter((uid) => criteria.uidAfter === undefined || uid > criteria.uidAfter);
		} catch (error) {
			throw this.describe(error);
		}
	}

	/**
	 * The UIDs to read, in reading order, at most `limit`: search, order, then (if asked) keep
	 * only messages with attachments, judged from BODYSTRUCTURE a chunk at a time.
	 */
	async select(criteria: ReadCriteria, order: { newestFirst: boolean; limit: number }): Promise<number[]> {
		const uids = await this.search(criteria);
		if (order.newestFirst) uids.reverse();
		if (!criteria.hasAttachments) return uids.slice(0, order.limit);
		const chosen: number[] = [];
		for (let i = 0; i < uids.length && chosen.length < order.limit; i += STRUCTURE_CHUNK) {
			const chunk = uids.slice(i, i + STRUCTURE_CHUNK);
			const matching = new Set<number>();
			for await (const message of this.imap.fetch(packMessageRange(chunk), { uid: true, bodyStructure: true }, { uid: true })) {
				if (hasAttachments(message.bodyStructure)) matching.add(message.uid);
			}
			for (const uid of chunk) if (matching.has(uid) && chosen.length < order.limit) chosen.push(uid);
		}
		return chosen;
	}

	/**
	 * Fetches and parses the given UIDs of the open folder, one message at a time. One FETCH
	 * brings every message up to STREAM_ABOVE_BYTES whole (imapflow reads the next response only
	 * when the previous one is consumed, so one message is in memory at a time). Larger ones,
	 * of which that FETCH brought only the first part, are then downloaded in chunks and parsed
	 * as they arrive, so their attachments stream into the sink and never sit in memory whole.
	 * Messages come in ascending UID order, larger ones after the smaller ones. A message that
	 * cannot be read comes as an UnreadableMessage in its place; only a failing connection throws.
	 */
	async *fetch(
		folder: string,
		uidValidity: number,
		uids: number[],
		options: FetchOptions = {},
	): AsyncGenerator<IncomingMessage | UnreadableMessage> {
		if (uids.length === 0) return;
		const large: number[] = [];
		const query = { uid: true, flags: true, size: true, source: { start: 0, maxLength: STREAM_ABOVE_BYTES } };
		try {
			// Scattered UIDs (filters leave gaps) would make one FETCH line longer than servers take.
			for (const chunk of uidSetChunks(uids)) {
				for await (const message of this.imap.fetch(chunk.set, query, { uid: true })) {
					const source = message.source as Buffer;
					if ((message.size ?? 0) > STREAM_ABOVE_BYTES || !source) {
						large.push(message.uid);
						continue;
					}
					yield await this.toMessage(folder, uidValidity, message.uid, message.flags, message.size ?? source.length, source, options);
				}
				// imapflow's fetch ends quietly when the connection drops: that is not "no more mail".
				if (!this.imap.usable) throw new Error('the connection closed during FETCH');
			}
			// Not inside the FETCH loop above: imapflow runs one command at a time.
			for (const uid of large) {
				const meta = await this.imap.fetchOne(String(uid), { uid: true, flags: true, size: true }, { uid: true });
				if (!meta) continue; // deleted meanwhile
				const download = await this.imap.download(String(uid), undefined, { uid: true, chunkSize: DOWNLOAD_CHUNK_BYTES });
				if (!download.content) continue;
				yield await this.toMessage(folder, uidValidity, uid, meta.flags, meta.size ?? 0, download.content, options);
			}
		} catch (error) {
			// imapflow's own errors ("Connection not available") name no server and no fix.
			throw this.describe(error);
		}
	}

	private async toMessage(
		folder: string,
		uidValidity: number,
		uid: number,
		flagSet: Set<string> | undefined,
		size: number,
		source: Buffer | Readable,
		options: FetchOptions,
	): Promise<IncomingMessage | UnreadableMessage> {
		const flags = [...(flagSet ?? new Set<string>())];
		let read: Awaited<ReturnType<ImapReader['read']>>;
		// The parser keeps its own deadline; this one also covers storing the raw message.
		const timeoutMs = options.limits?.timeoutMs ?? DEFAULT_PARSE_TIMEOUT_MS;
		try {
			read = await within(this.read(uid, source, options), timeoutMs + 1000, () => {
				if (!Buffer.isBuffer(source)) source.destroy();
			});
		} catch (error) {
			if (!Buffer.isBuffer(source)) source.destroy();
			// A dropped connection is not the message's fault: the caller reconnects and retries.
			if (!this.imap.usable) throw this.describe(error);
			const failure = error instanceof MessageParseError ? error : undefined;
			const e = error as { message?: string };
			const subject = failure?.subject ?? (Buffer.isBuffer(source) ? subjectOf(source) : undefined);
			return {
				id: `${uidValidity}:${uid}`,
				uid,
				folder,
				...(subject !== undefined ? { subject } : {}),
				size,
				flags,
				error: {
					message: failure?.message ?? `Message could not be read: ${String(e?.message ?? error)}`,
					code: failure?.code ?? 'MESSAGE_UNREADABLE',
					hint: failure?.hint ?? 'Storing or parsing this message failed; the other messages are unaffected',
				},
			};
		}
		const { parsed, collected, raw } = read;
		const headers: Record<string, string> = {};
		if (options.includeHeaders) {
			for (const line of parsed.headerLines) headers[line.key] = line.line.slice(line.line.indexOf(':') + 1).trim();
		}
		return {
			id: `${uidValidity}:${uid}`,
			uid,
			messageId: parsed.messageId,
			folder,
			from: parsed.from,
			to: parsed.to,
			cc: parsed.cc,
			replyTo: parsed.replyTo,
			subject: parsed.subject,
			date: parsed.date,
			flags,
			seen: flags.includes('\\Seen'),
			flagged: flags.includes('\\Flagged'),
			size,
			text: parsed.text,
			...(options.includeHtml && parsed.html ? { html: parsed.html } : {}),
			...(options.includeHeaders ? { headers } : {}),
			attachments: parsed.attachments.map((a, index) => ({
				...a,
				...(collected.has(index) ? { content: collected.get(index) } : {}),
			})),
			...(raw ? { raw } : {}),
		};
	}

	/** Parses one message, its attachments (and raw bytes, if asked) going to the sink. */
	private async read(uid: number, source: Buffer | Readable, options: FetchOptions) {
		const sink = options.sink;
		const collected = new Map<number, Buffer>();
		const consume: AttachmentConsumer = sink
			? (info, index, content) => sink.attachment(uid, index, info, content)
			: async (_info, index, content) => void collected.set(index, await collect(content));
		let raw: Buffer | undefined;
		let parsed: ParsedMessage;
		if (!options.includeRaw) parsed = await parseMessage(source, consume, options.limits);
		else if (Buffer.isBuffer(source)) {
			if (sink) await sink.raw(uid, Readable.from([source]));
			else raw = source;
			parsed = await parseMessage(source, consume, options.limits);
		} else {
			const [toParser, toRaw] = tee(source);
			const keepRaw = sink ? sink.raw(uid, toRaw) : collect(toRaw).then((buffer) => void (raw = buffer));
			try {
				[parsed] = await Promise.all([parseMessage(toParser, consume, options.limits), keepRaw]);
			} catch (error) {
				// Ends the raw copy too, so its consumer does not wait for bytes that never come
				// (without an error: that consumer may not listen for one).
				toRaw.destroy();
				keepRaw.catch(() => {});
				throw error;
			}
		}
		return { parsed, collected, raw };
	}

	/**
	 * Applies a post-action to UIDs of the folder (opened read-write for it) and says per UID
	 * what the server did (nothing for `none`); a refusal or a lost connection is an outcome, not
	 * an exception (see post-actions.ts).
	 */
	async apply(folder: string, uids: number[], action: PostAction, options: PostActionOptions = {}): Promise<PostActionOutcome[]> {
		if (uids.length === 0 || action.type === 'none') return [];
		await this.openFolder(folder, false);
		if (action.type === 'move') {
			const known = (await this.listFolders()).map((f) => f.path);
			if (!known.includes(action.folder)) {
				throw new ActionableError(
					`Folder "${action.folder}" to move to does not exist`,
					'IMAP_UNKNOWN_FOLDER',
					`Folders in this mailbox: ${known.join(', ')}`,
				);
			}
		}
		const outcomes = await applyPostAction(this.imap, uids, action, options);
		const unconfirmed = outcomes.filter((o) => o.unconfirmed).map((o) => o.uid);
		if (unconfirmed.length === 0) return outcomes;
		// The connection failed before the server's answer: reconnect once and look.
		try {
			await this.reconnect();
			await this.openFolder(folder, false);
			const confirmed = new Map((await confirmAfterReconnect(this.imap, unconfirmed, action, options)).map((o) => [o.uid, o]));
			return outcomes.map((o) => confirmed.get(o.uid) ?? o);
		} catch {
			return outcomes; // still unknown: the outcomes say so
		}
	}

	/** Whether the connection is still open and signed in (a reset or time-out ends it). */
	get connected(): boolean {
		return Boolean(this.client?.usable);
	}

	/** A new connection in place of a failed one. */
	async reconnect(): Promise<void> {
		await this.close();
		await this.connect();
	}

	async close(): Promise<void> {
		const client = this.client;
		this.client = undefined;
		if (!client) return;
		try {
			await client.logout();
		} catch {
			client.close();
		}
	}

	private describe(error: unknown): ActionableError {
		if (error instanceof ActionableError) return error;
		const e = error as { message?: string; responseText?: string; authenticationFailed?: boolean; code?: string };
		const where = `${this.options.host}:${this.options.port}`;
		const raw = String(e.responseText || e.message || error).replace(/\s+/g, ' ').trim();
		if (e.authenticationFailed) {
			const auth = this.options.auth;
			const hint =
				auth.type === 'password'
					? 'Check user name and password (some providers need an app password); Microsoft 365 needs an OAuth credential'
					: auth.flavour === 'app-only'
						? 'Grant the app IMAP.AccessAsApp with admin consent, register it in Exchange (New-ServicePrincipal with the ENTERPRISE APPLICATION object id) and give it the mailbox (Add-MailboxPermission)'
						: 'Add the delegated permission IMAP.AccessAsUser.All to the app registration and consent to it (an admin grants consent if users may not), click Connect my account again so the token carries it, and check the signed-in user may open this mailbox';
			return new MailTransportError(`IMAP sign-in refused at ${where} (AUTHENTICATE failed): ${raw}`, 'IMAP_AUTH_FAILED', hint);
		}
		if (/certificate|self[- ]signed|unable to verify/i.test(raw)) {
			return new MailTransportError(
				`TLS certificate of ${where} is not trusted: ${raw}`,
				'IMAP_TLS_UNTRUSTED',
				'Use the host name the certificate was issued for, or trust the issuing CA; "Ignore Certificate Errors" works too but is insecure',
			);
		}
		return new MailTransportError(`IMAP error at ${where}: ${raw}`, e.code || 'IMAP_ERROR', 'Check host, port and security settings of the credential');
	}
}
