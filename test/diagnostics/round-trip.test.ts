import { simpleParser } from 'mailparser';

import { appOnlyTokenProvider } from '../../auth/app-only-token-provider';
import { imapKind } from '../../connections/imap';
import { smtpKind } from '../../connections/smtp';
import { runChecks, type CheckResult } from '../../diagnostics/checks';
import { roundTripCheck, TEST_MESSAGE_HEADER, type RoundTripParams } from '../../diagnostics/round-trip';
import type { MailReader, MailSender } from '../../transports/contracts';
import { createGraphClient } from '../../transports/graph/graph-client';
import { GraphReader } from '../../transports/graph/graph-reader';
import { type GraphFixture, RCPT, SENDER, startGraphFixture, TENANT } from '../transports/graph/graph-fixture';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');

const OUTSIDE = 'nobody@elsewhere.example';

async function runRoundTrip(params: RoundTripParams): Promise<CheckResult> {
	const [result] = await runChecks([roundTripCheck({ pollMs: 50, ...params })]);
	return result;
}

describe('round trip over Graph (fake Graph)', () => {
	let fixture: GraphFixture;
	const readers: MailReader[] = [];
	beforeAll(async () => {
		fixture = await startGraphFixture({ graphOptions: { enforceSendAs: true } });
	});
	afterAll(async () => {
		for (const reader of readers) await reader.close();
		await fixture?.close();
	});
	afterEach(() => fixture.graph.setDeliveryDelay(0));

	const reader = (mailbox = SENDER) => {
		const tokens = appOnlyTokenProvider({ tenantId: TENANT, clientId: fixture.clientId, clientSecret: fixture.secret, cloud: fixture.cloud });
		const made = new GraphReader(createGraphClient({ graphHost: fixture.cloud.graphHost, tokens, mailbox }));
		readers.push(made);
		return made;
	};
	const testMessagesIn = (mailbox: string, folder: string) =>
		(fixture.graph.messages(mailbox, folder) as Array<{ subject: string; internetMessageHeaders?: Array<{ name: string; value: string }> }>).filter((m) => m.subject.startsWith('Modern Auth Mail connection test'));

	it('sends to the tested mailbox, finds the message once delivery catches up, and reports the times', async () => {
		fixture.graph.setDeliveryDelay(700);
		const before = fixture.graph.deliveries.length;
		const result = await runRoundTrip({ sender: fixture.sender(), fromAddress: SENDER, to: SENDER, reader: reader(), folder: 'Inbox', timeoutMs: 5_000, cleanUp: false });
		expect(result).toMatchObject({ step: 'round-trip', target: SENDER, status: 'pass' });
		expect(result.detail).toMatch(/^arrived in Inbox after \d+ ms \(sent in \d+ ms\)$/);
		expect(Number(result.facts?.roundTripMs)).toBeGreaterThanOrEqual(700);
		expect(Number(result.facts?.sendMs)).toBeLessThan(Number(result.facts?.roundTripMs));
		// What the fake Graph holds: one delivery, and the message in the Inbox with the run's header.
		const sent = fixture.graph.deliveries.slice(before);
		expect(sent).toHaveLength(1);
		expect(sent[0]).toMatchObject({ from: SENDER, to: [SENDER] });
		const held = testMessagesIn(SENDER, 'inbox');
		expect(held).toHaveLength(1);
		const token = held[0].internetMessageHeaders?.find((h) => h.name === TEST_MESSAGE_HEADER)?.value;
		expect(held[0].subject).toBe(`Modern Auth Mail connection test ${token}`);
		fixture.graph.deleteMessage(SENDER, (held[0] as unknown as { restId: string }).restId);
	});

	it('deletes the test message once it was read back, and says so', async () => {
		const result = await runRoundTrip({ sender: fixture.sender(), fromAddress: SENDER, to: SENDER, reader: reader(), folder: 'Inbox', timeoutMs: 5_000 });
		expect(result.status).toBe('pass');
		expect(result.detail).toMatch(/; the test message was deleted$/);
		expect(testMessagesIn(SENDER, 'inbox')).toHaveLength(0);
	});

	it('a message that never reaches the mailbox fails ROUND_TRIP_NOT_ARRIVED within its time-out', async () => {
		const before = fixture.graph.deliveries.length;
		const started = Date.now();
		const result = await runRoundTrip({ sender: fixture.sender(), fromAddress: SENDER, to: OUTSIDE, reader: reader(), folder: 'Inbox', timeoutMs: 1_200 });
		const took = Date.now() - started;
		expect(result).toMatchObject({ step: 'round-trip', target: OUTSIDE, status: 'fail', code: 'ROUND_TRIP_NOT_ARRIVED' });
		expect(result.detail).toMatch(/but it was not in Inbox after 1\.2 s$/);
		expect(result.hint).toContain(`${OUTSIDE} must be the tested mailbox or deliver to it`);
		expect(result.hint).toMatch(/transport rules.*Junk/);
		expect(took).toBeGreaterThanOrEqual(1_200);
		expect(took).toBeLessThan(4_000);
		// It did go out: the failure is the arrival, not the send.
		expect(fixture.graph.deliveries.slice(before)).toMatchObject([{ to: [OUTSIDE] }]);
	});

	it('without a reader the message is sent and the check says it was not read back', async () => {
		const before = fixture.graph.deliveries.length;
		const result = await runRoundTrip({ sender: fixture.sender(), fromAddress: SENDER, to: RCPT, timeoutMs: 1_000 });
		expect(result.status).toBe('pass');
		expect(result.detail).toMatch(/^sent in \d+ ms, not read back \(this credential cannot read\)$/);
		expect(fixture.graph.deliveries.slice(before)).toMatchObject([{ to: [RCPT] }]);
		expect(testMessagesIn(RCPT, 'inbox')).toHaveLength(1);
	});

	it('a refused send fails with the transport\'s code and hint, and nothing is read', async () => {
		const before = fixture.graph.deliveries.length;
		const result = await runRoundTrip({ sender: fixture.sender(), fromAddress: RCPT, to: SENDER, reader: reader(), timeoutMs: 1_000 });
		expect(result).toMatchObject({ status: 'fail', code: 'GRAPH_ACCESS_DENIED' });
		expect(result.detail).toMatch(/^sending the test message failed: The mailbox may not send as this From address/);
		expect(result.hint).toMatch(/Send As/);
		expect(fixture.graph.deliveries.length).toBe(before);
	});

	it('an address that is not one is refused before anything is sent', async () => {
		const before = fixture.graph.deliveries.length;
		const result = await runRoundTrip({ sender: fixture.sender(), fromAddress: SENDER, to: 'not an address', reader: reader(), timeoutMs: 1_000 });
		expect(result).toMatchObject({ status: 'fail', code: 'ROUND_TRIP_INVALID_ADDRESS' });
		expect(result.detail).toMatch(/^Round Trip To: /);
		expect(fixture.graph.deliveries.length).toBe(before);
	});
});

