'use strict';
// Self-check for the fake EWS server: plain node https requests and fast-xml-parser (not the
// package's EWS transport), NTLM messages from @ewsjs/ntlm-client verified by impacket, Bearer
// tokens from the fake identity platform; each documented behaviour the package relies on.
// Run: node test/peers/fake-ews.check.js  (prints "N passed, M failed" last).
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const { XMLParser, XMLBuilder } = require('fast-xml-parser');
const ntlm = require('@ewsjs/ntlm-client');
const { createTestPki } = require('./certs');
const { createChecks } = require('./check-runner');
const { startFakeIdentity } = require('./fake-identity');
const { startFakeEws, ensureImpacketInstalled } = require('./fake-ews');

const TENANT = '7a1c2b7e-3d4a-4c5b-9e8f-0a1b2c3d4e5f';
const APP = 'e0e0e0e0-1111-2222-3333-444444444444';
const NO_ROLE_APP = 'f0f0f0f0-1111-2222-3333-444444444444';
const SECRET = 'ews~secret';
const ALICE = 'alice@contoso.example';
const BOB = 'bob@contoso.example';
const SHARED = 'shared@contoso.example';
const OTHER = 'other@contoso.example';
const PASSWORD = 'Pa55-wörd&<x>';
const T = 'http://schemas.microsoft.com/exchange/services/2006/types';
const M = 'http://schemas.microsoft.com/exchange/services/2006/messages';

const { check, counts } = createChecks({ stackLines: 6 });
const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', removeNSPrefix: true, parseTagValue: false, trimValues: false, htmlEntities: true });
const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: true, suppressBooleanAttributes: false });
const arr = (v) => (v === undefined || v === null || v === '' ? [] : Array.isArray(v) ? v : [v]);
const text = (v) => (v && typeof v === 'object' ? v['#text'] ?? '' : v);

/** A SOAP envelope built by fast-xml-parser's builder (every value escaped). */
function soap(operation, body, { version = 'Exchange2013_SP1', impersonate } = {}) {
	const header = {};
	if (version) header['t:RequestServerVersion'] = { '@_Version': version };
	if (impersonate) header['t:ExchangeImpersonation'] = { 't:ConnectingSID': { 't:PrimarySmtpAddress': impersonate } };
	return `<?xml version="1.0" encoding="utf-8"?>${builder.build({
		'soap:Envelope': { '@_xmlns:soap': 'http://schemas.xmlsoap.org/soap/envelope/', '@_xmlns:t': T, '@_xmlns:m': M, 'soap:Header': header, 'soap:Body': { [`m:${operation}`]: body } },
	})}`;
}

function post(url, body, { headers = {}, ca, agent = false } = {}) {
	return new Promise((resolve, reject) => {
		const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
		const req = https.request(url, { method: 'POST', headers: { 'content-type': 'text/xml; charset=utf-8', 'content-length': payload.length, ...headers }, ca, agent }, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => {
				const raw = Buffer.concat(chunks).toString('utf8');
				let xml = null;
				if (/xml/.test(res.headers['content-type'] ?? '') && raw) xml = parser.parse(raw);
				resolve({ status: res.statusCode, headers: res.headers, raw, xml, socket: res.socket });
			});
			res.on('error', reject);
		});
		req.on('error', reject);
		req.end(payload);
	});
}

/** ResponseMessages of an answer, namespace prefixes removed. */
function messages(res, operation) {
	assert.equal(res.status, 200, `HTTP ${res.status}: ${res.raw.slice(0, 400)}`);
	const body = res.xml.Envelope.Body[`${operation}Response`];
	assert.ok(body, `no ${operation}Response in ${res.raw.slice(0, 300)}`);
	return arr(body.ResponseMessages[`${operation}ResponseMessage`]);
}
function faultCode(res) {
	assert.equal(res.status, 500, `HTTP ${res.status}: ${res.raw.slice(0, 300)}`);
	return text(res.xml.Envelope.Body.Fault.detail.ResponseCode);
}

function rawMessage({ from = BOB, to = ALICE, cc, bcc, subject = 'hello', body = 'body text', date = new Date(), attachment, html, messageId = `<${crypto.randomUUID()}@contoso.example>` } = {}) {
	const encodedSubject = /[^\x20-\x7e]/.test(subject) ? `=?UTF-8?B?${Buffer.from(subject).toString('base64')}?=` : subject;
	const lines = [`From: ${from}`, `To: ${to}`];
	if (cc) lines.push(`Cc: ${cc}`);
	if (bcc) lines.push(`Bcc: ${bcc}`);
	lines.push(`Subject: ${encodedSubject}`, `Date: ${date.toUTCString()}`, `Message-ID: ${messageId}`, 'MIME-Version: 1.0');
	if (attachment) {
		lines.push('Content-Type: multipart/mixed; boundary="b1"', '', '--b1', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64', '', Buffer.from(body).toString('base64'), '--b1',
			`Content-Type: ${attachment.type ?? 'application/octet-stream'}; name="${attachment.name}"`, `Content-Disposition: attachment; filename="${attachment.name}"`, 'Content-Transfer-Encoding: base64', '', attachment.content.toString('base64'), '--b1--', '');
	} else if (html) {
		lines.push('Content-Type: text/html; charset=utf-8', 'Content-Transfer-Encoding: base64', '', Buffer.from(html).toString('base64'), '');
	} else {
		lines.push('Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64', '', Buffer.from(body).toString('base64'), '');
	}
	return Buffer.from(lines.join('\r\n'));
}

/**
 * An NTLMv1 AUTHENTICATE message (24-byte DES responses, MS-NLMP 3.3.1), made here because
 * @ewsjs/ntlm-client 3.0.1's v1 path hands the 7-byte key to des.js and throws. Its DES and MD4
 * come from the libraries that client uses.
 */
function ntlmV1Type3(type2, username, password, workstation, domain) {
	const from = { paths: [require.resolve('@ewsjs/ntlm-client')] };
	const des = require(require.resolve('des.js', from));
	const md4 = require(require.resolve('js-md4', from));
	const desKey = (seven) => {
		const key = Buffer.alloc(8);
		const bits = BigInt(`0x${seven.toString('hex')}`);
		for (let i = 0; i < 8; i++) key[i] = Number((bits >> BigInt(49 - 7 * i)) & 0x7fn) << 1;
		return key;
	};
	const ntHash = Buffer.from(md4.arrayBuffer(Buffer.from(password, 'utf16le')));
	const padded = Buffer.concat([ntHash, Buffer.alloc(5)]);
	const response = Buffer.concat([0, 7, 14].map((at) => Buffer.from(des.DES.create({ type: 'encrypt', key: desKey(padded.subarray(at, at + 7)) }).update(type2.challenge))));
	const encode = (value) => Buffer.from(value, 'utf16le');
	const payload = [encode(domain), encode(username), encode(workstation), response, response];
	const header = Buffer.alloc(64);
	header.write('NTLMSSP\0', 0, 'latin1');
	header.writeUInt32LE(3, 8);
	let offset = 64;
	const slots = [28, 36, 44, 12, 20]; // domain, user, workstation, LM, NT
	payload.forEach((part, index) => {
		header.writeUInt16LE(part.length, slots[index]);
		header.writeUInt16LE(part.length, slots[index] + 2);
		header.writeUInt32LE(offset, slots[index] + 4);
		offset += part.length;
	});
	header.writeUInt32LE(offset, 56); // empty session key at the end
	header.writeUInt32LE(0x00000201, 60); // NEGOTIATE_NTLM | NEGOTIATE_UNICODE, no extended session security
	return `NTLM ${Buffer.concat([header, ...payload]).toString('base64')}`;
}

