/**
 * The fake Graph (test/peers/fake-graph.js) and the fake identity platform as the benchmarks
 * use them: where Graph listens, what it delivered, how it throttled, and seeding a folder.
 */
import { fork } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

import { MAILBOX, startBenchIdentity, TENANT, tokenRequests, trustedPki, type Identity, type Pki } from './graph-bench';
import { ROOT } from './paths';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeGraph } = require(path.join(ROOT, 'test/peers/fake-graph.js'));

export interface BenchGraphOptions {
	pki: Pki;
	serviceTimeMs?: number;
	/** Share of Graph requests answered 429 with Retry-After RETRY_AFTER_SECONDS. */
	throttlePercent?: number;
	/** The mailbox's MaxSendSize (Exchange Online allows up to 150 MB). */
	maxSendSize?: number;
	/** Graph's MailboxConcurrency: requests above this many in flight are answered 429. */
	mailboxConcurrencyLimit?: number;
	/** Upload-session ranges but the last must be multiples of this (fake default 320 KiB; 1 takes n8n's 4,000,000-byte ones). */
	uploadChunkMultiple?: number;
}

export interface Delivery {
	subject: string;
	attachments: Array<{ name: string; size: number; sha256: string | null }>;
}

export interface BenchGraph {
	idp: Identity;
	/** https://127.0.0.1:port: the credential's Graph Host (base URL and token audience). */
	baseUrl: string;
	retryAfterSeconds: number;
	/** Forgets deliveries, requests and the in-flight maximum (not the mailbox contents). */
	reset(): void;
	/** Every message that left the mailbox (sendMail or a sent draft), in order. */
	deliveries(): Delivery[];
	/** Answers 429 since the last reset. */
	throttled(): number;
	/** Most Graph requests the mailbox had in flight at once since the last reset. */
	maxInFlight(): number;
	/** Graph requests since the last reset, in order: method and path with query. */
	requests(): Array<{ method: string; url: string; status: number | null }>;
	/** Puts `count` messages into the mailbox's Inbox. */
	seed(count: number, make: (i: number) => Record<string, unknown>): void;
	close(): Promise<void>;
}

export const RETRY_AFTER_SECONDS = 1;

interface FakeGraph {
	url: string;
	requests: Array<{ method: string; path: string; query: string; status: number | null; fault: string | null }>;
	deliveries: Delivery[];
	addMailbox(input: { address: string; maxSendSize?: number }): { messages: Map<string, unknown> };
	addMessage(mailbox: string, input: Record<string, unknown>): { immutableId: string };
	throttleRatio(ratio: number, options: { status?: number; retryAfter?: number }): void;
	concurrency(address: string): { inFlight: number; max: number; throttled: number };
	close(): Promise<void>;
}

function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.once('error', reject);
		server.listen(0, '127.0.0.1', () => {
			const { port } = server.address() as net.AddressInfo;
			server.close(() => resolve(port));
		});
	});
}

export async function startBenchGraph(options: BenchGraphOptions): Promise<BenchGraph> {
	// The Graph host is also the token audience: the identity platform must know the fake's URL
	// as Graph's resource before it issues tokens, so the port is chosen first.
	const port = await freePort();
	const baseUrl = `https://127.0.0.1:${port}`;
	const idp = await startBenchIdentity(options.pki, baseUrl);
	const fake: FakeGraph = await startFakeGraph({ identity: idp, pki: options.pki, port, serviceTimeMs: options.serviceTimeMs ?? 0, mailboxConcurrencyLimit: options.mailboxConcurrencyLimit, uploadChunkMultiple: options.uploadChunkMultiple });
	fake.addMailbox({ address: MAILBOX, maxSendSize: options.maxSendSize });
	if (options.throttlePercent) fake.throttleRatio(options.throttlePercent / 100, { status: 429, retryAfter: RETRY_AFTER_SECONDS });
	let delivered = 0;
	let requested = 0;
	let throttledBefore = 0;
	const stats = () => fake.concurrency(MAILBOX);
	return {
		idp,
		baseUrl,
		retryAfterSeconds: RETRY_AFTER_SECONDS,
		reset() {
			delivered = fake.deliveries.length;
			requested = fake.requests.length;
			throttledBefore = fake.requests.filter((r) => r.status === 429).length;
			stats().max = 0; // the fake's live record keeps a running maximum
		},
		deliveries: () => fake.deliveries.slice(delivered),
		throttled: () => fake.requests.filter((r) => r.status === 429).length - throttledBefore,
		maxInFlight: () => stats().max,
		requests: () => fake.requests.slice(requested).map((r) => ({ method: r.method, url: `${r.path}${r.query ? `?${r.query}` : ''}`, status: r.status })),
		seed(count, make) {
			for (let i = 0; i < count; i++) fake.addMessage(MAILBOX, { folder: 'inbox', ...make(i) });
		},
		async close() {
			await fake.close();
			await idp.close();
		},
	};
}

