/**
 * Graph large-attachment benchmark (npm run bench:graph-large).
 *
 * What: one message with a 150 MB attachment (random bytes in a file, like n8n's filesystem
 * binary store) sent through the fake Graph, which runs in this (parent) process, by two paths,
 * each in a fresh child process so neither the fake nor the other path shares its memory:
 *   package      - our Graph sender: draft, createUploadSession, the file streamed in chunks from
 *                  disk, then send the draft.
 *   whole buffer - what n8n's Microsoft Outlook v2 node does (message create, then
 *                  messageAttachment add.operation.js, then message send): the binary read whole
 *                  into a Buffer (getBinaryDataBuffer), createUploadSession, PUT 4,000,000-byte
 *                  slices of that Buffer one after another, then POST /messages/{id}/send.
 * Reported: peak RSS growth over the child's RSS right before sending (sampled every 10 ms and the
 * kernel's maxRSS), time, and whether the fake holds the attachment byte for byte (sha256).
 * Target: package growth under 100 MB.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import {
	appOnlyCredentialData,
	baselineToken,
	intEnv,
	MAILBOX,
	mb,
	printTable,
	retryAfterMs,
	sleep,
	TENANT,
	trustedPki,
	verdict,
	writeReport,
} from './graph-bench';
import { openPackageGraph } from './graph-package';
import { startBenchGraph, type BenchGraph } from './graph-peer';

const SIZE_MB = intEnv('BENCH_GRAPH_ATTACHMENT_MB', 150);
// MB as Exchange counts MaxSendSize (150 MB = 157,286,400 bytes for the whole message): 150,000,000 bytes of attachment fit.
const SIZE = SIZE_MB * 1_000_000;
const TARGET_GROWTH_MB = 100;
const CHILD_FLAG = 'BENCH_GRAPH_LARGE_CHILD';
/** n8n's add.operation.js PUTs 4,000,000-byte slices (the fake is told to accept any range size). */
const BUILTIN_CHUNK = 4e6;

type Mode = 'package' | 'whole-buffer';
interface ChildInput {
	mode: Mode;
	file: string;
	subject: string;
	graphUrl: string;
	credential: Record<string, unknown>;
	tokenEndpoint: string;
}
interface ChildResult {
	mode: Mode;
	rssBeforeMb: number;
	peakRssMb: number;
	maxRssMb: number;
	growthMb: number;
	seconds: number;
}

// ----------------------------------------------------------------------------- child side
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

async function sendWithPackage(input: ChildInput) {
	const sender = await (await openPackageGraph(input.credential)).sender(MAILBOX, 4);
	try {
		await sender.verify();
		return async () => {
			await sender.send({
				from: { address: MAILBOX },
				to: [{ address: 'ops@example.org' }],
				cc: [],
				bcc: [],
				replyTo: [],
				subject: input.subject,
				text: 'The large file is attached.',
				attachments: [{ filename: 'large.bin', contentType: 'application/octet-stream', size: fs.statSync(input.file).size, open: async () => fs.createReadStream(input.file) }],
				headers: [],
				priority: 'normal',
				saveToSentItems: true,
			});
			await sender.close();
		};
	} catch (error) {
		await sender.close();
		throw error;
	}
}

