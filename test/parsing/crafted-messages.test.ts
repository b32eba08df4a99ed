/**
 * Defect 1 of issue 8: crafted messages must not hang Read Mailbox or the trigger. Each one
 * is stored in a real Dovecot between good messages; the execution must end within a bound,
 * the good messages must come out (and be marked read), each crafted one must become an error
 * item of its own, and the IMAP session must be closed.
 */
import nodemailer from 'nodemailer';

import { createPoller, runNode } from '../harness/n8n-run';
import { dovecotImapCredential } from '../harness/imap-credential';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

const USER = 'crafted@example.com';
const PASSWORD = 'Crafted-imap-Passw0rd';
/** Generous for a loaded 2-core machine; the old code never ends (or takes 12 s per header). */
const BOUND_MS = 25_000;

let pki: ReturnType<typeof sharedTestPki>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;

beforeAll(async () => {
	pki = sharedTestPki();
	dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD } });
}, 120_000);

afterAll(async () => dovecot?.stop());

const credentials = () => dovecotImapCredential({ dovecot, pki, user: USER, password: PASSWORD }, { id: 'imapCrafted00001', name: 'Crafted IMAP' });

const good = async (subject: string) =>
	(await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({ from: 'sender@example.org', to: USER, subject, text: subject }))
		.message as Buffer;

const raw = (headers: string, body = 'body\r\n') => Buffer.from(`${headers}\r\nMessage-ID: <${Math.random()}@crafted>\r\n\r\n${body}`, 'latin1');

/** The crafted messages of the advisories and the issue, by name. */
export const CRAFTED: Record<string, () => Buffer> = {
	'nested groups in From': () => raw(`From: ${'g:'.repeat(3000)}a@example.org${';'.repeat(3000)}\r\nSubject: nested groups`),
	'1 MB To': () =>
		raw(`From: a@example.org\r\nSubject: huge to\r\nTo: ${Array.from({ length: 45_000 }, (_, k) => `u${k}@example.com`).join(', ')}`),
	'10k unclosed comments in To': () => raw(`From: a@example.org\r\nSubject: comments\r\nTo: ${'('.repeat(10_000)}x@example.com`),
	'quoted string never closed': () => raw(`From: "${'a'.repeat(100_000)}\r\nSubject: open quote`),
	'angle brackets x50k': () => raw(`From: a@example.org\r\nSubject: angles\r\nCc: ${'<'.repeat(50_000)}b@example.com${'>'.repeat(50_000)}`),
};

/** Sessions Dovecot logged in and has not yet seen end, from its log. */
function openSessions(): number {
	const logins = dovecot.logs.filter((line: string) => /imap-login: (Info: )?Login: user=<crafted@/.test(line)).length;
	const ends = dovecot.logs.filter((line: string) => /imap\(crafted@[^)]*\).*Disconnected/.test(line)).length;
	return logins - ends;
}

async function settledSessions(): Promise<number> {
	for (let k = 0; k < 50 && openSessions() > 0; k++) await new Promise((resolve) => setTimeout(resolve, 100));
	return openSessions();
}

async function fill(folder: string): Promise<{ goods: string[]; crafted: string[] }> {
	const goods: string[] = [];
	const crafted: string[] = [];
	goods.push('good before');
	await dovecot.deliver(USER, await good('good before'), { folder });
	for (const [name, build] of Object.entries(CRAFTED)) {
		await dovecot.deliver(USER, build(), { folder });
		crafted.push(name);
		goods.push(`good after ${name}`);
		await dovecot.deliver(USER, await good(`good after ${name}`), { folder });
	}
	return { goods, crafted };
}

