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

/** Long enough that the normal test certificate never warns "expires within 30 days". */
const DEFAULT_VALIDITY_DAYS = 90;
const SERVER_EXTENSIONS = 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n';
const subjectAltNames = (names) => names.map((name) => (/^[\d.]+$|:/.test(name) ? `IP:${name}` : `DNS:${name}`)).join(',');

/**
 * @param {string} [dir] where to write; a new temp dir by default
 * @returns {{dir: string, caPath: string, ca: string, cert: string, key: string, certPath: string, keyPath: string}}
 */
function createTestPki(dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-pki-'))) {
	fs.writeFileSync(path.join(dir, 'server.ext'), `subjectAltName=${subjectAltNames(['localhost', '127.0.0.1'])}\n${SERVER_EXTENSIONS}`);
	const days = String(DEFAULT_VALIDITY_DAYS);
	openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', days, '-subj', '/CN=modern-auth-mail test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
	openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'], dir);
	openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', days, '-extfile', 'server.ext'], dir);
	return loadTestPki(dir);
}

const utcTime = (date) => `${date.toISOString().replace(/[-:T]/g, '').slice(2, 14)}Z`;

/**
 * Issues one more server certificate (fresh key) for certificate-check tests: one that
 * expires in `days` (negative: expired that many days ago), names other hosts, or is
 * self-signed instead of issued by `pki`'s CA. `openssl ca` because only it takes explicit
 * start and end dates (an expired certificate cannot be made with `-days`).
 * @param {{caPath: string, dir: string}} pki a PKI from createTestPki / sharedTestPki (its CA signs)
 * @param {object} [options]
 * @param {number} [options.days=90]
 * @param {string[]} [options.names=['localhost', '127.0.0.1']] subjectAltNames (DNS names or IP addresses)
 * @param {string} [options.commonName] subject CN (default: the first name)
 * @param {boolean} [options.selfSigned] signed with its own key, not by the test CA
 * @returns {{dir: string, cert: string, key: string, certPath: string, keyPath: string, notBefore: Date, notAfter: Date}}
 */
function issueServerCertificate(pki, options = {}) {
	const days = options.days ?? DEFAULT_VALIDITY_DAYS;
	const names = options.names ?? ['localhost', '127.0.0.1'];
	const commonName = options.commonName ?? names[0];
	if (!/^[\w.*-]+$/.test(commonName)) throw new Error(`certs: unsupported common name ${JSON.stringify(commonName)}`);
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-cert-'));
	const now = Date.now();
	const notAfter = new Date(now + days * 86_400_000);
	// an expired one was valid for a month before it expired; a valid one from an hour ago (clock skew)
	const notBefore = new Date(days < 0 ? notAfter.getTime() - 30 * 86_400_000 : now - 3_600_000);
	fs.writeFileSync(path.join(dir, 'server.ext'), `subjectAltName=${subjectAltNames(names)}\n${SERVER_EXTENSIONS}`);
	fs.writeFileSync(path.join(dir, 'index.txt'), '');
	fs.writeFileSync(path.join(dir, 'serial'), `${require('node:crypto').randomBytes(8).toString('hex')}\n`);
	fs.writeFileSync(
		path.join(dir, 'ca.cnf'),
		['[ca]', 'default_ca = test', '[test]', 'database = index.txt', 'serial = serial', 'new_certs_dir = .', 'default_md = sha256', 'policy = any', 'unique_subject = no', 'copy_extensions = none', '[any]', 'commonName = supplied', ''].join('\n'),
	);
	openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${commonName}`], dir);
	const signer = options.selfSigned ? ['-selfsign', '-keyfile', 'server.key'] : ['-cert', pki.caPath, '-keyfile', path.join(pki.dir, 'ca.key')];
	openssl(['ca', '-batch', '-notext', '-config', 'ca.cnf', ...signer, '-in', 'server.csr', '-out', 'server.pem', '-startdate', utcTime(notBefore), '-enddate', utcTime(notAfter), '-extfile', 'server.ext'], dir);
	const read = (name) => fs.readFileSync(path.join(dir, name), 'utf8');
	return { dir, cert: read('server.pem'), key: read('server.key'), certPath: path.join(dir, 'server.pem'), keyPath: path.join(dir, 'server.key'), notBefore, notAfter };
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

module.exports = { createTestPki, loadTestPki, sharedTestPki, issueServerCertificate, DEFAULT_VALIDITY_DAYS };
