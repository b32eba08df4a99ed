import tls from 'node:tls';

/** The lowest protocol any of our connections accepts, whatever the process default is. */
export const MIN_TLS_VERSION = 'TLSv1.2';

export interface TlsTrust {
	/** false only when the user explicitly chose to ignore certificate errors. */
	rejectUnauthorized: boolean;
	/** Extra CA certificates (PEM) trusted on top of the default trust. */
	ca?: string | Buffer;
}

type DefaultCaReader = (type: 'default') => string[];

/**
 * TLS client options shared by SMTP and IMAP. An extra CA is added to what Node trusts by
 * default (bundled roots, NODE_EXTRA_CA_CERTS, the system store when enabled), never put in
 * its place: a `ca` list alone would replace all of it.
 */
export function tlsClientOptions(trust: TlsTrust): tls.ConnectionOptions {
	const base: tls.ConnectionOptions = { rejectUnauthorized: trust.rejectUnauthorized, minVersion: MIN_TLS_VERSION };
	if (!trust.ca) return base;
	const extra = String(trust.ca);
	// Node 22.15+ / 23.10+ can list its default trust; older lines cannot, so there the extra
	// CA goes into a context that already holds the default trust.
	const defaultCas = (tls as unknown as { getCACertificates?: DefaultCaReader }).getCACertificates;
	if (typeof defaultCas === 'function') return { ...base, ca: [...defaultCas('default'), extra] };
	const secureContext = tls.createSecureContext({ minVersion: MIN_TLS_VERSION });
	(secureContext.context as { addCACert(pem: string): void }).addCACert(extra);
	return { ...base, secureContext };
}
