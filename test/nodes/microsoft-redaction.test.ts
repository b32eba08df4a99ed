import { randomUUID } from 'node:crypto';

import { describeItemError } from '../../nodes/shared/node-errors';
import { runLoadOptions, runNode, TestCredentialsHelper } from '../harness/n8n-run';
import { findCanaries } from '../canary/scan';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startEchoImap } = require('../peers/echo-imap');

// Defect 9: servers that echo what they were sent. The app-only token the provider handed
// out, a delegated token refreshed during this execution, and the base64 forms of every
// secret (XOAUTH2 SASL strings embed the token base64-encoded) never reach an item, an
// error or the folder picker.
const TENANT = '3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f';
const MAILBOX = 'robot@contoso.example';
const USER = 'ann@contoso.example';
const USER_PASSWORD = 'Ann-Passw0rd!';
const EXCHANGE = 'https://outlook.office365.com';
const DELEGATED_APP = randomUUID();
const DELEGATED_SECRET = `delegated-secret-${randomUUID()}`;
const SCOPE = 'https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access';

let idp: Awaited<ReturnType<typeof startFakeIdentity>>;
let peer: Awaited<ReturnType<typeof startSmtpPeer>>;
let echoImap: Awaited<ReturnType<typeof startEchoImap>>;
/** Every bearer token the SMTP server was shown. */
const tokensSeen: string[] = [];

