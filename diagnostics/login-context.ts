import { ActionableError } from '../model/actionable-error';
import type { HintValues } from './exchange-hints';

/** How a login check signs in: decides which fix its hints name. */
export type SignIn = 'password' | 'none' | 'app-only' | 'delegated';

/**
 * What earlier checks of one run found that a later hint needs; the checks run one after
 * another, so the mailbox-access check fills it before the login checks read it.
 */
export interface LoginContext {
	/** Set when the mailbox-access check warned or failed: the "signed in as the wrong account" fix. */
	wrongAccountHint?: string;
}

export interface LoginProbe {
	signIn: SignIn;
	/** The client id and mailbox the PowerShell lines name (Microsoft kinds); `mailbox` alone for password sign-in. */
	values: HintValues;
	context?: LoginContext;
	/** Results (step or step:target) that must have passed, e.g. the TLS and token checks. */
	needs?: string[];
	timeoutMs?: number;
}

/** The failure with its hint replaced (message and code kept: the code is what workflows branch on). */
export function withHint(error: ActionableError, hint: string): ActionableError {
	return new ActionableError(error.message, error.code, hint);
}

/** Appends the wrong-account hint to a delegated refusal when the mailbox-access check had doubts. */
export function withWrongAccount(hint: string, probe: LoginProbe): string {
	const extra = probe.signIn === 'delegated' ? probe.context?.wrongAccountHint : undefined;
	return extra ? `${hint}. ${extra}` : hint;
}

/**
 * Runs `work` with a resource that `release` frees, also when the runner gives up on the
 * check (its signal aborts): a stalled server must not keep a socket open after the answer.
 */
export async function withRelease<T>(signal: AbortSignal, release: () => Promise<void>, work: () => Promise<T>): Promise<T> {
	const onAbort = () => void release().catch(() => {});
	signal.addEventListener('abort', onAbort, { once: true });
	try {
		return await work();
	} finally {
		signal.removeEventListener('abort', onAbort);
		await release().catch(() => {});
	}
}

export const toActionable = (error: unknown, fallbackCode: string): ActionableError =>
	error instanceof ActionableError ? error : new ActionableError(error instanceof Error ? error.message : String(error), fallbackCode, '');
