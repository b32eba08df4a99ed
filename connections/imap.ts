import { runChecks, testButtonVerdict, TEST_BUTTON_BUDGET_MS, type Check, type DiagnoseOptions } from '../diagnostics/checks';
import { imapLoginCheck, imapReadCheck, type ImapProbeOptions } from '../diagnostics/imap-login';
import { ImapReader, type ImapSecurity } from '../transports/imap/imap-reader';
import type { ConnectionKind, CredentialData } from './connection';
import { notOffered, overEndpoint, reachOf, retried, servedProtocol, targetOf, tlsOf, type Endpoint } from './connection-checks';
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
		const reader = (timeoutMs = Infinity) =>
			new ImapReader({
				host: credential.host,
				port: credential.port,
				security: credential.security,
				auth: { type: 'password', user: credential.user, pass: credential.password },
				rejectUnauthorized: !credential.ignoreCertificateErrors,
				ca: credential.caCertificate || undefined,
				connectionTimeoutMs: Math.min(credential.connectionTimeoutMs, timeoutMs),
				socketTimeoutMs: Math.min(credential.socketTimeoutMs, timeoutMs),
			});
		const server: Endpoint = {
			host: credential.host,
			port: credential.port,
			mode: credential.security === 'starttls' ? 'starttls-imap' : credential.security,
			role: 'IMAP',
			ca: credential.caCertificate || undefined,
			rejectUnauthorized: !credential.ignoreCertificateErrors,
		};
		/** reach, TLS, LOGIN, SELECT INBOX + count; a round trip needs a sender, which this credential has not. */
		const checks = (options: DiagnoseOptions): Check[] => {
			servedProtocol(imapKind, options);
			const probe: ImapProbeOptions = { server: targetOf(server), signIn: 'password', values: { clientId: '', mailbox: credential.user }, reader };
			const list: Check[] = [reachOf(server), tlsOf(server)];
			list.push(retried(imapLoginCheck({ ...probe, needs: overEndpoint(server) }), options), retried(imapReadCheck(probe), options));
			if (options.roundTrip) list.push(notOffered('round-trip', options.roundTrip.to, 'the IMAP credential cannot send; test the round trip with the SMTP or a Microsoft credential'));
			return list;
		};
		const secrets = [credential.password].filter(Boolean);
		return {
			secrets,
			warning: certificateWarning(credential),
			// A password signs in to its own user's mailbox; the Mailbox option is Microsoft's only.
			mailboxFor: async () => credential.user,
			reader: () => reader(),
			checks: async (options) => checks(options),
			async test() {
				return testButtonVerdict(await runChecks(checks({ protocol: 'imap', mailbox: '' }), { budgetMs: TEST_BUTTON_BUDGET_MS, secrets }));
			},
		};
	},
};
