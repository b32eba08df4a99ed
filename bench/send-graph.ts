/**
 * Graph send benchmark (npm run bench:graph).
 *
 * What: 1,000 messages (two small attachments each, 2 KB + 5 KB, random, different per message)
 * sent through the fake Graph (test/peers/fake-graph.js over HTTPS, test CA) that takes 50 ms
 * per request, answers 5% of requests 429 with Retry-After 1 s (seeded random) and, like Graph's
 * MailboxConcurrency, 429 to any request above 4 in flight for the mailbox. The fake and the
 * identity platform run in a child process (a real Graph does not share the sender's CPU).
 * Three paths, side by side:
 *   built-in - what n8n's Microsoft Outlook v2 node does (actions/message/send.operation.js):
 *              one POST /users/{mailbox}/sendMail per item, attachments inline as base64, items
 *              one after another. Emulated as a bare fetch loop with one cached token; n8n's
 *              request helper does not retry a 429 (the item fails unless "Retry On Fail"), so the
 *              loop is flattered: it waits the Retry-After and retries.
 *   package  - our Graph sender (the app-only Graph connection: token provider, Graph client
 *              with its retry and 4-per-mailbox limiter), 16 sends outstanding at a time.
 *   raw fetch - the same sendMail bodies by bare fetch, 16 outstanding, 4 in flight, Retry-After
 *              waited outside the slot: what this machine allows (the practical limit).
 * Ceiling: Graph's MailboxConcurrency of 4 at 50 ms service time is 80 msg/s; the package must
 * reach at least 90% of it. Lost and duplicated messages come from the fake's delivery record
 * (each message carries its number in the subject); token requests from the fake identity.
 */
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import os from 'node:os';

import {
	appOnlyCredentialData,
	baselineToken,
	intEnv,
	MAILBOX,
	printTable,
	retryAfterMs,
	sleep,
	trustedPki,
	verdict,
	writeReport,
} from './graph-bench';
import { startRemoteBenchGraph, type RemoteBenchGraph } from './graph-peer';
import { openPackageGraph } from './graph-package';
import type { OutgoingMessage } from '../model/outgoing-message';

const MESSAGES = intEnv('BENCH_GRAPH_MESSAGES', 1000);
const SERVICE_MS = intEnv('BENCH_GRAPH_SERVICE_MS', 50);
const THROTTLE_PERCENT = Number(process.env.BENCH_GRAPH_THROTTLE_PERCENT ?? 5);
const CONCURRENCY = 4;
const WINDOW = intEnv('BENCH_GRAPH_WINDOW', 16);
const CEILING = (CONCURRENCY * 1000) / SERVICE_MS;
const TARGET_OF_CEILING = 0.9;

interface Fixture {
	to: string;
	subject: string;
	text: string;
	a: Buffer;
	b: Buffer;
}
const fixtures = (run: string): Fixture[] =>
	Array.from({ length: MESSAGES }, (_, i) => ({
		to: `user${i}@example.org`,
		subject: `${run} message ${i}`,
		text: `Hello user ${i},\nthis is benchmark message ${i} with two attachments.\n`,
		a: randomBytes(2 * 1024),
		b: randomBytes(5 * 1024),
	}));

interface RunResult {
	path: 'built-in' | 'package' | 'raw';
	seconds: number;
	messagesPerSecond: number;
	delivered: number;
	lost: number;
	duplicated: number;
	throttled: number;
	maxInFlight: number;
	tokenRequests: number;
	failures: number;
}

/** The sendMail body n8n's Outlook v2 node builds: attachments inline as base64. */
function sendMailBody(item: Fixture): string {
	return JSON.stringify({
		message: {
			subject: item.subject,
			body: { contentType: 'Text', content: item.text },
			toRecipients: [{ emailAddress: { address: item.to } }],
			attachments: [
				{ '@odata.type': '#microsoft.graph.fileAttachment', name: 'small.bin', contentBytes: item.a.toString('base64') },
				{ '@odata.type': '#microsoft.graph.fileAttachment', name: 'medium.bin', contentBytes: item.b.toString('base64') },
			],
		},
		saveToSentItems: true,
	});
}

/**
 * POSTs one sendMail, waiting out 429/503 Retry-After (outside `slot`, which wraps each request);
 * resolves false when Graph refused it.
 */
async function postSendMail(url: string, token: string, body: string, slot: <T>(request: () => Promise<T>) => Promise<T>): Promise<boolean> {
	for (let attempt = 1; ; attempt++) {
		const response = await slot(async () => {
			const answer = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });
			await answer.arrayBuffer();
			return answer;
		});
		if (response.status === 202) return true;
		if ((response.status !== 429 && response.status !== 503) || attempt >= 10) return false;
		await sleep(retryAfterMs(response, 1000));
	}
}

