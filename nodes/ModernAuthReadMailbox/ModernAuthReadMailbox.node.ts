import {
	NodeConnectionTypes,
	type ICredentialsDecrypted,
	type ICredentialTestFunctions,
	type IExecuteFunctions,
	type ILoadOptionsFunctions,
	type INodeCredentialTestResult,
	type INodeExecutionData,
	type INodePropertyOptions,
	type INodeType,
	type INodeTypeDescription,
} from 'n8n-workflow';

import { APP_ONLY_CREDENTIAL, DELEGATED_CREDENTIAL } from '../shared/microsoft-connection';
import { describeItemError, toLoadOptionsError, toNodeOperationError } from '../shared/node-errors';
import { IMAP_CREDENTIAL, prepareReader, ReaderPool, type ReadAuthentication, type ReaderSetup } from '../shared/open-reader';
import { parseRawSearch } from '../../transports/imap/search';
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
		description: 'Read mail over IMAP, with passwords or Microsoft 365 modern authentication',
		defaults: { name: 'Read Mailbox (Modern Auth)' },
		inputs: [NodeConnectionTypes.Main],
		outputs: [NodeConnectionTypes.Main],
		usableAsTool: true,
		credentials: [
			{
				name: IMAP_CREDENTIAL,
				required: true,
				testedBy: 'modernAuthImapConnectionTest',
				displayOptions: { show: { authentication: ['imap'] } },
			},
			{ name: APP_ONLY_CREDENTIAL, required: true, displayOptions: { show: { authentication: ['microsoftAppOnly'] } } },
			{ name: DELEGATED_CREDENTIAL, required: true, displayOptions: { show: { authentication: ['microsoftDelegated'] } } },
		],
		properties: readMailboxProperties,
	};

	methods = {
		loadOptions: {
			async getFolders(this: ILoadOptionsFunctions): Promise<INodePropertyOptions[]> {
				const authentication = this.getNodeParameter('authentication', 'imap') as ReadAuthentication;
				let setup: ReaderSetup | undefined;
				try {
					setup = await prepareReader(this, authentication);
					await setup.reader.connect();
					return (await setup.reader.listFolders()).map((f) => ({ name: f.path, value: f.path }));
				} catch (error) {
					throw toLoadOptionsError(this.getNode(), error, setup?.secrets ?? []);
				} finally {
					await setup?.reader.close();
				}
			},
		},
		credentialTest: {
			async modernAuthImapConnectionTest(
				this: ICredentialTestFunctions,
				credential: ICredentialsDecrypted,
			): Promise<INodeCredentialTestResult> {
				const data = credential.data ?? {};
				let setup: ReaderSetup | undefined;
				try {
					setup = await prepareReader(
						{ getCredentials: async () => data } as unknown as IExecuteFunctions,
						'imap',
					);
					await setup.reader.connect();
					const folders = await setup.reader.listFolders();
					return { status: 'OK', message: `Signed in to ${String(data.host)}:${String(data.port)}; ${folders.length} folders.` };
				} catch (error) {
					const { message, hint } = describeItemError(error, setup?.secrets ?? [String(data.password ?? '')]);
					return { status: 'Error', message: hint ? `${message}. Fix: ${hint}` : message };
				} finally {
					await setup?.reader.close();
				}
			},
		},
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
					// A malformed raw search fails this item before anything is read.
					if (request.criteria.rawImapSearch) await parseRawSearch(request.criteria.rawImapSearch);
					if (!pool) {
						pool = await ReaderPool.open(this, request.authentication);
						if (pool.warning) this.logger.warn(`Read Mailbox (Modern Auth): ${pool.warning}`);
					}
					const reader = await pool.reader(request.mailbox);
					const { uidValidity } = await reader.openFolder(request.folder);
					const uids = await reader.select(request.criteria, { newestFirst: request.newestFirst, limit: request.limit });
					const sink = new BinaryDataSink(this, request);
					const byUid = new Map<number, INodeExecutionData>();
					for await (const message of reader.fetch(request.folder, uidValidity, uids, { ...request.fetch, sink })) {
						byUid.set(message.uid!, toItem(message, sink, i, request));
					}
					const emitted = uids.filter((uid) => byUid.has(uid));
					for (const uid of emitted) out.push(byUid.get(uid)!);
					// Only what became output is touched on the server, and an unreadable message stays as
					// it is; a refusal fails this item, and without continueOnFail what can be undone is
					// undone first (the output is discarded).
					const read = emitted.filter((uid) => !isErrorItem(byUid.get(uid)!));
					const outcomes = await reader.apply(request.folder, read, request.postAction, { atomic: !continueOnFail });
					const failure = recordPostAction(byUid, outcomes, request.postAction, request.folder);
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
