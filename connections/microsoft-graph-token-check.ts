import type { TokenAudience } from '../auth/app-only-token-provider';
import type { CloudEndpoints } from '../auth/clouds';
import type { CheckResult } from '../diagnostics/checks';
import type { TokenFindings } from '../diagnostics/microsoft-token';

const AUDIENCE_NAME: Record<TokenAudience, string> = { graph: 'Graph', exchange: 'Exchange (SMTP, IMAP)' };

/** What each audience serves, for the hint when only one of the two tokens is refused. */
const ONLY_ONE_NOTE: Record<TokenAudience, string> = {
	graph: 'Sending and reading through Graph need this token; SMTP and IMAP work without it.',
	exchange: 'SMTP and IMAP need this token; Graph works without it.',
};

const hostOf = (cloud: CloudEndpoints, audience: TokenAudience) => (audience === 'graph' ? cloud.graphHost : cloud.exchangeHost);
const succeeded = (result?: CheckResult) => result?.status === 'pass' || result?.status === 'warn';

/**
 * The app-only Test button asks for a Graph and an Exchange token (the credential serves
 * both). When only one is refused, its result says that the other one works and what the
 * refused one is needed for; one cause refusing both (a wrong secret) stays said once.
 */
export function noteOneAudienceRefused(results: CheckResult[], cloud: CloudEndpoints): CheckResult[] {
	const token = (audience: TokenAudience) => results.find((r) => r.step === 'token' && r.target === audience);
	const [graph, exchange] = [token('graph'), token('exchange')];
	const bad = graph?.status === 'fail' && succeeded(exchange) ? graph : exchange?.status === 'fail' && succeeded(graph) ? exchange : undefined;
	if (!bad) return results;
	const badAudience = bad.target as TokenAudience;
	const goodAudience: TokenAudience = badAudience === 'graph' ? 'exchange' : 'graph';
	return results.map((r) =>
		r === bad
			? {
					...r,
					detail: `${AUDIENCE_NAME[goodAudience]} token OK, but ${AUDIENCE_NAME[badAudience]} (${hostOf(cloud, badAudience)}) refused: ${r.detail}`,
					hint: `${r.hint ? `${r.hint.replace(/\.$/, '')}. ` : ''}${ONLY_ONE_NOTE[badAudience]}`,
				}
			: r,
	);
}

/** App roles of a token (names only: the token itself is never shown). */
const rolesOf = (findings: TokenFindings): string[] => findings.claims?.roles ?? [];

/** One line on both tokens: how long they are valid and the roles each carries. */
export function tokenSummary(app: string, cloud: CloudEndpoints, findings: Record<TokenAudience, TokenFindings>): string {
	const minutes = (['graph', 'exchange'] as const).map((a) => findings[a].expiresAt).filter((d): d is Date => d instanceof Date).map((d) => Math.round((d.getTime() - Date.now()) / 60_000));
	const valid = minutes.length ? ` (valid ${Math.min(...minutes)} min)` : '';
	const describe = (audience: TokenAudience) => {
		const roles = rolesOf(findings[audience]);
		// With RBAC for Applications the mailbox permissions live in Exchange, not in the token.
		return `${AUDIENCE_NAME[audience]} ${hostOf(cloud, audience)}: ${roles.length ? `roles ${roles.join(', ')}` : 'no app roles in the token (fine with RBAC for Applications)'}`;
	};
	return `Tokens acquired for ${app}${valid}. ${describe('graph')}. ${describe('exchange')}.`;
}
