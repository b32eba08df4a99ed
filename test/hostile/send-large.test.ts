/**
 * Huge, zero-byte and many attachments: a 50 MB file streamed from n8n's filesystem binary
 * store, empty files, and 200 attachments on one message, next to an item that must fail;
 * compared at the SMTP peer by SHA-256.
 */
import { createHash, randomBytes } from 'node:crypto';

import type { InputItem } from '../harness/n8n-run';
import { PER_ITEM_PARAMETERS, record, runBatch, startPeer, type Peer } from './send-harness';

const MB = 1024 * 1024;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let peer: Peer;
beforeAll(async () => {
	// 50 MB of attachment is about 68 MB of base64 on the wire
	peer = await startPeer({ maxSize: 100 * MB });
});
afterAll(async () => peer?.close());

function item(caseId: string, files: Array<{ data: Buffer; fileName: string }>): InputItem {
	return {
		json: { caseId, from: 'sender@example.com', to: 'rcpt@example.org', subject: `large ${caseId}`, format: 'text', text: 'see attached', note: '', attachments: files.map((_, k) => `f${k}`).join(',') },
		binary: Object.fromEntries(files.map((f, k) => [`f${k}`, { ...f, mimeType: 'application/octet-stream', exactFileName: true }])),
	};
}

it('a 50 MB, a zero-byte and 200 attachments arrive byte for byte; a bad item among them fails alone', async () => {
	const huge = randomBytes(50 * MB);
	const many = Array.from({ length: 200 }, (_, k) => ({ data: k % 10 === 0 ? Buffer.alloc(0) : randomBytes(k * 37), fileName: `part-${k}.bin` }));
	const cases = [
		{ caseId: 'huge', files: [{ data: huge, fileName: 'dump.bin' }, { data: Buffer.alloc(0), fileName: 'empty.txt' }] },
		{ caseId: 'bad', files: [{ data: Buffer.from('x'), fileName: 'bad\u0000name.txt' }] },
		{ caseId: 'many', files: many },
	];
	const { run, delivered } = await runBatch(peer, cases.map((c) => item(c.caseId, c.files)), { ...PER_ITEM_PARAMETERS, options: { ...(PER_ITEM_PARAMETERS.options as object), maxAttachmentSizeMb: 60 } });

	const summary = (files: Array<{ data: Buffer; fileName: string }>) => files.map((f) => ({ name: f.fileName, size: f.data.length, sha256: sha256(f.data) }));
	const atPeer = (caseId: string) =>
		(delivered.get(caseId) ?? []).map((d) => d.mail.attachments.map((a) => ({ name: a.filename, size: a.content.length, sha256: sha256(a.content) })));
	const results = {
		huge: atPeer('huge'),
		bad: { sent: delivered.has('bad'), error: (run.output[1]?.json.error as { message?: string } | undefined)?.message },
		many: atPeer('many'),
	};
	const expected = {
		huge: [summary(cases[0].files)],
		bad: { sent: false, error: expect.stringMatching(/^Attachments file name: contains the control character U\+0000/) },
		many: [summary(many)],
	};
	const survived = !run.error && JSON.stringify(results.huge) === JSON.stringify(expected.huge) && JSON.stringify(results.many) === JSON.stringify(expected.many) && !results.bad.sent;
	record({
		transport: 'smtp',
		kind: 'hostile',
		name: 'send-huge-zero-byte-and-many-attachments',
		survived,
		behaviour: 'a 50 MB attachment streamed from the filesystem binary store, zero-byte files and 200 attachments on one message arrive with matching SHA-256; an item with a bad file name fails alone',
		cases: cases.reduce((n, c) => n + c.files.length, 0),
		sent: 2,
		delivered: [...delivered.keys()].filter((k) => k !== 'bad').length,
		lost: 2 - [...delivered.keys()].filter((k) => k !== 'bad').length,
		duplicated: [...delivered.values()].filter((d) => d.length > 1).length,
	});
	expect(run.error).toBeUndefined();
	expect(results).toEqual(expected);
}, 180_000);

it('pathological address and header sizes (the address-parser CVE shapes) finish quickly: delivered as meant or refused naming the field', async () => {
	const cases = [
		// GHSA-rcmh-qjqh-p98v: 3000 nested groups made the old parser recurse until RangeError
		{ caseId: 'nested-groups', to: `${'g:'.repeat(3000)}a@example.org${';'.repeat(3000)}`, want: ['a@example.org'] },
		// GHSA-2x7j-588g-ccc2: a megabyte of separators was quadratic
		{ caseId: 'megabyte-of-commas', to: `${','.repeat(MB)}b@example.org`, want: ['b@example.org'] },
		{ caseId: 'unclosed-comments', to: `${'('.repeat(100_000)}c@example.org`, want: ['c@example.org'] },
		{ caseId: 'unclosed-angles', to: `${'<'.repeat(100_000)}d@example.org`, want: ['d@example.org'] },
		{ caseId: 'long-display-name', to: `"${'N'.repeat(100_000)}" <e@example.org>`, want: ['e@example.org'] },
		{ caseId: 'long-subject', to: 'f@example.org', subject: 'S'.repeat(100_000), want: ['f@example.org'] },
	];
	const started = Date.now();
	const { run, delivered } = await runBatch(
		peer,
		cases.map((c) => ({ json: { caseId: c.caseId, from: 'sender@example.com', to: c.to, subject: c.subject ?? c.caseId, format: 'text', text: 'x', note: '', attachments: '' } })),
	);
	const elapsedMs = Date.now() - started;
	const outcome = cases.map((c, i) => {
		const error = run.output[i]?.json.error as { message?: string; code?: string } | undefined;
		const got = delivered.get(c.caseId) ?? [];
		const refusedClearly = got.length === 0 && error?.code === 'INVALID_INPUT' && /^To: /.test(String(error.message));
		const deliveredAsMeant = got.length === 1 && JSON.stringify(got[0].envelope.to) === JSON.stringify(c.want) && (c.subject === undefined || got[0].mail.subject === c.subject);
		return { caseId: c.caseId, ok: refusedClearly || deliveredAsMeant, refused: refusedClearly };
	});
	const refused = outcome.filter((o) => o.refused).map((o) => o.caseId);
	record({
		transport: 'smtp',
		kind: 'hostile',
		name: 'send-pathological-address-sizes',
		survived: !run.error && outcome.every((o) => o.ok) && elapsedMs < 60_000,
		behaviour: `nested groups x3000, 1 MB of commas, 100k unclosed comments/angles, a 100 KB display name and a 100 KB subject: each delivered to the meant address or refused naming To (refused: ${refused.join(', ') || 'none'}), in ${Math.round(elapsedMs / 1000)} s for all`,
		cases: cases.length,
		sent: cases.length - refused.length,
		delivered: delivered.size,
		lost: cases.length - refused.length - delivered.size,
		duplicated: [...delivered.values()].filter((d) => d.length > 1).length,
	});
	expect(run.error).toBeUndefined();
	expect(outcome.filter((o) => !o.ok)).toEqual([]);
	expect(elapsedMs).toBeLessThan(60_000);
}, 120_000);
