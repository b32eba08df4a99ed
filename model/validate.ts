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
		assertNoLineBreak(field, part);
		for (const parsed of addressparser(part, { flatten: true })) {
			result.push(checkAddress(field, { name: parsed.name || undefined, address: parsed.address }));
		}
	}
	return result;
}

function checkAddress(field: string, entry: MailAddress): MailAddress {
	const address = (entry.address ?? '').trim();
	if (entry.name) assertNoLineBreak(field, entry.name);
	assertNoLineBreak(field, address);
	if (!ADDRESS.test(address)) {
		const shown = address || entry.name || '(empty)';
		throw new MessageInputError(field, `"${shown}" is not a valid email address`);
	}
	return entry.name ? { name: entry.name, address } : { address };
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
