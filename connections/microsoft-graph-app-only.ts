import type { ConnectionKind } from './connection';
import { APP_ONLY_CREDENTIAL, appOnlyTokens, readAppOnlyCredential } from './microsoft-credential';
import { graphConnection } from './microsoft-graph-transport';

/** "Microsoft 365 App-Only (Graph)": the app-only credential's Graph token, `/users/{mailbox}`. */
export const microsoftAppOnlyGraph: ConnectionKind = {
	authentication: 'microsoftAppOnlyGraph',
	displayName: 'Microsoft 365 App-Only (Graph)',
	description: 'App registration with Graph Mail.Send / Mail.ReadWrite (application permissions, admin consent); no user password',
	credentialType: APP_ONLY_CREDENTIAL,
	protocols: ['graph'],
	send: true,
	read: true,
	selectsMailbox: true,
	async open(data) {
		const credential = readAppOnlyCredential(data);
		const { config } = credential;
		return graphConnection({
			graphHost: credential.cloud.graphHost,
			tokens: appOnlyTokens(credential),
			trust: {
				rejectUnauthorized: true,
				ca: credential.caCertificate || undefined,
			},
			defaultMailbox: credential.mailbox,
			allowedMailboxes: credential.allowedMailboxes,
			secrets: credential.secrets,
			diagnostics: {
				flavour: 'app-only',
				authorityHost: credential.cloud.authorityHost,
				tenantId: config.tenantId,
				clientId: config.clientId,
				certificatePem: config.certificate?.certificatePem,
				clientSecret: config.clientSecret,
			},
		});
	},
};
