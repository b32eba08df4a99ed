import type { ImapFlow } from 'imapflow';

/** A command the server answered with NO or BAD; `serverText` is its own words. */
export class ServerRefusal extends Error {
	constructor(
		readonly command: string,
		readonly status: 'NO' | 'BAD',
		readonly serverText: string,
	) {
		super(`${command} refused by the server: ${serverText}`);
		this.name = 'ServerRefusal';
	}
}

export interface CommandResponse {
	response?: { attributes?: Array<{ type?: string; value?: string; section?: Array<{ value?: string }> }> };
	next(): void;
}

type UntaggedHandlers = Record<string, (untagged: unknown) => Promise<void>>;

interface CommandError extends Error {
	responseStatus?: string;
	responseText?: string;
	response?: CommandResponse['response'];
}

/**
 * Runs one IMAP command through imapflow's command queue. imapflow's helpers (search, store,
 * move, expunge) answer `false` on a refusal and keep the reason to themselves; this throws
 * ServerRefusal with the server's text instead. Other failures (connection lost) pass through.
 */
export async function runCommand(
	client: ImapFlow,
	command: string,
	attributes: unknown,
	untagged: UntaggedHandlers = {},
): Promise<CommandResponse> {
	const exec = (client as unknown as {
		exec(command: string, attributes: unknown, options: unknown): Promise<CommandResponse>;
	}).exec.bind(client);
	try {
		const response = await exec(command, attributes, { untagged });
		response.next();
		return response;
	} catch (error) {
		const e = error as CommandError;
		if (e.responseStatus === 'NO' || e.responseStatus === 'BAD') {
			throw new ServerRefusal(command, e.responseStatus, serverWords(e));
		}
		throw error;
	}
}

/** The response code (e.g. [NOPERM]) and text, without Dovecot's timing suffix. */
function serverWords(error: CommandError): string {
	const section = error.response?.attributes?.[0]?.section;
	const code = section?.[0]?.value ? `[${section.map((part) => part.value).filter(Boolean).join(' ')}] ` : '';
	const text = String(error.responseText || error.message)
		.replace(/\s*\(\d+\.\d+(?: \+ \d+\.\d+)* secs\)\.?\s*$/, '')
		.trim();
	return `${code}${text}`;
}
