'use strict';
// A fake Exchange Web Services server (SOAP 1.1 over HTTPS) for tests and benchmarks. It serves
// the documented behaviour the package uses, in the shapes of Microsoft's EWS reference examples
// (https://learn.microsoft.com/exchange/client-developer/web-service-reference):
// - POST {path} with a SOAP envelope: GetFolder, FindFolder, CreateFolder, FindItem (paging,
//   sort, restrictions), GetItem (properties, bodies, MIME, attachments), GetAttachment,
//   UpdateItem (read / flag), MoveItem, DeleteItem, CreateItem (MIME upload; SaveOnly / SendOnly /
//   SendAndSaveCopy with local delivery) and SyncFolderItems (sync states over a per-mailbox
//   change log, so moves, deletes and read changes show up exactly once);
// - the SOAP headers Exchange checks: RequestServerVersion (ErrorInvalidServerVersion),
//   ExchangeImpersonation (app-only tokens must impersonate; ErrorImpersonateUserDenied outside
//   the app's scope; ErrorNonExistentMailbox), X-AnchorMailbox matching the mailbox addressed;
// - authentication as IIS does it: NTLM per socket (type 1 -> 401 with a type 2 challenge; the
//   type 3 NTLMv2 response verified by impacket in test/peers/ntlm-verify.py, an implementation
//   independent of the package's; the socket then stays signed in), Basic, and Bearer tokens of
//   test/peers/fake-identity.js (audience and full_access_as_app / EWS.AccessAsUser.All checked
//   by identity.introspect). exchangeOnline: Bearer only, and HTTP 403 "EWS is not allowed for
//   this app" for an app blocked with blockApp (EWSEnabled / EwsAllowedAppIDs);
// - delegate access (FullAccess) to other mailboxes and Send As;
// - POX Autodiscover (outlook response schema 2006a) with redirectAddr between domains;
// - fault hooks: ErrorServerBusy with BackOffMilliseconds, invalid sync states, stalls, sockets
//   dropped after the request was acted on, 401s.
// Every request is recorded in `requests` (never a password or token).
//
// API (startFakeEws(options) resolves with):
//   url, autodiscoverUrl, port; addMailbox({address, displayName}); addUser({username, domain,
//   password, mailbox, delegateOf, sendAs}); grantApp({clientId, mailboxes: [..] | '*'});
//   blockApp(clientId) / unblockApp; addFolder(address, displayName, parent) -> folderId;
//   addRedirect(domain, toAddressDomain); deliver(address, rawMime, {folder, isRead, receivedAt})
//   -> itemId (synchronous; the body is parsed in the background and every operation waits for
//   it; await settled() waits for all); items(address, folder) -> [{id, changeKey, folderId, mime, isRead, flagged, flagStatus,
//   importance, receivedAt (ISO), subject, from, hasAttachments}]; await item(id) -> the same
//   plus mailbox and attachments [{id, name, contentType, contentId, isInline, isItem, content}];
//   folders(address); sent [{mailbox, disposition, mime, from, to, cc, bcc, subject, importance,
//   messageId, at}]; requests [{operation, scheme, user, impersonated, anchor, version, status,
//   responseCodes, error?, dropped?, stalled?, method, path, bodySize, ...}]; faults.serverBusy(
//   count, backOffMs, {as: 'message' | 'fault'}), invalidateSyncStates(address?), stall(count),
//   dropAfterRequest(count, operation?), http401(count), clear(); counts() -> {requests,
//   byOperation (requests that got past authentication), ntlmHandshakes, ntlmFailures,
//   bearerRequests, basicRequests}; close().
// Answers worth knowing (as Exchange gives them):
// - an app-only token without ExchangeImpersonation: SOAP fault ErrorInvalidExchangeImpersonationHeaderData
//   ("ExchangeImpersonation SOAP header must be present for this type of OAuth token.");
//   impersonating outside grantApp: ErrorImpersonateUserDenied; an unknown impersonated or
//   anchor mailbox: ErrorNonExistentMailbox; an anchor that differs from the impersonated
//   mailbox (or names one the account may not open): ErrorAccessDenied (all SOAP faults, HTTP 500);
// - folders of another mailbox without FullAccess: ErrorAccessDenied per response message;
//   sending From another address needs Send As (FullAccess alone: ErrorSendAsDenied);
// - UpdateItem and CreateItem need MessageDisposition (ErrorMessageDispositionRequired);
// - a missing or unknown RequestServerVersion: SOAP fault ErrorInvalidServerVersion;
// - NTLM: only NTLMv2 (a 24-byte NTLMv1 or an LM-only response is refused); the type 2 offers
//   extended session security only when the type 1 asked for it (ntlm-client answers NTLMv2 only then);
// - text XML 1.0 cannot carry (control characters in mail from strangers) is answered as U+FFFD;
// - an attached message (message/rfc822) is an ItemAttachment named by its subject.
const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const https = require('node:https');
const path = require('node:path');
const { XMLParser, XMLBuilder, XMLValidator } = require('fast-xml-parser');

const NS = {
	soap: 'http://schemas.xmlsoap.org/soap/envelope/',
	t: 'http://schemas.microsoft.com/exchange/services/2006/types',
	m: 'http://schemas.microsoft.com/exchange/services/2006/messages',
	errors: 'http://schemas.microsoft.com/exchange/services/2006/errors',
	xsi: 'http://www.w3.org/2001/XMLSchema-instance',
	xsd: 'http://www.w3.org/2001/XMLSchema',
	autodiscoverResponse: 'http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006',
	outlookResponse: 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a',
};
const PYTHON = '/usr/bin/python3'; // Debian's python with python3-impacket (not a pyenv one on PATH)
const NTLM_VERIFIER = path.join(__dirname, 'ntlm-verify.py');
const IMPACKET_PACKAGE = 'python3-impacket';
// RequestServerVersion values of the EWS schema (Exchange2007 .. the dated Exchange Online ones)
const KNOWN_VERSIONS = new Set(['Exchange2007', 'Exchange2007_SP1', 'Exchange2009', 'Exchange2010', 'Exchange2010_SP1', 'Exchange2010_SP2', 'Exchange2013', 'Exchange2013_SP1', 'Exchange2015', 'Exchange2016', 'Exchange2019', 'V2015_10_05', 'V2016_01_06', 'V2016_04_13', 'V2016_07_13', 'V2016_10_10', 'V2017_01_07', 'V2017_04_14', 'V2017_07_11', 'V2017_10_09', 'V2018_01_08']);
// what the server says it is: Exchange 2019 CU14 on-premises, Exchange Online otherwise
const ON_PREMISES_VERSION = { MajorVersion: '15', MinorVersion: '2', MajorBuildNumber: '1544', MinorBuildNumber: '4', Version: 'V2017_07_11' };
const EXCHANGE_ONLINE_VERSION = { MajorVersion: '15', MinorVersion: '20', MajorBuildNumber: '8769', MinorBuildNumber: '21', Version: 'V2018_01_08' };
const DISTINGUISHED_FOLDERS = [
	['msgfolderroot', 'Top of Information Store'],
	['inbox', 'Inbox'],
	['sentitems', 'Sent Items'],
	['drafts', 'Drafts'],
	['deleteditems', 'Deleted Items'],
	['junkemail', 'Junk Email'],
	['outbox', 'Outbox'],
];
const EXCHANGE_APP_ID = '00000002-0000-0ff1-ce00-000000000000';
const FIND_COUNT_LIMIT = 1000; // EWSFindCountLimit
const MAX_SYNC_CHANGES = 512; // MaxChangesReturned is 1..512 in the schema
const MESSAGES = {
	ErrorItemNotFound: 'The specified object was not found in the store., The process failed to get the correct properties.',
	ErrorFolderNotFound: 'The specified folder could not be found in the store.',
	ErrorAccessDenied: 'Access is denied. Check credentials and try again.',
	ErrorNonExistentMailbox: 'The SMTP address has no mailbox associated with it.',
	ErrorImpersonateUserDenied: 'The account does not have permission to impersonate the requested user.',
	ErrorServerBusy: 'The server cannot service this request right now. Try again later.',
	ErrorInvalidSyncStateData: 'Synchronization state data is corrupt or otherwise invalid.',
	ErrorInvalidServerVersion: 'The specified server version is invalid.',
	ErrorInvalidIdMalformed: 'Id is malformed.',
	ErrorSendAsDenied: 'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.',
	ErrorInvalidPropertyRequest: 'The property request is invalid.',
	ErrorUnsupportedPathForQuery: 'The property can not be used with this type of restriction.',
	ErrorUnsupportedPathForSortGroup: 'The property can not be used for sorting or grouping results.',
	ErrorSchemaValidation: 'The request failed schema validation.',
	ErrorInvalidExchangeImpersonationHeaderData: 'ExchangeImpersonation SOAP header must be present for this type of OAuth token.',
	ErrorMessageDispositionRequired: 'MessageDisposition attribute is required.',
	ErrorIrresolvableConflict: 'The send or update operation could not be performed because the change key passed in the request does not match the current change key for the item.',
	ErrorFolderExists: 'A folder with the specified name already exists.',
	ErrorInvalidOperation: 'The operation is not valid for this item.',
	ErrorInvalidArgument: 'The argument is invalid.',
	ErrorCrossMailboxMoveCopy: 'Cross-mailbox moves and copies are not supported.',
	ErrorMimeContentConversionFailed: 'Content conversion failed.',
	ErrorInvalidRecipients: 'At least one recipient is not valid., A message can\'t be sent because it contains no recipients.',
	ErrorInvalidValueForProperty: 'The value is invalid for property.',
	ErrorInvalidOperationNotSupported: 'The requested operation is not supported.',
	ErrorMessageSizeExceeded: 'The message exceeds the maximum supported size.',
};

const lower = (value) => String(value ?? '').toLowerCase();
const iso = (ms = Date.now()) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const arr = (value) => (value === undefined || value === null ? [] : Array.isArray(value) ? value : [value]);
/** Text of a parsed element: a string, or an object with '#text' (attributes present). */
const textOf = (value) => {
	if (value === undefined || value === null) return undefined;
	if (typeof value === 'object') return value['#text'] === undefined ? '' : String(value['#text']);
	return String(value);
};
const attr = (element, name) => (element && typeof element === 'object' ? element[`@_${name}`] : undefined);
const bool = (value) => (value ? 'true' : 'false');
// Exchange ids are standard base64 (with '+', '/' and '='): callers must escape them where needed
const newItemId = () => Buffer.concat([Buffer.from('000324', 'hex'), crypto.randomBytes(60)]).toString('base64');
const newFolderId = () => Buffer.concat([Buffer.from('000326', 'hex'), crypto.randomBytes(42)]).toString('base64');
const newAttachmentId = () => Buffer.concat([Buffer.from('000324', 'hex'), crypto.randomBytes(75)]).toString('base64');
const newChangeKey = () => Buffer.concat([Buffer.from('0900000016000000', 'hex'), crypto.randomBytes(16)]).toString('base64');
// characters XML 1.0 cannot carry; mail from strangers may hold them, the answer must stay well-formed
const INVALID_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const xmlSafe = (value) => (value === undefined || value === null ? '' : String(value).replace(INVALID_XML, '\uFFFD'));
const htmlToText = (html) => String(html).replace(/<br\s*\/?>/gi, '\n').replace(/<\/p>/gi, '\n').replace(/<[^>]*>/g, '').replace(/&nbsp;/g, ' ').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&').trim();
const textToHtml = (text) => `<html><head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head><body><div>${String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r?\n/g, '<br>')}</div></body></html>`;

/** A failure of one response message (ResponseClass="Error"). */
class ResponseError extends Error {
	constructor(code, message = MESSAGES[code] ?? code, extra = {}) {
		super(message);
		this.code = code;
		this.extra = extra;
	}
}
/** A failure of the whole request: a SOAP fault (HTTP 500). */
class SoapFault extends Error {
	constructor(code, message = MESSAGES[code] ?? code, { faultcode, messageXml } = {}) {
		super(message);
		this.code = code;
		this.faultcode = faultcode ?? `a:${code}`;
		this.messageXml = messageXml;
	}
}

let impacketChecked = false;
/**
 * Makes sure Debian's python3-impacket is importable by /usr/bin/python3; as root it installs
 * the package with apt-get (as test/peers/dovecot.js installs Dovecot), otherwise it throws.
 * Synchronous so scripts can call it up front.
 * @returns {{python: string, installedNow: boolean, installMs: number}}
 */
function ensureImpacketInstalled() {
	const importable = () => {
		try {
			execFileSync(PYTHON, ['-c', 'import impacket.ntlm'], { stdio: ['ignore', 'ignore', 'ignore'], timeout: 30000 });
			return true;
		} catch {
			return false;
		}
	};
	if (impacketChecked || importable()) {
		impacketChecked = true;
		return { python: PYTHON, installedNow: false, installMs: 0 };
	}
	if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
		throw new Error(`impacket (Debian ${IMPACKET_PACKAGE}) is not importable by ${PYTHON} and this process is not root, so it cannot install it. Run as root: apt-get install ${IMPACKET_PACKAGE}`);
	}
	const started = Date.now();
	try {
		execFileSync('sh', ['-c', `apt-get update -qq && apt-get install -y -qq --no-install-recommends ${IMPACKET_PACKAGE}`], {
			env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
			stdio: ['ignore', 'pipe', 'pipe'],
			timeout: 300000,
		});
	} catch (error) {
		throw new Error(`Installing ${IMPACKET_PACKAGE} failed: ${String(error.stderr ?? error.message).trim()}`);
	}
	if (!importable()) throw new Error(`${IMPACKET_PACKAGE} is installed but ${PYTHON} cannot import impacket.ntlm`);
	impacketChecked = true;
	return { python: PYTHON, installedNow: true, installMs: Date.now() - started };
}

