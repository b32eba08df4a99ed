import { ImapReader } from '../../transports/imap/imap-reader';
import { MAX_UID_SET_CHARS, uidSetChunks } from '../../transports/imap/post-actions';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');

const USER = 'posts@example.com';
const PASSWORD = 'Posts-imap-Passw0rd';

let pki: ReturnType<typeof sharedTestPki>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;

beforeAll(async () => {
	pki = sharedTestPki();
	dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD }, acl: true });
}, 120_000);

afterAll(async () => dovecot?.stop());

const message = (n: number) => `From: a@example.org\r\nTo: ${USER}\r\nSubject: m${n}\r\n\r\nbody ${n}\r\n`;

/** Ids of the folder's messages by UID, as the reader makes them. */
const idsOf = async (folder: string, uids: number[]) => {
	const uidValidity = await dovecot.uidValidity(USER, folder);
	return uids.map((uid) => `${uidValidity}:${uid}`);
};

async function withReader<T>(fn: (reader: ImapReader) => Promise<T>): Promise<T> {
	const reader = new ImapReader({ host: dovecot.host, port: dovecot.tlsPort, security: 'tls', auth: { type: 'password', user: USER, pass: PASSWORD }, rejectUnauthorized: true, ca: pki.ca });
	await reader.connect();
	try {
		return await fn(reader);
	} finally {
		await reader.close();
	}
}

const seenUids = async (folder: string) =>
	(await dovecot.list(USER, folder)).filter((m: { flags: string[] }) => m.flags.includes('\\Seen')).map((m: { uid: number }) => m.uid);

describe('IMAP post-actions against Dovecot', () => {
	it('UID sets are packed and split so no command line exceeds the limit, whatever the gaps', () => {
		const alternate = Array.from({ length: 15_000 }, (_, i) => 2 * i + 1);
		const chunks = uidSetChunks([...alternate].reverse());
		expect(chunks.length).toBeGreaterThan(20);
		expect(Math.max(...chunks.map((c) => c.set.length))).toBeLessThanOrEqual(MAX_UID_SET_CHARS);
		expect(chunks.flatMap((c) => c.uids)).toEqual(alternate);
		expect(uidSetChunks([5, 1, 2, 3, 9, 3])).toEqual([{ set: '1:3,5,9', uids: [1, 2, 3, 5, 9] }]);
	});

	it('marks 15,000 scattered UIDs read (every other message of 30,000): exactly those, each confirmed', async () => {
		await dovecot.seed(USER, Array.from({ length: 30_000 }, (_, i) => message(i + 1)), { folder: 'Scattered' });
		const odd = Array.from({ length: 15_000 }, (_, i) => 2 * i + 1);
		const ids = await idsOf('Scattered', odd);
		const outcomes = await withReader((reader) => reader.apply('Scattered', ids, { type: 'markRead' }));
		expect(outcomes.map((o) => o.id)).toEqual(ids);
		expect(outcomes.filter((o) => o.done).length).toBe(15_000);
		expect(await seenUids('Scattered')).toEqual(odd);
	}, 300_000);

	it('atomic: a message gone meanwhile fails the post-action and the flags already set are removed again', async () => {
		await dovecot.seed(USER, [1, 2, 3].map(message), { folder: 'Atomic' });
		const missing = 99;
		const [one, two, gone] = await idsOf('Atomic', [1, 2, missing]);
		const atomic = await withReader((reader) => reader.apply('Atomic', [one, two, gone], { type: 'markRead' }, { atomic: true }));
		expect(atomic).toEqual([
			{ id: one, done: false, reason: '\\Seen was set, then removed again because the server refused other messages' },
			{ id: two, done: false, reason: '\\Seen was set, then removed again because the server refused other messages' },
			{ id: gone, done: false, reason: 'no longer in the folder (removed by someone else meanwhile)' },
		]);
		expect(await seenUids('Atomic')).toEqual([]);

		const partial = await withReader((reader) => reader.apply('Atomic', [one, gone], { type: 'delete' }));
		expect(partial.map((o) => o.done)).toEqual([true, false]);
		expect((await dovecot.list(USER, 'Atomic')).map((m: { uid: number }) => m.uid)).toEqual([2, 3]);
	});

	it('atomic delete in a folder without the expunge right: nothing is deleted and the \\Deleted flags are taken back', async () => {
		await dovecot.seed(USER, [1, 2, 3].map(message), { folder: 'NoExpunge' });
		await dovecot.setRights(USER, 'NoExpunge', 'lrwsit'); // everything but expunge
		const outcomes = await withReader(async (reader) => reader.apply('NoExpunge', await idsOf('NoExpunge', [1, 2, 3]), { type: 'delete' }, { atomic: true }));
		expect(outcomes.map((o) => o.done)).toEqual([false, false, false]);
		// Dovecot answers UID EXPUNGE with OK and expunges nothing; only looking again shows it.
		expect(outcomes[0].reason).toBe('\\Deleted was set, then removed again because the server did not expunge all of them');
		const held = await dovecot.list(USER, 'NoExpunge');
		expect(held.map((m: { uid: number; flags: string[] }) => [m.uid, m.flags.includes('\\Deleted')])).toEqual([
			[1, false],
			[2, false],
			[3, false],
		]);
	});
});
