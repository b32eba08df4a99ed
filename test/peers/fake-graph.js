'use strict';
// A fake Microsoft Graph v1.0 (mail only) over HTTPS for tests and benchmarks. It serves
// exactly the documented behaviour the package uses, in Graph's shapes:
// - auth: Bearer tokens from test/peers/fake-identity.js, decided by identity.introspect
//   (audience https://graph.microsoft.com; app roles / delegated scopes Mail.Read,
//   Mail.ReadWrite, Mail.Send, `.Shared` variants for another user's mailbox with delegated
//   tokens; app-only mailbox access needs identity.grantMailbox, playing RBAC for Applications);
// - /users/{id|upn}/... and /me/...; mail folders (well-known names + custom), messages,
//   drafts, sendMail (JSON and base64 MIME), send, move, PATCH, DELETE, attachments
//   (inline < 3 MB, upload sessions 3 MB..MaxSendSize with 320 KiB chunks, stored in temp
//   files on another host name, as outlook.office.com is; ranges of up to 4 MB; Outlook's
//   nextExpectedRanges ["<start>"]; 201 without body), /$value (MIME via nodemailer's
//   MailComposer, raw attachment bytes), lists with $top/$skip/$select/$filter/$orderby/$count
//   and @odata.nextLink, delta with @odata.nextLink/@odata.deltaLink (options kept in the
//   tokens), 410 syncStateNotFound on an expired token, documented replays, $batch (max 20);
// - 413 for request bodies over 4 MB (upload-session PUTs excepted); optional service time,
//   per-mailbox in-flight tracking and 429 ApplicationThrottled above a concurrency limit;
// - Send As / Send on Behalf (grantSendAs; enforced with options.enforceSendAs);
// - fault hooks (failNext, resetNext before/after processing, throttleRatio, revokeIssuedTokens,
//   expireDeltaTokens, replayDelta, onRequest) scoped by method/path regex.
// Where Microsoft's pages differ (OneDrive asks 320 KiB multiples, Outlook's own example
// uploads 2 MiB ranges), the fake takes the stricter rule, so a client that passes here
// passes there.
// Every message has an immutable id (stable across moves) and a REST id (changes on move);
// answers carry the immutable one when the request says Prefer: IdType="ImmutableId".
// `deliveries` records every message that left a mailbox, so tests count duplicates.
//
// Child-process mode (memory benchmarks keep the server out of the measured process):
//   node test/peers/fake-graph.js --serve ['<json config>']
// starts its OWN fake identity (same process) with one tenant, one app (secret) and the
// mailboxes of the config, and prints one JSON line:
//   {url, authorityHost, tenantId, clientId, clientSecret, mailboxes, controlKey}
// The PKI comes from MAM_TEST_PKI_DIR (scripts/jest.js sets it) or a fresh one (caPath is
// printed then). Control over HTTPS: GET {url}/_fake/state | /_fake/deliveries,
// POST /_fake/faults {failNext|resetNext|throttleRatio|clear, ...}, all with header
// `x-fake-control: <controlKey>`. Config: {tenantId, clientId, clientSecret, appRoles,
// mailboxes: [{address, maxSendSize}], and startFakeGraph's serviceTimeMs, mailboxConcurrencyLimit,
// seed, uploadFinalBody, uploadChunkMultiple, enforceSendAs}.
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const https = require('node:https');

const GRAPH_AUDIENCE = 'https://graph.microsoft.com';
const MB = 1024 * 1024;
const REQUEST_BODY_LIMIT = 4 * MB; // Graph: write requests max 4 MB
const INLINE_ATTACHMENT_LIMIT = 3 * MB; // POST /attachments takes files under 3 MB
const UPLOAD_SESSION_MIN = 3 * MB; // createUploadSession refuses smaller files
const UPLOAD_CHUNK_UNIT = 320 * 1024; // chunks are multiples of 320 KiB except the last
const DEFAULT_MAX_SEND_SIZE = 35 * MB; // Exchange Online MaxSendSize default (up to 150 MB)
const MAX_BATCH = 20;
const DEFAULT_PAGE = 10;
const MAX_PAGE = 1000;
const DEFAULT_DELTA_PAGE = 10;
const WELL_KNOWN = [
	['inbox', 'Inbox'],
	['drafts', 'Drafts'],
	['sentitems', 'Sent Items'],
	['deleteditems', 'Deleted Items'],
	['archive', 'Archive'],
	['junkemail', 'Junk Email'],
	['outbox', 'Outbox'],
];
// message fields Graph returns by default (internetMessageHeaders only when $select-ed)
const DEFAULT_FIELDS = ['createdDateTime', 'lastModifiedDateTime', 'changeKey', 'categories', 'receivedDateTime', 'sentDateTime', 'hasAttachments', 'internetMessageId', 'subject', 'bodyPreview', 'importance', 'parentFolderId', 'conversationId', 'conversationIndex', 'isDeliveryReceiptRequested', 'isReadReceiptRequested', 'isRead', 'isDraft', 'webLink', 'inferenceClassification', 'body', 'sender', 'from', 'toRecipients', 'ccRecipients', 'bccRecipients', 'replyTo', 'flag'];
// $select names per resource; derived-type properties need their OData type cast
// (microsoft.graph.fileAttachment/contentId), as on the attachment base type in Graph
const SELECTABLE = {
	message: new Set([...DEFAULT_FIELDS, 'internetMessageHeaders', 'uniqueBody', 'attachments']),
	attachment: new Set(['name', 'contentType', 'size', 'isInline', 'lastModifiedDateTime', 'microsoft.graph.fileAttachment/contentId', 'microsoft.graph.fileAttachment/contentBytes', 'microsoft.graph.fileAttachment/contentLocation']),
	mailFolder: new Set(['displayName', 'parentFolderId', 'childFolderCount', 'unreadItemCount', 'totalItemCount', 'sizeInBytes', 'isHidden']),
	user: new Set(['displayName', 'mail', 'userPrincipalName']),
};
const JSON_TYPE = 'application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8';

const lower = (value) => String(value ?? '').toLowerCase();
const b64url = (buf) => Buffer.from(buf).toString('base64url');
// Exchange ids are base64 with '-' and '_' and often a trailing '=': callers must encode them
const exchangeId = (prefix) => `${prefix}${crypto.randomBytes(30).toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')}AAA=`;
const iso = (ms = Date.now()) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

class GraphError extends Error {
	constructor(status, code, message, headers = {}) {
		super(message);
		this.status = status;
		this.code = code;
		this.headers = headers;
	}
}
const badRequest = (code, message) => new GraphError(400, code, message);
const itemNotFound = () => new GraphError(404, 'ErrorItemNotFound', 'The specified object was not found in the store.');

