/**
 * IMAP read benchmark (npm run bench:imap).
 *
 * What: 10,000 small messages (~2 KB, envelope + text body, made with nodemailer) seeded once
 * into a local Dovecot 2.3 (IMAPS, test CA, 127.0.0.1), then read completely by:
 *   package node   - our Read Mailbox (Modern Auth) node run through n8n-core's WorkflowExecute
 *                    (test/harness/n8n-run.ts): limit 10000, oldest first, no attachment
 *                    download, one execution. Timed as the node's executionTime.
 *   package reader - the ImapReader transport alone: connect, search all, fetch + parse all.
 *   raw imapflow   - one ImapFlow client, FETCH 1:* (uid, envelope, source), each source parsed
 *                    with mailparser simpleParser: the same work as ours, the practical limit.
 *   raw floor      - the same FETCH without parsing (uid, envelope, text body part): protocol floor.
 *   built-in       - n8n's EmailReadImap v2.1 path ("simple" format, the default) with n8n's own
 *                    @n8n/imap from the n8n 1.123.50 cache, emulated as a bare loop: batches of
 *                    20 (search UNSEEN + UID maxUid:*, fetch HEADER + TEXT + struct), then one
 *                    part fetch per message for text/plain, as getNewEmails/getText do.
 * Memory: a fresh child process runs the node over 200 messages with a 5 MB attachment each,
 * downloadAttachments on, n8n filesystem binary mode, and reports its peak RSS (maxRSS).
 * Every path must see all messages, otherwise the bench exits 1.
 */
import { n8nUserFolder, removeN8nUserFolder } from './n8n-env'; // first: sets n8n env vars
import { Container } from '@n8n/di';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ImapFlow } from 'imapflow';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import tls from 'node:tls';

import { N8N_MODULES, ROOT } from './paths';
import { runNode } from '../test/harness/n8n-run';
import { ImapReader } from '../transports/imap/imap-reader';

// ---------------------------------------------------------------------------- settings
const intEnv = (name: string, fallback: number) => {
	const value = Number(process.env[name]);
	return Number.isInteger(value) && value > 0 ? value : fallback;
};
const MESSAGES = intEnv('BENCH_IMAP_MESSAGES', 10_000);
const BIG_MESSAGES = intEnv('BENCH_IMAP_BIG_MESSAGES', 200);
const BIG_ATTACHMENT_BYTES = 5 * 1024 * 1024;
const USER = 'reader@example.com';
const PASSWORD = 'Bench-Imap-Passw0rd';
const SMALL_FOLDER = 'INBOX';
const BIG_FOLDER = 'Big';
const TARGETS = { rawRatio: 0.8, builtinRatio: 2, peakRssMb: 300 };
const CHILD_FLAG = 'BENCH_IMAP_MEMORY_CHILD';
const REPEATS = intEnv('BENCH_REPEATS', 3);


interface Server {
	host: string;
	port: number;
	ca: string;
}

const credentials = (server: Server) => ({
	modernAuthImapApi: {
		id: 'benchImapCred001',
		name: 'Bench IMAP',
		data: { host: server.host, port: server.port, security: 'tls', user: USER, password: PASSWORD, caCertificate: server.ca },
	},
});

// ------------------------------------------------------------------------------ paths
/** Our node, one execution; returns the node's execution seconds and its items. */
async function runPackageNode(server: Server, folder: string, limit: number, downloadAttachments: boolean) {
	const { output, error, run } = await runNode({
		type: 'modernAuthReadMailbox',
		parameters: { authentication: 'imap', folder, limit, order: 'oldest', options: { downloadAttachments } },
		items: [{ json: {} }],
		credentials: credentials(server),
	});
	if (error) throw new Error(`package node failed: ${error.message}`);
	const nodeRun = run.data.resultData.runData.Target?.[0];
	if (!nodeRun) throw new Error('package node did not run');
	return { seconds: nodeRun.executionTime / 1000, output };
}

