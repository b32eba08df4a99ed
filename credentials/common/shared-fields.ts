import type { Icon, INodeProperties } from 'n8n-workflow';

import { CLOUD_LABELS, type CloudName } from '../../auth/clouds';

/** Fields and the icon the credentials share, so clouds and hosts read the same everywhere. */
export const MAIL_ICON: Icon = {
	light: 'file:../icons/mail.svg',
	dark: 'file:../icons/mail.dark.svg',
};

export const cloudField: INodeProperties = {
	displayName: 'Cloud',
	name: 'cloud',
	type: 'options',
	default: 'global',
	// From the one cloud table, so a cloud added there shows up in every credential.
	options: (Object.entries(CLOUD_LABELS) as Array<[CloudName, string]>).map(([value, name]) => ({
		name,
		value,
		...(value === 'custom' ? { description: 'Enter the hosts yourself' } : {}),
	})),
};

export const authorityHostField: INodeProperties = {
	displayName: 'Authority Host',
	name: 'authorityHost',
	type: 'string',
	default: '',
	placeholder: 'https://login.microsoftonline.com',
	displayOptions: { show: { cloud: ['custom'] } },
};

export const smtpServerField: INodeProperties = {
	displayName: 'SMTP Server',
	name: 'smtpServer',
	type: 'string',
	default: '',
	placeholder: 'smtp.office365.com:587',
	description: 'Host and port for sending (STARTTLS). Empty uses the cloud default.',
};

export const imapServerField: INodeProperties = {
	displayName: 'IMAP Server',
	name: 'imapServer',
	type: 'string',
	default: '',
	placeholder: 'outlook.office365.com:993',
	description: 'Host and port for reading (implicit TLS). Empty uses the cloud default.',
};

/** Guard for agent-driven workflows: which mailboxes nodes may open or send as. */
export const allowedMailboxesField: INodeProperties = {
	displayName: 'Allowed Mailboxes',
	name: 'allowedMailboxes',
	type: 'string',
	default: '',
	placeholder: 'robot@contoso.com, @sales.contoso.com',
	description:
		'Comma-separated addresses or @domains that nodes may open, read or send as (Mailbox and From). Empty allows any mailbox the account can reach.',
};

/** Connection and silence limits, the same for every server credential (seconds). */
export const timeoutFields: INodeProperties[] = [
	{
		displayName: 'Connection Timeout (Seconds)',
		name: 'connectionTimeout',
		type: 'number',
		default: 30,
		typeOptions: { minValue: 1 },
	},
	{
		displayName: 'Socket Timeout (Seconds)',
		name: 'socketTimeout',
		type: 'number',
		default: 120,
		typeOptions: { minValue: 1 },
		description: 'How long a connection may stay silent before it is dropped',
	},
];

type Show = NonNullable<NonNullable<INodeProperties['displayOptions']>['show']>;

/**
 * The Entra ID app registration fields (tenant, client, secret or certificate), shared by the
 * Microsoft app-only and the EWS credential so both read and are read the same way.
 * `when` adds a display condition to every field (EWS shows them only for its OAuth methods);
 * `certificateWhen` narrows the certificate choice further (EWS: app-only only).
 */
export function appRegistrationFields(options: {
	when?: Show;
	certificateWhen?: Show;
	required?: boolean;
	authTypeLabel?: string;
	secretDescription?: string;
} = {}): INodeProperties[] {
	const when = options.when ?? {};
	const certificateWhen = { ...when, ...(options.certificateWhen ?? {}) };
	const shown = (show: Show) => (Object.keys(show).length ? { displayOptions: { show } } : {});
	const required = options.required ? { required: true } : {};
	return [
		{
			displayName: 'Tenant ID',
			name: 'tenantId',
			type: 'string',
			default: '',
			...required,
			placeholder: '00000000-0000-0000-0000-000000000000 or contoso.onmicrosoft.com',
			description: 'Directory (tenant) ID from the app registration overview, or a verified domain',
			...shown(when),
		},
		{
			displayName: 'Client ID',
			name: 'clientId',
			type: 'string',
			default: '',
			...required,
			placeholder: '00000000-0000-0000-0000-000000000000',
			description: 'Application (client) ID from the app registration overview',
			...shown(when),
		},
		{
			displayName: options.authTypeLabel ?? 'Authentication',
			name: 'authType',
			type: 'options',
			default: 'secret',
			options: [
				{ name: 'Client Secret', value: 'secret' },
				{ name: 'Certificate', value: 'certificate', description: 'Recommended: no expiring shared secret' },
			],
			...shown(certificateWhen),
		},
		{
			displayName: 'Client Secret',
			name: 'clientSecret',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			description: options.secretDescription ?? 'The secret VALUE (not the secret ID) from Certificates & secrets',
			// Hidden (not shown only) for a certificate: where the choice is not offered the secret still is.
			displayOptions: { ...(Object.keys(when).length ? { show: when } : {}), hide: { authType: ['certificate'] } },
		},
		{
			displayName: 'Certificate (PEM)',
			name: 'certificatePem',
			type: 'string',
			typeOptions: { rows: 4 },
			default: '',
			placeholder: '-----BEGIN CERTIFICATE-----',
			description: 'Public certificate uploaded to the app registration',
			displayOptions: { show: { ...certificateWhen, authType: ['certificate'] } },
		},
		{
			displayName: 'Private Key (PEM)',
			name: 'privateKeyPem',
			type: 'string',
			typeOptions: { password: true, rows: 4 },
			default: '',
			placeholder: '-----BEGIN PRIVATE KEY-----',
			displayOptions: { show: { ...certificateWhen, authType: ['certificate'] } },
		},
		{
			displayName: 'Private Key Passphrase',
			name: 'passphrase',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			description: 'Only for an encrypted private key',
			displayOptions: { show: { ...certificateWhen, authType: ['certificate'] } },
		},
	];
}