/** Seeded PRNG so throttled answers are reproducible across runs. */
function mulberry32(seed) {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

function recipients(list) {
	return (list ?? []).map((r) => ({ emailAddress: { name: r.emailAddress?.name ?? r.name ?? r.emailAddress?.address ?? r.address, address: r.emailAddress?.address ?? r.address } }));
}
function recipient(value) {
	if (!value) return undefined;
	if (typeof value === 'string') return { emailAddress: { name: value, address: value } };
	return recipients([value])[0];
}
const htmlToText = (html) => String(html).replace(/<br\s*\/?>/gi, '\n').replace(/<\/p>/gi, '\n').replace(/<[^>]*>/g, '').replace(/&nbsp;/g, ' ').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&').trim();
const textToHtml = (text) => `<html><head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head><body><div>${String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r?\n/g, '<br>')}</div></body></html>`;

/**
 * @param {object} options
 * @param {object} options.identity a started fake identity (test/peers/fake-identity.js)
 * @param {{cert: string, key: string}} options.pki server certificate (see certs.js)
 * @param {number} [options.port=0]
 * @param {number} [options.serviceTimeMs=0] added before each Graph request is answered
 * @param {number} [options.mailboxConcurrencyLimit] answer 429 ApplicationThrottled above this many in flight per mailbox
 * @param {number} [options.seed=1] seed of throttleRatio's random choices
 * @param {boolean} [options.uploadFinalBody=false] answer the last upload chunk 201 with the attachment JSON (default: no body, as Exchange may)
 * @param {number} [options.uploadChunkMultiple=327680] ranges but the last must be multiples of this
 *   (320 KiB is OneDrive's documented rule; Outlook's own example uploads 2 MiB ranges, and n8n's
 *   Outlook node 4,000,000-byte ones: 1 accepts any size, as Exchange appears to)
 * @param {number} [options.deliveryDelayMs=0] sent mail reaches local Inboxes this long after the send (setDeliveryDelay)
 * @param {boolean} [options.enforceSendAs=false] refuse a From of another address without grantSendAs
 *   (403 ErrorSendAsDenied, as Exchange does); off by default so tests that do not care need no grants
 */
async function startFakeGraph(options) {
	const { identity } = options;
	if (!identity) throw new Error('fake-graph: options.identity (a fake identity) is required');
	const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-fake-graph-'));
	const settings = {
		serviceTimeMs: options.serviceTimeMs ?? 0,
		mailboxConcurrencyLimit: options.mailboxConcurrencyLimit ?? Infinity,
		uploadFinalBody: options.uploadFinalBody ?? false,
		deltaReplays: 0,
		enforceSendAs: options.enforceSendAs ?? false,
		deliveryDelayMs: options.deliveryDelayMs ?? 0,
		uploadChunkMultiple: options.uploadChunkMultiple ?? UPLOAD_CHUNK_UNIT,
	};
	const random = mulberry32(options.seed ?? 1);
	const mailboxes = new Map(); // lower(address or id) -> mailbox
	const deliveries = [];
	const requests = [];
	const uploadSessions = new Map();
	const deltaTokens = new Map(); // token -> {mailbox, folderId, seq, expired}
	const deltaPages = new Map(); // skiptoken -> {session: {mailbox, folderId, entries, seq, ...}, offset}
	const faults = [];
	const concurrency = new Map(); // mailbox address -> {inFlight, max}
	const timers = new Set();
	let baseUrl = '';
	let uploadBase = ''; // another host name, like outlook.office.com beside graph.microsoft.com
	const revokedTokens = new Set();
	const listeners = new Set();
	let requestCounter = 0;

	// ---- store ----

	function addMailbox({ address, displayName, id = crypto.randomUUID(), restEnabled = true, maxSendSize = DEFAULT_MAX_SEND_SIZE } = {}) {
		if (maxSendSize > 150 * MB) throw new Error('fake-graph: MaxSendSize is at most 150 MB');
		const mailbox = { address, displayName: displayName ?? address.split('@')[0], id, restEnabled, maxSendSize, sendAs: new Set(), sendOnBehalf: new Set(), folders: new Map(), messages: new Map(), restIndex: new Map(), removals: [], seq: 0 };
		const root = { id: exchangeId('AAMkADroot'), displayName: 'Top of Information Store', wellKnownName: 'msgfolderroot', parentFolderId: null };
		mailbox.folders.set(root.id, root);
		for (const [wellKnownName, name] of WELL_KNOWN) {
			const folder = { id: exchangeId('AAMkADf'), displayName: name, wellKnownName, parentFolderId: root.id };
			mailbox.folders.set(folder.id, folder);
		}
		mailboxes.set(lower(address), mailbox);
		mailboxes.set(lower(id), mailbox);
		return mailbox;
	}
	function requireMailbox(ref) {
		const mailbox = mailboxes.get(lower(ref));
		if (!mailbox) throw new Error(`fake-graph: unknown mailbox ${ref}`);
		return mailbox;
	}
	function findFolder(mailbox, ref) {
		const byId = mailbox.folders.get(ref);
		if (byId) return byId;
		for (const folder of mailbox.folders.values()) if (folder.wellKnownName && folder.wellKnownName === lower(ref)) return folder;
		return null;
	}
	function folderOf(mailbox, ref) {
		const folder = findFolder(mailbox, ref);
		if (!folder) throw new GraphError(404, 'ErrorItemNotFound', 'The specified object was not found in the store.');
		return folder;
	}
	function addFolder(mailboxRef, { displayName, parent = 'msgfolderroot' }) {
		const mailbox = typeof mailboxRef === 'string' ? requireMailbox(mailboxRef) : mailboxRef;
		const parentFolder = folderOf(mailbox, parent);
		for (const f of mailbox.folders.values()) {
			if (f.parentFolderId === parentFolder.id && lower(f.displayName) === lower(displayName)) {
				throw new GraphError(409, 'ErrorFolderExists', 'A folder with the specified name already exists.');
			}
		}
		const folder = { id: exchangeId('AAMkADc'), displayName, wellKnownName: null, parentFolderId: parentFolder.id };
		mailbox.folders.set(folder.id, folder);
		return folder;
	}
	function findMessage(mailbox, id) {
		return mailbox.messages.get(id) ?? mailbox.messages.get(mailbox.restIndex.get(id)) ?? null;
	}
	function messageOf(mailbox, id) {
		const message = findMessage(mailbox, id);
		if (!message) throw itemNotFound();
		return message;
	}
	function touch(mailbox, message) {
		message.seq = ++mailbox.seq;
		message.lastModifiedDateTime = iso();
		message.changeKey = b64url(crypto.randomBytes(12));
	}
	function newRestId(mailbox, message) {
		if (message.restId) mailbox.restIndex.delete(message.restId);
		message.restId = exchangeId('AAMkADm');
		mailbox.restIndex.set(message.restId, message.immutableId);
	}

	function attachmentRecord(input) {
		const isItem = input.item || lower(input['@odata.type']).endsWith('itemattachment');
		if (isItem) {
			const item = input.item ?? {};
			return { id: exchangeId('AAMkADa'), kind: 'item', name: input.name ?? item.subject ?? 'item', contentType: 'message/rfc822', isInline: false, contentId: null, size: 0, item: messageFields(item), lastModifiedDateTime: iso() };
		}
		const data = input.content !== undefined ? Buffer.from(input.content) : Buffer.from(String(input.contentBytes ?? ''), 'base64');
		return {
			id: exchangeId('AAMkADa'),
			kind: 'file',
			name: input.name ?? 'attachment',
			contentType: input.contentType ?? 'application/octet-stream',
			isInline: Boolean(input.isInline),
			contentId: input.contentId ?? null,
			size: data.length,
			data,
			sha256: sha256(data),
			lastModifiedDateTime: iso(),
		};
	}

	/** Message fields from Graph JSON (or the helper's shorthand). */
	function messageFields(input = {}) {
		const body = input.body ?? { contentType: 'text', content: '' };
		return {
			subject: input.subject ?? '',
			body: { contentType: lower(body.contentType) === 'html' ? 'html' : 'text', content: body.content ?? '' },
			from: recipient(input.from),
			sender: recipient(input.sender ?? input.from),
			toRecipients: recipients(input.toRecipients ?? input.to),
			ccRecipients: recipients(input.ccRecipients ?? input.cc),
			bccRecipients: recipients(input.bccRecipients ?? input.bcc),
			replyTo: recipients(input.replyTo),
			importance: input.importance ?? 'normal',
			isRead: input.isRead ?? false,
			flag: { flagStatus: input.flag?.flagStatus ?? 'notFlagged' },
			categories: input.categories ?? [],
			internetMessageHeaders: (input.internetMessageHeaders ?? []).map((h) => ({ name: h.name, value: h.value })),
			internetMessageId: input.internetMessageId ?? `<${crypto.randomUUID()}@fake-graph.example>`,
			conversationId: input.conversationId ?? null,
			isDeliveryReceiptRequested: Boolean(input.isDeliveryReceiptRequested),
			isReadReceiptRequested: Boolean(input.isReadReceiptRequested),
			receivedDateTime: input.receivedDateTime ? iso(Date.parse(input.receivedDateTime)) : undefined,
			sentDateTime: input.sentDateTime ? iso(Date.parse(input.sentDateTime)) : undefined,
			attachments: (input.attachments ?? []).map(attachmentRecord),
		};
	}

	function storeMessage(mailbox, folder, fields, { isDraft = false } = {}) {
		const now = iso();
		const message = {
			...fields,
			immutableId: exchangeId('AAkALg'),
			restId: null,
			folderId: folder.id,
			isDraft,
			createdDateTime: now,
			receivedDateTime: fields.receivedDateTime ?? now,
			sentDateTime: fields.sentDateTime ?? (isDraft ? undefined : now),
			conversationId: fields.conversationId ?? exchangeId('AAQkADc'),
			conversationIndex: b64url(crypto.randomBytes(22)),
			attachments: fields.attachments.map((a) => ({ ...a, id: exchangeId('AAMkADa') })),
		};
		newRestId(mailbox, message);
		mailbox.messages.set(message.immutableId, message);
		touch(mailbox, message);
		message.arrivedSeq = message.seq; // when it entered its folder (delta's changeType=created)
		return message;
	}

	function moveMessage(mailbox, message, folder) {
		if (message.folderId === folder.id) return message;
		mailbox.removals.push({ seq: ++mailbox.seq, folderId: message.folderId, immutableId: message.immutableId, restId: message.restId });
		message.folderId = folder.id;
		newRestId(mailbox, message);
		touch(mailbox, message);
		message.arrivedSeq = message.seq;
		return message;
	}
	function removeMessage(mailbox, message) {
		mailbox.removals.push({ seq: ++mailbox.seq, folderId: message.folderId, immutableId: message.immutableId, restId: message.restId });
		mailbox.messages.delete(message.immutableId);
		mailbox.restIndex.delete(message.restId);
	}
	/** Graph's DELETE: to Deleted Items; from there, gone. */
	function deleteMessage(mailbox, message) {
		const deleted = findFolder(mailbox, 'deleteditems');
		if (message.folderId === deleted.id) removeMessage(mailbox, message);
		else moveMessage(mailbox, message, deleted);
	}

	/** From another address needs Send As or Send on Behalf on it (checked when options.enforceSendAs). */
	function checkSendAs(mailbox, fields) {
		const from = lower(fields.from?.emailAddress?.address ?? mailbox.address);
		if (!settings.enforceSendAs || from === lower(mailbox.address) || mailbox.sendAs.has(from) || mailbox.sendOnBehalf.has(from)) return;
		throw new GraphError(403, 'ErrorSendAsDenied', 'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.');
	}

	/** What Exchange refuses before a message leaves: no recipients, a From it may not use. */
	function checkOutgoing(mailbox, fields) {
		if (![...fields.toRecipients, ...fields.ccRecipients, ...fields.bccRecipients].length) throw badRequest('ErrorInvalidRecipients', 'At least one recipient is required, but none were found.');
		checkSendAs(mailbox, fields);
	}

	/** A message leaves `mailbox`: copies to fake recipients' inboxes and (by default) Sent Items. */
	function deliver(mailbox, fields, { saveToSentItems = true, via }) {
		checkOutgoing(mailbox, fields);
		const all = [...fields.toRecipients, ...fields.ccRecipients, ...fields.bccRecipients];
		const sentAt = iso();
		const own = recipient({ address: mailbox.address, name: mailbox.displayName });
		const from = fields.from ?? own;
		const fromAddress = lower(from.emailAddress.address);
		// Send on Behalf (without Send As): the mailbox shows as the sender
		const onBehalf = fromAddress !== lower(mailbox.address) && mailbox.sendOnBehalf.has(fromAddress) && !mailbox.sendAs.has(fromAddress);
		const out = { ...fields, from, sender: onBehalf ? own : (fields.sender ?? from), sentDateTime: sentAt, receivedDateTime: sentAt };
		const delivery = {
			seq: deliveries.length + 1,
			at: Date.now(),
			via,
			mailbox: mailbox.address,
			internetMessageId: out.internetMessageId,
			subject: out.subject,
			from: out.from.emailAddress.address,
			sender: out.sender.emailAddress.address,
			to: out.toRecipients.map((r) => r.emailAddress.address),
			cc: out.ccRecipients.map((r) => r.emailAddress.address),
			bcc: out.bccRecipients.map((r) => r.emailAddress.address),
			body: { ...out.body },
			importance: out.importance,
			isReadReceiptRequested: out.isReadReceiptRequested,
			internetMessageHeaders: out.internetMessageHeaders.map((h) => ({ ...h })),
			attachments: out.attachments.map((a) => ({ name: a.name, contentType: a.contentType, size: a.size, sha256: a.sha256 ?? null, isInline: a.isInline, contentId: a.contentId, kind: a.kind })),
			saveToSentItems,
		};
		deliveries.push(delivery);
		if (saveToSentItems) storeMessage(mailbox, findFolder(mailbox, 'sentitems'), { ...out, isRead: true });
		const seen = new Set();
		const intoInboxes = () => {
			for (const r of all) {
				const target = mailboxes.get(lower(r.emailAddress.address));
				if (!target || seen.has(target) || !target.restEnabled) continue;
				seen.add(target);
				storeMessage(target, findFolder(target, 'inbox'), { ...out, bccRecipients: [], isRead: false, flag: { flagStatus: 'notFlagged' } });
			}
		};
		// Exchange delivers asynchronously: with a delay the message is in Sent Items at once, in the Inbox later.
		if (settings.deliveryDelayMs > 0) {
			const timer = setTimeout(() => {
				timers.delete(timer);
				intoInboxes();
			}, settings.deliveryDelayMs);
			timers.add(timer);
		} else intoInboxes();
		return delivery;
	}

	// ---- JSON views ----

	const idOf = (message, ctx) => (ctx.immutable ? message.immutableId : message.restId);
	const folderIdFor = (mailbox, folderId) => folderId;

	function bodyFor(body, ctx) {
		const want = ctx.bodyType;
		if (!want || want === body.contentType) return { ...body };
		if (want === 'text') return { contentType: 'text', content: htmlToText(body.content) };
		return { contentType: 'html', content: textToHtml(body.content) };
	}
	/** `select`: the attachment request's own $select (null: every property). */
	function attachmentJson(a, ctx, expandItem = false, select = null) {
		const wants = (field) => !select || select.includes(field) || select.includes(`microsoft.graph.fileAttachment/${field}`);
		const pick = (out) => Object.fromEntries(Object.entries(out).filter(([k]) => k.startsWith('@') || k === 'id' || k === 'item' || wants(k)));
		if (a.kind === 'item') {
			const out = { '@odata.type': '#microsoft.graph.itemAttachment', id: a.id, lastModifiedDateTime: a.lastModifiedDateTime, name: a.name, contentType: null, size: a.size, isInline: false };
			if (expandItem) out.item = { '@odata.type': '#microsoft.graph.message', ...messageJsonFields(a.item, ctx, null, a.id) };
			return pick(out);
		}
		const out = { '@odata.type': '#microsoft.graph.fileAttachment', '@odata.mediaContentType': a.contentType, id: a.id, lastModifiedDateTime: a.lastModifiedDateTime, name: a.name, contentType: a.contentType, size: a.size, isInline: a.isInline, contentId: a.contentId, contentLocation: null };
		if (wants('contentBytes')) {
			if (a.data) out.contentBytes = a.data.toString('base64');
			else if (a.file && a.size <= 10 * MB) out.contentBytes = fs.readFileSync(a.file).toString('base64');
		}
		return pick(out);
	}
	function messageJsonFields(m, ctx, select, id) {
		const all = {
			createdDateTime: m.createdDateTime ?? iso(),
			lastModifiedDateTime: m.lastModifiedDateTime ?? iso(),
			changeKey: m.changeKey ?? '',
			categories: m.categories ?? [],
			receivedDateTime: m.receivedDateTime ?? null,
			sentDateTime: m.sentDateTime ?? null,
			hasAttachments: (m.attachments ?? []).some((a) => !a.isInline),
			internetMessageId: m.internetMessageId,
			subject: m.subject,
			bodyPreview: htmlToText(m.body.contentType === 'html' ? m.body.content : m.body.content.replace(/</g, ' ')).slice(0, 255),
			importance: m.importance,
			parentFolderId: m.folderId ?? null,
			conversationId: m.conversationId ?? null,
			conversationIndex: m.conversationIndex ?? null,
			isDeliveryReceiptRequested: m.isDeliveryReceiptRequested,
			isReadReceiptRequested: m.isReadReceiptRequested,
			isRead: m.isRead,
			isDraft: Boolean(m.isDraft),
			webLink: `https://outlook.office365.com/owa/?ItemID=${encodeURIComponent(id)}&exvsurl=1&viewmodel=ReadMessageItem`,
			inferenceClassification: 'focused',
			body: bodyFor(m.body, ctx),
			uniqueBody: bodyFor(m.body, ctx),
			sender: m.sender ?? null,
			from: m.from ?? null,
			toRecipients: m.toRecipients,
			ccRecipients: m.ccRecipients,
			bccRecipients: m.bccRecipients,
			replyTo: m.replyTo,
			flag: { ...m.flag },
			internetMessageHeaders: m.internetMessageHeaders,
		};
		const out = { id };
		for (const field of select ?? DEFAULT_FIELDS) if (field in all) out[field] = all[field];
		if (select?.includes('attachments') || ctx.expandAttachments) out.attachments = (m.attachments ?? []).map((a) => attachmentJson(a, ctx, false, ctx.expandAttachmentsSelect));
		// PidTagMessageSize, the store's size of the message, as an extended property (value is a string in Graph)
		if (ctx.expandMessageSize) out.singleValueExtendedProperties = [{ id: 'Integer 0x0e08', value: String((m.attachments ?? []).reduce((n, a) => n + a.size, 0) + m.body.content.length + 1024) }];
		return out;
	}
	function messageJson(m, ctx, select = ctx.select) {
		return { '@odata.etag': `W/"${m.changeKey}"`, ...messageJsonFields(m, ctx, select, idOf(m, ctx)) };
	}
	function folderJson(mailbox, folder, select = null) {
		const inFolder = [...mailbox.messages.values()].filter((m) => m.folderId === folder.id);
		const out = {
			id: folder.id,
			displayName: folder.displayName,
			parentFolderId: folder.parentFolderId,
			childFolderCount: [...mailbox.folders.values()].filter((f) => f.parentFolderId === folder.id).length,
			unreadItemCount: inFolder.filter((m) => !m.isRead).length,
			totalItemCount: inFolder.length,
			sizeInBytes: inFolder.reduce((n, m) => n + m.attachments.reduce((s, a) => s + a.size, 0) + m.body.content.length, 0),
			isHidden: false,
		};
		return select ? Object.fromEntries(Object.entries(out).filter(([k]) => k === 'id' || select.includes(k))) : out;
	}

	// ---- query options ----

	/** The $select of a request for one resource type; an unknown name is Graph's 400. */
	function parseSelect(query, type) {
		const raw = query.get('$select');
		if (raw === null) return null;
		const fields = raw.split(',').map((s) => s.trim()).filter(Boolean);
		for (const f of fields) {
			if (f !== 'id' && !SELECTABLE[type].has(f)) throw badRequest('RequestBroker--ParseUri', `Could not find a property named '${f.split('/').pop()}' on type 'microsoft.graph.${type}'.`);
		}
		return fields.filter((f) => f !== 'id');
	}

	const FILTER_CLAUSES = [
		{ re: /^(isRead|hasAttachments|isDraft)\s+eq\s+(true|false)$/i, build: (m) => ({ prop: m[1], test: (msg) => view(msg, m[1]) === (lower(m[2]) === 'true') }) },
		{
			re: /^(receivedDateTime|sentDateTime|lastModifiedDateTime|createdDateTime)\s+(ge|gt|le|lt|eq)\s+(\d{4}-\d{2}-\d{2}(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2}))?)$/i,
			build: (m) => {
				const at = Date.parse(m[3]);
				const op = lower(m[2]);
				const cmp = { ge: (a) => a >= at, gt: (a) => a > at, le: (a) => a <= at, lt: (a) => a < at, eq: (a) => a === at }[op];
				return { prop: m[1], test: (msg) => cmp(Date.parse(view(msg, m[1]) ?? 0)) };
			},
		},
		{ re: /^(from|sender)\/emailAddress\/address\s+eq\s+'((?:[^']|'')*)'$/i, build: (m) => ({ prop: m[1], test: (msg) => lower(msg[lower(m[1])]?.emailAddress?.address) === lower(m[2].replace(/''/g, "'")) }) },
		{ re: /^flag\/flagStatus\s+eq\s+'(flagged|notFlagged|complete)'$/i, build: (m) => ({ prop: 'flag', test: (msg) => lower(msg.flag.flagStatus) === lower(m[1]) }) },
		{ re: /^importance\s+eq\s+'(low|normal|high)'$/i, build: (m) => ({ prop: 'importance', test: (msg) => lower(msg.importance) === lower(m[1]) }) },
	];
	function view(msg, prop) {
		if (lower(prop) === 'hasattachments') return msg.attachments.some((a) => !a.isInline);
		if (lower(prop) === 'isdraft') return Boolean(msg.isDraft);
		const key = Object.keys(msg).find((k) => lower(k) === lower(prop));
		return msg[key];
	}
	/** The documented $filter subset, `and`-combined; anything else is refused as Exchange does. */
	function parseFilter(raw) {
		if (raw === null) return null;
		const clauses = [];
		for (const part of splitAnd(raw.trim())) {
			const spec = FILTER_CLAUSES.find((c) => c.re.test(part.trim()));
			if (!spec) throw badRequest('ErrorInvalidUrlQueryFilter', 'The query filter contains one or more invalid nodes.');
			clauses.push(spec.build(spec.re.exec(part.trim())));
		}
		return clauses;
	}
	function splitAnd(text) {
		const parts = [];
		let quoted = false;
		let start = 0;
		for (let i = 0; i < text.length; i++) {
			if (text[i] === "'") quoted = !quoted;
			if (!quoted && /^\s+and\s+/i.test(text.slice(i)) && /\s/.test(text[i])) {
				const m = /^\s+and\s+/i.exec(text.slice(i));
				parts.push(text.slice(start, i));
				i += m[0].length - 1;
				start = i + 1;
			}
		}
		parts.push(text.slice(start));
		if (parts.some((p) => !p.trim() || /^\(|\)$|\s+or\s+|^not\s/i.test(p.trim()))) throw badRequest('ErrorInvalidUrlQueryFilter', 'The query filter contains one or more invalid nodes.');
		return parts;
	}
	function parseOrderBy(raw, filter) {
		if (raw === null) return { prop: 'receivedDateTime', desc: true };
		const m = /^(receivedDateTime|sentDateTime|lastModifiedDateTime|createdDateTime)(?:\s+(asc|desc))?$/i.exec(raw.trim());
		if (!m) throw badRequest('ErrorInvalidUrlQuery', `The $orderby '${raw}' is not supported.`);
		// Documented: with $filter, the $orderby property must come first in the $filter too
		if (filter && filter.length && lower(filter[0].prop) !== lower(m[1])) {
			throw badRequest('InefficientFilter', 'The restriction or sort order is too complex for this operation.');
		}
		return { prop: m[1], desc: lower(m[2]) === 'desc' };
	}
	function intParam(query, name, fallback, max) {
		const raw = query.get(name);
		if (raw === null) return fallback;
		if (!/^\d+$/.test(raw)) throw badRequest('BadRequest', `Invalid value '${raw}' for query option ${name}.`);
		const n = Number(raw);
		if (max !== undefined && n > max) throw badRequest('ErrorInvalidUrlQuery', `The value of ${name} must be at most ${max}.`);
		return n;
	}
	/** Same URL with query options replaced (Graph keeps the caller's other options). */
	function linkWith(ctx, changes) {
		const url = new URL(`${baseUrl}/v1.0/${ctx.rawPath}`);
		for (const [k, v] of ctx.query) url.searchParams.append(k, v);
		for (const [k, v] of Object.entries(changes)) {
			if (v === null) url.searchParams.delete(k);
			else url.searchParams.set(k, String(v));
		}
		return url.toString().replace(/%24/g, '$');
	}

	function listMessages(ctx, mailbox, folder) {
		const filter = parseFilter(ctx.query.get('$filter'));
		const order = parseOrderBy(ctx.query.get('$orderby'), filter);
		const top = intParam(ctx.query, '$top', DEFAULT_PAGE, MAX_PAGE);
		const skip = intParam(ctx.query, '$skip', 0);
		let items = [...mailbox.messages.values()].filter((m) => !folder || m.folderId === folder.id);
		if (filter) items = items.filter((m) => filter.every((c) => c.test(m)));
		items.sort((a, b) => {
			const d = Date.parse(view(a, order.prop) ?? 0) - Date.parse(view(b, order.prop) ?? 0) || a.seq - b.seq;
			return order.desc ? -d : d;
		});
		const page = items.slice(skip, skip + top);
		const body = { '@odata.context': `${baseUrl}/v1.0/$metadata#users('${encodeURIComponent(mailbox.address)}')/messages` };
		if (lower(ctx.query.get('$count')) === 'true') body['@odata.count'] = items.length;
		body.value = page.map((m) => messageJson(m, ctx));
		if (skip + top < items.length) body['@odata.nextLink'] = linkWith(ctx, { $skip: skip + top });
		return { status: 200, body };
	}

	function listFolders(ctx, mailbox, parent) {
		const top = intParam(ctx.query, '$top', DEFAULT_PAGE, MAX_PAGE);
		const skip = intParam(ctx.query, '$skip', 0);
		const all = [...mailbox.folders.values()].filter((f) => f.parentFolderId === parent.id && f.wellKnownName !== 'outbox');
		const body = { '@odata.context': `${baseUrl}/v1.0/$metadata#users('${encodeURIComponent(mailbox.address)}')/mailFolders` };
		if (lower(ctx.query.get('$count')) === 'true') body['@odata.count'] = all.length;
		body.value = all.slice(skip, skip + top).map((f) => folderJson(mailbox, f, ctx.select));
		if (skip + top < all.length) body['@odata.nextLink'] = linkWith(ctx, { $skip: skip + top });
		return { status: 200, body };
	}

	// ---- delta ----

	function deltaQuery(ctx, mailbox, folder) {
		const skiptoken = ctx.query.get('$skiptoken');
		const deltatoken = ctx.query.get('$deltatoken');
		let session;
		let offset = 0;
		if (skiptoken !== null) {
			// a skiptoken names a page: asking again (a retry after a lost answer) gets that page again
			const page = deltaPages.get(skiptoken);
			if (!page || page.session.mailbox !== mailbox || page.session.folderId !== folder.id) throw syncStateGone(ctx);
			({ session, offset } = page);
			ctx.select = session.select; // $select and the page size live in the token, as in Graph
		} else {
			let fromSeq = 0;
			// query options of the first request live on in the tokens, as Graph encodes them
			let options = { select: ctx.select, filter: null, changeType: null, top: null };
			if (deltatoken !== null) {
				const state = deltaTokens.get(deltatoken);
				if (!state || state.mailbox !== mailbox || state.folderId !== folder.id || state.expired) throw syncStateGone(ctx);
				fromSeq = state.seq;
				options = state.options;
			} else {
				options.filter = parseDeltaFilter(ctx.query.get('$filter'));
				options.changeType = ctx.query.get('changeType');
				if (options.changeType !== null && !['created', 'updated', 'deleted'].includes(options.changeType)) throw badRequest('ErrorInvalidUrlQuery', `changeType '${options.changeType}' is not one of created, updated, deleted.`);
				options.top = intParam(ctx.query, '$top', null, MAX_PAGE);
			}
			ctx.select = options.select;
			const wanted = (m) => {
				if (options.filter && !options.filter(m)) return false;
				if (fromSeq === 0 || !options.changeType) return true;
				return options.changeType === 'created' ? m.arrivedSeq > fromSeq : options.changeType === 'updated' && m.arrivedSeq <= fromSeq;
			};
			const entries = [...mailbox.messages.values()]
				.filter((m) => m.folderId === folder.id && m.seq > fromSeq && wanted(m))
				.sort((a, b) => a.seq - b.seq)
				.map((m) => ({ immutableId: m.immutableId }));
			if (fromSeq > 0 && settings.deltaReplays > 0) {
				// documented "Replays": a change already reported may come again
				const seen = new Set(entries.map((e) => e.immutableId));
				const old = [...mailbox.messages.values()].filter((m) => m.folderId === folder.id && !seen.has(m.immutableId)).sort((a, b) => b.seq - a.seq).slice(0, settings.deltaReplays);
				settings.deltaReplays = 0;
				entries.unshift(...old.reverse().map((m) => ({ immutableId: m.immutableId })));
			}
			if (fromSeq > 0 && (!options.changeType || options.changeType === 'deleted')) {
				const present = new Set(entries.map((e) => e.immutableId));
				for (const r of mailbox.removals) {
					if (r.folderId !== folder.id || r.seq <= fromSeq || present.has(r.immutableId)) continue;
					const now = mailbox.messages.get(r.immutableId);
					if (now && now.folderId === folder.id) continue; // moved away and back: a change, already listed
					present.add(r.immutableId);
					entries.push({ removed: true, immutableId: r.immutableId, restId: r.restId });
				}
			}
			session = { mailbox, folderId: folder.id, entries, seq: mailbox.seq, select: ctx.select, options };
		}
		const pageSize = ctx.maxPageSize ?? session.options.top ?? DEFAULT_DELTA_PAGE;
		const slice = session.entries.slice(offset, offset + pageSize);
		offset += slice.length;
		const value = [];
		for (const entry of slice) {
			const message = entry.removed ? null : mailbox.messages.get(entry.immutableId);
			if (!message || message.folderId !== folder.id) {
				value.push({ '@odata.type': '#microsoft.graph.message', id: ctx.immutable ? entry.immutableId : (entry.restId ?? message?.restId ?? entry.immutableId), '@removed': { reason: 'deleted' } });
			} else {
				value.push({ '@odata.type': '#microsoft.graph.message', ...messageJson(message, ctx) });
			}
		}
		const body = { '@odata.context': `${baseUrl}/v1.0/$metadata#Collection(message)`, value };
		if (offset < session.entries.length) {
			const token = b64url(crypto.randomBytes(18));
			deltaPages.set(token, { session, offset });
			body['@odata.nextLink'] = linkWith(ctx, { $skiptoken: token, $deltatoken: null, $select: null, $filter: null, $top: null, changeType: null });
		} else {
			const token = b64url(crypto.randomBytes(18));
			deltaTokens.set(token, { mailbox, folderId: folder.id, seq: session.seq, options: session.options, expired: false });
			body['@odata.deltaLink'] = linkWith(ctx, { $deltatoken: token, $skiptoken: null, $select: null, $filter: null, $top: null, changeType: null });
		}
		const headers = ctx.maxPageSize ? { 'preference-applied': `odata.maxpagesize=${ctx.maxPageSize}` } : {};
		return { status: 200, body, headers };
	}
	/** Delta takes only receivedDateTime ge|gt (documented). */
	function parseDeltaFilter(raw) {
		if (raw === null) return null;
		const m = /^receivedDateTime\s+(ge|gt)\s+(\d{4}-\d{2}-\d{2}(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2}))?)$/i.exec(raw.trim());
		if (!m) throw badRequest('ErrorInvalidUrlQueryFilter', 'The query filter contains one or more invalid nodes.');
		const at = Date.parse(m[2]);
		return lower(m[1]) === 'ge' ? (msg) => Date.parse(msg.receivedDateTime) >= at : (msg) => Date.parse(msg.receivedDateTime) > at;
	}
	function syncStateGone(ctx) {
		// Documented ("Synchronization reset"): 410 Gone with a Location header holding the initial
		// query (no token); error code syncStateNotFound for an expired token
		return new GraphError(410, 'syncStateNotFound', 'The sync state generation is not found. The delta token is expired and data must be synchronized again.', { location: linkWith(ctx, { $deltatoken: null, $skiptoken: null }) });
	}

	// ---- auth ----

	function decodeClaims(token) {
		try {
			return JSON.parse(Buffer.from(String(token).split('.')[1], 'base64url').toString('utf8'));
		} catch {
			return null;
		}
	}
	const PERMISSIONS = {
		read: ['Mail.Read', 'Mail.ReadWrite'],
		write: ['Mail.ReadWrite'],
		send: ['Mail.Send'],
		profile: null, // see authorize
	};
	/** Decides like Graph: 401 bad token, 404 unknown mailbox, 403 missing permission or RBAC scope. */
	function authorize(ctx, mailboxRef, need) {
		const match = /^Bearer\s+(\S+)$/i.exec(ctx.headers.authorization ?? '');
		if (!match) throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token is empty.');
		const token = match[1];
		if (revokedTokens.has(token)) throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token has expired or is not yet valid.');
		const basic = identity.introspect(token, { audience: GRAPH_AUDIENCE });
		const claims = decodeClaims(token);
		const tokenOk = basic.active || basic.reason === 'app-only token needs a mailbox';
		if (!tokenOk || !claims) {
			const reason = basic.reason ?? '';
			if (reason.startsWith('wrong audience')) throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.');
			if (reason === 'token expired') throw new GraphError(401, 'InvalidAuthenticationToken', 'Lifetime validation failed, the token is expired.');
			throw new GraphError(401, 'InvalidAuthenticationToken', 'IDX14100: JWT is not well formed, there are no dots (.).');
		}
		const isApp = claims.idtyp === 'app';
		ctx.principal = isApp ? `app:${claims.appid}` : `user:${claims.upn}`;
		if (mailboxRef === null && isApp) throw badRequest('BadRequest', '/me request is only valid with delegated authentication flow.');
		const address = mailboxRef ?? claims.upn;
		const mailbox = mailboxes.get(lower(address));
		if (!mailbox) throw new GraphError(404, 'ErrorInvalidUser', `The requested user '${address}' is invalid.`);
		if (!mailbox.restEnabled) throw new GraphError(404, 'MailboxNotEnabledForRESTAPI', 'The mailbox is either inactive, soft-deleted, or is hosted on-premise.');
		const own = !isApp && lower(mailbox.address) === lower(claims.upn);
		const granted = isApp ? claims.roles ?? [] : String(claims.scp ?? '').split(' ');
		if (need === 'profile') {
			// GET /users/{id} | /me: a directory read, not a mailbox one (no RBAC for Applications)
			const wanted = own ? ['User.Read', 'User.ReadBasic.All', 'User.Read.All'] : ['User.ReadBasic.All', 'User.Read.All'];
			if (!wanted.some((p) => granted.includes(p))) throw new GraphError(403, 'Authorization_RequestDenied', 'Insufficient privileges to complete the operation.');
			return mailbox;
		}
		const names = PERMISSIONS[need].flatMap((p) => (isApp || own ? [p] : [`${p}.Shared`]));
		const permission = names.find((p) => granted.includes(p));
		if (!permission) throw new GraphError(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.');
		const decision = identity.introspect(token, isApp ? { audience: GRAPH_AUDIENCE, mailbox: mailbox.address, role: permission } : { audience: GRAPH_AUDIENCE, mailbox: mailbox.address, scope: permission });
		if (!decision.active) {
			if (isApp) throw new GraphError(403, 'ErrorAccessDenied', 'Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.');
			throw new GraphError(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.');
		}
		return mailbox;
	}

	// ---- routes ----

	function parseJson(ctx) {
		if (!ctx.body.length) return {};
		try {
			return JSON.parse(ctx.body.toString('utf8'));
		} catch {
			throw badRequest('RequestBodyRead', 'Invalid JSON in the request body.');
		}
	}
	function checkHeaders(fields) {
		for (const h of fields.internetMessageHeaders) {
			if (!/^x-/i.test(h.name)) throw badRequest('InvalidInternetMessageHeader', `The internet message header name '${h.name}' should start with 'x-' or 'X-'.`);
		}
	}
	function checkInlineSizes(fields) {
		for (const a of fields.attachments) {
			if (a.size >= INLINE_ATTACHMENT_LIMIT) throw new GraphError(413, 'ErrorRequestEntityTooLarge', 'The attachment is too large; attachments of 3 MB or more need an upload session.');
		}
	}

	async function sendMail(ctx, mailbox) {
		const type = lower(ctx.headers['content-type']);
		if (type.startsWith('text/plain')) {
			const text = ctx.body.toString('utf8').replace(/\s+/g, '');
			if (!text || !/^[A-Za-z0-9+/]+=*$/.test(text)) throw badRequest('ErrorMimeContentInvalidBase64String', 'Invalid base64 string for MIME content.');
			const fields = await fieldsFromMime(Buffer.from(text, 'base64'));
			deliver(mailbox, fields, { via: 'sendMail-mime' });
			return { status: 202 };
		}
		const json = parseJson(ctx);
		if (!json.message) throw badRequest('ErrorInvalidParameter', "The value of the parameter 'Message' is empty.");
		const fields = messageFields(json.message);
		checkHeaders(fields);
		checkInlineSizes(fields);
		deliver(mailbox, fields, { saveToSentItems: json.saveToSentItems !== false && json.saveToSentItems !== 'false', via: 'sendMail' });
		return { status: 202 };
	}

	async function fieldsFromMime(raw) {
		const { simpleParser } = require('mailparser');
		const parsed = await simpleParser(raw, { skipImageLinks: true, skipTextToHtml: true });
		const list = (field) => (field ? [].concat(field).flatMap((a) => a.value) : []).map((v) => ({ emailAddress: { name: v.name || v.address, address: v.address } }));
		const headers = [];
		for (const line of parsed.headerLines) {
			const name = line.line.slice(0, line.line.indexOf(':'));
			if (/^x-/i.test(name)) headers.push({ name, value: line.line.slice(name.length + 1).trim() });
		}
		const priority = parsed.priority === 'high' ? 'high' : parsed.priority === 'low' ? 'low' : 'normal';
		return {
			...messageFields({
				subject: parsed.subject ?? '',
				body: parsed.html ? { contentType: 'html', content: parsed.html } : { contentType: 'text', content: parsed.text ?? '' },
				from: list(parsed.from)[0],
				toRecipients: list(parsed.to),
				ccRecipients: list(parsed.cc),
				bccRecipients: list(parsed.bcc),
				replyTo: list(parsed.replyTo),
				internetMessageId: parsed.messageId,
				internetMessageHeaders: headers,
				importance: priority,
				isReadReceiptRequested: Boolean(parsed.headers.get('disposition-notification-to')),
			}),
			attachments: parsed.attachments.map((a) => ({ ...attachmentRecord({ name: a.filename, contentType: a.contentType, content: a.content, isInline: a.contentDisposition === 'inline', contentId: a.contentId ? a.contentId.replace(/^<|>$/g, '') : undefined }) })),
		};
	}

	function createMessage(ctx, mailbox, folder) {
		const fields = messageFields(parseJson(ctx));
		checkHeaders(fields);
		checkInlineSizes(fields);
		const message = storeMessage(mailbox, folder, { ...fields, isRead: true, from: fields.from, sender: fields.sender }, { isDraft: true });
		return { status: 201, body: messageJson(message, ctx, null) };
	}

	const PATCHABLE = ['subject', 'body', 'toRecipients', 'ccRecipients', 'bccRecipients', 'replyTo', 'from', 'sender', 'importance', 'isRead', 'flag', 'categories', 'internetMessageHeaders', 'isDeliveryReceiptRequested', 'isReadReceiptRequested', 'inferenceClassification'];
	const DRAFT_ONLY = new Set(['body', 'toRecipients', 'ccRecipients', 'bccRecipients', 'from', 'sender', 'internetMessageHeaders', 'replyTo']);
	function patchMessage(ctx, mailbox, message) {
		const json = parseJson(ctx);
		for (const key of Object.keys(json)) {
			if (!PATCHABLE.includes(key)) throw badRequest('ErrorInvalidPropertyRequest', `The property '${key}' does not exist on type 'microsoft.graph.message' or cannot be updated.`);
			if (DRAFT_ONLY.has(key) && !message.isDraft) throw badRequest('ErrorInvalidPropertyUpdateSentMessage', 'Update operation is not supported for some properties of a sent message.');
		}
		const fields = messageFields({ ...json });
		for (const key of Object.keys(json)) {
			if (key === 'flag') message.flag = { flagStatus: json.flag?.flagStatus ?? message.flag.flagStatus };
			else if (key === 'isRead') message.isRead = Boolean(json.isRead);
			else if (key === 'inferenceClassification') continue;
			else message[key] = fields[key];
		}
		if (json.internetMessageHeaders) checkHeaders(message);
		touch(mailbox, message);
		return { status: 200, body: messageJson(message, ctx, null) };
	}

	function sendDraft(mailbox, message) {
		if (!message.isDraft) throw itemNotFound(); // a sent draft is no longer a draft
		const totalSize = message.attachments.reduce((n, a) => n + a.size, 0) + message.body.content.length;
		if (totalSize > mailbox.maxSendSize) throw badRequest('ErrorMessageSizeExceeded', `The message exceeds the maximum supported size of ${mailbox.maxSendSize} bytes.`);
		const fields = { ...message, attachments: message.attachments };
		checkOutgoing(mailbox, fields); // a refused draft stays in Drafts
		removeMessage(mailbox, message); // the draft becomes a new item in Sent Items
		deliver(mailbox, fields, { via: 'draft' });
		return { status: 202 };
	}

	function addAttachment(ctx, mailbox, message) {
		const json = parseJson(ctx);
		if (!json['@odata.type']) throw badRequest('ErrorInvalidParameter', "The '@odata.type' of the attachment is required.");
		const record = attachmentRecord(json);
		if (record.kind === 'file' && record.size >= INLINE_ATTACHMENT_LIMIT) throw new GraphError(413, 'ErrorRequestEntityTooLarge', 'The attachment is too large; attachments of 3 MB or more need an upload session.');
		message.attachments.push(record);
		touch(mailbox, message);
		return { status: 201, body: { '@odata.context': `${baseUrl}/v1.0/$metadata#users('${encodeURIComponent(mailbox.address)}')/messages('${idOf(message, ctx)}')/attachments/$entity`, ...attachmentJson(record, ctx) } };
	}

	function createUploadSession(ctx, mailbox, message) {
		const item = parseJson(ctx).AttachmentItem;
		if (!item || lower(item.attachmentType) !== 'file' || !item.name || !Number.isInteger(item.size)) {
			throw badRequest('ErrorInvalidParameter', 'AttachmentItem with attachmentType file, name and size is required.');
		}
		if (!message.isDraft) throw badRequest('ErrorInvalidOperation', 'Attachments can only be uploaded to a draft message.');
		if (item.size < UPLOAD_SESSION_MIN) {
			throw badRequest('ErrorAttachmentSizeShouldNotBeLessThanMinimumSize', `The attachment size ${item.size} should not be less than the minimum size ${UPLOAD_SESSION_MIN}.`);
		}
		const existing = message.attachments.reduce((n, a) => n + a.size, 0);
		if (item.size + existing > mailbox.maxSendSize) {
			throw badRequest('ErrorMessageSizeExceeded', `The message exceeds the maximum supported size of ${mailbox.maxSendSize} bytes (MaxSendSize of ${mailbox.address}).`);
		}
		const sessionId = b64url(crypto.randomBytes(16));
		const authtoken = b64url(crypto.randomBytes(32));
		const file = path.join(tmpDir, `${sessionId}.bin`);
		fs.writeFileSync(file, '');
		const expires = Date.now() + 24 * 3600 * 1000;
		const session = { id: sessionId, authtoken, mailbox, messageId: message.immutableId, name: item.name, size: item.size, contentType: item.contentType ?? 'application/octet-stream', isInline: Boolean(item.isInline), contentId: item.contentId ?? null, received: 0, hash: crypto.createHash('sha256'), file, expires, done: false, chunks: 0 };
		uploadSessions.set(sessionId, session);
		const uploadUrl = `${uploadBase}/api/v2.0/Users('${mailbox.id}')/Messages('${message.restId}')/AttachmentSessions('${sessionId}')?authtoken=${authtoken}`;
		return { status: 201, body: { '@odata.context': `${baseUrl}/v1.0/$metadata#microsoft.graph.uploadSession`, uploadUrl, expirationDateTime: iso(expires), nextExpectedRanges: ['0-'] } };
	}

	function messageValue(mailbox, message) {
		const MailComposer = require('nodemailer/lib/mail-composer');
		return { status: 200, headers: { 'content-type': 'text/plain' }, stream: new MailComposer(mimeOptions(message)).compile().createReadStream() };
	}
	function mimeOptions(m) {
		const addr = (r) => (r ? { name: r.emailAddress.name ?? '', address: r.emailAddress.address } : undefined);
		const headers = {};
		for (const h of m.internetMessageHeaders ?? []) headers[h.name] = h.value;
		return {
			from: addr(m.from),
			sender: m.sender && m.from && lower(m.sender.emailAddress.address) !== lower(m.from.emailAddress.address) ? addr(m.sender) : undefined,
			to: m.toRecipients.map(addr),
			cc: m.ccRecipients.map(addr),
			replyTo: m.replyTo.map(addr),
			subject: m.subject,
			messageId: m.internetMessageId,
			date: new Date(m.sentDateTime ?? m.receivedDateTime ?? Date.now()),
			priority: m.importance,
			headers,
			[m.body.contentType === 'html' ? 'html' : 'text']: m.body.content,
			attachments: (m.attachments ?? []).map((a) => {
				if (a.kind === 'item') return { filename: `${a.name}.eml`, contentType: 'message/rfc822', content: new (require('nodemailer/lib/mail-composer'))(mimeOptions({ attachments: [], ...a.item })).compile().createReadStream() };
				return { filename: a.name, contentType: a.contentType, ...(a.data ? { content: a.data } : { path: a.file }), ...(a.contentId ? { cid: a.contentId } : {}), contentDisposition: a.isInline ? 'inline' : 'attachment' };
			}),
		};
	}
	function attachmentValue(attachment) {
		if (attachment.kind === 'item') {
			const MailComposer = require('nodemailer/lib/mail-composer');
			return { status: 200, headers: { 'content-type': 'text/plain' }, stream: new MailComposer(mimeOptions({ attachments: [], ...attachment.item })).compile().createReadStream() };
		}
		const headers = { 'content-type': attachment.contentType, 'content-length': String(attachment.size) };
		return { status: 200, headers, stream: attachment.data ? require('node:stream').Readable.from([attachment.data]) : fs.createReadStream(attachment.file) };
	}

	// ---- applications(appId='...'): an app reading its own registration (client secret expiry) ----

	const APPLICATION_READERS = ['Application.Read.All', 'Application.ReadWrite.All'];
	const OWNED_BY = 'Application.ReadWrite.OwnedBy';
	const NEVER = '9999-12-31T23:59:59Z';
	/**
	 * GET /applications(appId='{id}') from the fake identity's app record (identity.findApp):
	 * passwordCredentials as Graph lists them (hint = first three characters, never the value).
	 * Needs Application.Read.All (or ReadWrite.All), or Application.ReadWrite.OwnedBy when the app
	 * record has `ownedBySelf` (the app made its own owner); else 403 as Graph answers.
	 */
	function applicationByAppId(ctx, appId) {
		if (ctx.method !== 'GET') throw new GraphError(405, 'Request_BadRequest', `The HTTP method '${ctx.method}' is not allowed for this resource.`);
		const match = /^Bearer\s+(\S+)$/i.exec(ctx.headers.authorization ?? '');
		if (!match) throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token is empty.');
		const basic = identity.introspect(match[1], { audience: GRAPH_AUDIENCE });
		const claims = decodeClaims(match[1]);
		if (!(basic.active || basic.reason === 'app-only token needs a mailbox') || !claims) throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token validation failure.');
		if (typeof identity.findApp !== 'function') throw new Error('the identity handed to startFakeGraph has no findApp');
		const granted = claims.idtyp === 'app' ? claims.roles ?? [] : String(claims.scp ?? '').split(' ');
		const app = identity.findApp({ tenant: claims.tid, clientId: appId });
		const owner = app && app.ownedBySelf && lower(app.clientId) === lower(claims.appid);
		if (!APPLICATION_READERS.some((r) => granted.includes(r)) && !(granted.includes(OWNED_BY) && owner)) {
			throw new GraphError(403, 'Authorization_RequestDenied', 'Insufficient privileges to complete the operation.');
		}
		if (!app) throw new GraphError(404, 'Request_ResourceNotFound', `Resource '${appId}' does not exist or one of its queried reference-property objects are not present.`);
		const isoSeconds = (seconds) => (seconds ? new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z') : NEVER);
		const full = {
			id: app.objectId ?? app.servicePrincipalId,
			appId: app.clientId,
			displayName: app.name,
			passwordCredentials: app.secrets.map((secret) => ({
				customKeyIdentifier: null,
				displayName: secret.displayName,
				endDateTime: isoSeconds(secret.expiresAt),
				hint: secret.value.slice(0, 3),
				keyId: secret.keyId,
				secretText: null,
				startDateTime: isoSeconds(secret.startAt),
			})),
		};
		const select = (ctx.query.get('$select') ?? '').split(',').map((f) => f.trim()).filter(Boolean);
		const body = select.length ? Object.fromEntries(select.filter((f) => f in full).map((f) => [f, full[f]])) : full;
		return { status: 200, body: { '@odata.context': `${baseUrl}/v1.0/$metadata#applications(${select.join(',')})/$entity`, ...body } };
	}

	/** One Graph request (top-level or inside $batch). Returns {status, headers?, body? | stream?}. */
	async function route(ctx) {
		let s = ctx.segments;
		const appById = /^applications\(appId='([^']+)'\)$/.exec(s[0] ?? '');
		if (appById && s.length === 1) return applicationByAppId(ctx, appById[1]);
		let mailboxRef;
		if (s[0] === 'me') {
			mailboxRef = null;
			s = s.slice(1);
		} else if (s[0] === 'users' && s.length >= 2) {
			mailboxRef = s[1];
			s = s.slice(2);
		} else {
			throw badRequest('BadRequest', `Resource not found for the segment '${s[0] ?? ''}'.`);
		}
		// /mailFolders/{f}/messages/{id}/... addresses the same message as /messages/{id}/...
		if (s[0] === 'mailFolders' && s[2] === 'messages' && s.length >= 4 && s[3] !== 'delta') s = ['messages', ...s.slice(3)];
		const m = ctx.method;
		const key = s.map((seg, i) => (i % 2 === 1 && !['$value', 'send', 'move', 'copy', 'delta', 'attachments', 'childFolders', 'messages', 'createUploadSession'].includes(seg) ? '{}' : seg)).join('/');
		const table = {
			'GET ': ['profile', (mb) => ({ status: 200, body: { '@odata.context': `${baseUrl}/v1.0/$metadata#users/$entity`, id: mb.id, displayName: mb.displayName, mail: mb.address, userPrincipalName: mb.address } })],
			'POST sendMail': ['send', (mb) => sendMail(ctx, mb)],
			'GET mailFolders': ['read', (mb) => listFolders(ctx, mb, findFolder(mb, 'msgfolderroot'))],
			'POST mailFolders': ['write', (mb) => ({ status: 201, body: folderJson(mb, addFolder(mb, { displayName: parseJson(ctx).displayName })) })],
			'GET mailFolders/{}': ['read', (mb) => ({ status: 200, body: folderJson(mb, folderOf(mb, s[1]), ctx.select) })],
			'GET mailFolders/{}/childFolders': ['read', (mb) => listFolders(ctx, mb, folderOf(mb, s[1]))],
			'POST mailFolders/{}/childFolders': ['write', (mb) => ({ status: 201, body: folderJson(mb, addFolder(mb, { displayName: parseJson(ctx).displayName, parent: folderOf(mb, s[1]).id })) })],
			'GET mailFolders/{}/messages': ['read', (mb) => listMessages(ctx, mb, folderOf(mb, s[1]))],
			'POST mailFolders/{}/messages': ['write', (mb) => createMessage(ctx, mb, folderOf(mb, s[1]))],
			'GET mailFolders/{}/messages/delta': ['read', (mb) => deltaQuery(ctx, mb, folderOf(mb, s[1]))],
			'GET messages': ['read', (mb) => listMessages(ctx, mb, null)],
			'POST messages': ['write', (mb) => createMessage(ctx, mb, findFolder(mb, 'drafts'))],
			'GET messages/{}': ['read', (mb) => ({ status: 200, body: messageJson(messageOf(mb, s[1]), ctx) })],
			'PATCH messages/{}': ['write', (mb) => patchMessage(ctx, mb, messageOf(mb, s[1]))],
			'DELETE messages/{}': ['write', (mb) => (deleteMessage(mb, messageOf(mb, s[1])), { status: 204 })],
			'GET messages/{}/$value': ['read', (mb) => messageValue(mb, messageOf(mb, s[1]))],
			'POST messages/{}/send': ['send', (mb) => sendDraft(mb, messageOf(mb, s[1]))],
			'POST messages/{}/move': ['write', (mb) => {
				const destination = parseJson(ctx).destinationId;
				if (!destination) throw badRequest('ErrorInvalidParameter', "The value of the parameter 'DestinationId' is empty.");
				return { status: 201, body: messageJson(moveMessage(mb, messageOf(mb, s[1]), folderOf(mb, destination)), ctx, null) };
			}],
			'GET messages/{}/attachments': ['read', (mb) => ({ status: 200, body: { '@odata.context': `${baseUrl}/v1.0/$metadata#attachments`, value: messageOf(mb, s[1]).attachments.map((a) => attachmentJson(a, ctx, false, ctx.select)) } })],
			'POST messages/{}/attachments': ['write', (mb) => addAttachment(ctx, mb, messageOf(mb, s[1]))],
			'POST messages/{}/attachments/createUploadSession': ['write', (mb) => createUploadSession(ctx, mb, messageOf(mb, s[1]))],
			'GET messages/{}/attachments/{}': ['read', (mb) => ({ status: 200, body: attachmentJson(attachmentOf(messageOf(mb, s[1]), s[3]), ctx, /itemattachment\/item/i.test(ctx.query.get('$expand') ?? ''), ctx.select) })],
			'DELETE messages/{}/attachments/{}': ['write', (mb) => {
				const message = messageOf(mb, s[1]);
				const attachment = attachmentOf(message, s[3]);
				message.attachments = message.attachments.filter((a) => a !== attachment);
				touch(mb, message);
				return { status: 204 };
			}],
			'GET messages/{}/attachments/{}/$value': ['read', (mb) => attachmentValue(attachmentOf(messageOf(mb, s[1]), s[3]))],
		};
		const entry = table[`${m} ${key}`];
		if (!entry) {
			if (Object.keys(table).some((k) => k.endsWith(` ${key}`))) throw new GraphError(405, 'Request_BadRequest', `The HTTP method '${m}' is not allowed for this resource.`);
			throw badRequest('BadRequest', `Resource not found for the segment '${s[s.length - 1] ?? ''}'.`);
		}
		const resource = key === '' ? 'user' : /attachments(\/\{\})?$/.test(key) ? 'attachment' : /^mailFolders(\/\{\})?(\/childFolders)?$/.test(key) ? 'mailFolder' : 'message';
		ctx.select = parseSelect(ctx.query, resource);
		const mailbox = authorize(ctx, mailboxRef === null ? null : mailboxRef, entry[0]);
		ctx.mailbox = mailbox;
		ctx.logRecord.mailbox = mailbox.address;
		return withConcurrency(mailbox, () => entry[1](mailbox));
	}
	function attachmentOf(message, id) {
		const attachment = message.attachments.find((a) => a.id === id);
		if (!attachment) throw itemNotFound();
		return attachment;
	}

	function concurrencyOf(mailbox) {
		if (!concurrency.has(mailbox.address)) concurrency.set(mailbox.address, { inFlight: 0, max: 0, throttled: 0 });
		return concurrency.get(mailbox.address);
	}
	async function withConcurrency(mailbox, fn) {
		const c = concurrencyOf(mailbox);
		if (c.inFlight >= settings.mailboxConcurrencyLimit) {
			c.throttled++;
			throw new GraphError(429, 'ApplicationThrottled', 'Application is over its MailboxConcurrency limit.', { 'retry-after': '1' });
		}
		c.inFlight++;
		c.max = Math.max(c.max, c.inFlight);
		try {
			if (settings.serviceTimeMs > 0) await sleep(settings.serviceTimeMs);
			return await fn();
		} finally {
			c.inFlight--;
		}
	}
	function sleep(ms) {
		return new Promise((resolve) => {
			const timer = setTimeout(() => {
				timers.delete(timer);
				resolve();
			}, ms);
			timers.add(timer);
		});
	}

	// ---- faults ----

	function matchesScope(rule, method, pathname) {
		return (!rule.method || lower(rule.method) === lower(method)) && (!rule.path || new RegExp(rule.path).test(pathname));
	}
	/** The first due fault for this request, consumed; null when none. */
	function takeFault(method, pathname, { batched = false } = {}) {
		for (const rule of faults) {
			if (rule.remaining <= 0 || !matchesScope(rule, method, pathname)) continue;
			if (batched && rule.kind === 'reset') continue; // a socket reset hits the whole $batch, not one part
			if (rule.kind === 'ratio') {
				if (random() >= rule.ratio) continue;
				return rule;
			}
			rule.remaining--;
			return rule;
		}
		return null;
	}
	function faultError(rule) {
		const headers = rule.retryAfter === undefined || rule.retryAfter === null ? {} : { 'retry-after': String(rule.retryAfter) };
		const known = {
			401: ['InvalidAuthenticationToken', 'Access token has expired or is not yet valid.'],
			429: ['TooManyRequests', 'Too many requests.'],
			500: ['InternalServerError', 'An internal server error occurred.'],
			502: ['BadGateway', 'Bad gateway.'],
			503: ['ServiceUnavailable', 'The service is temporarily unavailable.'],
			504: ['GatewayTimeout', 'The gateway timed out.'],
		}[rule.status] ?? ['UnknownError', 'Injected failure.'];
		return new GraphError(rule.status, rule.code ?? known[0], known[1], headers);
	}

	// ---- HTTP ----

	function errorBody(error, ctx) {
		return { error: { code: error.code, message: error.message, innerError: { date: iso(), 'request-id': ctx.requestId, 'client-request-id': ctx.clientRequestId } } };
	}
	function send(res, result, ctx) {
		if (res.resetAfter) {
			// processed, but the caller never learns the outcome
			if (result.stream) result.stream.destroy();
			res.socket?.destroy();
			return;
		}
		const headers = Object.fromEntries(Object.entries({ 'request-id': ctx.requestId, 'client-request-id': ctx.clientRequestId, ...(result.headers ?? {}) }).filter(([, v]) => v !== undefined && v !== null));
		if (result.stream) {
			res.writeHead(result.status, headers);
			result.stream.on('error', () => res.destroy());
			result.stream.pipe(res);
			return;
		}
		if (result.body === undefined) {
			res.writeHead(result.status, headers);
			res.end();
			return;
		}
		const text = JSON.stringify(result.body);
		res.writeHead(result.status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(text), ...headers });
		res.end(text);
	}
	function errorResult(error, ctx) {
		if (!(error instanceof GraphError)) error = new GraphError(500, 'InternalServerError', `fake-graph: ${error && error.stack ? error.stack : error}`);
		return { status: error.status, headers: error.headers, body: errorBody(error, ctx) };
	}

	/** Reads a request body up to `limit`; beyond it drains the rest and reports the size. */
	function readBody(req, limit) {
		return new Promise((resolve, reject) => {
			const chunks = [];
			let size = 0;
			req.on('data', (chunk) => {
				size += chunk.length;
				if (size <= limit) chunks.push(chunk);
			});
			req.on('end', () => resolve({ body: size <= limit ? Buffer.concat(chunks) : null, size }));
			req.on('error', reject);
		});
	}

	function logHeaders(headers) {
		const auth = headers.authorization;
		return {
			authorization: auth ? `${String(auth).split(' ')[0]} <redacted>` : null,
			prefer: headers.prefer ?? null,
			contentType: headers['content-type'] ?? null,
			contentRange: headers['content-range'] ?? null,
			contentLength: headers['content-length'] ?? null,
			clientRequestId: headers['client-request-id'] ?? null,
			userAgent: headers['user-agent'] ?? null,
		};
	}
	function preferences(headers) {
		const prefer = [].concat(headers.prefer ?? []).join(',');
		const bodyType = /outlook\.body-content-type\s*=\s*"?(text|html)"?/i.exec(prefer)?.[1];
		const pageSize = /odata\.maxpagesize\s*=\s*(\d+)/i.exec(prefer)?.[1];
		return { immutable: /IdType\s*=\s*"?ImmutableId"?/i.test(prefer), bodyType: bodyType ? lower(bodyType) : null, maxPageSize: pageSize ? Number(pageSize) : null };
	}

	function makeContext({ method, relative, headers, body, logRecord }) {
		const url = new URL(relative, 'https://graph.invalid/');
		const rawPath = url.pathname.replace(/^\/+/, '');
		const query = url.searchParams;
		const prefs = preferences(headers);
		const ctx = {
			method,
			rawPath,
			segments: rawPath.split('/').filter(Boolean).map((seg) => decodeURIComponent(seg)),
			query,
			headers,
			body: body ?? Buffer.alloc(0),
			...prefs,
			requestId: crypto.randomUUID(),
			clientRequestId: headers['client-request-id'] ?? crypto.randomUUID(),
			logRecord,
			expandAttachments: /(^|,)\s*attachments\s*($|,|\()/.test(query.get('$expand') ?? ''),
			// $expand=attachments($select=...): the expanded attachments carry only those properties
			expandAttachmentsSelect: /(?:^|,)\s*attachments\s*\(\s*\$select=([^);]*)/.exec(query.get('$expand') ?? '')?.[1].split(',').map((f) => f.trim()).filter(Boolean) ?? null,
			expandMessageSize: /singleValueExtendedProperties\(\$filter=id eq 'Integer 0x0E08'\)/i.test(query.get('$expand') ?? ''),
		};
		return ctx;
	}

	async function runOne(ctx) {
		try {
			const result = await route(ctx);
			if (ctx.bodyType && result.body) result.headers = { ...(result.headers ?? {}), 'preference-applied': `outlook.body-content-type="${ctx.bodyType}"` };
			return result;
		} catch (error) {
			return errorResult(error, ctx);
		}
	}

	async function handleBatch(req, outerCtx) {
		let json;
		try {
			json = JSON.parse(outerCtx.body.toString('utf8'));
		} catch {
			return errorResult(badRequest('BadRequest', 'Invalid batch payload format.'), outerCtx);
		}
		const list = json.requests;
		if (!Array.isArray(list) || !list.length) return errorResult(badRequest('BadRequest', 'Invalid batch payload format.'), outerCtx);
		if (list.length > MAX_BATCH) return errorResult(badRequest('BadRequest', `The number of requests in a batch exceeds the limit of ${MAX_BATCH}.`), outerCtx);
		const ids = new Set();
		for (const r of list) {
			if (!r || typeof r.id !== 'string' || !r.method || !r.url) return errorResult(badRequest('BadRequest', 'Each batch request needs id, method and url.'), outerCtx);
			if (ids.has(r.id)) return errorResult(badRequest('BadRequest', `Batch request id '${r.id}' is duplicated.`), outerCtx);
			ids.add(r.id);
		}
		const results = new Map();
		const pending = new Map();
		// Outlook runs at most 4 requests of a batch at a time
		let active = 0;
		const waiting = [];
		const acquire = () => (active < 4 ? (active++, Promise.resolve()) : new Promise((resolve) => waiting.push(resolve)));
		const release = () => (waiting.length ? waiting.shift()() : active--);
		const runPart = async (r) => {
			for (const dep of [].concat(r.dependsOn ?? [])) {
				if (!ids.has(dep) || dep === r.id) return { id: r.id, status: 400, body: errorBody(badRequest('BadRequest', `dependsOn '${dep}' is not in the batch.`), outerCtx) };
				const depResult = await pending.get(dep);
				if (!depResult || depResult.status >= 400) return { id: r.id, status: 424, body: errorBody(new GraphError(424, 'FailedDependency', 'A dependent request failed.'), outerCtx) };
			}
			await acquire();
			try {
				return await executePart(r);
			} finally {
				release();
			}
		};
		const executePart = async (r) => {
			const headers = { ...Object.fromEntries(Object.entries(r.headers ?? {}).map(([k, v]) => [lower(k), v])), authorization: req.headers.authorization };
			const body = r.body === undefined ? Buffer.alloc(0) : Buffer.from(typeof r.body === 'string' ? r.body : JSON.stringify(r.body));
			if (r.body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
			const relative = String(r.url).replace(/^\/?/, '/'); // relative to /v1.0, as documented
			const pathname = `/v1.0${relative.split('?')[0]}`;
			const logRecord = { at: Date.now(), method: r.method, path: pathname, query: relative.includes('?') ? relative.slice(relative.indexOf('?') + 1) : '', headers: logHeaders(headers), bodySize: body.length, status: null, batch: outerCtx.requestId, fault: null, mailbox: null };
			requests.push(logRecord);
			const ctx = (() => {
				try {
					return makeContext({ method: String(r.method).toUpperCase(), relative, headers, body, logRecord });
				} catch (error) {
					return { error };
				}
			})();
			let result;
			if (ctx.error) result = errorResult(ctx.error, { requestId: outerCtx.requestId });
			else {
				const rule = takeFault(ctx.method, pathname, { batched: true });
				if (rule) {
					logRecord.fault = `${rule.kind}:${rule.status}`;
					result = errorResult(faultError(rule), ctx);
				} else result = await runOne(ctx);
			}
			logRecord.status = result.status;
			const out = { id: r.id, status: result.status, headers: { ...(result.headers ?? {}) } };
			if (result.stream) {
				const chunks = [];
				for await (const chunk of result.stream) chunks.push(chunk);
				out.body = Buffer.concat(chunks).toString('base64');
			} else if (result.body !== undefined) {
				out.body = result.body;
				out.headers['content-type'] = out.headers['content-type'] ?? 'application/json';
			}
			return out;
		};
		// parts are created in order, so a dependsOn on a later part is refused, not deadlocked
		for (const r of list) {
			for (const dep of [].concat(r.dependsOn ?? [])) if (!pending.has(dep)) pending.set(dep, Promise.resolve(null));
			pending.set(r.id, runPart(r));
		}
		for (const r of list) results.set(r.id, await pending.get(r.id));
		// documented: responses may come in any order; a seeded shuffle keeps callers honest
		const order = list.map((r) => ({ id: r.id, key: random() })).sort((a, b) => a.key - b.key);
		return { status: 200, body: { responses: order.map((o) => results.get(o.id)) } };
	}

	async function handleUpload(req, res, url, record) {
		const ctx = { requestId: crypto.randomUUID(), clientRequestId: req.headers['client-request-id'] ?? crypto.randomUUID() };
		const match = /\/AttachmentSessions\('([^']+)'\)$/.exec(decodeURIComponent(url.pathname));
		const session = match ? uploadSessions.get(match[1]) : null;
		const reply = async (error, drain = true) => {
			if (drain) await readBody(req, 0).catch(() => {});
			record.status = error.status;
			send(res, errorResult(error, ctx), ctx);
		};
		if (req.headers.authorization) {
			return reply(new GraphError(401, 'InvalidAudience', 'The upload URL is pre-authenticated: a request with an Authorization header is refused (the audience of the token is invalid).'));
		}
		if (!session || url.searchParams.get('authtoken') !== session.authtoken) return reply(new GraphError(404, 'ErrorItemNotFound', 'The upload session was not found.'));
		if (session.expires < Date.now()) return reply(new GraphError(404, 'ErrorItemNotFound', 'The upload session has expired.'));
		// Outlook answers the next start offset alone (["2097152"]), unlike OneDrive's "start-end" ranges
		const status = () => ({ expirationDateTime: iso(session.expires), nextExpectedRanges: session.done ? [] : [String(session.received)] });
		if (req.method === 'GET') {
			await readBody(req, 0);
			record.status = 200;
			return send(res, { status: 200, body: status() }, ctx);
		}
		if (req.method === 'DELETE') {
			await readBody(req, 0);
			uploadSessions.delete(session.id);
			fs.rmSync(session.file, { force: true });
			record.status = 204;
			return send(res, { status: 204 }, ctx);
		}
		if (req.method !== 'PUT') return reply(new GraphError(405, 'ErrorInvalidRequest', 'Upload sessions take PUT, GET and DELETE.'));
		if (session.done) return reply(new GraphError(400, 'ErrorInvalidOperation', 'The upload session is already complete.'));
		const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(req.headers['content-range'] ?? '');
		const length = Number(req.headers['content-length']);
		if (!range) return reply(badRequest('ErrorInvalidContentRange', 'The Content-Range header is missing or malformed (bytes start-end/total).'));
		const [start, end, total] = range.slice(1).map(Number);
		if (total !== session.size) return reply(badRequest('ErrorInvalidContentRange', `The total size ${total} in Content-Range does not match the session's size ${session.size}.`));
		if (!Number.isInteger(length) || length !== end - start + 1) return reply(badRequest('ErrorInvalidContentRange', 'Content-Length does not match the Content-Range.'));
		if (start !== session.received || end >= session.size) {
			return reply(new GraphError(416, 'ErrorInvalidRange', `The range ${start}-${end} is not the next expected range ${session.received}-.`, {}));
		}
		// "iteratively upload ranges of bytes (up to 4 MB each time)" (createUploadSession docs)
		if (length > REQUEST_BODY_LIMIT) return reply(new GraphError(413, 'RequestEntityTooLarge', `A range of ${length} bytes is more than the 4 MB one PUT may carry.`));
		const last = end === session.size - 1;
		if (!last && length % settings.uploadChunkMultiple !== 0) return reply(badRequest('ErrorInvalidChunkSize', `Each chunk but the last must be a multiple of ${settings.uploadChunkMultiple} bytes; got ${length}.`));
		record.bodySize = length;
		// the chunk goes to the file as it arrives; the running hash advances only if it completes
		const hash = session.hash.copy();
		const out = fs.createWriteStream(session.file, { flags: 'a' });
		let got = 0;
		const ok = await new Promise((resolve) => {
			req.on('data', (chunk) => {
				got += chunk.length;
				hash.update(chunk);
			});
			req.on('aborted', () => resolve(false));
			req.on('close', () => {
				if (!req.complete) resolve(false);
			});
			req.on('error', () => resolve(false));
			req.pipe(out);
			out.on('finish', () => resolve(true));
			out.on('error', () => resolve(false));
		});
		if (!ok || got !== length) {
			out.destroy();
			if (!out.closed) await new Promise((resolve) => out.once('close', resolve));
			fs.truncateSync(session.file, session.received);
			if (res.destroyed || req.destroyed) return;
			return reply(badRequest('ErrorInvalidContentRange', `Received ${got} bytes, Content-Length said ${length}.`), false);
		}
		session.hash = hash;
		session.received = end + 1;
		session.chunks++;
		if (!last) {
			record.status = 200;
			return send(res, { status: 200, body: status() }, ctx);
		}
		session.done = true;
		const mailbox = session.mailbox;
		const message = mailbox.messages.get(session.messageId);
		if (!message) return reply(itemNotFound(), false);
		const attachment = { id: exchangeId('AAMkADa'), kind: 'file', name: session.name, contentType: session.contentType, isInline: session.isInline, contentId: session.contentId, size: session.size, file: session.file, sha256: session.hash.digest('hex'), lastModifiedDateTime: iso() };
		message.attachments.push(attachment);
		touch(mailbox, message);
		record.status = 201;
		const location = `${uploadBase}/api/v2.0/Users('${mailbox.id}')/Messages('${message.restId}')/Attachments('${attachment.id}')`;
		if (settings.uploadFinalBody) return send(res, { status: 201, headers: { location }, body: attachmentJson({ ...attachment, file: null }, {}) }, ctx);
		return send(res, { status: 201, headers: { location, 'content-length': '0' } }, ctx);
	}

	async function handleControl(req, res, url) {
		const ctx = { requestId: crypto.randomUUID() };
		if (!options.controlKey || req.headers['x-fake-control'] !== options.controlKey) return send(res, errorResult(new GraphError(403, 'Forbidden', 'control key required'), ctx), ctx);
		const { body } = await readBody(req, MB);
		const json = body && body.length ? JSON.parse(body.toString('utf8')) : {};
		const route = url.pathname.slice('/_fake/'.length);
		if (route === 'deliveries') return send(res, { status: 200, body: deliveries }, ctx);
		if (route === 'state') return send(res, { status: 200, body: { concurrency: Object.fromEntries(concurrency), requests: requests.length, deliveries: deliveries.length, faultsPending: faults.filter((f) => f.remaining > 0).length } }, ctx);
		if (route === 'faults') {
			if (json.clear) api.clearFaults();
			if (json.failNext) api.failNext(json.failNext.count, json.failNext);
			if (json.resetNext) api.resetNext(json.resetNext.count, json.resetNext);
			if (json.throttleRatio) api.throttleRatio(json.throttleRatio.ratio, json.throttleRatio);
			return send(res, { status: 204 }, ctx);
		}
		return send(res, errorResult(new GraphError(404, 'NotFound', 'no such control route'), ctx), ctx);
	}

	async function handle(req, res) {
		const url = new URL(req.url, 'https://127.0.0.1');
		const record = { at: Date.now(), seq: ++requestCounter, method: req.method, path: url.pathname, query: url.search.slice(1).replace(/(authtoken=)[^&]*/i, '$1<redacted>'), headers: logHeaders(req.headers), bodySize: 0, status: null, fault: null, mailbox: null, batch: null };
		if (url.pathname.startsWith('/_fake/')) return handleControl(req, res, url);
		requests.push(record);
		res.on('finish', () => {
			record.status = record.status ?? res.statusCode;
		});
		for (const listener of listeners) listener({ method: req.method, path: url.pathname, query: record.query });
		const rule = takeFault(req.method, url.pathname);
		if (rule && rule.kind === 'reset' && rule.when === 'before') {
			record.fault = 'reset-before';
			req.socket.destroy();
			return;
		}
		if (url.pathname.startsWith('/api/v2.0/')) {
			if (rule && rule.kind !== 'reset') {
				record.fault = `${rule.kind}:${rule.status}`;
				await readBody(req, 0);
				const ctx = { requestId: crypto.randomUUID() };
				return send(res, errorResult(faultError(rule), ctx), ctx);
			}
			if (rule) {
				record.fault = 'reset-after';
				res.resetAfter = true;
			}
			return handleUpload(req, res, url, record);
		}
		const { body, size } = await readBody(req, REQUEST_BODY_LIMIT);
		record.bodySize = size;
		const baseCtx = { requestId: crypto.randomUUID(), clientRequestId: req.headers['client-request-id'] ?? crypto.randomUUID() };
		if (!url.pathname.startsWith('/v1.0/')) return send(res, errorResult(badRequest('BadRequest', `Invalid version: ${url.pathname.split('/')[1] ?? ''}`), baseCtx), baseCtx);
		if (body === null) {
			record.status = 413;
			return send(res, errorResult(new GraphError(413, 'RequestEntityTooLarge', `The request body of ${size} bytes exceeds the limit of ${REQUEST_BODY_LIMIT} bytes (4 MB).`), baseCtx), baseCtx);
		}
		if (rule && rule.kind !== 'reset') {
			record.fault = `${rule.kind}:${rule.status}`;
			return send(res, errorResult(faultError(rule), baseCtx), baseCtx);
		}
		let ctx;
		try {
			ctx = makeContext({ method: req.method, relative: req.url.replace(/^\/v1\.0/, ''), headers: req.headers, body, logRecord: record });
		} catch (error) {
			return send(res, errorResult(error, baseCtx), baseCtx);
		}
		const result = ctx.segments[0] === '$batch' && req.method === 'POST' ? await handleBatch(req, ctx) : await runOne(ctx);
		if (rule && rule.kind === 'reset') {
			record.fault = 'reset-after';
			res.resetAfter = true;
		}
		record.status = result.status;
		send(res, result, ctx);
	}

	const server = https.createServer({ key: options.pki.key, cert: options.pki.cert }, (req, res) => {
		handle(req, res).catch(() => res.destroy());
	});
	await new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(options.port ?? 0, '127.0.0.1', () => {
			server.off('error', reject);
			resolve();
		});
	});
	const port = server.address().port;
	baseUrl = `https://127.0.0.1:${port}`;
	// `localhost` may resolve to ::1 first: listen there too when the host has IPv6
	const server6 = https.createServer({ key: options.pki.key, cert: options.pki.cert }, server.listeners('request')[0]);
	const has6 = await new Promise((resolve) => {
		server6.once('error', () => resolve(false));
		server6.listen(port, '::1', () => resolve(true));
	});
	uploadBase = `https://localhost:${port}`;

	const scopeOf = (o) => ({ method: o.method ?? null, path: o.path ? (o.path instanceof RegExp ? o.path.source : String(o.path)) : null });
	const api = {
		url: baseUrl,
		/** Graph root for the cloud table's graphHost (https://127.0.0.1:port). */
		host: baseUrl.replace(/^https:\/\//, ''),
		/** Where upload sessions live: https://localhost:port (a different host, as outlook.office.com is). */
		uploadUrl: uploadBase,
		requests,
		deliveries,
		addMailbox,
		addFolder,
		/** Puts a message straight into a folder (as if delivered from outside); returns its record. */
		addMessage(mailboxRef, { folder = 'inbox', ...input } = {}) {
			const mailbox = requireMailbox(mailboxRef);
			const fields = messageFields(input);
			return storeMessage(mailbox, folderOf(mailbox, folder), fields, { isDraft: Boolean(input.isDraft) });
		},
		mailbox: requireMailbox,
		folder: (mailboxRef, ref) => folderOf(requireMailbox(mailboxRef), ref),
		/** Messages of a folder (or the whole mailbox), oldest first: live records. */
		messages(mailboxRef, folder) {
			const mailbox = requireMailbox(mailboxRef);
			const f = folder ? folderOf(mailbox, folder) : null;
			return [...mailbox.messages.values()].filter((m) => !f || m.folderId === f.id).sort((a, b) => a.seq - b.seq);
		},
		message: (mailboxRef, id) => findMessage(requireMailbox(mailboxRef), id),
		/** A change made in Outlook: counts as a change for delta. */
		updateMessage(mailboxRef, id, patch) {
			const mailbox = requireMailbox(mailboxRef);
			const message = messageOf(mailbox, id);
			Object.assign(message, patch);
			touch(mailbox, message);
			return message;
		},
		moveMessage: (mailboxRef, id, folder) => {
			const mailbox = requireMailbox(mailboxRef);
			return moveMessage(mailbox, messageOf(mailbox, id), folderOf(mailbox, folder));
		},
		deleteMessage: (mailboxRef, id) => {
			const mailbox = requireMailbox(mailboxRef);
			removeMessage(mailbox, messageOf(mailbox, id));
		},
		/** Bytes of a stored attachment (reads the temp file of uploaded ones). */
		attachmentBytes(attachment) {
			return attachment.data ?? fs.readFileSync(attachment.file);
		},
		uploadSessions,
		/** Every delta token handed out so far answers 410 Gone from now on. */
		expireDeltaTokens() {
			let n = 0;
			for (const state of deltaTokens.values()) if (!state.expired) (state.expired = true), n++;
			deltaPages.clear();
			return n;
		},
		/** The next delta round (any folder) repeats up to `count` already reported messages, as Graph may. */
		replayDelta(count) {
			settings.deltaReplays = count;
		},
		/** Next `count` matching requests answer `status` (429|500|503|504 ...) with optional Retry-After seconds. */
		failNext(count, { status = 503, retryAfter, code, method, path } = {}) {
			faults.push({ kind: 'fail', remaining: count, status, retryAfter, code, ...scopeOf({ method, path }) });
		},
		/** Next `count` matching requests lose their socket: 'before' processing (safe) or 'after' (ambiguous). */
		resetNext(count, { when = 'before', method, path } = {}) {
			faults.push({ kind: 'reset', remaining: count, when, ...scopeOf({ method, path }) });
		},
		/** A share of matching requests answers 429 (seeded random) until clearFaults(). */
		throttleRatio(ratio, { status = 429, retryAfter = 1, method, path } = {}) {
			faults.push({ kind: 'ratio', remaining: Infinity, ratio, status, retryAfter, ...scopeOf({ method, path }) });
		},
		/** Exchange's Send As (from = address) or Send on Behalf (from = address, sender = the mailbox) for `mailbox`. */
		grantSendAs(mailboxRef, address, { onBehalf = false } = {}) {
			requireMailbox(mailboxRef)[onBehalf ? 'sendOnBehalf' : 'sendAs'].add(lower(address));
		},
		/**
		 * Calls `fn({method, path, query})` as each HTTP request arrives, before it is handled (e.g.
		 * to let mail arrive between two pages of a delta round); returns a function that removes it.
		 */
		onRequest(fn) {
			listeners.add(fn);
			return () => listeners.delete(fn);
		},
		/** Every token the identity minted so far is refused with 401 from now on (a renewed one works). */
		revokeIssuedTokens() {
			for (const t of identity.issuedTokens) revokedTokens.add(t);
			return revokedTokens.size;
		},
		clearFaults() {
			faults.length = 0;
		},
		setServiceTime(ms) {
			settings.serviceTimeMs = ms;
		},
		/** Sent mail reaches local Inboxes `ms` after the send was accepted (0: at once). */
		setDeliveryDelay(ms) {
			settings.deliveryDelayMs = ms;
		},
		setMailboxConcurrencyLimit(n) {
			settings.mailboxConcurrencyLimit = n ?? Infinity;
		},
		/** {inFlight, max, throttled} per mailbox address. */
		/** Live counters (tests may reset max/throttled between scenarios). */
		concurrency: (address) => concurrencyOf(requireMailbox(address)),
		close() {
			for (const timer of timers) clearTimeout(timer);
			const servers = has6 ? [server, server6] : [server];
			return Promise.all(
				servers.map(
					(s) =>
						new Promise((resolve) => {
							s.close(() => resolve());
							s.closeAllConnections();
						}),
				),
			).finally(() => fs.rmSync(tmpDir, { recursive: true, force: true }));
		},
	};
	return api;
}

