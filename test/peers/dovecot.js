'use strict';
// A real Dovecot 2.3 IMAP server for tests and benchmarks, started and stopped by test code.
// Each instance lives in its own temp dir on free high ports on 127.0.0.1, so tests never
// touch a system mail server. Recipes and measurements: /work/shared/notes/test-peers.md.
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const DH_PATH = '/usr/share/dovecot/dh.pem';
const APT_PACKAGES = ['dovecot-core', 'dovecot-imapd'];
// Maildir info letters for system flags (keywords need doveadm).
const MAILDIR_FLAGS = { '\\Draft': 'D', '\\Flagged': 'F', '\\Answered': 'R', '\\Seen': 'S', '\\Deleted': 'T' };

const running = new Set(); // instances to kill if the test process exits without stop()
let exitHookInstalled = false;
let installed = null;

function findBinary(name) {
	// /usr/sbin is not on a non-root PATH, but that is where Debian puts dovecot
	const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/bin', '/sbin'];
	for (const dir of dirs) {
		if (!dir) continue;
		const candidate = path.join(dir, name);
		try {
			fs.accessSync(candidate, fs.constants.X_OK);
			return candidate;
		} catch {
			// keep looking
		}
	}
	return null;
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

function userExists(name) {
	try {
		execFileSync('getent', ['passwd', name], { stdio: 'ignore' });
		return true;
	} catch {
		return false;
	}
}

/** Stops a system dovecot that installing the package may have started on 143/993. */
function stopSystemDovecot() {
	const quiet = { stdio: 'ignore', timeout: 15000 };
	try {
		execFileSync('service', ['dovecot', 'stop'], quiet);
	} catch {
		// no init script run, or not running
	}
	try {
		if (findBinary('systemctl') && fs.existsSync('/run/systemd/system')) execFileSync('systemctl', ['disable', '--now', 'dovecot'], quiet);
		else if (findBinary('update-rc.d')) execFileSync('update-rc.d', ['dovecot', 'disable'], quiet);
	} catch {
		// best effort: our instances use their own ports anyway
	}
	try {
		const pid = Number(fs.readFileSync('/run/dovecot/master.pid', 'utf8').trim());
		if (pid > 1 && fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'dovecot') process.kill(pid, 'SIGTERM');
	} catch {
		// no system instance left
	}
}

/**
 * Makes sure Dovecot 2.3 (dovecot + doveadm) is installed; as root it installs the Debian
 * packages (~20 s), otherwise it throws. Synchronous so scripts can call it up front.
 * @returns {{dovecot: string, doveadm: string, version: string, installedNow: boolean, installMs: number}}
 */
function ensureDovecotInstalled() {
	if (installed) return installed;
	let installedNow = false;
	let installMs = 0;
	if (!findBinary('dovecot') || !findBinary('doveadm')) {
		if (!isRoot()) {
			throw new Error(`Dovecot is not installed and this process is not root, so it cannot install it. Run as root: apt-get install ${APT_PACKAGES.join(' ')}`);
		}
		const started = Date.now();
		try {
			execFileSync('sh', ['-c', `apt-get update -qq && apt-get install -y -qq --no-install-recommends ${APT_PACKAGES.join(' ')}`], {
				env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
				stdio: ['ignore', 'pipe', 'pipe'],
				timeout: 300000,
			});
		} catch (error) {
			throw new Error(`Installing ${APT_PACKAGES.join(' ')} failed: ${String(error.stderr ?? error.message).trim()}`);
		}
		installMs = Date.now() - started;
		installedNow = true;
		stopSystemDovecot();
	}
	const dovecot = findBinary('dovecot');
	const doveadm = findBinary('doveadm');
	if (!dovecot || !doveadm) throw new Error(`Dovecot binaries not found after installing ${APT_PACKAGES.join(' ')}`);
	const version = execFileSync(dovecot, ['--version'], { encoding: 'utf8' }).trim();
	// the generated config is 2.3 syntax; 2.4 renamed most settings
	if (!version.startsWith('2.3.')) throw new Error(`test/peers/dovecot.js needs Dovecot 2.3, found ${version}`);
	if (!fs.existsSync(DH_PATH)) throw new Error(`Dovecot is installed but ${DH_PATH} is missing`);
	if (isRoot()) {
		for (const user of ['dovecot', 'dovenull']) {
			if (!userExists(user)) throw new Error(`System user ${user} is missing (normally created by the dovecot-core package)`);
		}
	}
	installed = { dovecot, doveadm, version, installedNow, installMs };
	return installed;
}

function freePort() {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.once('error', reject);
		server.listen(0, '127.0.0.1', () => {
			const { port } = server.address();
			server.close(() => resolve(port));
		});
	});
}

