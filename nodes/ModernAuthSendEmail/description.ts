import type { INodeProperties } from 'n8n-workflow';

import { authenticationNotices, authenticationOptions, mailboxAuthentications } from '../../connections/registry';

export const authenticationProperty: INodeProperties = {
	displayName: 'Authentication',
	name: 'authentication',
	type: 'options',
	noDataExpression: true,
	default: 'smtp',
	options: authenticationOptions('send'),
	description: 'Which kind of credential sends the mail',
};

export const sendEmailProperties: INodeProperties[] = [
	authenticationProperty,
	...authenticationNotices('send'),
	{
		displayName: 'From',
		name: 'fromEmail',
		type: 'string',
		default: '',
		placeholder: 'Admin <admin@example.com>',
		description: "Sender address. Empty uses the credential's Default From Address.",
	},
	{
		displayName: 'To',
		name: 'toEmail',
		type: 'string',
		default: '',
		required: true,
		placeholder: 'info@example.com, Jane <jane@example.com>',
		description: 'Comma-separated addresses, or an expression that returns a list',
	},
	{
		displayName: 'Subject',
		name: 'subject',
		type: 'string',
		default: '',
		placeholder: 'My subject line',
	},
	{
		displayName: 'Email Format',
		name: 'emailFormat',
		type: 'options',
		options: [
			{ name: 'Text', value: 'text' },
			{ name: 'HTML', value: 'html' },
			{ name: 'Both', value: 'both', description: 'HTML with a plain-text alternative' },
		],
		default: 'text',
	},
	{
		displayName: 'Text',
		name: 'text',
		type: 'string',
		typeOptions: { rows: 5 },
		default: '',
		description: 'Plain text message body',
		displayOptions: { show: { emailFormat: ['text', 'both'] } },
	},
	{
		displayName: 'HTML',
		name: 'html',
		type: 'string',
		typeOptions: { rows: 5 },
		default: '',
		description: 'HTML message body; reference inline images as &lt;img src="cid:PROPERTY"&gt;',
		displayOptions: { show: { emailFormat: ['html', 'both'] } },
	},
	{
		displayName: 'Options',
		name: 'options',
		type: 'collection',
		placeholder: 'Add option',
		default: {},
		options: [
			{
				displayName: 'Attachments',
				name: 'attachments',
				type: 'string',
				default: '',
				placeholder: 'data, invoice',
				description:
					'Comma-separated names of binary properties to attach. File name and MIME type are kept.',
			},
			{
				displayName: 'BCC',
				name: 'bccEmail',
				type: 'string',
				default: '',
				placeholder: 'audit@example.com',
			},
			{
				displayName: 'CC',
				name: 'ccEmail',
				type: 'string',
				default: '',
				placeholder: 'team@example.com',
			},
			{
				displayName: 'Custom Headers',
				name: 'customHeaders',
				type: 'fixedCollection',
				typeOptions: { multipleValues: true },
				default: {},
				placeholder: 'Add header',
				description:
					'Internet message headers added to the message. Graph accepts only headers whose name starts with X-.',
				options: [
					{
						displayName: 'Header',
						name: 'header',
						values: [
							{ displayName: 'Name', name: 'name', type: 'string', default: '', placeholder: 'X-Ticket-ID' },
							{ displayName: 'Value', name: 'value', type: 'string', default: '' },
						],
					},
				],
			},
			{
				displayName: 'Delivery Guarantee',
				name: 'deliveryGuarantee',
				type: 'options',
				default: 'atMostOnce',
				options: [
					{
						name: 'At Most Once',
						value: 'atMostOnce',
						description: 'Never send again a message whose delivery is unknown; it may be missing',
					},
					{
						name: 'At Least Once',
						value: 'atLeastOnce',
						description: 'Send it again when the node is retried; it may arrive twice',
					},
				],
				description:
					'Only for a connection lost after the whole message went out, before the server confirmed it (delivery unknown)',
			},
			{
				displayName: 'Fail When Any Recipient Is Refused',
				name: 'failOnRefusedRecipient',
				type: 'boolean',
				default: false,
				description:
					'Whether an item fails when the server refuses some of its recipients. Off: the item is marked "partial" and lists each refused recipient with the reply.',
			},
			{
				// Shown as Importance (what Outlook and Graph call it); the parameter keeps its name so saved workflows still load.
				displayName: 'Importance',
				name: 'priority',
				type: 'options',
				default: 'normal',
				options: [
					{ name: 'High', value: 'high' },
					{ name: 'Normal', value: 'normal' },
					{ name: 'Low', value: 'low' },
				],
				description: 'SMTP writes the X-Priority and Importance headers; Graph sets the message importance',
			},
			{
				displayName: 'Inline Images',
				name: 'inlineImages',
				type: 'string',
				default: '',
				placeholder: 'logo, chart',
				description:
					'Comma-separated binary properties embedded in the HTML; each is referenced as cid:PROPERTY',
			},
			{
				displayName: 'Mailbox',
				name: 'mailbox',
				type: 'string',
				default: '',
				placeholder: 'robot@contoso.com',
				description:
					"Microsoft 365 mailbox to sign in as (XOAUTH2 user) or to send from through Graph (/users/{mailbox}; delegated: a shared mailbox). Empty uses the credential's Default Mailbox (delegated Graph: the signed-in account, /me). Also the default From.",
				displayOptions: { show: { '/authentication': mailboxAuthentications('send') } },
			},
			{
				displayName: 'Max Attachment Size (MB)',
				name: 'maxAttachmentSizeMb',
				type: 'number',
				default: 25,
				typeOptions: { minValue: 0 },
				description: 'An item with a larger attachment fails before anything is sent. 0 means no limit.',
			},
			{
				displayName: 'Max Recipients Per Message',
				name: 'maxRecipients',
				type: 'number',
				default: 500,
				typeOptions: { minValue: 1 },
				description:
					"To, CC and BCC together; an item with more fails before anything is sent. 500 is Exchange Online's limit.",
			},
			{
				displayName: 'Parallel Connections',
				name: 'maxConnections',
				type: 'number',
				default: 3,
				typeOptions: { minValue: 1, maxValue: 20 },
				description:
					'How many pooled SMTP connections send the items of one execution at the same time (Graph: requests in flight per mailbox, at most 4)',
			},
			{
				displayName: 'Read Receipt',
				name: 'readReceipt',
				type: 'boolean',
				default: false,
				description:
					'Whether to ask the recipients for a read receipt (SMTP: Disposition-Notification-To header with the From address; Graph: isReadReceiptRequested)',
			},
			{
				displayName: 'Reply To',
				name: 'replyTo',
				type: 'string',
				default: '',
				placeholder: 'support@example.com',
			},
			{
				displayName: 'Retry Back-Off (Seconds)',
				name: 'retryBackoffSeconds',
				type: 'number',
				default: 1,
				typeOptions: { minValue: 0, numberPrecision: 2 },
				description: 'Wait before the first retry of a temporary failure; doubled for each further retry',
			},
			{
				displayName: 'Save to Sent Items',
				name: 'saveToSentItems',
				type: 'boolean',
				default: true,
				description:
					'Whether Microsoft 365 keeps a copy in the Sent Items folder (Graph). SMTP ignores it: Exchange saves SMTP-submitted mail by its own settings.',
			},
			{
				displayName: 'Send Retries',
				name: 'sendRetries',
				type: 'number',
				default: 2,
				typeOptions: { minValue: 0, maxValue: 10 },
				description:
					'Retries of temporary failures (4xx replies, a connection lost before the end of the message). Never after the whole message went out.',
			},
			{
				displayName: 'Sender (On Behalf Of)',
				name: 'sender',
				type: 'string',
				default: '',
				placeholder: 'Assistant <assistant@contoso.com>',
				description:
					'The mailbox that actually sends when it differs from From ("sent on behalf of"). SMTP: Sender header; Graph: sender. Limited by Allowed Mailboxes like From.',
			},
		],
	},
];
