/**
 * Runs our nodes through n8n's real execution engine (n8n-core WorkflowExecute, the same
 * code path as an n8n worker) instead of hand-mocked helpers: parameters are resolved by
 * n8n-workflow, binary data goes through n8n-core's BinaryDataService (filesystem mode),
 * continueOnFail / onError, pairedItem and errors behave as in n8n.
 * Only the credential store is replaced: it hands out decrypted test credentials and records
 * what n8n asks it to persist.
 */
import { Logger } from '@n8n/backend-common';
import { Container } from '@n8n/di';
import { BinaryDataService, ExecutionLifecycleHooks, LoadOptionsContext, PollContext, WorkflowExecute } from 'n8n-core';
import {
	createDeferredPromise,
	ICredentialsHelper,
	LoggerProxy,
	Workflow,
	type ICredentialDataDecryptedObject,
	type ICredentials,
	type IDataObject,
	type IExecuteFunctions,
	type IHttpRequestOptions,
	type INode,
	type INodeCredentialsDetails,
	type INodeExecutionData,
	type INodeProperties,
	type INodeType,
	type INodeTypes,
	type IRun,
	type IRunExecutionData,
	type IWorkflowExecuteAdditionalData,
	type IVersionedNodeType,
	type WorkflowExecuteMode,
} from 'n8n-workflow';
import { randomUUID } from 'node:crypto';

import { ModernAuthMicrosoftAppOnlyApi } from '../../credentials/ModernAuthMicrosoftAppOnlyApi.credentials';
import { ModernAuthMicrosoftDelegatedOAuth2Api } from '../../credentials/ModernAuthMicrosoftDelegatedOAuth2Api.credentials';
import { ModernAuthSmtpApi } from '../../credentials/ModernAuthSmtpApi.credentials';
import { ModernAuthSendEmail } from '../../nodes/ModernAuthSendEmail/ModernAuthSendEmail.node';
import { ModernAuthReadMailbox } from '../../nodes/ModernAuthReadMailbox/ModernAuthReadMailbox.node';
import { ModernAuthReadMailboxTrigger } from '../../nodes/ModernAuthReadMailboxTrigger/ModernAuthReadMailboxTrigger.node';
import { ModernAuthTestConnection } from '../../nodes/ModernAuthTestConnection/ModernAuthTestConnection.node';
import { ModernAuthImapApi } from '../../credentials/ModernAuthImapApi.credentials';

export const PACKAGE = 'n8n-nodes-modern-auth-mail';

export interface InputItem {
	json: IDataObject;
	/**
	 * exactFileName: keep fileName as given (n8n's prepareBinaryData drops a POSIX directory
	 * part; a Code node that sets binary.fileName can still hand over "../../etc/passwd").
	 */
	binary?: Record<string, { data: Buffer; fileName?: string; mimeType?: string; exactFileName?: boolean }>;
}

/** Emits the items a test registered, storing binaries through n8n's helpers. */
class ItemSourceNode implements INodeType {
	static readonly pending = new Map<string, InputItem[]>();

	description = {
		displayName: 'Item Source',
		name: 'itemSource',
		group: ['input'],
		version: 1,
		description: 'test input',
		defaults: { name: 'Item Source' },
		inputs: ['main'],
		outputs: ['main'],
		properties: [{ displayName: 'Run', name: 'run', type: 'string', default: '' }] as INodeProperties[],
	} as INodeType['description'];

	async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
		const run = this.getNodeParameter('run', 0) as string;
		const items = ItemSourceNode.pending.get(run) ?? [];
		const out: INodeExecutionData[] = [];
		for (const item of items) {
			const binary: INodeExecutionData['binary'] = {};
			for (const [key, value] of Object.entries(item.binary ?? {})) {
				binary[key] = await this.helpers.prepareBinaryData(value.data, value.fileName, value.mimeType);
				if (value.exactFileName) binary[key].fileName = value.fileName;
			}
			out.push({ json: item.json, ...(item.binary ? { binary } : {}) });
		}
		return [out];
	}
}

const NODE_TYPES: Record<string, INodeType> = {
	'test.itemSource': new ItemSourceNode(),
	[`${PACKAGE}.modernAuthSendEmail`]: new ModernAuthSendEmail(),
	[`${PACKAGE}.modernAuthReadMailbox`]: new ModernAuthReadMailbox(),
	[`${PACKAGE}.modernAuthReadMailboxTrigger`]: new ModernAuthReadMailboxTrigger(),
	[`${PACKAGE}.modernAuthTestConnection`]: new ModernAuthTestConnection(),
};

