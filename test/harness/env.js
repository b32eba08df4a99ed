'use strict';
// n8n-core reads these when its services are first created: give every test worker its
// own throwaway n8n folder and filesystem binary mode, as a production instance would use.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

if (!process.env.MAM_TEST_N8N_FOLDER) {
	process.env.MAM_TEST_N8N_FOLDER = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-n8n-'));
}
process.env.N8N_USER_FOLDER = process.env.MAM_TEST_N8N_FOLDER;
process.env.N8N_ENCRYPTION_KEY = 'modern-auth-mail-test-key';
process.env.N8N_DEFAULT_BINARY_DATA_MODE = 'filesystem';
process.env.N8N_DIAGNOSTICS_ENABLED = 'false';
process.env.N8N_LOG_LEVEL = process.env.N8N_LOG_LEVEL || 'silent';
