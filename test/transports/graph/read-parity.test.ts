import { randomBytes } from 'node:crypto';

import { isUnreadable, type IncomingMessage, type UnreadableMessage } from '../../../model/incoming-message';
import { ImapReader } from '../../../transports/imap/imap-reader';
import { MAILBOX, startGraphPeers, type GraphPeers } from './graph-reader-setup';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../../peers/dovecot');

const USER = 'parity@example.com';
const PASSWORD = 'Parity-imap-Passw0rd';

let peers: GraphPeers;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;

beforeAll(async () => {
	peers = await startGraphPeers();
	dovecot = await startDovecot({ pki: peers.pki, users: { [USER]: PASSWORD }, oauth2: { introspectionUrl: peers.idp.introspectionUrl } });
}, 120_000);

afterAll(async () => {
	await dovecot?.stop();
	await peers?.close();
});

async function one(generator: AsyncGenerator<IncomingMessage | UnreadableMessage>): Promise<IncomingMessage> {
	const out: IncomingMessage[] = [];
	for await (const message of generator) {
		if (isUnreadable(message)) throw new Error(`unexpected unreadable message: ${message.error.message}`);
		out.push(message);
	}
	expect(out).toHaveLength(1);
	return out[0];
}

describe('the same message through Graph and through IMAP', () => {
	it('gives the same normalized fields', async () => {
		const pdf = randomBytes(300_000);
		const logo = randomBytes(1500);
		const record = peers.graph.addMessage(MAILBOX, {
			subject: 'Parity check ✓ äöü',
			from: { address: 'bob@example.org', name: 'Bob Example' },
			to: [{ address: MAILBOX }, { address: 'carol@example.org', name: 'Carol C' }],
			cc: [{ address: 'dave@example.org' }],
			replyTo: [{ address: 'replies@example.org', name: 'Replies' }],
			body: { contentType: 'text', content: 'Hello,\r\nsee the attachments.\r\n\r\nBob' },
			internetMessageHeaders: [{ name: 'X-Ticket', value: 'T-42' }],
			sentDateTime: '2026-11-30T09:15:00Z',
			attachments: [
				{ name: 'report.pdf', contentType: 'application/pdf', content: pdf },
				{ name: 'logo.png', contentType: 'image/png', content: logo, isInline: true, contentId: 'logo@parity' },
			],
		});
		const graphReader = peers.reader();
		const viaGraph = await one(graphReader.fetch('inbox', [record.immutableId], { includeRaw: true, includeHeaders: true }));

		// Dovecot stores the message as Graph gives it as MIME (/$value), and IMAP reads it back.
		await dovecot.deliver(USER, viaGraph.raw);
		const imap = new ImapReader({ host: dovecot.host, port: dovecot.tlsPort, security: 'tls', auth: { type: 'password', user: USER, pass: PASSWORD }, rejectUnauthorized: true, ca: peers.pki.ca });
		await imap.connect();
		try {
			const ids = await imap.search('INBOX', {}, { newestFirst: false, limit: 10 });
			const viaImap = await one(imap.fetch('INBOX', ids, { includeHeaders: true }));

			for (const field of ['messageId', 'from', 'to', 'cc', 'replyTo', 'subject', 'date', 'seen', 'flagged'] as const) {
				expect({ field, value: viaGraph[field] }).toEqual({ field, value: viaImap[field] });
			}
			// \Recent belongs to one IMAP session; Graph has no such thing.
			expect(viaGraph.flags).toEqual(viaImap.flags.filter((flag) => flag !== '\\Recent'));
			// A MIME text part ends with a line break that mailparser keeps; Graph's body has none.
			expect(viaGraph.text?.trimEnd()).toBe(viaImap.text?.trimEnd());
			expect(viaGraph.attachments.map(({ content, ...info }) => ({ ...info, bytes: content?.length }))).toEqual(
				viaImap.attachments.map(({ content, ...info }) => ({ ...info, bytes: content?.length })),
			);
			for (const [i, attachment] of viaGraph.attachments.entries()) expect(attachment.content?.equals(viaImap.attachments[i].content!)).toBe(true);
			// Graph's internetMessageHeaders are the message's own Internet headers: each is in the MIME header IMAP reads.
			for (const [name, value] of Object.entries(viaGraph.headers ?? {})) expect(viaImap.headers?.[name]).toBe(value);
			expect(viaGraph.headers).toHaveProperty('x-ticket', 'T-42');
		} finally {
			await imap.close();
		}
	});
});
