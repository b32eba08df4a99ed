import { createHash, randomBytes } from 'node:crypto';
import { simpleParser, type ParsedMail } from 'mailparser';

import { runNode, type InputItem } from '../harness/n8n-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createTestPki } = require('../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSmtpPeer } = require('../peers/smtp-peer');

type Peer = Awaited<ReturnType<typeof startSmtpPeer>>;

const PASSWORD = 'Sup3r-Secret-Passw0rd!';
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let pki: ReturnType<typeof createTestPki>;
let starttlsPeer: Peer;
let tlsPeer: Peer;

beforeAll(async () => {
	pki = createTestPki();
	starttlsPeer = await startSmtpPeer({ pki, users: { robot: PASSWORD } });
	tlsPeer = await startSmtpPeer({ pki, users: { robot: PASSWORD }, implicitTls: true });
});

afterAll(async () => {
	await starttlsPeer?.close();
	await tlsPeer?.close();
});

beforeEach(() => {
	starttlsPeer.reset();
	tlsPeer.reset();
});

function smtpCredential(peer: Peer, overrides: Record<string, unknown> = {}) {
	return {
		modernAuthSmtpApi: {
			id: 'smtpCred00000001',
			name: 'Test SMTP',
			data: {
				host: peer.host,
				port: peer.port,
				security: 'starttls',
				user: 'robot',
				password: PASSWORD,
				fromAddress: 'Robot <robot@example.com>',
				caCertificate: pki.ca,
				...overrides,
			},
		},
	};
}

const baseParameters = {
	authentication: 'smtp',
	toEmail: '={{ $json.to }}',
	subject: '={{ $json.subject }}',
	emailFormat: 'text',
	text: '={{ $json.text }}',
};

async function parsedMessages(peer: Peer): Promise<ParsedMail[]> {
	return Promise.all(peer.received.map((m: { raw: Buffer }) => simpleParser(m.raw, { keepCidLinks: true })));
}

