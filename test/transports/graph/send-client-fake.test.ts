import { randomBytes } from 'node:crypto';

import { appOnlyTokenProvider } from '../../../auth/app-only-token-provider';
import { createGraphClient, type GraphClient } from '../../../transports/graph/graph-client';
import { SENDER, sha256, startGraphFixture, TENANT, type GraphFixture } from './graph-fixture';

// The client's paging, streaming and $batch against the fake Graph (the reader builds on them).
let fx: GraphFixture;
let client: GraphClient;

beforeAll(async () => {
	fx = await startGraphFixture();
	client = createGraphClient({
		graphHost: fx.cloud.graphHost,
		tokens: appOnlyTokenProvider({ tenantId: TENANT, clientId: fx.clientId, clientSecret: fx.secret, cloud: fx.cloud }),
		mailbox: SENDER,
		retry: { firstBackoffMs: 10, maxBackoffMs: 50, retryAfterScale: 0.05 },
	});
	for (let i = 0; i < 45; i++) fx.graph.addMessage(SENDER, { subject: `m${i}`, body: { contentType: 'text', content: `body ${i}` } });
});

afterAll(async () => {
	client?.close();
	await fx?.close();
});

beforeEach(() => {
	fx.graph.requests.length = 0;
	fx.graph.clearFaults();
});

const inboxIds = () => fx.graph.messages(SENDER, 'inbox').map((m: { immutableId: string }) => m.immutableId);

it('pages through @odata.nextLink, asking for immutable ids', async () => {
	const subjects: string[] = [];
	const last = await client.pages<{ subject: string }>(`${client.mailbox}/mailFolders/inbox/messages?$select=subject&$top=10&$orderby=receivedDateTime asc`, (m) => {
		subjects.push(m.subject);
	});
	expect(subjects).toEqual(Array.from({ length: 45 }, (_, i) => `m${i}`));
	expect(fx.graph.requests).toHaveLength(5);
	expect(fx.graph.requests.every((r: { headers: { prefer: string } }) => /IdType="ImmutableId"/.test(r.headers.prefer))).toBe(true);
	expect(last['@odata.nextLink']).toBeUndefined();
});

it('stops paging when onItem returns false', async () => {
	let seen = 0;
	await client.pages(`${client.mailbox}/mailFolders/inbox/messages?$top=10`, () => ++seen < 12);
	expect(seen).toBe(12);
	expect(fx.graph.requests).toHaveLength(2);
});

it('streams /$value bytes as a Readable', async () => {
	const data = randomBytes(3 * 1024 * 1024);
	const message = fx.graph.addMessage(SENDER, { subject: 'with file', attachments: [{ '@odata.type': '#microsoft.graph.fileAttachment', name: 'f.bin', contentType: 'application/octet-stream', contentBytes: data.toString('base64') }] });
	const [attachment] = await client.get<{ value: Array<{ id: string }> }>(`${client.mailbox}/messages/${encodeURIComponent(message.immutableId)}/attachments?$select=name`).then((r) => r.value);
	const stream = await client.stream(`${client.mailbox}/messages/${encodeURIComponent(message.immutableId)}/attachments/${encodeURIComponent(attachment.id)}/$value`);
	const chunks: Buffer[] = [];
	for await (const chunk of stream) chunks.push(chunk as Buffer);
	expect(sha256(Buffer.concat(chunks))).toBe(sha256(data));
	fx.graph.deleteMessage(SENDER, message.immutableId);
});

it('maps a missing message to GRAPH_NOT_FOUND', async () => {
	await expect(client.get(`${client.mailbox}/messages/AAMkAGnotthere`)).rejects.toMatchObject({ code: 'GRAPH_NOT_FOUND', responseCode: 404 });
});

it('$batch: 25 requests in two batches of at most 20, each result in request order, sub-requests throttled with 429 retried', async () => {
	const ids = inboxIds().slice(0, 25);
	fx.graph.failNext(3, { status: 429, retryAfter: 1, method: 'PATCH' });
	const results = await client.batch(ids.map((id: string) => ({ method: 'PATCH' as const, url: `/users/${encodeURIComponent(SENDER)}/messages/${encodeURIComponent(id)}`, body: { isRead: true } })));
	expect(results.map((r) => r.status)).toEqual(ids.map(() => 200));
	expect(results.map((r) => (r.body as { id: string }).id)).toEqual(ids);
	const outer = fx.graph.requests.filter((r: { path: string; batch: string | null }) => r.path === '/v1.0/$batch');
	// 20 + 5, then the 3 throttled parts again
	expect(outer).toHaveLength(3);
	const parts = fx.graph.requests.filter((r: { batch: string | null }) => r.batch);
	expect(parts.filter((r: { status: number }) => r.status === 429)).toHaveLength(3);
	expect(parts).toHaveLength(28);
	for (const id of ids) expect(fx.graph.message(SENDER, id).isRead).toBe(true);
});

it('$batch: a sub-request Graph refuses comes back with its error, the others succeed', async () => {
	const [id] = inboxIds();
	const results = await client.batch([
		{ method: 'PATCH', url: `/users/${encodeURIComponent(SENDER)}/messages/${encodeURIComponent(id)}`, body: { isRead: false } },
		{ method: 'PATCH', url: `/users/${encodeURIComponent(SENDER)}/messages/AAMkAGnotthere`, body: { isRead: false } },
	]);
	expect(results[0]).toMatchObject({ status: 200 });
	expect(results[0].error).toBeUndefined();
	expect(results[1]).toMatchObject({ status: 404, error: expect.objectContaining({ code: 'GRAPH_NOT_FOUND' }) });
});

it('a /$value stream holds its mailbox slot until it is read or destroyed', async () => {
	const added = fx.graph.addMessage(SENDER, { subject: 'slot', body: { contentType: 'text', content: 'x'.repeat(10_000) } });
	const path = `${client.mailbox}/messages/${encodeURIComponent(added.immutableId)}/$value`;
	const streams = await Promise.all([1, 2, 3, 4].map(() => client.stream(path)));
	let fifthDone = false;
	const fifth = client.get(`${client.mailbox}/mailFolders/inbox?$select=id`).then(() => (fifthDone = true));
	await new Promise((resolve) => setTimeout(resolve, 300));
	expect(fifthDone).toBe(false);
	streams[0].destroy();
	await fifth;
	for (const stream of streams.slice(1)) {
		const chunks: Buffer[] = [];
		for await (const chunk of stream) chunks.push(chunk as Buffer);
		expect(Buffer.concat(chunks).toString('utf8')).toContain('Subject: slot');
	}
	// all slots are free again
	await expect(Promise.all([1, 2, 3, 4, 5].map(() => client.get(`${client.mailbox}/mailFolders/inbox?$select=id`)))).resolves.toHaveLength(5);
});
