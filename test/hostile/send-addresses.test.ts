/**
 * Hostile and odd address input for Send Email, property-based: every generated item either
 * arrives at the SMTP peer with exactly the addresses and display names it asked for, or fails
 * with an error naming its field, while the good items of the same run still arrive.
 */
import fc from 'fast-check';

import { runNode, type InputItem } from '../harness/n8n-run';
import {
	PER_ITEM_PARAMETERS,
	smtpCredential,
	canonicalAddress,
	describeFailure,
	headerAddresses,
	headerLines,
	record,
	runBatch,
	seedFor,
	startPeer,
	type Delivered,
	type Peer,
} from './send-harness';

const RUNS = 150;

let peer: Peer;
beforeAll(async () => {
	peer = await startPeer();
});
afterAll(async () => peer?.close());

interface Entry {
	name?: string;
	address: string;
}
type ListForm = 'text' | 'objects' | 'strings';
interface AddressList {
	entries: Entry[];
	form: ListForm;
	separator: string;
	group?: string;
	commentNames: boolean;
}

// Display-name material: RFC 5322 specials, RTL, emoji (with joiners), combining marks,
// zero-width and bidi marks, odd spaces, a tab, long runs.
const namePiece = fc.oneof(
	fc.constantFrom(...' "\\,<>@;:()[].\'!#$%&*+/=?^_`{|}~'.split('')),
	fc.stringMatching(/^[A-Za-z0-9]{1,8}$/),
	fc.constantFrom(
		'שלום',
		'مرحبا',
		'Zoë',
		'Łukasz',
		'李小龍',
		'😀',
		'👨\u200d👩\u200d👧',
		'e\u0301\u0327',
		'\u200b',
		'\u200f',
		'\u202e',
		'\u2066x\u2069',
		'\u00a0',
		'\u2028',
		'\t',
		'Lorem ipsum dolor sit amet, '.repeat(12),
	),
);
const displayName = fc
	.array(namePiece, { maxLength: 8 })
	.map((pieces) => pieces.join(''))
	// Encoded-word look-alikes are refused on purpose; the refusal family covers them.
	.filter((name) => !/=\?[^?\s]+\?[bq]\?[^?\s]*\?=/i.test(name));

const label = fc.oneof(fc.stringMatching(/^[a-z0-9]{1,10}$/), fc.constantFrom('bücher', 'пример', '例え', 'xn--mnchen-3ya'));
const address = fc
	.record({
		local: fc.oneof(
			{ weight: 8, arbitrary: fc.array(fc.stringMatching(/^[A-Za-z0-9_+-]{1,8}$/), { minLength: 1, maxLength: 3 }).map((w) => w.join('.')) },
			{ weight: 1, arbitrary: fc.constantFrom('jürgen', '用户', 'o\'brien', 'a+tag') },
		),
		labels: fc.array(label, { minLength: 1, maxLength: 3 }),
		tld: fc.constantFrom('org', 'example', 'test', 'рф'),
	})
	.map(({ local, labels, tld }) => `${local}@${[...labels, tld].join('.')}`);

const entry = fc.record({ name: fc.option(displayName, { nil: undefined }), address });

function list(minLength: number, maxLength: number) {
	return fc.record({
		entries: fc.oneof({ weight: 12, arbitrary: fc.array(entry, { minLength, maxLength }) }, { weight: 1, arbitrary: fc.array(entry, { minLength: Math.max(minLength, 60), maxLength: 150 }) }),
		form: fc.constantFrom<ListForm>('text', 'objects', 'strings'),
		// empty entries between addresses are skipped
		separator: fc.constantFrom(', ', ',', ' ,  ', ', , ', ',,'),
		group: fc.option(fc.constantFrom('Team', 'undisclosed recipients', 'Équipe'), { nil: undefined }),
		commentNames: fc.boolean(),
	});
}

const quoted = (name: string) => `"${name.replace(/[\\"]/g, '\\$&')}"`;
const commentSafe = (name: string) => /^[\p{L}\p{N} ]+$/u.test(name) && name.trim() === name;

