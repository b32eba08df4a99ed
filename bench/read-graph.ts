/**
 * Graph read benchmark (npm run bench:graph-read).
 *
 * What: 5,000 small messages seeded into the fake Graph's Inbox (HTTPS, test CA, no service
 * delay), then read completely, oldest first, by:
 *   package - our Graph reader (the app-only Graph connection's MailReader): search the folder,
 *             then fetch every message into the shared message model (no attachments downloaded).
 *   raw     - the Graph client alone (Client.initWithMiddleware + PageIterator) paging through the
 *             list request the package made (its $filter, $orderby and $top, from the fake's
 *             request log) with the package's message $select (every field it outputs), each
 *             message kept as Graph's JSON: the floor of paging the same data.
 * Reported: messages/s of both, their ratio and the requests each made. Both must see all
 * messages, each once, otherwise the bench exits 1.
 */
import { Client, PageIterator, type PageCollection } from '@microsoft/microsoft-graph-client';
import os from 'node:os';
import { performance } from 'node:perf_hooks';

import {
	appOnlyCredentialData,
	baselineToken,
	intEnv,
	MAILBOX,
	printTable,
	TENANT,
	trustedPki,
	writeReport,
} from './graph-bench';
import { openPackageGraph } from './graph-package';
import { startBenchGraph, type BenchGraph } from './graph-peer';
import { messageSelect } from '../transports/graph/to-message';

const MESSAGES = intEnv('BENCH_GRAPH_READ_MESSAGES', 5000);
const REPEATS = intEnv('BENCH_REPEATS', 3);
const FOLDER = 'inbox';

interface RunResult {
	path: 'package' | 'raw';
	seconds: number;
	messagesPerSecond: number;
	messages: number;
	requests: number;
	repeats: number[];
}

async function runPackage(credential: Record<string, unknown>): Promise<string[]> {
	const reader = await (await openPackageGraph(credential)).reader(MAILBOX);
	try {
		await reader.connect();
		const ids = await reader.search(FOLDER, {}, { newestFirst: false, limit: MESSAGES });
		const subjects: string[] = [];
		for await (const message of reader.fetch(FOLDER, ids, {})) {
			if ('subject' in message) subjects.push(String(message.subject));
		}
		return subjects;
	} finally {
		await reader.close();
	}
}

async function runRaw(graph: BenchGraph, token: string, listRequest: string): Promise<string[]> {
	const client = Client.initWithMiddleware({
		authProvider: { getAccessToken: async () => token },
		baseUrl: graph.baseUrl,
		customHosts: new Set([new URL(graph.baseUrl).hostname]),
	});
	const subjects: string[] = [];
	const first: PageCollection = await client.api(listRequest).header('Prefer', 'IdType="ImmutableId"').get();
	const pages = new PageIterator(client, first, (message: { subject?: string }) => {
		subjects.push(String(message.subject));
		return true;
	});
	await pages.iterate();
	return subjects;
}

/** The package's message-list request (path under /v1.0, its query) asking for the fields the package outputs. */
function rawListRequest(graph: BenchGraph): string {
	const list = graph.requests().find((r) => r.method === 'GET' && /\/messages(\?|$)/.test(r.url));
	if (!list) throw new Error(`the package made no message-list request (${graph.requests().length} requests)`);
	const url = new URL(list.url.replace(/^\/v1\.0/, ''), 'https://graph.invalid');
	url.searchParams.set('$select', messageSelect({}).join(','));
	return `${url.pathname}?${decodeURIComponent(url.searchParams.toString().replace(/\+/g, '%20'))}`;
}

