import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';

import { captureLogs, runNode, TestCredentialsHelper, type RunNodeOptions, type RunNodeResult } from '../harness/n8n-run';
import { findCanaries } from './scan';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startEchoImap } = require('../peers/echo-imap');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { record } = require('../harness/reliability');

// Canary audit (issue 8, item 13, jest half): every credential kind runs with distinctive
// canary secrets, through success and failure (wrong secret, refused token, servers that echo
// what they were sent). Everything that leaves the nodes is scanned: the whole n8n run
// (items, continueOnFail items, errors with description and stack) and every line n8n's
// logger received. Tokens the fake platform minted are canaries too.
const TENANT = '5e6f7081-92a3-4b4c-8d5e-6f708192a3b4';
const MAILBOX = 'robot@contoso.example';
const USER = 'ann@contoso.example';
const SMTP_USER = 'mailer@example.org';
const IMAP_USER = 'reader@example.org';
const EXCHANGE = 'https://outlook.office365.com';
const DELEGATED_SCOPE = 'https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access';

const canary = (label: string) => `CANARY-${label}-${randomUUID()}`;
const CANARIES = {
	smtpPassword: canary('smtp-pw'),
	smtpWrongPassword: canary('smtp-wrong-pw'),
	imapPassword: canary('imap-pw'),
	imapWrongPassword: canary('imap-wrong-pw'),
	clientSecret: canary('client-secret'),
	wrongClientSecret: canary('wrong-secret'),
	passphrase: canary('passphrase'),
	delegatedClientSecret: canary('delegated-secret'),
	userPassword: canary('user-pw'),
} as Record<string, string>;

let pki: ReturnType<typeof sharedTestPki>;
let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let smtp: Awaited<ReturnType<typeof startSmtpPeer>>;
let dovecot: Awaited<ReturnType<typeof startDovecot>>;
let echoImap: Awaited<ReturnType<typeof startEchoImap>>;
const echo = { smtpTokens: false };
const logs = captureLogs();
let appClientId = '';
let certClientId = '';
let delegatedClientId = '';

const b64 = (text: string) => Buffer.from(text).toString('base64');
const mime = async (to: string, subject: string) =>
	(await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({ from: 'sender@example.org', to, subject, text: subject })).message as Buffer;

beforeAll(async () => {
	pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });

	appClientId = randomUUID();
	idp.addApp({ tenant: TENANT, clientId: appClientId, secrets: [{ value: CANARIES.clientSecret }], appRoles: ['SMTP.SendAsApp', 'IMAP.AccessAsApp'] });
	idp.grantMailbox({ tenant: TENANT, clientId: appClientId, mailbox: MAILBOX });

	// Certificate credential: an encrypted private key with a canary passphrase.
	const dir = fs.mkdtempSync(path.join(pki.dir, 'canary-cert-'));
	execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-keyout', 'app.key', '-out', 'app.pem', '-days', '2', '-subj', '/CN=canary app', '-passout', `pass:${CANARIES.passphrase}`], { cwd: dir, stdio: 'ignore' });
	CANARIES.certificatePem = fs.readFileSync(path.join(dir, 'app.pem'), 'utf8');
	CANARIES.privateKeyPem = fs.readFileSync(path.join(dir, 'app.key'), 'utf8');
	// What MSAL holds: the decrypted key.
	CANARIES.decryptedKeyPem = createPrivateKey({ key: CANARIES.privateKeyPem, passphrase: CANARIES.passphrase }).export({ type: 'pkcs8', format: 'pem' }).toString();
	certClientId = randomUUID();
	idp.addApp({ tenant: TENANT, clientId: certClientId, certificates: [{ pem: CANARIES.certificatePem }], appRoles: ['SMTP.SendAsApp', 'IMAP.AccessAsApp'] });
	idp.grantMailbox({ tenant: TENANT, clientId: certClientId, mailbox: MAILBOX });

	delegatedClientId = randomUUID();
	idp.addApp({ tenant: TENANT, clientId: delegatedClientId, secrets: [{ value: CANARIES.delegatedClientSecret }] });
	idp.addUser({ tenant: TENANT, username: USER, password: CANARIES.userPassword });

	smtp = await startSmtpPeer({
		pki,
		users: { [SMTP_USER]: CANARIES.smtpPassword },
		validateBearer: async (token: string, user: string) => {
			if (echo.smtpTokens) {
				const error = new Error(`5.7.3 token ${token} refused (SASL ${b64(`user=${user}\x01auth=Bearer ${token}\x01\x01`)})`) as Error & { responseCode: number };
				error.responseCode = 535;
				throw error;
			}
			return (
				idp.introspect(token, { audience: EXCHANGE, mailbox: user, role: 'SMTP.SendAsApp' }).active ||
				idp.introspect(token, { audience: 'https://outlook.office.com', mailbox: user, scope: 'SMTP.Send' }).active
			);
		},
	});
	dovecot = await startDovecot({ pki, users: { [IMAP_USER]: CANARIES.imapPassword }, oauth2: { introspectionUrl: idp.introspectionUrl, mailboxes: [MAILBOX, USER] } });
	for (const to of [IMAP_USER, MAILBOX, USER]) await dovecot.deliver(to, await mime(to, `Canary audit for ${to}`));
	echoImap = await startEchoImap({ pki });
}, 120_000);

