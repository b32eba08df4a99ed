import { createHash, randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';

import { ImapReader, type ImapReaderOptions } from '../../transports/imap/imap-reader';
import type { IncomingMessage } from '../../model/incoming-message';

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

async function collect(generator: AsyncGenerator<IncomingMessage>): Promise<IncomingMessage[]> {
	const out: IncomingMessage[] = [];
	for await (const message of generator) out.push(message);
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
			const { uidValidity } = await imap.openFolder('INBOX');
			expect(uidValidity).toBe(Number(await dovecot.uidValidity(USER, 'INBOX')));
			const uids = await imap.search({ unreadOnly: true });
			expect(uids).toHaveLength(2);
			const messages = await collect(imap.fetch('INBOX', uidValidity, uids, { includeHtml: true, includeHeaders: true }));
			const [first, second] = messages;
			expect(first).toMatchObject({
				id: `${uidValidity}:${uids[0]}`,
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
			expect(sha256(first.attachments[0].content)).toBe(sha256(pdf));
			expect(second.subject).toBe('Second');

			expect(await imap.search({ subjectContains: 'Invoice' })).toEqual([uids[0]]);
			expect(await imap.search({ uidAfter: uids[0] })).toEqual([uids[1]]);
			expect(await imap.search({ uidAfter: uids[1] })).toEqual([]);

			await imap.apply('INBOX', [uids[0]], { type: 'markRead' });
			await imap.apply('INBOX', [uids[1]], { type: 'move', folder: 'Processed' });
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
			await expect(imap.openFolder('Archive 2019')).rejects.toMatchObject({
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
		await imap.openFolder('INBOX');
		await imap.close();
		expect(calls).toEqual([undefined, 'not-a-valid-token']);
	});

	it('wrong password: AUTHENTICATE failed with a hint', async () => {
		const imap = reader({ auth: { type: 'password', user: USER, pass: 'wrong-password' } });
		await expect(imap.connect()).rejects.toMatchObject({ code: 'IMAP_AUTH_FAILED', hint: expect.stringMatching(/password/) });
	});
});
