import { createEwsClient } from '../../../transports/ews/ews-client';
import { EwsReader } from '../../../transports/ews/ews-reader';
import { decodeCursor } from '../../../transports/ews/sync';

/* eslint-disable @typescript-eslint/no-require-imports */
const { startFakeEws } = require('../../peers/fake-ews');
const { sharedTestPki } = require('../../peers/certs');
/* eslint-enable @typescript-eslint/no-require-imports */

const OWNER = 'trigger@contoso.example';
const SHARED = 'team@contoso.example';
const PASSWORD = 'Trigger-Pass-1';

 
let ews: any;
let pki: { ca: string };
const readers: EwsReader[] = [];

/** A new reader each time, as each poll of the trigger (and an n8n restart) makes: only the cursor is shared. */
function reader(mailbox = ''): EwsReader {
	const client = createEwsClient({
		url: ews.url,
		auth: { type: 'basic', username: 'trigger', password: PASSWORD },
		version: 'Exchange2013_SP1',
		mailbox,
		impersonate: false,
		trust: { rejectUnauthorized: true, ca: pki.ca },
		retry: { attempts: 2, firstBackoffMs: 10, maxBackoffMs: 50 },
	});
	const made = new EwsReader(client);
	readers.push(made);
	return made;
}

let counter = 0;
function deliver(count: number, options: { folder?: string; receivedAt?: string; address?: string } = {}): string[] {
	const ids: string[] = [];
	for (let i = 0; i < count; i++) {
		counter += 1;
		const address = options.address ?? OWNER;
		ids.push(ews.deliver(address, Buffer.from(`From: a@fabrikam.example\r\nTo: ${address}\r\nSubject: s${counter}\r\n\r\nbody\r\n`), { folder: options.folder, receivedAt: options.receivedAt }));
	}
	return ids;
}

async function poll(folder: string, cursor: string | undefined, mailbox = '') {
	const r = reader(mailbox);
	try {
		return await r.changesSince(folder, cursor);
	} finally {
		await r.close();
	}
}

beforeAll(async () => {
	pki = sharedTestPki();
	ews = await startFakeEws({ pki });
	ews.addMailbox({ address: OWNER });
	ews.addMailbox({ address: SHARED });
	ews.addUser({ username: 'trigger', password: PASSWORD, mailbox: OWNER, delegateOf: [SHARED] });
});

afterAll(async () => {
	for (const r of readers) await r.close().catch(() => {});
	await ews?.close();
});

