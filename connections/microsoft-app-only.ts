import { certificateExpiryCheck, secretExpiryCheck } from '../diagnostics/credential-expiry';
import { runChecks, testButtonVerdict, TEST_BUTTON_BUDGET_MS, type Check } from '../diagnostics/checks';
import { tokenCheck, type TokenFindings } from '../diagnostics/microsoft-token';
import { maskIdentifier } from '../model/redact';
import type { ConnectionKind } from './connection';
import { identityEndpoint, overEndpoint } from './connection-checks';
import { exchangeChecks, exchangeTestChecks, notTestedNote, TEST_BUTTON_TOKEN_TIMEOUT_MS, type ExchangeCheckSetup } from './exchange-checks';
import { exchangeConnection } from './microsoft-exchange';
import { noteOneAudienceRefused, tokenSummary } from './microsoft-graph-token-check';
import { APP_ONLY_CREDENTIAL, appOnlyTokens, assertMailboxAllowed, readAppOnlyCredential } from './microsoft-credential';

/** An app registration signing in with its own secret or certificate (client credentials), to SMTP and IMAP with XOAUTH2. */
export const microsoftAppOnlyKind: ConnectionKind = {
	authentication: 'microsoftAppOnly',
	displayName: 'Microsoft 365 App-Only (OAuth)',
	description: 'App registration signing in with XOAUTH2, no user password',
	labels: {
		send: { displayName: 'Microsoft 365 App-Only (SMTP OAuth)', description: 'App registration with SMTP.SendAsApp; signs in to SMTP with XOAUTH2, no user password' },
		read: { displayName: 'Microsoft 365 App-Only (IMAP OAuth)', description: 'App registration with IMAP.AccessAsApp; signs in with XOAUTH2' },
	},
	credentialType: APP_ONLY_CREDENTIAL,
	protocols: ['imap', 'smtp'],
	send: true,
	read: true,
	selectsMailbox: true,
	async open(data) {
		const credential = readAppOnlyCredential(data);
		const tokens = appOnlyTokens(credential);
		const { config, cloud } = credential;
		const connection = exchangeConnection(credential, tokens, 'app-only');
		const ca = credential.caCertificate || undefined;
		const setup: ExchangeCheckSetup = {
			kind: microsoftAppOnlyKind,
			credential,
			tokens,
			flavour: 'app-only',
			clientId: config.clientId,
			tenantId: config.tenantId,
			mailboxFor: (requested) => connection.mailboxFor(requested),
			credentialCheck: () =>
				config.certificate
					? certificateExpiryCheck(config.certificate.certificatePem)
					: secretExpiryCheck({ graphHost: cloud.graphHost, clientId: config.clientId, clientSecret: config.clientSecret ?? '', tokens, ca }),
		};
		return {
			...connection,
			checks: (options) => exchangeChecks(setup, options),
			/**
			 * Test button: the identity platform, the credential's expiry, a Graph and an Exchange
			 * token (the credential serves both; never the tokens themselves), and with a Default
			 * Mailbox the login and read of each protocol the Exchange token carries a role for.
			 */
			async test() {
				if (credential.mailbox) assertMailboxAllowed(credential, credential.mailbox, 'Default Mailbox');
				const graphFindings: TokenFindings = {};
				const graphToken = tokenCheck({ tokens, audience: 'graph', authorityHost: cloud.authorityHost, tenantId: config.tenantId, findings: graphFindings });
				const extra: Check[] = [{ ...graphToken, timeoutMs: TEST_BUTTON_TOKEN_TIMEOUT_MS, needs: [...new Set([...(graphToken.needs ?? []), ...overEndpoint(identityEndpoint(cloud.authorityHost, ca))])] }];
				// Here the secret's expiry is read with the Graph token just checked: not tried when that was refused
				const readsGraph = { ...setup, credentialCheck: () => ({ ...setup.credentialCheck!(), ...(config.certificate ? {} : { needs: ['token:graph'] }) }) };
				const { checks, findings } = await exchangeTestChecks(readsGraph, extra);
				const results = noteOneAudienceRefused(await runChecks(checks, { budgetMs: TEST_BUTTON_BUDGET_MS, secrets: credential.secrets }), cloud);
				const verdict = testButtonVerdict(results);
				const app = `app ${maskIdentifier(config.clientId)} in tenant ${maskIdentifier(config.tenantId)}`;
				return `${tokenSummary(app, cloud, { graph: graphFindings, exchange: findings })} ${verdict}${notTestedNote(results)}`;
			},
		};
	},
};