async function runPackageReader(server: Server): Promise<number> {
	const reader = new ImapReader({
		host: server.host,
		port: server.port,
		security: 'tls',
		auth: { type: 'password', user: USER, pass: PASSWORD },
		rejectUnauthorized: true,
		ca: server.ca,
	});
	await reader.connect();
	try {
		const ids = await reader.search(SMALL_FOLDER, {}, { newestFirst: false, limit: Number.MAX_SAFE_INTEGER });
		let count = 0;
		for await (const message of reader.fetch(SMALL_FOLDER, ids)) {
			if (message.subject) count++;
		}
		return count;
	} finally {
		await reader.close();
	}
}

async function runRawImapflow(server: Server, parse: boolean): Promise<number> {
	const client = new ImapFlow({
		host: server.host,
		port: server.port,
		secure: true,
		auth: { user: USER, pass: PASSWORD },
		tls: { ca: [...tls.rootCertificates, server.ca] },
		logger: false,
		disableAutoIdle: true,
	});
	client.on('error', () => {});
	await client.connect();
	try {
		await client.mailboxOpen(SMALL_FOLDER, { readOnly: true });
		let count = 0;
		const query = parse ? { uid: true, envelope: true, source: true } : { uid: true, envelope: true, bodyParts: ['1'] };
		for await (const message of client.fetch('1:*', query)) {
			if (parse) {
				const parsed = await simpleParser(message.source as Buffer, { skipImageLinks: true, keepCidLinks: true });
				if (parsed.subject !== undefined && parsed.text !== undefined) count++;
			} else if (message.envelope && message.bodyParts?.get('1')) {
				count++;
			}
		}
		return count;
	} finally {
		await client.logout();
	}
}

// n8n's @n8n/imap, typed as much as this file uses
interface ImapMessage {
	attributes: { uid: number; struct?: unknown[] };
	parts: Array<{ which: string; body: unknown }>;
}
interface ImapSimple {
	openBox(name: string): Promise<unknown>;
	search(criteria: Array<string | [string, string]>, fetchOptions: object, limit?: number): Promise<ImapMessage[]>;
	getPartData(message: ImapMessage, part: unknown): Promise<{ toString(): string }>;
	end(): void;
}
interface N8nImap {
	connect(options: { imap: object }): Promise<ImapSimple>;
	getParts(struct: unknown): Array<{ type: string; subtype: string }>;
}
function loadN8nImap(): { imap?: N8nImap; label: string } {
	const dir = path.join(N8N_MODULES, '@n8n', 'imap');
	try {
		const version = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
		// eslint-disable-next-line @typescript-eslint/no-require-imports
		const imap = require(dir) as N8nImap;
		return { imap, label: `@n8n/imap ${version} (n8n 1.123.50 cache)` };
	} catch (error) {
		return { label: `@n8n/imap not loadable from ${dir}: ${(error as Error).message}` };
	}
}

