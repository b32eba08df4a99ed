/**
 * The IMAP password credential for a Dovecot test peer over implicit TLS (trusting the test
 * CA), in the shape runNode and createPoller take.
 */
export function dovecotImapCredential(
	peer: { dovecot: { host: string; tlsPort: number }; pki: { ca: string }; user: string; password: string },
	named: { id: string; name: string },
	overrides: Record<string, unknown> = {},
) {
	const { dovecot, pki, user, password } = peer;
	return {
		modernAuthImapApi: {
			...named,
			data: { host: dovecot.host, port: dovecot.tlsPort, security: 'tls', user, password, caCertificate: pki.ca, ...overrides },
		},
	};
}
