import { runNode } from '../harness/n8n-run';
import { dovecotImapCredential } from '../harness/imap-credential';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

// Post-actions (mark read, flag, move, delete) checked on the server, per message: imapflow's
// helpers answer `false` instead of throwing, so only what Dovecot holds afterwards counts.
const USER = 'bulk@example.com';
const PASSWORD = 'Bulk-imap-Passw0rd';
const BULK = 15_000;

let dovecot: Awaited<ReturnType<typeof startDovecot>>;
let pki: ReturnType<typeof sharedTestPki>;

beforeAll(async () => {
	pki = sharedTestPki();
	dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD }, acl: true });
}, 120_000);

afterAll(async () => dovecot?.stop());

const credentials = () => dovecotImapCredential({ dovecot, pki, user: USER, password: PASSWORD }, { id: 'imapBulk00000001', name: 'Bulk IMAP' });

const message = (folder: string, n: number) =>
	`From: sender@example.org\r\nTo: ${USER}\r\nSubject: ${folder} ${n}\r\nMessage-ID: <${folder}.${n}@example.org>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\nbody ${n}\r\n`;

async function seed(folder: string, count: number) {
	await dovecot.seed(
		USER,
		Array.from({ length: count }, (_, n) => message(folder, n + 1)),
		{ folder },
	);
}

type Held = { uid: number; flags: string[]; subject: string };
const list = async (folder: string): Promise<Held[]> => dovecot.list(USER, folder);

/** Each input item reads one folder and applies its own post-action. */
const readItems = (items: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}) =>
	runNode({
		type: 'modernAuthReadMailbox',
		parameters: {
			authentication: 'imap',
			folder: '={{ $json.folder }}',
			limit: '={{ $json.limit }}',
			order: 'oldest',
			postAction: '={{ $json.postAction }}',
			moveTo: '={{ $json.moveTo }}',
			options: { downloadAttachments: false },
		},
		items: items.map((json) => ({ json: { limit: BULK, moveTo: '', ...json } })),
		credentials: credentials(),
		...extra,
	});

