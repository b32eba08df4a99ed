import {
	NodeConnectionTypes,
	type IExecuteFunctions,
	type ILoadOptionsFunctions,
	type INodeExecutionData,
	type INodePropertyOptions,
	type INodeType,
	type INodeTypeDescription,
} from 'n8n-workflow';

import type { Connection } from '../../connections/connection';
import { credentialsFor } from '../../connections/registry';
import type { MailReader } from '../../transports/contracts';
import { describeItemError, toLoadOptionsError, toNodeOperationError } from '../shared/node-errors';
import { credentialTestMethods, openConnection } from '../shared/open-connection';
import { ReaderPool, readerOf } from '../shared/reader-pool';
import { recordPostAction } from './actions/post-action-result';
import { BinaryDataSink, isErrorItem, readRequest, toItem } from './actions/read-request';
import { readMailboxProperties } from './description';

export class ModernAuthReadMailbox implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Read Mailbox (Modern Auth)',
		name: 'modernAuthReadMailbox',
		icon: { light: 'file:../../icons/mail.svg', dark: 'file:../../icons/mail.dark.svg' },
		group: ['input'],
		version: 1,
		subtitle: '={{$parameter["folder"]}}',
		description: 'Read mail over IMAP, Microsoft Graph or Exchange Web Services, with passwords or Microsoft 365 modern authentication',
		defaults: { name: 'Read Mailbox (Modern Auth)' },
		inputs: [NodeConnectionTypes.Main],
		outputs: [NodeConnectionTypes.Main],
		usableAsTool: true,
		credentials: credentialsFor('read'),
		properties: readMailboxProperties,
	};

	methods = {
		loadOptions: {
			async getFolders(this: ILoadOptionsFunctions): Promise<INodePropertyOptions[]> {
				let connection: Connection | undefined;
				let reader: MailReader | undefined;
				try {
					connection = await openConnection(this, String(this.getNodeParameter('authentication', 'imap')));
					reader = readerOf(connection, await connection.mailboxFor(''));
					await reader.connect();
					return (await reader.listFolders()).map((f) => ({ name: f.path, value: f.path }));
				} catch (error) {
					throw toLoadOptionsError(this.getNode(), error, connection?.secrets ?? []);
				} finally {
					await reader?.close();
				}
			},
		},
		credentialTest: credentialTestMethods('read'),
	};

	async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
		const items = this.getInputData();
		const node = this.getNode();
		const continueOnFail = this.continueOnFail();
		const out: INodeExecutionData[] = [];
		let pool: ReaderPool | undefined;
		const secrets = () => pool?.secrets ?? [];
		try {
			for (let i = 0; i < items.length; i++) {
				try {
					const request = readRequest(this, i);
					if (!pool) {
						pool = new ReaderPool(await openConnection(this, request.authentication));
						if (pool.warning) this.logger.warn(`Read Mailbox (Modern Auth): ${pool.warning}`);
					}
					const reader = await pool.reader(request.mailbox);
					// A malformed raw search fails this item in search(), before anything is read.
					const ids = await reader.search(request.folder, request.filter, { newestFirst: request.newestFirst, limit: request.limit });
					const sink = new BinaryDataSink(this, request);
					const byId = new Map<string, INodeExecutionData>();
					for await (const message of reader.fetch(request.folder, ids, { ...request.fetch, sink })) {
						byId.set(message.id, toItem(message, sink, i, request));
					}
					// In the order searched for (the reader brings large messages last).
					const emitted = ids.filter((id) => byId.has(id));
					for (const id of emitted) out.push(byId.get(id)!);
					// Only what became output is touched on the server, and an unreadable message stays as
					// it is; a refusal fails this item, and without continueOnFail what can be undone is
					// undone first (the output is discarded).
					const read = emitted.filter((id) => !isErrorItem(byId.get(id)!));
					const outcomes = await reader.apply(request.folder, read, request.postAction, { atomic: !continueOnFail });
					const failure = recordPostAction(byId, outcomes, request.postAction, request.folder);
					if (failure && !continueOnFail) throw failure.error;
					for (const { item, error } of failure?.perMessage ?? []) item.json.error = describeItemError(error, secrets());
				} catch (error) {
					if (!continueOnFail) throw toNodeOperationError(node, error, i, secrets());
					out.push({ json: { error: describeItemError(error, secrets()) }, pairedItem: { item: i } });
				}
			}
		} finally {
			await pool?.closeAll();
		}
		return [out];
	}
}
