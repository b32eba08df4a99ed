'use strict';
// Self-check for the fake Microsoft Graph: plain HTTPS requests with real tokens from the
// fake identity platform, asserting each documented behaviour the package relies on.
// Run: node test/peers/fake-graph.check.js  (prints "N passed, M failed" last).
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const { createTestPki } = require('./certs');
const { createChecks } = require('./check-runner');
const { startFakeIdentity } = require('./fake-identity');
const { startFakeGraph, UPLOAD_CHUNK_UNIT } = require('./fake-graph');

const TENANT = '7a1c2b7e-3d4a-4c5b-9e8f-0a1b2c3d4e5f';
const APP = 'c0c0c0c0-1111-2222-3333-444444444444';
const NO_ROLES_APP = 'd0d0d0d0-1111-2222-3333-444444444444';
const SECRET = 'graph~secret';
const SENDER = 'sender@contoso.example';
const RCPT = 'rcpt@contoso.example';
const OTHER = 'other@contoso.example';
const USER = 'alice@contoso.example';
const IMMUTABLE = { prefer: 'IdType="ImmutableId"' };
const MB = 1024 * 1024;

const { check, counts } = createChecks({ stackLines: 6 });
const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

function request(url, { method = 'GET', token, headers = {}, body, ca } = {}) {
	return new Promise((resolve, reject) => {
		const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : typeof body === 'string' ? Buffer.from(body) : Buffer.from(JSON.stringify(body));
		const allHeaders = { ...headers };
		if (token) allHeaders.authorization = `Bearer ${token}`;
		if (payload) {
			allHeaders['content-length'] = payload.length;
			if (!Object.keys(allHeaders).some((k) => k.toLowerCase() === 'content-type')) allHeaders['content-type'] = 'application/json';
		}
		const req = https.request(url, { method, headers: allHeaders, ca, agent: false }, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => {
				const buffer = Buffer.concat(chunks);
				let json = null;
				if (/json/.test(res.headers['content-type'] ?? '') && buffer.length) json = JSON.parse(buffer.toString('utf8'));
				resolve({ status: res.statusCode, headers: res.headers, json, buffer });
			});
			res.on('error', reject);
		});
		req.on('error', reject);
		req.end(payload);
	});
}

/** Runs fn, which must reject; returns the error. */
async function rejects(fn) {
	try {
		await fn();
	} catch (error) {
		return error;
	}
	throw new Error('expected a failure, got an answer');
}

