import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

import { tlsClientOptions } from '../transports/tls-options';
import type { Check, CheckOutcome } from './checks';
import { codedError, errorCode, messageOf } from './network';

/**
 * The TLS stage: which protocol and certificate a mail or HTTPS endpoint presents, and whether
 * our transports would trust it. The mail libraries report neither the certificate nor why it
 * was refused, so this is a small probe of its own: it speaks only as much SMTP / IMAP as it
 * takes to reach the handshake (greeting, EHLO, STARTTLS), then hangs up.
 */

export type TlsMode = 'tls' | 'starttls-smtp' | 'starttls-imap' | 'none';

export interface TlsEndpoint {
	host: string;
	port: number;
	mode: TlsMode;
	/** 'SMTP' | 'IMAP' | 'identity platform' | 'Graph'..., for details and hints. */
	role: string;
	/** The credential's Trusted CA Certificate (PEM): trusted on top of the default trust, as the transports do. */
	ca?: string;
	/** false = the credential's Ignore Certificate Errors is on. */
	rejectUnauthorized: boolean;
	/** The name the certificate must carry (default: host). */
	servername?: string;
	timeoutMs?: number;
}

export const DEFAULT_TLS_TIMEOUT_MS = 8_000;
/** Certificates expiring within this many days warn. */
export const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;
/** A mail server greets within this long; one that does not probably waits for a TLS ClientHello. */
const GREETING_WAIT_MS = 3_000;
const CA_FIELD = 'Trusted CA Certificate (PEM)';

export function tlsCheck(endpoint: TlsEndpoint): Check {
	const target = `${endpoint.host}:${endpoint.port}`;
	const timeoutMs = endpoint.timeoutMs ?? DEFAULT_TLS_TIMEOUT_MS;
	return {
		step: 'tls',
		target,
		needs: [`reach:${target}`],
		// a little over our own deadline, so the probe's own (more telling) timeout answers first
		timeoutMs: timeoutMs + 1_000,
		async run(signal) {
			if (endpoint.mode === 'none') return plainTextOutcome(endpoint);
			const probe = new Probe(endpoint, signal, Date.now() + timeoutMs);
			try {
				const secured = endpoint.mode === 'tls' ? await probe.implicitTls() : await probe.startTls();
				return judge(endpoint, secured);
			} catch (error) {
				if (error instanceof ProbeFailure) return error.outcome;
				throw error;
			} finally {
				probe.close();
			}
		},
	};
}

/** A finished probe that found a problem (as opposed to a bug or an abort). */
class ProbeFailure extends Error {
	constructor(readonly outcome: CheckOutcome) {
		super(outcome.detail);
	}
}

const fail = (code: string, detail: string, hint: string) => new ProbeFailure({ status: 'fail', code, detail, hint });

type Family = 'smtp' | 'imap' | 'other';

/** One probe run: its sockets (all destroyed by close() or an abort) and its deadline. */
class Probe {
	private readonly sockets = new Set<net.Socket>();
	private readonly what: string;

	constructor(
		private readonly endpoint: TlsEndpoint,
		private readonly signal: AbortSignal,
		private readonly deadline: number,
	) {
		this.what = `${endpoint.role ? `${endpoint.role} ` : ''}${endpoint.host}:${endpoint.port}`;
		signal.addEventListener('abort', this.close, { once: true });
	}

	readonly close = () => {
		this.signal.removeEventListener('abort', this.close);
		for (const socket of this.sockets) socket.destroy();
		this.sockets.clear();
	};

	private get remaining() {
		return Math.max(0, this.deadline - Date.now());
	}

	private track<T extends net.Socket>(socket: T): T {
		this.sockets.add(socket);
		socket.on('error', () => undefined); // reported through the waits below
		if (this.signal.aborted) socket.destroy();
		return socket;
	}

	/** SSL/TLS from the first byte; a port that greets in plain text instead is a Security mismatch. */
	async implicitTls(): Promise<tls.TLSSocket> {
		try {
			return await this.handshake();
		} catch (error) {
			if (errorCode(error) === 'ETIMEDOUT' || this.signal.aborted) throw this.noHandshake(error);
			// a TLS alert came from a TLS server: nothing to learn from a plain connection
			if (/ALERT/.test(errorCode(error))) throw this.handshakeFailure(error);
			const greeting = await this.plainGreeting(Math.min(2_000, this.remaining));
			if (greeting) throw this.plainTextPort(greeting);
			throw this.handshakeFailure(error);
		}
	}

