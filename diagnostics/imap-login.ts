import type { ActionableError } from '../model/actionable-error';
import { maskIdentifier } from '../model/redact';
import type { MailReader } from '../transports/contracts';
import type { Check } from './checks';
import { enableImapLine, servicePrincipalHint } from './exchange-hints';
import { toActionable, withHint, withRelease, withWrongAccount, type LoginProbe } from './login-context';

export interface ImapProbeOptions extends LoginProbe {
	server: string;
	/** A fresh reader (its own connection), its timeouts within `timeoutMs`. */
	reader(timeoutMs: number): MailReader;
}

/** IMAP AUTHENTICATE / LOGIN through the real reader; the connection is closed again. */
export function imapLoginCheck(options: ImapProbeOptions): Check {
	const timeoutMs = options.timeoutMs ?? 10_000;
	return {
		step: 'login',
		target: 'imap',
		needs: options.needs,
		timeoutMs,
		async run(signal) {
			const reader = options.reader(timeoutMs);
			await probe(signal, reader, options, () => reader.connect());
			const how = options.signIn === 'password' ? 'LOGIN with the password' : 'AUTHENTICATE XOAUTH2';
			return { status: 'pass', detail: `${options.server}: ${how} accepted for ${maskIdentifier(options.values.mailbox)}` };
		},
	};
}

/** The harmless read: SELECT (read-only) of `folder` and its message count. */
export function imapReadCheck(options: ImapProbeOptions & { folder?: string }): Check {
	const folder = options.folder ?? 'INBOX';
	const timeoutMs = options.timeoutMs ?? 10_000;
	return {
		step: 'read',
		target: folder,
		needs: options.needs ?? ['login:imap'],
		timeoutMs,
		async run(signal) {
			const reader = options.reader(timeoutMs);
			const status = await probe(signal, reader, options, async () => {
				await reader.connect();
				if (!reader.status) throw new Error('this reader cannot count a folder');
				return await reader.status(folder);
			});
			const unread = status.unread === undefined ? '' : `, ${status.unread} unread`;
			return {
				status: 'pass',
				detail: `${status.path}: ${status.total} messages${unread}`,
				facts: { total: status.total, ...(status.unread === undefined ? {} : { unread: status.unread }) },
			};
		},
	};
}

async function probe<T>(signal: AbortSignal, reader: MailReader, options: LoginProbe, work: () => Promise<T>): Promise<T> {
	try {
		return await withRelease(signal, () => reader.close(), work);
	} catch (error) {
		throw imapLoginFailure(toActionable(error, 'IMAP_ERROR'), options);
	}
}

/**
 * An IMAP refusal with the fix. Exchange answers "AUTHENTICATE failed" alike for an app it
 * does not know, an app without the mailbox and a mailbox with IMAP off: all listed, in order.
 */
export function imapLoginFailure(error: ActionableError, probe: LoginProbe): ActionableError {
	if (error.code !== 'IMAP_AUTH_FAILED') return error;
	const { mailbox } = probe.values;
	if (probe.signIn === 'app-only') {
		return withHint(
			error,
			`Exchange gives the same answer for each of these causes; check them in this order: ` +
				`1) ${servicePrincipalHint(probe.values, 'imap')}; 2) IMAP is off for the mailbox: ${enableImapLine(mailbox)}`,
		);
	}
	if (probe.signIn === 'delegated') return withHint(error, withWrongAccount(`${error.hint}; IMAP must be on for the mailbox: ${enableImapLine(mailbox)}`, probe));
	return error;
}
