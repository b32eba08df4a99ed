/**
 * SMTP send benchmark (npm run bench).
 *
 * What: one n8n execution that sends N messages (default 500), each with two small binary
 * attachments (2 KB + 5 KB, random, different per item), to a local SMTP server with
 * STARTTLS + AUTH and a test CA, once directly over loopback and once through a TCP proxy
 * that adds ~20 ms round-trip latency (a realistic distance to a mail relay).
 *
 * Three paths, side by side:
 *   built-in  - what n8n's own Send Email (EmailSend v2) does: a new nodemailer transport
 *               per item, items one after another (n8n awaits each). Emulated here as a bare
 *               loop (no engine overhead, attachments already in memory), so it is flattered.
 *   package   - our Send Email (Modern Auth) node run through n8n-core's WorkflowExecute
 *               (test/harness/n8n-run.ts): parameters resolved per item, binaries read from
 *               n8n's filesystem store, one pooled transport. Timed as the node's execution.
 *   raw pooled - one pooled nodemailer transport, all messages queued at once: the practical
 *               limit for the same connection count.
 *
 * Why: per-item transports pay TCP + greeting + STARTTLS + TLS handshake + AUTH for every
 * message; that cost grows with latency. The table shows how much of the pooled limit the
 * node reaches and what it buys over the built-in behaviour, plus the process's peak RSS.
 * The peer must receive every message of every run, otherwise the bench exits 1.
 */
import { n8nUserFolder, removeN8nUserFolder } from './n8n-env'; // first: sets n8n env vars
import { Container } from '@n8n/di';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import nodemailer from 'nodemailer';

import { N8N_MODULES, ROOT } from './paths';
import { runNode, type InputItem } from '../test/harness/n8n-run';
import { startLatencyProxy } from './latency-proxy';

// ---------------------------------------------------------------------------- settings
const intEnv = (name: string, fallback: number) => {
	const value = Number(process.env[name]);
	return Number.isInteger(value) && value > 0 ? value : fallback;
};
const MESSAGES = intEnv('BENCH_MESSAGES', 500);
const MAX_CONNECTIONS = intEnv('BENCH_MAX_CONNECTIONS', 5);
const ONE_WAY_DELAY_MS = 10;
/** The built-in path opens one connection per message; at 20 ms RTT a sample is enough. */
const BUILTIN_SAMPLE_DIRECT = Math.min(MESSAGES, intEnv('BENCH_BUILTIN_DIRECT', MESSAGES));
const BUILTIN_SAMPLE_RTT = Math.min(MESSAGES, intEnv('BENCH_BUILTIN_RTT', 60));
/** package and raw pooled runs are repeated and the median is reported (JIT, GC, disk cache noise). */
const REPEATS = intEnv('BENCH_REPEATS', 3);
const USER = 'robot';
const PASSWORD = 'Bench-Passw0rd!';
const FROM = 'Robot <robot@example.com>';
const TARGETS = { builtinRatioAtRtt: 5, rawRatio: 0.8, peakRssMb: 250 };

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createTestPki } = require(path.join(ROOT, 'test/peers/certs.js'));
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require(path.join(ROOT, 'test/peers/smtp-peer.js'));

interface Peer {
	host: string;
	port: number;
	stats: { connections: number; authentications: number; authFailures: number; messages: number };
	reset(): void;
	close(): Promise<void>;
}
interface Endpoint {
	host: string;
	port: number;
}
type Nodemailer = typeof nodemailer;

/**
 * n8n's EmailSend v2 uses the nodemailer n8n ships; use that copy when the n8n used by the
 * e2e tests is cached, otherwise our own nodemailer.
 */
function loadBuiltinNodemailer(): { mailer: Nodemailer; label: string; mirrorsSource: boolean } {
	const sendOperation = path.join(N8N_MODULES, 'n8n-nodes-base/dist/nodes/EmailSend/v2/send.operation.js');
	const mirrorsSource = fs.existsSync(sendOperation);
	try {
		const dir = path.join(N8N_MODULES, 'nodemailer');
		const version = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
		// eslint-disable-next-line @typescript-eslint/no-require-imports
		const mailer = require(dir) as Nodemailer;
		return { mailer, label: `n8n's own nodemailer ${version} (n8n 1.123.50 cache)`, mirrorsSource };
	} catch {
		return { mailer: nodemailer, label: `our nodemailer ${ourNodemailerVersion()} (n8n cache not found)`, mirrorsSource };
	}
}
function ourNodemailerVersion(): string {
	return JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules/nodemailer/package.json'), 'utf8')).version;
}

