import {
	NodeConnectionTypes,
	type IDataObject,
	type IExecuteFunctions,
	type INodeExecutionData,
	type INodeType,
	type INodeTypeDescription,
} from 'n8n-workflow';

import { ActionableError } from '../../model/actionable-error';
import type { OutgoingMessage, RefusedRecipient } from '../../model/outgoing-message';
import { DEFAULT_SEND_RETRY, isDeliveryUnknown, MailTransportError, type MailSender } from '../../transports/contracts';
import type { Connection, SenderTuning, SendIdentity } from '../../connections/connection';
import { credentialsFor } from '../../connections/registry';
import { forEachWithLimit } from '../shared/concurrency';
import { describeItemError, toNodeOperationError } from '../shared/node-errors';
import { credentialTestMethods, openConnection, sendingParts } from '../shared/open-connection';
import { buildMessage } from './actions/build-message';
import { messageFingerprint, recordedOutcome, recordOutcome, type ItemIdentity } from './actions/sent-record';
import { sendEmailProperties } from './description';

const QUEUE_PER_CONNECTION = 4;

export class ModernAuthSendEmail implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Send Email (Modern Auth)',
		name: 'modernAuthSendEmail',
		icon: { light: 'file:../../icons/send.svg', dark: 'file:../../icons/send.dark.svg' },
		group: ['output'],
		version: 1,
		subtitle: '={{"to " + $parameter["toEmail"]}}',
		description: 'Send email over SMTP, Microsoft 365 (SMTP OAuth or Microsoft Graph) or Exchange Web Services with modern authentication',
		defaults: { name: 'Send Email (Modern Auth)' },
		inputs: [NodeConnectionTypes.Main],
		outputs: [NodeConnectionTypes.Main],
		usableAsTool: true,
		credentials: credentialsFor('send'),
		properties: sendEmailProperties,
	};

	methods = {
		credentialTest: credentialTestMethods('send'),
	};

	async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
		const items = this.getInputData();
		const node = this.getNode();
		const continueOnFail = this.continueOnFail();
		const results: INodeExecutionData[] = new Array(items.length);
		let secrets: string[] = [];
		const fail = (itemIndex: number, error: unknown) => {
			results[itemIndex] = {
				json: { error: describeItemError(error, secrets) },
				pairedItem: { item: itemIndex },
			};
		};

		let setup: SendingConnection;
		try {
			const connection = await openConnection(this, String(this.getNodeParameter('authentication', 0)));
			secrets = connection.secrets;
			setup = { ...sendingParts(connection), secrets: connection.secrets, warning: connection.warning };
		} catch (error) {
			// A credential that cannot work fails every item the same way.
			if (!continueOnFail) throw toNodeOperationError(node, error, 0, secrets);
			items.forEach((_, i) => fail(i, error));
			return [results];
		}
		if (setup.warning) this.logger.warn(`Send Email (Modern Auth): ${setup.warning}`);

		// Phase 1: build and validate every item before the first byte goes out, so bad
		// input never leaves a batch half-sent.
		// Retry On Fail re-runs the node within the same run (same run index); a loop does not.
		const run = { executionId: this.getExecutionId(), runIndex: Number(this.getWorkflowDataProxy(0).$runIndex ?? 0) };
		const planned: Array<PlannedItem | undefined> = new Array(items.length);
		for (let i = 0; i < items.length; i++) {
			try {
				planned[i] = await planItem(this, i, setup, run);
			} catch (error) {
				if (!continueOnFail) throw toNodeOperationError(node, error, i, secrets);
				fail(i, error);
			}
		}

		// An earlier try of this execution (Retry On Fail) may have handed items to the server
		// already: those are never sent again.
		const accepted: number[] = [];
		const laterFailures: Array<{ index: number; error: unknown }> = [];
		const settle = (i: number, json: IDataObject) => {
			accepted.push(i);
			const refusal = refusedRecipientsFailure(json, planned[i]!.policy);
			if (refusal) return refusal;
			results[i] = { json, pairedItem: { item: i } };
			return undefined;
		};
		const toSend: number[] = [];
		planned.forEach((item, i) => {
			if (!item) return;
			const known = item.record ? recordedOutcome(item.record) : undefined;
			if (!known) {
				toSend.push(i);
				return;
			}
			const failure = known.outcome === 'sent' ? settle(i, { ...known.json, alreadySent: true }) : notResentError(known.code);
			if (!failure) return;
			if (continueOnFail) fail(i, failure);
			else laterFailures.push({ index: i, error: failure });
		});

		// Phase 2: one pooled connection set per sign-in identity, for the whole execution.
		const tuning = readTuning(this);
		const senders = new Map<string, MailSender>();
		const senderFor = (identity: SendIdentity) => {
			let sender = senders.get(identity.key);
			if (!sender) {
				sender = setup.sender(identity, tuning);
				senders.set(identity.key, sender);
			}
			return sender;
		};
		let firstFailure: { index: number; error: unknown } | undefined;
		try {
			await forEachWithLimit(
				toSend,
				// Keep a few messages queued per connection so a connection never idles while
				// the next message's attachments are being opened.
				tuning.maxConnections * QUEUE_PER_CONNECTION,
				async (i) => {
					const item = planned[i]!;
					let failure: unknown;
					try {
						const sent = await senderFor(item.identity).send(item.message);
						const json: IDataObject = { status: sent.refused.length ? 'partial' : 'sent', ...sent };
						if (item.record) recordOutcome(item.record, { outcome: 'sent', json });
						failure = settle(i, json);
					} catch (error) {
						failure = error;
						if (item.record && isDeliveryUnknown(error) && item.policy.deliveryGuarantee === 'atMostOnce') {
							recordOutcome(item.record, { outcome: 'unknown', code: error.code });
						}
					}
					if (failure === undefined) return;
					if (continueOnFail) fail(i, failure);
					else firstFailure ??= { index: i, error: failure };
				},
				() => firstFailure !== undefined,
			);
		} finally {
			await Promise.allSettled([...senders.values()].map(async (sender) => await sender.close()));
		}
		const failure = firstFailure ?? laterFailures[0];
		if (failure) {
			throw toNodeOperationError(node, withAcceptedNote(failure.error, accepted), failure.index, secrets);
		}
		return [results];
	}
}

