'use strict';
// End to end in real n8n (installed from npm, pinned): pack this package, install it the way
// a user's n8n does, import an SMTP credential into n8n's encrypted store, import a workflow
// that reads a file and sends it with "Send Email (Modern Auth)", execute it with the n8n CLI,
// and check what the SMTP server received. Exits non-zero on any failure.
const assert = require('node:assert/strict');
const { createHash, randomBytes } = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { simpleParser } = require('mailparser');

const runtime = require('../../scripts/n8n-runtime');
const { sendWorkflow: exampleWorkflow, SEND_NODE } = require('../../scripts/example-workflow');
const { createTestPki, loadTestPki } = require('../peers/certs');
const { startSmtpPeer } = require('../peers/smtp-peer');
const { startFakeIdentity } = require('../peers/fake-identity');
const { createChecks } = require('../peers/check-runner');
const { startDovecot } = require('../peers/dovecot');

const CREDENTIAL_NAME = 'Local SMTP (e2e)';
const sendWorkflow = (id, credentialId, filePath) =>
	exampleWorkflow({ id, credentialId, credentialName: CREDENTIAL_NAME, filePath });
const sha256 = (buffer) => createHash('sha256').update(buffer).digest('hex');
const PASSWORD = `e2e-${randomBytes(12).toString('hex')}`;
const { check, counts } = createChecks({ stackLines: 40, timed: true });

