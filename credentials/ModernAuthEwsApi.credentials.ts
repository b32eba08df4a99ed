import type { ICredentialType, INodeProperties, Icon } from 'n8n-workflow';

import { EXCHANGE_ONLINE_EWS_NOTICE } from '../transports/ews/exchange-online';
import { DEFAULT_EWS_SERVER_VERSION, EWS_SERVER_VERSIONS, EXCHANGE_ONLINE_EWS_URL } from '../transports/ews/types';
import { MAIL_ICON, allowedMailboxesField, appRegistrationFields, authorityHostField, cloudField } from './common/shared-fields';

/**
 * Exchange Web Services: on-premises Exchange Server (NTLM, Basic) and the Exchange Online
 * tenants that still allow EWS (OAuth app-only, or a user's password through ROPC). Tested
 * through the nodes' `modernAuthEwsConnectionTest` method (GetFolder Inbox, step by step).
 */

/**
 * The Exchange Online hosts, as a regular expression the editor evaluates (display condition):
 * the notice about the end of EWS shows while the URL points there. The transport decides the
 * same with its own check; a test keeps the two in step.
 */
export const EXCHANGE_ONLINE_URL_PATTERN =
	'^[Hh][Tt][Tt][Pp][Ss]?://([^/:]+\\.protection\\.outlook\\.com|outlook\\.office365\\.com|outlook\\.office\\.com|outlook\\.office\\.de|partner\\.outlook\\.cn|outlook\\.office365\\.us|outlook-dod\\.office365\\.us)\\.?(:[0-9]+)?(/|$)';

const OAUTH = ['oauthAppOnly', 'oauthRopc'];
const PASSWORD = ['ntlm', 'basic', 'oauthRopc'];

export class ModernAuthEwsApi implements ICredentialType {
	name = 'modernAuthEwsApi';

	displayName = 'Exchange Web Services (EWS) API';

	documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-modern-auth-mail#ews-credential';

	icon: Icon = MAIL_ICON;

