import type { ICredentialDataDecryptedObject, INodeCredentialTestResult } from 'n8n-workflow';

import type { TokenAudience, TokenProvider } from '../../auth/app-only-token-provider';
import { appOnlyTokens, assertMailboxAllowed, readAppOnlyCredential } from './microsoft-connection';
import { describeItemError } from './node-errors';
import { maskIdentifier } from './redact';

type AudienceCheck = { audience: TokenAudience; host: string } & (
	| { ok: true; minutes: number; roles: string[] }
	| { ok: false; message: string; hint?: string }
);

const AUDIENCE_NAME: Record<TokenAudience, string> = { graph: 'Graph', exchange: 'Exchange (SMTP, IMAP)' };

/** What each audience serves, for the note when only one of the two tokens is refused. */
const ONLY_ONE_NOTE: Record<TokenAudience, string> = {
	graph: 'Sending and reading through Graph need this token; SMTP and IMAP work without it.',
	exchange: 'SMTP and IMAP need this token; Graph works without it.',
};

const isRefused = (check: AudienceCheck): check is AudienceCheck & { ok: false } => !check.ok;

/** App roles a token carries (names only: the token itself is never shown). */
function tokenRoles(token: string): string[] {
	try {
		const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
		return Array.isArray(claims.roles) ? claims.roles.map(String) : [];
	} catch {
		return [];
	}
}

async function checkAudience(tokens: TokenProvider, audience: TokenAudience, host: string, secrets: string[]): Promise<AudienceCheck> {
	try {
		const { token, expiresAt } = await tokens.getToken(audience, { forceRefresh: true });
		return { audience, host, ok: true, minutes: Math.round((expiresAt.getTime() - Date.now()) / 60_000), roles: tokenRoles(token) };
	} catch (error) {
		return { audience, host, ok: false, ...describeItemError(error, secrets) };
	}
}

function describeOk(check: AudienceCheck & { ok: true }): string {
	// With RBAC for Applications the mailbox permissions live in Exchange, not in the token.
	const roles = check.roles.length ? `roles ${check.roles.join(', ')}` : 'no app roles in the token (fine with RBAC for Applications)';
	return `${AUDIENCE_NAME[check.audience]} ${check.host}: ${roles}`;
}

const fixOf = (check: { message: string; hint?: string }) => (check.hint ? `${check.message}. Fix: ${check.hint}` : check.message);

/**
 * Test button: one fresh token for Graph and one for Exchange (the credential serves both), and
 * says which one was refused; never shows a token.
 */
export async function testAppOnlyCredential(data: ICredentialDataDecryptedObject): Promise<INodeCredentialTestResult> {
	let secrets: string[] = [];
	try {
		const credential = readAppOnlyCredential(data);
		secrets = credential.secrets;
		if (credential.mailbox) assertMailboxAllowed(credential, credential.mailbox, 'Default Mailbox');
		const tokens = appOnlyTokens(credential);
		const { cloud, clientId, tenantId } = credential.config;
		const [graph, exchange] = await Promise.all([
			checkAudience(tokens, 'graph', cloud.graphHost, secrets),
			checkAudience(tokens, 'exchange', cloud.exchangeHost, secrets),
		]);
		const app = `app ${maskIdentifier(clientId)} in tenant ${maskIdentifier(tenantId)}`;
		const refused = [graph, exchange].filter(isRefused);
		if (refused.length === 0 && graph.ok && exchange.ok) {
			return {
				status: 'OK',
				message: `Tokens acquired for ${app} (valid ${Math.min(graph.minutes, exchange.minutes)} min). ${describeOk(graph)}. ${describeOk(exchange)}.`,
			};
		}
		if (refused.length === 2) {
			// One cause (wrong secret, unknown tenant) usually refuses both: say it once.
			const [first, second] = refused;
			return {
				status: 'Error',
				message: first.message === second.message ? fixOf(first) : `Graph refused: ${fixOf(first)}. Exchange refused: ${fixOf(second)}`,
			};
		}
		const [bad] = refused;
		const good = bad === graph ? exchange : graph;
		return {
			status: 'Error',
			message: `${AUDIENCE_NAME[good.audience]} token OK, but ${AUDIENCE_NAME[bad.audience]} (${bad.host}) refused: ${fixOf(bad)}. ${ONLY_ONE_NOTE[bad.audience]}`,
		};
	} catch (error) {
		return { status: 'Error', message: fixOf(describeItemError(error, secrets)) };
	}
}