describe('Send Email (Modern Auth) over SMTP, run by n8n-core', () => {
	it('delivers headers, both bodies, attachments and an inline image byte for byte', async () => {
		const pdf = randomBytes(600_000); // over 256 KiB: streamed from the binary store
		const csv = Buffer.from('id;name\n1;Zoë\n2;Łukasz\n', 'utf8');
		const png = randomBytes(3000);
		const { output, error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: {
				authentication: 'smtp',
				fromEmail: 'Billing <billing@example.com>',
				toEmail: 'Ann <ann@example.org>, bob@example.org',
				subject: 'Invoice 42 – ünïcödé',
				emailFormat: 'both',
				text: 'Plain body\nline 2',
				html: '<p>HTML body <img src="cid:logo"></p>',
				options: {
					ccEmail: 'carol@example.org',
					bccEmail: 'audit@example.net',
					replyTo: 'support@example.com',
					attachments: 'invoice, report',
					inlineImages: 'logo',
					priority: 'high',
					customHeaders: { header: [{ name: 'X-Ticket-ID', value: 'T-1001' }] },
				},
			},
			items: [
				{
					json: {},
					binary: {
						invoice: { data: pdf, fileName: 'invoice-42.pdf', mimeType: 'application/pdf' },
						report: { data: csv, fileName: 'report.csv', mimeType: 'text/csv' },
						logo: { data: png, fileName: 'logo.png', mimeType: 'image/png' },
					},
				},
			],
			credentials: smtpCredential(starttlsPeer),
		});
		expect(error).toBeUndefined();
		expect(starttlsPeer.received).toHaveLength(1);
		const received = starttlsPeer.received[0];
		expect(received.user).toBe('robot');
		expect(received.secure).toBe(true);
		expect(received.envelope.from).toBe('billing@example.com');
		expect([...received.envelope.to].sort()).toEqual(
			['ann@example.org', 'audit@example.net', 'bob@example.org', 'carol@example.org'].sort(),
		);

		const [mail] = await parsedMessages(starttlsPeer);
		expect(mail.from?.value).toEqual([{ name: 'Billing', address: 'billing@example.com' }]);
		expect(mail.to && !Array.isArray(mail.to) && mail.to.value).toEqual([
			{ name: 'Ann', address: 'ann@example.org' },
			{ name: '', address: 'bob@example.org' },
		]);
		expect(mail.cc && !Array.isArray(mail.cc) && mail.cc.text).toBe('carol@example.org');
		expect(mail.headers.has('bcc')).toBe(false);
		expect(mail.replyTo?.text).toBe('support@example.com');
		expect(mail.subject).toBe('Invoice 42 – ünïcödé');
		expect(mail.text?.trim()).toBe('Plain body\nline 2');
		expect(mail.html).toContain('<p>HTML body <img src="cid:logo"></p>');
		expect(mail.headers.get('x-ticket-id')).toBe('T-1001');
		// mailparser folds priority headers away, so read them from the raw header block.
		const rawHeaders = received.raw.toString('utf8').split('\r\n\r\n')[0];
		expect(rawHeaders).toMatch(/^X-Priority: 1 \(Highest\)$/m);
		expect(rawHeaders).toMatch(/^Importance: High$/m);
		expect(rawHeaders).not.toMatch(/^Bcc:/im);

		const byName = Object.fromEntries(mail.attachments.map((a) => [a.filename, a]));
		expect(sha256(byName['invoice-42.pdf'].content)).toBe(sha256(pdf));
		expect(byName['invoice-42.pdf'].contentType).toBe('application/pdf');
		expect(byName['report.csv'].content.equals(csv)).toBe(true);
		expect(byName['report.csv'].contentType).toBe('text/csv');
		expect(byName['logo.png'].content.equals(png)).toBe(true);
		expect(byName['logo.png'].contentId).toBe('<logo>');
		expect(byName['logo.png'].contentDisposition).toBe('inline');

		expect(output).toHaveLength(1);
		expect(output[0].pairedItem).toEqual({ item: 0 });
		const json = output[0].json as Record<string, unknown>;
		expect(json.messageId).toBe(mail.messageId);
		expect(json.accepted).toEqual(expect.arrayContaining(['ann@example.org', 'audit@example.net']));
		expect(json.rejected).toEqual([]);
		expect(String(json.response)).toMatch(/^250 /);
		expect(json.envelope).toEqual({ from: 'billing@example.com', to: received.envelope.to });
	});

	it('sends many items over one pooled connection set and keeps item order', async () => {
		const items: InputItem[] = Array.from({ length: 30 }, (_, i) => ({
			json: { to: `user${i}@example.org`, subject: `Message ${i}`, text: `Body ${i}` },
		}));
		const { output, error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, options: { maxConnections: 2 } },
			items,
			credentials: smtpCredential(starttlsPeer),
		});
		expect(error).toBeUndefined();
		expect(starttlsPeer.received).toHaveLength(30);
		expect(starttlsPeer.stats.connections).toBeLessThanOrEqual(2);
		expect(starttlsPeer.stats.authentications).toBe(starttlsPeer.stats.connections);
		const subjects = (await parsedMessages(starttlsPeer)).map((m) => m.subject).sort();
		expect(subjects).toEqual(items.map((i) => String(i.json.subject)).sort());
		output.forEach((item, i) => {
			expect(item.pairedItem).toEqual({ item: i });
			expect(item.json.accepted).toEqual([`user${i}@example.org`]);
		});
	});

	it('speaks implicit TLS and uses the credential default From', async () => {
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items: [{ json: { to: 'x@example.org', subject: 'TLS', text: 'hi' } }],
			credentials: smtpCredential(tlsPeer, { port: tlsPeer.port, security: 'tls' }),
		});
		expect(error).toBeUndefined();
		expect(tlsPeer.received).toHaveLength(1);
		expect(tlsPeer.received[0].secure).toBe(true);
		expect(tlsPeer.received[0].envelope.from).toBe('robot@example.com');
	});

	it('accepts recipient arrays from expressions', async () => {
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, toEmail: '={{ $json.list }}' },
			items: [{ json: { list: ['a@example.org', 'B <b@example.org>'], subject: 's', text: 't' } }],
			credentials: smtpCredential(starttlsPeer),
		});
		expect(error).toBeUndefined();
		expect(starttlsPeer.received[0].envelope.to).toEqual(['a@example.org', 'b@example.org']);
	});
});