	properties: INodeProperties[] = [
		{
			displayName: 'Find the Server By',
			name: 'endpoint',
			type: 'options',
			default: 'url',
			options: [
				{ name: 'EWS URL', value: 'url', description: 'The https://.../EWS/Exchange.asmx address' },
				{ name: 'Autodiscover (Email Address)', value: 'autodiscover', description: 'On-premises Exchange: find the EWS URL from a mailbox address' },
			],
		},
		{
			displayName: 'EWS URL',
			name: 'url',
			type: 'string',
			default: EXCHANGE_ONLINE_EWS_URL,
			placeholder: 'https://mail.contoso.com/EWS/Exchange.asmx',
			description: 'Exchange Online: https://outlook.office365.com/EWS/Exchange.asmx. On-premises: https://your-exchange-server/EWS/Exchange.asmx.',
			displayOptions: { show: { endpoint: ['url'] } },
		},
		{
			displayName: `This URL is Exchange Online. ${EXCHANGE_ONLINE_EWS_NOTICE} In the nodes that is the Authentication "Microsoft 365 App-Only (Graph)".`,
			name: 'exchangeOnlineNotice',
			type: 'notice',
			default: '',
			displayOptions: { show: { endpoint: ['url'], url: [{ _cnd: { regex: EXCHANGE_ONLINE_URL_PATTERN } }] } },
		},
		{
			displayName: 'Email Address',
			name: 'autodiscoverEmail',
			type: 'string',
			default: '',
			placeholder: 'robot@contoso.com',
			description: 'A mailbox on the server: its domain tells Autodiscover where to look (https://domain/autodiscover/autodiscover.xml, then https://autodiscover.domain/...)',
			displayOptions: { show: { endpoint: ['autodiscover'] } },
		},
		{
			displayName: 'Autodiscover URL',
			name: 'autodiscoverUrl',
			type: 'string',
			default: '',
			placeholder: 'https://autodiscover.contoso.com/autodiscover/autodiscover.xml',
			description: 'Optional: ask this Autodiscover endpoint instead of the ones derived from the address',
			displayOptions: { show: { endpoint: ['autodiscover'] } },
		},
		{
			displayName: 'Authentication',
			name: 'ewsAuth',
			type: 'options',
			default: 'ntlm',
			options: [
				{ name: 'NTLM (On-Premises)', value: 'ntlm', description: 'Windows account, NTLMv2' },
				{ name: 'Basic (On-Premises, HTTPS Only)', value: 'basic', description: 'User and password in every request; only over https://' },
				{ name: 'OAuth App-Only (Exchange Online)', value: 'oauthAppOnly', description: 'App registration with full_access_as_app; the mailbox is impersonated' },
				{ name: 'OAuth Username and Password (ROPC, Exchange Online)', value: 'oauthRopc', description: 'Not recommended: no MFA, deprecated by Microsoft' },
			],
		},
		{
			displayName:
				'Username/password OAuth (ROPC) does not work for accounts with MFA or Conditional Access that asks for it, and Microsoft deprecates it. Use OAuth App-Only, or better Microsoft Graph.',
			name: 'ropcNotice',
			type: 'notice',
			default: '',
			displayOptions: { show: { ewsAuth: ['oauthRopc'] } },
		},
		{
			displayName:
				'App-only EWS: the app registration needs the Office 365 Exchange Online application permission <b>full_access_as_app</b> with admin consent, and the app may act only on mailboxes it is allowed: ApplicationImpersonation (older tenants) or RBAC for Applications. Every request impersonates the mailbox (ExchangeImpersonation header) and sends X-AnchorMailbox with it, so set Default Mailbox or the node option Mailbox.',
			name: 'appOnlyNotice',
			type: 'notice',
			default: '',
			displayOptions: { show: { ewsAuth: ['oauthAppOnly'] } },
		},
		{
			displayName: 'Username',
			name: 'username',
			type: 'string',
			default: '',
			placeholder: 'robot or robot@contoso.com',
			description: 'NTLM: the account name (or DOMAIN\\name); Basic and ROPC: the user principal name',
			displayOptions: { show: { ewsAuth: PASSWORD } },
		},
		{
			displayName: 'Password',
			name: 'password',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			displayOptions: { show: { ewsAuth: PASSWORD } },
		},
		{
			displayName: 'Domain',
			name: 'domain',
			type: 'string',
			default: '',
			placeholder: 'CONTOSO',
			description: 'Windows (NetBIOS) domain of the account; empty when Username is DOMAIN\\name or the server needs none',
			displayOptions: { show: { ewsAuth: ['ntlm'] } },
		},
		// One Client Secret field for both OAuth methods; the certificate is for app-only only.
		...appRegistrationFields({
			when: { ewsAuth: OAUTH },
			certificateWhen: { ewsAuth: ['oauthAppOnly'] },
			authTypeLabel: 'Client Authentication',
			secretDescription:
				'The secret VALUE (not the secret ID) from Certificates & secrets. Username/password: only for an app registration that is not a public client (leave empty otherwise).',
		}),
		{ ...cloudField, displayOptions: { show: { ewsAuth: OAUTH } } },
		{ ...authorityHostField, displayOptions: { show: { ewsAuth: OAUTH, cloud: ['custom'] } } },
		{
			displayName: 'Exchange Host',
			name: 'exchangeHost',
			type: 'string',
			default: '',
			placeholder: 'https://outlook.office365.com',
			description: 'Token audience for EWS in this cloud',
			displayOptions: { show: { ewsAuth: OAUTH, cloud: ['custom'] } },
		},
		{
			displayName: 'Default Mailbox',
			name: 'mailbox',
			type: 'string',
			default: '',
			placeholder: 'robot@contoso.com',
			description:
				'App-only: the mailbox impersonated when a node names none (required there). NTLM, Basic, ROPC: another mailbox the account opens with delegate (Full Access) rights; empty = the account\'s own.',
		},
		allowedMailboxesField,
		{
			displayName: 'Server Version',
			name: 'serverVersion',
			type: 'options',
			default: DEFAULT_EWS_SERVER_VERSION,
			options: EWS_SERVER_VERSIONS.map((version) => ({ name: version.replace(/_/g, ' '), value: version })),
			description: 'RequestServerVersion of every request: the oldest Exchange version the requests are written for (Exchange 2013 SP1 suits 2016, 2019, Subscription Edition and Exchange Online)',
		},
		{
			displayName: 'Trusted CA Certificate (PEM)',
			name: 'caCertificate',
			type: 'string',
			typeOptions: { rows: 4 },
			default: '',
			placeholder: '-----BEGIN CERTIFICATE-----',
			description: 'Extra CA to trust for the Exchange server (an internal CA of an on-premises server). Public certificates only.',
		},
		{
			displayName: 'Ignore Certificate Problems',
			name: 'allowUnauthorizedCerts',
			type: 'boolean',
			default: false,
			description:
				'Whether to accept any TLS certificate. Insecure: anyone on the network path can read the password, the token and the mail. Prefer Trusted CA Certificate.',
		},
	];
}
