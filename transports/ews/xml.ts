import { XMLBuilder, XMLParser } from 'fast-xml-parser';

import { EWS_CODES, type XmlObject } from './types';
import { EwsError } from './errors';

/** Namespaces of EWS requests (SOAP 1.1; `t` types, `m` messages). */
export const SOAP_NS = 'http://schemas.xmlsoap.org/soap/envelope/';
export const TYPES_NS = 'http://schemas.microsoft.com/exchange/services/2006/types';
export const MESSAGES_NS = 'http://schemas.microsoft.com/exchange/services/2006/messages';

/**
 * Largest response read (bytes). A GetItem with the MIME of a 150 MB message (Exchange's upper
 * send limit) is about 200 MB of base64; anything larger is refused instead of filling memory.
 * MAM_EWS_MAX_RESPONSE_BYTES lowers or raises it.
 */
export function maxResponseBytes(): number {
	const configured = Number(process.env.MAM_EWS_MAX_RESPONSE_BYTES);
	return Number.isFinite(configured) && configured > 0 ? configured : 220 * 1024 * 1024;
}

/**
 * Children of these containers are always arrays after parsing, so one item and many look the
 * same to the code that reads them (`Items.Message[0]`, `Folders.Folder[0]`, ...).
 */
const COLLECTIONS = new Set([
	'ResponseMessages',
	'Folders',
	'Items',
	'Attachments',
	'Changes',
	'ToRecipients',
	'CcRecipients',
	'BccRecipients',
	'ReplyTo',
	'InternetMessageHeaders',
	'MessageXml',
	'ItemIds',
	'FolderIds',
	'AttachmentIds',
	'Groups',
	'Categories',
	'Members',
	'Resolutions',
]);

/** Elements that may repeat wherever they are. */
const ALWAYS_ARRAY = new Set(['ExtendedProperty', 'Protocol']);

function isRepeated(tagName: string, jPath: string, isAttribute: boolean | undefined): boolean {
	if (isAttribute) return false;
	if (ALWAYS_ARRAY.has(tagName)) return true;
	const parts = jPath.split('.');
	const parent = parts.length >= 2 ? parts[parts.length - 2] : '';
	return COLLECTIONS.has(parent);
}

/**
 * Characters XML 1.0 can carry (https://www.w3.org/TR/xml/#charsets); the builder escapes markup
 * but passes anything else through, and Exchange refuses the whole request for one bad one.
 */
