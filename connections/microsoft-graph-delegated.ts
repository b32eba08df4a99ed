import { IdentityError } from '../auth/identity-errors';
import { resolveCloud } from '../auth/clouds';
import {
	DELEGATED_CREDENTIAL,
	delegatedTokens,
	readDelegatedCredential,
	tokenUser,
} from '../nodes/shared/microsoft-connection';
import type { ConnectionHooks, ConnectionKind, CredentialData } from './connection';
import { graphConnection, graphTransports } from './microsoft-graph-transport';

/** The Graph host of the credential's cloud (Custom: its Graph Host field, if the credential has one). */
function graphHostOf(data: CredentialData): string {
	const text = (key: string) => (typeof data[key] === 'string' ? (data[key] as string).trim() : '');
	return resolveCloud(text('cloud') || 'global', { authorityHost: text('authorityHost'), graphHost: text('graphHost') }).graphHost;
}

function exchangeCredentialRefused(): IdentityError {
	return new IdentityError(
		'This delegated credential is connected for IMAP and SMTP (Use For = IMAP and SMTP), and its token is refused by Graph',
		'WRONG_AUDIENCE',
		'Set "Use For" to Microsoft Graph Mail in the credential and click Connect my account again (or keep it and use Authentication "Microsoft 365 Delegated (SMTP OAuth)")',
	);
}

function noRefreshHere(): IdentityError {
	return new IdentityError(
		'The stored Microsoft token has expired and cannot be renewed here',
		'RECONNECT_CREDENTIAL',
		'Run the node once (it renews the token through n8n), or open the credential and click Connect my account again',
	);
}

/** "Microsoft 365 Delegated (Graph)": a connected account's Graph token; `/me`, or `/users/{mailbox}` for a shared mailbox. */
export const microsoftDelegatedGraph: ConnectionKind = {
	authentication: 'microsoftDelegatedGraph',
	displayName: 'Microsoft 365 Delegated (Graph)',
	description: 'A connected Microsoft 365 account (Connect my account) with Use For = Microsoft Graph Mail',
	credentialType: DELEGATED_CREDENTIAL,
	send: true,
	read: true,
	async open(data, hooks: ConnectionHooks) {
		const credential = readDelegatedCredential(data as Parameters<typeof readDelegatedCredential>[0]);
		if (credential.audience !== 'graph') throw exchangeCredentialRefused();
		const tokens = delegatedTokens(credential, hooks.refreshDelegated ?? (() => Promise.reject(noRefreshHere())));
		let signedIn: Promise<string> | undefined;
		return graphConnection(
			{
				graphHost: graphHostOf(data),
				tokens,
				trust: { rejectUnauthorized: true },
				defaultMailbox: credential.mailbox,
				allowedMailboxes: credential.allowedMailboxes,
				secrets: credential.secrets,
				// Read from the token once: the default From, and what Allowed Mailboxes checks for /me.
				signedInUser: () =>
					(signedIn ??= tokens.getToken('graph').then(
						({ token }) => tokenUser(token),
						(error: unknown) => {
							signedIn = undefined;
							throw error;
						},
					)),
			},
			graphTransports,
		);
	},
};
