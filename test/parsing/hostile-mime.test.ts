/**
 * Hostile MIME (issue 8, item 12, parsing side): malformed messages stored in a real Dovecot
 * and read by Read Mailbox through n8n-core. Every message must come out exactly once, as an
 * item or as a per-message error item, within a bound, with the node not failing and the IMAP
 * session closed.
 */
import { runNode } from '../harness/n8n-run';
import { dovecotImapCredential } from '../harness/imap-credential';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

const USER = 'hostile@example.com';
const PASSWORD = 'Hostile-imap-Passw0rd';
const BOUND_MS = 30_000;

let pki: ReturnType<typeof sharedTestPki>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;

beforeAll(async () => {
	pki = sharedTestPki();
	dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD } });
}, 120_000);

afterAll(async () => dovecot?.stop());

const credentials = () => dovecotImapCredential({ dovecot, pki, user: USER, password: PASSWORD }, { id: 'imapHostile00001', name: 'Hostile IMAP' });

const HEAD = 'From: a@example.org\r\nTo: hostile@example.com\r\n';
const bytes = (text: string) => Buffer.from(text, 'latin1');
const multipart = (boundary: string, parts: string[], close = true) =>
	parts.map((part) => `--${boundary}\r\n${part}\r\n`).join('') + (close ? `--${boundary}--\r\n` : '');

function nested(depth: number): Buffer {
	let open = '';
	let close = '';
	for (let d = 0; d < depth; d++) {
		open += `Content-Type: multipart/mixed; boundary="n${d}"\r\n\r\n--n${d}\r\n`;
		close = `\r\n--n${d}--\r\n${close}`;
	}
	return bytes(`${HEAD}Subject: nested ${depth}\r\n${open}Content-Type: text/plain\r\n\r\ndeep\r\n${close}`);
}

function nestedMessages(depth: number): Buffer {
	let message = `${HEAD}Subject: innermost\r\n\r\nbody\r\n`;
	for (let d = 0; d < depth; d++) {
		message = `${HEAD}Subject: level ${d}\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n${message}`;
	}
	return bytes(message);
}

const attachment = (name: string, body: string, extra = '') =>
	`Content-Type: application/octet-stream${extra}\r\nContent-Disposition: attachment; filename="${name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n${body}`;