async function main() {
	const pki = trustedPki();
	if (!pki) return;
	const startedAt = performance.now();
	const graph = await startBenchGraph({ pki });
	const idp = graph.idp;
	let exitCode = 0;
	try {
		const seedStart = performance.now();
		graph.seed(MESSAGES, (i) => ({
			subject: `Read benchmark ${String(i).padStart(5, '0')}`,
			from: `sender${i % 50}@example.org`,
			body: { contentType: 'text', content: `Body of message ${i}\n`.repeat(20) },
			receivedDateTime: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
		}));
		console.log(`Graph read benchmark: ${MESSAGES} messages (~1 KB body) in the fake Graph's Inbox over HTTPS (test CA), 127.0.0.1; seeded in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`);
		console.log(`  ${os.cpus().length} CPUs (load average ${os.loadavg()[0].toFixed(1)}), Node ${process.version}; median of ${REPEATS} runs after one warm-up run each`);
		const credential = appOnlyCredentialData(idp.authorityHost, graph.baseUrl);
		const token = await baselineToken(idp.tokenEndpoint(TENANT));
		const expected = Array.from({ length: MESSAGES }, (_, i) => `Read benchmark ${String(i).padStart(5, '0')}`);

		const measure = async (pathName: RunResult['path'], run: () => Promise<string[]>): Promise<RunResult> => {
			const runs: Array<{ seconds: number; requests: number }> = [];
			for (let r = 0; r <= REPEATS; r++) {
				graph.reset();
				const start = performance.now();
				const subjects = await run();
				const seconds = (performance.now() - start) / 1000;
				if (subjects.length !== MESSAGES || new Set(subjects).size !== MESSAGES || !expected.every((s) => subjects.includes(s))) {
					throw new Error(`${pathName}: read ${subjects.length} messages (${new Set(subjects).size} distinct), expected all ${MESSAGES} once`);
				}
				if (r > 0) runs.push({ seconds, requests: graph.requests().length });
			}
			const median = [...runs].sort((x, y) => x.seconds - y.seconds)[Math.floor(runs.length / 2)];
			const result = {
				path: pathName,
				seconds: median.seconds,
				messagesPerSecond: MESSAGES / median.seconds,
				messages: MESSAGES,
				requests: median.requests,
				repeats: runs.map((x) => MESSAGES / x.seconds),
			};
			console.log(`  ${pathName.padEnd(8)} ${result.messagesPerSecond.toFixed(0).padStart(6)} msg/s (${result.seconds.toFixed(2)} s, ${result.requests} requests; runs ${result.repeats.map((v) => v.toFixed(0)).join(', ')})`);
			return result;
		};

		const pkg = await measure('package', () => runPackage(credential));
		const packageList = graph.requests().find((r) => r.method === 'GET' && /\/messages(\?|$)/.test(r.url))?.url;
		const listRequest = rawListRequest(graph);
		console.log(`  package list request: GET ${packageList}`);
		console.log(`  raw pages:            GET ${listRequest}`);
		const raw = await measure('raw', () => runRaw(graph, token, listRequest));

		const ratio = pkg.messagesPerSecond / raw.messagesPerSecond;
		printTable(
			['path', 'msg/s', 'requests', 'package/raw'],
			[
				['package reader (search + fetch into the model)', pkg.messagesPerSecond.toFixed(0), String(pkg.requests), `${ratio.toFixed(2)}x`],
				['raw Graph client PageIterator (JSON only)', raw.messagesPerSecond.toFixed(0), String(raw.requests), ''],
			],
		);
		console.log(`package/raw: ${ratio.toFixed(3)}x; requests per message: package ${(pkg.requests / MESSAGES).toFixed(2)}, raw ${(raw.requests / MESSAGES).toFixed(3)}`);
		const file = writeReport('read-graph', {
			settings: { messages: MESSAGES, repeats: REPEATS, listRequest },
			results: [pkg, raw],
			packageVsRaw: ratio,
			totalSeconds: (performance.now() - startedAt) / 1000,
		});
		console.log(`results: ${file}`);
	} catch (error) {
		exitCode = 1;
		console.error('');
		console.error('BENCHMARK FAILED:', error instanceof Error ? (error.stack ?? error.message) : error);
	} finally {
		await graph.close();
	}
	process.exit(exitCode);
}

main().catch((error) => {
	console.error('BENCHMARK FAILED:', error);
	process.exit(1);
});
