import { DELTA_PAGE_SIZE } from '../../../transports/graph/delta';
import { MAILBOX, startGraphPeers, type GraphPeers } from './graph-reader-setup';

let peers: GraphPeers;

beforeAll(async () => {
	peers = await startGraphPeers();
});

afterAll(async () => {
	await peers?.close();
});

let counter = 0;
function deliver(count: number, folder = 'inbox'): string[] {
	return Array.from({ length: count }, () => peers.graph.addMessage(MAILBOX, { folder, subject: `mail ${++counter}`, from: { address: 'sender@example.org' }, to: [{ address: MAILBOX }] }).immutableId);
}

describe('Graph trigger: changesSince over the folder delta', () => {
	it('baselines without emitting, emits a burst (more than one delta page) once in arrival order, and nothing on the next poll', async () => {
		deliver(5);
		const reader = peers.reader();
		const from = peers.graph.requests.length;
		const first = await reader.changesSince('inbox', undefined);
		expect(first.baseline).toBe('first');
		expect(first.ids).toEqual([]);
		const calls = peers.requestsSince(from);
		expect(calls[0].method).toBe('GET');
		expect(calls[0].path).toBe(`/v1.0/users/${encodeURIComponent(MAILBOX)}/mailFolders/inbox/messages/delta`);
		expect(new URLSearchParams(calls[0].query).get('$select')).toBe('id,receivedDateTime,internetMessageId');

		const burst = deliver(DELTA_PAGE_SIZE + 17);
		const second = await reader.changesSince('inbox', first.cursor);
		expect(second.baseline).toBeUndefined();
		expect(second.ids).toHaveLength(burst.length);
		expect(new Set(second.ids)).toEqual(new Set(burst));
		// Oldest first: receivedDateTime never decreases along the ids.
		const received = second.ids.map((id) => Date.parse(peers.graph.message(MAILBOX, id).receivedDateTime));
		expect(received).toEqual([...received].sort((a, b) => a - b));

		const third = await reader.changesSince('inbox', second.cursor);
		expect(third.ids).toEqual([]);
		// What the trigger stores stays small even after a burst.
		expect(third.cursor.length).toBeLessThan(200_000);
	});

	it('does not emit messages that were only read, flagged, or moved away and back; emits the one new message beside them', async () => {
		const reader = peers.reader();
		const start = await reader.changesSince('inbox', undefined);
		const [read, flagged, moved] = deliver(3);
		const arrived = await reader.changesSince('inbox', start.cursor);
		expect(arrived.ids).toEqual([read, flagged, moved]);

		peers.graph.updateMessage(MAILBOX, read, { isRead: true });
		peers.graph.updateMessage(MAILBOX, flagged, { flag: { flagStatus: 'flagged' } });
		peers.graph.moveMessage(MAILBOX, moved, 'archive');
		const away = await reader.changesSince('inbox', arrived.cursor);
		expect(away.ids).toEqual([]);
		peers.graph.moveMessage(MAILBOX, moved, 'inbox');
		const [fresh] = deliver(1);
		const back = await reader.changesSince('inbox', away.cursor);
		expect(back.ids).toEqual([fresh]);
		// The fake's delta did list the changed messages: the cursor, not the server, kept them out.
		expect(peers.graph.messages(MAILBOX, 'inbox').map((m: { immutableId: string }) => m.immutableId)).toEqual(expect.arrayContaining([read, flagged, moved, fresh]));
	});

	it('does not emit again what a delta round repeats (Graph may list a message twice)', async () => {
		const reader = peers.reader();
		const start = await reader.changesSince('inbox', undefined);
		const first = deliver(3);
		const got = await reader.changesSince('inbox', start.cursor);
		expect(got.ids).toEqual(first);
		peers.graph.replayDelta(3);
		const second = deliver(1);
		const again = await reader.changesSince('inbox', got.cursor);
		expect(again.ids).toEqual(second);
	});

	it('survives a restart: a new reader with the stored cursor emits only what arrived meanwhile', async () => {
		const before = await peers.reader().changesSince('inbox', undefined);
		const meanwhile = deliver(4);
		const after = await peers.reader().changesSince('inbox', before.cursor);
		expect(after.ids).toEqual(meanwhile);
	});

	it('re-baselines on an expired delta link (410) without flooding old mail and without missing what arrived', async () => {
		const reader = peers.reader();
		const start = await reader.changesSince('inbox', undefined);
		deliver(2);
		const seen = await reader.changesSince('inbox', start.cursor);
		expect(seen.ids).toHaveLength(2);
		expect(peers.graph.expireDeltaTokens()).toBeGreaterThan(0);
		const missed = deliver(3);
		const from = peers.graph.requests.length;
		const resync = await reader.changesSince('inbox', seen.cursor);
		expect(peers.requestsSince(from).some((r) => r.status === 410)).toBe(true);
		// Not a baseline for the trigger: the ids are exactly the mail that arrived meanwhile.
		expect(resync.baseline).toBeUndefined();
		expect(resync.ids).toEqual(missed);
		const next = await reader.changesSince('inbox', resync.cursor);
		expect(next.ids).toEqual([]);
		expect(next.baseline).toBeUndefined();
	});

	it('treats a cursor of another folder or transport as none, and one naming another host as expired', async () => {
		const reader = peers.reader();
		const inbox = await reader.changesSince('inbox', undefined);
		const other = await reader.changesSince('archive', inbox.cursor);
		expect(other.baseline).toBe('first');
		expect((await reader.changesSince('inbox', JSON.stringify({ uidValidity: 1, lastUid: 9 }))).baseline).toBe('first');
		const forged = JSON.stringify({ ...JSON.parse(inbox.cursor), deltaLink: 'https://attacker.example/v1.0/steal' });
		const from = peers.graph.requests.length;
		const result = await reader.changesSince('inbox', forged);
		expect(result.baseline).toBe('invalid');
		expect(result.ids).toEqual([]);
		expect(peers.requestsSince(from).every((r) => r.path.startsWith('/v1.0/users/'))).toBe(true);
	});
});
