import type { Readable } from 'node:stream';

import { ActionableError } from '../../model/actionable-error';
import type { IncomingMessage, PostAction, ReadFilter, UnreadableMessage } from '../../model/incoming-message';
import type { FetchOptions, FolderChanges, FolderInfo, FolderStatus, MailReader, PostActionOptions, PostActionOutcome } from '../contracts';
import { MessageParseError, parseMessage } from '../imap/parse-message';
import { AttachmentReadError, listAttachments, mimeOf, readAttachments, storeRaw } from './attachments';
import { ewsErrorFor } from './errors';
import { findItems } from './find-items';
import { FolderResolver, type FolderRef } from './folders';
import { CONTENT_FAILURES, DEFAULT_FETCH_BATCH, getItems, hasModernProperties, type ItemResult } from './get-items';
import { applyPostAction } from './post-actions';
import { toRestriction } from './restriction';
import { changesSince } from './sync';
import { attrOf, bodyText, childOf, sizeOf, textOf, toIncomingMessage, type XmlNode } from './to-message';
import { EWS_CODES, type EwsClient } from './types';

/** Per message, when the caller sets no limit: long enough for a 150 MB attachment on a slow link (as the Graph reader). */
export const DEFAULT_READ_TIMEOUT_MS = 10 * 60 * 1000;
/** GetItem batches asked ahead of the message being read. */
const BATCHES_AHEAD = 1;

export interface EwsReaderOptions {
	/** FindItem page (default 500, at most 1000). */
	pageSize?: number;
	/** Ids per GetItem (default 50). */
	fetchBatch?: number;
}

/**
 * Reads one mailbox through Exchange Web Services, in the shape the IMAP and Graph readers give
 * (see to-message.ts). EWS is stateless HTTP: connect and verify are one GetFolder of the Inbox,
 * and there is nothing to reopen; the client keeps its sockets (and NTLM sign-in) itself.
 */
export class EwsReader implements MailReader {
	readonly name = 'ews';
	private readonly folders: FolderResolver;
	private closed = false;

	constructor(
		private readonly client: EwsClient,
		private readonly options: EwsReaderOptions = {},
	) {
		this.folders = new FolderResolver(client);
	}

	/** One GetFolder of the Inbox: proves the URL, the sign-in and the access to the mailbox. */
	async connect(): Promise<void> {
		await this.folders.getFolder({ distinguished: 'inbox' }, 'inbox');
	}

	async verify(): Promise<void> {
		await this.connect();
	}

	listFolders(): Promise<FolderInfo[]> {
		return this.folders.listFolders();
	}

	/** GetFolder TotalCount / UnreadCount: the harmless read of connection tests. */
	async status(folder: string): Promise<FolderStatus> {
		const { ref } = await this.folders.resolve(folder);
		const found = await this.folders.getFolder(ref, folder, ['folder:DisplayName', 'folder:TotalCount', 'folder:UnreadCount']);
		const total = Number(textOf(found.TotalCount));
		const unread = Number(textOf(found.UnreadCount));
		return {
			path: textOf(found.DisplayName) || folder,
			total: Number.isFinite(total) ? total : 0,
			...(textOf(found.UnreadCount) !== undefined && Number.isFinite(unread) ? { unread } : {}),
		};
	}

	async search(folder: string, filter: ReadFilter, order: { newestFirst: boolean; limit: number }): Promise<string[]> {
		// A bad filter (Raw Query, an invalid date) is refused before any request.
		toRestriction(filter);
		if (order.limit <= 0) return [];
		const { ref } = await this.folders.resolve(folder);
		try {
			return await findItems(this.client, this.folders, ref, filter, order, this.options.pageSize);
		} catch (error) {
			throw folderMissing(error) ? await this.folders.unknown(folder) : error;
		}
	}

