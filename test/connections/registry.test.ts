import { authenticationOptions, credentialsFor, credentialTestName, kindFor, mailboxAuthentications, testableProtocols } from '../../connections/registry';
import { ModernAuthReadMailbox } from '../../nodes/ModernAuthReadMailbox/ModernAuthReadMailbox.node';
import { ModernAuthReadMailboxTrigger } from '../../nodes/ModernAuthReadMailboxTrigger/ModernAuthReadMailboxTrigger.node';
import { ModernAuthSendEmail } from '../../nodes/ModernAuthSendEmail/ModernAuthSendEmail.node';
import { ModernAuthTestConnection } from '../../nodes/ModernAuthTestConnection/ModernAuthTestConnection.node';

// The nodes' Authentication selectors and credential lists come from the registry: these are
// the values saved workflows and the editor already know, so they must not drift.
describe('connection registry', () => {
	it('offers the Authentication options each node had, in their order and wording', () => {
		expect(authenticationOptions('send')).toEqual([
			{ name: 'SMTP (Password or None)', value: 'smtp', description: 'Any SMTP server, signing in with user and password or not at all' },
			{ name: 'Microsoft 365 App-Only (SMTP OAuth)', value: 'microsoftAppOnly', description: 'App registration with SMTP.SendAsApp; signs in to SMTP with XOAUTH2, no user password' },
			{ name: 'Microsoft 365 Delegated (SMTP OAuth)', value: 'microsoftDelegated', description: 'A connected Microsoft 365 account (Connect my account) with SMTP.Send' },
			{ name: 'Microsoft 365 App-Only (Graph)', value: 'microsoftAppOnlyGraph', description: 'App registration with Graph Mail.Send / Mail.ReadWrite (application permissions, admin consent); no user password' },
			{ name: 'Microsoft 365 Delegated (Graph)', value: 'microsoftDelegatedGraph', description: 'A connected Microsoft 365 account (Connect my account) with Use For = Microsoft Graph Mail' },
			{ name: 'Exchange Web Services (EWS)', value: 'ews', description: 'On-premises Exchange with NTLM or Basic, or Exchange Online (OAuth) while the tenant still allows EWS' },
		]);
		expect(authenticationOptions('read')).toEqual([
			{ name: 'IMAP (Password)', value: 'imap', description: 'Any IMAP server with user and password' },
			{ name: 'Microsoft 365 App-Only (IMAP OAuth)', value: 'microsoftAppOnly', description: 'App registration with IMAP.AccessAsApp; signs in with XOAUTH2' },
			{ name: 'Microsoft 365 Delegated (IMAP OAuth)', value: 'microsoftDelegated', description: 'A connected Microsoft 365 account with IMAP.AccessAsUser.All' },
			{ name: 'Microsoft 365 App-Only (Graph)', value: 'microsoftAppOnlyGraph', description: 'App registration with Graph Mail.Send / Mail.ReadWrite (application permissions, admin consent); no user password' },
			{ name: 'Microsoft 365 Delegated (Graph)', value: 'microsoftDelegatedGraph', description: 'A connected Microsoft 365 account (Connect my account) with Use For = Microsoft Graph Mail' },
			{ name: 'Exchange Web Services (EWS)', value: 'ews', description: 'On-premises Exchange with NTLM or Basic, or Exchange Online (OAuth) while the tenant still allows EWS' },
		]);
		expect(mailboxAuthentications('read')).toEqual(['microsoftAppOnly', 'microsoftDelegated', 'microsoftAppOnlyGraph', 'microsoftDelegatedGraph', 'ews']);
	});

	it('lists one credential per type, shown for the Authentication values using it, with a Test button the node carries', () => {
		const send = new ModernAuthSendEmail();
		expect(send.description.credentials).toEqual([
			{ name: 'modernAuthSmtpApi', required: true, testedBy: 'modernAuthSmtpConnectionTest', displayOptions: { show: { authentication: ['smtp'] } } },
			{ name: 'modernAuthMicrosoftAppOnlyApi', required: true, testedBy: 'modernAuthMicrosoftAppOnlyTest', displayOptions: { show: { authentication: ['microsoftAppOnly', 'microsoftAppOnlyGraph'] } } },
			{ name: 'modernAuthMicrosoftDelegatedOAuth2Api', required: true, displayOptions: { show: { authentication: ['microsoftDelegated', 'microsoftDelegatedGraph'] } } },
			{ name: 'modernAuthEwsApi', required: true, testedBy: 'modernAuthEwsConnectionTest', displayOptions: { show: { authentication: ['ews'] } } },
		]);
		for (const node of [send, new ModernAuthReadMailbox(), new ModernAuthReadMailboxTrigger()]) {
			for (const credential of node.description.credentials ?? []) {
				if (credential.testedBy) expect(typeof node.methods.credentialTest[credential.testedBy as string]).toBe('function');
			}
		}
		expect(credentialsFor('read').map((c) => c.name)).toEqual(['modernAuthImapApi', 'modernAuthMicrosoftAppOnlyApi', 'modernAuthMicrosoftDelegatedOAuth2Api', 'modernAuthEwsApi']);
	});

	it('an unknown Authentication value names the ones that exist', () => {
		let thrown: unknown;
		try {
			kindFor('exchangeWebServices');
		} catch (error) {
			thrown = error;
		}
		expect(thrown).toMatchObject({ code: 'AUTHENTICATION_UNKNOWN', hint: 'Choose one of: smtp, imap, microsoftAppOnly, microsoftDelegated, microsoftAppOnlyGraph, microsoftDelegatedGraph, ews' });
	});
});

