import https from 'node:https';
import type { AddressInfo } from 'node:net';

import { discoverEwsUrl } from '../../../transports/ews/autodiscover';
import { EWS_CODES, type EwsAuth } from '../../../transports/ews/types';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { sharedTestPki } = require('../../peers/certs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFakeEws } = require('../../peers/fake-ews');

const ALICE = 'alice@contoso.example';
const PASSWORD = 'Auto-Disc0ver&<pw>';

let pki: any;
let ews: any;
/** A second server that only redirects: HTTP 302 (/http302), POX redirectUrl (/pox), or to itself (/loop). */
let redirector: https.Server;
let redirectorUrl: string;
const redirectorHits: string[] = [];

beforeAll(async () => {
	pki = sharedTestPki();
	ews = await startFakeEws({ pki });
	ews.addMailbox({ address: ALICE });
	ews.addUser({ username: 'alice', password: PASSWORD, mailbox: ALICE });
	ews.addRedirect('fabrikam.example', 'contoso.example');
	redirector = https.createServer({ cert: pki.cert, key: pki.key }, (req, res) => {
		redirectorHits.push(req.url ?? '');
		req.resume();
		req.on('end', () => {
			if (req.url === '/http302') {
				res.writeHead(302, { Location: ews.autodiscoverUrl });
				res.end();
				return;
			}
			if (req.url === '/loop') {
				res.writeHead(302, { Location: '/loop' });
				res.end();
				return;
			}
			// As IIS: Autodiscover answers only a signed-in request (Basic here).
			if (req.headers.authorization !== `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`) {
				res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="autodiscover"' });
				res.end();
				return;
			}
			res.writeHead(200, { 'Content-Type': 'text/xml; charset=utf-8' });
			res.end(
				'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"><Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">' +
					`<Account><AccountType>email</AccountType><Action>redirectUrl</Action><RedirectUrl>${ews.autodiscoverUrl}</RedirectUrl></Account></Response></Autodiscover>`,
			);
		});
	});
	await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
	redirectorUrl = `https://127.0.0.1:${(redirector.address() as AddressInfo).port}`;
}, 60_000);

afterAll(async () => {
	await ews?.close();
	await new Promise((resolve) => redirector?.close(resolve));
});

const ntlm: EwsAuth = { type: 'ntlm', username: 'alice', password: PASSWORD, domain: 'CONTOSO' };
const trust = () => ({ rejectUnauthorized: true, ca: pki.ca });

describe('discoverEwsUrl (POX Autodiscover)', () => {
	test('direct: the EXCH EwsUrl of the mailbox, signed in with NTLM like EWS', async () => {
		const before = ews.requests.length;
		const url = await discoverEwsUrl({ email: ALICE, auth: ntlm, trust: trust(), autodiscoverUrl: ews.autodiscoverUrl });
		expect(url).toBe(ews.url);
		const answered = ews.requests.slice(before).filter((r: any) => r.operation === 'Autodiscover' && r.status === 200);
		expect(answered).toEqual([expect.objectContaining({ scheme: 'NTLM', responseCodes: ['settings'] })]);
	});

	test('Basic works the same way', async () => {
		const url = await discoverEwsUrl({ email: ALICE, auth: { type: 'basic', username: 'alice', password: PASSWORD }, trust: trust(), autodiscoverUrl: ews.autodiscoverUrl });
		expect(url).toBe(ews.url);
	});

	test('redirectAddr to another domain: asks again for the new address', async () => {
		const before = ews.requests.length;
		const url = await discoverEwsUrl({ email: 'alice@fabrikam.example', auth: ntlm, trust: trust(), autodiscoverUrl: ews.autodiscoverUrl });
		expect(url).toBe(ews.url);
		const codes = ews.requests.slice(before).filter((r: any) => r.operation === 'Autodiscover' && r.status === 200).map((r: any) => r.responseCodes[0]);
		expect(codes).toEqual(['redirectAddr', 'settings']);
	});

	test('an HTTP 302 and a POX redirectUrl are followed', async () => {
		expect(await discoverEwsUrl({ email: ALICE, auth: ntlm, trust: trust(), autodiscoverUrl: `${redirectorUrl}/http302` })).toBe(ews.url);
		const basic: EwsAuth = { type: 'basic', username: 'alice', password: PASSWORD };
		expect(await discoverEwsUrl({ email: ALICE, auth: basic, trust: trust(), autodiscoverUrl: `${redirectorUrl}/pox` })).toBe(ews.url);
	});

	test('a redirect loop stops after 10 hops with EWS_AUTODISCOVER_FAILED', async () => {
		const hitsBefore = redirectorHits.length;
		const error = await discoverEwsUrl({ email: ALICE, auth: ntlm, trust: trust(), autodiscoverUrl: `${redirectorUrl}/loop` }).catch((e) => e);
		expect(error.code).toBe(EWS_CODES.AUTODISCOVER_FAILED);
		expect(error.message).toMatch(/more than 10 redirects/);
		// NTLM asks twice per hop at most (the negotiate leg and the request)
		expect(redirectorHits.length - hitsBefore).toBeLessThanOrEqual(22);
	});

	test('nothing found: the error lists every URL tried and why; the default candidates are the domain and autodiscover.<domain>', async () => {
		const error = await discoverEwsUrl({ email: 'alice@127.0.0.1', auth: ntlm, trust: trust(), timeoutMs: 3000 }).catch((e) => e);
		expect(error.code).toBe(EWS_CODES.AUTODISCOVER_FAILED);
		expect(error.message).toContain('https://127.0.0.1/autodiscover/autodiscover.xml (');
		expect(error.message).toContain('https://autodiscover.127.0.0.1/autodiscover/autodiscover.xml (');
		expect(error.hint).toMatch(/EWS URL directly/);
	});

	test('an unknown mailbox: the Autodiscover error is in the list', async () => {
		const error = await discoverEwsUrl({ email: 'nobody@contoso.example', auth: ntlm, trust: trust(), autodiscoverUrl: ews.autodiscoverUrl }).catch((e) => e);
		expect(error.code).toBe(EWS_CODES.AUTODISCOVER_FAILED);
		expect(error.message).toMatch(/Autodiscover error 500: The email address can't be found/);
	});

	test('a refused sign-in says so, and the password is not in the error', async () => {
		const wrong = 'Wrong-Auto-Passw0rd';
		const error = await discoverEwsUrl({ email: ALICE, auth: { ...ntlm, password: wrong } as EwsAuth, trust: trust(), autodiscoverUrl: ews.autodiscoverUrl }).catch((e) => e);
		expect(error.code).toBe(EWS_CODES.AUTODISCOVER_FAILED);
		expect(error.message).toContain('HTTP 401');
		expect(error.hint).toMatch(/user name, domain and password/);
		expect(`${error.message} ${error.hint} ${error.stack}`).not.toContain(wrong);
	});
});