/** The impacket child process: JSON lines, answers matched by id. Started on first use. */
function createNtlmVerifier() {
	let child = null;
	let buffer = '';
	let nextId = 1;
	const pending = new Map();
	function start() {
		ensureImpacketInstalled();
		child = spawn(PYTHON, [NTLM_VERIFIER], { stdio: ['pipe', 'pipe', 'pipe'] });
		child.stdin.on('error', () => {}); // a dead verifier shows up as its exit below
		child.stdout.setEncoding('utf8');
		child.stdout.on('data', (data) => {
			buffer += data;
			let newline;
			while ((newline = buffer.indexOf('\n')) >= 0) {
				const line = buffer.slice(0, newline);
				buffer = buffer.slice(newline + 1);
				let answer;
				try {
					answer = JSON.parse(line);
				} catch {
					continue;
				}
				const waiter = pending.get(answer.id);
				if (waiter) {
					pending.delete(answer.id);
					waiter.resolve(answer);
				}
			}
			if (pending.size === 0) unrefChild();
		});
		let stderr = '';
		child.stderr.on('data', (data) => {
			stderr = (stderr + data).slice(-2000);
		});
		child.on('exit', (code) => {
			for (const waiter of pending.values()) waiter.reject(new Error(`ntlm-verify.py exited (${code}): ${stderr.trim()}`));
			pending.clear();
			child = null;
		});
		unrefChild();
	}
	// the verifier must not keep a test process alive on its own
	function unrefChild() {
		if (!child) return;
		child.unref();
		for (const stream of [child.stdin, child.stdout, child.stderr]) stream?.unref?.();
	}
	function refChild() {
		child.ref();
		for (const stream of [child.stdin, child.stdout, child.stderr]) stream?.ref?.();
	}
	return {
		ask(request) {
			if (!child) start();
			refChild();
			const id = nextId++;
			return new Promise((resolve, reject) => {
				pending.set(id, { resolve, reject });
				child.stdin.write(`${JSON.stringify({ ...request, id })}\n`);
			});
		},
		close() {
			if (child) {
				child.stdin.end();
				child.kill('SIGTERM');
			}
			child = null;
		},
	};
}

function createXml() {
	const parser = new XMLParser({
		ignoreAttributes: false,
		attributeNamePrefix: '@_',
		removeNSPrefix: true,
		parseTagValue: false,
		parseAttributeValue: false,
		trimValues: false,
		htmlEntities: true, // numeric character references (&#233;) are XML too
	});
	const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: true, suppressBooleanAttributes: false, processEntities: true });
	return {
		/** Parses well-formed XML; throws on anything else (the parser alone is lenient). */
		parse(text) {
			const valid = XMLValidator.validate(text);
			if (valid !== true) throw new Error(`${valid.err.msg} (line ${valid.err.line})`);
			return parser.parse(text);
		},
		build(object) {
			return `<?xml version="1.0" encoding="utf-8"?>${builder.build(object)}`;
		},
	};
}

// Headers of a raw message without the body: enough to index it before mailparser has run.
function quickHeaders(raw) {
	const text = raw.toString('latin1');
	const end = text.search(/\r?\n\r?\n/);
	const block = end >= 0 ? text.slice(0, end) : text;
	const headers = new Map();
	for (const line of block.replace(/\r?\n[ \t]/g, ' ').split(/\r?\n/)) {
		const colon = line.indexOf(':');
		if (colon <= 0) continue;
		const name = line.slice(0, colon).trim().toLowerCase();
		if (!headers.has(name)) headers.set(name, Buffer.from(line.slice(colon + 1).trim(), 'latin1').toString('utf8'));
	}
	return headers;
}
function decodeWords(value) {
	if (!value) return '';
	try {
		return require('libmime').decodeWords(value);
	} catch {
		return value;
	}
}
function parseAddressList(value) {
	if (!value) return [];
	const addressparser = require('nodemailer/lib/addressparser');
	const out = [];
	const walk = (entries) => {
		for (const entry of entries) {
			if (entry.group) walk(entry.group);
			else if (entry.address) out.push({ name: decodeWords(entry.name ?? ''), address: entry.address });
		}
	};
	walk(addressparser(value));
	return out;
}
/** The top-level header block of raw MIME, with the blank line that ends it. */
function headerPart(raw) {
	const match = /\r?\n\r?\n/.exec(raw.toString('latin1', 0, Math.min(raw.length, 1024 * 1024)));
	return match ? raw.subarray(0, match.index + match[0].length) : Buffer.concat([raw, Buffer.from('\r\n\r\n')]);
}
/** Removes the top-level Bcc header from raw MIME, bytes otherwise untouched (what a delivered copy carries). */
function stripBcc(raw) {
	const text = raw.toString('latin1');
	const match = /\r?\n\r?\n/.exec(text);
	const headerEnd = match ? match.index : text.length;
	const header = text.slice(0, headerEnd);
	const stripped = header.replace(/(^|\r?\n)Bcc:[^\r\n]*(\r?\n[ \t][^\r\n]*)*/gi, '').replace(/^\r?\n/, '');
	if (stripped === header) return raw;
	return Buffer.concat([Buffer.from(stripped, 'latin1'), raw.subarray(headerEnd)]);
}

/**
 * @param {object} options
 * @param {{cert: string, key: string}} options.pki server certificate (test/peers/certs.js)
 * @param {object} [options.identity] a started fake identity (test/peers/fake-identity.js): Bearer tokens
 * @param {string} [options.audience='https://outlook.office365.com'] the audience Bearer tokens must carry
 * @param {number} [options.port=0]
 * @param {string} [options.path='/EWS/Exchange.asmx']
 * @param {boolean} [options.exchangeOnline=false] answer like Exchange Online: Bearer only, 403 for blocked apps
 * @param {string} [options.ntlmDomain='CONTOSO'] NetBIOS domain the NTLM challenge names
 * @param {number} [options.keepAliveTimeoutMs=120000] idle time before the server closes a kept-alive socket (IIS: 120 s)
 * @param {number} [options.maxMessageSize=Infinity] CreateItem refuses larger MIME with ErrorMessageSizeExceeded (MaxSendSize)
 */
