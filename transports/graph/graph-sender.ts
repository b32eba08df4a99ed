import { ActionableError } from '../../model/actionable-error';
import type { OutgoingMessage, SendResult } from '../../model/outgoing-message';
import type { MailSender } from '../contracts';
import { INLINE_LIMIT, MAX_ATTACHMENT, readWhole, type SizedAttachment, sizeAttachment, uploadAttachment } from './attachment-upload';
import { createGraphClient, type GraphClient, type GraphClientOptions } from './graph-client';
import { GRAPH_CODES, GraphApiError } from './graph-errors';
import { allRecipients, fileAttachment, graphMessage } from './graph-message';

/** Graph refuses write requests over 4 MB (413); what we send in one request stays under it. */
export const REQUEST_LIMIT = 4 * 1024 * 1024;

export interface GraphSenderOptions extends GraphClientOptions {
	/**
	 * 'auto' (default): one sendMail when everything fits in one request, else a draft.
	 * 'draft': always a draft sent by id, so even an ambiguous failure can be retried (two
	 * requests per message instead of one).
	 */
	sendPath?: 'auto' | 'draft';
	/** Re-sends of the same draft after an ambiguous failure (default 2). */
	draftSendRetries?: number;
}

/**
 * Sends through Microsoft Graph: `POST /users/{mailbox}/sendMail` (202) when the message with its
 * attachments fits in one request, else a draft (`POST messages`), its attachments (small ones
 * inline, 3 MB..150 MB through createUploadSession, streamed in slices) and `POST messages/{id}/send`.
 *
 * Never twice: 429/503 and failures before the request was sent are repeated by the client (Graph
 * did not act on them). sendMail is NOT repeated after an ambiguous failure (reset after sending,
 * 5xx other than 503): that is GRAPH_DELIVERY_UNKNOWN. A draft is created once and only its
 * `send` is repeated: a draft that was sent is no longer a draft, so a repeated send cannot deliver
 * it again (Graph answers 404), and that 404 after an ambiguous attempt means it went out.
 */
export class GraphSender implements MailSender {
	readonly name = 'graph';
	private readonly graph: GraphClient;
	private readonly sendPath: 'auto' | 'draft';
	private readonly draftSendRetries: number;

	constructor(options: GraphSenderOptions) {
		this.graph = createGraphClient(options);
		this.sendPath = options.sendPath ?? 'auto';
		this.draftSendRetries = options.draftSendRetries ?? 2;
	}

	async verify(): Promise<void> {
		await this.graph.get(`${this.graph.mailbox}/mailFolders/inbox?$select=id`);
	}

	async send(message: OutgoingMessage): Promise<SendResult> {
		const attachments: SizedAttachment[] = [];
		try {
			for (const attachment of message.attachments) {
				const sized = await sizeAttachment(attachment);
				attachments.push(sized);
				if (sized.size > MAX_ATTACHMENT) throw tooLarge(sized);
			}
			const single = this.sendPath === 'auto' ? await this.singleRequest(message, attachments) : undefined;
			if (single) return await this.sendMail(message, single);
			return await this.sendDraft(message, attachments);
		} finally {
			await Promise.all(attachments.map((a) => a.dispose()));
		}
	}

	async close(): Promise<void> {
		this.graph.close();
	}

	/** The sendMail body when every attachment is inline and the request stays under 4 MB; else undefined. */
	private async singleRequest(message: OutgoingMessage, attachments: SizedAttachment[]): Promise<string | undefined> {
		const base = graphMessage(message, { draft: false });
		const estimate = Buffer.byteLength(JSON.stringify(base)) + attachments.reduce((n, a) => n + base64Length(a.size) + 512, 0);
		if (attachments.some((a) => a.size >= INLINE_LIMIT) || estimate > REQUEST_LIMIT) return undefined;
		const inline = [];
		for (const attachment of attachments) inline.push(fileAttachment(attachment, await readWhole(attachment)));
		const body = JSON.stringify({ message: { ...base, ...(inline.length ? { attachments: inline } : {}) }, saveToSentItems: message.saveToSentItems !== false });
		return Buffer.byteLength(body) <= REQUEST_LIMIT ? body : undefined;
	}

	private async sendMail(message: OutgoingMessage, body: string): Promise<SendResult> {
		try {
			const answer = await this.graph.post(`${this.graph.mailbox}/sendMail`, body, { headers: { 'Content-Type': 'application/json' } });
			return this.result(message, '', `${answer.status} Accepted (sendMail)`, answer.attempts);
		} catch (error) {
			if (error instanceof GraphApiError && error.ambiguous) throw deliveryUnknown(error, 'sendMail');
			throw error;
		}
	}

