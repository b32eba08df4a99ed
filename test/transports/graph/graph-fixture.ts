import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';

import { appOnlyTokenProvider } from '../../../auth/app-only-token-provider';
import { type CloudEndpoints, resolveCloud } from '../../../auth/clouds';
import type { OutgoingMessage } from '../../../model/outgoing-message';
import { GraphSender, type GraphSenderOptions } from '../../../transports/graph/graph-sender';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeIdentity } = require('../../peers/fake-identity');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeGraph } = require('../../peers/fake-graph');

export const TENANT = '6f1c2b7e-3d4a-4c5b-9e8f-0a1b2c3d4e5f';
export const SENDER = 'robot@contoso.example';
export const RCPT = 'rcpt@contoso.example';
export const MB = 1024 * 1024;
const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000';

// The peers are plain JavaScript.
export type FakeGraph = any;
export type FakeIdentity = any;

export interface GraphFixture {
	graph: FakeGraph;
	idp: FakeIdentity;
	cloud: CloudEndpoints;
	clientId: string;
	secret: string;
	/** A sender the way the connection factory builds one: tokens from the cloud table, base URL its graphHost. */
	sender(options?: Partial<GraphSenderOptions>, credential?: { clientId: string; secret: string }): GraphSender;
	/** Another app registration with the same roles and mailbox grants (its own token cache). */
	addApp(): { clientId: string; secret: string };
	/** Token requests an app made for the Graph audience, counted at the identity platform. */
	graphTokenRequests(clientId?: string): number;
	close(): Promise<void>;
}

/**
 * The fake Graph and the fake identity, wired as production is: the Custom cloud's graphHost is
 * the fake Graph's URL, and tokens are asked for `<graphHost>/.default`. The identity knows that
 * URL as Graph's resource (as Entra knows a national cloud's Graph host), so the fake Graph's
 * audience check accepts the token. The identity starts after the Graph (it needs the URL), so the
 * Graph gets a handle that forwards to it.
 */
export async function startGraphFixture(options: { roles?: string[]; mailboxes?: Array<Record<string, unknown>>; graphOptions?: Record<string, unknown> } = {}): Promise<GraphFixture> {
	const pki = sharedTestPki();
	const started: { idp?: FakeIdentity } = {};
	const identity = {
		introspect: (...args: unknown[]) => started.idp.introspect(...args),
		get issuedTokens() {
			return started.idp.issuedTokens;
		},
	};
	const graph = await startFakeGraph({ identity, pki, ...options.graphOptions });
	const idp = (started.idp = await startFakeIdentity({ pki, resources: { [graph.url]: GRAPH_APP_ID } }));
	idp.addTenant({ id: TENANT, domains: ['contoso.example'] });
	const mailboxes = options.mailboxes ?? [{ address: SENDER, maxSendSize: 150 * MB }, { address: RCPT }];
	for (const mailbox of mailboxes) graph.addMailbox(mailbox);
	const addApp = () => {
		const app = { clientId: randomUUID(), secret: `secret-${randomUUID()}` };
		idp.addApp({ tenant: TENANT, clientId: app.clientId, secrets: [{ value: app.secret }], appRoles: options.roles ?? ['Mail.Send', 'Mail.ReadWrite'] });
		for (const mailbox of mailboxes) idp.grantMailbox({ tenant: TENANT, clientId: app.clientId, mailbox: mailbox.address });
		return app;
	};
	const { clientId, secret } = addApp();
	const cloud = resolveCloud('custom', { authorityHost: idp.authorityHost, graphHost: graph.url });
	const senders: GraphSender[] = [];
	return {
		graph,
		idp,
		cloud,
		clientId,
		secret,
		addApp,
		sender(overrides = {}, credential = { clientId, secret }) {
			const sender = new GraphSender({
				graphHost: cloud.graphHost,
				tokens: appOnlyTokenProvider({ tenantId: TENANT, clientId: credential.clientId, clientSecret: credential.secret, cloud }),
				mailbox: SENDER,
				// Retry-After is honoured at 1/20 of its length, so a "Retry-After: 1" costs 50 ms here.
				retry: { firstBackoffMs: 20, maxBackoffMs: 200, retryAfterScale: 0.05 },
				...overrides,
			});
			senders.push(sender);
			return sender;
		},
		graphTokenRequests: (app = clientId) => idp.counts({ clientId: app, scope: `${cloud.graphHost}/.default` }),
		async close() {
			await Promise.all(senders.map((s) => s.close()));
			await graph.close();
			await idp.close();
		},
	};
}

export function message(overrides: Partial<OutgoingMessage> = {}): OutgoingMessage {
	return {
		from: { address: SENDER },
		to: [{ address: RCPT }],
		cc: [],
		bcc: [],
		replyTo: [],
		subject: `graph ${randomUUID()}`,
		text: 'hello from graph',
		attachments: [],
		headers: [],
		priority: 'normal',
		...overrides,
	};
}

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/**
 * `size` bytes of random data as a stream produced on demand (never held whole), and its SHA-256
 * once the stream has been read to its end.
 */
export function randomStream(size: number): { stream: Readable; digest: () => string } {
	const hash = createHash('sha256');
	let left = size;
	let digest: string | undefined;
	const stream = new Readable({
		read() {
			if (left === 0) {
				digest = hash.digest('hex');
				this.push(null);
				return;
			}
			const chunk = randomBytes(Math.min(left, 256 * 1024));
			left -= chunk.length;
			hash.update(chunk);
			this.push(chunk);
		},
	});
	return {
		stream,
		digest: () => {
			if (digest === undefined) throw new Error('the stream was not read to its end');
			return digest;
		},
	};
}

/** Requests the fake Graph logged, as "METHOD path" (upload URLs shortened). */
export function requestLines(graph: FakeGraph): string[] {
	return graph.requests.map((r: { method: string; path: string }) => `${r.method} ${r.path.replace(/(Users|Messages|AttachmentSessions)\('[^']+'\)/g, "$1('…')").replace(/messages\/[^/]+/, 'messages/{id}')}`);
}
