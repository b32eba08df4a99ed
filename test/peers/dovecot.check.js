'use strict';
// Self-check for the Dovecot peer: starts a real Dovecot, talks IMAP to it (raw over
// node:tls, and through imapflow when it is installed) and checks what tests rely on.
// Run: node test/peers/dovecot.check.js  (prints "N passed, M failed" last).
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const tls = require('node:tls');
const { createTestPki } = require('./certs');
const { startDovecot, ensureDovecotInstalled } = require('./dovecot');
const { startFakeIdentity } = require('./fake-identity');
const { createChecks } = require('./check-runner');

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const TENANT = '6f1c2b7e-3d4a-4c5b-9e8f-0a1b2c3d4e5f';

const { check, counts } = createChecks({ stackLines: 12 });

const timings = {};
async function timed(label, fn) {
	const started = process.hrtime.bigint();
	const result = await fn();
	timings[label] = Number(process.hrtime.bigint() - started) / 1e6;
	return result;
}

function message(subject, { id = `${Math.random().toString(36).slice(2)}@test`, body = 'Hello.' } = {}) {
	return Buffer.from(`From: Sender <sender@example.net>\r\nTo: ${ALICE}\r\nSubject: ${subject}\r\nMessage-ID: <${id}>\r\nDate: ${new Date().toUTCString()}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${body}\r\n`);
}

/** Just enough IMAP to check the server without any library. */
class RawImap {
	constructor(socket) {
		this.socket = socket;
		this.buffer = '';
		this.waiters = [];
		this.tagCounter = 0;
		this.attach(socket);
	}

	static connect({ host, port, secure, ca }) {
		return new Promise((resolve, reject) => {
			const socket = secure ? tls.connect({ host, port, ca }) : net.connect({ host, port });
			socket.once('error', reject);
			const client = new RawImap(socket);
			client.readLine().then((greeting) => {
				socket.off('error', reject);
				client.greeting = greeting;
				resolve(client);
			}, reject);
		});
	}

	attach(socket) {
		socket.on('data', (chunk) => {
			this.buffer += chunk.toString('latin1');
			this.poke();
		});
		socket.on('close', () => {
			this.closed = true;
			this.poke();
		});
		socket.on('error', () => {});
	}

	poke() {
		for (const waiter of [...this.waiters]) waiter();
	}

	/** Resolves when `test(buffer)` returns a value; rejects on close or after 10 s. */
	waitFor(test) {
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => finish(new Error(`IMAP timeout; buffer: ${this.buffer.slice(-300)}`)), 10000);
			const finish = (error, value) => {
				clearTimeout(timer);
				this.waiters = this.waiters.filter((w) => w !== waiter);
				if (error) reject(error);
				else resolve(value);
			};
			const waiter = () => {
				const value = test();
				if (value !== undefined) return finish(null, value);
				if (this.closed) finish(Object.assign(new Error(`connection closed; buffer: ${this.buffer.slice(-300)}`), { closed: true }));
			};
			this.waiters.push(waiter);
			waiter();
		});
	}

	readLine() {
		return this.waitFor(() => {
			const end = this.buffer.indexOf('\r\n');
			if (end < 0) return undefined;
			const line = this.buffer.slice(0, end);
			this.buffer = this.buffer.slice(end + 2);
			return line;
		});
	}

	/** Sends a command; resolves {status, text, untagged}. A `+` continuation gets an empty reply (SASL error). */
	command(text) {
		const tag = `A${++this.tagCounter}`;
		this.socket.write(`${tag} ${text}\r\n`);
		return this.waitFor(() => {
			const match = new RegExp(`(?:^|\\r\\n)${tag} (OK|NO|BAD)([^\\r\\n]*)\\r\\n`).exec(this.buffer);
			if (!match) {
				if (/(?:^|\r\n)\+[^\r\n]*\r\n$/.test(this.buffer)) {
					this.continuations = (this.continuations ?? 0) + 1;
					this.buffer = this.buffer.replace(/\+[^\r\n]*\r\n$/, '');
					this.socket.write('\r\n');
				}
				return undefined;
			}
			const untagged = this.buffer.slice(0, match.index);
			this.buffer = this.buffer.slice(match.index + match[0].length);
			return { status: match[1], text: match[2].trim(), untagged };
		});
	}

	async startTls(ca) {
		const reply = await this.command('STARTTLS');
		if (reply.status !== 'OK') throw new Error(`STARTTLS refused: ${reply.text}`);
		this.socket.removeAllListeners('data');
		this.socket.removeAllListeners('close');
		const secure = tls.connect({ socket: this.socket, host: '127.0.0.1', ca });
		await new Promise((resolve, reject) => {
			secure.once('secureConnect', resolve);
			secure.once('error', reject);
		});
		this.socket = secure;
		this.attach(secure);
	}

	close() {
		this.socket.destroy();
	}
}