// ---------------------------------------------------------------------------- fixtures
interface Fixture {
	to: string;
	subject: string;
	text: string;
	a: Buffer;
	b: Buffer;
}
const fixtures: Fixture[] = Array.from({ length: MESSAGES }, (_, i) => ({
	to: `user${i}@example.org`,
	subject: `Benchmark message ${i}`,
	text: `Hello user ${i},\nthis is benchmark message ${i} with two attachments.\n`,
	a: randomBytes(2 * 1024),
	b: randomBytes(5 * 1024),
}));
const attachmentName = (key: 'a' | 'b', i: number) => `${key === 'a' ? 'small' : 'medium'}-${i}.bin`;

// ------------------------------------------------------------------------ measurements
interface RunResult {
	path: 'builtin' | 'package' | 'raw';
	scenario: 'direct' | 'rtt20';
	messages: number;
	seconds: number;
	messagesPerSecond: number;
	peerConnections: number;
	/** package only: whole runNode() incl. the source node storing the binaries */
	workflowSeconds?: number;
	/** package only: highest sampled RSS during the run (MB) */
	peakRssMb?: number;
	/** msg/s of every repeat when the figure is a median */
	repeats?: number[];
}

class RssSampler {
	peak = 0;
	private timer?: NodeJS.Timeout;
	start() {
		this.sample();
		this.timer = setInterval(() => this.sample(), 10);
	}
	stop() {
		clearInterval(this.timer);
		this.sample();
		return this.peak;
	}
	private sample() {
		this.peak = Math.max(this.peak, process.memoryUsage.rss());
	}
}
const mb = (bytes: number) => bytes / 1024 / 1024;

function checkDelivered(peer: Peer, expected: number, label: string) {
	if (peer.stats.messages !== expected) {
		throw new Error(`${label}: the SMTP peer received ${peer.stats.messages} messages, expected ${expected}`);
	}
	if (peer.stats.authFailures > 0) throw new Error(`${label}: ${peer.stats.authFailures} authentication failures`);
}

/** n8n EmailSend v2: configureTransport() + sendMail() per item, awaited one by one. */
async function runBuiltin(mailer: Nodemailer, target: Endpoint, ca: string, count: number) {
	for (let i = 0; i < count; i++) {
		const item = fixtures[i];
		// utils.configureTransport: { host, port, secure, ignoreTLS: disableStartTls, auth }.
		// n8n has no CA field; an instance trusts a private CA via NODE_EXTRA_CA_CERTS, which
		// the tls option stands in for here.
		const transporter = mailer.createTransport({
			host: target.host,
			port: target.port,
			secure: false,
			ignoreTLS: false,
			auth: { user: USER, pass: PASSWORD },
			tls: { ca },
		});
		// send.operation.js: attachments { filename, content: Buffer, cid: property name };
		// v2.1 appends the attribution to text mails. The transport is never closed.
		await transporter.sendMail({
			from: FROM,
			to: item.to,
			subject: item.subject,
			text: `${item.text}\n\n---\nThis email was sent automatically with n8n\nhttps://n8n.io`,
			attachments: [
				{ filename: attachmentName('a', i), content: item.a, cid: 'a' },
				{ filename: attachmentName('b', i), content: item.b, cid: 'b' },
			],
		});
	}
}

/** The practical limit: one pool, every message queued at once. */
async function runRawPooled(target: Endpoint, ca: string, count: number) {
	const transporter = nodemailer.createTransport({
		pool: true,
		host: target.host,
		port: target.port,
		secure: false,
		requireTLS: true,
		auth: { user: USER, pass: PASSWORD },
		tls: { ca },
		maxConnections: MAX_CONNECTIONS,
		maxMessages: Infinity,
		logger: false,
	});
	try {
		await Promise.all(
			fixtures.slice(0, count).map((item, i) =>
				transporter.sendMail({
					from: FROM,
					to: item.to,
					subject: item.subject,
					text: item.text,
					attachments: [
						{ filename: attachmentName('a', i), content: item.a, contentType: 'application/octet-stream' },
						{ filename: attachmentName('b', i), content: item.b, contentType: 'application/octet-stream' },
					],
				}),
			),
		);
	} finally {
		transporter.close();
	}
}