/** Runs a command; resolves {stdout, stderr} or rejects with stderr in the message. */
function run(file, args, input) {
	return new Promise((resolve, reject) => {
		const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
		const out = [];
		const err = [];
		child.stdout.on('data', (chunk) => out.push(chunk));
		child.stderr.on('data', (chunk) => err.push(chunk));
		child.once('error', reject);
		child.stdin.on('error', () => {}); // a command failing early closes stdin under us
		child.once('close', (code, signal) => {
			const stdout = Buffer.concat(out).toString('utf8');
			const stderr = Buffer.concat(err).toString('utf8');
			if (code === 0) return resolve({ stdout, stderr });
			const error = new Error(`${path.basename(file)} ${args.filter((a) => !a.startsWith('/')).join(' ')} failed (${signal ?? code}): ${stderr.trim() || stdout.trim()}`);
			error.code = code;
			error.stderr = stderr;
			reject(error);
		});
		child.stdin.end(input ?? undefined);
	});
}

function installExitHook() {
	if (exitHookInstalled) return;
	exitHookInstalled = true;
	// pdeathsig covers crashes; this covers a normal exit that forgot stop()
	process.on('exit', () => {
		for (const instance of running) instance.killNow();
	});
}

function checkName(kind, value) {
	// user names end up in paths and config lines
	if (typeof value !== 'string' || !value || /[\s:/\\]|\.\./.test(value) || value.startsWith('.')) {
		throw new Error(`dovecot peer: unsupported ${kind} ${JSON.stringify(value)}`);
	}
}

/**
 * Relays a port to Dovecot from 127.0.0.2. Dovecot treats a connection whose remote and
 * local IP are equal as secure and then allows plaintext LOGIN without STARTTLS; coming
 * from another loopback address makes the plain port behave like a real server's
 * (LOGINDISABLED until STARTTLS). It also keeps the port bound across restart().
 */
async function startRelay(targetPort) {
	const sockets = new Set();
	const server = net.createServer((client) => {
		const upstream = net.connect({ host: '127.0.0.1', port: targetPort, localAddress: '127.0.0.2' });
		sockets.add(client);
		sockets.add(upstream);
		client.setNoDelay(true);
		upstream.setNoDelay(true);
		const close = () => {
			client.destroy();
			upstream.destroy();
			sockets.delete(client);
			sockets.delete(upstream);
		};
		client.on('error', close).on('close', close);
		upstream.on('error', close).on('close', close);
		client.pipe(upstream);
		upstream.pipe(client);
	});
	server.on('error', () => {});
	await new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(0, '127.0.0.1', resolve);
	});
	server.unref(); // a forgotten stop() must not keep the test process alive
	return {
		port: server.address().port,
		dropConnections() {
			for (const socket of sockets) socket.destroy();
			sockets.clear();
		},
		close() {
			for (const socket of sockets) socket.destroy();
			return new Promise((resolve) => server.close(() => resolve()));
		},
	};
}

