import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';

import { isUnreadable, type IncomingMessage, type ReadFilter, type UnreadableMessage } from '../../../model/incoming-message';
import type { AttachmentInfo, MessageSink } from '../../../transports/contracts';
import { createEwsClient } from '../../../transports/ews/ews-client';
import { EwsReader } from '../../../transports/ews/ews-reader';
import type { EwsAuth } from '../../../transports/ews/types';

/* eslint-disable @typescript-eslint/no-require-imports */
const { startFakeEws } = require('../../peers/fake-ews');
const { sharedTestPki } = require('../../peers/certs');
const MailComposer = require('nodemailer/lib/mail-composer');
/* eslint-enable @typescript-eslint/no-require-imports */

const OWNER = 'reader@contoso.example';
const SHARED = 'shared@contoso.example';
const PASSWORD = 'Reader-Pass-1';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const T0 = Date.parse('2026-11-02T08:00:00Z');
const HOUR = 3_600_000;

type FakeItem = { id: string; folderId: string; isRead: boolean; flagged: boolean; receivedAt: string; subject: string; mime: Buffer };
 
let ews: any;
let pki: { ca: string };
const readers: EwsReader[] = [];

function reader(options: { mailbox?: string; username?: string; pageSize?: number; fetchBatch?: number } = {}): EwsReader {
	const auth: EwsAuth = { type: 'basic', username: options.username ?? 'reader', password: PASSWORD };
	const client = createEwsClient({
		url: ews.url,
		auth,
		version: 'Exchange2013_SP1',
		mailbox: options.mailbox ?? '',
		impersonate: false,
		trust: { rejectUnauthorized: true, ca: pki.ca },
		retry: { attempts: 2, firstBackoffMs: 10, maxBackoffMs: 50 },
	});
	const made = new EwsReader(client, { pageSize: options.pageSize, fetchBatch: options.fetchBatch });
	readers.push(made);
	return made;
}

async function mime(fields: Record<string, unknown>): Promise<Buffer> {
	return new MailComposer({ from: 'Alice Sender <alice@fabrikam.example>', to: OWNER, text: 'body', ...fields }).compile().build();
}

function items(address = OWNER, folder = 'inbox'): FakeItem[] {
	return ews.items(address, folder);
}

async function drain(stream: Readable): Promise<Buffer> {
	const chunks: Buffer[] = [];
	for await (const chunk of stream) chunks.push(chunk as Buffer);
	return Buffer.concat(chunks);
}

function digestSink() {
	const attachments = new Map<string, Array<{ info: AttachmentInfo; sha256: string; length: number }>>();
	const raw = new Map<string, Buffer>();
	const sink: MessageSink = {
		async attachment(messageId, index, info, content) {
			const bytes = await drain(content);
			const list = attachments.get(messageId) ?? [];
			list[index] = { info, sha256: sha256(bytes), length: bytes.length };
			attachments.set(messageId, list);
		},
		async raw(messageId, content) {
			raw.set(messageId, await drain(content));
		},
	};
	return { sink, attachments, raw };
}

async function readAll(generator: AsyncGenerator<IncomingMessage | UnreadableMessage>): Promise<Array<IncomingMessage | UnreadableMessage>> {
	const out: Array<IncomingMessage | UnreadableMessage> = [];
	for await (const message of generator) out.push(message);
	return out;
}

function readable(list: Array<IncomingMessage | UnreadableMessage>): IncomingMessage[] {
	for (const m of list) if (isUnreadable(m)) throw new Error(`unexpected unreadable message: ${m.error.message}`);
	return list as IncomingMessage[];
}

function operations(from: number): string[] {
	return (ews.requests as Array<{ operation: string }>).slice(from).map((r) => r.operation);
}

beforeAll(async () => {
	pki = sharedTestPki();
	ews = await startFakeEws({ pki });
	ews.addMailbox({ address: OWNER, displayName: 'Reader' });
	ews.addMailbox({ address: SHARED, displayName: 'Shared Desk' });
	ews.addUser({ username: 'reader', password: PASSWORD, mailbox: OWNER, delegateOf: [SHARED] });
	ews.addUser({ username: 'outsider', password: PASSWORD, mailbox: 'outsider@contoso.example' });
	ews.addMailbox({ address: 'outsider@contoso.example' });
});

afterAll(async () => {
	for (const r of readers) await r.close().catch(() => {});
	await ews?.close();
});

