import { runChecks, summarize, testButtonVerdict, withPropagationRetry, type Check } from '../../diagnostics/checks';
import { ActionableError } from '../../model/actionable-error';

const passing = (step: Check['step'], target: string, extra: Partial<Check> = {}): Check => ({ step, target, run: async () => ({ status: 'pass', detail: `${step} ok` }), ...extra });

describe('runChecks', () => {
	it('skips what needs a failed step, times out a silent one, scrubs secrets, and summarizes the first failure', async () => {
		const checks: Check[] = [
			passing('reach', 'mail.example:993'),
			{ step: 'token', target: 'exchange', run: async () => { throw new ActionableError('refused for s3cr3t', 'AADSTS7000215', 'paste the value of s3cr3t'); } },
			{ step: 'login', target: 'imap', needs: ['token'], run: async () => ({ status: 'pass', detail: 'never' }) },
			{ step: 'read', target: 'INBOX', needs: ['reach'], timeoutMs: 50, run: () => new Promise(() => undefined) },
		];
		const results = await runChecks(checks, { secrets: ['s3cr3t'] });
		expect(results.map((r) => [r.step, r.status])).toEqual([['reach', 'pass'], ['token', 'fail'], ['login', 'skipped'], ['read', 'fail']]);
		expect(results[1].detail).not.toContain('s3cr3t');
		expect(results[1].hint).not.toContain('s3cr3t');
		expect(results[2].detail).toBe('skipped: token did not pass');
		expect(results[3].code).toBe('CHECK_TIMEOUT');
		const summary = summarize(results, 99);
		expect(summary).toMatchObject({ verdict: 'fail', firstFailingStep: 'token', firstFailingTarget: 'exchange', counts: { pass: 1, fail: 2, skipped: 1, warn: 0 } });
		expect(() => testButtonVerdict(results)).toThrow(/^token \(exchange\) failed: refused for/);
	});

	it('skips what does not start inside the budget', async () => {
		const slow: Check = { step: 'reach', target: 'a', run: () => new Promise((resolve) => setTimeout(() => resolve({ status: 'pass', detail: 'late' }), 80)) };
		const results = await runChecks([slow, passing('tls', 'a')], { budgetMs: 60 });
		expect(results.map((r) => r.status)).toEqual(['fail', 'skipped']);
		expect(results[1].detail).toMatch(/time budget/);
	});

	it('propagation retry: a refusal that clears on the third try is a warning naming propagation delay', async () => {
		let tries = 0;
		const flaky: Check = {
			step: 'login',
			target: 'imap',
			run: async () => (++tries < 3 ? { status: 'fail', detail: 'AUTHENTICATE failed', code: 'IMAP_AUTH_FAILED' } : { status: 'pass', detail: 'signed in' }),
		};
		const [result] = await runChecks([withPropagationRetry(flaky, { maxMs: 1_000, firstDelayMs: 10 })]);
		expect(tries).toBe(3);
		expect(result).toMatchObject({ status: 'warn', code: 'PROPAGATION_DELAY' });
		expect(result.detail).toMatch(/passed on try 3 .*propagation delay/);
	});

	it('propagation retry leaves other failures alone', async () => {
		let tries = 0;
		const wrong: Check = { step: 'token', target: 'exchange', run: async () => (tries++, { status: 'fail', detail: 'bad secret', code: 'AADSTS7000215' }) };
		const [result] = await runChecks([withPropagationRetry(wrong, { maxMs: 1_000, firstDelayMs: 10 })]);
		expect(tries).toBe(1);
		expect(result.status).toBe('fail');
	});
});
