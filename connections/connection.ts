import type { Check, DiagnoseOptions, Protocol } from '../diagnostics/checks';
import type { MailReader, MailSender } from '../transports/contracts';

/**
 * One kind of credential as the nodes see it: a value of the nodes' "Authentication" selector,
 * the n8n credential type behind it, and how to turn the stored credential into senders and
 * readers. Nothing here imports n8n: the node hands in the credential's decrypted data and, for
 * delegated credentials, a callback through which n8n refreshes (and stores) tokens.
 */
export interface ConnectionKind {
	/** The Authentication option value, e.g. 'imap', 'microsoftAppOnly', 'microsoftAppOnlyGraph'. */
	authentication: string;
	/** Shown in the Authentication selector. */
	displayName: string;
	/** One line under the option. */
	description: string;
	/** Where the option reads differently in the sending and the reading nodes (e.g. "(SMTP OAuth)" / "(IMAP OAuth)"). */
	labels?: Partial<Record<'send' | 'read', { displayName: string; description: string }>>;
	/** A notice the nodes show under the Authentication selector while this kind is chosen (e.g. a service being retired). */
	notice?: string;
	/** Whether the node's Mailbox option applies (the credential can open more than one mailbox). */
	selectsMailbox?: boolean;
	/** n8n credential type name, e.g. 'modernAuthMicrosoftAppOnlyApi'. */
	credentialType: string;
	/** Which nodes offer it. */
	send: boolean;
	read: boolean;
	/** What the Test Connection node can test through this kind, the first being the default (and the Test button's). */
	protocols: Protocol[];
	/** Reads the credential and checks its fields; connects nothing. */
	open(data: CredentialData, hooks: ConnectionHooks): Promise<Connection>;
}

export type CredentialData = Record<string, unknown>;

export interface ConnectionHooks {
	/**
	 * Delegated OAuth2 only: asks n8n to redeem the stored refresh token and store the rotated
	 * one; resolves to the new access token. Absent where n8n cannot refresh (credential tests).
	 */
	refreshDelegated?: () => Promise<string>;
}

/** Per-item settings of a sender (from the node's options). */
export interface SenderTuning {
	/** Parallel connections / requests for this sender. */
	maxConnections: number;
	retry: { retries?: number; firstBackoffMs?: number; maxBackoffMs?: number };
}

/** Who one item signs in and sends as. */
export interface SendIdentity {
	/** Items with the same key share one pooled sender (for XOAUTH2 and Graph the mailbox). */
	key: string;
	/** The mailbox that signs in / sends (Graph: the /users/{mailbox} segment). */
	mailbox: string;
	/** Default From when the item gives none. */
	fromAddress: string;
	/** From addresses the credential permits (empty: any). */
	allowedFrom: string[];
}

/** One opened credential: parsed, its token provider built, ready to make senders and readers. */
export interface Connection {
	/** Values to scrub from anything that leaves the node; live (tokens join as they are issued). */
	secrets: string[];
	/** Shown once in the n8n log, never in items (e.g. certificate checks are off). */
	warning?: string;
	/** The mailbox an item that asks for `requested` ('' = the credential's default) works on; refuses one outside Allowed Mailboxes. */
	mailboxFor(requested: string, field?: string): Promise<string>;
	/** Who sends for an item asking for mailbox `requested`. */
	identityFor?(requested: string): Promise<SendIdentity>;
	sender?(identity: SendIdentity, tuning: SenderTuning): MailSender;
	reader?(mailbox: string): MailReader;
	/**
	 * The staged checks for one protocol (see diagnostics/checks.ts): reach, TLS, token,
	 * permission, mailbox access, login, read, optional round trip. Builds them only; the
	 * caller runs them with `runChecks`. A protocol the kind does not serve is an error.
	 */
	checks(options: DiagnoseOptions): Promise<Check[]>;
	/** The credential's Test button: resolves with a one-line success message or throws an ActionableError. */
	test(): Promise<string>;
}
