import type { Message } from '@microsoft/microsoft-graph-types';

import { ActionableError } from '../../../model/actionable-error';
import { EARLIEST_RECEIVED, odataString, toGraphQuery } from '../../../transports/graph/filter';

const message = (fields: Partial<Message>): Message => ({ id: 'm', ...fields });
const person = (address: string, name?: string) => ({ emailAddress: { address, ...(name ? { name } : {}) } });

describe('ReadFilter -> Graph list-messages query', () => {
	it('puts receivedDateTime first in $filter, as Graph requires with $orderby=receivedDateTime (else InefficientFilter)', () => {
		const q = toGraphQuery({ unreadOnly: true, hasAttachments: true, since: new Date('2026-11-01T00:00:00Z'), before: new Date('2026-11-08T12:30:00Z') }, true);
		expect(q.filter).toBe('receivedDateTime ge 2026-11-01T00:00:00.000Z and receivedDateTime lt 2026-11-08T12:30:00.000Z and isRead eq false and hasAttachments eq true');
		expect(q.orderBy).toBe('receivedDateTime desc');
		expect(q.matches).toBeUndefined();
	});

	it('adds an always-true receivedDateTime bound when only other properties are filtered', () => {
		const q = toGraphQuery({ unreadOnly: true }, false);
		expect(q.filter).toBe(`receivedDateTime ge ${EARLIEST_RECEIVED} and isRead eq false`);
		expect(q.orderBy).toBe('receivedDateTime asc');
	});

	it('no filter at all: no $filter', () => {
		expect(toGraphQuery({}, true).filter).toBeUndefined();
	});

	it('a whole From address goes to $filter, quoted as an OData literal that a quote cannot end', () => {
		const q = toGraphQuery({ from: "o'brien@example.com" }, true);
		expect(q.filter).toBe(`receivedDateTime ge ${EARLIEST_RECEIVED} and from/emailAddress/address eq 'o''brien@example.com'`);
		expect(q.matches).toBeUndefined();
		expect(odataString("a' or 1 eq 1 or 'b")).toBe("'a'' or 1 eq 1 or ''b'");
	});

	it('a partial From, To and Subject Contains are tested here, like IMAP SEARCH (case-insensitive substring of name or address)', () => {
		const q = toGraphQuery({ from: 'Alice', to: 'SALES@', subjectContains: 'invoice' }, true);
		expect(q.filter).toBeUndefined();
		expect(q.select.sort()).toEqual(['from', 'subject', 'toRecipients']);
		const hit = message({ from: person('a@example.com', 'Alice Smith'), toRecipients: [person('bob@example.com'), person('sales@example.com')], subject: 'Your Invoice 42' });
		expect(q.matches!(hit)).toBe(true);
		expect(q.matches!({ ...hit, subject: 'Receipt' })).toBe(false);
		expect(q.matches!({ ...hit, toRecipients: [person('bob@example.com')] })).toBe(false);
		expect(q.matches!({ ...hit, from: person('carol@example.com', 'Carol') })).toBe(false);
		// To is the To header only, as IMAP's TO key: a Cc recipient does not match.
		expect(q.matches!({ ...hit, toRecipients: [], ccRecipients: [person('sales@example.com')] })).toBe(false);
	});

	it('refuses a raw query with a one-line message naming the structured filters', () => {
		let error: unknown;
		try {
			toGraphQuery({ rawQuery: 'OR FROM a@x FROM b@y' }, true);
		} catch (e) {
			error = e;
		}
		expect(error).toBeInstanceOf(ActionableError);
		expect((error as ActionableError).code).toBe('GRAPH_RAW_QUERY_UNSUPPORTED');
		expect((error as ActionableError).hint).toMatch(/Unread Only.*Has Attachments/);
		expect(toGraphQuery({ rawQuery: '   ' }, true).filter).toBeUndefined();
	});

	it('refuses an invalid date', () => {
		expect(() => toGraphQuery({ since: new Date('nonsense') }, true)).toThrow(/Since: not a valid date/);
	});
});