const sendMailUrl = (graph: RemoteBenchGraph) => `${graph.baseUrl}/v1.0/users/${encodeURIComponent(MAILBOX)}/sendMail`;

/**
 * n8n Outlook v2 "Send": one sendMail per item, awaited one by one. n8n's request helper does not
 * retry a 429 (the item fails unless "Retry On Fail"); this loop is flattered and waits it out.
 */
async function runBuiltin(graph: RemoteBenchGraph, items: Fixture[]): Promise<number> {
	// n8n's Entra service-principal credential fetches one token and caches it.
	const token = await baselineToken(graph.tokenEndpoint);
	let failures = 0;
	for (const item of items) if (!(await postSendMail(sendMailUrl(graph), token, sendMailBody(item), (request) => request()))) failures++;
	return failures;
}

/** The practical limit: bare fetch, WINDOW sends outstanding, CONCURRENCY requests in flight. */
async function runRaw(graph: RemoteBenchGraph, items: Fixture[]): Promise<number> {
	const token = await baselineToken(graph.tokenEndpoint);
	let free = CONCURRENCY;
	const waiting: Array<() => void> = [];
	const slot = async <T>(request: () => Promise<T>): Promise<T> => {
		if (free === 0) await new Promise<void>((resolve) => waiting.push(resolve));
		else free--;
		try {
			return await request();
		} finally {
			const next = waiting.shift();
			if (next) next();
			else free++;
		}
	};
	let failures = 0;
	let next = 0;
	await Promise.all(
		Array.from({ length: WINDOW }, async () => {
			while (next < items.length) if (!(await postSendMail(sendMailUrl(graph), token, sendMailBody(items[next++]), slot))) failures++;
		}),
	);
	return failures;
}

function toOutgoing(item: Fixture): OutgoingMessage {
	const attachment = (filename: string, content: Buffer) => ({ filename, contentType: 'application/octet-stream', size: content.length, open: async () => content });
	return {
		from: { address: MAILBOX },
		to: [{ address: item.to }],
		cc: [],
		bcc: [],
		replyTo: [],
		subject: item.subject,
		text: item.text,
		attachments: [attachment('small.bin', item.a), attachment('medium.bin', item.b)],
		headers: [],
		priority: 'normal',
		saveToSentItems: true,
	};
}

/**
 * Our sender with WINDOW sends outstanding: its Graph client keeps at most CONCURRENCY requests
 * in flight for the mailbox, so a send waiting out a Retry-After does not hold a slot.
 */
async function runPackage(credential: Record<string, unknown>, items: Fixture[]): Promise<number> {
	const connection = await openPackageGraph(credential);
	const sender = await connection.sender(MAILBOX, CONCURRENCY);
	let failures = 0;
	let next = 0;
	try {
		await Promise.all(
			Array.from({ length: WINDOW }, async () => {
				while (next < items.length) {
					const item = items[next++];
					try {
						await sender.send(toOutgoing(item));
					} catch (error) {
						failures++;
						if (failures <= 3) console.error(`  package send failed: ${error instanceof Error ? error.message : error}`);
					}
				}
			}),
		);
	} finally {
		await sender.close();
	}
	return failures;
}

