/**
 * The fake Graph (test/peers/fake-graph.js) as the benchmarks use it: where it listens, what
 * it delivered, how many answers it throttled, and seeding a folder for the read benchmark.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

import type { Identity, Pki } from './graph-bench';
import { MAILBOX } from './graph-bench';
import { ROOT } from './paths';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeGraph } = require(path.join(ROOT, 'test/peers/fake-graph.js'));

export interface BenchGraphOptions {
	pki: Pki;
	idp: Identity;
	serviceTimeMs?: number;
	throttlePercent?: number;
}

export interface BenchGraph {
	baseUrl: string;
	retryAfterSeconds: number;
	/** Forgets deliveries and request counts (not the mailbox contents). */
	reset(): void;
	/** Subjects of every message the fake delivered (sendMail or a sent draft), and its 429 answers. */
	deliveries(): { subjects: string[]; throttled: number };
	/** Requests since the last reset, in order: method and path with query (e.g. /v1.0/users/x/messages?$top=50). */
	requests(): Array<{ method: string; url: string }>;
	/** Puts `count` messages into the mailbox's Inbox. */
	seed(count: number, make: (i: number) => Record<string, unknown>): void;
	close(): Promise<void>;
}

const RETRY_AFTER_SECONDS = 1;

export async function startBenchGraph(options: BenchGraphOptions): Promise<BenchGraph> {
	const fake = await startFakeGraph({
		pki: options.pki,
		identity: options.idp,
		serviceTimeMs: options.serviceTimeMs ?? 0,
		throttle: options.throttlePercent ? { ratio: options.throttlePercent / 100, retryAfterSeconds: RETRY_AFTER_SECONDS } : undefined,
	});
	fake.grant?.({ mailbox: MAILBOX });
	return {
		baseUrl: fake.baseUrl ?? fake.url,
		retryAfterSeconds: RETRY_AFTER_SECONDS,
		reset: () => fake.reset(),
		deliveries: () => ({
			subjects: fake.sent(MAILBOX).map((m: { subject: string }) => m.subject),
			throttled: fake.counts({ status: 429 }),
		}),
		requests: () => fake.requests.map((r: { method: string; url: string }) => ({ method: r.method, url: r.url })),
		seed: (count, make) => {
			for (let i = 0; i < count; i++) fake.addMessage(MAILBOX, 'inbox', make(i));
		},
		close: () => fake.close(),
	};
}

export interface ServedGraph {
	baseUrl: string;
	/** Size and sha256 of each file attachment of the delivered messages with this subject. */
	attachmentDigests(subject: string): Promise<Array<{ name: string; size: number; sha256: string }>>;
	close(): Promise<void>;
}

/** The fake Graph in a process of its own (fake-graph.js --serve), so its memory is not the sender's. */
export async function serveBenchGraph(options: { pki: Pki; idp: Identity }): Promise<ServedGraph> {
	const proc = spawn(process.execPath, [path.join(ROOT, 'test/peers/fake-graph.js'), '--serve', '--pki', options.pki.dir, '--authority', options.idp.authorityHost], {
		stdio: ['ignore', 'pipe', 'inherit'],
	});
	const ready = await new Promise<{ baseUrl: string; controlUrl: string }>((resolve, reject) => {
		let out = '';
		proc.stdout.on('data', (d) => {
			out += d;
			const line = out.split('\n').find((l) => l.startsWith('{'));
			if (line) resolve(JSON.parse(line));
		});
		proc.once('exit', (code) => reject(new Error(`fake-graph --serve exited ${code}: ${out}`)));
	});
	return {
		baseUrl: ready.baseUrl,
		attachmentDigests: async (subject) => {
			const response = await fetch(`${ready.controlUrl}/sent?subject=${encodeURIComponent(subject)}`);
			const sent = (await response.json()) as Array<{ attachments: Array<{ name: string; size: number; sha256: string }> }>;
			return sent.flatMap((m) => m.attachments);
		},
		close: async () => {
			proc.kill('SIGTERM');
			if (proc.exitCode === null) await new Promise((resolve) => proc.once('exit', resolve));
		},
	};
}
