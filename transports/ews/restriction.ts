import { ActionableError } from '../../model/actionable-error';
import type { ReadFilter } from '../../model/incoming-message';
import type { XmlObject } from './types';
import { assertXmlSafe } from './xml';

/** PidTagSentRepresentingSmtpAddress: the From address as SMTP (message:From cannot be searched with Contains). */
const FROM_SMTP_ADDRESS = { '@_PropertyTag': '0x5D02', '@_PropertyType': 'String' };

/**
 * A ReadFilter as an EWS `<m:Restriction>` (undefined when nothing narrows the search). Every
 * value is an attribute the builder escapes; nothing is concatenated into XML. The text tests
 * are case-insensitive substring tests, the IMAP meaning of FROM / TO / SUBJECT.
 *
 * item:HasAttachments is Exchange's own flag; like Graph's hasAttachments it leaves out inline
 * images of the HTML body.
 */
export function toRestriction(filter: ReadFilter): XmlObject | undefined {
	if (filter.rawQuery?.trim()) {
		throw new ActionableError(
			'Raw Query is not supported for Exchange Web Services (EWS)',
			'EWS_RAW_QUERY_UNSUPPORTED',
			'Raw Query takes IMAP SEARCH keys; with EWS leave Raw Query empty and use Unread Only, Since, Before, From, To, Subject Contains and Has Attachments',
		);
	}
	const conditions: Array<[string, XmlObject]> = [];
	if (filter.unreadOnly) conditions.push(['t:IsEqualTo', compare({ 't:FieldURI': { '@_FieldURI': 'message:IsRead' } }, 'false')]);
	if (filter.since) conditions.push(['t:IsGreaterThanOrEqualTo', compare(received(), isoDate(filter.since, 'Since'))]);
	if (filter.before) conditions.push(['t:IsLessThan', compare(received(), isoDate(filter.before, 'Before'))]);
	// Checked here under the names the user typed them in; the builder would name request elements.
	const subject = filter.subjectContains;
	assertXmlSafe(subject, 'Subject Contains filter');
	if (subject) conditions.push(['t:Contains', contains({ 't:FieldURI': { '@_FieldURI': 'item:Subject' } }, subject)]);
	const from = filter.from?.trim();
	assertXmlSafe(from, 'From filter');
	if (from) conditions.push(['t:Contains', contains({ 't:ExtendedFieldURI': FROM_SMTP_ADDRESS }, from)]);
	const to = filter.to?.trim();
	assertXmlSafe(to, 'To filter');
	if (to) conditions.push(['t:Contains', contains({ 't:FieldURI': { '@_FieldURI': 'item:DisplayTo' } }, to)]);
	if (filter.hasAttachments) conditions.push(['t:IsEqualTo', compare({ 't:FieldURI': { '@_FieldURI': 'item:HasAttachments' } }, 'true')]);
	if (!conditions.length) return undefined;
	if (conditions.length === 1) return { [conditions[0][0]]: conditions[0][1] };
	// Under <t:And> the conditions are grouped by element name (the builder's object form); AND does not care about order.
	const and: Record<string, XmlObject[]> = {};
	for (const [name, condition] of conditions) (and[name] ??= []).push(condition);
	return { 't:And': and };
}

function received(): XmlObject {
	return { 't:FieldURI': { '@_FieldURI': 'item:DateTimeReceived' } };
}

function compare(field: XmlObject, value: string): XmlObject {
	return { ...field, 't:FieldURIOrConstant': { 't:Constant': { '@_Value': value } } };
}

function contains(field: XmlObject, value: string): XmlObject {
	return { '@_ContainmentMode': 'Substring', '@_ContainmentComparison': 'IgnoreCase', ...field, 't:Constant': { '@_Value': value } };
}

function isoDate(date: Date, field: string): string {
	if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
		throw new ActionableError(`${field}: not a valid date`, 'EWS_BAD_FILTER', 'Give an ISO 8601 date such as 2026-11-01T00:00:00Z');
	}
	return date.toISOString();
}