async function main() {
	const pki = trustedPki();
	if (!pki) return;
	const startedAt = performance.now();
	const graph = await startRemoteBenchGraph({ serviceTimeMs: SERVICE_MS, throttlePercent: THROTTLE_PERCENT, mailboxConcurrencyLimit: CONCURRENCY });
	const credential = appOnlyCredentialData(graph.authorityHost, graph.baseUrl);
	const results: RunResult[] = [];
	let exitCode = 0;
	try {
		console.log(`Graph send benchmark: ${MESSAGES} messages x 2 attachments (2 KB + 5 KB) to the fake Graph over HTTPS (test CA), 127.0.0.1`);
		console.log(`  ${os.cpus().length} CPUs (load average ${os.loadavg()[0].toFixed(1)}), Node ${process.version}; fake Graph: ${SERVICE_MS} ms per request, ${THROTTLE_PERCENT}% answered 429 (Retry-After ${graph.retryAfterSeconds} s)`);
		console.log(`  ceiling: ${CONCURRENCY} in flight per mailbox (the fake answers 429 above that, as Graph's MailboxConcurrency) / ${SERVICE_MS} ms = ${CEILING} msg/s`);
		console.log(`  package: ${WINDOW} sends outstanding, ${CONCURRENCY} requests in flight at most (its Graph client's limiter)`);

		const measure = async (pathName: RunResult['path'], run: () => Promise<number>, items: Fixture[]) => {
			await graph.reset();
			const tokensBefore = await graph.tokenRequests();
			process.stdout.write(`  ${pathName.padEnd(9)} ${items.length} messages ... `);
			const start = performance.now();
			const failures = await run();
			const seconds = (performance.now() - start) / 1000;
			const delivered = (await graph.deliveries()).map((d) => d.subject);
			const subjects = new Map<string, number>();
			for (const subject of delivered) subjects.set(subject, (subjects.get(subject) ?? 0) + 1);
			const expected = new Set(items.map((item) => item.subject));
			const result: RunResult = {
				path: pathName,
				seconds,
				messagesPerSecond: items.length / seconds,
				delivered: delivered.length,
				lost: [...expected].filter((subject) => !subjects.has(subject)).length,
				duplicated: [...subjects.values()].reduce((n, count) => n + Math.max(0, count - 1), 0),
				throttled: await graph.throttled(),
				maxInFlight: await graph.maxInFlight(),
				tokenRequests: (await graph.tokenRequests()) - tokensBefore,
				failures,
			};
			console.log(`${result.messagesPerSecond.toFixed(1).padStart(6)} msg/s (${seconds.toFixed(2)} s, ${result.throttled} answered 429, at most ${result.maxInFlight} in flight, ${result.lost} lost, ${result.duplicated} duplicated)`);
			results.push(result);
			return result;
		};

		const builtin = await measure('built-in', () => runBuiltin(graph, fixturesFor.builtin), fixturesFor.builtin);
		const pkg = await measure('package', () => runPackage(credential, fixturesFor.package), fixturesFor.package);
		const raw = await measure('raw', () => runRaw(graph, fixturesFor.raw), fixturesFor.raw);

		const ofCeiling = pkg.messagesPerSecond / CEILING;
		printTable(
			['path', 'msg/s', 'of ceiling', 'lost', 'duplicated', '429s', 'max in flight', 'token requests', 'failed'],
			results.map((r) => [
				{ 'built-in': 'built-in (one at a time)', package: `package (${CONCURRENCY} in flight)`, raw: `raw fetch (${CONCURRENCY} in flight)` }[r.path],
				r.messagesPerSecond.toFixed(1),
				`${((r.messagesPerSecond / CEILING) * 100).toFixed(0)}%`,
				String(r.lost),
				String(r.duplicated),
				String(r.throttled),
				String(r.maxInFlight),
				String(r.tokenRequests),
				String(r.failures),
			]),
		);
		const targets = {
			ofCeiling: { target: `>= ${TARGET_OF_CEILING * 100}% of ${CEILING} msg/s`, value: ofCeiling, met: ofCeiling >= TARGET_OF_CEILING },
			lost: { target: '0', value: pkg.lost, met: pkg.lost === 0 },
			duplicated: { target: '0', value: pkg.duplicated, met: pkg.duplicated === 0 },
			tokenRequests: { target: '1', value: pkg.tokenRequests, met: pkg.tokenRequests === 1 },
		};
		console.log('targets');
		console.log(`  package/built-in: ${(pkg.messagesPerSecond / builtin.messagesPerSecond).toFixed(2)}x; package/raw fetch: ${(pkg.messagesPerSecond / raw.messagesPerSecond).toFixed(2)}x (raw fetch reaches ${((raw.messagesPerSecond / CEILING) * 100).toFixed(0)}% of the ceiling on this machine)`);
		console.log(`  package of the ceiling: ${(ofCeiling * 100).toFixed(1)}%   (target ${targets.ofCeiling.target}) ${verdict(targets.ofCeiling.met)}`);
		console.log(`  lost ${pkg.lost}, duplicated ${pkg.duplicated}   (target 0) ${verdict(targets.lost.met && targets.duplicated.met)}`);
		console.log(`  token requests ${pkg.tokenRequests}   (target 1) ${verdict(targets.tokenRequests.met)}`);
		const file = writeReport('send-graph', {
			settings: { messages: MESSAGES, window: WINDOW, serviceTimeMs: SERVICE_MS, throttlePercent: THROTTLE_PERCENT, retryAfterSeconds: graph.retryAfterSeconds, concurrency: CONCURRENCY },
			results,
			packageVsBuiltin: pkg.messagesPerSecond / builtin.messagesPerSecond,
			packageVsRaw: pkg.messagesPerSecond / raw.messagesPerSecond,
			targets,
			totalSeconds: (performance.now() - startedAt) / 1000,
		});
		console.log(`results: ${file}`);
		if (results.some((r) => r.lost > 0 || r.duplicated > 0)) exitCode = 1;
	} catch (error) {
		exitCode = 1;
		console.error('');
		console.error('BENCHMARK FAILED:', error instanceof Error ? (error.stack ?? error.message) : error);
	} finally {
		await graph.close();
	}
	process.exit(exitCode);
}

const fixturesFor = { builtin: fixtures('Built-in'), package: fixtures('Package'), raw: fixtures('Raw') };

main().catch((error) => {
	console.error('BENCHMARK FAILED:', error);
	process.exit(1);
});
