import {
	NodeConnectionTypes,
	type ICredentialsDecrypted,
	type ICredentialTestFunctions,
	type IExecuteFunctions,
	type INodeCredentialTestResult,
	type INodeExecutionData,
	type INodeType,
	type INodeTypeDescription,
} from 'n8n-workflow';

import type { OutgoingMessage } from '../../model/outgoing-message';
import type { MailSender } from '../../transports/contracts';
import { forEachWithLimit } from '../shared/concurrency';
import { APP_ONLY_CREDENTIAL, DELEGATED_CREDENTIAL } from '../shared/microsoft-connection';
import { testAppOnlyCredential } from '../shared/microsoft-credential-test';
import { describeItemError, toNodeOperationError } from '../shared/node-errors';
import { prepareSender, type SendAuthentication, type SenderSetup } from '../shared/open-sender';
import { SMTP_CREDENTIAL } from '../shared/smtp-connection';
import { testSmtpCredential } from '../shared/smtp-credential-test';
import { buildMessage } from './actions/build-message';
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
		description: 'Send email over SMTP or Microsoft 365 with modern authentication',
		defaults: { name: 'Send Email (Modern Auth)' },
		inputs: [NodeConnectionTypes.Main],
		outputs: [NodeConnectionTypes.Main],
		usableAsTool: true,
		credentials: [
			{
				name: SMTP_CREDENTIAL,
				required: true,
				testedBy: 'modernAuthSmtpConnectionTest',
				displayOptions: { show: { authentication: ['smtp'] } },
			},
			{
				name: APP_ONLY_CREDENTIAL,
				required: true,
				testedBy: 'modernAuthMicrosoftAppOnlyTest',
				displayOptions: { show: { authentication: ['microsoftAppOnly'] } },
			},
			{
				name: DELEGATED_CREDENTIAL,
				required: true,
				displayOptions: { show: { authentication: ['microsoftDelegated'] } },
			},
		],
		properties: sendEmailProperties,
	};

	methods = {
		credentialTest: {
			async modernAuthSmtpConnectionTest(
				this: ICredentialTestFunctions,
				credential: ICredentialsDecrypted,
			): Promise<INodeCredentialTestResult> {
				return await testSmtpCredential(credential.data ?? {});
			},
			async modernAuthMicrosoftAppOnlyTest(
				this: ICredentialTestFunctions,
				credential: ICredentialsDecrypted,
			): Promise<INodeCredentialTestResult> {
				return await testAppOnlyCredential(credential.data ?? {});
			},
		},
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

		let setup: SenderSetup;
		try {
			const authentication = this.getNodeParameter('authentication', 0) as SendAuthentication;
			setup = await prepareSender(this, authentication);
			secrets = setup.secrets;
		} catch (error) {
			// A credential that cannot work fails every item the same way.
			if (!continueOnFail) throw toNodeOperationError(node, error, 0, secrets);
			items.forEach((_, i) => fail(i, error));
			return [results];
		}
		if (setup.warning) this.logger.warn(`Send Email (Modern Auth): ${setup.warning}`);

		// Phase 1: build and validate every item before the first byte goes out, so bad
		// input never leaves a batch half-sent.
		const messages: Array<OutgoingMessage | undefined> = new Array(items.length);
		for (let i = 0; i < items.length; i++) {
			try {
				messages[i] = await buildMessage(this, i, setup);
			} catch (error) {
				if (!continueOnFail) throw toNodeOperationError(node, error, i, secrets);
				fail(i, error);
			}
		}

		const toSend = messages.flatMap((message, i) => (message ? [i] : []));
		if (toSend.length === 0) return [results];

		// Phase 2: one pooled connection set for the whole execution.
		const maxConnections = Number(this.getNodeParameter('options.maxConnections', 0, 3)) || 3;
		let sender: MailSender;
		try {
			sender = setup.create({ maxConnections });
		} catch (error) {
			if (!continueOnFail) throw toNodeOperationError(node, error, toSend[0], secrets);
			toSend.forEach((i) => fail(i, error));
			return [results];
		}
		let firstFailure: { index: number; error: unknown } | undefined;
		try {
			await forEachWithLimit(
				toSend,
				// Keep a few messages queued per connection so a connection never idles while
				// the next message's attachments are being opened.
				maxConnections * QUEUE_PER_CONNECTION,
				async (i) => {
					try {
						const sent = await sender.send(messages[i]!);
						results[i] = { json: { ...sent }, pairedItem: { item: i } };
					} catch (error) {
						if (!continueOnFail) {
							firstFailure ??= { index: i, error };
							return;
						}
						fail(i, error);
					}
				},
				() => firstFailure !== undefined,
			);
		} finally {
			await sender.close();
		}
		if (firstFailure) throw toNodeOperationError(node, firstFailure.error, firstFailure.index, secrets);
		return [results];
	}
}