describe('round trip over SMTP into IMAP (smtp-server peer delivering into Dovecot)', () => {
	const USER = 'roundtrip@example.com';
	const PASSWORD = 'Round-Trip-Passw0rd';
	let pki: ReturnType<typeof sharedTestPki>;
	let smtp: Awaited<ReturnType<typeof startSmtpPeer>>;
	let dovecot: Awaited<ReturnType<typeof startDovecot>>;
	let relay: NodeJS.Timeout;
	const relayed: string[] = [];

	beforeAll(async () => {
		pki = sharedTestPki();
		smtp = await startSmtpPeer({ pki, users: { [USER]: PASSWORD } });
		dovecot = await startDovecot({ pki, users: { [USER]: PASSWORD } });
		// The SMTP peer's delivery agent: what it accepted for USER goes into USER's INBOX (doveadm save).
		let handed = 0;
		let busy = false;
		relay = setInterval(async () => {
			if (busy) return;
			busy = true;
			try {
				while (handed < smtp.received.length) {
					const message = smtp.received[handed++] as { envelope: { to: string[] }; raw: Buffer };
					if (!message.envelope.to.includes(USER)) continue;
					await dovecot.deliver(USER, message.raw);
					relayed.push(String((await simpleParser(message.raw)).subject));
				}
			} finally {
				busy = false;
			}
		}, 25);
	}, 120_000);
	afterAll(async () => {
		clearInterval(relay);
		await smtp?.close();
		await dovecot?.stop();
	});

	async function smtpToImap(): Promise<{ sender: MailSender; reader: MailReader; close: () => Promise<void> }> {
		const sending = await smtpKind.open({ host: smtp.host, port: smtp.port, security: 'starttls', user: USER, password: PASSWORD, fromAddress: USER, caCertificate: pki.ca }, {});
		const reading = await imapKind.open({ host: dovecot.host, port: dovecot.tlsPort, security: 'tls', user: USER, password: PASSWORD, caCertificate: pki.ca }, {});
		const identity = await sending.identityFor!('');
		const sender = sending.sender!(identity, { maxConnections: 1, retry: { retries: 0 } });
		const reader = reading.reader!(USER);
		return { sender, reader, close: async () => void (await Promise.all([sender.close(), reader.close()])) };
	}

	it('the message sent over SMTP is found in the IMAP INBOX, then deleted', async () => {
		const { sender, reader, close } = await smtpToImap();
		try {
			const result = await runRoundTrip({ sender, fromAddress: USER, to: USER, reader, timeoutMs: 8_000 });
			expect(result).toMatchObject({ step: 'round-trip', target: USER, status: 'pass' });
			expect(result.detail).toMatch(/^arrived in INBOX after \d+ ms \(sent in \d+ ms\); the test message was deleted$/);
			expect(String(result.facts?.messageId)).toMatch(/^<.+@.+>$/);
			// The SMTP peer received it, its delivery agent put it into Dovecot, the check removed it again.
			const subject = relayed.at(-1) ?? '';
			expect(subject).toMatch(/^Modern Auth Mail connection test [0-9a-f-]{36}$/);
			const raw = smtp.received.at(-1).raw.toString();
			expect(raw).toContain(`${TEST_MESSAGE_HEADER}: ${subject.split(' ').pop()}`);
			expect(raw).toContain('sent by the Test Connection node');
			const inbox = (await dovecot.list(USER)) as Array<{ subject: string }>;
			expect(inbox.filter((m) => m.subject === subject)).toEqual([]);
		} finally {
			await close();
		}
	});

	it('sent elsewhere: ROUND_TRIP_NOT_ARRIVED after the time-out, though the SMTP server took it', async () => {
		const { sender, reader, close } = await smtpToImap();
		const received = smtp.received.length;
		try {
			const result = await runRoundTrip({ sender, fromAddress: USER, to: OUTSIDE, reader, timeoutMs: 1_500 });
			expect(result).toMatchObject({ status: 'fail', code: 'ROUND_TRIP_NOT_ARRIVED' });
			expect(smtp.received.length).toBe(received + 1);
			expect(smtp.received.at(-1).envelope.to).toEqual([OUTSIDE]);
		} finally {
			await close();
		}
	});
});