	private async sendDraft(message: OutgoingMessage, attachments: SizedAttachment[]): Promise<SendResult> {
		// Not repeated after an ambiguous failure: nothing is sent yet, the item can simply be run again.
		const draft = await this.graph.post<{ id: string; internetMessageId?: string }>(`${this.graph.mailbox}/messages`, graphMessage(message, { draft: true }));
		const draftPath = `${this.graph.mailbox}/messages/${encodeURIComponent(draft.body.id)}`;
		let sending = false;
		try {
			let recovered = false;
			for (const attachment of attachments) {
				if (attachment.size >= INLINE_LIMIT) recovered = (await uploadAttachment(this.graph, draftPath, attachment)) || recovered;
				else await this.graph.post(`${draftPath}/attachments`, fileAttachment(attachment, await readWhole(attachment)));
			}
			if (recovered) await this.checkAttachments(draftPath, attachments);
			sending = true;
			const { attempts, response } = await this.sendDraftById(draftPath);
			return this.result(message, draft.body.internetMessageId ?? '', response, attempts);
		} catch (error) {
			// A draft that never went out is removed, so Drafts does not fill with half-built messages.
			if (!sending || (error instanceof ActionableError && error.code !== GRAPH_CODES.deliveryUnknown)) {
				await this.graph.delete(draftPath).catch(() => undefined);
			}
			throw error;
		}
	}

	/** Every attachment is on the draft with its size, before it may be sent. */
	private async checkAttachments(draftPath: string, attachments: SizedAttachment[]): Promise<void> {
		if (attachments.length === 0) return;
		const held = new Map<string, number>();
		await this.graph.pages<{ name: string; size: number }>(`${draftPath}/attachments?$select=name,size`, (a) => {
			held.set(`${a.name}\u0000${a.size}`, (held.get(`${a.name}\u0000${a.size}`) ?? 0) + 1);
		});
		for (const attachment of attachments) {
			const key = `${attachment.filename}\u0000${attachment.size}`;
			const count = held.get(key) ?? 0;
			if (count === 0) {
				throw new ActionableError(
					`Attachment "${attachment.filename}" did not arrive complete on the draft; the message was not sent`,
					'GRAPH_ERROR',
					'Send the item again',
				);
			}
			held.set(key, count - 1);
		}
	}

	private async sendDraftById(draftPath: string): Promise<{ attempts: number; response: string }> {
		let ambiguousBefore: GraphApiError | undefined;
		for (let attempt = 1; ; attempt++) {
			try {
				const answer = await this.graph.post(`${draftPath}/send`, undefined);
				return { attempts: attempt, response: `${answer.status} Accepted (draft sent)` };
			} catch (error) {
				if (!(error instanceof GraphApiError)) throw error;
				// After an ambiguous send, a draft that no longer exists was sent by that attempt.
				if (ambiguousBefore && error.code === GRAPH_CODES.notFound) {
					return { attempts: attempt, response: '202 Accepted (draft sent; the answer to the first attempt was lost)' };
				}
				if (!error.ambiguous) throw error;
				if (attempt > this.draftSendRetries) throw deliveryUnknown(error, 'draft send');
				ambiguousBefore = error;
			}
		}
	}

	private result(message: OutgoingMessage, messageId: string, response: string, attempts: number): SendResult {
		const recipients = allRecipients(message);
		return {
			messageId,
			accepted: recipients,
			rejected: [],
			refused: [],
			response,
			envelope: { from: (message.sender ?? message.from).address, to: recipients },
			attempts,
		};
	}
}

function base64Length(bytes: number): number {
	return Math.ceil(bytes / 3) * 4;
}

function tooLarge(attachment: SizedAttachment): ActionableError {
	return new ActionableError(
		`Attachment "${attachment.filename}" has ${attachment.size} bytes; Graph takes at most 150 MB per message`,
		GRAPH_CODES.tooLarge,
		'Send a link to the file instead, or split it; 150 MB also needs the mailbox MaxSendSize raised to 150 MB',
	);
}

function deliveryUnknown(error: GraphApiError, what: string): ActionableError {
	return new ActionableError(
		`The connection failed after the message was handed to Graph (${what}); it may or may not have been sent: ${error.message}`,
		GRAPH_CODES.deliveryUnknown,
		"Check the mailbox's Sent Items (or ask a recipient) before sending it again; it was not resent automatically to avoid a duplicate",
	);
}
