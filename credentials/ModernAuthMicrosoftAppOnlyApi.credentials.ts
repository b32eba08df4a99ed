import type { ICredentialType, INodeProperties, Icon } from 'n8n-workflow';

/**
 * Microsoft Entra ID app registration used without a signed-in user (client credentials).
 * One registration serves SMTP (SMTP.SendAsApp), IMAP (IMAP.AccessAsApp), EWS
 * (full_access_as_app) and Graph (Mail.*): tokens are requested per audience.
 */
export class ModernAuthMicrosoftAppOnlyApi implements ICredentialType {
	name = 'modernAuthMicrosoftAppOnlyApi';

	displayName = 'Microsoft 365 App-Only (Modern Auth Mail) API';

	documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-modern-auth-mail#microsoft-app-only-credential';

	icon: Icon = {
		light: 'file:../icons/mail.svg',
		dark: 'file:../icons/mail.dark.svg',
	};

	properties: INodeProperties[] = [
		{
			displayName: 'Tenant ID',
			name: 'tenantId',
			type: 'string',
			default: '',
			required: true,
			placeholder: '00000000-0000-0000-0000-000000000000 or contoso.onmicrosoft.com',
			description: 'Directory (tenant) ID from the app registration overview, or a verified domain',
		},
		{
			displayName: 'Client ID',
			name: 'clientId',
			type: 'string',
			default: '',
			required: true,
			placeholder: '00000000-0000-0000-0000-000000000000',
			description: 'Application (client) ID from the app registration overview',
		},
		{
			displayName: 'Authentication',
			name: 'authType',
			type: 'options',
			default: 'secret',
			options: [
				{ name: 'Client Secret', value: 'secret' },
				{ name: 'Certificate', value: 'certificate', description: 'Recommended: no expiring shared secret' },
			],
		},
		{
			displayName: 'Client Secret',
			name: 'clientSecret',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			description: 'The secret VALUE (not the secret ID) from Certificates & secrets',
			displayOptions: { show: { authType: ['secret'] } },
		},
		{
			displayName: 'Certificate (PEM)',
			name: 'certificatePem',
			type: 'string',
			typeOptions: { rows: 4 },
			default: '',
			placeholder: '-----BEGIN CERTIFICATE-----',
			description: 'Public certificate uploaded to the app registration',
			displayOptions: { show: { authType: ['certificate'] } },
		},
		{
			displayName: 'Private Key (PEM)',
			name: 'privateKeyPem',
			type: 'string',
			typeOptions: { password: true, rows: 4 },
			default: '',
			placeholder: '-----BEGIN PRIVATE KEY-----',
			displayOptions: { show: { authType: ['certificate'] } },
		},
		{
			displayName: 'Private Key Passphrase',
			name: 'passphrase',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			description: 'Only for an encrypted private key',
			displayOptions: { show: { authType: ['certificate'] } },
		},
		{
			displayName: 'Cloud',
			name: 'cloud',
			type: 'options',
			default: 'global',
			options: [
				{ name: 'Global (Microsoft 365)', value: 'global' },
				{ name: 'US Government (GCC High)', value: 'usGovGccHigh' },
				{ name: 'US Government (DoD)', value: 'usGovDod' },
				{ name: 'China (21Vianet)', value: 'china' },
				{ name: 'Custom', value: 'custom', description: 'Enter every host yourself' },
			],
		},
		{
			displayName: 'Authority Host',
			name: 'authorityHost',
			type: 'string',
			default: '',
			placeholder: 'https://login.microsoftonline.com',
			displayOptions: { show: { cloud: ['custom'] } },
		},
		{
			displayName: 'Exchange Host',
			name: 'exchangeHost',
			type: 'string',
			default: '',
			placeholder: 'https://outlook.office365.com',
			description: 'Token audience for IMAP, SMTP and EWS',
			displayOptions: { show: { cloud: ['custom'] } },
		},
		{
			displayName: 'Graph Host',
			name: 'graphHost',
			type: 'string',
			default: '',
			placeholder: 'https://graph.microsoft.com',
			displayOptions: { show: { cloud: ['custom'] } },
		},
		{
			displayName: 'SMTP Server',
			name: 'smtpServer',
			type: 'string',
			default: '',
			placeholder: 'smtp.office365.com:587',
			description: 'Host and port for sending (STARTTLS). Empty uses the cloud default.',
		},
		{
			displayName: 'Default Mailbox',
			name: 'mailbox',
			type: 'string',
			default: '',
			placeholder: 'robot@contoso.com',
			description:
				'Mailbox the app acts as when a node does not name one. The app needs permission on it (Add-MailboxPermission).',
		},
		{
			displayName: 'Trusted CA Certificate (PEM)',
			name: 'caCertificate',
			type: 'string',
			typeOptions: { rows: 4 },
			default: '',
			description: 'Extra CA to trust for the mail servers, e.g. behind a TLS-inspecting proxy',
		},
	];
}
