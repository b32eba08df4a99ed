import {
	NodeConnectionTypes,
	NodeOperationError,
	type IDataObject,
	type IExecuteFunctions,
	type INodeExecutionData,
	type INodeType,
	type INodeTypeDescription,
} from 'n8n-workflow';

import type { Connection } from '../../connections/connection';
import { credentialsFor, kindFor, protocolFor } from '../../connections/registry';
import { runChecks, summarize, type CheckResult, type DiagnoseOptions, type Protocol } from '../../diagnostics/checks';
import { ActionableError } from '../../model/actionable-error';
import { redactSecrets } from '../../model/redact';
import { describeItemError, toNodeOperationError } from '../shared/node-errors';
import { credentialTestMethods, openConnection } from '../shared/open-connection';
import { DEFAULT_ROUND_TRIP_TIMEOUT_S, DEFAULT_TIME_BUDGET_S, testConnectionProperties } from './description';

interface TestOptions {
	failOnFailure?: boolean;
	propagationRetryMinutes?: number;
	roundTripTimeoutSeconds?: number;
	roundTripTo?: string;
	timeBudgetSeconds?: number;
}

/** What one item asks for, read and checked before the credential is touched. */
interface TestRequest {
	authentication: string;
	diagnose: DiagnoseOptions;
	budgetMs: number;
	failOnFailure: boolean;
}

export class ModernAuthTestConnection implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Test Connection (Modern Auth)',
		name: 'modernAuthTestConnection',
		icon: { light: 'file:../../icons/test.svg', dark: 'file:../../icons/test.dark.svg' },
		group: ['input'],
		version: 1,
		subtitle: '={{$parameter["authentication"] + " / " + $parameter["protocol"]}}',
		description: 'Test a mail credential step by step (reach, TLS, token, permission, login, read) and get the failing step with its fix',
		defaults: { name: 'Test Connection (Modern Auth)' },
		inputs: [NodeConnectionTypes.Main],
		outputs: [NodeConnectionTypes.Main],
		usableAsTool: true,
		credentials: credentialsFor('test'),
		properties: testConnectionProperties,
	};

	methods = {
		credentialTest: credentialTestMethods('test'),
	};

	async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
		const items = this.getInputData();
		const node = this.getNode();
		const continueOnFail = this.continueOnFail();
		const out: INodeExecutionData[] = [];
		for (let i = 0; i < items.length; i++) {
			const started = Date.now();
			const authentication = String(this.getNodeParameter('authentication', i));
			let connection: Connection | undefined;
			let request: TestRequest | undefined;
			let results: CheckResult[];
			try {
				request = testRequest(this, i, authentication);
				connection = await openConnection(this, authentication);
				if (connection.warning) this.logger.warn(`Test Connection (Modern Auth): ${connection.warning}`);
				results = await runChecks(await connection.checks(request.diagnose), { budgetMs: request.budgetMs, secrets: connection.secrets });
			} catch (error) {
				const secrets = connection?.secrets ?? [];
				const { message, code, hint } = describeItemError(error, secrets);
				if (!continueOnFail) throw new NodeOperationError(node, `Item ${i}: ${message}`, { itemIndex: i, description: hint });
				const failedStep = request ? 'credential' : 'parameters';
				out.push(itemOf(i, secrets, setupFailure({ authentication, protocol: request?.diagnose.protocol ?? '', failedStep, detail: `Item ${i}: ${message}`, hint, code, durationMs: Date.now() - started })));
				continue;
			}
			const { protocol } = request.diagnose;
			const summary = summarize(results, Date.now() - started);
			if (summary.verdict === 'fail' && request.failOnFailure && !continueOnFail) {
				const failed = results.find((r) => r.status === 'fail')!;
				// As the other nodes' errors: redacted, system codes in words (n8n replaces a message that carries one).
				throw toNodeOperationError(node, new ActionableError(`${failed.step} (${failed.target}) failed: ${failed.detail}`, failed.code ?? 'CHECK_FAILED', failed.hint), i, connection.secrets);
			}
			for (const result of results) out.push(itemOf(i, connection.secrets, { ...result, authentication, protocol }));
			out.push(
				itemOf(i, connection.secrets, {
					step: 'summary',
					status: summary.verdict,
					...summary,
					stages: results.map(({ step, target, status }) => ({ step, target, status })),
					authentication,
					protocol,
				}),
			);
		}
		return [out];
	}
}

function testRequest(ctx: IExecuteFunctions, itemIndex: number, authentication: string): TestRequest {
	const kind = kindFor(authentication);
	const protocol: Protocol = protocolFor(kind, String(ctx.getNodeParameter('protocol', itemIndex, 'default')));
	const mailbox = kind.selectsMailbox ? String(ctx.getNodeParameter('mailbox', itemIndex, '')).trim() : '';
	const options = ctx.getNodeParameter('options', itemIndex, {}) as TestOptions;
	const to = String(options.roundTripTo ?? '').trim();
	const roundTrip = to ? { to, timeoutMs: seconds(options.roundTripTimeoutSeconds, DEFAULT_ROUND_TRIP_TIMEOUT_S) } : undefined;
	const retryMs = Math.max(0, Number(options.propagationRetryMinutes ?? 0)) * 60_000;
	const propagationRetry = retryMs > 0 ? { maxMs: retryMs } : undefined;
	return {
		authentication,
		diagnose: { protocol, mailbox, ...(roundTrip ? { roundTrip } : {}), ...(propagationRetry ? { propagationRetry } : {}) },
		// Retries and the round trip's wait are asked for on purpose: they come on top of the budget.
		budgetMs: seconds(options.timeBudgetSeconds, DEFAULT_TIME_BUDGET_S) + retryMs + (roundTrip?.timeoutMs ?? 0),
		failOnFailure: options.failOnFailure === true,
	};
}

const seconds = (value: number | undefined, fallback: number) => Math.round((Number(value) > 0 ? Number(value) : fallback) * 1000);

/** A failed summary for an item whose test could not start (parameters or credential fields wrong). */
function setupFailure(failure: { authentication: string; protocol: string; failedStep: string; detail: string; hint: string; code: string; durationMs: number }): IDataObject {
	return {
		step: 'summary',
		status: 'fail',
		verdict: 'fail',
		durationMs: failure.durationMs,
		firstFailingStep: failure.failedStep,
		firstFailingTarget: failure.authentication,
		counts: { pass: 0, warn: 0, fail: 0, skipped: 0 },
		detail: failure.detail,
		hint: failure.hint,
		code: failure.code,
		stages: [],
		authentication: failure.authentication,
		protocol: failure.protocol,
	};
}

/** One output item, every string scrubbed of the connection's secrets (facts too, which runChecks leaves as they are). */
function itemOf(itemIndex: number, secrets: string[], json: object): INodeExecutionData {
	return { json: scrub(json, secrets) as IDataObject, pairedItem: { item: itemIndex } };
}

function scrub(value: unknown, secrets: string[]): unknown {
	if (typeof value === 'string') return redactSecrets(value, secrets);
	if (Array.isArray(value)) return value.map((v) => scrub(v, secrets));
	if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, scrub(v, secrets)]));
	return value;
}