describe('EWS reader: folders', () => {
	const special = 'R&D <Q4> "draft" \'x\'';
	const unicode = 'Überweisungen – 請求書';
	let specialId: string;
	let unicodeId: string;
	let childId: string;

	beforeAll(() => {
		specialId = ews.addFolder(OWNER, special);
		unicodeId = ews.addFolder(OWNER, unicode);
		childId = ews.addFolder(OWNER, 'Projects', 'inbox');
		ews.addFolder(OWNER, 'Deeper', childId);
	});

	it('lists the mail folders with display-name paths; path is the distinguished id or the folder id', async () => {
		const folders = await reader().listFolders();
		const byName = new Map(folders.map((f) => [f.name, f]));
		expect(byName.get('Inbox')).toMatchObject({ path: 'inbox', specialUse: '\\Inbox' });
		expect(byName.get('Sent Items')).toMatchObject({ path: 'sentitems', specialUse: '\\Sent' });
		expect(byName.get('Deleted Items')).toMatchObject({ path: 'deleteditems', specialUse: '\\Trash' });
		expect(byName.get('Inbox/Projects')).toMatchObject({ path: childId });
		expect(byName.get('Inbox/Projects/Deeper')).toBeDefined();
		expect(byName.get(special)).toMatchObject({ path: specialId });
		expect(byName.get(unicode)).toMatchObject({ path: unicodeId });
	});

	it('resolves distinguished names in any case, other spellings, display paths with & < > " \' and non-ASCII, and folder ids', async () => {
		const r = reader();
		const put = (folder: string, subject: string) => ews.deliver(OWNER, Buffer.from(`Subject: ${subject}\r\nFrom: a@fabrikam.example\r\n\r\nx\r\n`), { folder });
		const inInbox = put('inbox', 'in inbox');
		const inSent = put('sentitems', 'in sent');
		const inSpecial = put(specialId, 'in special');
		const inUnicode = put(unicodeId, 'in unicode');
		const inChild = put(childId, 'in child');
		const all = { newestFirst: true, limit: 100 };
		for (const name of ['INBOX', 'inbox', 'Inbox']) expect(await r.search(name, {}, all)).toContain(inInbox);
		for (const name of ['Sent Items', 'sentitems', 'SENT']) expect(await r.search(name, {}, all)).toContain(inSent);
		expect(await r.search(special, {}, all)).toEqual([inSpecial]);
		expect(await r.search(unicode, {}, all)).toEqual([inUnicode]);
		expect(await r.search('Inbox/Projects', {}, all)).toEqual([inChild]);
		expect(await r.search('inbox/projects', {}, all)).toEqual([inChild]);
		expect(await r.search(childId, {}, all)).toEqual([inChild]);
		// A name that differs only in one special character is another folder.
		await expect(r.search('R&D <Q4> "draft" x', {}, all)).rejects.toMatchObject({ code: 'EWS_FOLDER_NOT_FOUND' });
	});

	it('an unknown folder is EWS_FOLDER_NOT_FOUND naming the folders that exist', async () => {
		const error = await reader()
			.search('Nope/Nothing', {}, { newestFirst: true, limit: 5 })
			.catch((e: unknown) => e);
		expect(error).toMatchObject({ code: 'EWS_FOLDER_NOT_FOUND', message: 'Folder "Nope/Nothing" does not exist' });
		expect((error as { hint: string }).hint).toContain('Inbox/Projects');
		expect((error as { hint: string }).hint).toContain(special);
	});

	it('status gives TotalCount and UnreadCount from GetFolder', async () => {
		const folder = ews.addFolder(OWNER, 'Counted');
		for (let i = 0; i < 3; i++) ews.deliver(OWNER, await mime({ subject: `c${i}` }), { folder, isRead: i === 0 });
		const before = ews.requests.length;
		expect(await reader().status('Counted')).toEqual({ path: 'Counted', total: 3, unread: 2 });
		expect(operations(before)).toContain('GetFolder');
	});
});