describe('bad input: clear error, nothing half-sent', () => {
	const good = { to: 'ok@example.org', subject: 'fine', text: 'ok' };
	const cases: Array<{ name: string; item: InputItem; parameters?: Record<string, unknown>; credential?: Record<string, unknown>; field: RegExp }> = [
		{ name: 'invalid recipient', item: { json: { ...good, to: 'not-an-address' } }, field: /^Item 1: To: "not-an-address" is not a valid email address/ },
		{ name: 'empty recipient list', item: { json: { ...good, to: '' } }, field: /^Item 1: To: no recipient given/ },
		{ name: 'CR/LF in subject', item: { json: { ...good, subject: 'Hi\r\nBcc: victim@example.org' } }, field: /^Item 1: Subject: contains a line break/ },
		{ name: 'CR/LF in an address', item: { json: { ...good, to: 'a@example.org\r\nBcc: v@example.org' } }, field: /^Item 1: To: contains a line break/ },
		{
			name: 'CR/LF in a custom header',
			item: { json: { ...good, header: 'x\r\nBcc: v@example.org' } },
			parameters: { options: { customHeaders: { header: [{ name: 'X-Test', value: '={{ $json.header }}' }] } } },
			field: /^Item 1: Custom Headers "X-Test": contains a line break/,
		},
		{
			name: 'a missing binary property',
			item: { json: { ...good, attach: 'missing' } },
			parameters: { options: { attachments: "={{ $json.attach ?? '' }}" } },
			field: /^Item 1: Attachments: item has no binary property "missing"/,
		},
		{
			name: 'an attachment over the maximum size',
			item: { json: { ...good, attach: 'file' }, binary: { file: { data: randomBytes(2 * 1024 * 1024 + 10), fileName: 'big.bin' } } },
			parameters: { options: { attachments: "={{ $json.attach ?? '' }}", maxAttachmentSizeMb: 2 } },
			field: /^Item 1: Attachments: "file" is 2\.0 MB, over the limit of 2\.0 MB/,
		},
		{
			name: 'a From the credential does not allow',
			item: { json: { ...good, from: 'ceo@other.example' } },
			parameters: { fromEmail: '={{ $json.from }}' },
			credential: { allowedFrom: '@example.com' },
			field: /^Item 1: From: "ceo@other\.example" is not allowed by this credential/,
		},
	];

	for (const testCase of cases) {
		it(`${testCase.name}: fails the node naming field and item, sends nothing`, async () => {
			const { error, output } = await runNode({
				type: 'modernAuthSendEmail',
				parameters: { ...baseParameters, ...testCase.parameters },
				items: [{ json: good }, testCase.item, { json: good }],
				credentials: smtpCredential(starttlsPeer, testCase.credential),
			});
			expect(error?.message).toMatch(testCase.field);
			expect(error?.name).toBe('NodeOperationError');
			expect(error?.description).toBeTruthy();
			expect(output).toEqual([]);
			expect(starttlsPeer.received).toHaveLength(0);
		});

		it(`${testCase.name}: with continueOnFail only that item fails`, async () => {
			const { error, output } = await runNode({
				type: 'modernAuthSendEmail',
				parameters: { ...baseParameters, ...testCase.parameters },
				items: [{ json: good }, testCase.item, { json: good }],
				credentials: smtpCredential(starttlsPeer, testCase.credential),
				onError: 'continueRegularOutput',
			});
			expect(error).toBeUndefined();
			expect(output).toHaveLength(3);
			const failed = output[1].json.error as Record<string, string>;
			expect(`Item 1: ${failed.message}`).toMatch(testCase.field);
			expect(failed.code).toBe('INVALID_INPUT');
			expect(failed.hint).toBeTruthy();
			expect(output[1].pairedItem).toEqual({ item: 1 });
			expect(output[0].json.accepted).toEqual(['ok@example.org']);
			expect(output[2].json.accepted).toEqual(['ok@example.org']);
			expect(starttlsPeer.received).toHaveLength(2);
		});
	}
});