/** EmailReadImap v2.1 getNewEmails, format "simple", without the n8n engine. */
async function runBuiltin(imap: N8nImap, server: Server) {
	// the node's config; n8n has no CA field (an instance uses NODE_EXTRA_CA_CERTS): tlsOptions stands in
	const connection = await imap.connect({
		imap: { user: USER, password: PASSWORD, host: server.host, port: server.port, tls: true, authTimeout: 20000, tlsOptions: { ca: server.ca } },
	});
	// n8n's trigger listens for errors too; a late EPIPE after end() would crash the bench otherwise
	(connection as unknown as NodeJS.EventEmitter).on('error', () => {});
	const seen = new Set<number>();
	let fetched = 0;
	let batches = 0;
	try {
		await connection.openBox(SMALL_FOLDER);
		const fetchOptions = { bodies: ['TEXT', 'HEADER'], markSeen: false, struct: true };
		const topLevelProperties = ['cc', 'date', 'from', 'subject', 'to'];
		let searchCriteria: Array<string | [string, string]> = ['UNSEEN'];
		let maxUid = 0;
		let results: ImapMessage[];
		const getText = async (parts: Array<{ type: string; subtype: string }>, message: ImapMessage, subtype: string) => {
			if (!message.attributes.struct) return '';
			const part = parts.find((p) => p.type.toUpperCase() === 'TEXT' && p.subtype.toUpperCase() === subtype.toUpperCase());
			if (!part) return '';
			try {
				return (await connection.getPartData(message, part)).toString();
			} catch {
				return '';
			}
		};
		do {
			if (maxUid) {
				searchCriteria = searchCriteria.filter((c) => !Array.isArray(c) || !['UID', 'SINCE'].includes(c[0]));
				searchCriteria.push(['UID', `${maxUid}:*`]);
			}
			results = await connection.search(searchCriteria, fetchOptions, 20);
			batches++;
			for (const message of results) {
				if (message.attributes.uid > maxUid) maxUid = message.attributes.uid;
				const parts = imap.getParts(message.attributes.struct);
				const json: Record<string, unknown> = {
					textHtml: await getText(parts, message, 'html'),
					textPlain: await getText(parts, message, 'plain'),
					metadata: {} as Record<string, unknown>,
					attributes: { uid: message.attributes.uid },
				};
				const header = message.parts.find((p) => p.which === 'HEADER')?.body as Record<string, string[]>;
				for (const name of Object.keys(header)) {
					if (!header[name].length) continue;
					if (topLevelProperties.includes(name)) json[name] = header[name][0];
					else (json.metadata as Record<string, unknown>)[name] = header[name][0];
				}
				fetched++;
				if (json.textPlain) seen.add(message.attributes.uid);
			}
		} while (results.length >= 20);
	} finally {
		connection.end();
		// node-imap reports the socket closing under it (EPIPE) as a late 'error' event
		await new Promise((resolve) => setTimeout(resolve, 50));
	}
	return { count: seen.size, fetched, batches };
}

// ------------------------------------------------------------------- memory (child)
/**
 * Peak RSS of this process in MB. getrusage's maxRSS survives fork + exec on Linux (a child
 * starts with its parent's high-water mark), so prefer VmHWM, which belongs to the new image.
 */
function peakRssMb(): number {
	try {
		const match = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
		if (match) return Number(match[1]) / 1024;
	} catch {
		// not Linux
	}
	return process.resourceUsage().maxRSS / 1024;
}

interface MemoryResult {
	/** peak RSS before the node ran (n8n-core loaded) */
	before: number;
	maxRssMb: number;
	/** highest RSS sampled every 10 ms during the run, a cross-check */
	sampledPeakMb: number;
	seconds: number;
	items: number;
	withBinary: number;
}

async function memoryChild() {
	const server = JSON.parse(process.env[CHILD_FLAG]!) as Server;
	const before = peakRssMb();
	let sampled = 0;
	const timer = setInterval(() => (sampled = Math.max(sampled, process.memoryUsage.rss())), 10);
	const { seconds, output } = await runPackageNode(server, BIG_FOLDER, BIG_MESSAGES, true);
	clearInterval(timer);
	const withBinary = output.filter((item) => item.binary?.attachment_0).length;
	const result: MemoryResult = { before, maxRssMb: peakRssMb(), sampledPeakMb: sampled / 1024 / 1024, seconds, items: output.length, withBinary };
	process.stdout.write(`\n${JSON.stringify(result)}\n`);
}

