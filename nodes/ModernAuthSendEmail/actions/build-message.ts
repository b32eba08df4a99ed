import { BINARY_ENCODING, type IDataObject, type IExecuteFunctions } from 'n8n-workflow';

import type {
	MessagePriority,
	OutgoingAttachment,
	OutgoingMessage,
} from '../../../model/outgoing-message';
import {
	assertHeaderText,
	attachmentFileName,
	checkHeader,
	isFromAllowed,
	MessageInputError,
	parseAddressList,
	parseSingleAddress,
	splitList,
} from '../../../model/validate';

export interface SenderDefaults {
	fromAddress: string;
	allowedFrom: string[];
}

const MB = 1024 * 1024;
/** Exchange Online's limit per message. */
export const DEFAULT_MAX_RECIPIENTS = 500;
const SMALL_ATTACHMENT_BYTES = 256 * 1024;

/**
 * Reads one item's parameters into a complete, validated message. Nothing touches the
 * network here, so a bad item fails before any of it is sent.
 */
export async function buildMessage(
	ctx: IExecuteFunctions,
	itemIndex: number,
	defaults: SenderDefaults,
): Promise<OutgoingMessage> {
	const param = (name: string, fallback: unknown = '') =>
		ctx.getNodeParameter(name, itemIndex, fallback) as unknown;
	const options = ctx.getNodeParameter('options', itemIndex, {}) as IDataObject;

	const from =
		parseSingleAddress('From', param('fromEmail')) ??
		parseSingleAddress('Default From Address (credential)', defaults.fromAddress);
	if (!from) {
		throw new MessageInputError(
			'From',
			'is empty and the credential has no Default From Address',
			'Fill in From, or set Default From Address in the credential',
		);
	}
	assertAddressAllowed('From', from.address, defaults.allowedFrom);
	// "On behalf of": validated and limited like From, since it names a mailbox too.
	const sender = parseSingleAddress('Sender (On Behalf Of)', options.sender);
	if (sender) assertAddressAllowed('Sender (On Behalf Of)', sender.address, defaults.allowedFrom);

	const to = parseAddressList('To', param('toEmail'));
	const cc = parseAddressList('CC', options.ccEmail);
	const bcc = parseAddressList('BCC', options.bccEmail);
	if (to.length + cc.length + bcc.length === 0) {
		throw new MessageInputError('To', 'no recipient given', 'Fill in To (or CC / BCC) with at least one address');
	}
	assertRecipientLimit(to.length + cc.length + bcc.length, Number(options.maxRecipients ?? DEFAULT_MAX_RECIPIENTS));
	const replyTo = parseAddressList('Reply To', options.replyTo);

	const subject = String(param('subject') ?? '');
	assertHeaderText('Subject', subject);

	const format = String(param('emailFormat', 'text'));
	const text = format === 'text' || format === 'both' ? String(param('text') ?? '') : undefined;
	const html = format === 'html' || format === 'both' ? String(param('html') ?? '') : undefined;

	const headers: OutgoingMessage['headers'] = [];
	const headerEntries = ((options.customHeaders as IDataObject | undefined)?.header ?? []) as Array<{
		name?: string;
		value?: unknown;
	}>;
	for (const entry of headerEntries) {
		const name = String(entry.name ?? '').trim();
		const value = String(entry.value ?? '');
		checkHeader('Custom Headers', name, value);
		headers.push({ name, value });
	}

	const maxBytes = Number(options.maxAttachmentSizeMb ?? 25) * MB;
	const attachments: OutgoingAttachment[] = [];
	for (const property of splitList(options.attachments as string | undefined)) {
		attachments.push(await binaryAttachment(ctx, itemIndex, 'Attachments', property, maxBytes));
	}
	for (const property of splitList(options.inlineImages as string | undefined)) {
		const attachment = await binaryAttachment(ctx, itemIndex, 'Inline Images', property, maxBytes);
		attachments.push({ ...attachment, contentId: property });
	}

	const priority = String(options.priority ?? 'normal') as MessagePriority;
	if (!['high', 'normal', 'low'].includes(priority)) {
		throw new MessageInputError('Importance', `"${priority}" is not one of high, normal, low`);
	}

	return {
		from,
		to,
		cc,
		bcc,
		replyTo,
		subject,
		text,
		html,
		attachments,
		headers,
		priority,
		...(sender ? { sender } : {}),
		readReceipt: options.readReceipt === true,
		saveToSentItems: options.saveToSentItems !== false,
	};
}

function assertAddressAllowed(field: string, address: string, allowed: string[]): void {
	if (isFromAllowed(address, allowed)) return;
	throw new MessageInputError(field, `"${address}" is not allowed by this credential`, `The credential allows only: ${allowed.join(', ')}`);
}

function assertRecipientLimit(count: number, limit: number): void {
	const max = Number.isFinite(limit) && limit >= 1 ? limit : DEFAULT_MAX_RECIPIENTS;
	if (count > max) {
		throw new MessageInputError(
			'To',
			`${count} recipients (To, CC and BCC together) are more than the ${max} allowed per message`,
			'Split the recipients over several items, or raise "Max Recipients Per Message" if your server accepts more',
		);
	}
}

async function binaryAttachment(
	ctx: IExecuteFunctions,
	itemIndex: number,
	field: string,
	property: string,
	maxBytes: number,
): Promise<OutgoingAttachment> {
	const item = ctx.getInputData()[itemIndex];
	const binary = item?.binary?.[property];
	if (!binary) {
		const available = Object.keys(item?.binary ?? {});
		throw new MessageInputError(
			field,
			`item has no binary property "${property}"`,
			available.length
				? `Binary properties on this item: ${available.join(', ')}`
				: 'This item carries no binary data; read or download the file in an earlier node',
		);
	}
	const size = binary.id
		? (await ctx.helpers.getBinaryMetadata(binary.id)).fileSize
		: Buffer.byteLength(binary.data, BINARY_ENCODING);
	if (maxBytes > 0 && size > maxBytes) {
		throw new MessageInputError(
			field,
			`"${property}" is ${(size / MB).toFixed(1)} MB, over the limit of ${(maxBytes / MB).toFixed(1)} MB`,
			'Raise "Max Attachment Size (MB)" if your server accepts it, or send a link instead',
		);
	}
	const filename = attachmentFileName(`${field} file name`, binary.fileName, property);
	const binaryId = binary.id;
	const inlineData = binary.data;
	return {
		filename,
		contentType: binary.mimeType || 'application/octet-stream',
		size,
		// Large files in n8n's filesystem / S3 store are streamed, never loaded whole; small
		// ones are read in one go, which costs less than setting up a stream.
		open: async () => {
			if (!binaryId) return Buffer.from(inlineData, BINARY_ENCODING);
			if (size <= SMALL_ATTACHMENT_BYTES) return await ctx.helpers.getBinaryDataBuffer(itemIndex, property);
			return await ctx.helpers.getBinaryStream(binaryId);
		},
	};
}
