import type { ActionableError } from '../model/actionable-error';
import { maskIdentifier } from '../model/redact';
import type { MailSender } from '../transports/contracts';
import type { Check } from './checks';
import { enableSmtpAuthLine, servicePrincipalHint } from './exchange-hints';
import { toActionable, withHint, withRelease, withWrongAccount, type LoginProbe } from './login-context';

const TENANT_WIDE_SMTP_AUTH = 'tenant-wide: Set-TransportConfig -SmtpClientAuthenticationDisabled $false';

export interface SmtpLoginOptions extends LoginProbe {
	/** host:port, for the detail. */
	server: string;
	/** A fresh sender (its own connection), its timeouts within `timeoutMs`. */
	sender(timeoutMs: number): MailSender;
}

/**
 * SMTP EHLO + AUTH through the real sender (nodemailer's verify), nothing sent: the last
 * harmless step of an SMTP test. The transport's codes (SMTP_BASIC_AUTH_DISABLED,
 * SMTP_XOAUTH2_REJECTED...) stay; the hints gain the PowerShell lines with the user's values.
 */
export function smtpLoginCheck(options: SmtpLoginOptions): Check {
	const timeoutMs = options.timeoutMs ?? 10_000;
	return {
		step: 'login',
		target: 'smtp',
		needs: options.needs,
		timeoutMs,
		async run(signal) {
			const sender = options.sender(timeoutMs);
			try {
				await withRelease(signal, () => sender.close(), () => sender.verify());
			} catch (error) {
				throw smtpLoginFailure(toActionable(error, 'SMTP_ERROR'), options);
			}
			const how = options.signIn === 'none' ? 'EHLO accepted, no sign-in configured' : `EHLO and AUTH ${options.signIn === 'password' ? 'with the password' : 'XOAUTH2'} accepted for ${maskIdentifier(options.values.mailbox)}`;
			return { status: 'pass', detail: `${options.server}: ${how}` };
		},
	};
}

/** The refusal with the fix for this sign-in; other failures keep the transport's hint. */
export function smtpLoginFailure(error: ActionableError, probe: LoginProbe): ActionableError {
	const { mailbox } = probe.values;
	if (error.code === 'SMTP_BASIC_AUTH_DISABLED') {
		if (probe.signIn === 'password' || probe.signIn === 'none') {
			return withHint(
				error,
				`The provider switched password sign-in off: use an OAuth credential (Microsoft 365 App-Only or Delegated) for ${mailbox}. ` +
					`Only if the password must stay, an Exchange admin turns SMTP AUTH back on: ${enableSmtpAuthLine(mailbox)} (${TENANT_WIDE_SMTP_AUTH})`,
			);
		}
		return withHint(error, withWrongAccount(`SMTP AUTH is switched off for the mailbox or the tenant. In Exchange Online PowerShell: ${enableSmtpAuthLine(mailbox)} (${TENANT_WIDE_SMTP_AUTH})`, probe));
	}
	if (error.code === 'SMTP_XOAUTH2_REJECTED' && probe.signIn === 'app-only') {
		return withHint(
			error,
			`Exchange refuses the app's token for ${mailbox} for any of these causes, in this order: ` +
				`1) ${servicePrincipalHint(probe.values, 'smtp')}; 2) SMTP AUTH is off for the mailbox: ${enableSmtpAuthLine(mailbox)}`,
		);
	}
	if (error.code === 'SMTP_XOAUTH2_REJECTED' && probe.signIn === 'delegated') {
		return withHint(error, withWrongAccount(`${error.hint}: ${enableSmtpAuthLine(mailbox)}`, probe));
	}
	return error;
}
