/**
 * EWS read benchmark (npm run bench:ews-read).
 *
 * What: 2,000 small messages delivered into the fake EWS server's Inbox (HTTPS, test CA, Basic
 * sign-in, 127.0.0.1), then read completely, oldest first, by:
 *   package - the package's EwsReader: search the folder (FindItem pages), then fetch every
 *             message into the shared message model (GetItem batches, MIME parsed).
 *   plain   - a plain loop making the same requests with the chosen libraries only:
 *             fast-xml-parser's XMLBuilder for the SOAP bodies, XMLParser for the answers and
 *             node:https with a kept-alive agent; FindItem pages of the same size, then GetItem
 *             batches of the same size asking for the same ItemShape (the package's itemShape),
 *             each answer parsed to objects (no message model).
 * Reported: messages/s of both, their ratio and the requests each made. Both must see all
 * messages, each once, otherwise the bench exits 1.
 */
import { XMLBuilder, XMLParser } from 'fast-xml-parser';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import { intEnv, printTable, writeReport } from './graph-bench';
import { ROOT } from './paths';
import { createEwsClient } from '../transports/ews/ews-client';
import { EwsReader } from '../transports/ews/ews-reader';
import { DEFAULT_PAGE_SIZE } from '../transports/ews/find-items';
import { DEFAULT_FETCH_BATCH, itemShape } from '../transports/ews/get-items';
import type { EwsClient } from '../transports/ews/types';

/* eslint-disable @typescript-eslint/no-require-imports */
const { sharedTestPki } = require(path.join(ROOT, 'test/peers/certs.js'));
const { startFakeEws } = require(path.join(ROOT, 'test/peers/fake-ews.js'));
/* eslint-enable @typescript-eslint/no-require-imports */

const MESSAGES = intEnv('BENCH_EWS_READ_MESSAGES', 2000);
const REPEATS = intEnv('BENCH_REPEATS', 3);
const PAGE_SIZE = intEnv('BENCH_EWS_PAGE_SIZE', DEFAULT_PAGE_SIZE);
const FETCH_BATCH = intEnv('BENCH_EWS_FETCH_BATCH', DEFAULT_FETCH_BATCH);
const MAILBOX = 'bench@contoso.example';
const USER = { username: 'bench', domain: 'CONTOSO', password: 'bench-ews-basic-password' };
const VERSION = 'Exchange2013_SP1';

const NS = {
	'@_xmlns:soap': 'http://schemas.xmlsoap.org/soap/envelope/',
	'@_xmlns:t': 'http://schemas.microsoft.com/exchange/services/2006/types',
	'@_xmlns:m': 'http://schemas.microsoft.com/exchange/services/2006/messages',
};

interface RunResult {
	path: 'package' | 'plain';
	seconds: number;
	messagesPerSecond: number;
	messages: number;
	requests: number;
	repeats: number[];
}

type FakeEws = {
	url: string;
	requests: Array<{ operation: string }>;
	deliver(address: string, mime: Buffer, options?: { receivedAt?: string }): string;
	addMailbox(options: { address: string }): void;
	addUser(options: Record<string, unknown>): void;
	close(): Promise<void>;
};

function mimeOf(i: number): Buffer {
	return Buffer.from(
		[
			`From: Sender ${i % 50} <sender${i % 50}@example.org>`,
			`To: ${MAILBOX}`,
			`Subject: Read benchmark ${String(i).padStart(5, '0')}`,
			`Message-ID: <bench-${i}@example.org>`,
			`Date: ${new Date(Date.UTC(2026, 0, 1) + i * 1000).toUTCString()}`,
			'MIME-Version: 1.0',
			'Content-Type: text/plain; charset=utf-8',
			'',
			`Body of message ${i}\n`.repeat(20),
		].join('\r\n'),
	);
}