	/** Plain greeting, STARTTLS, then the handshake on the same socket. */
	async startTls(): Promise<tls.TLSSocket> {
		const family: Family = this.endpoint.mode === 'starttls-imap' ? 'imap' : 'smtp';
		const socket = await this.connect().catch((error: unknown) => {
			throw this.lost(error, 'on connect');
		});
		const reader = new LineReader(socket);
		let greeting: string;
		try {
			greeting = await reader.until(family === 'smtp' ? finalSmtpReply : firstLine, Math.min(GREETING_WAIT_MS, this.remaining));
		} catch (error) {
			if (errorCode(error) !== 'ETIMEDOUT' || this.signal.aborted) throw this.lost(error, 'before its greeting');
			// Silence: an implicit-TLS port waits for our ClientHello. Send one on this socket to tell.
			reader.detach();
			try {
				await this.handshake(socket);
			} catch (handshakeError) {
				throw this.noGreeting(handshakeError, reader.text);
			}
			throw this.tlsOnlyPort(family);
		}
		if (!isText(greeting)) throw this.tlsOnlyPort(family);
		if (family === 'smtp') await this.smtpStartTls(socket, reader, greeting);
		else await this.imapStartTls(socket, reader, greeting);
		reader.detach();
		try {
			return await this.handshake(socket);
		} catch (error) {
			throw errorCode(error) === 'ETIMEDOUT' ? this.noHandshake(error) : this.handshakeFailure(error);
		}
	}

	private async smtpStartTls(socket: net.Socket, reader: LineReader, greeting: string) {
		if (!/^220[ -]/.test(greeting)) throw this.unexpectedGreeting('SMTP', greeting);
		const local = socket.localAddress ?? '127.0.0.1';
		socket.write(`EHLO [${net.isIPv6(local) ? `IPv6:${local}` : local}]\r\n`);
		const ehlo = await this.reply(reader, finalSmtpReply, 'EHLO');
		if (!/^250[ -]/.test(ehlo)) throw fail('TLS_STARTTLS_MISSING', `${this.what} refused EHLO: ${firstLineOf(ehlo)}`, 'Check that this is an SMTP submission port (587)');
		if (!/^250[ -]STARTTLS\b/im.test(ehlo)) throw this.startTlsMissing('smtp', 'does not offer STARTTLS after EHLO');
		socket.write('STARTTLS\r\n');
		const answer = await this.reply(reader, finalSmtpReply, 'STARTTLS');
		if (!/^220[ -]/.test(answer)) throw this.startTlsMissing('smtp', `refused STARTTLS: ${firstLineOf(answer)}`);
	}

	private async imapStartTls(socket: net.Socket, reader: LineReader, greeting: string) {
		if (!/^\* (OK|PREAUTH)\b/i.test(greeting)) throw this.unexpectedGreeting('IMAP', greeting);
		socket.write('a1 STARTTLS\r\n');
		const answer = await this.reply(reader, (text) => /^a1 (OK|NO|BAD)\b.*\r?\n/im.test(text), 'STARTTLS');
		const tagged = /^a1 .*$/im.exec(answer)?.[0] ?? answer;
		if (!/^a1 OK\b/i.test(tagged)) throw this.startTlsMissing('imap', `refused STARTTLS: ${tagged.trim()}`);
	}

	private async reply(reader: LineReader, complete: (text: string) => boolean, command: string): Promise<string> {
		reader.clear();
		try {
			return await reader.until(complete, this.remaining);
		} catch (error) {
			throw this.lost(error, `after ${command}`);
		}
	}

	private connect(): Promise<net.Socket> {
		const { host, port } = this.endpoint;
		return this.settle(this.track(net.connect({ host, port })), 'connect');
	}

	/** A TLS handshake (on `socket`, or a new connection) that never refuses, so the certificate can be judged. */
	private handshake(socket?: net.Socket): Promise<tls.TLSSocket> {
		const { host, port } = this.endpoint;
		const servername = this.endpoint.servername ?? host;
		const secured = tls.connect({
			// the trust the transports use (default store + the credential's CA): `authorized` then says what they would decide
			...tlsClientOptions({ rejectUnauthorized: false, ca: this.endpoint.ca }),
			...(socket ? { socket } : { host, port }),
			// SNI carries names only, never addresses
			...(net.isIP(servername) ? {} : { servername }),
		});
		// the TLS socket owns a wrapped socket from here on: destroying both would close its handle twice
		if (socket) this.sockets.delete(socket);
		return this.settle(this.track(secured), 'secureConnect');
	}

