import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';

import { runChecks, type CheckResult, type DiagnoseOptions } from '../../diagnostics/checks';
import type { ConnectionHooks, ConnectionKind, CredentialData } from '../../connections/connection';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startDovecot } = require('../peers/dovecot');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeGraph } = require('../peers/fake-graph');

/**
 * Microsoft 365 as the checks meet it, all local: the fake identity platform (Entra), Dovecot
 * asking it about every XOAUTH2 token as Exchange's IMAP does, and an SMTP peer doing the same
 * for SMTP AUTH. Password users live on the same peers.
 */
export const TENANT = '3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f';
export const MAILBOX = 'robot@contoso.example';
export const USER = 'ann@contoso.example';
const USER_PASSWORD = 'Ann-Passw0rd-Exchange!';
export const PASSWORD_USER = 'mailer@example.com';
export const PASSWORD = 'Mailer-Secret-987';
const DELEGATED_APP = '7e6d5c4b-3a29-4f18-9e07-d6c5b4a39281';
const DELEGATED_SECRET = `delegated-${randomUUID()}`;
const EXCHANGE = 'https://outlook.office365.com';
/** Microsoft Graph's application id, as the fake identity platform knows the Graph resource. */
const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000';

export interface Peers {
	pki: { ca: string; trustedByProcess: boolean };
	idp: Awaited<ReturnType<typeof startFakeIdentity>>;
	dovecot: Awaited<ReturnType<typeof startDovecot>>;
	smtp: Awaited<ReturnType<typeof startSmtpPeer>>;
	/** Only for the app reading its own registration (the client secret's expiry). */
	graph: Awaited<ReturnType<typeof startFakeGraph>>;
	graphHost: string;
}

const mime = async (to: string, subject: string) =>
	(await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({ from: 'sender@example.org', to, subject, text: subject })).message as Buffer;

export async function startPeers(): Promise<Peers> {
	const pki = sharedTestPki();
	if (!pki.trustedByProcess) throw new Error('Run these tests with `node scripts/jest.js` (the test CA must be trusted at start)');
	const graphPort = await closedPort();
	const graphHost = `https://127.0.0.1:${graphPort}`;
	const idp = await startFakeIdentity({ pki, resources: { [graphHost]: GRAPH_APP_ID } });
	const graph = await startFakeGraph({ identity: idp, pki, port: graphPort });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	idp.addApp({ tenant: TENANT, clientId: DELEGATED_APP, secrets: [{ value: DELEGATED_SECRET }] });
	idp.addUser({ tenant: TENANT, username: USER, password: USER_PASSWORD });
	const dovecot = await startDovecot({ pki, users: { [PASSWORD_USER]: PASSWORD }, oauth2: { introspectionUrl: idp.introspectionUrl, mailboxes: [MAILBOX, USER] } });
	for (const subject of ['First', 'Second', 'Third']) await dovecot.deliver(MAILBOX, await mime(MAILBOX, subject));
	await dovecot.deliver(USER, await mime(USER, 'For Ann'));
	await dovecot.deliver(PASSWORD_USER, await mime(PASSWORD_USER, 'For the mailer'));
	const smtp = await startSmtpPeer({
		pki,
		users: { [PASSWORD_USER]: PASSWORD },
		// Exchange's SMTP AUTH: a token for its audience with SMTP.SendAsApp (app) or SMTP.Send (user), for a mailbox it may use.
		validateBearer: (token: string, user: string) => idp.introspect(token, { audience: EXCHANGE, mailbox: user, role: 'SMTP.SendAsApp', scope: 'SMTP.Send' }).active,
		// Local delivery: mail for a Dovecot mailbox lands in it (the round trip reads it back).
		onMessage: async (message: { envelope: { to: string[] }; raw: Buffer }) => {
			for (const to of message.envelope.to) if ([MAILBOX, USER, PASSWORD_USER].includes(to.toLowerCase())) await dovecot.deliver(to.toLowerCase(), message.raw);
		},
	});
	return { pki, idp, dovecot, smtp, graph, graphHost };
}

export async function stopPeers(peers?: Partial<Peers>) {
	await peers?.smtp?.close();
	await peers?.graph?.close();
	await peers?.dovecot?.stop();
	await peers?.idp?.close();
}

/** An app registration with a secret; `grant` is Exchange's New-ServicePrincipal + Add-MailboxPermission. */
export function appOnly(peers: Peers, options: { roles?: string[]; grant?: boolean; pendingTries?: number; certificate?: boolean } = {}) {
	const clientId = randomUUID();
	const secret = `secret-${randomUUID()}`;
	const certificate = options.certificate ? selfSignedAppCertificate() : undefined;
	peers.idp.addApp({
		tenant: TENANT,
		clientId,
		secrets: [{ value: secret }],
		certificates: certificate ? [{ pem: certificate.certificatePem }] : [],
		appRoles: options.roles ?? ['IMAP.AccessAsApp', 'SMTP.SendAsApp', 'Application.Read.All'],
	});
	if (options.grant !== false) peers.idp.grantMailbox({ tenant: TENANT, clientId, mailbox: MAILBOX, pendingTries: options.pendingTries ?? 0 });
	const data = (overrides: CredentialData = {}): CredentialData => ({
		tenantId: TENANT,
		clientId,
		authType: 'secret',
		clientSecret: secret,
		cloud: 'custom',
		authorityHost: peers.idp.authorityHost,
		exchangeHost: EXCHANGE,
		graphHost: peers.graphHost,
		imapServer: `${peers.dovecot.host}:${peers.dovecot.tlsPort}`,
		smtpServer: `${peers.smtp.host}:${peers.smtp.port}`,
		mailbox: MAILBOX,
		...(certificate ? { authType: 'certificate', clientSecret: '', ...certificate } : {}),
		...overrides,
	});
	return { clientId, secret, data };
}

