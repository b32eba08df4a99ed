import { Container } from '@n8n/di';
import { BinaryDataService } from 'n8n-core';
import { createHash, randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';

import { createPoller } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');

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

const credentials = () => ({
	modernAuthImapApi: {
		id: 'imapTrigger00001',
		name: 'Watcher IMAP',
		data: { host: dovecot.host, port: dovecot.tlsPort, security: 'tls', user: USER, password: PASSWORD, caCertificate: pki.ca },
	},
});

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
});