	/** Resolves with the socket on `event`; rejects on error, close, abort or the deadline. */
	private settle<T extends net.Socket>(socket: T, event: 'connect' | 'secureConnect'): Promise<T> {
		return new Promise<T>((resolve, reject) => {
			const timer = setTimeout(() => finish(codedError('timed out', 'ETIMEDOUT')), this.remaining);
			const finish = (error?: Error) => {
				clearTimeout(timer);
				socket.off(event, onDone);
				socket.off('error', finish);
				socket.off('close', onClose);
				if (error) {
					socket.destroy();
					reject(error);
				} else resolve(socket);
			};
			const onDone = () => finish();
			const onClose = () => finish(codedError(this.signal.aborted ? 'aborted' : 'connection closed', this.signal.aborted ? 'ABORT_ERR' : 'ECONNRESET'));
			socket.once(event, onDone);
			socket.once('error', finish);
			socket.once('close', onClose);
		});
	}

	/** What the port says first on a plain connection within `ms` ('' when nothing, or not text). */
	private async plainGreeting(ms: number): Promise<string> {
		if (ms <= 0) return '';
		try {
			const socket = await this.connect();
			const reader = new LineReader(socket);
			const text = await reader.until(firstLine, Math.min(ms, this.remaining)).catch(() => reader.text);
			socket.destroy();
			return isText(text) ? text.trim() : '';
		} catch {
			return '';
		}
	}

	private familyOf(greeting = ''): Family {
		if (this.endpoint.mode === 'starttls-smtp' || /^\d{3}[ -]/.test(greeting)) return 'smtp';
		if (this.endpoint.mode === 'starttls-imap' || /^\* /.test(greeting)) return 'imap';
		const role = this.endpoint.role.toUpperCase();
		return role.includes('IMAP') ? 'imap' : role.includes('SMTP') ? 'smtp' : 'other';
	}

	private plainTextPort(greeting: string): ProbeFailure {
		const family = this.familyOf(greeting);
		const tlsPort = family === 'imap' ? 993 : 465;
		const hint = family === 'other' ? `Port ${this.endpoint.port} speaks plain text first: this is not a TLS port` : `Port ${this.endpoint.port} speaks plain text first: set Security to STARTTLS, or use port ${tlsPort} for SSL/TLS`;
		return fail('TLS_MODE_MISMATCH', `${this.what} answered in plain text ("${firstLineOf(greeting)}") where SSL/TLS was expected`, hint);
	}

	private tlsOnlyPort(family: Family): ProbeFailure {
		const plainPort = family === 'imap' ? 143 : 587;
		return fail('TLS_MODE_MISMATCH', `${this.what} sent no ${family.toUpperCase()} greeting but answers a TLS handshake: it expects TLS from the first byte`, `Port ${this.endpoint.port} expects TLS from the first byte: set Security to SSL/TLS, or use port ${plainPort} for STARTTLS`);
	}

	private startTlsMissing(family: Family, what: string): ProbeFailure {
		const tlsPort = family === 'imap' ? 993 : 465;
		return fail('TLS_STARTTLS_MISSING', `${this.what} ${what}`, `The server cannot encrypt this connection with STARTTLS: use port ${tlsPort} with Security SSL/TLS if it offers that, or enable TLS on the server`);
	}

	private unexpectedGreeting(expected: string, greeting: string): ProbeFailure {
		if (/^(\d{3}[ -]|\* BYE\b)/i.test(greeting)) {
			return fail('TLS_GREETING_REFUSED', `${this.what} turned the session away at its greeting: "${firstLineOf(greeting)}"`, 'The server refuses this client (too many connections, a blocked address, service down): see what the reply says, or the server log');
		}
		return fail('TLS_UNEXPECTED_GREETING', `${this.what} greeted with "${firstLineOf(greeting)}", not as an ${expected} server`, `Check the host and port: port ${this.endpoint.port} does not speak ${expected}`);
	}

	private noGreeting(error: unknown, received: string): ProbeFailure {
		const got = received ? ` (it sent "${firstLineOf(received)}")` : '';
		return fail('TLS_NO_GREETING', `${this.what} accepted the connection but sent no greeting and no TLS handshake${got}: ${describe(error)}`, 'The server or something in between (proxy, firewall) holds connections open without answering: check the host and port, and the server');
	}

	private noHandshake(error: unknown): ProbeFailure {
		return fail('TLS_NO_HANDSHAKE', `${this.what} did not complete a TLS handshake: ${describe(error)}`, `Check that port ${this.endpoint.port} is a TLS port and that nothing in between (proxy, firewall) holds the connection`);
	}