async function main() {
	const work = process.env.MAM_E2E_WORK;
	const userFolder = path.join(work, 'user');
	const filesDir = path.join(work, 'files');
	fs.mkdirSync(filesDir, { recursive: true });
	const { bin } = runtime.ensureN8n();
	const pki = loadTestPki(path.join(work, 'pki'));
	// Microsoft side: a fake identity platform over HTTPS (trusted by n8n through
	// NODE_EXTRA_CA_CERTS) and an SMTP server that validates XOAUTH2 tokens with it.
	const idp = await startFakeIdentity({ pki });
	const TENANT = '0b7c5a9e-1f2d-4e3c-8a6b-5d4c3b2a1f0e';
	const APP = '3c2b1a0f-9e8d-4c7b-a6f5-e4d3c2b1a098';
	const APP_SECRET = `app-secret-${randomBytes(8).toString('hex')}`;
	const IMAP_APP = '5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d';
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	idp.addApp({ tenant: TENANT, clientId: APP, secrets: [{ value: APP_SECRET }], appRoles: ['SMTP.SendAsApp'] });
	idp.grantMailbox({ tenant: TENANT, clientId: APP, mailbox: 'robot@contoso.example' });
	idp.addApp({ tenant: TENANT, clientId: IMAP_APP, secrets: [{ value: APP_SECRET }], appRoles: ['IMAP.AccessAsApp'] });
	idp.grantMailbox({ tenant: TENANT, clientId: IMAP_APP, mailbox: 'robot@contoso.example' });
	const dovecot = await startDovecot({
		pki,
		users: { 'reader@example.com': PASSWORD },
		oauth2: { introspectionUrl: idp.introspectionUrl, mailboxes: ['robot@contoso.example'] },
	});
	const peer = await startSmtpPeer({
		pki,
		users: { 'robot@example.com': PASSWORD },
		// Exchange's check: a token for the Exchange audience, for this mailbox, with the
		// SMTP.SendAsApp role (app-only) or the SMTP.Send scope (delegated).
		validateBearer: (token, user) => {
			const claims = idp.introspect(token, { audience: 'https://outlook.office365.com', mailbox: user });
			const roles = [].concat(claims.roles ?? []);
			return Boolean(claims.active && (roles.includes('SMTP.SendAsApp') || /\bSMTP\.Send\b/.test(String(claims.scope ?? claims.scp ?? ''))));
		},
	});
	const env = runtime.n8nEnv(userFolder, {
		// How an administrator makes n8n trust a company CA.
		NODE_EXTRA_CA_CERTS: pki.caPath,
		N8N_RESTRICT_FILE_ACCESS_TO: filesDir,
		N8N_RUNNERS_BROKER_PORT: String(5700 + Math.floor(Math.random() * 200)),
	});

	/** `n8n import:credentials` through a file that is removed at once (it holds secrets in clear). */
	const importCredentials = async (credentials) => {
		const file = path.join(work, `credentials-${randomBytes(4).toString('hex')}.json`);
		fs.writeFileSync(file, JSON.stringify(credentials));
		try {
			return await runtime.runN8n(bin, ['import:credentials', `--input=${file}`], env);
		} finally {
			fs.rmSync(file);
		}
	};
	const importWorkflow = async (workflow) => {
		const file = path.join(work, `workflow-${workflow.id}.json`);
		fs.writeFileSync(file, JSON.stringify(workflow));
		return runtime.runN8n(bin, ['import:workflow', `--input=${file}`], env);
	};
	/** A password (ROPC) sign-in stands in for "Connect my account": same token endpoint, same scopes. */
	const signInWithPassword = async ({ clientId, clientSecret, username, password }) => {
		const response = await fetch(idp.tokenEndpoint(TENANT), {
			method: 'POST',
			headers: { 'content-type': 'application/x-www-form-urlencoded' },
			body: new URLSearchParams({
				grant_type: 'password',
				client_id: clientId,
				client_secret: clientSecret,
				username,
				password,
				scope: 'https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access',
			}),
		});
		const tokens = await response.json();
		assert.ok(tokens.refresh_token, JSON.stringify(tokens));
		return tokens;
	};

	try {
		await check(`package installs into ${path.join('.n8n', 'nodes', 'node_modules')} like a user install`, async () => {
			const tarball = runtime.packPackage(work);
			const target = runtime.installPackageLikeUser(tarball, userFolder);
			const manifest = JSON.parse(fs.readFileSync(path.join(target, 'package.json'), 'utf8'));
			for (const file of [...manifest.n8n.credentials, ...manifest.n8n.nodes]) {
				assert.ok(fs.existsSync(path.join(target, file)), `${file} is in the package`);
			}
			assert.ok(fs.existsSync(path.join(target, 'node_modules', 'nodemailer')), 'runtime dependency installed');
			assert.ok(!fs.existsSync(path.join(target, 'node_modules', 'n8n-workflow')), 'n8n-workflow comes from n8n');
		});

		const credentialId = 'MamSmtpE2e000001';
		await check('SMTP credential imports into the encrypted store (ciphertext only)', async () => {
			const result = await importCredentials([
				{
					id: credentialId,
					name: CREDENTIAL_NAME,
					type: 'modernAuthSmtpApi',
					data: {
						host: peer.host,
						port: peer.port,
						security: 'starttls',
						user: 'robot@example.com',
						password: PASSWORD,
						fromAddress: 'Robot <robot@example.com>',
					},
				},
			]);
			assert.equal(result.code, 0, result.stdout + result.stderr);
			const dbFiles = fs.readdirSync(path.join(userFolder, '.n8n')).filter((f) => f.startsWith('database.sqlite'));
			assert.ok(dbFiles.length > 0, 'sqlite database exists');
			for (const dbFile of dbFiles) {
				const bytes = fs.readFileSync(path.join(userFolder, '.n8n', dbFile));
				assert.equal(bytes.indexOf(PASSWORD), -1, `password not in ${dbFile}`);
				assert.equal(bytes.indexOf('robot@example.com'), -1, `user name not in ${dbFile}`);
			}
			const row = await readCredentialRow(path.join(userFolder, '.n8n', 'database.sqlite'), credentialId);
			assert.equal(row.type, 'modernAuthSmtpApi');
			assert.match(row.data, /^U2FsdGVkX1/, 'stored data is OpenSSL-salted AES ciphertext');
		});

		const attachment = randomBytes(400_000);
		fs.writeFileSync(path.join(filesDir, 'report.bin'), attachment);
		const workflowId = 'MamSendE2e000001';
		let run;
		await check('workflow with Send Email (Modern Auth) executes in real n8n', async () => {
			const imported = await importWorkflow(sendWorkflow(workflowId, credentialId, path.join(filesDir, 'report.bin')));
			assert.equal(imported.code, 0, imported.stdout + imported.stderr);
			const executed = await runtime.runN8n(bin, ['execute', `--id=${workflowId}`, '--rawOutput'], env);
			assert.equal(executed.code, 0, executed.stdout.slice(-4000) + executed.stderr.slice(-4000));
			run = runtime.parseExecuteOutput(executed.stdout);
			assert.ok(!executed.stdout.includes(PASSWORD) && !executed.stderr.includes(PASSWORD), 'password not in n8n output');
		});

		await check('the SMTP server received the mail with its attachment, byte for byte', async () => {
			assert.equal(peer.received.length, 1, 'exactly one message');
			const received = peer.received[0];
			assert.equal(received.user, 'robot@example.com');
			assert.equal(received.secure, true, 'STARTTLS was used');
			assert.deepEqual(received.envelope, { from: 'robot@example.com', to: ['ops@example.org'] });
			const mail = await simpleParser(received.raw);
			assert.equal(mail.subject, 'Nightly report from real n8n');
			assert.equal(mail.text.trim(), 'See attachment.');
			assert.equal(mail.attachments.length, 1);
			assert.equal(mail.attachments[0].filename, 'report.bin');
			assert.equal(sha256(mail.attachments[0].content), sha256(attachment));
			const output = run.data.resultData.runData[SEND_NODE][0].data.main[0];
			assert.equal(output.length, 1);
			assert.equal(output[0].json.messageId, mail.messageId);
			assert.deepEqual(output[0].json.accepted, ['ops@example.org']);
			assert.deepEqual(output[0].pairedItem, { item: 0 });
		});

		await check('a bad item fails alone with continueOnFail in real n8n', async () => {
			peer.reset();
			const workflow = sendWorkflow('MamSendE2e000002', credentialId, path.join(filesDir, 'report.bin'));
			workflow.nodes.find((n) => n.name === SEND_NODE).onError = 'continueRegularOutput';
			workflow.nodes.find((n) => n.name === SEND_NODE).parameters.subject = 'Bad\r\nBcc: victim@example.org';
			assert.equal((await importWorkflow(workflow)).code, 0);
			const executed = await runtime.runN8n(bin, ['execute', '--id=MamSendE2e000002', '--rawOutput'], env);
			const result = runtime.parseExecuteOutput(executed.stdout);
			const output = result.data.resultData.runData[SEND_NODE][0].data.main[0];
			assert.equal(output[0].json.error.code, 'INVALID_INPUT');
			assert.match(output[0].json.error.message, /^Subject: contains a line break/);
			assert.equal(peer.received.length, 0, 'nothing was sent');
		});
		await check('the running n8n server lists all package nodes, and the credential Test button works (REST /rest/credentials/test)', async () => {
			const port = 5800 + Math.floor(Math.random() * 150);
			const server = await startServer(bin, { ...env, N8N_PORT: String(port) }, port);
			try {
				const base = `http://127.0.0.1:${port}`;
				// n8n answers /rest/settings a moment before every controller is mounted.
				let setup;
				for (let attempt = 0; attempt < 40; attempt++) {
					setup = await fetch(`${base}/rest/owner/setup`, {
						method: 'POST',
						headers: { 'content-type': 'application/json' },
						body: JSON.stringify({ email: 'owner@example.com', firstName: 'E2e', lastName: 'Owner', password: 'E2e-Owner-Passw0rd' }),
					});
					if (setup.status !== 404) break;
					await new Promise((resolve) => setTimeout(resolve, 500));
				}
				assert.equal(setup.status, 200, await setup.text());
				let cookieHeader = setup.headers.get('set-cookie');
				if (!cookieHeader) {
					// Some runs answer the setup without a session cookie: sign in instead.
					const login = await fetch(`${base}/rest/login`, {
						method: 'POST',
						headers: { 'content-type': 'application/json' },
						body: JSON.stringify({ emailOrLdapLoginId: 'owner@example.com', email: 'owner@example.com', password: 'E2e-Owner-Passw0rd' }),
					});
					cookieHeader = login.headers.get('set-cookie');
					assert.ok(cookieHeader, `no session cookie from setup or login (login ${login.status}: ${await login.text()})`);
				}
				const cookie = cookieHeader.split(';')[0];
				const test = async (data) => {
					const response = await fetch(`${base}/rest/credentials/test`, {
						method: 'POST',
						headers: { 'content-type': 'application/json', cookie },
						body: JSON.stringify({ credentials: { id: credentialId, name: CREDENTIAL_NAME, type: 'modernAuthSmtpApi', data } }),
					});
					assert.equal(response.status, 200);
					return (await response.json()).data;
				};
				// Every node of the package is loaded by n8n (the editor's node list).
				const types = await (await fetch(`${base}/types/nodes.json`, { headers: { cookie } })).json();
				const names = new Set(types.map((t) => t.name));
				for (const name of ['modernAuthSendEmail', 'modernAuthReadMailbox', 'modernAuthReadMailboxTrigger']) {
					assert.ok(names.has(`${runtime.PACKAGE_NAME}.${name}`), `n8n loaded ${name}`);
				}
				const good = { host: peer.host, port: peer.port, security: 'starttls', user: 'robot@example.com', password: PASSWORD };
				const ok = await test(good);
				assert.equal(ok.status, 'OK', JSON.stringify(ok));
				assert.match(ok.message, /^Connected to 127\.0\.0\.1:\d+ with STARTTLS, authenticated as \*\*\*\*\.com\.$/);
				const bad = await test({ ...good, password: 'not-the-password' });
				assert.equal(bad.status, 'Error');
				assert.match(bad.message, /authentication failed.*Fix: Check the user name and password/);
				assert.ok(!bad.message.includes('not-the-password'));
			} finally {
				server.kill('SIGKILL');
			}
		});
		await check('Microsoft app-only credential sends over SMTP XOAUTH2 inside real n8n', async () => {
			peer.reset();
			const imported = await importCredentials([
				{
					id: 'MamAppOnlyE2e001',
					name: 'Contoso app-only (e2e)',
					type: 'modernAuthMicrosoftAppOnlyApi',
					data: {
						tenantId: TENANT,
						clientId: APP,
						authType: 'secret',
						clientSecret: APP_SECRET,
						cloud: 'custom',
						authorityHost: idp.authorityHost,
						exchangeHost: 'https://outlook.office365.com',
						smtpServer: `${peer.host}:${peer.port}`,
						mailbox: 'robot@contoso.example',
					},
				},
			]);
			assert.equal(imported.code, 0);
			const workflow = sendWorkflow('MamSendE2e000003', 'MamAppOnlyE2e001', path.join(filesDir, 'report.bin'));
			const send = workflow.nodes.find((n) => n.name === SEND_NODE);
			send.parameters.authentication = 'microsoftAppOnly';
			send.credentials = { modernAuthMicrosoftAppOnlyApi: { id: 'MamAppOnlyE2e001', name: 'Contoso app-only (e2e)' } };
			assert.equal((await importWorkflow(workflow)).code, 0);
			const executed = await runtime.runN8n(bin, ['execute', '--id=MamSendE2e000003', '--rawOutput'], env);
			assert.equal(executed.code, 0, executed.stdout.slice(-3000) + executed.stderr.slice(-3000));
			assert.ok(!executed.stdout.includes(APP_SECRET) && !executed.stderr.includes(APP_SECRET));
			assert.equal(peer.received.length, 1);
			assert.equal(peer.received[0].user, 'robot@contoso.example', 'XOAUTH2 user is the mailbox');
			assert.equal(peer.received[0].envelope.from, 'robot@contoso.example');
			const mail = await simpleParser(peer.received[0].raw);
			assert.equal(sha256(mail.attachments[0].content), sha256(attachment));
			assert.equal(idp.counts({ grantType: 'client_credentials', clientId: APP }), 1, 'one token request');
		});
		await check('delegated credential: n8n refreshes it, stores the rotated refresh token encrypted, and the next run uses it', async () => {
			peer.reset();
			const DELEGATED_APP = '7d6c5b4a-3f2e-4d1c-8b0a-9f8e7d6c5b4a';
			const DELEGATED_SECRET = `delegated-${randomBytes(8).toString('hex')}`;
			const USER = 'ann@contoso.example';
			idp.addApp({ tenant: TENANT, clientId: DELEGATED_APP, secrets: [{ value: DELEGATED_SECRET }] });
			idp.addUser({ tenant: TENANT, username: USER, password: 'Ann-e2e-Passw0rd' });
			idp.setTokenLifetime(120); // short-lived: each execution must refresh first
			const connected = await signInWithPassword({ clientId: DELEGATED_APP, clientSecret: DELEGATED_SECRET, username: USER, password: 'Ann-e2e-Passw0rd' });
			// Only what the credential form holds; n8n fills the hidden URL and scope fields.
			const imported = await importCredentials([
				{
					id: 'MamDelegatedE2e1',
					name: 'Ann (delegated e2e)',
					type: 'modernAuthMicrosoftDelegatedOAuth2Api',
					data: {
						clientId: DELEGATED_APP,
						clientSecret: DELEGATED_SECRET,
						cloud: 'custom',
						authorityHost: idp.authorityHost,
						tenant: TENANT,
						useFor: 'imapSmtp',
						smtpServer: `${peer.host}:${peer.port}`,
						oauthTokenData: { access_token: connected.access_token, refresh_token: connected.refresh_token, token_type: 'Bearer' },
					},
				},
			]);
			assert.equal(imported.code, 0);
			const dbPath = path.join(userFolder, '.n8n', 'database.sqlite');
			const storedBefore = (await readCredentialRow(dbPath, 'MamDelegatedE2e1')).data;

			const workflow = sendWorkflow('MamSendE2e000004', 'MamDelegatedE2e1', path.join(filesDir, 'report.bin'));
			const send = workflow.nodes.find((n) => n.name === SEND_NODE);
			send.parameters.authentication = 'microsoftDelegated';
			send.credentials = { modernAuthMicrosoftDelegatedOAuth2Api: { id: 'MamDelegatedE2e1', name: 'Ann (delegated e2e)' } };
			assert.equal((await importWorkflow(workflow)).code, 0);
			const refreshes = () => idp.counts({ grantType: 'refresh_token', clientId: DELEGATED_APP });

			for (const round of [1, 2]) {
				const executed = await runtime.runN8n(bin, ['execute', '--id=MamSendE2e000004', '--rawOutput'], env);
				assert.equal(executed.code, 0, `run ${round}: ` + executed.stdout.slice(-3000) + executed.stderr.slice(-2000));
				assert.equal(refreshes(), round, `run ${round} refreshed once`);
				assert.equal(peer.received.length, round);
				assert.equal(peer.received[round - 1].user, USER);
				const stored = (await readCredentialRow(dbPath, 'MamDelegatedE2e1')).data;
				assert.match(stored, /^U2FsdGVkX1/);
				assert.notEqual(stored, storedBefore, 'the stored credential changed');
				for (const dbFile of fs.readdirSync(path.join(userFolder, '.n8n')).filter((f) => f.startsWith('database.sqlite'))) {
					const bytes = fs.readFileSync(path.join(userFolder, '.n8n', dbFile));
					assert.equal(bytes.indexOf(connected.refresh_token), -1, 'no refresh token in clear');
					assert.equal(bytes.indexOf(DELEGATED_SECRET), -1, 'no client secret in clear');
				}
			}
			// The first refresh rotated the token: the second run only worked because n8n had
			// stored the rotated one (the fake platform refuses a reused refresh token).
			const reused = await fetch(idp.tokenEndpoint(TENANT), {
				method: 'POST',
				headers: { 'content-type': 'application/x-www-form-urlencoded' },
				body: new URLSearchParams({ grant_type: 'refresh_token', client_id: DELEGATED_APP, client_secret: DELEGATED_SECRET, refresh_token: connected.refresh_token }),
			});
			assert.equal(reused.status, 400, 'the original refresh token is spent');
		});
		await check('Read Mailbox reads over IMAP with a password and over IMAP XOAUTH2 (app-only) inside real n8n', async () => {
			const attachmentBytes = randomBytes(50_000);
			const nodemailer = require('nodemailer');
			const build = async (to, subject) =>
				(await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({
					from: 'sender@example.org',
					to,
					subject,
					text: 'body',
					attachments: [{ filename: 'data.bin', content: attachmentBytes }],
				})).message;
			await dovecot.deliver('reader@example.com', await build('reader@example.com', 'For the password reader'));
			await dovecot.deliver('robot@contoso.example', await build('robot@contoso.example', 'For the app-only reader'));
			const imported = await importCredentials([
				{ id: 'MamImapE2e000001', name: 'Dovecot (e2e)', type: 'modernAuthImapApi', data: { host: dovecot.host, port: dovecot.tlsPort, security: 'tls', user: 'reader@example.com', password: PASSWORD } },
				{
					id: 'MamImapAppE2e001',
					name: 'Contoso IMAP app-only (e2e)',
					type: 'modernAuthMicrosoftAppOnlyApi',
					data: { tenantId: TENANT, clientId: IMAP_APP, authType: 'secret', clientSecret: APP_SECRET, cloud: 'custom', authorityHost: idp.authorityHost, exchangeHost: 'https://outlook.office365.com', imapServer: `${dovecot.host}:${dovecot.tlsPort}`, mailbox: 'robot@contoso.example' },
				},
			]);
			assert.equal(imported.code, 0);
			const cases = [
				{ id: 'MamReadE2e000001', authentication: 'imap', credentials: { modernAuthImapApi: { id: 'MamImapE2e000001', name: 'Dovecot (e2e)' } }, subject: 'For the password reader' },
				{ id: 'MamReadE2e000002', authentication: 'microsoftAppOnly', credentials: { modernAuthMicrosoftAppOnlyApi: { id: 'MamImapAppE2e001', name: 'Contoso IMAP app-only (e2e)' } }, subject: 'For the app-only reader' },
			];
			for (const c of cases) {
				assert.equal((await importWorkflow(readUnreadWorkflow(c.id, c.authentication, c.credentials))).code, 0);
				const executed = await runtime.runN8n(bin, ['execute', `--id=${c.id}`, '--rawOutput'], env);
				assert.equal(executed.code, 0, executed.stdout.slice(-3000) + executed.stderr.slice(-2000));
				assert.ok(!executed.stdout.includes(PASSWORD) && !executed.stdout.includes(APP_SECRET));
				const output = runtime.parseExecuteOutput(executed.stdout).data.resultData.runData['Read Mailbox'][0].data.main[0];
				assert.equal(output.length, 1, `${c.authentication}: one unread message`);
				assert.equal(output[0].json.subject, c.subject);
				assert.equal(output[0].json.attachments[0].size, attachmentBytes.length);
				assert.equal(output[0].binary.attachment_0.fileName, 'data.bin');
			}
			for (const user of ['reader@example.com', 'robot@contoso.example']) {
				const listed = await dovecot.list(user, 'INBOX');
				assert.ok(listed.every((m) => m.flags.includes('\\Seen')), `${user}: marked read on the server`);
			}
			assert.equal(idp.counts({ grantType: 'client_credentials', clientId: IMAP_APP }), 1, 'one IMAP token request');
		});
		await check('delegated credential reads over IMAP XOAUTH2 inside real n8n: refreshed through n8n, message out with its attachment, marked read, no token in the output', async () => {
			// A second person with a second app registration, so the counts below are this check's own.
			const IMAP_DELEGATED_APP = '9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b';
			const IMAP_DELEGATED_SECRET = `delegated-imap-${randomBytes(8).toString('hex')}`;
			const USER = 'bea@contoso.example';
			const USER_PASSWORD = `Bea-${randomBytes(6).toString('hex')}`;
			idp.addApp({ tenant: TENANT, clientId: IMAP_DELEGATED_APP, secrets: [{ value: IMAP_DELEGATED_SECRET }] });
			idp.addUser({ tenant: TENANT, username: USER, password: USER_PASSWORD });
			idp.setTokenLifetime(120); // the imported access token is about to expire: n8n must refresh it
			const connected = await signInWithPassword({ clientId: IMAP_DELEGATED_APP, clientSecret: IMAP_DELEGATED_SECRET, username: USER, password: USER_PASSWORD });
			// Dovecot asks the platform's introspection about this mailbox (?mailbox=), which
			// accepts a delegated token only for the signed-in user's own mailbox.
			await dovecot.addOAuthMailbox(USER);
			const attachmentBytes = randomBytes(70_000);
			const subject = `For Bea over delegated XOAUTH2 ${randomBytes(4).toString('hex')}`;
			const nodemailer = require('nodemailer');
			const build = async (subjectLine, attachments = []) =>
				(await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({ from: 'sender@example.org', to: USER, subject: subjectLine, text: 'body', attachments })).message;
			// One message already read (the unread filter must skip it) and the one to read.
			await dovecot.deliver(USER, await build('Already read, must not come out'), { flags: ['\\Seen'] });
			const { uid } = await dovecot.deliver(USER, await build(subject, [{ filename: 'ledger.bin', content: attachmentBytes }]));

			const imported = await importCredentials([
				{
					id: 'MamDelegImapE2e1',
					name: 'Bea (delegated IMAP e2e)',
					type: 'modernAuthMicrosoftDelegatedOAuth2Api',
					data: {
						clientId: IMAP_DELEGATED_APP,
						clientSecret: IMAP_DELEGATED_SECRET,
						cloud: 'custom',
						authorityHost: idp.authorityHost,
						tenant: TENANT,
						useFor: 'imapSmtp',
						imapServer: `${dovecot.host}:${dovecot.tlsPort}`,
						oauthTokenData: { access_token: connected.access_token, refresh_token: connected.refresh_token, token_type: 'Bearer' },
					},
				},
			]);
			assert.equal(imported.code, 0);
			const workflow = readUnreadWorkflow('MamReadE2e000003', 'microsoftDelegated', {
				modernAuthMicrosoftDelegatedOAuth2Api: { id: 'MamDelegImapE2e1', name: 'Bea (delegated IMAP e2e)' },
			});
			assert.equal((await importWorkflow(workflow)).code, 0);
			const executed = await runtime.runN8n(bin, ['execute', '--id=MamReadE2e000003', '--rawOutput'], env);
			assert.equal(executed.code, 0, executed.stdout.slice(-3000) + executed.stderr.slice(-2000));

			const output = runtime.parseExecuteOutput(executed.stdout).data.resultData.runData['Read Mailbox'][0].data.main[0];
			assert.equal(output.length, 1, 'one unread message');
			assert.equal(output[0].json.subject, subject);
			assert.equal(output[0].json.uid, uid);
			assert.equal(output[0].json.attachments.length, 1);
			assert.equal(output[0].json.attachments[0].size, attachmentBytes.length);
			const binary = output[0].binary.attachment_0;
			assert.equal(binary.fileName, 'ledger.bin');
			assert.equal(sha256(Buffer.from(binary.data, 'base64')), sha256(attachmentBytes), 'attachment bytes as delivered');
			const listed = await dovecot.list(USER, 'INBOX');
			assert.equal(listed.length, 2);
			assert.ok(listed.find((m) => m.uid === uid).flags.includes('\\Seen'), 'the message read is marked read on the server');

			// n8n refreshed the about-to-expire token once, through its own OAuth2 machinery.
			assert.equal(idp.counts({ grantType: 'refresh_token', clientId: IMAP_DELEGATED_APP }), 1, 'one refresh');
			assert.equal(idp.counts({ grantType: 'refresh_token', clientId: IMAP_DELEGATED_APP, status: 200 }), 1, 'the refresh succeeded');
			assert.equal(idp.counts({ grantType: 'password', clientId: IMAP_DELEGATED_APP }), 1, 'only the test signed in');
			assert.equal(idp.counts({ grantType: 'client_credentials', clientId: IMAP_DELEGATED_APP }), 0, 'no app-only token');
			// What n8n stored after the refresh: the rotated tokens, for the Exchange IMAP scope.
			const exportFile = path.join(work, 'delegated-imap-export.json');
			const exported = await runtime.runN8n(bin, ['export:credentials', '--id=MamDelegImapE2e1', '--decrypted', `--output=${exportFile}`], env);
			assert.equal(exported.code, 0, exported.stdout + exported.stderr);
			const stored = JSON.parse(fs.readFileSync(exportFile, 'utf8'))[0].data.oauthTokenData;
			fs.rmSync(exportFile);
			assert.ok(stored.refresh_token && stored.refresh_token !== connected.refresh_token, 'n8n stored the rotated refresh token');
			const claims = JSON.parse(Buffer.from(stored.access_token.split('.')[1], 'base64url').toString('utf8'));
			assert.equal(claims.upn, USER);
			assert.match(claims.scp, /\bIMAP\.AccessAsUser\.All\b/);
			assert.match(claims.aud, /^https:\/\/outlook\.office(365)?\.com$/);
			for (const [what, secret] of Object.entries({
				'client secret': IMAP_DELEGATED_SECRET,
				'imported refresh token': connected.refresh_token,
				'imported access token': connected.access_token,
				'rotated refresh token': stored.refresh_token,
				'refreshed access token': stored.access_token,
			})) {
				assert.ok(!executed.stdout.includes(secret) && !executed.stderr.includes(secret), `${what} not in n8n's output`);
			}
		});
		await check('Read Mailbox Trigger active in real n8n (n8n start): activation sets a baseline, each new mail is emitted once across restarts from the state n8n keeps in its database, and the schedule fires', async () => {
			peer.reset();
			const WATCHED = 'watch@example.com';
			const WORKFLOW_ID = 'MamTriggerE2e001';
			const TRIGGER = 'Read Mailbox (Modern Auth) Trigger';
			const SEND = 'Send Email (Modern Auth)';
			const dbPath = path.join(userFolder, '.n8n', 'database.sqlite');
			const tag = randomBytes(4).toString('hex');
			const nodemailer = require('nodemailer');
			const uidOf = new Map(); // subject -> UID Dovecot gave it
			const deliverAll = async (subjects) => {
				for (const subject of subjects) {
					const raw = (await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({ from: 'sender@example.org', to: WATCHED, subject, text: `body of ${subject}` })).message;
					uidOf.set(subject, (await dovecot.deliver(WATCHED, raw)).uid);
				}
			};
			const batch = (name, n) => Array.from({ length: n }, (_, i) => `${name} ${i + 1} ${tag}`);
			const preExisting = batch('Already there', 2);
			const afterFirstStart = batch('New while stopped A', 3);
			const afterSecondStart = batch('New while stopped B', 2);
			const whileRunning = batch('New while running', 1);

			await dovecot.addUser(WATCHED, PASSWORD);
			await deliverAll(preExisting);
			const imported = await importCredentials([{ id: 'MamImapWatchE2e1', name: 'Dovecot watch (e2e)', type: 'modernAuthImapApi', data: { host: dovecot.host, port: dovecot.tlsPort, security: 'tls', user: WATCHED, password: PASSWORD } }]);
			assert.equal(imported.code, 0);
			// Every message the trigger emits becomes one mail to the SMTP peer, which is what
			// this check counts; the body carries the UID n8n saw.
			const workflow = {
				id: WORKFLOW_ID,
				name: 'Mailbox trigger e2e',
				active: true,
				settings: { executionOrder: 'v1' },
				connections: { [TRIGGER]: { main: [[{ node: SEND, type: 'main', index: 0 }]] } },
				nodes: [
					{
						id: 't1',
						name: TRIGGER,
						type: `${runtime.PACKAGE_NAME}.modernAuthReadMailboxTrigger`,
						typeVersion: 1,
						position: [0, 0],
						parameters: { pollTimes: { item: [{ mode: 'everyMinute' }] }, authentication: 'imap', folder: 'INBOX', includeExistingUnread: false, options: {} },
						credentials: { modernAuthImapApi: { id: 'MamImapWatchE2e1', name: 'Dovecot watch (e2e)' } },
					},
					{
						id: 't2',
						name: SEND,
						type: `${runtime.PACKAGE_NAME}.modernAuthSendEmail`,
						typeVersion: 1,
						position: [220, 0],
						parameters: { authentication: 'smtp', toEmail: 'inbox-copy@example.org', subject: '={{ $json.subject }}', emailFormat: 'text', text: '=uid {{ $json.uid }}', options: {} },
						credentials: { modernAuthSmtpApi: { id: credentialId, name: CREDENTIAL_NAME } },
					},
				],
			};
			assert.equal((await importWorkflow(workflow)).code, 0);
			// n8n 1.123 imports every workflow inactive ("--activeState=fromJson" is for queue mode
			// only); update:workflow points activeVersionId at the imported version, so the next
			// `n8n start` activates it.
			const activated = await runtime.runN8n(bin, ['update:workflow', `--id=${WORKFLOW_ID}`, '--active=true'], env);
			assert.equal(activated.code, 0, activated.stdout + activated.stderr);
			assert.match(activated.stdout + activated.stderr, new RegExp(`Activating workflow with ID: ${WORKFLOW_ID}`));

			// What this server's polls did, in order: 'poll' (a poll started), 'emit' (it emitted).
			const pollEvents = (server) =>
				[...server.readLog().matchAll(/(Polling trigger initiated|Received event to trigger execution) for workflow "Mailbox trigger e2e"/g)].map((m) => (m[1].startsWith('Polling') ? 'poll' : 'emit'));
			const folderState = async () => (await readStaticData(dbPath, WORKFLOW_ID))?.[`node:${TRIGGER}`]?.folders?.INBOX;
			const received = async () => Promise.all(peer.received.map(async (r) => ({ envelope: r.envelope, mail: await simpleParser(r.raw) })));
			const uidValidity = await dovecot.uidValidity(WATCHED);
			const stops = [];
			/** One `n8n start` ... SIGTERM cycle; returns what fn returns. */
			const withServer = async (fn) => {
				const port = await freePort();
				// debug: n8n logs every poll it runs and every event a poll emits, in order
				const server = await startServer(bin, { ...env, N8N_PORT: String(port), N8N_LOG_LEVEL: 'debug' }, port);
				try {
					return await fn(server);
				} finally {
					stops.push(await stopServer(server));
				}
			};

			// Start 1: the activation poll only records where the folder is.
			await withServer(async (server) => {
				await waitFor(() => /Activated workflow "Mailbox trigger e2e"/.test(server.readLog()), 60_000, () => `activation not logged:\n${server.readLog().slice(-3000)}`);
				await waitFor(async () => (await folderState()) !== undefined, 10_000, 'no trigger state in the database');
				assert.deepEqual(await folderState(), { uidValidity, lastUid: uidOf.get(preExisting[1]) }, 'baseline = the newest message at activation');
				await new Promise((resolve) => setTimeout(resolve, 2000)); // room for a wrongly started execution to show
				assert.equal(peer.received.length, 0, 'messages there before activation are not emitted');
				assert.equal((await executionRows(dbPath, WORKFLOW_ID)).length, 0, 'no execution started');
				assert.equal(pollEvents(server)[0], 'poll', 'the activation poll ran');
				assert.ok(!pollEvents(server).includes('emit'), 'and emitted nothing');
			});
			// Delivered while n8n is down: only the state n8n saved in its database can tell
			// the next activation poll that these are new.
			await deliverAll(afterFirstStart);
			await withServer(async (server) => {
				await waitFor(() => peer.received.length >= 3, 60_000, () => `start 2: ${peer.received.length} of 3 mails`);
				await waitFor(async () => (await folderState())?.lastUid === uidOf.get(afterFirstStart[2]), 10_000, 'start 2: state not advanced');
				await new Promise((resolve) => setTimeout(resolve, 1000));
				assert.deepEqual((await received()).map((r) => r.mail.subject).sort(), [...afterFirstStart].sort(), 'start 2 emitted the 3 new ones');
				const events = pollEvents(server);
				assert.deepEqual(events.slice(0, 2), ['poll', 'emit'], `the activation poll emitted them: ${events}`);
				assert.equal(events.filter((e) => e === 'emit').length, 1, 'in one event');
			});
			await deliverAll(afterSecondStart);
			let scheduledAfterMs;
			let scheduledEvents;
			await withServer(async (server) => {
				await waitFor(() => peer.received.length >= 5, 60_000, () => `start 3: ${peer.received.length} of 5 mails`);
				await waitFor(async () => (await folderState())?.lastUid === uidOf.get(afterSecondStart[1]), 10_000, 'start 3: state not advanced');
				await new Promise((resolve) => setTimeout(resolve, 1000));
				assert.deepEqual((await received()).slice(3).map((r) => r.mail.subject).sort(), [...afterSecondStart].sort(), 'start 3 emitted the 2 new ones');
				assert.deepEqual(pollEvents(server).slice(0, 2), ['poll', 'emit'], `the activation poll emitted them: ${pollEvents(server)}`);
				// The everyMinute schedule (a random second of each minute) must pick up mail that
				// arrives while n8n runs: at most ~60 s.
				const delivered = Date.now();
				await deliverAll(whileRunning);
				await waitFor(() => peer.received.length >= 6, 75_000, () => `the scheduled poll did not emit within 75 s (${peer.received.length} mails)`);
				scheduledAfterMs = Date.now() - delivered;
				await waitFor(async () => (await folderState())?.lastUid === uidOf.get(whileRunning[0]), 10_000, 'scheduled poll: state not advanced');
				scheduledEvents = pollEvents(server);
				assert.equal(scheduledEvents.filter((e) => e === 'emit').length, 2, `activation + one scheduled emit: ${scheduledEvents}`);
				assert.ok(scheduledEvents.lastIndexOf('emit') > 2 && scheduledEvents[scheduledEvents.lastIndexOf('emit') - 1] === 'poll', `a later poll emitted it: ${scheduledEvents}`);
			});

			const all = await received();
			const expected = [...afterFirstStart, ...afterSecondStart, ...whileRunning];
			assert.equal(all.length, expected.length, `exactly ${expected.length} mails`);
			assert.deepEqual(all.map((r) => r.mail.subject).sort(), [...expected].sort(), 'each new message exactly once');
			for (const subject of preExisting) assert.ok(!all.some((r) => r.mail.subject === subject), `${subject} not emitted`);
			for (const { envelope, mail } of all) {
				assert.deepEqual(envelope, { from: 'robot@example.com', to: ['inbox-copy@example.org'] });
				assert.equal(mail.text.trim(), `uid ${uidOf.get(mail.subject)}`, 'the item carried the UID Dovecot gave the message');
			}
			const executions = await executionRows(dbPath, WORKFLOW_ID);
			assert.equal(executions.length, 3, 'one execution per emitting poll');
			assert.ok(executions.every((e) => e.status === 'success' && e.mode === 'trigger'), JSON.stringify(executions));
			// The trigger only reads: nothing was marked read on the server.
			assert.ok((await dovecot.list(WATCHED)).every((m) => !m.flags.includes('\\Seen')));
			assert.ok(stops.every((s) => s.graceful), `n8n stopped on SIGTERM each time: ${JSON.stringify(stops)}`);
			console.log(`    # trigger: 3 + 2 mails after restarts, 1 from the schedule after ${scheduledAfterMs} ms (polls/emits in start 3: ${scheduledEvents.join(' ')}); n8n stopped in ${stops.map((s) => s.ms).join(', ')} ms`);
		});
	} finally {
		await dovecot.stop();
		await idp.close();
		await peer.close();
	}
	console.log(`\n${counts.passed} passed, ${counts.failed} failed`);
	process.exit(counts.failed === 0 ? 0 : 1);
}

