import type { Icon, INodeProperties } from 'n8n-workflow';

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
	options: [
		{ name: 'Global (Microsoft 365)', value: 'global' },
		{ name: 'US Government (GCC High)', value: 'usGovGccHigh' },
		{ name: 'US Government (DoD)', value: 'usGovDod' },
		{ name: 'China (21Vianet)', value: 'china' },
		{ name: 'Custom', value: 'custom', description: 'Enter the hosts yourself' },
	],
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
