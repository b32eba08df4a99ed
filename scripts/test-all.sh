#!/usr/bin/env bash
# Every test, on a fresh machine of this kind: installs what it needs (Debian packages as
# root, npm packages, n8n into a cache), then lint, build, the jest suite against real
# peers, and the end-to-end run inside real n8n. The last line sums up all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# reliability rows of this run only (docs/reliability.md is written from them at the end)
node -e "require('./test/harness/reliability').reset()"

apt_install() {
	if [ "$(id -u)" != 0 ]; then
		echo "missing Debian packages ($*) and not root: install them with apt-get" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
command -v openssl >/dev/null || apt_install openssl
command -v tar >/dev/null || apt_install tar

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	echo "== npm ci"
	npm ci --no-audit --no-fund --loglevel=error
fi

echo "== Dovecot (Debian packages, for the IMAP tests)"
node -e "require('./test/peers/dovecot').ensureDovecotInstalled()"
echo "== impacket (Debian python3-impacket, verifies NTLM for the fake EWS server)"
node -e "require('./test/peers/fake-ews').ensureImpacketInstalled()"

echo "== lint"
npm run --silent lint
echo "== build"
npm run --silent build

mkdir -p .cache
echo "== jest (real SMTP peer, n8n-core execution engine)"
jest_status=0
node scripts/jest.js --ci --json --outputFile=.cache/jest-results.json || jest_status=$?

echo "== self-checks of the test peers (fake identity platform with MSAL, Dovecot, fake Graph, fake EWS)"
check_status=0
node test/peers/fake-identity.check.js | tee .cache/check-identity-results.txt || check_status=$?
node test/peers/dovecot.check.js | tee .cache/check-dovecot-results.txt || check_status=$?
node test/peers/fake-graph.check.js | tee .cache/check-graph-results.txt || check_status=$?
node test/peers/fake-ews.check.js | tee .cache/check-ews-results.txt || check_status=$?

echo "== real n8n end to end (every check on each n8n version: MAM_N8N_VERSIONS, default 1.123.50 and 2.41.1)"
node -e "const runtime = require('./scripts/n8n-runtime'); for (const version of runtime.selectedVersions()) runtime.ensureN8n(version)"
e2e_status=0
node test/e2e/run-real-n8n.js | tee .cache/e2e-results.txt || e2e_status=$?

echo "== reliability report (docs/reliability.md, checked against docs/reliability-baseline.json)"
report_status=0
node scripts/reliability-report.js || report_status=$?

REPORT_STATUS=$report_status node -e '
const fs = require("fs");
let passed = 0, failed = 0;
if (process.env.REPORT_STATUS === "0") passed++; else failed++;
try { const j = JSON.parse(fs.readFileSync(".cache/jest-results.json", "utf8")); passed += j.numPassedTests; failed += j.numFailedTests + j.numRuntimeErrorTestSuites; } catch { failed++; }
for (const file of [".cache/check-identity-results.txt", ".cache/check-dovecot-results.txt", ".cache/check-graph-results.txt", ".cache/check-ews-results.txt", ".cache/e2e-results.txt"]) {
	const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
	const m = /^(\d+) passed, (\d+) failed$/m.exec(text);
	if (m) { passed += +m[1]; failed += +m[2]; } else { failed++; }
}
console.log(`\ntotal: ${passed} passed, ${failed} failed`);
'
if [ "$jest_status" != 0 ] || [ "$check_status" != 0 ] || [ "$e2e_status" != 0 ] || [ "$report_status" != 0 ]; then exit 1; fi
