import type { Message, Recipient } from '@microsoft/microsoft-graph-types';

import { ActionableError } from '../../model/actionable-error';
import type { ReadFilter } from '../../model/incoming-message';

/**
 * A ReadFilter as Graph list-messages query options plus the part Graph cannot filter on.
 *
 * Graph's `$filter` covers isRead, receivedDateTime, from/emailAddress/address (exact address)
 * and hasAttachments. To, Subject Contains and a From that is not a whole address are applied
 * here, with the IMAP meaning (case-insensitive substring of a display name or address), so a
 * workflow gets the same messages from both transports.
 *
 * Graph's hasAttachments is false for a message whose only attachments are inline images of
 * its HTML body: exactly ReadFilter.hasAttachments' meaning, so it goes to `$filter` as is.
 */
export interface GraphQuery {
	/** `$filter`, or undefined for none. */
	filter?: string;
	/** `$orderby`: receivedDateTime first, as Graph requires when both are given. */
	orderBy: string;
	/** Fields the client-side test reads, to add to `$select`. */
	select: string[];
	/** The client-side part; undefined when Graph filters everything. */
	matches?: (message: Message) => boolean;
}

/**
 * Graph refuses `$filter` with `$orderby` unless the ordered property comes first in the filter
 * (InefficientFilter, "The restriction or sort order is too complex"), so a filter without a
 * date bound starts with this always-true one.
 */
export const EARLIEST_RECEIVED = '1900-01-01T00:00:00Z';

const WHOLE_ADDRESS = /^[^\s@"<>(),;:]+@[^\s@'"<>(),;:]+$/;

export function toGraphQuery(filter: ReadFilter, newestFirst: boolean): GraphQuery {
	if (filter.rawQuery?.trim()) {
		throw new ActionableError(
			'Raw Query is not supported for Microsoft 365 (Graph)',
			'GRAPH_RAW_QUERY_UNSUPPORTED',
			'Raw queries are IMAP SEARCH keys; with Graph use Unread Only, Since, Before, From, To, Subject Contains and Has Attachments',
		);
	}
	const dates: string[] = [];
	const others: string[] = [];
	if (filter.since) dates.push(`receivedDateTime ge ${isoDate(filter.since, 'Since')}`);
	if (filter.before) dates.push(`receivedDateTime lt ${isoDate(filter.before, 'Before')}`);
	if (filter.unreadOnly) others.push('isRead eq false');
	if (filter.hasAttachments) others.push('hasAttachments eq true');
	const from = filter.from?.trim();
	const fromIsAddress = Boolean(from && WHOLE_ADDRESS.test(from));
	if (from && fromIsAddress) others.push(`from/emailAddress/address eq ${odataString(from)}`);
	if (others.length && !dates.length) dates.push(`receivedDateTime ge ${EARLIEST_RECEIVED}`);
	const clauses = [...dates, ...others];

	const tests: Array<(message: Message) => boolean> = [];
	const select = new Set<string>();
	if (from && !fromIsAddress) {
		select.add('from');
		tests.push((m) => recipientContains(m.from ? [m.from] : [], from));
	}
	const to = filter.to?.trim();
	if (to) {
		select.add('toRecipients');
		tests.push((m) => recipientContains(m.toRecipients ?? [], to));
	}
	const subject = filter.subjectContains;
	if (subject) {
		select.add('subject');
		tests.push((m) => (m.subject ?? '').toLowerCase().includes(subject.toLowerCase()));
	}
	return {
		...(clauses.length ? { filter: clauses.join(' and ') } : {}),
		orderBy: `receivedDateTime ${newestFirst ? 'desc' : 'asc'}`,
		select: [...select],
		...(tests.length ? { matches: (m: Message) => tests.every((test) => test(m)) } : {}),
	};
}

/** An OData string literal: single quotes doubled (OData ABNF), so a value cannot end the literal. */
export function odataString(value: string): string {
	return `'${value.replace(/'/g, "''")}'`;
}

/** An OData DateTimeOffset literal (unquoted ISO 8601, UTC). */
function isoDate(date: Date, field: string): string {
	if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
		throw new ActionableError(`${field}: not a valid date`, 'GRAPH_BAD_FILTER', 'Give an ISO 8601 date such as 2026-11-01T00:00:00Z');
	}
	return date.toISOString();
}

function recipientContains(recipients: Recipient[], needle: string): boolean {
	const wanted = needle.toLowerCase();
	return recipients.some((r) => {
		const name = r.emailAddress?.name ?? '';
		const address = r.emailAddress?.address ?? '';
		return name.toLowerCase().includes(wanted) || address.toLowerCase().includes(wanted);
	});
}