/** Manual trigger -> Read Mailbox: unread INBOX mail, marked read once it is output. */
function readUnreadWorkflow(id, authentication, credentials) {
	return {
		id,
		name: `Read Mailbox e2e ${id}`,
		active: false,
		settings: { executionOrder: 'v1' },
		connections: { Start: { main: [[{ node: 'Read Mailbox', type: 'main', index: 0 }]] } },
		nodes: [
			{ id: 'r1', name: 'Start', type: 'n8n-nodes-base.manualTrigger', typeVersion: 1, position: [0, 0], parameters: {} },
			{
				id: 'r2',
				name: 'Read Mailbox',
				type: `${runtime.PACKAGE_NAME}.modernAuthReadMailbox`,
				typeVersion: 1,
				position: [220, 0],
				parameters: { authentication, folder: 'INBOX', limit: 5, filters: { unreadOnly: true }, postAction: 'markRead' },
				credentials,
			},
		],
	};
}

/** Starts `n8n start` and resolves once its REST API answers. */
async function startServer(bin, env, port) {
	const { spawn } = require('node:child_process');
	const child = spawn(process.execPath, [bin, 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
	let log = '';
	child.stdout.on('data', (d) => (log += d));
	child.stderr.on('data', (d) => (log += d));
	const deadline = Date.now() + 90_000;
	while (Date.now() < deadline) {
		if (child.exitCode !== null) throw new Error(`n8n start exited ${child.exitCode}:\n${log.slice(-3000)}`);
		try {
			const response = await fetch(`http://127.0.0.1:${port}/rest/settings`);
			if (response.status === 200) {
				child.readLog = () => log;
				return child;
			}
		} catch {
			// not listening yet
		}
		await new Promise((resolve) => setTimeout(resolve, 500));
	}
	child.kill('SIGKILL');
	throw new Error(`n8n start did not answer within 90 s:\n${log.slice(-3000)}`);
}

/** Runs a read-only query with n8n's own sqlite3 driver (also while n8n writes to the file). */
function queryDb(dbPath, sql, params = []) {
	const { dir } = runtime.ensureN8n();
	const sqlite3 = require(require.resolve('sqlite3', { paths: [path.join(dir, 'node_modules', 'n8n')] }));
	return new Promise((resolve, reject) => {
		const db = new sqlite3.Database(dbPath, sqlite3.OPEN_READONLY, (error) => error && reject(error));
		db.configure('busyTimeout', 5000);
		db.all(sql, params, (error, rows) => {
			db.close();
			if (error) reject(error);
			else resolve(rows);
		});
	});
}

/** Reads the stored credential row. */
async function readCredentialRow(dbPath, id) {
	const [row] = await queryDb(dbPath, 'SELECT type, data FROM credentials_entity WHERE id = ?', [id]);
	if (!row) throw new Error(`credential ${id} not found`);
	return row;
}

/** The workflow's static data as n8n saved it (null before the first save). */
async function readStaticData(dbPath, workflowId) {
	const [row] = await queryDb(dbPath, 'SELECT staticData FROM workflow_entity WHERE id = ?', [workflowId]);
	if (!row) throw new Error(`workflow ${workflowId} not found`);
	return row.staticData ? JSON.parse(row.staticData) : null;
}

function executionRows(dbPath, workflowId) {
	return queryDb(dbPath, 'SELECT id, mode, status FROM execution_entity WHERE workflowId = ? ORDER BY id', [workflowId]);
}

/** Stops `n8n start` with SIGTERM (its graceful shutdown), SIGKILL after timeoutMs. */
async function stopServer(child, timeoutMs = 30_000) {
	const started = Date.now();
	if (child.exitCode !== null || child.signalCode !== null) return { graceful: false, code: child.exitCode, signal: child.signalCode, ms: 0 };
	const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
	child.kill('SIGTERM');
	let timer;
	const result = await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs, null)))]);
	clearTimeout(timer);
	if (result) return { graceful: true, ...result, ms: Date.now() - started };
	child.kill('SIGKILL');
	return { graceful: false, ...(await exited), ms: Date.now() - started };
}