function buildConfig(s) {
	const lines = [
		'# generated by test/peers/dovecot.js (Dovecot 2.3 syntax)',
		`instance_name = ${s.instanceName}`,
		'protocols = imap',
		'listen = 127.0.0.1',
		`base_dir = ${s.dir}/run`,
		`state_dir = ${s.dir}/state`,
		'log_path = /dev/stderr',
		'log_timestamp = "%H:%M:%S "',
		`auth_verbose = ${s.verbose ? 'yes' : 'no'}`,
		'ssl = yes',
		`ssl_cert = <${s.dir}/ssl/cert.pem`,
		`ssl_key = <${s.dir}/ssl/key.pem`,
		`ssl_dh = <${DH_PATH}`,
		'ssl_min_protocol = TLSv1.2',
		// plaintext auth only over TLS (the relay makes the plain port non-local, see startRelay)
		'disable_plaintext_auth = yes',
		'mail_location = maildir:~/Maildir',
		// per-folder rights from a dovecot-acl file in the folder (see setRights)
		...(s.acl ? ['mail_plugins = $mail_plugins acl', 'plugin {', '  acl = vfile', '}'] : []),
		'mail_fsync = never', // throwaway mail: no need to wait for the disk
		`mail_uid = ${s.mailUid}`,
		`mail_gid = ${s.mailGid}`,
		`first_valid_uid = ${Math.min(s.mailUid, 500)}`,
		`first_valid_gid = ${Math.min(s.mailGid, 1)}`,
		`default_internal_user = ${s.internalUser}`,
		`default_internal_group = ${s.internalGroup}`,
		`default_login_user = ${s.loginUser}`,
		`auth_mechanisms = plain login${s.oauth2 ? ' xoauth2' : ''}`,
		// tests of wrong credentials must not wait 2 s each; the auth process still flushes
		// failures on a fixed 0.5 s timer, so a refusal takes about 0.5 s
		'auth_failure_delay = 0',
		'namespace inbox {',
		'  inbox = yes',
		'  separator = /',
		// Outlook's special-use folders; they only exist once created
		'  mailbox "Sent Items" {',
		'    special_use = \\Sent',
		'  }',
		'  mailbox Drafts {',
		'    special_use = \\Drafts',
		'  }',
		'  mailbox "Deleted Items" {',
		'    special_use = \\Trash',
		'  }',
		'  mailbox "Junk Email" {',
		'    special_use = \\Junk',
		'  }',
		'  mailbox Archive {',
		'    special_use = \\Archive',
		'  }',
		'}',
		'passdb {',
		'  driver = passwd-file',
		'  mechanisms = plain login',
		`  args = scheme=PLAIN username_format=%u ${s.dir}/users`,
		'}',
	];
	if (s.oauth2) {
		// Dovecot 2.3 does not expand %u in introspection_url (a `%` there even crashes the
		// auth process), so each known mailbox gets its own passdb whose URL names it:
		// the identity platform needs the mailbox to judge app-only tokens.
		for (const { mailbox, argsPath } of s.oauth2Passdbs) {
			lines.push('passdb {', '  driver = oauth2', '  mechanisms = xoauth2', `  username_filter = ${mailbox ?? s.oauth2Passdbs.filter((p) => p.mailbox).map((p) => `!${p.mailbox}`).join(' ')}`, `  args = ${argsPath}`, '}');
		}
	}
	lines.push(
		'userdb {',
		'  driver = static',
		// allow_all_users: token-only users have no passdb entry for doveadm to find
		`  args = home=${s.dir}/home/%u allow_all_users=yes`,
		'}',
		'protocol imap {',
		`  mail_max_userip_connections = ${s.maxUserIpConnections}`,
		'}',
		'service imap-login {',
		'  inet_listener imap {',
		'    address = 127.0.0.1',
		`    port = ${s.dovecotPort}`,
		'  }',
		'  inet_listener imaps {',
		'    address = 127.0.0.1',
		`    port = ${s.tlsPort}`,
		'    ssl = yes',
		'  }',
		...(s.root ? [] : ['  chroot =']),
		'}',
		'service anvil {',
		// without this, every failed login from 127.0.0.1 slows the next ones (2, 4, 8, 15 s)
		'  unix_listener anvil-auth-penalty {',
		'    mode = 0',
		'  }',
		...(s.root ? [] : ['  chroot =']),
		'}',
		'',
	);
	return lines.join('\n');
}