async function main() {
	const pki = createTestPki();
	const identity = await startFakeIdentity({ pki });
	identity.addTenant({ id: TENANT, domains: ['contoso.example'] });
	identity.addApp({ tenant: TENANT, clientId: APP, secrets: [SECRET], appRoles: ['Mail.Send', 'Mail.ReadWrite', 'SMTP.SendAsApp'] });
	identity.addApp({ tenant: TENANT, clientId: NO_ROLES_APP, secrets: [SECRET], appRoles: [] });
	identity.addUser({ tenant: TENANT, username: USER, password: 'pw' });
	const graph = await startFakeGraph({ identity, pki });
	for (const address of [SENDER, RCPT, USER]) {
		graph.addMailbox({ address });
		identity.grantMailbox({ tenant: TENANT, clientId: APP, mailbox: address });
	}
	graph.addMailbox({ address: OTHER }); // the app has no RBAC scope here
	graph.addMailbox({ address: 'onprem@contoso.example', restEnabled: false });
	identity.grantMailbox({ tenant: TENANT, clientId: APP, mailbox: 'onprem@contoso.example' });

	const ca = pki.ca;
	const call = (path, opts = {}) => request(`${graph.url}/v1.0${path}`, { ca, ...opts });
	const tokenResponse = await request(identity.tokenEndpoint(TENANT), {
		method: 'POST',
		ca,
		headers: { 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({ grant_type: 'client_credentials', client_id: APP, client_secret: SECRET, scope: 'https://graph.microsoft.com/.default' }).toString(),
	});
	let token = tokenResponse.json.access_token;
	const app = (opts = {}) => ({ token, ...opts });
	const mbx = (address) => `/users/${encodeURIComponent(address)}`;
	const delegated = (scp) => identity.mintAccessToken({ tenant: TENANT, clientId: APP, username: USER, audience: 'https://graph.microsoft.com', scp });

	// ---- auth ----

	await check('an Exchange-audience token is refused with 401 InvalidAuthenticationToken', async () => {
		const exchange = identity.mintAccessToken({ tenant: TENANT, clientId: APP, audience: 'https://outlook.office365.com', roles: ['SMTP.SendAsApp'] });
		const res = await call(`${mbx(SENDER)}/mailFolders/inbox`, { token: exchange });
		assert.equal(res.status, 401);
		assert.equal(res.json.error.code, 'InvalidAuthenticationToken');
		assert.ok(res.json.error.innerError['request-id']);
		const none = await call(`${mbx(SENDER)}/mailFolders/inbox`);
		assert.equal(none.status, 401);
	});
	await check('an expired Graph token is refused with 401', async () => {
		const expired = identity.mintAccessToken({ tenant: TENANT, clientId: APP, audience: 'https://graph.microsoft.com', roles: ['Mail.ReadWrite'], lifetime: -10 });
		const res = await call(`${mbx(SENDER)}/mailFolders/inbox`, { token: expired });
		assert.equal(res.status, 401);
		assert.match(res.json.error.message, /expired/);
	});
	await check('a token without the Mail role gets 403 ErrorAccessDenied', async () => {
		const bare = identity.mintAccessToken({ tenant: TENANT, clientId: NO_ROLES_APP, audience: 'https://graph.microsoft.com', roles: [] });
		const res = await call(`${mbx(SENDER)}/messages`, { token: bare });
		assert.equal(res.status, 403);
		assert.equal(res.json.error.code, 'ErrorAccessDenied');
		const readOnly = identity.mintAccessToken({ tenant: TENANT, clientId: APP, audience: 'https://graph.microsoft.com', roles: ['Mail.Read'] });
		assert.equal((await call(`${mbx(SENDER)}/messages`, { token: readOnly })).status, 200);
		assert.equal((await call(`${mbx(SENDER)}/sendMail`, { token: readOnly, method: 'POST', body: { message: { toRecipients: [{ emailAddress: { address: RCPT } }] } } })).status, 403);
	});
	await check('an app outside its RBAC scope gets 403 "Access to OData is disabled"', async () => {
		const res = await call(`${mbx(OTHER)}/messages`, app());
		assert.equal(res.status, 403);
		assert.equal(res.json.error.code, 'ErrorAccessDenied');
		assert.match(res.json.error.message, /Access to OData is disabled/);
	});
	await check('unknown mailbox 404 ErrorInvalidUser; on-premises mailbox 404 MailboxNotEnabledForRESTAPI', async () => {
		const res = await call(`${mbx('nobody@contoso.example')}/messages`, app());
		assert.equal(res.status, 404);
		assert.equal(res.json.error.code, 'ErrorInvalidUser');
		const onprem = await call(`${mbx('onprem@contoso.example')}/messages`, app());
		assert.equal(onprem.status, 404);
		assert.equal(onprem.json.error.code, 'MailboxNotEnabledForRESTAPI');
	});
	await check('/me takes the mailbox from a delegated token; app-only /me is a 400; another mailbox needs .Shared', async () => {
		const user = delegated(['Mail.ReadWrite', 'Mail.Send', 'User.Read']);
		const me = await call('/me', { token: user });
		assert.equal(me.status, 200);
		assert.equal(me.json.mail, USER);
		const noUserRead = await call('/me', { token: delegated(['Mail.ReadWrite']) });
		assert.equal(noUserRead.status, 403, 'the profile is a directory read: User.Read');
		assert.equal((await call(mbx(SENDER), app())).status, 403, 'app-only needs User.Read.All for /users/{id}');
		assert.equal((await call('/me/mailFolders/inbox/messages', { token: user })).status, 200);
		assert.equal((await call('/me/messages', app())).status, 400);
		const shared = await call(`${mbx(SENDER)}/messages`, { token: user });
		assert.equal(shared.status, 403);
		identity.grantMailbox({ tenant: TENANT, username: USER, mailbox: SENDER });
		assert.equal((await call(`${mbx(SENDER)}/messages`, { token: delegated(['Mail.ReadWrite.Shared']) })).status, 200);
	});
	await check('mailbox by object id works like by address', async () => {
		const res = await call(`/users/${graph.mailbox(SENDER).id}/mailFolders/inbox`, app());
		assert.equal(res.status, 200);
		assert.equal(res.json.displayName, 'Inbox');
	});

	await check('a revoked token gets 401; a renewed token works; an injected 401 is InvalidAuthenticationToken', async () => {
		const old = identity.mintAccessToken({ tenant: TENANT, clientId: APP, audience: 'https://graph.microsoft.com', roles: ['Mail.ReadWrite'] });
		graph.revokeIssuedTokens();
		assert.equal((await call(`${mbx(SENDER)}/mailFolders/inbox`, { token: old })).status, 401);
		const fresh = identity.mintAccessToken({ tenant: TENANT, clientId: APP, audience: 'https://graph.microsoft.com', roles: ['Mail.ReadWrite', 'Mail.Send'] });
		assert.equal((await call(`${mbx(SENDER)}/mailFolders/inbox`, { token: fresh })).status, 200);
		graph.failNext(1, { status: 401 });
		const injected = await call(`${mbx(SENDER)}/mailFolders/inbox`, { token: fresh });
		assert.equal(injected.json.error.code, 'InvalidAuthenticationToken');
		token = fresh;
	});

	// ---- sendMail ----

	await check('sendMail JSON answers 202 and delivers to the recipient inbox and Sent Items', async () => {
		const before = graph.deliveries.length;
		const res = await call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', body: { message: { subject: 'Hello', body: { contentType: 'HTML', content: '<p>Hi</p>' }, toRecipients: [{ emailAddress: { address: RCPT, name: 'R' } }], importance: 'high', internetMessageHeaders: [{ name: 'X-Trace', value: '42' }], attachments: [{ '@odata.type': '#microsoft.graph.fileAttachment', name: 'a.txt', contentType: 'text/plain', contentBytes: Buffer.from('abc').toString('base64') }] } } }));
		assert.equal(res.status, 202);
		assert.equal(res.buffer.length, 0);
		assert.equal(graph.deliveries.length, before + 1);
		const d = graph.deliveries.at(-1);
		assert.deepEqual([d.subject, d.to, d.importance, d.attachments[0].sha256], ['Hello', [RCPT], 'high', sha256(Buffer.from('abc'))]);
		const inbox = graph.messages(RCPT, 'inbox').at(-1);
		assert.equal(inbox.subject, 'Hello');
		assert.equal(inbox.internetMessageId, d.internetMessageId);
		assert.equal(graph.messages(SENDER, 'sentitems').at(-1).internetMessageId, d.internetMessageId);
	});
	await check('sendMail with saveToSentItems false keeps no copy; no recipients is a 400; non-x- headers refused', async () => {
		const sent = graph.messages(SENDER, 'sentitems').length;
		const res = await call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', body: { message: { subject: 'nosave', toRecipients: [{ emailAddress: { address: RCPT } }] }, saveToSentItems: false } }));
		assert.equal(res.status, 202);
		assert.equal(graph.messages(SENDER, 'sentitems').length, sent);
		const empty = await call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', body: { message: { subject: 'x' } } }));
		assert.equal(empty.status, 400);
		assert.equal(empty.json.error.code, 'ErrorInvalidRecipients');
		const header = await call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', body: { message: { toRecipients: [{ emailAddress: { address: RCPT } }], internetMessageHeaders: [{ name: 'Trace', value: '1' }] } } }));
		assert.equal(header.status, 400);
	});
	await check('setDeliveryDelay: the send is accepted at once, the recipient Inbox gets it after the delay', async () => {
		graph.setDeliveryDelay(150);
		try {
			const inbox = graph.messages(RCPT, 'inbox').length;
			const res = await call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', body: { message: { subject: 'late', toRecipients: [{ emailAddress: { address: RCPT } }] } } }));
			assert.equal(res.status, 202);
			assert.equal(graph.messages(RCPT, 'inbox').length, inbox);
			await new Promise((resolve) => setTimeout(resolve, 250));
			assert.equal(graph.messages(RCPT, 'inbox').at(-1).subject, 'late');
		} finally {
			graph.setDeliveryDelay(0);
		}
	});
	await check('sendMail takes a base64 MIME message as text/plain', async () => {
		const MailComposer = require('nodemailer/lib/mail-composer');
		const attachment = crypto.randomBytes(5000);
		const mime = await new MailComposer({ from: SENDER, to: RCPT, subject: 'MIME one', text: 'plain body', headers: { 'X-Mime': 'yes' }, attachments: [{ filename: 'r.bin', content: attachment }] }).compile().build();
		const res = await call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', headers: { 'content-type': 'text/plain' }, body: mime.toString('base64') }));
		assert.equal(res.status, 202);
		const d = graph.deliveries.at(-1);
		assert.equal(d.via, 'sendMail-mime');
		assert.equal(d.subject, 'MIME one');
		assert.equal(d.attachments[0].sha256, sha256(attachment));
		assert.deepEqual(d.internetMessageHeaders, [{ name: 'X-Mime', value: 'yes' }]);
		const bad = await call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', headers: { 'content-type': 'text/plain' }, body: '%%%not base64' }));
		assert.equal(bad.status, 400);
	});
	await check('with enforceSendAs, a From of another address needs Send As (403 ErrorSendAsDenied) or Send on Behalf (sender = the mailbox)', async () => {
		const strict = await startFakeGraph({ identity, pki, enforceSendAs: true });
		try {
			strict.addMailbox({ address: SENDER });
			strict.addMailbox({ address: RCPT });
			const asBoss = { message: { subject: 'as boss', from: { emailAddress: { address: 'boss@contoso.example' } }, toRecipients: [{ emailAddress: { address: RCPT } }] } };
			const post = (body) => request(`${strict.url}/v1.0${mbx(SENDER)}/sendMail`, { ca, token, method: 'POST', body });
			const denied = await post(asBoss);
			assert.equal(denied.status, 403);
			assert.equal(denied.json.error.code, 'ErrorSendAsDenied');
			assert.equal(strict.deliveries.length, 0);
			strict.grantSendAs(SENDER, 'boss@contoso.example', { onBehalf: true });
			assert.equal((await post(asBoss)).status, 202);
			assert.deepEqual([strict.deliveries[0].from, strict.deliveries[0].sender], ['boss@contoso.example', SENDER]);
			strict.grantSendAs(SENDER, 'boss@contoso.example');
			assert.equal((await post(asBoss)).status, 202);
			assert.deepEqual([strict.deliveries[1].from, strict.deliveries[1].sender], ['boss@contoso.example', 'boss@contoso.example']);
		} finally {
			await strict.close();
		}
	});
	await check('a request body over 4 MB is refused with 413', async () => {
		const before = graph.deliveries.length;
		const big = crypto.randomBytes(3.2 * MB).toString('base64');
		const res = await call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', body: { message: { toRecipients: [{ emailAddress: { address: RCPT } }], attachments: [{ '@odata.type': '#microsoft.graph.fileAttachment', name: 'big', contentBytes: big }] } } }));
		assert.equal(res.status, 413);
		assert.equal(graph.deliveries.length, before);
	});

	// ---- drafts, attachments, upload sessions ----

	const draftBody = { subject: 'Draft one', body: { contentType: 'Text', content: 'draft text' }, toRecipients: [{ emailAddress: { address: RCPT } }] };
	await check('draft: POST messages 201, PATCH, small attachment, send 202, second send 404 and one delivery', async () => {
		const created = await call(`${mbx(SENDER)}/messages`, app({ method: 'POST', body: draftBody, headers: IMMUTABLE }));
		assert.equal(created.status, 201);
		assert.equal(created.json.isDraft, true);
		const id = created.json.id;
		assert.equal(graph.message(SENDER, id).folderId, graph.folder(SENDER, 'drafts').id);
		const patched = await call(`${mbx(SENDER)}/messages/${encodeURIComponent(id)}`, app({ method: 'PATCH', body: { subject: 'Draft one (edited)' } }));
		assert.equal(patched.status, 200);
		assert.equal(patched.json.subject, 'Draft one (edited)');
		const small = crypto.randomBytes(1000);
		const att = await call(`${mbx(SENDER)}/messages/${encodeURIComponent(id)}/attachments`, app({ method: 'POST', body: { '@odata.type': '#microsoft.graph.fileAttachment', name: 's.bin', contentBytes: small.toString('base64') } }));
		assert.equal(att.status, 201);
		assert.equal(att.json.size, 1000);
		const before = graph.deliveries.length;
		const sent = await call(`${mbx(SENDER)}/messages/${encodeURIComponent(id)}/send`, app({ method: 'POST' }));
		assert.equal(sent.status, 202);
		const again = await call(`${mbx(SENDER)}/messages/${encodeURIComponent(id)}/send`, app({ method: 'POST' }));
		assert.equal(again.status, 404);
		assert.equal(again.json.error.code, 'ErrorItemNotFound');
		assert.equal(graph.deliveries.length, before + 1);
		assert.equal(graph.deliveries.at(-1).subject, 'Draft one (edited)');
		assert.equal(graph.deliveries.at(-1).attachments[0].sha256, sha256(small));
	});

	async function newDraft(address = SENDER) {
		const res = await call(`${mbx(address)}/messages`, app({ method: 'POST', body: draftBody, headers: IMMUTABLE }));
		return res.json.id;
	}
	const session = (id, size, name = 'big.bin') => call(`${mbx(SENDER)}/messages/${encodeURIComponent(id)}/attachments/createUploadSession`, app({ method: 'POST', body: { AttachmentItem: { attachmentType: 'file', name, size, contentType: 'application/octet-stream' } } }));
	const put = (uploadUrl, bytes, start, total, headers = {}) => request(uploadUrl, { ca, method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream', 'content-range': `bytes ${start}-${start + bytes.length - 1}/${total}`, ...headers } });

	await check('createUploadSession: under 3 MB refused, over MaxSendSize refused, inline attachment of 3 MB refused', async () => {
		const id = await newDraft();
		const small = await session(id, 3 * MB - 1);
		assert.equal(small.status, 400);
		assert.equal(small.json.error.code, 'ErrorAttachmentSizeShouldNotBeLessThanMinimumSize');
		const huge = await session(id, 36 * MB);
		assert.equal(huge.status, 400);
		assert.equal(huge.json.error.code, 'ErrorMessageSizeExceeded');
		graph.mailbox(SENDER).maxSendSize = 150 * MB;
		assert.equal((await session(id, 36 * MB)).status, 201);
		graph.mailbox(SENDER).maxSendSize = 35 * MB;
		const inline = await call(`${mbx(SENDER)}/messages/${encodeURIComponent(id)}/attachments`, app({ method: 'POST', body: { '@odata.type': '#microsoft.graph.fileAttachment', name: 'three.bin', contentBytes: crypto.randomBytes(3 * MB).toString('base64') } }));
		assert.equal(inline.status, 413);
	});

	await check('upload session: no Authorization, 320 KiB multiples, next range in order, 200 nextExpectedRanges then 201; bytes intact after send', async () => {
		const id = await newDraft();
		const size = 5 * MB + 12345;
		const data = crypto.randomBytes(size);
		const created = await session(id, size);
		assert.equal(created.status, 201);
		const { uploadUrl, nextExpectedRanges } = created.json;
		assert.deepEqual(nextExpectedRanges, ['0-']);
		assert.ok(!uploadUrl.includes('/v1.0/'), 'the upload URL is not a Graph URL');
		assert.notEqual(new URL(uploadUrl).host, new URL(graph.url).host, 'another host, so SDK middleware adds no token');
		const chunk = 8 * UPLOAD_CHUNK_UNIT; // 2.5 MiB
		const withAuth = await put(uploadUrl, data.subarray(0, chunk), 0, size, { authorization: `Bearer ${token}` });
		assert.equal(withAuth.status, 401);
		const odd = await put(uploadUrl, data.subarray(0, chunk + 1), 0, size);
		assert.equal(odd.status, 400);
		const tooBig = await put(uploadUrl, data.subarray(0, 13 * UPLOAD_CHUNK_UNIT), 0, size);
		assert.equal(tooBig.status, 413, 'one PUT carries up to 4 MB');
		const skip = await put(uploadUrl, data.subarray(chunk, 2 * chunk), chunk, size);
		assert.equal(skip.status, 416);
		const first = await put(uploadUrl, data.subarray(0, chunk), 0, size);
		assert.equal(first.status, 200);
		assert.deepEqual(first.json.nextExpectedRanges, [String(chunk)]);
		const status = await request(uploadUrl, { ca });
		assert.deepEqual(status.json.nextExpectedRanges, [String(chunk)]);
		const repeat = await put(uploadUrl, data.subarray(0, chunk), 0, size);
		assert.equal(repeat.status, 416, 'an already received range is refused');
		assert.equal((await put(uploadUrl, data.subarray(chunk, 2 * chunk), chunk, size)).status, 200);
		const last = await put(uploadUrl, data.subarray(2 * chunk), 2 * chunk, size);
		assert.equal(last.status, 201);
		assert.equal(last.buffer.length, 0, 'Exchange answers the last chunk with no body');
		const stored = graph.message(SENDER, id).attachments[0];
		assert.equal(stored.sha256, sha256(data));
		const list = await call(`${mbx(SENDER)}/messages/${encodeURIComponent(id)}/attachments`, app());
		assert.equal(list.json.value[0].size, size);
		const sent = await call(`${mbx(SENDER)}/messages/${encodeURIComponent(id)}/send`, app({ method: 'POST' }));
		assert.equal(sent.status, 202);
		assert.equal(graph.deliveries.at(-1).attachments[0].sha256, sha256(data));
		const received = graph.messages(RCPT, 'inbox').at(-1);
		const value = await call(`${mbx(RCPT)}/messages/${encodeURIComponent(received.restId)}/attachments/${encodeURIComponent(received.attachments[0].id)}/$value`, app());
		assert.equal(value.status, 200);
		assert.equal(sha256(value.buffer), sha256(data));
	});

	await check('uploadFinalBody: the last range may be answered 201 with the attachment JSON and a Location; uploadChunkMultiple 1 takes the docs example ranges', async () => {
		const withBody = await startFakeGraph({ identity, pki, uploadFinalBody: true });
		try {
			withBody.addMailbox({ address: SENDER });
			const base = `${withBody.url}/v1.0${mbx(SENDER)}`;
			const draft = await request(`${base}/messages`, { ca, token, method: 'POST', body: draftBody });
			const size = 3 * MB + 1;
			const created = await request(`${base}/messages/${encodeURIComponent(draft.json.id)}/attachments/createUploadSession`, { ca, token, method: 'POST', body: { AttachmentItem: { attachmentType: 'file', name: 'x.bin', size } } });
			const res = await put(created.json.uploadUrl, crypto.randomBytes(size), 0, size);
			assert.equal(res.status, 201);
			// uploadChunkMultiple 1: ranges of any size, like the 2 MiB of Outlook's own example
			const loose = await startFakeGraph({ identity, pki, uploadChunkMultiple: 1 });
			try {
				loose.addMailbox({ address: SENDER });
				const lbase = `${loose.url}/v1.0${mbx(SENDER)}`;
				const ldraft = await request(`${lbase}/messages`, { ca, token, method: 'POST', body: draftBody });
				const lsize = 3483322; // the documentation's example file
				const lsession = await request(`${lbase}/messages/${encodeURIComponent(ldraft.json.id)}/attachments/createUploadSession`, { ca, token, method: 'POST', body: { AttachmentItem: { attachmentType: 'file', name: 'flower', size: lsize } } });
				const bytes = crypto.randomBytes(lsize);
				assert.equal((await put(lsession.json.uploadUrl, bytes.subarray(0, 2097152), 0, lsize)).status, 200);
				assert.equal((await put(lsession.json.uploadUrl, bytes.subarray(2097152), 2097152, lsize)).status, 201);
			} finally {
				await loose.close();
			}
			assert.equal(res.json.size, size);
			assert.match(res.headers.location, /Attachments\('/);
		} finally {
			await withBody.close();
		}
	});

	await check('upload session files stream to disk: a 149 MB attachment keeps server memory flat', async () => {
		graph.mailbox(SENDER).maxSendSize = 150 * MB;
		const id = await newDraft();
		const size = 149 * MB;
		const { uploadUrl } = (await session(id, size)).json;
		const chunk = 12 * UPLOAD_CHUNK_UNIT; // 3.75 MiB
		const hash = crypto.createHash('sha256');
		const block = crypto.randomBytes(chunk);
		const rssBefore = process.memoryUsage().rss;
		for (let start = 0; start < size; start += chunk) {
			const bytes = block.subarray(0, Math.min(chunk, size - start));
			hash.update(bytes);
			const res = await put(uploadUrl, bytes, start, size);
			assert.equal(res.status, start + bytes.length >= size ? 201 : 200);
		}
		const growth = process.memoryUsage().rss - rssBefore;
		assert.ok(growth < 60 * MB, `RSS grew ${Math.round(growth / MB)} MB`);
		assert.equal(graph.message(SENDER, id).attachments[0].sha256, hash.digest('hex'));
		graph.mailbox(SENDER).maxSendSize = 35 * MB;
		await call(`${mbx(SENDER)}/messages/${encodeURIComponent(id)}`, app({ method: 'DELETE' }));
	});

	await check('message /$value is the MIME message with its attachments', async () => {
		const { simpleParser } = require('mailparser');
		const bytes = crypto.randomBytes(2048);
		const m = graph.addMessage(RCPT, { subject: 'MIME out', from: { address: 'ext@example.org', name: 'Ext' }, to: [{ address: RCPT }], body: { contentType: 'html', content: '<p>Hello <b>there</b></p>' }, attachments: [{ name: 'x.bin', contentType: 'application/octet-stream', content: bytes }] });
		const res = await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.restId)}/$value`, app());
		assert.equal(res.status, 200);
		const parsed = await simpleParser(res.buffer);
		assert.equal(parsed.subject, 'MIME out');
		assert.equal(parsed.messageId, m.internetMessageId);
		assert.equal(parsed.from.value[0].address, 'ext@example.org');
		assert.equal(sha256(parsed.attachments[0].content), sha256(bytes));
	});

	// ---- lists ----

	const LIST_BOX = 'lists@contoso.example';
	graph.addMailbox({ address: LIST_BOX });
	identity.grantMailbox({ tenant: TENANT, clientId: APP, mailbox: LIST_BOX });
	const t0 = Date.parse('2026-11-01T00:00:00Z');
	for (let i = 0; i < 25; i++) {
		graph.addMessage(LIST_BOX, { subject: `m${i}`, from: { address: i % 5 === 0 ? 'boss@example.org' : `p${i}@example.org` }, to: [{ address: LIST_BOX }], isRead: i % 2 === 0, receivedDateTime: new Date(t0 + i * 60000).toISOString(), body: { contentType: 'html', content: `<p>body ${i}</p>` }, attachments: i % 3 === 0 ? [{ name: `f${i}.txt`, content: `file ${i}` }] : [] });
	}
	const all = async (first) => {
		const seen = [];
		let res = await call(first, app());
		for (;;) {
			assert.equal(res.status, 200, JSON.stringify(res.json));
			seen.push(...res.json.value);
			const next = res.json['@odata.nextLink'];
			if (!next) return { seen, last: res };
			res = await request(next, { ca, token });
		}
	};
	await check('messages list: default order receivedDateTime desc, $top pages through @odata.nextLink, $count', async () => {
		const { seen } = await all(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$top=7&$count=true`);
		assert.equal(seen.length, 25);
		assert.deepEqual(seen.map((m) => m.subject), Array.from({ length: 25 }, (_, i) => `m${24 - i}`));
		const first = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$top=7&$count=true`, app());
		assert.equal(first.json['@odata.count'], 25);
		assert.ok(first.json['@odata.nextLink'].startsWith(graph.url));
		const asc = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$top=3&$orderby=receivedDateTime%20asc`, app());
		assert.deepEqual(asc.json.value.map((m) => m.subject), ['m0', 'm1', 'm2']);
		const dflt = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/messages`, app());
		assert.equal(dflt.json.value.length, 10);
	});
	await check('$select returns only the named fields and id; internetMessageHeaders only when selected', async () => {
		const res = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$top=2&$select=subject,from`, app());
		for (const m of res.json.value) assert.deepEqual(Object.keys(m).filter((k) => !k.startsWith('@')).sort(), ['from', 'id', 'subject']);
		const full = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$top=1`, app());
		assert.ok(!('internetMessageHeaders' in full.json.value[0]));
		assert.ok('body' in full.json.value[0]);
		const withHeaders = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$top=1&$select=internetMessageHeaders`, app());
		assert.ok('internetMessageHeaders' in withHeaders.json.value[0]);
		assert.equal((await call(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$select=nonsense`, app())).status, 400);
	});
	await check('$filter subset: isRead, receivedDateTime ge/lt, from address, hasAttachments, combined with and', async () => {
		const q = (filter) => all(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$top=4&$filter=${encodeURIComponent(filter)}`).then((r) => r.seen.map((m) => m.subject).sort());
		const expect = (pred) => Array.from({ length: 25 }, (_, i) => i).filter(pred).map((i) => `m${i}`).sort();
		assert.deepEqual(await q('isRead eq false'), expect((i) => i % 2 === 1));
		assert.deepEqual(await q(`receivedDateTime ge ${new Date(t0 + 20 * 60000).toISOString()}`), expect((i) => i >= 20));
		assert.deepEqual(await q(`receivedDateTime ge ${new Date(t0 + 5 * 60000).toISOString()} and receivedDateTime lt ${new Date(t0 + 8 * 60000).toISOString()}`), expect((i) => i >= 5 && i < 8));
		assert.deepEqual(await q("from/emailAddress/address eq 'BOSS@example.org'"), expect((i) => i % 5 === 0));
		assert.deepEqual(await q('hasAttachments eq true and isRead eq false'), expect((i) => i % 3 === 0 && i % 2 === 1));
	});
	await check('unsupported $filter is 400 ErrorInvalidUrlQueryFilter; $orderby not first in $filter is 400 InefficientFilter', async () => {
		const bad = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$filter=${encodeURIComponent("contains(subject,'m1')")}`, app());
		assert.equal(bad.status, 400);
		assert.equal(bad.json.error.code, 'ErrorInvalidUrlQueryFilter');
		const inefficient = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$filter=${encodeURIComponent('isRead eq false')}&$orderby=receivedDateTime%20desc`, app());
		assert.equal(inefficient.status, 400);
		assert.equal(inefficient.json.error.code, 'InefficientFilter');
		const ok = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$filter=${encodeURIComponent('receivedDateTime ge 2000-01-01T00:00:00Z and isRead eq false')}&$orderby=receivedDateTime%20asc&$top=2`, app());
		assert.deepEqual(ok.json.value.map((m) => m.subject), ['m1', 'm3']);
	});
	await check('Prefer outlook.body-content-type="text" converts the HTML body and says so', async () => {
		const res = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/messages?$top=1&$select=body`, app({ headers: { prefer: 'outlook.body-content-type="text"' } }));
		assert.deepEqual(res.json.value[0].body, { contentType: 'text', content: 'body 24' });
		assert.match(res.headers['preference-applied'], /outlook\.body-content-type="text"/);
	});
	await check('mail folders: well-known folders, child folders, paging; custom folder creation', async () => {
		const { seen } = await all(`${mbx(LIST_BOX)}/mailFolders?$top=3`);
		assert.deepEqual(seen.map((f) => f.displayName).sort(), ['Archive', 'Deleted Items', 'Drafts', 'Inbox', 'Junk Email', 'Sent Items']);
		const created = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/childFolders`, app({ method: 'POST', body: { displayName: 'Invoices' } }));
		assert.equal(created.status, 201);
		const children = await call(`${mbx(LIST_BOX)}/mailFolders/inbox/childFolders`, app());
		assert.deepEqual(children.json.value.map((f) => [f.id, f.displayName]), [[created.json.id, 'Invoices']]);
		const inbox = await call(`${mbx(LIST_BOX)}/mailFolders/inbox`, app());
		assert.equal(inbox.json.totalItemCount, 25);
		assert.equal(inbox.json.childFolderCount, 1);
		assert.equal((await call(`${mbx(LIST_BOX)}/mailFolders/nosuch`, app())).status, 404);
	});
	await check('immutable ids survive a move; REST ids change; PATCH isRead/flag; DELETE goes to Deleted Items', async () => {
		const m = graph.addMessage(RCPT, { subject: 'mover', to: [{ address: RCPT }] });
		const archive = graph.folder(RCPT, 'archive').id;
		const moved = await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.immutableId)}/move`, app({ method: 'POST', body: { destinationId: 'archive' }, headers: IMMUTABLE }));
		assert.equal(moved.status, 201);
		assert.equal(moved.json.id, m.immutableId);
		assert.equal(moved.json.parentFolderId, archive);
		const oldRest = m.restId;
		const movedRest = await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.immutableId)}/move`, app({ method: 'POST', body: { destinationId: 'inbox' } }));
		assert.notEqual(movedRest.json.id, oldRest);
		assert.equal((await call(`${mbx(RCPT)}/messages/${encodeURIComponent(oldRest)}`, app())).status, 404);
		const patched = await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.immutableId)}`, app({ method: 'PATCH', body: { isRead: true, flag: { flagStatus: 'flagged' } } }));
		assert.equal(patched.status, 200);
		assert.deepEqual([graph.message(RCPT, m.immutableId).isRead, graph.message(RCPT, m.immutableId).flag.flagStatus], [true, 'flagged']);
		assert.equal((await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.immutableId)}`, app({ method: 'PATCH', body: { toRecipients: [] } }))).status, 400);
		assert.equal((await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.immutableId)}`, app({ method: 'DELETE' }))).status, 204);
		assert.equal(graph.message(RCPT, m.immutableId).folderId, graph.folder(RCPT, 'deleteditems').id);
	});
	await check('attachments: file attachment JSON with contentBytes, item attachment with $expand and .eml $value', async () => {
		const m = graph.addMessage(RCPT, { subject: 'with item', attachments: [{ name: 'note.txt', contentType: 'text/plain', content: 'note', isInline: true, contentId: 'cid1' }, { item: { subject: 'inner', body: { contentType: 'text', content: 'inner body' }, from: { address: 'in@example.org' } } }] });
		const list = await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.restId)}/attachments`, app());
		assert.deepEqual(list.json.value.map((a) => a['@odata.type']), ['#microsoft.graph.fileAttachment', '#microsoft.graph.itemAttachment']);
		assert.equal(Buffer.from(list.json.value[0].contentBytes, 'base64').toString(), 'note');
		assert.equal(list.json.value[0].isInline, true);
		assert.equal(list.json.value[0].contentId, 'cid1');
		const itemId = encodeURIComponent(list.json.value[1].id);
		const expanded = await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.restId)}/attachments/${itemId}?$expand=microsoft.graph.itemattachment/item`, app());
		assert.equal(expanded.json.item.subject, 'inner');
		const eml = await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.restId)}/attachments/${itemId}/$value`, app());
		assert.match(eml.buffer.toString(), /Subject: inner/);
		const selected = await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.restId)}/attachments?$select=name,size,microsoft.graph.fileAttachment/contentId`, app());
		assert.deepEqual(selected.json.value.map((a) => Object.keys(a).filter((k) => !k.startsWith('@')).sort()), [['contentId', 'id', 'name', 'size'], ['id', 'name', 'size']]);
		const uncast = await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.restId)}/attachments?$select=contentId`, app());
		assert.equal(uncast.status, 400, 'contentId is a fileAttachment property: it needs the type cast');
		const folderSelect = await call(`${mbx(RCPT)}/mailFolders/inbox?$select=displayName`, app());
		assert.deepEqual(Object.keys(folderSelect.json).filter((k) => !k.startsWith('@')).sort(), ['displayName', 'id']);
		const msg = await call(`${mbx(RCPT)}/messages/${encodeURIComponent(m.restId)}?$select=hasAttachments`, app());
		assert.equal(msg.json.hasAttachments, true);
	});

	// ---- delta ----

	const DELTA_BOX = 'delta@contoso.example';
	graph.addMailbox({ address: DELTA_BOX });
	identity.grantMailbox({ tenant: TENANT, clientId: APP, mailbox: DELTA_BOX });
	for (let i = 0; i < 5; i++) graph.addMessage(DELTA_BOX, { subject: `d${i}`, to: [{ address: DELTA_BOX }] });
	/** One delta round from `url`: every item and the final deltaLink. */
	const deltaRound = async (url, headers = {}) => {
		const items = [];
		let pages = 0;
		for (;;) {
			const res = await request(url, { ca, token, headers: { ...IMMUTABLE, ...headers } });
			assert.equal(res.status, 200, JSON.stringify(res.json));
			pages++;
			items.push(...res.json.value);
			assert.ok(!(res.json['@odata.nextLink'] && res.json['@odata.deltaLink']), 'never both links');
			if (res.json['@odata.deltaLink']) return { items, pages, deltaLink: res.json['@odata.deltaLink'], res };
			url = res.json['@odata.nextLink'];
		}
	};
	const deltaStart = `${graph.url}/v1.0${mbx(DELTA_BOX)}/mailFolders/inbox/messages/delta?$select=subject,isRead`;
	let deltaLink;
	await check('delta: first round pages (Prefer odata.maxpagesize) to an @odata.deltaLink with every message once; $select kept in the tokens', async () => {
		const round = await deltaRound(deltaStart, { prefer: `odata.maxpagesize=2, ${IMMUTABLE.prefer}` });
		assert.equal(round.pages, 3);
		assert.deepEqual(round.items.map((m) => m.subject), ['d0', 'd1', 'd2', 'd3', 'd4']);
		for (const m of round.items) assert.deepEqual(Object.keys(m).filter((k) => !k.startsWith('@')).sort(), ['id', 'isRead', 'subject']);
		assert.ok(!round.deltaLink.includes('$select'), 'options live in the token');
		const firstPage = await request(deltaStart, { ca, token, headers: { prefer: `odata.maxpagesize=2, ${IMMUTABLE.prefer}` } });
		const next = firstPage.json['@odata.nextLink'];
		const once = await request(next, { ca, token, headers: IMMUTABLE });
		const twice = await request(next, { ca, token, headers: IMMUTABLE });
		assert.deepEqual(twice.json.value, once.json.value, 'a nextLink asked again gives the same page');
		deltaLink = round.deltaLink;
		const empty = await deltaRound(deltaLink);
		assert.deepEqual(empty.items, []);
		deltaLink = empty.deltaLink;
	});
	await check('delta: the next round has new and changed messages, @removed for moved-away and deleted ones', async () => {
		const [m0, m1, m2] = graph.messages(DELTA_BOX, 'inbox');
		graph.addMessage(DELTA_BOX, { subject: 'd5', to: [{ address: DELTA_BOX }] });
		const marked = await call(`${mbx(DELTA_BOX)}/messages/${encodeURIComponent(m0.immutableId)}`, app({ method: 'PATCH', body: { isRead: true } }));
		assert.equal(marked.status, 200);
		await call(`${mbx(DELTA_BOX)}/messages/${encodeURIComponent(m1.immutableId)}/move`, app({ method: 'POST', body: { destinationId: 'archive' } }));
		graph.deleteMessage(DELTA_BOX, m2.immutableId);
		const round = await deltaRound(deltaLink);
		const byId = Object.fromEntries(round.items.map((m) => [m.id, m]));
		assert.equal(round.items.length, 4);
		assert.equal(byId[m0.immutableId].isRead, true);
		assert.deepEqual(byId[m1.immutableId]['@removed'], { reason: 'deleted' });
		assert.deepEqual(byId[m2.immutableId]['@removed'], { reason: 'deleted' });
		assert.equal(round.items.find((m) => m.subject === 'd5').isRead, false);
		deltaLink = round.deltaLink;
		// moved back: a change in this folder again, not a removal
		await call(`${mbx(DELTA_BOX)}/messages/${encodeURIComponent(m1.immutableId)}/move`, app({ method: 'POST', body: { destinationId: 'inbox' } }));
		const back = await deltaRound(deltaLink);
		assert.deepEqual(back.items.map((m) => [m.id, m.subject, '@removed' in m]), [[m1.immutableId, 'd1', false]]);
		deltaLink = back.deltaLink;
	});
	await check('delta: changeType=created and $filter receivedDateTime ge persist in the token; other filters 400', async () => {
		const start = `${graph.url}/v1.0${mbx(DELTA_BOX)}/mailFolders/inbox/messages/delta?changeType=created&$select=subject`;
		const first = await deltaRound(start);
		const m = graph.messages(DELTA_BOX, 'inbox')[0];
		graph.updateMessage(DELTA_BOX, m.immutableId, { isRead: false });
		graph.addMessage(DELTA_BOX, { subject: 'd6', to: [{ address: DELTA_BOX }] });
		const next = await deltaRound(first.deltaLink);
		assert.deepEqual(next.items.map((x) => x.subject), ['d6']);
		const future = await deltaRound(`${graph.url}/v1.0${mbx(DELTA_BOX)}/mailFolders/inbox/messages/delta?$filter=${encodeURIComponent('receivedDateTime ge 2999-01-01T00:00:00Z')}`);
		assert.deepEqual(future.items, []);
		const bad = await request(`${graph.url}/v1.0${mbx(DELTA_BOX)}/mailFolders/inbox/messages/delta?$filter=${encodeURIComponent('isRead eq false')}`, { ca, token });
		assert.equal(bad.status, 400);
	});
	await check('delta: an expired delta token answers 410 Gone with syncStateNotFound and a Location to restart', async () => {
		assert.ok(graph.expireDeltaTokens() > 0);
		const res = await request(deltaLink, { ca, token });
		assert.equal(res.status, 410);
		assert.equal(res.json.error.code, 'syncStateNotFound');
		assert.ok(!res.headers.location.includes('deltatoken'));
		const restart = await deltaRound(res.headers.location);
		assert.equal(restart.items.length, graph.messages(DELTA_BOX, 'inbox').length);
	});
	await check('delta: replayDelta repeats an already reported message once (documented replays)', async () => {
		const base = await deltaRound(deltaStart);
		graph.replayDelta(1);
		const again = await deltaRound(base.deltaLink);
		assert.equal(again.items.length, 1);
		assert.equal((await deltaRound(again.deltaLink)).items.length, 0);
	});

	// ---- $batch ----

	await check('$batch: up to 20 parts, each with its own status; 21 is a 400; dependsOn failure is 424', async () => {
		const [a, b] = graph.messages(LIST_BOX, 'inbox');
		const res = await call('/$batch', app({ method: 'POST', body: { requests: [
			{ id: '1', method: 'PATCH', url: `${mbx(LIST_BOX)}/messages/${encodeURIComponent(a.restId)}`, headers: { 'Content-Type': 'application/json' }, body: { isRead: true } },
			{ id: '2', method: 'GET', url: `${mbx(LIST_BOX)}/messages/nosuchid` },
			{ id: '3', method: 'POST', url: `${mbx(LIST_BOX)}/messages/${encodeURIComponent(b.restId)}/move`, headers: { 'Content-Type': 'application/json' }, body: { destinationId: 'archive' } },
			{ id: '4', method: 'GET', url: `${mbx(LIST_BOX)}/mailFolders/inbox`, dependsOn: ['2'] },
		] } }));
		assert.equal(res.status, 200);
		const byId = Object.fromEntries(res.json.responses.map((r) => [r.id, r]));
		assert.deepEqual([byId['1'].status, byId['2'].status, byId['3'].status, byId['4'].status], [200, 404, 201, 424]);
		assert.equal(byId['2'].body.error.code, 'ErrorItemNotFound');
		assert.equal(a.isRead, true);
		assert.equal(b.folderId, graph.folder(LIST_BOX, 'archive').id);
		const many = Array.from({ length: 21 }, (_, i) => ({ id: String(i), method: 'GET', url: `${mbx(LIST_BOX)}/mailFolders/inbox` }));
		assert.equal((await call('/$batch', app({ method: 'POST', body: { requests: many } }))).status, 400);
		const twenty = await call('/$batch', app({ method: 'POST', body: { requests: many.slice(0, 20) } }));
		assert.equal(twenty.json.responses.length, 20);
		assert.ok(twenty.json.responses.every((r) => r.status === 200));
		const unauth = await call('/$batch', { method: 'POST', body: { requests: many.slice(0, 1) } });
		assert.equal(unauth.json.responses[0].status, 401);
	});

	// ---- faults, throttling, concurrency ----

	const sendBody = (subject) => ({ message: { subject, toRecipients: [{ emailAddress: { address: RCPT } }] } });
	const countSubject = (subject) => graph.deliveries.filter((d) => d.subject === subject).length;
	await check('failNext: 429 and 503 with Retry-After on the matching path only, nothing processed', async () => {
		graph.failNext(1, { status: 429, retryAfter: 2, path: '/sendMail$' });
		graph.failNext(1, { status: 503, retryAfter: 1, method: 'POST', path: '/sendMail$' });
		const other = await call(`${mbx(SENDER)}/mailFolders/inbox`, app());
		assert.equal(other.status, 200, 'a GET elsewhere is not hit');
		const first = await call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', body: sendBody('fault-429') }));
		assert.equal(first.status, 429);
		assert.equal(first.headers['retry-after'], '2');
		assert.equal(first.json.error.code, 'TooManyRequests');
		const second = await call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', body: sendBody('fault-429') }));
		assert.equal(second.status, 503);
		assert.equal(second.headers['retry-after'], '1');
		assert.equal(countSubject('fault-429'), 0);
		const third = await call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', body: sendBody('fault-429') }));
		assert.equal(third.status, 202);
		assert.equal(countSubject('fault-429'), 1);
	});
	await check('resetNext before processing: socket dies, nothing delivered; after processing: socket dies, delivered (ambiguous)', async () => {
		graph.resetNext(1, { when: 'before', path: '/sendMail$' });
		const before = await rejects(() => call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', body: sendBody('reset-before') })));
		assert.match(before.code ?? before.message, /ECONNRESET|socket hang up/);
		assert.equal(countSubject('reset-before'), 0);
		graph.resetNext(1, { when: 'after', path: '/sendMail$' });
		const after = await rejects(() => call(`${mbx(SENDER)}/sendMail`, app({ method: 'POST', body: sendBody('reset-after') })));
		assert.match(after.code ?? after.message, /ECONNRESET|socket hang up/);
		assert.equal(countSubject('reset-after'), 1);
		const log = graph.requests.filter((r) => r.fault && r.fault.startsWith('reset'));
		assert.deepEqual(log.map((r) => r.fault), ['reset-before', 'reset-after']);
	});
	await check('a failed part inside $batch answers its own 429 with Retry-After while the others succeed', async () => {
		graph.failNext(1, { status: 429, retryAfter: 3, path: '/mailFolders/drafts$' });
		const res = await call('/$batch', app({ method: 'POST', body: { requests: [
			{ id: 'a', method: 'GET', url: `${mbx(LIST_BOX)}/mailFolders/inbox` },
			{ id: 'b', method: 'GET', url: `${mbx(LIST_BOX)}/mailFolders/drafts` },
		] } }));
		const byId = Object.fromEntries(res.json.responses.map((r) => [r.id, r]));
		assert.deepEqual([byId.a.status, byId.b.status, byId.b.headers['retry-after']], [200, 429, '3']);
	});
	await check('throttleRatio answers about that share with 429 (seeded); clearFaults stops it', async () => {
		graph.throttleRatio(0.25, { path: '/mailFolders/inbox$' });
		let throttled = 0;
		for (let i = 0; i < 80; i++) if ((await call(`${mbx(SENDER)}/mailFolders/inbox`, app())).status === 429) throttled++;
		graph.clearFaults();
		assert.ok(throttled >= 8 && throttled <= 35, `${throttled} of 80 throttled`);
		assert.equal((await call(`${mbx(SENDER)}/mailFolders/inbox`, app())).status, 200);
	});
	await check('service time and per-mailbox concurrency: max in flight tracked; above the limit 429 ApplicationThrottled (MailboxConcurrency)', async () => {
		graph.setServiceTime(1000); // long enough that six TLS handshakes on a busy machine still overlap
		const startMax = graph.concurrency(LIST_BOX).max;
		await Promise.all(Array.from({ length: 3 }, () => call(`${mbx(LIST_BOX)}/mailFolders/inbox`, app())));
		assert.equal(graph.concurrency(LIST_BOX).max, Math.max(startMax, 3));
		graph.setMailboxConcurrencyLimit(4);
		const started = Date.now();
		const results = await Promise.all(Array.from({ length: 6 }, () => call(`${mbx(LIST_BOX)}/mailFolders/inbox`, app())));
		assert.ok(Date.now() - started >= 950, 'service time applied');
		const limited = results.filter((r) => r.status === 429);
		assert.equal(limited.length, 2);
		assert.equal(limited[0].json.error.code, 'ApplicationThrottled');
		assert.match(limited[0].json.error.message, /MailboxConcurrency/);
		assert.ok(limited[0].headers['retry-after']);
		graph.setMailboxConcurrencyLimit(null);
		graph.setServiceTime(0);
	});
	await check('upload PUTs honour faults too; after a reset-after the session status tells where to resume', async () => {
		const id = await newDraft();
		const size = 3 * MB + 10;
		const data = crypto.randomBytes(size);
		const { uploadUrl } = (await session(id, size)).json;
		const chunk = 4 * UPLOAD_CHUNK_UNIT;
		graph.resetNext(1, { when: 'after', path: '/AttachmentSessions' });
		await rejects(() => put(uploadUrl, data.subarray(0, chunk), 0, size));
		const status = await request(uploadUrl, { ca });
		assert.deepEqual(status.json.nextExpectedRanges, [String(chunk)]);
		graph.failNext(1, { status: 503, retryAfter: 1, path: '/AttachmentSessions' });
		assert.equal((await put(uploadUrl, data.subarray(chunk, 2 * chunk), chunk, size)).status, 503);
		assert.equal((await put(uploadUrl, data.subarray(chunk, 2 * chunk), chunk, size)).status, 200);
		assert.equal((await put(uploadUrl, data.subarray(2 * chunk), 2 * chunk, size)).status, 201);
		assert.equal(graph.message(SENDER, id).attachments[0].sha256, sha256(data));
	});
	await check('request log: method, path, query, body size, Authorization presence; never a token', async () => {
		const text = JSON.stringify(graph.requests);
		assert.ok(!text.includes(token), 'no token in the log');
		assert.ok(!text.includes(token.split('.')[2]), 'no signature either');
		const send = graph.requests.find((r) => r.path.endsWith('/sendMail') && r.status === 202);
		assert.equal(send.method, 'POST');
		assert.equal(send.headers.authorization, 'Bearer <redacted>');
		assert.ok(send.bodySize > 0);
		assert.equal(send.mailbox, SENDER);
		const upload = graph.requests.find((r) => r.path.includes('AttachmentSessions') && r.method === 'PUT' && r.status === 200);
		assert.equal(upload.headers.authorization, null);
		for (const s of graph.uploadSessions.values()) assert.ok(!text.includes(s.authtoken), 'upload pre-auth tokens stay out of the log');
	});

	await check('--serve runs identity and Graph in a child process; JSON line with URLs and credentials; control routes', async () => {
		const child = spawn(process.execPath, [require.resolve('./fake-graph'), '--serve', JSON.stringify({ mailboxes: [{ address: 'a@contoso.example' }, { address: 'b@contoso.example' }], serviceTimeMs: 5 })], { env: { ...process.env, MAM_TEST_PKI_DIR: pki.dir }, stdio: ['ignore', 'pipe', 'inherit'] });
		try {
			const info = await new Promise((resolve, reject) => {
				let out = '';
				child.stdout.on('data', (d) => {
					out += d;
					if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]));
				});
				child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
			});
			const tok = await request(`${info.authorityHost}/${info.tenantId}/oauth2/v2.0/token`, { ca, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', client_id: info.clientId, client_secret: info.clientSecret, scope: 'https://graph.microsoft.com/.default' }).toString() });
			assert.equal(tok.status, 200);
			const sent = await request(`${info.url}/v1.0/users/a%40contoso.example/sendMail`, { ca, method: 'POST', token: tok.json.access_token, body: { message: { subject: 'from child', toRecipients: [{ emailAddress: { address: 'b@contoso.example' } }] } } });
			assert.equal(sent.status, 202);
			const refused = await request(`${info.url}/_fake/deliveries`, { ca });
			assert.equal(refused.status, 403);
			const deliveries = await request(`${info.url}/_fake/deliveries`, { ca, headers: { 'x-fake-control': info.controlKey } });
			assert.deepEqual(deliveries.json.map((d) => [d.subject, d.to]), [['from child', ['b@contoso.example']]]);
			const fault = await request(`${info.url}/_fake/faults`, { ca, method: 'POST', headers: { 'x-fake-control': info.controlKey }, body: { failNext: { count: 1, status: 429, retryAfter: 1 } } });
			assert.equal(fault.status, 204);
			const throttled = await request(`${info.url}/v1.0/users/a%40contoso.example/mailFolders/inbox`, { ca, token: tok.json.access_token });
			assert.equal(throttled.status, 429);
		} finally {
			child.kill('SIGTERM');
		}
	});

	await graph.close();
	await identity.close();
	fs.rmSync(pki.dir, { recursive: true, force: true });
}

main()
	.catch((error) => {
		counts.failed++;
		console.log(`not ok - setup\n    ${String(error.stack ?? error).split('\n').slice(0, 6).join('\n    ')}`);
	})
	.finally(() => {
		console.log(`${counts.passed} passed, ${counts.failed} failed`);
		process.exitCode = counts.failed ? 1 : 0;
	});
