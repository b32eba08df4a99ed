/**
 * n8n-core reads these when its services are first created. send-smtp.ts imports this
 * module before the n8n harness so that the engine sees them (same values as
 * test/harness/env.js: a throwaway n8n folder, filesystem binary mode, silent logs).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const n8nUserFolder = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-bench-n8n-'));

process.env.N8N_USER_FOLDER = n8nUserFolder;
process.env.N8N_ENCRYPTION_KEY = 'modern-auth-mail-bench-key';
process.env.N8N_DEFAULT_BINARY_DATA_MODE = 'filesystem';
process.env.N8N_DIAGNOSTICS_ENABLED = 'false';
process.env.N8N_LOG_LEVEL = process.env.N8N_LOG_LEVEL || 'silent';

export function removeN8nUserFolder(): void {
	fs.rmSync(n8nUserFolder, { recursive: true, force: true });
}
