import { randomUUID } from 'node:crypto';
import nodemailer from 'nodemailer';

import { runNode } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');

// One app-only credential that may open two mailboxes; each input item names its own.
const TENANT = '6c5d4e3f-2a1b-4c0d-8e9f-7a6b5c4d3e2f';
const ROBOT = 'robot@contoso.example';
const HR = 'hr@contoso.example';
const CEO = 'ceo@contoso.example'; // in the tenant, but not granted to the app

let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;
let credentials: Record<string, { id: string; name: string; data: Record<string, unknown> }>;

const mime = async (to: string, subject: string) =>
	(await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({ from: 'sender@example.org', to, subject, text: subject })).message as Buffer;

beforeAll(async () => {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	const clientId = randomUUID();
	const secret = `secret-${randomUUID()}`;
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }], appRoles: ['IMAP.AccessAsApp'] });
	for (const mailbox of [ROBOT, HR]) idp.grantMailbox({ tenant: TENANT, clientId, mailbox });
	dovecot = await startDovecot({ pki, users: {}, oauth2: { introspectionUrl: idp.introspectionUrl, mailboxes: [ROBOT, HR, CEO] } });
	await dovecot.deliver(ROBOT, await mime(ROBOT, 'For the robot'));
	await dovecot.deliver(HR, await mime(HR, 'Application: Jane'));
	await dovecot.deliver(HR, await mime(HR, 'Application: John'), { folder: 'Applications' });
	credentials = {
		modernAuthMicrosoftAppOnlyApi: {
			id: 'appPerItem000001',
			name: 'Contoso app-only',
			data: {
				tenantId: TENANT,
				clientId,
				authType: 'secret',
				clientSecret: secret,
				cloud: 'custom',
				authorityHost: idp.authorityHost,
				exchangeHost: 'https://outlook.office365.com',
				imapServer: `${dovecot.host}:${dovecot.tlsPort}`,
				mailbox: ROBOT,
			},
		},
	};
}, 120_000);

afterAll(async () => {
	await dovecot?.stop();
	await idp?.close();
});

/** Dovecot's log lines matching `pattern` (its first group names the mailbox), per mailbox. */
function countLog(from: number, pattern: RegExp): Record<string, number> {
	const counts: Record<string, number> = {};
	for (const line of dovecot.logs.slice(from)) {
		const user = pattern.exec(line)?.[1];
		if (user) counts[user] = (counts[user] ?? 0) + 1;
	}
	return counts;
}
const SIGN_IN = /imap-login: Info: Login: user=<([^>]+)>/;
const LOG_OUT = /imap\(([^)]+)\).*: Info: Disconnected: Logged out/;

describe('Read Mailbox (Modern Auth): every item is read with its own parameters', () => {
	it('items naming different mailboxes and folders each get their own mail; one connection per mailbox', async () => {
		const logStart = dovecot.logs.length;
		const { output, error } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: {
				authentication: 'microsoftAppOnly',
				folder: '={{ $json.folder }}',
				limit: '={{ $json.limit }}',
				filters: { subject: '={{ $json.subject }}' },
				options: { mailbox: '={{ $json.mailbox }}', downloadAttachments: false },
			},
			items: [
				{ json: { mailbox: ROBOT, folder: 'INBOX', limit: 5, subject: '' } },
				{ json: { mailbox: HR, folder: 'INBOX', limit: 5, subject: 'Application' } },
				{ json: { mailbox: '', folder: 'INBOX', limit: 5, subject: 'robot' } }, // empty: the credential's mailbox
				{ json: { mailbox: HR, folder: 'Applications', limit: 1, subject: '' } },
			],
			credentials: credentials as never,
		});
		expect(error).toBeUndefined();
		expect(output.map((o) => [o.pairedItem, o.json.subject, (o.json.to as Array<{ address: string }>)[0].address])).toEqual([
			[{ item: 0 }, 'For the robot', ROBOT],
			[{ item: 1 }, 'Application: Jane', HR],
			[{ item: 2 }, 'For the robot', ROBOT],
			[{ item: 3 }, 'Application: John', HR],
		]);
		// Four items, two mailboxes: two sign-ins, each connection reused by the items that share it.
		// Both connections were logged out when the run ended (Dovecot logs it a moment later).
		for (const deadline = Date.now() + 5000; Date.now() < deadline && Object.keys(countLog(logStart, LOG_OUT)).length < 2; ) {
			await new Promise((resolve) => setTimeout(resolve, 50));
		}
		expect(countLog(logStart, SIGN_IN)).toEqual({ [ROBOT]: 1, [HR]: 1 });
		expect(countLog(logStart, LOG_OUT)).toEqual({ [ROBOT]: 1, [HR]: 1 });
	});

	it('an item naming a mailbox the app may not open fails alone (continueOnFail); the other mailboxes are read', async () => {
		const { output, error } = await runNode({
			type: 'modernAuthReadMailbox',
			parameters: { authentication: 'microsoftAppOnly', folder: 'INBOX', limit: 5, options: { mailbox: '={{ $json.mailbox }}', downloadAttachments: false } },
			items: [{ json: { mailbox: ROBOT } }, { json: { mailbox: CEO } }, { json: { mailbox: HR } }, { json: { mailbox: CEO } }],
			credentials: credentials as never,
			onError: 'continueRegularOutput',
		});
		expect(error).toBeUndefined();
		expect(output.map((o) => [o.pairedItem, o.json.subject ?? (o.json.error as { code: string }).code])).toEqual([
			[{ item: 0 }, 'For the robot'],
			[{ item: 1 }, 'IMAP_AUTH_FAILED'],
			[{ item: 2 }, 'Application: Jane'],
			[{ item: 3 }, 'IMAP_AUTH_FAILED'],
		]);
	});
});
