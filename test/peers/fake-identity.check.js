'use strict';
// Self-check for the fake Microsoft identity platform: drives it with the real
// @azure/msal-node and asserts it behaves like Entra where our code depends on it.
// Run: node test/peers/fake-identity.check.js  (prints "N passed, M failed" last).
//
// msal-node 7 uses Node's built-in fetch, which only trusts extra CAs given in
// NODE_EXTRA_CA_CERTS at process start: so the script makes the PKI, then re-runs
// itself with that variable set and MAM_PKI_DIR pointing at the PKI to reuse.
const assert = require('node:assert/strict');
const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { createTestPki } = require('./certs');
const { createChecks } = require('./check-runner');

const pkiDir = process.env.MAM_PKI_DIR;
if (!pkiDir || process.env.NODE_EXTRA_CA_CERTS !== path.join(pkiDir, 'ca.pem')) {
	const pki = createTestPki();
	const child = spawnSync(process.execPath, [__filename], {
		stdio: 'inherit',
		env: { ...process.env, NODE_EXTRA_CA_CERTS: pki.caPath, MAM_PKI_DIR: pki.dir },
	});
	fs.rmSync(pki.dir, { recursive: true, force: true });
	process.exit(child.status ?? 1);
}

const msal = require('@azure/msal-node');
const { startFakeIdentity } = require('./fake-identity');

const TENANT = '6f1c2b7e-3d4a-4c5b-9e8f-0a1b2c3d4e5f';
const OTHER_TENANT = '11111111-2222-3333-4444-555555555555';
const OUTLOOK_APP_ONLY = 'https://outlook.office365.com/.default';
const DELEGATED = ['https://outlook.office.com/IMAP.AccessAsUser.All', 'https://outlook.office.com/SMTP.Send'];
const REDIRECT = 'http://localhost:5678/rest/oauth2-credential/callback';

const { check, counts } = createChecks({ stackLines: 4 });

/** Runs fn, which must throw; returns the error. */
async function rejects(fn) {
	try {
		await fn();
	} catch (error) {
		return error;
	}
	throw new Error('expected an error, got success');
}
const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
const sha256Hex = (pem) => crypto.createHash('sha256').update(new crypto.X509Certificate(pem).raw).digest('hex');
const sha1Hex = (pem) => crypto.createHash('sha1').update(new crypto.X509Certificate(pem).raw).digest('hex');