const CREDENTIAL_TYPES: Record<string, { properties: INodeProperties[] }> = {
	modernAuthSmtpApi: new ModernAuthSmtpApi(),
	modernAuthImapApi: new ModernAuthImapApi(),
	modernAuthMicrosoftAppOnlyApi: new ModernAuthMicrosoftAppOnlyApi(),
	modernAuthMicrosoftDelegatedOAuth2Api: new ModernAuthMicrosoftDelegatedOAuth2Api(),
};

class TestNodeTypes implements INodeTypes {
	getByName(nodeType: string): INodeType | IVersionedNodeType {
		return this.getByNameAndVersion(nodeType);
	}

	getByNameAndVersion(nodeType: string): INodeType {
		const type = NODE_TYPES[nodeType];
		if (!type) throw new Error(`Unknown node type ${nodeType}`);
		return type;
	}

	getKnownTypes(): IDataObject {
		return {};
	}
}

/** Holds decrypted credentials by id, as n8n's store would after decryption. */
export class TestCredentialsHelper extends ICredentialsHelper {
	readonly store = new Map<string, ICredentialDataDecryptedObject>();
	readonly updates: Array<{ id: string; type: string; data: ICredentialDataDecryptedObject }> = [];

	getParentTypes(type: string): string[] {
		return type.endsWith('OAuth2Api') ? ['oAuth2Api'] : [];
	}

	async authenticate(_c: ICredentialDataDecryptedObject, _t: string, requestOptions: IHttpRequestOptions) {
		return requestOptions;
	}

	async preAuthentication() {
		return undefined;
	}

	async getCredentials(): Promise<ICredentials> {
		throw new Error('not used by these nodes');
	}

	async getDecrypted(
		_additionalData: IWorkflowExecuteAdditionalData,
		nodeCredentials: INodeCredentialsDetails,
	): Promise<ICredentialDataDecryptedObject> {
		const data = this.store.get(nodeCredentials.id ?? '');
		if (!data) throw new Error(`No test credential with id ${nodeCredentials.id}`);
		return structuredClone(data);
	}

	async updateCredentials(
		nodeCredentials: INodeCredentialsDetails,
		type: string,
		data: ICredentialDataDecryptedObject,
	) {
		this.updates.push({ id: nodeCredentials.id ?? '', type, data });
		this.store.set(nodeCredentials.id ?? '', data);
	}

	async updateCredentialsOauthTokenData(
		nodeCredentials: INodeCredentialsDetails,
		type: string,
		data: ICredentialDataDecryptedObject,
	) {
		await this.updateCredentials(nodeCredentials, type, data);
	}

	getCredentialsProperties(type: string): INodeProperties[] {
		return CREDENTIAL_TYPES[type]?.properties ?? [];
	}
}

let binaryReady: Promise<void> | undefined;
function ensureBinaryDataService() {
	binaryReady ??= Container.get(BinaryDataService).init();
	return binaryReady;
}

export interface RunNodeOptions {
	/** short node type, e.g. 'modernAuthSendEmail' */
	type: string;
	parameters: IDataObject;
	items: InputItem[];
	credentials: Record<string, { id: string; name: string; data: ICredentialDataDecryptedObject }>;
	onError?: INode['onError'];
	/** n8n's Retry On Fail: WorkflowExecute re-runs the node with every item, same execution. */
	retryOnFail?: { maxTries: number; waitBetweenTries: number };
	credentialsHelper?: TestCredentialsHelper;
	mode?: WorkflowExecuteMode;
}

export interface RunNodeResult {
	output: INodeExecutionData[];
	error?: { message: string; description?: string | null; itemIndex?: number; name?: string };
	run: IRun;
}

/** Puts the test credentials into the store and returns the node's credential references. */
function registerCredentials(helper: TestCredentialsHelper, credentials: RunNodeOptions['credentials']): INode['credentials'] {
	const nodeCredentials: INode['credentials'] = {};
	for (const [type, credential] of Object.entries(credentials)) {
		helper.store.set(credential.id, credential.data);
		nodeCredentials[type] = { id: credential.id, name: credential.name };
	}
	return nodeCredentials;
}

