import { Container } from '@n8n/di';
import { BinaryDataService } from 'n8n-core';
import type { IBinaryData } from 'n8n-workflow';
import { createHash, randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';

import { runNode } from '../harness/n8n-run';
import { dovecotImapCredential } from '../harness/imap-credential';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');

const USER = 'reader@example.com';
const PASSWORD = 'Reader-imap-Passw0rd';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let pki: ReturnType<typeof sharedTestPki>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;

async function mime(options: Record<string, unknown>): Promise<Buffer> {
	const info = await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({ from: 'sender@example.org', to: USER, ...options });
	return info.message as Buffer;
}

beforeAll(async () => {
	pki = sharedTestPki();
	dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD } });
}, 120_000);

afterAll(async () => dovecot?.stop());

const credentials = (overrides: Record<string, unknown> = {}) =>
	dovecotImapCredential({ dovecot, pki, user: USER, password: PASSWORD }, { id: 'imapCred00000001', name: 'Test IMAP' }, overrides);

const bytesOf = (binary: IBinaryData) => Container.get(BinaryDataService).getAsBuffer(binary);

describe('Read Mailbox (Modern Auth) over IMAP, run by n8n-core against Dovecot', () => {
	it('emits unread messages with attachments as binary, then marks exactly those read', async () => {
		const pdf = randomBytes(120_000);
		const csv = Buffer.from('a;b\n1;2\n');
		await dovecot.createFolder(USER, 'Orders');
		await dovecot.deliver(USER, await mime({ subject: 'Order 1', text: 'first', attachments: [{ filename: 'order.pdf', content: pdf, contentType: 'application/pdf' }, { filename: 'lines.csv', content: csv, contentType: 'text/csv' }] }), { folder: 'Orders' });
		await dovecot.deliver(USER, await mime({ subject: 'Order 2 (already read)', text: 'second' }), { folder: 'Orders', flags: ['\\Seen'] });
		await dovecot.deliver(USER, await mime({ subject: 'Order 3', text: 'third', html: '<b>third</b>' }), { folder: 'Orders' });

		const { output, error } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'imap', folder: 'Orders', limit: 10, order: 'oldest', filters: { unreadOnly: true }, postAction: 'markRead', options: { includeHtml: true } },
			items: [{ json: {} }],
			credentials: credentials(),
		});
		expect(error).toBeUndefined();
		expect(output.map((o) => o.json.subject)).toEqual(['Order 1', 'Order 3']);
		expect(output[0].pairedItem).toEqual({ item: 0 });
		expect(output[0].json).toMatchObject({ folder: 'Orders', from: { address: 'sender@example.org' }, to: [{ address: USER }], seen: false });
		expect(String(output[0].json.text).trim()).toBe('first');
		expect(output[1].json.html).toContain('<b>third</b>');
		expect(output[0].json.attachments).toEqual([
			{ filename: 'order.pdf', contentType: 'application/pdf', size: pdf.length, inline: false, binaryProperty: 'attachment_0' },
			{ filename: 'lines.csv', contentType: 'text/csv', size: csv.length, inline: false, binaryProperty: 'attachment_1' },
		]);
		const binary = output[0].binary!;
		expect(binary.attachment_0).toMatchObject({ fileName: 'order.pdf', mimeType: 'application/pdf' });
		expect(sha256(await bytesOf(binary.attachment_0))).toBe(sha256(pdf));
		expect((await bytesOf(binary.attachment_1)).equals(csv)).toBe(true);

		const onServer = await dovecot.list(USER, 'Orders');
		expect(onServer.every((m: { flags: string[] }) => m.flags.includes('\\Seen'))).toBe(true);
	});

	it('newest first with a limit; move post-action moves only the emitted ones', async () => {
		for (let n = 1; n <= 5; n++) await dovecot.deliver(USER, await mime({ subject: `Batch ${n}`, text: `n${n}` }), { folder: 'Batch' });
		await dovecot.createFolder(USER, 'Done');
		const { output, error } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'imap', folder: 'Batch', limit: 2, order: 'newest', postAction: 'move', moveTo: 'Done', options: { downloadAttachments: false, includeRaw: true } },
			items: [{ json: {} }],
			credentials: credentials(),
		});
		expect(error).toBeUndefined();
		expect(output.map((o) => o.json.subject)).toEqual(['Batch 5', 'Batch 4']);
		expect(output[0].binary?.raw).toMatchObject({ mimeType: 'message/rfc822' });
		expect((await bytesOf(output[0].binary!.raw)).toString()).toContain('Subject: Batch 5');
		expect((await dovecot.list(USER, 'Batch')).map((m: { subject: string }) => m.subject)).toEqual(['Batch 1', 'Batch 2', 'Batch 3']);
		expect((await dovecot.list(USER, 'Done')).map((m: { subject: string }) => m.subject).sort()).toEqual(['Batch 4', 'Batch 5']);
	});

	it('an unknown folder fails naming the folders that exist; continueOnFail keeps other items', async () => {
		const { error } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'imap', folder: 'Archive 2019', limit: 5 },
			items: [{ json: {} }],
			credentials: credentials(),
		});
		expect(error?.message).toBe('Item 0: Folder "Archive 2019" does not exist');
		expect(error?.description).toMatch(/^Folders in this mailbox: .*INBOX/);

		const { output } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'imap', folder: '={{ $json.folder }}', limit: 1, options: { downloadAttachments: false } },
			items: [{ json: { folder: 'Nope' } }, { json: { folder: 'Done' } }],
			credentials: credentials(),
			onError: 'continueRegularOutput',
		});
		expect((output[0].json.error as Record<string, string>).code).toBe('IMAP_UNKNOWN_FOLDER');
		expect(output[0].pairedItem).toEqual({ item: 0 });
		expect(output[1].json.folder).toBe('Done');
		expect(output[1].pairedItem).toEqual({ item: 1 });
	});

	it('an invalid date names the field and the item; a wrong password gets the IMAP hint without the password', async () => {
		const bad = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'imap', folder: 'INBOX', filters: { since: '={{ "not a date" }}' } },
			items: [{ json: {} }],
			credentials: credentials(),
		});
		expect(bad.error?.message).toBe('Item 0: Received Since: "not a date" is not a valid date');

		const denied = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'imap', folder: 'INBOX' },
			items: [{ json: {} }],
			credentials: credentials({ password: 'Wrong-Reader-Password' }),
		});
		expect(denied.error?.message).toMatch(/IMAP sign-in refused .*AUTHENTICATE failed/);
		expect(denied.error?.description).toMatch(/user name and password/);
		expect(JSON.stringify(denied.run)).not.toContain('Wrong-Reader-Password');
	});

	it('has-attachments and raw IMAP search filters; a malformed raw search fails its item only, before anything is read', async () => {
		const folder = 'Filters';
		await dovecot.deliver(USER, await mime({ subject: 'Report A', text: 'a', attachments: [{ filename: 'a.txt', content: 'a' }] }), { folder });
		await dovecot.deliver(USER, await mime({ subject: 'Report B', text: 'b' }), { folder });
		await dovecot.deliver(USER, await mime({ subject: 'Invoice C', text: 'c', attachments: [{ filename: 'c.pdf', content: randomBytes(100) }] }), { folder });
		const run = (filters: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
			runNode({
				type: 'modernAuthReadMailbox',
				parameters: { authentication: 'imap', folder, limit: 10, order: 'oldest', filters, postAction: 'markRead', options: { downloadAttachments: false } },
				items: [{ json: {} }],
				credentials: credentials(),
				...extra,
			});
		expect((await run({ hasAttachments: true })).output.map((o) => o.json.subject)).toEqual(['Report A', 'Invoice C']);
		expect((await run({ rawSearch: 'OR SUBJECT "Report B" SUBJECT Invoice' })).output.map((o) => o.json.subject)).toEqual(['Report B', 'Invoice C']);
		expect((await run({ rawSearch: 'SUBJECT Report', hasAttachments: true, unreadOnly: true })).output).toEqual([]); // A was marked read above

		await dovecot.deliver(USER, await mime({ subject: 'Report D', text: 'd' }), { folder });
		const bad = await run({ rawSearch: 'OR SUBJECT "Report' });
		expect(bad.error?.message).toBe('Item 0: Raw IMAP Search: "OR SUBJECT "Report" is not valid IMAP search syntax (Unexpected end of input at character 18)');
		expect(bad.error?.description).toMatch(/RFC 3501/);
		const refused = await run({ rawSearch: 'SINCE yesterday' });
		expect(refused.error?.message).toMatch(/^Item 0: Raw IMAP Search: the server refused "SINCE yesterday": /);

		const mixed = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'imap', folder, limit: 10, filters: { rawSearch: '={{ $json.search }}', unreadOnly: true }, postAction: 'markRead' },
			items: [{ json: { search: '(SUBJECT Report' } }, { json: { search: 'SUBJECT "Report D"' } }],
			credentials: credentials(),
			onError: 'continueRegularOutput',
		});
		expect(mixed.output[0].json.error).toMatchObject({ code: 'IMAP_BAD_SEARCH' });
		expect(mixed.output[0].pairedItem).toEqual({ item: 0 });
		expect(mixed.output[1].json.subject).toBe('Report D');
		expect(mixed.output[1].pairedItem).toEqual({ item: 1 });
		const onServer = await dovecot.list(USER, folder);
		expect(onServer.filter((m: { flags: string[] }) => !m.flags.includes('\\Seen'))).toEqual([]);
	});

	it('a 6 MB attachment and the raw .eml stream into n8n binary data (filesystem mode) byte for byte', async () => {
		const folder = 'Large';
		const big = randomBytes(6 * 1024 * 1024);
		await dovecot.deliver(USER, await mime({ subject: 'Scan', text: 'scan attached', attachments: [{ filename: 'scan.tiff', content: big, contentType: 'image/tiff' }] }), { folder });
		const { output, error } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'imap', folder, limit: 1, options: { includeRaw: true } },
			items: [{ json: {} }],
			credentials: credentials(),
		});
		expect(error).toBeUndefined();
		const binary = output[0].binary!;
		expect(binary.attachment_0).toMatchObject({ fileName: 'scan.tiff', mimeType: 'image/tiff' });
		expect(binary.attachment_0.id).toMatch(/^filesystem/);
		expect(sha256(await bytesOf(binary.attachment_0))).toBe(sha256(big));
		expect(output[0].json.attachments).toEqual([{ filename: 'scan.tiff', contentType: 'image/tiff', size: big.length, inline: false, binaryProperty: 'attachment_0' }]);
		expect(binary.raw).toMatchObject({ fileName: `${output[0].json.uid}.eml`, mimeType: 'message/rfc822' });
		const [held] = await dovecot.list(USER, folder);
		const raw = await bytesOf(binary.raw);
		expect(raw.length).toBe(held.size);
		expect(raw.toString('latin1')).toContain('Subject: Scan');
	});

	it('the IMAP credential Test button signs in and counts the Inbox as Dovecot holds it', async () => {
		// eslint-disable-next-line @typescript-eslint/no-require-imports
		const { ModernAuthReadMailbox } = require('../../nodes/ModernAuthReadMailbox/ModernAuthReadMailbox.node');
		const test = new ModernAuthReadMailbox().methods.credentialTest.modernAuthImapConnectionTest;
		const ok = await test.call({}, { id: 'x', name: 'imap', type: 'modernAuthImapApi', data: credentials().modernAuthImapApi.data });
		expect(ok.status).toBe('OK');
		const held = await dovecot.status(USER);
		expect(ok.message).toBe(`4 checks passed; read: INBOX: ${held.messages} messages, ${held.unseen} unread.`);
		const bad = await test.call({}, { id: 'x', name: 'imap', type: 'modernAuthImapApi', data: { ...credentials().modernAuthImapApi.data, password: 'nope-nope' } });
		expect(bad.status).toBe('Error');
		expect(bad.message).toMatch(/^login \(imap\) failed: .*AUTHENTICATE failed.*Fix:/);
	});
});
