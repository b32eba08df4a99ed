import type { ICredentialType, INodeProperties, Icon } from 'n8n-workflow';

import { MAIL_ICON, timeoutFields } from './common/shared-fields';

/**
 * IMAP server with user and password, for mailboxes outside Microsoft 365. Tested through
 * the Read Mailbox node's `modernAuthImapConnectionTest` method.
 */
export class ModernAuthImapApi implements ICredentialType {
	name = 'modernAuthImapApi';

	displayName = 'IMAP (Modern Auth Mail) API';

	documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-modern-auth-mail#imap-credential';

	icon: Icon = MAIL_ICON;

	properties: INodeProperties[] = [
		{ displayName: 'Host', name: 'host', type: 'string', default: '', required: true, placeholder: 'imap.example.com' },
		{ displayName: 'Port', name: 'port', type: 'number', default: 993, description: '993 for SSL/TLS, 143 for STARTTLS' },
		{
			displayName: 'Security',
			name: 'security',
			type: 'options',
			default: 'tls',
			options: [
				{ name: 'SSL/TLS (Implicit)', value: 'tls', description: 'TLS from the first byte, usually port 993' },
				{ name: 'STARTTLS (Required)', value: 'starttls', description: 'Plain connect, then TLS; fails if the server cannot' },
				{ name: 'None (Unencrypted)', value: 'none', description: 'No encryption at all. Only for local test servers.' },
			],
		},
		{
			displayName: 'Allow Unencrypted Connection',
			name: 'allowUnencrypted',
			type: 'boolean',
			default: false,
			description: 'Whether to really send the password and the mail in clear text. Without it, "None" is refused.',
			displayOptions: { show: { security: ['none'] } },
		},
		{ displayName: 'User', name: 'user', type: 'string', default: '', required: true },
		{ displayName: 'Password', name: 'password', type: 'string', typeOptions: { password: true }, default: '' },
		{
			displayName: 'Trusted CA Certificate (PEM)',
			name: 'caCertificate',
			type: 'string',
			typeOptions: { rows: 4 },
			default: '',
			placeholder: '-----BEGIN CERTIFICATE-----',
			description: 'Extra CA certificate(s) to trust for this server. Public certificates only.',
		},
		{
			displayName: 'Ignore Certificate Errors',
			name: 'ignoreCertificateErrors',
			type: 'boolean',
			default: false,
			description:
				'Whether to accept any TLS certificate. Insecure: anyone on the network path can read the password and mail.',
		},
		...timeoutFields,
	];
}
