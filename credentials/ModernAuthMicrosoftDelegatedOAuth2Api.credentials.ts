import type { ICredentialType, INodeProperties, Icon } from 'n8n-workflow';

import {
	CLOUDS,
	DELEGATED_EXCHANGE_SCOPES,
	DELEGATED_GRAPH_SCOPES,
	delegatedExchangeResource,
	delegatedScope,
	type CloudEndpoints,
} from '../auth/clouds';
import { MAIL_ICON, cloudField, authorityHostField, smtpServerField, imapServerField, allowedMailboxesField } from './common/shared-fields';

// n8n resolves these expressions when it builds the authorize and token requests, so the
// hosts are written into them from the one cloud table (auth/clouds.ts) at load time.
// `}}` would end the n8n expression early: nested objects close with `} }`.
const perCloud = (value: (cloud: CloudEndpoints) => unknown) =>
	JSON.stringify(Object.fromEntries(Object.values(CLOUDS).map((cloud) => [cloud.name, value(cloud)]))).replace(/\}\}/g, '} }');
/** The Custom cloud's host from a field, without a trailing slash, else the global cloud's. */
const customHost = (field: string, fallback: string) => `String($self["${field}"] || ${JSON.stringify(fallback)}).replace(/\\/+$/, "")`;

const AUTHORITY = `{{ (${perCloud((c) => c.authorityHost)})[$self["cloud"]] || ${customHost('authorityHost', CLOUDS.global.authorityHost)} }}/{{ $self["tenant"] || "organizations" }}`;
// One token has one audience: Graph mail scopes on the cloud's Graph host, or IMAP/SMTP scopes on its Exchange resource.
const SCOPES = perCloud((c) => ({ graph: delegatedScope(c, 'graph'), exchange: delegatedScope(c, 'exchange') }));
const customScope = (resource: string, scopes: string[]) => `${JSON.stringify(scopes)}.map((s) => ${resource} + "/" + s).join(" ") + " offline_access"`;
export const DELEGATED_SCOPE_EXPRESSION =
	`={{ $self["cloud"] !== "custom" ? (${SCOPES})[$self["cloud"]][$self["useFor"] === "graph" ? "graph" : "exchange"]` +
	` : $self["useFor"] === "graph" ? ${customScope(customHost('graphHost', CLOUDS.global.graphHost), DELEGATED_GRAPH_SCOPES)}` +
	` : ${customScope(customHost('exchangeResource', delegatedExchangeResource(CLOUDS.global)), DELEGATED_EXCHANGE_SCOPES)} }}`;

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
			displayName: 'Graph Host',
			name: 'graphHost',
			type: 'string',
			default: '',
			placeholder: 'https://graph.microsoft.com',
			description: 'Resource the Graph mail scopes belong to',
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
			default: DELEGATED_SCOPE_EXPRESSION,
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
