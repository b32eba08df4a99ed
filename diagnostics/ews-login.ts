import { maskIdentifier } from '../model/redact';
import type { MailReader } from '../transports/contracts';
import { EwsError, ewsErrorFor } from '../transports/ews/errors';
import { EWS_CODES, type EwsClient } from '../transports/ews/types';
import { outcomeOfError, type Check, type CheckOutcome } from './checks';
import { adminConsentHint } from './exchange-hints';
import { withRelease } from './login-context';
import { permissionCheck, type Flavour, type TokenFindings } from './microsoft-token';

/**
 * EWS's login and read stages: GetFolder of the Inbox (sign-in, impersonation or delegate
 * access and the mailbox at once), then the Inbox's counts through the reader. A refusal keeps
 * the transport's code and fix; a refused sign-in names the fields of the method in use.
 */

export type EwsSignIn = 'ntlm' | 'basic' | 'app-only' | 'ropc';

export interface EwsLoginContext {
	signIn: EwsSignIn;
	/** Who signs in, as messages show it (no secret). */
	account: string;
	/** The mailbox the checks open; '' = the account's own. */
	mailbox: string;
	/** OAuth: the app registration's client id, for the PowerShell lines. */
	clientId: string;
	/** A client of that mailbox for one check; the check closes it. */
	openClient: () => EwsClient;
	openReader: () => MailReader;
	findings: TokenFindings;
}

export const EWS_INBOX = 'inbox';

const who = (ctx: EwsLoginContext) => (ctx.mailbox ? maskIdentifier(ctx.mailbox) : `${ctx.account}'s own mailbox`);

/** GetFolder Inbox: the first request that needs the account to be signed in and allowed on the mailbox. */
export async function getInbox(client: EwsClient, clientId?: string): Promise<void> {
	const mailbox = client.mailboxElement();
	const [message] = await client.call('GetFolder', {
		'm:FolderShape': { 't:BaseShape': 'IdOnly' },
		'm:FolderIds': { 't:DistinguishedFolderId': { '@_Id': EWS_INBOX, ...(mailbox ?? {}) } },
	});
	if (!message) throw new EwsError('GetFolder answered without a response message', EWS_CODES.RESPONSE_INVALID, 'The server did not answer like Exchange; check the EWS URL');
	if (message.responseClass === 'Error') throw ewsErrorFor(message, { operation: 'GetFolder Inbox', mailbox: client.mailbox, ...(clientId ? { clientId } : {}) });
}

export function ewsLoginCheck(ctx: EwsLoginContext, needs: string[]): Check {
	return {
		step: 'login',
		target: 'ews',
		needs,
		run: (signal) =>
			withClient(ctx, signal, async (client) => {
				await getInbox(client, ctx.clientId);
				const facts = { url: client.url, version: client.version, ...(ctx.mailbox ? { mailbox: maskIdentifier(ctx.mailbox) } : {}) };
				return { status: 'pass', detail: `EWS at ${hostOf(client.url)} accepted ${ctx.account} and opened the Inbox of ${who(ctx)}`, facts };
			}),
	};
}

export function ewsReadCheck(ctx: EwsLoginContext): Check {
	return {
		step: 'read',
		target: 'Inbox',
		needs: ['login:ews'],
		run: (signal) =>
			withReader(ctx, signal, async (reader) => {
				if (!reader.status) return { status: 'skipped', detail: 'skipped: this reader cannot count a folder' };
				const status = await reader.status(EWS_INBOX);
				const unread = status.unread === undefined ? '' : `, ${status.unread} unread`;
				return {
					status: 'pass',
					detail: `${status.path} of ${who(ctx)}: ${status.total} messages${unread}`,
					facts: { folder: status.path, total: status.total, ...(status.unread === undefined ? {} : { unread: status.unread }) },
				};
			}),
	};
}

/**
 * App-only: whether the token carries full_access_as_app. Without the role Exchange can still
 * allow the app (RBAC for Applications: the role is then not in the token), so a missing role
 * asks Exchange once: accepted is a pass saying so, refused is this stage's failure with the
 * consent fix (not a login failure that hides the cause).
 */
