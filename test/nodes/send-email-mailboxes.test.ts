/**
 * Send Email with the Microsoft app-only credential (SMTP XOAUTH2) where items differ:
 *  - defect 4: Mailbox is evaluated per item, and each mailbox signs in as itself over its
 *    own pooled connections (the XOAUTH2 user is the mailbox);
 *  - defect 9: a failing token request gives every item the identity platform's own error
 *    code, also when sends run concurrently (nodemailer would turn it into EAUTH).
 */
import { randomUUID } from 'node:crypto';

import { runNode } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');

const TENANT = '0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e';
const EXCHANGE = 'https://outlook.office365.com';
const ROBOT = 'robot@fabrikam.example';
const HR = 'hr@fabrikam.example';

let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let peer: Awaited<ReturnType<typeof startSmtpPeer>>;

beforeAll(async () => {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run with `npm run test:unit`: the test CA must be trusted at process start');
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['fabrikam.example'] });
	peer = await startSmtpPeer({
		pki,
		// Exchange Online's check: the token must be the app's, for the mailbox signing in.
		validateBearer: (token: string, user: string) =>
			idp.introspect(token, { audience: EXCHANGE, mailbox: user, role: 'SMTP.SendAsApp' }).active,
	});
});

afterAll(async () => {
	await peer?.close();
	await idp?.close();
});

beforeEach(() => peer.reset());

function registerApp(secret: string, mailboxes: string[]): string {
	const clientId = randomUUID();
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }], appRoles: ['SMTP.SendAsApp'] });
	for (const mailbox of mailboxes) idp.grantMailbox({ tenant: TENANT, clientId, mailbox });
	return clientId;
}

const credentials = (clientId: string, clientSecret: string) => ({
	modernAuthMicrosoftAppOnlyApi: {
		id: `mbx${clientId.slice(0, 12)}`,
		name: 'Fabrikam app-only',
		data: {
			tenantId: TENANT,
			clientId,
			clientSecret,
			authType: 'secret',
			cloud: 'custom',
			authorityHost: idp.authorityHost,
			exchangeHost: EXCHANGE,
			smtpServer: `127.0.0.1:${peer.port}`,
			mailbox: ROBOT,
		},
	},
});

const parameters = {
	authentication: 'microsoftAppOnly',
	toEmail: 'someone@example.org',
	subject: '={{ $json.subject }}',
	emailFormat: 'text',
	text: 'per-item mailbox',
	options: { mailbox: '={{ $json.mailbox }}', maxConnections: 2, sendRetries: 0 },
};

describe('Mailbox per item', () => {
	it('two items with two mailboxes each sign in and send as their own mailbox', async () => {
		const secret = `secret-${randomUUID()}`;
		const clientId = registerApp(secret, [ROBOT, HR]);
		const { output, error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters,
			items: [
				{ json: { mailbox: ROBOT, subject: 'from robot' } },
				{ json: { mailbox: HR, subject: 'from hr' } },
				{ json: { mailbox: '', subject: 'credential default' } },
			],
			credentials: credentials(clientId, secret),
		});
		expect(error).toBeUndefined();
		const bySubject = new Map(
			peer.received.map((m: { raw: Buffer; user: string; envelope: { from: string } }) => [
				/^Subject: (.*)$/m.exec(m.raw.toString('utf8'))?.[1],
				{ user: m.user, from: m.envelope.from },
			]),
		);
		expect(bySubject.get('from robot')).toEqual({ user: ROBOT, from: ROBOT });
		expect(bySubject.get('from hr')).toEqual({ user: HR, from: HR });
		expect(bySubject.get('credential default')).toEqual({ user: ROBOT, from: ROBOT });
		expect(output.map((o) => (o.json.envelope as { from: string }).from)).toEqual([ROBOT, HR, ROBOT]);
	});

	it('a mailbox the app may not use fails only its own items (continueOnFail)', async () => {
		const secret = `secret-${randomUUID()}`;
		const clientId = registerApp(secret, [ROBOT]);
		const { output } = await runNode({
			type: 'modernAuthSendEmail',
			parameters,
			items: [
				{ json: { mailbox: HR, subject: 'hr not granted' } },
				{ json: { mailbox: ROBOT, subject: 'robot granted' } },
			],
			credentials: credentials(clientId, secret),
			onError: 'continueRegularOutput',
		});
		expect((output[0].json.error as Record<string, string>).code).toBe('SMTP_XOAUTH2_REJECTED');
		expect(output[1].json.status).toBe('sent');
		expect(peer.received.map((m: { user: string }) => m.user)).toEqual([ROBOT]);
	});
});

describe('token failures keep their own code on every item', () => {
	it('8 concurrent sends with a wrong secret: each item reports AADSTS7000215, none EAUTH', async () => {
		const clientId = registerApp('the-right-secret', [ROBOT]);
		const { output } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...parameters, options: { maxConnections: 4, sendRetries: 0 } },
			items: Array.from({ length: 8 }, (_, i) => ({ json: { subject: `token ${i}` } })),
			credentials: credentials(clientId, 'a-wrong-secret-value'),
			onError: 'continueRegularOutput',
		});
		const codes = output.map((o) => (o.json.error as Record<string, string> | undefined)?.code);
		expect(codes).toEqual(Array(8).fill('AADSTS7000215'));
		for (const item of output) {
			expect((item.json.error as Record<string, string>).message).toMatch(/client secret is invalid/);
		}
		expect(peer.received).toHaveLength(0);
	});
});