const NOT_XML_1_0 = /[^\u0009\u000A\u000D\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

// \r is written as a character reference so it survives the parser's line-end normalization, and
// \n and \t too so attribute values keep them (attribute normalization turns them into spaces).
const ENTITIES = [
	{ regex: /&/g, val: '&amp;' },
	{ regex: />/g, val: '&gt;' },
	{ regex: /</g, val: '&lt;' },
	{ regex: /'/g, val: '&apos;' },
	{ regex: /"/g, val: '&quot;' },
	{ regex: /\r/g, val: '&#xD;' },
	{ regex: /\n/g, val: '&#xA;' },
	{ regex: /\t/g, val: '&#x9;' },
];

const builder = new XMLBuilder({
	ignoreAttributes: false,
	attributeNamePrefix: '@_',
	textNodeName: '#text',
	suppressEmptyNode: true,
	suppressBooleanAttributes: false,
	processEntities: true,
	format: false,
	entities: ENTITIES,
} as ConstructorParameters<typeof XMLBuilder>[0]);

const parser = new XMLParser({
	ignoreAttributes: false,
	attributeNamePrefix: '@_',
	textNodeName: '#text',
	removeNSPrefix: true,
	// Subjects and folder names keep their leading and trailing spaces, and "007" stays a string.
	trimValues: false,
	parseTagValue: false,
	parseAttributeValue: false,
	ignoreDeclaration: true,
	ignorePiTags: true,
	// Numeric character references (&#xD;, &#x1F600;) are decoded along with the XML ones.
	htmlEntities: true,
	processEntities: { enabled: true, maxEntityCount: 20, maxTotalExpansions: 1000, maxExpandedLength: 100_000 },
	maxNestedTags: 200,
	isArray: (tagName: string, jPath: unknown, _leaf: boolean, isAttribute: boolean) => isRepeated(tagName, String(jPath), isAttribute),
});

/** The first character of `value` XML 1.0 cannot carry, or undefined. */
export function invalidXmlCharacter(value: string): { index: number; codePoint: number } | undefined {
	const match = NOT_XML_1_0.exec(value);
	if (!match) return undefined;
	return { index: match.index, codePoint: match[0].codePointAt(0) ?? 0 };
}

function fieldName(key: string): string {
	const bare = key.startsWith('@_') ? key.slice(2) : key;
	return bare.replace(/^[A-Za-z]+:/, '');
}

/**
 * Refuses a request value XML 1.0 cannot carry, naming where it is (e.g.
 * `CreateItem.Items.Message.Subject`), before anything is sent.
 */
export function assertXmlSafe(value: unknown, path: string): void {
	if (typeof value === 'string') {
		const bad = invalidXmlCharacter(value);
		if (bad) {
			const code = `U+${bad.codePoint.toString(16).toUpperCase().padStart(4, '0')}`;
			throw new EwsError(
				`The field ${path} contains a character XML cannot carry (${code} at position ${bad.index + 1}); nothing was sent`,
				EWS_CODES.INVALID_XML_CHARACTER,
				'Remove control characters (U+0000-U+0008, U+000B, U+000C, U+000E-U+001F), U+FFFE/U+FFFF and unpaired surrogates from that value',
			);
		}
		return;
	}
	if (Array.isArray(value)) {
		// Repeated elements share their element's name in the path: the index adds nothing a user sees.
		value.forEach((entry, index) => assertXmlSafe(entry, `${path}[${index + 1}]`));
		return;
	}
	if (value && typeof value === 'object') {
		for (const [key, entry] of Object.entries(value)) {
			if (key === '#text') assertXmlSafe(entry, path);
			else assertXmlSafe(entry, path ? `${path}.${fieldName(key)}` : fieldName(key));
		}
	}
}

/** XML text of a builder object ('@_' attributes, '#text' text), every value checked and escaped. */
export function buildXml(object: XmlObject, rootPath = ''): string {
	assertXmlSafe(object, rootPath);
	return builder.build(object) as string;
}

/**
 * Parses a response. Namespace prefixes are removed, '@_' are attributes, text stays exactly as
 * sent (no trimming, no number conversion); whitespace between elements is dropped.
 */
export function parseXml(text: string): Record<string, unknown> {
	if (text.length > maxResponseBytes()) {
		throw new EwsError(
			`The EWS response has ${text.length} characters, more than the ${maxResponseBytes()} this client reads`,
			EWS_CODES.RESPONSE_INVALID,
			'Ask for fewer items or properties per request (smaller page size, no MIME content)',
		);
	}
	let parsed: unknown;
	try {
		parsed = parser.parse(text);
	} catch (error) {
		throw new EwsError(
			`The EWS response is not well-formed XML: ${oneLine(error instanceof Error ? error.message : String(error))}`,
			EWS_CODES.RESPONSE_INVALID,
			'Check that the URL is the EWS endpoint (https://<server>/EWS/Exchange.asmx) and not a proxy or login page',
		);
	}
	return dropLayoutWhitespace(parsed) as Record<string, unknown>;
}

/** Removes whitespace-only text beside child elements (indentation), never a leaf's own text. */
function dropLayoutWhitespace(node: unknown): unknown {
	if (Array.isArray(node)) return node.map(dropLayoutWhitespace);
	if (!node || typeof node !== 'object') return node;
	const object = node as Record<string, unknown>;
	const keys = Object.keys(object);
	const text = object['#text'];
	const hasChildren = keys.some((key) => key !== '#text' && !key.startsWith('@_'));
	if (typeof text === 'string' && hasChildren && text.trim() === '') delete object['#text'];
	for (const key of keys) if (key !== '#text' && !key.startsWith('@_')) object[key] = dropLayoutWhitespace(object[key]);
	return object;
}

/** The text of an element that may carry attributes (`{ '#text': 'x', '@_a': .. }`) or none. */
export function textOf(node: unknown): string | undefined {
	if (node === undefined || node === null) return undefined;
	if (typeof node === 'string') return node;
	if (typeof node === 'number' || typeof node === 'boolean') return String(node);
	if (typeof node === 'object' && !Array.isArray(node)) {
		const text = (node as Record<string, unknown>)['#text'];
		return text === undefined ? '' : String(text);
	}
	return undefined;
}

/** `value` as an array: undefined -> [], one -> [one]. */
export function asArray<T>(value: T | T[] | undefined): T[] {
	if (value === undefined || value === null) return [];
	return Array.isArray(value) ? value : [value];
}

function oneLine(text: string): string {
	const line = text.replace(/\s+/g, ' ').trim();
	return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}
