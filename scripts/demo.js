'use strict';
// `npm run demo`: the main job on a local sandbox. Starts a local SMTP server (STARTTLS with
// a throwaway CA), real n8n with this package installed like a user install, an example
// credential and workflow; runs the workflow once and prints what the mail server received.
// Then keeps n8n at http://127.0.0.1:5678 (and the mail server) running until Ctrl+C,
// unless `--once` (or DEMO_ONCE=1) is given.
const { spawn } = require('node:child_process');
const { createHash, randomBytes } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { simpleParser } = require('mailparser');

const runtime = require('./n8n-runtime');
const { sendWorkflow, SEND_NODE } = require('./example-workflow');
const { createTestPki } = require('../test/peers/certs');
const { startSmtpPeer } = require('../test/peers/smtp-peer');

const once = process.argv.includes('--once') || process.env.DEMO_ONCE === '1';
const SANDBOX = path.join(runtime.ROOT, '.n8n-demo');
const PORT = Number(process.env.DEMO_N8N_PORT || 5678);
const SMTP_PORT = Number(process.env.DEMO_SMTP_PORT || 2525);

async function main() {
	fs.rmSync(SANDBOX, { recursive: true, force: true });
	const userFolder = path.join(SANDBOX, 'user');
	const filesDir = path.join(SANDBOX, 'files');
	fs.mkdirSync(filesDir, { recursive: true });

	step('installing n8n (cached after the first run)');
	const { bin } = runtime.ensureN8n();
	step('packing this package and installing it into n8n like a user install');
	runtime.installPackageLikeUser(runtime.packPackage(SANDBOX), userFolder);

	const pki = createTestPki(fs.mkdtempSync(path.join(SANDBOX, 'pki-')));
	const password = randomBytes(9).toString('base64url');
	const peer = await startSmtpPeer({ pki, port: SMTP_PORT, users: { 'robot@example.com': password } });
	step(`local SMTP server on 127.0.0.1:${peer.port} (STARTTLS, user robot@example.com)`);

	const env = runtime.n8nEnv(userFolder, {
		NODE_EXTRA_CA_CERTS: pki.caPath,
		N8N_RESTRICT_FILE_ACCESS_TO: filesDir,
		N8N_PORT: String(PORT),
		N8N_LOG_LEVEL: 'info',
	});
	const credentialFile = path.join(SANDBOX, 'credential.json');
	fs.writeFileSync(
		credentialFile,
		JSON.stringify([
			{
				id: 'DemoSmtpCred0001',
				name: 'Demo SMTP (local)',
				type: 'modernAuthSmtpApi',
				data: {
					host: '127.0.0.1',
					port: peer.port,
					security: 'starttls',
					user: 'robot@example.com',
					password,
					fromAddress: 'Demo Robot <robot@example.com>',
				},
			},
		]),
	);
	await mustRun(bin, ['import:credentials', `--input=${credentialFile}`], env);
	fs.rmSync(credentialFile);
	step('credential "Demo SMTP (local)" stored encrypted in n8n');

	const report = Buffer.from(`Demo report generated ${new Date().toISOString()}\n${'x'.repeat(2000)}\n`);
	const reportPath = path.join(filesDir, 'report.txt');
	fs.writeFileSync(reportPath, report);
	const workflowFile = path.join(SANDBOX, 'workflow.json');
	fs.writeFileSync(
		workflowFile,
		JSON.stringify(
			sendWorkflow({
				id: 'DemoSendWorkflw1',
				credentialId: 'DemoSmtpCred0001',
				credentialName: 'Demo SMTP (local)',
				filePath: reportPath,
				subject: 'Hello from n8n-nodes-modern-auth-mail',
			}),
		),
	);
	await mustRun(bin, ['import:workflow', `--input=${workflowFile}`], env);
	step('workflow "Modern Auth Mail example" imported; running it once');

	const executed = await runtime.runN8n(bin, ['execute', '--id=DemoSendWorkflw1', '--rawOutput'], env);
	let ok = executed.code === 0;
	if (ok) {
		const run = runtime.parseExecuteOutput(executed.stdout);
		const output = run.data.resultData.runData[SEND_NODE][0].data.main[0][0].json;
		console.log(`\nn8n says: sent message ${output.messageId}`);
		console.log(`          accepted: ${output.accepted.join(', ')}; server: ${output.response}`);
	} else {
		console.log(executed.stdout.slice(-3000), executed.stderr.slice(-3000));
	}
	if (peer.received.length === 1) {
		const mail = await simpleParser(peer.received[0].raw);
		const attachment = mail.attachments[0];
		const same = attachment && createHash('sha256').update(attachment.content).digest('hex') === createHash('sha256').update(report).digest('hex');
		console.log('\nThe local SMTP server received:');
		console.log(`  signed in as: ${peer.received[0].user} over ${peer.received[0].secure ? 'TLS' : 'plain text'}`);
		console.log(`  From:    ${mail.from.text}`);
		console.log(`  To:      ${mail.to.text}`);
		console.log(`  Subject: ${mail.subject}`);
		console.log(`  Body:    ${mail.text.trim()}`);
		console.log(`  Attachment: ${attachment ? `${attachment.filename} (${attachment.size} bytes, ${same ? 'identical to the file n8n read' : 'DIFFERENT from the file'})` : 'none'}`);
		ok = ok && Boolean(same);
	} else {
		console.log(`\nThe local SMTP server received ${peer.received.length} messages (expected 1).`);
		ok = false;
	}
	console.log(`\nDemo ${ok ? 'SUCCEEDED' : 'FAILED'}.`);

	if (once) {
		await peer.close();
		process.exit(ok ? 0 : 1);
	}

	step(`starting n8n at http://127.0.0.1:${PORT} (Ctrl+C stops n8n and the mail server)`);
	console.log('  Open it, create the owner account, then open the workflow "Modern Auth Mail example DemoSendWorkflw1".');
	console.log('  New mail sent to the local server is printed here.');
	let seen = peer.received.length;
	setInterval(() => {
		while (seen < peer.received.length) {
			const m = peer.received[seen++];
			console.log(`[mail] from ${m.envelope.from} to ${m.envelope.to.join(', ')} (${m.raw.length} bytes)`);
		}
	}, 500).unref();
	const n8n = spawn(process.execPath, [bin, 'start'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
	const stop = () => {
		n8n.kill('SIGTERM');
		peer.close().finally(() => process.exit(0));
	};
	process.on('SIGINT', stop);
	process.on('SIGTERM', stop);
	n8n.on('exit', (code) => {
		peer.close().finally(() => process.exit(code ?? 0));
	});
}

function step(text) {
	console.log(`- ${text}`);
}

async function mustRun(bin, args, env) {
	const result = await runtime.runN8n(bin, args, env);
	if (result.code !== 0) throw new Error(`n8n ${args[0]} failed:\n${result.stdout}\n${result.stderr}`);
	return result;
}

main().catch((error) => {
	console.error(error);
	process.exit(1);
});
