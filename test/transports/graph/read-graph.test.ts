import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { simpleParser } from 'mailparser';

import { isUnreadable, type IncomingMessage, type ReadFilter, type UnreadableMessage } from '../../../model/incoming-message';
import type { AttachmentInfo, MessageSink } from '../../../transports/contracts';
import { NOT_ATTEMPTED } from '../../../transports/graph/post-actions';
import { MAILBOX, startGraphPeers, type GraphPeers } from './graph-reader-setup';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const DAY = 86_400_000;
const T0 = Date.parse('2026-11-02T08:00:00Z');
const MAILBOX_PATH = `/v1.0/users/${encodeURIComponent(MAILBOX)}`;

let peers: GraphPeers;

beforeAll(async () => {
	peers = await startGraphPeers();
});

afterAll(async () => {
	await peers?.close();
});

async function drain(stream: Readable): Promise<Buffer> {
	const chunks: Buffer[] = [];
	for await (const chunk of stream) chunks.push(chunk as Buffer);
	return Buffer.concat(chunks);
}

/** A sink as n8n's binary store would be: it reads each stream to its end and keeps only a digest. */
function digestSink() {
	const attachments = new Map<string, Array<{ info: AttachmentInfo; sha256: string; bytes: Buffer }>>();
	const raw = new Map<string, Buffer>();
	const sink: MessageSink = {
		async attachment(messageId, index, info, content) {
			const bytes = await drain(content);
			const list = attachments.get(messageId) ?? [];
			list[index] = { info, sha256: sha256(bytes), bytes };
			attachments.set(messageId, list);
		},
		async raw(messageId, content) {
			raw.set(messageId, await drain(content));
		},
	};
	return { sink, attachments, raw };
}

async function readAll(generator: AsyncGenerator<IncomingMessage | UnreadableMessage>): Promise<IncomingMessage[]> {
	const out: IncomingMessage[] = [];
	for await (const message of generator) {
		if (isUnreadable(message)) throw new Error(`unexpected unreadable message: ${message.error.message}`);
		out.push(message);
	}
	return out;
}

