/**
 * Hostile and odd content for Send Email, property-based: subjects, text and HTML bodies and
 * attachment file names with RTL text, emoji, combining marks, zero-width characters, very
 * long lines, only whitespace, path separators and odd lengths; zero-byte and many
 * attachments. Each item arrives at the SMTP peer as asked (compared after mailparser), or
 * fails with an error naming its field while the rest of the run is delivered.
 */
import fc from 'fast-check';
import { createHash } from 'node:crypto';

import type { InputItem } from '../harness/n8n-run';
import { describeFailure, difference, record, runBatch, seedFor, startPeer, type Delivered, type Peer } from './send-harness';

const RUNS = 120;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let peer: Peer;
beforeAll(async () => {
	peer = await startPeer();
});
afterAll(async () => peer?.close());

const WORLD = ['Hello', 'שלום עולם', 'مرحبا بالعالم', 'Zoë', '李小龍', '😀', '👨\u200d👩\u200d👧', 'e\u0301\u0327\u0308', '\u200b', '\u200d', '\u200e', '\u200f', '\u00a0', '\u3000', '\ufeff', '=', '=?', '?=', '%', '&amp;', '<', '>'];
const worldPiece = fc.oneof(fc.constantFrom(...WORLD), fc.stringMatching(/^[A-Za-z0-9 ]{1,12}$/));
const spaces = fc.constantFrom(' ', '  ', '\t', ' \t ');

const subject = fc.oneof(
	fc.array(fc.oneof(worldPiece, spaces, fc.constantFrom('Lorem ipsum dolor sit amet '.repeat(12), 'x'.repeat(400))), { maxLength: 10 }).map((p) => p.join('')),
	fc.array(spaces, { minLength: 1, maxLength: 4 }).map((p) => p.join('')),
).filter((s) => !/=\?[^?\s]+\?[bq]\?[^?\s]*\?=/i.test(s));

const body = fc
	.array(
		fc.oneof(
			worldPiece,
			spaces,
			// line breaks of every kind, SMTP dot-stuffing and mbox "From " lines, very long lines
			fc.constantFrom('\n', '\r\n', '\n.\n', '\r\n..\r\n', '\nFrom me\n', 'x'.repeat(5000), ' '.repeat(300), '=\r\n', '\u0000', '\u001b[0m'),
		),
		{ maxLength: 14 },
	)
	.map((p) => p.join(''));

const fileName = fc
	.record({
		directory: fc.constantFrom('', '', '', '../../', '/etc/', 'a\\', 'C:', 'C:\\Users\\x\\', './', '..\\..\\', 'dir/sub\\'),
		base: fc.array(fc.oneof(worldPiece, fc.constantFrom('.', '..', ' ', '.hidden', 'n'.repeat(260), 'passwd', '"quoted"', "it's", ';', ',')), { maxLength: 5 }).map((p) => p.join('')),
		extension: fc.constantFrom('.txt', '', '.tar.gz', '.', '.PDF'),
	})
	.map(({ directory, base, extension }) => directory + base + extension)
	.filter((name) => !/=\?[^?\s]+\?[bq]\?[^?\s]*\?=/i.test(name));

const attachment = fc.record({
	fileName,
	size: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4000 })),
	mimeType: fc.constantFrom('application/octet-stream', 'application/pdf', 'image/png'),
	seed: fc.nat(),
});

const contentCase = fc.record({
	subject,
	format: fc.constantFrom('text', 'html', 'both'),
	text: body,
	html: body.map((b) => `<p dir="auto">${b}</p>`),
	attachments: fc.oneof({ weight: 10, arbitrary: fc.array(attachment, { maxLength: 4 }) }, { weight: 1, arbitrary: fc.array(attachment, { minLength: 40, maxLength: 60 }) }),
});
type ContentCase = typeof contentCase extends fc.Arbitrary<infer T> ? T : never;

function bytes(size: number, seed: number): Buffer {
	const out = Buffer.alloc(size);
	let x = seed | 1;
	for (let i = 0; i < size; i++) {
		x = (x * 1103515245 + 12345) & 0x7fffffff;
		out[i] = x >> 16;
	}
	return out;
}

