/**
 * The defects the hostile-input properties found, each as its smallest case, run through the
 * node against the SMTP peer in one batch (continueOnFail) with a good item between them.
 */
import { runNode, type InputItem } from '../harness/n8n-run';
import { PER_ITEM_PARAMETERS, record, runBatch, smtpCredential, startPeer, type Peer } from './send-harness';

let peer: Peer;
beforeAll(async () => {
	peer = await startPeer();
});
afterAll(async () => peer?.close());

const good = { from: 'sender@example.com', to: 'rcpt@example.org', subject: 'fine', format: 'text', text: 'body', note: '' };

interface Refusal {
	name: string;
	json: Record<string, unknown>;
	binary?: InputItem['binary'];
	error: RegExp;
}

// Before the fix each of these was sent, most to a different address or under different text
// than the item asked for.
const refusals: Refusal[] = [
	// the address parser deleted the NUL: mail went to abc@example.org
	{ name: 'NUL inside an address', json: { to: 'ab\u0000c@example.org' }, error: /^To: contains the control character U\+0000/ },
	// a no-break space split the address: mail went to ceo@example.org, "billing" became the name
	{ name: 'no-break space inside an address', json: { to: 'billing\u00a0ceo@example.org' }, error: /^To: contains the invisible space U\+00A0 outside quotes/ },
	// a BOM split the domain: mail went to x@exam, named "ple.org"
	{ name: 'BOM inside a domain', json: { cc: 'x@exam\ufeffple.org' }, error: /^CC: contains the invisible space U\+FEFF/ },
	// accepted as typed: a look-alike of ceo@example.org
	{ name: 'zero-width space in an address object', json: { to: [{ name: 'CEO', address: 'ceo\u200b@example.org' }] }, error: /^To: "ceo\u200b@example\.org" contains an invisible character/ },
	{ name: 'bidi override in an address', json: { replyTo: 'pay\u202elap@example.org' }, error: /^Reply To: "pay\u202elap@example\.org" contains an invisible character/ },
	// recipients read "CEO", not what the item asked for
	{ name: 'encoded-word look-alike as display name', json: { from: '"=?utf-8?q?CEO?=" <x@example.com>' }, error: /^From: contains "=\?utf-8\?q\?CEO\?="/ },
	{ name: 'encoded-word look-alike as subject', json: { subject: 'Re: =?utf-8?b?SGk=?=' }, error: /^Subject: contains "=\?utf-8\?b\?SGk=\?="/ },
	// sent raw or encoded, a terminal escape or NUL reached the recipient's headers
	{ name: 'ESC in the subject', json: { subject: 'Invoice \u001b[31mPAID' }, error: /^Subject: contains the control character U\+001B/ },
	{ name: 'NUL in a custom header value', json: { note: 'a\u0000b' }, error: /^Custom Headers "X-Note": contains the control character U\+0000/ },
	{ name: 'NUL in a display name', json: { to: [{ name: 'Ann\u0000', address: 'ann@example.org' }] }, error: /^To: contains the control character U\+0000/ },
	// the classic disguised extension: shows as "invoiceexe.pdf"
	{
		name: 'bidi override in an attachment file name',
		json: { attachments: 'file' },
		binary: { file: { data: Buffer.from('MZ'), fileName: 'invoice\u202efdp.exe', mimeType: 'application/pdf', exactFileName: true } },
		error: /^Attachments file name: contains a bidi control character/,
	},
	// recipients saw evil.exe
	{
		name: 'encoded-word look-alike as attachment file name',
		json: { attachments: 'file' },
		binary: { file: { data: Buffer.from('MZ'), fileName: 'scan =?utf-8?q?evil.exe?=', mimeType: 'application/pdf', exactFileName: true } },
		error: /^Attachments file name: contains "=\?utf-8\?q\?evil\.exe\?="/,
	},
	{
		name: 'NUL in an attachment file name',
		json: { attachments: 'file' },
		binary: { file: { data: Buffer.from('x'), fileName: 'report\u0000.txt.exe', mimeType: 'text/plain', exactFileName: true } },
		error: /^Attachments file name: contains the control character U\+0000/,
	},
];

