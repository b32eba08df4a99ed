import type { Readable } from 'node:stream';
import MailComposer from 'nodemailer/lib/mail-composer';

import type { AttachmentContent, MailAddress, OutgoingMessage } from '../../model/outgoing-message';

export interface ComposeOptions {
	/** Keep the Bcc header in the MIME (EWS takes Bcc recipients from it and strips it on send). */
	keepBcc: boolean;
}

/** The composed message: its stream and the Message-ID written into it. */
export type ComposedMime = Readable & { messageId?: string };

const READ_RECEIPT_HEADER = 'Disposition-Notification-To';

/**
 * The MIME of an outgoing message, built by nodemailer's MailComposer with the mapping the SMTP
 * sender uses (addresses, Sender for "on behalf of", custom headers, read receipt, priority
 * headers, inline parts by Content-ID). Attachments are opened now and streamed, never held whole;
 * they are closed when the stream ends or is destroyed. `messageId` is set on the stream.
 */
export async function composeMime(message: OutgoingMessage, options: ComposeOptions): Promise<Readable> {
	const opened: AttachmentContent[] = [];
	const close = () => {
		for (const content of opened) if (!Buffer.isBuffer(content)) content.destroy();
	};
	try {
		const attachments = [];
		for (const attachment of message.attachments) {
			const content = await attachment.open();
			opened.push(content);
			attachments.push({
				filename: attachment.filename,
				contentType: attachment.contentType,
				content,
				...(attachment.contentId ? { cid: attachment.contentId, contentDisposition: 'inline' as const } : {}),
			});
		}
		const composer = new MailComposer({
			from: address(message.from),
			to: message.to.map(address),
			cc: message.cc.map(address),
			bcc: message.bcc.map(address),
			replyTo: message.replyTo.map(address),
			subject: message.subject,
			text: message.text,
			html: message.html,
			attachments,
			...(message.sender ? { sender: address(message.sender) } : {}),
			headers: composedHeaders(message),
			// Content is handed over as streams and buffers only: nothing is read from paths or URLs.
			disableFileAccess: true,
			disableUrlAccess: true,
		});
		const node = composer.compile();
		node.keepBcc = options.keepBcc;
		const stream = node.createReadStream() as ComposedMime;
		stream.messageId = node.messageId();
		stream.once('close', close);
		stream.once('error', close);
		return stream;
	} catch (error) {
		close();
		throw error;
	}
}

/** The message's headers, the read-receipt request and the priority headers nodemailer's Mailer writes for SMTP. */
function composedHeaders(message: OutgoingMessage): Array<{ key: string; value: string }> {
	const priorityHeaders = new Set(['x-priority', 'x-msmail-priority', 'importance']);
	// As Mailer's setHeader: a priority other than normal replaces custom priority headers.
	const replaced = message.priority === 'high' || message.priority === 'low';
	const headers = message.headers
		.filter(({ name }) => !(replaced && priorityHeaders.has(name.toLowerCase())))
		.map(({ name, value }) => ({ key: name, value }));
	const asked = headers.some(({ key }) => key.toLowerCase() === READ_RECEIPT_HEADER.toLowerCase());
	if (message.readReceipt && !asked) headers.push({ key: READ_RECEIPT_HEADER, value: message.from.address });
	if (message.priority === 'high') headers.push({ key: 'X-Priority', value: '1 (Highest)' }, { key: 'X-MSMail-Priority', value: 'High' }, { key: 'Importance', value: 'High' });
	if (message.priority === 'low') headers.push({ key: 'X-Priority', value: '5 (Lowest)' }, { key: 'X-MSMail-Priority', value: 'Low' }, { key: 'Importance', value: 'Low' });
	return headers;
}

function address(value: MailAddress): { name: string; address: string } {
	return { name: value.name ?? '', address: value.address };
}