function itemFor(c: ContentCase, caseId: string): InputItem {
	const binary: NonNullable<InputItem['binary']> = {};
	c.attachments.forEach((a, k) => {
		binary[`file${k}`] = { data: bytes(a.size, a.seed), fileName: a.fileName, mimeType: a.mimeType, exactFileName: true };
	});
	return {
		json: {
			caseId,
			from: 'Sender <sender@example.com>',
			to: 'rcpt@example.org',
			subject: c.subject,
			format: c.format,
			text: c.text,
			html: c.html,
			attachments: c.attachments.map((_, k) => `file${k}`).join(','),
			note: '',
		},
		...(c.attachments.length ? { binary } : {}),
	};
}

/**
 * The specification, written out independently of the node: a file name keeps its last path
 * component only (no directory, no drive), outer spaces go, and a name with nothing left
 * falls back to the binary property's name.
 */
function expectedFileName(given: string, property: string): string {
	const last = given.slice(Math.max(given.lastIndexOf('/'), given.lastIndexOf('\\')) + 1);
	const base = last.replace(/^[A-Za-z]:/, '').trim();
	return ['', '.', '..'].includes(base) ? property : base;
}

// Header whitespace at the ends is not significant (mailparser trims it); line ends are CRLF
// on the wire and LF after parsing, and a body always ends with one line break.
const headerText = (value: string | undefined) => (value ?? '').trim();
const bodyText = (value: string | false | undefined) => (value || '').replace(/\r\n/g, '\n').replace(/\n$/, '');

/**
 * A long or non-ASCII name goes out as RFC 2231 continuations (filename*0*=, filename*1=...),
 * which nodemailer writes correctly, but mailparser trims whitespace at the start of each
 * part; so only whitespace may differ.
 */
function sameFileName(want: string | undefined, have: string | undefined): boolean {
	if (want === undefined || have === undefined) return false;
	const squeeze = (name: string) => name.replace(/\s+/g, '');
	return want === have || squeeze(want) === squeeze(have);
}

function checkDelivered(c: ContentCase, got: Delivered[] | undefined, json: unknown): string | undefined {
	if (!got?.length) return `not delivered; node output ${JSON.stringify(json)}`;
	if (got.length > 1) return `delivered ${got.length} times`;
	const { mail } = got[0];
	if (headerText(mail.subject) !== headerText(c.subject)) return difference('subject', headerText(c.subject), headerText(mail.subject));
	// An empty plain-text alternative is left out, and mailparser then derives text from the HTML.
	const textExpected = c.format === 'text' || (c.format === 'both' && c.text !== '');
	if (textExpected && bodyText(mail.text) !== bodyText(c.text)) return difference('text', bodyText(c.text), bodyText(mail.text));
	if (c.format !== 'text' && bodyText(mail.html) !== bodyText(c.html)) return difference('html', bodyText(c.html), bodyText(mail.html));
	const want = c.attachments.map((a, k) => ({ filename: expectedFileName(a.fileName, `file${k}`), sha256: sha256(bytes(a.size, a.seed)), size: a.size, contentType: a.mimeType }));
	// mailparser guesses the type of an application/octet-stream part from its file name
	const have = mail.attachments.map((a, k) => ({ filename: sameFileName(want[k]?.filename, a.filename) ? want[k].filename : a.filename, sha256: sha256(a.content), size: a.content.length, contentType: want[k]?.contentType === 'application/octet-stream' ? want[k].contentType : a.contentType }));
	if (JSON.stringify(want) !== JSON.stringify(have)) return difference('attachments', JSON.stringify(want), JSON.stringify(have));
	if (have.some((a) => /[/\\]/.test(a.filename ?? ''))) return 'a path separator reached the peer in a file name';
	return undefined;
}

