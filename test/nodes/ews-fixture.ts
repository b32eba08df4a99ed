import { randomUUID } from 'node:crypto';

import type { ICredentialDataDecryptedObject } from 'n8n-workflow';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeEws } = require('../peers/fake-ews');

export const TENANT = '6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d';
export const EXCHANGE = 'https://outlook.office365.com';
/** The NTLM account's own mailbox, a shared one it has Full Access to, and one it may not open. */
export const ROBOT = 'robot@contoso.example';
export const SHARED = 'shared@contoso.example';
export const OTHER = 'other@contoso.example';
export const RECIPIENT = 'ann@contoso.example';
export const NTLM_USER = 'robot';
export const NTLM_DOMAIN = 'CONTOSO';
export const NTLM_PASSWORD = `Robot-${randomUUID().slice(0, 8)}-Passw0rd!`;
/** An Exchange Online user signing in with username and password (ROPC). */
export const DANA = 'dana@contoso.example';
export const DANA_PASSWORD = `Dana-${randomUUID().slice(0, 8)}-Passw0rd!`;

export type FakeIdentity = Awaited<ReturnType<typeof startFakeIdentity>>;
export type FakeEws = Awaited<ReturnType<typeof startFakeEws>>;

/** The fake identity platform and a fake on-premises-style EWS (NTLM, Basic, Bearer) that asks it about tokens. */
export async function startEwsPeers(options: { exchangeOnline?: boolean } = {}) {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `npm run test:unit` (test CA must be trusted)');
	const idp: FakeIdentity = await startFakeIdentity({ pki });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	const ews: FakeEws = await startFakeEws({ pki, identity: idp, audience: EXCHANGE, exchangeOnline: options.exchangeOnline ?? false });
	for (const address of [ROBOT, SHARED, OTHER, RECIPIENT]) ews.addMailbox({ address });
	ews.addUser({ username: NTLM_USER, domain: NTLM_DOMAIN, password: NTLM_PASSWORD, mailbox: ROBOT, delegateOf: [SHARED], sendAs: [SHARED] });
	// Dana's password lives in the identity platform (ROPC); the EWS side only knows her mailbox.
	ews.addMailbox({ address: DANA });
	ews.addUser({ username: 'dana', password: `unused-${randomUUID()}`, mailbox: DANA });
	idp.addUser({ tenant: TENANT, username: DANA, password: DANA_PASSWORD });
	return { pki, idp, ews };
}

export type EwsPeers = Awaited<ReturnType<typeof startEwsPeers>>;

export async function stopEwsPeers(peers: EwsPeers | undefined) {
	await peers?.ews.close();
	await peers?.idp.close();
}

type CredentialData = ICredentialDataDecryptedObject;

const credential = (id: string, data: CredentialData) => ({ modernAuthEwsApi: { id, name: 'Contoso EWS', data } });

/** NTLM as CONTOSO\robot against the fake server; `overrides` change or add fields. */
export function ntlmCredential(peers: EwsPeers, overrides: CredentialData = {}) {
	return credential(`ewsntlm${randomUUID().slice(0, 9)}`, {
		endpoint: 'url',
		url: peers.ews.url,
		ewsAuth: 'ntlm',
		username: NTLM_USER,
		password: NTLM_PASSWORD,
		domain: NTLM_DOMAIN,
		mailbox: '',
		allowedMailboxes: '',
		serverVersion: 'Exchange2013_SP1',
		caCertificate: '',
		allowUnauthorizedCerts: false,
		...overrides,
	});
}

/** An app registration with `roles` (default full_access_as_app) that Exchange lets impersonate `mailboxes`. */
export function registerEwsApp(peers: EwsPeers, options: { roles?: string[]; mailboxes?: string[] | '*'; grant?: boolean } = {}) {
	const clientId = randomUUID();
	const secret = `ews-app-secret-${randomUUID()}`;
	peers.idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }], appRoles: options.roles ?? ['full_access_as_app'] });
	if (options.grant !== false) {
		const mailboxes = options.mailboxes ?? [ROBOT];
		peers.ews.grantApp({ clientId, mailboxes });
		if (mailboxes !== '*') for (const mailbox of mailboxes) peers.idp.grantMailbox({ tenant: TENANT, clientId, mailbox });
	}
	return { clientId, secret };
}

export function appOnlyCredential(peers: EwsPeers, app: { clientId: string; secret: string }, overrides: CredentialData = {}) {
	return credential(`ewsapp${app.clientId.slice(0, 10)}`, {
		endpoint: 'url',
		url: peers.ews.url,
		ewsAuth: 'oauthAppOnly',
		tenantId: TENANT,
		clientId: app.clientId,
		authType: 'secret',
		clientSecret: app.secret,
		cloud: 'custom',
		authorityHost: peers.idp.authorityHost,
		exchangeHost: EXCHANGE,
		mailbox: ROBOT,
		allowedMailboxes: '',
		serverVersion: 'Exchange2013_SP1',
		...overrides,
	});
}

/** ROPC as Dana through an app registration with a client secret (its delegated Exchange scopes include EWS.AccessAsUser.All). */
export function ropcCredential(peers: EwsPeers, overrides: CredentialData = {}) {
	const clientId = randomUUID();
	const secret = `ews-ropc-secret-${randomUUID()}`;
	peers.idp.addApp({ tenant: TENANT, clientId, secrets: [{ value: secret }] });
	return {
		secret,
		credentials: credential(`ewsropc${clientId.slice(0, 9)}`, {
			endpoint: 'url',
			url: peers.ews.url,
			ewsAuth: 'oauthRopc',
			username: DANA,
			password: DANA_PASSWORD,
			tenantId: TENANT,
			clientId,
			clientSecret: secret,
			cloud: 'custom',
			authorityHost: peers.idp.authorityHost,
			exchangeHost: EXCHANGE,
			mailbox: '',
			serverVersion: 'Exchange2013_SP1',
			...overrides,
		}),
	};
}

/** Every access token the identity platform issued (none may show in any output). */
export const issuedTokens = (peers: EwsPeers): string[] => peers.idp.issuedTokens;

/** Token requests the identity platform received. */
export const tokenRequests = (peers: EwsPeers): number => peers.idp.counts();

/** A small MIME message as a sender outside would deliver it. */
export function rawMessage(options: { subject: string; from?: string; to?: string; body?: string; attachment?: { name: string; type: string; content: Buffer } }): Buffer {
	const boundary = `b-${randomUUID()}`;
	const head = [`From: ${options.from ?? 'Shop <shop@example.org>'}`, `To: ${options.to ?? ROBOT}`, `Subject: ${options.subject}`, `Message-ID: <${randomUUID()}@example.org>`, `Date: ${new Date().toUTCString()}`, 'MIME-Version: 1.0'];
	if (!options.attachment) return Buffer.from([...head, 'Content-Type: text/plain; charset=utf-8', '', options.body ?? 'hello', ''].join('\r\n'));
	const { name, type, content } = options.attachment;
	return Buffer.from(
		[
			...head,
			`Content-Type: multipart/mixed; boundary="${boundary}"`,
			'',
			`--${boundary}`,
			'Content-Type: text/plain; charset=utf-8',
			'',
			options.body ?? 'see attachment',
			`--${boundary}`,
			`Content-Type: ${type}; name="${name}"`,
			`Content-Disposition: attachment; filename="${name}"`,
			'Content-Transfer-Encoding: base64',
			'',
			content.toString('base64').replace(/.{76}/g, '$&\r\n'),
			`--${boundary}--`,
			'',
		].join('\r\n'),
	);
}
