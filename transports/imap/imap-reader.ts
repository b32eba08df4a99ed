import { ImapFlow, type ImapFlowOptions, type SearchObject } from 'imapflow';
import { simpleParser, type AddressObject } from 'mailparser';
import tls from 'node:tls';

import { ActionableError } from '../../model/actionable-error';
import type { IncomingMessage, PostAction, ReadCriteria } from '../../model/incoming-message';
import type { MailAddress } from '../../model/outgoing-message';
import { MailTransportError } from '../contracts';

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

export interface FetchOptions {
	includeHtml?: boolean;
	includeHeaders?: boolean;
	includeRaw?: boolean;
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
				tls: {
					rejectUnauthorized: this.options.rejectUnauthorized,
					...(this.options.ca ? { ca: [...tls.rootCertificates, this.options.ca] } : {}),
				},
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

	/** UIDs matching the criteria, oldest first (callers reverse and cut for "newest first"). */
	async search(criteria: ReadCriteria): Promise<number[]> {
		const query: SearchObject = {};
		if (criteria.unreadOnly) query.seen = false;
		if (criteria.since) query.since = criteria.since;
		if (criteria.before) query.before = criteria.before;
		if (criteria.from) query.from = criteria.from;
		if (criteria.to) query.to = criteria.to;
		if (criteria.subjectContains) query.subject = criteria.subjectContains;
		if (criteria.uidAfter !== undefined) query.uid = `${criteria.uidAfter + 1}:*`;
		if (Object.keys(query).length === 0) query.all = true;
		const uids = (await this.imap.search(query, { uid: true })) || [];
		// `N:*` always matches the highest UID even when it is <= N (RFC 3501); drop those.
		return uids.filter((uid) => criteria.uidAfter === undefined || uid > criteria.uidAfter).sort((a, b) => a - b);
	}

	/** Fetches and parses the given UIDs of the open folder, one message at a time. */
	async *fetch(folder: string, uidValidity: number, uids: number[], options: FetchOptions = {}): AsyncGenerator<IncomingMessage> {
		if (uids.length === 0) return;
		for await (const message of this.imap.fetch(uids.join(','), { uid: true, flags: true, size: true, source: true }, { uid: true })) {
			const source = message.source as Buffer;
			const parsed = await simpleParser(source, { skipImageLinks: true, keepCidLinks: true });
			const flags = [...(message.flags ?? new Set<string>())];
			const headers: Record<string, string> = {};
			if (options.includeHeaders) {
				for (const line of parsed.headerLines) headers[line.key] = line.line.slice(line.line.indexOf(':') + 1).trim();
			}
			yield {
				id: `${uidValidity}:${message.uid}`,
				uid: message.uid,
				messageId: parsed.messageId,
				folder,
				from: addresses(parsed.from)[0],
				to: addresses(parsed.to),
				cc: addresses(parsed.cc),
				replyTo: addresses(parsed.replyTo),
				subject: parsed.subject ?? '',
				date: parsed.date?.toISOString(),
				flags,
				seen: flags.includes('\\Seen'),
				flagged: flags.includes('\\Flagged'),
				size: message.size ?? source.length,
				text: parsed.text,
				...(options.includeHtml && parsed.html ? { html: parsed.html } : {}),
				...(options.includeHeaders ? { headers } : {}),
				attachments: parsed.attachments.map((a) => ({
					filename: a.filename ?? 'attachment',
					contentType: a.contentType,
					size: a.size,
					...(a.contentId ? { contentId: a.contentId.replace(/^<|>$/g, '') } : {}),
					inline: a.contentDisposition === 'inline',
					content: a.content,
				})),
				...(options.includeRaw ? { raw: source } : {}),
			};
		}
	}

	/** Applies a post-action to UIDs of the folder (opened read-write for it). */
	async apply(folder: string, uids: number[], action: PostAction): Promise<void> {
		if (uids.length === 0 || action.type === 'none') return;
		await this.openFolder(folder, false);
		const range = uids.join(',');
		if (action.type === 'markRead') await this.imap.messageFlagsAdd(range, ['\\Seen'], { uid: true });
		else if (action.type === 'flag') await this.imap.messageFlagsAdd(range, ['\\Flagged'], { uid: true });
		else if (action.type === 'delete') await this.imap.messageDelete(range, { uid: true });
		else if (action.type === 'move') {
			const known = (await this.listFolders()).map((f) => f.path);
			if (!known.includes(action.folder)) {
				throw new ActionableError(
					`Folder "${action.folder}" to move to does not exist`,
					'IMAP_UNKNOWN_FOLDER',
					`Folders in this mailbox: ${known.join(', ')}`,
				);
			}
			await this.imap.messageMove(range, action.folder, { uid: true });
		}
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
						: 'Check the credential has the IMAP.AccessAsUser.All scope (reconnect after changing scopes) and the signed-in user may open this mailbox';
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

function addresses(value: AddressObject | AddressObject[] | undefined): MailAddress[] {
	const list = Array.isArray(value) ? value : value ? [value] : [];
	return list.flatMap((a) =>
		a.value.filter((v) => v.address).map((v) => (v.name ? { name: v.name, address: v.address! } : { address: v.address! })),
	);
}
