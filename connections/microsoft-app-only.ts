import { maskIdentifier } from '../model/redact';
import type { ConnectionKind } from './connection';
import { exchangeConnection } from './microsoft-exchange';
import { checkAppOnlyTokens } from './microsoft-graph-token-check';
import { APP_ONLY_CREDENTIAL, appOnlyTokens, assertMailboxAllowed, readAppOnlyCredential } from './microsoft-credential';

/** An app registration signing in with its own secret or certificate (client credentials), to SMTP and IMAP with XOAUTH2. */
export const microsoftAppOnlyKind: ConnectionKind = {
	authentication: 'microsoftAppOnly',
	displayName: 'Microsoft 365 App-Only (OAuth)',
	description: 'App registration signing in with XOAUTH2, no user password',
	labels: {
		send: { displayName: 'Microsoft 365 App-Only (SMTP OAuth)', description: 'App registration with SMTP.SendAsApp; signs in to SMTP with XOAUTH2, no user password' },
		read: { displayName: 'Microsoft 365 App-Only (IMAP OAuth)', description: 'App registration with IMAP.AccessAsApp; signs in with XOAUTH2' },
	},
	credentialType: APP_ONLY_CREDENTIAL,
	protocols: ['imap', 'smtp'],
	send: true,
	read: true,
	selectsMailbox: true,
	async open(data) {
		const credential = readAppOnlyCredential(data);
		const tokens = appOnlyTokens(credential);
		return {
			...exchangeConnection(credential, tokens, 'app-only'),
			/** Test button: a Graph and an Exchange token (the credential serves both), never the tokens themselves. */
			async test() {
				if (credential.mailbox) assertMailboxAllowed(credential, credential.mailbox, 'Default Mailbox');
				return await checkAppOnlyTokens(tokens, credential.cloud, `app ${maskIdentifier(credential.config.clientId)} in tenant ${maskIdentifier(credential.config.tenantId)}`);
			},
		};
	},
};