export function ewsPermissionCheck(ctx: EwsLoginContext, flavour: Flavour): Check {
	const permission = permissionCheck({ protocol: 'ews', flavour, findings: ctx.findings, clientId: ctx.clientId, mailbox: ctx.mailbox });
	return {
		...permission,
		async run(signal) {
			const outcome = await permission.run(signal);
			if (flavour !== 'app-only' || outcome.status !== 'warn' || outcome.code !== 'PERMISSION_MISSING' || !ctx.mailbox) return outcome;
			const client = ctx.openClient();
			try {
				await withRelease(signal, () => client.close(), () => getInbox(client, ctx.clientId));
				return { ...outcome, status: 'pass', detail: `${outcome.detail.replace(/: this can still work.*$/, '')}; Exchange accepted the app for ${who(ctx)} all the same (RBAC for Applications)`, hint: '', code: undefined };
			} catch (error) {
				const code = codeOf(error);
				if (code !== EWS_CODES.UNAUTHORIZED && code !== EWS_CODES.ACCESS_DENIED) return outcome;
				return {
					status: 'fail',
					detail: `${outcome.detail.replace(/: this can still work.*$/, '')}, and Exchange refused the app (${outcomeOfError(error).detail})`,
					hint: `${adminConsentHint({ clientId: ctx.clientId, mailbox: ctx.mailbox }, 'the Office 365 Exchange Online application permission full_access_as_app')}; then run the test again (a token issued before the consent carries the old roles for up to an hour)`,
					code: 'PERMISSION_MISSING',
					facts: outcome.facts,
				};
			}
		},
	};
}

const codeOf = (error: unknown) => (error as { code?: string } | undefined)?.code ?? '';

function hostOf(url: string): string {
	try {
		return new URL(url).host;
	} catch {
		return url;
	}
}

async function withClient(ctx: EwsLoginContext, signal: AbortSignal, use: (client: EwsClient) => Promise<CheckOutcome>): Promise<CheckOutcome> {
	const client = ctx.openClient();
	return await withRelease(signal, () => client.close(), () => use(client).catch((error: unknown) => ewsRefusal(error, ctx)));
}

async function withReader(ctx: EwsLoginContext, signal: AbortSignal, use: (reader: MailReader) => Promise<CheckOutcome>): Promise<CheckOutcome> {
	const reader = ctx.openReader();
	return await withRelease(signal, () => reader.close(), () => use(reader).catch((error: unknown) => ewsRefusal(error, ctx)));
}

/** What to check when the server refused the sign-in itself, per method. */
const SIGN_IN_FIX: Record<EwsSignIn, string> = {
	ntlm:
		'Check Username, Password and Domain in the credential (the Windows account, NTLMv2), and that the EWS virtual directory allows Windows authentication: Get-WebServicesVirtualDirectory | Format-List Name,WindowsAuthentication; Set-WebServicesVirtualDirectory -Identity "<server>\\EWS (Default Web Site)" -WindowsAuthentication $true',
	basic:
		'Check Username and Password in the credential, and that the EWS virtual directory allows Basic authentication: Set-WebServicesVirtualDirectory -Identity "<server>\\EWS (Default Web Site)" -BasicAuthentication $true (Exchange Online has no Basic: use OAuth there)',
	'app-only':
		'Exchange refused the token: the app needs the Office 365 Exchange Online application permission full_access_as_app with admin consent (a token issued before the consent carries the old roles for up to an hour), and Exchange Host must be the EWS host',
	ropc: 'Exchange refused the token: the app needs the delegated permission EWS.AccessAsUser.All (Office 365 Exchange Online) with consent, and the account an Exchange Online mailbox',
};

/** A failed EWS call as an outcome: the transport's code and fix, a refused sign-in with the method's own. */
export function ewsRefusal(error: unknown, ctx: EwsLoginContext): CheckOutcome {
	const outcome = outcomeOfError(error);
	const ewsCode = (error as { ewsCode?: string } | undefined)?.ewsCode;
	const httpStatus = (error as { responseCode?: number } | undefined)?.responseCode;
	const facts = { ...(ewsCode ? { ewsCode } : {}), ...(httpStatus ? { httpStatus } : {}) };
	if (outcome.code === EWS_CODES.UNAUTHORIZED) return { ...outcome, hint: SIGN_IN_FIX[ctx.signIn], facts };
	return { ...outcome, ...(Object.keys(facts).length ? { facts } : {}) };
}
