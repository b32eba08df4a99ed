// Where the benchmarks find the repository (they run compiled from .cache/build/bench, while
// the JS test peers stay in the repo) and the n8n that the end-to-end tests cache.
import fs from 'node:fs';
import path from 'node:path';

function findRepoRoot(start: string): string {
	for (let dir = start; ; dir = path.dirname(dir)) {
		const manifest = path.join(dir, 'package.json');
		if (fs.existsSync(manifest)) {
			try {
				if (JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'n8n-nodes-modern-auth-mail') return dir;
			} catch {
				// not ours, keep walking
			}
		}
		if (path.dirname(dir) === dir) throw new Error(`no n8n-nodes-modern-auth-mail package.json above ${start}`);
	}
}

export const ROOT = findRepoRoot(__dirname);

// eslint-disable-next-line @typescript-eslint/no-require-imports
const runtime = require(path.join(ROOT, 'scripts/n8n-runtime.js')) as { CACHE_ROOT: string; N8N_VERSION: string };

/** node_modules of the pinned n8n installed by scripts/n8n-runtime.js (may not exist yet). */
export const N8N_MODULES = path.join(runtime.CACHE_ROOT, `n8n-${runtime.N8N_VERSION}`, 'node_modules');
