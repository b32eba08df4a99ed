import { ActionableError } from '../../model/actionable-error';
import type { MailAddress, OutgoingMessage } from '../../model/outgoing-message';

/** Graph's `message` resource as we write it (sendMail, draft creation). */
export interface GraphMessage {
	subject: string;
	body: { contentType: 'Text' | 'HTML'; content: string };
	from: GraphRecipient;
	sender?: GraphRecipient;
	toRecipients: GraphRecipient[];
	ccRecipients: GraphRecipient[];
	bccRecipients: GraphRecipient[];
	replyTo: GraphRecipient[];
	importance: 'low' | 'normal' | 'high';
	isReadReceiptRequested: boolean;
	internetMessageHeaders?: Array<{ name: string; value: string }>;
	attachments?: GraphFileAttachment[];
	singleValueExtendedProperties?: Array<{ id: string; value: string }>;
}

export interface GraphRecipient {
	emailAddress: { address: string; name?: string };
}

export interface GraphFileAttachment {
	'@odata.type': '#microsoft.graph.fileAttachment';
	name: string;
	contentType: string;
	contentBytes: string;
	isInline?: boolean;
	contentId?: string;
}

/**
 * PidTagDeleteAfterSubmit: a sent draft is deleted instead of kept in Sent Items. `POST
 * /messages/{id}/send` has no saveToSentItems parameter (only sendMail has), so the draft
 * path asks for it this way.
 */
const DELETE_AFTER_SUBMIT = 'Boolean 0x0E01';

/** Graph takes only custom headers (X-...) in internetMessageHeaders and refuses the request otherwise. */
export function internetMessageHeaders(headers: OutgoingMessage['headers']): Array<{ name: string; value: string }> {
	for (const { name } of headers) {
		if (!/^x-/i.test(name)) {
			throw new ActionableError(
				`Graph cannot send the header "${name}": it accepts only custom headers starting with X-`,
				'GRAPH_HEADER_NOT_SUPPORTED',
				'Rename the header to X-..., set it through its own option (importance, reply-to, read receipt), or send through SMTP',
			);
		}
	}
	return headers.map(({ name, value }) => ({ name, value }));
}

/** The message without attachments, as sendMail and draft creation take it. */
export function graphMessage(message: OutgoingMessage, options: { draft: boolean }): GraphMessage {
	const headers = internetMessageHeaders(message.headers);
	const out: GraphMessage = {
		subject: message.subject,
		// Graph keeps one body: HTML when there is one (its text part is derived by Exchange).
		body: message.html !== undefined && message.html !== '' ? { contentType: 'HTML', content: message.html } : { contentType: 'Text', content: message.text ?? '' },
		from: recipient(message.from),
		toRecipients: message.to.map(recipient),
		ccRecipients: message.cc.map(recipient),
		bccRecipients: message.bcc.map(recipient),
		replyTo: message.replyTo.map(recipient),
		importance: message.priority,
		isReadReceiptRequested: Boolean(message.readReceipt),
	};
	if (message.sender) out.sender = recipient(message.sender);
	if (headers.length > 0) out.internetMessageHeaders = headers;
	if (options.draft && message.saveToSentItems === false) {
		out.singleValueExtendedProperties = [{ id: DELETE_AFTER_SUBMIT, value: 'true' }];
	}
	return out;
}

export function fileAttachment(
	attachment: { filename: string; contentType: string; contentId?: string },
	content: Buffer,
): GraphFileAttachment {
	return {
		'@odata.type': '#microsoft.graph.fileAttachment',
		name: attachment.filename,
		contentType: attachment.contentType,
		contentBytes: content.toString('base64'),
		...(attachment.contentId ? { isInline: true, contentId: attachment.contentId } : {}),
	};
}

function recipient(address: MailAddress): GraphRecipient {
	return { emailAddress: address.name ? { address: address.address, name: address.name } : { address: address.address } };
}

export function allRecipients(message: OutgoingMessage): string[] {
	return [...message.to, ...message.cc, ...message.bcc].map((r) => r.address);
}