describe('Graph reader: folders and search', () => {
	it('pages through @odata.nextLink with the documented query options and stops at the limit', async () => {
		const folder = peers.graph.addFolder(MAILBOX, { displayName: 'Bulk', parent: 'inbox' });
		const created = Array.from({ length: 1_205 }, (_v, i) =>
			peers.graph.addMessage(MAILBOX, { folder: folder.id, subject: `bulk ${i}`, receivedDateTime: new Date(T0 + i * 1000).toISOString() }),
		);
		const reader = peers.reader();
		const from = peers.graph.requests.length;
		const ids = await reader.search('Inbox/Bulk', {}, { newestFirst: true, limit: 1_100 });
		const newestFirst = [...created].reverse().map((m) => m.immutableId);
		expect(ids).toEqual(newestFirst.slice(0, 1_100));

		const lists = peers.requestsSince(from).filter((r) => r.path === `${MAILBOX_PATH}/mailFolders/${encodeURIComponent(folder.id)}/messages`);
		expect(lists).toHaveLength(2);
		const first = new URLSearchParams(lists[0].query);
		expect(first.get('$select')).toBe('id');
		expect(first.get('$orderby')).toBe('receivedDateTime desc');
		expect(first.get('$top')).toBe('1000');
		expect(first.get('$filter')).toBeNull();
		expect(new URLSearchParams(lists[1].query).get('$skip')).toBe('1000'); // the fake's nextLink, followed as given

		const small = await reader.search('Inbox/Bulk', {}, { newestFirst: false, limit: 3 });
		expect(small).toEqual(created.slice(0, 3).map((m) => m.immutableId));
	});

	it('lists folders with display paths for the picker; an unknown folder names the ones that exist', async () => {
		peers.graph.addFolder(MAILBOX, { displayName: 'Projects', parent: 'inbox' });
		const reader = peers.reader();
		const folders = await reader.listFolders();
		const inbox = folders.find((f) => f.name === 'Inbox');
		expect(inbox).toMatchObject({ path: 'inbox', specialUse: '\\Inbox' });
		expect(folders.find((f) => f.name === 'Sent Items')).toMatchObject({ path: 'sentitems', specialUse: '\\Sent' });
		const projects = folders.find((f) => f.name === 'Inbox/Projects');
		expect(projects?.path).toBe(peers.graph.mailbox(MAILBOX).folders.get(projects!.path)?.id);
		await expect(reader.search('Inbox/Nope', {}, { newestFirst: true, limit: 5 })).rejects.toMatchObject({
			code: 'GRAPH_UNKNOWN_FOLDER',
			hint: expect.stringContaining('Inbox/Projects'),
		});
	});

	describe('filters: $filter where Graph has it, the rest here, with the IMAP meaning', () => {
		const person = (address: string, name?: string) => ({ address, ...(name ? { name } : {}) });
		const fixtures = [
			{ key: 'm1', isRead: false, from: person('alice@example.org', 'Alice Smith'), to: [person('sales@contoso.example')], cc: [], subject: 'Invoice 1', day: 0, attachments: [{ name: 'a.pdf', contentType: 'application/pdf', content: randomBytes(100) }] },
			{ key: 'm2', isRead: true, from: person('bob@example.org'), to: [person('support@contoso.example')], cc: [], subject: 'Hello', day: 1, attachments: [{ name: 'logo.png', contentType: 'image/png', content: randomBytes(50), isInline: true, contentId: 'logo1' }] },
			{ key: 'm3', isRead: false, from: person('alice@example.org'), to: [person('bob@contoso.example')], cc: [person('sales@contoso.example')], subject: 'invoice 2', day: 2, attachments: [] },
			{ key: 'm4', isRead: true, from: person('carol@example.org', 'Carol'), to: [person('sales@contoso.example')], cc: [], subject: 'Receipt', day: 3, attachments: [{ name: 'r.txt', contentType: 'text/plain', content: Buffer.from('r') }] },
		];
		type Fixture = (typeof fixtures)[number];
		const ids = new Map<string, string>();
		const at = (day: number) => new Date(T0 + day * DAY);
		const contains = (value: string | undefined, part: string) => (value ?? '').toLowerCase().includes(part.toLowerCase());

		beforeAll(() => {
			const folder = peers.graph.addFolder(MAILBOX, { displayName: 'Filters' });
			for (const f of fixtures) {
				const record = peers.graph.addMessage(MAILBOX, { folder: folder.id, isRead: f.isRead, from: f.from, to: f.to, cc: f.cc, subject: f.subject, receivedDateTime: at(f.day).toISOString(), attachments: f.attachments });
				ids.set(f.key, record.immutableId);
			}
		});

		// The expected messages come from the fixtures through what each filter means, not from the reader.
		const cases: Array<[string, ReadFilter, (f: Fixture) => boolean, RegExp | null]> = [
			['unread only', { unreadOnly: true }, (f) => !f.isRead, /isRead eq false/],
			['with attachments (inline images do not count)', { hasAttachments: true }, (f) => f.attachments.some((a) => !('isInline' in a && a.isInline)), /hasAttachments eq true/],
			['since and before', { since: at(1), before: at(3) }, (f) => f.day >= 1 && f.day < 3, /^receivedDateTime ge .* and receivedDateTime lt /],
			['from a whole address', { from: 'ALICE@example.org' }, (f) => f.from.address === 'alice@example.org', /from\/emailAddress\/address eq 'ALICE@example.org'/],
			['from part of a name', { from: 'alice' }, (f) => contains(f.from.name, 'alice') || contains(f.from.address, 'alice'), null],
			['to (the To header only, not Cc)', { to: 'sales@' }, (f) => f.to.some((r) => contains(r.address, 'sales@')), null],
			['subject contains, any case', { subjectContains: 'INVOICE' }, (f) => contains(f.subject, 'invoice'), null],
			['combined', { unreadOnly: true, subjectContains: 'invoice', since: at(1) }, (f) => !f.isRead && contains(f.subject, 'invoice') && f.day >= 1, /isRead eq false/],
		];
		it.each(cases)('%s', async (_name, filter, meaning, sentFilter) => {
			const from = peers.graph.requests.length;
			const found = await peers.reader().search('Filters', filter, { newestFirst: false, limit: 50 });
			expect(found).toEqual(fixtures.filter(meaning).map((f) => ids.get(f.key)));
			const list = peers.requestsSince(from).find((r) => r.path.endsWith('/messages'));
			const sent = new URLSearchParams(list!.query).get('$filter');
			if (sentFilter) expect(sent).toMatch(sentFilter);
			else expect(sent).toBeNull();
		});

		it('refuses a raw query (IMAP SEARCH keys) before any request', async () => {
			const from = peers.graph.requests.length;
			await expect(peers.reader().search('Filters', { rawQuery: 'OR FROM a FROM b' }, { newestFirst: true, limit: 5 })).rejects.toMatchObject({ code: 'GRAPH_RAW_QUERY_UNSUPPORTED' });
			expect(peers.requestsSince(from)).toHaveLength(0);
		});
	});
});