/** Message create -> attachment add (upload session from one Buffer) -> message send, as n8n's Outlook v2 node chains them. */
async function sendWholeBuffer(input: ChildInput) {
	const token = await baselineToken(input.tokenEndpoint);
	const base = `${input.graphUrl}/v1.0/users/${encodeURIComponent(MAILBOX)}`;
	const call = async (method: string, url: string, body?: unknown, auth = true): Promise<Record<string, unknown>> => {
		for (let attempt = 1; ; attempt++) {
			const response = await fetch(url, {
				method,
				headers: { ...(auth ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
				body: body === undefined ? undefined : JSON.stringify(body),
			});
			const text = await response.text();
			if ((response.status === 429 || response.status === 503) && attempt < 10) {
				await sleep(retryAfterMs(response, 1000));
				continue;
			}
			if (response.status >= 300) throw new Error(`${method} ${url}: ${response.status} ${text.slice(0, 300)}`);
			return text ? JSON.parse(text) : {};
		}
	};
	return async () => {
		const draft = await call('POST', `${base}/messages`, {
			subject: input.subject,
			body: { contentType: 'Text', content: 'The large file is attached.' },
			toRecipients: [{ emailAddress: { address: 'ops@example.org' } }],
		});
		const dataBuffer = await fs.promises.readFile(input.file); // getBinaryDataBuffer
		const session = await call('POST', `${base}/messages/${draft.id}/attachments/createUploadSession`, {
			AttachmentItem: { attachmentType: 'file', name: 'large.bin', size: dataBuffer.length },
		});
		const uploadUrl = String(session.uploadUrl);
		for (let uploaded = 0; uploaded < dataBuffer.length; uploaded += BUILTIN_CHUNK) {
			const end = Math.min(uploaded + BUILTIN_CHUNK, dataBuffer.length);
			const response = await fetch(uploadUrl, {
				method: 'PUT',
				headers: { 'content-type': 'application/octet-stream', 'content-range': `bytes ${uploaded}-${end - 1}/${dataBuffer.length}` },
				body: dataBuffer.subarray(uploaded, end),
			});
			const text = await response.text();
			if (response.status >= 300) throw new Error(`upload chunk at ${uploaded}: ${response.status} ${text.slice(0, 300)}`);
		}
		await call('POST', `${base}/messages/${draft.id}/send`);
	};
}

async function child(input: ChildInput) {
	// Sign in and load everything first: the growth measured is what sending costs.
	const send = input.mode === 'package' ? await sendWithPackage(input) : await sendWholeBuffer(input);
	global.gc?.();
	await sleep(200);
	const rssBefore = process.memoryUsage.rss();
	const sampler = new RssSampler();
	sampler.start();
	const start = performance.now();
	await send();
	const seconds = (performance.now() - start) / 1000;
	const peak = sampler.stop();
	const maxRss = process.resourceUsage().maxRSS * 1024;
	const result: ChildResult = {
		mode: input.mode,
		rssBeforeMb: mb(rssBefore),
		peakRssMb: mb(peak),
		maxRssMb: mb(maxRss),
		growthMb: mb(Math.max(peak, maxRss) - rssBefore),
		seconds,
	};
	process.stdout.write(`\n${JSON.stringify(result)}\n`);
}

function runChild(input: ChildInput): Promise<ChildResult> {
	return new Promise((resolve, reject) => {
		const proc = spawn(process.execPath, ['--expose-gc', __filename], { env: { ...process.env, [CHILD_FLAG]: JSON.stringify(input) }, stdio: ['ignore', 'pipe', 'inherit'] });
		let out = '';
		proc.stdout.on('data', (d) => (out += d));
		proc.on('error', reject);
		proc.on('exit', (code) => {
			const last = out.trim().split('\n').pop() ?? '';
			if (code !== 0) return reject(new Error(`${input.mode} child exited ${code}: ${out.slice(-2000)}`));
			try {
				resolve(JSON.parse(last));
			} catch {
				reject(new Error(`${input.mode} child printed no result: ${out.slice(-2000)}`));
			}
		});
	});
}

// ---------------------------------------------------------------------------- parent side
async function main() {
	const pki = trustedPki();
	if (!pki) return;
	const startedAt = performance.now();
	const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-bench-large-'));
	let graph: BenchGraph | undefined;
	let exitCode = 0;
	try {
		graph = await startBenchGraph({ pki, maxSendSize: 150 * 1024 * 1024, uploadChunkMultiple: 1 });
		const idp = graph.idp;
		const file = path.join(work, 'large.bin');
		const hash = createHash('sha256');
		const out = fs.openSync(file, 'w');
		for (let written = 0; written < SIZE; written += 8 * 1024 * 1024) {
			const chunk = randomBytes(Math.min(8 * 1024 * 1024, SIZE - written));
			hash.update(chunk);
			fs.writeSync(out, chunk);
		}
		fs.closeSync(out);
		const sha256 = hash.digest('hex');
		console.log(`Graph large-attachment benchmark: one message with a ${SIZE_MB} MB attachment (${SIZE} bytes) to the fake Graph (in the parent process) over HTTPS`);
		console.log(`  ${os.cpus().length} CPUs (load average ${os.loadavg()[0].toFixed(1)}), Node ${process.version}; each path in a fresh child process (--expose-gc, gc before the send)`);

		const results: Array<ChildResult & { intact: boolean }> = [];
		for (const mode of ['package', 'whole-buffer'] as const) {
			const subject = `Large attachment via ${mode} ${randomBytes(4).toString('hex')}`;
			process.stdout.write(`  ${mode.padEnd(12)} ... `);
			const result = await runChild({ mode, file, subject, graphUrl: graph.baseUrl, credential: appOnlyCredentialData(idp.authorityHost, graph.baseUrl), tokenEndpoint: idp.tokenEndpoint(TENANT) });
			const held = graph.deliveries().filter((d) => d.subject === subject).flatMap((d) => d.attachments);
			const intact = held.length === 1 && held[0].sha256 === sha256 && held[0].size === SIZE;
			results.push({ ...result, intact });
			console.log(`RSS +${result.growthMb.toFixed(0)} MB (from ${result.rssBeforeMb.toFixed(0)} MB), ${result.seconds.toFixed(1)} s, ${intact ? 'arrived byte for byte' : `NOT INTACT: ${JSON.stringify(held)}`}`);
			if (!intact) exitCode = 1;
		}
		printTable(
			['path', 'peak RSS growth', 'RSS before', 'time', 'attachment at the fake'],
			results.map((r) => [r.mode === 'package' ? 'package (streamed upload session)' : 'whole buffer (n8n Outlook v2)', `${r.growthMb.toFixed(0)} MB`, `${r.rssBeforeMb.toFixed(0)} MB`, `${r.seconds.toFixed(1)} s`, r.intact ? 'sha256 equal' : 'DIFFERENT']),
		);
		const pkg = results.find((r) => r.mode === 'package')!;
		const whole = results.find((r) => r.mode === 'whole-buffer')!;
		const targets = { growthMb: { target: `< ${TARGET_GROWTH_MB} MB`, value: pkg.growthMb, met: pkg.growthMb < TARGET_GROWTH_MB } };
		console.log('targets');
		console.log(`  package peak RSS growth ${pkg.growthMb.toFixed(0)} MB (whole buffer ${whole.growthMb.toFixed(0)} MB, ${(whole.growthMb / Math.max(pkg.growthMb, 1)).toFixed(1)}x)   (target ${targets.growthMb.target}) ${verdict(targets.growthMb.met)}`);
		const written = writeReport('graph-large-attachment', { settings: { bytes: SIZE, builtinChunk: BUILTIN_CHUNK }, results, targets, totalSeconds: (performance.now() - startedAt) / 1000 });
		console.log(`results: ${written}`);
	} catch (error) {
		exitCode = 1;
		console.error('');
		console.error('BENCHMARK FAILED:', error instanceof Error ? (error.stack ?? error.message) : error);
	} finally {
		await graph?.close();
		fs.rmSync(work, { recursive: true, force: true });
	}
	process.exit(exitCode);
}

if (process.env[CHILD_FLAG]) {
	child(JSON.parse(process.env[CHILD_FLAG]!)).then(
		() => process.exit(0),
		(error) => {
			console.error(error instanceof Error ? (error.stack ?? error.message) : error);
			process.exit(1);
		},
	);
} else {
	main().catch((error) => {
		console.error('BENCHMARK FAILED:', error);
		process.exit(1);
	});
}