/** Our node, one execution with `count` items, via n8n-core. */
async function runPackage(target: Endpoint, ca: string, count: number) {
	const items: InputItem[] = fixtures.slice(0, count).map((item, i) => ({
		json: { to: item.to, subject: item.subject, text: item.text },
		binary: {
			a: { data: item.a, fileName: attachmentName('a', i), mimeType: 'application/octet-stream' },
			b: { data: item.b, fileName: attachmentName('b', i), mimeType: 'application/octet-stream' },
		},
	}));
	const { output, error, run } = await runNode({
		type: 'modernAuthSendEmail',
		parameters: {
			authentication: 'smtp',
			toEmail: '={{ $json.to }}',
			subject: '={{ $json.subject }}',
			emailFormat: 'text',
			text: '={{ $json.text }}',
			options: { attachments: 'a, b', maxConnections: MAX_CONNECTIONS },
		},
		items,
		credentials: {
			modernAuthSmtpApi: {
				id: 'benchSmtpCred001',
				name: 'Bench SMTP',
				data: {
					host: target.host,
					port: target.port,
					security: 'starttls',
					user: USER,
					password: PASSWORD,
					fromAddress: FROM,
					caCertificate: ca,
				},
			},
		},
	});
	if (error) throw new Error(`package node failed: ${error.message}`);
	if (output.length !== count) throw new Error(`package node returned ${output.length} items, expected ${count}`);
	const nodeRun = run.data.resultData.runData.Target?.[0];
	if (!nodeRun) throw new Error('package node did not run');
	return { nodeSeconds: nodeRun.executionTime / 1000 };
}

/** Median SMTP NOOP round trip, to show the latency the proxy really adds. */
async function measureRttMs(target: Endpoint, samples = 7): Promise<number> {
	const socket = net.connect({ host: target.host, port: target.port, noDelay: true });
	const lines: string[] = [];
	let waiter: (() => void) | undefined;
	let buffered = '';
	socket.on('data', (chunk: Buffer) => {
		buffered += chunk.toString('latin1');
		let at;
		while ((at = buffered.indexOf('\r\n')) >= 0) {
			lines.push(buffered.slice(0, at));
			buffered = buffered.slice(at + 2);
		}
		waiter?.();
	});
	const nextLine = () =>
		new Promise<string>((resolve, reject) => {
			const timeout = setTimeout(() => reject(new Error('RTT probe: no answer')), 5000);
			const check = () => {
				if (lines.length === 0) return;
				clearTimeout(timeout);
				waiter = undefined;
				resolve(lines.shift()!);
			};
			waiter = check;
			check();
		});
	try {
		await nextLine(); // 220 greeting
		const times: number[] = [];
		for (let i = 0; i < samples; i++) {
			const start = performance.now();
			socket.write('NOOP\r\n');
			const answer = await nextLine();
			if (!answer.startsWith('250')) throw new Error(`RTT probe: unexpected answer ${answer}`);
			times.push(performance.now() - start);
		}
		socket.write('QUIT\r\n');
		times.sort((x, y) => x - y);
		return times[Math.floor(times.length / 2)];
	} finally {
		socket.destroy();
	}
}

