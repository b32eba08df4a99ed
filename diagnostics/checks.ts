import { ActionableError } from '../model/actionable-error';
import { redactSecrets } from '../model/redact';

/**
 * Staged connection checks: what the Test Connection node and every credential's Test button
 * run. A connection kind lists its checks (reach, TLS, token, permission, login, read, ...);
 * `runChecks` runs them in order, skips those whose prerequisites failed, keeps the whole run
 * inside a time budget and turns every failure into a result with a hint. No n8n in here.
 */

export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skipped';

/** The protocols a connection can be tested for (EWS joins when it exists). */
export type Protocol = 'smtp' | 'imap' | 'graph' | 'ews';

/** Stable step ids: tests, summaries and workflows branch on these, so they never change. */
export type StepId =
	| 'reach' // DNS and TCP of one host
	| 'tls' // TLS version, certificate subject / issuer / expiry / trust
	| 'credential' // the credential's own fields: certificate and secret expiry
	| 'token' // token acquisition: authority, tenant, audience, roles / scp, expiry
	| 'permission' // the permission the protocol needs is in the token
	| 'mailbox-access' // delegated: the signed-in account is (or may open) the mailbox
	| 'login' // protocol sign-in: SMTP EHLO + AUTH, IMAP AUTHENTICATE, Graph first call
	| 'read' // a harmless read: IMAP SELECT INBOX + count, Graph Inbox
	| 'round-trip'; // optional: send a test message and read it back

/** What one check found. `detail` and `hint` are one line each and carry no secret. */
export interface CheckOutcome {
	status: CheckStatus;
	detail: string;
	/** The fix, naming the user's own values where it can ('' when nothing is to be done). */
	hint?: string;
	/** Stable error code (ActionableError codes, e.g. AADSTS7000215, IMAP_AUTH_FAILED). */
	code?: string;
	/** Facts for workflows (masked where they identify): tls version, roles, expiry dates, counts. */
	facts?: Record<string, string | number | boolean | string[]>;
}

/** One output row of a run. */
export interface CheckResult extends CheckOutcome {
	step: StepId;
	/** What the step looked at: 'smtp.office365.com:587', 'exchange', 'INBOX'... */
	target: string;
	hint: string;
	durationMs: number;
}

export interface Check {
	step: StepId;
	target: string;
	/**
	 * Results (by `step` or `step:target`) that must be pass or warn for this check to run;
	 * otherwise it is skipped, naming the one that stopped it.
	 */
	needs?: string[];
	/** This check's own ceiling (also bounded by what is left of the run's budget). */
	timeoutMs?: number;
	/** Runs the check; a thrown error becomes a `fail` with its message and hint. */
	run(signal: AbortSignal): Promise<CheckOutcome>;
}

export interface RunOptions {
	/** The whole run's time budget; checks not started inside it are skipped (default 60 s). */
	budgetMs?: number;
	/** Values scrubbed from every detail and hint (the connection's live secrets). */
	secrets?: Iterable<string>;
	/** Called as each result is known (logs, streaming). */
	onResult?(result: CheckResult): void;
}

/** What to test, chosen in the Test Connection node (the Test buttons use each kind's defaults). */
export interface DiagnoseOptions {
	protocol: Protocol;
	/** '' = the credential's default mailbox (delegated: the signed-in account). */
	mailbox: string;
	/** Send a test message to `to` and read it back within `timeoutMs`. */
	roundTrip?: { to: string; timeoutMs: number };
	/** Repeat a 403 / authentication refusal with back-off for up to this long (propagation delay after consent). */
	propagationRetry?: PropagationRetry;
}

export interface PropagationRetry {
	maxMs: number;
	firstDelayMs?: number;
	maxDelayMs?: number;
}

export const DEFAULT_CHECK_TIMEOUT_MS = 10_000;

const key = (check: { step: string; target: string }) => `${check.step}:${check.target}`;
const succeeded = (status: CheckStatus) => status === 'pass' || status === 'warn';

/** Runs the checks one after another (each may need the ones before); never throws. */
export async function runChecks(checks: Check[], options: RunOptions = {}): Promise<CheckResult[]> {
	const budgetMs = options.budgetMs ?? 60_000;
	const secrets = [...(options.secrets ?? [])];
	const started = Date.now();
	const results: CheckResult[] = [];
	const statusOf = new Map<string, CheckStatus>();
	for (const check of checks) {
		const blocker = (check.needs ?? []).find((need) => {
			const known = [...statusOf].filter(([k]) => k === need || k.startsWith(`${need}:`));
			return known.length === 0 || known.some(([, status]) => !succeeded(status));
		});
		const remaining = budgetMs - (Date.now() - started);
		let result: CheckResult;
		if (blocker) {
			result = skipped(check, `skipped: ${blocker} did not pass`);
		} else if (remaining <= 0) {
			result = skipped(check, `skipped: the time budget of ${seconds(budgetMs)} was used up`);
		} else {
			result = await runOne(check, Math.min(check.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS, remaining));
		}
		result = { ...result, detail: redactSecrets(result.detail, secrets), hint: redactSecrets(result.hint, secrets) };
		statusOf.set(key(check), result.status);
		results.push(result);
		options.onResult?.(result);
	}
	return results;
}

function skipped(check: Check, detail: string): CheckResult {
	return { step: check.step, target: check.target, status: 'skipped', detail, hint: '', durationMs: 0 };
}

