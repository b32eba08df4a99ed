/**
 * Hostile and odd folder names for Read Mailbox, property-based, against a real Dovecot:
 * every name is created (where Dovecot allows it) with one marked message in it, then all are
 * read back in one node run. A name that exists yields exactly its own message; one that
 * cannot exist yields an error item naming the Folder field; nothing else is read.
 */
import fc from 'fast-check';
import nodemailer from 'nodemailer';

import { runNode } from '../harness/n8n-run';
import { dovecotImapCredential } from '../harness/imap-credential';
import { describeFailure, seedFor } from './send-harness';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

const USER = 'folders@example.com';
const PASSWORD = 'Folder-imap-Passw0rd';
const RUNS = 80;

let dovecot: Awaited<ReturnType<typeof startDovecot>>;
let pki: ReturnType<typeof sharedTestPki>;
beforeAll(async () => {
	pki = sharedTestPki();
	dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD } });
}, 120_000);
afterAll(async () => dovecot?.stop());

const credentials = () => dovecotImapCredential({ dovecot, pki, user: USER, password: PASSWORD }, { id: 'imapHostile00001', name: 'Hostile IMAP' });

const FIXED = [
	' leading',
	'trailing ',
	'with space',
	'quote"in',
	'"quoted"',
	"apos's",
	'Ünïcödé Ordner',
	'日本語',
	'emoji 📬',
	'Parent/Child',
	'Parent/Child/Grand',
	'INBOX/child',
	'inbox',
	'..',
	'.',
	'/',
	'../etc',
	'x/..',
	'a//b',
	'/lead',
	'trail/',
	'*',
	'%',
	'a*b',
	'a%b',
	'back\\slash',
	'\\',
	'&',
	'&-',
	'a&b&c',
	'~user',
	'[Gmail]',
	'dot.name',
	'L'.repeat(200),
	'rtl\u200fname',
	'INBOX\r\nA1 LOGOUT',
	'x\nDELETE INBOX',
	'nul\u0000x',
	'tab\tx',
	'esc\u001b',
	'del\u007f',
];

const piece = fc.oneof(
	{ weight: 12, arbitrary: fc.constantFrom('a', 'Box', ' ', '"', "'", '\\', '/', '..', '.', '*', '%', '&', '&-', '~', 'ä', 'Ünï', '日本', '📬', '\u200f', '[', ']', '{', '}', '(', ')', '#', '+', ',', ';', '=', '!', '@', '$', '^', '`', '|', '<', '>', '?') },
	{ weight: 1, arbitrary: fc.constantFrom('\r\n', '\n', '\r', '\u0000', '\t', '\u001b', '\u007f') },
);
// A unique prefix per generated name, so no two of them can name the same folder.
const generated = (seed: number) => fc.sample(fc.array(piece, { minLength: 1, maxLength: 5 }), { numRuns: RUNS, seed }).map((pieces, k) => `g${k}-${pieces.join('')}`);

async function mime(subject: string): Promise<Buffer> {
	const info = await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({ from: 'sender@example.org', to: USER, subject, text: subject });
	return info.message as Buffer;
}

it('every folder name reads exactly its own message, or fails its item naming the Folder field', async () => {
	const property = 'read: folder names';
	const seed = seedFor(property);
	const names = [...FIXED, ...generated(seed)];
	// Dovecot decides which names can exist; those get one message each.
	const exists: boolean[] = [];
	for (const [i, name] of names.entries()) {
		try {
			await dovecot.createFolder(USER, name);
			await dovecot.deliver(USER, await mime(`folder case ${i}`), { folder: name });
			exists.push(true);
		} catch {
			exists.push(false);
		}
	}
	const { output, error } = await runNode({
		type: 'modernAuthReadMailbox',
		parameters: { authentication: 'imap', folder: '={{ $json.folder }}', limit: 10, order: 'oldest', options: { downloadAttachments: false } },
		items: names.map((folder) => ({ json: { folder } })),
		credentials: credentials(),
		onError: 'continueRegularOutput',
	});

	const problems: string[] = [];
	names.forEach((name, i) => {
		const mine = output.filter((o) => (o.pairedItem as { item: number }).item === i);
		const shown = { name, exists: exists[i], output: mine.map((o) => o.json) };
		const failure = mine.length === 1 ? (mine[0].json.error as { message?: string; code?: string } | undefined) : undefined;
		// Control characters cannot be sent (CR, LF, NUL at all; the rest not raw in modified
		// UTF-7): refused before anything connects, even where Dovecot let such a folder exist.
		if (/[\x00-\x1f\x7f]/.test(name)) {
			if (failure?.code !== 'INVALID_INPUT' || !/^Folder: /.test(String(failure.message))) problems.push(describeFailure(property, seed, i, 'a control character in a folder name must be refused as invalid input naming Folder', shown));
			return;
		}
		if (exists[i]) {
			const subjects = mine.map((o) => o.json.subject);
			if (JSON.stringify(subjects) !== JSON.stringify([`folder case ${i}`])) problems.push(describeFailure(property, seed, i, `existing folder read as ${JSON.stringify(subjects)}`, shown));
			return;
		}
		if (!failure || !/^Folder\b/.test(String(failure.message))) problems.push(describeFailure(property, seed, i, 'a folder that cannot exist must fail its item naming Folder', shown));
	});
	// Readable: exists on the server and has no control character (those are refused by design).
	const readable = names.map((name, i) => exists[i] && !/[\x00-\x1f\x7f]/.test(name));
	const readBack = (i: number) => output.filter((o) => (o.pairedItem as { item: number }).item === i && !o.json.error).length;
	record({
		transport: 'imap',
		kind: 'hostile',
		name: 'read-folder-names',
		survived: problems.length === 0 && !error,
		behaviour: `folder names with /, .., quotes, spaces, non-ASCII (modified UTF-7), * and % wildcards, & and control characters: ${readable.filter(Boolean).length} existing folders read exactly their own message, ${names.length - readable.filter(Boolean).length} impossible or control-character names failed their item naming Folder`,
		cases: names.length,
		sent: readable.filter(Boolean).length,
		delivered: names.filter((_, i) => readable[i] && readBack(i) > 0).length,
		lost: names.filter((_, i) => readable[i] && readBack(i) === 0).length,
		duplicated: names.filter((_, i) => readBack(i) > 1).length,
	});
	expect(error).toBeUndefined();
	expect(problems.slice(0, 5)).toEqual([]);
	expect(exists.filter(Boolean).length).toBeGreaterThan(names.length / 3);
}, 180_000);

it('without continueOnFail an impossible folder name fails the node naming item and Folder', async () => {
	const { error } = await runNode({
		type: 'modernAuthReadMailbox',
		parameters: { authentication: 'imap', folder: '={{ $json.folder }}', limit: 1 },
		items: [{ json: { folder: 'INBOX' } }, { json: { folder: '../etc' } }],
		credentials: credentials(),
	});
	expect(error?.name).toBe('NodeOperationError');
	expect(error?.message).toMatch(/^Item 1: Folder\b/);
});
