import addressparser from 'nodemailer/lib/addressparser';

import type { MailAddress } from './outgoing-message';

/** A problem with one input field; the node turns it into a NodeOperationError for the item. */
export class MessageInputError extends Error {
	constructor(
		readonly field: string,
		message: string,
		readonly hint?: string,
	) {
		super(`${field}: ${message}`);
		this.name = 'MessageInputError';
	}
}

const LINE_BREAK = /[\r\n]/;
// Control characters other than TAB (NUL, ESC, DEL, C1 ...): they have no place in a header,
// and nodemailer's address parser silently deletes some (a NUL in "a\0b@x" would send to ab@x).
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;
// Invisible characters (zero-width, bidi controls, BOM) inside an address make it look like
// another one; legitimate in names and subjects (emoji joiners, RTL marks), never in an address.
const INVISIBLE = /\p{Cf}/u;
// What mail programs decode as an RFC 2047 encoded word even inside quotes: sent as typed, the
// recipient would read the decoded text instead of what the item asked for.
const ENCODED_WORD = /=\?[^?\s]+\?[bq]\?[^?\s]*\?=/i;
// Every Unicode space is a token break to the address parser, so outside quotes one of them
// splits an address without a visible trace: "a\u00a0b@x" is sent to b@x under the name "a".
const HIDDEN_SPACE = /[^\S \t]/;
// Embeddings, overrides and isolates: they reorder what a file name shows
// ("invoice\u202Efdp.exe" reads as "invoiceexe.pdf").
const BIDI_CONTROL = /[\u202a-\u202e\u2066-\u2069]/;
const FOLDER_CONTROL = /[\x00-\x1f\x7f]/;
// Deliberately simple: one @, no spaces, a dot-free domain is allowed (intranet hosts).
const ADDRESS = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+$/;
// RFC 5322 field-name: printable US-ASCII except colon.
const HEADER_NAME = /^[\x21-\x39\x3b-\x7e]+$/;
// Headers the message builder owns; letting users set them would break the MIME structure
// or smuggle recipients past the envelope.
const RESERVED_HEADERS = new Set([
	'from',
	'to',
	'cc',
	'bcc',
	'subject',
	'reply-to',
	'sender',
	'date',
	'message-id',
	'mime-version',
	'content-type',
	'content-transfer-encoding',
]);

export function assertNoLineBreak(field: string, value: string): void {
	if (LINE_BREAK.test(value)) {
		throw new MessageInputError(
			field,
			'contains a line break (CR or LF), which could inject mail headers',
			'Remove line breaks from this field, e.g. with {{ $json.value.replace(/[\\r\\n]+/g, " ") }}',
		);
	}
}

