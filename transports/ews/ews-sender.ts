import { pipeline, Transform, type TransformCallback } from 'node:stream';

import type { MessagePriority, OutgoingMessage, SendResult } from '../../model/outgoing-message';
import type { MailSender } from '../contracts';
import { composeMime, type ComposedMime } from '../mime/compose';
import { ewsErrorFor } from './errors';
import type { EwsClient, EwsResponseMessage, XmlObject } from './types';

/** Text node the MIME's base64 is streamed in place of (plain letters: the builder leaves it as is). */
const MIME_PLACEHOLDER = 'MIMECONTENTPLACEHOLDER7f3a9c';

const IMPORTANCE: Record<MessagePriority, string> = { high: 'High', normal: 'Normal', low: 'Low' };

/**
 * Sends through EWS CreateItem with the MIME the package composes (full fidelity: the same bytes
 * SMTP would send, Bcc kept in the MIME because Exchange reads Bcc recipients from it and strips
 * the header on send). MessageDisposition SendAndSaveCopy (a copy in the mailbox's Sent Items)
 * unless saveToSentItems is false (SendOnly). The MIME is streamed as base64 into the request,
 * never held whole. A connection lost after the request went out is EWS_DELIVERY_UNKNOWN (the
 * client never repeats it).
 */
export class EwsSender implements MailSender {
	readonly name = 'ews';

	constructor(private readonly client: EwsClient) {}

	async verify(): Promise<void> {
		const [answer] = await this.client.call('GetFolder', {
			'm:FolderShape': { 't:BaseShape': 'IdOnly' },
			'm:FolderIds': { 't:DistinguishedFolderId': { '@_Id': 'inbox', ...this.client.mailboxElement() } },
		});
		this.check(answer, 'GetFolder');
	}

	async send(message: OutgoingMessage): Promise<SendResult> {
		const saveCopy = message.saveToSentItems !== false;
		const body: XmlObject = {
			'@_MessageDisposition': saveCopy ? 'SendAndSaveCopy' : 'SendOnly',
			...(saveCopy ? { 'm:SavedItemFolderId': { 't:DistinguishedFolderId': { '@_Id': 'sentitems', ...this.client.mailboxElement() } } } : {}),
			'm:Items': {
				't:Message': {
					't:MimeContent': { '@_CharacterSet': 'UTF-8', '#text': MIME_PLACEHOLDER },
					't:Importance': IMPORTANCE[message.priority] ?? 'Normal',
				},
			},
		};
		let messageId = '';
		let attempts = 0;
		const answers = await this.client.callStreaming(
			'CreateItem',
			body,
			MIME_PLACEHOLDER,
			async () => {
				// Composed anew for each attempt: a stream read by a failed attempt is spent.
				attempts++;
				const mime = (await composeMime(message, { keepBcc: true })) as ComposedMime;
				messageId = mime.messageId ?? messageId;
				const encoder = new Base64Encoder();
				return pipeline(mime, encoder, () => undefined);
			},
			{ notIdempotent: true },
		);
		this.check(answers[0], 'CreateItem');
		const recipients = [...message.to, ...message.cc, ...message.bcc].map((recipient) => recipient.address);
		return {
			messageId,
			accepted: recipients,
			rejected: [],
			refused: [],
			response: `CreateItem ${answers[0].code} (${saveCopy ? 'SendAndSaveCopy' : 'SendOnly'})`,
			envelope: { from: (message.sender ?? message.from).address, to: recipients },
			attempts: Math.max(1, attempts),
		};
	}

	async close(): Promise<void> {
		await this.client.close();
	}

	private check(answer: EwsResponseMessage | undefined, operation: string): void {
		if (!answer) {
			throw ewsErrorFor({ responseClass: 'Error', code: 'ErrorNoResponse', text: 'no response message', element: {} }, { operation, mailbox: this.client.mailbox });
		}
		if (answer.responseClass === 'Error') throw ewsErrorFor(answer, { operation, mailbox: this.client.mailbox });
	}
}

/** Base64 of a byte stream, chunk by chunk (the 0-2 bytes that do not fill a group wait for the next chunk). */
export class Base64Encoder extends Transform {
	private rest = Buffer.alloc(0);

	_transform(chunk: Buffer | string, _encoding: BufferEncoding, callback: TransformCallback): void {
		const bytes = this.rest.length ? Buffer.concat([this.rest, Buffer.from(chunk)]) : Buffer.from(chunk);
		const whole = bytes.length - (bytes.length % 3);
		this.rest = Buffer.from(bytes.subarray(whole));
		if (whole > 0) this.push(bytes.subarray(0, whole).toString('base64'));
		callback();
	}

	_flush(callback: TransformCallback): void {
		if (this.rest.length) this.push(this.rest.toString('base64'));
		callback();
	}
}
