import type { MailFolder, Message } from '@microsoft/microsoft-graph-types';

import { ActionableError } from '../../model/actionable-error';
import type { IncomingMessage, PostAction, ReadFilter, UnreadableMessage } from '../../model/incoming-message';
import type { FetchOptions, FolderChanges, FolderInfo, FolderStatus, MailReader, PostActionOptions, PostActionOutcome } from '../contracts';
import { ATTACHMENTS_EXPAND, Downloads, readAttachments, readRaw, type ListedAttachment } from './attachments';
import { changesSince } from './delta';
import { toGraphQuery } from './filter';
import { FolderResolver } from './folders';
import type { BatchResult, GraphClient } from './graph-client';
import { graphCodeOf, statusOf } from './graph-status';
import { withQuery } from './odata';
import { applyPostAction } from './post-actions';
import { preferHeader } from './prefer';
import { MESSAGE_SIZE_EXPAND, messageSelect, toIncomingMessage } from './to-message';

/** Graph's largest `$top` for messages. */
export const MAX_PAGE_SIZE = 1000;
/** Page size while a client-side test (To, Subject) drops some of what Graph returns. */
const FILTERED_PAGE_SIZE = 250;
/** Per message, when the caller sets no limit: long enough for a 150 MB attachment on a slow link. */
export const DEFAULT_READ_TIMEOUT_MS = 10 * 60 * 1000;
/** Message GETs per `$batch` (Graph's limit). */
const READ_BATCH = 20;
/** `$batch` requests asked ahead of the message being read (each one request of the client's 4 per mailbox). */
const BATCHES_AHEAD = 2;

/** A message as asked for, with its attachment list expanded (no content). */
type ListedMessage = Message & { attachments?: ListedAttachment[] };
/** What one message's requests brought: the message and, when asked for, its HTML body. */
interface FetchedMessage {
	message: ListedMessage;
	html?: string;
}
const PREFER_TEXT = { Prefer: preferHeader('outlook.body-content-type="text"') };
const PREFER_HTML = { Prefer: preferHeader('outlook.body-content-type="html"') };

export interface GraphReaderOptions {
	/** Close the client with the reader (default true: the reader owns it). */
	ownsClient?: boolean;
}

/**
 * Reads one mailbox through Microsoft Graph, in the same shape the IMAP reader gives (see
 * to-message.ts). Stateless over HTTP: every call signs in through the shared client, so
 * connect/reconnect have nothing to open.
 */
export class GraphReader implements MailReader {
	readonly name = 'graph';
	private readonly folders: FolderResolver;
	private closed = false;

	constructor(
		private readonly graph: GraphClient,
		private readonly options: GraphReaderOptions = {},
	) {
		this.folders = new FolderResolver(graph);
	}

	async connect(): Promise<void> {}

	/** Reads one message id of the Inbox: proves the token, the Mail.Read permission and the mailbox. */
	async verify(): Promise<void> {
		await this.graph.get(withQuery(`${this.graph.mailbox}/mailFolders/inbox/messages`, { $select: 'id', $top: 1 }));
	}

	listFolders(): Promise<FolderInfo[]> {
		return this.folders.listFolders();
	}

	/** The folder's counts from its mailFolder resource: one GET, the harmless read of connection tests. */
	async status(folder: string): Promise<FolderStatus> {
		const ref = (await this.folders.resolve(folder)).ref;
		let found: Pick<MailFolder, 'displayName' | 'totalItemCount' | 'unreadItemCount'>;
		try {
			found = await this.graph.get(withQuery(`${this.graph.mailbox}/mailFolders/${encodeURIComponent(ref)}`, { $select: 'displayName,totalItemCount,unreadItemCount' }));
		} catch (error) {
			// Only a missing folder; an unknown or non-REST mailbox is 404 too and must stay what it is.
			throw statusOf(error) === 404 && (graphCodeOf(error) ?? 'ErrorItemNotFound') === 'ErrorItemNotFound' ? await this.folders.unknown(folder) : error;
		}
		return {
			path: found.displayName ?? folder,
			total: found.totalItemCount ?? 0,
			...(typeof found.unreadItemCount === 'number' ? { unread: found.unreadItemCount } : {}),
		};
	}