	private lost(error: unknown, when: string): ProbeFailure {
		return fail('TLS_CONNECTION_LOST', `${this.what} ${errorCode(error) === 'ETIMEDOUT' ? 'stopped answering' : 'closed the connection'} ${when}: ${describe(error)}`, `Check that port ${this.endpoint.port} is the server's ${this.endpoint.role || 'mail'} port`);
	}

	private handshakeFailure(error: unknown): ProbeFailure {
		const code = errorCode(error);
		if (/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS_AVAILABLE/i.test(code)) {
			return fail('TLS_OLD_PROTOCOL', `${this.what} offers no TLS 1.2 or newer (${code})`, 'Enable TLS 1.2 or 1.3 on the server: TLS 1.0 and 1.1 are broken and refused by this package');
		}
		return fail('TLS_HANDSHAKE_FAILED', `${this.what} TLS handshake failed: ${describe(error)}`, `Check that port ${this.endpoint.port} speaks TLS and that the Security setting matches it`);
	}
}

/** Collects what a socket sends until a condition holds (greetings and replies are small). */
class LineReader {
	text = '';
	private waiter?: () => void;
	private ended?: Error;
	private readonly onData = (chunk: Buffer) => {
		this.text += chunk.toString('latin1');
		this.waiter?.();
	};
	private readonly onEnd = () => {
		this.ended = codedError('connection closed', 'ECONNRESET');
		this.waiter?.();
	};

	constructor(private readonly socket: net.Socket) {
		socket.on('data', this.onData);
		socket.on('close', this.onEnd);
		socket.on('end', this.onEnd);
	}

	clear() {
		this.text = '';
	}

	/** Stops reading, so the TLS layer gets the bytes from here on. */
	detach() {
		this.socket.off('data', this.onData);
		this.socket.off('close', this.onEnd);
		this.socket.off('end', this.onEnd);
	}

	until(complete: (text: string) => boolean, ms: number): Promise<string> {
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => settle(codedError(`no answer within ${(ms / 1000).toFixed(1)} s`, 'ETIMEDOUT')), ms);
			const check = () => {
				// a server sending kilobytes before a greeting is not the server we want
				if (complete(this.text) || this.text.length > 16_384 || (this.text && !isText(this.text))) settle();
				else if (this.ended) settle(this.ended);
			};
			const settle = (error?: Error) => {
				clearTimeout(timer);
				this.waiter = undefined;
				if (error) reject(error);
				else resolve(this.text);
			};
			this.waiter = check;
			check();
		});
	}
}

/** The last line of an SMTP reply has a space after the code: "250 OK", not "250-SIZE". */
const finalSmtpReply = (text: string) => /^\d{3}(?: [^\n]*)?\r?\n/m.test(text);
const firstLine = (text: string) => text.includes('\n');
const firstLineOf = (text: string) => text.split(/\r?\n/)[0].slice(0, 120);
/** Printable text (greetings are); TLS records and other binary are not. */
const isText = (text: string) => !/[^\t\r\n\x20-\x7e]/.test(text);
const describe = (error: unknown) => (errorCode(error) ? `${errorCode(error)}: ${messageOf(error)}` : messageOf(error));

function plainTextOutcome(endpoint: TlsEndpoint): CheckOutcome {
	return {
		status: 'warn',
		code: 'TLS_NONE',
		detail: `${endpoint.role || 'the'} connection to ${endpoint.host}:${endpoint.port} is not encrypted: the password and every message cross the network in plain text`,
		hint: 'Set Security to STARTTLS or SSL/TLS (SMTP 587 / 465, IMAP 143 / 993)',
		facts: { mode: 'none', trusted: false },
	};
}

interface Problem {
	code: string;
	detail: string;
	hint: string;
}

