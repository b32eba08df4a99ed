import { POST_ACTION_NOT_ATTEMPTED } from '../../../transports/contracts';
import { createEwsClient } from '../../../transports/ews/ews-client';
import { EwsReader } from '../../../transports/ews/ews-reader';

/* eslint-disable @typescript-eslint/no-require-imports */
const { startFakeEws } = require('../../peers/fake-ews');
const { sharedTestPki } = require('../../peers/certs');
/* eslint-enable @typescript-eslint/no-require-imports */

const OWNER = 'actions@contoso.example';
const PASSWORD = 'Actions-Pass-1';

type FakeItem = { id: string; folderId: string; isRead: boolean; flagged: boolean; subject: string };
 
let ews: any;
let pki: { ca: string };
const readers: EwsReader[] = [];

function reader(): EwsReader {
	const client = createEwsClient({
		url: ews.url,
		auth: { type: 'basic', username: 'actions', password: PASSWORD },
		version: 'Exchange2013_SP1',
		mailbox: '',
		impersonate: false,
		trust: { rejectUnauthorized: true, ca: pki.ca },
		retry: { attempts: 2, firstBackoffMs: 10, maxBackoffMs: 50 },
	});
	const made = new EwsReader(client);
	readers.push(made);
	return made;
}

let counter = 0;
function deliver(count: number, options: { folder?: string; isRead?: boolean } = {}): string[] {
	const ids: string[] = [];
	for (let i = 0; i < count; i++) {
		counter += 1;
		ids.push(ews.deliver(OWNER, Buffer.from(`From: a@fabrikam.example\r\nTo: ${OWNER}\r\nSubject: m${counter}\r\n\r\nbody ${counter}\r\n`), options));
	}
	return ids;
}

function item(id: string, folder = 'inbox'): FakeItem | undefined {
	return (ews.items(OWNER, folder) as FakeItem[]).find((i) => i.id === id);
}

function requestsOf(operation: string, from: number): Array<{ operation: string; responseCodes: string[] }> {
	return (ews.requests as Array<{ operation: string; responseCodes: string[] }>).slice(from).filter((r) => r.operation === operation);
}

/** An id of the shape Exchange gives, of a message that is not there. */
const MISSING = Buffer.from('no such message in this mailbox at all, really').toString('base64');

beforeAll(async () => {
	pki = sharedTestPki();
	ews = await startFakeEws({ pki });
	ews.addMailbox({ address: OWNER });
	ews.addUser({ username: 'actions', password: PASSWORD, mailbox: OWNER });
});

afterAll(async () => {
	for (const r of readers) await r.close().catch(() => {});
	await ews?.close();
});

