import { createHash, randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';

import { ImapReader, type ImapReaderOptions } from '../../transports/imap/imap-reader';
import { isUnreadable, type IncomingMessage, type ReadFilter, type UnreadableMessage } from '../../model/incoming-message';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');

const USER = 'alice@example.com';
const PASSWORD = 'Alice-imap-Passw0rd';
const TENANT = '4d3c2b1a-0f9e-4d8c-b7a6-5f4e3d2c1b0a';
const APP = '8e7d6c5b-4a3f-4e2d-9c1b-0a9f8e7d6c5b';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const ALL = { newestFirst: false, limit: 1000 };

let pki: ReturnType<typeof sharedTestPki>;
let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;

/** A real MIME message built by nodemailer (what a mail server would store). */
async function mime(options: Record<string, unknown>): Promise<Buffer> {
	const info = await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail(options);
	return info.message as Buffer;
}

beforeAll(async () => {
	pki = sharedTestPki();
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['example.com'] });
	idp.addApp({ tenant: TENANT, clientId: APP, secrets: [{ value: 'unused' }] });
	idp.addUser({ tenant: TENANT, username: USER, password: 'x' });
	dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD }, oauth2: { introspectionUrl: idp.introspectionUrl } });
}, 120_000);

afterAll(async () => {
	await dovecot?.stop();
	await idp?.close();
});

function reader(overrides: Partial<ImapReaderOptions> = {}): ImapReader {
	return new ImapReader({
		host: dovecot.host,
		port: dovecot.tlsPort,
		security: 'tls',
		auth: { type: 'password', user: USER, pass: PASSWORD },
		rejectUnauthorized: true,
		ca: pki.ca,
		...overrides,
	});
}

async function collect(generator: AsyncGenerator<IncomingMessage | UnreadableMessage>): Promise<IncomingMessage[]> {
	const out: IncomingMessage[] = [];
	for await (const message of generator) {
		if (isUnreadable(message)) throw new Error(`unexpected unreadable message: ${message.error.message}`);
		out.push(message);
	}
	return out;
}