function oauth2Config(introspectionUrl, mailbox) {
	const url = new URL(introspectionUrl);
	if (mailbox && !url.searchParams.has('mailbox')) url.searchParams.set('mailbox', mailbox);
	// What Exchange checks for IMAP: a token for its audience carrying the IMAP permission
	// (the role for app-only tokens, the scope for delegated ones; the platform checks each kind).
	// Appended unencoded: a `%` in this setting upsets Dovecot's variable expansion.
	const demand = 'audience=https://outlook.office.com&required_role=IMAP.AccessAsApp&required_scope=IMAP.AccessAsUser.All';
	return [
		'introspection_mode = post',
		`introspection_url = ${url.href}${url.search ? '&' : '?'}${demand}`,
		'username_attribute = username',
		'active_attribute = active',
		'active_value = true',
		'',
	].join('\n');
}

/** Decodes RFC 2047 encoded words (doveadm prints headers as they are stored). */
function decodeWords(value) {
	return value.replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=(\s+(?==\?))?/g, (word, charset, encoding, text) => {
		try {
			const bytes = /b/i.test(encoding) ? Buffer.from(text, 'base64') : Buffer.from(text.replace(/_/g, ' ').replace(/=([0-9a-f]{2})/gi, (m, hex) => String.fromCharCode(parseInt(hex, 16))), 'latin1');
			return new TextDecoder(charset.split('*')[0]).decode(bytes);
		} catch {
			return word; // unknown charset: leave as is
		}
	});
}

/**
 * Starts Dovecot 2.3 and resolves once it greets.
 * @param {object} options
 * @param {{cert: string, key: string, ca?: string}} options.pki server certificate for 127.0.0.1 (see certs.js)
 * @param {Record<string,string>} [options.users] login -> password for LOGIN / AUTH=PLAIN
 * @param {{introspectionUrl: string, mailboxes?: string[]}} [options.oauth2] enables XOAUTH2 (no
 *   OAUTHBEARER, as Outlook): Dovecot POSTs token=... to introspectionUrl, with ?mailbox=<login>
 *   for the users and `mailboxes` it knows (app-only tokens need it; see addOAuthMailbox)
 * @param {boolean} [options.passwordLogins=true] false: no password works (Outlook with basic auth off)
 * @param {boolean} [options.requireStartTls=true] plain port refuses plaintext login before STARTTLS;
 *   false connects clients straight to Dovecot, which then trusts 127.0.0.1 as secure
 * @param {number} [options.maxUserIpConnections=100]
 * @param {boolean} [options.verbose] auth_verbose, and echo Dovecot's log to stderr
 * @param {boolean} [options.acl] load the ACL plugin, so setRights can make a folder refuse changes
 */