describe('Read Mailbox (Modern Auth) post-actions, verified on Dovecot', () => {
	it(`marks ${BULK} messages read, moves ${BULK} and deletes ${BULK} in one run, and says so per message`, async () => {
		await Promise.all([seed('BulkRead', BULK), seed('BulkMove', BULK), seed('BulkDelete', BULK)]);
		await dovecot.createFolder(USER, 'BulkDone');
		const { output, error } = await readItems([
			{ folder: 'BulkRead', postAction: 'markRead' },
			{ folder: 'BulkMove', postAction: 'move', moveTo: 'BulkDone' },
			{ folder: 'BulkDelete', postAction: 'delete' },
		]);
		const [read, moved, deleted] = [0, 1, 2].map((i) => output.filter((o) => (o.pairedItem as { item: number }).item === i));
		const [heldRead, heldMove, heldDone, heldDelete] = await Promise.all([list('BulkRead'), list('BulkMove'), list('BulkDone'), list('BulkDelete')]);
		const seen = heldRead.filter((m) => m.flags.includes('\\Seen')).length;
		const newUids = new Set(moved.map((o) => (o.json.postAction as { newUid?: number })?.newUid));
		record({
			transport: 'imap',
			kind: 'fault',
			name: 'post-action over 15,000 UIDs',
			survived: !error && seen === BULK && heldMove.length === 0 && heldDone.length === BULK && heldDelete.length === 0,
			behaviour: 'UID sets packed and split under 4,000 characters per command; every STORE/MOVE/EXPUNGE checked on the server and reported per message',
			sent: 3 * BULK,
			delivered: seen + heldDone.length + (BULK - heldDelete.length),
			lost: 3 * BULK - output.filter((o) => (o.json.postAction as { done?: boolean })?.done).length,
			duplicated: heldDone.length - new Set(heldDone.map((m) => m.subject)).size,
		});

		expect(error).toBeUndefined();
		expect([read.length, moved.length, deleted.length]).toEqual([BULK, BULK, BULK]);
		expect(seen).toBe(BULK);
		expect(heldMove).toEqual([]);
		expect(heldDone.map((m) => m.subject).sort()).toEqual(moved.map((o) => o.json.subject).sort());
		expect(heldDelete).toEqual([]);
		expect(read.every((o) => (o.json.postAction as { done: boolean }).done)).toBe(true);
		expect(read[0].json.postAction).toEqual({ action: 'markRead', done: true });
		expect(deleted.every((o) => (o.json.postAction as { done: boolean }).done)).toBe(true);
		// Dovecot answers MOVE with COPYUID: every message says where it went.
		expect(moved[0].json.postAction).toEqual({ action: 'move', folder: 'BulkDone', done: true, newUid: heldDone[0].uid });
		expect(newUids).toEqual(new Set(heldDone.map((m) => m.uid)));
	}, 600_000);

	it("a move the server refuses fails the item with the server's words and leaves the messages where they were; continueOnFail: only those messages carry the error", async () => {
		await seed('Refuse', 3);
		await seed('Other', 2);
		await dovecot.setRights(USER, 'Locked', 'lr'); // may read, may not insert

		const failed = await readItems([{ folder: 'Refuse', postAction: 'move', moveTo: 'Locked' }]);
		expect(failed.error?.message).toBe('Item 0: Move to "Locked" failed for 3 of 3 messages read from "Refuse": the server refused UID MOVE: [NOPERM] Permission denied');
		expect(failed.error?.description).toMatch(/^The messages were read\. Reached: none\. Not reached: UIDs 1:3, still in "Refuse" as before, so a new run reads them again\./);
		expect((await list('Refuse')).length).toBe(3);
		expect(await list('Locked')).toEqual([]);

		const { output, error } = await readItems(
			[
				{ folder: 'Refuse', postAction: 'move', moveTo: 'Locked' },
				{ folder: 'Other', postAction: 'markRead' },
			],
			{ onError: 'continueRegularOutput' },
		);
		expect(error).toBeUndefined();
		const refused = output.filter((o) => (o.pairedItem as { item: number }).item === 0);
		expect(refused.map((o) => o.json.subject)).toEqual(['Refuse 1', 'Refuse 2', 'Refuse 3']);
		for (const item of refused) {
			expect(item.json.postAction).toEqual({ action: 'move', folder: 'Locked', done: false, reason: 'the server refused UID MOVE: [NOPERM] Permission denied' });
			expect(item.json.error).toMatchObject({ code: 'IMAP_POST_ACTION_FAILED', message: `Move to "Locked" failed for UID ${item.json.uid}: the server refused UID MOVE: [NOPERM] Permission denied` });
		}
		const other = output.filter((o) => (o.pairedItem as { item: number }).item === 1);
		expect(other.map((o) => [o.json.subject, o.json.postAction, o.json.error])).toEqual([
			['Other 1', { action: 'markRead', done: true }, undefined],
			['Other 2', { action: 'markRead', done: true }, undefined],
		]);
		expect((await list('Refuse')).length).toBe(3);
		expect((await list('Other')).every((m) => m.flags.includes('\\Seen'))).toBe(true);
	});

	it('a STORE the server answers OK without setting the flag (no seen right) is caught by reading the flags back', async () => {
		await seed('NoSeen', 2);
		await dovecot.setRights(USER, 'NoSeen', 'lrwite'); // everything but the seen right
		const { error } = await readItems([{ folder: 'NoSeen', postAction: 'markRead' }]);
		expect(error?.message).toBe('Item 0: Mark as read failed for 2 of 2 messages read from "NoSeen": the server answered OK but \\Seen is not set (no right to set it?)');
		expect((await list('NoSeen')).filter((m) => m.flags.includes('\\Seen'))).toEqual([]);
	});
});
