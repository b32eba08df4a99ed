/**
 * XML's special characters and non-ASCII text through Exchange Web Services, both ways: subjects,
 * text and HTML bodies and attachment file names with & < > " ' ]]>, CDATA and entity look-alikes,
 * emoji, RTL text, combining marks and CJK are sent with EwsSender (the MIME travels base64
 * inside the SOAP body), checked in what the fake EWS server holds, then read back from the
 * Inbox with EwsReader (where they travel as XML text and attributes) and must come back exactly;
 * folder names of the same kind are listed, read from and moved into. A value with a character
 * XML 1.0 cannot carry is refused naming its field, and nothing is sent.
 */
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { simpleParser } from 'mailparser';

import type { IncomingMessage, UnreadableMessage } from '../../model/incoming-message';
import type { OutgoingMessage } from '../../model/outgoing-message';
import { createEwsClient } from '../../transports/ews/ews-client';
import { EwsReader } from '../../transports/ews/ews-reader';
import { EwsSender } from '../../transports/ews/ews-sender';
import type { EwsClient } from '../../transports/ews/types';
import { runNode, type InputItem } from '../harness/n8n-run';
import { describeFailure, difference, seedFor } from './send-harness';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeEws } = require('../peers/fake-ews');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

type FakeEws = Awaited<ReturnType<typeof startFakeEws>>;
type SentRecord = { mailbox: string; mime: Buffer };
type HeldItem = { id: string; mime: Buffer; subject: string; folderId: string };

const USER = { username: 'hostile', domain: 'CONTOSO', password: 'Ews-hostile-Passw0rd', mailbox: 'hostile@contoso.example' };
const RUNS = 40;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let pki: ReturnType<typeof sharedTestPki>;
let ews: FakeEws;
const clients: EwsClient[] = [];
beforeAll(async () => {
	pki = sharedTestPki();
	ews = await startFakeEws({ pki });
	ews.addMailbox({ address: USER.mailbox });
	ews.addUser(USER);
});
afterAll(async () => {
	for (const client of clients) await client.close().catch(() => undefined);
	await ews?.close();
});

function client(): EwsClient {
	const made = createEwsClient({
		url: ews.url,
		auth: { type: 'basic', username: USER.username, password: USER.password },
		version: 'Exchange2013_SP1',
		mailbox: '',
		impersonate: false,
		trust: { rejectUnauthorized: true, ca: pki.ca },
	});
	clients.push(made);
	return made;
}

