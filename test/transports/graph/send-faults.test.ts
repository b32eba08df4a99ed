import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

import { MB, message, requestLines, SENDER, sha256, startGraphFixture, type GraphFixture } from './graph-fixture';

let fx: GraphFixture;

beforeAll(async () => {
	fx = await startGraphFixture();
});

afterAll(() => fx?.close());

beforeEach(() => {
	fx.graph.requests.length = 0;
	fx.graph.deliveries.length = 0;
	fx.graph.clearFaults();
	fx.graph.setServiceTime(0);
	fx.graph.setMailboxConcurrencyLimit(undefined);
});

const ENC_SENDER = `/v1.0/users/${encodeURIComponent(SENDER)}`;
const SEND_MAIL = `POST ${ENC_SENDER}/sendMail`;
const DRAFT_SEND = `POST ${ENC_SENDER}/messages/{id}/send`;
const delivered = (subject: string) => fx.graph.deliveries.filter((d: { subject: string }) => d.subject === subject).length;
const lines = (line: string) => requestLines(fx.graph).filter((l) => l === line).length;

/** A message that goes through a draft (its attachment needs an upload session), with the attachment's bytes. */
function largeMessage(subject: string, size = 4 * MB) {
	const data = randomBytes(size);
	return {
		data,
		message: message({ subject, attachments: [{ filename: 'big.bin', contentType: 'application/octet-stream', size, open: async () => Readable.from([data]) }] }),
	};
}

describe('Graph sender: retries that cannot duplicate', () => {
	it('waits Retry-After on 429 and sends once', async () => {
		fx.graph.failNext(1, { status: 429, retryAfter: 2, path: '/sendMail$' });
		const started = Date.now();
		const result = await fx.sender().send(message({ subject: '429' }));
		// Retry-After 2 s at the fixture's 1/20 scale: 100 ms
		expect(Date.now() - started).toBeGreaterThanOrEqual(100);
		expect(lines(SEND_MAIL)).toBe(2);
		expect(fx.graph.requests.map((r: { status: number }) => r.status)).toEqual([429, 202]);
		expect(delivered('429')).toBe(1);
		expect(result.attempts).toBe(2);
	});

	it('backs off on 503 without Retry-After and sends once', async () => {
		fx.graph.failNext(2, { status: 503, path: '/sendMail$' });
		await fx.sender().send(message({ subject: '503' }));
		expect(fx.graph.requests.map((r: { status: number }) => r.status)).toEqual([503, 503, 202]);
		expect(delivered('503')).toBe(1);
	});

	it('gives up after the configured attempts and says it is throttled', async () => {
		fx.graph.failNext(10, { status: 429, retryAfter: 1, path: '/sendMail$' });
		await expect(fx.sender({ retry: { attempts: 3, retryAfterScale: 0.01 } }).send(message({ subject: 'always 429' }))).rejects.toMatchObject({ code: 'GRAPH_THROTTLED', responseCode: 429 });
		expect(lines(SEND_MAIL)).toBe(3);
		expect(delivered('always 429')).toBe(0);
	});

	it('does not repeat sendMail when the connection dropped after the whole request was written (Graph may have it)', async () => {
		fx.graph.resetNext(1, { when: 'before', path: '/sendMail$' });
		await expect(fx.sender().send(message({ subject: 'reset after writing' }))).rejects.toMatchObject({ code: 'GRAPH_DELIVERY_UNKNOWN' });
		expect(lines(SEND_MAIL)).toBe(1);
		expect(delivered('reset after writing')).toBe(0);
	});

	it('never repeats sendMail after an ambiguous reset: GRAPH_DELIVERY_UNKNOWN, delivered once', async () => {
		fx.graph.resetNext(1, { when: 'after', path: '/sendMail$' });
		await expect(fx.sender().send(message({ subject: 'reset after' }))).rejects.toMatchObject({ code: 'GRAPH_DELIVERY_UNKNOWN', hint: expect.stringMatching(/Sent Items/) });
		expect(lines(SEND_MAIL)).toBe(1);
		expect(delivered('reset after')).toBe(1);
	});

	it('never repeats sendMail after a 500 (Graph may have sent it)', async () => {
		fx.graph.failNext(1, { status: 500, path: '/sendMail$' });
		await expect(fx.sender().send(message({ subject: '500' }))).rejects.toMatchObject({ code: 'GRAPH_DELIVERY_UNKNOWN' });
		expect(lines(SEND_MAIL)).toBe(1);
		expect(delivered('500')).toBe(0);
	});

	it("draft path: an ambiguous reset after send repeats only the draft's send; the sent draft is gone (404), delivered once", async () => {
		const { message: msg } = largeMessage('draft reset after');
		fx.graph.resetNext(1, { when: 'after', path: '/send$' });
		const result = await fx.sender().send(msg);
		expect(lines(DRAFT_SEND)).toBe(2);
		expect(lines(`POST ${ENC_SENDER}/messages`)).toBe(1);
		expect(fx.graph.requests.filter((r: { path: string }) => r.path.endsWith('/send')).map((r: { status: number | null }) => r.status)).toEqual([202, 404]);
		expect(delivered('draft reset after')).toBe(1);
		expect(result.response).toMatch(/first attempt was lost/);
	});

	it('draft path: a 504 on send is repeated on the same draft and delivers once', async () => {
		const { message: msg } = largeMessage('draft 504');
		fx.graph.failNext(1, { status: 504, path: '/send$' });
		await fx.sender().send(msg);
		expect(lines(DRAFT_SEND)).toBe(2);
		expect(delivered('draft 504')).toBe(1);
	});

	it('upload: a slice whose answer was lost is not sent twice; the session status says where to go on, the file arrives intact', async () => {
		const { message: msg, data } = largeMessage('slice reset after', 9 * MB);
		fx.graph.resetNext(1, { when: 'after', method: 'PUT', path: '/api/v2.0/' });
		await fx.sender().send(msg);
		const [delivery] = fx.graph.deliveries;
		expect(delivery.attachments).toEqual([expect.objectContaining({ size: data.length, sha256: sha256(data) })]);
		expect(delivered('slice reset after')).toBe(1);
	});

	it('upload: the last slice whose answer was lost; the draft is checked before it is sent', async () => {
		const size = 3.5 * MB; // one slice, the last
		const { message: msg, data } = largeMessage('last slice reset after', size);
		fx.graph.resetNext(1, { when: 'after', method: 'PUT', path: '/api/v2.0/' });
		await fx.sender().send(msg);
		expect(requestLines(fx.graph)).toContain(`GET ${ENC_SENDER}/messages/{id}/attachments`);
		expect(fx.graph.deliveries).toHaveLength(1);
		expect(fx.graph.deliveries[0].attachments).toEqual([expect.objectContaining({ size, sha256: sha256(data) })]);
	});

	it('upload: 429 with Retry-After on a slice is waited for', async () => {
		const { message: msg, data } = largeMessage('slice 429', 5 * MB);
		fx.graph.failNext(1, { status: 429, retryAfter: 1, method: 'PUT', path: '/api/v2.0/' });
		await fx.sender().send(msg);
		expect(fx.graph.requests.filter((r: { method: string }) => r.method === 'PUT').map((r: { status: number }) => r.status)).toEqual([429, 200, 201]);
		expect(fx.graph.deliveries[0].attachments).toEqual([expect.objectContaining({ sha256: sha256(data) })]);
	});
});

