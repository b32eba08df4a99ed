import {
	NodeConnectionTypes,
	NodeOperationError,
	type IDataObject,
	type INodeExecutionData,
	type INodeType,
	type INodeTypeDescription,
	type IPollFunctions,
} from 'n8n-workflow';

import type { ImapReader } from '../../transports/imap/imap-reader';
import { BinaryDataSink, outputOptions, toItem, type ReadRequest } from '../ModernAuthReadMailbox/actions/read-request';
import { readMailboxProperties } from '../ModernAuthReadMailbox/description';
import { APP_ONLY_CREDENTIAL, DELEGATED_CREDENTIAL } from '../shared/microsoft-connection';
import { describeItemError } from '../shared/node-errors';
import { IMAP_CREDENTIAL, prepareReader, type ReadAuthentication } from '../shared/open-reader';

/** Messages per execution: a larger backlog is emitted as several executions of this size. */
export const BATCH_SIZE = 500;
/** Most messages one poll emits (in batches); the rest follow in the next polls. */
export const MAX_PER_POLL = 20 * BATCH_SIZE;

/** What the trigger remembers per folder, in the workflow's static data. */
interface FolderState {
	uidValidity: number;
	lastUid: number;
}

const shared = (name: string) => readMailboxProperties.find((p) => p.name === name)!;

export class ModernAuthReadMailboxTrigger implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Read Mailbox (Modern Auth) Trigger',
		name: 'modernAuthReadMailboxTrigger',
		icon: { light: 'file:../../icons/mail.svg', dark: 'file:../../icons/mail.dark.svg' },
		group: ['trigger'],
		version: 1,
		subtitle: '={{$parameter["folder"]}}',
		description: 'Starts the workflow once for every new message in a folder (IMAP, Microsoft 365 OAuth)',
		defaults: { name: 'Read Mailbox (Modern Auth) Trigger' },
		polling: true,
		inputs: [],
		outputs: [NodeConnectionTypes.Main],
		credentials: [
			{ name: IMAP_CREDENTIAL, required: true, displayOptions: { show: { authentication: ['imap'] } } },
			{ name: APP_ONLY_CREDENTIAL, required: true, displayOptions: { show: { authentication: ['microsoftAppOnly'] } } },
			{ name: DELEGATED_CREDENTIAL, required: true, displayOptions: { show: { authentication: ['microsoftDelegated'] } } },
		],
		properties: [
			shared('authentication'),
			{ ...shared('folder'), type: 'string', typeOptions: undefined, description: 'Folder to watch, e.g. INBOX' },
			{
				displayName: 'Include Existing Unread Messages',
				name: 'includeExistingUnread',
				type: 'boolean',
				default: false,
				description:
					'Whether the first poll after activation also emits messages that are already unread. Off: only mail that arrives after activation.',
			},
			shared('options'),
		],
	};

	async poll(this: IPollFunctions): Promise<INodeExecutionData[][] | null> {
		const authentication = this.getNodeParameter('authentication') as ReadAuthentication;
		const folder = String(this.getNodeParameter('folder', 'INBOX')).trim() || 'INBOX';
		const options = this.getNodeParameter('options', {}) as IDataObject;
		const request: ReadRequest = {
			authentication,
			mailbox: String(options.mailbox ?? ''),
			folder,
			limit: MAX_PER_POLL,
			newestFirst: false,
			criteria: {},
			postAction: { type: 'none' },
			...outputOptions(options),
		};
		const manual = this.getMode() === 'manual';
		const state = this.getWorkflowStaticData('node') as { folders?: Record<string, FolderState> };
		state.folders ??= {};

		let setup;
		try {
			setup = await prepareReader(this as never, authentication, request.mailbox);
			// No connection is kept between polls: open, read, close.
			await setup.reader.connect();
			const { uidValidity, uidNext } = await setup.reader.openFolder(folder);
			const saved = state.folders[folder];

			if (manual) {
				// "Fetch test event": show the newest message, leave the trigger's state alone.
				const uids = (await setup.reader.search({})).slice(-1);
				const items = await emit(this, setup.reader, new BinaryDataSink(this, request), folder, uidValidity, uids, request);
				return items.length ? [items] : null;
			}

			let uids: number[];
			if (!saved || saved.uidValidity !== uidValidity) {
				// First activation, or the server renumbered the folder (UIDVALIDITY changed): start
				// from now instead of replaying the whole folder as new mail.
				const firstActivation = !saved;
				state.folders[folder] = { uidValidity, lastUid: Math.max(0, uidNext - 1) };
				if (!(firstActivation && this.getNodeParameter('includeExistingUnread', false))) return null;
				uids = await setup.reader.search({ unreadOnly: true });
				if (uids.length) state.folders[folder].lastUid = Math.max(state.folders[folder].lastUid, uids[uids.length - 1]);
			} else {
				uids = await setup.reader.search({ uidAfter: saved.lastUid });
			}
			uids = uids.slice(0, MAX_PER_POLL);
			const sink = new BinaryDataSink(this, request);
			// Only one batch is in memory at a time: each but the last starts its own execution
			// (n8n saves the advanced static data with it), the last is this poll's result.
			let last: INodeExecutionData[] = [];
			for (let start = 0; start < uids.length; start += BATCH_SIZE) {
				const items = await emit(this, setup.reader, sink, folder, uidValidity, uids.slice(start, start + BATCH_SIZE), request);
				// Advance only past what was emitted; a message that failed to fetch is retried next poll.
				const current = state.folders[folder];
				current.lastUid = Math.max(current.lastUid, ...items.map((item) => Number((item.json as IDataObject).uid)));
				if (start + BATCH_SIZE < uids.length) {
					if (items.length) this.__emit([items]);
				} else last = items;
			}
			return last.length ? [last] : null;
		} catch (error) {
			const { message, hint } = describeItemError(error, setup?.secrets ?? []);
			throw new NodeOperationError(this.getNode(), message, { description: hint });
		} finally {
			await setup?.reader.close();
		}
	}
}

/**
 * Fetches the UIDs in order. If the connection drops midway, reconnects once and resumes
 * after the last message already read, so nothing is skipped or read twice.
 */
async function emit(
	ctx: IPollFunctions,
	reader: ImapReader,
	sink: BinaryDataSink,
	folder: string,
	uidValidity: number,
	uids: number[],
	request: ReadRequest,
): Promise<INodeExecutionData[]> {
	const items: INodeExecutionData[] = [];
	let remaining = uids;
	for (let attempt = 0; attempt < 2 && remaining.length; attempt++) {
		try {
			for await (const message of reader.fetch(folder, uidValidity, remaining, { ...request.fetch, sink })) {
				items.push(toItem(message, sink, 0, request));
			}
			remaining = [];
		} catch (error) {
			if (attempt === 1) throw error;
			const done = new Set(items.map((item) => Number((item.json as IDataObject).uid)));
			remaining = remaining.filter((uid) => !done.has(uid));
			await reader.close();
			await reader.connect();
			const reopened = await reader.openFolder(folder);
			if (reopened.uidValidity !== uidValidity) break;
		}
	}
	for (const item of items) delete item.pairedItem;
	// Oldest first, as the mail arrived (the reader brings large messages last).
	return items.sort((a, b) => Number((a.json as IDataObject).uid) - Number((b.json as IDataObject).uid));
}