/** Reads the certificate and protocol of a finished handshake and decides as the transports would. */
function judge(endpoint: TlsEndpoint, secured: tls.TLSSocket): CheckOutcome {
	const peer = secured.getPeerCertificate(true);
	const protocol = secured.getProtocol() ?? '';
	const cipher = secured.getCipher()?.name ?? '';
	if (!peer?.raw) return { status: 'fail', code: 'TLS_NO_CERTIFICATE', detail: `${endpoint.host}:${endpoint.port} presented no certificate`, hint: 'Configure a server certificate' };
	const cert = new X509Certificate(peer.raw);
	const validFrom = new Date(cert.validFrom);
	const validTo = new Date(cert.validTo);
	const now = Date.now();
	// whole days, rounded up: a certificate valid until tomorrow has 1 day left, not 0
	const daysLeft = Math.ceil((validTo.getTime() - now) / DAY_MS);
	const subject = nameOf(cert.subject);
	const issuer = nameOf(cert.issuer);
	const altNames = (cert.subjectAltName ?? '').split(', ').filter(Boolean);
	const certNames = altNames.length ? altNames.map((name) => name.replace(/^(DNS|IP Address):/, '')) : [subject];
	const expectedName = endpoint.servername ?? endpoint.host;
	// OpenSSL's chain verdict against the transports' trust; the name is checked separately below
	const chainError = secured.authorized ? '' : String(secured.authorizationError ?? '');
	// signed by its own key (checkIssued would also demand the CA key usage a leaf lacks)
	const selfSigned = chainError === 'DEPTH_ZERO_SELF_SIGNED_CERT' || (cert.subject === cert.issuer && cert.verify(cert.publicKey));

	const problems: Problem[] = [];
	const day = (date: Date) => date.toISOString().slice(0, 10);
	if (now > validTo.getTime()) {
		problems.push({ code: 'TLS_EXPIRED', detail: `the certificate expired on ${day(validTo)}`, hint: `Renew the server certificate (it expired on ${day(validTo)})` });
	} else if (now < validFrom.getTime()) {
		problems.push({ code: 'TLS_UNTRUSTED', detail: `the certificate is not valid before ${day(validFrom)}`, hint: "Check the server's clock and certificate" });
	}
	if (chainError && !/CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|ALTNAME/i.test(chainError)) {
		if (selfSigned) {
			problems.push({ code: 'TLS_SELF_SIGNED', detail: `the certificate is self-signed (${subject})`, hint: `Put the server's certificate (or the CA that issued it) in the credential's ${CA_FIELD} field, or give the server a certificate from a trusted CA` });
		} else {
			problems.push({ code: 'TLS_UNTRUSTED', detail: `the certificate's issuer "${issuer}" is not trusted (${chainError})`, hint: `Put the issuing CA ("${issuer}") in the credential's ${CA_FIELD} field` });
		}
	}
	if (tls.checkServerIdentity(expectedName, peer)) {
		problems.push({ code: 'TLS_NAME_MISMATCH', detail: `the certificate is for ${certNames.join(', ')}, not ${expectedName}`, hint: `Use the host name the certificate names: ${certNames.join(', ')}` });
	}
	const trusted = problems.length === 0;
	const facts = { mode: endpoint.mode, protocol, cipher, subject, subjectAltNames: altNames, issuer, validFrom: validFrom.toISOString(), validTo: validTo.toISOString(), daysLeft, trusted, selfSigned };
	const summary = `${protocol} ${cipher}, certificate ${subject} issued by ${issuer}, valid until ${day(validTo)}`;

	if (!trusted && endpoint.rejectUnauthorized) {
		return { status: 'fail', code: problems[0].code, detail: `${summary}: ${problems.map((p) => p.detail).join('; ')}`, hint: problems.map((p) => p.hint).join('; '), facts };
	}
	const warnings: Problem[] = [];
	if (!endpoint.rejectUnauthorized) {
		const untrusted = trusted ? '' : ` (and ${problems.map((p) => p.detail).join('; ')})`;
		warnings.push({ code: 'TLS_CHECKS_OFF', detail: `certificate checks are switched off${untrusted}`, hint: 'Ignore Certificate Errors is on: anyone on the path can read the password; turn it off and trust the CA instead' });
	}
	if (daysLeft <= EXPIRY_WARNING_DAYS && now <= validTo.getTime()) {
		warnings.push({ code: 'TLS_EXPIRES_SOON', detail: `the certificate expires on ${day(validTo)} (in ${daysLeft} days)`, hint: `Renew the server certificate before ${day(validTo)}` });
	}
	if (warnings.length) return { status: 'warn', code: warnings[0].code, detail: `${summary}: ${warnings.map((w) => w.detail).join('; ')}`, hint: warnings.map((w) => w.hint).join('; '), facts };
	return { status: 'pass', detail: `${summary} (${daysLeft} days left), trusted`, hint: '', facts };
}

/** The CN of an X.509 name ("C=..\nO=..\nCN=.."), else the whole name on one line. */
function nameOf(name: string): string {
	return /(?:^|\n)CN=([^\n]*)/.exec(name)?.[1] ?? name.replace(/\n/g, ', ');
}
