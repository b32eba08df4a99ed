import type { IDataObject, IExecuteFunctions, INodeExecutionData } from 'n8n-workflow';

import type { IncomingMessage, PostAction, ReadCriteria } from '../../../model/incoming-message';
import { MessageInputError } from '../../../model/validate';
import type { ReadAuthentication } from '../../shared/open-reader';

export interface ReadRequest {
	authentication: ReadAuthentication;
	mailbox: string;
	folder: string;
	limit: number;
	newestFirst: boolean;
	criteria: ReadCriteria;
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
		const folder = String(ctx.getNodeParameter('moveTo', i, '')).trim();
		if (!folder) throw new MessageInputError('Move to Folder', 'is empty', 'Name the folder to move read messages to');
		postAction = { type: 'move', folder };
	} else if (['markRead', 'flag', 'delete'].includes(postActionType)) {
		postAction = { type: postActionType as 'markRead' | 'flag' | 'delete' };
	}
	const folder = String(ctx.getNodeParameter('folder', i, 'INBOX')).trim();
	if (!folder) throw new MessageInputError('Folder', 'is empty', 'Choose a folder, e.g. INBOX');
	return {
		authentication: ctx.getNodeParameter('authentication', 0) as ReadAuthentication,
		mailbox: String(options.mailbox ?? ''),
		folder,
		limit: Math.max(1, Number(ctx.getNodeParameter('limit', i, 50)) || 50),
		newestFirst: ctx.getNodeParameter('order', i, 'newest') !== 'oldest',
		criteria: {
			unreadOnly: filters.unreadOnly === true,
			since: date('Received Since', filters.since),
			before: date('Received Before', filters.before),
			from: String(filters.from ?? '') || undefined,
			to: String(filters.to ?? '') || undefined,
			subjectContains: String(filters.subject ?? '') || undefined,
		},
		postAction,
		fetch: {
			includeHtml: options.includeHtml === true,
			includeHeaders: options.includeHeaders === true,
			includeRaw: options.includeRaw === true,
		},
		downloadAttachments: options.downloadAttachments !== false,
		attachmentPrefix: String(options.attachmentPrefix ?? 'attachment_') || 'attachment_',
	};
}

/** One message as an n8n item: the shared model as JSON, attachments as binary properties. */
export async function toItem(ctx: IExecuteFunctions, message: IncomingMessage, itemIndex: number, request: ReadRequest): Promise<INodeExecutionData> {
	const { attachments, raw, ...rest } = message;
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
	const binary: INodeExecutionData['binary'] = {};
	if (request.downloadAttachments) {
		for (const [index, attachment] of attachments.entries()) {
			binary[`${request.attachmentPrefix}${index}`] = await ctx.helpers.prepareBinaryData(attachment.content, attachment.filename, attachment.contentType);
		}
	}
	if (raw) binary.raw = await ctx.helpers.prepareBinaryData(raw, `${message.uid ?? 'message'}.eml`, 'message/rfc822');
	return { json, ...(Object.keys(binary).length ? { binary } : {}), pairedItem: { item: itemIndex } };
}