describe('EWS reader: search', () => {
	let folder: string;
	const ids: Record<string, string> = {};

	beforeAll(async () => {
		folder = ews.addFolder(OWNER, 'Search');
		const put = async (key: string, fields: Record<string, unknown>, at: number, isRead = false) => {
			ids[key] = ews.deliver(OWNER, await mime(fields), { folder, isRead, receivedAt: new Date(at).toISOString() });
		};
		await put('plain', { subject: 'Weekly report', from: 'Bob <bob@fabrikam.example>', to: 'Team <team@contoso.example>' }, T0, true);
		await put('invoice', { subject: 'INVOICE 42 & <more>', from: 'Billing <billing@northwind.example>' }, T0 + HOUR);
		await put('attached', { subject: 'with file', attachments: [{ filename: 'a.bin', content: randomBytes(100) }] }, T0 + 2 * HOUR);
		await put('toCarol', { subject: 'for carol', to: 'Carol Jones <carol@contoso.example>' }, T0 + 3 * HOUR, true);
		await put('late', { subject: 'late invoice', from: 'Billing <billing@northwind.example>', attachments: [{ filename: 'b.pdf', content: randomBytes(50) }] }, T0 + 4 * HOUR);
	});

	const search = (filter: ReadFilter, newestFirst = true) => reader().search('Search', filter, { newestFirst, limit: 100 });

	it('orders by DateTimeReceived newest or oldest first', async () => {
		expect(await search({})).toEqual([ids.late, ids.toCarol, ids.attached, ids.invoice, ids.plain]);
		expect(await search({}, false)).toEqual([ids.plain, ids.invoice, ids.attached, ids.toCarol, ids.late]);
	});

	it('each restriction on its own', async () => {
		expect(await search({ unreadOnly: true })).toEqual([ids.late, ids.attached, ids.invoice]);
		expect(await search({ since: new Date(T0 + 2 * HOUR) })).toEqual([ids.late, ids.toCarol, ids.attached]);
		expect(await search({ before: new Date(T0 + HOUR) })).toEqual([ids.plain]);
		expect(await search({ subjectContains: 'invoice' })).toEqual([ids.late, ids.invoice]);
		expect(await search({ subjectContains: '& <more>' })).toEqual([ids.invoice]);
		expect(await search({ from: 'NORTHWIND' })).toEqual([ids.late, ids.invoice]);
		expect(await search({ to: 'carol' })).toEqual([ids.toCarol]);
		expect(await search({ hasAttachments: true })).toEqual([ids.late, ids.attached]);
	});

	it('restrictions combined narrow together (AND)', async () => {
		expect(await search({ unreadOnly: true, from: 'billing@northwind.example', hasAttachments: true })).toEqual([ids.late]);
		expect(await search({ since: new Date(T0 + HOUR), before: new Date(T0 + 4 * HOUR), unreadOnly: true })).toEqual([ids.attached, ids.invoice]);
		expect(await search({ subjectContains: 'invoice', before: new Date(T0 + 2 * HOUR) })).toEqual([ids.invoice]);
	});

	it('refuses a raw query naming the field, before any request', async () => {
		const before = ews.requests.length;
		await expect(search({ rawQuery: 'FROM x' })).rejects.toMatchObject({ code: 'EWS_RAW_QUERY_UNSUPPORTED', message: expect.stringContaining('Raw Query') });
		expect(ews.requests.length).toBe(before);
	});

	it('pages with IndexedPageItemView over more than two pages and stops at the limit', async () => {
		const paged = ews.addFolder(OWNER, 'Paged');
		const made: string[] = [];
		for (let i = 0; i < 25; i++) made.push(ews.deliver(OWNER, await mime({ subject: `p${i}` }), { folder: paged, receivedAt: new Date(T0 + i * 1000).toISOString() }));
		const before = ews.requests.length;
		const r = reader({ pageSize: 10 });
		expect(await r.search('Paged', {}, { newestFirst: false, limit: 100 })).toEqual(made);
		expect(operations(before).filter((op) => op === 'FindItem')).toHaveLength(3);
		expect(await r.search('Paged', {}, { newestFirst: true, limit: 22 })).toEqual([...made].reverse().slice(0, 22));
	});
});