	/**
	 * Messages in the order given, fetchBatch ids per GetItem (one batch asked ahead), each then
	 * read on its own within the time limit: its attachments one GetAttachment each, its MIME
	 * parsed for headers when asked for. A message deleted since the search (ErrorItemNotFound)
	 * is left out; one refused or unreadable becomes an UnreadableMessage; only a failing
	 * connection or sign-in throws.
	 */
	async *fetch(folder: string, ids: string[], options: FetchOptions = {}): AsyncGenerator<IncomingMessage | UnreadableMessage> {
		const batch = Math.max(1, Math.floor(this.options.fetchBatch ?? DEFAULT_FETCH_BATCH) || DEFAULT_FETCH_BATCH);
		const ahead: Array<Promise<ItemResult[]>> = [];
		let next = 0;
		const askNext = () => {
			if (next >= ids.length) return;
			const request = getItems(this.client, ids.slice(next, next + batch), options);
			request.catch(() => {}); // observed below, or by nobody when the caller stops early
			ahead.push(request);
			next += batch;
		};
		while (ahead.length <= BATCHES_AHEAD && next < ids.length) askNext();
		for (let start = 0; start < ids.length; start += batch) {
			const results = await ahead.shift()!;
			askNext();
			for (const [offset, result] of results.entries()) {
				const message = await this.fetchOne(folder, ids[start + offset], result, options);
				if (message) yield message;
			}
		}
	}

	private async fetchOne(folder: string, id: string, result: ItemResult, options: FetchOptions): Promise<IncomingMessage | UnreadableMessage | undefined> {
		if (result.kind === 'gone') return undefined;
		if (result.kind === 'refused') {
			const error = ewsErrorFor(result.response, { operation: 'GetItem', mailbox: this.client.mailbox });
			return unreadable(id, folder, undefined, { message: error.message, code: error.code, hint: error.hint });
		}
		if (result.kind === 'failed') {
			return unreadable(id, folder, undefined, {
				message: `Message could not be read: ${result.error.message}`,
				code: (result.error as { code?: string }).code ?? 'MESSAGE_UNREADABLE',
				hint: 'Exchange could not give this message through EWS; the other messages are unaffected',
			});
		}
		const message = result.message;
		const timeoutMs = options.limits?.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
		const abort = new AbortController();
		let timer: NodeJS.Timeout | undefined;
		const deadline = new Promise<never>((_resolve, reject) => {
			timer = setTimeout(() => {
				const error = Object.assign(new Error(`Message could not be read within ${timeoutMs / 1000} s`), { timedOut: true });
				abort.abort(error);
				reject(error);
			}, timeoutMs);
		});
		const work = this.readOne(folder, id, message, options, abort.signal, timeoutMs);
		work.catch(() => {}); // after a timeout it settles unobserved
		try {
			return await Promise.race([work, deadline]);
		} catch (error) {
			const failure = error as Error & { timedOut?: boolean; storing?: boolean; code?: string };
			// The connection's or the sign-in's failure, not this message's: the next message would fail too.
			if (!failure.timedOut && isEwsCode(failure.code) && !CONTENT_FAILURES.has(failure.code!)) throw error;
			return unreadable(id, folder, message, describeFailure(failure));
		} finally {
			clearTimeout(timer);
		}
	}

	private async readOne(folder: string, id: string, message: XmlNode, options: FetchOptions, signal: AbortSignal, timeoutMs: number): Promise<IncomingMessage> {
		const mime = mimeOf(message);
		const bodyIsHtml = attrOf(childOf(message, 'Body'), 'BodyType') === 'HTML';
		const html = options.includeHtml && bodyIsHtml ? textOf(message.Body) : undefined;
		let text = hasModernProperties(this.client) ? bodyText(message.TextBody) : bodyIsHtml ? undefined : bodyText(message.Body);
		let headers: Record<string, string> | undefined;
		if (mime && (options.includeHeaders || text === undefined)) {
			const parsed = await parseMessage(mime, drain, { timeoutMs, maxHeaderBytes: options.limits?.maxHeaderBytes });
			if (options.includeHeaders) {
				headers = {};
				for (const line of parsed.headerLines) headers[line.key] = line.line.slice(line.line.indexOf(':') + 1).trim();
			}
			text ??= parsed.text;
		}
		signal.throwIfAborted();
		const attachments = await readAttachments(this.client, id, listAttachments(message), options.sink, signal);
		signal.throwIfAborted();
		const raw = options.includeRaw && mime ? await storeRaw(id, mime, options.sink) : undefined;
		return toIncomingMessage(message, folder, { text, html, headers, attachments, raw }, options);
	}