describe('EWS trigger: changesSince with SyncFolderItems', () => {
	it('first call: a baseline to the present, nothing emitted, the cursor in the documented shape', async () => {
		const folder = ews.addFolder(OWNER, 'First');
		deliver(5, { folder });
		const first = await poll('First', undefined);
		expect(first).toMatchObject({ ids: [], baseline: 'first' });
		const cursor = JSON.parse(first.cursor);
		expect(Object.keys(cursor).sort()).toEqual(['folderId', 'syncState', 'v', 'watermark']);
		expect(cursor).toMatchObject({ v: 1, folderId: folder, syncState: expect.any(String), watermark: { receivedAt: expect.any(String), ids: expect.any(Array) } });
		expect(await poll('First', first.cursor)).toEqual({ ids: [], cursor: expect.any(String) });
	});

	it('a burst of 30 messages comes out each once, oldest first; the next poll has nothing', async () => {
		const { cursor } = await poll('inbox', undefined);
		const burst = deliver(30);
		const next = await poll('inbox', cursor);
		expect(next.baseline).toBeUndefined();
		expect(next.ids).toEqual(burst);
		expect(new Set(next.ids).size).toBe(30);
		expect((await poll('inbox', next.cursor)).ids).toEqual([]);
	});

	it('more than 512 changes are read in one call (several SyncFolderItems pages)', async () => {
		const folder = ews.addFolder(OWNER, 'Busy');
		const { cursor } = await poll('Busy', undefined);
		const many = deliver(600, { folder });
		const before = ews.requests.length;
		const next = await poll('Busy', cursor);
		expect(next.ids).toEqual(many);
		const syncs = (ews.requests as Array<{ operation: string }>).slice(before).filter((r) => r.operation === 'SyncFolderItems');
		expect(syncs.length).toBeGreaterThanOrEqual(2);
	});

	it('reads, flags and moves of old messages are not new mail; an old message moved in is not either', async () => {
		const folder = ews.addFolder(OWNER, 'Changes');
		const other = ews.addFolder(OWNER, 'Elsewhere');
		const old = deliver(4, { folder });
		const [ancient] = deliver(1, { folder: other, receivedAt: new Date(Date.now() - 24 * 3_600_000).toISOString() });
		const base = await poll('Changes', undefined);
		const r = reader();
		await r.apply('Changes', [old[0]], { type: 'markRead' });
		await r.apply('Changes', [old[1]], { type: 'flag' });
		await r.apply('Changes', [old[2]], { type: 'move', folder: 'Elsewhere' });
		await r.apply('Changes', [old[3]], { type: 'delete' });
		await r.apply('Elsewhere', [ancient], { type: 'move', folder: 'Changes' });
		const [fresh] = deliver(1, { folder });
		const next = await poll('Changes', base.cursor);
		expect(next.ids).toEqual([fresh]);
		expect((await poll('Changes', next.cursor)).ids).toEqual([]);
	});

	it('a restart with the saved cursor gives only what arrived while it was stopped', async () => {
		const folder = ews.addFolder(OWNER, 'Restart');
		deliver(3, { folder });
		const saved = (await poll('Restart', undefined)).cursor;
		const whileDown = deliver(4, { folder });
		// A fresh reader and client: nothing but the cursor text survives.
		const stored = JSON.parse(JSON.stringify({ cursor: saved })).cursor as string;
		const afterRestart = await poll('Restart', stored);
		expect(afterRestart.ids).toEqual(whileDown);
	});

	it('ErrorInvalidSyncStateData: a fresh sync that gives exactly the missed new ones, no flood, no baseline flag', async () => {
		const folder = ews.addFolder(OWNER, 'Invalidated');
		deliver(20, { folder });
		const base = await poll('Invalidated', undefined);
		const emitted = deliver(3, { folder });
		const mid = await poll('Invalidated', base.cursor);
		expect(mid.ids).toEqual(emitted);
		const missed = deliver(5, { folder });
		ews.faults.invalidateSyncStates(OWNER);
		const before = ews.requests.length;
		const recovered = await poll('Invalidated', mid.cursor);
		expect(recovered.baseline).toBeUndefined();
		expect(recovered.ids).toEqual(missed);
		const codes = (ews.requests as Array<{ operation: string; responseCodes: string[] }>).slice(before).flatMap((r) => r.responseCodes);
		expect(codes).toContain('ErrorInvalidSyncStateData');
		expect((await poll('Invalidated', recovered.cursor)).ids).toEqual([]);
	});

	it('a burst in the same second as the watermark: after an invalid sync state only the ones not yet emitted', async () => {
		const folder = ews.addFolder(OWNER, 'SameSecond');
		const at = new Date(Math.floor(Date.now() / 1000) * 1000 - 5000).toISOString();
		const base = await poll('SameSecond', undefined);
		const firstHalf = deliver(3, { folder, receivedAt: at });
		const mid = await poll('SameSecond', base.cursor);
		expect(mid.ids).toEqual(firstHalf);
		expect(decodeCursor(mid.cursor)?.watermark).toEqual({ receivedAt: at, ids: firstHalf });
		const secondHalf = deliver(2, { folder, receivedAt: at });
		ews.faults.invalidateSyncStates(OWNER);
		expect((await poll('SameSecond', mid.cursor)).ids).toEqual(secondHalf);
	});

	it('a cursor that is not ours, or of another folder, starts afresh with baseline invalid', async () => {
		deliver(2);
		expect(await poll('inbox', 'not json')).toMatchObject({ ids: [], baseline: 'invalid' });
		expect(await poll('inbox', JSON.stringify({ v: 1, folder: 'inbox', deltaLink: 'x', floor: 'y', seen: [] }))).toMatchObject({ ids: [], baseline: 'invalid' });
		const other = (await poll('First', undefined)).cursor;
		expect(await poll('inbox', other)).toMatchObject({ ids: [], baseline: 'invalid' });
	});

	it('watches a folder of another mailbox opened with delegate access', async () => {
		const base = await poll('Inbox', undefined, SHARED);
		deliver(2);
		const forTeam = deliver(2, { address: SHARED });
		expect((await poll('Inbox', base.cursor, SHARED)).ids).toEqual(forTeam);
	});

	it('an unknown folder is EWS_FOLDER_NOT_FOUND', async () => {
		await expect(poll('No Such Folder', undefined)).rejects.toMatchObject({ code: 'EWS_FOLDER_NOT_FOUND' });
	});
});