/** What a benchmark asks the fake Graph in its own process (see serveBenchGraphChild). */
export interface RemoteBenchGraph {
	baseUrl: string;
	authorityHost: string;
	tokenEndpoint: string;
	retryAfterSeconds: number;
	reset(): Promise<void>;
	deliveries(): Promise<Delivery[]>;
	throttled(): Promise<number>;
	maxInFlight(): Promise<number>;
	/** Token requests of the bench app the identity answered 200. */
	tokenRequests(): Promise<number>;
	close(): Promise<void>;
}

const CHILD_FLAG = 'BENCH_GRAPH_PEER_CHILD';

/**
 * Starts the fake Graph and identity in a child process, so their TLS and JSON work does not
 * share the measured sender's event loop (as a real Graph would not); talks to it over IPC.
 */
export async function startRemoteBenchGraph(options: Omit<BenchGraphOptions, 'pki'>): Promise<RemoteBenchGraph> {
	const child = fork(__filename, [], { env: { ...process.env, [CHILD_FLAG]: JSON.stringify(options) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
	let nextId = 0;
	const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
	child.on('message', (message: { id: number; result?: unknown; error?: string }) => {
		const waiter = pending.get(message.id);
		pending.delete(message.id);
		if (message.error) waiter?.reject(new Error(message.error));
		else waiter?.resolve(message.result);
	});
	const call = <T>(op: string): Promise<T> =>
		new Promise<T>((resolve, reject) => {
			const id = ++nextId;
			pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
			child.send({ id, op });
		});
	const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
	const ready = await Promise.race([call<{ baseUrl: string; authorityHost: string; tokenEndpoint: string }>('ready'), exited.then(() => Promise.reject(new Error('the fake Graph process exited')))]);
	return {
		...ready,
		retryAfterSeconds: RETRY_AFTER_SECONDS,
		reset: () => call('reset'),
		deliveries: () => call('deliveries'),
		throttled: () => call('throttled'),
		maxInFlight: () => call('maxInFlight'),
		tokenRequests: () => call('tokenRequests'),
		close: async () => {
			await call('close');
			await exited;
		},
	};
}

async function serveBenchGraphChild(options: Omit<BenchGraphOptions, 'pki'>) {
	const pki = trustedPki();
	if (!pki) return;
	const graph = await startBenchGraph({ ...options, pki });
	const ops: Record<string, () => unknown> = {
		ready: () => ({ baseUrl: graph.baseUrl, authorityHost: graph.idp.authorityHost, tokenEndpoint: graph.idp.tokenEndpoint(TENANT) }),
		reset: () => graph.reset(),
		deliveries: () => graph.deliveries(),
		throttled: () => graph.throttled(),
		maxInFlight: () => graph.maxInFlight(),
		tokenRequests: () => tokenRequests(graph.idp),
		close: async () => {
			await graph.close();
			setImmediate(() => process.exit(0));
		},
	};
	process.on('message', async (message: { id: number; op: string }) => {
		try {
			process.send?.({ id: message.id, result: await ops[message.op]() });
		} catch (error) {
			process.send?.({ id: message.id, error: error instanceof Error ? error.message : String(error) });
		}
	});
	process.on('disconnect', () => process.exit(0));
}

if (process.env[CHILD_FLAG]) void serveBenchGraphChild(JSON.parse(process.env[CHILD_FLAG]!));
