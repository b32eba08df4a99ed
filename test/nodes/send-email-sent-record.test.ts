/** The per-execution record of accepted items stays bounded in size and time. */
import {
	messageFingerprint,
	recordedOutcome,
	recordOutcome,
	type ItemIdentity,
} from '../../nodes/ModernAuthSendEmail/actions/sent-record';
import type { OutgoingMessage } from '../../model/outgoing-message';

const message = (subject: string): OutgoingMessage => ({
	from: { address: 'robot@example.com' },
	to: [{ address: 'ann@example.org' }],
	cc: [],
	bcc: [],
	replyTo: [],
	subject,
	text: 'hi',
	attachments: [{ filename: 'a.pdf', contentType: 'application/pdf', size: 10, open: async () => Buffer.alloc(10) }],
	headers: [],
	priority: 'normal',
});

const item = (executionId: string, itemIndex: number, subject = 's'): ItemIdentity => ({
	executionId,
	nodeName: 'Send',
	runIndex: 0,
	itemIndex,
	fingerprint: messageFingerprint('robot@example.com', message(subject)),
});

describe('sent record', () => {
	it('is keyed by execution, item and message content', () => {
		recordOutcome(item('exec-a', 0), { outcome: 'sent', json: { messageId: 'm0' } });
		expect(recordedOutcome(item('exec-a', 0))).toEqual({ outcome: 'sent', json: { messageId: 'm0' } });
		expect(recordedOutcome(item('exec-b', 0))).toBeUndefined();
		expect(recordedOutcome(item('exec-a', 1))).toBeUndefined();
		expect(recordedOutcome(item('exec-a', 0, 'changed subject'))).toBeUndefined();
		// The same node run again later in the execution (a loop) is a new send.
		expect(recordedOutcome({ ...item('exec-a', 0), runIndex: 1 })).toBeUndefined();
	});

	it('forgets entries after an hour', () => {
		const now = Date.now();
		recordOutcome(item('exec-old', 0), { outcome: 'unknown', code: 'SMTP_DELIVERY_UNKNOWN' }, now);
		expect(recordedOutcome(item('exec-old', 0), now + 59 * 60_000)).toEqual({ outcome: 'unknown', code: 'SMTP_DELIVERY_UNKNOWN' });
		expect(recordedOutcome(item('exec-old', 0), now + 61 * 60_000)).toBeUndefined();
	});

	it('keeps at most 20,000 entries, dropping the oldest first', () => {
		const now = Date.now();
		for (let i = 0; i < 20_001; i++) recordOutcome(item('exec-many', i), { outcome: 'unknown', code: 'SMTP_DELIVERY_UNKNOWN' }, now);
		expect(recordedOutcome(item('exec-many', 0), now)).toBeUndefined();
		expect(recordedOutcome(item('exec-many', 1), now)).toEqual({ outcome: 'unknown', code: 'SMTP_DELIVERY_UNKNOWN' });
		expect(recordedOutcome(item('exec-many', 20_000), now)).toEqual({ outcome: 'unknown', code: 'SMTP_DELIVERY_UNKNOWN' });
	});
});
