import type { ICredentialDataDecryptedObject, IExecuteFunctions, ILoadOptionsFunctions } from 'n8n-workflow';

import { IdentityError } from '../../auth/identity-errors';
import { ActionableError } from '../../model/actionable-error';
import { ImapReader, type ImapSecurity } from '../../transports/imap/imap-reader';
import {
	APP_ONLY_CREDENTIAL,
	appOnlyTokens,
	DELEGATED_CREDENTIAL,
	delegatedTokensThroughN8n,
	microsoftImapReader,
	readAppOnlyCredential,
	readDelegatedCredential,
	tokenUser,
} from './microsoft-connection';

export const IMAP_CREDENTIAL = 'modernAuthImapApi';

export type ReadAuthentication = 'imap' | 'microsoftAppOnly' | 'microsoftDelegated';

export interface ReaderSetup {
	reader: ImapReader;
	/** Values to scrub from any message that leaves the node. */
	secrets: string[];
	warning?: string;
}

function readImapCredential(data: ICredentialDataDecryptedObject) {
	const text = (key: string) => (typeof data[key] === 'string' ? (data[key] as string).trim() : '');
	const security = (['tls', 'starttls', 'none'].includes(text('security')) ? text('security') : 'tls') as ImapSecurity;
	const port = Number(data.port) > 0 ? Number(data.port) : 993;
	return {
		host: text('host'),
		port,
		security,
		allowUnencrypted: data.allowUnencrypted === true,
		user: text('user'),
		password: typeof data.password === 'string' ? data.password : '',
		caCertificate: text('caCertificate'),
		ignoreCertificateErrors: data.ignoreCertificateErrors === true,
		connectionTimeoutMs: seconds(data.connectionTimeout, 30) * 1000,
		// A server that stops answering mid-FETCH fails the read after this, instead of holding it.
		socketTimeoutMs: seconds(data.socketTimeout, 120) * 1000,
	};
}

function seconds(value: unknown, fallback: number): number {
	const n = Number(value);
	return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** Builds the reader for the credential chosen by "Authentication" (not yet connected). */
export async function prepareReader(
	ctx: IExecuteFunctions | ILoadOptionsFunctions,
	authentication: ReadAuthentication,
	mailboxOverride = '',
): Promise<ReaderSetup> {
	const factory = await readerFactory(ctx, authentication);
	const mailbox = await factory.mailboxFor(mailboxOverride);
	return { secrets: factory.secrets, warning: factory.warning, reader: factory.readerFor(mailbox) };
}

/** One credential, read once; readers for any mailbox it may open. */
interface ReaderFactory {
	secrets: string[];
	warning?: string;
	/** The mailbox a request for `requested` opens (see resolveMailbox). */
	mailboxFor(requested: string): Promise<string>;
	readerFor(mailbox: string): ImapReader;
}

async function readerFactory(ctx: IExecuteFunctions | ILoadOptionsFunctions, authentication: ReadAuthentication): Promise<ReaderFactory> {
	if (authentication === 'imap') {
		const credential = readImapCredential(await ctx.getCredentials(IMAP_CREDENTIAL));
		if (!credential.host) throw new ActionableError('The IMAP credential has no host', 'IMAP_CONFIG', 'Open the credential and fill in Host');
		if (credential.security === 'none' && !credential.allowUnencrypted) {
			throw new ActionableError(
				'The IMAP credential uses Security "None" without "Allow Unencrypted Connection"',
				'IMAP_UNENCRYPTED_REFUSED',
				'Choose SSL/TLS or STARTTLS, or switch on "Allow Unencrypted Connection" if you really mean it',
			);
		}
		return {
			secrets: [credential.password],
			warning: credential.ignoreCertificateErrors
				? `TLS certificate checks are OFF for ${credential.host} (credential option "Ignore Certificate Errors")`
				: undefined,
			// A password signs in to its own user's mailbox; the Mailbox option is Microsoft's only.
			mailboxFor: async () => credential.user,
			readerFor: () =>
				new ImapReader({
					host: credential.host,
					port: credential.port,
					security: credential.security,
					auth: { type: 'password', user: credential.user, pass: credential.password },
					rejectUnauthorized: !credential.ignoreCertificateErrors,
					ca: credential.caCertificate || undefined,
					connectionTimeoutMs: credential.connectionTimeoutMs,
					socketTimeoutMs: credential.socketTimeoutMs,
				}),
		};
	}
	if (authentication === 'microsoftAppOnly') {
		const credential = readAppOnlyCredential(await ctx.getCredentials(APP_ONLY_CREDENTIAL));
		const tokens = appOnlyTokens(credential);
		return {
			secrets: credential.secrets,
			mailboxFor: async (requested) => resolveMailbox(requested, credential.mailbox),
			readerFor: (mailbox) => microsoftImapReader(credential, tokens, 'app-only', mailbox),
		};
	}
	const credential = readDelegatedCredential(await ctx.getCredentials(DELEGATED_CREDENTIAL));
	const tokens = delegatedTokensThroughN8n(ctx, credential);
	return {
		secrets: credential.secrets,
		mailboxFor: async (requested) =>
			resolveMailbox(requested, credential.mailbox, async () => tokenUser((await tokens.getToken(credential.audience)).token)),
		readerFor: (mailbox) => microsoftImapReader(credential, tokens, 'delegated', mailbox),
	};
}

/**
 * The one place that decides which mailbox a Microsoft request opens: the node's Mailbox
 * option, else the credential's mailbox, else (delegated) the signed-in account.
 */
async function resolveMailbox(requested: string, credentialMailbox: string, signedInUser?: () => Promise<string>): Promise<string> {
	let mailbox = (requested || credentialMailbox).trim();
	if (!mailbox && signedInUser) mailbox = (await signedInUser()).trim();
	if (!mailbox) throw noMailbox();
	return mailbox;
}

/**
 * The readers of one execution: one connection per distinct mailbox, opened when the first
 * item asks for it and shared by the items after it (a failed sign-in is not retried for
 * every item). The credential is the node's (item 0's Authentication). closeAll() ends them.
 */
export class ReaderPool {
	private readonly readers = new Map<string, Promise<ImapReader>>();

	private constructor(private readonly factory: ReaderFactory) {}

	static async open(ctx: IExecuteFunctions, authentication: ReadAuthentication): Promise<ReaderPool> {
		return new ReaderPool(await readerFactory(ctx, authentication));
	}

	get secrets(): string[] {
		return this.factory.secrets;
	}

	get warning(): string | undefined {
		return this.factory.warning;
	}

	/** The connected reader for the mailbox `requested` resolves to. */
	async reader(requested: string): Promise<ImapReader> {
		const mailbox = await this.factory.mailboxFor(requested);
		const key = mailbox.toLowerCase();
		let reader = this.readers.get(key);
		if (!reader) {
			const created = this.factory.readerFor(mailbox);
			reader = created.connect().then(() => created);
			// closeAll() must not meet an unhandled rejection of a failed sign-in
			reader.catch(() => {});
			this.readers.set(key, reader);
		}
		const connected = await reader;
		// An earlier item's connection may have been reset or timed out: the next item gets a new one.
		if (!connected.connected) await connected.reconnect();
		return connected;
	}

	async closeAll(): Promise<void> {
		const readers = [...this.readers.values()];
		this.readers.clear();
		await Promise.all(readers.map((reader) => reader.then((r) => r.close(), () => undefined)));
	}
}

function noMailbox(): IdentityError {
	return new IdentityError('No mailbox to open', 'MAILBOX_REQUIRED', 'Set the mailbox in the credential, or the node option Mailbox');
}