type SendingConnection = Required<Pick<Connection, 'identityFor' | 'sender'>> & Pick<Connection, 'secrets' | 'warning'>;

interface PlannedItem {
	identity: SendIdentity;
	message: OutgoingMessage;
	policy: ItemPolicy;
	/** Absent when n8n gives no execution id: nothing to retry against then. */
	record?: ItemIdentity;
}

interface ItemPolicy {
	deliveryGuarantee: 'atMostOnce' | 'atLeastOnce';
	failOnRefusedRecipient: boolean;
}

async function planItem(
	ctx: IExecuteFunctions,
	itemIndex: number,
	setup: SendingConnection,
	run: { executionId: string | undefined; runIndex: number },
): Promise<PlannedItem> {
	// Mailbox is an item parameter: each item may sign in as another mailbox.
	const identity = await setup.identityFor(String(ctx.getNodeParameter('options.mailbox', itemIndex, '') ?? ''));
	const message = await buildMessage(ctx, itemIndex, identity);
	const options = ctx.getNodeParameter('options', itemIndex, {}) as IDataObject;
	const policy: ItemPolicy = {
		deliveryGuarantee: options.deliveryGuarantee === 'atLeastOnce' ? 'atLeastOnce' : 'atMostOnce',
		failOnRefusedRecipient: options.failOnRefusedRecipient === true,
	};
	const record = run.executionId
		? {
				executionId: run.executionId,
				nodeName: ctx.getNode().name,
				runIndex: run.runIndex,
				itemIndex,
				fingerprint: messageFingerprint(identity.key, message),
			}
		: undefined;
	return { identity, message, policy, record };
}

/** Pool size and retry limits: settings of the execution's senders, read at item 0. */
function readTuning(ctx: IExecuteFunctions): SenderTuning {
	const number = (name: string, fallback: number) => {
		const value = Number(ctx.getNodeParameter(`options.${name}`, 0, fallback));
		return Number.isFinite(value) && value >= 0 ? value : fallback;
	};
	return {
		maxConnections: Math.max(1, number('maxConnections', 3)),
		retry: {
			retries: Math.floor(number('sendRetries', DEFAULT_SEND_RETRY.retries)),
			firstBackoffMs: number('retryBackoffSeconds', DEFAULT_SEND_RETRY.firstBackoffMs / 1000) * 1000,
		},
	};
}

function notResentError(code: string): MailTransportError {
	return new MailTransportError(
		'Not sent again: an earlier try of this execution lost the connection after the whole message had gone out, so it may have arrived (delivery unknown)',
		code,
		'Delivery Guarantee is "At Most Once": check whether it arrived before sending it again, or choose "At Least Once" to resend on retry',
	);
}

function refusedRecipientsFailure(json: IDataObject, policy: ItemPolicy): MailTransportError | undefined {
	const refused = (json.refused ?? []) as RefusedRecipient[];
	if (!policy.failOnRefusedRecipient || refused.length === 0) return undefined;
	const total = refused.length + ((json.accepted ?? []) as string[]).length;
	const list = refused.map((r) => `${r.address} (${r.reply})`).join('; ');
	return new MailTransportError(
		`The server refused ${refused.length} of ${total} recipients: ${list}. The message went to the others`,
		'SMTP_RECIPIENTS_REFUSED',
		'Correct or remove the refused addresses. The accepted recipients have the message; it is not sent again on retry',
	);
}

const LISTED_ITEMS = 20;

/** Says which items the server already has, so nobody re-sends them by hand. */
function withAcceptedNote(error: unknown, accepted: number[]): unknown {
	if (accepted.length === 0 || !(error instanceof ActionableError)) return error;
	const sorted = [...accepted].sort((a, b) => a - b);
	const listed = sorted.slice(0, LISTED_ITEMS).join(', ');
	const more = sorted.length > LISTED_ITEMS ? ` and ${sorted.length - LISTED_ITEMS} more` : '';
	return new ActionableError(
		`${error.message}. Already accepted by the server, not sent again when the node is retried: item${sorted.length > 1 ? 's' : ''} ${listed}${more}`,
		error.code,
		error.hint,
	);
}