/** Families of hostile input; each case is one stored message. */
const FAMILIES: Record<string, Record<string, () => Buffer>> = {
	'broken boundaries': {
		'declared, never used': () => bytes(`${HEAD}Subject: b1\r\nContent-Type: multipart/mixed; boundary="nowhere"\r\n\r\njust text\r\n`),
		'closing boundary missing': () =>
			bytes(`${HEAD}Subject: b2\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n${multipart('x', ['Content-Type: text/plain\r\n\r\none', attachment('a.bin', 'AAEC')], false)}`),
		'no boundary parameter': () => bytes(`${HEAD}Subject: b3\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n`),
		'empty boundary': () => bytes(`${HEAD}Subject: b4\r\nContent-Type: multipart/mixed; boundary=""\r\n\r\n--\r\nContent-Type: text/plain\r\n\r\nhi\r\n----\r\n`),
		'boundary of 5,000 characters': () => {
			const b = 'q'.repeat(5000);
			return bytes(`${HEAD}Subject: b5\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n${multipart(b, ['Content-Type: text/plain\r\n\r\nlong'])}`);
		},
		'nested parts sharing a boundary prefix': () =>
			bytes(
				`${HEAD}Subject: b6\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary="bb"\r\n\r\n--bb\r\nContent-Type: text/plain\r\n\r\ninner\r\n--b--\r\n--bb--\r\n`,
			),
		'body before the first boundary and garbage after the last': () =>
			bytes(`${HEAD}Subject: b7\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\npreamble\r\n${multipart('x', ['Content-Type: text/plain\r\n\r\nok'])}${'epilogue '.repeat(10_000)}`),
	},
	'unknown charsets': {
		'body charset x-klingon': () => bytes(`${HEAD}Subject: c1\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nqapla\xe9\r\n`),
		'empty charset': () => bytes(`${HEAD}Subject: c2\r\nContent-Type: text/plain; charset=""\r\n\r\nplain\r\n`),
		'encoded word with unknown charset': () => bytes(`${HEAD}Subject: =?x-unknown?B?${Buffer.from('secret').toString('base64')}?=\r\n\r\nbody\r\n`),
		'UTF-7 body': () => bytes(`${HEAD}Subject: c4\r\nContent-Type: text/plain; charset=utf-7\r\n\r\nHi Mom -+Jjo--!\r\n`),
		'RFC 2231 file name in an unknown charset': () =>
			bytes(`${HEAD}Subject: c5\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n${multipart('x', ["Content-Type: application/pdf\r\nContent-Disposition: attachment; filename*=x-unk''%FF%FE%00a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0="])}`),
		'charset with 10,000 characters': () => bytes(`${HEAD}Subject: c6\r\nContent-Type: text/plain; charset=${'u'.repeat(10_000)}\r\n\r\nbody\r\n`),
	},
	'deep nesting': {
		'100 multipart levels': () => nested(100),
		'500 multipart levels': () => nested(500),
		'2,000 multipart levels (over the part limit)': () => nested(2000),
		'200 nested message/rfc822': () => nestedMessages(200),
		'3,000 sibling parts': () =>
			bytes(`${HEAD}Subject: siblings\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n${multipart('x', Array.from({ length: 3000 }, (_, k) => attachment(`f${k}.bin`, 'AAEC')))}`),
	},
	'empty and truncated messages': {
		'zero bytes': () => Buffer.alloc(0),
		'a blank line only': () => bytes('\r\n'),
		'header without body or blank line': () => bytes(`${HEAD}Subject: e3`),
		'header cut inside a folded line': () => bytes(`${HEAD}Subject: e4\r\nX-Long: a\r\n `),
		'base64 attachment cut short': () =>
			bytes(`${HEAD}Subject: e5\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n${attachment('cut.bin', 'QUJD\r\nRE')}`),
	},
	'NUL bytes': {
		'in a header': () => bytes(`${HEAD}Subject: nul\x00here\r\nX-Nul: \x00\x00\x00\r\n\r\nbody\r\n`),
		'in the body': () => bytes(`${HEAD}Subject: n2\r\n\r\nbo\x00dy${'\x00'.repeat(10_000)}\r\n`),
		'in a boundary and a file name': () =>
			bytes(`${HEAD}Subject: n3\r\nContent-Type: multipart/mixed; boundary="a\x00b"\r\n\r\n${multipart('a\x00b', [attachment('x\x00y.txt', 'AAEC')])}`),
		'message of NUL bytes only': () => Buffer.alloc(64 * 1024),
	},
	'8-bit headers': {
		'raw UTF-8 subject and display name': () => Buffer.from(`From: "Zoë Ünïcødé 🚀" <z@example.org>\r\nSubject: Grüße 🚀 שלום\r\n\r\nbody\r\n`, 'utf8'),
		'raw Latin-1 subject': () => bytes(`${HEAD}Subject: caf\xe9 cr\xe8me\r\n\r\nbody\r\n`),
		'invalid UTF-8 sequences': () => Buffer.concat([bytes(`${HEAD}Subject: bad `), Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x90, 0x28, 0xbc]), bytes('\r\n\r\nbody\r\n')]),
		'8-bit address': () => Buffer.from(`From: ü@exämple.org\r\nTo: 用户@例子.广告\r\nSubject: h4\r\n\r\nbody\r\n`, 'utf8'),
		'CR and LF alone in headers': () => bytes(`${HEAD}Subject: lone\rcr\r\nX-A: lone\nlf\r\n\r\nbody\r\n`),
	},
	'huge single line': {
		'900 KB body line (fetched whole)': () => Buffer.concat([bytes(`${HEAD}Subject: line 900k\r\n\r\n`), Buffer.alloc(900 * 1024, 'a')]),
		'5 MB body line (streamed)': () => Buffer.concat([bytes(`${HEAD}Subject: line 5m\r\n\r\n`), Buffer.alloc(5 * 1024 * 1024, 'b')]),
		'3 MB base64 attachment without line breaks': () =>
			bytes(`${HEAD}Subject: b64 line\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n${multipart('x', [attachment('one-line.bin', Buffer.alloc(2 * 1024 * 1024, 7).toString('base64'))])}`),
		'200 KB header line (under the budget)': () => bytes(`${HEAD}Subject: h200k\r\nX-Big: ${'h'.repeat(200 * 1024)}\r\n\r\nbody\r\n`),
	},
};