/** What an n8n process hands every node context; sub-workflows and task runners are not used here. */
function testAdditionalData(helper: TestCredentialsHelper, extra: IDataObject = {}): IWorkflowExecuteAdditionalData {
	return {
		credentialsHelper: helper,
		currentNodeExecutionIndex: 0,
		restApiUrl: 'http://127.0.0.1/rest',
		instanceBaseUrl: 'http://127.0.0.1/',
		formWaitingBaseUrl: 'http://127.0.0.1/form-waiting',
		webhookBaseUrl: 'http://127.0.0.1/webhook',
		webhookWaitingBaseUrl: 'http://127.0.0.1/webhook-waiting',
		webhookTestBaseUrl: 'http://127.0.0.1/webhook-test',
		variables: {},
		logAiEvent: () => {},
		executeWorkflow: async () => {
			throw new Error('not supported in tests');
		},
		getRunExecutionData: async () => undefined,
		startRunnerTask: async () => {
			throw new Error('not supported in tests');
		},
		...extra,
	} as unknown as IWorkflowExecuteAdditionalData;
}

export async function runNode(options: RunNodeOptions): Promise<RunNodeResult> {
	await ensureBinaryDataService();
	const runId = randomUUID();
	ItemSourceNode.pending.set(runId, options.items);
	const helper = options.credentialsHelper ?? new TestCredentialsHelper();
	const nodeCredentials = registerCredentials(helper, options.credentials);

	const nodes: INode[] = [
		{
			id: 'source',
			name: 'Source',
			type: 'test.itemSource',
			typeVersion: 1,
			position: [0, 0],
			parameters: { run: runId },
		},
		{
			id: 'target',
			name: 'Target',
			type: `${PACKAGE}.${options.type}`,
			typeVersion: 1,
			position: [200, 0],
			parameters: options.parameters as INode['parameters'],
			credentials: nodeCredentials,
			...(options.onError ? { onError: options.onError } : {}),
			...(options.retryOnFail ? { retryOnFail: true, ...options.retryOnFail } : {}),
		},
	];
	const workflow = new Workflow({
		id: `wf-${runId.slice(0, 8)}`,
		nodes,
		connections: { Source: { main: [[{ node: 'Target', type: 'main', index: 0 }]] } },
		nodeTypes: new TestNodeTypes(),
		active: false,
		settings: {},
	});

	const mode = options.mode ?? 'manual';
	const executionId = String(Date.now());
	const hooks = new ExecutionLifecycleHooks(mode, executionId, {
		id: workflow.id,
		name: 'test',
		active: false,
		nodes,
		connections: workflow.connectionsBySourceNode,
		createdAt: new Date(),
		updatedAt: new Date(),
		isArchived: false,
		activeVersionId: null,
	} as never);
	const finished = createDeferredPromise<IRun>();
	hooks.addHandler('workflowExecuteAfter', (fullRunData) => finished.resolve(fullRunData));

	const additionalData = testAdditionalData(helper, { hooks, executionId });

	const runExecutionData = {
		version: 1,
		resultData: { runData: {} },
		executionData: {
			metadata: {},
			contextData: {},
			waitingExecution: {},
			waitingExecutionSource: null,
			nodeExecutionStack: [{ node: nodes[0], data: { main: [[{ json: {} }]] }, source: null }],
		},
	} as unknown as IRunExecutionData;
	try {
		await new WorkflowExecute(additionalData, mode, runExecutionData).processRunExecutionData(workflow);
		const run = await finished.promise;
		const target = run.data.resultData.runData.Target?.[0];
		const error = (target?.error ?? run.data.resultData.error) as RunNodeResult['error'] | undefined;
		return { output: target?.data?.main?.[0] ?? [], error, run };
	} finally {
		ItemSourceNode.pending.delete(runId);
	}
}

export interface PollerOptions {
	parameters: IDataObject;
	credentials: RunNodeOptions['credentials'];
	/** Static data as n8n would have persisted it (JSON), e.g. from a previous poller. */
	staticData?: IDataObject;
	mode?: WorkflowExecuteMode;
	/** The same workflow after a restart keeps its id. */
	workflowId?: string;
	/** Gives each poll context n8n 2.x's getPollBudgetMs() (n8n-core 1.x here has none). */
	pollBudgetMs?: number;
}

/**
 * A polling trigger as n8n's poll manager drives it: one PollContext per poll over the same
 * workflow, whose static data n8n persists between polls (here: kept, and exportable as JSON
 * to simulate a restart of n8n).
 */
