import { randomUUID } from 'node:crypto';

import type { INodeCredentialTestResult } from 'n8n-workflow';

import { ModernAuthSendEmail } from '../../nodes/ModernAuthSendEmail/ModernAuthSendEmail.node';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');

const TENANT = '0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a';
const GRAPH = 'https://graph.microsoft.com';
const EXCHANGE = 'https://outlook.office365.com';
/** A host no tenant knows as a resource: Entra answers AADSTS500011 for its /.default scope. */
const UNKNOWN_HOST = 'https://mail.unknown-cloud.example';

let idp: Awaited<ReturnType<typeof startFakeIdentity>>;

beforeAll(async () => {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['graph-test.example'] });
});
afterAll(async () => await idp?.close());

function app(roles: string[]) {
	const clientId = randomUUID();
	const secret = `graph-test-secret-${randomUUID()}`;
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }], appRoles: roles });
	const data = (overrides: Record<string, unknown> = {}) => ({
		tenantId: TENANT,
		clientId,
		authType: 'secret',
		clientSecret: secret,
		cloud: 'custom',
		authorityHost: idp.authorityHost,
		graphHost: GRAPH,
		exchangeHost: EXCHANGE,
		...overrides,
	});
	const requests = (scope: string) => idp.counts({ grantType: 'client_credentials', clientId, scope });
	return { clientId, secret, data, requests };
}

/** The Test button as n8n presses it: the node's credentialTest method for the credential type. */
const testAppOnlyCredential = async (data: Record<string, unknown>): Promise<INodeCredentialTestResult> =>
	await new ModernAuthSendEmail().methods.credentialTest.modernAuthMicrosoftAppOnlyTest.call({} as never, {
		id: 'graphCredTest001',
		name: 'app-only',
		type: 'modernAuthMicrosoftAppOnlyApi',
		data: data as never,
	});

const masked = (clientId: string) => `app ****${clientId.slice(-4)} in tenant ****${TENANT.slice(-4)}`;

describe('App-only credential Test button: Graph and Exchange tokens', () => {
	it('asks for one fresh token per audience and lists the app roles each carries', async () => {
		const { clientId, data, requests } = app(['Mail.Send', 'Mail.ReadWrite', 'SMTP.SendAsApp']);
		const result = await testAppOnlyCredential(data());
		expect(result.status).toBe('OK');
		// The token line first, then the staged run (identity platform reach + TLS, both tokens; no Default Mailbox, no mail stage).
		const tokens = `Tokens acquired for ${masked(clientId)} (valid 60 min). Graph ${GRAPH}: roles Mail.Send, Mail.ReadWrite. Exchange (SMTP, IMAP) ${EXCHANGE}: roles SMTP.SendAsApp.`;
		expect(result.message.startsWith(`${tokens} `)).toBe(true);
		expect(result.message.slice(tokens.length)).toMatch(/^ 4 checks passed; token: app-only token for https:\/\/graph\.microsoft\.com .*roles: Mail\.Send, Mail\.ReadWrite/);
		expect(requests(`${GRAPH}/.default`)).toBe(1);
		expect(requests(`${EXCHANGE}/.default`)).toBe(1);
	});

	it('Graph token OK but Exchange refused: says which, with the fix', async () => {
		const { data, secret } = app(['Mail.Send']);
		const result = await testAppOnlyCredential(data({ exchangeHost: UNKNOWN_HOST }));
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(
			new RegExp(
				`^token \\(exchange\\) failed: Graph token OK, but Exchange \\(SMTP, IMAP\\) \\(${UNKNOWN_HOST}\\) refused: Microsoft sign-in failed: the resource .*AADSTS500011.*\\. Fix: Check Cloud and, for a Custom cloud, Graph Host and Exchange Host .*\\. SMTP and IMAP need this token; Graph works without it\\.$`,
			),
		);
		expect(result.message).not.toContain(secret);
	});

	it('Exchange token OK but Graph refused: says which, with the fix', async () => {
		const { data } = app(['SMTP.SendAsApp']);
		const result = await testAppOnlyCredential(data({ graphHost: UNKNOWN_HOST }));
		expect(result.status).toBe('Error');
		expect(result.message).toMatch(
			new RegExp(`^token \\(graph\\) failed: Exchange \\(SMTP, IMAP\\) token OK, but Graph \\(${UNKNOWN_HOST}\\) refused: .*AADSTS500011.*Sending and reading through Graph need this token`),
		);
	});

	it('a wrong secret refuses both: said once, not twice', async () => {
		const { data } = app(['Mail.Send']);
		const result = await testAppOnlyCredential(data({ clientSecret: 'not-the-secret' }));
		expect(result.status).toBe('Error');
		expect(result.message.match(/AADSTS7000215/g)).toHaveLength(1);
		expect(result.message).toMatch(/Fix: Paste the secret VALUE/);
		expect(result.message).not.toContain('not-the-secret');
	});
});
