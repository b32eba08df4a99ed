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
import { splitList } from '../../model/validate';
import { forEachWithLimit } from '../shared/concurrency';
import { describeItemError, toNodeOperationError } from '../shared/node-errors';
import {
	createSmtpSender,
	readSmtpCredential,
	SMTP_CREDENTIAL,
	type SmtpCredentialData,
} from '../shared/smtp-connection';
import { testSmtpCredential } from '../shared/smtp-credential-test';
import { buildMessage } from './actions/build-message';
import { sendEmailProperties } from './description';

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
		},
	};

	async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
		const items = this.getInputData();
		const node = this.getNode();
		const credential: SmtpCredentialData = readSmtpCredential(
			await this.getCredentials(SMTP_CREDENTIAL),
		);
		const secrets = [credential.password];
		const continueOnFail = this.continueOnFail();
		const results: INodeExecutionData[] = new Array(items.length);
		const fail = (itemIndex: number, error: unknown) => {
			results[itemIndex] = {
				json: { error: describeItemError(error, secrets) },
				pairedItem: { item: itemIndex },
			};
		};

		if (credential.ignoreCertificateErrors) {
			this.logger.warn(
				`Send Email (Modern Auth): TLS certificate checks are OFF for ${credential.host} (credential option "Ignore Certificate Errors")`,
			);
		}

		// Phase 1: build and validate every item before the first byte goes out, so bad
		// input never leaves a batch half-sent.
		const messages: Array<OutgoingMessage | undefined> = new Array(items.length);
		const defaults = { fromAddress: credential.fromAddress, allowedFrom: splitList(credential.allowedFrom) };
		for (let i = 0; i < items.length; i++) {
			try {
				messages[i] = await buildMessage(this, i, defaults);
			} catch (error) {
				if (!continueOnFail) throw toNodeOperationError(node, error, i, secrets);
				fail(i, error);
			}
		}

		const toSend = messages.flatMap((message, i) => (message ? [i] : []));
		if (toSend.length > 0) {
			// Phase 2: one pooled connection set for the whole execution.
			const maxConnections = Number(this.getNodeParameter('options.maxConnections', 0, 3)) || 3;
			let firstFailure: { index: number; error: unknown } | undefined;
			let sender;
			try {
				sender = createSmtpSender(credential, { maxConnections });
			} catch (error) {
				if (!continueOnFail) throw toNodeOperationError(node, error, toSend[0], secrets);
				for (const i of toSend) fail(i, error);
			}
			if (sender) {
				const activeSender = sender;
				try {
					await forEachWithLimit(
						toSend,
						maxConnections,
						async (i) => {
							try {
								const sent = await activeSender.send(messages[i]!);
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
					await activeSender.close();
				}
				if (firstFailure) {
					throw toNodeOperationError(node, firstFailure.error, firstFailure.index, secrets);
				}
			}
		}

		return [results];
	}
}