describe('crafted messages become per-message errors in bounded time (defect 1)', () => {
	it('Read Mailbox: good messages around them are emitted and marked read, the crafted ones are error items left unread', async () => {
		const folder = 'Crafted';
		const { goods, crafted } = await fill(folder);
		const started = Date.now();
		const run = runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'imap', folder, limit: 100, order: 'oldest', postAction: 'markRead', options: { downloadAttachments: false } },
			items: [{ json: {} }],
			credentials: credentials(),
		});
		const bound = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), BOUND_MS).unref());
		const result = await Promise.race([run, bound]);
		const elapsed = Date.now() - started;
		const output = result === 'timeout' ? [] : result.output;
		const emitted = output.filter((item) => !item.json.error).map((item) => String(item.json.subject));
		const errors = output.filter((item) => item.json.error);
		const onServer = await dovecot.list(USER, folder);
		const seen = onServer.filter((m: { flags: string[] }) => m.flags.includes('\\Seen')).map((m: { uid: number }) => m.uid);
		const sessions = await settledSessions();
		if (process.env.H1_DEBUG) console.log(dovecot.logs.filter((l: string) => /crafted@/.test(l)).join('\n'));
		const lost = goods.filter((subject) => !emitted.includes(subject)).length;
		record({
			transport: 'imap',
			kind: 'fault',
			name: 'read mailbox: crafted messages between good ones',
			survived: result !== 'timeout' && lost === 0 && output.length === onServer.length && sessions === 0,
			behaviour: `execution ended in ${elapsed} ms; of ${crafted.length} crafted messages ${errors.length} became error items, the rest items; good ones emitted and marked read`,
			sent: goods.length,
			delivered: emitted.filter((subject) => goods.includes(subject)).length,
			lost,
			duplicated: output.length - new Set(output.map((item) => item.json.uid)).size,
		});
		expect(result).not.toBe('timeout');
		expect(elapsed).toBeLessThan(BOUND_MS);
		if (result !== 'timeout') expect(result.error).toBeUndefined();
		// Every stored message comes out exactly once, in order, as an item or an error item.
		expect(output.map((item) => item.json.uid)).toEqual(onServer.map((m: { uid: number }) => m.uid));
		expect(emitted.filter((subject) => subject.startsWith('good'))).toEqual(goods);
		for (const item of errors) {
			expect(item.json).toMatchObject({ folder, uid: expect.any(Number), error: { message: expect.any(String), code: expect.stringMatching(/^MESSAGE_/), hint: expect.any(String) } });
			expect(item.pairedItem).toEqual({ item: 0 });
		}
		// The 1 MB header is over the header budget; its subject is still read from the raw header.
		expect(errors.map((item) => [item.json.subject, (item.json.error as { code: string }).code])).toContainEqual(['huge to', 'MESSAGE_HEADER_TOO_LARGE']);
		// Post-actions touch only what was read.
		expect(seen).toEqual(output.filter((item) => !item.json.error).map((item) => item.json.uid));
		expect(sessions).toBe(0);
	}, 60_000);

	it('trigger: one poll gets past the crafted messages, emits every good one once, and each crafted one once as an error item', async () => {
		const folder = 'CraftedWatch';
		await dovecot.createFolder(USER, folder);
		const parameters = { authentication: 'imap', folder, options: { downloadAttachments: false } };
		const poller = await createPoller({ parameters, credentials: credentials() });
		expect(await poller.poll()).toEqual([]);
		const { goods, crafted } = await fill(folder);
		const started = Date.now();
		const outputs: Array<{ uid: number; subject: string; error: boolean }> = [];
		let timedOut = false;
		// A message that fails is retried like any failing one (defect 2): allow the polls that takes.
		for (let round = 0; round < 5 && !timedOut; round++) {
			const bound = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), BOUND_MS).unref());
			const items = await Promise.race([poller.poll(), bound]);
			if (items === 'timeout') timedOut = true;
			else outputs.push(...items.map((item) => ({ uid: Number(item.json.uid), subject: String(item.json.subject), error: Boolean(item.json.error) })));
		}
		const elapsed = Date.now() - started;
		const sessions = await settledSessions();
		const onServer = (await dovecot.list(USER, folder)).map((m: { uid: number }) => m.uid);
		const emitted = outputs.filter((o) => !o.error).map((o) => o.subject);
		const lost = goods.filter((subject) => !emitted.includes(subject)).length;
		const duplicated = outputs.length - new Set(outputs.map((o) => o.uid)).size;
		const errorItems = outputs.filter((o) => o.error).length;
		record({
			transport: 'imap',
			kind: 'fault',
			name: 'trigger: crafted messages between good ones',
			survived: !timedOut && lost === 0 && duplicated === 0 && outputs.length === onServer.length && sessions === 0,
			behaviour: `5 polls in ${elapsed} ms; every message emitted once, ${errorItems} of ${crafted.length} crafted ones as error items after the retry limit`,
			sent: goods.length,
			delivered: emitted.filter((subject) => goods.includes(subject)).length,
			lost,
			duplicated,
		});
		expect(timedOut).toBe(false);
		expect(duplicated).toBe(0);
		expect([...outputs.map((o) => o.uid)].sort((a, b) => a - b)).toEqual(onServer);
		expect(emitted.filter((subject) => subject.startsWith('good'))).toEqual(goods);
		expect(outputs.find((o) => o.subject === 'huge to')).toMatchObject({ error: true });
		expect(sessions).toBe(0);
	}, 180_000);
});