describe('EWS post-actions', () => {
	it('markRead sets IsRead on the server, 100 ids per UpdateItem, each response checked', async () => {
		const ids = deliver(230);
		const before = ews.requests.length;
		const outcomes = await reader().apply('inbox', ids, { type: 'markRead' });
		expect(outcomes).toEqual(ids.map((id) => ({ id, done: true })));
		expect(ids.every((id) => item(id)?.isRead === true)).toBe(true);
		expect(requestsOf('UpdateItem', before)).toHaveLength(3);
	});

	it('flag sets the follow-up flag', async () => {
		const ids = deliver(3);
		const outcomes = await reader().apply('inbox', ids, { type: 'flag' });
		expect(outcomes.every((o) => o.done)).toBe(true);
		expect(ids.map((id) => item(id)?.flagged)).toEqual([true, true, true]);
		expect(ids.map((id) => item(id)?.isRead)).toEqual([false, false, false]);
	});

	it('move puts the messages into the target folder (names with & < > and non-ASCII) and gives their new ids', async () => {
		const target = ews.addFolder(OWNER, 'Done & <Archived> – Ü');
		const ids = deliver(4);
		const outcomes = await reader().apply('inbox', ids, { type: 'move', folder: 'Done & <Archived> – Ü' });
		const moved = ews.items(OWNER, target) as FakeItem[];
		expect(moved).toHaveLength(4);
		expect(outcomes.every((o) => o.done && typeof o.newId === 'string')).toBe(true);
		expect(outcomes.map((o) => o.newId).sort()).toEqual(moved.map((m) => m.id).sort());
		expect(ids.every((id) => item(id) === undefined)).toBe(true);
	});

	it('a move to a folder that does not exist is an error before anything moves', async () => {
		const ids = deliver(2);
		const before = ews.requests.length;
		await expect(reader().apply('inbox', ids, { type: 'move', folder: 'Nowhere' })).rejects.toMatchObject({
			code: 'EWS_FOLDER_NOT_FOUND',
			message: 'Folder "Nowhere" to move to does not exist',
		});
		expect(requestsOf('MoveItem', before)).toHaveLength(0);
		expect(ids.every((id) => item(id))).toBe(true);
	});

	it('delete moves the messages to Deleted Items (DeleteItem MoveToDeletedItems)', async () => {
		const ids = deliver(2);
		const before = ews.requests.length;
		const outcomes = await reader().apply('inbox', ids, { type: 'delete' });
		expect(outcomes.every((o) => o.done)).toBe(true);
		expect(ids.every((id) => item(id) === undefined)).toBe(true);
		expect((ews.items(OWNER, 'deleteditems') as FakeItem[]).map((i) => i.subject)).toEqual(expect.arrayContaining(ids.map(() => expect.stringMatching(/^m\d+$/))));
		expect(requestsOf('DeleteItem', before)).toHaveLength(1);
	});

	it('a message that is gone is an outcome, not an exception; the others are done', async () => {
		const ids = deliver(2);
		const outcomes = await reader().apply('inbox', [ids[0], MISSING, ids[1]], { type: 'markRead' });
		expect(outcomes[0]).toEqual({ id: ids[0], done: true });
		expect(outcomes[1]).toMatchObject({ id: MISSING, done: false, reason: expect.stringMatching(/no longer in the mailbox|Error/) });
		expect(outcomes[2]).toEqual({ id: ids[1], done: true });
		expect(item(ids[1])?.isRead).toBe(true);
	});

	it('atomic markRead: the first refusal stops the rest, what was marked is taken back, what was read before stays read', async () => {
		const [wasRead] = deliver(1, { isRead: true });
		const first = deliver(50);
		const rest = deliver(60);
		const ids = [wasRead, ...first, MISSING, ...rest];
		const outcomes = await reader().apply('inbox', ids, { type: 'markRead' }, { atomic: true });
		const byId = new Map(outcomes.map((o) => [o.id, o]));
		expect(byId.get(MISSING)).toMatchObject({ done: false });
		for (const id of first) expect(byId.get(id)).toMatchObject({ done: false, reason: expect.stringContaining('taken back') });
		// The first request held 100 ids: the ones after it were never sent.
		const notAttempted = outcomes.filter((o) => o.reason === POST_ACTION_NOT_ATTEMPTED).map((o) => o.id);
		expect(notAttempted).toEqual(rest.slice(48));
		expect([...first, ...rest].every((id) => item(id)?.isRead === false)).toBe(true);
		expect(item(wasRead)?.isRead).toBe(true);
	});

	it('atomic flag: flags taken back after a refusal', async () => {
		const ids = deliver(3);
		const outcomes = await reader().apply('inbox', [ids[0], ids[1], MISSING, ids[2]], { type: 'flag' }, { atomic: true });
		expect(outcomes.filter((o) => o.done)).toEqual([]);
		expect(ids.map((id) => item(id)?.flagged)).toEqual([false, false, false]);
	});

	it('atomic move: what was moved before a refusal is moved back', async () => {
		const target = ews.addFolder(OWNER, 'Atomic Target');
		const ids = deliver(3);
		const outcomes = await reader().apply('inbox', [ids[0], MISSING, ids[1], ids[2]], { type: 'move', folder: 'Atomic Target' }, { atomic: true });
		expect(outcomes.every((o) => !o.done)).toBe(true);
		expect(ews.items(OWNER, target)).toHaveLength(0);
		const subjects = (ews.items(OWNER, 'inbox') as FakeItem[]).map((i) => i.subject);
		for (const id of ids) expect(outcomes.find((o) => o.id === id)?.reason).toContain('moved, then taken back');
		expect(subjects).toEqual(expect.arrayContaining([`m${counter - 2}`, `m${counter - 1}`, `m${counter}`]));
	});

	it('none and an empty id list send nothing', async () => {
		const before = ews.requests.length;
		const r = reader();
		expect(await r.apply('inbox', deliver(1), { type: 'none' })).toEqual([]);
		expect(await r.apply('inbox', [], { type: 'markRead' })).toEqual([]);
		expect(ews.requests.length).toBe(before);
	});
});