async function runOne(check: Check, timeoutMs: number): Promise<CheckResult> {
	const started = Date.now();
	const controller = new AbortController();
	let timer: NodeJS.Timeout | undefined;
	const timedOut = new Promise<CheckOutcome>((resolve) => {
		timer = setTimeout(() => {
			controller.abort();
			resolve({ status: 'fail', detail: `no answer within ${seconds(timeoutMs)}`, hint: 'Check that the host and port are right and that a firewall lets the connection through', code: 'CHECK_TIMEOUT' });
		}, timeoutMs);
	});
	let outcome: CheckOutcome;
	try {
		outcome = await Promise.race([check.run(controller.signal).catch(outcomeOfError), timedOut]);
	} finally {
		clearTimeout(timer);
	}
	return { step: check.step, target: check.target, ...outcome, hint: outcome.hint ?? '', durationMs: Date.now() - started };
}

/** A failure as a check outcome: ActionableErrors keep their code and hint. */
export function outcomeOfError(error: unknown): CheckOutcome {
	if (error instanceof ActionableError) return { status: 'fail', detail: error.message, hint: error.hint, code: error.code };
	return { status: 'fail', detail: error instanceof Error ? error.message : String(error), hint: '', code: 'CHECK_ERROR' };
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

export interface Summary {
	verdict: 'pass' | 'warn' | 'fail';
	durationMs: number;
	/** `step` (and target) of the first failure, '' when none failed. */
	firstFailingStep: string;
	firstFailingTarget: string;
	counts: Record<CheckStatus, number>;
	/** The first failure's detail and hint (or the first warning's), for a one-line report. */
	detail: string;
	hint: string;
}

export function summarize(results: CheckResult[], durationMs: number): Summary {
	const counts: Record<CheckStatus, number> = { pass: 0, warn: 0, fail: 0, skipped: 0 };
	for (const r of results) counts[r.status]++;
	const failed = results.find((r) => r.status === 'fail');
	const warned = results.find((r) => r.status === 'warn');
	const notable = failed ?? warned;
	return {
		verdict: failed ? 'fail' : warned ? 'warn' : 'pass',
		durationMs,
		firstFailingStep: failed?.step ?? '',
		firstFailingTarget: failed?.target ?? '',
		counts,
		detail: notable?.detail ?? `${counts.pass} checks passed`,
		hint: notable?.hint ?? '',
	};
}

/**
 * A Test button's answer from a run: the one-line success message, or an ActionableError
 * naming the step that failed and its fix. Warnings ride along in the success message.
 */
export function testButtonVerdict(results: CheckResult[]): string {
	const failed = results.find((r) => r.status === 'fail');
	if (failed) throw new ActionableError(`${failed.step} (${failed.target}) failed: ${failed.detail}`, failed.code ?? 'CHECK_FAILED', failed.hint);
	const passed = results.filter((r) => r.status === 'pass');
	const warnings = results.filter((r) => r.status === 'warn').map((r) => `WARNING ${r.step} (${r.target}): ${r.detail}${r.hint ? `. ${r.hint}` : ''}`);
	const last = passed.at(-1);
	return [`${passed.length} checks passed${last ? `; ${last.step}: ${last.detail}` : ''}.`, ...warnings].join(' ');
}

/** The Test buttons answer within 15 s (n8n's UI waits longer, users do not). */
export const TEST_BUTTON_BUDGET_MS = 14_000;

/** Refusals that a consent or permission change made minutes ago still produces (Microsoft replicates them slowly). */
export const PROPAGATION_CODES: ReadonlySet<string> = new Set([
	'GRAPH_ACCESS_DENIED',
	'GRAPH_UNAUTHORIZED',
	'IMAP_AUTH_FAILED',
	'SMTP_XOAUTH2_REJECTED',
	'PERMISSION_MISSING',
	'AADSTS65001',
	'AADSTS700016',
]);

/**
 * Repeats a check that failed with a propagation-prone refusal, with exponential back-off,
 * for up to `retry.maxMs`. When a later try passes the result is a warning saying that
 * propagation delay was the cause; when none passes, the last failure, noting the tries.
 */
export function withPropagationRetry(check: Check, retry: PropagationRetry | undefined, retryable: (code: string) => boolean = (code) => PROPAGATION_CODES.has(code)): Check {
	if (!retry || retry.maxMs <= 0) return check;
	const firstDelayMs = retry.firstDelayMs ?? 5_000;
	const maxDelayMs = retry.maxDelayMs ?? 60_000;
	const ownTimeout = check.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
	return {
		...check,
		timeoutMs: retry.maxMs + ownTimeout,
		async run(signal) {
			const started = Date.now();
			for (let attempt = 1; ; attempt++) {
				const outcome = await check.run(signal).catch(outcomeOfError);
				const elapsed = Date.now() - started;
				if (succeeded(outcome.status)) {
					if (attempt === 1) return outcome;
					return {
						...outcome,
						status: 'warn',
						detail: `${outcome.detail} (passed on try ${attempt} after ${seconds(elapsed)}: the earlier refusals were propagation delay of a recent consent or permission change)`,
						hint: outcome.hint || 'Nothing to fix; Microsoft can take minutes (Exchange RBAC up to an hour) to apply a change',
						code: 'PROPAGATION_DELAY',
					};
				}
				const delay = Math.min(maxDelayMs, firstDelayMs * 2 ** (attempt - 1));
				if (signal.aborted || !retryable(outcome.code ?? '') || elapsed + delay > retry.maxMs) {
					return attempt === 1 ? outcome : { ...outcome, detail: `${outcome.detail} (still refused after ${attempt} tries over ${seconds(elapsed)})` };
				}
				await new Promise((resolve) => setTimeout(resolve, delay));
			}
		},
	};
}