describe('server and credential failures', () => {
	it('wrong password: mapped hint, no secret in the error or execution data', async () => {
		const wrong = 'Wr0ng-Password-Value';
		const { error, run } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items: [{ json: { to: 'a@example.org', subject: 's', text: 't' } }],
			credentials: smtpCredential(starttlsPeer, { password: wrong }),
		});
		expect(error?.message).toMatch(/^Item 0: SMTP authentication failed at 127\.0\.0\.1:\d+: .*535/);
		expect(error?.description).toMatch(/user name and password/);
		expect(JSON.stringify(run)).not.toContain(wrong);
		expect(starttlsPeer.stats.authFailures).toBeGreaterThan(0);
		expect(starttlsPeer.received).toHaveLength(0);
	});

	it('continueOnFail returns { error: { message, code, hint } } for server failures', async () => {
		const { error, output } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items: [{ json: { to: 'a@example.org', subject: 's', text: 't' } }],
			credentials: smtpCredential(starttlsPeer, { password: 'nope' }),
			onError: 'continueRegularOutput',
		});
		expect(error).toBeUndefined();
		expect(output[0].json.error).toEqual({
			message: expect.stringMatching(/SMTP authentication failed/),
			code: 'SMTP_AUTH_FAILED',
			hint: expect.stringMatching(/password/),
		});
	});

	it('untrusted certificate is refused by default and named as such', async () => {
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items: [{ json: { to: 'a@example.org', subject: 's', text: 't' } }],
			credentials: smtpCredential(starttlsPeer, { caCertificate: '' }),
		});
		expect(error?.message).toMatch(/TLS certificate of 127\.0\.0\.1:\d+ is not trusted/);
		expect(error?.description).toMatch(/NODE_EXTRA_CA_CERTS|Ignore Certificate Errors/);
		expect(starttlsPeer.received).toHaveLength(0);
	});

	it('"Ignore Certificate Errors" is explicit and then works', async () => {
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items: [{ json: { to: 'a@example.org', subject: 's', text: 't' } }],
			credentials: smtpCredential(starttlsPeer, { caCertificate: '', ignoreCertificateErrors: true }),
		});
		expect(error).toBeUndefined();
		expect(starttlsPeer.received).toHaveLength(1);
	});

	it('security "None" is refused without the explicit unencrypted choice', async () => {
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items: [{ json: { to: 'a@example.org', subject: 's', text: 't' } }],
			credentials: smtpCredential(starttlsPeer, { security: 'none' }),
		});
		expect(error?.message).toMatch(/Security "None" without "Allow Unencrypted Connection"/);
		expect(starttlsPeer.stats.connections).toBe(0);
	});

	it('Microsoft-style 535 5.7.139 says basic auth is off and points to OAuth', async () => {
		starttlsPeer.authRefusal = '5.7.139 Authentication unsuccessful, basic authentication is disabled.';
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items: [{ json: { to: 'a@example.org', subject: 's', text: 't' } }],
			credentials: smtpCredential(starttlsPeer),
		});
		expect(error?.message).toMatch(/^Item 0: SMTP server refused password sign-in \(535 5\.7\.139\)/);
		expect(error?.description).toMatch(/OAuth credential/);
	});

	it('550 5.7.60 names the missing Send As permission; with continueOnFail every item says so', async () => {
		starttlsPeer.senderRefusal = { code: 550, message: '5.7.60 SMTP; Client does not have permissions to send as this sender' };
		const { output } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: { ...baseParameters, fromEmail: 'shared@example.com' },
			items: [
				{ json: { to: 'a@example.org', subject: 's', text: 't' } },
				{ json: { to: 'b@example.org', subject: 's', text: 't' } },
			],
			credentials: smtpCredential(starttlsPeer),
			onError: 'continueRegularOutput',
		});
		expect(output.map((o) => (o.json.error as Record<string, string>).code)).toEqual([
			'SMTP_SEND_AS_DENIED',
			'SMTP_SEND_AS_DENIED',
		]);
		expect((output[0].json.error as Record<string, string>).hint).toMatch(/Send As/);
		expect(starttlsPeer.received).toHaveLength(0);
	});

	it('unreachable server names host and port', async () => {
		const { error } = await runNode({
			type: 'modernAuthSendEmail',
			parameters: baseParameters,
			items: [{ json: { to: 'a@example.org', subject: 's', text: 't' } }],
			credentials: smtpCredential(starttlsPeer, { port: 1 }),
		});
		expect(error?.message).toMatch(/Cannot connect to SMTP server 127\.0\.0\.1:1/);
		expect(error?.description).toMatch(/host name and port/);
	});
});
