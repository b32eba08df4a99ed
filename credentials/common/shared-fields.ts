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
