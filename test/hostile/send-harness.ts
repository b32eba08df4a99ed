/**
 * Shared plumbing for the hostile-input send properties: a real SMTP peer, one Send Email run
 * per batch of generated cases (continueOnFail, so bad items sit among good ones), and the
 * peer's messages parsed with mailparser and matched to their item by an X-Case header.
 *
 * Cases come from fast-check's fc.sample with a fixed seed rather than fc.assert: a node run
 * per case would cost seconds each, one run for the whole batch costs one. There is no
 * shrinking, so a failure names the seed (MAM_HOSTILE_SEED replays it) and the whole case.
 */
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import type { IDataObject } from 'n8n-workflow';
import { domainToASCII } from 'node:url';

import { runNode, type InputItem, type RunNodeResult } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const { record } = require('../harness/reliability');

export type Peer = Awaited<ReturnType<typeof startSmtpPeer>>;

const PASSWORD = 'Hostile-Input-Passw0rd';

/** Fixed unless MAM_HOSTILE_SEED says otherwise, so CI runs the same cases every time. */
export function seedFor(property: string): number {
	const fromEnv = Number(process.env.MAM_HOSTILE_SEED);
	if (Number.isInteger(fromEnv)) return fromEnv;
	let hash = 0;
	for (const char of property) hash = (hash * 31 + char.charCodeAt(0)) | 0;
	return hash;
}

export async function startPeer(options: { maxSize?: number } = {}): Promise<Peer> {
	return startSmtpPeer({ pki: createTestPki(), users: { robot: PASSWORD }, authOptional: false, allowInsecureAuth: true, disableStartTls: true, ...options });
}

export function smtpCredential(peer: Peer) {
	return {
		modernAuthSmtpApi: {
			id: 'smtpHostile00001',
			name: 'Hostile SMTP',
			data: {
				host: peer.host,
				port: peer.port,
				security: 'none',
				allowUnencrypted: true,
				user: 'robot',
				password: PASSWORD,
				fromAddress: 'Robot <robot@example.com>',
			},
		},
	};
}

/** Every field comes from the item, so one run carries many different cases. */
export const PER_ITEM_PARAMETERS = {
	authentication: 'smtp',
	fromEmail: '={{ $json.from }}',
	toEmail: '={{ $json.to }}',
	subject: '={{ $json.subject }}',
	emailFormat: '={{ $json.format }}',
	text: '={{ $json.text }}',
	html: '={{ $json.html }}',
	options: {
		ccEmail: '={{ $json.cc }}',
		bccEmail: '={{ $json.bcc }}',
		replyTo: '={{ $json.replyTo }}',
		attachments: '={{ $json.attachments }}',
		maxAttachmentSizeMb: 0,
		maxConnections: 2,
		customHeaders: {
			header: [
				{ name: 'X-Case', value: '={{ $json.caseId }}' },
				{ name: 'X-Note', value: '={{ $json.note }}' },
			],
		},
	},
};

export interface Delivered {
	mail: ParsedMail;
	envelope: { from: string; to: string[] };
	raw: Buffer;
}

export interface BatchResult {
	run: RunNodeResult;
	/** Peer messages by X-Case; a case delivered twice shows up as an array of length 2. */
	delivered: Map<string, Delivered[]>;
	/** Messages the peer holds that carry no X-Case of this batch (must stay empty). */
	strays: Delivered[];
}

export async function runBatch(peer: Peer, items: InputItem[], parameters: IDataObject = PER_ITEM_PARAMETERS): Promise<BatchResult> {
	peer.reset();
	const run = await runNode({
		type: 'modernAuthSendEmail',
		parameters,
		items,
		credentials: smtpCredential(peer),
		onError: 'continueRegularOutput',
	});
	const delivered = new Map<string, Delivered[]>();
	const strays: Delivered[] = [];
	for (const message of peer.received as Array<{ raw: Buffer; envelope: Delivered['envelope'] }>) {
		const mail = await simpleParser(unfoldHeaders(message.raw));
		const entry = { mail, envelope: message.envelope, raw: message.raw };
		// read from the wire, not from mailparser, which gives up on some huge header blocks
		const caseId = headerLines(message.raw).find((line) => /^x-case:/i.test(line))?.replace(/^x-case:\s*/i, '') ?? '';
		if (!caseId) strays.push(entry);
		else delivered.set(caseId, [...(delivered.get(caseId) ?? []), entry]);
	}
	return { run, delivered, strays };
}

/**
 * RFC 5322 unfolding (remove each CRLF that precedes a space or tab) in every header block of
 * the message, top level and MIME parts. mailparser's own unfolding also eats the whitespace
 * after a fold, which would blame nodemailer's correct folding for lost spaces. A header
 * block starts the message and follows each boundary line ("--..."); generated bodies never
 * start a line with "--".
 */
export function unfoldHeaders(raw: Buffer): Buffer {
	const lines = raw.toString('latin1').split('\r\n');
	const out: string[] = [];
	let inHeaders = true;
	for (const line of lines) {
		if (inHeaders && /^[ \t]/.test(line) && out.length) out[out.length - 1] += line;
		else out.push(line);
		if (line === '') inHeaders = false;
		else if (!inHeaders && line.startsWith('--')) inHeaders = true;
	}
	return Buffer.from(out.join('\r\n'), 'latin1');
}

/** Compares addresses as SMTP does: the domain in its ASCII (punycode) form, case-insensitive. */
export function canonicalAddress(address: string): string {
	const at = address.lastIndexOf('@');
	if (at < 0) return address;
	const domain = address.slice(at + 1);
	return `${address.slice(0, at)}@${(domainToASCII(domain) || domain).toLowerCase()}`;
}

export function headerAddresses(value: AddressObject | AddressObject[] | undefined): Array<{ name: string; address: string }> {
	const objects = value === undefined ? [] : Array.isArray(value) ? value : [value];
	return objects.flatMap((object) =>
		object.value.map((entry) => ({ name: entry.name ?? '', address: canonicalAddress(entry.address ?? '') })),
	);
}

/** The raw header block, unfolded: a line here is one header as the wire carried it. */
export function headerLines(raw: Buffer): string[] {
	const text = raw.toString('latin1');
	const end = text.indexOf('\r\n\r\n');
	return text
		.slice(0, end < 0 ? text.length : end)
		.replace(/\r\n[ \t]/g, ' ')
		.split('\r\n');
}

/** The case's failure as a seed-carrying message, so a red CI run can be replayed. */
export function describeFailure(property: string, seed: number, caseIndex: number, problem: string, input: unknown): string {
	const shown = JSON.stringify(input);
	return `${property} (seed ${seed}, MAM_HOSTILE_SEED=${seed} to replay), case ${caseIndex}: ${problem}\ninput: ${shown.length > 3000 ? `${shown.slice(0, 3000)}…` : shown}`;
}

/** Where two texts part, with a little context on both sides (long generated values stay readable). */
export function difference(what: string, want: string, have: string): string {
	let at = 0;
	while (at < want.length && at < have.length && want[at] === have[at]) at++;
	// escaped, so invisible and bidi characters show as what they are
	const around = (text: string) => JSON.stringify(text.slice(Math.max(0, at - 30), at + 30)).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
	return `${what} differs at character ${at} of ${want.length} (peer has ${have.length}): want …${around(want)}…, peer has …${around(have)}…`;
}