describe('Graph reader: fetch', () => {
	const pdf = randomBytes(5 * 1024 * 1024 + 123);
	const note = Buffer.from('a small note\n');
	const logo = randomBytes(2048);
	let record: { immutableId: string; internetMessageId: string; conversationId: string; sentDateTime: string; receivedDateTime: string; attachments: Array<{ id: string; name: string }> };

	beforeAll(() => {
		record = peers.graph.addMessage(MAILBOX, {
			subject: 'Quarterly report ✓',
			from: { address: 'bob@example.org', name: 'Bob Example' },
			to: [{ address: MAILBOX }, { address: 'carol@example.org', name: 'Carol' }],
			cc: [{ address: 'dave@example.org' }],
			replyTo: [{ address: 'replies@example.org', name: 'Replies' }],
			body: { contentType: 'text', content: 'Hello,\r\nthe report is attached.' },
			isRead: true,
			flag: { flagStatus: 'flagged' },
			internetMessageHeaders: [{ name: 'X-Custom', value: 'one' }],
			sentDateTime: '2026-11-30T10:00:00Z',
			receivedDateTime: '2026-11-30T10:00:05Z',
			attachments: [
				{ name: 'report.pdf', contentType: 'application/pdf', content: pdf },
				{ name: 'logo.png', contentType: 'image/png', content: logo, isInline: true, contentId: 'logo@x' },
				{ name: 'note.txt', contentType: 'text/plain', content: note },
				{ '@odata.type': '#microsoft.graph.itemAttachment', name: 'Forwarded mail', item: { subject: 'The original', body: { contentType: 'text', content: 'original body' }, from: { address: 'eve@example.org' }, to: [{ address: 'bob@example.org' }] } },
			],
		});
	});

	it('gives the normalized message, streams every attachment byte for byte into the sink and the item attachment as .eml', async () => {
		const reader = peers.reader();
		const { sink, attachments, raw } = digestSink();
		const from = peers.graph.requests.length;
		const [message] = await readAll(reader.fetch('inbox', [record.immutableId], { sink, includeHtml: true, includeHeaders: true, includeRaw: true }));
		expect(message).toMatchObject({
			id: record.immutableId,
			messageId: record.internetMessageId,
			conversationId: record.conversationId,
			folder: 'inbox',
			from: { name: 'Bob Example', address: 'bob@example.org' },
			// No display name where the header had none (Exchange repeats the address as the name).
			to: [{ address: MAILBOX }, { name: 'Carol', address: 'carol@example.org' }],
			cc: [{ address: 'dave@example.org' }],
			replyTo: [{ name: 'Replies', address: 'replies@example.org' }],
			subject: 'Quarterly report ✓',
			date: '2026-11-30T10:00:00.000Z',
			receivedDate: '2026-11-30T10:00:05.000Z',
			flags: ['\\Seen', '\\Flagged'],
			seen: true,
			flagged: true,
			text: 'Hello,\nthe report is attached.',
			headers: { 'x-custom': 'one' },
		});
		expect(message.html).toContain('the report is attached.');
		// Graph's size of a message is the store's PidTagMessageSize (the fake's is its content plus 1 KiB).
		expect(message.size).toBeGreaterThan(pdf.length + logo.length + note.length);
		const stored = peers.graph.message(MAILBOX, record.immutableId).attachments;
		const got = attachments.get(record.immutableId)!;
		expect(got).toHaveLength(4);
		for (const [index, attachment] of stored.slice(0, 3).entries()) {
			const bytes = peers.graph.attachmentBytes(attachment);
			expect(got[index].sha256).toBe(sha256(bytes));
			expect(message.attachments[index]).toEqual({ filename: attachment.name, contentType: attachment.contentType, size: bytes.length, inline: attachment.isInline, ...(attachment.contentId ? { contentId: attachment.contentId } : {}) });
			expect(message.attachments[index].content).toBeUndefined();
		}
		expect(message.attachments[3]).toMatchObject({ filename: 'Forwarded mail.eml', contentType: 'message/rfc822', inline: false, size: got[3].bytes.length });
		const eml = await simpleParser(got[3].bytes);
		expect(eml.subject).toBe('The original');
		expect(eml.text?.trim()).toBe('original body');
		const whole = await simpleParser(raw.get(record.immutableId)!);
		expect(whole.subject).toBe('Quarterly report ✓');
		expect(whole.attachments.find((a) => a.filename === 'report.pdf')?.content.equals(pdf)).toBe(true);

		// Only what is output is asked for; bytes come from the documented /$value paths.
		const calls = peers.requestsSince(from);
		const get = calls.find((r) => r.path === `${MAILBOX_PATH}/messages/${encodeURIComponent(record.immutableId)}` && /internetMessageId/.test(r.query))!;
		expect(new URLSearchParams(get.query).get('$select')!.split(',').sort()).toEqual(
			['id', 'internetMessageId', 'conversationId', 'from', 'toRecipients', 'ccRecipients', 'replyTo', 'subject', 'sentDateTime', 'receivedDateTime', 'isRead', 'flag', 'body', 'internetMessageHeaders'].sort(),
		);
		// The attachment list (no contentBytes) comes in the message's own answer: no second request for it.
		expect(new URLSearchParams(get.query).get('$expand')).toBe(
			"singleValueExtendedProperties($filter=id eq 'Integer 0x0E08'),attachments($select=id,name,contentType,size,isInline,microsoft.graph.fileAttachment/contentId)",
		);
		expect(calls.filter((r) => r.path.endsWith('/attachments'))).toEqual([]);
		const values = calls.filter((r) => r.path.endsWith('/$value')).map((r) => r.path);
		expect(values).toEqual([
			...stored.map((a: { id: string }) => `${MAILBOX_PATH}/messages/${encodeURIComponent(record.immutableId)}/attachments/${encodeURIComponent(a.id)}/$value`),
			`${MAILBOX_PATH}/messages/${encodeURIComponent(record.immutableId)}/$value`,
		]);
	});

	it('without a sink collects the bytes on the message; a message that no longer exists is left out', async () => {
		const gone = peers.graph.addMessage(MAILBOX, { subject: 'short-lived' }).immutableId;
		peers.graph.deleteMessage(MAILBOX, gone);
		const messages = await readAll(peers.reader().fetch('inbox', [gone, record.immutableId]));
		expect(messages.map((m) => m.id)).toEqual([record.immutableId]);
		expect(messages[0].attachments[0].content?.equals(pdf)).toBe(true);
		expect(messages[0].attachments[2].content?.equals(note)).toBe(true);
		expect(messages[0].html).toBeUndefined();
		expect(messages[0].headers).toBeUndefined();
	});

	it('reads many ids through $batch (20 GETs each) in the order asked, HTML bodies included; a deleted one is left out', async () => {
		const made = Array.from({ length: 23 }, (_v, i) => peers.graph.addMessage(MAILBOX, { subject: `batched ${i}`, body: { contentType: 'html', content: `<p>batched <b>${i}</b></p>` } }));
		const gone = made[7].immutableId;
		peers.graph.deleteMessage(MAILBOX, gone);
		const asked = [...made].reverse().map((m) => m.immutableId);
		const from = peers.graph.requests.length;
		const messages = await readAll(peers.reader().fetch('inbox', asked, { includeHtml: true }));
		expect(messages.map((m) => m.id)).toEqual(asked.filter((id) => id !== gone));
		for (const m of messages) {
			const n = /batched (\d+)$/.exec(m.subject)![1];
			expect(m.html).toBe(`<p>batched <b>${n}</b></p>`);
			expect(m.text).toContain(`batched ${n}`);
		}
		const calls = peers.requestsSince(from);
		// one message GET and one HTML-body GET per id, as $batch parts; 46 parts make 3 batches of at most 20
		expect(calls.filter((r) => r.batch !== null)).toHaveLength(46);
		expect(calls.filter((r) => r.method === 'POST' && r.path.endsWith('/$batch'))).toHaveLength(3);
		expect(calls.filter((r) => r.batch === null && r.method === 'GET')).toEqual([]);
	});

	it('a sink that cannot store makes that message unreadable, not the run', async () => {
		const sink: MessageSink = {
			attachment: async (_id, _index, _info, content) => {
				content.destroy();
				throw new Error('disk full');
			},
			raw: async (_id, content) => void (await drain(content)),
		};
		const out: Array<IncomingMessage | UnreadableMessage> = [];
		for await (const m of peers.reader().fetch('inbox', [record.immutableId], { sink })) out.push(m);
		expect(out).toHaveLength(1);
		expect(isUnreadable(out[0]) && out[0].error).toMatchObject({ code: 'MESSAGE_STORE_FAILED', message: expect.stringContaining('disk full') });
	});
});

