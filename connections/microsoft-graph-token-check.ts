import type { TokenAudience, TokenProvider } from '../auth/app-only-token-provider';
import type { CloudEndpoints } from '../auth/clouds';
import { ActionableError } from '../model/actionable-error';

type AudienceCheck = { audience: TokenAudience; host: string } & (
	| { ok: true; minutes: number; roles: string[] }
	| { ok: false; error: unknown }
);

const AUDIENCE_NAME: Record<TokenAudience, string> = { graph: 'Graph', exchange: 'Exchange (SMTP, IMAP)' };

/** What each audience serves, for the hint when only one of the two tokens is refused. */
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

async function checkAudience(tokens: TokenProvider, audience: TokenAudience, host: string): Promise<AudienceCheck> {
	try {
		const { token, expiresAt } = await tokens.getToken(audience, { forceRefresh: true });
		return { audience, host, ok: true, minutes: Math.round((expiresAt.getTime() - Date.now()) / 60_000), roles: tokenRoles(token) };
	} catch (error) {
		return { audience, host, ok: false, error };
	}
}

function describeOk(check: AudienceCheck & { ok: true }): string {
	// With RBAC for Applications the mailbox permissions live in Exchange, not in the token.
	const roles = check.roles.length ? `roles ${check.roles.join(', ')}` : 'no app roles in the token (fine with RBAC for Applications)';
	return `${AUDIENCE_NAME[check.audience]} ${check.host}: ${roles}`;
}

/**
 * The app-only credential's Test button: one fresh token for Graph and one for Exchange (the
 * credential serves both). Resolves with a one-line report; throws an ActionableError that says
 * which audience refused (one cause refusing both, e.g. a wrong secret, is said once).
 * `app` names the app and tenant, masked. The provider must redact its errors.
 */
export async function checkAppOnlyTokens(tokens: TokenProvider, cloud: CloudEndpoints, app: string): Promise<string> {
	const [graph, exchange] = await Promise.all([
		checkAudience(tokens, 'graph', cloud.graphHost),
		checkAudience(tokens, 'exchange', cloud.exchangeHost),
	]);
	if (graph.ok && exchange.ok) {
		return `Tokens acquired for ${app} (valid ${Math.min(graph.minutes, exchange.minutes)} min). ${describeOk(graph)}. ${describeOk(exchange)}.`;
	}
	const refused = [graph, exchange].filter(isRefused);
	if (refused.length === 2) {
		const [onGraph, onExchange] = refused.map(({ error }) => error);
		if (messageOf(onGraph) === messageOf(onExchange)) throw onGraph;
		throw new ActionableError(`Graph refused: ${withFix(onGraph)}; Exchange refused: ${messageOf(onExchange)}`, code(onExchange), hintOf(onExchange));
	}
	const [bad] = refused;
	const good = bad === graph ? exchange : graph;
	const hint = hintOf(bad.error);
	throw new ActionableError(
		`${AUDIENCE_NAME[good.audience]} token OK, but ${AUDIENCE_NAME[bad.audience]} (${bad.host}) refused: ${messageOf(bad.error)}`,
		code(bad.error),
		`${hint ? `${hint}. ` : ''}${ONLY_ONE_NOTE[bad.audience]}`,
	);
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
const hintOf = (error: unknown) => (error instanceof ActionableError ? error.hint : '');
const withFix = (error: unknown) => (hintOf(error) ? `${messageOf(error)}. Fix: ${hintOf(error)}` : messageOf(error));
const code = (error: unknown) => (error instanceof ActionableError ? error.code : 'TOKEN_REFUSED');