function openSessions(): number {
	const logins = dovecot.logs.filter((line: string) => /imap-login: (Info: )?Login: user=<hostile@/.test(line)).length;
	const ends = dovecot.logs.filter((line: string) => /imap\(hostile@[^)]*\).*Disconnected/.test(line)).length;
	return logins - ends;
}

async function settledSessions(): Promise<number> {
	for (let k = 0; k < 50 && openSessions() > 0; k++) await new Promise((resolve) => setTimeout(resolve, 100));
	return openSessions();
}

describe('hostile MIME: each message becomes an item or a per-message error in bounded time', () => {
	let folderNumber = 0;
	it.each(Object.keys(FAMILIES))('%s', async (family) => {
		const folder = `Hostile${++folderNumber}`;
		await dovecot.createFolder(USER, folder);
		const cases = Object.entries(FAMILIES[family]);
		for (const [, build] of cases) await dovecot.deliver(USER, build(), { folder });
		const stored = (await dovecot.list(USER, folder)).map((m: { uid: number }) => m.uid);

		const started = Date.now();
		const bound = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), BOUND_MS).unref());
		const run = runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'imap', folder, limit: 100, order: 'oldest', postAction: 'markRead', options: { includeRaw: true } },
			items: [{ json: {} }],
			credentials: credentials(),
		});
		const result = await Promise.race([run, bound]);
		const elapsed = Date.now() - started;
		const output = result === 'timeout' ? [] : result.output;
		const uids = output.map((item) => Number(item.json.uid));
		const errors = output.filter((item) => item.json.error);
		const sessions = await settledSessions();
		const seen = (await dovecot.list(USER, folder)).filter((m: { flags: string[] }) => m.flags.includes('\\Seen')).map((m: { uid: number }) => m.uid);
		const nodeFailed = result === 'timeout' || result.error !== undefined;
		const everyOnce = JSON.stringify(uids) === JSON.stringify(stored);
		record({
			transport: 'imap',
			kind: 'hostile',
			name: `mime: ${family}`,
			survived: !nodeFailed && everyOnce && sessions === 0,
			behaviour: nodeFailed
				? `node failed or hung (${elapsed} ms)`
				: `${output.length - errors.length} items, ${errors.length} per-message errors (${[...new Set(errors.map((e) => (e.json.error as { code: string }).code))].join(', ') || 'none'}) in ${elapsed} ms`,
			cases: cases.length,
		});
		expect(result).not.toBe('timeout');
		if (result !== 'timeout') expect(result.error).toBeUndefined();
		expect(stored).toHaveLength(cases.length);
		expect(uids).toEqual(stored);
		for (const item of errors) expect(item.json.error).toMatchObject({ code: expect.stringMatching(/^MESSAGE_/), message: expect.any(String), hint: expect.any(String) });
		// Only the messages that were read are marked read.
		expect(seen).toEqual(output.filter((item) => !item.json.error).map((item) => Number(item.json.uid)));
		expect(sessions).toBe(0);
	}, 90_000);
});