afterAll(async () => {
	await smtp?.close();
	await dovecot?.stop();
	await echoImap?.close();
	await idp?.close();
});

afterEach(() => {
	echo.smtpTokens = false;
	smtp.authRefusal = null;
	idp.setTokenLifetime(3600);
});

// ---- credentials ----

type Credentials = RunNodeOptions['credentials'];

const smtpCredential = (password: string) => ({
	modernAuthSmtpApi: { id: `smtp${randomUUID().slice(0, 12)}`, name: 'canary smtp', data: { host: '127.0.0.1', port: smtp.port, security: 'starttls', user: SMTP_USER, password, fromAddress: SMTP_USER, caCertificate: pki.ca } },
});

const imapCredential = (password: string, port = dovecot.tlsPort) => ({
	modernAuthImapApi: { id: `imap${randomUUID().slice(0, 12)}`, name: 'canary imap', data: { host: '127.0.0.1', port, security: 'tls', user: IMAP_USER, password, caCertificate: pki.ca } },
});

function appOnlyCredential(kind: 'secret' | 'certificate', overrides: Record<string, string> = {}): Credentials {
	const secretPart: Record<string, string> =
		kind === 'secret'
			? { clientId: appClientId, authType: 'secret', clientSecret: CANARIES.clientSecret }
			: { clientId: certClientId, authType: 'certificate', certificatePem: CANARIES.certificatePem, privateKeyPem: CANARIES.privateKeyPem, passphrase: CANARIES.passphrase };
	return {
		modernAuthMicrosoftAppOnlyApi: {
			// A new id per run: n8n's credential versions, and a fresh MSAL client each time.
			id: `app${randomUUID().slice(0, 13)}`,
			name: 'canary app-only',
			data: {
				tenantId: TENANT,
				...secretPart,
				cloud: 'custom',
				authorityHost: idp.authorityHost,
				exchangeHost: EXCHANGE,
				smtpServer: `127.0.0.1:${smtp.port}`,
				imapServer: `127.0.0.1:${dovecot.tlsPort}`,
				mailbox: MAILBOX,
				...overrides,
			},
		},
	};
}