/** Writes a list the way a user or an upstream node would hand it over. */
function asInput(value: AddressList): unknown {
	if (value.form === 'objects') return value.entries;
	const texts = value.entries.map((e) => {
		if (!e.name) return e.address;
		if (value.commentNames && commentSafe(e.name)) return `${e.address} (${e.name})`;
		return `${quoted(e.name)} <${e.address}>`;
	});
	if (value.form === 'strings') return texts;
	const joined = texts.join(value.separator);
	return value.group ? `${quoted(value.group)}: ${joined};` : joined;
}

/** What the peer must show: names as given but for insignificant outer whitespace. */
const expected = (entries: Entry[]) => entries.map((e) => ({ name: (e.name ?? '').trim(), address: canonicalAddress(e.address) }));

const addressCase = fc.record({
	from: fc.record({ entries: fc.array(entry, { minLength: 1, maxLength: 1 }), form: fc.constantFrom<ListForm>('text', 'objects'), separator: fc.constant(''), commentNames: fc.boolean() }),
	to: list(1, 4),
	cc: list(0, 3),
	bcc: list(0, 3),
	replyTo: list(0, 2),
});
type AddressCase = Record<'from' | 'to' | 'cc' | 'bcc' | 'replyTo', AddressList>;

function itemFor(c: AddressCase, caseId: string): InputItem {
	const from = asInput(c.from);
	return {
		json: {
			caseId,
			// a single From goes in as one address, not a list
			from: Array.isArray(from) ? from[0] : from,
			to: asInput(c.to) as never,
			cc: asInput(c.cc) as never,
			bcc: asInput(c.bcc) as never,
			replyTo: asInput(c.replyTo) as never,
			subject: `address case ${caseId}`,
			format: 'text',
			text: `body of ${caseId}`,
			note: '',
		},
	};
}

