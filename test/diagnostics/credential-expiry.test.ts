import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { appOnlyTokenProvider } from '../../auth/app-only-token-provider';
import { type CloudEndpoints, resolveCloud } from '../../auth/clouds';
import { runChecks, type CheckResult } from '../../diagnostics/checks';
import { certificateExpiryCheck, secretExpiryCheck } from '../../diagnostics/credential-expiry';
import { type GraphPeers, startGraphPeers, TENANT } from '../nodes/graph-fixture';

const DAY = 24 * 60 * 60 * 1000;

let peers: GraphPeers;
let cloud: CloudEndpoints;
const everything: CheckResult[] = [];
const secretsUsed: string[] = [];

beforeAll(async () => {
	peers = await startGraphPeers();
	cloud = resolveCloud('custom', { authorityHost: peers.idp.authorityHost, graphHost: peers.graphHost });
});
afterAll(async () => {
	await peers.graph.close();
	await peers.idp.close();
});

async function runOne(check: Parameters<typeof runChecks>[0][number]): Promise<CheckResult> {
	const [result] = await runChecks([check]);
	everything.push(result);
	return result;
}

const opensslDate = (date: Date) => `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

/** A self-signed app certificate valid from `from` to `to` (openssl ca can set both dates). */
function certificate(name: string, from: Date, to: Date): { pem: string; sha1: string; sha256: string } {
	const dir = fs.mkdtempSync(path.join(peers.pki.dir, `${name}-`));
	fs.writeFileSync(path.join(dir, 'ca.cnf'), '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n');
	fs.writeFileSync(path.join(dir, 'index.txt'), '');
	fs.writeFileSync(path.join(dir, 'serial'), '01\n');
	const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
	openssl('req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'k.pem', '-out', 'r.csr', '-subj', `/CN=${name}`);
	openssl('ca', '-batch', '-config', 'ca.cnf', '-selfsign', '-keyfile', 'k.pem', '-in', 'r.csr', '-out', 'c.pem', '-notext', '-startdate', opensslDate(from), '-enddate', opensslDate(to));
	const fingerprint = (digest: string) => openssl('x509', '-in', 'c.pem', '-noout', '-fingerprint', `-${digest}`).split('=')[1].trim().replace(/:/g, '');
	return { pem: fs.readFileSync(path.join(dir, 'c.pem'), 'utf8'), sha1: fingerprint('sha1'), sha256: fingerprint('sha256') };
}

describe('certificate expiry (from the credential itself)', () => {
	it('valid for a year: pass with subject, both thumbprints and the end date', async () => {
		const to = new Date(Date.now() + 400 * DAY);
		const cert = certificate('n8n-mail-app', new Date(Date.now() - DAY), to);
		const result = await runOne(certificateExpiryCheck(cert.pem));
		expect(result).toMatchObject({ step: 'credential', target: 'certificate', status: 'pass' });
		expect(result.facts).toMatchObject({ subject: 'CN=n8n-mail-app', thumbprintSha1: cert.sha1, thumbprintSha256: cert.sha256, daysLeft: 399 });
		expect(result.detail).toBe(`certificate CN=n8n-mail-app (thumbprint ${cert.sha1}) valid until ${to.toISOString().slice(0, 10)} (399 days)`);
	});

	it('expiring in 10 days: warn with the date and the rotation path', async () => {
		const to = new Date(Date.now() + 10 * DAY + 60_000);
		const result = await runOne(certificateExpiryCheck(certificate('soon', new Date(Date.now() - 300 * DAY), to).pem));
		expect(result).toMatchObject({ status: 'warn', code: 'CERTIFICATE_EXPIRING', detail: expect.stringContaining(`expires on ${to.toISOString().slice(0, 10)}, in 10 days`) });
		expect(result.hint).toMatch(/Certificates & secrets > Certificates > Upload certificate.*before then/);
	});

	it('expired: fail with the upload hint', async () => {
		const result = await runOne(certificateExpiryCheck(certificate('old', new Date('2020-01-01T00:00:00Z'), new Date('2020-02-01T00:00:00Z')).pem));
		expect(result).toMatchObject({ status: 'fail', code: 'CERTIFICATE_EXPIRED', detail: expect.stringContaining('expired on 2020-02-01') });
		expect(result.hint).toMatch(/^Create a new certificate, upload its public part to the app registration/);
	});

	it('not a certificate: fail saying what to paste', async () => {
		const result = await runOne(certificateExpiryCheck('-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----'));
		expect(result).toMatchObject({ status: 'fail', code: 'CERTIFICATE_INVALID' });
	});
});

describe('client secret expiry (Graph applications(appId=...))', () => {
	/** An app whose secrets are given; the token comes from a current one. */
	function registerApp(roles: string[], secrets: Array<{ value: string; expiresAt?: Date; displayName?: string }>, extra: Record<string, unknown> = {}) {
		const clientId = randomUUID();
		secretsUsed.push(...secrets.map((s) => s.value));
		const record = peers.idp.addApp({ tenant: TENANT, clientId, secrets, appRoles: roles, ...extra });
		return { clientId, record };
	}
	const check = (clientId: string, tokenSecret: string, clientSecret = tokenSecret) =>
		secretExpiryCheck({ graphHost: cloud.graphHost, clientId, clientSecret, tokens: appOnlyTokenProvider({ tenantId: TENANT, clientId, clientSecret: tokenSecret, cloud }), ca: peers.pki.ca });

	it('readable (Application.Read.All): pass with our secret\'s end date, not another one\'s', async () => {
		const ours = { value: `Qz7~${randomUUID()}`, expiresAt: new Date(Date.now() + 200 * DAY), displayName: 'n8n mail' };
		const other = { value: `Wk4~${randomUUID()}`, expiresAt: new Date(Date.now() + 5 * DAY), displayName: 'old script' };
		const { clientId, record } = registerApp(['Application.Read.All', 'Mail.Send'], [other, ours]);
		const result = await runOne(check(clientId, ours.value));
		expect(result).toMatchObject({ step: 'credential', target: 'client secret', status: 'pass' });
		expect(result.facts).toMatchObject({ endDateTime: new Date(Math.floor(ours.expiresAt.getTime() / 1000) * 1000).toISOString(), displayName: 'n8n mail', daysLeft: 199 });
		expect(result.detail).toContain(`client secret "n8n mail" (key ****${record.secrets[1].keyId.slice(-4)}) of app ****${clientId.slice(-4)} valid until ${ours.expiresAt.toISOString().slice(0, 10)}`);
		expect(JSON.stringify(result)).not.toContain('Qz7');
		const request = peers.graph.requests.find((r: { path: string }) => r.path.includes(`applications(appId='${clientId}')`));
		expect(request).toMatchObject({ method: 'GET', status: 200, query: expect.stringContaining('passwordCredentials') });
	});

	it('expiring within 30 days: warn with the date; expired: fail', async () => {
		const soon = { value: `Mv2~${randomUUID()}`, expiresAt: new Date(Date.now() + 12 * DAY) };
		const gone = { value: `Hx9~${randomUUID()}`, expiresAt: new Date(Date.now() - DAY) };
		const { clientId } = registerApp(['Application.Read.All'], [soon, gone]);
		const warned = await runOne(check(clientId, soon.value));
		expect(warned).toMatchObject({ status: 'warn', code: 'SECRET_EXPIRING', detail: expect.stringContaining(`expires on ${soon.expiresAt.toISOString().slice(0, 10)}, in 11 days`) });
		expect(warned.hint).toContain(`App registrations > (app ${clientId}) > Certificates & secrets > New client secret`);
		// the credential still holds the expired secret (the token comes from a current one)
		const failed = await runOne(check(clientId, soon.value, gone.value));
		expect(failed).toMatchObject({ status: 'fail', code: 'SECRET_EXPIRED' });
	});

	it('not readable (no Application.* permission): skipped with the exact way to allow it', async () => {
		const secret = { value: `Pn5~${randomUUID()}`, expiresAt: new Date(Date.now() + 90 * DAY) };
		const { clientId } = registerApp(['Mail.Send'], [secret]);
		const result = await runOne(check(clientId, secret.value));
		expect(result).toMatchObject({ status: 'skipped', code: 'SECRET_EXPIRY_UNREADABLE' });
		expect(result.detail).toMatch(/may not read its own registration in Microsoft Graph \(403\)/);
		expect(result.hint).toContain(`App registrations > (app ${clientId}) > API permissions > Add a permission > Microsoft Graph > Application permissions`);
		expect(result.hint).toMatch(/Application\.Read\.All.*Application\.ReadWrite\.OwnedBy plus the app as an owner of itself.*New-MgApplicationOwnerByRef/);
		const refused = peers.graph.requests.find((r: { path: string }) => r.path.includes(`applications(appId='${clientId}')`));
		expect(refused.status).toBe(403);
	});

	it('Application.ReadWrite.OwnedBy reads it only once the app owns its registration', async () => {
		const secret = { value: `Ty3~${randomUUID()}`, expiresAt: new Date(Date.now() + 90 * DAY) };
		const { clientId, record } = registerApp(['Application.ReadWrite.OwnedBy'], [secret]);
		expect((await runOne(check(clientId, secret.value))).status).toBe('skipped');
		record.ownedBySelf = true;
		expect((await runOne(check(clientId, secret.value))).status).toBe('pass');
	});
});

// last in the file (jest runs a file's tests in order)
it('no token, secret or secret hint characters in any result above', () => {
	const text = JSON.stringify(everything);
	expect(everything.length).toBeGreaterThanOrEqual(10);
	for (const token of peers.idp.issuedTokens as string[]) expect(text).not.toContain(token);
	for (const secret of secretsUsed) {
		expect(text).not.toContain(secret);
		expect(text).not.toContain(secret.slice(0, 3));
	}
});
