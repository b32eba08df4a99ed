'use strict';
// Microsoft Graph inside real n8n, over the fake Graph and a fake identity platform on HTTPS
// (n8n trusts their CA through NODE_EXTRA_CA_CERTS): Send Email with a 20 MB attachment,
// Read Mailbox with attachments into binary data, and the Graph trigger active in `n8n start`.
// Called by run-real-n8n.js once per n8n version with that suite's helpers.
const assert = require('node:assert/strict');
const { createHash, randomBytes } = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { simpleParser } = require('mailparser');

const runtime = require('../../scripts/n8n-runtime');
const { sendWorkflow, SEND_NODE } = require('../../scripts/example-workflow');
const { startFakeIdentity } = require('../peers/fake-identity');
const { startFakeGraph } = require('../peers/fake-graph');

const sha256 = (buffer) => createHash('sha256').update(buffer).digest('hex');
const GRAPH_RESOURCE_APP = '00000003-0000-0000-c000-000000000000';
const TENANT = '8e7d6c5b-4a3f-4e2d-9c1b-0a9f8e7d6c5b';
const APP = '4d3c2b1a-0f9e-4d8c-b7a6-f5e4d3c2b1a0';
const MAILBOX = 'robot@contoso.example';
const CREDENTIAL = { id: 'MamGraphAppE2e01', name: 'Contoso Graph app-only (e2e)' };

/**
 * @param {object} s the suite: check, n8n, pki, work, userFolder, filesDir, canary(what),
 *   onToken(token), importCredentials, importWorkflow, runN8n, env, activateOffline,
 *   withServerCycle, db, peer (SMTP peer the trigger workflow mails to), smtpCredential {id, name},
 *   and helpers { waitFor, binaryBytes, readStaticData, executionRows, pollLog, activated }.
 */