// Sent before the fix with the whole path as the file name.
const renamed = [
	{ given: '../../etc/passwd', sent: 'passwd' },
	{ given: 'C:\\Users\\ann\\report.pdf', sent: 'report.pdf' },
	{ given: 'a\\b', sent: 'b' },
	{ given: 'C:boot.ini', sent: 'boot.ini' },
	{ given: '/', sent: 'file' },
	{ given: '..', sent: 'file' },
	{ given: '.bashrc', sent: '.bashrc' },
];

describe('hostile-input regressions (smallest failing cases, at the SMTP peer)', () => {
	it('each unsafe value fails its own item naming the field; nothing of it reaches the peer; the good items arrive', async () => {
		const items: InputItem[] = refusals.flatMap((r, i) => [
			{ json: { ...good, ...r.json, caseId: `bad-${i}` }, ...(r.binary ? { binary: r.binary } : {}) },
			{ json: { ...good, caseId: `good-${i}` } },
		]);
		const { run, delivered, strays } = await runBatch(peer, items);
		expect(run.error).toBeUndefined();
		const outcome = refusals.map((r, i) => {
			const error = run.output[2 * i]?.json.error as { message: string; code: string } | undefined;
			return { name: r.name, sent: delivered.has(`bad-${i}`), code: error?.code, message: error?.message };
		});
		const goodArrived = refusals.map((_, i) => delivered.get(`good-${i}`)?.length ?? 0);
		record({
			transport: 'smtp',
			kind: 'hostile',
			name: 'send-known-unsafe-values-refused',
			survived: !run.error && strays.length === 0 && goodArrived.every((n) => n === 1) && outcome.every((o, i) => !o.sent && o.code === 'INVALID_INPUT' && refusals[i].error.test(String(o.message))),
			behaviour: 'the smallest cases behind each fixed defect (NUL, hidden spaces and invisible characters in addresses, encoded-word look-alikes, control characters, bidi overrides in file names) fail their item naming the field; the good item after each arrives',
			cases: refusals.length,
			sent: refusals.length,
			delivered: goodArrived.filter((n) => n > 0).length,
			lost: goodArrived.filter((n) => n === 0).length,
			duplicated: goodArrived.filter((n) => n > 1).length,
		});
		expect(outcome).toEqual(refusals.map((r) => ({ name: r.name, sent: false, code: 'INVALID_INPUT', message: expect.stringMatching(r.error) })));
		expect(goodArrived).toEqual(refusals.map(() => 1));
		expect(strays).toEqual([]);
	});

	it('a file name with a path arrives as its last component only', async () => {
		const items: InputItem[] = renamed.map((r, i) => ({
			json: { ...good, caseId: String(i), attachments: 'file' },
			binary: { file: { data: Buffer.from(`content ${i}`), fileName: r.given, mimeType: 'application/octet-stream', exactFileName: true } },
		}));
		const { run, delivered } = await runBatch(peer, items);
		expect(run.error).toBeUndefined();
		const sent = renamed.map((r, i) => ({ given: r.given, sent: delivered.get(String(i))?.[0]?.mail.attachments.map((a) => [a.filename, a.content.toString()]) }));
		const want = renamed.map((r, i) => ({ given: r.given, sent: [[r.sent, `content ${i}`]] }));
		record({
			transport: 'smtp',
			kind: 'hostile',
			name: 'send-file-name-paths-stripped',
			survived: !run.error && JSON.stringify(sent) === JSON.stringify(want),
			behaviour: 'attachment file names with / or \\ paths, drive letters, "." and ".." arrive as their last component (or the binary property name); content unchanged',
			cases: renamed.length,
			sent: renamed.length,
			delivered: sent.filter((s) => s.sent).length,
			lost: sent.filter((s) => !s.sent).length,
			duplicated: renamed.filter((_, i) => (delivered.get(String(i))?.length ?? 0) > 1).length,
		});
		expect(sent).toEqual(want);
	});

	it('without continueOnFail the first unsafe item stops the node before anything is sent', async () => {
		peer.reset();
		const { error, output } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: PER_ITEM_PARAMETERS,
			items: [{ json: { ...good, caseId: 'a' } }, { json: { ...good, caseId: 'b', to: 'billing\u00a0ceo@example.org' } }],
			credentials: smtpCredential(peer),
		});
		expect(error?.message).toMatch(/^Item 1: To: contains the invisible space U\+00A0/);
		expect(output).toEqual([]);
		expect(peer.received).toHaveLength(0);
	});
});