describe('hostile addresses (property-based, checked at the SMTP peer)', () => {
	it('every generated address list and display name round-trips to the peer', async () => {
		const property = 'send: address lists and display names round-trip';
		const seed = seedFor(property);
		const cases: AddressCase[] = fc.sample(addressCase, { numRuns: RUNS, seed });
		const { run, delivered, strays } = await runBatch(peer, cases.map((c, i) => itemFor(c, String(i))));

		const problems: string[] = [];
		cases.forEach((c, i) => {
			const problem = checkDelivered(c, i, run.output[i]?.json, delivered.get(String(i)));
			if (problem) problems.push(describeFailure(property, seed, i, problem, itemFor(c, String(i)).json));
		});
		if (strays.length) problems.push(`${strays.length} message(s) at the peer belong to no case`);
		record({
			transport: 'smtp',
			kind: 'hostile',
			name: 'send-address-round-trip',
			survived: problems.length === 0 && !run.error,
			behaviour: 'generated To/CC/BCC/Reply-To/From lists (quotes, commas in names, groups, comments, IDN, RTL, emoji, long lists, empty entries) delivered with the same addresses and names',
			cases: cases.length,
			sent: cases.length,
			delivered: [...delivered.values()].filter((d) => d.length > 0).length,
			duplicated: [...delivered.values()].filter((d) => d.length > 1).length,
			lost: cases.length - delivered.size,
		});
		expect(run.error).toBeUndefined();
		expect(problems.slice(0, 5)).toEqual([]);
	});

	it('CR/LF, NUL and other control characters anywhere, and invisible characters in an address, are refused per item; good items still arrive', async () => {
		const property = 'send: control characters in address and header fields are refused';
		const seed = seedFor(property);
		const cases = fc.sample(hostileCase, { numRuns: RUNS, seed });
		const items = cases.map((c, i) => hostileItem(c, String(i)));
		const { run, delivered, strays } = await runBatch(peer, items);

		const problems: string[] = [];
		let refused = 0;
		cases.forEach((c, i) => {
			const out = run.output[i];
			const got = delivered.get(String(i)) ?? [];
			if (!c.attack) {
				const problem = checkDelivered(c.base, i, out?.json, got);
				if (problem) problems.push(describeFailure(property, seed, i, `good item among bad ones: ${problem}`, items[i].json));
				return;
			}
			const error = out?.json.error as { message?: string; code?: string } | undefined;
			const label = FIELD_LABELS[c.attack.field];
			if (got.length) problems.push(describeFailure(property, seed, i, `attacked ${label} was sent`, items[i].json));
			else if (out?.pairedItem && (out.pairedItem as { item: number }).item !== i) problems.push(`case ${i}: output paired with another item`);
			else if (error?.code !== 'INVALID_INPUT' || !String(error.message).startsWith(`${label}: `)) {
				problems.push(describeFailure(property, seed, i, `expected an INVALID_INPUT error naming ${label}, got ${JSON.stringify(out?.json)}`, items[i].json));
			} else refused++;
		});
		// Whatever got through, no injected header or recipient may have reached the wire.
		const all = [...[...delivered.values()].flat(), ...strays];
		const injected = all.filter((d) => d.envelope.to.some((to) => to.endsWith('evil.example')) || headerLines(d.raw).some((line) => /^(bcc|x-injected):/i.test(line)));
		if (injected.length) problems.push(`${injected.length} message(s) carried an injected header or recipient`);
		if (strays.length) problems.push(`${strays.length} message(s) at the peer belong to no case`);
		const attacks = cases.filter((c) => c.attack).length;
		record({
			transport: 'smtp',
			kind: 'hostile',
			name: 'send-header-injection-refused',
			survived: problems.length === 0 && !run.error,
			behaviour: 'CR/LF/NUL/C0/C1 control characters in any address or header field, and zero-width/bidi characters in addresses, fail that item with INVALID_INPUT naming the field; nothing injected reaches the wire; good items in the same run arrive',
			cases: cases.length,
			sent: cases.length - attacks,
			delivered: [...delivered.values()].filter((d) => d.length > 0).length,
			lost: cases.length - attacks - delivered.size,
			duplicated: [...delivered.values()].filter((d) => d.length > 1).length,
			hits: injected.length,
		});
		expect(run.error).toBeUndefined();
		expect(problems.slice(0, 5)).toEqual([]);
		expect(refused).toBe(attacks);
		expect(attacks).toBeGreaterThan(RUNS / 4);
	});

	it('without continueOnFail a refused item fails the node naming item and field, and nothing is sent', async () => {
		const seed = seedFor('send: refusal stops the node');
		const attacked = fc.sample(hostileCase.filter((c) => c.attack !== undefined), { numRuns: 20, seed });
		const good = itemFor(fc.sample(addressCase, { numRuns: 1, seed })[0], 'good');
		for (const [n, c] of attacked.entries()) {
			peer.reset();
			const { error } = await runNode({
				type: 'modernAuthSendEmail',
				parameters: PER_ITEM_PARAMETERS,
				items: [good, hostileItem(c, `bad-${n}`), good],
				credentials: smtpCredential(peer),
			});
			const label = FIELD_LABELS[c.attack!.field];
			expect({ n, message: error?.message?.slice(0, `Item 1: ${label}: `.length) }).toEqual({ n, message: `Item 1: ${label}: ` });
			expect(error?.name).toBe('NodeOperationError');
			expect(peer.received).toHaveLength(0);
		}
	});
});

function checkDelivered(c: AddressCase, i: number, json: Record<string, unknown> | undefined, got: Delivered[] | undefined): string | undefined {
	if (!got || got.length === 0) return `not delivered; node output ${JSON.stringify(json)}`;
	if (got.length > 1) return `delivered ${got.length} times`;
	const [{ mail, envelope, raw }] = got;
	const want = {
		from: expected(c.from.entries),
		to: expected(c.to.entries),
		cc: expected(c.cc.entries),
		replyTo: expected(c.replyTo.entries),
		envelopeFrom: canonicalAddress(c.from.entries[0].address),
		envelopeTo: [...new Set([...c.to.entries, ...c.cc.entries, ...c.bcc.entries].map((e) => canonicalAddress(e.address)))].sort(),
	};
	const have = {
		from: headerAddresses(mail.from),
		to: headerAddresses(mail.to),
		cc: headerAddresses(mail.cc),
		replyTo: headerAddresses(mail.replyTo),
		envelopeFrom: canonicalAddress(envelope.from),
		envelopeTo: [...new Set(envelope.to.map(canonicalAddress))].sort(),
	};
	for (const key of Object.keys(want) as Array<keyof typeof want>) {
		if (JSON.stringify(want[key]) !== JSON.stringify(have[key])) return `${key}: want ${JSON.stringify(want[key])}, peer has ${JSON.stringify(have[key])}`;
	}
	const lines = headerLines(raw);
	if (lines.some((line) => /^bcc:/i.test(line))) return 'a Bcc header reached the wire';
	for (const name of ['from', 'to', 'subject']) {
		const count = lines.filter((line) => line.toLowerCase().startsWith(`${name}:`)).length;
		if (count !== 1) return `${count} ${name} headers`;
	}
	if (mail.subject !== `address case ${i}`) return `subject ${JSON.stringify(mail.subject)}`;
	return undefined;
}