const codePoint = (char: string) => `U+${char.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;

function assertNoControl(field: string, value: string): void {
	const found = CONTROL.exec(value);
	if (found) {
		throw new MessageInputError(
			field,
			`contains the control character ${codePoint(found[0])}, which cannot be sent in a mail header`,
			'Remove control characters from this field, e.g. with {{ $json.value.replace(/[\\x00-\\x1f\\x7f]/g, "") }}',
		);
	}
}

/**
 * Text that becomes a header as typed (Subject, display names): no line break, no control
 * character, and nothing a mail program would decode into different text.
 */
export function assertHeaderText(field: string, value: string): void {
	assertNoLineBreak(field, value);
	assertNoControl(field, value);
	assertNoEncodedWord(field, value);
}

function assertNoEncodedWord(field: string, value: string): void {
	const word = ENCODED_WORD.exec(value);
	if (word) {
		throw new MessageInputError(
			field,
			`contains "${word[0]}", which mail programs decode as an encoded word, so recipients would read other text`,
			'Decode the text first (it looks like an undecoded MIME header), or remove the =?...?= part',
		);
	}
}

function assertNoHiddenBreak(field: string, text: string): void {
	let quoted = false;
	for (let i = 0; i < text.length; i++) {
		const char = text[i];
		if (char === '\\' && quoted) i++;
		else if (char === '"') quoted = !quoted;
		else if (!quoted && HIDDEN_SPACE.test(char)) {
			throw new MessageInputError(
				field,
				`contains the invisible space ${codePoint(char)} outside quotes, which would split an address`,
				'Remove it, or put a display name that needs it in double quotes',
			);
		}
	}
}

type AddressInput = string | string[] | MailAddress | MailAddress[] | null | undefined;

/** Accepts "a@x, B <b@y>", arrays of those, or {name, address} objects. */
export function parseAddressList(field: string, input: AddressInput | unknown): MailAddress[] {
	if (input === undefined || input === null || input === '') return [];
	const parts: unknown[] = Array.isArray(input) ? input : [input];
	const result: MailAddress[] = [];
	for (const part of parts) {
		if (part === undefined || part === null || part === '') continue;
		if (typeof part === 'object') {
			const candidate = part as Partial<MailAddress>;
			if (typeof candidate.address !== 'string') {
				throw new MessageInputError(field, 'an entry has no "address" string');
			}
			result.push(checkAddress(field, { name: candidate.name, address: candidate.address }));
			continue;
		}
		if (typeof part !== 'string') {
			throw new MessageInputError(field, `expected text or a list of addresses, got ${typeof part}`);
		}
		// Checked before parsing: the parser drops some control characters without a trace.
		assertNoLineBreak(field, part);
		assertNoControl(field, part);
		assertNoHiddenBreak(field, part);
		for (const parsed of addressparser(part, { flatten: true })) {
			result.push(checkAddress(field, { name: parsed.name || undefined, address: parsed.address }));
		}
	}
	return result;
}

function checkAddress(field: string, entry: MailAddress): MailAddress {
	const address = (entry.address ?? '').trim();
	// Checked before trimming: a name of "\r\n" must be refused, not quietly dropped.
	if (entry.name) assertHeaderText(field, entry.name);
	const name = typeof entry.name === 'string' ? entry.name.trim() : undefined;
	assertNoLineBreak(field, address);
	assertNoControl(field, address);
	if (INVISIBLE.test(address)) {
		throw new MessageInputError(
			field,
			`"${address}" contains an invisible character (zero-width or bidi control)`,
			'Type the address again or remove invisible characters, e.g. with .replace(/\\p{Cf}/gu, "")',
		);
	}
	if (!ADDRESS.test(address)) {
		const shown = address || name || '(empty)';
		throw new MessageInputError(field, `"${shown}" is not a valid email address`);
	}
	return name ? { name, address } : { address };
}

/**
 * The name an attachment is sent under. Content-Disposition carries a file name, never a path:
 * RFC 2183 tells receivers to ignore any directory in it, but not every client does, so only
 * the last component of a `/` or `\` path (or `C:name`) is kept, as browsers do with download
 * names. The rest stays as given (RTL, emoji, leading dots, long names: RFC 2231 encodes them).
 * A name with nothing left ("..", "C:\") falls back to the binary property's name.
 */
export function attachmentFileName(field: string, fileName: string | undefined, fallback: string): string {
	const given = fileName ?? '';
	assertNoLineBreak(field, given);
	assertNoControl(field, given);
	if (BIDI_CONTROL.test(given)) {
		throw new MessageInputError(
			field,
			'contains a bidi control character, which can disguise the real file extension',
			'Rename the file without right-to-left override characters (U+202A-U+202E, U+2066-U+2069)',
		);
	}
	// "=?utf-8?q?evil.exe?=" reaches the recipient as evil.exe
	assertNoEncodedWord(field, given);
	const base = given
		.split(/[/\\]/)
		.pop()!
		.replace(/^[a-z]:/i, '')
		.trim();
	return base === '' || base === '.' || base === '..' ? fallback : base;
}

/**
 * A folder name as the item gave it. Spaces at either end belong to the name (Dovecot and
 * Exchange allow " Archive"), so trimming would read another folder or none; only an all-blank
 * name counts as empty. Control characters are refused before anything connects: CR, LF and
 * NUL cannot travel in an IMAP command at all, and modified UTF-7 (RFC 3501 5.1.3) allows the
 * others only encoded, which imapflow does not do (Dovecot answers "not valid mUTF-7").
 */
export function checkFolderName(field: string, name: string, emptyHint: string): string {
	if (!name.trim()) throw new MessageInputError(field, 'is empty', emptyHint);
	const found = FOLDER_CONTROL.exec(name);
	if (found) {
		throw new MessageInputError(
			field,
			`contains the control character ${codePoint(found[0])}, which cannot be sent in an IMAP folder name`,
			'Remove control characters from the folder name',
		);
	}
	return name;
}

export function parseSingleAddress(field: string, input: unknown): MailAddress | undefined {
	const list = parseAddressList(field, input);
	if (list.length > 1) {
		throw new MessageInputError(field, 'must be a single address');
	}
	return list[0];
}

export function checkHeader(field: string, name: string, value: string): void {
	if (!HEADER_NAME.test(name)) {
		throw new MessageInputError(field, `"${name}" is not a valid header name`);
	}
	if (RESERVED_HEADERS.has(name.toLowerCase())) {
		throw new MessageInputError(
			field,
			`"${name}" is set by the node itself and cannot be a custom header`,
			'Use the matching node field (From, To, Subject, ...) instead',
		);
	}
	assertNoLineBreak(`${field} "${name}"`, value);
	assertNoControl(`${field} "${name}"`, value);
}

/**
 * Allowed-From rules from the credential: full addresses or "@domain" entries.
 * An empty rule list allows everything.
 */
export function isFromAllowed(address: string, rules: string[]): boolean {
	if (rules.length === 0) return true;
	const lower = address.toLowerCase();
	return rules.some((rule) => {
		const r = rule.trim().toLowerCase();
		if (!r) return false;
		return r.startsWith('@') ? lower.endsWith(r) : lower === r;
	});
}

export function splitList(value: string | undefined): string[] {
	return (value ?? '')
		.split(',')
		.map((s) => s.trim())
		.filter(Boolean);
}