// Every XML special in the places a careless writer breaks: text, attribute-like, CDATA end,
// entity and character-reference look-alikes that must stay literal.
const XML_SPECIALS = ['&', '<', '>', '"', "'", ']]>', '<![CDATA[x]]>', '&amp;', '&lt;b&gt;', '&#x41;', '&#65;', '</t:Subject>', '<m:Items/>', '"\'', '<!-- c -->', '<?xml version="1.0"?>'];
const WORLD = ['Grüße', 'שלום עולם', 'مرحبا بالعالم', '日本語のメール', '李小龍', 'Zoë', 'e\u0301\u0327\u0308', 'ﬁ', '😀', '👨\u200d👩\u200d👧', '🏳️‍🌈', '\u200e', '\u200f', '\u202e', '\u00a0', '\u3000', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', 'Ω≈ç√∫'];
const piece = fc.oneof(fc.constantFrom(...XML_SPECIALS), fc.constantFrom(...WORLD), fc.stringMatching(/^[A-Za-z0-9 ]{1,10}$/));
const phrase = (maxLength: number) => fc.array(piece, { minLength: 1, maxLength }).map((p) => p.join(''));
// Subjects end up in a header (outer whitespace is not significant there), file names must be usable names.
const subjectArb = phrase(8)
	.map((s) => s.trim())
	.filter((s) => s.length > 0 && !/=\?[^?\s]+\?[bq]\?[^?\s]*\?=/i.test(s));
const fileNameArb = fc
	.tuple(phrase(4), fc.constantFrom('.txt', '.pdf', '.tar.gz', ''))
	.map(([base, extension]) => `${base.replace(/[/\\]/g, '_').trim()}${extension}`)
	.filter((name) => name.length > 0 && !['.', '..'].includes(name) && !/=\?[^?\s]+\?[bq]\?[^?\s]*\?=/i.test(name));
const roundTripCase = fc.record({
	subject: subjectArb,
	text: fc.array(fc.oneof(piece, fc.constantFrom('\n', ' ')), { minLength: 1, maxLength: 14 }).map((p) => p.join('')),
	html: phrase(6).map((inner) => `<p dir="auto">${escapeHtml(inner)}</p>`),
	fileName: fileNameArb,
	size: fc.integer({ min: 0, max: 3000 }),
	seed: fc.nat(),
});
type RoundTripCase = typeof roundTripCase extends fc.Arbitrary<infer T> ? T : never;

function escapeHtml(text: string): string {
	return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
function bytes(size: number, seed: number): Buffer {
	const out = Buffer.alloc(size);
	let x = seed | 1;
	for (let i = 0; i < size; i++) {
		x = (x * 1103515245 + 12345) & 0x7fffffff;
		out[i] = x >> 16;
	}
	return out;
}

const FIXED: RoundTripCase[] = [
	{ subject: `& < > " ' ]]> <![CDATA[x]]> &amp; &#65;`, text: `Body & <tags> "quoted" 'single' ]]> end`, html: '<p title="a &amp; b">&lt;b&gt; &amp; ]]&gt; &quot;x&quot;</p>', fileName: `a&b <c> "d" 'e' ]]>.txt`, size: 64, seed: 1 },
	{ subject: 'שלום עולם — مرحبا بالعالم 😀 e\u0301\u0327\u0308 日本語', text: 'RTL שלום\nemoji 👨\u200d👩\u200d👧\ncombining e\u0301\u0327\u0308\n', html: '<p dir="rtl">שלום 😀 ﬁ 𝔘𝔫𝔦</p>', fileName: 'Grüße 日本語 😀.pdf', size: 2048, seed: 2 },
	{ subject: '</t:Subject><t:Subject>injected', text: '</m:MimeContent><t:Body>x', html: '<p>&lt;/soap:Body&gt;</p>', fileName: '</t:Name>.bin', size: 10, seed: 3 },
];

const headerText = (value: string | undefined) => (value ?? '').trim();
const bodyText = (value: string | false | undefined) => (value || '').replace(/\r\n/g, '\n').replace(/\n+$/, '');

function outgoing(c: RoundTripCase, tag: string): OutgoingMessage {
	const content = bytes(c.size, c.seed);
	return {
		from: { address: USER.mailbox },
		to: [{ address: USER.mailbox }],
		cc: [],
		bcc: [],
		replyTo: [],
		subject: c.subject,
		text: c.text,
		html: c.html,
		headers: [{ name: 'X-Case', value: tag }],
		priority: 'normal',
		attachments: [{ filename: c.fileName, contentType: 'application/octet-stream', size: content.length, open: async () => Readable.from([content]) }],
	};
}

/** What differs between the case and a message as parsed from the fake's MIME or as the reader returned it. */
function compare(c: RoundTripCase, got: { subject?: string; text?: string | false; html?: string | false; attachments: Array<{ filename?: string; content?: Buffer }> }): string | undefined {
	if (headerText(got.subject) !== headerText(c.subject)) return difference('subject', headerText(c.subject), headerText(got.subject));
	if (bodyText(got.text) !== bodyText(c.text)) return difference('text', bodyText(c.text), bodyText(got.text));
	if (got.html !== undefined && bodyText(got.html) !== bodyText(c.html)) return difference('html', bodyText(c.html), bodyText(got.html));
	if (got.attachments.length !== 1) return `${got.attachments.length} attachments`;
	const [attachment] = got.attachments;
	if (attachment.filename !== c.fileName) return difference('attachment file name', c.fileName, attachment.filename ?? '');
	if (sha256(attachment.content ?? Buffer.alloc(0)) !== sha256(bytes(c.size, c.seed))) return `attachment bytes differ (${attachment.content?.length} of ${c.size})`;
	return undefined;
}

describe('EWS round trip of XML specials and non-ASCII', () => {
	it('subject, text, HTML and attachment file names: held by the fake as sent, read back exactly', async () => {
		const seed = seedFor('ews-round-trip');
		const cases = [...FIXED, ...fc.sample(roundTripCase, { numRuns: RUNS, seed })];
		const sender = new EwsSender(client());
		const sentBefore = (ews.sent as SentRecord[]).length;
		const tags = cases.map((_, i) => `ews-round-trip-${seed}-${i}`);
		for (const [i, c] of cases.entries()) await sender.send(outgoing(c, tags[i]));
		await sender.close();
		const problems: string[] = [];

		// What the fake EWS holds: the MIME the package uploaded, decoded from its base64.
		const sent = (ews.sent as SentRecord[]).slice(sentBefore);
		expect(sent).toHaveLength(cases.length);
		const heldByTag = new Map<string, Awaited<ReturnType<typeof simpleParser>>>();
		for (const record of sent) {
			const mail = await simpleParser(record.mime);
			heldByTag.set(String(mail.headers.get('x-case')), mail);
		}
		for (const [i, c] of cases.entries()) {
			const mail = heldByTag.get(tags[i]);
			const problem = mail ? compare(c, { subject: mail.subject, text: mail.text, html: mail.html, attachments: mail.attachments }) : 'not held by the fake';
			if (problem) problems.push(describeFailure('ews-round-trip (held)', seed, i, problem, c));
		}

		// Read back from the Inbox (EWS delivered the copies locally): as XML on the wire this time.
		const reader = new EwsReader(client());
		const ids = await reader.search('inbox', {}, { newestFirst: false, limit: 1000 });
		const inbox = ews.items(USER.mailbox, 'inbox') as HeldItem[];
		const tagOf = new Map<string, string>();
		for (const item of inbox) tagOf.set(item.id, /^X-Case: (.+)$/m.exec(item.mime.toString('utf8'))?.[1]?.trim() ?? '');
		const read = new Map<string, IncomingMessage | UnreadableMessage>();
		for await (const message of reader.fetch('inbox', ids, { includeHtml: true })) read.set(tagOf.get(message.id) ?? '', message);
		await reader.close();
		for (const [i, c] of cases.entries()) {
			const message = read.get(tags[i]);
			let problem: string | undefined;
			if (!message) problem = 'not read back';
			else if ('error' in message) problem = `read back as unreadable: ${message.error.message}`;
			else problem = compare(c, { subject: message.subject, text: message.text, html: message.html, attachments: message.attachments });
			if (problem) problems.push(describeFailure('ews-round-trip (read back)', seed, i, problem, c));
		}
		record({ transport: 'ews', kind: 'hostile', name: 'round-trip-xml-specials-and-unicode', survived: problems.length === 0, cases: cases.length, behaviour: `${cases.length} messages with XML specials (& < > " ' ]]> CDATA, entity look-alikes, SOAP tags) and non-ASCII (RTL, emoji, combining marks, CJK) in subject, text, HTML and file name: ${cases.length - problems.length} held by the fake and read back exactly` });
		expect(problems.slice(0, 5)).toEqual([]);
	});

	it('folder names with XML specials and non-ASCII: listed exactly, read from, moved into', async () => {
		const names = ['R&D <Labs>', `"Quotes" & 'apostrophes'`, 'End ]]> of CDATA', 'שלום 😀 e\u0301', '日本語フォルダ', '&amp; literal'];
		const reader = new EwsReader(client());
		const problems: string[] = [];
		const folderIds = new Map<string, string>();
		for (const name of names) {
			folderIds.set(name, ews.addFolder(USER.mailbox, name, 'msgfolderroot'));
			ews.deliver(USER.mailbox, Buffer.from(`Subject: in ${name}\r\nFrom: a@example.org\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n`), { folder: folderIds.get(name) });
		}
		const listed = await reader.listFolders();
		for (const name of names) {
			if (!listed.some((f) => f.name === name)) problems.push(`folder "${name}" not listed exactly (listed: ${listed.map((f) => f.name).join(' | ')})`);
			const ids = await reader.search(name, {}, { newestFirst: false, limit: 10 });
			const subjects: string[] = [];
			for await (const message of reader.fetch(name, ids, {})) subjects.push('error' in message ? `unreadable: ${message.error.message}` : message.subject);
			if (JSON.stringify(subjects) !== JSON.stringify([`in ${name}`])) problems.push(`folder "${name}": read ${JSON.stringify(subjects)}`);
		}
		// A move into each hostile name: the fake holds the message there afterwards.
		const source = names[0];
		const target = names[3];
		const ids = await reader.search(source, {}, { newestFirst: false, limit: 10 });
		const outcomes = await reader.apply(source, ids, { type: 'move', folder: target });
		if (!outcomes.every((o) => o.done)) problems.push(`move into "${target}": ${JSON.stringify(outcomes)}`);
		const moved = (ews.items(USER.mailbox, folderIds.get(target)) as HeldItem[]).map((item) => item.subject).sort();
		if (JSON.stringify(moved) !== JSON.stringify([`in ${source}`, `in ${target}`].sort())) problems.push(`after the move "${target}" holds ${JSON.stringify(moved)}`);
		await reader.close();
		record({ transport: 'ews', kind: 'hostile', name: 'folder-names-xml-specials-and-unicode', survived: problems.length === 0, cases: names.length, behaviour: `${names.length} folder names with XML specials and non-ASCII: ${problems.length ? `${problems.length} problems` : 'each listed exactly, read from, and a move into one landed there'}` });
		expect(problems).toEqual([]);
	});

	it('a value with a character XML 1.0 cannot carry is refused naming its field, and nothing is sent', async () => {
		const refusals: Array<{ where: string; code?: string; message: string }> = [];
		const attempt = async (where: string, run: () => Promise<unknown>) => {
			try {
				await run();
				refusals.push({ where, message: 'accepted' });
			} catch (error) {
				refusals.push({ where, code: (error as { code?: string }).code, message: (error as Error).message });
			}
		};
		// Reader values that travel as XML (restriction constants): refused before the request.
		const reader = new EwsReader(client());
		await reader.listFolders(); // the folder list is read once; the refusals below must not reach the server
		const afterListing = ews.requests.length;
		await attempt('subject filter', () => reader.search('inbox', { subjectContains: 'bell \u0007 here' }, { newestFirst: false, limit: 10 }));
		await attempt('from filter', () => reader.search('inbox', { from: 'a\u0001@example.org' }, { newestFirst: false, limit: 10 }));
		await reader.close();
		const readRequests = (ews.requests as Array<{ operation: string }>).slice(afterListing).filter((r) => ['FindItem', 'FindFolder'].includes(r.operation));

		// Send Email through EWS: the Subject and a file name go out in the MIME (base64 in the
		// SOAP body) but come back as XML text when read; the node refuses them by field.
		const sentBefore = (ews.sent as SentRecord[]).length;
		const credentials = {
			modernAuthEwsApi: {
				id: 'ewsHostile000001',
				name: 'Hostile EWS',
				data: { endpoint: 'url', url: ews.url, ewsAuth: 'basic', username: USER.username, password: USER.password, mailbox: '', serverVersion: 'Exchange2013_SP1', caCertificate: pki.ca, allowUnauthorizedCerts: false },
			},
		};
		const parameters = { authentication: 'ews', fromEmail: USER.mailbox, toEmail: USER.mailbox, subject: '={{ $json.subject }}', emailFormat: 'text', text: 'body', options: { attachments: 'file' } };
		const items: InputItem[] = [
			{ json: { subject: 'bad \u0001 subject' }, binary: { file: { data: Buffer.from('x'), fileName: 'ok.txt', mimeType: 'text/plain' } } },
			{ json: { subject: 'good subject, bad file name' }, binary: { file: { data: Buffer.from('x'), fileName: 'bad\u0002name.txt', mimeType: 'text/plain', exactFileName: true } } },
		];
		const { output, error } = await runNode({ type: 'modernAuthSendEmail', parameters, items, credentials, onError: 'continueRegularOutput' });
		expect(error).toBeUndefined();
		for (const [index, where] of ['Subject', 'attachment file name'].entries()) {
			const failed = output[index]?.json.error as { code?: string; message?: string } | undefined;
			refusals.push(failed ? { where, code: failed.code, message: String(failed.message) } : { where, message: 'accepted' });
		}
		const sentAfter = (ews.sent as SentRecord[]).length;

		const expectedField: Record<string, RegExp> = {
			'subject filter': /subject/i,
			'from filter': /from|sender/i,
			Subject: /^Subject\b/,
			'attachment file name': /file ?name|attachment/i,
		};
		const refused = refusals.filter((r) => r.code && r.message !== 'accepted');
		const unnamed = refusals.filter((r) => !expectedField[r.where].test(r.message));
		record({
			transport: 'ews',
			kind: 'hostile',
			name: 'xml-invalid-characters-refused',
			survived: refused.length === refusals.length && unnamed.length === 0 && sentAfter === sentBefore && readRequests.length === 0,
			cases: refusals.length,
			behaviour: `${refusals.length} values with U+0001/U+0002/U+0007 (subject and from filters, Subject, attachment file name): ${refusals.map((r) => `${r.where} ${r.code ?? 'accepted'}`).join(', ')}; ${sentAfter - sentBefore} sent, ${readRequests.length} searches sent`,
		});
		expect(refusals.map((r) => ({ where: r.where, refused: Boolean(r.code) }))).toEqual(Object.keys(expectedField).map((where) => ({ where, refused: true })));
		// The message names the field as the user knows it (not only as an element of the request).
		expect(unnamed.map((r) => `${r.where}: ${r.message}`)).toEqual([]);
		expect(refusals.filter((r) => r.where.endsWith('filter')).map((r) => r.code)).toEqual(['EWS_INVALID_XML_CHARACTER', 'EWS_INVALID_XML_CHARACTER']);
		expect(readRequests).toEqual([]);
		expect(sentAfter).toBe(sentBefore);
	});
});