describe('Graph reader: per-message deadline', () => {
	it('a message not read in time is unreadable; the download is dropped, not cut, and the next message reads', async () => {
		const stalled = peers.graph.addMessage(MAILBOX, { subject: 'stalls', attachments: [{ name: 'big.bin', contentType: 'application/octet-stream', content: randomBytes(2 * 1024 * 1024) }] }).immutableId;
		const fine = peers.graph.addMessage(MAILBOX, { subject: 'fine', attachments: [{ name: 'small.txt', contentType: 'text/plain', content: Buffer.from('ok') }] }).immutableId;
		let calls = 0;
		const sink: MessageSink = {
			// The first store never reads its stream (a hung disk); later ones do.
			attachment: (_id, _index, _info, content) => (calls++ === 0 ? new Promise<void>(() => {}) : drain(content).then(() => undefined)),
			raw: async (_id, content) => void (await drain(content)),
		};
		const reader = peers.reader();
		await reader.verify(); // signed in: the deadline is the message's alone
		const out: Array<IncomingMessage | UnreadableMessage> = [];
		for await (const m of reader.fetch('inbox', [stalled, fine], { sink, limits: { timeoutMs: 500 } })) out.push(m);
		expect(out).toHaveLength(2);
		expect(isUnreadable(out[0]) && out[0]).toMatchObject({ id: stalled, subject: 'stalls', error: { code: 'MESSAGE_READ_TIMEOUT' } });
		expect(isUnreadable(out[1])).toBe(false);
		expect(out[1]).toMatchObject({ id: fine, subject: 'fine', attachments: [{ filename: 'small.txt', size: 2 }] });
	});

	it('a slow Graph answer counts against the deadline too', async () => {
		const slow = peers.graph.addMessage(MAILBOX, { subject: 'slow' }).immutableId;
		const reader = peers.reader();
		await reader.verify();
		peers.graph.setServiceTime(800);
		try {
			const out: Array<IncomingMessage | UnreadableMessage> = [];
			for await (const m of reader.fetch('inbox', [slow], { limits: { timeoutMs: 300 } })) out.push(m);
			expect(isUnreadable(out[0]) && out[0].error.code).toBe('MESSAGE_READ_TIMEOUT');
		} finally {
			peers.graph.setServiceTime(0);
		}
	});
});

