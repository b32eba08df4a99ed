import { advance, decodeCursor, encodeCursor, GRACE_MS, MAX_SEEN, type DeltaItem } from '../../../transports/graph/delta-cursor';

const at = (minutes: number) => new Date(Date.UTC(2026, 11, 2, 0, 0, 0) + minutes * 60_000).toISOString();
const item = (id: string, minutes: number, extra: Partial<DeltaItem> = {}): DeltaItem => ({ id, receivedDateTime: at(minutes), internetMessageId: `<${id}@x>`, ...extra });

describe('delta cursor rule: each new message once', () => {
	const baseline = advance(undefined, [item('old1', 0), item('old2', 5)], new Date(at(6)));

	it('a baseline emits nothing and remembers what is present', () => {
		expect(baseline.newIds).toEqual([]);
		expect(baseline.floor).toBe(new Date(Date.parse(at(6)) - GRACE_MS).toISOString());
		expect(baseline.seen.length).toBe(4); // old2 is within the grace window: id + Message-ID; old1 too (at 0 > 6-10)
	});

	it('emits a burst oldest first, once, and a repeated or changed delivery of it never again', () => {
		const burst = [item('n3', 8), item('n1', 7), item('n2', 7), item('n1', 7)];
		const first = advance(baseline, burst);
		expect(first.newIds).toEqual(['n1', 'n2', 'n3']);
		// The next round returns n1 as changed (read), old1 as flagged, n2 moved away and back.
		const second = advance(first, [item('n1', 7), item('old1', 0), item('n2', 7)]);
		expect(second.newIds).toEqual([]);
		// Moved back with a new id: the Internet Message-ID still recognises it.
		expect(advance(second, [item('n2-new-id', 7, { internetMessageId: '<n2@x>' })]).newIds).toEqual([]);
	});

	it('a message visible late (received before a newer one already emitted) is still caught within the grace window', () => {
		const first = advance(baseline, [item('n5', 20)]);
		expect(advance(first, [item('late', 19)]).newIds).toEqual(['late']);
	});

	it('old mail moved into the folder is not new; removed entries are ignored', () => {
		const first = advance(baseline, [item('n5', 30)]);
		expect(advance(first, [item('ancient', -600), { id: 'n5', removed: true }]).newIds).toEqual([]);
	});

	it('a re-baseline after an expired delta link emits what arrived after the old floor and nothing older', () => {
		const before = advance(baseline, [item('n1', 7)]);
		const walk = [item('old1', 0), item('old2', 5), item('n1', 7), item('missed', 9), item('missed2', 40)];
		expect(advance(before, walk).newIds).toEqual(['missed', 'missed2']);
	});

	it('stays bounded: an overflowing seen-set raises the floor, so a dropped entry cannot come back as new', () => {
		const many = Array.from({ length: MAX_SEEN + 50 }, (_v, i) => item(`b${i}`, 100 + i / 1000));
		const after = advance(baseline, many);
		expect(after.newIds.length).toBe(MAX_SEEN + 50);
		expect(after.seen.length).toBeLessThanOrEqual(MAX_SEEN);
		expect(advance(after, many).newIds).toEqual([]);
	});

	it('round-trips as JSON; a cursor of another folder or transport is not taken', () => {
		const text = encodeCursor({ v: 1, folder: 'inbox', deltaLink: 'https://g/x', ...baseline });
		expect(decodeCursor(text, 'inbox')).toEqual(JSON.parse(text));
		expect(decodeCursor(text, 'sentitems')).toBeUndefined();
		expect(decodeCursor('{"uidValidity":1,"lastUid":5}', 'inbox')).toBeUndefined();
		expect(decodeCursor('not json', 'inbox')).toBeUndefined();
	});
});
