/**
 * What the Graph benchmarks share: a test CA the process trusts from its start (MSAL and fetch
 * read NODE_EXTRA_CA_CERTS only then), the fake identity platform with one app-only
 * registration, the credential our connection factory reads, the token the baselines use, and
 * the side-by-side table.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { ROOT } from './paths';

/* eslint-disable @typescript-eslint/no-require-imports */
const { createTestPki, loadTestPki } = require(path.join(ROOT, 'test/peers/certs.js'));
const { startFakeIdentity } = require(path.join(ROOT, 'test/peers/fake-identity.js'));
/* eslint-enable @typescript-eslint/no-require-imports */

export interface Pki {
	dir: string;
	caPath: string;
	ca: string;
	cert: string;
	key: string;
}

const PKI_ENV = 'BENCH_GRAPH_PKI_DIR';

/**
 * The PKI this process trusts. On first entry it makes one, runs this same script again with
 * NODE_EXTRA_CA_CERTS pointing at it, and exits with that run's status (returns nothing).
 */
export function trustedPki(): Pki | undefined {
	const dir = process.env[PKI_ENV];
	if (dir && process.env.NODE_EXTRA_CA_CERTS === path.join(dir, 'ca.pem')) return loadTestPki(dir);
	const fresh = fs.mkdtempSync(path.join(os.tmpdir(), 'mam-bench-pki-'));
	createTestPki(fresh);
	const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
		stdio: 'inherit',
		env: { ...process.env, [PKI_ENV]: fresh, NODE_EXTRA_CA_CERTS: path.join(fresh, 'ca.pem') },
	});
	fs.rmSync(fresh, { recursive: true, force: true });
	process.exit(child.status ?? 1);
}

export const TENANT = '6f5e4d3c-2b1a-4f0e-9d8c-7b6a5f4e3d2c';
export const APP = '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d';
export const APP_SECRET = 'bench-graph-app-secret-value';
export const MAILBOX = 'robot@contoso.example';

export interface Identity {
	authorityHost: string;
	tokenEndpoint(tenant: string): string;
	counts(filter?: Record<string, unknown>): number;
	introspect(token: string, expected: Record<string, unknown>): Record<string, unknown>;
	close(): Promise<void>;
}

const GRAPH_RESOURCE_APP = '00000003-0000-0000-c000-000000000000';

/** The fake Entra with one app that has Graph Mail.Send / Mail.ReadWrite on MAILBOX; `graphUrl` is Graph's resource too. */
export async function startBenchIdentity(pki: Pki, graphUrl: string): Promise<Identity> {
	const idp = await startFakeIdentity({ pki, resources: { [graphUrl]: GRAPH_RESOURCE_APP } });
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	idp.addApp({ tenant: TENANT, clientId: APP, secrets: [{ value: APP_SECRET }], appRoles: ['Mail.Send', 'Mail.ReadWrite'] });
	idp.grantMailbox({ tenant: TENANT, clientId: APP, mailbox: MAILBOX });
	return idp;
}

/** The app-only credential as n8n stores it, pointed at the fakes through the Custom cloud. */
export function appOnlyCredentialData(authorityHost: string, graphHost: string): Record<string, unknown> {
	return {
		tenantId: TENANT,
		clientId: APP,
		authType: 'secret',
		clientSecret: APP_SECRET,
		cloud: 'custom',
		authorityHost,
		exchangeHost: 'https://outlook.office365.com',
		graphHost,
		mailbox: MAILBOX,
	};
}

/** One client-credentials token for Graph, as n8n's Entra credential caches it for a baseline run. */
export async function baselineToken(tokenEndpoint: string): Promise<string> {
	const response = await fetch(tokenEndpoint, {
		method: 'POST',
		headers: { 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({
			grant_type: 'client_credentials',
			client_id: APP,
			client_secret: APP_SECRET,
			scope: 'https://graph.microsoft.com/.default',
		}),
	});
	const body = (await response.json()) as { access_token?: string };
	if (!body.access_token) throw new Error(`baseline token request failed: ${response.status} ${JSON.stringify(body)}`);
	return body.access_token;
}

/** Token requests this app made (client credentials, answered 200). */
export const tokenRequests = (idp: Identity) => idp.counts({ grantType: 'client_credentials', clientId: APP, status: 200 });

export const intEnv = (name: string, fallback: number) => {
	const value = Number(process.env[name]);
	return Number.isInteger(value) && value > 0 ? value : fallback;
};
export const mb = (bytes: number) => bytes / 1024 / 1024;
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits the Retry-After a throttled answer asks for (seconds, possibly fractional), else `fallbackMs`. */
export function retryAfterMs(response: Response, fallbackMs: number): number {
	const seconds = Number(response.headers.get('retry-after'));
	return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : fallbackMs;
}

/** Prints rows as an aligned table, header first. */
export function printTable(header: string[], rows: string[][]): void {
	const widths = header.map((h, c) => Math.max(h.length, ...rows.map((line) => line[c].length)));
	const format = (line: string[]) => line.map((v, c) => v.padEnd(widths[c])).join(' | ');
	console.log('');
	console.log(format(header));
	console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
	for (const line of rows) console.log(format(line));
	console.log('');
}

export const verdict = (ok: boolean) => (ok ? 'met' : 'NOT MET');

/** Writes the machine-readable result next to the other benchmarks' ones. */
export function writeReport(name: string, report: Record<string, unknown>): string {
	const outDir = path.join(ROOT, '.cache', 'bench');
	fs.mkdirSync(outDir, { recursive: true });
	const outFile = path.join(outDir, `${name}.json`);
	fs.writeFileSync(outFile, JSON.stringify({ generatedAt: new Date().toISOString(), node: process.version, cpus: os.cpus().length, loadAverage: os.loadavg(), ...report }, null, 2) + '\n');
	return path.relative(ROOT, outFile);
}
