/**
 * Peak memory while the Graph sender sends a 150 MB attachment (Graph's maximum) streamed from a
 * file through an upload session, measured in a fresh Node process (test/memory/graph-child.js)
 * that requires the built package from dist/. The baseline child sends a 4 MB attachment the same
 * way (same modules and code path: draft, upload session, send; about 36 MB above an idle process
 * that only signed in). Sending holds one upload slice (3.75 MiB) at a time, so the bound is the
 * baseline + 50 MB: a third of the attachment, far below holding it (+143 MiB).
 * The fake Graph and identity run in this process, out of the measurement.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { DIST, mb, medianPeak, runChild, RUNS } from './memory-child';
import { RCPT, SENDER, startGraphFixture, TENANT, type GraphFixture } from '../transports/graph/graph-fixture';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

const CHILD = path.join(__dirname, 'graph-child.js');
const ATTACHMENT_BYTES = 150_000_000; // 150 MB, under the 150 MiB MaxSendSize with the body
const ATTACHMENT_MB = mb(ATTACHMENT_BYTES / 1024);
const BASELINE_BYTES = 4 * 1024 * 1024;
const BOUND_MB = 50;

/** Writes `size` random bytes to `file` in 8 MiB pieces; returns their SHA-256. */
function writeRandomFile(file: string, size: number): string {
	const hash = createHash('sha256');
	const out = fs.openSync(file, 'w');
	try {
		for (let written = 0; written < size; ) {
			const chunk = randomBytes(Math.min(8 * 1024 * 1024, size - written));
			hash.update(chunk);
			fs.writeSync(out, chunk);
			written += chunk.length;
		}
	} finally {
		fs.closeSync(out);
	}
	return hash.digest('hex');
}

let fx: GraphFixture;
let tmp: string;

beforeAll(async () => {
	if (!fs.existsSync(path.join(DIST, 'transports/graph/graph-sender.js'))) {
		throw new Error('dist/transports/graph/graph-sender.js is missing: the memory tests measure the built package, run `npm run build` first (npm test does)');
	}
	fx = await startGraphFixture();
	tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-graph-memory-'));
});

afterAll(async () => {
	await fx?.close();
	if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

it('Graph: sending a 150 MB attachment streamed from a file through an upload session stays below the 4 MB baseline + 50 MB', async () => {
	const file = path.join(tmp, 'huge.bin');
	const expected = writeRandomFile(file, ATTACHMENT_BYTES);
	const small = path.join(tmp, 'small.bin');
	writeRandomFile(small, BASELINE_BYTES);

	const job = { mode: 'graph-send', graphUrl: fx.graph.url, authorityHost: fx.idp.authorityHost, tenantId: TENANT, clientId: fx.clientId, clientSecret: fx.secret, mailbox: SENDER, rcpt: RCPT };
	const idle = await runChild(CHILD, { ...job, subject: 'peak memory: baseline', file: small });
	fx.graph.deliveries.length = 0;
	const got: Array<Array<{ name: string; size: number; sha256: string }>> = [];
	const { peak, peaks, results } = await medianPeak(CHILD, { ...job, subject: 'peak memory: 150 MB attachment', file }, async () => {
		// each delivery is checked and dropped before the next run (the fake keeps its file on disk)
		got.push(fx.graph.deliveries.map((d: { attachments: Array<{ name: string; size: number; sha256: string }> }) => d.attachments.map(({ name, size, sha256 }) => ({ name, size, sha256 }))).flat());
		fx.graph.deliveries.length = 0;
	});
	const baseline = mb(idle.maxRssKiB);
	const intact = got.every((atts) => atts.length === 1 && atts[0].sha256 === expected && atts[0].size === ATTACHMENT_BYTES);
	const limit = Math.round((baseline + BOUND_MB) * 10) / 10;
	const bounded = peak < limit;
	record({
		transport: 'graph',
		kind: 'memory',
		name: 'send 150 MB attachment, peak RSS',
		survived: intact && bounded,
		behaviour: `a 150 MB (${ATTACHMENT_MB} MiB) attachment streamed from a file through a Graph upload session (draft, 3.75 MiB slices, send) to the fake Graph${intact ? ' (SHA-256 matches at the fake)' : ' (SHA-256 DIFFERS at the fake)'}: peak RSS ${peak} MB in a fresh process (median of ${peaks.join(' / ')}), baseline (the same send with a 4 MB attachment) ${baseline} MB, bound (baseline + ${BOUND_MB} MB) ${limit} MB`,
		value: peak,
		unit: 'MB',
		sent: RUNS,
		delivered: got.filter((atts) => atts.length === 1 && atts[0].sha256 === expected).length,
		lost: 0,
		duplicated: got.filter((atts) => atts.length > 1).length,
	});
	for (const send of results) expect(send).toMatchObject({ attempts: 1, response: expect.stringMatching(/^202/) });
	expect(got).toEqual(Array(RUNS).fill([{ name: 'huge.bin', size: ATTACHMENT_BYTES, sha256: expected }]));
	expect(peak).toBeLessThan(limit);
}, 600_000);