describe('the EWS kind', () => {
	it('is offered by every node through the registry, with its Test button, the EWS protocol and its Exchange Online notice', () => {
		expect(kindFor('ews')).toMatchObject({ displayName: 'Exchange Web Services (EWS)', credentialType: 'modernAuthEwsApi', protocols: ['ews'], send: true, read: true, selectsMailbox: true });
		expect(credentialTestName('modernAuthEwsApi')).toBe('modernAuthEwsConnectionTest');
		expect(testableProtocols()).toContain('ews');
		const nodes = [new ModernAuthSendEmail(), new ModernAuthReadMailbox(), new ModernAuthReadMailboxTrigger(), new ModernAuthTestConnection()];
		for (const node of nodes) {
			expect(typeof (node.methods.credentialTest as Record<string, unknown>).modernAuthEwsConnectionTest).toBe('function');
			const notices = node.description.properties.filter((p) => p.type === 'notice' && p.displayOptions?.show?.authentication?.includes('ews'));
			expect(notices).toHaveLength(1);
			expect(notices[0].displayName).toMatch(/^If the credential's URL is Exchange Online \(outlook\.office365\.com\): .*1 October 2026.*1 April 2027.*prefer Graph/);
			// Only while EWS is chosen: no other kind has a notice.
			expect(node.description.properties.filter((p) => p.type === 'notice' && p.name.endsWith('Notice') && p.displayOptions?.show?.authentication)).toHaveLength(1);
		}
		const protocol = new ModernAuthTestConnection().description.properties.find((p) => p.name === 'protocol')!;
		expect(protocol.options).toContainEqual({ name: 'Exchange Web Services', value: 'ews' });
	});
});

describe('a delegated credential connected for the other API', () => {
	it('is refused by the staged checks of each kind before anything connects, naming the Authentication to use', async () => {
		const graphCredential = { useFor: 'graph', oauthTokenData: { access_token: 'not-used' } };
		const exchange = await kindFor('microsoftDelegated').open(graphCredential, {});
		await expect(exchange.checks({ protocol: 'imap', mailbox: 'a@contoso.example' })).rejects.toMatchObject({ code: 'WRONG_AUDIENCE', hint: expect.stringContaining('Microsoft 365 Delegated (Graph)') });
		await expect(kindFor('microsoftDelegatedGraph').open({ useFor: 'exchange', oauthTokenData: { access_token: 'not-used' } }, {})).rejects.toMatchObject({ code: 'WRONG_AUDIENCE' });
	});
});