describe('EWS reader: fetch', () => {
	const pdf = randomBytes(300_000);
	const png = randomBytes(2_000);
	let folder: string;

	beforeAll(() => {
		folder = ews.addFolder(OWNER, 'Fetch');
	});

	it('gives the normalized message: addresses, dates, flags, text, html, attachments byte for byte in the sink', async () => {
		const raw = await mime({
			from: 'Alice Sender <alice@fabrikam.example>',
			to: ['Bob <bob@contoso.example>', 'plain@contoso.example'],
			cc: 'Carol <carol@contoso.example>',
			replyTo: 'replies@fabrikam.example',
			subject: 'Grüße & <Tags> "quoted"',
			messageId: '<m-1@fabrikam.example>',
			date: new Date('2026-11-02T07:59:00Z'),
			text: 'Hello\nWorld & <more>',
			html: '<p>Hello <b>World</b> <img src="cid:logo@x"></p>',
			attachments: [
				{ filename: 'Bericht Q4 & <final>.pdf', content: pdf, contentType: 'application/pdf' },
				{ filename: 'logo.png', content: png, contentType: 'image/png', cid: 'logo@x' },
			],
		});
		const id = ews.deliver(OWNER, raw, { folder, isRead: true, receivedAt: '2026-11-02T08:00:00Z' });
		const { sink, attachments } = digestSink();
		const [message] = readable(await readAll(reader().fetch('Fetch', [id], { includeHtml: true, sink })));
		expect(message).toMatchObject({
			id,
			messageId: '<m-1@fabrikam.example>',
			folder: 'Fetch',
			from: { name: 'Alice Sender', address: 'alice@fabrikam.example' },
			to: [{ name: 'Bob', address: 'bob@contoso.example' }, { address: 'plain@contoso.example' }],
			cc: [{ name: 'Carol', address: 'carol@contoso.example' }],
			replyTo: [{ address: 'replies@fabrikam.example' }],
			subject: 'Grüße & <Tags> "quoted"',
			date: '2026-11-02T07:59:00.000Z',
			receivedDate: '2026-11-02T08:00:00.000Z',
			flags: ['\\Seen'],
			seen: true,
			flagged: false,
		});
		expect(message.size).toBeGreaterThan(0);
		expect(message.text?.trim()).toBe('Hello\nWorld & <more>');
		expect(message.html).toContain('<b>World</b>');
		const stored = attachments.get(id)!;
		const pdfEntry = stored.find((a) => a.info.filename === 'Bericht Q4 & <final>.pdf')!;
		expect(pdfEntry).toMatchObject({ sha256: sha256(pdf), length: pdf.length, info: { contentType: 'application/pdf', inline: false } });
		const pngEntry = stored.find((a) => a.info.filename === 'logo.png')!;
		expect(pngEntry).toMatchObject({ sha256: sha256(png), info: { contentId: 'logo@x' } });
		expect(message.attachments.map((a) => a.size).sort((a, b) => a - b)).toEqual([png.length, pdf.length]);
		expect(message.attachments.every((a) => a.content === undefined)).toBe(true);
	});

	it('without a sink the attachments are Buffers on the message; headers and raw come from the MIME', async () => {
		const raw = await mime({ subject: 'with headers', headers: { 'X-Custom': 'a & b <c>' }, attachments: [{ filename: 'f.bin', content: pdf }] });
		const id = ews.deliver(OWNER, raw, { folder });
		const [message] = readable(await readAll(reader().fetch('Fetch', [id], { includeHeaders: true, includeRaw: true })));
		expect(sha256(message.attachments[0].content!)).toBe(sha256(pdf));
		expect(message.headers?.['x-custom']).toBe('a & b <c>');
		expect(message.headers?.subject).toBe('with headers');
		expect(sha256(message.raw!)).toBe(sha256(raw));
		expect(message.flags).toEqual([]);
	});

	it('raw goes to the sink when there is one, byte for byte', async () => {
		const raw = await mime({ subject: 'raw to sink' });
		const id = ews.deliver(OWNER, raw, { folder });
		const { sink, raw: stored } = digestSink();
		const [message] = readable(await readAll(reader().fetch('Fetch', [id], { includeRaw: true, sink })));
		expect(message.raw).toBeUndefined();
		expect(sha256(stored.get(id)!)).toBe(sha256(raw));
	});

	it('reads in GetItem batches, keeps the order, leaves out a message deleted meanwhile', async () => {
		const made: string[] = [];
		for (let i = 0; i < 7; i++) made.push(ews.deliver(OWNER, await mime({ subject: `batch ${i}` }), { folder }));
		const r = reader({ fetchBatch: 3 });
		await r.apply('Fetch', [made[4]], { type: 'delete' });
		const before = ews.requests.length;
		const got = readable(await readAll(r.fetch('Fetch', made)));
		expect(got.map((m) => m.subject)).toEqual(['batch 0', 'batch 1', 'batch 2', 'batch 3', 'batch 5', 'batch 6']);
		expect(operations(before).filter((op) => op === 'GetItem')).toHaveLength(3);
	});

	it('a malformed MIME becomes an item or an UnreadableMessage within bounded time, and the next message still comes', async () => {
		const garbage = Buffer.concat([
			Buffer.from('Subject: broken\r\nContent-Type: multipart/mixed; boundary="b"\r\nX-Bad: \u0000\u0001\r\n\r\n--b\r\nContent-Type: text/plain; charset=x-unknown\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%%\r\n'),
			randomBytes(2000),
		]);
		const bad = ews.deliver(OWNER, garbage, { folder });
		const good = ews.deliver(OWNER, await mime({ subject: 'after the bad one' }), { folder });
		const started = Date.now();
		const got = await readAll(reader().fetch('Fetch', [bad, good], { includeHeaders: true, includeRaw: true, limits: { timeoutMs: 5000 } }));
		expect(Date.now() - started).toBeLessThan(10_000);
		expect(got.map((m) => m.id)).toEqual([bad, good]);
		expect(isUnreadable(got[1])).toBe(false);
		if (isUnreadable(got[0])) expect(got[0].error.code).toMatch(/^(MESSAGE_|EWS_)/);
		else expect(got[0].subject).toBe('broken');
	});

	it('a message that takes too long to store becomes MESSAGE_READ_TIMEOUT; the others are read', async () => {
		const slow = ews.deliver(OWNER, await mime({ subject: 'slow', attachments: [{ filename: 's.bin', content: png }] }), { folder });
		const fast = ews.deliver(OWNER, await mime({ subject: 'fast' }), { folder });
		const sink: MessageSink = {
			attachment: () => new Promise(() => {}),
			raw: async (_id, content) => void (await drain(content)),
		};
		const got = await readAll(reader().fetch('Fetch', [slow, fast], { sink, limits: { timeoutMs: 300 } }));
		expect(isUnreadable(got[0]) && got[0].error.code).toBe('MESSAGE_READ_TIMEOUT');
		expect(isUnreadable(got[0]) && got[0].subject).toBe('slow');
		expect(got[1]).toMatchObject({ id: fast, subject: 'fast' });
	});

	it('a sink that fails makes that message MESSAGE_STORE_FAILED only', async () => {
		const one = ews.deliver(OWNER, await mime({ subject: 'store fails', attachments: [{ filename: 's.bin', content: png }] }), { folder });
		const two = ews.deliver(OWNER, await mime({ subject: 'no attachment' }), { folder });
		const sink: MessageSink = {
			attachment: async (_id, _i, _info, content) => {
				content.resume();
				throw new Error('disk full');
			},
			raw: async (_id, content) => void (await drain(content)),
		};
		const got = await readAll(reader().fetch('Fetch', [one, two], { sink }));
		expect(isUnreadable(got[0]) && got[0].error).toMatchObject({ code: 'MESSAGE_STORE_FAILED', message: expect.stringContaining('disk full') });
		expect(isUnreadable(got[1])).toBe(false);
	});

	it('a connection that fails throws instead of turning every message unreadable', async () => {
		const id = ews.deliver(OWNER, await mime({ subject: 'x' }), { folder });
		const r = reader();
		await r.connect();
		ews.faults.http401(5);
		try {
			await expect(readAll(r.fetch('Fetch', [id]))).rejects.toMatchObject({ code: 'EWS_UNAUTHORIZED' });
		} finally {
			ews.faults.clear();
		}
	});
});

