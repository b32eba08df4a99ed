'use strict';
// The Test Connection node inside real n8n: one workflow with two Test Connection nodes over
// Microsoft app-only IMAP against the run's Dovecot (XOAUTH2, deciding through the fake
// identity platform as Exchange does). One app is registered in Exchange with a mailbox
// permission and passes every stage; the other is not and must fail at login with the
// PowerShell fix. Called by run-real-n8n.js once per n8n version with that suite's helpers.
const assert = require('node:assert/strict');

const runtime = require('../../scripts/n8n-runtime');

const PASSING_APP = '6b5a4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d';
const UNREGISTERED_APP = '7c6b5a4d-3e2f-4b1a-8d9c-0e1f2a3b4c5d';
const MAILBOX = 'robot@contoso.example';
const WORKFLOW_ID = 'MamTestConnE2e01';
const NODES = { passing: 'Test registered app', failing: 'Test unregistered app' };
/** Every stage an app-only IMAP test reports, in the order it runs them. */
const STAGES = ['reach', 'tls', 'credential', 'token', 'permission', 'login', 'read'];

/**
 * @param {object} s the suite: check, n8n, runN8n, env, canary(what), importCredentials,
 *   importWorkflow, idp (fake identity), tenant, dovecot.
 */
async function runTestConnectionChecks(s) {
	const { check, idp, tenant, dovecot } = s;
	const secret = s.canary('testconnappsecret');
	idp.addApp({ tenant, clientId: PASSING_APP, secrets: [{ value: secret }], appRoles: ['IMAP.AccessAsApp'] });
	idp.grantMailbox({ tenant, clientId: PASSING_APP, mailbox: MAILBOX });
	// Consented with the role, but never registered in Exchange (no New-ServicePrincipal, no mailbox permission).
	idp.addApp({ tenant, clientId: UNREGISTERED_APP, secrets: [{ value: secret }], appRoles: ['IMAP.AccessAsApp'] });
	const credential = (clientId, name) => ({
		id: `MamTc${clientId.slice(0, 11)}`,
		name,
		type: 'modernAuthMicrosoftAppOnlyApi',
		data: { tenantId: tenant, clientId, authType: 'secret', clientSecret: secret, cloud: 'custom', authorityHost: idp.authorityHost, exchangeHost: 'https://outlook.office365.com', imapServer: `${dovecot.host}:${dovecot.tlsPort}`, mailbox: MAILBOX },
	});
	const passing = credential(PASSING_APP, 'Contoso IMAP app-only, registered (Test Connection e2e)');
	const failing = credential(UNREGISTERED_APP, 'Contoso IMAP app-only, not in Exchange (Test Connection e2e)');

	let outputs;
	await check('Test Connection node: a workflow testing two app-only IMAP credentials runs in real n8n, no secret in its output', async () => {
		assert.equal((await s.importCredentials([passing, failing])).code, 0);
		assert.equal((await s.importWorkflow(testWorkflow({ [NODES.passing]: passing, [NODES.failing]: failing }))).code, 0);
		const executed = await s.runN8n(['execute', `--id=${WORKFLOW_ID}`, '--rawOutput'], s.env);
		assert.equal(executed.code, 0, executed.stdout.slice(-3000) + executed.stderr.slice(-2000));
		assert.ok(!executed.stdout.includes(secret) && !executed.stderr.includes(secret), 'client secret not in n8n output');
		const { runData } = runtime.parseExecuteOutput(executed.stdout).data.resultData;
		outputs = Object.fromEntries(Object.entries(NODES).map(([which, node]) => [which, runData[node][0].data.main[0]]));
		for (const [which, output] of Object.entries(outputs)) {
			assert.ok(output.every((item) => item.pairedItem?.item === 0), `${which}: every item paired with the input`);
			assert.equal(output.at(-1).json.step, 'summary', `${which}: the summary comes last`);
			// Identifiers masked in what an item reports; only the PowerShell lines of a hint carry the real client id.
			const reported = JSON.stringify(output.map(({ json }) => [json.target, json.detail, json.facts]));
			assert.ok(![PASSING_APP, UNREGISTERED_APP].some((id) => reported.includes(id)), `${which}: client ids masked in targets, details and facts`);
		}
	});

	await check('Test Connection node: the registered app passes every stage (reach, tls, credential, token, permission, login, read); the summary lists each', async () => {
		const { checks, summary } = splitOutput(outputs.passing);
		assert.deepEqual(stepsOf(summary), STAGES, 'the summary reports every stage');
		for (const step of ['reach', 'tls', 'token', 'permission', 'login', 'read']) assert.ok(checks.filter((c) => c.step === step).every((c) => c.status === 'pass'), `${step} passed: ${JSON.stringify(checks.filter((c) => c.step === step))}`);
		// The client secret's expiry needs the app to read its own registration in Graph; without that it is skipped with a note saying how.
		const credentialStage = checks.find((c) => c.step === 'credential');
		assert.ok(['pass', 'skipped'].includes(credentialStage.status), JSON.stringify(credentialStage));
		assert.equal(summary.firstFailingStep, '');
		assert.notEqual(summary.verdict, 'fail');
		assert.equal(checks.find((c) => c.step === 'read').target, 'INBOX');
	});

	await check('Test Connection node: the app not registered in Exchange fails at login with the New-ServicePrincipal / Add-MailboxPermission fix for its client id; read is skipped', async () => {
		const { checks, summary } = splitOutput(outputs.failing);
		assert.deepEqual(stepsOf(summary), STAGES, 'the summary reports every stage');
		const status = (step) => checks.find((c) => c.step === step).status;
		for (const step of ['reach', 'tls', 'token', 'permission']) assert.ok(checks.filter((c) => c.step === step).every((c) => c.status === 'pass'), `${step} passed`);
		assert.equal(status('login'), 'fail');
		assert.equal(status('read'), 'skipped');
		assert.equal(summary.verdict, 'fail');
		assert.equal(summary.firstFailingStep, 'login');
		assert.equal(summary.firstFailingTarget, 'imap');
		assert.match(summary.hint, /New-ServicePrincipal/);
		assert.match(summary.hint, /Add-MailboxPermission/);
		assert.ok(summary.hint.includes(UNREGISTERED_APP) && summary.hint.includes(MAILBOX), 'the fix names the real client id and mailbox');
		console.log(`    # Test Connection, app-only IMAP, app not registered in Exchange (n8n ${s.n8n.version}):`);
		for (const item of outputs.failing) console.log(`    # ${compact(item.json)}`);
	});
}