async function runPackage(ews: FakeEws, ca: string): Promise<string[]> {
	const client = createEwsClient({
		url: ews.url,
		auth: { type: 'basic', username: USER.username, password: USER.password },
		version: VERSION,
		mailbox: '',
		impersonate: false,
		trust: { rejectUnauthorized: true, ca },
	});
	const reader = new EwsReader(client, { pageSize: PAGE_SIZE, fetchBatch: FETCH_BATCH });
	try {
		await reader.connect();
		const ids = await reader.search('inbox', {}, { newestFirst: false, limit: MESSAGES });
		const subjects: string[] = [];
		for await (const message of reader.fetch('inbox', ids, {})) {
			if (!('error' in message)) subjects.push(message.subject);
		}
		return subjects;
	} finally {
		await reader.close();
		await client.close();
	}
}

/** The plain loop: SOAP bodies from the builder, answers through the parser, node:https. */
function plainLoop(ews: FakeEws, ca: string) {
	const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: true });
	const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', removeNSPrefix: true, parseTagValue: false, isArray: (name) => ['Message', 'ResponseMessages'].includes(name) || name.endsWith('ResponseMessage') });
	const agent = new https.Agent({ keepAlive: true, maxSockets: 4, ca });
	const url = new URL(ews.url);
	const authorization = `Basic ${Buffer.from(`${USER.username}:${USER.password}`).toString('base64')}`;

	const call = (operation: string, body: Record<string, unknown>): Promise<Record<string, unknown>> => {
		const xml =
			'<?xml version="1.0" encoding="utf-8"?>' +
			builder.build({
				'soap:Envelope': { ...NS, 'soap:Header': { 't:RequestServerVersion': { '@_Version': VERSION } }, 'soap:Body': { [`m:${operation}`]: body } },
			});
		return new Promise((resolve, reject) => {
			const request = https.request(
				{ agent, method: 'POST', host: url.hostname, port: url.port, path: url.pathname, headers: { 'content-type': 'text/xml; charset=utf-8', authorization, 'content-length': Buffer.byteLength(xml) } },
				(response) => {
					const chunks: Buffer[] = [];
					response.on('data', (chunk: Buffer) => chunks.push(chunk));
					response.on('end', () => {
						const text = Buffer.concat(chunks).toString('utf8');
						if (response.statusCode !== 200) return reject(new Error(`${operation}: HTTP ${response.statusCode} ${text.slice(0, 300)}`));
						const envelope = parser.parse(text).Envelope;
						const answer = envelope.Body[`${operation}Response`].ResponseMessages[0];
						resolve(answer);
					});
					response.on('error', reject);
				},
			);
			request.on('error', reject);
			request.end(xml);
		});
	};

	// The ItemShape the package's fetch asks for (the properties its message model reads).
	const shape = itemShape({ version: VERSION } as EwsClient, {});
	return async function run(): Promise<string[]> {
		// FindItem pages (IdOnly, oldest first) until the last one.
		const ids: string[] = [];
		for (let offset = 0; ; ) {
			const answer = await call('FindItem', {
				'@_Traversal': 'Shallow',
				'm:ItemShape': { 't:BaseShape': 'IdOnly' },
				'm:IndexedPageItemView': { '@_MaxEntriesReturned': PAGE_SIZE, '@_Offset': offset, '@_BasePoint': 'Beginning' },
				'm:SortOrder': { 't:FieldOrder': { '@_Order': 'Ascending', 't:FieldURI': { '@_FieldURI': 'item:DateTimeReceived' } } },
				'm:ParentFolderIds': { 't:DistinguishedFolderId': { '@_Id': 'inbox' } },
			});
			const message = (answer.FindItemResponseMessage as Array<Record<string, any>>)[0];
			if (message.ResponseCode !== 'NoError') throw new Error(`FindItem: ${message.ResponseCode}`);
			const root = message.RootFolder;
			for (const item of root.Items?.Message ?? []) ids.push(item.ItemId['@_Id']);
			if (root['@_IncludesLastItemInRange'] === 'true' || ids.length >= MESSAGES) break;
			offset = Number(root['@_IndexedPagingOffset']);
		}
		// GetItem batches with the MIME and the properties a message item needs.
		const subjects: string[] = [];
		for (let at = 0; at < ids.length; at += FETCH_BATCH) {
			const batch = ids.slice(at, at + FETCH_BATCH);
			const answer = await call('GetItem', {
				'm:ItemShape': shape,
				'm:ItemIds': { 't:ItemId': batch.map((id) => ({ '@_Id': id })) },
			});
			for (const message of answer.GetItemResponseMessage as Array<Record<string, any>>) {
				if (message.ResponseCode !== 'NoError') throw new Error(`GetItem: ${message.ResponseCode}`);
				for (const item of message.Items.Message) subjects.push(String(item.Subject));
			}
		}
		return subjects;
	};
}

