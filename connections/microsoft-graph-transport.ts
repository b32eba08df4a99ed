import type { TokenProvider } from '../auth/app-only-token-provider';
import { ActionableError } from '../model/actionable-error';
import { createGraphClient, type GraphClientOptions } from '../transports/graph/graph-client';
import { GraphReader } from '../transports/graph/graph-reader';
import { GraphSender } from '../transports/graph/graph-sender';
import { isValidMailbox } from '../transports/graph/mailbox-path';
import type { TlsTrust } from '../transports/tls-options';
import type { Connection, SenderTuning, SendIdentity } from './connection';
import { assertMailboxAllowed } from './microsoft-credential';

/**
 * What both Graph kinds (app-only, delegated) share once their credential is parsed: the
 * Graph host and token provider, the mailbox rules, and how senders and readers are made.
 */
export interface GraphAccess {
	graphHost: string;
	tokens: TokenProvider;
	trust: TlsTrust;
	/** Credential's default mailbox; '' for delegated means the signed-in account (`/me`). */
	defaultMailbox: string;
	allowedMailboxes: string[];
	secrets: string[];
	/** The signed-in account's address (delegated, from the token), for From and Allowed Mailboxes. */
	signedInUser?: () => Promise<string>;
}

/** Graph's MailboxConcurrency: requests in flight per mailbox. */
const MAX_CONCURRENCY = 4;

function noMailbox(): ActionableError {
	return new ActionableError(
		'No mailbox to use through Graph',
		'MAILBOX_REQUIRED',
		'Set Default Mailbox in the credential, or the node option Mailbox',
	);
}

/** Checked before anything connects, so the refusal names the field (the client checks again). */
function notAddressable(field: string, mailbox: string): ActionableError {
	return new ActionableError(
		`${field}: "${mailbox}" is not a mailbox Graph can address`,
		'GRAPH_INVALID_MAILBOX',
		`Enter ${field} as a plain address (user@contoso.com) or the mailbox's object id (GUID)`,
	);
}

/** One opened Graph credential: mailbox rules first, then senders, readers and the Test button. */
export function graphConnection(access: GraphAccess): Connection {
	const endpoint = (mailbox: string, extra: Partial<GraphClientOptions> = {}): GraphClientOptions => ({
		graphHost: access.graphHost,
		tokens: access.tokens,
		trust: access.trust,
		...(mailbox ? { mailbox } : {}),
		...extra,
	});

	const mailboxFor = async (requested: string, field = 'Mailbox'): Promise<string> => {
		const mailbox = (requested || access.defaultMailbox).trim();
		if (mailbox) {
			assertMailboxAllowed(access, mailbox, field);
			if (!isValidMailbox(mailbox)) throw notAddressable(field, mailbox);
			return mailbox;
		}
		if (!access.signedInUser) throw noMailbox();
		// `/me`: the signed-in account must itself be allowed.
		if (access.allowedMailboxes.length) assertMailboxAllowed(access, await access.signedInUser(), field);
		return '';
	};

	return {
		secrets: access.secrets,
		mailboxFor,
		async identityFor(requested: string): Promise<SendIdentity> {
			const mailbox = await mailboxFor(requested);
			const fromAddress = mailbox || (await access.signedInUser?.()) || '';
			return {
				key: (mailbox || 'me').toLowerCase(),
				mailbox,
				fromAddress,
				allowedFrom: access.allowedMailboxes,
			};
		},
		sender: (identity: SendIdentity, tuning: SenderTuning) =>
			new GraphSender(
				endpoint(identity.mailbox, {
					maxConcurrency: Math.min(MAX_CONCURRENCY, Math.max(1, tuning.maxConnections)),
					retry: {
						...(tuning.retry.retries !== undefined ? { attempts: tuning.retry.retries + 1 } : {}),
						firstBackoffMs: tuning.retry.firstBackoffMs,
						maxBackoffMs: tuning.retry.maxBackoffMs,
					},
				}),
			),
		// One client per reader: it holds the mailbox's request slots and closes with the reader.
		reader: (mailbox: string) => new GraphReader(createGraphClient(endpoint(mailbox))),
		async test(): Promise<string> {
			const acquired = `Graph token acquired for ${access.graphHost}`;
			if (!access.defaultMailbox && !access.signedInUser) {
				await access.tokens.getToken('graph', { forceRefresh: true });
				return `${acquired}; set Default Mailbox to also check that the app can read it`;
			}
			const mailbox = await mailboxFor('', 'Default Mailbox');
			const inbox = await readInbox(endpoint(mailbox));
			return `${acquired}; Inbox of ${mailbox || 'the signed-in account'}: ${inbox}`;
		},
	};
}

/** The Inbox's counts: proves the token is accepted and the app may open the mailbox. */
async function readInbox(endpoint: GraphClientOptions): Promise<string> {
	const client = createGraphClient(endpoint);
	try {
		const inbox = await client.get<{
			totalItemCount?: number;
			unreadItemCount?: number;
		}>(`${client.mailbox}/mailFolders/inbox`);
		return `${inbox.totalItemCount ?? 0} messages, ${inbox.unreadItemCount ?? 0} unread`;
	} finally {
		client.close();
	}
}