describe('Graph sender: tokens and concurrency', () => {
	it('renews the token once on 401 and repeats the request once', async () => {
		const app = fx.addApp();
		const sender = fx.sender({}, app);
		await sender.send(message({ subject: 'before revoke' }));
		expect(fx.graphTokenRequests(app.clientId)).toBe(1);
		fx.graph.revokeIssuedTokens();
		fx.graph.requests.length = 0;
		await sender.send(message({ subject: 'after revoke' }));
		expect(fx.graph.requests.map((r: { status: number }) => r.status)).toEqual([401, 202]);
		expect(fx.graphTokenRequests(app.clientId)).toBe(2);
		expect(delivered('after revoke')).toBe(1);
	});

	it('keeps at most 4 requests in flight per mailbox across senders, and asks for one token per credential and audience', async () => {
		const app = fx.addApp();
		fx.graph.setServiceTime(40);
		// Graph answers 429 above 4 concurrent requests per mailbox: none may come
		fx.graph.setMailboxConcurrencyLimit(4);
		const senders = [fx.sender({}, app), fx.sender({}, app), fx.sender({}, app)];
		const subjects = Array.from({ length: 24 }, (_, i) => `burst ${i}`);
		await Promise.all(subjects.map((subject, i) => senders[i % senders.length].send(message({ subject }))));
		const { max, throttled } = fx.graph.concurrency(SENDER);
		expect({ max, throttled }).toEqual({ max: 4, throttled: 0 });
		expect(subjects.map(delivered)).toEqual(subjects.map(() => 1));
		expect(fx.graphTokenRequests(app.clientId)).toBe(1);
	});
});
