import { randomUUID } from 'node:crypto';

import type { OutgoingMessage } from '../model/outgoing-message';
import { MessageInputError, parseSingleAddress } from '../model/validate';
import type { MailReader, MailSender } from '../transports/contracts';
import { outcomeOfError, type Check, type CheckOutcome } from './checks';

/**
 * The optional last stage: send one small test message and read it back. Transport-neutral:
 * any MailSender and MailReader (SMTP -> IMAP, Graph -> Graph, one into the other).
 */

/** Carries the run's token, so a reader (or a mail rule) can tell the test message for sure. Graph takes X- headers only. */
export const TEST_MESSAGE_HEADER = 'X-Modern-Auth-Mail-Test';
const SUBJECT_PREFIX = 'Modern Auth Mail connection test';

export interface RoundTripParams {
	sender: MailSender;
	fromAddress: string;
	to: string;
	/** Where to look for the message; without one the message is only sent. */
	reader?: MailReader;
	/** Folder of the reader's mailbox the message arrives in (default INBOX). */
	folder?: string;
	/** How long the message may take to arrive. */
	timeoutMs: number;
	/** Delete the test message once it was read back (default true: a scheduled health check must not fill the Inbox). */
	cleanUp?: boolean;
	/** First pause between searches (default 250 ms; doubles up to 2 s). */
	pollMs?: number;
}

/** Time the send itself may take on top of the arrival time-out. */
const SEND_ALLOWANCE_MS = 15_000;
const MAX_POLL_MS = 2_000;
/** Searched from a little before the send: server clocks differ, IMAP SINCE counts whole days. */
const CLOCK_SLACK_MS = 10 * 60_000;

/** The whole stage's ceiling: the send, then the arrival time-out. */
export const roundTripTimeoutMs = (arrivalTimeoutMs: number) => arrivalTimeoutMs + SEND_ALLOWANCE_MS;

/** The test message: unique subject and header, plain text saying what it is. */
export function testMessage(fromAddress: string, to: string, token: string, sentAt = new Date()): OutgoingMessage {
	const recipient = parseSingleAddress('Round Trip To', to);
	if (!recipient) throw new MessageInputError('Round Trip To', 'is empty', 'Enter the address to send the test message to (the tested mailbox, or one that delivers to it)');
	return {
		from: { address: fromAddress },
		to: [recipient],
		cc: [],
		bcc: [],
		replyTo: [],
		subject: `${SUBJECT_PREFIX} ${token}`,
		text: [
			'This message was sent by the Test Connection node of n8n-nodes-modern-auth-mail to check that mail goes out and arrives.',
			`Sent ${sentAt.toISOString()} from ${fromAddress} to ${to}; test id ${token}.`,
			'It can be deleted.',
		].join('\n'),
		attachments: [],
		headers: [{ name: TEST_MESSAGE_HEADER, value: token }],
		priority: 'normal',
		saveToSentItems: false,
	};
}

export function roundTripCheck(params: RoundTripParams): Check {
	return {
		step: 'round-trip',
		target: params.to,
		timeoutMs: roundTripTimeoutMs(params.timeoutMs),
		run: (signal) => roundTrip(params, signal),
	};
}

async function roundTrip(params: RoundTripParams, signal: AbortSignal): Promise<CheckOutcome> {
	const token = randomUUID();
	const started = Date.now();
	let message: OutgoingMessage;
	try {
		message = testMessage(params.fromAddress, params.to, token, new Date(started));
	} catch (error) {
		if (!(error instanceof MessageInputError)) throw error;
		return { status: 'fail', code: 'ROUND_TRIP_INVALID_ADDRESS', detail: error.message, hint: error.hint ?? 'Enter one plain address, e.g. user@contoso.com' };
	}
	let messageId = '';
	try {
		messageId = (await params.sender.send(message)).messageId;
	} catch (error) {
		const failed = outcomeOfError(error);
		return { ...failed, detail: `sending the test message failed: ${failed.detail}`, facts: { sendMs: Date.now() - started } };
	}
	const sendMs = Date.now() - started;
	const sent = { sendMs, ...(messageId ? { messageId } : {}) };
	if (!params.reader) {
		return { status: 'pass', detail: `sent in ${sendMs} ms, not read back (this credential cannot read)`, facts: sent };
	}
	const folder = params.folder ?? 'INBOX';
	const found = await poll(params, folder, token, started, signal);
	const roundTripMs = Date.now() - started;
	if (!found) {
		return {
			status: 'fail',
			code: 'ROUND_TRIP_NOT_ARRIVED',
			detail: `sent in ${sendMs} ms, but it was not in ${folder} after ${seconds(params.timeoutMs)}`,
			hint: `${params.to} must be the tested mailbox or deliver to it; check transport rules, forwarding and the Junk folder, or allow a longer time-out`,
			facts: { ...sent, roundTripMs },
		};
	}
	const cleaned = params.cleanUp === false ? '' : await cleanUp(params.reader, folder, found);
	return { status: 'pass', detail: `arrived in ${folder} after ${roundTripMs} ms (sent in ${sendMs} ms)${cleaned}`, facts: { ...sent, roundTripMs } };
}

/** Searches for the message until it is there, the time-out passes or the run is aborted. */
async function poll(params: RoundTripParams, folder: string, token: string, started: number, signal: AbortSignal): Promise<string | undefined> {
	const reader = params.reader!;
	if (!reader.connected) await reader.connect();
	const deadline = started + params.timeoutMs;
	let pause = params.pollMs ?? 250;
	for (;;) {
		const [id] = await reader.search(folder, { subjectContains: token, since: new Date(started - CLOCK_SLACK_MS) }, { newestFirst: true, limit: 1 });
		if (id) return id;
		const left = deadline - Date.now();
		if (left <= 0 || signal.aborted) return undefined;
		await sleep(Math.min(pause, left), signal);
		pause = Math.min(MAX_POLL_MS, pause * 2);
	}
}

async function cleanUp(reader: MailReader, folder: string, id: string): Promise<string> {
	try {
		const [outcome] = await reader.apply(folder, [id], { type: 'delete' });
		return outcome?.done ? '; the test message was deleted' : `; the test message was left in ${folder}${outcome?.reason ? ` (${outcome.reason})` : ''}`;
	} catch (error) {
		return `; the test message was left in ${folder} (${outcomeOfError(error).detail})`;
	}
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
	return new Promise((resolve) => {
		const timer = setTimeout(done, ms);
		signal.addEventListener('abort', done, { once: true });
		function done() {
			clearTimeout(timer);
			signal.removeEventListener('abort', done);
			resolve();
		}
	});
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;