// -------------------------------------------------------------------------------- main
async function main() {
	const startedAt = performance.now();
	const pki = createTestPki();
	const peer: Peer = await startSmtpPeer({ pki, users: { [USER]: PASSWORD }, keepRaw: false });
	const proxy = await startLatencyProxy(peer, ONE_WAY_DELAY_MS);
	const builtin = loadBuiltinNodemailer();
	const ca: string = pki.ca;
	const results: RunResult[] = [];
	let packagePeakRss = 0;
	let exitCode = 0;

	const measure = async (
		pathName: RunResult['path'],
		scenario: RunResult['scenario'],
		target: Endpoint,
		count: number,
	): Promise<RunResult> => {
		peer.reset();
		const label = `${pathName} / ${scenario}`;
		process.stdout.write(`  ${label.padEnd(20)} ${String(count).padStart(4)} messages ... `);
		let seconds: number;
		let extra: Partial<RunResult> = {};
		if (pathName === 'package') {
			const sampler = new RssSampler();
			sampler.start();
			const start = performance.now();
			try {
				const { nodeSeconds } = await runPackage(target, ca, count);
				seconds = nodeSeconds;
				extra = { workflowSeconds: (performance.now() - start) / 1000 };
			} finally {
				sampler.stop();
			}
			packagePeakRss = Math.max(packagePeakRss, sampler.peak);
			extra.peakRssMb = mb(sampler.peak);
		} else {
			const start = performance.now();
			if (pathName === 'builtin') await runBuiltin(builtin.mailer, target, ca, count);
			else await runRawPooled(target, ca, count);
			seconds = (performance.now() - start) / 1000;
		}
		checkDelivered(peer, count, label);
		const result: RunResult = {
			path: pathName,
			scenario,
			messages: count,
			seconds,
			messagesPerSecond: count / seconds,
			peerConnections: peer.stats.connections,
			...extra,
		};
		console.log(
			`${result.messagesPerSecond.toFixed(1).padStart(7)} msg/s  (${seconds.toFixed(2)} s, ${result.peerConnections} SMTP connections)`,
		);
		return result;
	};

	try {
		const rttDirect = await measureRttMs(peer);
		const rttProxy = await measureRttMs(proxy);
		console.log(
			`SMTP send benchmark: ${MESSAGES} messages x 2 attachments (2 KB + 5 KB), STARTTLS + AUTH, test CA, 127.0.0.1`,
		);
		console.log(
			`  ${os.cpus().length} CPUs, Node ${process.version}; measured SMTP NOOP RTT: direct ${rttDirect.toFixed(2)} ms, via proxy ${rttProxy.toFixed(2)} ms`,
		);
		console.log(`  package node + raw pool: maxConnections = ${MAX_CONNECTIONS}`);
		console.log(
			`  built-in: new transport per item, sequential, ${builtin.label}; ${builtin.mirrorsSource ? 'mirrors n8n-nodes-base EmailSend/v2/send.operation.js' : 'emulated (EmailSend v2 source not in cache)'}`,
		);

		// A long-running n8n worker is warm: run every path once first (the built-in path
		// briefly, it opens a connection per message anyway).
		console.log('warm-up (not counted)');
		await measure('builtin', 'direct', peer, 5);
		await measure('package', 'direct', peer, MESSAGES);
		await measure('raw', 'direct', peer, MESSAGES);

		console.log(`runs (package and raw pooled: median of ${REPEATS})`);
		const scenarios = [
			{ scenario: 'direct' as const, target: peer as Endpoint, builtinCount: BUILTIN_SAMPLE_DIRECT },
			{ scenario: 'rtt20' as const, target: proxy as Endpoint, builtinCount: BUILTIN_SAMPLE_RTT },
		];
		for (const { scenario, target, builtinCount } of scenarios) {
			results.push(await measure('builtin', scenario, target, builtinCount));
			for (const pathName of ['package', 'raw'] as const) {
				const repeats: RunResult[] = [];
				for (let r = 0; r < REPEATS; r++) repeats.push(await measure(pathName, scenario, target, MESSAGES));
				const median = [...repeats].sort((x, y) => x.messagesPerSecond - y.messagesPerSecond)[Math.floor(REPEATS / 2)];
				results.push({ ...median, repeats: repeats.map((run) => run.messagesPerSecond) });
			}
		}

		const maxRssMb = process.resourceUsage().maxRSS / 1024;
		const find = (pathName: RunResult['path'], scenario: RunResult['scenario']) =>
			results.find((r) => r.path === pathName && r.scenario === scenario)!;
		const rows = scenarios.map(({ scenario }) => {
			const b = find('builtin', scenario);
			const p = find('package', scenario);
			const r = find('raw', scenario);
			return {
				scenario,
				builtin: b,
				package: p,
				raw: r,
				packageVsBuiltin: p.messagesPerSecond / b.messagesPerSecond,
				packageVsRaw: p.messagesPerSecond / r.messagesPerSecond,
			};
		});

		// ------------------------------------------------------------------------ report
		const cell = (r: RunResult) => `${r.messagesPerSecond.toFixed(1)} msg/s (n=${r.messages})`;
		const header = ['scenario', 'built-in per-item', `package node (${MAX_CONNECTIONS} conn)`, `raw pooled (${MAX_CONNECTIONS} conn)`, 'package/built-in', 'package/raw'];
		const table = rows.map((row) => [
			row.scenario === 'direct' ? 'direct' : `${ONE_WAY_DELAY_MS * 2} ms RTT`,
			cell(row.builtin),
			cell(row.package),
			cell(row.raw),
			`${row.packageVsBuiltin.toFixed(1)}x`,
			`${row.packageVsRaw.toFixed(2)}x`,
		]);
		const widths = header.map((h, c) => Math.max(h.length, ...table.map((line) => line[c].length)));
		const format = (line: string[]) => line.map((v, c) => v.padEnd(widths[c])).join(' | ');
		console.log('');
		console.log(format(header));
		console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
		for (const line of table) console.log(format(line));
		console.log('');

		const rtt = rows.find((row) => row.scenario === 'rtt20')!;
		const worstRaw = Math.min(...rows.map((row) => row.packageVsRaw));
		const peakMb = Math.max(maxRssMb, mb(packagePeakRss));
		const verdict = (ok: boolean) => (ok ? 'met' : 'NOT MET');
		const targets = {
			builtinRatioAtRtt: { target: `>= ${TARGETS.builtinRatioAtRtt}x`, value: rtt.packageVsBuiltin, met: rtt.packageVsBuiltin >= TARGETS.builtinRatioAtRtt },
			rawRatio: { target: `>= ${TARGETS.rawRatio}x`, value: worstRaw, met: worstRaw >= TARGETS.rawRatio },
			peakRssMb: { target: `< ${TARGETS.peakRssMb} MB`, value: peakMb, met: peakMb < TARGETS.peakRssMb },
		};
		console.log('targets');
		console.log(`  package/built-in at 20 ms RTT: ${rtt.packageVsBuiltin.toFixed(1)}x   (target ${targets.builtinRatioAtRtt.target}) ${verdict(targets.builtinRatioAtRtt.met)}`);
		console.log(`  package/raw pooled (worst):    ${worstRaw.toFixed(2)}x  (target ${targets.rawRatio.target}) ${verdict(targets.rawRatio.met)}`);
		console.log(
			`  peak RSS: process maxRSS ${maxRssMb.toFixed(0)} MB, sampled during package runs ${mb(packagePeakRss).toFixed(0)} MB   (target ${targets.peakRssMb.target}) ${verdict(targets.peakRssMb.met)}`,
		);
		console.log('notes');
		console.log(`  package msg/s is the node's execution time in n8n-core (binaries read from n8n's filesystem store);`);
		for (const row of rows) {
			console.log(`    ${row.scenario}: whole workflow incl. storing ${MESSAGES * 2} binaries took ${row.package.workflowSeconds!.toFixed(2)} s`);
		}
		console.log(`  built-in and raw pooled are bare loops with attachments in memory (no n8n engine overhead).`);
		console.log(`  built-in sample sizes: direct ${BUILTIN_SAMPLE_DIRECT}, 20 ms RTT ${BUILTIN_SAMPLE_RTT} (one SMTP connection per message;`);
		console.log(`    the peer, like real servers' early-talker checks, waits ~100 ms before greeting each new connection).`);

		const report = {
			generatedAt: new Date().toISOString(),
			node: process.version,
			cpus: os.cpus().length,
			settings: {
				messages: MESSAGES,
				attachmentsBytes: [2048, 5120],
				maxConnections: MAX_CONNECTIONS,
				oneWayDelayMs: ONE_WAY_DELAY_MS,
				builtinSample: { direct: BUILTIN_SAMPLE_DIRECT, rtt20: BUILTIN_SAMPLE_RTT },
				repeats: REPEATS,
				builtinNodemailer: builtin.label,
				builtinMirrorsN8nSource: builtin.mirrorsSource,
			},
			measuredRttMs: { direct: rttDirect, proxy: rttProxy },
			results,
			rows: rows.map((row) => ({
				scenario: row.scenario,
				builtinMps: row.builtin.messagesPerSecond,
				packageMps: row.package.messagesPerSecond,
				rawMps: row.raw.messagesPerSecond,
				packageVsBuiltin: row.packageVsBuiltin,
				packageVsRaw: row.packageVsRaw,
			})),
			memory: { maxRssMb, packageSampledPeakRssMb: mb(packagePeakRss) },
			targets,
			totalSeconds: (performance.now() - startedAt) / 1000,
		};
		const outDir = path.join(ROOT, '.cache', 'bench');
		fs.mkdirSync(outDir, { recursive: true });
		const outFile = path.join(outDir, 'send-smtp.json');
		fs.writeFileSync(outFile, JSON.stringify(report, null, 2) + '\n');
		console.log(`results: ${path.relative(ROOT, outFile)}; total ${report.totalSeconds.toFixed(0)} s`);
	} catch (error) {
		exitCode = 1;
		console.error('');
		console.error('BENCHMARK FAILED:', error instanceof Error ? error.message : error);
	} finally {
		await proxy.close();
		await peer.close();
		// n8n-core's process-wide SSH tunnel reaper keeps an interval; stop it as n8n does on shutdown.
		try {
			// eslint-disable-next-line @typescript-eslint/no-require-imports
			const { SSHClientsManager } = require('n8n-core/dist/execution-engine/ssh-clients-manager');
			if (Container.has(SSHClientsManager)) (Container.get(SSHClientsManager) as { onShutdown(): void }).onShutdown();
		} catch {
			// best effort; process.exit below ends the process anyway
		}
		fs.rmSync(pki.dir, { recursive: true, force: true });
		if (n8nUserFolder) removeN8nUserFolder();
	}
	process.exit(exitCode);
}

main().catch((error) => {
	console.error('BENCHMARK FAILED:', error);
	process.exit(1);
});
