import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

import { UPLOAD_CHUNK } from '../../../transports/graph/attachment-upload';
import { MB, message, RCPT, randomStream, requestLines, SENDER, sha256, startGraphFixture, type GraphFixture } from './graph-fixture';

let fx: GraphFixture;

beforeAll(async () => {
	fx = await startGraphFixture();
});

afterAll(() => fx?.close());

beforeEach(() => {
	fx.graph.requests.length = 0;
	fx.graph.deliveries.length = 0;
	fx.graph.clearFaults();
});

const ENC_SENDER = `/v1.0/users/${encodeURIComponent(SENDER)}`;
const UPLOAD = "PUT /api/v2.0/Users('…')/Messages('…')/AttachmentSessions('…')";

interface LoggedRequest {
	method: string;
	path: string;
	status: number;
	bodySize: number;
	headers: { authorization: string | null; contentRange: string | null; contentLength: string | null };
}

/** The upload PUTs in order: no Authorization, contiguous ranges, 320 KiB multiples under 4 MB, the declared total. */
function expectUploadChunks(requests: LoggedRequest[], size: number) {
	const puts = requests.filter((r) => r.method === 'PUT');
	expect(puts.length).toBe(Math.ceil(size / UPLOAD_CHUNK));
	let next = 0;
	for (const [i, put] of puts.entries()) {
		expect(put.headers.authorization).toBeNull();
		const [, start, end, total] = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(put.headers.contentRange ?? '')!.map(Number);
		expect({ start, total }).toEqual({ start: next, total: size });
		const length = end - start + 1;
		expect(Number(put.headers.contentLength)).toBe(length);
		if (i < puts.length - 1) {
			expect(length % (320 * 1024)).toBe(0);
			expect(put.status).toBe(200);
		} else {
			expect(put.status).toBe(201);
		}
		expect(length).toBeLessThan(4 * MB);
		next = end + 1;
	}
	expect(next).toBe(size);
}

describe('Graph sender: large attachments through upload sessions', () => {
	it('sends a 20 MB attachment beside a small one and an inline image: draft, inline POST, upload session streamed in slices, send', async () => {
		const big = randomBytes(20 * MB);
		const small = randomBytes(100_000);
		const logo = randomBytes(5_000);
		let opened = 0;
		const result = await fx.sender().send(
			message({
				subject: '20 MB',
				html: '<img src="cid:logo">',
				attachments: [
					{ filename: 'logo.png', contentType: 'image/png', contentId: 'logo', open: async () => logo },
					{
						filename: 'big.bin',
						contentType: 'application/octet-stream',
						size: big.length,
						// 64 KiB pieces, as a file stream delivers them
						open: async () => {
							opened++;
							return Readable.from((function* () {
								for (let at = 0; at < big.length; at += 64 * 1024) yield big.subarray(at, at + 64 * 1024);
							})());
						},
					},
					{ filename: 'notes.txt', contentType: 'text/plain', open: async () => small },
				],
			}),
		);
		expect(opened).toBe(1);
		const lines = requestLines(fx.graph);
		expect(lines.filter((l) => l !== UPLOAD)).toEqual([
			`POST ${ENC_SENDER}/messages`,
			`POST ${ENC_SENDER}/messages/{id}/attachments`,
			`POST ${ENC_SENDER}/messages/{id}/attachments/createUploadSession`,
			`POST ${ENC_SENDER}/messages/{id}/attachments`,
			`POST ${ENC_SENDER}/messages/{id}/send`,
		]);
		// every Graph call carries the token; no upload PUT does
		for (const r of fx.graph.requests as LoggedRequest[]) expect(r.headers.authorization).toBe(r.method === 'PUT' ? null : 'Bearer <redacted>');
		expectUploadChunks(fx.graph.requests, big.length);
		expect(result.attempts).toBe(1);

		expect(fx.graph.deliveries).toHaveLength(1);
		const [delivery] = fx.graph.deliveries;
		expect(delivery).toMatchObject({ via: 'draft', subject: '20 MB', to: [RCPT] });
		expect(delivery.attachments.map((a: { name: string; size: number; sha256: string; isInline: boolean }) => [a.name, a.size, a.sha256, a.isInline])).toEqual([
			['logo.png', logo.length, sha256(logo), true],
			['big.bin', big.length, sha256(big), false],
			['notes.txt', small.length, sha256(small), false],
		]);
		const [received] = fx.graph.messages(RCPT, 'inbox').filter((m: { subject: string }) => m.subject === '20 MB');
		expect(sha256(fx.graph.attachmentBytes(received.attachments[1]))).toBe(sha256(big));
		expect(fx.graph.messages(SENDER, 'drafts')).toHaveLength(0);
	}, 120_000);

	it('sends a 149 MB attachment produced as a stream (never held whole); it arrives intact', async () => {
		const size = 149 * MB;
		const source = randomStream(size);
		await fx.sender().send(message({ subject: '149 MB', attachments: [{ filename: 'huge.bin', contentType: 'application/octet-stream', size, open: async () => source.stream }] }));
		expectUploadChunks(fx.graph.requests, size);
		expect(fx.graph.deliveries).toHaveLength(1);
		expect(fx.graph.deliveries[0].attachments).toEqual([expect.objectContaining({ name: 'huge.bin', size, sha256: source.digest() })]);
	}, 300_000);

	it('spools a stream of unknown size to disk to learn its size, and sends it intact', async () => {
		const data = randomBytes(5 * MB + 123);
		await fx.sender().send(message({ subject: 'unknown size', attachments: [{ filename: 'piped.bin', contentType: 'application/octet-stream', open: async () => Readable.from([data.subarray(0, MB), data.subarray(MB)]) }] }));
		expectUploadChunks(fx.graph.requests, data.length);
		expect(fx.graph.deliveries[0].attachments).toEqual([expect.objectContaining({ name: 'piped.bin', size: data.length, sha256: sha256(data) })]);
	});

	it('refuses a stream shorter than its declared size and sends nothing (the draft is removed)', async () => {
		const data = randomBytes(4 * MB);
		await expect(
			fx.sender().send(message({ subject: 'short', attachments: [{ filename: 'short.bin', contentType: 'application/octet-stream', size: 5 * MB, open: async () => Readable.from([data]) }] })),
		).rejects.toMatchObject({ code: 'GRAPH_ATTACHMENT_SIZE_MISMATCH' });
		expect(fx.graph.deliveries).toHaveLength(0);
		expect(fx.graph.messages(SENDER, 'drafts')).toHaveLength(0);
	});

	it('refuses a stream longer than its declared size before its last slice goes out', async () => {
		const data = randomBytes(4 * MB);
		await expect(
			fx.sender().send(message({ subject: 'long', attachments: [{ filename: 'long.bin', contentType: 'application/octet-stream', size: 4 * MB - 1, open: async () => Readable.from([data]) }] })),
		).rejects.toMatchObject({ code: 'GRAPH_ATTACHMENT_SIZE_MISMATCH' });
		expect(fx.graph.deliveries).toHaveLength(0);
		expect(fx.graph.requests.filter((r: LoggedRequest) => r.method === 'PUT' && r.status === 201)).toHaveLength(0);
	});
});
