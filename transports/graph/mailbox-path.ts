import { ActionableError } from '../../model/actionable-error';

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// A plain address: no spaces, quotes, brackets or URL syntax in either part.
const ADDRESS = /^[A-Za-z0-9!$&'*+=^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$/;

/**
 * The `/users/{mailbox}` segment every Graph mail call starts with, or `/me` for a delegated
 * token without a mailbox. Only a plain address or an object id (GUID) is accepted, so nothing
 * a user types can step to another path (`/`, `..`), add a query (`?`, `#`) or smuggle an
 * encoded one (`%`); the result is encoded once more for good measure.
 */
export function mailboxPath(mailbox: string | undefined): string {
	if (mailbox === undefined || mailbox === '') return '/me';
	if (!isValidMailbox(mailbox)) {
		throw new ActionableError(
			`"${printable(mailbox)}" is not a mailbox Graph can address`,
			'GRAPH_INVALID_MAILBOX',
			'Enter the mailbox as a plain address (user@contoso.com) or its object id (GUID)',
		);
	}
	return `/users/${encodeURIComponent(mailbox)}`;
}

export function isValidMailbox(mailbox: string): boolean {
	if (mailbox.length > 320 || /[/?#%\\\s]|\.\./.test(mailbox)) return false;
	return GUID.test(mailbox) || ADDRESS.test(mailbox);
}

function printable(value: string): string {
	const shown = value.replace(/[^\x20-\x7e]/g, '?');
	return shown.length > 80 ? `${shown.slice(0, 80)}...` : shown;
}