const sasl = (user: string, token: string) => Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`).toString('base64');

beforeAll(async () => {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	idp = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	idp.addApp({ tenant: TENANT, clientId: DELEGATED_APP, secrets: [{ value: DELEGATED_SECRET }] });
	idp.addUser({ tenant: TENANT, username: USER, password: USER_PASSWORD });
	// A server that refuses every token and quotes it back, raw and as the SASL string.
	peer = await startSmtpPeer({
		pki,
		validateBearer: async (token: string, user: string) => {
			tokensSeen.push(token);
			const error = new Error(`5.7.3 token ${token} refused (SASL ${sasl(user, token)})`) as Error & { responseCode: number };
			error.responseCode = 535;
			throw error;
		},
	});
	echoImap = await startEchoImap({ pki });
});

afterAll(async () => {
	await peer?.close();
	await echoImap?.close();
	await idp?.close();
});

beforeEach(() => {
	tokensSeen.length = 0;
	peer.reset();
});

function appOnlyApp() {
	const clientId = randomUUID();
	const secret = `app-secret-${randomUUID()}`;
	idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }], appRoles: ['SMTP.SendAsApp', 'IMAP.AccessAsApp'] });
	idp.grantMailbox({ tenant: TENANT, clientId, mailbox: MAILBOX });
	const credentials = {
		modernAuthMicrosoftAppOnlyApi: {
			id: `red${clientId.slice(0, 13)}`,
			name: 'echo app-only',
			data: {
				tenantId: TENANT,
				clientId,
				authType: 'secret',
				clientSecret: secret,
				cloud: 'custom',
				authorityHost: idp.authorityHost,
				exchangeHost: EXCHANGE,
				smtpServer: `127.0.0.1:${peer.port}`,
				imapServer: `127.0.0.1:${echoImap.port}`,
				mailbox: MAILBOX,
			},
		},
	};
	return { secret, credentials };
}

const sendParameters = (authentication: string) => ({ authentication, toEmail: 'someone@example.org', subject: 'echo', emailFormat: 'text', text: 'x' });

describe('redaction of tokens and encoded secrets', () => {
	it('an error quoting a secret as base64, base64url, hex, a Basic header or an XOAUTH2 SASL string shows ****', () => {
		const secret = `s3cr3t-${randomUUID()}`;
		const token = `eyJ0eXAiOiJKV1QifQ.${Buffer.from(randomUUID()).toString('base64url')}.${randomUUID()}`;
		const quoted = [
			Buffer.from(secret).toString('base64'),
			Buffer.from(`?${secret}`).toString('base64url'),
			Buffer.from(secret).toString('hex'),
			`Basic ${Buffer.from(`client-id:${secret}`).toString('base64')}`,
			sasl('robot@contoso.example', token),
			sasl('a@b.c', token),
		];
		for (const text of quoted) {
			const { message } = describeItemError(new Error(`server said: ${text} (end)`), [secret, token]);
			expect(message).toMatch(/^server said: .*\*\*\*\*.* \(end\)$/);
			expect(findCanaries({ secret, token }, { message })).toEqual([]);
		}
	});

	it('app-only: the token the provider handed out, echoed by the SMTP server (raw and inside SASL), is redacted in the error and in continueOnFail items', async () => {
		const { secret, credentials } = appOnlyApp();
		const thrown = await runNode({ type: 'modernAuthSendEmail', parameters: sendParameters('microsoftAppOnly'), items: [{ json: {} }], credentials });
		expect(tokensSeen.length).toBeGreaterThan(0);
		expect(thrown.error?.message).toMatch(/^Item 0: SMTP server refused the app-only OAuth token at 127\.0\.0\.1:\d+: 535 5\.7\.3 token \*\*\*\*/);
		const kept = await runNode({ type: 'modernAuthSendEmail', parameters: sendParameters('microsoftAppOnly'), items: [{ json: {} }, { json: {} }], credentials, onError: 'continueRegularOutput' });
		expect(kept.output.map((o) => (o.json.error as { code: string }).code)).toEqual(['SMTP_XOAUTH2_REJECTED', 'SMTP_XOAUTH2_REJECTED']);
		expect(peer.received).toHaveLength(0);
		const canaries = { secret, ...Object.fromEntries(tokensSeen.map((token, i) => [`token${i}`, token])) };
		expect(findCanaries(canaries, { thrown: JSON.stringify(thrown.run), kept: JSON.stringify(kept.run) })).toEqual([]);
	});

	it('delegated: a token refreshed in this execution (not the stored one) is redacted when the server echoes it', async () => {
		idp.setTokenLifetime(120); // shorter than the renewal margin: every execution refreshes
		try {
			const response = await fetch(idp.tokenEndpoint(TENANT), {
				method: 'POST',
				headers: { 'content-type': 'application/x-www-form-urlencoded' },
				body: new URLSearchParams({ grant_type: 'password', client_id: DELEGATED_APP, client_secret: DELEGATED_SECRET, username: USER, password: USER_PASSWORD, scope: SCOPE }),
			});
			const stored = (await response.json()) as { access_token: string; refresh_token: string };
			const store = new TestCredentialsHelper();
			const { error, run } = await runNode({
				type: 'modernAuthSendEmail',
				parameters: sendParameters('microsoftDelegated'),
				items: [{ json: {} }],
				credentialsHelper: store,
				credentials: {
					modernAuthMicrosoftDelegatedOAuth2Api: {
						id: `del${randomUUID().slice(0, 13)}`,
						name: 'Ann',
						data: {
							grantType: 'authorizationCode',
							clientId: DELEGATED_APP,
							clientSecret: DELEGATED_SECRET,
							authUrl: `${idp.authorityHost}/${TENANT}/oauth2/v2.0/authorize`,
							accessTokenUrl: idp.tokenEndpoint(TENANT),
							scope: SCOPE,
							authentication: 'body',
							cloud: 'custom',
							authorityHost: idp.authorityHost,
							tenant: TENANT,
							useFor: 'imapSmtp',
							mailbox: USER,
							smtpServer: `127.0.0.1:${peer.port}`,
							oauthTokenData: { ...stored, token_type: 'Bearer' },
						},
					},
				},
			});
			const fresh = tokensSeen.filter((token) => token !== stored.access_token);
			expect(fresh.length).toBeGreaterThan(0); // the server saw refreshed tokens only
			const rotated = (store.updates[store.updates.length - 1]?.data.oauthTokenData as { refresh_token?: string })?.refresh_token ?? '';
			expect(rotated).toBeTruthy();
			expect(error?.message).toMatch(/SMTP server refused the delegated OAuth token .*token \*\*\*\*/);
			const canaries = { DELEGATED_SECRET, rotated, stored: stored.access_token, ...Object.fromEntries(fresh.map((token, i) => [`fresh${i}`, token])) };
			expect(findCanaries(canaries, { run: JSON.stringify(run) })).toEqual([]);
		} finally {
			idp.setTokenLifetime(3600);
		}
	});

	it('folder picker (loadOptions getFolders): an IMAP server quoting the XOAUTH2 string gets a redacted, one-line error', async () => {
		const { secret, credentials } = appOnlyApp();
		echoImap.reset();
		const tokensBefore = idp.counts({ grantType: 'client_credentials' });
		const error = await runLoadOptions({ type: 'modernAuthReadMailbox', method: 'getFolders', parameters: { authentication: 'microsoftAppOnly' }, credentials }).then(
			() => undefined,
			(e: Error & { description?: string }) => e,
		);
		expect(echoImap.stats.connections).toBeGreaterThan(0);
		expect(idp.counts({ grantType: 'client_credentials' })).toBeGreaterThan(tokensBefore);
		const saslSent = echoImap.stats.commands.filter((line: string) => / AUTHENTICATE XOAUTH2 /i.test(line)).map((line: string) => line.split(' ').pop()!);
		expect(saslSent.length).toBeGreaterThan(0);
		const tokens = saslSent.map((b64: string) => /auth=Bearer ([^\x01]+)/.exec(Buffer.from(b64, 'base64').toString('utf8'))![1]);
		expect(error?.message).toMatch(/^IMAP sign-in refused at 127\.0\.0\.1:\d+ \(AUTHENTICATE failed\): .*\*\*\*\*/);
		const canaries = { secret, ...Object.fromEntries(tokens.map((token: string, i: number) => [`token${i}`, token])) };
		expect(findCanaries(canaries, { message: error!.message, description: String(error!.description ?? ''), stack: String(error!.stack ?? '') })).toEqual([]);
	});
});
