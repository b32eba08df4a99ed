import type { TokenProvider } from '../auth/app-only-token-provider';
import { IdentityError } from '../auth/identity-errors';
import { runChecks, testButtonVerdict, TEST_BUTTON_BUDGET_MS } from '../diagnostics/checks';
import type { ConnectionKind } from './connection';
import { text } from './credential-fields';
import { exchangeChecks, exchangeTestChecks, notTestedNote, type ExchangeCheckSetup } from './exchange-checks';
import { exchangeConnection } from './microsoft-exchange';
import { DELEGATED_CREDENTIAL, delegatedTokens, readDelegatedCredential, tokenUser } from './microsoft-credential';

function graphCredentialRefused(): IdentityError {
	return new IdentityError(
		'This delegated credential is connected for Microsoft Graph (Use For = Microsoft Graph Mail), and IMAP and SMTP refuse its token',
		'WRONG_AUDIENCE',
		'Use Authentication "Microsoft 365 Delegated (Graph)" with this credential, or set "Use For" to IMAP and SMTP in the credential and click Connect my account again',
	);
}

/** A person's account connected in n8n ("Connect my account"); n8n refreshes its tokens through the hook. */
export const microsoftDelegatedKind: ConnectionKind = {
	authentication: 'microsoftDelegated',
	displayName: 'Microsoft 365 Delegated (OAuth)',
	description: 'A connected Microsoft 365 account signing in with XOAUTH2',
	labels: {
		send: { displayName: 'Microsoft 365 Delegated (SMTP OAuth)', description: 'A connected Microsoft 365 account (Connect my account) with SMTP.Send' },
		read: { displayName: 'Microsoft 365 Delegated (IMAP OAuth)', description: 'A connected Microsoft 365 account with IMAP.AccessAsUser.All' },
	},
	credentialType: DELEGATED_CREDENTIAL,
	protocols: ['imap', 'smtp'],
	send: true,
	read: true,
	selectsMailbox: true,
	async open(data, hooks) {
		const credential = readDelegatedCredential(data);
		const refreshing = delegatedTokens(credential, hooks.refreshDelegated);
		// Without n8n's refresh (the credential test) a refused token is tried once more as it is,
		// so the answer is the server's refusal, not "cannot be renewed here".
		const tokens: TokenProvider = hooks.refreshDelegated
			? refreshing
			: { getToken: (audience, options) => refreshing.getToken(audience, { ...options, rejectedToken: undefined, forceRefresh: false }) };
		const signedInUser = async () => tokenUser((await tokens.getToken(credential.audience)).token);
		const connection = exchangeConnection(credential, tokens, 'delegated', signedInUser);
		const setup: ExchangeCheckSetup = {
			kind: microsoftDelegatedKind,
			credential,
			tokens,
			flavour: 'delegated',
			clientId: text(data, 'clientId'),
			tenantId: text(data, 'tenant'),
			mailboxFor: (requested) => connection.mailboxFor(requested),
		};
		return {
			...connection,
			async checks(options) {
				// A Graph token is refused by IMAP and SMTP: say so before anything connects.
				if (credential.audience === 'graph') throw graphCredentialRefused();
				return await exchangeChecks(setup, options);
			},
			/**
			 * The staged checks of the connected account: n8n itself offers no Test button for
			 * OAuth2 credentials (it checks only that a token is stored), the Test Connection node does.
			 */
			async test() {
				const { checks } = await exchangeTestChecks(setup);
				const results = await runChecks(checks, { budgetMs: TEST_BUTTON_BUDGET_MS, secrets: credential.secrets });
				return `${testButtonVerdict(results)}${notTestedNote(results)}`;
			},
		};
	},
};
