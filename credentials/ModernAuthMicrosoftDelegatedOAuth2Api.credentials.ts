import type { ICredentialType, INodeProperties, Icon } from 'n8n-workflow';

import { MAIL_ICON, cloudField, authorityHostField, smtpServerField, imapServerField, allowedMailboxesField } from './common/shared-fields';

// Sign-in hosts per cloud, resolved by n8n when it builds the authorize and token URLs.
const AUTHORITY =
	'{{ ({ global: "https://login.microsoftonline.com", usGovGccHigh: "https://login.microsoftonline.us", usGovDod: "https://login.microsoftonline.us", china: "https://login.chinacloudapi.cn" })[$self["cloud"]] || String($self["authorityHost"] || "").replace(/\\/+$/, "") }}/{{ $self["tenant"] || "organizations" }}';
// IMAP/SMTP scopes live on the Exchange resource of each cloud.
const EXCHANGE_RESOURCE =
	'({ global: "https://outlook.office.com", usGovGccHigh: "https://outlook.office365.us", usGovDod: "https://outlook-dod.office365.us", china: "https://partner.outlook.cn" })[$self["cloud"]] || $self["exchangeResource"] || "https://outlook.office.com"';

/**
 * A person's Microsoft 365 account, connected once with n8n's "Connect my account" button.
 * n8n keeps the tokens encrypted and the nodes refresh them through n8n, which stores the
 * rotated refresh token. One access token has one audience: this credential is either for
 * IMAP + SMTP (Exchange) or for Graph mail, chosen by "Use For".
 */
export class ModernAuthMicrosoftDelegatedOAuth2Api implements ICredentialType {
	name = 'modernAuthMicrosoftDelegatedOAuth2Api';

	extends = ['oAuth2Api'];

	displayName = 'Microsoft 365 Delegated (Modern Auth Mail) OAuth2 API';

	documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-modern-auth-mail#microsoft-delegated-credential';

	icon: Icon = MAIL_ICON;

	properties: INodeProperties[] = [
		{ displayName: 'Grant Type', name: 'grantType', type: 'hidden', default: 'authorizationCode' },
		cloudField,
		authorityHostField,
		{
			displayName: 'Exchange Resource',
			name: 'exchangeResource',
			type: 'string',
			default: 'https://outlook.office.com',
			description: 'Resource the IMAP and SMTP scopes belong to',
			displayOptions: { show: { cloud: ['custom'] } },
		},
		{
			displayName: 'Tenant',
			name: 'tenant',
			type: 'string',
			default: 'organizations',
			description:
				'Directory (tenant) ID or domain; "organizations" lets any work account sign in, "common" also personal accounts',
		},
		{
			displayName: 'Use For',
			name: 'useFor',
			type: 'options',
			default: 'imapSmtp',
			options: [
				{
					name: 'IMAP and SMTP (Exchange)',
					value: 'imapSmtp',
					description: 'Scopes IMAP.AccessAsUser.All, SMTP.Send, offline_access',
				},
				{
					name: 'Microsoft Graph Mail',
					value: 'graph',
					description: 'Scopes Mail.ReadWrite, Mail.Send (and .Shared), offline_access',
				},
			],
			description:
				'One token serves one audience: make a second credential if you need both. Reconnect after changing this.',
		},
		{
			displayName: 'Mailbox',
			name: 'mailbox',
			type: 'string',
			default: '',
			placeholder: 'shared@contoso.com',
			description:
				'Mailbox to open (XOAUTH2 user). Empty uses the signed-in account; a shared mailbox needs Full Access for that account.',
		},
		allowedMailboxesField,
		smtpServerField,
		imapServerField,
		{
			displayName: 'Authorization URL',
			name: 'authUrl',
			type: 'hidden',
			default: `=${AUTHORITY}/oauth2/v2.0/authorize`,
		},
		{
			displayName: 'Access Token URL',
			name: 'accessTokenUrl',
			type: 'hidden',
			default: `=${AUTHORITY}/oauth2/v2.0/token`,
		},
		{
			displayName: 'Scope',
			name: 'scope',
			type: 'hidden',
			default: `={{ $self["useFor"] === "graph" ? "https://graph.microsoft.com/Mail.ReadWrite https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/Mail.ReadWrite.Shared https://graph.microsoft.com/Mail.Send.Shared offline_access" : ["IMAP.AccessAsUser.All", "SMTP.Send"].map((s) => (${EXCHANGE_RESOURCE}) + "/" + s).join(" ") + " offline_access" }}`,
		},
		{
			displayName: 'Auth URI Query Parameters',
			name: 'authQueryParameters',
			type: 'hidden',
			default: 'response_mode=query&prompt=select_account',
		},
		{ displayName: 'Authentication', name: 'authentication', type: 'hidden', default: 'body' },
	];
}
