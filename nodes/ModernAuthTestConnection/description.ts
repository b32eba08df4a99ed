import type { INodeProperties } from 'n8n-workflow';

import { authenticationNotices, authenticationOptions, mailboxAuthentications, protocolName, testableProtocols } from '../../connections/registry';

export const DEFAULT_TIME_BUDGET_S = 60;
export const DEFAULT_ROUND_TRIP_TIMEOUT_S = 120;

export const testConnectionProperties: INodeProperties[] = [
	{
		displayName: 'Authentication',
		name: 'authentication',
		type: 'options',
		noDataExpression: true,
		default: 'smtp',
		options: authenticationOptions('test'),
	},
	...authenticationNotices('test'),
	{
		displayName: 'Protocol',
		name: 'protocol',
		type: 'options',
		default: 'default',
		description: "What to test through the credential. Default is the Authentication's first protocol (SMTP for SMTP, IMAP for the Microsoft 365 OAuth kinds, Microsoft Graph for the Graph kinds, Exchange Web Services for EWS).",
		options: [
			{ name: 'Default', value: 'default', description: "The Authentication's first protocol" },
			...testableProtocols().map((protocol) => ({ name: protocolName(protocol), value: protocol })),
		],
	},
	{
		displayName: 'Mailbox',
		name: 'mailbox',
		type: 'string',
		default: '',
		placeholder: 'shared@contoso.com',
		description: "Microsoft 365 mailbox to test. Empty uses the credential's mailbox or the signed-in account.",
		displayOptions: { show: { authentication: mailboxAuthentications('test') } },
	},
	{
		displayName: 'Options',
		name: 'options',
		type: 'collection',
		placeholder: 'Add option',
		default: {},
		options: [
			{
				displayName: 'Fail Workflow on Failure',
				name: 'failOnFailure',
				type: 'boolean',
				default: false,
				description: 'Whether to stop the workflow with an error naming the failing step and its fix when any check fails (with "On Error: Continue" the items come out instead)',
			},
			{
				displayName: 'Retry Permission Errors For (Minutes)',
				name: 'propagationRetryMinutes',
				type: 'number',
				typeOptions: { minValue: 0 },
				default: 0,
				description: 'Right after admin consent or a permission change Microsoft refuses for a while. Retries such refusals with back-off for up to this long and reports propagation delay when a later try passes. 0 = no retry.',
			},
			{
				displayName: 'Round Trip Timeout (Seconds)',
				name: 'roundTripTimeoutSeconds',
				type: 'number',
				typeOptions: { minValue: 1 },
				default: DEFAULT_ROUND_TRIP_TIMEOUT_S,
				description: 'How long to wait for the test message to arrive',
			},
			{
				displayName: 'Round Trip To',
				name: 'roundTripTo',
				type: 'string',
				default: '',
				placeholder: 'probe@contoso.com',
				description: 'Sends a test message to this address and reads it back, measuring the round trip. Empty = no test message.',
			},
			{
				displayName: 'Time Budget (Seconds)',
				name: 'timeBudgetSeconds',
				type: 'number',
				typeOptions: { minValue: 1 },
				default: DEFAULT_TIME_BUDGET_S,
				description: 'Ceiling for all checks of one item; checks not started within it are skipped. Propagation retries and the round trip wait come on top.',
			},
		],
	},
];