const quote = (value) => `"${String(value).replace(/["\\]/g, '\\$&')}"`;
const xoauth2 = (user, token) => Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`).toString('base64');

async function loginAndCount(dovecot, { secure, starttls, user = ALICE, password = 'pw', ca }) {
	const client = await RawImap.connect({ host: dovecot.host, port: secure ? dovecot.tlsPort : dovecot.port, secure, ca });
	try {
		if (starttls) await client.startTls(ca);
		const login = await client.command(`LOGIN ${quote(user)} ${quote(password)}`);
		assert.equal(login.status, 'OK', `LOGIN: ${login.text}`);
		const select = await client.command('SELECT INBOX');
		assert.equal(select.status, 'OK', `SELECT: ${select.text}`);
		return Number(/\* (\d+) EXISTS/.exec(select.untagged)?.[1]);
	} finally {
		client.close();
	}
}

async function main() {
	const installStarted = Date.now();
	const install = ensureDovecotInstalled();
	console.log(`# Dovecot ${install.version} (${install.installedNow ? `installed in ${install.installMs} ms` : `already installed, check took ${Date.now() - installStarted} ms`})`);

	const pki = createTestPki();
	const idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['example.com'] });
	const app = idp.addApp({ tenant: TENANT, secrets: ['s3cret'], appRoles: ['IMAP.AccessAsApp'] });
	idp.addUser({ tenant: TENANT, username: ALICE, password: 'entra-pw' });
	idp.addUser({ tenant: TENANT, username: BOB, password: 'entra-pw' });
	const delegatedToken = (username) => idp.mintAccessToken({ tenant: TENANT, clientId: app.clientId, username, audience: 'https://outlook.office.com', scp: 'IMAP.AccessAsUser.All' });

	let dovecot;
	let tokenOnly;
	try {
		dovecot = await timed('start', () => startDovecot({ pki, users: { [ALICE]: 'pw' }, oauth2: { introspectionUrl: idp.introspectionUrl } }));
		const { ca } = pki;

		await check('starts on free high ports on 127.0.0.1', async () => {
			assert.equal(dovecot.host, '127.0.0.1');
			for (const port of [dovecot.port, dovecot.tlsPort]) assert.ok(port > 1024, `port ${port}`);
			assert.notEqual(dovecot.port, dovecot.tlsPort);
			assert.ok(dovecot.logs.some((line) => /starting up/.test(line)), 'captured the start-up log line');
		});

		await check('deliver stores messages and returns their UIDs', async () => {
			const uids = [];
			for (let i = 1; i <= 3; i++) {
				const { uid } = await timed(`deliver #${i}`, () => dovecot.deliver(ALICE, message(`Message ${i}`, { id: `m${i}@test` })));
				uids.push(uid);
			}
			assert.deepEqual(uids, [1, 2, 3]);
		});

		await check('LOGIN over the implicit TLS port (trusting the test CA) sees 3 messages', async () => {
			assert.equal(await loginAndCount(dovecot, { secure: true, ca }), 3);
		});

		await check('plain port: no plaintext login before STARTTLS, works after it', async () => {
			const client = await RawImap.connect({ host: dovecot.host, port: dovecot.port });
			try {
				const caps = await client.command('CAPABILITY');
				assert.match(caps.untagged, /STARTTLS/);
				assert.match(caps.untagged, /LOGINDISABLED/);
				const early = await client.command(`LOGIN ${quote(ALICE)} "pw"`);
				assert.equal(early.status, 'NO', early.text);
				await client.startTls(ca);
				const caps2 = await client.command('CAPABILITY');
				assert.doesNotMatch(caps2.untagged, /LOGINDISABLED/);
				assert.match(caps2.untagged, /AUTH=XOAUTH2/);
				assert.doesNotMatch(caps2.untagged, /OAUTHBEARER/);
				const login = await client.command(`LOGIN ${quote(ALICE)} "pw"`);
				assert.equal(login.status, 'OK', login.text);
				const select = await client.command('SELECT INBOX');
				assert.match(select.untagged, /\* 3 EXISTS/);
				const fetch = await client.command('UID FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
				assert.equal(fetch.status, 'OK', fetch.text);
				assert.equal((fetch.untagged.match(/Subject: Message \d/g) ?? []).length, 3);
			} finally {
				client.close();
			}
		});

		await check('a wrong password is refused (in about 0.5 s)', async () => {
			const started = Date.now();
			for (let i = 0; i < 3; i++) {
				const client = await RawImap.connect({ host: dovecot.host, port: dovecot.tlsPort, secure: true, ca });
				const login = await client.command(`LOGIN ${quote(ALICE)} "wrong"`);
				client.close();
				assert.equal(login.status, 'NO');
				assert.match(login.text, /AUTHENTICATIONFAILED/);
			}
			timings['3 failed logins'] = Date.now() - started;
			assert.ok(Date.now() - started < 3000, `3 failed logins took ${Date.now() - started} ms`);
			assert.equal(await loginAndCount(dovecot, { secure: true, ca }), 3, 'good login still works afterwards');
		});

		let uidValidity;
		await check('list shows the 3 messages with increasing UIDs; uidValidity is a number', async () => {
			const messages = await dovecot.list(ALICE, 'INBOX');
			assert.equal(messages.length, 3);
			assert.deepEqual(messages.map((m) => m.subject), ['Message 1', 'Message 2', 'Message 3']);
			assert.deepEqual(messages.map((m) => m.messageId), ['<m1@test>', '<m2@test>', '<m3@test>']);
			for (let i = 1; i < messages.length; i++) assert.ok(messages[i].uid > messages[i - 1].uid);
			assert.ok(messages.every((m) => m.size > 100 && Array.isArray(m.flags)));
			uidValidity = await dovecot.uidValidity(ALICE, 'INBOX');
			assert.equal(typeof uidValidity, 'number');
			assert.ok(Number.isInteger(uidValidity) && uidValidity > 0);
		});

		await check('deliver with flags, into a folder that does not exist yet; createFolder', async () => {
			const { uid } = await dovecot.deliver(ALICE, message('Flagged one'), { folder: 'Archive', flags: ['\\Seen', '\\Flagged', '$Label1'] });
			const [stored] = await dovecot.list(ALICE, 'Archive');
			assert.equal(stored.uid, uid);
			assert.deepEqual([...stored.flags].sort(), ['$Label1', '\\Flagged', '\\Seen']);
			await dovecot.createFolder(ALICE, 'Sent Items');
			await dovecot.createFolder(ALICE, 'Sent Items'); // again: no error
			const { stdout } = await dovecot.doveadm(['mailbox', 'list', '-u', ALICE]);
			assert.ok(stdout.split('\n').includes('Sent Items'));
			const subject = '=?UTF-8?B?' + Buffer.from('Grüße').toString('base64') + '?=';
			await dovecot.deliver(ALICE, message(subject), { folder: 'Sent Items' });
			assert.equal((await dovecot.list(ALICE, 'Sent Items'))[0].subject, 'Grüße');
		});

		await check('seed 1000 messages fast; UIDs follow the array order; IMAP sees them', async () => {
			const messages = Array.from({ length: 1000 }, (_, i) => message(`Seed ${i}`, { id: `seed${i}@test` }));
			const status = await timed('seed 1000', () => dovecot.seed(ALICE, messages));
			assert.equal(status.messages, 1003);
			const listed = await timed('list 1003', () => dovecot.list(ALICE, 'INBOX'));
			assert.equal(listed.length, 1003);
			assert.deepEqual(listed.slice(3).map((m) => m.subject), messages.map((_, i) => `Seed ${i}`));
			for (let i = 1; i < listed.length; i++) assert.ok(listed[i].uid > listed[i - 1].uid);
			const client = await RawImap.connect({ host: dovecot.host, port: dovecot.tlsPort, secure: true, ca });
			try {
				assert.equal((await client.command(`LOGIN ${quote(ALICE)} "pw"`)).status, 'OK');
				const reply = await client.command('STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)');
				assert.match(reply.untagged, /MESSAGES 1003/);
				assert.match(reply.untagged, new RegExp(`UIDVALIDITY ${uidValidity}\\b`));
			} finally {
				client.close();
			}
			const seen = await dovecot.seed(ALICE, [message('Seeded seen')], { folder: 'Seeded', flags: ['\\Seen'] });
			assert.equal(seen.messages, 1);
			assert.deepEqual((await dovecot.list(ALICE, 'Seeded'))[0].flags, ['\\Seen']);
		});

		await check('restart keeps ports and mail, and drops open connections', async () => {
			const ports = [dovecot.port, dovecot.tlsPort];
			const open = await RawImap.connect({ host: dovecot.host, port: dovecot.tlsPort, secure: true, ca });
			assert.equal((await open.command(`LOGIN ${quote(ALICE)} "pw"`)).status, 'OK');
			const openPlain = await RawImap.connect({ host: dovecot.host, port: dovecot.port });
			await timed('restart', () => dovecot.restart());
			await open.waitFor(() => (open.closed ? true : undefined));
			await openPlain.waitFor(() => (openPlain.closed ? true : undefined));
			assert.deepEqual([dovecot.port, dovecot.tlsPort], ports);
			assert.equal(await loginAndCount(dovecot, { secure: true, ca }), 1003);
			assert.equal(await loginAndCount(dovecot, { starttls: true, ca }), 1003);
			assert.equal(await dovecot.uidValidity(ALICE), uidValidity);
		});

		await check('XOAUTH2 with a token from the fake identity platform', async () => {
			const client = await RawImap.connect({ host: dovecot.host, port: dovecot.tlsPort, secure: true, ca });
			try {
				const auth = await client.command(`AUTHENTICATE XOAUTH2 ${xoauth2(ALICE, delegatedToken(ALICE))}`);
				assert.equal(auth.status, 'OK', auth.text);
				const select = await client.command('SELECT INBOX');
				assert.match(select.untagged, /\* 1003 EXISTS/);
			} finally {
				client.close();
			}
			// the token-only user bob has no password, but may log in and receive mail
			await dovecot.deliver(BOB, message('For Bob'));
			const bob = await RawImap.connect({ host: dovecot.host, port: dovecot.tlsPort, secure: true, ca });
			try {
				assert.equal((await bob.command(`AUTHENTICATE XOAUTH2 ${xoauth2(BOB, delegatedToken(BOB))}`)).status, 'OK');
				assert.match((await bob.command('SELECT INBOX')).untagged, /\* 1 EXISTS/);
			} finally {
				bob.close();
			}
		});

		await check('XOAUTH2 over STARTTLS, and an app-only token for a granted mailbox', async () => {
			const appToken = idp.mintAccessToken({ tenant: TENANT, clientId: app.clientId, audience: 'https://outlook.office365.com', roles: ['IMAP.AccessAsApp'] });
			const attempt = async (user) => {
				const client = await RawImap.connect({ host: dovecot.host, port: dovecot.port });
				try {
					await client.startTls(ca);
					return await client.command(`AUTHENTICATE XOAUTH2 ${xoauth2(user, appToken)}`);
				} finally {
					client.close();
				}
			};
			assert.equal((await attempt(ALICE)).status, 'NO', 'not granted yet');
			idp.grantMailbox({ tenant: TENANT, clientId: app.clientId, mailbox: ALICE });
			const ok = await attempt(ALICE);
			assert.equal(ok.status, 'OK', ok.text);
			assert.equal((await attempt(BOB)).status, 'NO', 'other mailbox stays closed');
			// a mailbox the peer did not know at start: addOAuthMailbox, on the running server
			const CAROL = 'carol@example.com';
			idp.grantMailbox({ tenant: TENANT, clientId: app.clientId, mailbox: CAROL });
			assert.equal((await attempt(CAROL)).status, 'NO', 'unknown mailbox: no ?mailbox= for app-only tokens');
			await timed('addOAuthMailbox', () => dovecot.addOAuthMailbox(CAROL));
			const carol = await attempt(CAROL);
			assert.equal(carol.status, 'OK', carol.text);
		});

		// Outlook answers `NO AUTHENTICATE failed.`; Dovecot 2.3 cannot word it so: it sends the
		// SASL 401 JSON challenge, then `NO [AUTHENTICATIONFAILED] Authentication failed.`
		await check('wrong, foreign, scope-less or other-audience tokens: AUTHENTICATE fails (AUTHENTICATIONFAILED)', async () => {
			const started = Date.now();
			for (const [user, token] of [
				[ALICE, 'not-a-token'],
				[ALICE, delegatedToken(BOB)],
				[ALICE, `${delegatedToken(ALICE).slice(0, -4)}AAAA`],
				// Right user and signature, but no IMAP permission or another audience (as Exchange refuses).
				[ALICE, idp.mintAccessToken({ tenant: TENANT, clientId: app.clientId, username: ALICE, audience: 'https://outlook.office.com', scp: 'SMTP.Send' })],
				[ALICE, idp.mintAccessToken({ tenant: TENANT, clientId: app.clientId, username: ALICE, audience: 'https://graph.microsoft.com', scp: 'IMAP.AccessAsUser.All' })],
			]) {
				const client = await RawImap.connect({ host: dovecot.host, port: dovecot.tlsPort, secure: true, ca });
				try {
					const reply = await client.command(`AUTHENTICATE XOAUTH2 ${xoauth2(user, token)}`);
					assert.equal(reply.status, 'NO');
					assert.equal(reply.text, '[AUTHENTICATIONFAILED] Authentication failed.');
					assert.equal(client.continuations, 1, 'one SASL error challenge (answered empty)');
				} finally {
					client.close();
				}
			}
			timings['5 refused tokens'] = Date.now() - started;
		});

		await check('passwordLogins: false refuses passwords but takes tokens', async () => {
			tokenOnly = await startDovecot({ pki, users: { [ALICE]: 'pw' }, passwordLogins: false, oauth2: { introspectionUrl: idp.introspectionUrl } });
			const client = await RawImap.connect({ host: tokenOnly.host, port: tokenOnly.tlsPort, secure: true, ca });
			try {
				assert.equal((await client.command(`LOGIN ${quote(ALICE)} "pw"`)).status, 'NO');
				assert.equal((await client.command(`AUTHENTICATE XOAUTH2 ${xoauth2(ALICE, delegatedToken(ALICE))}`)).status, 'OK');
			} finally {
				client.close();
			}
			await tokenOnly.stop();
			assert.ok(!fs.existsSync(tokenOnly.dir), 'temp dir removed');
		});

		let imapflowPath = null;
		try {
			imapflowPath = require.resolve('imapflow');
		} catch {
			console.log('# imapflow is not installed: skipping the imapflow checks');
		}
		if (imapflowPath) {
			const { ImapFlow } = require(imapflowPath);
			const connect = async (options) => {
				const client = new ImapFlow({ host: dovecot.host, logger: false, tls: { ca }, ...options });
				try {
					await client.connect();
				} catch (error) {
					client.close(); // else the socket keeps the process alive
					throw error;
				}
				return client;
			};
			await check('imapflow: TLS login, STARTTLS login, XOAUTH2, refused token', async () => {
				for (const options of [
					{ port: dovecot.tlsPort, secure: true, auth: { user: ALICE, pass: 'pw' } },
					{ port: dovecot.port, secure: false, doSTARTTLS: true, auth: { user: ALICE, pass: 'pw' } },
					{ port: dovecot.tlsPort, secure: true, auth: { user: ALICE, accessToken: delegatedToken(ALICE) } },
				]) {
					const client = await connect(options);
					const box = await client.mailboxOpen('INBOX');
					assert.equal(box.exists, 1003);
					await client.logout();
				}
				let error;
				try {
					await connect({ port: dovecot.tlsPort, secure: true, auth: { user: ALICE, accessToken: 'bad' } });
				} catch (e) {
					error = e;
				}
				assert.ok(error, 'a bad token must fail');
				assert.ok(error.authenticationFailed, `authenticationFailed flag: ${error.message}`);
				assert.equal(error.serverResponseCode, 'AUTHENTICATIONFAILED');
				assert.equal(error.oauthError?.status, '401', 'imapflow decoded the SASL error challenge');
			});
		}
	} catch (error) {
		counts.failed++;
		console.log(`not ok - setup\n  ${error.stack}`);
		if (dovecot) console.log(dovecot.logs.slice(-30).join('\n'));
	} finally {
		if (tokenOnly) await tokenOnly.stop().catch(() => {});
		if (dovecot) {
			if (counts.failed) console.log(`# last Dovecot log lines:\n${dovecot.logs.slice(-15).map((l) => `#   ${l}`).join('\n')}`);
			await timed('stop', () => dovecot.stop());
		}
		await idp.close();
		fs.rmSync(pki.dir, { recursive: true, force: true });
	}
	console.log(`# timings (ms): ${Object.entries(timings).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ')}`);
	console.log(`${counts.passed} passed, ${counts.failed} failed`);
	process.exitCode = counts.failed ? 1 : 0;
}

main().catch((error) => {
	console.log(`not ok - ${error.stack}`);
	console.log(`${counts.passed} passed, ${counts.failed + 1} failed`);
	process.exitCode = 1;
});
