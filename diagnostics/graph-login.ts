import { maskIdentifier } from '../model/redact';
import type { MailReader } from '../transports/contracts';
import { outcomeOfError, type Check, type CheckOutcome } from './checks';
import { adminConsentHint, graphRbacHint, mailboxNotRestHint } from './exchange-hints';
import { withRelease } from './login-context';
import { wrongAccountHint, type Flavour, type TokenFindings } from './microsoft-token';

/**
 * Graph's login and read stages through the project's Graph reader: the first mailbox call
 * (one message id of the Inbox: token, Mail permission and mailbox access at once), then the
 * Inbox's counts. Graph refusals become the fix with the user's own client id and mailbox.
 */

export interface GraphLoginContext {
	flavour: Flavour;
	clientId: string;
	/** The mailbox the checks open; '' = the signed-in account (`/me`). */
	mailbox: string;
	/** Opens a reader of that mailbox; each check closes its own. */
	openReader: () => MailReader;
	/** What the token check learnt (roles / scp, the signed-in account), read when a refusal needs it. */
	findings: TokenFindings;
}

const MAIL_READ_PERMISSIONS = ['Mail.Read', 'Mail.ReadWrite', 'Mail.ReadBasic', 'Mail.Read.Shared', 'Mail.ReadWrite.Shared'];
export const GRAPH_INBOX = 'Inbox';

const who = (ctx: GraphLoginContext) => (ctx.mailbox ? maskIdentifier(ctx.mailbox) : '') || `the signed-in account${ctx.findings.claims?.upn ? ` (${maskIdentifier(ctx.findings.claims.upn)})` : ''}`;
const same = (a: string, b: string) => a.trim().toLowerCase() === b.trim().toLowerCase();

export function graphLoginCheck(ctx: GraphLoginContext): Check {
	return {
		step: 'login',
		target: 'graph',
		needs: ['token:graph'],
		run: (signal) =>
			withReader(ctx, signal, async (reader) => {
				await reader.verify();
				return { status: 'pass', detail: `Graph accepted the token and opened the mailbox of ${who(ctx)}` };
			}),
	};
}

export function graphReadCheck(ctx: GraphLoginContext, folder = GRAPH_INBOX): Check {
	return {
		step: 'read',
		target: folder,
		needs: ['login:graph'],
		run: (signal) =>
			withReader(ctx, signal, async (reader) => {
				if (!reader.status) return { status: 'skipped', detail: 'skipped: this reader cannot count a folder' };
				const status = await reader.status(folder);
				const unread = status.unread === undefined ? '' : `, ${status.unread} unread`;
				return {
					status: 'pass',
					detail: `${status.path} of ${who(ctx)}: ${status.total} messages${unread}`,
					facts: { folder: status.path, total: status.total, ...(status.unread === undefined ? {} : { unread: status.unread }) },
				};
			}),
	};
}

/** A reader for one check, closed after it, also when the runner gives up on the check. */
async function withReader(ctx: GraphLoginContext, signal: AbortSignal, use: (reader: MailReader) => Promise<CheckOutcome>): Promise<CheckOutcome> {
	const reader = ctx.openReader();
	return await withRelease(signal, () => reader.close(), () => use(reader).catch((error: unknown) => graphRefusal(error, ctx)));
}

/** A failed Graph call as an outcome whose hint names the fix with the user's values. */
export function graphRefusal(error: unknown, ctx: GraphLoginContext): CheckOutcome {
	const outcome = outcomeOfError(error);
	const claims = ctx.findings.claims;
	const facts: TokenFacts = { roles: claims?.roles, scopes: claims?.scp, signedIn: claims?.upn || undefined };
	const mailbox = ctx.mailbox || facts.signedIn || '<mailbox>';
	const values = { clientId: ctx.clientId, mailbox };
	const graphCode = (error as { graphCode?: string } | undefined)?.graphCode;
	switch (outcome.code) {
		case 'GRAPH_MAILBOX_NOT_REST':
			return { ...outcome, hint: mailboxNotRestHint(values) };
		case 'GRAPH_ACCESS_DENIED':
			return { ...outcome, hint: accessDeniedHint(ctx, facts, mailbox) };
		case 'GRAPH_UNAUTHORIZED':
			return { ...outcome, hint: `${outcome.hint}; then run the check again (a token issued before a consent change carries the old permissions for up to an hour)` };
		case 'GRAPH_NOT_FOUND':
			if (graphCode === 'ErrorInvalidUser' || graphCode === 'ResourceNotFound') {
				return { ...outcome, hint: `${mailbox} is not a mailbox of this tenant: check the address (a user's primary address or object id)` };
			}
			return outcome;
		default:
			return outcome;
	}
}

interface TokenFacts {
	roles?: string[];
	scopes?: string[];
	signedIn?: string;
}

function accessDeniedHint(ctx: GraphLoginContext, facts: TokenFacts, mailbox: string): string {
	const values = { clientId: ctx.clientId, mailbox };
	if (ctx.flavour === 'app-only') {
		const rbac = graphRbacHint(values, 'Mail.ReadWrite');
		// Known roles without a mail one: consent is the fix; RBAC comes after it.
		const noMailRole = facts.roles !== undefined && !facts.roles.some((role) => MAIL_READ_PERMISSIONS.includes(role));
		return noMailRole ? `The token has no Mail role. ${adminConsentHint(values, 'the Microsoft Graph application permission Mail.ReadWrite')}. ${rbac}` : rbac;
	}
	const hints: string[] = [];
	const scopes = facts.scopes;
	const own = !ctx.mailbox || (facts.signedIn !== undefined && same(facts.signedIn, ctx.mailbox));
	const wanted = own ? ['Mail.Read', 'Mail.ReadWrite'] : ['Mail.Read.Shared', 'Mail.ReadWrite.Shared'];
	if (scopes !== undefined && !scopes.some((scope) => wanted.includes(scope))) {
		hints.push(`The token has no ${wanted.join(' / ')} scope. ${adminConsentHint(values, `the Microsoft Graph delegated permission ${own ? 'Mail.ReadWrite' : 'Mail.ReadWrite.Shared'}`)}, then click "Connect my account" again`);
	}
	if (!own) {
		const signedIn = facts.signedIn || '<signed-in account>';
		hints.push(`${signedIn} needs Full Access to ${mailbox}, in Exchange Online PowerShell: Add-MailboxPermission -Identity '${mailbox}' -User '${signedIn}' -AccessRights FullAccess (can take up to an hour)`);
		if (facts.signedIn) hints.push(wrongAccountHint(facts.signedIn, mailbox));
	}
	if (hints.length === 0) hints.push(`The account may not open ${mailbox} through Graph: check that it is a licensed Exchange Online mailbox and that the app's delegated Mail permissions were consented`);
	return hints.join('; ');
}