	async search(folder: string, filter: ReadFilter, order: { newestFirst: boolean; limit: number }): Promise<string[]> {
		const query = toGraphQuery(filter, order.newestFirst);
		if (order.limit <= 0) return [];
		const ref = (await this.folders.resolve(folder)).ref;
		const pageSize = Math.min(MAX_PAGE_SIZE, query.matches ? Math.max(order.limit, FILTERED_PAGE_SIZE) : order.limit);
		const path = withQuery(`${this.graph.mailbox}/mailFolders/${encodeURIComponent(ref)}/messages`, {
			$select: ['id', ...query.select].join(','),
			$filter: query.filter,
			$orderby: query.orderBy,
			$top: pageSize,
		});
		const ids: string[] = [];
		try {
			await this.graph.pages<Message>(path, (message) => {
				if (message.id && (!query.matches || query.matches(message))) ids.push(message.id);
				return ids.length < order.limit;
			});
		} catch (error) {
			throw statusOf(error) === 404 ? await this.folders.unknown(folder) : error;
		}
		return ids;
	}

	/**
	 * Messages in the order asked for. Their JSON (attachment list included) is asked for in
	 * `$batch` requests of 20 GETs, up to BATCHES_AHEAD batches ahead; it is read fresh, so a
	 * message deleted since the search is left out (its part answers 404). Attachment bytes go
	 * to the sink one message after the other.
	 */
	async *fetch(folder: string, ids: string[], options: FetchOptions = {}): AsyncGenerator<IncomingMessage | UnreadableMessage> {
		const ahead: Array<Array<Promise<FetchedMessage>>> = [];
		let next = 0;
		const askNext = () => {
			if (next >= ids.length) return;
			ahead.push(this.getMessages(ids.slice(next, next + READ_BATCH), options));
			next += READ_BATCH;
		};
		while (ahead.length < BATCHES_AHEAD && next < ids.length) askNext();
		for (let start = 0; start < ids.length; start += READ_BATCH) {
			const requests = ahead.shift()!;
			askNext();
			for (const [offset, request] of requests.entries()) {
				const message = await this.fetchOne(folder, ids[start + offset], options, request);
				if (message) yield message;
			}
		}
	}

	/**
	 * One message, or undefined when it no longer exists. A message that cannot be read within the
	 * deadline, or whose attachments the sink cannot store, comes back as an UnreadableMessage;
	 * only a failing connection or sign-in throws.
	 */
	private async fetchOne(folder: string, id: string, options: FetchOptions, request: Promise<FetchedMessage>): Promise<IncomingMessage | UnreadableMessage | undefined> {
		const timeoutMs = options.limits?.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
		const downloads = new Downloads();
		const seen: { subject?: string } = {};
		const work = this.readOne(folder, id, options, downloads, seen, request);
		work.catch(() => {}); // after a timeout it settles unobserved
		let timer: NodeJS.Timeout | undefined;
		const deadline = new Promise<never>((_resolve, reject) => {
			timer = setTimeout(() => {
				const error = Object.assign(new Error(`Message could not be read within ${timeoutMs / 1000} s`), { timedOut: true });
				downloads.abandon(error);
				reject(error);
			}, timeoutMs);
		});
		try {
			return await Promise.race([work, deadline]);
		} catch (error) {
			if (statusOf(error) === 404) return undefined; // deleted or moved meanwhile
			const failure = error as Error & { storing?: boolean; timedOut?: boolean };
			if (!failure.timedOut && !failure.storing) throw error;
			return {
				id,
				folder,
				...(seen.subject ? { subject: seen.subject } : {}),
				size: 0,
				flags: [],
				error: failure.timedOut
					? { message: failure.message, code: 'MESSAGE_READ_TIMEOUT', hint: 'The message is very large or the link to Graph is slow; it was skipped' }
					: {
							message: `An attachment of the message could not be stored: ${failure.message}`,
							code: 'MESSAGE_STORE_FAILED',
							hint: 'Check the binary data storage of n8n (disk space, permissions)',
						},
			};
		} finally {
			clearTimeout(timer);
			downloads.finish();
		}
	}