describe('hostile content (property-based, checked at the SMTP peer)', () => {
	it('subjects, bodies, attachment names and bytes arrive as asked', async () => {
		const property = 'send: subjects, bodies and attachments round-trip';
		const seed = seedFor(property);
		const cases = fc.sample(contentCase, { numRuns: RUNS, seed });
		const items = cases.map((c, i) => itemFor(c, String(i)));
		const { run, delivered, strays } = await runBatch(peer, items);
		const problems: string[] = [];
		cases.forEach((c, i) => {
			const problem = checkDelivered(c, delivered.get(String(i)), run.output[i]?.json);
			if (problem) problems.push(describeFailure(property, seed, i, problem, c));
		});
		if (strays.length) problems.push(`${strays.length} message(s) at the peer belong to no case`);
		const attachments = cases.reduce((n, c) => n + c.attachments.length, 0);
		record({
			transport: 'smtp',
			kind: 'hostile',
			name: 'send-content-round-trip',
			survived: problems.length === 0 && !run.error,
			behaviour: `subjects, text/HTML bodies (RTL, emoji, combining, zero-width, long lines, whitespace only) and ${attachments} attachments (path separators, leading dots, 255+ characters, zero bytes, 40-60 per message) delivered byte for byte; file names reduced to their last path component`,
			cases: cases.length,
			sent: cases.length,
			delivered: [...delivered.values()].filter((d) => d.length > 0).length,
			duplicated: [...delivered.values()].filter((d) => d.length > 1).length,
			lost: cases.length - delivered.size,
		});
		expect(run.error).toBeUndefined();
		expect(problems.slice(0, 3)).toEqual([]);
	});

	it('control characters, bidi overrides and encoded-word look-alikes in file names fail that item naming the field; the others arrive', async () => {
		const property = 'send: unsafe attachment file names are refused';
		const seed = seedFor(property);
		const poison = fc.constantFrom('\r\n', '\n', '\u0000', '\u0007', '\u001b', '\u007f', '\u0090', '\u202e', '\u202d', '\u2066', '\u2068', '=?utf-8?q?evil.exe?=', '=?UTF-8?B?ZXZpbC5leGU=?=');
		const hostile = fc.record({
			base: contentCase.filter((c) => c.attachments.length > 0 && c.attachments.length < 10),
			attack: fc.option(fc.record({ poison, at: fc.nat() }), { nil: undefined, freq: 2 }),
		});
		const cases = fc.sample(hostile, { numRuns: RUNS, seed });
		const items = cases.map(({ base, attack }, i) => {
			if (!attack) return itemFor(base, String(i));
			const attachments = base.attachments.map((a) => ({ ...a }));
			const target = attachments[attack.at % attachments.length];
			const at = attack.at % (target.fileName.length + 1);
			target.fileName = target.fileName.slice(0, at) + attack.poison + target.fileName.slice(at);
			return itemFor({ ...base, attachments }, String(i));
		});
		const { run, delivered, strays } = await runBatch(peer, items);
		const problems: string[] = [];
		cases.forEach(({ base, attack }, i) => {
			const out = run.output[i];
			if (!attack) {
				const problem = checkDelivered(base, delivered.get(String(i)), out?.json);
				if (problem) problems.push(describeFailure(property, seed, i, `good item: ${problem}`, base));
				return;
			}
			const error = out?.json.error as { message?: string; code?: string } | undefined;
			if (delivered.has(String(i))) problems.push(describeFailure(property, seed, i, 'item with an unsafe file name was sent', items[i].json));
			else if (error?.code !== 'INVALID_INPUT' || !String(error.message).startsWith('Attachments file name: ')) {
				problems.push(describeFailure(property, seed, i, `expected an error naming "Attachments file name", got ${JSON.stringify(out?.json)}`, items[i].json));
			}
		});
		if (strays.length) problems.push(`${strays.length} message(s) at the peer belong to no case`);
		const attacks = cases.filter((c) => c.attack).length;
		record({
			transport: 'smtp',
			kind: 'hostile',
			name: 'send-unsafe-file-names-refused',
			survived: problems.length === 0 && !run.error,
			behaviour: 'attachment file names with CR/LF, NUL, C0/C1 controls, bidi overrides or encoded-word look-alikes fail their item with INVALID_INPUT naming "Attachments file name"; the good items of the run arrive',
			cases: cases.length,
			sent: cases.length - attacks,
			delivered: delivered.size,
			lost: cases.length - attacks - delivered.size,
			duplicated: [...delivered.values()].filter((d) => d.length > 1).length,
		});
		expect(run.error).toBeUndefined();
		expect(problems.slice(0, 3)).toEqual([]);
		expect(attacks).toBeGreaterThan(RUNS / 4);
	});
});
