'use strict';
// Exchange Web Services inside real n8n, over the fake EWS server and a fake identity platform
// on HTTPS (n8n trusts their CA through NODE_EXTRA_CA_CERTS, the NTLM credential also through
// its own CA field): two credentials of type modernAuthEwsApi (NTLMv2 user, OAuth app-only with
// full_access_as_app), Send Email then Read Mailbox through each, and the EWS trigger active in
// `n8n start` across a restart and an invalidated sync state. Called by run-real-n8n.js once
// per n8n version with that suite's helpers.
const assert = require('node:assert/strict');
const { createHash, randomBytes } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { simpleParser } = require('mailparser');

const runtime = require('../../scripts/n8n-runtime');
const { startFakeIdentity } = require('../peers/fake-identity');
const { startFakeEws } = require('../peers/fake-ews');

const sha256 = (buffer) => createHash('sha256').update(buffer).digest('hex');
const TENANT = '6f5e4d3c-2b1a-4f0e-9d8c-7b6a5f4e3d2c';
const APP = '1e2d3c4b-5a69-4788-96a5-b4c3d2e1f0a9';
// The token audience the fake EWS requires: the credential's Exchange Host (Custom cloud).
const EXCHANGE_AUDIENCE = 'https://outlook.office365.com';
const NTLM_USER = { username: 'ntlm.robot', domain: 'CONTOSO', mailbox: 'ntlm.robot@contoso.example' };
const APP_MAILBOX = 'ews.app@contoso.example';
const WATCHED = 'ews.watch@contoso.example';
const NTLM_CREDENTIAL = { id: 'MamEwsNtlmE2e001', name: 'Exchange NTLM (e2e)' };
const APP_CREDENTIAL = { id: 'MamEwsAppE2e0001', name: 'Exchange app-only (e2e)' };
const SEND_NODE = 'Send Email (EWS)';
const READ_NODE = 'Read Mailbox (EWS)';

/**
 * @param {object} s the suite: check, n8n, pki, work, userFolder, filesDir, canary(what),
 *   onToken(token), importCredentials, importWorkflow, runN8n, env, activateOffline,
 *   withServerCycle, db, peer (SMTP peer the trigger workflow mails to), smtpCredential {id, name},
 *   and helpers { waitFor, binaryBytes, readStaticData, executionRows, pollLog, activated }.
 */