export async function createPoller(options: PollerOptions) {
	await ensureBinaryDataService();
	const helper = new TestCredentialsHelper();
	const nodeCredentials = registerCredentials(helper, options.credentials);
	const node: INode = {
		id: 'trigger',
		name: 'Trigger',
		type: `${PACKAGE}.modernAuthReadMailboxTrigger`,
		typeVersion: 1,
		position: [0, 0],
		parameters: options.parameters as INode['parameters'],
		credentials: nodeCredentials,
	};
	const workflow = new Workflow({
		id: options.workflowId ?? `wf-poll-${randomUUID().slice(0, 8)}`,
		nodes: [node],
		connections: {},
		nodeTypes: new TestNodeTypes(),
		active: true,
		settings: {},
		staticData: structuredClone(options.staticData ?? {}),
	});
	const additionalData = testAdditionalData(helper);
	const trigger = NODE_TYPES[node.type];
	// Every execution the trigger started, in order: batches handed to __emit during a poll
	// (n8n starts an execution for each), then what the poll returned.
	const executions: INodeExecutionData[][] = [];
	return {
		workflowId: workflow.id,
		/** One poll; resolves to every item it emitted, over all its executions. */
		async poll(): Promise<INodeExecutionData[]> {
			const started = executions.length;
			const emit = (data: INodeExecutionData[][]) => void executions.push(data[0] ?? []);
			const context = new PollContext(workflow, node, additionalData, options.mode ?? 'trigger', 'activate', emit);
			const budget = options.pollBudgetMs;
			if (budget !== undefined) Object.assign(context, { getPollBudgetMs: () => budget });
			const result = await trigger.poll!.call(context);
			if (result) executions.push(result[0] ?? []);
			return executions.slice(started).flat();
		},
		/** The item count of each execution started so far (also those of a poll that failed later). */
		executionSizes(): number[] {
			return executions.map((items) => items.length);
		},
		/** Every item emitted so far, including batches of a poll that failed afterwards. */
		emitted(): INodeExecutionData[] {
			return executions.flat();
		},
		/** Static data as n8n would store it in its database. */
		staticData(): IDataObject {
			return JSON.parse(JSON.stringify(workflow.staticData));
		},
	};
}

export interface CapturedLogEntry {
	level: 'error' | 'warn' | 'info' | 'debug';
	message: string;
	metadata?: unknown;
}

/** Everything n8n's logger received (node `this.logger` and n8n's own LoggerProxy lines). */
export const capturedLogs: CapturedLogEntry[] = [];

/** Serialises errors in log metadata the way a log transport would (message and stack). */
function printable(value: unknown): unknown {
	if (value instanceof Error) return { ...value, name: value.name, message: value.message, stack: value.stack };
	if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, printable(v)]));
	return value;
}

/**
 * Installs a logger that records every entry, in place of n8n's (same interface), so tests
 * can scan what would have reached n8n's log output.
 */
export function captureLogs(): CapturedLogEntry[] {
	const entry = (level: CapturedLogEntry['level']) => (message: string, metadata?: unknown) =>
		void capturedLogs.push({ level, message: String(message), metadata: printable(metadata) });
	const logger = { error: entry('error'), warn: entry('warn'), info: entry('info'), debug: entry('debug'), scoped: () => logger };
	Container.set(Logger, logger as unknown as Logger);
	LoggerProxy.init(logger);
	return capturedLogs;
}

export interface LoadOptionsRunOptions {
	/** short node type, e.g. 'modernAuthReadMailbox' */
	type: string;
	/** loadOptions method name, e.g. 'getFolders' */
	method: string;
	parameters: IDataObject;
	credentials: RunNodeOptions['credentials'];
}

/** Calls a node's loadOptions method through n8n-core's LoadOptionsContext, as the editor does. */
export async function runLoadOptions(options: LoadOptionsRunOptions) {
	const helper = new TestCredentialsHelper();
	const node: INode = {
		id: 'picker',
		name: 'Picker',
		type: `${PACKAGE}.${options.type}`,
		typeVersion: 1,
		position: [0, 0],
		parameters: options.parameters as INode['parameters'],
		credentials: registerCredentials(helper, options.credentials),
	};
	const workflow = new Workflow({ id: `wf-lo-${randomUUID().slice(0, 8)}`, nodes: [node], connections: {}, nodeTypes: new TestNodeTypes(), active: false, settings: {} });
	const context = new LoadOptionsContext(workflow, node, testAdditionalData(helper), options.method);
	const type = NODE_TYPES[node.type] as INodeType & { methods?: { loadOptions?: Record<string, (this: unknown) => Promise<unknown>> } };
	const method = type.methods?.loadOptions?.[options.method];
	if (!method) throw new Error(`${options.type} has no loadOptions method ${options.method}`);
	return await method.call(context);
}
