import type { Readable } from 'node:stream';

import { ActionableError } from '../model/actionable-error';
import type { IncomingMessage, PostAction, ReadFilter, UnreadableMessage } from '../model/incoming-message';
import type { OutgoingMessage, SendResult } from '../model/outgoing-message';

/**
 * What every outgoing transport (SMTP, Graph; EWS later) offers the nodes.
 * One sender lives for one execution: it may pool connections and must be closed.
 */
export interface MailSender {
	/** 'smtp' | 'graph' | ...: for messages and logs, never for branching in nodes. */
	readonly name?: string;
	/** Sends one complete message, or fails without the server accepting any part of it. */
	send(message: OutgoingMessage): Promise<SendResult>;
	/** Connects, secures and authenticates without sending anything (credential test). */
	verify(): Promise<void>;
	close(): Promise<void>;
}

/** One folder of a mailbox. `path` is what the other calls take (IMAP path, Graph folder id or well-known name). */
export interface FolderInfo {
	path: string;
	/** Display name (IMAP: last path segment; Graph: displayName). */
	name: string;
	/** RFC 6154 special use (\\Sent, \\Trash, ...) when the server says. */
	specialUse?: string;
	/** Messages in the folder, when the listing carries it. */
	total?: number;
	unread?: number;
}

/** What one attachment is, before its bytes are read. */
export interface AttachmentInfo {
	filename: string;
	contentType: string;
	/** Bytes, when the server says before they are read (Graph does; IMAP knows only the encoded part). */
	size?: number;
	contentId?: string;
	inline: boolean;
}

/**
 * Where attachment and raw-message bytes go as they are read. Each stream must be read to its
 * end before the promise settles. Without a sink they are collected into Buffers on the message.
 * `messageId` is the reader's opaque message id (IncomingMessage.id).
 */
export interface MessageSink {
	attachment(messageId: string, index: number, info: AttachmentInfo, content: Readable): Promise<void>;
	raw(messageId: string, content: Readable): Promise<void>;
}

/** How long reading one message may take unless the caller says otherwise. */
export const DEFAULT_MESSAGE_TIMEOUT_MS = 30_000;

export interface ReadLimits {
	/** Per message: how long reading (parsing, storing its attachments) may take. */
	timeoutMs?: number;
	/** Bytes of header a MIME part may have (IMAP); Graph and EWS ignore it. */
	maxHeaderBytes?: number;
}

export interface FetchOptions {
	includeHtml?: boolean;
	includeHeaders?: boolean;
	includeRaw?: boolean;
	sink?: MessageSink;
	limits?: ReadLimits;
}

/** What the server did with one message on a post-action. */
export interface PostActionOutcome {
	/** The message's opaque id as fetched. */
	id: string;
	done: boolean;
	/** Its id in the target folder after a move, when the server said. */
	newId?: string;
	/** IMAP only: the UID in the target folder, kept in the output for existing workflows (like IncomingMessage.uid). */
	newUid?: number;
	/** Why not done: the server's words, or what checking afterwards showed. */
	reason?: string;
	/** The connection failed before the server's answer for this message was known. */
	unconfirmed?: boolean;
}

/** The reason of a message a post-action did not reach because an earlier part was refused (atomic). */
export const POST_ACTION_NOT_ATTEMPTED = 'not attempted: the server refused an earlier part of this post-action';

export interface PostActionOptions {
	/** Stop at the first refusal and undo what can be undone, so a failure leaves the folder as found. */
	atomic?: boolean;
}

/** New mail in a folder since a cursor (see MailReader.changesSince). */
export interface FolderChanges {
	/** Ids of messages that arrived after the cursor, oldest first, each once. */
	ids: string[];
	/** Opaque, JSON-safe; pass it to the next changesSince. Covers every id returned here. */
	cursor: string;
	/**
	 * Set when there was no cursor or the server no longer accepted it and the reader cannot tell
	 * what arrived since (IMAP: UIDVALIDITY changed): the cursor now starts from the present and
	 * `ids` is empty (nothing old is replayed as new mail). A reader that can recover (Graph after
	 * a 410 on its delta link) re-baselines itself and returns the missed ids without this flag.
	 */
	baseline?: 'first' | 'invalid';
}

export interface FolderStatus {
	/** The folder as the server names it ('INBOX', 'Inbox'). */
	path: string;
	total: number;
	unread?: number;
}

/**
 * What every incoming transport (IMAP, Graph; EWS later) offers the nodes. One reader reads one
 * mailbox; it keeps its own connection (if any) and must be closed. Message ids are opaque,
 * stable for the folder they were fetched from, and only meaningful to the reader that made them.
 */
export interface MailReader {
	readonly name?: string;
	/** Signs in (and for IMAP opens the connection). Safe to call once before anything else. */
	connect(): Promise<void>;
	/** Signs in and does one harmless read, for credential tests. */
	verify(): Promise<void>;
	listFolders(): Promise<FolderInfo[]>;
	/**
	 * How many messages `folder` holds (and how many are unread, where the server says so):
	 * the harmless read of connection tests (IMAP SELECT / STATUS, Graph mailFolders/{id}).
	 */
	status?(folder: string): Promise<FolderStatus>;
	/** Ids of the messages in `folder` matching the filter, in the order asked, at most `limit`. An unknown folder is an error listing those that exist. */
	search(folder: string, filter: ReadFilter, order: { newestFirst: boolean; limit: number }): Promise<string[]>;
	/**
	 * Reads the given messages of `folder` into the shared model, one at a time (any order; the
	 * caller restores its own). A message that cannot be read comes as an UnreadableMessage in its
	 * place; a message that no longer exists is left out; only a failing connection throws.
	 */
	fetch(folder: string, ids: string[], options?: FetchOptions): AsyncGenerator<IncomingMessage | UnreadableMessage>;
	/** Applies a post-action and says per id what the server did (nothing for `none`); refusals are outcomes, not exceptions. */
	apply(folder: string, ids: string[], action: PostAction, options?: PostActionOptions): Promise<PostActionOutcome[]>;
	/** New mail in `folder` since `cursor` (undefined on first activation), for triggers. */
	changesSince(folder: string, cursor: string | undefined): Promise<FolderChanges>;
	/** Whether the reader can still be used (a reset or time-out ends an IMAP connection). */
	readonly connected: boolean;
	/** A fresh connection in place of a failed one. */
	reconnect(): Promise<void>;
	close(): Promise<void>;
}

/**
 * Every transport names "the connection was lost after the whole message went out, so the server
 * may have it" with a code ending in this suffix (SMTP_DELIVERY_UNKNOWN, GRAPH_DELIVERY_UNKNOWN):
 * nodes never resend such a message under At Most Once, whatever the transport.
 */
export const DELIVERY_UNKNOWN_SUFFIX = '_DELIVERY_UNKNOWN';

export function isDeliveryUnknown(error: unknown): error is ActionableError {
	return error instanceof ActionableError && error.code.endsWith(DELIVERY_UNKNOWN_SUFFIX);
}

/** Default retries of temporary send failures, the same for every transport (the node's option defaults). */
export const DEFAULT_SEND_RETRY = { retries: 2, firstBackoffMs: 1000, maxBackoffMs: 30_000 } as const;

/** A protocol failure with the server's response code, when there was one. */
export class MailTransportError extends ActionableError {
	constructor(
		message: string,
		code: string,
		hint: string,
		readonly responseCode?: number,
	) {
		super(message, code, hint);
		this.name = 'MailTransportError';
	}
}
