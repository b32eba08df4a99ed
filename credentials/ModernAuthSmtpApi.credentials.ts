import type { ICredentialType, INodeProperties, Icon } from 'n8n-workflow';

import { MAIL_ICON, timeoutFields } from './common/shared-fields';

/**
 * SMTP server with password (or no) authentication. Tested through the node's
 * `modernAuthSmtpConnectionTest` method: connect, TLS, authenticate, clear verdict.
 */
export class ModernAuthSmtpApi implements ICredentialType {
	name = 'modernAuthSmtpApi';

	displayName = 'SMTP (Modern Auth Mail) API';

	documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-modern-auth-mail#smtp-credential';

	icon: Icon = MAIL_ICON;

	properties: INodeProperties[] = [
		{
			displayName: 'Host',
			name: 'host',
			type: 'string',
			default: '',
			required: true,
			placeholder: 'smtp.example.com',
		},
		{
			displayName: 'Port',
			name: 'port',
			type: 'number',
			default: 587,
			description: '587 for STARTTLS, 465 for SSL/TLS, 25 for server-to-server',
		},
		{
			displayName: 'Security',
			name: 'security',
			type: 'options',
			default: 'starttls',
			options: [
				{
					name: 'STARTTLS (Required)',
					value: 'starttls',
					description: 'Connect in plain text, then upgrade to TLS; fails if the server cannot',
				},
				{
					name: 'SSL/TLS (Implicit)',
					value: 'tls',
					description: 'TLS from the first byte, usually port 465',
				},
				{
					name: 'None (Unencrypted)',
					value: 'none',
					description: 'No encryption at all. Only for local test servers.',
				},
			],
		},
		{
			displayName: 'Allow Unencrypted Connection',
			name: 'allowUnencrypted',
			type: 'boolean',
			default: false,
			description:
				'Whether to really send the password and the mail in clear text. Without it, "None" is refused.',
			displayOptions: { show: { security: ['none'] } },
		},
		{
			displayName: 'User',
			name: 'user',
			type: 'string',
			default: '',
			description: 'Leave empty for servers that accept mail without signing in',
		},
		{
			displayName: 'Password',
			name: 'password',
			type: 'string',
			typeOptions: { password: true },
			default: '',
		},
		{
			displayName: 'Default From Address',
			name: 'fromAddress',
			type: 'string',
			default: '',
			placeholder: 'Automation <robot@example.com>',
			description: 'Used when a Send Email node leaves From empty',
		},
		{
			displayName: 'Allowed From Addresses',
			name: 'allowedFrom',
			type: 'string',
			default: '',
			placeholder: 'robot@example.com, @example.com',
			description:
				'Comma-separated addresses or @domains that workflows may send as. Empty allows any From address.',
		},
		{
			displayName: 'Client Host Name',
			name: 'clientHostName',
			type: 'string',
			default: '',
			description: 'Name sent in EHLO. Empty uses the host name of the n8n machine.',
		},
		{
			displayName: 'Ignore Certificate Errors',
			name: 'ignoreCertificateErrors',
			type: 'boolean',
			default: false,
			description:
				'Whether to accept any TLS certificate. Insecure: anyone on the network path can read the password and mail. Prefer trusting your CA with NODE_EXTRA_CA_CERTS.',
		},
		{
			displayName: 'Trusted CA Certificate (PEM)',
			name: 'caCertificate',
			type: 'string',
			typeOptions: { rows: 4 },
			default: '',
			placeholder: '-----BEGIN CERTIFICATE-----',
			description:
				'Extra CA certificate(s) to trust for this server, e.g. a company CA of an on-premises server. Public certificates only, never a private key.',
		},
		...timeoutFields,
	];
}