/** --serve: a fake identity and a fake Graph in this process; prints where they are. */
async function serve(configText) {
	const config = configText ? JSON.parse(configText) : {};
	const { sharedTestPki } = require('./certs');
	const { startFakeIdentity } = require('./fake-identity');
	const pki = sharedTestPki();
	const identity = await startFakeIdentity({ pki });
	const tenantId = config.tenantId ?? crypto.randomUUID();
	const clientId = config.clientId ?? crypto.randomUUID();
	const clientSecret = config.clientSecret ?? `fake~${b64url(crypto.randomBytes(18))}`;
	identity.addTenant({ id: tenantId, domains: ['contoso.example'] });
	identity.addApp({ tenant: tenantId, clientId, secrets: [clientSecret], appRoles: config.appRoles ?? ['Mail.Send', 'Mail.ReadWrite'] });
	const controlKey = b64url(crypto.randomBytes(18));
	const { serviceTimeMs, mailboxConcurrencyLimit, seed, uploadFinalBody, uploadChunkMultiple, enforceSendAs } = config;
	const graph = await startFakeGraph({ identity, pki, serviceTimeMs, mailboxConcurrencyLimit, seed, uploadFinalBody, uploadChunkMultiple, enforceSendAs, controlKey });
	const list = config.mailboxes ?? [{ address: 'sender@contoso.example' }, { address: 'rcpt@contoso.example' }];
	for (const m of list) {
		graph.addMailbox(m);
		identity.grantMailbox({ tenant: tenantId, clientId, mailbox: m.address });
	}
	process.stdout.write(`${JSON.stringify({ url: graph.url, authorityHost: identity.authorityHost, tenantId, clientId, clientSecret, mailboxes: list.map((m) => m.address), controlKey, caPath: pki.caPath })}\n`);
	const stop = () => Promise.all([graph.close(), identity.close()]).then(() => process.exit(0));
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
	if (process.send) process.on('disconnect', stop); // parent gone (spawned with an IPC channel)
}

if (require.main === module && process.argv.includes('--serve')) {
	const arg = process.argv[process.argv.indexOf('--serve') + 1];
	serve(arg && !arg.startsWith('--') ? arg : process.env.FAKE_GRAPH_CONFIG).catch((error) => {
		console.error(error);
		process.exit(1);
	});
}

module.exports = { startFakeGraph, GRAPH_AUDIENCE, UPLOAD_CHUNK_UNIT, REQUEST_BODY_LIMIT };
