'use strict';
// Real n8n for end-to-end runs and the demo: a pinned n8n installed from npm into a cache
// outside the repository, our package packed and installed into the user folder the way
// n8n's Community Nodes installer does it, and helpers to run n8n commands headless.
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const PACKAGE_NAME = require(path.join(ROOT, 'package.json')).name;
const N8N_VERSION = process.env.MAM_N8N_VERSION || '1.123.50';
const CACHE_ROOT =
	process.env.MAM_CACHE_DIR ||
	path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'n8n-nodes-modern-auth-mail');

function log(message) {
	process.stderr.write(`[n8n-runtime] ${message}\n`);
}

/** Installs n8n@N8N_VERSION into the cache once; later calls reuse it. Returns the n8n bin path. */
function ensureN8n(version = N8N_VERSION) {
	const dir = path.join(CACHE_ROOT, `n8n-${version}`);
	const bin = path.join(dir, 'node_modules', 'n8n', 'bin', 'n8n');
	const marker = path.join(dir, '.installed');
	if (fs.existsSync(marker) && fs.existsSync(bin)) return { dir, bin };
	fs.mkdirSync(dir, { recursive: true });
	fs.writeFileSync(
		path.join(dir, 'package.json'),
		JSON.stringify(
			{
				name: 'n8n-runtime-cache',
				private: true,
				dependencies: { n8n: version },
				// Without this n8n-nodes-base fetches xlsx from a CDN, which is unreachable offline.
				overrides: { xlsx: 'npm:@e965/xlsx@0.20.2' },
			},
			null,
			2,
		),
	);
	log(`installing n8n@${version} into ${dir} (takes a few minutes the first time)`);
	execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], {
		cwd: dir,
		stdio: ['ignore', 'inherit', 'inherit'],
	});
	fs.writeFileSync(marker, new Date().toISOString());
	return { dir, bin };
}

/** Builds and packs this repository into a tarball, as `npm publish` would ship it. */
function packPackage(outDir) {
	execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
	const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', outDir], {
		cwd: ROOT,
		encoding: 'utf8',
		stdio: ['ignore', 'pipe', 'inherit'],
	});
	const [{ filename }] = JSON.parse(out);
	return path.join(outDir, filename);
}

/**
 * Installs the tarball into <userFolder>/.n8n/nodes/node_modules/<name> exactly as n8n's
 * community-packages service does: extract, strip dev/peer/optional dependencies, then
 * `npm install` without scripts, so n8n-workflow resolves to n8n's own copy.
 */
function installPackageLikeUser(tarball, userFolder) {
	const nodesDir = path.join(userFolder, '.n8n', 'nodes');
	const target = path.join(nodesDir, 'node_modules', PACKAGE_NAME);
	fs.rmSync(target, { recursive: true, force: true });
	fs.mkdirSync(target, { recursive: true });
	execFileSync('tar', ['-xzf', tarball, '-C', target, '--strip-components=1']);
	const manifestPath = path.join(target, 'package.json');
	const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
	delete manifest.devDependencies;
	delete manifest.peerDependencies;
	delete manifest.optionalDependencies;
	fs.writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
	execFileSync(
		'npm',
		['install', '--bin-links=false', '--install-strategy=shallow', '--ignore-scripts=true', '--package-lock=false', '--no-audit', '--no-fund', '--loglevel=error'],
		{ cwd: target, stdio: ['ignore', 'ignore', 'inherit'] },
	);
	if (!fs.existsSync(path.join(nodesDir, 'package.json'))) {
		fs.writeFileSync(
			path.join(nodesDir, 'package.json'),
			JSON.stringify({ name: 'installed-nodes', private: true, dependencies: { [PACKAGE_NAME]: manifest.version } }, null, 2),
		);
	}
	return target;
}

/** Environment for a network-free, telemetry-free n8n with its own folder and ports. */
function n8nEnv(userFolder, extra = {}) {
	return {
		...process.env,
		N8N_USER_FOLDER: userFolder,
		N8N_ENCRYPTION_KEY: 'modern-auth-mail-e2e-encryption-key',
		DB_TYPE: 'sqlite',
		N8N_DIAGNOSTICS_ENABLED: 'false',
		N8N_VERSION_NOTIFICATIONS_ENABLED: 'false',
		N8N_TEMPLATES_ENABLED: 'false',
		N8N_PERSONALIZATION_ENABLED: 'false',
		N8N_LICENSE_AUTO_RENEW_ENABLED: 'false',
		N8N_LISTEN_ADDRESS: '127.0.0.1',
		N8N_HOST: '127.0.0.1',
		N8N_RUNNERS_BROKER_LISTEN_ADDRESS: '127.0.0.1',
		N8N_RUNNERS_ENABLED: 'true',
		N8N_SECURE_COOKIE: 'false',
		N8N_COMMUNITY_PACKAGES_ENABLED: 'true',
		EXECUTIONS_DATA_SAVE_ON_SUCCESS: 'all',
		N8N_LOG_LEVEL: 'info',
		...extra,
	};
}

/** Runs `n8n <args>` to completion; resolves { code, stdout, stderr }. */
function runN8n(bin, args, env, { timeoutMs = 180_000 } = {}) {
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
		let stdout = '';
		let stderr = '';
		child.stdout.on('data', (d) => (stdout += d));
		child.stderr.on('data', (d) => (stderr += d));
		const timer = setTimeout(() => {
			child.kill('SIGKILL');
			reject(new Error(`n8n ${args.join(' ')} timed out after ${timeoutMs} ms\n${stdout}\n${stderr}`));
		}, timeoutMs);
		child.on('close', (code) => {
			clearTimeout(timer);
			resolve({ code, stdout, stderr });
		});
	});
}

/** `n8n execute --rawOutput` prints log lines, then the run as JSON starting at a line `{`. */
function parseExecuteOutput(stdout) {
	const lines = stdout.split('\n');
	const start = lines.findIndex((line) => line === '{');
	if (start < 0) throw new Error(`no JSON run data in n8n output:\n${stdout.slice(-3000)}`);
	return JSON.parse(lines.slice(start).join('\n'));
}

module.exports = {
	ROOT,
	PACKAGE_NAME,
	N8N_VERSION,
	CACHE_ROOT,
	ensureN8n,
	packPackage,
	installPackageLikeUser,
	n8nEnv,
	runN8n,
	parseExecuteOutput,
	log,
};