async function startFakeEws(options = {}) {
	const { pki, identity } = options;
	if (!pki) throw new Error('fake-ews: options.pki (test/peers/certs.js) is required');
	const audience = options.audience ?? 'https://outlook.office365.com';
	const ewsPath = options.path ?? '/EWS/Exchange.asmx';
	const exchangeOnline = Boolean(options.exchangeOnline);
	const ntlmDomain = options.ntlmDomain ?? 'CONTOSO';
	const serverVersion = exchangeOnline ? EXCHANGE_ONLINE_VERSION : ON_PREMISES_VERSION;
	const maxMessageSize = options.maxMessageSize ?? Infinity;
	const xml = createXml();
	// Installed now, when the fake is made, not inside the first NTLM test's time budget.
	ensureImpacketInstalled();
	const verifier = createNtlmVerifier();
	const stateKey = crypto.randomBytes(32); // signs sync states so a forged one is refused

	const mailboxes = new Map(); // lower(address) -> mailbox
	const users = []; // NTLM / Basic accounts
	const appGrants = new Map(); // lower(clientId) -> '*' | Set(lower address)
	const blockedApps = new Set();
	const redirects = new Map(); // lower(domain) -> toAddressDomain
	const itemsById = new Map(); // id -> item
	const foldersById = new Map(); // id -> folder
	const attachmentsById = new Map(); // id -> {item, attachment}
	const sent = [];
	const requests = [];
	const counters = { ntlmHandshakes: 0, ntlmFailures: 0, bearerRequests: 0, basicRequests: 0 };
	const faultState = { serverBusy: null, stall: 0, drop: null, http401: 0 };
	const stalled = new Set();
	const sockets = new Set();
	const NTLM_PENDING = Symbol('ntlmPending');
	const NTLM_USER = Symbol('ntlmUser');
	let itemSeq = 0;

	// ---- store ----

	function addMailbox({ address, displayName } = {}) {
		if (!address || !address.includes('@')) throw new Error(`fake-ews: a mailbox needs an SMTP address, got ${address}`);
		if (mailboxes.has(lower(address))) throw new Error(`fake-ews: mailbox ${address} exists`);
		const mailbox = { address, displayName: displayName ?? address.split('@')[0], folders: new Map(), log: [], seq: 0, syncGeneration: 0 };
		mailboxes.set(lower(address), mailbox);
		let root = null;
		for (const [distinguishedId, name] of DISTINGUISHED_FOLDERS) {
			const folder = createFolderRecord(mailbox, name, root ? root.id : null, distinguishedId);
			if (!root) root = folder;
		}
		return mailbox;
	}
	function createFolderRecord(mailbox, displayName, parentId, distinguishedId) {
		const folder = { id: newFolderId(), changeKey: newChangeKey(), distinguishedId: distinguishedId ?? null, displayName, parentId, folderClass: 'IPF.Note', mailbox };
		mailbox.folders.set(folder.id, folder);
		foldersById.set(folder.id, folder);
		return folder;
	}
	function requireMailbox(address) {
		const mailbox = mailboxes.get(lower(address));
		if (!mailbox) throw new Error(`fake-ews: unknown mailbox ${address}`);
		return mailbox;
	}
	function folderByRef(mailbox, ref) {
		const byId = mailbox.folders.get(ref);
		if (byId) return byId;
		for (const folder of mailbox.folders.values()) if (folder.distinguishedId && folder.distinguishedId === lower(ref)) return folder;
		return null;
	}
	function distinguished(mailbox, id) {
		return folderByRef(mailbox, id);
	}
	function addUser({ username, domain = 'CONTOSO', password, mailbox, delegateOf = [], sendAs = [] }) {
		if (!username || typeof password !== 'string') throw new Error('fake-ews: addUser needs username and password');
		const user = { username, domain, password, mailbox: mailbox ?? null, delegateOf: new Set(delegateOf.map(lower)), sendAs: new Set(sendAs.map(lower)) };
		users.push(user);
		return user;
	}
	function grantApp({ clientId, mailboxes: scope }) {
		if (scope === '*') appGrants.set(lower(clientId), '*');
		else {
			const existing = appGrants.get(lower(clientId));
			const set = existing instanceof Set ? existing : new Set();
			for (const address of arr(scope)) set.add(lower(address));
			appGrants.set(lower(clientId), set);
		}
	}
	function addFolder(address, displayName, parent = 'msgfolderroot') {
		const mailbox = requireMailbox(address);
		const parentFolder = folderByRef(mailbox, parent);
		if (!parentFolder) throw new Error(`fake-ews: unknown parent folder ${parent}`);
		for (const folder of mailbox.folders.values()) {
			if (folder.parentId === parentFolder.id && lower(folder.displayName) === lower(displayName)) throw new Error(`fake-ews: folder ${displayName} exists`);
		}
		return createFolderRecord(mailbox, displayName, parentFolder.id).id;
	}

	function logChange(mailbox, kind, folderId, itemId) {
		mailbox.seq++;
		mailbox.log.push({ seq: mailbox.seq, kind, folderId, itemId });
	}

	/** Stores a message; fields come from the headers now and from mailparser once it has run. */
	function storeItem(mailbox, folder, raw, { isRead = false, receivedAt = Date.now(), importance, flag = 'NotFlagged' } = {}) {
		const mime = Buffer.isBuffer(raw) ? Buffer.from(raw) : Buffer.from(String(raw), 'utf8');
		const headers = quickHeaders(mime);
		const from = parseAddressList(headers.get('from'))[0] ?? null;
		const item = {
			id: newItemId(),
			changeKey: newChangeKey(),
			seq: ++itemSeq,
			mailbox,
			folderId: folder.id,
			mime,
			isRead,
			flag,
			receivedAt: typeof receivedAt === 'number' ? receivedAt : new Date(receivedAt).getTime(),
			createdAt: Date.now(),
			importance: importance ?? importanceFromHeaders(headers),
			subject: decodeWords(headers.get('subject') ?? ''),
			from,
			sender: parseAddressList(headers.get('sender'))[0] ?? from,
			to: parseAddressList(headers.get('to')),
			cc: parseAddressList(headers.get('cc')),
			bcc: parseAddressList(headers.get('bcc')),
			replyTo: parseAddressList(headers.get('reply-to')),
			internetMessageId: headers.get('message-id') ?? `<${crypto.randomUUID()}@fake-ews.local>`,
			sentAt: Date.parse(headers.get('date') ?? '') || null,
			references: headers.get('references') ?? null,
			inReplyTo: headers.get('in-reply-to') ?? null,
			// until mailparser has run: a cheap guess, replaced by the parsed attachments
			hasAttachments: /^content-disposition:\s*attachment/im.test(mime.toString('latin1')),
			attachments: [],
			html: null,
			text: '',
			parsed: null,
		};
		item.conversationId = conversationIdOf(item);
		item.parsed = parseItem(item);
		itemsById.set(item.id, item);
		logChange(mailbox, 'create', folder.id, item.id);
		return item;
	}
	function importanceFromHeaders(headers) {
		const value = lower(headers.get('importance') ?? headers.get('x-msmail-priority') ?? '');
		if (value === 'high') return 'High';
		if (value === 'low') return 'Low';
		const priority = /^\s*(\d)/.exec(headers.get('x-priority') ?? '');
		if (priority) return +priority[1] < 3 ? 'High' : +priority[1] > 3 ? 'Low' : 'Normal';
		return 'Normal';
	}
	function conversationIdOf(item) {
		const topic = lower(item.subject).replace(/^((re|fw|fwd|aw|wg|sv|vs)\s*:\s*)+/i, '').trim();
		return Buffer.concat([Buffer.from('000310', 'hex'), crypto.createHash('sha256').update(`${item.mailbox.address}|${topic}`).digest().subarray(0, 24)]).toString('base64');
	}
	async function parseItem(item) {
		try {
			const { simpleParser } = require('mailparser');
			const parsed = await simpleParser(item.mime, { skipImageLinks: true, skipTextToHtml: true, keepCidLinks: true });
			const addresses = (field) => {
				const out = [];
				for (const group of arr(field)) for (const entry of group.value ?? []) {
					if (entry.group) for (const member of entry.group) member.address && out.push({ name: member.name ?? '', address: member.address });
					else if (entry.address) out.push({ name: entry.name ?? '', address: entry.address });
				}
				return out;
			};
			if (parsed.subject !== undefined) item.subject = parsed.subject;
			item.from = addresses(parsed.from)[0] ?? item.from;
			item.to = addresses(parsed.to);
			item.cc = addresses(parsed.cc);
			item.bcc = addresses(parsed.bcc);
			item.replyTo = addresses(parsed.replyTo);
			item.html = typeof parsed.html === 'string' ? parsed.html : null;
			item.text = typeof parsed.text === 'string' ? parsed.text : item.html ? htmlToText(item.html) : '';
			item.attachments = (parsed.attachments ?? []).map((attachment, index) => {
				// an attached message is an item attachment in Exchange, named by its subject
				const isItem = lower(attachment.contentType) === 'message/rfc822';
				const record = {
					id: newAttachmentId(),
					isItem,
					name: attachment.filename ?? (isItem ? decodeWords(quickHeaders(attachment.content).get('subject') ?? '') || 'Untitled Attachment' : `Untitled attachment ${String(index + 1).padStart(5, '0')}.dat`),
					contentType: attachment.contentType ?? 'application/octet-stream',
					contentId: attachment.cid ?? null,
					isInline: Boolean(attachment.cid && (attachment.related || attachment.contentDisposition === 'inline')),
					content: attachment.content,
					size: attachment.content.length,
				};
				attachmentsById.set(record.id, { item, attachment: record });
				return record;
			});
			item.hasAttachments = item.attachments.some((a) => !a.isInline);
		} catch {
			// unreadable MIME stays an item with what the headers said
		}
		item.parsed = true;
	}
	async function ensureParsed(items) {
		for (const item of items) if (item.parsed && item.parsed !== true) await item.parsed;
	}
	function itemsIn(folder) {
		const out = [];
		for (const item of itemsById.values()) if (item.folderId === folder.id) out.push(item);
		return out;
	}
	function removeItem(item, kind = 'delete') {
		itemsById.delete(item.id);
		for (const attachment of item.attachments) attachmentsById.delete(attachment.id);
		logChange(item.mailbox, kind, item.folderId, item.id);
	}
	/** A move is a new item (new ItemId and ChangeKey, new attachment ids), as in Exchange. */
	function moveItem(item, folder) {
		removeItem(item);
		const moved = { ...item, id: newItemId(), changeKey: newChangeKey(), folderId: folder.id, mailbox: folder.mailbox };
		moved.attachments = item.attachments.map((attachment) => ({ ...attachment, id: newAttachmentId() }));
		for (const attachment of moved.attachments) attachmentsById.set(attachment.id, { item: moved, attachment });
		if (moved.parsed !== true) moved.parsed = Promise.resolve(item.parsed).then(() => {
			Object.assign(moved, { subject: item.subject, from: item.from, to: item.to, cc: item.cc, bcc: item.bcc, replyTo: item.replyTo, html: item.html, text: item.text, hasAttachments: item.hasAttachments });
			moved.attachments = item.attachments.map((attachment) => ({ ...attachment, id: newAttachmentId() }));
			for (const attachment of moved.attachments) attachmentsById.set(attachment.id, { item: moved, attachment });
			moved.parsed = true;
		});
		itemsById.set(moved.id, moved);
		logChange(folder.mailbox, 'create', folder.id, moved.id);
		return moved;
	}

	function deliver(address, raw, { folder = 'inbox', isRead = false, receivedAt } = {}) {
		const mailbox = requireMailbox(address);
		const target = folderByRef(mailbox, folder);
		if (!target) throw new Error(`fake-ews: unknown folder ${folder} in ${address}`);
		return storeItem(mailbox, target, raw, { isRead, receivedAt: receivedAt ?? Date.now() }).id;
	}

	function publicItem(item) {
		return {
			id: item.id,
			changeKey: item.changeKey,
			folderId: item.folderId,
			mime: item.mime,
			isRead: item.isRead,
			flagged: item.flag === 'Flagged',
			flagStatus: item.flag,
			importance: item.importance,
			receivedAt: iso(item.receivedAt),
			subject: item.subject,
			from: item.from?.address ?? null,
			hasAttachments: item.hasAttachments,
		};
	}

	// ---- authentication ----

	function findUser(name, domain) {
		const plain = lower(name);
		return users.find((user) => (lower(user.username) === plain && (domain === undefined || lower(user.domain) === lower(domain))) || (domain === undefined && user.mailbox && lower(user.mailbox) === plain)) ?? null;
	}
	function userForMailbox(address) {
		return users.find((user) => user.mailbox && lower(user.mailbox) === lower(address)) ?? null;
	}
	function ntlmAccounts() {
		const accounts = [];
		for (const user of users) {
			accounts.push({ username: user.username, domain: user.domain, password: user.password });
			// a UPN with an empty domain, as Windows accepts
			if (user.mailbox) accounts.push({ username: user.mailbox, domain: '', password: user.password });
		}
		return accounts;
	}

	function wwwAuthenticate(error) {
		if (exchangeOnline) return [bearerChallenge(error)];
		const schemes = ['Negotiate', 'NTLM', `Basic realm="${hostName()}"`];
		if (identity) schemes.push(bearerChallenge(error));
		return schemes;
	}
	function bearerChallenge(error) {
		const base = `Bearer client_id="${EXCHANGE_APP_ID}", trusted_issuers="00000001-0000-0000-c000-000000000000@*", token_types="app_asserted_user_v1 service_asserted_app_v1", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"`;
		return error ? `${base}, error="invalid_token"` : base;
	}
	function hostName() {
		return '127.0.0.1';
	}

	class Unauthorized extends Error {
		constructor(reason, { bearerError = false, diagnostics } = {}) {
			super(reason);
			this.bearerError = bearerError;
			this.diagnostics = diagnostics;
		}
	}

	/**
	 * Who the request is, or null when a 401 (NTLM challenge) was answered already.
	 * @returns {Promise<null | {scheme: string, kind: 'user'|'app'|'token', user: object|null, clientId?: string, ownMailbox: string|null, label: string}>}
	 */
	async function authenticate(req, res, entry) {
		const header = req.headers.authorization;
		const socket = req.socket;
		if (!header) {
			const signedIn = socket[NTLM_USER];
			if (signedIn && !exchangeOnline) {
				entry.scheme = 'NTLM';
				entry.user = signedIn.username;
				return { scheme: 'NTLM', kind: 'user', user: signedIn, ownMailbox: signedIn.mailbox, label: signedIn.username };
			}
			throw new Unauthorized('no credentials');
		}
		const space = header.indexOf(' ');
		const scheme = lower(space > 0 ? header.slice(0, space) : header);
		const value = space > 0 ? header.slice(space + 1).trim() : '';
		if (scheme === 'ntlm' || scheme === 'negotiate') {
			entry.scheme = 'NTLM';
			if (exchangeOnline) throw new Unauthorized('NTLM is not offered by Exchange Online');
			const message = Buffer.from(value, 'base64');
			if (message.length < 12 || message.toString('latin1', 0, 8) !== 'NTLMSSP\0') throw new Unauthorized('not an NTLM message');
			const type = message.readUInt32LE(8);
			const wireScheme = scheme === 'ntlm' ? 'NTLM' : 'Negotiate';
			if (type === 1) {
				socket[NTLM_USER] = null;
				const answer = await verifier.ask({ op: 'challenge', type1: value, domain: ntlmDomain, server: 'EXCH01' });
				if (!answer.type2) throw new Unauthorized(`NTLM negotiate refused: ${answer.reason ?? answer.error}`);
				socket[NTLM_PENDING] = { type1: value, type2: answer.type2 };
				entry.status = 401;
				entry.ntlmStep = 'challenge';
				res.writeHead(401, { 'www-authenticate': `${wireScheme} ${answer.type2}`, 'content-type': 'text/html', 'content-length': 0 });
				res.end();
				return null;
			}
			if (type === 3) {
				const pendingHandshake = socket[NTLM_PENDING];
				socket[NTLM_PENDING] = null;
				if (!pendingHandshake) throw new Unauthorized('NTLM authenticate message without a challenge on this connection');
				const result = await verifier.ask({ op: 'verify', type1: pendingHandshake.type1, type2: pendingHandshake.type2, type3: value, accounts: ntlmAccounts() });
				if (!result.ok) {
					counters.ntlmFailures++;
					entry.user = result.username ?? null;
					throw new Unauthorized(`NTLM: ${result.reason ?? result.error}`);
				}
				const user = users.find((u) => (lower(u.username) === lower(result.username) && lower(u.domain) === lower(result.domain)) || (result.domain === '' && lower(u.mailbox) === lower(result.username)));
				counters.ntlmHandshakes++;
				socket[NTLM_USER] = user;
				entry.user = user.username;
				return { scheme: 'NTLM', kind: 'user', user, ownMailbox: user.mailbox, label: user.username };
			}
			throw new Unauthorized(`unexpected NTLM message type ${type}`);
		}
		if (scheme === 'basic') {
			entry.scheme = 'Basic';
			counters.basicRequests++;
			if (exchangeOnline) throw new Unauthorized('Basic authentication is turned off in Exchange Online');
			const decoded = Buffer.from(value, 'base64').toString('utf8');
			const colon = decoded.indexOf(':');
			if (colon < 0) throw new Unauthorized('malformed Basic credentials');
			const name = decoded.slice(0, colon);
			const password = decoded.slice(colon + 1);
			const backslash = name.indexOf('\\');
			const user = backslash >= 0 ? findUser(name.slice(backslash + 1), name.slice(0, backslash)) : findUser(name);
			entry.user = user?.username ?? name;
			if (!user || user.password !== password) throw new Unauthorized('wrong user name or password');
			return { scheme: 'Basic', kind: 'user', user, ownMailbox: user.mailbox, label: user.username };
		}
		if (scheme === 'bearer') {
			entry.scheme = 'Bearer';
			counters.bearerRequests++;
			if (!identity) throw new Unauthorized('OAuth is not configured on this server', { bearerError: true });
			const claims = decodeClaims(value);
			// app-only tokens need the role, a user's (ROPC / delegated) the scope
			const app = identity.introspect(value, { audience, role: 'full_access_as_app', scope: 'EWS.AccessAsUser.All' });
			if (app.active) {
				entry.user = app.upn;
				checkBlocked(app.appid);
				return { scheme: 'Bearer', kind: 'token', user: userForMailbox(app.upn), clientId: app.appid, ownMailbox: app.upn, label: app.upn };
			}
			// introspection wants the mailbox for app-only tokens; this answer means signature,
			// lifetime, audience and role all passed (the mailbox scope is ours: grantApp)
			if (app.reason === 'app-only token needs a mailbox' && claims) {
				entry.user = claims.appid;
				checkBlocked(claims.appid);
				return { scheme: 'Bearer', kind: 'app', user: null, clientId: claims.appid, ownMailbox: null, label: claims.appid };
			}
			entry.user = claims?.appid ?? null;
			throw new Unauthorized(app.reason ?? 'invalid token', { bearerError: true, diagnostics: `2000001;reason="${String(app.reason ?? 'invalid token').replace(/"/g, "'")}";error_category="invalid_token"` });
		}
		throw new Unauthorized(`unsupported scheme ${scheme}`);
	}
	function decodeClaims(token) {
		try {
			return JSON.parse(Buffer.from(String(token).split('.')[1], 'base64url').toString('utf8'));
		} catch {
			return null;
		}
	}
	class Forbidden extends Error {}
	function checkBlocked(clientId) {
		if (clientId && blockedApps.has(lower(clientId))) throw new Forbidden(clientId);
	}

	// ---- SOAP helpers ----

	function envelope(body) {
		return {
			's:Envelope': {
				'@_xmlns:s': NS.soap,
				's:Header': {
					'h:ServerVersionInfo': {
						'@_MajorVersion': serverVersion.MajorVersion,
						'@_MinorVersion': serverVersion.MinorVersion,
						'@_MajorBuildNumber': serverVersion.MajorBuildNumber,
						'@_MinorBuildNumber': serverVersion.MinorBuildNumber,
						'@_Version': serverVersion.Version,
						'@_xmlns:h': NS.t,
						'@_xmlns': NS.t,
						'@_xmlns:xsd': NS.xsd,
						'@_xmlns:xsi': NS.xsi,
					},
				},
				's:Body': { '@_xmlns:xsi': NS.xsi, '@_xmlns:xsd': NS.xsd, ...body },
			},
		};
	}
	function operationResponse(operation, messages) {
		return envelope({
			[`m:${operation}Response`]: {
				'@_xmlns:m': NS.m,
				'@_xmlns:t': NS.t,
				'm:ResponseMessages': { [`m:${operation}ResponseMessage`]: messages },
			},
		});
	}
	const success = (content = {}) => ({ '@_ResponseClass': 'Success', 'm:ResponseCode': 'NoError', ...content });
	function errorMessage(error, emptyContent = {}) {
		const message = { '@_ResponseClass': 'Error', 'm:MessageText': error.message, 'm:ResponseCode': error.code, 'm:DescriptiveLinkKey': '0' };
		if (error.extra?.messageXml) message['m:MessageXml'] = error.extra.messageXml;
		return { ...message, ...emptyContent };
	}
	function faultBody(fault) {
		const detail = {
			'e:ResponseCode': { '@_xmlns:e': NS.errors, '#text': fault.code },
			'e:Message': { '@_xmlns:e': NS.errors, '#text': fault.message },
		};
		if (fault.messageXml) detail['t:MessageXml'] = { '@_xmlns:t': NS.t, ...fault.messageXml };
		return {
			's:Envelope': {
				'@_xmlns:s': NS.soap,
				's:Body': {
					's:Fault': {
						faultcode: { '@_xmlns:a': NS.t, '#text': fault.faultcode },
						faultstring: { '@_xml:lang': 'en-US', '#text': fault.message },
						detail,
					},
				},
			},
		};
	}
	const backOffXml = (ms) => ({ 't:Value': { '@_Name': 'BackOffMilliseconds', '#text': String(ms) } });

	function mailboxElement(entry) {
		const local = entry.address && mailboxes.has(lower(entry.address));
		return { 't:Name': xmlSafe(entry.name || entry.address), 't:EmailAddress': xmlSafe(entry.address), 't:RoutingType': 'SMTP', 't:MailboxType': local ? 'Mailbox' : 'OneOff' };
	}
	const recipientList = (list) => ({ 't:Mailbox': list.map(mailboxElement) });

	// ---- request context: mailbox access ----

	function mayOpen(ctx, mailbox) {
		if (ctx.acting && mailbox === ctx.acting) return true;
		const delegate = ctx.delegateUser;
		return Boolean(delegate && delegate.delegateOf.has(lower(mailbox.address)));
	}
	function mailboxFor(ctx, mailboxEl) {
		const address = mailboxEl ? textOf(mailboxEl.EmailAddress) : undefined;
		if (address === undefined) {
			if (!ctx.acting) throw new ResponseError('ErrorNonExistentMailbox', 'The account has no mailbox of its own.');
			return ctx.acting;
		}
		const mailbox = mailboxes.get(lower(address.trim()));
		if (!mailbox) throw new ResponseError('ErrorNonExistentMailbox');
		if (!mayOpen(ctx, mailbox)) throw new ResponseError('ErrorAccessDenied');
		return mailbox;
	}
	/** Folders named by an element holding FolderId / DistinguishedFolderId children (in request order per kind). */
	function folderRefs(container) {
		if (!container || typeof container !== 'object') return [];
		return [...arr(container.FolderId).map((el) => ({ kind: 'id', el })), ...arr(container.DistinguishedFolderId).map((el) => ({ kind: 'distinguished', el }))];
	}
	function resolveFolder(ctx, ref) {
		if (ref.kind === 'id') {
			const id = attr(ref.el, 'Id');
			if (!id || !/^[A-Za-z0-9+/=_-]+$/.test(id)) throw new ResponseError('ErrorInvalidIdMalformed');
			const folder = foldersById.get(id);
			if (!folder) throw new ResponseError('ErrorFolderNotFound');
			if (!mayOpen(ctx, folder.mailbox)) throw new ResponseError('ErrorAccessDenied');
			return folder;
		}
		const mailbox = mailboxFor(ctx, ref.el.Mailbox);
		const folder = distinguished(mailbox, lower(attr(ref.el, 'Id')));
		if (!folder) throw new ResponseError('ErrorFolderNotFound');
		return folder;
	}
	function resolveItem(ctx, el) {
		const id = attr(el, 'Id');
		if (!id || !/^[A-Za-z0-9+/=_-]+$/.test(id)) throw new ResponseError('ErrorInvalidIdMalformed');
		const item = itemsById.get(id);
		if (!item) throw new ResponseError('ErrorItemNotFound');
		if (!mayOpen(ctx, item.mailbox)) throw new ResponseError('ErrorAccessDenied');
		return item;
	}
	// ---- folders ----

	function folderCounts(folder) {
		let total = 0;
		let unread = 0;
		for (const item of itemsById.values()) {
			if (item.folderId !== folder.id) continue;
			total++;
			if (!item.isRead) unread++;
		}
		let children = 0;
		for (const other of folder.mailbox.folders.values()) if (other.parentId === folder.id) children++;
		return { total, unread, children };
	}
	const FOLDER_FIELDS = ['folder:FolderId', 'folder:ParentFolderId', 'folder:FolderClass', 'folder:DisplayName', 'folder:TotalCount', 'folder:ChildFolderCount', 'folder:DistinguishedFolderId', 'folder:UnreadCount'];
	function folderShape(shapeEl) {
		const base = textOf(shapeEl?.BaseShape) ?? 'Default';
		const fields = new Set(['folder:FolderId']);
		if (base === 'Default') for (const f of ['folder:DisplayName', 'folder:TotalCount', 'folder:ChildFolderCount', 'folder:UnreadCount']) fields.add(f);
		if (base === 'AllProperties') for (const f of FOLDER_FIELDS) fields.add(f);
		for (const el of arr(shapeEl?.AdditionalProperties?.FieldURI)) {
			const uri = attr(el, 'FieldURI');
			if (!FOLDER_FIELDS.includes(uri)) throw new ResponseError('ErrorInvalidPropertyRequest', `The property request is invalid: ${uri}`);
			fields.add(uri);
		}
		return fields;
	}
	function folderElement(folder, fields) {
		const counts = folderCounts(folder);
		const out = {};
		out['t:FolderId'] = { '@_Id': folder.id, '@_ChangeKey': folder.changeKey };
		if (fields.has('folder:ParentFolderId') && folder.parentId) out['t:ParentFolderId'] = { '@_Id': folder.parentId, '@_ChangeKey': foldersById.get(folder.parentId)?.changeKey };
		if (fields.has('folder:FolderClass')) out['t:FolderClass'] = folder.folderClass;
		if (fields.has('folder:DisplayName')) out['t:DisplayName'] = xmlSafe(folder.displayName);
		if (fields.has('folder:TotalCount')) out['t:TotalCount'] = String(counts.total);
		if (fields.has('folder:ChildFolderCount')) out['t:ChildFolderCount'] = String(counts.children);
		if (fields.has('folder:DistinguishedFolderId') && folder.distinguishedId) out['t:DistinguishedFolderId'] = folder.distinguishedId;
		if (fields.has('folder:UnreadCount')) out['t:UnreadCount'] = String(counts.unread);
		return out;
	}

	function getFolder(ctx, op) {
		const fields = (() => {
			try {
				return folderShape(op.FolderShape);
			} catch (error) {
				return error;
			}
		})();
		return folderRefs(op.FolderIds).map((ref) => {
			try {
				if (fields instanceof Error) throw fields;
				const folder = resolveFolder(ctx, ref);
				return success({ 'm:Folders': { 't:Folder': folderElement(folder, fields) } });
			} catch (error) {
				return responseFailure(error, { 'm:Folders': '' });
			}
		});
	}
	function findFolder(ctx, op) {
		const traversal = attr(op, 'Traversal') ?? 'Shallow';
		return folderRefs(op.ParentFolderIds).map((ref) => {
			try {
				const fields = folderShape(op.FolderShape);
				const parent = resolveFolder(ctx, ref);
				const found = [];
				const walk = (folder) => {
					for (const child of folder.mailbox.folders.values()) {
						if (child.parentId !== folder.id) continue;
						found.push(child);
						if (traversal === 'Deep') walk(child);
					}
				};
				walk(parent);
				let matching = found;
				if (op.Restriction) {
					validateRestriction(op.Restriction, FOLDER_FIELD_VALUES);
					matching = found.filter((folder) => evaluate(op.Restriction, folder, FOLDER_FIELD_VALUES));
				}
				const { page, offset, total, last } = pageOf(matching, op.IndexedPageFolderView);
				return success({
					'm:RootFolder': {
						'@_IndexedPagingOffset': String(offset),
						'@_TotalItemsInView': String(total),
						'@_IncludesLastItemInRange': bool(last),
						't:Folders': { 't:Folder': page.map((folder) => folderElement(folder, fields)) },
					},
				});
			} catch (error) {
				return responseFailure(error);
			}
		});
	}
	function createFolder(ctx, op) {
		let parent;
		try {
			const refs = folderRefs(op.ParentFolderId);
			if (refs.length !== 1) throw new ResponseError('ErrorInvalidArgument', 'ParentFolderId must name one folder.');
			parent = resolveFolder(ctx, refs[0]);
		} catch (error) {
			return arr(op.Folders?.Folder).map(() => responseFailure(error));
		}
		return arr(op.Folders?.Folder).map((el) => {
			try {
				const name = textOf(el.DisplayName);
				if (!name) throw new ResponseError('ErrorInvalidArgument', 'DisplayName is required.');
				for (const folder of parent.mailbox.folders.values()) {
					if (folder.parentId === parent.id && lower(folder.displayName) === lower(name)) throw new ResponseError('ErrorFolderExists');
				}
				const folder = createFolderRecord(parent.mailbox, name, parent.id);
				return success({ 'm:Folders': { 't:Folder': { 't:FolderId': { '@_Id': folder.id, '@_ChangeKey': folder.changeKey } } } });
			} catch (error) {
				return responseFailure(error);
			}
		});
	}

	// ---- items: properties ----

	const ITEM_FIELDS = new Set([
		'item:MimeContent', 'item:ItemId', 'item:ParentFolderId', 'item:ItemClass', 'item:Subject', 'item:Sensitivity', 'item:Body', 'item:Attachments', 'item:DateTimeReceived', 'item:Size', 'item:Categories', 'item:Importance', 'item:InReplyTo', 'item:IsSubmitted', 'item:IsDraft', 'item:IsFromMe', 'item:IsResend', 'item:IsUnmodified', 'item:InternetMessageHeaders', 'item:DateTimeSent', 'item:DateTimeCreated', 'item:DisplayCc', 'item:DisplayTo', 'item:HasAttachments', 'item:Culture', 'item:LastModifiedTime', 'item:ConversationId', 'item:Flag', 'item:Preview', 'item:TextBody', 'item:UniqueBody',
		'message:Sender', 'message:ToRecipients', 'message:CcRecipients', 'message:BccRecipients', 'message:IsReadReceiptRequested', 'message:IsDeliveryReceiptRequested', 'message:ConversationIndex', 'message:ConversationTopic', 'message:From', 'message:InternetMessageId', 'message:IsRead', 'message:IsResponseRequested', 'message:References', 'message:ReplyTo',
	]);
	const FIND_DEFAULT = ['item:ItemId', 'item:ParentFolderId', 'item:ItemClass', 'item:Subject', 'item:Sensitivity', 'item:DateTimeReceived', 'item:Size', 'item:Importance', 'item:IsSubmitted', 'item:IsDraft', 'item:IsFromMe', 'item:IsResend', 'item:IsUnmodified', 'item:DateTimeSent', 'item:DateTimeCreated', 'item:DisplayCc', 'item:DisplayTo', 'item:HasAttachments', 'item:Culture', 'message:Sender', 'message:IsReadReceiptRequested', 'message:ConversationIndex', 'message:ConversationTopic', 'message:From', 'message:InternetMessageId', 'message:IsRead'];
	const GET_DEFAULT = [...FIND_DEFAULT, 'item:Body', 'item:Attachments', 'message:ToRecipients', 'message:CcRecipients', 'message:BccRecipients', 'message:IsDeliveryReceiptRequested', 'message:References', 'message:ReplyTo', 'message:IsResponseRequested'];
	const EXTENDED = {
		'0x5d02': (item) => item.from?.address, // PR_SENT_REPRESENTING_SMTP_ADDRESS
		'0x5d01': (item) => item.sender?.address, // PR_SENDER_SMTP_ADDRESS
		'0x0e08': (item) => String(item.mime.length), // PR_MESSAGE_SIZE
		'0x1035': (item) => item.internetMessageId, // PR_INTERNET_MESSAGE_ID
		'0x007d': (item) => headerBlock(item), // PR_TRANSPORT_MESSAGE_HEADERS
	};
	const normalizeTag = (tag) => {
		const value = Number.parseInt(String(tag), String(tag).toLowerCase().startsWith('0x') ? 16 : 10);
		return Number.isFinite(value) ? `0x${value.toString(16).padStart(4, '0')}` : null;
	};
	function headerBlock(item) {
		if (item.headerText === undefined) item.headerText = headerPart(item.mime).toString('utf8').replace(/\r?\n$/, '');
		return item.headerText;
	}

	function itemShape(shapeEl, defaults) {
		const base = textOf(shapeEl?.BaseShape) ?? 'Default';
		if (!['IdOnly', 'Default', 'AllProperties'].includes(base)) throw new SoapFault('ErrorSchemaValidation', `The request failed schema validation: BaseShape ${base}`);
		const fields = new Set(['item:ItemId']);
		if (base === 'Default') for (const f of defaults) fields.add(f);
		if (base === 'AllProperties') for (const f of ITEM_FIELDS) if (f !== 'item:MimeContent') fields.add(f);
		const extended = [];
		for (const el of arr(shapeEl?.AdditionalProperties?.FieldURI)) {
			const uri = attr(el, 'FieldURI');
			if (!ITEM_FIELDS.has(uri)) throw new ResponseError('ErrorInvalidPropertyRequest', `The property request is invalid: ${uri}`);
			fields.add(uri);
		}
		for (const el of arr(shapeEl?.AdditionalProperties?.ExtendedFieldURI)) {
			const tag = normalizeTag(attr(el, 'PropertyTag'));
			if (!tag || !attr(el, 'PropertyType')) throw new ResponseError('ErrorInvalidPropertyRequest', 'ExtendedFieldURI needs PropertyTag and PropertyType.');
			extended.push({ tag, type: attr(el, 'PropertyType') });
		}
		if (lower(textOf(shapeEl?.IncludeMimeContent)) === 'true') fields.add('item:MimeContent');
		const bodyType = textOf(shapeEl?.BodyType) ?? 'Best';
		return { fields, extended, bodyType };
	}

	/** FileAttachment / ItemAttachment properties in schema order (no content). */
	function attachmentElement(item, a) {
		return {
			't:AttachmentId': { '@_Id': a.id },
			't:Name': xmlSafe(a.name),
			't:ContentType': xmlSafe(a.contentType),
			...(a.contentId ? { 't:ContentId': xmlSafe(a.contentId) } : {}),
			't:Size': String(a.size),
			't:LastModifiedTime': iso(item.createdAt).replace(/Z$/, ''),
			't:IsInline': bool(a.isInline),
			...(a.isItem ? {} : { 't:IsContactPhoto': 'false' }),
		};
	}

	function itemElement(item, shape) {
		const f = shape.fields;
		const out = {};
		const displayNames = (list) => list.map((r) => r.name || r.address).join('; ');
		if (f.has('item:MimeContent')) out['t:MimeContent'] = { '@_CharacterSet': 'UTF-8', '#text': item.mime.toString('base64') };
		out['t:ItemId'] = { '@_Id': item.id, '@_ChangeKey': item.changeKey };
		if (f.has('item:ParentFolderId')) out['t:ParentFolderId'] = { '@_Id': item.folderId, '@_ChangeKey': foldersById.get(item.folderId)?.changeKey };
		if (f.has('item:ItemClass')) out['t:ItemClass'] = 'IPM.Note';
		if (f.has('item:Subject')) out['t:Subject'] = xmlSafe(item.subject);
		if (f.has('item:Sensitivity')) out['t:Sensitivity'] = 'Normal';
		if (f.has('item:Body')) {
			const wantText = shape.bodyType === 'Text' || (shape.bodyType === 'Best' && item.html === null);
			out['t:Body'] = wantText
				? { '@_BodyType': 'Text', '@_IsTruncated': 'false', '#text': xmlSafe(item.text) }
				: { '@_BodyType': 'HTML', '@_IsTruncated': 'false', '#text': xmlSafe(item.html ?? textToHtml(item.text)) };
		}
		if (f.has('item:Attachments') && item.attachments.length) {
			const files = item.attachments.filter((a) => !a.isItem);
			const attachedItems = item.attachments.filter((a) => a.isItem);
			out['t:Attachments'] = {};
			if (files.length) out['t:Attachments']['t:FileAttachment'] = files.map((a) => attachmentElement(item, a));
			if (attachedItems.length) out['t:Attachments']['t:ItemAttachment'] = attachedItems.map((a) => attachmentElement(item, a));
		}
		if (f.has('item:DateTimeReceived')) out['t:DateTimeReceived'] = iso(item.receivedAt);
		if (f.has('item:Size')) out['t:Size'] = String(item.mime.length);
		if (f.has('item:Importance')) out['t:Importance'] = item.importance;
		if (f.has('item:InReplyTo') && item.inReplyTo) out['t:InReplyTo'] = xmlSafe(item.inReplyTo);
		if (f.has('item:IsSubmitted')) out['t:IsSubmitted'] = 'false';
		if (f.has('item:IsDraft')) out['t:IsDraft'] = bool(item.draft);
		if (f.has('item:IsFromMe')) out['t:IsFromMe'] = bool(item.from && lower(item.from.address) === lower(item.mailbox.address));
		if (f.has('item:IsResend')) out['t:IsResend'] = 'false';
		if (f.has('item:IsUnmodified')) out['t:IsUnmodified'] = bool(!item.modified);
		if (f.has('item:InternetMessageHeaders')) {
			const headers = [];
			for (const line of headerBlock(item).replace(/\r?\n[ \t]/g, ' ').split(/\r?\n/)) {
				const colon = line.indexOf(':');
				if (colon > 0) headers.push({ '@_HeaderName': xmlSafe(line.slice(0, colon)), '#text': xmlSafe(line.slice(colon + 1).trim()) });
			}
			out['t:InternetMessageHeaders'] = { 't:InternetMessageHeader': headers };
		}
		if (f.has('item:DateTimeSent')) out['t:DateTimeSent'] = iso(item.sentAt ?? item.receivedAt);
		if (f.has('item:DateTimeCreated')) out['t:DateTimeCreated'] = iso(item.createdAt);
		if (f.has('item:DisplayCc')) out['t:DisplayCc'] = xmlSafe(displayNames(item.cc));
		if (f.has('item:DisplayTo')) out['t:DisplayTo'] = xmlSafe(displayNames(item.to));
		if (f.has('item:HasAttachments')) out['t:HasAttachments'] = bool(item.hasAttachments);
		if (shape.extended.length) {
			const props = [];
			for (const { tag, type } of shape.extended) {
				const value = EXTENDED[tag]?.(item);
				if (value !== undefined && value !== null) props.push({ 't:ExtendedFieldURI': { '@_PropertyTag': tag, '@_PropertyType': type }, 't:Value': xmlSafe(value) });
			}
			if (props.length) out['t:ExtendedProperty'] = props;
		}
		if (f.has('item:Culture')) out['t:Culture'] = 'en-US';
		if (f.has('item:LastModifiedTime')) out['t:LastModifiedTime'] = iso(item.modifiedAt ?? item.createdAt);
		if (f.has('item:ConversationId')) out['t:ConversationId'] = { '@_Id': item.conversationId };
		if (f.has('item:UniqueBody')) out['t:UniqueBody'] = { '@_BodyType': 'HTML', '#text': xmlSafe(item.html ?? textToHtml(item.text)) };
		if (f.has('item:Flag')) {
			const flag = { 't:FlagStatus': item.flag };
			if (item.flag === 'Flagged' && item.flaggedAt) Object.assign(flag, { 't:StartDate': iso(item.flaggedAt), 't:DueDate': iso(item.flaggedAt) });
			if (item.flag === 'Complete' && item.completedAt) flag['t:CompleteDate'] = iso(item.completedAt);
			out['t:Flag'] = flag;
		}
		if (f.has('item:Preview')) out['t:Preview'] = xmlSafe(String(item.text ?? '').replace(/\s+/g, ' ').trim().slice(0, 255));
		if (f.has('item:TextBody')) out['t:TextBody'] = { '@_BodyType': 'Text', '@_IsTruncated': 'false', '#text': xmlSafe(item.text) };
		if (f.has('message:Sender') && item.sender) out['t:Sender'] = { 't:Mailbox': mailboxElement(item.sender) };
		if (f.has('message:ToRecipients') && item.to.length) out['t:ToRecipients'] = recipientList(item.to);
		if (f.has('message:CcRecipients') && item.cc.length) out['t:CcRecipients'] = recipientList(item.cc);
		if (f.has('message:BccRecipients') && item.bcc.length) out['t:BccRecipients'] = recipientList(item.bcc);
		if (f.has('message:IsReadReceiptRequested')) out['t:IsReadReceiptRequested'] = bool(/^disposition-notification-to:/im.test(headerBlock(item)));
		if (f.has('message:IsDeliveryReceiptRequested')) out['t:IsDeliveryReceiptRequested'] = 'false';
		if (f.has('message:ConversationIndex')) out['t:ConversationIndex'] = Buffer.from(item.conversationId, 'base64').subarray(0, 22).toString('base64');
		if (f.has('message:ConversationTopic')) out['t:ConversationTopic'] = xmlSafe(String(item.subject).replace(/^((re|fw|fwd|aw|wg|sv|vs)\s*:\s*)+/i, ''));
		if (f.has('message:From') && item.from) out['t:From'] = { 't:Mailbox': mailboxElement(item.from) };
		if (f.has('message:InternetMessageId')) out['t:InternetMessageId'] = xmlSafe(item.internetMessageId);
		if (f.has('message:IsRead')) out['t:IsRead'] = bool(item.isRead);
		if (f.has('message:IsResponseRequested')) out['t:IsResponseRequested'] = 'false';
		if (f.has('message:References') && item.references) out['t:References'] = xmlSafe(item.references);
		if (f.has('message:ReplyTo') && item.replyTo.length) out['t:ReplyTo'] = recipientList(item.replyTo);
		return out;
	}

	// ---- restrictions ----

	// value getters per field; `null` marks a known field that cannot be queried
	const ITEM_FIELD_VALUES = {
		'item:Subject': { type: 'string', get: (i) => i.subject },
		'message:IsRead': { type: 'boolean', get: (i) => i.isRead },
		'item:DateTimeReceived': { type: 'date', get: (i) => i.receivedAt },
		'item:DateTimeSent': { type: 'date', get: (i) => i.sentAt ?? i.receivedAt },
		'item:DateTimeCreated': { type: 'date', get: (i) => i.createdAt },
		'item:HasAttachments': { type: 'boolean', get: (i) => i.hasAttachments },
		'item:Size': { type: 'number', get: (i) => i.mime.length },
		'item:Importance': { type: 'string', get: (i) => i.importance },
		'item:ItemClass': { type: 'string', get: () => 'IPM.Note' },
		'item:DisplayTo': { type: 'string', get: (i) => i.to.map((r) => r.name || r.address).join('; ') },
		'item:DisplayCc': { type: 'string', get: (i) => i.cc.map((r) => r.name || r.address).join('; ') },
		'message:From': { type: 'address', get: (i) => i.from },
		'message:Sender': { type: 'address', get: (i) => i.sender },
		'message:InternetMessageId': { type: 'string', get: (i) => i.internetMessageId },
		'message:ConversationTopic': { type: 'string', get: (i) => String(i.subject).replace(/^((re|fw|fwd|aw|wg|sv|vs)\s*:\s*)+/i, '') },
		'ext:0x5d02': { type: 'string', get: (i) => i.from?.address ?? '' },
		'ext:0x5d01': { type: 'string', get: (i) => i.sender?.address ?? '' },
		'ext:0x0e08': { type: 'number', get: (i) => i.mime.length },
		'ext:0x1035': { type: 'string', get: (i) => i.internetMessageId },
	};
	const FOLDER_FIELD_VALUES = {
		'folder:DisplayName': { type: 'string', get: (f) => f.displayName },
		'folder:FolderClass': { type: 'string', get: (f) => f.folderClass },
		'folder:TotalCount': { type: 'number', get: (f) => folderCounts(f).total },
		'folder:UnreadCount': { type: 'number', get: (f) => folderCounts(f).unread },
		'folder:ChildFolderCount': { type: 'number', get: (f) => folderCounts(f).children },
	};
	const COMPARISONS = ['IsEqualTo', 'IsNotEqualTo', 'IsGreaterThan', 'IsGreaterThanOrEqualTo', 'IsLessThan', 'IsLessThanOrEqualTo'];
	const EXPRESSIONS = new Set(['And', 'Or', 'Not', 'Contains', 'Excludes', 'Exists', ...COMPARISONS]);

	/** The expressions under a node, each as [name, element]. */
	function children(node) {
		const out = [];
		for (const [key, value] of Object.entries(node ?? {})) {
			if (key.startsWith('@_') || key === '#text') continue;
			if (!EXPRESSIONS.has(key)) throw new ResponseError('ErrorInvalidArgument', `Unsupported restriction element ${key}.`);
			for (const el of arr(value)) out.push([key, el]);
		}
		return out;
	}
	function fieldKey(el, table) {
		if (el.FieldURI !== undefined) {
			const uri = attr(arr(el.FieldURI)[0], 'FieldURI');
			if (table[uri]) return uri;
			if (ITEM_FIELDS.has(uri) || FOLDER_FIELDS.includes(uri)) throw new ResponseError('ErrorUnsupportedPathForQuery', `The property can not be used with this type of restriction: ${uri}`);
			throw new ResponseError('ErrorInvalidPropertyRequest', `The property request is invalid: ${uri}`);
		}
		if (el.ExtendedFieldURI !== undefined) {
			const ext = arr(el.ExtendedFieldURI)[0];
			const tag = normalizeTag(attr(ext, 'PropertyTag'));
			if (tag && table[`ext:${tag}`] && attr(ext, 'PropertyType')) return `ext:${tag}`;
			throw new ResponseError('ErrorInvalidPropertyRequest', `The property request is invalid: extended property ${attr(ext, 'PropertyTag') ?? attr(ext, 'PropertySetId') ?? ''}`);
		}
		if (el.IndexedFieldURI !== undefined) throw new ResponseError('ErrorUnsupportedPathForQuery', `The property can not be used with this type of restriction: ${attr(arr(el.IndexedFieldURI)[0], 'FieldURI')}`);
		throw new ResponseError('ErrorInvalidArgument', 'A restriction needs a FieldURI.');
	}
	function constantOf(el, name) {
		const holder = name === 'Contains' || name === 'Excludes' ? el : el.FieldURIOrConstant;
		const constant = arr(holder?.Constant)[0];
		const value = attr(constant, 'Value');
		if (value === undefined) throw new ResponseError('ErrorInvalidArgument', `${name} needs a Constant Value.`);
		return value;
	}
	function typedConstant(type, value) {
		if (type === 'boolean') {
			const v = lower(value).trim();
			if (v === 'true' || v === '1') return true;
			if (v === 'false' || v === '0') return false;
			throw new ResponseError('ErrorInvalidValueForProperty', `'${value}' is not a boolean.`);
		}
		if (type === 'date') {
			const ms = Date.parse(value);
			if (!Number.isFinite(ms)) throw new ResponseError('ErrorInvalidValueForProperty', `'${value}' is not a date.`);
			return ms;
		}
		if (type === 'number') {
			const n = Number(value);
			if (!Number.isFinite(n)) throw new ResponseError('ErrorInvalidValueForProperty', `'${value}' is not a number.`);
			return n;
		}
		return String(value);
	}
	function validateRestriction(restriction, table) {
		const walk = (node) => {
			for (const [name, el] of children(node)) {
				if (name === 'And' || name === 'Or' || name === 'Not') {
					if (name === 'Not' && children(el).length !== 1) throw new ResponseError('ErrorInvalidArgument', 'Not takes one expression.');
					walk(el);
					continue;
				}
				const key = fieldKey(el, table);
				if (name === 'Exists') continue;
				const value = constantOf(el, name);
				const { type } = table[key];
				if ((name === 'Contains' || name === 'Excludes') && (type === 'boolean' || type === 'date')) throw new ResponseError('ErrorUnsupportedPathForQuery');
				if (name !== 'Contains' && name !== 'Excludes' && type !== 'address') typedConstant(type, value);
			}
		};
		if (children(restriction).length !== 1) throw new ResponseError('ErrorInvalidArgument', 'Restriction takes one expression.');
		walk(restriction);
	}
	function contains(haystack, needle, mode, comparison) {
		const exact = !comparison || comparison === 'Exact';
		const h = exact ? String(haystack ?? '') : lower(haystack);
		const n = exact ? String(needle) : lower(needle);
		switch (mode) {
			case 'Prefixed':
				return h.startsWith(n);
			case 'Substring':
			case 'ExactPhrase':
				return h.includes(n);
			case 'PrefixOnWords':
				return h.split(/\s+/).some((word) => word.startsWith(n));
			default:
				return h === n;
		}
	}
	function compare(name, actual, expected, type) {
		if (type === 'address') {
			const candidates = actual ? [actual.address, actual.name].filter(Boolean).map(lower) : [];
			const hit = candidates.includes(lower(expected));
			if (name === 'IsEqualTo') return hit;
			if (name === 'IsNotEqualTo') return !hit;
			throw new ResponseError('ErrorUnsupportedPathForQuery');
		}
		let a = actual;
		let b = typedConstant(type, expected);
		if (type === 'string') {
			// Exchange compares strings without regard to case
			a = lower(a);
			b = lower(b);
		}
		switch (name) {
			case 'IsEqualTo':
				return a === b;
			case 'IsNotEqualTo':
				return a !== b;
			case 'IsGreaterThan':
				return a > b;
			case 'IsGreaterThanOrEqualTo':
				return a >= b;
			case 'IsLessThan':
				return a < b;
			default:
				return a <= b;
		}
	}
	function evaluate(node, record, table) {
		const [[name, el]] = children(node);
		return evalExpression(name, el, record, table);
	}
	function evalExpression(name, el, record, table) {
		if (name === 'And') return children(el).every(([n, e]) => evalExpression(n, e, record, table));
		if (name === 'Or') return children(el).some(([n, e]) => evalExpression(n, e, record, table));
		if (name === 'Not') return !evaluate(el, record, table);
		const key = fieldKey(el, table);
		const { type, get } = table[key];
		const actual = get(record);
		if (name === 'Exists') return actual !== undefined && actual !== null && actual !== '';
		const value = constantOf(el, name);
		if (name === 'Contains' || name === 'Excludes') {
			const text = type === 'address' ? [actual?.name, actual?.address].filter(Boolean).join(' ') : String(actual ?? '');
			if (name === 'Excludes') return (Number(actual) & Number(value)) === 0;
			return contains(text, value, attr(el, 'ContainmentMode'), attr(el, 'ContainmentComparison'));
		}
		return compare(name, actual, value, type);
	}

	// ---- paging and sorting ----

	function pageOf(list, view) {
		const total = list.length;
		if (!view) {
			const page = list.slice(0, FIND_COUNT_LIMIT);
			return { page, offset: page.length, total, last: page.length === total };
		}
		const max = Math.min(Number(attr(view, 'MaxEntriesReturned') ?? FIND_COUNT_LIMIT) || FIND_COUNT_LIMIT, FIND_COUNT_LIMIT);
		const offset = Math.max(0, Number(attr(view, 'Offset') ?? 0) || 0);
		const fromEnd = attr(view, 'BasePoint') === 'End';
		// BasePoint End counts the offset back from the end of the view; items keep their order
		const start = fromEnd ? Math.max(0, total - offset - max) : offset;
		const end = fromEnd ? Math.max(0, total - offset) : Math.min(total, offset + max);
		const page = list.slice(start, end);
		const nextOffset = fromEnd ? offset + page.length : start + page.length;
		const last = fromEnd ? start === 0 : end >= total;
		return { page, offset: nextOffset, total, last };
	}
	const SORTABLE = {
		'item:DateTimeReceived': (i) => i.receivedAt,
		'item:DateTimeSent': (i) => i.sentAt ?? i.receivedAt,
		'item:DateTimeCreated': (i) => i.createdAt,
		'item:Subject': (i) => lower(i.subject),
		'item:Size': (i) => i.mime.length,
		'message:IsRead': (i) => (i.isRead ? 1 : 0),
		'item:Importance': (i) => ({ Low: 0, Normal: 1, High: 2 })[i.importance] ?? 1,
	};
	function sortItems(items, sortEl) {
		const orders = arr(sortEl?.FieldOrder).map((el) => {
			const uri = attr(arr(el.FieldURI)[0], 'FieldURI');
			if (!SORTABLE[uri]) throw new ResponseError(ITEM_FIELDS.has(uri) ? 'ErrorUnsupportedPathForSortGroup' : 'ErrorInvalidPropertyRequest');
			return { get: SORTABLE[uri], sign: attr(el, 'Order') === 'Ascending' ? 1 : -1 };
		});
		// the Inbox view: newest first
		if (!orders.length) orders.push({ get: SORTABLE['item:DateTimeReceived'], sign: -1 });
		const last = orders[orders.length - 1];
		return [...items].sort((a, b) => {
			for (const { get, sign } of orders) {
				const x = get(a);
				const y = get(b);
				if (x < y) return -sign;
				if (x > y) return sign;
			}
			return (a.seq - b.seq) * last.sign; // ties in the order they arrived, so pages never overlap
		});
	}

	// ---- item operations ----

	async function findItem(ctx, op) {
		const traversal = attr(op, 'Traversal') ?? 'Shallow';
		const out = [];
		for (const ref of folderRefs(op.ParentFolderIds)) {
			try {
				if (traversal !== 'Shallow' && traversal !== 'SoftDeleted') throw new ResponseError('ErrorInvalidOperation', `Traversal ${traversal} is only supported for search folders.`);
				const shape = itemShape(op.ItemShape, FIND_DEFAULT);
				if (shape.fields.has('item:Body') || shape.fields.has('item:Attachments') || shape.fields.has('item:MimeContent') || shape.fields.has('item:TextBody')) {
					throw new ResponseError('ErrorInvalidPropertyRequest', 'FindItem does not return Body, TextBody, Attachments or MimeContent: use GetItem.');
				}
				const folder = resolveFolder(ctx, ref);
				if (op.Restriction) validateRestriction(op.Restriction, ITEM_FIELD_VALUES);
				let items = itemsIn(folder);
				await ensureParsed(items);
				items = items.filter((item) => itemsById.has(item.id)); // moved while parsing
				if (op.Restriction) items = items.filter((item) => evaluate(op.Restriction, item, ITEM_FIELD_VALUES));
				items = sortItems(items, op.SortOrder);
				if (op.FractionalPageItemView || op.ContinuousPageItemView || op.GroupBy || op.DistinguishedGroupBy) throw new ResponseError('ErrorInvalidOperationNotSupported', 'Only IndexedPageItemView is supported here.');
				const { page, offset, total, last } = pageOf(items, op.IndexedPageItemView);
				out.push(success({
					'm:RootFolder': {
						'@_IndexedPagingOffset': String(offset),
						'@_TotalItemsInView': String(total),
						'@_IncludesLastItemInRange': bool(last),
						't:Items': { 't:Message': page.map((item) => itemElement(item, shape)) },
					},
				}));
			} catch (error) {
				out.push(responseFailure(error));
			}
		}
		return out;
	}

	async function getItem(ctx, op) {
		let shape;
		try {
			shape = itemShape(op.ItemShape, GET_DEFAULT);
		} catch (error) {
			if (error instanceof SoapFault) throw error;
			shape = error;
		}
		const out = [];
		for (const el of arr(op.ItemIds?.ItemId)) {
			try {
				if (shape instanceof Error) throw shape;
				const item = resolveItem(ctx, el);
				await ensureParsed([item]);
				out.push(success({ 'm:Items': { 't:Message': itemElement(item, shape) } }));
			} catch (error) {
				out.push(responseFailure(error, { 'm:Items': '' }));
			}
		}
		return out;
	}

	function getAttachment(ctx, op) {
		return Promise.all(
			arr(op.AttachmentIds?.AttachmentId).map(async (el) => {
				try {
					const id = attr(el, 'Id');
					if (!id || !/^[A-Za-z0-9+/=_-]+$/.test(id)) throw new ResponseError('ErrorInvalidIdMalformed');
					const found = attachmentsById.get(id);
					if (!found || !itemsById.has(found.item.id)) throw new ResponseError('ErrorItemNotFound');
					if (!mayOpen(ctx, found.item.mailbox)) throw new ResponseError('ErrorAccessDenied');
					const a = found.attachment;
					if (!a.isItem) return success({ 'm:Attachments': { 't:FileAttachment': { ...attachmentElement(found.item, a), 't:Content': a.content.toString('base64') } } });
					// the attached message as an item: its properties, and its MIME when AttachmentShape asks
					const withMime = lower(textOf(op.AttachmentShape?.IncludeMimeContent)) === 'true';
					const headers = quickHeaders(a.content);
					const message = {};
					if (withMime) message['t:MimeContent'] = { '@_CharacterSet': 'UTF-8', '#text': a.content.toString('base64') };
					message['t:ItemClass'] = 'IPM.Note';
					message['t:Subject'] = xmlSafe(decodeWords(headers.get('subject') ?? ''));
					message['t:Size'] = String(a.content.length);
					const sender = parseAddressList(headers.get('from'))[0];
					if (sender) message['t:From'] = { 't:Mailbox': mailboxElement(sender) };
					return success({ 'm:Attachments': { 't:ItemAttachment': { ...attachmentElement(found.item, a), 't:Message': message } } });
				} catch (error) {
					return responseFailure(error, { 'm:Attachments': '' });
				}
			}),
		);
	}

	function touch(item) {
		item.changeKey = newChangeKey();
		item.modified = true;
		item.modifiedAt = Date.now();
	}
	function updateItem(ctx, op) {
		const disposition = attr(op, 'MessageDisposition');
		const conflict = attr(op, 'ConflictResolution') ?? 'AutoResolve';
		return arr(op.ItemChanges?.ItemChange).map((change) => {
			try {
				const item = resolveItem(ctx, change.ItemId);
				if (!disposition) throw new ResponseError('ErrorMessageDispositionRequired');
				const key = attr(change.ItemId, 'ChangeKey');
				if (key && key !== item.changeKey && conflict === 'NeverOverwrite') throw new ResponseError('ErrorIrresolvableConflict');
				const updates = change.Updates ?? {};
				let readChanged = false;
				let otherChanged = false;
				const apply = (uri, message, deleting) => {
					if (uri === 'message:IsRead') {
						const value = deleting ? false : lower(textOf(message?.IsRead)).trim() === 'true';
						if (!deleting && !['true', 'false', '1', '0'].includes(lower(textOf(message?.IsRead)).trim())) throw new ResponseError('ErrorInvalidValueForProperty');
						if (item.isRead !== value) readChanged = true;
						item.isRead = value;
					} else if (uri === 'item:Flag') {
						const status = deleting ? 'NotFlagged' : textOf(message?.Flag?.FlagStatus);
						if (!['NotFlagged', 'Flagged', 'Complete'].includes(status)) throw new ResponseError('ErrorInvalidValueForProperty', `FlagStatus '${status}' is invalid.`);
						if (status === 'Flagged') item.flaggedAt = Date.now();
						if (status === 'Complete') item.completedAt = Date.now();
						item.flag = status;
						otherChanged = true;
					} else if (uri === 'item:Importance') {
						const value = textOf(message?.Importance);
						if (!['Low', 'Normal', 'High'].includes(value)) throw new ResponseError('ErrorInvalidValueForProperty');
						item.importance = value;
						otherChanged = true;
					} else if (uri === 'item:Subject') {
						item.subject = textOf(message?.Subject) ?? '';
						otherChanged = true;
					} else {
						throw new ResponseError(ITEM_FIELDS.has(uri) ? 'ErrorInvalidPropertySet' : 'ErrorInvalidPropertyRequest', `The property ${uri} cannot be set here.`);
					}
				};
				for (const set of arr(updates.SetItemField)) apply(attr(arr(set.FieldURI)[0], 'FieldURI'), set.Message ?? set.Item, false);
				for (const set of arr(updates.AppendToItemField)) apply(attr(arr(set.FieldURI)[0], 'FieldURI'), set.Message ?? set.Item, false);
				for (const del of arr(updates.DeleteItemField)) apply(attr(arr(del.FieldURI)[0], 'FieldURI'), null, true);
				touch(item);
				if (otherChanged) logChange(item.mailbox, 'update', item.folderId, item.id);
				else if (readChanged) logChange(item.mailbox, 'read', item.folderId, item.id);
				return success({ 'm:Items': { 't:Message': { 't:ItemId': { '@_Id': item.id, '@_ChangeKey': item.changeKey } } }, 'm:ConflictResults': { 't:Count': '0' } });
			} catch (error) {
				return responseFailure(error, { 'm:Items': '' });
			}
		});
	}

	function moveItems(ctx, op) {
		let target;
		try {
			const refs = folderRefs(op.ToFolderId);
			if (refs.length !== 1) throw new ResponseError('ErrorInvalidArgument', 'ToFolderId must name one folder.');
			target = resolveFolder(ctx, refs[0]);
		} catch (error) {
			return arr(op.ItemIds?.ItemId).map(() => responseFailure(error, { 'm:Items': '' }));
		}
		// an element since Exchange 2010 SP1 (an attribute accepted too)
		const returnNewIds = lower(textOf(op.ReturnNewItemIds) ?? attr(op, 'ReturnNewItemIds') ?? 'true') !== 'false';
		return arr(op.ItemIds?.ItemId).map((el) => {
			try {
				const item = resolveItem(ctx, el);
				if (item.mailbox !== target.mailbox) throw new ResponseError('ErrorCrossMailboxMoveCopy');
				const moved = moveItem(item, target);
				return success({ 'm:Items': returnNewIds ? { 't:Message': { 't:ItemId': { '@_Id': moved.id, '@_ChangeKey': moved.changeKey } } } : '' });
			} catch (error) {
				return responseFailure(error, { 'm:Items': '' });
			}
		});
	}

	function deleteItems(ctx, op) {
		const type = attr(op, 'DeleteType');
		if (!['HardDelete', 'SoftDelete', 'MoveToDeletedItems'].includes(type)) throw new SoapFault('ErrorSchemaValidation', `The request failed schema validation: DeleteType '${type ?? ''}'.`);
		return arr(op.ItemIds?.ItemId).map((el) => {
			try {
				const item = resolveItem(ctx, el);
				const deletedItems = distinguished(item.mailbox, 'deleteditems');
				if (type === 'MoveToDeletedItems' && item.folderId !== deletedItems.id) moveItem(item, deletedItems);
				else {
					removeItem(item);
					if (type === 'SoftDelete') item.mailbox.recoverable = [...(item.mailbox.recoverable ?? []), item];
				}
				return success();
			} catch (error) {
				return responseFailure(error);
			}
		});
	}

	/** The MIME text of a CreateItem (taken out of the XML before parsing: it may be 50 MB). */
	async function createItem(ctx, op, mimeContents) {
		const disposition = attr(op, 'MessageDisposition');
		let savedFolder = null;
		let refused = null;
		try {
			if (!['SaveOnly', 'SendOnly', 'SendAndSaveCopy'].includes(disposition ?? '')) throw new ResponseError('ErrorMessageDispositionRequired');
			const savedRefs = folderRefs(op.SavedItemFolderId);
			if (savedRefs.length) savedFolder = resolveFolder(ctx, savedRefs[0]);
		} catch (error) {
			refused = error;
		}
		const out = [];
		for (const message of arr(op.Items?.Message)) {
			try {
				if (refused) throw refused;
				const mimeIndex = textOf(message.MimeContent);
				let mime;
				if (mimeIndex === undefined) mime = await mimeFromProperties(message);
				else {
					const base64 = mimeContents[Number(String(mimeIndex).replace(/\D/g, ''))] ?? '';
					if (!/^[A-Za-z0-9+/=\s]*$/.test(base64)) throw new ResponseError('ErrorMimeContentConversionFailed', 'MimeContent is not base64.');
					mime = Buffer.from(base64.replace(/\s+/g, ''), 'base64');
				}
				if (!mime.length) throw new ResponseError('ErrorMimeContentConversionFailed');
				if (mime.length > maxMessageSize) throw new ResponseError('ErrorMessageSizeExceeded', `The message exceeds the maximum supported size (${mime.length} bytes, limit ${maxMessageSize}).`);
				const importance = textOf(message.Importance);
				if (importance !== undefined && !['Low', 'Normal', 'High'].includes(importance)) throw new SoapFault('ErrorSchemaValidation', `The request failed schema validation: Importance '${importance}'.`);
				// the recipients are in the header: mailparser reads just that part (a 50 MB body is parsed later, once stored)
				const { simpleParser } = require('mailparser');
				const parsed = await simpleParser(headerPart(mime), { skipImageLinks: true, skipTextToHtml: true, skipHtmlToText: true });
				const list = (field) => {
					const result = [];
					for (const group of arr(field)) for (const entry of group.value ?? []) {
						if (entry.group) for (const member of entry.group) member.address && result.push(member.address);
						else if (entry.address) result.push(entry.address);
					}
					return result;
				};
				const senderMailbox = savedFolder ? savedFolder.mailbox : ctx.acting;
				if (!senderMailbox) throw new ResponseError('ErrorNonExistentMailbox', 'The account has no mailbox to send from.');
				const from = list(parsed.from)[0] ?? senderMailbox.address;
				if (disposition === 'SaveOnly') {
					const folder = savedFolder ?? distinguished(senderMailbox, 'drafts');
					const item = storeItem(folder.mailbox, folder, mime, { isRead: true, importance });
					item.draft = folder.distinguishedId === 'drafts';
					out.push(success({ 'm:Items': { 't:Message': { 't:ItemId': { '@_Id': item.id, '@_ChangeKey': item.changeKey } } } }));
					continue;
				}
				if (!maySendAs(ctx, from)) throw new ResponseError('ErrorSendAsDenied');
				const to = list(parsed.to);
				const cc = list(parsed.cc);
				const bcc = list(parsed.bcc);
				if (!to.length && !cc.length && !bcc.length) throw new ResponseError('ErrorInvalidRecipients');
				sent.push({ mailbox: senderMailbox.address, disposition, mime, from, to, cc, bcc, subject: parsed.subject ?? '', importance: importance ?? null, messageId: parsed.messageId ?? null, at: iso() });
				const delivered = stripBcc(mime);
				const seen = new Set();
				for (const address of [...to, ...cc, ...bcc]) {
					const target = mailboxes.get(lower(address));
					if (!target || seen.has(target)) continue;
					seen.add(target);
					storeItem(target, distinguished(target, 'inbox'), delivered, { importance });
				}
				if (disposition === 'SendAndSaveCopy') {
					const folder = savedFolder ?? distinguished(senderMailbox, 'sentitems');
					storeItem(folder.mailbox, folder, mime, { isRead: true, importance });
				}
				out.push(success({ 'm:Items': '' }));
			} catch (error) {
				if (error instanceof SoapFault) throw error;
				out.push(responseFailure(error, { 'm:Items': '' }));
			}
		}
		return out;
	}
	/** From the account's own (or impersonated) mailbox, or one it has Send As on: FullAccess alone does not let it send as the owner. */
	/** A Message given as properties (Subject, Body, recipients, From) instead of MimeContent, as MIME. */
	async function mimeFromProperties(message) {
		const MailComposer = require('nodemailer/lib/mail-composer');
		const people = (container) => arr(container?.Mailbox).map((m) => ({ name: textOf(m.Name) ?? '', address: textOf(m.EmailAddress) ?? '' }));
		const body = message.Body;
		const isHtml = lower(attr(body, 'BodyType')) === 'html';
		const fromBox = arr(message.From?.Mailbox)[0];
		const composer = new MailComposer({
			subject: textOf(message.Subject) ?? '',
			...(fromBox ? { from: { name: textOf(fromBox.Name) ?? '', address: textOf(fromBox.EmailAddress) ?? '' } } : {}),
			to: people(message.ToRecipients),
			cc: people(message.CcRecipients),
			bcc: people(message.BccRecipients),
			...(isHtml ? { html: textOf(body) ?? '' } : { text: textOf(body) ?? '' }),
		});
		const root = composer.compile();
		root.keepBcc = true; // Exchange takes Bcc from the item and strips it only from delivered copies
		return new Promise((resolve, reject) => root.build((error, built) => (error ? reject(error) : resolve(built))));
	}
	function maySendAs(ctx, from) {
		if (ctx.acting && lower(from) === lower(ctx.acting.address)) return true;
		return Boolean(ctx.delegateUser && ctx.delegateUser.sendAs.has(lower(from)));
	}

	// ---- sync ----

	function encodeSyncState(mailbox, folder, seq) {
		const payload = Buffer.from(JSON.stringify({ m: mailbox.address, f: folder.id, s: seq, g: mailbox.syncGeneration }), 'utf8');
		const mac = crypto.createHmac('sha256', stateKey).update(payload).digest().subarray(0, 16);
		return Buffer.concat([Buffer.from([1]), mac, payload]).toString('base64');
	}
	function decodeSyncState(text, mailbox, folder) {
		const invalid = () => new ResponseError('ErrorInvalidSyncStateData');
		const raw = Buffer.from(String(text).trim(), 'base64');
		if (raw.length < 18 || raw[0] !== 1) throw invalid();
		const mac = raw.subarray(1, 17);
		const payload = raw.subarray(17);
		if (!crypto.timingSafeEqual(mac, crypto.createHmac('sha256', stateKey).update(payload).digest().subarray(0, 16))) throw invalid();
		let state;
		try {
			state = JSON.parse(payload.toString('utf8'));
		} catch {
			throw invalid();
		}
		if (lower(state.m) !== lower(mailbox.address) || state.f !== folder.id || state.g !== mailbox.syncGeneration) throw invalid();
		return state.s;
	}
	async function syncFolderItems(ctx, op) {
		try {
			const shape = itemShape(op.ItemShape, FIND_DEFAULT);
			const refs = folderRefs(op.SyncFolderId);
			if (refs.length !== 1) throw new ResponseError('ErrorInvalidArgument', 'SyncFolderId must name one folder.');
			const folder = resolveFolder(ctx, refs[0]);
			const mailbox = folder.mailbox;
			const max = Number(textOf(op.MaxChangesReturned));
			if (!Number.isInteger(max) || max < 1 || max > MAX_SYNC_CHANGES) throw new SoapFault('ErrorSchemaValidation', `The request failed schema validation: MaxChangesReturned must be 1..${MAX_SYNC_CHANGES}.`);
			const stateText = textOf(op.SyncState);
			const since = stateText && stateText.trim() ? decodeSyncState(stateText, mailbox, folder) : 0;
			const ignored = new Set(arr(op.Ignore?.ItemId).map((el) => attr(el, 'Id')));
			// take events in order until `max` distinct items are touched; the state ends after the last taken
			const touched = new Map(); // itemId -> {created, deleted, updated, read}
			let boundary = since;
			let more = false;
			for (const event of mailbox.log) {
				if (event.seq <= since || event.folderId !== folder.id) continue;
				if (!touched.has(event.itemId) && touched.size >= max) {
					more = true;
					break;
				}
				const t = touched.get(event.itemId) ?? { created: false, deleted: false, updated: false, read: false };
				t[{ create: 'created', delete: 'deleted', update: 'updated', read: 'read' }[event.kind]] = true;
				touched.set(event.itemId, t);
				boundary = event.seq;
			}
			if (!more) boundary = Math.max(boundary, mailbox.seq);
			const creates = [];
			const updates = [];
			const deletes = [];
			const readChanges = [];
			const live = [];
			for (const [itemId, t] of touched) {
				if (ignored.has(itemId)) continue;
				const item = itemsById.get(itemId);
				if (t.created) {
					if (!t.deleted && item) live.push(['create', item]);
				} else if (t.deleted) deletes.push({ 't:ItemId': { '@_Id': itemId } });
				else if (item && t.updated) live.push(['update', item]);
				else if (item && t.read) readChanges.push({ 't:ItemId': { '@_Id': item.id, '@_ChangeKey': item.changeKey }, 't:IsRead': bool(item.isRead) });
			}
			await ensureParsed(live.map(([, item]) => item));
			for (const [kind, item] of live) (kind === 'create' ? creates : updates).push({ 't:Message': itemElement(item, shape) });
			const changes = {};
			if (creates.length) changes['t:Create'] = creates;
			if (updates.length) changes['t:Update'] = updates;
			if (deletes.length) changes['t:Delete'] = deletes;
			if (readChanges.length) changes['t:ReadFlagChange'] = readChanges;
			return [success({ 'm:SyncState': encodeSyncState(mailbox, folder, boundary), 'm:IncludesLastItemInRange': bool(!more), 'm:Changes': Object.keys(changes).length ? changes : '' })];
		} catch (error) {
			if (error instanceof SoapFault) throw error;
			return [responseFailure(error, { 'm:SyncState': '', 'm:IncludesLastItemInRange': 'true', 'm:Changes': '' })];
		}
	}

	function responseFailure(error, emptyContent) {
		if (error instanceof ResponseError) return errorMessage(error, emptyContent);
		if (error instanceof SoapFault) throw error;
		return errorMessage(new ResponseError('ErrorInternalServerError', `An internal server error occurred: ${error.message}`), emptyContent);
	}

	const OPERATIONS = {
		GetFolder: getFolder,
		FindFolder: findFolder,
		CreateFolder: createFolder,
		FindItem: findItem,
		GetItem: getItem,
		GetAttachment: getAttachment,
		UpdateItem: updateItem,
		MoveItem: moveItems,
		DeleteItem: deleteItems,
		CreateItem: createItem,
		SyncFolderItems: syncFolderItems,
	};

	// ---- HTTP ----

	function send(res, entry, status, body, headers = {}) {
		entry.status = status;
		const payload = Buffer.from(body, 'utf8');
		res.writeHead(status, { 'content-type': 'text/xml; charset=utf-8', 'content-length': payload.length, 'request-id': entry.requestId, ...headers });
		res.end(payload);
	}
	function sendFault(res, entry, fault) {
		entry.responseCodes.push(fault.code);
		send(res, entry, 500, xml.build(faultBody(fault)));
	}
	function sendUnauthorized(res, entry, error) {
		entry.status = 401;
		entry.error = error.message;
		const headers = { 'www-authenticate': wwwAuthenticate(error.bearerError), 'content-type': 'text/html', 'request-id': entry.requestId };
		if (error.diagnostics) headers['x-ms-diagnostics'] = error.diagnostics;
		const body = Buffer.from('<html><head><title>401 - Unauthorized</title></head><body>401 - Unauthorized: Access is denied due to invalid credentials.</body></html>');
		headers['content-length'] = body.length;
		res.writeHead(401, headers);
		res.end(body);
	}

	function readBody(req) {
		return new Promise((resolve, reject) => {
			const chunks = [];
			req.on('data', (chunk) => chunks.push(chunk));
			req.on('end', () => resolve(Buffer.concat(chunks)));
			req.on('error', reject);
			req.on('close', () => {
				if (!req.complete) reject(new Error('the client went away before the request was complete'));
			});
		});
	}

	/** Takes MimeContent text out of a request before XML parsing (a 50 MB text node is slow to parse), leaving an index. */
	function extractMimeContents(text) {
		const contents = [];
		const replaced = text.replace(/(<(?:[\w-]+:)?MimeContent\b[^>]*>)([\s\S]*?)(<\/(?:[\w-]+:)?MimeContent>)/g, (whole, open, inner, close) => {
			contents.push(inner);
			return `${open}#${contents.length - 1}${close}`;
		});
		return { text: replaced, contents };
	}

	async function handleEws(req, res, entry, body) {
		const principal = await authenticate(req, res, entry);
		if (!principal) return;
		if (faultState.http401 > 0) {
			faultState.http401--;
			req.socket[NTLM_USER] = null;
			throw new Unauthorized('fault: http401', { bearerError: principal.scheme === 'Bearer' });
		}
		const { text, contents } = extractMimeContents(body.toString('utf8'));
		let parsed;
		try {
			parsed = xml.parse(text);
		} catch (error) {
			throw new SoapFault('ErrorSchemaValidation', `The request failed schema validation: ${error.message}`);
		}
		const soapEnvelope = parsed?.Envelope;
		const soapBody = soapEnvelope?.Body;
		if (!soapBody || typeof soapBody !== 'object') throw new SoapFault('ErrorSchemaValidation', 'The request failed schema validation: no SOAP Body.');
		const operationName = Object.keys(soapBody).find((key) => !key.startsWith('@_') && key !== '#text');
		entry.operation = operationName ?? null;
		const op = soapBody[operationName] && typeof soapBody[operationName] === 'object' ? soapBody[operationName] : {};
		const soapHeader = soapEnvelope.Header && typeof soapEnvelope.Header === 'object' ? soapEnvelope.Header : {};
		const version = attr(arr(soapHeader.RequestServerVersion)[0], 'Version');
		entry.version = version ?? null;
		if (!version || !KNOWN_VERSIONS.has(version)) throw new SoapFault('ErrorInvalidServerVersion', version ? `${MESSAGES.ErrorInvalidServerVersion} (${version})` : `${MESSAGES.ErrorInvalidServerVersion} RequestServerVersion is required.`);
		if (faultState.serverBusy && faultState.serverBusy.count > 0) {
			const busy = faultState.serverBusy;
			busy.count--;
			if (busy.as === 'fault') throw new SoapFault('ErrorServerBusy', MESSAGES.ErrorServerBusy, { faultcode: 's:Server', messageXml: backOffXml(busy.backOffMs) });
			const error = new ResponseError('ErrorServerBusy', MESSAGES.ErrorServerBusy, { messageXml: backOffXml(busy.backOffMs) });
			entry.responseCodes.push('ErrorServerBusy');
			send(res, entry, 200, xml.build(operationResponse(operationName, [errorMessage(error)])));
			return;
		}
		const ctx = context(principal, soapHeader, op, entry, req);
		const handler = OPERATIONS[operationName];
		if (!handler) throw new SoapFault('ErrorInvalidRequest', `The request is invalid: operation ${operationName} is not served here.`);
		let messages;
		try {
			messages = await handler(ctx, op, contents);
		} catch (error) {
			if (!(error instanceof ResponseError)) throw error;
			messages = [errorMessage(error)];
		}
		for (const message of messages) entry.responseCodes.push(message['m:ResponseCode']);
		if (faultState.drop && faultState.drop.count > 0 && (!faultState.drop.operation || faultState.drop.operation === operationName)) {
			faultState.drop.count--;
			entry.status = 0;
			entry.dropped = true;
			req.socket.destroy();
			return;
		}
		send(res, entry, 200, xml.build(operationResponse(operationName, messages)));
	}

	/** The mailbox the request acts as, after the impersonation and anchor checks Exchange makes. */
	function context(principal, soapHeader, op, entry, req) {
		const sid = arr(soapHeader.ExchangeImpersonation)[0]?.ConnectingSID;
		const impersonated = sid ? textOf(sid.PrimarySmtpAddress ?? sid.SmtpAddress ?? sid.PrincipalName)?.trim() : undefined;
		entry.impersonated = impersonated ?? null;
		let acting = null;
		let delegateUser = principal.user;
		if (principal.kind === 'app' && !impersonated) throw new SoapFault('ErrorInvalidExchangeImpersonationHeaderData');
		if (impersonated) {
			const mailbox = mailboxes.get(lower(impersonated));
			if (!mailbox) throw new SoapFault('ErrorNonExistentMailbox', `${MESSAGES.ErrorNonExistentMailbox} (${impersonated})`);
			if (principal.kind !== 'app') throw new SoapFault('ErrorImpersonateUserDenied');
			const grant = appGrants.get(lower(principal.clientId));
			if (!(grant === '*' || (grant instanceof Set && grant.has(lower(impersonated))))) throw new SoapFault('ErrorImpersonateUserDenied');
			acting = mailbox;
			// acting as the user: that user's delegate and Send As rights apply
			delegateUser = userForMailbox(mailbox.address);
		} else if (principal.ownMailbox) {
			acting = mailboxes.get(lower(principal.ownMailbox)) ?? null;
		}
		// X-AnchorMailbox routes the request: with impersonation it must name the impersonated
		// mailbox; otherwise a mailbox this account may open (its own or one with FullAccess)
		const anchor = req.headers['x-anchormailbox'];
		if (anchor !== undefined) {
			if (impersonated && lower(anchor) !== lower(impersonated)) throw new SoapFault('ErrorAccessDenied', `X-AnchorMailbox ${anchor} does not match the impersonated mailbox ${impersonated}.`);
			const anchored = mailboxes.get(lower(String(anchor).trim()));
			if (!anchored) throw new SoapFault('ErrorNonExistentMailbox', `${MESSAGES.ErrorNonExistentMailbox} (X-AnchorMailbox ${anchor})`);
			if (!mayOpen({ acting, delegateUser }, anchored)) throw new SoapFault('ErrorAccessDenied', `X-AnchorMailbox ${anchor} is not a mailbox this account may open.`);
		} else if (exchangeOnline && impersonated) {
			throw new SoapFault('ErrorAccessDenied', 'X-AnchorMailbox is required with ExchangeImpersonation in Exchange Online.');
		}
		return { principal, acting, delegateUser };
	}

	// ---- Autodiscover (POX) ----

	async function handleAutodiscover(req, res, entry, body) {
		const principal = await authenticate(req, res, entry);
		if (!principal) return;
		entry.operation = 'Autodiscover';
		let email;
		try {
			const parsed = xml.parse(body.toString('utf8'));
			email = textOf(parsed?.Autodiscover?.Request?.EMailAddress)?.trim();
		} catch {
			email = undefined;
		}
		const respond = (response) => send(res, entry, 200, xml.build({ Autodiscover: { '@_xmlns': NS.autodiscoverResponse, Response: response } }));
		const error = (code, message) => {
			entry.responseCodes.push(String(code));
			respond({ Error: { '@_Time': new Date().toISOString().slice(11, 23), '@_Id': String(crypto.randomInt(1e9)), ErrorCode: String(code), Message: message, DebugData: '' } });
		};
		if (!email) return error(600, 'Invalid Request');
		const at = email.lastIndexOf('@');
		const domain = lower(email.slice(at + 1));
		if (redirects.has(domain) && !mailboxes.has(lower(email))) {
			entry.responseCodes.push('redirectAddr');
			return respond({ '@_xmlns': NS.outlookResponse, Account: { AccountType: 'email', Action: 'redirectAddr', RedirectAddr: `${email.slice(0, at)}@${redirects.get(domain)}` } });
		}
		const mailbox = mailboxes.get(lower(email));
		if (!mailbox) return error(500, 'The email address can\'t be found.');
		entry.responseCodes.push('settings');
		const protocol = (type) => ({ Type: type, Server: hostName(), ASUrl: ewsUrl, EwsUrl: ewsUrl, EmwsUrl: ewsUrl, OOFUrl: ewsUrl, UMUrl: ewsUrl.replace(/Exchange\.asmx$/, 'UM2007Legacy.asmx') });
		respond({
			'@_xmlns': NS.outlookResponse,
			User: { DisplayName: xmlSafe(mailbox.displayName), LegacyDN: `/o=Contoso/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=${mailbox.address.split('@')[0]}`, AutoDiscoverSMTPAddress: mailbox.address, DeploymentId: crypto.createHash('md5').update(mailbox.address).digest('hex').replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-') },
			Account: { AccountType: 'email', Action: 'settings', MicrosoftOnline: exchangeOnline ? 'True' : 'False', Protocol: [protocol('EXCH'), protocol('EXPR')] },
		});
	}

	let requestCounter = 0;
	let ewsUrl = '';
	let autodiscoverUrl = '';
	const server = https.createServer({ cert: pki.cert, key: pki.key }, (req, res) => {
		const url = new URL(req.url, 'https://127.0.0.1');
		const entry = { at: iso(), method: req.method, path: url.pathname, operation: null, scheme: null, user: null, impersonated: null, anchor: req.headers['x-anchormailbox'] ?? null, version: null, status: 0, responseCodes: [], bodySize: 0, requestId: crypto.randomUUID(), seq: ++requestCounter };
		requests.push(entry);
		readBody(req)
			.then(async (body) => {
				entry.bodySize = body.length;
				if (faultState.stall > 0) {
					faultState.stall--;
					entry.stalled = true;
					stalled.add(res);
					return;
				}
				const isEws = lower(url.pathname) === lower(ewsPath);
				const isAutodiscover = lower(url.pathname) === '/autodiscover/autodiscover.xml';
				if (!isEws && !isAutodiscover) return send(res, entry, 404, '<html><body>404 - Not Found</body></html>', { 'content-type': 'text/html' });
				if (req.method !== 'POST') {
					// IIS asks for credentials before it says anything else
					if (!req.headers.authorization && !req.socket[NTLM_USER]) throw new Unauthorized('no credentials');
					return send(res, entry, 405, '<html><body>405 - Method Not Allowed</body></html>', { 'content-type': 'text/html', allow: 'POST' });
				}
				if (isAutodiscover) return handleAutodiscover(req, res, entry, body);
				return handleEws(req, res, entry, body);
			})
			.catch((error) => {
				if (res.headersSent || res.destroyed) {
					entry.error = entry.error ?? String(error.message ?? error);
					return;
				}
				if (error instanceof Unauthorized) return sendUnauthorized(res, entry, error);
				if (error instanceof Forbidden) {
					entry.error = 'app blocked';
					const text = Buffer.from(`403 Forbidden: EWS is not allowed for this app (${error.message}). The organization has turned EWS off (Set-OrganizationConfig -EWSEnabled) or the app is not in EwsAllowedAppIDs.`);
					entry.status = 403;
					res.writeHead(403, { 'content-type': 'text/plain; charset=utf-8', 'content-length': text.length, 'x-ms-diagnostics': '2000003;reason="EWS is not allowed for this app"', 'request-id': entry.requestId });
					return res.end(text);
				}
				if (error instanceof SoapFault) return sendFault(res, entry, error);
				return sendFault(res, entry, new SoapFault('ErrorInternalServerError', `An internal server error occurred. ${error.message}`));
			});
	});
	server.keepAliveTimeout = options.keepAliveTimeoutMs ?? 120000;
	server.requestTimeout = 0; // large uploads take as long as they take
	server.on('connection', (socket) => {
		sockets.add(socket);
		socket.on('close', () => sockets.delete(socket));
	});
	server.on('secureConnection', (socket) => {
		sockets.add(socket);
		socket.on('close', () => sockets.delete(socket));
	});
	await new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(options.port ?? 0, '127.0.0.1', resolve);
	});
	const { port } = server.address();
	ewsUrl = `https://127.0.0.1:${port}${ewsPath}`;
	autodiscoverUrl = `https://127.0.0.1:${port}/autodiscover/autodiscover.xml`;

	const faults = {
		/** The next `count` EWS requests answer ErrorServerBusy with BackOffMilliseconds ('message': a response message, 'fault': a SOAP fault). */
		serverBusy(count, backOffMs = 1000, { as = 'message' } = {}) {
			faultState.serverBusy = { count, backOffMs, as };
		},
		/** Existing sync states (of one mailbox, or all) answer ErrorInvalidSyncStateData. */
		invalidateSyncStates(address) {
			for (const mailbox of address ? [requireMailbox(address)] : mailboxes.values()) mailbox.syncGeneration++;
		},
		/** The next `count` requests are read and never answered. */
		stall(count) {
			faultState.stall = count;
		},
		/** The next `count` EWS requests (of `operation`, when given) are acted on, then the socket is destroyed unanswered. */
		dropAfterRequest(count, operation) {
			faultState.drop = { count, operation: operation ?? null };
		},
		/** The next `count` authenticated EWS requests answer HTTP 401 (an NTLM socket is signed out). */
		http401(count) {
			faultState.http401 = count;
		},
		clear() {
			faultState.serverBusy = null;
			faultState.stall = 0;
			faultState.drop = null;
			faultState.http401 = 0;
		},
	};

	return {
		url: ewsUrl,
		autodiscoverUrl,
		port,
		addMailbox,
		addUser,
		grantApp,
		blockApp(clientId) {
			blockedApps.add(lower(clientId));
		},
		unblockApp(clientId) {
			blockedApps.delete(lower(clientId));
		},
		addFolder,
		/** Autodiscover for `domain` answers redirectAddr to the same local part at `toAddressDomain`. */
		addRedirect(domain, toAddressDomain) {
			redirects.set(lower(domain), toAddressDomain);
		},
		deliver,
		items(address, folder = 'inbox') {
			const mailbox = requireMailbox(address);
			const target = folderByRef(mailbox, folder);
			if (!target) throw new Error(`fake-ews: unknown folder ${folder} in ${address}`);
			return itemsIn(target).sort((a, b) => a.seq - b.seq).map(publicItem);
		},
		/** Resolves once every delivered message has been parsed in full (benchmarks: seed, settle, then measure). */
		async settled() {
			await ensureParsed([...itemsById.values()]);
		},
		/** One item by id (any mailbox), or null; attachments once parsed. */
		async item(id) {
			const item = itemsById.get(id);
			if (!item) return null;
			await ensureParsed([item]);
			return { ...publicItem(item), mailbox: item.mailbox.address, attachments: item.attachments.map((a) => ({ id: a.id, name: a.name, contentType: a.contentType, contentId: a.contentId, isInline: a.isInline, isItem: a.isItem, content: a.content })) };
		},
		folders(address) {
			const mailbox = requireMailbox(address);
			return [...mailbox.folders.values()].map((folder) => ({ id: folder.id, ...(folder.distinguishedId ? { distinguishedId: folder.distinguishedId } : {}), displayName: folder.displayName, parentId: folder.parentId }));
		},
		sent,
		requests,
		faults,
		counts() {
			const byOperation = {};
			for (const entry of requests) if (entry.operation) byOperation[entry.operation] = (byOperation[entry.operation] ?? 0) + 1;
			return { requests: requests.length, byOperation, ...counters };
		},
		async close() {
			for (const res of stalled) res.destroy();
			stalled.clear();
			verifier.close();
			await new Promise((resolve) => {
				server.close(() => resolve());
				for (const socket of sockets) socket.destroy();
			});
		},
	};
}

module.exports = { startFakeEws, ensureImpacketInstalled, NS };