async function startDovecot(options) {
	const bins = ensureDovecotInstalled();
	const root = isRoot();
	const users = { ...(options.users ?? {}) };
	for (const [user, password] of Object.entries(users)) {
		checkName('user', user);
		if (/[:\n]/.test(password)) throw new Error(`dovecot peer: password for ${user} may not contain ':' or newlines`);
	}
	const passwordLogins = options.passwordLogins !== false;
	const verbose = Boolean(options.verbose || process.env.MAM_DOVECOT_VERBOSE);
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-dovecot-'));
	// the auth process (user dovecot) and mail processes (nobody) must reach files in here
	fs.chmodSync(dir, 0o755);
	const settings = {
		dir,
		root,
		verbose,
		instanceName: path.basename(dir),
		mailUid: root ? 65534 : process.getuid(),
		mailGid: root ? 65534 : process.getgid(),
		internalUser: root ? 'dovecot' : os.userInfo().username,
		internalGroup: root ? 'dovecot' : String(process.getgid()),
		loginUser: root ? 'dovenull' : os.userInfo().username,
		oauth2: Boolean(options.oauth2),
		acl: Boolean(options.acl),
		maxUserIpConnections: options.maxUserIpConnections ?? 100,
		dovecotPort: await freePort(),
		tlsPort: await freePort(),
	};
	if (!root) {
		const group = (() => {
			try {
				return execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();
			} catch {
				return null;
			}
		})();
		if (group) settings.internalGroup = group;
	}
	fs.mkdirSync(path.join(dir, 'ssl'));
	fs.writeFileSync(path.join(dir, 'ssl', 'cert.pem'), options.pki.cert);
	fs.writeFileSync(path.join(dir, 'ssl', 'key.pem'), options.pki.key, { mode: 0o600 });
	fs.mkdirSync(path.join(dir, 'home'), { mode: 0o755 });
	if (root) fs.chownSync(path.join(dir, 'home'), settings.mailUid, settings.mailGid);
	const usersPath = path.join(dir, 'users');
	const writeUsers = () => {
		// passwd-file is re-read when it changes, so addUser works on a running server
		// {PLAIN} spelled out, so a password that starts with `{` is not read as a scheme
		const text = passwordLogins ? Object.entries(users).map(([user, password]) => `${user}:{PLAIN}${password}::::::\n`).join('') : '';
		const tmp = `${usersPath}.tmp`;
		fs.writeFileSync(tmp, text, { mode: 0o644 });
		fs.renameSync(tmp, usersPath);
	};
	writeUsers();
	const oauth2Mailboxes = new Set();
	const confPath = path.join(dir, 'dovecot.conf');
	const writeConfig = () => {
		if (options.oauth2) {
			// one passdb per known mailbox, and a last one (no mailbox) for everybody else
			settings.oauth2Passdbs = [...oauth2Mailboxes, null].map((mailbox, i) => {
				const argsPath = path.join(dir, `oauth2-${i}.conf.ext`);
				fs.writeFileSync(argsPath, oauth2Config(options.oauth2.introspectionUrl, mailbox), { mode: 0o644 });
				return { mailbox, argsPath };
			});
		}
		fs.writeFileSync(confPath, buildConfig(settings), { mode: 0o644 });
	};
	const knowMailbox = (user) => {
		// auth_username_format = %Lu: Dovecot matches filters against the lowercased login
		const mailbox = user.toLowerCase();
		if (!options.oauth2 || oauth2Mailboxes.has(mailbox) || /[*?!]/.test(mailbox)) return false;
		oauth2Mailboxes.add(mailbox);
		return true;
	};
	for (const user of [...Object.keys(users), ...(options.oauth2?.mailboxes ?? [])]) knowMailbox(user);
	writeConfig();

	const requireStartTls = options.requireStartTls !== false;
	const relay = requireStartTls ? await startRelay(settings.dovecotPort) : null;
	const logs = [];
	let child = null;
	let exited = null; // promise of the current child's exit
	let stopped = false;
	const setpriv = findBinary('setpriv');

	function spawnMaster() {
		const argv = [bins.dovecot, '-F', '-c', confPath];
		// pdeathsig: a crashed test run must not leave Dovecot holding its ports
		const [file, ...args] = setpriv ? [setpriv, '--pdeathsig', 'TERM', '--', ...argv] : argv;
		// detached: its own process group, so stop() can SIGKILL master and children at once
		const proc = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
		let partial = '';
		const onData = (chunk) => {
			const text = partial + chunk.toString('utf8');
			const parts = text.split('\n');
			partial = parts.pop();
			for (const line of parts) {
				logs.push(line);
				if (verbose) process.stderr.write(`[dovecot] ${line}\n`);
			}
			if (logs.length > 20000) logs.splice(0, logs.length - 10000);
		};
		proc.stdout.on('data', onData);
		proc.stderr.on('data', onData);
		exited = new Promise((resolve) => proc.once('close', (code, signal) => resolve({ code, signal })));
		proc.once('error', (error) => logs.push(`spawn error: ${error.message}`));
		// a forgotten stop() must not keep the test process alive (the exit hook kills it)
		proc.unref();
		proc.stdout.unref?.();
		proc.stderr.unref?.();
		child = proc;
		return proc;
	}

	function killNow() {
		if (!child || child.exitCode !== null || child.signalCode !== null) return;
		try {
			process.kill(-child.pid, 'SIGKILL');
		} catch {
			try {
				child.kill('SIGKILL');
			} catch {
				// already gone
			}
		}
	}

	async function kill() {
		if (!child) return;
		// the child and its pipes are unref'd: hold the event loop open until it is gone
		const hold = setInterval(() => {}, 1000);
		try {
			killNow();
			await exited;
		} finally {
			clearInterval(hold);
		}
		child = null;
	}

	async function waitForGreeting(proc, deadline) {
		while (Date.now() < deadline) {
			if (proc.exitCode !== null || proc.signalCode !== null) return false;
			const greeted = await new Promise((resolve) => {
				const socket = net.connect({ host: '127.0.0.1', port: settings.dovecotPort });
				let data = '';
				const done = (ok) => {
					socket.destroy();
					resolve(ok);
				};
				socket.setTimeout(1000, () => done(false));
				socket.on('data', (chunk) => {
					data += chunk;
					if (data.includes('\r\n')) done(data.startsWith('* OK'));
				});
				socket.on('error', () => done(false));
				socket.on('close', () => done(false));
			});
			if (greeted) return true;
			await new Promise((resolve) => setTimeout(resolve, 20));
		}
		return false;
	}

	async function start() {
		// after SIGKILL the ports are free almost at once; retry briefly if not yet
		const deadline = Date.now() + 15000;
		for (;;) {
			const logStart = logs.length;
			const proc = spawnMaster();
			if (await waitForGreeting(proc, deadline)) return;
			const failure = logs.slice(logStart).join('\n');
			await kill();
			if (/Address already in use/.test(failure) && Date.now() < deadline) {
				await new Promise((resolve) => setTimeout(resolve, 100));
				continue;
			}
			throw new Error(`Dovecot did not start:\n${failure || '(no output)'}`);
		}
	}

	/** Applies a rewritten config to the running server (SIGHUP through doveadm reload). */
	async function reload() {
		writeConfig();
		const logStart = logs.length;
		await doveadm(['reload']);
		// the master answers SIGHUP asynchronously; new logins use the new config after this line
		const deadline = Date.now() + 5000;
		while (!logs.slice(logStart).some((line) => /reloading configuration/i.test(line))) {
			if (Date.now() > deadline) throw new Error(`dovecot peer: reload not confirmed:\n${logs.slice(logStart).join('\n')}`);
			await new Promise((resolve) => setTimeout(resolve, 10));
		}
	}

	const instance = {
		killNow() {
			killNow();
			try {
				fs.rmSync(dir, { recursive: true, force: true });
			} catch {
				// a dying process may still hold a file; the OS cleans /tmp eventually
			}
		},
	};
	// the running server's config socket saves doveadm from parsing the config (~12 -> ~6 ms)
	const configSocket = path.join(dir, 'run', 'config');
	const doveadm = async (args, input) => {
		if (!(child && fs.existsSync(configSocket))) return run(bins.doveadm, ['-c', confPath, ...args], input);
		try {
			return await run(bins.doveadm, ['-c', configSocket, ...args], input);
		} catch (error) {
			// the config process restarts now and then (reload, a busy machine): parse the file instead
			if (!/Error reading configuration/.test(String(error.stderr ?? error.message))) throw error;
			return run(bins.doveadm, ['-c', confPath, ...args], input);
		}
	};

	async function createFolder(user, name) {
		checkName('user', user);
		if (name === 'INBOX') return;
		try {
			await doveadm(['mailbox', 'create', '-s', '-u', user, name]);
		} catch (error) {
			if (!/exists/i.test(error.message)) throw error;
		}
	}

	/** Runs fn; if the folder is missing, creates it and runs fn again (fixtures need no setup step). */
	async function inFolder(user, folder, fn) {
		try {
			return await fn();
		} catch (error) {
			if (folder === 'INBOX' || !/doesn't exist|not found/i.test(error.message)) throw error;
			await createFolder(user, folder);
			return fn();
		}
	}

	// UIDNEXT before the save is the new message's UID (unless an IMAP APPEND races it),
	// so deliveries go one at a time
	let deliveryChain = Promise.resolve();
	/** Stores one message like a delivery agent would; resolves { uid } once it is in the mailbox. */
	function deliver(user, raw, { folder = 'INBOX', flags } = {}) {
		checkName('user', user);
		const task = deliveryChain.then(async () => {
			const { uidNext } = await inFolder(user, folder, () => status(user, folder));
			await doveadm(['save', '-u', user, '-m', folder], Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw)));
			if (flags && [].concat(flags).length) {
				await doveadm(['flags', 'add', '-u', user, [].concat(flags).join(' '), 'mailbox', folder, 'uid', String(uidNext)]);
			}
			return { uid: uidNext };
		});
		deliveryChain = task.catch(() => {});
		return task;
	}

	async function status(user, folder = 'INBOX') {
		checkName('user', user);
		const { stdout } = await doveadm(['-f', 'flow', 'mailbox', 'status', '-u', user, 'messages uidnext uidvalidity unseen', folder]);
		const out = {};
		for (const [, key, value] of stdout.matchAll(/(\w+)=(\d+)/g)) out[key] = Number(value);
		return { messages: out.messages, uidNext: out.uidnext, uidValidity: out.uidvalidity, unseen: out.unseen };
	}

	let seedCounter = 0;
	/**
	 * Writes messages straight into the Maildir (~30x faster than APPEND), then lets Dovecot
	 * index them. UIDs follow array order. flags: system flags only (\Seen, \Flagged, ...).
	 */
	async function seed(user, messages, { folder = 'INBOX', flags = [] } = {}) {
		checkName('user', user);
		// opening the mailbox makes Dovecot create home and Maildir with the right owner
		await inFolder(user, folder, () => status(user, folder));
		const box = (await doveadm(['mailbox', 'path', '-u', user, folder])).stdout.trim();
		if (!fs.existsSync(path.join(box, 'cur'))) throw new Error(`dovecot peer: Maildir for ${user}/${folder} not found at ${box}`);
		const info = [].concat(flags).map((flag) => {
			const letter = MAILDIR_FLAGS[flag];
			if (!letter) throw new Error(`dovecot peer: seed supports system flags only, not ${flag}`);
			return letter;
		});
		const infoSuffix = `:2,${[...new Set(info)].sort().join('')}`;
		// file names sort by their leading timestamp: one second each keeps the given order
		const base = Math.floor(Date.now() / 1000) - messages.length - 1;
		const batch = `${process.pid}Q${++seedCounter}`;
		// tmp/ then rename into cur/, as Maildir wants, so a syncing Dovecot never reads half a file;
		// several writes in flight use libuv's thread pool (2-10x faster than one at a time)
		let next = 0;
		const writer = async () => {
			while (next < messages.length) {
				const i = next++;
				const raw = Buffer.isBuffer(messages[i]) ? messages[i] : Buffer.from(String(messages[i]));
				const name = `${base + i}.M${i}P${batch}.mam,S=${raw.length}`;
				const tmp = path.join(box, 'tmp', name);
				await fs.promises.writeFile(tmp, raw);
				if (root) await fs.promises.chown(tmp, settings.mailUid, settings.mailGid);
				await fs.promises.rename(tmp, path.join(box, 'cur', name + infoSuffix));
			}
		};
		await Promise.all(Array.from({ length: 16 }, writer));
		// index now, so the first SELECT of a big fixture is not what a test measures
		await doveadm(['index', '-u', user, folder]);
		return status(user, folder);
	}

	/**
	 * Sets the owner's IMAP rights (RFC 4314 letters, e.g. 'lr': read only, no insert, no
	 * flags) on one folder; needs startDovecot({ acl: true }). New sessions see them.
	 */
	async function setRights(user, folder, rights) {
		if (!settings.acl) throw new Error('dovecot peer: setRights needs startDovecot({ acl: true })');
		if (!/^[lrwsitekxa]*$/.test(rights)) throw new Error(`dovecot peer: unsupported rights ${JSON.stringify(rights)}`);
		await inFolder(user, folder, () => status(user, folder));
		const box = (await doveadm(['mailbox', 'path', '-u', user, folder])).stdout.trim();
		fs.writeFileSync(path.join(box, 'dovecot-acl'), `owner ${rights}\n`, { mode: 0o644 });
	}

	async function list(user, folder = 'INBOX') {
		checkName('user', user);
		const { stdout } = await doveadm(['-f', 'json', 'fetch', '-u', user, 'uid flags size.virtual hdr.message-id hdr.subject', 'mailbox', folder, 'all']);
		const rows = stdout.trim() ? JSON.parse(stdout) : [];
		return rows.map((row) => ({
			uid: Number(row.uid),
			// \Recent belongs to whichever session saw the message first (here doveadm's)
			flags: row.flags ? row.flags.split(' ').filter((flag) => flag && flag !== '\\Recent') : [],
			size: Number(row['size.virtual']),
			messageId: row['hdr.message-id'] ?? '',
			subject: decodeWords(row['hdr.subject'] ?? ''),
		}));
	}

	installExitHook();
	running.add(instance);
	const started = Date.now();
	try {
		await start();
	} catch (error) {
		running.delete(instance);
		if (relay) await relay.close();
		fs.rmSync(dir, { recursive: true, force: true });
		throw error;
	}

	return {
		host: '127.0.0.1',
		/** Plain IMAP with STARTTLS (port-143 style). */
		port: relay ? relay.port : settings.dovecotPort,
		/** Implicit TLS (port-993 style). */
		tlsPort: settings.tlsPort,
		/** Dovecot's own plain listener (connections there count as secure, see startRelay). */
		directPort: settings.dovecotPort,
		dir,
		confPath,
		logs,
		startMs: Date.now() - started,
		ca: options.pki.ca,
		/** Runs doveadm against this instance: doveadm(['mailbox', 'list', '-u', user]). */
		doveadm,
		/** Adds or changes a password user on the running server (and knows it as an XOAUTH2 mailbox). */
		async addUser(user, password) {
			checkName('user', user);
			if (/[:\n]/.test(password)) throw new Error(`dovecot peer: password for ${user} may not contain ':' or newlines`);
			users[user] = password;
			writeUsers();
			if (knowMailbox(user)) await reload();
		},
		/** Removes a password user; XOAUTH2 logins stay possible. */
		removeUser(user) {
			delete users[user];
			writeUsers();
		},
		/**
		 * Makes the introspection request for this mailbox carry ?mailbox=, which app-only
		 * tokens need (users given at start or to addUser are known already).
		 */
		async addOAuthMailbox(mailbox) {
			checkName('mailbox', mailbox);
			if (knowMailbox(mailbox)) await reload();
		},
		deliver,
		seed,
		createFolder,
		setRights,
		list,
		status,
		async uidValidity(user, folder = 'INBOX') {
			return (await status(user, folder)).uidValidity;
		},
		/** Hard restart on the same ports with the same mail; open connections drop. */
		async restart() {
			if (stopped) throw new Error('dovecot peer: restart after stop');
			await kill();
			relay?.dropConnections();
			await start();
		},
		async stop() {
			if (stopped) return;
			stopped = true;
			running.delete(instance);
			await kill();
			if (relay) await relay.close();
			fs.rmSync(dir, { recursive: true, force: true });
		},
	};
}

module.exports = { startDovecot, ensureDovecotInstalled };
