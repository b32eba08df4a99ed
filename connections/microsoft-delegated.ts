import { maskIdentifier } from '../model/redact';
import type { ConnectionKind } from './connection';
import { exchangeConnection } from './microsoft-exchange';
import { DELEGATED_CREDENTIAL, delegatedTokens, readDelegatedCredential, tokenUser } from './microsoft-credential';

/** A person's account connected in n8n ("Connect my account"); n8n refreshes its tokens through the hook. */
export const microsoftDelegatedKind: ConnectionKind = {
	authentication: 'microsoftDelegated',
	displayName: 'Microsoft 365 Delegated (OAuth)',
	description: 'A connected Microsoft 365 account signing in with XOAUTH2',
	labels: {
		send: { displayName: 'Microsoft 365 Delegated (SMTP OAuth)', description: 'A connected Microsoft 365 account (Connect my account) with SMTP.Send' },
		read: { displayName: 'Microsoft 365 Delegated (IMAP OAuth)', description: 'A connected Microsoft 365 account with IMAP.AccessAsUser.All' },
	},
	credentialType: DELEGATED_CREDENTIAL,
	protocols: ['imap', 'smtp'],
	send: true,
	read: true,
	selectsMailbox: true,
	async open(data, hooks) {
		const credential = readDelegatedCredential(data);
		const tokens = delegatedTokens(credential, hooks.refreshDelegated);
		const signedInUser = async () => tokenUser((await tokens.getToken(credential.audience)).token);
		return {
			...exchangeConnection(credential, tokens, 'delegated', signedInUser),
			async test() {
				const user = await signedInUser();
				return `Signed in to Microsoft 365 as ${maskIdentifier(user) || 'the connected account'}.`;
			},
		};
	},
};
