import { ImapReader, type ImapSecurity } from '../transports/imap/imap-reader';
import type { ConnectionKind, CredentialData } from './connection';
import { assertServerUsable, certificateWarning, positive, secretField, text } from './credential-fields';

export const IMAP_CREDENTIAL = 'modernAuthImapApi';

export function readImapCredential(data: CredentialData) {
	const security = text(data, 'security') as ImapSecurity;
	return {
		host: text(data, 'host'),
		port: positive(data, 'port', 993),
		security: ['tls', 'starttls', 'none'].includes(security) ? security : 'tls',
		allowUnencrypted: data.allowUnencrypted === true,
		user: text(data, 'user'),
		password: secretField(data, 'password'),
		caCertificate: text(data, 'caCertificate'),
		ignoreCertificateErrors: data.ignoreCertificateErrors === true,
		connectionTimeoutMs: positive(data, 'connectionTimeout', 30) * 1000,
		// A server that stops answering mid-FETCH fails the read after this, instead of holding it.
		socketTimeoutMs: positive(data, 'socketTimeout', 120) * 1000,
	};
}

/** Any IMAP server, signing in with user name and password. */
export const imapKind: ConnectionKind = {
	authentication: 'imap',
	displayName: 'IMAP (Password)',
	description: 'Any IMAP server with user and password',
	credentialType: IMAP_CREDENTIAL,
	protocols: ['imap'],
	send: false,
	read: true,
	async open(data) {
		const credential = readImapCredential(data);
		assertServerUsable('IMAP', credential);
		const reader = () =>
			new ImapReader({
				host: credential.host,
				port: credential.port,
				security: credential.security,
				auth: { type: 'password', user: credential.user, pass: credential.password },
				rejectUnauthorized: !credential.ignoreCertificateErrors,
				ca: credential.caCertificate || undefined,
				connectionTimeoutMs: credential.connectionTimeoutMs,
				socketTimeoutMs: credential.socketTimeoutMs,
			});
		return {
			secrets: [credential.password].filter(Boolean),
			warning: certificateWarning(credential),
			// A password signs in to its own user's mailbox; the Mailbox option is Microsoft's only.
			mailboxFor: async () => credential.user,
			reader,
			async test() {
				const probe = reader();
				try {
					await probe.connect();
					const folders = await probe.listFolders();
					return `Signed in to ${credential.host}:${credential.port}; ${folders.length} folders.`;
				} finally {
					await probe.close();
				}
			},
		};
	},
};