	/**
	 * Per id, the message's output fields, its size and its attachment list (and its HTML body
	 * when asked for, a second GET): plain GETs for a single id, else `$batch` parts, which the
	 * client checks (a failed part rejects that id only). Each promise is observed by fetchOne,
	 * or by nothing when the caller stops early.
	 */
	private getMessages(ids: string[], options: FetchOptions): Array<Promise<FetchedMessage>> {
		const messageUrl = (id: string) => this.messagePath(id, messageSelect(options), `${MESSAGE_SIZE_EXPAND},${ATTACHMENTS_EXPAND}`);
		const html = options.includeHtml === true;
		if (ids.length === 1) {
			const [id] = ids;
			return [
				quiet(
					Promise.all([this.graph.get<ListedMessage>(messageUrl(id), { headers: PREFER_TEXT }), html ? this.htmlBody(id) : undefined]).then(([message, body]) => ({
						message,
						html: body,
					})),
				),
			];
		}
		const parts = ids.flatMap((id) => [
			{ method: 'GET' as const, url: messageUrl(id), headers: PREFER_TEXT },
			...(html ? [{ method: 'GET' as const, url: this.messagePath(id, ['body']), headers: PREFER_HTML }] : []),
		]);
		const perMessage = html ? 2 : 1;
		const answers = quiet(this.graph.batch(parts));
		return ids.map((_id, index) =>
			quiet(
				answers.then((results) => ({
					message: bodyOf<ListedMessage>(results[index * perMessage]),
					html: html ? htmlOf(bodyOf<Message>(results[index * perMessage + 1])) : undefined,
				})),
			),
		);
	}

	private async readOne(
		folder: string,
		id: string,
		options: FetchOptions,
		downloads: Downloads,
		seen: { subject?: string },
		request: Promise<FetchedMessage>,
	): Promise<IncomingMessage> {
		const { message, html } = await request;
		seen.subject = message.subject ?? undefined;
		downloads.check();
		// Line ends as mailparser gives them for IMAP (Exchange's text bodies use CRLF).
		const text = message.body?.contentType?.toLowerCase() === 'text' ? (message.body.content ?? '').replace(/\r\n/g, '\n') : undefined;
		const attachments = await readAttachments(this.graph, id, options.sink, downloads, message.attachments);
		downloads.check();
		const raw = options.includeRaw ? await readRaw(this.graph, id, options.sink, downloads) : undefined;
		return toIncomingMessage(message, folder, { text, html, attachments, raw }, options);
	}

	/** The HTML body (Graph's default body type), only when asked for: one more small request. */
	private async htmlBody(id: string): Promise<string | undefined> {
		return htmlOf(await this.graph.get<Message>(this.messagePath(id, ['body']), { headers: PREFER_HTML }));
	}

	private messagePath(id: string, select: string[], expand?: string): string {
		return withQuery(`${this.graph.mailbox}/messages/${encodeURIComponent(id)}`, { $select: select.join(','), $expand: expand });
	}

	async apply(_folder: string, ids: string[], action: PostAction, options: PostActionOptions = {}): Promise<PostActionOutcome[]> {
		if (ids.length === 0 || action.type === 'none') return [];
		if (action.type !== 'move') return applyPostAction(this.graph, ids, action, options);
		const destination = (await this.folders.resolve(action.folder)).ref;
		await this.ensureFolder(action.folder, destination);
		return applyPostAction(this.graph, ids, action, options, destination);
	}

	/** A move target that does not exist is an error before anything is moved, as with IMAP. */
	private async ensureFolder(given: string, ref: string): Promise<void> {
		try {
			await this.graph.get(withQuery(`${this.graph.mailbox}/mailFolders/${encodeURIComponent(ref)}`, { $select: 'id' }));
		} catch (error) {
			if (statusOf(error) !== 404) throw error;
			const unknown = await this.folders.unknown(given);
			throw new ActionableError(`Folder "${given}" to move to does not exist`, unknown.code, unknown.hint);
		}
	}

	async changesSince(folder: string, cursor: string | undefined): Promise<FolderChanges> {
		const ref = (await this.folders.resolve(folder)).ref;
		try {
			return await changesSince(this.graph, folder, ref, cursor);
		} catch (error) {
			throw statusOf(error) === 404 ? await this.folders.unknown(folder) : error;
		}
	}

	get connected(): boolean {
		return !this.closed;
	}

	/** Nothing to reopen: each call is its own HTTPS request (the client retries failed ones). */
	async reconnect(): Promise<void> {}

	async close(): Promise<void> {
		if (this.closed) return;
		this.closed = true;
		if (this.options.ownsClient !== false) this.graph.close();
	}
}

/** The promise itself, marked as handled: a rejection nobody awaits (the caller stopped early) is not a crash. */
function quiet<T>(promise: Promise<T>): Promise<T> {
	promise.catch(() => {});
	return promise;
}

function bodyOf<T>(result: BatchResult): T {
	if (result.error) throw result.error;
	return result.body as T;
}

function htmlOf(message: Message): string | undefined {
	return message.body?.contentType?.toLowerCase() === 'html' ? (message.body.content ?? undefined) : undefined;
}