describe('IMAP reader against a real Dovecot', () => {
	it('reads messages into the shared model, attachments byte for byte, then applies post-actions', async () => {
		const pdf = randomBytes(200_000);
		await dovecot.createFolder(USER, 'Processed');
		await dovecot.deliver(
			USER,
			await mime({
				from: 'Bob <bob@example.org>',
				to: USER,
				cc: 'carol@example.org',
				subject: 'Invoice ünïcödé',
				text: 'plain body',
				html: '<p>html body</p>',
				attachments: [{ filename: 'invoice.pdf', content: pdf, contentType: 'application/pdf' }],
			}),
		);
		await dovecot.deliver(USER, await mime({ from: 'dave@example.org', to: USER, subject: 'Second', text: 'two' }));

		const imap = reader();
		await imap.connect();
		try {
			const uidValidity = Number(await dovecot.uidValidity(USER, 'INBOX'));
			const held = (await dovecot.list(USER, 'INBOX')).map((m: { uid: number }) => m.uid);
			const ids = await imap.search('INBOX', { unreadOnly: true }, ALL);
			// Opaque ids carry the folder's UIDVALIDITY with the UID.
			expect(ids).toEqual(held.map((uid: number) => `${uidValidity}:${uid}`));
			const messages = await collect(imap.fetch('INBOX', ids, { includeHtml: true, includeHeaders: true }));
			const [first, second] = messages;
			expect(first).toMatchObject({
				id: ids[0],
				uid: held[0],
				folder: 'INBOX',
				from: { name: 'Bob', address: 'bob@example.org' },
				to: [{ address: USER }],
				cc: [{ address: 'carol@example.org' }],
				subject: 'Invoice ünïcödé',
				seen: false,
			});
			expect(first.text?.trim()).toBe('plain body');
			expect(first.html).toContain('<p>html body</p>');
			expect(first.headers?.subject).toBeTruthy();
			expect(first.attachments).toHaveLength(1);
			expect(first.attachments[0]).toMatchObject({ filename: 'invoice.pdf', contentType: 'application/pdf', size: pdf.length, inline: false });
			expect(sha256(first.attachments[0].content!)).toBe(sha256(pdf));
			expect(second.subject).toBe('Second');

			expect(await imap.search('INBOX', { subjectContains: 'Invoice' }, ALL)).toEqual([ids[0]]);
			// The trigger's cursor: none -> the newest message now; after it, only later UIDs, oldest first.
			const cursorAt = (lastUid: number, validity = uidValidity) => JSON.stringify({ uidValidity: validity, lastUid });
			expect(await imap.changesSince('INBOX', undefined)).toEqual({ ids: [], cursor: cursorAt(held[1]), baseline: 'first' });
			expect(await imap.changesSince('INBOX', cursorAt(held[0]))).toEqual({ ids: [ids[1]], cursor: cursorAt(held[1]) });
			expect(await imap.changesSince('INBOX', cursorAt(held[1]))).toEqual({ ids: [], cursor: cursorAt(held[1]) });
			// A cursor from before the server renumbered the folder starts over from now, replaying nothing.
			expect(await imap.changesSince('INBOX', cursorAt(0, uidValidity + 1))).toEqual({ ids: [], cursor: cursorAt(held[1]), baseline: 'invalid' });
			// An id of another UIDVALIDITY names no message here.
			expect(await collect(imap.fetch('INBOX', [`${uidValidity + 1}:${held[0]}`]))).toEqual([]);

			await imap.apply('INBOX', [ids[0]], { type: 'markRead' });
			const [moved] = await imap.apply('INBOX', [ids[1]], { type: 'move', folder: 'Processed' });
			const processedValidity = Number(await dovecot.uidValidity(USER, 'Processed'));
			const [processedUid] = (await dovecot.list(USER, 'Processed')).map((m: { uid: number }) => m.uid);
			expect(moved).toEqual({ id: ids[1], done: true, newUid: processedUid, newId: `${processedValidity}:${processedUid}` });
		} finally {
			await imap.close();
		}
		// What the server holds afterwards, read with Dovecot's own tools.
		const inbox = await dovecot.list(USER, 'INBOX');
		expect(inbox).toHaveLength(1);
		expect(inbox[0].flags).toEqual(expect.arrayContaining(['\\Seen']));
		const processed = await dovecot.list(USER, 'Processed');
		expect(processed.map((m: { subject: string }) => m.subject)).toEqual(['Second']);
	});

	it('an unknown folder names the folders that exist', async () => {
		const imap = reader();
		await imap.connect();
		try {
			await expect(imap.search('Archive 2019', {}, ALL)).rejects.toMatchObject({
				code: 'IMAP_UNKNOWN_FOLDER',
				hint: expect.stringMatching(/INBOX.*Processed|Processed.*INBOX/),
			});
		} finally {
			await imap.close();
		}
	});

	it('XOAUTH2: a token from the identity platform opens the mailbox; a refused one is renewed once', async () => {
		const good = idp.mintAccessToken({ tenant: TENANT, clientId: APP, username: USER, audience: 'https://outlook.office.com', scp: 'IMAP.AccessAsUser.All' });
		const calls: Array<string | undefined> = [];
		const imap = reader({
			auth: {
				type: 'oauth2',
				flavour: 'delegated',
				user: USER,
				getAccessToken: async (rejected) => {
					calls.push(rejected);
					return { token: rejected ? good : 'not-a-valid-token' };
				},
			},
		});
		await imap.connect();
		await imap.search('INBOX', {}, ALL);
		await imap.close();
		expect(calls).toEqual([undefined, 'not-a-valid-token']);
	});

	it('raw IMAP search runs on the server, ANDed with the filters; a malformed one is refused with the fix', async () => {
		const user = 'rawsearch@example.com';
		await dovecot.addUser(user, PASSWORD);
		for (const subject of ['Alpha report', 'Beta report', 'Gamma report']) {
			await dovecot.deliver(user, await mime({ from: 'ops@example.org', to: user, subject, text: subject }));
		}
		const imap = reader({ auth: { type: 'password', user, pass: PASSWORD } });
		await imap.connect();
		try {
			const search = (filter: ReadFilter) => imap.search('INBOX', filter, ALL);
			const all = await search({});
			expect(all).toHaveLength(3);
			expect(await search({ rawQuery: 'OR SUBJECT "Alpha" SUBJECT "Gamma report"' })).toEqual([all[0], all[2]]);
			expect(await search({ rawQuery: 'OR SUBJECT Alpha SUBJECT Gamma', subjectContains: 'Gamma' })).toEqual([all[2]]);
			expect(await search({ rawQuery: 'NOT SUBJECT Beta', unreadOnly: true })).toEqual([all[0], all[2]]);
			expect(await search({ rawQuery: 'NOT SUBJECT Beta', subjectContains: 'Alpha' })).toEqual([all[0]]);
			// Syntax errors never reach the server; what only the server knows comes back with its text.
			await expect(search({ rawQuery: '(SUBJECT Alpha' })).rejects.toMatchObject({
				code: 'IMAP_BAD_SEARCH',
				message: expect.stringMatching(/^Raw IMAP Search: "\(SUBJECT Alpha" is not valid IMAP search syntax/),
				hint: expect.stringMatching(/RFC 3501/),
			});
			await expect(search({ rawQuery: 'FROBNICATE 7' })).rejects.toMatchObject({
				code: 'IMAP_BAD_SEARCH',
				message: expect.stringMatching(/^Raw IMAP Search: the server refused "FROBNICATE 7": .+/),
			});
			await expect(search({ rawQuery: 'ALL\r\nA9 DELETE INBOX' })).rejects.toMatchObject({ code: 'IMAP_BAD_SEARCH' });
			// The connection is still usable after a refused search.
			expect(await search({ subjectContains: 'Beta' })).toEqual([all[1]]);
		} finally {
			await imap.close();
		}
		expect(await dovecot.list(user, 'INBOX')).toHaveLength(3);
	});

	it('has-attachments keeps real attachments and skips inline images, in the asked order and limit', async () => {
		const user = 'clips@example.com';
		await dovecot.addUser(user, PASSWORD);
		const png = randomBytes(3000);
		const sent = [
			{ subject: 'plain', text: 'no attachment' },
			{ subject: 'with pdf', text: 'see pdf', attachments: [{ filename: 'a.pdf', content: randomBytes(500) }] },
			{ subject: 'inline logo', html: '<img src="cid:logo@x">', attachments: [{ filename: 'logo.png', content: png, cid: 'logo@x' }] },
			{ subject: 'with csv', text: 'see csv', attachments: [{ filename: 'b.csv', content: 'x,y\n1,2\n', contentType: 'text/csv' }] },
			{ subject: 'forwarded', text: 'see eml', attachments: [{ filename: 'fw.eml', content: 'Subject: inner\r\n\r\nbody', contentType: 'message/rfc822' }] },
		];
		for (const m of sent) await dovecot.deliver(user, await mime({ from: 'ops@example.org', to: user, ...m }));
		const imap = reader({ auth: { type: 'password', user, pass: PASSWORD } });
		await imap.connect();
		try {
			const all = await imap.search('INBOX', {}, ALL);
			const subjects = async (ids: string[]) => (await collect(imap.fetch('INBOX', ids))).map((m) => m.subject).sort();
			const oldest = await imap.search('INBOX', { hasAttachments: true }, { newestFirst: false, limit: 10 });
			expect(await subjects(oldest)).toEqual(['forwarded', 'with csv', 'with pdf']);
			expect(oldest).toEqual([all[1], all[3], all[4]]);
			expect(await imap.search('INBOX', { hasAttachments: true }, { newestFirst: true, limit: 2 })).toEqual([all[4], all[3]]);
			expect(await imap.search('INBOX', { hasAttachments: false }, { newestFirst: true, limit: 2 })).toEqual([all[4], all[3]]);
		} finally {
			await imap.close();
		}
	});

	it('a message over the stream threshold is downloaded in chunks and parsed as it arrives; bytes match the server', async () => {
		const user = 'large@example.com';
		await dovecot.addUser(user, PASSWORD);
		const big = randomBytes(3 * 1024 * 1024 + 17);
		const small = randomBytes(10_000);
		await dovecot.deliver(user, await mime({ from: 'ops@example.org', to: user, subject: 'big one', text: 'large', attachments: [{ filename: 'big.bin', content: big }] }));
		await dovecot.deliver(user, await mime({ from: 'ops@example.org', to: user, subject: 'small one', text: 'small', attachments: [{ filename: 'small.bin', content: small }] }));
		const imap = reader({ auth: { type: 'password', user, pass: PASSWORD } });
		await imap.connect();
		try {
			const ids = await imap.search('INBOX', {}, ALL);
			const uids = ids.map((id) => Number(id.split(':')[1]));
			const received = new Map<string, { chunks: number; bytes: Buffer }>();
			const rawById = new Map<string, Buffer>();
			const drain = async (content: NodeJS.ReadableStream) => {
				const chunks: Buffer[] = [];
				for await (const chunk of content) chunks.push(chunk as Buffer);
				return { chunks: chunks.length, bytes: Buffer.concat(chunks) };
			};
			const messages = await collect(
				imap.fetch('INBOX', ids, {
					includeRaw: true,
					sink: {
						attachment: async (_id, _index, info, content) => void received.set(info.filename, await drain(content)),
						raw: async (id, content) => void rawById.set(id, (await drain(content)).bytes),
					},
				}),
			);
			// Whole messages first, then the streamed one (see fetch()).
			expect(messages.map((m) => m.subject)).toEqual(['small one', 'big one']);
			expect(messages[1].attachments).toEqual([{ filename: 'big.bin', contentType: 'application/octet-stream', size: big.length, inline: false }]);
			expect(sha256(received.get('big.bin')!.bytes)).toBe(sha256(big));
			expect(sha256(received.get('small.bin')!.bytes)).toBe(sha256(small));
			// Arrived as a stream of many pieces, not one buffer.
			expect(received.get('big.bin')!.chunks).toBeGreaterThan(2);
			expect(messages[1].raw).toBeUndefined();
			// The raw .eml is exactly what the server holds (read back with imapflow directly).
			const flow = (imap as unknown as { client: { fetchOne(u: string, q: object, o: object): Promise<{ source: Buffer }> } }).client;
			for (const [index, uid] of uids.entries()) {
				const { source } = await flow.fetchOne(String(uid), { source: true }, { uid: true });
				expect(sha256(rawById.get(ids[index])!)).toBe(sha256(source));
			}
			expect(rawById.get(ids[0])!.length).toBeGreaterThan(4 * 1024 * 1024);
		} finally {
			await imap.close();
		}
	});

	it('wrong password: AUTHENTICATE failed with a hint', async () => {
		const imap = reader({ auth: { type: 'password', user: USER, pass: 'wrong-password' } });
		await expect(imap.connect()).rejects.toMatchObject({ code: 'IMAP_AUTH_FAILED', hint: expect.stringMatching(/password/) });
	});
});