	async apply(folder: string, ids: string[], action: PostAction, options: PostActionOptions = {}): Promise<PostActionOutcome[]> {
		if (ids.length === 0 || action.type === 'none') return [];
		if (action.type !== 'move') return applyPostAction(this.client, ids, action, options, {});
		const destination = await this.moveTarget(action.folder);
		// Only an atomic move needs the source: to move back what was moved before a refusal.
		const source = options.atomic ? this.folders.element((await this.folders.resolve(folder)).ref) : undefined;
		return applyPostAction(this.client, ids, action, options, { destination: this.folders.element(destination), source });
	}

	/** A move target that does not exist is an error before anything is moved, as with IMAP and Graph. */
	private async moveTarget(given: string): Promise<FolderRef> {
		try {
			const { ref } = await this.folders.resolve(given);
			await this.folders.getFolder(ref, given);
			return ref;
		} catch (error) {
			if (!(error instanceof ActionableError) || error.code !== EWS_CODES.FOLDER_NOT_FOUND) throw error;
			throw new ActionableError(`Folder "${given}" to move to does not exist`, error.code, error.hint);
		}
	}

	async changesSince(folder: string, cursor: string | undefined): Promise<FolderChanges> {
		const { ref } = await this.folders.resolve(folder);
		const found = await this.folders.getFolder(ref, folder);
		const folderId = attrOf(childOf(found, 'FolderId'), 'Id') ?? JSON.stringify(ref);
		try {
			return await changesSince(this.client, folderId, this.folders.element(ref), cursor);
		} catch (error) {
			throw folderMissing(error) ? await this.folders.unknown(folder) : error;
		}
	}

	get connected(): boolean {
		return !this.closed;
	}

	/** Nothing to reopen (each call is its own HTTPS request): checks the mailbox answers again. */
	async reconnect(): Promise<void> {
		await this.verify();
	}

	async close(): Promise<void> {
		if (this.closed) return;
		this.closed = true;
		await this.client.close();
	}
}

export function folderMissing(error: unknown): boolean {
	const e = error as { ewsCode?: string; code?: string };
	return e?.ewsCode === 'ErrorFolderNotFound' || e?.code === EWS_CODES.FOLDER_NOT_FOUND;
}

function isEwsCode(code: string | undefined): boolean {
	return typeof code === 'string' && code.startsWith('EWS_');
}

function describeFailure(failure: Error & { timedOut?: boolean; storing?: boolean; code?: string }): UnreadableMessage['error'] {
	if (failure.timedOut) return { message: failure.message, code: 'MESSAGE_READ_TIMEOUT', hint: 'The message is very large or the link to Exchange is slow; it was skipped' };
	if (failure.storing) {
		return { message: `An attachment of the message could not be stored: ${failure.message}`, code: 'MESSAGE_STORE_FAILED', hint: 'Check the binary data storage of n8n (disk space, permissions)' };
	}
	if (failure instanceof MessageParseError) return { message: failure.message, code: failure.code, hint: failure.hint };
	if (failure instanceof AttachmentReadError) {
		return { message: failure.message, code: 'EWS_ATTACHMENT_UNREADABLE', hint: 'Exchange could not give this attachment; the message was skipped, the others are unaffected' };
	}
	if (failure instanceof ActionableError) return { message: failure.message, code: failure.code, hint: failure.hint };
	return { message: `Message could not be read: ${failure.message}`, code: 'MESSAGE_UNREADABLE', hint: 'Reading this message failed; the other messages are unaffected' };
}

function unreadable(id: string, folder: string, message: XmlNode | undefined, error: UnreadableMessage['error']): UnreadableMessage {
	const subject = message ? textOf(message.Subject) : undefined;
	return { id, folder, ...(subject ? { subject } : {}), size: message ? sizeOf(message) : 0, flags: [], error };
}

/** Attachments of a MIME parsed only for its header and text: read and dropped (they come through GetAttachment). */
function drain(_info: unknown, _index: number, content: Readable): Promise<void> {
	return new Promise((resolve) => {
		content.once('end', resolve);
		content.once('error', () => resolve());
		content.resume();
	});
}