/** Manual trigger -> one Test Connection node per credential, side by side. */
function testWorkflow(credentialsByNode) {
	const names = Object.keys(credentialsByNode);
	return {
		id: WORKFLOW_ID,
		name: 'Test Connection e2e',
		active: false,
		settings: { executionOrder: 'v1' },
		connections: { Start: { main: [names.map((node) => ({ node, type: 'main', index: 0 }))] } },
		nodes: [
			{ id: 'tc0', name: 'Start', type: 'n8n-nodes-base.manualTrigger', typeVersion: 1, position: [0, 0], parameters: {} },
			...names.map((name, i) => ({
				id: `tc${i + 1}`,
				name,
				type: `${runtime.PACKAGE_NAME}.modernAuthTestConnection`,
				typeVersion: 1,
				position: [220, i * 160],
				parameters: { authentication: 'microsoftAppOnly', protocol: 'imap', mailbox: '', options: {} },
				credentials: { modernAuthMicrosoftAppOnlyApi: { id: credentialsByNode[name].id, name: credentialsByNode[name].name } },
			})),
		],
	};
}

function splitOutput(output) {
	const items = output.map((item) => item.json);
	const summary = items.at(-1);
	const checks = items.slice(0, -1);
	assert.deepEqual(summary.stages, checks.map(({ step, target, status }) => ({ step, target, status })), 'the summary lists every check with its status');
	return { checks, summary };
}

/** The distinct steps the summary reports, in order. */
const stepsOf = (summary) => [...new Set(summary.stages.map((stage) => stage.step))];

/** One line per item: step, target, status, detail, hint (what the closing note quotes). */
function compact(json) {
	if (json.step === 'summary') return `summary verdict=${json.verdict} firstFailingStep=${json.firstFailingStep} (${json.firstFailingTarget}) counts=${JSON.stringify(json.counts)} ${json.durationMs} ms`;
	// A skipped check's detail already starts with 'skipped:'.
	const detail = json.detail.startsWith(`${json.status}: `) ? json.detail.slice(json.status.length + 2) : json.detail;
	return `${json.step} ${json.target} ${json.status}: ${detail}${json.hint ? ` | hint: ${json.hint}` : ''}`;
}

module.exports = { runTestConnectionChecks };