async function runEwsChecks(s) {
	const { check, helpers } = s;
	const idp = await startFakeIdentity({ pki: s.pki });
	const ews = await startFakeEws({ pki: s.pki, identity: idp, audience: EXCHANGE_AUDIENCE });
	const ntlmPassword = s.canary('ewsntlmpw');
	const appSecret = s.canary('ewsappsecret');
	const secrets = [ntlmPassword, appSecret];
	for (const address of [NTLM_USER.mailbox, APP_MAILBOX, WATCHED]) ews.addMailbox({ address });
	ews.addUser({ ...NTLM_USER, password: ntlmPassword });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	idp.addApp({ tenant: TENANT, clientId: APP, secrets: [{ value: appSecret }], appRoles: ['full_access_as_app'] });
	for (const mailbox of [APP_MAILBOX, WATCHED]) idp.grantMailbox({ tenant: TENANT, clientId: APP, mailbox });
	ews.grantApp({ clientId: APP, mailboxes: [APP_MAILBOX, WATCHED] });
	console.log(`    # ews: fake EWS ${ews.url}, its own fake identity ${idp.authorityHost}`);
	const tokenRequests = () => idp.counts({ grantType: 'client_credentials', clientId: APP, status: 200 });
	const execute = async (workflowId) => {
		// Filesystem binary mode: the node streams attachments from n8n's store, and 1.x would
		// otherwise print them as base64 in the run output.
		const executed = await s.runN8n(['execute', `--id=${workflowId}`, '--rawOutput'], { ...s.env, N8N_DEFAULT_BINARY_DATA_MODE: 'filesystem' });
		const out = executed.stdout + executed.stderr;
		for (const secret of secrets) assert.ok(!out.includes(secret), 'no password or client secret in n8n output');
		assert.equal(executed.code, 0, failureOf(executed));
		return runtime.parseExecuteOutput(executed.stdout);
	};
	try {
		await check('EWS credentials (NTLM user; OAuth app-only, Custom cloud with the fake identity) import into the encrypted store', async () => {
			const imported = await s.importCredentials([
				{
					...NTLM_CREDENTIAL,
					type: 'modernAuthEwsApi',
					data: {
						endpoint: 'url',
						url: ews.url,
						ewsAuth: 'ntlm',
						username: NTLM_USER.username,
						password: ntlmPassword,
						domain: NTLM_USER.domain,
						mailbox: '',
						serverVersion: 'Exchange2013_SP1',
						caCertificate: s.pki.ca,
						allowUnauthorizedCerts: false,
					},
				},
				{
					...APP_CREDENTIAL,
					type: 'modernAuthEwsApi',
					data: {
						endpoint: 'url',
						url: ews.url,
						ewsAuth: 'oauthAppOnly',
						tenantId: TENANT,
						clientId: APP,
						authType: 'secret',
						clientSecret: appSecret,
						cloud: 'custom',
						authorityHost: idp.authorityHost,
						exchangeHost: EXCHANGE_AUDIENCE,
						mailbox: APP_MAILBOX,
						serverVersion: 'Exchange2013_SP1',
						allowUnauthorizedCerts: false,
					},
				},
			]);
			assert.equal(imported.code, 0, imported.stdout + imported.stderr);
			for (const { id } of [NTLM_CREDENTIAL, APP_CREDENTIAL]) {
				const [row] = await s.db('SELECT type, data FROM credentials_entity WHERE id = ?', [id]);
				assert.equal(row?.type, 'modernAuthEwsApi');
				assert.match(row.data, /^U2FsdGVkX1/, 'stored encrypted');
				for (const secret of secrets) assert.ok(!row.data.includes(secret));
			}
		});

		for (const via of [
			{ label: 'NTLM', scheme: 'NTLM', credential: NTLM_CREDENTIAL, mailbox: NTLM_USER.mailbox, workflowId: 'MamEwsNtlmWfE2e1' },
			{ label: 'OAuth app-only', scheme: 'Bearer', credential: APP_CREDENTIAL, mailbox: APP_MAILBOX, workflowId: 'MamEwsAppWfE2e01' },
		]) {
			await check(`Send Email through EWS (${via.label}) then Read Mailbox through EWS (${via.label}): the fake holds the MIME with subject and attachment bytes; the read item carries the attachment into binary data, marked read on the server`, async () => {
				const tag = randomBytes(4).toString('hex');
				const subject = `EWS ${via.label} from real n8n ${tag} — Grüße & <ok>`;
				const attachment = randomBytes(180_000);
				const file = path.join(s.filesDir, `ews-${tag}.bin`);
				fs.writeFileSync(file, attachment);
				// A stranger's message already read: the unread filter must leave it out.
				ews.deliver(via.mailbox, strangerMime(`Already read ${tag}`), { isRead: true });
				const sentBefore = ews.sent.length;
				const requestsBefore = ews.requests.length;
				const tokensBefore = tokenRequests();
				const ntlmHandshakesBefore = ews.counts().ntlmHandshakes;
				assert.equal((await s.importWorkflow(sendThenReadWorkflow(via.workflowId, via.credential, via.mailbox, file, subject, `Sent through EWS ${tag}`))).code, 0);
				const run = await execute(via.workflowId);
				fs.rmSync(file);

				// What the fake EWS holds: one CreateItem that sent the MIME, from this mailbox.
				const sent = ews.sent.slice(sentBefore);
				assert.equal(sent.length, 1, 'sent exactly once');
				assert.equal(sent[0].mailbox.toLowerCase(), via.mailbox);
				const mail = await simpleParser(sent[0].mime);
				assert.equal(mail.subject, subject);
				assert.equal(mail.from.value[0].address, via.mailbox);
				assert.deepEqual(mail.to.value.map((a) => a.address), [via.mailbox]);
				assert.equal(mail.text.trim(), `Sent through EWS ${tag}`);
				assert.equal(mail.attachments.length, 1);
				assert.equal(mail.attachments[0].filename, 'ledger.bin');
				assert.equal(sha256(mail.attachments[0].content), sha256(attachment), 'attachment bytes as n8n read them from disk');
				const requests = ews.requests.slice(requestsBefore);
				assert.ok(requests.length > 0 && requests.every((r) => r.scheme === via.scheme), `every request signed in with ${via.scheme}: ${[...new Set(requests.map((r) => r.scheme))]}`);
				if (via.scheme === 'Bearer') {
					assert.ok(requests.every((r) => r.impersonated?.toLowerCase() === APP_MAILBOX && r.anchor?.toLowerCase() === APP_MAILBOX), 'ExchangeImpersonation and X-AnchorMailbox on each request');
					assert.equal(tokenRequests() - tokensBefore, 1, 'one token request for the execution');
				} else {
					// The handshake's first leg (401 with the challenge) names nobody; every answered request is the user's.
					const answered = requests.filter((r) => r.status === 200);
					assert.ok(answered.length > 0 && answered.every((r) => r.user?.toLowerCase() === NTLM_USER.username), `signed in as the NTLM user: ${[...new Set(answered.map((r) => r.user))]}`);
					assert.ok(ews.counts().ntlmHandshakes > ntlmHandshakesBefore, 'an NTLM handshake (verified by impacket) took place');
				}
				const sendOutput = run.data.resultData.runData[SEND_NODE][0].data.main[0];
				assert.equal(sendOutput.length, 1);
				assert.deepEqual(sendOutput[0].pairedItem, { item: 0 });

				// Read Mailbox: the unread message in the Inbox (the copy EWS delivered locally).
				const output = run.data.resultData.runData[READ_NODE][0].data.main[0];
				const ours = output.filter((item) => String(item.json.subject).includes(tag));
				assert.deepEqual(ours.map((item) => item.json.subject), [subject], 'only the unread one');
				const [item] = ours;
				assert.deepEqual(item.json.attachments.map((a) => [a.filename, a.size]), [['ledger.bin', attachment.length]]);
				const binary = item.binary.attachment_0;
				assert.ok(binary, 'binary attachment_0');
				assert.equal(binary.fileName, 'ledger.bin');
				const held = ews.items(via.mailbox, 'inbox').find((m) => m.id === item.json.id);
				assert.ok(held, `the item id is the EWS ItemId the fake holds (${item.json.id})`);
				const heldMail = await simpleParser(held.mime);
				assert.equal(sha256(helpers.binaryBytes(s.userFolder, binary)), sha256(heldMail.attachments[0].content), 'binary bytes as the fake holds them');
				assert.equal(sha256(helpers.binaryBytes(s.userFolder, binary)), sha256(attachment));
				assert.equal(held.isRead, true, 'marked read through EWS');
				const json = JSON.stringify(run);
				for (const secret of secrets) assert.ok(!json.includes(secret), 'no secret in the run data');
			});
		}

		await check('EWS trigger active in real n8n (n8n start, app-only impersonating the watched mailbox): activation syncs to the present, mail delivered while running and while stopped is emitted once each, an invalidated sync state re-syncs without loss or flood', async () => {
			s.peer.reset();
			const WORKFLOW_ID = 'MamEwsTrigE2e001';
			const NAME = 'EWS trigger e2e';
			const TRIGGER = 'EWS Mailbox Trigger';
			const tag = randomBytes(4).toString('hex');
			const batch = (name, n) => Array.from({ length: n }, (_, i) => `${name} ${i + 1} ${tag}`);
			const preExisting = batch('EWS already there', 2);
			const whileRunning = batch('EWS new while running', 2);
			const whileStopped = batch('EWS new while stopped', 3);
			const afterInvalidation = batch('EWS new after invalid sync state', 1);
			const ids = new Map(); // subject -> EWS ItemId
			const deliver = (subjects) => {
				for (const subject of subjects) ids.set(subject, ews.deliver(WATCHED, strangerMime(subject)));
			};
			deliver(preExisting);
			// A poll every 15 s (n8n refuses sub-minute cron fields): four fixed seconds a minute.
			const pollTimes = { item: [0, 15, 30, 45].map((second) => ({ mode: 'custom', cronExpression: `${second} * * * * *` })) };
			const workflow = {
				id: WORKFLOW_ID,
				name: NAME,
				active: true,
				settings: { executionOrder: 'v1' },
				connections: { [TRIGGER]: { main: [[{ node: 'Copy', type: 'main', index: 0 }]] } },
				nodes: [
					{
						id: 'e1',
						name: TRIGGER,
						type: `${runtime.PACKAGE_NAME}.modernAuthReadMailboxTrigger`,
						typeVersion: 1,
						position: [0, 0],
						parameters: { pollTimes, authentication: 'ews', folder: 'inbox', includeExistingUnread: false, options: { mailbox: WATCHED } },
						credentials: { modernAuthEwsApi: APP_CREDENTIAL },
					},
					{
						id: 'e2',
						name: 'Copy',
						type: `${runtime.PACKAGE_NAME}.modernAuthSendEmail`,
						typeVersion: 1,
						position: [220, 0],
						parameters: { authentication: 'smtp', toEmail: 'ews-copy@example.org', subject: '={{ $json.subject }}', emailFormat: 'text', text: '=id {{ $json.id }}', options: {} },
						credentials: { modernAuthSmtpApi: s.smtpCredential },
					},
				],
			};
			assert.equal((await s.importWorkflow(workflow)).code, 0);
			await s.activateOffline(WORKFLOW_ID);
			const triggerState = async () => (await helpers.readStaticData(s.db, WORKFLOW_ID))?.[`node:${TRIGGER}`];
			const subjects = async () => Promise.all(s.peer.received.map(async (r) => (await simpleParser(r.raw)).subject));
			const stops = [];
			const timeline = [];
			const started = Date.now();
			const mark = (what) => timeline.push(`${what} ${((Date.now() - started) / 1000).toFixed(0)}s`);

			// Start 1: the activation syncs to the present (nothing emitted); mail then arrives.
			await s.withServerCycle(
				async (server) => {
					await helpers.waitFor(() => helpers.activated(server, NAME), 60_000, () => `activation not logged:\n${server.readLog().slice(-3000)}`);
					await helpers.waitFor(async () => (await triggerState()) !== undefined, 15_000, 'no trigger state in the database');
					mark('activated');
					const baseline = JSON.stringify(await triggerState());
					assert.equal(s.peer.received.length, 0, 'messages there before activation are not emitted');
					deliver(whileRunning);
					await helpers.waitFor(() => s.peer.received.length >= whileRunning.length, 45_000, () => `start 1: ${s.peer.received.length} of ${whileRunning.length} mails:\n${server.readLog().slice(-3000)}`);
					mark('emitted while running');
					// The emitting execution saves the moved cursor when it ends: stop only after that.
					let seen = {};
					await helpers.waitFor(
						async () => {
							seen = { state: await triggerState(), executions: await helpers.executionRows(s.db, WORKFLOW_ID) };
							return JSON.stringify(seen.state) !== baseline && seen.executions.some((e) => e.status === 'success');
						},
						20_000,
						() => `the emitting poll's moved cursor was not saved to the database (a restart would emit the same mail again): still ${JSON.stringify(seen.state)}; executions ${JSON.stringify(seen.executions)}`,
					);
				},
				{ stops },
			);
			// Delivered while n8n is down: only the sync state n8n saved can tell they are new.
			deliver(whileStopped);
			await s.withServerCycle(
				async (server) => {
					const total = whileRunning.length + whileStopped.length;
					await helpers.waitFor(() => s.peer.received.length >= total, 60_000, () => `start 2: ${s.peer.received.length} of ${total} mails:\n${server.readLog().slice(-3000)}`);
					mark('emitted after restart');
					// Exchange forgets the sync state: the next poll syncs again from scratch and must
					// emit only what is newer than the cursor's watermark.
					ews.faults.invalidateSyncStates(WATCHED);
					deliver(afterInvalidation);
					await helpers.waitFor(() => s.peer.received.length >= total + afterInvalidation.length, 45_000, () => `after the invalid sync state: ${s.peer.received.length} mails:\n${server.readLog().slice(-3000)}`);
					mark('emitted after invalid sync state');
					// Room for a flood of old mail from the re-sync to show (it would come in the same poll).
					await new Promise((resolve) => setTimeout(resolve, 1500));
				},
				{ stops },
			);
			const all = await subjects();
			const expected = [...whileRunning, ...whileStopped, ...afterInvalidation];
			assert.equal(all.length, expected.length, `exactly ${expected.length} mails: ${all.join(' | ')}`);
			assert.deepEqual([...all].sort(), [...expected].sort(), 'each new message exactly once; nothing that was there before activation');
			for (const raw of s.peer.received) {
				const mail = await simpleParser(raw.raw);
				assert.equal(mail.text.trim(), `id ${ids.get(mail.subject)}`, 'the item carried the EWS ItemId');
			}
			assert.ok(ews.requests.some((r) => r.operation === 'SyncFolderItems' && r.responseCodes.includes('ErrorInvalidSyncStateData')), 'the invalid sync state was answered');
			const executions = await helpers.executionRows(s.db, WORKFLOW_ID);
			assert.ok(executions.length >= 3 && executions.every((e) => e.status === 'success' && e.mode === 'trigger'), JSON.stringify(executions));
			assert.ok(stops.every((stop) => stop.graceful), `n8n stopped on SIGTERM each time: ${JSON.stringify(stops)}`);
			console.log(`    # ews trigger: ${timeline.join(', ')}; ${executions.length} executions; n8n stopped in ${stops.map((st) => st.ms).join(', ')} ms`);
		});
	} finally {
		// Every token the platform issued is a canary for the suite's audit.
		for (const token of idp.issuedTokens) s.onToken(token);
		await ews.close();
		await idp.close();
	}
}

