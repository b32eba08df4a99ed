import type { ICredentialType, INodeProperties, Icon } from 'n8n-workflow';

import { MAIL_ICON, cloudField, authorityHostField, smtpServerField, imapServerField, allowedMailboxesField, appRegistrationFields } from './common/shared-fields';

/**
 * Microsoft Entra ID app registration used without a signed-in user (client credentials).
 * One registration serves Graph (Mail.Send, Mail.ReadWrite), SMTP (SMTP.SendAsApp), IMAP
 * (IMAP.AccessAsApp) and EWS (full_access_as_app): tokens are requested per audience.
 * The type name stays as it was so saved credentials keep working.
 */
export class ModernAuthMicrosoftAppOnlyApi implements ICredentialType {
	name = 'modernAuthMicrosoftAppOnlyApi';

	displayName = 'Microsoft 365 App-Only (Graph, SMTP, IMAP) API';

	documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-modern-auth-mail#microsoft-app-only-credential';

	icon: Icon = MAIL_ICON;

	properties: INodeProperties[] = [
		{
			displayName:
				'One app registration for Microsoft Graph, SMTP and IMAP, no user password. ' +
				'<b>Graph</b>: API permissions → Microsoft Graph → Application permissions <b>Mail.Send</b> (send) and <b>Mail.ReadWrite</b> (read, mark, move, delete; Mail.Read is enough without post-actions), then <b>Grant admin consent</b>. ' +
				'These reach every mailbox of the tenant: limit them with <b>RBAC for Applications</b> in Exchange Online (New-ManagementScope, New-ManagementRoleAssignment -App ... -Role "Application Mail.Send"), and with Allowed Mailboxes below. Changes can take an hour to apply. ' +
				'<b>SMTP / IMAP</b>: Office 365 Exchange Online permissions SMTP.SendAsApp / IMAP.AccessAsApp, New-ServicePrincipal and Add-MailboxPermission.',
			name: 'setupNotice',
			type: 'notice',
			default: '',
		},
		...appRegistrationFields({ required: true }),
		cloudField,
		authorityHostField,
		{
			displayName: 'Exchange Host',
			name: 'exchangeHost',
			type: 'string',
			default: '',
			placeholder: 'https://outlook.office365.com',
			description: 'Token audience for IMAP, SMTP and EWS (not used by Graph)',
			displayOptions: { show: { cloud: ['custom'] } },
		},
		{
			displayName: 'Graph Host',
			name: 'graphHost',
			type: 'string',
			default: '',
			placeholder: 'https://graph.microsoft.com',
			description: 'Microsoft Graph endpoint of this cloud: token audience and base URL for sending and reading through Graph',
			displayOptions: { show: { cloud: ['custom'] } },
		},
		smtpServerField,
		imapServerField,
		{
			displayName: 'Default Mailbox',
			name: 'mailbox',
			type: 'string',
			default: '',
			placeholder: 'robot@contoso.com',
			description:
				'Mailbox the app acts as when a node does not name one (Graph: /users/{mailbox}). The app needs permission on it: RBAC for Applications scope for Graph, Add-MailboxPermission for SMTP and IMAP.',
		},
		allowedMailboxesField,
		{
			displayName: 'Trusted CA Certificate (PEM)',
			name: 'caCertificate',
			type: 'string',
			typeOptions: { rows: 4 },
			default: '',
			description: 'Extra CA to trust for the mail servers and Graph, e.g. behind a TLS-inspecting proxy',
		},
	];
}
