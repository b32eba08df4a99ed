import { IdentityError } from '../auth/identity-errors';
import type { ConnectionHooks, ConnectionKind } from './connection';
import { text } from './credential-fields';
import { DELEGATED_CREDENTIAL, delegatedTokens, readDelegatedCredential, tokenUser } from './microsoft-credential';
import { graphConnection } from './microsoft-graph-transport';

function exchangeCredentialRefused(): IdentityError {
	return new IdentityError(
		'This delegated credential is connected for IMAP and SMTP (Use For = IMAP and SMTP), and its token is refused by Graph',
		'WRONG_AUDIENCE',
		'Set "Use For" to Microsoft Graph Mail in the credential and click Connect my account again (or keep it and use Authentication "Microsoft 365 Delegated (SMTP OAuth)")',
	);
}

/** "Microsoft 365 Delegated (Graph)": a connected account's Graph token; `/me`, or `/users/{mailbox}` for a shared mailbox. */
export const microsoftDelegatedGraph: ConnectionKind = {
	authentication: 'microsoftDelegatedGraph',
	displayName: 'Microsoft 365 Delegated (Graph)',
	description: 'A connected Microsoft 365 account (Connect my account) with Use For = Microsoft Graph Mail',
	credentialType: DELEGATED_CREDENTIAL,
	protocols: ['graph'],
	send: true,
	read: true,
	selectsMailbox: true,
	async open(data, hooks: ConnectionHooks) {
		const credential = readDelegatedCredential(data);
		if (credential.audience !== 'graph') throw exchangeCredentialRefused();
		const tokens = delegatedTokens(credential, hooks.refreshDelegated);
		let signedIn: Promise<string> | undefined;
		return graphConnection({
			graphHost: credential.cloud.graphHost,
			tokens,
			trust: { rejectUnauthorized: true },
			defaultMailbox: credential.mailbox,
			allowedMailboxes: credential.allowedMailboxes,
			secrets: credential.secrets,
			diagnostics: {
				flavour: 'delegated',
				authorityHost: credential.cloud.authorityHost,
				tenantId: text(data, 'tenant'),
				clientId: text(data, 'clientId'),
				// Where n8n cannot refresh (Test button), a forced renewal would only fail: check the stored token.
				...(hooks.refreshDelegated ? {} : { tokens: { getToken: (audience, options) => tokens.getToken(audience, { ...options, forceRefresh: false }) } }),
			},
			// Read from the token once: the default From, and what Allowed Mailboxes checks for /me.
			signedInUser: () =>
				(signedIn ??= tokens.getToken('graph').then(
					({ token }) => tokenUser(token),
					(error: unknown) => {
						signedIn = undefined;
						throw error;
					},
				)),
		});
	},
};
