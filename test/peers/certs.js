'use strict';
// Test-time PKI: a throwaway CA and a server certificate for localhost / 127.0.0.1,
// made with the openssl CLI so every run gets fresh keys and nothing secret is committed.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function openssl(args, cwd) {
	execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * @param {string} [dir] where to write; a new temp dir by default
 * @returns {{dir: string, caPath: string, ca: string, cert: string, key: string, certPath: string, keyPath: string}}
 */
function createTestPki(dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-pki-'))) {
	fs.writeFileSync(
		path.join(dir, 'server.ext'),
		'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n',
	);
	openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=modern-auth-mail test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
	openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'], dir);
	openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext'], dir);
	return loadTestPki(dir);
}

/** Reads a PKI that createTestPki wrote earlier (possibly in another process). */
function loadTestPki(dir) {
	const read = (name) => fs.readFileSync(path.join(dir, name), 'utf8');
	return {
		dir,
		caPath: path.join(dir, 'ca.pem'),
		certPath: path.join(dir, 'server.pem'),
		keyPath: path.join(dir, 'server.key'),
		ca: read('ca.pem'),
		cert: read('server.pem'),
		key: read('server.key'),
	};
}

/**
 * The PKI whose CA this process trusts through NODE_EXTRA_CA_CERTS (set up by
 * scripts/jest.js); a fresh, untrusted one when tests run without that wrapper.
 */
function sharedTestPki() {
	const dir = process.env.MAM_TEST_PKI_DIR;
	if (!dir) return createTestPki();
	return { ...loadTestPki(dir), trustedByProcess: process.env.NODE_EXTRA_CA_CERTS === path.join(dir, 'ca.pem') };
}

module.exports = { createTestPki, loadTestPki, sharedTestPki };