describe('EWS reader: connection and delegate access', () => {
	it('connect and verify are one GetFolder of the Inbox; connected until close; reconnect re-verifies', async () => {
		const r = reader();
		const before = ews.requests.length;
		await r.connect();
		await r.verify();
		expect(operations(before)).toEqual(['GetFolder', 'GetFolder']);
		expect(r.connected).toBe(true);
		await r.reconnect();
		expect(operations(before)).toHaveLength(3);
		await r.close();
		expect(r.connected).toBe(false);
	});

	it('reads another mailbox with delegate access (FullAccess): folders, search and fetch of that mailbox only', async () => {
		const projects = ews.addFolder(SHARED, 'Desk & <Cases>');
		const inShared = ews.deliver(SHARED, await mime({ to: SHARED, subject: 'for the desk' }));
		const inProjects = ews.deliver(SHARED, await mime({ to: SHARED, subject: 'a case' }), { folder: projects });
		const r = reader({ mailbox: SHARED });
		const before = ews.requests.length;
		const found = await r.search('INBOX', {}, { newestFirst: true, limit: 10 });
		expect(found).toEqual([inShared]);
		expect(await r.search('Desk & <Cases>', {}, { newestFirst: true, limit: 10 })).toEqual([inProjects]);
		const [message] = readable(await readAll(r.fetch('INBOX', found)));
		expect(message.subject).toBe('for the desk');
		expect((await r.listFolders()).map((f) => f.name)).toContain('Desk & <Cases>');
		const sent = (ews.requests as Array<{ anchor?: string; user?: string }>).slice(before);
		expect(sent.every((req) => String(req.anchor).toLowerCase() === SHARED)).toBe(true);
		expect(items(OWNER).some((i) => i.id === inShared)).toBe(false);
	});

	it('another mailbox without FullAccess is refused as an error, not as an empty folder', async () => {
		const r = reader({ username: 'outsider', mailbox: SHARED });
		await expect(r.search('inbox', {}, { newestFirst: true, limit: 10 })).rejects.toMatchObject({ code: 'EWS_ACCESS_DENIED' });
	});
});