async function main() {
	const pki = sharedTestPki();
	const startedAt = performance.now();
	const ews: FakeEws = await startFakeEws({ pki });
	let exitCode = 0;
	try {
		ews.addMailbox({ address: MAILBOX });
		ews.addUser({ ...USER, mailbox: MAILBOX });
		const seedStart = performance.now();
		for (let i = 0; i < MESSAGES; i++) ews.deliver(MAILBOX, mimeOf(i), { receivedAt: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString() });
		console.log(`EWS read benchmark: ${MESSAGES} messages (~1 KB body) in the fake EWS Inbox over HTTPS (test CA, Basic), 127.0.0.1; seeded in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`);
		console.log(`  ${os.cpus().length} CPUs (load average ${os.loadavg()[0].toFixed(1)}), Node ${process.version}; FindItem pages of ${PAGE_SIZE}, GetItem batches of ${FETCH_BATCH}; median of ${REPEATS} runs after one warm-up run each`);
		const expected = Array.from({ length: MESSAGES }, (_, i) => `Read benchmark ${String(i).padStart(5, '0')}`);

		const measure = async (pathName: RunResult['path'], run: () => Promise<string[]>): Promise<RunResult> => {
			const runs: Array<{ seconds: number; requests: number }> = [];
			for (let r = 0; r <= REPEATS; r++) {
				const requestsBefore = ews.requests.length;
				const start = performance.now();
				const subjects = await run();
				const seconds = (performance.now() - start) / 1000;
				const seen = new Set(subjects);
				if (subjects.length !== MESSAGES || seen.size !== MESSAGES || !expected.every((s) => seen.has(s))) {
					throw new Error(`${pathName}: read ${subjects.length} messages (${seen.size} distinct), expected all ${MESSAGES} once`);
				}
				if (r > 0) runs.push({ seconds, requests: ews.requests.length - requestsBefore });
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

		const pkg = await measure('package', () => runPackage(ews, pki.ca));
		const packageOperations = ews.requests.slice(-pkg.requests).reduce<Record<string, number>>((n, r) => ({ ...n, [r.operation]: (n[r.operation] ?? 0) + 1 }), {});
		console.log(`  package requests per run: ${JSON.stringify(packageOperations)}`);
		const plain = await measure('plain', plainLoop(ews, pki.ca));

		const ratio = pkg.messagesPerSecond / plain.messagesPerSecond;
		printTable(
			['path', 'msg/s', 'requests', 'package/plain'],
			[
				['package EwsReader (search + fetch into the model)', pkg.messagesPerSecond.toFixed(0), String(pkg.requests), `${ratio.toFixed(2)}x`],
				['plain loop (XMLBuilder/XMLParser + node:https)', plain.messagesPerSecond.toFixed(0), String(plain.requests), ''],
			],
		);
		console.log(`package/plain: ${ratio.toFixed(3)}x; requests per message: package ${(pkg.requests / MESSAGES).toFixed(3)}, plain ${(plain.requests / MESSAGES).toFixed(3)}`);
		const file = writeReport('read-ews', {
			settings: { messages: MESSAGES, repeats: REPEATS, pageSize: PAGE_SIZE, fetchBatch: FETCH_BATCH, packageOperations },
			results: [pkg, plain],
			packageVsPlain: ratio,
			totalSeconds: (performance.now() - startedAt) / 1000,
		});
		console.log(`results: ${file}`);
	} catch (error) {
		exitCode = 1;
		console.error('');
		console.error('BENCHMARK FAILED:', error instanceof Error ? (error.stack ?? error.message) : error);
	} finally {
		await ews.close();
	}
	process.exit(exitCode);
}

main().catch((error) => {
	console.error('BENCHMARK FAILED:', error);
	process.exit(1);
});