describe('Graph reader: post-actions through $batch', () => {
	function fresh(count: number, folder = 'inbox'): string[] {
		return Array.from({ length: count }, (_v, i) => peers.graph.addMessage(MAILBOX, { folder, subject: `post ${i}`, isRead: false }).immutableId);
	}
	const stored = (id: string) => peers.graph.message(MAILBOX, id);
	const folderId = (name: string) => peers.graph.folder(MAILBOX, name).id;

	it('marks read, flags, moves and deletes in batches of 20, each answer checked at the fake', async () => {
		const reader = peers.reader();
		const ids = fresh(25);
		const from = peers.graph.requests.length;
		const read = await reader.apply('inbox', ids, { type: 'markRead' });
		expect(read.every((o) => o.done)).toBe(true);
		expect(ids.every((id) => stored(id).isRead === true)).toBe(true);
		const batches = peers.requestsSince(from).filter((r) => r.path === '/v1.0/$batch');
		expect(batches).toHaveLength(2);
		const parts = peers.requestsSince(from).filter((r) => r.batch);
		expect(parts.filter((p) => p.batch === parts[0].batch)).toHaveLength(20);
		expect(parts.every((p) => p.method === 'PATCH' && p.path.startsWith(`${MAILBOX_PATH}/messages/`))).toBe(true);

		const flagged = await reader.apply('inbox', ids.slice(0, 3), { type: 'flag' });
		expect(flagged.map((o) => o.done)).toEqual([true, true, true]);
		expect(ids.slice(0, 3).every((id) => stored(id).flag.flagStatus === 'flagged')).toBe(true);

		const moved = await reader.apply('inbox', ids.slice(3, 5), { type: 'move', folder: 'Archive' });
		expect(moved.map((o) => o.done)).toEqual([true, true]);
		expect(moved.map((o) => o.newId)).toEqual(ids.slice(3, 5)); // immutable ids survive the move
		expect(ids.slice(3, 5).every((id) => stored(id).folderId === folderId('archive'))).toBe(true);

		const deleted = await reader.apply('inbox', ids.slice(5, 7), { type: 'delete' });
		expect(deleted.map((o) => o.done)).toEqual([true, true]);
		expect(ids.slice(5, 7).every((id) => stored(id).folderId === folderId('deleteditems'))).toBe(true);
		expect(await reader.apply('inbox', ids, { type: 'none' })).toEqual([]);
	});

	it('reports a refused and a vanished message per id; the others are done', async () => {
		const reader = peers.reader();
		const [ok, refused, vanished] = fresh(3);
		peers.graph.deleteMessage(MAILBOX, vanished);
		peers.graph.failNext(1, { status: 403, code: 'ErrorAccessDenied', method: 'PATCH', path: escape(encodeURIComponent(refused)) });
		const outcomes = await reader.apply('inbox', [ok, refused, vanished], { type: 'markRead' });
		expect(outcomes[0]).toEqual({ id: ok, done: true });
		expect(outcomes[1]).toMatchObject({ id: refused, done: false, reason: expect.stringContaining('403 ErrorAccessDenied') });
		expect(outcomes[2]).toMatchObject({ id: vanished, done: false, reason: expect.stringContaining('no longer') });
		expect(stored(ok).isRead).toBe(true);
		expect(stored(refused).isRead).toBe(false);
	});

	it('atomic: the first refusal stops the rest and what this call changed is taken back', async () => {
		const reader = peers.reader();
		const ids = fresh(24);
		peers.graph.updateMessage(MAILBOX, ids[1], { isRead: true }); // already read before: must stay read
		peers.graph.failNext(1, { status: 403, code: 'ErrorAccessDenied', method: 'PATCH', path: escape(encodeURIComponent(ids[5])) });
		const outcomes = await reader.apply('inbox', ids, { type: 'markRead' }, { atomic: true });
		expect(outcomes[5]).toMatchObject({ done: false, reason: expect.stringContaining('ErrorAccessDenied') });
		// Only the message that was read before is done (it is read, as asked, and was not changed here).
		expect(outcomes.map((o) => o.done)).toEqual(ids.map((_id, i) => i === 1));
		expect(outcomes.slice(20).every((o) => o.reason === NOT_ATTEMPTED)).toBe(true);
		expect(outcomes[0].reason).toMatch(/taken back/);
		expect(ids.map((id) => stored(id).isRead)).toEqual(ids.map((_id, i) => i === 1));
	});

	it('a move to a folder that does not exist fails before anything is moved', async () => {
		const [id] = fresh(1);
		await expect(peers.reader().apply('inbox', [id], { type: 'move', folder: 'No Such Folder' })).rejects.toMatchObject({ code: 'GRAPH_UNKNOWN_FOLDER' });
		expect(stored(id).folderId).toBe(folderId('inbox'));
	});
});

describe('Graph reader: verify', () => {
	it('reads the Inbox', async () => {
		const from = peers.graph.requests.length;
		await peers.reader().verify();
		const [call] = peers.requestsSince(from).filter((r) => r.path.includes('/mailFolders/'));
		expect(call.path).toBe(`${MAILBOX_PATH}/mailFolders/inbox/messages`);
		expect(call.status).toBe(200);
	});
});
