import { Container } from '@n8n/di';
import { BinaryDataConfig, BinaryDataService } from 'n8n-core';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';

import { createPoller } from '../harness/n8n-run';
import { dovecotImapCredential } from '../harness/imap-credential';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

const USER = 'watcher@example.com';
const PASSWORD = 'Watcher-imap-Passw0rd';

let pki: ReturnType<typeof sharedTestPki>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;

const transport = nodemailer.createTransport({ streamTransport: true, buffer: true });
const mime = async (subject: string) =>
	(await transport.sendMail({ from: 'sender@example.org', to: USER, subject, text: subject })).message as Buffer;

beforeAll(async () => {
	pki = sharedTestPki();
	dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD } });
}, 120_000);

afterAll(async () => dovecot?.stop());

const credentials = () => dovecotImapCredential({ dovecot, pki, user: USER, password: PASSWORD }, { id: 'imapTrigger00001', name: 'Watcher IMAP' });

const subjects = (items: Array<{ json: Record<string, unknown> }>) => items.map((i) => String(i.json.subject));

describe('Read Mailbox (Modern Auth) Trigger: every new message exactly once', () => {
	it('starts from now, then emits each new message once across bursts, a Dovecot restart and a trigger restart', async () => {
		const folder = 'Watched';
		await dovecot.deliver(USER, await mime('old 1'), { folder });
		await dovecot.deliver(USER, await mime('old 2'), { folder });
		const parameters = { authentication: 'imap', folder, options: { downloadAttachments: false } };
		let poller = await createPoller({ parameters, credentials: credentials() });
		expect(await poller.poll()).toEqual([]); // first activation: baseline, no flood

		const emitted: string[] = [];
		const delivered: string[] = [];
		let next = 0;
		const burst = async (count: number) => {
			for (let k = 0; k < count; k++) {
				const subject = `new ${++next}`;
				await dovecot.deliver(USER, await mime(subject), { folder });
				delivered.push(subject);
			}
		};

		await burst(150);
		emitted.push(...subjects(await poller.poll()));
		// Mail arriving while polls run.
		const during = burst(150);
		while (delivered.length < 300) emitted.push(...subjects(await poller.poll()));
		await during;
		emitted.push(...subjects(await poller.poll()));

		await dovecot.restart();
		await burst(100);
		emitted.push(...subjects(await poller.poll()));

		// n8n restarts: a new poller with the static data n8n had persisted.
		poller = await createPoller({ parameters, credentials: credentials(), staticData: poller.staticData() });
		await burst(100);
		emitted.push(...subjects(await poller.poll()));
		emitted.push(...subjects(await poller.poll()));

		expect(delivered).toHaveLength(500);
		expect(emitted).toHaveLength(delivered.length);
		expect(new Set(emitted).size).toBe(emitted.length);
		expect([...emitted].sort()).toEqual([...delivered].sort());
		expect(emitted).not.toContain('old 1');
	}, 120_000);

	it('upgrade: the UID state of the version before MailReader is taken over on the first poll, re-emitting and losing nothing', async () => {
		const folder = 'Upgraded';
		await dovecot.createFolder(USER, folder);
		const uidOf: Record<string, number> = {};
		for (const subject of ['carried', 'failing', 'emitted before', 'new 1', 'new 2']) uidOf[subject] = (await dovecot.deliver(USER, await mime(subject), { folder })).uid;
		const uidValidity = Number(await dovecot.uidValidity(USER, folder));
		const skippedAt = '2026-11-30T08:00:00.000Z';
		// Exactly what the trigger saved before: UIDs, one UIDVALIDITY.
		const legacy = {
			uidValidity,
			lastUid: uidOf['emitted before'],
			carry: [uidOf.carried],
			failing: { [uidOf.failing]: { attempts: 1, reason: 'store failed', code: 'MESSAGE_STORE_FAILED', subject: 'failing' } },
			skipped: [{ uid: 1, subject: 'given up long ago', reason: 'unparseable', attempts: 3, at: skippedAt }],
		};
		const parameters = { authentication: 'imap', folder, options: { downloadAttachments: false } };
		const poller = await createPoller({ parameters, credentials: credentials(), staticData: { 'node:Trigger': { folders: { [folder]: legacy } } } });

		// The carried and the failing message (retried, now readable) first, then the new ones; not the one emitted before.
		expect(subjects(await poller.poll())).toEqual(['carried', 'failing', 'new 1', 'new 2']);
		const state = () => (poller.staticData()['node:Trigger'] as { folders: Record<string, Record<string, unknown>> }).folders[folder];
		expect(state()).toEqual({
			cursor: JSON.stringify({ uidValidity, lastUid: uidOf['new 2'] }),
			failing: {},
			skipped: [{ id: `${uidValidity}:1`, uid: 1, subject: 'given up long ago', reason: 'unparseable', attempts: 3, at: skippedAt }],
		});
		expect(await poller.poll()).toEqual([]);
		await dovecot.deliver(USER, await mime('after the upgrade'), { folder });
		expect(subjects(await poller.poll())).toEqual(['after the upgrade']);
		expect(state().cursor).toBe(JSON.stringify({ uidValidity, lastUid: uidOf['new 2'] + 1 }));
	});

	it('a backlog of 1,200 new messages is emitted in one poll as executions of 500, 500 and 200', async () => {
		const folder = 'Flood';
		await dovecot.createFolder(USER, folder);
		const parameters = { authentication: 'imap', folder, options: { downloadAttachments: false } };
		const poller = await createPoller({ parameters, credentials: credentials() });
		await poller.poll();
		const buffers = await Promise.all(Array.from({ length: 1200 }, (_, k) => mime(`flood ${k}`)));
		await dovecot.seed(USER, buffers, { folder });
		const before = poller.executionSizes().length;
		const items = await poller.poll();
		expect(poller.executionSizes().slice(before)).toEqual([500, 500, 200]);
		expect(new Set(subjects(items)).size).toBe(1200);
		expect(subjects(items)).toEqual(buffers.map((_, k) => `flood ${k}`)); // oldest first
		expect(await poller.poll()).toEqual([]);
	}, 120_000);

	it('the server restarting in the middle of a poll loses and repeats nothing', async () => {
		const folder = 'Reset';
		await dovecot.createFolder(USER, folder);
		const parameters = { authentication: 'imap', folder, options: { downloadAttachments: false } };
		const poller = await createPoller({ parameters, credentials: credentials() });
		await poller.poll();
		const buffers = await Promise.all(Array.from({ length: 1000 }, (_, k) => mime(`reset ${k}`)));
		await dovecot.seed(USER, buffers, { folder });
		let failedPolls = 0;
		const interrupted = poller.poll();
		await new Promise((resolve) => setTimeout(resolve, 30));
		await dovecot.restart();
		try {
			await interrupted;
		} catch {
			failedPolls++; // the next poll picks up where the last emitted one ended
		}
		for (let round = 0; round < 3; round++) await poller.poll();
		// Batches already handed to n8n count too, even from the poll that failed.
		const emitted = subjects(poller.emitted());
		expect(new Set(emitted).size).toBe(emitted.length);
		expect(emitted).toHaveLength(1000);
		expect(failedPolls).toBeLessThanOrEqual(1);
	}, 120_000);

	it('a large message between small ones is emitted in arrival order with its attachment streamed to binary data', async () => {
		const folder = 'Mixed';
		await dovecot.createFolder(USER, folder);
		const parameters = { authentication: 'imap', folder };
		const poller = await createPoller({ parameters, credentials: credentials() });
		await poller.poll();
		const big = randomBytes(2 * 1024 * 1024 + 5);
		await dovecot.deliver(USER, await mime('small 1'), { folder });
		const large = await transport.sendMail({ from: 'sender@example.org', to: USER, subject: 'large 2', text: 'x', attachments: [{ filename: 'big.bin', content: big }] });
		await dovecot.deliver(USER, large.message as Buffer, { folder });
		await dovecot.deliver(USER, await mime('small 3'), { folder });
		const items = await poller.poll();
		expect(subjects(items)).toEqual(['small 1', 'large 2', 'small 3']);
		const stored = await Container.get(BinaryDataService).getAsBuffer(items[1].binary!.attachment_0);
		expect(createHash('sha256').update(stored).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
		expect(await poller.poll()).toEqual([]);
	});

	it('UIDVALIDITY change re-baselines instead of replaying the folder; existing unread can be included on first activation', async () => {
		const folder = 'Renumbered';
		await dovecot.deliver(USER, await mime('before'), { folder });
		const parameters = { authentication: 'imap', folder, includeExistingUnread: true, options: { downloadAttachments: false } };
		const poller = await createPoller({ parameters, credentials: credentials() });
		expect(subjects(await poller.poll())).toEqual(['before']);
		expect(await poller.poll()).toEqual([]);

		// Recreate the folder: the server hands out a new UIDVALIDITY and renumbers from 1.
		await dovecot.doveadm(['mailbox', 'delete', '-u', USER, folder]);
		await dovecot.deliver(USER, await mime('after recreate 1'), { folder });
		expect(await poller.poll()).toEqual([]);
		await dovecot.deliver(USER, await mime('after recreate 2'), { folder });
		expect(subjects(await poller.poll())).toEqual(['after recreate 2']);
	});

	it('a message that always fails is emitted once as an error item after 3 polls, across a restart; mail before and after it flows once', async () => {
		const folder = 'Poison';
		await dovecot.createFolder(USER, folder);
		const parameters = { authentication: 'imap', folder };
		let poller = await createPoller({ parameters, credentials: credentials() });
		await poller.poll();
		// n8n's binary data store cannot store anything for this workflow (a file where its
		// directory belongs): the one message with an attachment fails on every attempt.
		const blocked = path.join(Container.get(BinaryDataConfig).localStoragePath, 'workflows', poller.workflowId);
		fs.mkdirSync(path.dirname(blocked), { recursive: true });
		fs.writeFileSync(blocked, 'not a directory');
		const delivered: string[] = [];
		const deliverGood = async (subject: string) => {
			await dovecot.deliver(USER, await mime(subject), { folder });
			delivered.push(subject);
		};
		for (const k of [1, 2, 3]) await deliverGood(`before ${k}`);
		const poison = await transport.sendMail({ from: 'sender@example.org', to: USER, subject: 'poison', text: 'x', attachments: [{ filename: 'a.bin', content: randomBytes(1000) }] });
		const { uid: poisonUid } = await dovecot.deliver(USER, poison.message as Buffer, { folder });
		const poisonId = `${await dovecot.uidValidity(USER, folder)}:${poisonUid}`;
		for (const k of [1, 2, 3]) await deliverGood(`after ${k}`);

		const goods: string[] = [];
		const errors: Array<Record<string, unknown>> = [];
		const errorsAtPoll: number[] = [];
		const take = (items: Array<{ json: Record<string, unknown> }>) => {
			for (const item of items) {
				if (item.json.error) errors.push(item.json);
				else goods.push(String(item.json.subject));
			}
		};
		for (let round = 1; round <= 4; round++) {
			take(await poller.poll());
			if (errors.length && !errorsAtPoll.length) errorsAtPoll.push(round);
			if (round === 1) {
				// n8n restarts after the first failed attempt: the count comes back from static data.
				expect(poller.staticData()).toMatchObject({ 'node:Trigger': { folders: { [folder]: { failing: { [poisonId]: { attempts: 1, uid: poisonUid } } } } } });
				poller = await createPoller({ parameters, credentials: credentials(), staticData: poller.staticData(), workflowId: poller.workflowId });
			}
			if (round === 2) await deliverGood('later 1');
		}
		await deliverGood('later 2');
		take(await poller.poll());
		take(await poller.poll());
		fs.rmSync(blocked);

		const duplicated = goods.length - new Set(goods).size + Math.max(0, errors.length - 1);
		const lost = delivered.filter((subject) => !goods.includes(subject)).length;
		record({
			transport: 'imap',
			kind: 'fault',
			name: 'trigger: poison message between good ones',
			survived: lost === 0 && duplicated === 0 && errors.length === 1 && errorsAtPoll[0] === 3,
			behaviour: `poison message emitted once as an error item at poll ${errorsAtPoll[0]} (attempts ${String(errors[0]?.attempts)}), mail before and after it emitted once each, one restart between attempts`,
			sent: delivered.length,
			delivered: goods.length,
			lost,
			duplicated,
		});
		expect([...goods].sort()).toEqual([...delivered].sort());
		expect(new Set(goods).size).toBe(goods.length);
		expect(errors).toHaveLength(1);
		expect(errorsAtPoll).toEqual([3]);
		expect(errors[0]).toMatchObject({ id: poisonId, uid: poisonUid, subject: 'poison', attempts: 3, error: { code: 'MESSAGE_STORE_FAILED' } });
		const state = (poller.staticData()['node:Trigger'] as { folders: Record<string, Record<string, unknown>> }).folders[folder];
		expect(state.failing).toEqual({});
		expect(state.skipped).toEqual([expect.objectContaining({ id: poisonId, uid: poisonUid, subject: 'poison', attempts: 3 })]);
		expect(state.carry).toBeUndefined();
	}, 120_000);

	it('a message the server cannot serve fails each poll at it; after 3 such polls it is emitted as an error item and mail flows', async () => {
		const folder = 'Unservable';
		await dovecot.createFolder(USER, folder);
		const parameters = { authentication: 'imap', folder, options: { downloadAttachments: false } };
		const poller = await createPoller({ parameters, credentials: credentials() });
		await poller.poll();
		const delivered: string[] = [];
		const deliverGood = async (subject: string) => {
			await dovecot.deliver(USER, await mime(subject), { folder });
			delivered.push(subject);
		};
		for (const k of [1, 2]) await deliverGood(`before ${k}`);
		const box = (await dovecot.doveadm(['mailbox', 'path', '-u', USER, folder])).stdout.trim();
		const files = () => new Set(['new', 'cur'].flatMap((dir) => fs.readdirSync(path.join(box, dir)).map((name) => path.join(box, dir, name))));
		const previous = files();
		const { uid: badUid } = await dovecot.deliver(USER, await mime('unservable'), { folder });
		const badId = `${await dovecot.uidValidity(USER, folder)}:${badUid}`;
		const [badFile] = [...files()].filter((name) => !previous.has(name));
		for (const k of [1, 2]) await deliverGood(`after ${k}`);
		// Dovecot (running as an unprivileged mail user) can no longer open this one message.
		fs.chownSync(badFile, 0, 0);
		fs.chmodSync(badFile, 0o000);

		const goods: string[] = [];
		const errors: Array<Record<string, unknown>> = [];
		let failedPolls = 0;
		for (let round = 1; round <= 6; round++) {
			try {
				for (const item of await poller.poll()) {
					if (item.json.error) errors.push(item.json);
					else goods.push(String(item.json.subject));
				}
			} catch {
				failedPolls++;
			}
			if (round === 2) await deliverGood('later 1');
		}
		const lost = delivered.filter((subject) => !goods.includes(subject)).length;
		const duplicated = goods.length - new Set(goods).size + Math.max(0, errors.length - 1);
		record({
			transport: 'imap',
			kind: 'fault',
			name: 'trigger: message the server cannot serve between good ones',
			survived: lost === 0 && duplicated === 0 && errors.length === 1,
			behaviour: `${failedPolls} polls failed at the message, then it was emitted once as an error item (attempts ${String(errors[0]?.attempts)}); good mail emitted once each`,
			sent: delivered.length,
			delivered: goods.length,
			lost,
			duplicated,
		});
		expect(failedPolls).toBe(3);
		// Never read, so only its id is known (transport-neutral; IMAP ids are <uidValidity>:<uid>).
		expect(errors).toEqual([expect.objectContaining({ id: badId, attempts: 3, error: expect.objectContaining({ message: expect.any(String) }) })]);
		expect([...goods].sort()).toEqual([...delivered].sort());
		expect(new Set(goods).size).toBe(goods.length);
	}, 120_000);

	it.each([
		['new mail', false],
		['the existing unread mail of the first activation', true],
	])('with the poll budget of n8n 2.x, a backlog of %s is split over polls that stop in time, losing and repeating nothing', async (label, existing) => {
		const folder = existing ? 'BudgetUnread' : 'Budget';
		await dovecot.createFolder(USER, folder);
		const budgetMs = 1000;
		const parameters = { authentication: 'imap', folder, includeExistingUnread: existing, options: { downloadAttachments: false } };
		// More than any machine here reads within one budget (2,000 fitted once on an idle one).
		const buffers = await Promise.all(Array.from({ length: 6000 }, (_, k) => mime(`budget ${k}`)));
		if (existing) {
			// Read mail is not part of the backlog.
			await dovecot.seed(USER, [await mime('already read')], { folder, flags: ['\\Seen'] });
			await dovecot.seed(USER, buffers, { folder });
		}
		const poller = await createPoller({ parameters, credentials: credentials(), pollBudgetMs: budgetMs });
		if (!existing) {
			await poller.poll();
			await dovecot.seed(USER, buffers, { folder });
		}
		const perPoll: number[] = [];
		const durations: number[] = [];
		const emitted: string[] = [];
		for (let round = 0; round < 40 && emitted.length < buffers.length; round++) {
			const started = Date.now();
			const items = await poller.poll();
			durations.push(Date.now() - started);
			perPoll.push(items.length);
			emitted.push(...subjects(items));
		}
		expect(await poller.poll()).toEqual([]);
		const expected = buffers.map((_, k) => `budget ${k}`);
		const lost = expected.filter((subject) => !emitted.includes(subject)).length;
		const duplicated = emitted.length - new Set(emitted).size;
		record({
			transport: 'imap',
			kind: 'fault',
			name: `trigger: 6000-message backlog of ${label} under a 1 s poll budget`,
			survived: perPoll.length > 1 && lost === 0 && duplicated === 0,
			behaviour: `split over ${perPoll.length} polls (${perPoll.join('/')}), longest poll ${Math.max(...durations)} ms for a ${budgetMs} ms budget`,
			sent: buffers.length,
			delivered: emitted.length,
			lost,
			duplicated,
			value: Math.max(...durations),
			unit: 'ms',
		});
		expect(perPoll.length).toBeGreaterThan(1);
		expect(perPoll[0]).toBeLessThan(buffers.length);
		expect(emitted).toEqual(expected); // oldest first, once each
		// The chunk in flight when the margin starts may overrun it on a loaded machine.
		expect(Math.max(...durations)).toBeLessThan(2 * budgetMs);
	}, 180_000);

	it('under the poll budget, a server restart in the middle of a poll still loses and repeats nothing', async () => {
		const folder = 'BudgetRestart';
		await dovecot.createFolder(USER, folder);
		const budgetMs = 1000;
		const parameters = { authentication: 'imap', folder, options: { downloadAttachments: false } };
		const poller = await createPoller({ parameters, credentials: credentials(), pollBudgetMs: budgetMs });
		await poller.poll();
		const buffers = await Promise.all(Array.from({ length: 1500 }, (_, k) => mime(`budget restart ${k}`)));
		await dovecot.seed(USER, buffers, { folder });
		let failedPolls = 0;
		const interrupted = poller.poll();
		await new Promise((resolve) => setTimeout(resolve, 300));
		await dovecot.restart();
		await interrupted.catch(() => failedPolls++);
		for (let round = 0; round < 40 && new Set(subjects(poller.emitted())).size < buffers.length; round++) {
			await poller.poll().catch(() => failedPolls++);
		}
		expect(await poller.poll()).toEqual([]);
		// Batches already handed to n8n count too, even from a poll that failed.
		const emitted = subjects(poller.emitted());
		const expected = buffers.map((_, k) => `budget restart ${k}`);
		const lost = expected.filter((subject) => !emitted.includes(subject)).length;
		const duplicated = emitted.length - new Set(emitted).size;
		record({
			transport: 'imap',
			kind: 'fault',
			name: 'trigger: server restart mid-poll under a 1 s poll budget',
			survived: lost === 0 && duplicated === 0,
			behaviour: `1500-message backlog over ${poller.executionSizes().length} executions, ${failedPolls} failed polls, Dovecot restarted during the first poll`,
			sent: buffers.length,
			delivered: new Set(emitted).size,
			lost,
			duplicated,
		});
		expect(duplicated).toBe(0);
		expect(lost).toBe(0);
		expect(failedPolls).toBeLessThanOrEqual(1);
	}, 180_000);
});
