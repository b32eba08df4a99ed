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
