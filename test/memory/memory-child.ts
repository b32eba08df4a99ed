/**
 * Runs memory-test jobs in fresh Node processes (test/memory/child.js, graph-child.js) and takes
 * the median peak of several runs. Shared by the peak-memory tests.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

export const DIST = path.resolve(__dirname, '..', '..', 'dist');

/** KiB (maxRSS) to MB (MiB), one decimal. */
export const mb = (kib: number) => Math.round((kib / 1024) * 10) / 10;

export interface ChildResult {
	maxRssKiB: number;
	vmHwmKiB?: number;
	[key: string]: unknown;
}

/**
 * Runs one job of a child script in a fresh Node process; resolves its last JSON line.
 * Linux keeps a process's maxRSS across fork + exec, so Node spawned straight from this jest
 * worker would report at least the worker's own peak (hundreds of MB). A shell in between
 * forks Node from its own small image instead: `; exit $?` keeps it from exec'ing Node in
 * its place.
 */
export function runChild(script: string, job: Record<string, unknown>): Promise<ChildResult> {
	return new Promise((resolve, reject) => {
		const child = spawn('/bin/sh', ['-c', '"$0" "$1"; exit $?', process.execPath, script], {
			// NODE_EXTRA_CA_CERTS (set by scripts/jest.js) goes along
			env: { ...process.env, MAM_MEMORY_JOB: JSON.stringify({ dist: DIST, ...job }) },
			stdio: ['ignore', 'pipe', 'pipe'],
		});
		const out: Buffer[] = [];
		const err: Buffer[] = [];
		child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
		child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
		child.once('error', reject);
		child.once('close', (code, signal) => {
			const stdout = Buffer.concat(out).toString('utf8').trim();
			const stderr = Buffer.concat(err).toString('utf8').trim();
			if (code !== 0) return reject(new Error(`child ${String(job.mode)} failed (${signal ?? code}): ${stderr || stdout}`));
			let result: ChildResult;
			try {
				result = JSON.parse(stdout.split('\n').pop() ?? '');
			} catch {
				return reject(new Error(`child ${String(job.mode)} printed no result: ${stdout}\n${stderr}`));
			}
			// maxRSS above the process image's own peak means it inherited its parent's
			if (typeof result.vmHwmKiB === 'number' && result.maxRssKiB > result.vmHwmKiB + 1024) {
				return reject(new Error(`child ${String(job.mode)}: maxRSS ${result.maxRssKiB} KiB exceeds its own VmHWM ${result.vmHwmKiB} KiB, so it counts another process`));
			}
			resolve(result);
		});
	});
}

/**
 * The streaming job RUNS times, each in its own fresh process: one peak varies by about ±8 %
 * (how many download chunks and decoder buffers happen to be alive when the allocator grows),
 * the median of three much less. Every run's result is checked, the median is the figure.
 */
export const RUNS = 3;
export async function medianPeak(
	script: string,
	job: Record<string, unknown>,
	afterEach: (result: ChildResult) => Promise<void> = async () => {},
): Promise<{ peak: number; peaks: number[]; results: ChildResult[] }> {
	const results: ChildResult[] = [];
	for (let i = 0; i < RUNS; i++) {
		results.push(await runChild(script, job));
		await afterEach(results[i]);
	}
	const peaks = results.map((r) => mb(r.maxRssKiB));
	return { peak: [...peaks].sort((a, b) => a - b)[Math.floor(RUNS / 2)], peaks, results };
}
