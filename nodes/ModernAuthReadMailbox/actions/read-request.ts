import type { IBinaryKeyData, IDataObject, IExecuteFunctions, INodeExecutionData, IPollFunctions } from 'n8n-workflow';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';

import { isUnreadable, type IncomingMessage, type PostAction, type ReadFilter, type UnreadableMessage } from '../../../model/incoming-message';
import { checkFolderName, MessageInputError } from '../../../model/validate';
import type { AttachmentInfo, MessageSink } from '../../../transports/contracts';

export interface ReadRequest {
	/** The Authentication value (see connections/registry). */
	authentication: string;
	mailbox: string;
	folder: string;
	limit: number;
	newestFirst: boolean;
	filter: ReadFilter;
	postAction: PostAction;
	fetch: { includeHtml: boolean; includeHeaders: boolean; includeRaw: boolean };
	downloadAttachments: boolean;
	attachmentPrefix: string;
}

/** One item's parameters, validated before the mailbox is touched. */
export function readRequest(ctx: IExecuteFunctions, i: number): ReadRequest {
	const filters = ctx.getNodeParameter('filters', i, {}) as IDataObject;
	const options = ctx.getNodeParameter('options', i, {}) as IDataObject;
	const date = (field: string, value: unknown): Date | undefined => {
		if (value === undefined || value === null || value === '') return undefined;
		const parsed = new Date(String(value));
		if (Number.isNaN(parsed.getTime())) throw new MessageInputError(field, `"${String(value)}" is not a valid date`, 'Use an ISO date such as 2026-11-01 or a DateTime expression');
		return parsed;
	};
	const postActionType = String(ctx.getNodeParameter('postAction', i, 'none'));
	let postAction: PostAction = { type: 'none' };
	if (postActionType === 'move') {
		const folder = checkFolderName('Move to Folder', String(ctx.getNodeParameter('moveTo', i, '')), 'Name the folder to move read messages to');
		postAction = { type: 'move', folder };
	} else if (['markRead', 'flag', 'delete'].includes(postActionType)) {
		postAction = { type: postActionType as 'markRead' | 'flag' | 'delete' };
	}
	const folder = checkFolderName('Folder', String(ctx.getNodeParameter('folder', i, 'INBOX')), 'Choose a folder, e.g. INBOX');
	return {
		authentication: String(ctx.getNodeParameter('authentication', 0)),
		mailbox: String(options.mailbox ?? ''),
		folder,
		limit: Math.max(1, Number(ctx.getNodeParameter('limit', i, 50)) || 50),
		newestFirst: ctx.getNodeParameter('order', i, 'newest') !== 'oldest',
		filter: {
			unreadOnly: filters.unreadOnly === true,
			since: date('Received Since', filters.since),
			before: date('Received Before', filters.before),
			from: String(filters.from ?? '') || undefined,
			to: String(filters.to ?? '') || undefined,
			subjectContains: String(filters.subject ?? '') || undefined,
			hasAttachments: filters.hasAttachments === true,
			rawQuery: String(filters.rawSearch ?? '').trim() || undefined,
		},
		postAction,
		...outputOptions(options),
	};
}

/** The "Options" collection the node and the trigger share: what each item carries. */
export function outputOptions(options: IDataObject): Pick<ReadRequest, 'fetch' | 'downloadAttachments' | 'attachmentPrefix'> {
	return {
		fetch: {
			includeHtml: options.includeHtml === true,
			includeHeaders: options.includeHeaders === true,
			includeRaw: options.includeRaw === true,
		},
		downloadAttachments: options.downloadAttachments !== false,
		attachmentPrefix: String(options.attachmentPrefix ?? 'attachment_') || 'attachment_',
	};
}

/**
 * Streams attachments and raw messages into n8n's binary data store while the reader parses
 * them (filesystem mode writes them to disk chunk by chunk), and hands them out per message.
 */
export class BinaryDataSink implements MessageSink {
	private readonly byId = new Map<string, IBinaryKeyData>();

	constructor(
		private readonly ctx: IExecuteFunctions | IPollFunctions,
		private readonly request: Pick<ReadRequest, 'downloadAttachments' | 'attachmentPrefix'>,
	) {}

	async attachment(id: string, index: number, info: AttachmentInfo, content: Readable): Promise<void> {
		if (!this.request.downloadAttachments) {
			// Still read to the end: the parser waits for it.
			content.resume();
			await finished(content);
			return;
		}
		this.binaries(id)[`${this.request.attachmentPrefix}${index}`] = await this.ctx.helpers.prepareBinaryData(
			content,
			info.filename,
			info.contentType,
		);
	}

	async raw(id: string, content: Readable): Promise<void> {
		this.binaries(id).raw = await this.ctx.helpers.prepareBinaryData(content, `${fileSafe(id)}.eml`, 'message/rfc822');
	}

	/** The binary properties stored for one message; forgets them. */
	take(id: string): IBinaryKeyData | undefined {
		const binaries = this.byId.get(id);
		this.byId.delete(id);
		return binaries;
	}

	private binaries(id: string): IBinaryKeyData {
		let binaries = this.byId.get(id);
		if (!binaries) this.byId.set(id, (binaries = {}));
		return binaries;
	}
}

/** An opaque id as part of a file name (Graph ids carry / and +; IMAP ids a colon). */
const fileSafe = (id: string) => id.replace(/[^A-Za-z0-9._-]+/g, '_').slice(-120);

/**
 * One message as an n8n item: the shared model as JSON, its streamed binaries from the sink.
 * A message that could not be read becomes an item of its own with `error` (message, code,
 * hint) in place of the content, so the execution goes on with the other messages.
 */
export function toItem(
	message: IncomingMessage | UnreadableMessage,
	sink: BinaryDataSink,
	itemIndex: number,
	request: ReadRequest,
): INodeExecutionData {
	// Whatever was stored before a failure is dropped: a half-read message is not output.
	const binary = sink.take(message.id);
	// IMAP output has always named the raw message after its UID.
	if (binary?.raw && message.uid !== undefined) binary.raw.fileName = `${message.uid}.eml`;
	if (isUnreadable(message)) return { json: { ...message } as unknown as IDataObject, pairedItem: { item: itemIndex } };
	const { attachments, ...rest } = message;
	delete rest.raw; // raw bytes only ever go to binary data
	const json: IDataObject = {
		...(rest as unknown as IDataObject),
		attachments: attachments.map((a, index) => ({
			filename: a.filename,
			contentType: a.contentType,
			size: a.size,
			inline: a.inline,
			...(a.contentId ? { contentId: a.contentId } : {}),
			...(request.downloadAttachments ? { binaryProperty: `${request.attachmentPrefix}${index}` } : {}),
		})),
	};
	return { json, ...(binary && Object.keys(binary).length ? { binary } : {}), pairedItem: { item: itemIndex } };
}

/** Whether an item stands for a message that could not be read (see toItem). */
export function isErrorItem(item: INodeExecutionData): boolean {
	return typeof item.json.error === 'object' && item.json.error !== null;
}
