'use strict';
// Runs jest with a test CA that Node trusts from process start. MSAL (and anything using
// Node's built-in fetch) only honours NODE_EXTRA_CA_CERTS when it is set before Node
// starts, which is also how an administrator makes n8n trust a company CA. Arguments are
// passed on to jest.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { createTestPki } = require('../test/peers/certs');

const root = path.resolve(__dirname, '..');
const dir = path.join(root, '.cache', 'test-pki');
fs.rmSync(dir, { recursive: true, force: true });
fs.mkdirSync(dir, { recursive: true });
const pki = createTestPki(dir);

const result = spawnSync(process.execPath, [require.resolve('jest/bin/jest'), ...process.argv.slice(2)], {
	cwd: root,
	stdio: 'inherit',
	env: { ...process.env, NODE_EXTRA_CA_CERTS: pki.caPath, MAM_TEST_PKI_DIR: dir },
});
process.exit(result.status ?? 1);