async function runGraphChecks(s) {
	const { check, n8n, helpers } = s;
	// The Graph host is both the base URL and the token audience (the credential's Graph Host):
	// the identity platform must know the fake's URL as Graph's resource, so the port comes first.
	const port = await freePort();
	const graphUrl = `https://127.0.0.1:${port}`;
	const idp = await startFakeIdentity({ pki: s.pki, resources: { [graphUrl]: GRAPH_RESOURCE_APP } });
	const graph = await startFakeGraph({ pki: s.pki, identity: idp, port });
	graph.addMailbox({ address: MAILBOX, maxSendSize: 50 * 1024 * 1024 });
	const secret = s.canary('graphappsecret');
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	idp.addApp({ tenant: TENANT, clientId: APP, secrets: [{ value: secret }], appRoles: ['Mail.Send', 'Mail.ReadWrite'] });
	idp.grantMailbox({ tenant: TENANT, clientId: APP, mailbox: MAILBOX });
	console.log(`    # graph: fake Graph ${graphUrl}, its own fake identity ${idp.authorityHost}`);
	const tokenRequests = () => idp.counts({ grantType: 'client_credentials', clientId: APP, status: 200 });
	const execute = async (workflowId, extraEnv = {}) => {
		const executed = await s.runN8n(['execute', `--id=${workflowId}`, '--rawOutput'], { ...s.env, ...extraEnv });
		assert.equal(executed.code, 0, failureOf(executed));
		assert.ok(!executed.stdout.includes(secret) && !executed.stderr.includes(secret), 'client secret not in n8n output');
		return runtime.parseExecuteOutput(executed.stdout);
	};
	try {
		await check('Graph app-only credential imports (Custom cloud: fake identity + fake Graph on HTTPS)', async () => {
			const imported = await s.importCredentials([
				{
					...CREDENTIAL,
					type: 'modernAuthMicrosoftAppOnlyApi',
					data: { tenantId: TENANT, clientId: APP, authType: 'secret', clientSecret: secret, cloud: 'custom', authorityHost: idp.authorityHost, exchangeHost: 'https://outlook.office365.com', graphHost: graphUrl, mailbox: MAILBOX },
				},
			]);
			assert.equal(imported.code, 0, imported.stdout + imported.stderr);
		});

		await check('Send Email through Graph (Microsoft 365 App-Only (Graph)) with a 20 MB attachment: the fake Graph holds it byte for byte, uploaded through an upload session, one token request', async () => {
			const attachment = randomBytes(20 * 1024 * 1024);
			const file = path.join(s.filesDir, 'graph-20mb.bin');
			fs.writeFileSync(file, attachment);
			const subject = `Graph send from real n8n ${randomBytes(4).toString('hex')}`;
			const workflow = sendWorkflow({ id: 'MamGraphSendE2e1', credentialId: CREDENTIAL.id, credentialName: CREDENTIAL.name, filePath: file, subject });
			const send = workflow.nodes.find((n) => n.name === SEND_NODE);
			send.parameters.authentication = 'microsoftAppOnlyGraph';
			send.credentials = { modernAuthMicrosoftAppOnlyApi: CREDENTIAL };
			assert.equal((await s.importWorkflow(workflow)).code, 0);
			const tokensBefore = tokenRequests();
			// Binary data in n8n's filesystem store (2.x's default; 1.x would print the 20 MB as base64
			// in the run output, which n8n cuts short when it exits): the node streams it from there.
			const run = await execute('MamGraphSendE2e1', { N8N_DEFAULT_BINARY_DATA_MODE: 'filesystem' });
			fs.rmSync(file);
			const delivered = graph.deliveries.filter((m) => m.subject === subject);
			assert.equal(delivered.length, 1, 'delivered exactly once');
			const [message] = delivered;
			assert.deepEqual(message.to, ['ops@example.org']);
			assert.equal(message.attachments.length, 1);
			assert.equal(message.attachments[0].name, 'graph-20mb.bin');
			assert.equal(message.attachments[0].size, attachment.length);
			assert.equal(message.attachments[0].sha256, sha256(attachment), 'attachment bytes as n8n read them from disk');
			assert.ok(graph.requests.some((r) => r.method === 'POST' && /\/attachments\/createUploadSession$/.test(r.path)), 'an upload session was used (20 MB cannot go inline)');
			assert.equal(tokenRequests() - tokensBefore, 1, 'one Graph token request');
			const output = run.data.resultData.runData[SEND_NODE][0].data.main[0];
			assert.equal(output.length, 1);
			assert.deepEqual(output[0].pairedItem, { item: 0 });
		});

		await check('Read Mailbox through Graph reads unread messages with attachments into binary data (sha256 as the fake Graph holds them), marks them read on the server', async () => {
			const tag = randomBytes(4).toString('hex');
			const files = [randomBytes(300_000), randomBytes(1_200_000)];
			graph.addMessage(MAILBOX, { folder: 'inbox', subject: `Already read ${tag}`, isRead: true });
			const seeded = graph.addMessage(MAILBOX, {
				folder: 'inbox',
				subject: `With attachments ${tag}`,
				from: 'sender@example.org',
				body: { contentType: 'text', content: 'two files attached' },
				attachments: [
					{ name: 'ledger.bin', contentType: 'application/octet-stream', content: files[0] },
					{ name: 'scan.pdf', contentType: 'application/pdf', content: files[1] },
				],
			});
			const workflow = readWorkflow('MamGraphReadE2e1');
			assert.equal((await s.importWorkflow(workflow)).code, 0);
			// Filesystem binary mode here too: 1.x's default mode prints 1.5 MB of attachments as base64
			// in the run output, and n8n 1.x exits before a pipe takes all of it (seen cut at 1.7 MB).
			const run = await execute('MamGraphReadE2e1', { N8N_DEFAULT_BINARY_DATA_MODE: 'filesystem' });
			const output = run.data.resultData.runData['Read Mailbox'][0].data.main[0];
			const ours = output.filter((item) => String(item.json.subject).endsWith(tag));
			assert.deepEqual(ours.map((item) => item.json.subject), [`With attachments ${tag}`], 'only the unread one');
			const [item] = ours;
			assert.deepEqual(item.json.attachments.map((a) => [a.filename, a.size]), [['ledger.bin', files[0].length], ['scan.pdf', files[1].length]]);
			const held = seeded.attachments;
			for (const [index, content] of files.entries()) {
				const binary = item.binary[`attachment_${index}`];
				assert.ok(binary, `binary attachment_${index}`);
				assert.equal(binary.fileName, held[index].name);
				const bytes = helpers.binaryBytes(s.userFolder, binary);
				assert.equal(sha256(bytes), sha256(graph.attachmentBytes(held[index])), `attachment_${index} as the fake Graph holds it`);
				assert.equal(sha256(bytes), sha256(content));
			}
			assert.equal(graph.message(MAILBOX, seeded.immutableId).isRead, true, 'marked read through Graph');
		});

		await check('Graph trigger active in real n8n (n8n start): activation sets a delta baseline, mail delivered while stopped is emitted once after the restart, mail delivered while running once, a message only marked read is not emitted again', async () => {
			s.peer.reset();
			const WORKFLOW_ID = 'MamGraphTrigE2e1';
			const NAME = 'Graph trigger e2e';
			const TRIGGER = 'Graph Mailbox Trigger';
			const WATCHED = 'watch-graph@contoso.example';
			idp.grantMailbox({ tenant: TENANT, clientId: APP, mailbox: WATCHED });
			graph.addMailbox({ address: WATCHED });
			const tag = randomBytes(4).toString('hex');
			const batch = (name, n) => Array.from({ length: n }, (_, i) => `${name} ${i + 1} ${tag}`);
			const preExisting = batch('Graph already there', 2);
			const whileStopped = batch('Graph new while stopped', 3);
			const whileRunning = batch('Graph new while running', 1);
			const ids = new Map(); // subject -> Graph id
			const deliver = (subjects) => {
				for (const subject of subjects) ids.set(subject, graph.addMessage(WATCHED, { folder: 'inbox', subject, from: 'sender@example.org', body: { contentType: 'text', content: `body of ${subject}` } }).immutableId);
			};
			deliver(preExisting);
			// A poll every 15 s (n8n refuses sub-minute cron fields): four fixed seconds a minute.
			const pollTimes = { item: [0, 15, 30, 45].map((second) => ({ mode: 'custom', cronExpression: `${second} * * * * *` })) };
			const workflow = {
				id: WORKFLOW_ID,
				name: NAME,
				active: true,
				settings: { executionOrder: 'v1' },
				connections: { [TRIGGER]: { main: [[{ node: SEND_NODE, type: 'main', index: 0 }]] } },
				nodes: [
					{
						id: 'g1',
						name: TRIGGER,
						type: `${runtime.PACKAGE_NAME}.modernAuthReadMailboxTrigger`,
						typeVersion: 1,
						position: [0, 0],
						parameters: { pollTimes, authentication: 'microsoftAppOnlyGraph', folder: 'inbox', includeExistingUnread: false, options: { mailbox: WATCHED } },
						credentials: { modernAuthMicrosoftAppOnlyApi: CREDENTIAL },
					},
					{
						id: 'g2',
						name: SEND_NODE,
						type: `${runtime.PACKAGE_NAME}.modernAuthSendEmail`,
						typeVersion: 1,
						position: [220, 0],
						parameters: { authentication: 'smtp', toEmail: 'graph-copy@example.org', subject: '={{ $json.subject }}', emailFormat: 'text', text: '=id {{ $json.id }}', options: {} },
						credentials: { modernAuthSmtpApi: s.smtpCredential },
					},
				],
			};
			assert.equal((await s.importWorkflow(workflow)).code, 0);
			await s.activateOffline(WORKFLOW_ID);
			const triggerState = async () => (await helpers.readStaticData(s.db, WORKFLOW_ID))?.[`node:${TRIGGER}`];
			const subjects = async () => Promise.all(s.peer.received.map(async (r) => (await simpleParser(r.raw)).subject));
			const emits = (server) => helpers.pollLog(server, NAME).filter((e) => e === 'emit').length;
			const stops = [];

			// Start 1: the activation poll only takes the delta baseline.
			let baseline;
			await s.withServerCycle(
				async (server) => {
					await helpers.waitFor(() => helpers.activated(server, NAME), 60_000, () => `activation not logged:\n${server.readLog().slice(-3000)}`);
					await helpers.waitFor(async () => (await triggerState()) !== undefined, 15_000, 'no trigger state in the database');
					baseline = JSON.stringify(await triggerState());
					await new Promise((resolve) => setTimeout(resolve, 2000)); // room for a wrong emit to show
					assert.equal(s.peer.received.length, 0, 'messages there before activation are not emitted');
					assert.equal(emits(server), 0, 'the activation poll emitted nothing');
				},
				{ stops },
			);
			// Delivered while n8n is down: only the delta link n8n saved can tell they are new.
			deliver(whileStopped);
			let scheduledAfterMs;
			await s.withServerCycle(
				async (server) => {
					await helpers.waitFor(() => s.peer.received.length >= 3, 60_000, () => `start 2: ${s.peer.received.length} of 3 mails:\n${server.readLog().slice(-3000)}`);
					await new Promise((resolve) => setTimeout(resolve, 1000));
					assert.deepEqual((await subjects()).sort(), [...whileStopped].sort(), 'the 3 delivered while stopped, once each');
					assert.notEqual(JSON.stringify(await triggerState()), baseline, 'the saved cursor moved');
					// Changes that are not new mail: an old message marked read and flagged.
					graph.updateMessage(WATCHED, ids.get(preExisting[0]), { isRead: true, flag: { flagStatus: 'flagged' } });
					const delivered = Date.now();
					deliver(whileRunning);
					await helpers.waitFor(() => s.peer.received.length >= 4, 45_000, () => `the scheduled poll did not emit within 45 s (${s.peer.received.length} mails)`);
					scheduledAfterMs = Date.now() - delivered;
					const pollsThen = helpers.pollLog(server, NAME).filter((e) => e === 'poll').length;
					await helpers.waitFor(() => helpers.pollLog(server, NAME).filter((e) => e === 'poll').length > pollsThen, 30_000, 'no later poll');
					await new Promise((resolve) => setTimeout(resolve, 2000));
				},
				{ stops },
			);
			const all = await subjects();
			const expected = [...whileStopped, ...whileRunning];
			assert.equal(all.length, expected.length, `exactly ${expected.length} mails: ${all.join(' | ')}`);
			assert.deepEqual([...all].sort(), [...expected].sort(), 'each new message exactly once; nothing old, nothing changed-only');
			for (const raw of s.peer.received) {
				const mail = await simpleParser(raw.raw);
				assert.equal(mail.text.trim(), `id ${ids.get(mail.subject)}`, 'the item carried the Graph message id');
			}
			const executions = await helpers.executionRows(s.db, WORKFLOW_ID);
			assert.ok(executions.length >= 2 && executions.every((e) => e.status === 'success' && e.mode === 'trigger'), JSON.stringify(executions));
			assert.ok(stops.every((stop) => stop.graceful), `n8n stopped on SIGTERM each time: ${JSON.stringify(stops)}`);
			console.log(`    # graph trigger: 3 mails after a restart, 1 from the schedule after ${scheduledAfterMs} ms; a read+flagged old message not re-emitted; ${tokenRequests()} Graph token requests in all`);
		});
	} finally {
		// Every token the platform issued is a canary for the suite's audit.
		for (const token of idp.issuedTokens) s.onToken(token);
		await graph.close();
		await idp.close();
	}
}

/** Manual trigger -> Read Mailbox over Graph: unread Inbox mail with attachments, marked read once output. */
function readWorkflow(id) {
	return {
		id,
		name: `Read Mailbox Graph e2e ${id}`,
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
				parameters: { authentication: 'microsoftAppOnlyGraph', folder: 'inbox', limit: 10, filters: { unreadOnly: true }, postAction: 'markRead', options: { downloadAttachments: true } },
				credentials: { modernAuthMicrosoftAppOnlyApi: CREDENTIAL },
			},
		],
	};
}

/** Why an `n8n execute` failed, short: the run's error if it printed one (its output may hold megabytes of base64). */
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

module.exports = { runGraphChecks };