/** Ann's connected account (the tokens n8n stores after Connect my account), for the given scopes. */
export async function delegated(peers: Peers, scope: string, overrides: CredentialData = {}) {
	const response = await fetch(peers.idp.tokenEndpoint(TENANT), {
		method: 'POST',
		headers: { 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({ grant_type: 'password', client_id: DELEGATED_APP, client_secret: DELEGATED_SECRET, username: USER, password: USER_PASSWORD, scope }),
	});
	if (response.status !== 200) throw new Error(`fake identity refused the password grant: ${response.status}`);
	const tokens = (await response.json()) as { access_token: string; refresh_token: string };
	const data: CredentialData = {
		grantType: 'authorizationCode',
		clientId: DELEGATED_APP,
		clientSecret: DELEGATED_SECRET,
		authUrl: `${peers.idp.authorityHost}/${TENANT}/oauth2/v2.0/authorize`,
		accessTokenUrl: peers.idp.tokenEndpoint(TENANT),
		scope,
		authentication: 'body',
		cloud: 'custom',
		authorityHost: peers.idp.authorityHost,
		tenant: TENANT,
		useFor: 'imapSmtp',
		mailbox: '',
		imapServer: `${peers.dovecot.host}:${peers.dovecot.tlsPort}`,
		smtpServer: `${peers.smtp.host}:${peers.smtp.port}`,
		oauthTokenData: { ...tokens, token_type: 'Bearer' },
		...overrides,
	};
	return { tokens, data, secrets: [DELEGATED_SECRET, tokens.access_token, tokens.refresh_token] };
}

/** Opens the kind's connection, builds its checks for `options` and runs them as the Test Connection node does. */
export async function diagnose(kind: ConnectionKind, data: CredentialData, options: Partial<DiagnoseOptions> = {}, hooks: ConnectionHooks = n8nRefresh(data)) {
	const connection = await kind.open(data, hooks);
	const started = Date.now();
	const results = await runChecks(await connection.checks({ protocol: kind.protocols[0], mailbox: '', ...options }), { secrets: connection.secrets });
	return { results, durationMs: Date.now() - started, secrets: connection.secrets, at: at(results) };
}

/**
 * What n8n does for an OAuth2 credential inside a workflow: redeems the stored refresh token
 * at the credential's token URL (and would store the rotated one).
 */
export function n8nRefresh(data: CredentialData): ConnectionHooks {
	const stored = data.oauthTokenData as { refresh_token?: string } | undefined;
	if (!stored?.refresh_token) return {};
	let refreshToken = stored.refresh_token;
	return {
		refreshDelegated: async () => {
			const response = await fetch(String(data.accessTokenUrl), {
				method: 'POST',
				headers: { 'content-type': 'application/x-www-form-urlencoded' },
				body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: String(data.clientId), client_secret: String(data.clientSecret), scope: String(data.scope) }),
			});
			const tokens = (await response.json()) as { access_token?: string; refresh_token?: string };
			if (!tokens.access_token) throw new Error(`refresh refused: ${response.status}`);
			refreshToken = tokens.refresh_token ?? refreshToken;
			return tokens.access_token;
		},
	};
}

/** The result of `step` (and target, when given); fails the test when there is none. */
export const at = (results: CheckResult[]) => (step: string, target?: string) => {
	const found = results.find((r) => r.step === step && (target === undefined || r.target === target));
	if (!found) throw new Error(`no ${step}${target ? ` ${target}` : ''} result in ${results.map((r) => `${r.step}:${r.target}`).join(', ')}`);
	return found;
};

export const statuses = (results: CheckResult[]) => results.map((r) => `${r.step}:${r.status}`);

/** An app's own certificate and key (what an admin uploads to the app registration), valid 90 days. */
function selfSignedAppCertificate() {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h3-app-cert-'));
	execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'k.pem', '-out', 'c.pem', '-days', '90', '-subj', '/CN=n8n diagnostics app'], { cwd: dir, stdio: 'ignore' });
	const pem = { certificatePem: fs.readFileSync(path.join(dir, 'c.pem'), 'utf8'), privateKeyPem: fs.readFileSync(path.join(dir, 'k.pem'), 'utf8') };
	fs.rmSync(dir, { recursive: true, force: true });
	return pem;
}

/** A TCP port nothing listens on (bound, then closed again). */
export async function closedPort(): Promise<number> {
	const server = net.createServer();
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	const { port } = server.address() as net.AddressInfo;
	await new Promise((resolve) => server.close(resolve));
	return port;
}

/** A server that accepts TCP and never says a word (a firewall's tarpit, a hung server). */
export async function stalledServer() {
	const sockets = new Set<net.Socket>();
	const server = net.createServer((socket) => {
		sockets.add(socket);
		socket.on('error', () => {});
		socket.on('close', () => sockets.delete(socket));
	});
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	return {
		port: (server.address() as net.AddressInfo).port,
		close: async () => {
			for (const socket of sockets) socket.destroy();
			await new Promise((resolve) => server.close(resolve));
		},
	};
}