/** An app certificate and key like the ones users upload to Entra. */
function makeAppCert(name) {
	execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`], { cwd: pkiDir, stdio: ['ignore', 'ignore', 'pipe'] });
	return { pem: fs.readFileSync(path.join(pkiDir, `${name}.pem`), 'utf8'), key: fs.readFileSync(path.join(pkiDir, `${name}.key`), 'utf8') };
}

function refreshTokensIn(app) {
	return Object.values(JSON.parse(app.getTokenCache().serialize()).RefreshToken ?? {}).map((e) => e.secret);
}

async function main() {
	const read = (name) => fs.readFileSync(path.join(pkiDir, name), 'utf8');
	const pki = { ca: read('ca.pem'), cert: read('server.pem'), key: read('server.key') };
	const idp = await startFakeIdentity({ pki, port: 0 });
	const appCert = makeAppCert('app');
	const strayCert = makeAppCert('stray');

	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	idp.addTenant({ id: OTHER_TENANT, domains: ['fabrikam.example'] });
	const app = idp.addApp({
		tenant: TENANT,
		clientId: 'a0a0a0a0-1111-2222-3333-444444444444',
		secrets: [{ value: 'old~secret', expiresAt: Date.now() - 1000 }, { value: 'good~secret' }],
		certificates: [{ pem: appCert.pem }],
		consented: true,
		appRoles: ['SMTP.SendAsApp', 'IMAP.AccessAsApp', 'Mail.Send'],
		redirectUris: [REDIRECT],
	});
	const unconsented = idp.addApp({ tenant: TENANT, clientId: 'b0b0b0b0-1111-2222-3333-444444444444', secrets: ['s'], consented: false });
	idp.addUser({ tenant: TENANT, username: 'user@contoso.example', password: 'pw' });
	idp.addUser({ tenant: TENANT, username: 'mfa@contoso.example', password: 'pw', mfaRequired: true });
	idp.grantMailbox({ tenant: TENANT, clientId: app.clientId, mailbox: 'shared@contoso.example' });

	const cca = (auth, extra = {}) =>
		new msal.ConfidentialClientApplication({
			auth: { clientId: app.clientId, authority: `${idp.authorityHost}/${TENANT}`, knownAuthorities: [idp.host], ...auth },
			...extra,
		});
	const post = (url, form) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form) });

	try {
		let appOnlyToken;
		await check('client credentials with a secret; second call served from MSAL cache', async () => {
			const client = cca({ clientSecret: 'good~secret' });
			const before = idp.counts({ grantType: 'client_credentials' });
			const first = await client.acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] });
			assert.equal(idp.counts({ grantType: 'client_credentials' }), before + 1);
			const claims = claimsOf(first.accessToken);
			assert.equal(claims.aud, 'https://outlook.office365.com');
			assert.equal(claims.tid, TENANT);
			assert.equal(claims.appid, app.clientId);
			assert.equal(claims.idtyp, 'app');
			assert.deepEqual(claims.roles.sort(), ['IMAP.AccessAsApp', 'SMTP.SendAsApp']);
			const second = await client.acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] });
			assert.equal(second.accessToken, first.accessToken);
			assert.equal(second.fromCache, true);
			assert.equal(idp.counts({ grantType: 'client_credentials' }), before + 1);
			appOnlyToken = first.accessToken;
		});

		await check('graph app-only token carries only Graph roles', async () => {
			const result = await cca({ clientSecret: 'good~secret' }).acquireTokenByClientCredential({ scopes: ['https://graph.microsoft.com/.default'] });
			const claims = claimsOf(result.accessToken);
			assert.equal(claims.aud, 'https://graph.microsoft.com');
			assert.deepEqual(claims.roles, ['Mail.Send']);
		});

		await check('tenant by domain name works as authority', async () => {
			const client = cca({ clientSecret: 'good~secret', authority: `${idp.authorityHost}/contoso.example` });
			const result = await client.acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] });
			assert.equal(claimsOf(result.accessToken).tid, TENANT);
		});

		await check('introspection: app-only token opens only granted mailboxes', async () => {
			assert.equal(idp.introspect(appOnlyToken).active, false);
			const ok = idp.introspect(appOnlyToken, { audience: 'https://outlook.office.com', mailbox: 'shared@contoso.example', role: 'IMAP.AccessAsApp' });
			assert.equal(ok.active, true);
			assert.equal(ok.username, 'shared@contoso.example');
			assert.equal(idp.introspect(appOnlyToken, { mailbox: 'boss@contoso.example' }).active, false);
			assert.equal(idp.introspect(appOnlyToken, { audience: 'https://graph.microsoft.com', mailbox: 'shared@contoso.example' }).active, false);
			const tampered = appOnlyToken.slice(0, -4) + (appOnlyToken.endsWith('AAAA') ? 'BBBB' : 'AAAA');
			assert.equal(idp.introspect(tampered, { mailbox: 'shared@contoso.example' }).active, false);
			const http = await (await post(`${idp.introspectionUrl}?mailbox=shared@contoso.example`, { token: appOnlyToken })).json();
			assert.deepEqual([http.active, http.username], [true, 'shared@contoso.example']);
		});

		await check('client credentials with a certificate (PS256, x5t#S256, x5c)', async () => {
			const before = idp.counts({ grantType: 'client_credentials' });
			const client = cca({ clientCertificate: { thumbprintSha256: sha256Hex(appCert.pem), privateKey: appCert.key, x5c: appCert.pem } });
			const result = await client.acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] });
			assert.equal(claimsOf(result.accessToken).appid, app.clientId);
			assert.equal(idp.counts({ grantType: 'client_credentials' }), before + 1);
		});

		await check('client credentials with a certificate (RS256, SHA-1 x5t)', async () => {
			const client = cca({ clientCertificate: { thumbprint: sha1Hex(appCert.pem), privateKey: appCert.key } });
			const result = await client.acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] });
			assert.equal(claimsOf(result.accessToken).appid, app.clientId);
		});

		await check('wrong secret -> AADSTS7000215 (invalid_client)', async () => {
			const error = await rejects(() => cca({ clientSecret: 'secret-id-not-value' }).acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] }));
			assert.match(error.message, /AADSTS7000215/);
			assert.equal(error.errorCode, 'invalid_client');
		});

		await check('expired secret -> AADSTS7000222', async () => {
			const error = await rejects(() => cca({ clientSecret: 'old~secret' }).acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] }));
			assert.match(error.message, /AADSTS7000222/);
		});

		await check('unknown app in tenant -> AADSTS700016', async () => {
			const error = await rejects(() => cca({ clientId: 'c0c0c0c0-0000-0000-0000-000000000000', clientSecret: 'x' }).acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] }));
			assert.match(error.message, /AADSTS700016/);
		});

		await check('app without admin consent -> AADSTS65001', async () => {
			const error = await rejects(() => cca({ clientId: unconsented.clientId, clientSecret: 's' }).acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] }));
			assert.match(error.message, /AADSTS65001/);
		});

		await check('unknown tenant: discovery fails like Entra (endpoints_resolution_error); token endpoint says AADSTS90002', async () => {
			const bogus = '99999999-9999-9999-9999-999999999999';
			const discovery = await fetch(`${idp.authorityHost}/${bogus}/v2.0/.well-known/openid-configuration`);
			assert.equal(discovery.status, 400);
			assert.match((await discovery.json()).error_description, /^AADSTS90002/);
			const viaDiscovery = await rejects(() => cca({ clientSecret: 'good~secret', authority: `${idp.authorityHost}/${bogus}` }).acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] }));
			assert.equal(viaDiscovery.errorCode, 'endpoints_resolution_error');
			// with endpoints given up front (as for a known cloud) the token endpoint answers
			const metadata = JSON.stringify({
				token_endpoint: `${idp.authorityHost}/${bogus}/oauth2/v2.0/token`,
				authorization_endpoint: `${idp.authorityHost}/${bogus}/oauth2/v2.0/authorize`,
				issuer: `${idp.authorityHost}/${bogus}/v2.0`,
				jwks_uri: `${idp.authorityHost}/${bogus}/discovery/v2.0/keys`,
				end_session_endpoint: `${idp.authorityHost}/${bogus}/oauth2/v2.0/logout`,
			});
			const error = await rejects(() => cca({ clientSecret: 'good~secret', authority: `${idp.authorityHost}/${bogus}`, authorityMetadata: metadata }).acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] }));
			assert.match(error.message, /AADSTS90002/);
		});

		await check('certificate not registered -> AADSTS700027', async () => {
			const error = await rejects(() => cca({ clientCertificate: { thumbprintSha256: sha256Hex(strayCert.pem), privateKey: strayCert.key } }).acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] }));
			assert.match(error.message, /AADSTS700027/);
			assert.match(error.message, /The key was not found/);
		});

		await check('registered thumbprint signed with the wrong key -> AADSTS700027', async () => {
			const error = await rejects(() => cca({ clientCertificate: { thumbprintSha256: sha256Hex(appCert.pem), privateKey: strayCert.key } }).acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] }));
			assert.match(error.message, /AADSTS700027/);
			assert.match(error.message, /signature value did not match/);
		});

		await check('client credentials need a tenant: MSAL refuses organizations, Entra says AADSTS50059', async () => {
			const error = await rejects(() => cca({ clientSecret: 'good~secret', authority: `${idp.authorityHost}/organizations` }).acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] }));
			assert.equal(error.errorCode, 'missing_tenant_id_error');
			const response = await post(idp.tokenEndpoint('organizations'), { grant_type: 'client_credentials', client_id: app.clientId, client_secret: 'good~secret', scope: OUTLOOK_APP_ONLY });
			const body = await response.json();
			assert.equal(response.status, 400);
			assert.deepEqual(body.error_codes, [50059]);
		});

		await check('client credentials scope must end in /.default (AADSTS1002012)', async () => {
			const response = await post(idp.tokenEndpoint(TENANT), { grant_type: 'client_credentials', client_id: app.clientId, client_secret: 'good~secret', scope: 'https://outlook.office.com/SMTP.Send' });
			const body = await response.json();
			assert.equal(body.error, 'invalid_scope');
			assert.match(body.error_description, /^AADSTS1002012: .*\r\nTrace ID: .*\r\nCorrelation ID: .*\r\nTimestamp: /);
		});

		let firstRefreshToken;
		let delegatedToken;
		const codeClient = cca({ clientSecret: 'good~secret' });
		await check('authorization code with PKCE (auto-approved as login_hint)', async () => {
			const verifier = crypto.randomBytes(32).toString('base64url');
			const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
			const url = await codeClient.getAuthCodeUrl({ scopes: [...DELEGATED, 'offline_access'], redirectUri: REDIRECT, codeChallenge: challenge, codeChallengeMethod: 'S256', state: 'xyz', loginHint: 'user@contoso.example' });
			const response = await fetch(url, { redirect: 'manual' });
			assert.equal(response.status, 302);
			const location = new URL(response.headers.get('location'));
			assert.equal(location.searchParams.get('state'), 'xyz');
			const code = location.searchParams.get('code');
			const bad = await rejects(() => codeClient.acquireTokenByCode({ code, scopes: DELEGATED, redirectUri: REDIRECT, codeVerifier: 'wrong-verifier-wrong-verifier-wrong-verifier' }));
			assert.match(bad.message, /AADSTS501481/);
			// the fake checks the verifier before spending the code, so it can still be redeemed
			const result = await codeClient.acquireTokenByCode({ code, scopes: DELEGATED, redirectUri: REDIRECT, codeVerifier: verifier });
			const claims = claimsOf(result.accessToken);
			assert.equal(claims.aud, 'https://outlook.office.com');
			assert.equal(claims.scp, 'IMAP.AccessAsUser.All SMTP.Send');
			assert.equal(claims.upn, 'user@contoso.example');
			assert.equal(result.account.username, 'user@contoso.example');
			const again = await rejects(() => codeClient.acquireTokenByCode({ code, scopes: DELEGATED, redirectUri: REDIRECT, codeVerifier: verifier }));
			assert.match(again.message, /AADSTS54005/);
			[firstRefreshToken] = refreshTokensIn(codeClient);
			assert.ok(firstRefreshToken, 'a refresh token in the MSAL cache');
			delegatedToken = result.accessToken;
		});

		await check('introspection: delegated token opens its own mailbox only', async () => {
			assert.equal(idp.introspect(delegatedToken).username, 'user@contoso.example');
			assert.equal(idp.introspect(delegatedToken, { mailbox: 'USER@contoso.example', scope: 'SMTP.Send' }).active, true);
			assert.equal(idp.introspect(delegatedToken, { mailbox: 'shared@contoso.example' }).active, false);
			assert.equal(idp.introspect(delegatedToken, { scope: 'Mail.Send' }).active, false);
			const body = await (await post(`${idp.authorityHost}/introspect`, { token: delegatedToken })).json();
			assert.deepEqual([body.active, body.username, body.aud], [true, 'user@contoso.example', 'https://outlook.office.com']);
		});

		await check('propagation knob: a fresh grant is refused pendingTries times, then passes', async () => {
			const mailbox = 'new-grant@contoso.example';
			const want = { audience: 'https://outlook.office.com', mailbox, role: 'IMAP.AccessAsApp' };
			assert.equal(idp.introspect(appOnlyToken, want).reason, `app ${app.clientId} has no permission on ${mailbox}`);
			idp.grantMailbox({ tenant: TENANT, clientId: app.clientId, mailbox, pendingTries: 2 });
			const reasons = [1, 2, 3, 4].map(() => idp.introspect(appOnlyToken, want).reason ?? 'active');
			assert.deepEqual(reasons, ['permission still propagating', 'permission still propagating', 'active', 'active']);
			// a refusal for another cause spends no pending try
			idp.grantMailbox({ tenant: TENANT, clientId: app.clientId, mailbox, pendingTries: 1 });
			assert.equal(idp.introspect(appOnlyToken, { ...want, role: 'POP.AccessAsApp' }).reason, 'missing role POP.AccessAsApp');
			assert.equal(idp.introspect(appOnlyToken, want).reason, 'permission still propagating');
			assert.equal(idp.introspect(appOnlyToken, want).active, true);
			// delegated access to another user's mailbox propagates the same way
			idp.grantMailbox({ tenant: TENANT, username: 'user@contoso.example', mailbox: 'team@contoso.example', pendingTries: 1 });
			const team = { mailbox: 'team@contoso.example', scope: 'IMAP.AccessAsUser.All' };
			assert.deepEqual([idp.introspect(delegatedToken, team).reason, idp.introspect(delegatedToken, team).active], ['permission still propagating', true]);
			// over HTTP as Dovecot asks
			idp.grantMailbox({ tenant: TENANT, clientId: app.clientId, mailbox, pendingTries: 1 });
			const url = `${idp.introspectionUrl}?mailbox=${mailbox}&audience=https://outlook.office.com&required_role=IMAP.AccessAsApp&required_scope=IMAP.AccessAsUser.All`;
			const answers = [];
			for (let i = 0; i < 2; i++) answers.push((await (await post(url, { token: appOnlyToken })).json()).active);
			assert.deepEqual(answers, [false, true]);
		});

		await check('propagation knob: an app role refused rolesPendingTries times after consent', async () => {
			const fresh = idp.addApp({ tenant: TENANT, secrets: ['fresh~secret'], appRoles: ['SMTP.SendAsApp'], rolesPendingTries: 2 });
			idp.grantMailbox({ tenant: TENANT, clientId: fresh.clientId, mailbox: 'shared@contoso.example' });
			const result = await cca({ clientId: fresh.clientId, clientSecret: 'fresh~secret' }).acquireTokenByClientCredential({ scopes: [OUTLOOK_APP_ONLY] });
			const want = { audience: 'https://outlook.office.com', mailbox: 'shared@contoso.example', role: 'SMTP.SendAsApp' };
			const actives = [1, 2, 3].map(() => idp.introspect(result.accessToken, want).active);
			assert.deepEqual(actives, [false, false, true]);
		});

		await check('protocol knob: IMAP / SMTP switched off for one mailbox refuse that protocol only', async () => {
			const mailbox = 'shared@contoso.example';
			const imap = { audience: 'https://outlook.office.com', mailbox, role: 'IMAP.AccessAsApp' };
			const smtp = { ...imap, role: 'SMTP.SendAsApp' };
			idp.disableProtocol(mailbox, 'imap');
			try {
				assert.equal(idp.introspect(appOnlyToken, imap).reason, `imap disabled for ${mailbox}`);
				assert.equal(idp.introspect(appOnlyToken, smtp).active, true);
				assert.equal(idp.introspect(appOnlyToken, { ...imap, mailbox: 'new-grant@contoso.example' }).active, true);
				// Dovecot's request names both permissions; the app-only token is judged by the role
				const url = `${idp.introspectionUrl}?mailbox=${mailbox}&audience=https://outlook.office.com&required_role=IMAP.AccessAsApp&required_scope=IMAP.AccessAsUser.All`;
				const body = await (await post(url, { token: appOnlyToken })).json();
				assert.deepEqual([body.active, body.reason], [false, `imap disabled for ${mailbox}`]);
			} finally {
				idp.enableProtocol(mailbox, 'imap');
			}
			assert.equal(idp.introspect(appOnlyToken, imap).active, true);
			idp.disableProtocol('user@contoso.example', 'smtp');
			try {
				assert.equal(idp.introspect(delegatedToken, { mailbox: 'user@contoso.example', scope: 'SMTP.Send' }).reason, 'smtp disabled for user@contoso.example');
				assert.equal(idp.introspect(delegatedToken, { mailbox: 'user@contoso.example', scope: 'IMAP.AccessAsUser.All' }).active, true);
			} finally {
				idp.enableProtocol('user@contoso.example', 'smtp');
			}
			assert.equal(idp.introspect(delegatedToken, { mailbox: 'user@contoso.example', scope: 'SMTP.Send' }).active, true);
			assert.throws(() => idp.disableProtocol(mailbox, 'gopher'), /unknown protocol/);
		});

		await check('refresh token: rotation, old one refused, redeemable for Graph, revocable', async () => {
			const client = cca({ clientSecret: 'good~secret' });
			const before = idp.counts({ grantType: 'refresh_token' });
			const refreshed = await client.acquireTokenByRefreshToken({ refreshToken: firstRefreshToken, scopes: DELEGATED, forceCache: true });
			assert.equal(claimsOf(refreshed.accessToken).scp, 'IMAP.AccessAsUser.All SMTP.Send');
			const [second] = refreshTokensIn(client);
			assert.ok(second && second !== firstRefreshToken, 'a new refresh token');
			const reused = await rejects(() => client.acquireTokenByRefreshToken({ refreshToken: firstRefreshToken, scopes: DELEGATED }));
			assert.equal(reused.errorCode, 'invalid_grant');
			assert.match(reused.message, /AADSTS70008/);
			const graph = await client.acquireTokenByRefreshToken({ refreshToken: second, scopes: ['https://graph.microsoft.com/Mail.Send'], forceCache: true });
			const graphClaims = claimsOf(graph.accessToken);
			assert.deepEqual([graphClaims.aud, graphClaims.scp], ['https://graph.microsoft.com', 'Mail.Send']);
			const third = refreshTokensIn(client).find((t) => t !== second);
			assert.ok(third);
			assert.equal(idp.counts({ grantType: 'refresh_token' }), before + 3);
			assert.equal(idp.revokeRefreshTokens({ username: 'user@contoso.example' }) >= 1, true);
			const revoked = await rejects(() => client.acquireTokenByRefreshToken({ refreshToken: third, scopes: DELEGATED }));
			assert.equal(revoked.errorCode, 'invalid_grant');
			assert.match(revoked.message, /AADSTS50173/);
		});

		await check('password grant (ROPC): success, AADSTS50126, AADSTS50076', async () => {
			const client = cca({ clientSecret: 'good~secret' });
			const ok = await client.acquireTokenByUsernamePassword({ username: 'user@contoso.example', password: 'pw', scopes: DELEGATED });
			assert.equal(claimsOf(ok.accessToken).upn, 'user@contoso.example');
			const wrong = await rejects(() => client.acquireTokenByUsernamePassword({ username: 'user@contoso.example', password: 'nope', scopes: DELEGATED }));
			assert.match(wrong.message, /AADSTS50126/);
			const mfa = await rejects(() => client.acquireTokenByUsernamePassword({ username: 'mfa@contoso.example', password: 'pw', scopes: DELEGATED }));
			assert.match(mfa.message, /AADSTS50076/);
		});

		await check('token lifetime is configurable and expiry is enforced by introspection', async () => {
			idp.setTokenLifetime(1);
			const response = await post(idp.tokenEndpoint(TENANT), { grant_type: 'client_credentials', client_id: app.clientId, client_secret: 'good~secret', scope: OUTLOOK_APP_ONLY });
			const body = await response.json();
			idp.setTokenLifetime(3600);
			assert.deepEqual([body.token_type, body.expires_in, body.ext_expires_in], ['Bearer', 1, 1]);
			assert.equal(idp.introspect(body.access_token, { mailbox: 'shared@contoso.example' }).active, true);
			await new Promise((resolve) => setTimeout(resolve, 2100));
			assert.equal(idp.introspect(body.access_token, { mailbox: 'shared@contoso.example' }).reason, 'token expired');
		});

		await check('JWKS serves the key access tokens are signed with', async () => {
			const jwks = await (await fetch(idp.jwksUri(TENANT))).json();
			const [header, payload, signature] = appOnlyToken.split('.');
			const kid = JSON.parse(Buffer.from(header, 'base64url')).kid;
			const key = crypto.createPublicKey({ key: jwks.keys.find((k) => k.kid === kid), format: 'jwk' });
			assert.ok(crypto.verify('sha256', Buffer.from(`${header}.${payload}`), key, Buffer.from(signature, 'base64url')));
		});
	} finally {
		await idp.close();
	}
}

main()
	.catch((error) => {
		counts.failed++;
		console.log(`not ok - harness: ${error.stack ?? error}`);
	})
	.finally(() => {
		console.log(`${counts.passed} passed, ${counts.failed} failed`);
		process.exitCode = counts.failed ? 1 : 0;
	});
