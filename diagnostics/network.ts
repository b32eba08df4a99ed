import dns from 'node:dns';
import net from 'node:net';

import type { Check, CheckOutcome } from './checks';

export const DEFAULT_REACH_TIMEOUT_MS = 5_000;

export interface ReachOptions {
	/** What the host is to the connection ('SMTP', 'IMAP', 'identity platform', 'Graph'...), for details and hints. */
	role?: string;
	timeoutMs?: number;
}

/** The ports a refused connection is usually meant for, by role. */
const USUAL_PORTS: Record<string, string> = {
	SMTP: 'SMTP uses 587 (STARTTLS), 465 (SSL/TLS) or 25',
	IMAP: 'IMAP uses 993 (TLS) or 143 (STARTTLS)',
};
const usualPorts = (role: string) => USUAL_PORTS[role.toUpperCase()] ?? 'HTTPS uses 443';
const isMicrosoftRole = (role: string) => /identity|graph|microsoft|exchange|ews/i.test(role);

/**
 * DNS and TCP reach of one host:port: every address the name resolves to, then a TCP connect
 * (tried address by address, as a client would). The socket is closed at once.
 */
export function reachCheck(host: string, port: number, options: ReachOptions = {}): Check {
	const role = options.role ?? '';
	const timeoutMs = options.timeoutMs ?? DEFAULT_REACH_TIMEOUT_MS;
	const what = `${role ? `${role} host ` : ''}${host}:${port}`;
	return {
		step: 'reach',
		target: `${host}:${port}`,
		// a little over our own deadline, so our own (more precise) timeout answers first
		timeoutMs: timeoutMs + 1_000,
		async run(signal) {
			const deadline = Date.now() + timeoutMs;
			const dnsStarted = Date.now();
			let addresses: dns.LookupAddress[];
			try {
				addresses = await abortable(dns.promises.lookup(host, { all: true }), signal, deadline);
			} catch (error) {
				return signal.aborted ? aborted(what) : dnsFailure(error, host, role);
			}
			const dnsMs = Date.now() - dnsStarted;
			const facts = { addresses: addresses.map((a) => a.address), dnsMs };
			let firstError: unknown;
			for (const { address } of addresses) {
				const connectStarted = Date.now();
				try {
					await connectOnce(address, port, signal, deadline);
					return { status: 'pass', detail: `${what} reachable (${address}, DNS ${dnsMs} ms, TCP ${Date.now() - connectStarted} ms)`, facts: { ...facts, address, connectMs: Date.now() - connectStarted } };
				} catch (error) {
					firstError ??= error;
					if (signal.aborted || Date.now() >= deadline) break;
				}
			}
			if (signal.aborted) return { ...aborted(what), facts };
			return { ...connectFailure(firstError, what, port, role, timeoutMs), facts };
		},
	};
}

export const aborted = (what: string): CheckOutcome => ({ status: 'fail', code: 'CHECK_ABORTED', detail: `${what}: stopped before an answer (the run was cancelled or ran out of time)`, hint: '' });

function dnsFailure(error: unknown, host: string, role: string): CheckOutcome {
	const code = errorCode(error);
	if (code === 'ETIMEDOUT') return { status: 'fail', code: 'REACH_DNS', detail: `DNS lookup of ${host} did not answer in time`, hint: 'Check the DNS server this machine uses' };
	const cloud = isMicrosoftRole(role) ? '; for Microsoft hosts check the Cloud setting of the credential (global, US Government, China)' : '';
	const why = code === 'EAI_AGAIN' ? 'could not be resolved now (DNS temporarily failing)' : 'does not exist in DNS';
	return { status: 'fail', code: 'REACH_DNS', detail: `${host} ${why} (${code || messageOf(error)})`, hint: `Check the host name${role ? ` of the ${role} server` : ''} for typos${cloud}` };
}

function connectFailure(error: unknown, what: string, port: number, role: string, timeoutMs: number): CheckOutcome {
	const code = errorCode(error);
	if (code === 'ECONNREFUSED') {
		return { status: 'fail', code: 'REACH_REFUSED', detail: `${what} refused the connection: nothing listens on port ${port}`, hint: `Check the port (${usualPorts(role)}) and that the server runs` };
	}
	if (code === 'ETIMEDOUT') {
		return { status: 'fail', code: 'REACH_TIMEOUT', detail: `${what} did not answer the TCP connect within ${timeoutMs / 1000} s`, hint: `A firewall or egress filter probably drops the connection: allow outbound TCP to port ${port} from this machine` };
	}
	return { status: 'fail', code: 'REACH_FAILED', detail: `${what} unreachable: ${code || messageOf(error)}`, hint: `Check the network route from this machine to port ${port}` };
}

/** One TCP connect, closed as soon as it succeeds; never leaves the socket open. */
function connectOnce(address: string, port: number, signal: AbortSignal, deadline: number): Promise<void> {
	return new Promise((resolve, reject) => {
		const socket = net.connect({ host: address, port });
		const finish = (error?: Error) => {
			clearTimeout(timer);
			signal.removeEventListener('abort', onAbort);
			socket.destroy();
			if (error) reject(error);
			else resolve();
		};
		const onAbort = () => finish(codedError('aborted', 'ABORT_ERR'));
		const timer = setTimeout(() => finish(codedError('timed out', 'ETIMEDOUT')), Math.max(0, deadline - Date.now()));
		signal.addEventListener('abort', onAbort, { once: true });
		socket.once('connect', () => finish());
		socket.once('error', finish);
		if (signal.aborted) onAbort();
	});
}

/** `promise`, or a rejection when the signal aborts or the deadline passes first. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal, deadline: number): Promise<T> {
	return new Promise<T>((resolve, reject) => {
		const done = () => {
			clearTimeout(timer);
			signal.removeEventListener('abort', onAbort);
		};
		const onAbort = () => {
			done();
			reject(codedError('aborted', 'ABORT_ERR'));
		};
		const timer = setTimeout(() => {
			done();
			reject(codedError('timed out', 'ETIMEDOUT'));
		}, Math.max(0, deadline - Date.now()));
		signal.addEventListener('abort', onAbort, { once: true });
		if (signal.aborted) onAbort();
		promise.then(
			(value) => {
				done();
				resolve(value);
			},
			(error: unknown) => {
				done();
				reject(error);
			},
		);
	});
}

export function codedError(message: string, code: string): Error {
	return Object.assign(new Error(message), { code });
}

export const errorCode = (error: unknown): string => (error && typeof error === 'object' && 'code' in error ? String((error as { code: unknown }).code) : '');
export const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));