function freePort() {
	const net = require('node:net');
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.once('error', reject);
		server.listen(0, '127.0.0.1', () => {
			const { port } = server.address();
			server.close(() => resolve(port));
		});
	});
}

/** Polls condition (sync or async) every 250 ms; throws message (or message()) after timeoutMs. */
async function waitFor(condition, timeoutMs, message) {
	const deadline = Date.now() + timeoutMs;
	while (!(await condition())) {
		if (Date.now() > deadline) throw new Error(typeof message === 'function' ? message() : message);
		await new Promise((resolve) => setTimeout(resolve, 250));
	}
}

// The test itself fetches tokens from the fake platform over HTTPS, and Node's fetch trusts
// extra CAs only from process start: make the PKI, then run again with it trusted.
if (!process.env.MAM_E2E_WORK) {
	const { spawnSync } = require('node:child_process');
	const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-e2e-'));
	fs.mkdirSync(path.join(work, 'pki'));
	createTestPki(path.join(work, 'pki'));
	const child = spawnSync(process.execPath, [__filename], {
		stdio: 'inherit',
		env: { ...process.env, MAM_E2E_WORK: work, NODE_EXTRA_CA_CERTS: path.join(work, 'pki', 'ca.pem') },
	});
	if (!process.env.MAM_KEEP_E2E) fs.rmSync(work, { recursive: true, force: true });
	process.exit(child.status ?? 1);
} else {
	main().catch((error) => {
		console.error(error);
		process.exit(1);
	});
}
