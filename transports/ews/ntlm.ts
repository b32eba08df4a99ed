import https from 'node:https';
import type { Socket } from 'node:net';
import os from 'node:os';

import { EwsError } from './errors';
import { EWS_CODES } from './types';

interface Type2Message {
	flags: number;
	version: 1 | 2;
	challenge: Buffer;
	targetName: string;
	targetInfo?: { parsed: Record<string, string>; buffer: Buffer };
}

interface NtlmMessages {
	createType1Message(workstation?: string, target?: string): string;
	decodeType2Message(header: string): Type2Message;
	createType3Message(type2: Type2Message, username: string, password: string, workstation?: string, target?: string): string;
}

// The package ships no type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const messages = require('@ewsjs/ntlm-client') as NtlmMessages;

export interface NtlmCredentials {
	username: string;
	password: string;
	domain: string;
	workstation?: string;
}

/** A user written as DOMAIN\user keeps its domain there unless the domain field is set. */
export function splitNtlmUser(credentials: NtlmCredentials): { username: string; domain: string } {
	const slash = credentials.username.indexOf('\\');
	if (slash > 0 && !credentials.domain) return { domain: credentials.username.slice(0, slash), username: credentials.username.slice(slash + 1) };
	return { username: credentials.username, domain: credentials.domain };
}

function workstationOf(credentials: NtlmCredentials): string {
	// NetBIOS names: at most 15 characters, upper case, no dots.
	return (credentials.workstation || os.hostname().split('.')[0] || 'N8N').toUpperCase().slice(0, 15);
}

/** `Authorization` value of the first leg (NEGOTIATE). */
export function ntlmNegotiate(credentials: NtlmCredentials): string {
	// The domain goes in the third message; the first names only the workstation.
	return messages.createType1Message(workstationOf(credentials), '');
}

/** The server's CHALLENGE from `WWW-Authenticate: NTLM <base64>`, or undefined when it sent none. */
export function ntlmChallengeOf(header: string | string[] | undefined): string | undefined {
	for (const value of Array.isArray(header) ? header : header ? header.split(/,\s*(?=NTLM\b|Negotiate\b|Basic\b|Bearer\b)/i) : []) {
		const match = /^\s*NTLM\s+([A-Za-z0-9+/=]+)\s*$/i.exec(value);
		if (match) return match[1];
	}
	return undefined;
}

/**
 * `Authorization` value of the third leg (AUTHENTICATE), always NTLMv2: the library answers with
 * NTLMv1 when a server does not offer extended session security, which Exchange should refuse.
 */
export function ntlmAuthenticate(challenge: string, credentials: NtlmCredentials): string {
	let type2: Type2Message;
	try {
		type2 = messages.decodeType2Message(`NTLM ${challenge}`);
	} catch (error) {
		throw new EwsError(
			`The server's NTLM challenge cannot be read: ${error instanceof Error ? error.message.slice(0, 100) : 'invalid'}`,
			EWS_CODES.UNAUTHORIZED,
			'Check that the URL points at Exchange directly (a proxy in between can break NTLM), or use Basic over HTTPS',
		);
	}
	if (!type2.targetInfo) {
		throw new EwsError(
			'The server offers only NTLMv1 (no target information in its challenge); this client signs in with NTLMv2 only',
			EWS_CODES.UNAUTHORIZED,
			'Enable NTLMv2 on the server (LAN Manager authentication level: send NTLMv2 responses only), or use Basic over HTTPS',
		);
	}
	type2.version = 2;
	const { username, domain } = splitNtlmUser(credentials);
	return messages.createType3Message(type2, username, credentials.password, workstationOf(credentials), domain || type2.targetName);
}

/**
 * One NTLM sign-in: NTLM authenticates a connection, not a request, so a session owns an agent
 * with exactly one kept-alive socket. The handshake and every later request go over that socket;
 * when it closes, the next request signs in again on a new one.
 */
export class NtlmSession {
	readonly agent: https.Agent;
	/** The socket the handshake signed in; undefined until then and after it closed. */
	private signedIn?: Socket;
	busy = false;

	constructor(tls: https.AgentOptions) {
		this.agent = new https.Agent({ ...tls, keepAlive: true, maxSockets: 1, maxFreeSockets: 1, timeout: 60_000 });
	}

	get authenticated(): boolean {
		return Boolean(this.signedIn && !this.signedIn.destroyed);
	}

	isSignedIn(socket: Socket): boolean {
		return this.authenticated && this.signedIn === socket;
	}

	markSignedIn(socket: Socket): void {
		this.signedIn = socket;
		socket.once('close', () => {
			if (this.signedIn === socket) this.signedIn = undefined;
		});
	}

	forget(): void {
		this.signedIn = undefined;
	}

	close(): void {
		this.signedIn = undefined;
		this.agent.destroy();
	}
}