async function delegatedCredential(overrides: Record<string, string> = {}): Promise<Credentials> {
	const response = await fetch(idp.tokenEndpoint(TENANT), {
		method: 'POST',
		headers: { 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({ grant_type: 'password', client_id: delegatedClientId, client_secret: CANARIES.delegatedClientSecret, username: USER, password: CANARIES.userPassword, scope: DELEGATED_SCOPE }),
	});
	expect(response.status).toBe(200);
	const tokens = (await response.json()) as Record<string, string>;
	return {
		modernAuthMicrosoftDelegatedOAuth2Api: {
			id: `del${randomUUID().slice(0, 13)}`,
			name: 'canary delegated',
			data: {
				grantType: 'authorizationCode',
				clientId: delegatedClientId,
				clientSecret: CANARIES.delegatedClientSecret,
				accessTokenUrl: idp.tokenEndpoint(TENANT),
				scope: DELEGATED_SCOPE,
				authentication: 'body',
				cloud: 'custom',
				authorityHost: idp.authorityHost,
				tenant: TENANT,
				useFor: 'imapSmtp',
				mailbox: '',
				smtpServer: `127.0.0.1:${smtp.port}`,
				imapServer: `127.0.0.1:${dovecot.tlsPort}`,
				oauthTokenData: { ...tokens, token_type: 'Bearer' },
				...overrides,
			},
		},
	};
}

// ---- runs ----

const sendParameters = (authentication: string) => ({ authentication, toEmail: 'someone@example.org', subject: 'canary audit', emailFormat: 'text', text: 'nothing secret here' });
const readParameters = (authentication: string) => ({ authentication, folder: 'INBOX', limit: 5 });

/** Each run twice: once failing the node, once with continueOnFail, so both error paths are scanned. */
async function bothWays(type: string, parameters: RunNodeOptions['parameters'], credentials: () => Credentials | Promise<Credentials>, items = 2): Promise<RunNodeResult[]> {
	const thrown = await runNode({ type, parameters, items: Array.from({ length: items }, () => ({ json: {} })), credentials: await credentials(), credentialsHelper: new TestCredentialsHelper() });
	const kept = await runNode({ type, parameters, items: Array.from({ length: items }, () => ({ json: {} })), credentials: await credentials(), onError: 'continueRegularOutput' });
	return [thrown, kept];
}

interface Scenario {
	transport: 'smtp' | 'imap';
	name: string;
	/** Runs the nodes; returns every run and what the test expects of it (so a scan of nothing cannot pass). */
	run: () => Promise<{ runs: RunNodeResult[]; check: (runs: RunNodeResult[]) => void }>;
}

const scenarios: Scenario[] = [
	{
		transport: 'smtp',
		name: 'send-email smtp password: sent, wrong password, server echoing AUTH PLAIN',
		run: async () => {
			const ok = await bothWays('modernAuthSendEmail', sendParameters('smtp'), () => smtpCredential(CANARIES.smtpPassword));
			const wrong = await bothWays('modernAuthSendEmail', sendParameters('smtp'), () => smtpCredential(CANARIES.smtpWrongPassword));
			smtp.authRefusal = `5.7.8 credentials ${b64(`\0${SMTP_USER}\0${CANARIES.smtpPassword}`)} (password ${CANARIES.smtpPassword}) refused`;
			const echoed = await bothWays('modernAuthSendEmail', sendParameters('smtp'), () => smtpCredential(CANARIES.smtpPassword));
			return {
				runs: [...ok, ...wrong, ...echoed],
				check: () => {
					expect(ok[0].error).toBeUndefined();
					expect(wrong[0].error?.message).toMatch(/SMTP authentication failed/);
					expect(echoed[0].error?.message).toMatch(/credentials \S*\*\*\*\*\S* \(password \*\*\*\*\)/);
				},
			};
		},
	},
	{
		transport: 'smtp',
		name: 'send-email app-only secret: sent, wrong secret, server echoing the token',
		run: async () => {
			const ok = await bothWays('modernAuthSendEmail', sendParameters('microsoftAppOnly'), () => appOnlyCredential('secret'));
			const wrong = await bothWays('modernAuthSendEmail', sendParameters('microsoftAppOnly'), () => appOnlyCredential('secret', { clientSecret: CANARIES.wrongClientSecret }));
			echo.smtpTokens = true;
			const echoed = await bothWays('modernAuthSendEmail', sendParameters('microsoftAppOnly'), () => appOnlyCredential('secret'));
			return {
				runs: [...ok, ...wrong, ...echoed],
				check: () => {
					expect(ok[0].error).toBeUndefined();
					expect(wrong[0].error?.message).toMatch(/AADSTS7000215/);
					expect(echoed[0].error?.message).toMatch(/token \*\*\*\*/);
				},
			};
		},
	},
	{
		transport: 'smtp',
		name: 'send-email app-only certificate: sent, certificate refused, server echoing the token',
		run: async () => {
			const ok = await bothWays('modernAuthSendEmail', sendParameters('microsoftAppOnly'), () => appOnlyCredential('certificate'));
			// The same key and passphrase for an app that does not know the certificate.
			const unknownApp = randomUUID();
			idp.addApp({ tenant: TENANT, clientId: unknownApp, secrets: [{ value: canary('unused') }], appRoles: ['SMTP.SendAsApp'] });
			const refused = await bothWays('modernAuthSendEmail', sendParameters('microsoftAppOnly'), () => appOnlyCredential('certificate', { clientId: unknownApp }));
			echo.smtpTokens = true;
			const echoed = await bothWays('modernAuthSendEmail', sendParameters('microsoftAppOnly'), () => appOnlyCredential('certificate'));
			return {
				runs: [...ok, ...refused, ...echoed],
				check: () => {
					expect(ok[0].error).toBeUndefined();
					expect(refused[0].error?.message).toMatch(/AADSTS700027/);
					expect(echoed[0].error?.message).toMatch(/token \*\*\*\*/);
				},
			};
		},
	},
	{
		transport: 'smtp',
		name: 'send-email delegated: refreshed and sent, server echoing the fresh token, revoked sign-in',
		run: async () => {
			idp.setTokenLifetime(120); // under the renewal margin: every run refreshes
			const ok = await bothWays('modernAuthSendEmail', sendParameters('microsoftDelegated'), () => delegatedCredential());
			echo.smtpTokens = true;
			const echoed = await bothWays('modernAuthSendEmail', sendParameters('microsoftDelegated'), () => delegatedCredential());
			echo.smtpTokens = false;
			const revoked = await bothWays('modernAuthSendEmail', sendParameters('microsoftDelegated'), async () => {
				const credentials = await delegatedCredential();
				idp.revokeRefreshTokens({ username: USER });
				return credentials;
			});
			return {
				runs: [...ok, ...echoed, ...revoked],
				check: () => {
					expect(ok[0].error).toBeUndefined();
					expect(echoed[0].error?.message).toMatch(/token \*\*\*\*/);
					expect(revoked[0].error?.message).toMatch(/expired or was revoked/);
				},
			};
		},
	},
	{
		transport: 'imap',
		name: 'read-mailbox imap password: read, wrong password, server echoing the login',
		run: async () => {
			const ok = await bothWays('modernAuthReadMailbox', readParameters('imap'), () => imapCredential(CANARIES.imapPassword), 1);
			const wrong = await bothWays('modernAuthReadMailbox', readParameters('imap'), () => imapCredential(CANARIES.imapWrongPassword), 1);
			const echoed = await bothWays('modernAuthReadMailbox', readParameters('imap'), () => imapCredential(CANARIES.imapPassword, echoImap.port), 1);
			return {
				runs: [...ok, ...wrong, ...echoed],
				check: () => {
					expect(ok[0].error).toBeUndefined();
					expect(ok[0].output.map((o) => o.json.subject)).toEqual([`Canary audit for ${IMAP_USER}`]);
					expect(wrong[0].error?.message).toMatch(/IMAP sign-in refused/);
					expect(echoed[0].error?.message).toMatch(/IMAP sign-in refused .*refused \S*\*\*\*\*/);
				},
			};
		},
	},
	{
		transport: 'imap',
		name: 'read-mailbox app-only: read, wrong secret, server echoing the XOAUTH2 string',
		run: async () => {
			const ok = await bothWays('modernAuthReadMailbox', readParameters('microsoftAppOnly'), () => appOnlyCredential('secret'), 1);
			const wrong = await bothWays('modernAuthReadMailbox', readParameters('microsoftAppOnly'), () => appOnlyCredential('secret', { clientSecret: CANARIES.wrongClientSecret }), 1);
			const echoed = await bothWays('modernAuthReadMailbox', readParameters('microsoftAppOnly'), () => appOnlyCredential('certificate', { imapServer: `127.0.0.1:${echoImap.port}` }), 1);
			return {
				runs: [...ok, ...wrong, ...echoed],
				check: () => {
					expect(ok[0].error).toBeUndefined();
					expect(ok[0].output.map((o) => o.json.subject)).toEqual([`Canary audit for ${MAILBOX}`]);
					expect(wrong[0].error?.message).toMatch(/AADSTS7000215/);
					expect(echoed[0].error?.message).toMatch(/refused XOAUTH2 \S*\*\*\*\*/);
				},
			};
		},
	},
	{
		transport: 'imap',
		name: 'read-mailbox delegated: refreshed and read, server echoing the XOAUTH2 string',
		run: async () => {
			idp.setTokenLifetime(120);
			const ok = await bothWays('modernAuthReadMailbox', readParameters('microsoftDelegated'), () => delegatedCredential(), 1);
			const echoed = await bothWays('modernAuthReadMailbox', readParameters('microsoftDelegated'), () => delegatedCredential({ imapServer: `127.0.0.1:${echoImap.port}` }), 1);
			return {
				runs: [...ok, ...echoed],
				check: () => {
					expect(ok[0].error).toBeUndefined();
					expect(ok[0].output.map((o) => o.json.subject)).toEqual([`Canary audit for ${USER}`]);
					expect(echoed[0].error?.message).toMatch(/refused XOAUTH2 \S*\*\*\*\*/);
				},
			};
		},
	},
];

describe('canary audit: no secret leaves the nodes, in any encoding', () => {
	for (const scenario of scenarios) {
		it(scenario.name, async () => {
			const logStart = logs.length;
			const { runs, check } = await scenario.run();
			const canaries: Record<string, string> = { ...CANARIES };
			delete canaries.certificatePem; // public
			idp.issuedTokens.forEach((token: string, i: number) => (canaries[`issued token ${i}`] = token));
			const texts: Record<string, string> = { logs: JSON.stringify(logs.slice(logStart)) };
			runs.forEach((run, i) => {
				texts[`run ${i}`] = JSON.stringify(run.run);
				texts[`run ${i} error`] = `${run.error?.message ?? ''}\n${run.error?.description ?? ''}`;
				texts[`run ${i} items`] = JSON.stringify(run.output);
			});
			const hits = findCanaries(canaries, texts);
			record({
				transport: scenario.transport,
				kind: 'canary',
				name: scenario.name,
				survived: hits.length === 0,
				behaviour: hits.length === 0 ? 'no canary in items, errors or logs' : `canaries found: ${[...new Set(hits.map((h) => `${h.canary} in ${h.where}`))].join('; ')}`,
				cases: Object.keys(canaries).length,
				hits: hits.length,
			});
			check(runs);
			// The logger really was listening (n8n logs every node run), so the scan of it means something.
			expect(logs.length).toBeGreaterThan(logStart);
			expect(hits).toEqual([]);
		});
	}
});
