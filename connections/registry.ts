import type { Protocol } from '../diagnostics/checks';
import { ActionableError } from '../model/actionable-error';
import type { ConnectionKind } from './connection';
import { ewsKind } from './ews';
import { imapKind } from './imap';
import { microsoftAppOnlyKind } from './microsoft-app-only';
import { microsoftDelegatedKind } from './microsoft-delegated';
import { microsoftAppOnlyGraph } from './microsoft-graph-app-only';
import { microsoftDelegatedGraph } from './microsoft-graph-delegated';
import { smtpKind } from './smtp';

/**
 * Every kind of credential the nodes offer, in the order the Authentication selector shows
 * them. A new kind is one line here: the nodes build their options and credentials from it.
 */
export const connectionKinds: readonly ConnectionKind[] = [smtpKind, imapKind, microsoftAppOnlyKind, microsoftDelegatedKind, microsoftAppOnlyGraph, microsoftDelegatedGraph, ewsKind];

/** Which node asks: sending, reading, or the Test Connection node (every kind that serves a protocol). */
export type Direction = 'send' | 'read' | 'test';

const offers = (kind: ConnectionKind, direction: Direction) => (direction === 'test' ? kind.protocols.length > 0 : kind[direction]);
const labelOf = (kind: ConnectionKind, direction: Direction) => (direction === 'test' ? undefined : kind.labels?.[direction]);

/** The kind behind a node's Authentication value. */
export function kindFor(authentication: string): ConnectionKind {
	const kind = connectionKinds.find((k) => k.authentication === authentication);
	if (!kind) {
		throw new ActionableError(
			`Unknown Authentication "${authentication}"`,
			'AUTHENTICATION_UNKNOWN',
			`Choose one of: ${connectionKinds.map((k) => k.authentication).join(', ')}`,
		);
	}
	return kind;
}

export function kindsFor(direction: Direction): ConnectionKind[] {
	return connectionKinds.filter((kind) => offers(kind, direction));
}

/** The Authentication selector's options (n8n INodePropertyOptions). */
export function authenticationOptions(direction: Direction): Array<{ name: string; value: string; description: string }> {
	return kindsFor(direction).map((kind) => ({
		name: labelOf(kind, direction)?.displayName ?? kind.displayName,
		value: kind.authentication,
		description: labelOf(kind, direction)?.description ?? kind.description,
	}));
}

/**
 * The notices of the kinds a node offers (n8n `notice` properties), each shown while its
 * Authentication is chosen; `authenticationField` is how the node's display options name the
 * selector ('authentication', or '/authentication' inside a collection).
 */
export function authenticationNotices(direction: Direction, authenticationField = 'authentication'): Array<{
	displayName: string;
	name: string;
	type: 'notice';
	default: '';
	displayOptions: { show: Record<string, string[]> };
}> {
	return kindsFor(direction).flatMap((kind) =>
		kind.notice
			? [{ displayName: kind.notice, name: `${kind.authentication}Notice`, type: 'notice' as const, default: '' as const, displayOptions: { show: { [authenticationField]: [kind.authentication] } } }]
			: [],
	);
}

/** Authentication values whose connection picks a mailbox (where the node's Mailbox option shows). */
export function mailboxAuthentications(direction: Direction): string[] {
	return kindsFor(direction)
		.filter((kind) => kind.selectsMailbox)
		.map((kind) => kind.authentication);
}

const PROTOCOL_NAMES: Record<Protocol, string> = { smtp: 'SMTP', imap: 'IMAP', graph: 'Microsoft Graph', ews: 'Exchange Web Services' };

export const protocolName = (protocol: Protocol) => PROTOCOL_NAMES[protocol];

/** Every protocol some kind serves, in registry order: the Test Connection node's Protocol options. */
export function testableProtocols(): Protocol[] {
	return [...new Set(kindsFor('test').flatMap((kind) => kind.protocols))];
}

/**
 * The protocol a test of `kind` runs: 'default' is the kind's first; one the kind does not
 * serve is refused, naming the field and what the kind serves.
 */
export function protocolFor(kind: ConnectionKind, requested: string, field = 'Protocol'): Protocol {
	if (!requested || requested === 'default') return kind.protocols[0];
	const protocol = kind.protocols.find((p) => p === requested);
	if (!protocol) {
		const served = kind.protocols.map(protocolName).join(', ');
		throw new ActionableError(
			`${field}: ${PROTOCOL_NAMES[requested as Protocol] ?? requested} is not served by Authentication "${kind.displayName}"`,
			'PROTOCOL_NOT_SERVED',
			`Set ${field} to Default or one of: ${served}`,
		);
	}
	return protocol;
}

/**
 * n8n's Test-button method per credential type (`testedBy`). The delegated OAuth2 credential has
 * none on purpose: n8n's editor shows no Test button for OAuth2 credentials (authorization code /
 * PKCE), and its credentials tester answers for any type extending oAuth2Api itself (OK when a
 * token is stored) before it looks at `testedBy`, so a method here would never run. Its staged
 * checks run in the Test Connection node instead.
 */
const CREDENTIAL_TESTS: Record<string, string> = {
	modernAuthSmtpApi: 'modernAuthSmtpConnectionTest',
	modernAuthImapApi: 'modernAuthImapConnectionTest',
	modernAuthMicrosoftAppOnlyApi: 'modernAuthMicrosoftAppOnlyTest',
	modernAuthEwsApi: 'modernAuthEwsConnectionTest',
};

export function credentialTestName(credentialType: string): string | undefined {
	return CREDENTIAL_TESTS[credentialType];
}

/** The kind whose connection the Test button of a credential type opens (the first registered for it). */
export function kindForCredential(credentialType: string): ConnectionKind {
	const kind = connectionKinds.find((k) => k.credentialType === credentialType);
	if (!kind) throw new Error(`No connection kind for credential type ${credentialType}`);
	return kind;
}

/** The node's `credentials` (n8n INodeCredentialDescription): one per credential type, shown for every Authentication using it. */
export function credentialsFor(direction: Direction): Array<{
	name: string;
	required: true;
	testedBy?: string;
	displayOptions: { show: { authentication: string[] } };
}> {
	const byType = new Map<string, string[]>();
	for (const kind of kindsFor(direction)) byType.set(kind.credentialType, [...(byType.get(kind.credentialType) ?? []), kind.authentication]);
	return [...byType].map(([name, authentications]) => {
		const testedBy = credentialTestName(name);
		return { name, required: true, ...(testedBy ? { testedBy } : {}), displayOptions: { show: { authentication: authentications } } };
	});
}

/** Test-button method names a node must carry for the credentials of a direction. */
export function credentialTestsFor(direction: Direction): Array<{ method: string; credentialType: string }> {
	return credentialsFor(direction).flatMap((c) => (c.testedBy ? [{ method: c.testedBy, credentialType: c.name }] : []));
}