/** A plain message from outside, as Exchange would store it. */
function strangerMime(subject) {
	return Buffer.from(
		[
			'From: Outside Sender <sender@example.org>',
			'To: someone@contoso.example',
			`Subject: ${subject}`,
			`Message-ID: <${randomBytes(8).toString('hex')}@example.org>`,
			`Date: ${new Date().toUTCString()}`,
			'MIME-Version: 1.0',
			'Content-Type: text/plain; charset=utf-8',
			'',
			`body of ${subject}`,
			'',
		].join('\r\n'),
	);
}

/**
 * Manual trigger -> Read File -> Send Email through EWS (to the mailbox itself, with the file
 * attached) -> Read Mailbox through EWS: the unread Inbox mail with attachments, marked read.
 */
function sendThenReadWorkflow(id, credential, mailbox, filePath, subject, text) {
	const credentials = { modernAuthEwsApi: credential };
	return {
		id,
		name: `EWS send and read e2e ${id}`,
		active: false,
		settings: { executionOrder: 'v1' },
		connections: {
			Start: { main: [[{ node: 'Read File', type: 'main', index: 0 }]] },
			'Read File': { main: [[{ node: SEND_NODE, type: 'main', index: 0 }]] },
			[SEND_NODE]: { main: [[{ node: READ_NODE, type: 'main', index: 0 }]] },
		},
		nodes: [
			{ id: 'w1', name: 'Start', type: 'n8n-nodes-base.manualTrigger', typeVersion: 1, position: [0, 0], parameters: {} },
			{ id: 'w2', name: 'Read File', type: 'n8n-nodes-base.readWriteFile', typeVersion: 1, position: [200, 0], parameters: { operation: 'read', fileSelector: filePath, options: { fileName: 'ledger.bin' } } },
			{
				id: 'w3',
				name: SEND_NODE,
				type: `${runtime.PACKAGE_NAME}.modernAuthSendEmail`,
				typeVersion: 1,
				position: [400, 0],
				parameters: {
					authentication: 'ews',
					fromEmail: mailbox,
					toEmail: mailbox,
					subject,
					emailFormat: 'text',
					text,
					options: { attachments: 'data' },
				},
				credentials,
			},
			{
				id: 'w4',
				name: READ_NODE,
				type: `${runtime.PACKAGE_NAME}.modernAuthReadMailbox`,
				typeVersion: 1,
				position: [600, 0],
				parameters: { authentication: 'ews', folder: 'inbox', limit: 10, filters: { unreadOnly: true }, postAction: 'markRead', options: { downloadAttachments: true } },
				credentials,
			},
		],
	};
}

/** Why an `n8n execute` failed, short: the run's error if it printed one. */
function failureOf(executed) {
	try {
		const { error } = runtime.parseExecuteOutput(executed.stdout).data.resultData;
		if (error) return `${error.message}${error.description ? ` (${error.description})` : ''}${error.node ? ` in ${error.node.name ?? error.node}` : ''}`;
	} catch {
		// no JSON: fall through to the raw ends
	}
	const clip = (text) => (text.length > 3000 ? `...${text.slice(-3000)}` : text).replace(/[A-Za-z0-9+/=]{200,}/g, '<base64>');
	return `${clip(executed.stdout)}\n${clip(executed.stderr)}`;
}

module.exports = { runEwsChecks };
