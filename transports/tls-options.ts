import fs from 'node:fs';
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
 * default, never put in its place: a `ca` list replaces the whole default trust, so it must
 * repeat that trust first.
 */
export function tlsClientOptions(trust: TlsTrust): tls.ConnectionOptions {
	const base: tls.ConnectionOptions = { rejectUnauthorized: trust.rejectUnauthorized, minVersion: MIN_TLS_VERSION };
	if (!trust.ca) return base;
	return { ...base, ca: [...defaultTrust(), String(trust.ca)] };
}

let fallbackTrust: string[] | undefined;

/** What Node trusts when a connection names no CA. */
function defaultTrust(): string[] {
	// Node 22.15+ / 23.10+ list it themselves (bundled roots, NODE_EXTRA_CA_CERTS, system store).
	const listDefault = (tls as unknown as { getCACertificates?: DefaultCaReader }).getCACertificates;
	if (typeof listDefault === 'function') return listDefault('default');
	// Older lines: the bundled roots plus NODE_EXTRA_CA_CERTS, read as Node reads it at start.
	fallbackTrust ??= [...tls.rootCertificates, ...extraCaCertificates(process.env.NODE_EXTRA_CA_CERTS)];
	return fallbackTrust;
}

function extraCaCertificates(file: string | undefined): string[] {
	if (!file) return [];
	try {
		return fs.readFileSync(file, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
	} catch {
		// Node itself only warns about an unreadable file and goes on without it.
		return [];
	}
}