async function main() {
	ensureImpacketInstalled();
	const pki = createTestPki();
	const ca = pki.ca;
	const identity = await startFakeIdentity({ pki });
	identity.addTenant({ id: TENANT, domains: ['contoso.example'] });
	identity.addApp({ tenant: TENANT, clientId: APP, secrets: [SECRET], appRoles: ['full_access_as_app'] });
	identity.addApp({ tenant: TENANT, clientId: NO_ROLE_APP, secrets: [SECRET], appRoles: ['Mail.Read'] });
	const ews = await startFakeEws({ pki, identity });
	for (const address of [ALICE, BOB, SHARED, OTHER]) ews.addMailbox({ address, displayName: address.split('@')[0].toUpperCase() });
	ews.addUser({ username: 'alice', password: PASSWORD, mailbox: ALICE, delegateOf: [SHARED], sendAs: [SHARED] });
	ews.addUser({ username: 'bob', password: 'bob-pw', mailbox: BOB });
	ews.addUser({ username: 'dave', password: 'dave-pw', mailbox: 'dave@contoso.example', delegateOf: [SHARED] });
	ews.addMailbox({ address: 'dave@contoso.example' });
	ews.grantApp({ clientId: APP, mailboxes: [ALICE, BOB] });

	const basic = (user = 'CONTOSO\\alice', password = PASSWORD) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });
	const call = (operation, body, { auth = basic(), headers = {}, ...soapOptions } = {}) => post(ews.url, soap(operation, body, soapOptions), { ca, headers: { ...auth, ...headers } });
	const appToken = (roles = ['full_access_as_app'], clientId = APP, audience = 'https://outlook.office365.com') => identity.mintAccessToken({ tenant: TENANT, clientId, audience, roles });
	const bearer = (token) => ({ authorization: `Bearer ${token}` });
	const inboxShape = { 'm:FolderShape': { 't:BaseShape': 'Default' }, 'm:FolderIds': { 't:DistinguishedFolderId': { '@_Id': 'inbox' } } };

	// ---- seed ----
	const base = Date.parse('2026-11-01T10:00:00Z');
	const seeded = [];
	for (let i = 0; i < 25; i++) {
		seeded.push(ews.deliver(ALICE, rawMessage({ subject: `Report ${String(i).padStart(2, '0')}`, from: i % 5 === 0 ? 'Carol <carol@fabrikam.example>' : BOB, date: new Date(base + i * 60000) }), { receivedAt: base + i * 60000, isRead: i % 2 === 0 }));
	}
	const withAttachment = ews.deliver(ALICE, rawMessage({ subject: 'with file', attachment: { name: 'data & <more>.bin', content: crypto.randomBytes(3000) } }), { receivedAt: base + 30 * 60000 });

	// ---- GetFolder / FindFolder / CreateFolder ----

	await check('GetFolder inbox (Basic): ServerVersionInfo header, DisplayName, counts, FolderId with ChangeKey', async () => {
		const res = await call('GetFolder', inboxShape);
		assert.match(res.raw, /<h:ServerVersionInfo [^>]*Version="V2017_07_11"/);
		assert.match(res.raw, /<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError<\/m:ResponseCode>/);
		const [message] = messages(res, 'GetFolder');
		const folder = message.Folders.Folder;
		assert.equal(folder.DisplayName, 'Inbox');
		assert.equal(folder.TotalCount, '26');
		assert.equal(folder.UnreadCount, String(ews.items(ALICE).filter((i) => !i.isRead).length));
		assert.equal(folder.ChildFolderCount, '0');
		assert.ok(folder.FolderId['@_Id'] && folder.FolderId['@_ChangeKey']);
		assert.equal(folder.FolderId['@_Id'], ews.folders(ALICE).find((f) => f.distinguishedId === 'inbox').id);
	});
	await check('GetFolder by FolderId, and two folders in one request answer two messages (one ErrorFolderNotFound)', async () => {
		const sentId = ews.folders(ALICE).find((f) => f.distinguishedId === 'sentitems').id;
		const res = await call('GetFolder', { 'm:FolderShape': { 't:BaseShape': 'IdOnly', 't:AdditionalProperties': { 't:FieldURI': [{ '@_FieldURI': 'folder:DisplayName' }, { '@_FieldURI': 'folder:ParentFolderId' }] } }, 'm:FolderIds': { 't:FolderId': [{ '@_Id': sentId }, { '@_Id': 'AAMkAGnope' }] } });
		const [ok, missing] = messages(res, 'GetFolder');
		assert.equal(ok.Folders.Folder.DisplayName, 'Sent Items');
		assert.equal(ok.Folders.Folder.TotalCount, undefined, 'IdOnly + DisplayName only');
		assert.equal(ok.Folders.Folder.ParentFolderId['@_Id'], ews.folders(ALICE).find((f) => f.distinguishedId === 'msgfolderroot').id);
		assert.equal(missing['@_ResponseClass'], 'Error');
		assert.equal(missing.ResponseCode, 'ErrorFolderNotFound');
	});
	const nastyFolder = 'Projekte & <Ärger> "quotes" \'apos\' 日本';
	await check('CreateFolder and FindFolder (Shallow/Deep, DisplayName restriction): XML specials and non-ASCII round-trip', async () => {
		const res = await call('CreateFolder', { 'm:ParentFolderId': { 't:DistinguishedFolderId': { '@_Id': 'msgfolderroot' } }, 'm:Folders': { 't:Folder': { 't:DisplayName': nastyFolder } } });
		const [created] = messages(res, 'CreateFolder');
		const id = created.Folders.Folder.FolderId['@_Id'];
		assert.equal(ews.folders(ALICE).find((f) => f.id === id).displayName, nastyFolder);
		ews.addFolder(ALICE, 'Sub', id);
		const dup = messages(await call('CreateFolder', { 'm:ParentFolderId': { 't:DistinguishedFolderId': { '@_Id': 'msgfolderroot' } }, 'm:Folders': { 't:Folder': { 't:DisplayName': nastyFolder } } }), 'CreateFolder');
		assert.equal(dup[0].ResponseCode, 'ErrorFolderExists');
		const find = (traversal, restriction) => call('FindFolder', { '@_Traversal': traversal, 'm:FolderShape': { 't:BaseShape': 'Default' }, ...(restriction ? { 'm:Restriction': restriction } : {}), 'm:ParentFolderIds': { 't:DistinguishedFolderId': { '@_Id': 'msgfolderroot' } } });
		const shallow = messages(await find('Shallow'), 'FindFolder')[0];
		const names = arr(shallow.RootFolder.Folders.Folder).map((f) => f.DisplayName);
		assert.ok(names.includes(nastyFolder) && names.includes('Inbox') && !names.includes('Sub'));
		const deep = messages(await find('Deep'), 'FindFolder')[0];
		assert.ok(arr(deep.RootFolder.Folders.Folder).some((f) => f.DisplayName === 'Sub'));
		assert.equal(deep.RootFolder['@_TotalItemsInView'], String(arr(deep.RootFolder.Folders.Folder).length));
		const named = messages(await find('Deep', { 't:IsEqualTo': { 't:FieldURI': { '@_FieldURI': 'folder:DisplayName' }, 't:FieldURIOrConstant': { 't:Constant': { '@_Value': nastyFolder } } } }), 'FindFolder')[0];
		assert.deepEqual(arr(named.RootFolder.Folders.Folder).map((f) => f.DisplayName), [nastyFolder]);
		const raw = (await find('Shallow')).raw;
		assert.ok(raw.includes('Projekte &amp; &lt;Ärger&gt; &quot;quotes&quot; &apos;apos&apos; 日本'), 'escaped by the builder, UTF-8 as is');
	});

	// ---- FindItem ----

	const findItems = (body, options) => call('FindItem', { '@_Traversal': 'Shallow', 'm:ItemShape': { 't:BaseShape': 'IdOnly', 't:AdditionalProperties': { 't:FieldURI': [{ '@_FieldURI': 'item:Subject' }, { '@_FieldURI': 'item:DateTimeReceived' }, { '@_FieldURI': 'message:IsRead' }] } }, ...body, 'm:ParentFolderIds': { 't:DistinguishedFolderId': { '@_Id': 'inbox' } } }, options);
	const subjectsOf = (message) => arr(message.RootFolder.Items.Message).map((m) => m.Subject);

	await check('FindItem paging: IndexedPageItemView offsets, TotalItemsInView, IncludesLastItemInRange, newest first, no overlap', async () => {
		const all = [];
		let offset = 0;
		for (;;) {
			const [page] = messages(await findItems({ 'm:IndexedPageItemView': { '@_MaxEntriesReturned': '10', '@_Offset': String(offset), '@_BasePoint': 'Beginning' }, 'm:SortOrder': { 't:FieldOrder': { '@_Order': 'Descending', 't:FieldURI': { '@_FieldURI': 'item:DateTimeReceived' } } } }), 'FindItem');
			assert.equal(page.RootFolder['@_TotalItemsInView'], '26');
			const got = arr(page.RootFolder.Items.Message);
			all.push(...got);
			offset = Number(page.RootFolder['@_IndexedPagingOffset']);
			assert.equal(offset, all.length);
			if (page.RootFolder['@_IncludesLastItemInRange'] === 'true') break;
			assert.equal(got.length, 10);
		}
		assert.equal(all.length, 26);
		assert.equal(new Set(all.map((m) => m.ItemId['@_Id'])).size, 26);
		assert.equal(all[0].Subject, 'with file');
		assert.equal(all[1].Subject, 'Report 24');
		assert.equal(all[25].Subject, 'Report 00');
		assert.equal(all[25].IsRead, 'true');
		assert.equal(all[25].DateTimeReceived, '2026-11-01T10:00:00Z');
		const [ascending] = messages(await findItems({ 'm:IndexedPageItemView': { '@_MaxEntriesReturned': '3', '@_Offset': '0', '@_BasePoint': 'Beginning' }, 'm:SortOrder': { 't:FieldOrder': { '@_Order': 'Ascending', 't:FieldURI': { '@_FieldURI': 'item:DateTimeReceived' } } } }), 'FindItem');
		assert.deepEqual(subjectsOf(ascending), ['Report 00', 'Report 01', 'Report 02']);
		const [fromEnd] = messages(await findItems({ 'm:IndexedPageItemView': { '@_MaxEntriesReturned': '2', '@_Offset': '0', '@_BasePoint': 'End' }, 'm:SortOrder': { 't:FieldOrder': { '@_Order': 'Ascending', 't:FieldURI': { '@_FieldURI': 'item:DateTimeReceived' } } } }), 'FindItem');
		assert.deepEqual(subjectsOf(fromEnd), ['Report 24', 'with file']);
	});
	const restricted = async (restriction) => subjectsOf(messages(await findItems({ 'm:IndexedPageItemView': { '@_MaxEntriesReturned': '100', '@_Offset': '0', '@_BasePoint': 'Beginning' }, 'm:Restriction': restriction, 'm:SortOrder': { 't:FieldOrder': { '@_Order': 'Ascending', 't:FieldURI': { '@_FieldURI': 'item:DateTimeReceived' } } } }), 'FindItem')[0]);
	const field = (uri) => ({ 't:FieldURI': { '@_FieldURI': uri } });
	const constant = (value) => ({ 't:FieldURIOrConstant': { 't:Constant': { '@_Value': value } } });
	await check('FindItem restrictions: And/Or/Not, IsEqualTo/IsNotEqualTo, IsGreaterThan(OrEqualTo), IsLessThan, Contains modes, HasAttachments, From (0x5D02)', async () => {
		const unread = await restricted({ 't:IsEqualTo': { ...field('message:IsRead'), ...constant('false') } });
		assert.equal(unread.length, 13);
		assert.ok(unread.every((s) => s === 'with file' || Number(s.slice(-2)) % 2 === 1));
		const window = await restricted({ 't:And': { 't:IsGreaterThanOrEqualTo': { ...field('item:DateTimeReceived'), ...constant('2026-11-01T10:05:00Z') }, 't:IsLessThan': { ...field('item:DateTimeReceived'), ...constant('2026-11-01T10:08:00Z') } } });
		assert.deepEqual(window, ['Report 05', 'Report 06', 'Report 07']);
		const after = await restricted({ 't:IsGreaterThan': { ...field('item:DateTimeReceived'), ...constant('2026-11-01T10:23:00Z') } });
		assert.deepEqual(after, ['Report 24', 'with file']);
		const before = await restricted({ 't:IsLessThanOrEqualTo': { ...field('item:DateTimeReceived'), ...constant('2026-11-01T10:01:00Z') } });
		assert.deepEqual(before, ['Report 00', 'Report 01']);
		assert.deepEqual(await restricted({ 't:Contains': { '@_ContainmentMode': 'Substring', '@_ContainmentComparison': 'IgnoreCase', ...field('item:Subject'), 't:Constant': { '@_Value': 'REPORT 1' } } }), ['Report 10', 'Report 11', 'Report 12', 'Report 13', 'Report 14', 'Report 15', 'Report 16', 'Report 17', 'Report 18', 'Report 19']);
		assert.deepEqual(await restricted({ 't:Contains': { '@_ContainmentMode': 'Substring', '@_ContainmentComparison': 'Exact', ...field('item:Subject'), 't:Constant': { '@_Value': 'REPORT 1' } } }), []);
		assert.deepEqual(await restricted({ 't:Contains': { '@_ContainmentMode': 'Prefixed', '@_ContainmentComparison': 'IgnoreCase', ...field('item:Subject'), 't:Constant': { '@_Value': 'with' } } }), ['with file']);
		assert.deepEqual(await restricted({ 't:Contains': { '@_ContainmentMode': 'FullString', '@_ContainmentComparison': 'IgnoreCase', ...field('item:Subject'), 't:Constant': { '@_Value': 'report 03' } } }), ['Report 03']);
		assert.deepEqual(await restricted({ 't:IsEqualTo': { ...field('item:HasAttachments'), ...constant('true') } }), ['with file']);
		const carol = await restricted({ 't:IsEqualTo': { 't:ExtendedFieldURI': { '@_PropertyTag': '0x5D02', '@_PropertyType': 'String' }, ...constant('carol@fabrikam.example') } });
		assert.deepEqual(carol, ['Report 00', 'Report 05', 'Report 10', 'Report 15', 'Report 20']);
		const notCarolRead = await restricted({ 't:And': { 't:Not': { 't:Contains': { '@_ContainmentMode': 'Substring', '@_ContainmentComparison': 'IgnoreCase', 't:ExtendedFieldURI': { '@_PropertyTag': '0x5D02', '@_PropertyType': 'String' }, 't:Constant': { '@_Value': 'fabrikam' } } }, 't:IsEqualTo': { ...field('message:IsRead'), ...constant('true') }, 't:IsNotEqualTo': { ...field('item:Subject'), ...constant('Report 02') } } });
		assert.deepEqual(notCarolRead, ['Report 04', 'Report 06', 'Report 08', 'Report 12', 'Report 14', 'Report 16', 'Report 18', 'Report 22', 'Report 24']);
		const either = await restricted({ 't:Or': { 't:IsEqualTo': [{ ...field('item:Subject'), ...constant('report 01') }, { ...field('item:Subject'), ...constant('Report 02') }] } });
		assert.deepEqual(either, ['Report 01', 'Report 02']);
		assert.deepEqual(await restricted({ 't:IsEqualTo': { ...field('message:From'), ...constant('carol@fabrikam.example') } }), carol);
		assert.equal((await restricted({ 't:Contains': { '@_ContainmentMode': 'Substring', '@_ContainmentComparison': 'IgnoreCase', ...field('item:DisplayTo'), 't:Constant': { '@_Value': 'alice' } } })).length, 26);
	});
	await check('FindItem with an unknown FieldURI answers ErrorInvalidPropertyRequest; unqueryable path ErrorUnsupportedPathForQuery', async () => {
		const [bad] = messages(await findItems({ 'm:Restriction': { 't:IsEqualTo': { ...field('item:NoSuchThing'), ...constant('x') } } }), 'FindItem');
		assert.equal(bad['@_ResponseClass'], 'Error');
		assert.equal(bad.ResponseCode, 'ErrorInvalidPropertyRequest');
		const [body] = messages(await findItems({ 'm:Restriction': { 't:IsEqualTo': { ...field('item:Attachments'), ...constant('x') } } }), 'FindItem');
		assert.equal(body.ResponseCode, 'ErrorUnsupportedPathForQuery');
	});

	// ---- GetItem / GetAttachment ----

	await check('GetItem: several ItemIds, each its own message; a missing one ErrorItemNotFound; properties, Text body, MIME base64, attachments', async () => {
		const res = await call('GetItem', {
			'm:ItemShape': { 't:BaseShape': 'IdOnly', 't:IncludeMimeContent': 'true', 't:BodyType': 'Text', 't:AdditionalProperties': { 't:FieldURI': ['item:Subject', 'item:Body', 'item:TextBody', 'message:IsRead', 'item:Flag', 'item:Size', 'item:DateTimeReceived', 'item:DateTimeSent', 'message:InternetMessageId', 'item:ConversationId', 'item:Attachments', 'message:From', 'message:ToRecipients', 'message:CcRecipients', 'message:ReplyTo', 'item:HasAttachments', 'item:ParentFolderId'].map((f) => ({ '@_FieldURI': f })) } },
			'm:ItemIds': { 't:ItemId': [{ '@_Id': withAttachment }, { '@_Id': 'AAMkAGdoesnotexist=' }, { '@_Id': seeded[3] }] },
		});
		const [first, missing, third] = messages(res, 'GetItem');
		const item = first.Items.Message;
		assert.equal(item.ItemId['@_Id'], withAttachment);
		assert.equal(item.Subject, 'with file');
		assert.equal(text(item.Body), 'body text');
		assert.equal(item.Body['@_BodyType'], 'Text');
		assert.equal(text(item.TextBody), 'body text');
		assert.equal(item.IsRead, 'false');
		assert.equal(item.Flag.FlagStatus, 'NotFlagged');
		assert.equal(item.HasAttachments, 'true');
		assert.equal(item.MimeContent['@_CharacterSet'], 'UTF-8');
		assert.ok(Buffer.from(text(item.MimeContent), 'base64').equals(ews.items(ALICE).find((i) => i.id === withAttachment).mime), 'MIME byte for byte');
		assert.equal(item.Size, String(ews.items(ALICE).find((i) => i.id === withAttachment).mime.length));
		assert.equal(item.From.Mailbox.EmailAddress, BOB);
		assert.equal(item.ToRecipients.Mailbox.EmailAddress, ALICE);
		assert.ok(item.ConversationId['@_Id']);
		assert.match(item.InternetMessageId, /^<.+@contoso\.example>$/);
		const attachment = item.Attachments.FileAttachment;
		assert.equal(attachment.Name, 'data & <more>.bin');
		assert.equal(attachment.Size, '3000');
		assert.equal(attachment.IsInline, 'false');
		assert.equal(item.ParentFolderId['@_Id'], ews.folders(ALICE).find((f) => f.distinguishedId === 'inbox').id);
		assert.equal(missing['@_ResponseClass'], 'Error');
		assert.equal(missing.ResponseCode, 'ErrorItemNotFound');
		assert.equal(third.Items.Message.Subject, 'Report 03');
		assert.equal(third.Items.Message.IsRead, 'false');
		const got = messages(await call('GetAttachment', { 'm:AttachmentIds': { 't:AttachmentId': [{ '@_Id': attachment.AttachmentId['@_Id'] }, { '@_Id': 'AAMkAGnone=' }] } }), 'GetAttachment');
		const file = got[0].Attachments.FileAttachment;
		assert.ok(Buffer.from(file.Content, 'base64').equals((await ews.item(withAttachment)).attachments[0].content));
		assert.equal(got[1].ResponseCode, 'ErrorItemNotFound');
	});
	await check('GetItem HTML body of an HTML message; Default shape; XML special characters and non-ASCII subjects round-trip', async () => {
		const subject = 'Ümlaut & <tags> "q" \'a\' — 😀 ]]> &amp;';
		const id = ews.deliver(ALICE, rawMessage({ subject, html: '<p>Hi &amp; <b>there</b> — ü</p>' }));
		const [message] = messages(await call('GetItem', { 'm:ItemShape': { 't:BaseShape': 'Default', 't:BodyType': 'HTML' }, 'm:ItemIds': { 't:ItemId': { '@_Id': id } } }), 'GetItem');
		assert.equal(message.Items.Message.Subject, subject);
		assert.equal(message.Items.Message.Body['@_BodyType'], 'HTML');
		assert.equal(text(message.Items.Message.Body), '<p>Hi &amp; <b>there</b> — ü</p>');
		assert.equal(ews.items(ALICE).find((i) => i.id === id).subject, subject);
		const [found] = messages(await findItems({ 'm:Restriction': { 't:IsEqualTo': { ...field('item:Subject'), ...constant(subject) } } }), 'FindItem');
		assert.deepEqual(subjectsOf(found), [subject]);
	});

	await check('mail from strangers: raw bytes without headers and XML-illegal characters still answer well-formed XML', async () => {
		const garbage = ews.deliver(ALICE, Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x0a, 0x0d, 0x3c, 0x26]));
		const control = ews.deliver(ALICE, Buffer.from('Subject: bell\u0007 and null\u0000 & <x>\r\nFrom: "E\u0001vil" <evil@fabrikam.example>\r\n\r\nbody\u0002'));
		const res = await call('GetItem', { 'm:ItemShape': { 't:BaseShape': 'Default', 't:BodyType': 'Text' }, 'm:ItemIds': { 't:ItemId': [{ '@_Id': garbage }, { '@_Id': control }] } });
		assert.doesNotMatch(res.raw, /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/, 'no character XML 1.0 cannot carry');
		const [first, second] = messages(res, 'GetItem');
		assert.equal(first.ResponseCode, 'NoError');
		assert.equal(second.Items.Message.Subject, 'bell\uFFFD and null\uFFFD & <x>');
		assert.equal(second.Items.Message.From.Mailbox.EmailAddress, 'evil@fabrikam.example');
		for (const id of [garbage, control]) await call('DeleteItem', { '@_DeleteType': 'HardDelete', 'm:ItemIds': { 't:ItemId': { '@_Id': id } } });
	});
	await check('requests as other clients write them: other prefixes, whitespace, character references; malformed XML is a SOAP fault', async () => {
		const pretty = `<?xml version="1.0" encoding="utf-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:typ="${T}" xmlns:mes="${M}">
  <soapenv:Header>
    <typ:RequestServerVersion Version="Exchange2016" />
  </soapenv:Header>
  <soapenv:Body>
    <mes:FindItem Traversal="Shallow">
      <mes:ItemShape>
        <typ:BaseShape>IdOnly</typ:BaseShape>
        <typ:AdditionalProperties>
          <typ:FieldURI FieldURI="item:Subject" />
        </typ:AdditionalProperties>
      </mes:ItemShape>
      <mes:Restriction>
        <typ:IsEqualTo>
          <typ:FieldURI FieldURI="item:Subject" />
          <typ:FieldURIOrConstant><typ:Constant Value="&#82;eport &#x30;7" /></typ:FieldURIOrConstant>
        </typ:IsEqualTo>
      </mes:Restriction>
      <mes:ParentFolderIds>
        <typ:DistinguishedFolderId Id="inbox" />
      </mes:ParentFolderIds>
    </mes:FindItem>
  </soapenv:Body>
</soapenv:Envelope>`;
		const [found] = messages(await post(ews.url, pretty, { ca, headers: basic() }), 'FindItem');
		assert.deepEqual(subjectsOf(found), ['Report 07']);
		const broken = await post(ews.url, '<soap:Envelope><soap:Body><m:GetFolder>', { ca, headers: basic() });
		assert.equal(faultCode(broken), 'ErrorSchemaValidation');
	});
	await check('NTLM on two sockets at once: each handshake verified on its own, each socket signed in as its user', async () => {
		const agents = [new https.Agent({ keepAlive: true, maxSockets: 1, ca }), new https.Agent({ keepAlive: true, maxSockets: 1, ca })];
		try {
			const [a, b] = await Promise.all([ntlmHandshake(agents[0]), ntlmHandshake(agents[1], { username: 'bob', password: 'bob-pw' })]);
			assert.equal(a.answer.status, 200);
			assert.equal(b.answer.status, 200);
			const [asAlice, asBob] = await Promise.all(agents.map((agent) => post(ews.url, soap('GetFolder', inboxShape), { ca, agent })));
			assert.equal(messages(asAlice, 'GetFolder')[0].Folders.Folder.FolderId['@_Id'], ews.folders(ALICE).find((f) => f.distinguishedId === 'inbox').id);
			assert.equal(messages(asBob, 'GetFolder')[0].Folders.Folder.FolderId['@_Id'], ews.folders(BOB).find((f) => f.distinguishedId === 'inbox').id);
		} finally {
			for (const agent of agents) agent.destroy();
		}
	});

	// ---- UpdateItem / MoveItem / DeleteItem ----

	await check('UpdateItem IsRead and Flag (per item responses, new ChangeKey); ErrorMessageDispositionRequired without MessageDisposition', async () => {
		const target = seeded[1];
		const before = ews.items(ALICE).find((i) => i.id === target);
		const change = (id, uri, message) => ({ 't:ItemChange': { 't:ItemId': { '@_Id': id }, 't:Updates': { 't:SetItemField': { 't:FieldURI': { '@_FieldURI': uri }, 't:Message': message } } } });
		const res = await call('UpdateItem', { '@_MessageDisposition': 'SaveOnly', '@_ConflictResolution': 'AlwaysOverwrite', 'm:ItemChanges': { 't:ItemChange': [change(target, 'message:IsRead', { 't:IsRead': 'true' })['t:ItemChange'], change(target, 'item:Flag', { 't:Flag': { 't:FlagStatus': 'Flagged' } })['t:ItemChange'], change('AAMkAGgone=', 'message:IsRead', { 't:IsRead': 'true' })['t:ItemChange']] } });
		const [read, flag, gone] = messages(res, 'UpdateItem');
		assert.equal(read.ResponseCode, 'NoError');
		assert.equal(flag.ResponseCode, 'NoError');
		assert.equal(gone.ResponseCode, 'ErrorItemNotFound');
		const after = ews.items(ALICE).find((i) => i.id === target);
		assert.equal(after.isRead, true);
		assert.equal(after.flagged, true);
		assert.notEqual(after.changeKey, before.changeKey);
		assert.equal(flag.Items.Message.ItemId['@_ChangeKey'], after.changeKey);
		const complete = messages(await call('UpdateItem', { '@_MessageDisposition': 'SaveOnly', '@_ConflictResolution': 'AlwaysOverwrite', 'm:ItemChanges': change(target, 'item:Flag', { 't:Flag': { 't:FlagStatus': 'Complete' } }) }), 'UpdateItem');
		assert.equal(complete[0].ResponseCode, 'NoError');
		assert.equal(ews.items(ALICE).find((i) => i.id === target).flagStatus, 'Complete');
		const stale = messages(await call('UpdateItem', { '@_MessageDisposition': 'SaveOnly', '@_ConflictResolution': 'NeverOverwrite', 'm:ItemChanges': { 't:ItemChange': { 't:ItemId': { '@_Id': target, '@_ChangeKey': before.changeKey }, 't:Updates': { 't:SetItemField': { 't:FieldURI': { '@_FieldURI': 'message:IsRead' }, 't:Message': { 't:IsRead': 'false' } } } } } }), 'UpdateItem');
		assert.equal(stale[0].ResponseCode, 'ErrorIrresolvableConflict');
		const noDisposition = messages(await call('UpdateItem', { '@_ConflictResolution': 'AlwaysOverwrite', 'm:ItemChanges': change(target, 'message:IsRead', { 't:IsRead': 'false' }) }), 'UpdateItem');
		assert.equal(noDisposition[0].ResponseCode, 'ErrorMessageDispositionRequired');
	});
	await check('MoveItem returns the new ItemId (new ChangeKey) and DeleteItem Hard/Soft/MoveToDeletedItems', async () => {
		const archive = ews.addFolder(ALICE, 'Archive 2026');
		const res = await call('MoveItem', { 'm:ToFolderId': { 't:FolderId': { '@_Id': archive } }, 'm:ItemIds': { 't:ItemId': [{ '@_Id': seeded[2] }, { '@_Id': seeded[2] }] } });
		const [moved, again] = messages(res, 'MoveItem');
		const newId = moved.Items.Message.ItemId['@_Id'];
		assert.notEqual(newId, seeded[2]);
		assert.equal(again.ResponseCode, 'ErrorItemNotFound', 'the old id is gone after a move');
		assert.deepEqual(ews.items(ALICE, archive).map((i) => i.id), [newId]);
		assert.equal(ews.items(ALICE, archive)[0].subject, 'Report 02');
		const del = (id, type) => call('DeleteItem', { '@_DeleteType': type, 'm:ItemIds': { 't:ItemId': { '@_Id': id } } });
		const [toDeleted] = messages(await del(seeded[4], 'MoveToDeletedItems'), 'DeleteItem');
		assert.equal(toDeleted.ResponseCode, 'NoError');
		assert.equal(ews.items(ALICE, 'deleteditems').length, 1);
		assert.equal(ews.items(ALICE, 'deleteditems')[0].subject, 'Report 04');
		assert.equal(messages(await del(newId, 'HardDelete'), 'DeleteItem')[0].ResponseCode, 'NoError');
		assert.equal(ews.items(ALICE, archive).length, 0);
		assert.equal(messages(await del(seeded[6], 'SoftDelete'), 'DeleteItem')[0].ResponseCode, 'NoError');
		assert.equal(messages(await del(seeded[6], 'HardDelete'), 'DeleteItem')[0].ResponseCode, 'ErrorItemNotFound');
		assert.ok(!ews.items(ALICE).some((i) => i.id === seeded[6]));
	});

	// ---- CreateItem ----

	const createItem = (disposition, mime, { saved, importance, auth, impersonate, headers } = {}) => call('CreateItem', {
		'@_MessageDisposition': disposition,
		...(saved ? { 'm:SavedItemFolderId': saved } : {}),
		'm:Items': { 't:Message': { 't:MimeContent': { '@_CharacterSet': 'UTF-8', '#text': Buffer.from(mime).toString('base64') }, ...(importance ? { 't:Importance': importance } : {}) } },
	}, { auth, impersonate, headers });
	await check('CreateItem SendAndSaveCopy: recorded in sent, delivered to local recipients without Bcc, copy in Sent Items with Bcc, Importance', async () => {
		const mime = rawMessage({ from: ALICE, to: `${BOB}, outsider@fabrikam.example`, cc: OTHER, bcc: SHARED, subject: 'Angebot & <Preis> ✓' });
		const [message] = messages(await createItem('SendAndSaveCopy', mime, { importance: 'High' }), 'CreateItem');
		assert.equal(message.ResponseCode, 'NoError');
		const record = ews.sent.at(-1);
		assert.equal(record.mailbox, ALICE);
		assert.equal(record.disposition, 'SendAndSaveCopy');
		assert.deepEqual([record.from, record.to, record.cc, record.bcc], [ALICE, [BOB, 'outsider@fabrikam.example'], [OTHER], [SHARED]]);
		assert.ok(record.mime.equals(mime));
		assert.equal(record.importance, 'High');
		for (const address of [BOB, OTHER, SHARED]) {
			const copy = ews.items(address).at(-1);
			assert.equal(copy.subject, 'Angebot & <Preis> ✓');
			assert.ok(!/^Bcc:/im.test(copy.mime.toString('latin1')), `no Bcc in ${address}'s copy`);
			assert.equal(copy.importance, 'High');
		}
		const saved = ews.items(ALICE, 'sentitems').at(-1);
		assert.ok(saved.mime.equals(mime), 'Sent Items keeps the MIME as sent (with Bcc)');
		assert.equal(saved.isRead, true);
	});
	await check('CreateItem SaveOnly (drafts, ItemId back) and SendOnly (no copy); a 40 MB MIME streamed chunked', async () => {
		const [draft] = messages(await createItem('SaveOnly', rawMessage({ from: ALICE, to: BOB, subject: 'draft' })), 'CreateItem');
		const draftId = draft.Items.Message.ItemId['@_Id'];
		assert.equal(ews.items(ALICE, 'drafts').find((i) => i.id === draftId).subject, 'draft');
		const sentBefore = ews.items(ALICE, 'sentitems').length;
		assert.equal(messages(await createItem('SendOnly', rawMessage({ from: ALICE, to: BOB, subject: 'send only' })), 'CreateItem')[0].ResponseCode, 'NoError');
		assert.equal(ews.items(ALICE, 'sentitems').length, sentBefore);
		assert.equal(ews.items(BOB).at(-1).subject, 'send only');
		// 40 MB of attachment, base64 inside the XML, sent in chunks without Content-Length
		const big = crypto.randomBytes(40 * 1024 * 1024);
		const mime = rawMessage({ from: ALICE, to: BOB, subject: 'big', attachment: { name: 'big.bin', content: big } });
		const xmlText = soap('CreateItem', { '@_MessageDisposition': 'SendOnly', 'm:Items': { 't:Message': { 't:MimeContent': { '@_CharacterSet': 'UTF-8', '#text': 'PLACEHOLDER' } } } });
		const [head, tail] = xmlText.split('PLACEHOLDER');
		const res = await new Promise((resolve, reject) => {
			const req = https.request(ews.url, { method: 'POST', ca, agent: false, headers: { 'content-type': 'text/xml; charset=utf-8', 'transfer-encoding': 'chunked', ...basic() } }, (r) => {
				const chunks = [];
				r.on('data', (c) => chunks.push(c));
				r.on('end', () => resolve({ status: r.statusCode, headers: r.headers, raw: Buffer.concat(chunks).toString(), xml: parser.parse(Buffer.concat(chunks).toString()) }));
			});
			req.on('error', reject);
			req.write(head);
			const b64 = mime.toString('base64');
			for (let i = 0; i < b64.length; i += 1 << 20) req.write(b64.slice(i, i + (1 << 20)));
			req.end(tail);
		});
		assert.equal(messages(res, 'CreateItem')[0].ResponseCode, 'NoError');
		assert.ok(ews.sent.at(-1).mime.equals(mime));
		const delivered = await ews.item(ews.items(BOB).at(-1).id);
		assert.equal(delivered.attachments[0].content.length, big.length);
		assert.ok(delivered.attachments[0].content.equals(big));
	});
	await check('CreateItem From another address: ErrorSendAsDenied without Send As; allowed with sendAs; delegate save into a shared mailbox', async () => {
		const [denied] = messages(await createItem('SendOnly', rawMessage({ from: OTHER, to: BOB, subject: 'spoof' })), 'CreateItem');
		assert.equal(denied['@_ResponseClass'], 'Error');
		assert.equal(denied.ResponseCode, 'ErrorSendAsDenied');
		assert.ok(!ews.items(BOB).some((i) => i.subject === 'spoof'), 'nothing half-sent');
		const [asShared] = messages(await createItem('SendAndSaveCopy', rawMessage({ from: SHARED, to: BOB, subject: 'as shared' }), { saved: { 't:DistinguishedFolderId': { '@_Id': 'sentitems', 't:Mailbox': { 't:EmailAddress': SHARED } } } }), 'CreateItem');
		assert.equal(asShared.ResponseCode, 'NoError');
		assert.equal(ews.sent.at(-1).mailbox, SHARED);
		assert.equal(ews.items(SHARED, 'sentitems').at(-1).subject, 'as shared');
		const [bobAsShared] = messages(await createItem('SendOnly', rawMessage({ from: SHARED, to: ALICE, subject: 'bob as shared' }), { auth: basic('bob', 'bob-pw') }), 'CreateItem');
		assert.equal(bobAsShared.ResponseCode, 'ErrorSendAsDenied');
		// FullAccess opens the mailbox but does not let dave send as its owner
		const saved = { 't:DistinguishedFolderId': { '@_Id': 'sentitems', 't:Mailbox': { 't:EmailAddress': SHARED } } };
		const [daveAsShared] = messages(await createItem('SendAndSaveCopy', rawMessage({ from: SHARED, to: ALICE, subject: 'dave as shared' }), { auth: basic('dave', 'dave-pw'), saved }), 'CreateItem');
		assert.equal(daveAsShared.ResponseCode, 'ErrorSendAsDenied');
		const [noDisposition] = messages(await call('CreateItem', { 'm:Items': { 't:Message': { 't:MimeContent': Buffer.from(rawMessage({ from: ALICE, to: BOB })).toString('base64') } } }), 'CreateItem');
		assert.equal(noDisposition.ResponseCode, 'ErrorMessageDispositionRequired');
		assert.ok(!ews.items(ALICE).some((i) => i.subject === 'dave as shared') && !ews.sent.some((s) => s.subject === 'dave as shared'), 'nothing half-sent');
	});

	// ---- delegate access ----

	await check('delegate access: FullAccess opens the shared mailbox by <t:Mailbox>; without it ErrorAccessDenied; unknown mailbox ErrorNonExistentMailbox', async () => {
		const folderOf = (address) => ({ 'm:FolderShape': { 't:BaseShape': 'Default' }, 'm:FolderIds': { 't:DistinguishedFolderId': { '@_Id': 'inbox', 't:Mailbox': { 't:EmailAddress': address } } } });
		const [shared] = messages(await call('GetFolder', folderOf(SHARED), { headers: { 'x-anchormailbox': SHARED } }), 'GetFolder');
		assert.equal(shared.ResponseCode, 'NoError');
		assert.equal(shared.Folders.Folder.FolderId['@_Id'], ews.folders(SHARED).find((f) => f.distinguishedId === 'inbox').id);
		const [other] = messages(await call('GetFolder', folderOf(OTHER)), 'GetFolder');
		assert.equal(other.ResponseCode, 'ErrorAccessDenied');
		const [nobody] = messages(await call('GetFolder', folderOf('nobody@contoso.example')), 'GetFolder');
		assert.equal(nobody.ResponseCode, 'ErrorNonExistentMailbox');
		const mismatch = await call('GetFolder', folderOf(SHARED), { headers: { 'x-anchormailbox': OTHER } });
		assert.equal(faultCode(mismatch), 'ErrorAccessDenied', 'an anchor the account may not open');
		assert.equal(ews.requests.at(-1).anchor, OTHER);
		const byId = await call('GetItem', { 'm:ItemShape': { 't:BaseShape': 'IdOnly' }, 'm:ItemIds': { 't:ItemId': { '@_Id': ews.items(SHARED).at(-1).id } } }, { headers: { 'x-anchormailbox': SHARED } });
		assert.equal(messages(byId, 'GetItem')[0].ResponseCode, 'NoError', 'an item of the shared mailbox by id, anchored there');
		const bobOpens = await call('GetItem', { 'm:ItemShape': { 't:BaseShape': 'IdOnly' }, 'm:ItemIds': { 't:ItemId': { '@_Id': ews.items(SHARED).at(-1).id } } }, { auth: basic('bob', 'bob-pw') });
		assert.equal(messages(bobOpens, 'GetItem')[0].ResponseCode, 'ErrorAccessDenied', 'without FullAccess');
	});

	// ---- Basic ----

	await check('Basic: wrong password 401 with WWW-Authenticate NTLM / Negotiate / Basic; no credentials 401; right one 200', async () => {
		const wrong = await call('GetFolder', inboxShape, { auth: basic('CONTOSO\\alice', 'nope') });
		assert.equal(wrong.status, 401);
		const offered = [].concat(wrong.headers['www-authenticate']).join(', ');
		assert.match(offered, /NTLM/);
		assert.match(offered, /Negotiate/);
		assert.match(offered, /Basic realm=/);
		assert.equal((await call('GetFolder', inboxShape, { auth: {} })).status, 401);
		assert.equal((await call('GetFolder', inboxShape, { auth: basic(ALICE, PASSWORD) })).status, 200, 'UPN form');
		const entry = ews.requests.at(-1);
		assert.equal(entry.scheme, 'Basic');
		assert.equal(entry.user, 'alice');
		assert.ok(!JSON.stringify(ews.requests).includes(PASSWORD), 'no password in the log');
	});

	// ---- NTLM ----

	async function ntlmHandshake(agent, { username = 'alice', password = PASSWORD, domain = 'CONTOSO', version = 2, body = soap('GetFolder', inboxShape) } = {}) {
		const type1 = ntlm.createType1Message('WORKSTATION', domain);
		const challenge = await post(ews.url, '', { ca, agent, headers: { authorization: type1 } });
		assert.equal(challenge.status, 401);
		const header = [].concat(challenge.headers['www-authenticate']).find((h) => h.startsWith('NTLM '));
		assert.ok(header, 'type 2 challenge');
		const type2 = ntlm.decodeType2Message(header);
		const type3 = version === 1 ? ntlmV1Type3(type2, username, password, 'WORKSTATION', domain) : ntlm.createType3Message(type2, username, password, 'WORKSTATION', domain);
		const answer = await post(ews.url, body, { ca, agent, headers: { authorization: type3 } });
		return { challenge, answer, type2 };
	}
	await check('NTLM: type 1 -> 401 with an impacket type 2; NTLMv2 type 3 verified by impacket; the socket stays signed in', async () => {
		const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
		try {
			const before = ews.counts().ntlmHandshakes;
			const { answer, type2 } = await ntlmHandshake(agent);
			assert.equal(type2.targetName, 'CONTOSO');
			assert.ok(type2.targetInfo.parsed.SERVER, 'target info with the server name');
			const [folder] = messages(answer, 'GetFolder');
			assert.equal(folder.Folders.Folder.DisplayName, 'Inbox');
			assert.equal(ews.counts().ntlmHandshakes, before + 1);
			const again = await post(ews.url, soap('GetFolder', inboxShape), { ca, agent });
			assert.equal(again.status, 200, 'no header needed on the signed-in socket');
			assert.equal(ews.requests.at(-1).scheme, 'NTLM');
			assert.equal(ews.requests.at(-1).user, 'alice');
			assert.equal(ews.counts().ntlmHandshakes, before + 1);
			const fresh = await post(ews.url, soap('GetFolder', inboxShape), { ca, agent: false });
			assert.equal(fresh.status, 401, 'another socket is not signed in');
		} finally {
			agent.destroy();
		}
	});
	await check('NTLM: wrong password 401 (impacket refuses the proof); NTLMv1 refused; the UPN with an empty domain works', async () => {
		for (const [options, reason] of [[{ password: 'wrong' }, /wrong password/], [{ version: 1, password: 'ascii-only' }, /NTLMv1/]]) {
			const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
			try {
				const failuresBefore = ews.counts().ntlmFailures;
				const { answer } = await ntlmHandshake(agent, options);
				assert.equal(answer.status, 401);
				assert.match(ews.requests.at(-1).error, reason);
				assert.equal(ews.counts().ntlmFailures, failuresBefore + 1);
			} finally {
				agent.destroy();
			}
		}
		ews.addUser({ username: 'carl', domain: 'CONTOSO', password: 'ascii-only', mailbox: 'carl@contoso.example' });
		ews.addMailbox({ address: 'carl@contoso.example' });
		const v1agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
		try {
			const { answer } = await ntlmHandshake(v1agent, { username: 'carl', password: 'ascii-only', version: 1 });
			assert.equal(answer.status, 401, 'NTLMv1 with the right password is still refused');
			assert.match(ews.requests.at(-1).error, /NTLMv1/);
		} finally {
			v1agent.destroy();
		}
		const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
		try {
			const { answer } = await ntlmHandshake(agent, { username: ALICE, domain: '' });
			assert.equal(answer.status, 200);
		} finally {
			agent.destroy();
		}
	});

	// ---- Bearer ----

	await check('Bearer app-only: full_access_as_app + ExchangeImpersonation + X-AnchorMailbox opens the mailbox', async () => {
		const res = await call('GetFolder', inboxShape, { auth: bearer(appToken()), impersonate: BOB, headers: { 'x-anchormailbox': BOB } });
		const [folder] = messages(res, 'GetFolder');
		assert.equal(folder.Folders.Folder.FolderId['@_Id'], ews.folders(BOB).find((f) => f.distinguishedId === 'inbox').id);
		const entry = ews.requests.at(-1);
		assert.deepEqual([entry.scheme, entry.user, entry.impersonated, entry.anchor, entry.version, entry.status], ['Bearer', APP, BOB, BOB, 'Exchange2013_SP1', 200]);
		assert.deepEqual(entry.responseCodes, ['NoError']);
	});
	await check('Bearer refusals: wrong audience / missing role 401 invalid_token; no impersonation, not granted, unknown mailbox SOAP faults', async () => {
		const graphToken = appToken(['full_access_as_app'], APP, 'https://graph.microsoft.com');
		const wrongAudience = await call('GetFolder', inboxShape, { auth: bearer(graphToken), impersonate: BOB, headers: { 'x-anchormailbox': BOB } });
		assert.equal(wrongAudience.status, 401);
		assert.match([].concat(wrongAudience.headers['www-authenticate']).join(' '), /Bearer .*error="invalid_token"/);
		const noRole = await call('GetFolder', inboxShape, { auth: bearer(appToken(['Mail.Read'], NO_ROLE_APP)), impersonate: BOB, headers: { 'x-anchormailbox': BOB } });
		assert.equal(noRole.status, 401);
		assert.match(ews.requests.at(-1).error, /missing role full_access_as_app/);
		const noImpersonation = await call('GetFolder', inboxShape, { auth: bearer(appToken()) });
		assert.equal(faultCode(noImpersonation), 'ErrorInvalidExchangeImpersonationHeaderData');
		assert.match(text(noImpersonation.xml.Envelope.Body.Fault.faultstring), /ExchangeImpersonation SOAP header must be present for this type of OAuth token/);
		assert.equal(faultCode(await call('GetFolder', inboxShape, { auth: bearer(appToken()), impersonate: OTHER, headers: { 'x-anchormailbox': OTHER } })), 'ErrorImpersonateUserDenied');
		assert.equal(faultCode(await call('GetFolder', inboxShape, { auth: bearer(appToken()), impersonate: 'ghost@contoso.example', headers: { 'x-anchormailbox': 'ghost@contoso.example' } })), 'ErrorNonExistentMailbox');
		assert.equal(faultCode(await call('GetFolder', inboxShape, { auth: bearer(appToken()), impersonate: BOB, headers: { 'x-anchormailbox': ALICE } })), 'ErrorAccessDenied');
		assert.equal(faultCode(await call('GetFolder', inboxShape, { auth: basic(), impersonate: BOB })), 'ErrorImpersonateUserDenied', 'a user without ApplicationImpersonation');
		const expired = identity.mintAccessToken({ tenant: TENANT, clientId: APP, audience: 'https://outlook.office365.com', roles: ['full_access_as_app'], lifetime: -10 });
		assert.equal((await call('GetFolder', inboxShape, { auth: bearer(expired), impersonate: BOB })).status, 401);
		assert.ok(!JSON.stringify(ews.requests).includes(graphToken.split('.')[2]), 'no token in the log');
	});
	await check('Bearer delegated (ROPC) token with EWS.AccessAsUser.All opens the user\'s own mailbox', async () => {
		const token = identity.mintAccessToken({ tenant: TENANT, clientId: APP, username: ALICE, audience: 'https://outlook.office365.com', scp: 'EWS.AccessAsUser.All' });
		const [folder] = messages(await call('GetFolder', inboxShape, { auth: bearer(token) }), 'GetFolder');
		assert.equal(folder.Folders.Folder.FolderId['@_Id'], ews.folders(ALICE).find((f) => f.distinguishedId === 'inbox').id);
		const noScope = identity.mintAccessToken({ tenant: TENANT, clientId: APP, username: ALICE, audience: 'https://outlook.office365.com', scp: 'IMAP.AccessAsUser.All' });
		assert.equal((await call('GetFolder', inboxShape, { auth: bearer(noScope) })).status, 401);
	});

	// ---- headers and faults ----

	await check('RequestServerVersion missing or unknown: ErrorInvalidServerVersion SOAP fault', async () => {
		assert.equal(faultCode(await call('GetFolder', inboxShape, { version: null })), 'ErrorInvalidServerVersion');
		assert.equal(faultCode(await call('GetFolder', inboxShape, { version: 'Exchange2099' })), 'ErrorInvalidServerVersion');
		assert.equal((await call('GetFolder', inboxShape, { version: 'Exchange2010_SP2' })).status, 200);
	});
	await check('faults.serverBusy: ErrorServerBusy with BackOffMilliseconds (response message, and as a SOAP fault), then normal', async () => {
		ews.faults.serverBusy(1, 1234);
		const [busy] = messages(await call('GetFolder', inboxShape), 'GetFolder');
		assert.equal(busy['@_ResponseClass'], 'Error');
		assert.equal(busy.ResponseCode, 'ErrorServerBusy');
		assert.deepEqual(busy.MessageXml.Value, { '@_Name': 'BackOffMilliseconds', '#text': '1234' });
		assert.equal(messages(await call('GetFolder', inboxShape), 'GetFolder')[0].ResponseCode, 'NoError');
		ews.faults.serverBusy(1, 500, { as: 'fault' });
		const fault = await call('GetFolder', inboxShape);
		assert.equal(faultCode(fault), 'ErrorServerBusy');
		assert.equal(text(fault.xml.Envelope.Body.Fault.detail.MessageXml.Value), '500');
	});
	await check('faults.http401, stall and dropAfterRequest (acted on, socket destroyed)', async () => {
		ews.faults.http401(1);
		assert.equal((await call('GetFolder', inboxShape)).status, 401);
		assert.equal((await call('GetFolder', inboxShape)).status, 200);
		ews.faults.dropAfterRequest(1, 'CreateItem');
		const dropped = await call('CreateItem', { '@_MessageDisposition': 'SendOnly', 'm:Items': { 't:Message': { 't:MimeContent': Buffer.from(rawMessage({ from: ALICE, to: BOB, subject: 'dropped but sent' })).toString('base64') } } }).then(() => null, (error) => error);
		assert.ok(dropped, 'the socket was destroyed');
		assert.equal(ews.items(BOB).at(-1).subject, 'dropped but sent', 'the request was acted on');
		ews.faults.stall(1);
		const stalled = await Promise.race([call('GetFolder', inboxShape).then(() => 'answered'), new Promise((resolve) => setTimeout(() => resolve('stalled'), 300))]);
		assert.equal(stalled, 'stalled');
		ews.faults.clear();
	});

	// ---- SyncFolderItems ----

	await check('SyncFolderItems: full sync in pages, then Create/ReadFlagChange/Update/Delete since the state; invalidated state ErrorInvalidSyncStateData', async () => {
		const mailbox = 'sync@contoso.example';
		ews.addMailbox({ address: mailbox });
		ews.addUser({ username: 'sync', password: 'sync-pw', mailbox });
		const auth = basic('sync', 'sync-pw');
		const ids = [];
		for (let i = 0; i < 7; i++) ids.push(ews.deliver(mailbox, rawMessage({ to: mailbox, subject: `s${i}` })));
		const sync = async (state, max = 3) => messages(await call('SyncFolderItems', { 'm:ItemShape': { 't:BaseShape': 'IdOnly', 't:AdditionalProperties': { 't:FieldURI': { '@_FieldURI': 'item:Subject' } } }, 'm:SyncFolderId': { 't:DistinguishedFolderId': { '@_Id': 'inbox' } }, ...(state ? { 'm:SyncState': state } : {}), 'm:MaxChangesReturned': String(max) }, { auth }), 'SyncFolderItems')[0];
		let state;
		const created = [];
		for (let page = 0; page < 5; page++) {
			const answer = await sync(state);
			assert.equal(answer.ResponseCode, 'NoError');
			state = answer.SyncState;
			created.push(...arr(answer.Changes?.Create).map((c) => c.Message.Subject));
			if (answer.IncludesLastItemInRange === 'true') break;
		}
		assert.deepEqual(created, ['s0', 's1', 's2', 's3', 's4', 's5', 's6']);
		assert.equal(arr((await sync(state)).Changes?.Create).length, 0, 'nothing new');
		const fresh = ews.deliver(mailbox, rawMessage({ to: mailbox, subject: 'new one' }));
		const change = (id, uri, message) => ({ 't:ItemChange': { 't:ItemId': { '@_Id': id }, 't:Updates': { 't:SetItemField': { 't:FieldURI': { '@_FieldURI': uri }, 't:Message': message } } } });
		await call('UpdateItem', { '@_MessageDisposition': 'SaveOnly', '@_ConflictResolution': 'AlwaysOverwrite', 'm:ItemChanges': change(ids[0], 'message:IsRead', { 't:IsRead': 'true' }) }, { auth });
		await call('UpdateItem', { '@_MessageDisposition': 'SaveOnly', '@_ConflictResolution': 'AlwaysOverwrite', 'm:ItemChanges': change(ids[1], 'item:Flag', { 't:Flag': { 't:FlagStatus': 'Flagged' } }) }, { auth });
		await call('MoveItem', { 'm:ToFolderId': { 't:DistinguishedFolderId': { '@_Id': 'deleteditems' } }, 'm:ItemIds': { 't:ItemId': { '@_Id': ids[2] } } }, { auth });
		await call('DeleteItem', { '@_DeleteType': 'HardDelete', 'm:ItemIds': { 't:ItemId': { '@_Id': ids[3] } } }, { auth });
		const changes = await sync(state, 512);
		assert.deepEqual(arr(changes.Changes.Create).map((c) => [c.Message.ItemId['@_Id'], c.Message.Subject]), [[fresh, 'new one']]);
		assert.deepEqual(arr(changes.Changes.ReadFlagChange).map((c) => [c.ItemId['@_Id'], c.IsRead]), [[ids[0], 'true']]);
		assert.deepEqual(arr(changes.Changes.Update).map((c) => c.Message.ItemId['@_Id']), [ids[1]]);
		assert.deepEqual(arr(changes.Changes.Delete).map((c) => c.ItemId['@_Id']).sort(), [ids[2], ids[3]].sort());
		assert.equal(changes.IncludesLastItemInRange, 'true');
		ews.faults.invalidateSyncStates(mailbox);
		const invalid = await sync(changes.SyncState);
		assert.equal(invalid['@_ResponseClass'], 'Error');
		assert.equal(invalid.ResponseCode, 'ErrorInvalidSyncStateData');
		assert.equal((await sync('bm90IGEgc3RhdGU=')).ResponseCode, 'ErrorInvalidSyncStateData', 'a forged state');
		const again = await sync(undefined, 512);
		assert.deepEqual(arr(again.Changes.Create).map((c) => c.Message.Subject).sort(), ['new one', 's0', 's1', 's4', 's5', 's6'], 'a fresh sync lists what is there now');
	});

	// ---- Exchange Online ----

	await check('exchangeOnline: NTLM/Basic refused with a Bearer challenge; blockApp answers 403 "EWS is not allowed for this app"', async () => {
		const exo = await startFakeEws({ pki, identity, exchangeOnline: true });
		try {
			exo.addMailbox({ address: BOB });
			exo.addUser({ username: 'bob', password: 'bob-pw', mailbox: BOB });
			exo.grantApp({ clientId: APP, mailboxes: '*' });
			const exoCall = (auth, headers = { 'x-anchormailbox': BOB }) => post(exo.url, soap('GetFolder', inboxShape, { impersonate: auth.authorization.startsWith('Bearer') ? BOB : undefined }), { ca, headers: { ...auth, ...headers } });
			const basicRes = await exoCall(basic('bob', 'bob-pw'));
			assert.equal(basicRes.status, 401);
			assert.match([].concat(basicRes.headers['www-authenticate']).join(' '), /^Bearer /);
			const ok = await exoCall(bearer(appToken()));
			assert.match(ok.raw, /Version="V2018_01_08"/);
			assert.equal(messages(ok, 'GetFolder')[0].ResponseCode, 'NoError');
			assert.equal(faultCode(await exoCall(bearer(appToken()), {})), 'ErrorAccessDenied', 'impersonation needs X-AnchorMailbox in Exchange Online');
			exo.blockApp(APP);
			const blocked = await exoCall(bearer(appToken()));
			assert.equal(blocked.status, 403);
			assert.match(blocked.raw, /EWS is not allowed for this app/);
		} finally {
			await exo.close();
		}
	});

	// ---- Autodiscover ----

	await check('Autodiscover POX: EXCH/EXPR EwsUrl for a known address (Basic and NTLM), Error for an unknown one, redirectAddr for another domain', async () => {
		const request = (email) => `<?xml version="1.0" encoding="utf-8"?>${builder.build({ Autodiscover: { '@_xmlns': 'http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006', Request: { EMailAddress: email, AcceptableResponseSchema: 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a' } } })}`;
		const unauthenticated = await post(ews.autodiscoverUrl, request(ALICE), { ca });
		assert.equal(unauthenticated.status, 401);
		const res = await post(ews.autodiscoverUrl, request(ALICE), { ca, headers: basic() });
		assert.equal(res.status, 200);
		const protocols = arr(res.xml.Autodiscover.Response.Account.Protocol);
		assert.deepEqual(protocols.map((p) => [p.Type, p.EwsUrl]), [['EXCH', ews.url], ['EXPR', ews.url]]);
		assert.equal(res.xml.Autodiscover.Response.User.AutoDiscoverSMTPAddress, ALICE);
		const unknown = await post(ews.autodiscoverUrl, request('nobody@contoso.example'), { ca, headers: basic() });
		assert.equal(unknown.xml.Autodiscover.Response.Error.ErrorCode, '500');
		ews.addRedirect('contoso-mail.example', 'contoso.example');
		const redirect = await post(ews.autodiscoverUrl, request('alice@contoso-mail.example'), { ca, headers: basic() });
		assert.equal(redirect.xml.Autodiscover.Response.Account.Action, 'redirectAddr');
		assert.equal(redirect.xml.Autodiscover.Response.Account.RedirectAddr, ALICE);
		const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
		try {
			const type1 = ntlm.createType1Message('WORKSTATION', 'CONTOSO');
			const challenge = await post(ews.autodiscoverUrl, '', { ca, agent, headers: { authorization: type1 } });
			const type2 = ntlm.decodeType2Message([].concat(challenge.headers['www-authenticate']).find((h) => h.startsWith('NTLM ')));
			const answer = await post(ews.autodiscoverUrl, request(ALICE), { ca, agent, headers: { authorization: ntlm.createType3Message(type2, 'alice', PASSWORD, 'WORKSTATION', 'CONTOSO') } });
			assert.equal(arr(answer.xml.Autodiscover.Response.Account.Protocol)[0].EwsUrl, ews.url);
		} finally {
			agent.destroy();
		}
	});

	await check('requests and counts(): operation, scheme, status per request; byOperation, handshakes, scheme counters', async () => {
		const c = ews.counts();
		assert.equal(c.requests, ews.requests.length);
		assert.ok(c.byOperation.GetFolder > 10 && c.byOperation.FindItem > 5 && c.byOperation.CreateItem >= 5 && c.byOperation.SyncFolderItems >= 5);
		assert.ok(c.ntlmHandshakes >= 3 && c.bearerRequests >= 8 && c.basicRequests >= 30, JSON.stringify(c));
		assert.ok(ews.requests.every((r) => typeof r.status === 'number'));
	});

	await ews.close();
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