// ---- the refusal family ----------------------------------------------------------------------

type AttackField = 'to' | 'cc' | 'bcc' | 'replyTo' | 'from' | 'subject' | 'note';
const FIELD_LABELS: Record<AttackField, string> = {
	to: 'To',
	cc: 'CC',
	bcc: 'BCC',
	replyTo: 'Reply To',
	from: 'From',
	subject: 'Subject',
	note: 'Custom Headers "X-Note"',
};

// A line break followed by what an attacker wants as a header; other control characters alone.
const controlPayload = fc.constantFrom('\r\nBcc: victim@evil.example', '\nBcc: victim@evil.example', '\r', '\n\rX-Injected: 1', '\u0000', '\u0001', '\u001b[31m', '\u007f', '\u0085', '\u009b');
const invisiblePayload = fc.constantFrom('\u200b', '\u200d', '\u202e', '\u2066', '\ufeff', '\u00ad');

const hostileCase = fc.record({
	base: addressCase,
	attack: fc.option(
		fc.oneof(
			fc.record({ kind: fc.constant('control' as const), field: fc.constantFrom<AttackField>('to', 'cc', 'bcc', 'replyTo', 'from', 'subject', 'note'), payload: controlPayload, at: fc.nat() }),
			fc.record({ kind: fc.constant('invisible' as const), field: fc.constantFrom<AttackField>('to', 'cc', 'bcc', 'replyTo', 'from'), payload: invisiblePayload, at: fc.nat() }),
		),
		{ nil: undefined, freq: 2 },
	),
});

const insertAt = (text: string, at: number, payload: string) => {
	const position = at % (text.length + 1);
	return text.slice(0, position) + payload + text.slice(position);
};

type HostileCase = typeof hostileCase extends fc.Arbitrary<infer T> ? T : never;

function hostileItem(c: HostileCase, caseId: string): InputItem {
	const item = itemFor(c.base, caseId);
	const attack = c.attack;
	if (!attack) return item;
	const json = item.json as Record<string, unknown>;
	if (attack.field === 'subject' || attack.field === 'note') {
		json[attack.field] = insertAt(String(json[attack.field] ?? ''), attack.at, attack.payload);
		return item;
	}
	// The attacked list is never empty, or there would be nothing to attack.
	const source = attack.field === 'from' ? c.base.from : c.base[attack.field];
	const entries = source.entries.length ? source.entries.map((e: Entry) => ({ ...e })) : [{ address: 'filler@example.org' }];
	const target = entries[attack.at % entries.length];
	if (attack.kind === 'invisible') {
		// inside the local part or the domain, where it would disguise the address
		target.address = insertAt(target.address, attack.at, attack.payload);
		if (target.address.startsWith(attack.payload)) target.address = `x${target.address}`;
	}
	const attacked = asInput({ ...source, entries });
	let value: unknown = attack.field === 'from' && Array.isArray(attacked) ? attacked[0] : attacked;
	if (attack.kind === 'control') {
		if (typeof value === 'string') value = insertAt(value, attack.at, attack.payload);
		else if (Array.isArray(value)) {
			const k = attack.at % value.length;
			value = value.map((v, j) => (j !== k ? v : typeof v === 'string' ? insertAt(v, attack.at, attack.payload) : { ...v, name: insertAt(v.name ?? '', attack.at, attack.payload) }));
		} else {
			const object = value as Entry;
			value = { ...object, name: insertAt(object.name ?? '', attack.at, attack.payload) };
		}
	}
	json[attack.field] = value as never;
	return item;
}