function runMemoryChild(server: Server): Promise<MemoryResult> {
	return new Promise((resolve, reject) => {
		execFile(
			process.execPath,
			[__filename],
			{ env: { ...process.env, [CHILD_FLAG]: JSON.stringify(server) }, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
			(error, stdout, stderr) => {
				if (error) return reject(new Error(`memory child failed: ${stderr.trim() || error.message}`));
				try {
					resolve(JSON.parse(stdout.trim().split('\n').pop()!));
				} catch {
					reject(new Error(`memory child printed no result: ${stdout.slice(-500)} ${stderr.slice(-500)}`));
				}
			},
		);
	});
}

// ------------------------------------------------------------------------- fixtures
async function smallMessages(count: number): Promise<Buffer[]> {
	const transport = nodemailer.createTransport({ streamTransport: true, buffer: true });
	const filler = 'The quick brown fox jumps over the lazy dog. '.repeat(36); // ~1.6 KB
	const out: Buffer[] = [];
	for (let i = 0; i < count; i++) {
		const info = await transport.sendMail({
			from: `Sender ${i % 50} <sender${i % 50}@example.org>`,
			to: USER,
			subject: `Benchmark message ${i}`,
			text: `Message ${i}\n${filler}\n`,
			date: new Date(Date.UTC(2025, 0, 1) + i * 60_000),
		});
		out.push(info.message as Buffer);
	}
	return out;
}

async function bigMessages(count: number): Promise<Buffer[]> {
	const transport = nodemailer.createTransport({ streamTransport: true, buffer: true });
	const info = await transport.sendMail({
		from: 'sender@example.org',
		to: USER,
		subject: 'Big attachment',
		text: 'See attachment.',
		attachments: [{ filename: 'big.bin', content: randomBytes(BIG_ATTACHMENT_BYTES), contentType: 'application/octet-stream' }],
	});
	const template = info.message as Buffer;
	// the same body each time, but distinct messages (own header line)
	return Array.from({ length: count }, (_, i) => Buffer.concat([Buffer.from(`X-Bench-Index: ${i}\r\n`), template]));
}

// -------------------------------------------------------------------------------- main
interface Result {
	path: string;
	messages: number;
	seconds: number;
	messagesPerSecond: number;
	note?: string;
	/** msg/s of every repeat when the figure is a median */
	repeats?: number[];
}

async function main() {
	const startedAt = performance.now();
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const { createTestPki } = require(path.join(ROOT, 'test/peers/certs.js'));
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const { startDovecot } = require(path.join(ROOT, 'test/peers/dovecot.js'));
	const pki = createTestPki();
	const dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD } });
	const server: Server = { host: dovecot.host, port: dovecot.tlsPort, ca: pki.ca };
	const builtin = loadN8nImap();
	const results: Result[] = [];
	let exitCode = 0;
	try {
		console.log(`IMAP read benchmark: ${MESSAGES} messages (~2 KB, text body), Dovecot IMAPS, test CA, 127.0.0.1`);
		console.log(`  ${os.cpus().length} CPUs, Node ${process.version}; built-in: ${builtin.label}`);
		const t = performance.now();
		const small = await smallMessages(MESSAGES);
		const avg = small.reduce((sum, b) => sum + b.length, 0) / small.length;
		const smallStatus = await dovecot.seed(USER, small, { folder: SMALL_FOLDER });
		if (smallStatus.messages !== MESSAGES) throw new Error(`seeded ${smallStatus.messages} messages, expected ${MESSAGES}`);
		const big = await bigMessages(BIG_MESSAGES);
		const bigStatus = await dovecot.seed(USER, big, { folder: BIG_FOLDER });
		if (bigStatus.messages !== BIG_MESSAGES) throw new Error(`seeded ${bigStatus.messages} big messages, expected ${BIG_MESSAGES}`);
		console.log(
			`  seeded ${MESSAGES} x ${(avg / 1024).toFixed(1)} KB into ${SMALL_FOLDER} and ${BIG_MESSAGES} x ${(big[0].length / 1024 / 1024).toFixed(1)} MB into ${BIG_FOLDER} in ${((performance.now() - t) / 1000).toFixed(1)} s`,
		);
		big.length = 0;

		// memory first, in a fresh process: the 10k run must not pollute its maxRSS
		process.stdout.write(`  memory: package node, ${BIG_MESSAGES} x 5 MB attachments, filesystem binary mode (child process) ... `);
		const memory = await runMemoryChild(server);
		console.log(
			`peak RSS ${memory.maxRssMb.toFixed(0)} MB, sampled ${memory.sampledPeakMb.toFixed(0)} MB (${memory.seconds.toFixed(1)} s, ${memory.withBinary}/${memory.items} items with binary)`,
		);
		if (memory.items !== BIG_MESSAGES || memory.withBinary !== BIG_MESSAGES) {
			throw new Error(`memory run: ${memory.items} items, ${memory.withBinary} with binary, expected ${BIG_MESSAGES}`);
		}

		const measure = async (name: string, fn: () => Promise<{ count: number; seconds?: number; note?: string }>) => {
			process.stdout.write(`  ${name.padEnd(34)} ... `);
			const start = performance.now();
			const { count, seconds: own, note } = await fn();
			const seconds = own ?? (performance.now() - start) / 1000;
			if (count !== MESSAGES) throw new Error(`${name}: saw ${count} messages, expected ${MESSAGES}`);
			const result: Result = { path: name, messages: count, seconds, messagesPerSecond: count / seconds, ...(note ? { note } : {}) };
			console.log(`${result.messagesPerSecond.toFixed(0).padStart(6)} msg/s  (${seconds.toFixed(2)} s${note ? `, ${note}` : ''})`);
			return result;
		};

		console.log('warm-up (not counted)');
		await measure('raw imapflow, no parsing', async () => ({ count: await runRawImapflow(server, false) }));
		await measure('package ImapReader', async () => ({ count: await runPackageReader(server) }));

		// the fast paths take a few seconds each: median of REPEATS, interleaved so drift hits all alike
		console.log(`runs (built-in once; the others median of ${REPEATS}, interleaved)`);
		const fast: Array<[string, () => Promise<{ count: number; seconds?: number; note?: string }>]> = [
			[
				'package node (n8n-core)',
				async () => {
					const start = performance.now();
					const run = await runPackageNode(server, SMALL_FOLDER, MESSAGES, false);
					return { count: run.output.length, seconds: run.seconds, note: `whole workflow ${((performance.now() - start) / 1000).toFixed(2)} s` };
				},
			],
			['package ImapReader', async () => ({ count: await runPackageReader(server) })],
			['raw imapflow + simpleParser', async () => ({ count: await runRawImapflow(server, true) })],
			['raw imapflow, no parsing', async () => ({ count: await runRawImapflow(server, false) })],
		];
		const runs = new Map<string, Result[]>(fast.map(([name]) => [name, []]));
		for (let r = 0; r < REPEATS; r++) {
			for (const [name, fn] of fast) runs.get(name)!.push(await measure(name, fn));
		}
		for (const list of runs.values()) {
			const median = [...list].sort((x, y) => x.messagesPerSecond - y.messagesPerSecond)[Math.floor(list.length / 2)];
			results.push({ ...median, repeats: list.map((x) => Math.round(x.messagesPerSecond)) });
		}
		if (builtin.imap) {
			const imap = builtin.imap;
			results.push(
				await measure('built-in (n8n EmailReadImap v2.1)', async () => {
					const run = await runBuiltin(imap, server);
					return { count: run.count, note: `${run.batches} batches of 20, ${run.fetched} fetched incl. re-fetched batch boundaries` };
				}),
			);
		} else {
			console.log(`  built-in skipped: ${builtin.label}`);
		}

		// ------------------------------------------------------------------------ report
		const find = (name: string) => results.find((r) => r.path === name);
		const pkg = find('package node (n8n-core)')!;
		const raw = find('raw imapflow + simpleParser')!;
		const bi = find('built-in (n8n EmailReadImap v2.1)');
		const rawRatio = pkg.messagesPerSecond / raw.messagesPerSecond;
		const builtinRatio = bi ? pkg.messagesPerSecond / bi.messagesPerSecond : undefined;
		const header = ['path', 'messages/s', 'seconds', 'x raw+parse', 'runs (msg/s)'];
		const table = results.map((r) => [
			r.path,
			r.messagesPerSecond.toFixed(0),
			r.seconds.toFixed(2),
			`${(r.messagesPerSecond / raw.messagesPerSecond).toFixed(2)}x`,
			r.repeats ? r.repeats.join(', ') : '1 run',
		]);
		const widths = header.map((h, c) => Math.max(h.length, ...table.map((line) => line[c].length)));
		const format = (line: string[]) => line.map((v, c) => (c === 1 || c === 2 || c === 3 ? v.padStart(widths[c]) : v.padEnd(widths[c]))).join(' | ');
		console.log('');
		console.log(format(header));
		console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
		for (const line of table) console.log(format(line));
		console.log('');
		const verdict = (ok: boolean) => (ok ? 'met' : 'NOT MET');
		const targets = {
			rawRatio: { target: `>= ${TARGETS.rawRatio}x`, value: rawRatio, met: rawRatio >= TARGETS.rawRatio },
			builtinRatio: builtinRatio === undefined ? undefined : { target: `>= ${TARGETS.builtinRatio}x`, value: builtinRatio, met: builtinRatio >= TARGETS.builtinRatio },
			peakRssMb: { target: `< ${TARGETS.peakRssMb} MB`, value: memory.maxRssMb, met: memory.maxRssMb < TARGETS.peakRssMb },
		};
		console.log('targets');
		console.log(`  package node / raw imapflow + parsing: ${rawRatio.toFixed(2)}x  (target ${targets.rawRatio.target}) ${verdict(targets.rawRatio.met)}`);
		if (targets.builtinRatio) {
			console.log(`  package node / built-in:               ${targets.builtinRatio.value.toFixed(1)}x   (target ${targets.builtinRatio.target}) ${verdict(targets.builtinRatio.met)}`);
		} else {
			console.log('  package node / built-in:               skipped (@n8n/imap not available)');
		}
		console.log(
			`  peak RSS reading ${BIG_MESSAGES} x 5 MB attachments: ${memory.maxRssMb.toFixed(0)} MB (${memory.before.toFixed(0)} MB before the node ran)  (target ${targets.peakRssMb.target}) ${verdict(targets.peakRssMb.met)}`,
		);
		console.log('notes');
		console.log(`  package node msg/s is the node's executionTime in n8n-core (one execution, limit ${MESSAGES}, oldest first, no attachment download).`);
		console.log('  raw and built-in paths are bare loops (no n8n engine); built-in trusts the test CA via tlsOptions (n8n: NODE_EXTRA_CA_CERTS).');

		const report = {
			generatedAt: new Date().toISOString(),
			node: process.version,
			cpus: os.cpus().length,
			settings: { messages: MESSAGES, averageMessageBytes: Math.round(avg), bigMessages: BIG_MESSAGES, bigAttachmentBytes: BIG_ATTACHMENT_BYTES, builtin: builtin.label },
			results,
			memory,
			ratios: { packageVsRawParsing: rawRatio, packageVsBuiltin: builtinRatio },
			targets,
			totalSeconds: (performance.now() - startedAt) / 1000,
		};
		const outDir = path.join(ROOT, '.cache', 'bench');
		fs.mkdirSync(outDir, { recursive: true });
		const outFile = path.join(outDir, 'read-imap.json');
		fs.writeFileSync(outFile, JSON.stringify(report, null, 2) + '\n');
		console.log(`results: ${path.relative(ROOT, outFile)}; total ${report.totalSeconds.toFixed(0)} s`);
	} catch (error) {
		exitCode = 1;
		console.error('');
		console.error('BENCHMARK FAILED:', error instanceof Error ? error.message : error);
	} finally {
		await dovecot.stop();
		fs.rmSync(pki.dir, { recursive: true, force: true });
	}
	return exitCode;
}

/** n8n-core's process-wide SSH tunnel reaper keeps an interval; stop it as n8n does on shutdown. */
function shutdownN8n() {
	try {
		// eslint-disable-next-line @typescript-eslint/no-require-imports
		const { SSHClientsManager } = require('n8n-core/dist/execution-engine/ssh-clients-manager');
		if (Container.has(SSHClientsManager)) (Container.get(SSHClientsManager) as { onShutdown(): void }).onShutdown();
	} catch {
		// best effort; process.exit below ends the process anyway
	}
	if (n8nUserFolder) removeN8nUserFolder();
}

(process.env[CHILD_FLAG] ? memoryChild().then(() => 0) : main())
	.catch((error) => {
		console.error('BENCHMARK FAILED:', error);
		return 1;
	})
	.then((code) => {
		shutdownN8n();
		process.exit(code);
	});
