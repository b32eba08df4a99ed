import type { IDataObject, INode } from 'n8n-workflow';

import { runNode, type RunNodeOptions } from '../harness/n8n-run';

export interface CheckItem {
	step: string;
	target: string;
	status: 'pass' | 'warn' | 'fail' | 'skipped';
	durationMs: number;
	detail: string;
	hint: string;
	code?: string;
	facts?: IDataObject;
	authentication: string;
	protocol: string;
}

export interface SummaryItem {
	step: 'summary';
	status: string;
	verdict: 'pass' | 'warn' | 'fail';
	durationMs: number;
	firstFailingStep: string;
	firstFailingTarget: string;
	counts: Record<'pass' | 'warn' | 'fail' | 'skipped', number>;
	detail: string;
	hint: string;
	code?: string;
	stages: Array<{ step: string; target: string; status: string }>;
	authentication: string;
	protocol: string;
}

/** Runs the Test Connection node through n8n's engine over `items` input items (default one). */
export async function testConnection(options: { parameters: IDataObject; credentials: RunNodeOptions['credentials']; items?: number; onError?: INode['onError'] }) {
	const result = await runNode({
		type: 'modernAuthTestConnection',
		parameters: options.parameters,
		items: Array.from({ length: options.items ?? 1 }, (_, i) => ({ json: { i } })),
		credentials: options.credentials,
		onError: options.onError,
	});
	return { ...result, serialized: JSON.stringify(result.run) };
}

/** The output of one input item: its check items and its summary (which comes last). */
export function itemsOf(output: Array<{ json: IDataObject; pairedItem?: unknown }>, item = 0) {
	const mine = output.filter((o) => (o.pairedItem as { item: number } | undefined)?.item === item);
	const summaries = mine.filter((o) => o.json.step === 'summary');
	expect(summaries).toHaveLength(1);
	expect(mine.at(-1)?.json.step).toBe('summary');
	const checks = mine.slice(0, -1).map((o) => o.json as unknown as CheckItem);
	const summary = summaries[0].json as unknown as SummaryItem;
	// The summary lists every check's stage and status, and its counts add up.
	expect(summary.stages).toEqual(checks.map(({ step, target, status }) => ({ step, target, status })));
	for (const status of ['pass', 'warn', 'fail', 'skipped'] as const) expect(summary.counts[status]).toBe(checks.filter((c) => c.status === status).length);
	return { checks, summary };
}

/** step -> status, for the first check of each step (a step may appear per host or audience). */
export function statusByStep(checks: CheckItem[]): Record<string, string> {
	const byStep: Record<string, string> = {};
	for (const check of checks) byStep[check.step] ??= check.status;
	return byStep;
}

/** Everything after the first failure that needed it was skipped; the summary names the first failure. */
export function expectFirstFailure(checks: CheckItem[], summary: SummaryItem, step: string) {
	const first = checks.find((c) => c.status === 'fail');
	expect(first?.step).toBe(step);
	expect(summary).toMatchObject({ verdict: 'fail', status: 'fail', firstFailingStep: step, firstFailingTarget: first!.target, detail: first!.detail, hint: first!.hint });
	return first!;
}

export function expectNoSecrets(serialized: string, secrets: string[]) {
	for (const secret of secrets) expect(serialized).not.toContain(secret);
}
