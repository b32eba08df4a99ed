/**
 * Fixes an Exchange Online administrator can paste: the PowerShell lines (Exchange Online
 * PowerShell, `Connect-ExchangeOnline` first) and portal paths, filled in with the
 * credential's own client id and the mailbox under test. The Enterprise Application's object
 * id is a placeholder on purpose: the app registration's object id in its place is the
 * classic mistake, so the hint says where to copy it from.
 */

export interface HintValues {
	/** Application (client) ID, shown in full: PowerShell needs it and it is not a secret. */
	clientId: string;
	/** The mailbox the check opened or sent as. */
	mailbox: string;
	tenantId?: string;
}

const OBJECT_ID = '<Enterprise Application object id>';
const WHERE_OBJECT_ID = `${OBJECT_ID} is on Entra admin center > Enterprise applications > (your app) > Overview, not the App registration's object id`;
const psQuote = (value: string) => `'${value.replace(/'/g, "''")}'`;

/** App-only IMAP / SMTP: the app must exist in Exchange as a service principal and hold the mailbox. */
export function servicePrincipalLines({ clientId, mailbox }: HintValues, protocol: 'smtp' | 'imap' | 'ews'): string[] {
	const lines = [
		`New-ServicePrincipal -AppId ${clientId} -ObjectId ${OBJECT_ID}`,
		`Add-MailboxPermission -Identity ${psQuote(mailbox)} -User ${OBJECT_ID} -AccessRights FullAccess`,
	];
	if (protocol === 'smtp') lines.push(`Add-RecipientPermission -Identity ${psQuote(mailbox)} -Trustee ${OBJECT_ID} -AccessRights SendAs -Confirm:$false`);
	return lines;
}

export function servicePrincipalHint(values: HintValues, protocol: 'smtp' | 'imap' | 'ews'): string {
	return `Register the app in Exchange and give it the mailbox, in Exchange Online PowerShell: ${servicePrincipalLines(values, protocol).join('; ')} (${WHERE_OBJECT_ID})`;
}

export function enableSmtpAuthLine(mailbox: string): string {
	return `Set-CASMailbox -Identity ${psQuote(mailbox)} -SmtpClientAuthenticationDisabled $false`;
}

export function enableImapLine(mailbox: string): string {
	return `Set-CASMailbox -Identity ${psQuote(mailbox)} -ImapEnabled $true`;
}

/** Graph app-only scoped with RBAC for Applications: the role assignment, and how to test it. */
export function graphRbacHint({ clientId, mailbox }: HintValues, role: 'Mail.Send' | 'Mail.ReadWrite' | 'Mail.Read'): string {
	return (
		`If the tenant scopes app access with RBAC for Applications, assign the role in Exchange Online PowerShell: ` +
		`New-ManagementRoleAssignment -App ${OBJECT_ID} -Role ${psQuote(`Application ${role}`)} -CustomResourceScope <management scope holding ${mailbox}>; ` +
		`check with Test-ServicePrincipalAuthorization -Identity ${clientId} -Resource ${psQuote(mailbox)} (changes can take up to an hour); ` +
		`an older New-ApplicationAccessPolicy that leaves the mailbox out refuses it too (${WHERE_OBJECT_ID})`
	);
}

/** Where admin consent is granted for an app's permissions. */
export function adminConsentHint({ clientId }: HintValues, permission: string): string {
	return `Add ${permission} and grant admin consent: Entra admin center > App registrations > (app ${clientId}) > API permissions > Add a permission, then "Grant admin consent for <your tenant>"`;
}

export function mailboxNotRestHint({ mailbox }: HintValues): string {
	return `${mailbox} is not an Exchange Online mailbox Graph can open: give the user an Exchange Online licence (or use the mailbox's primary address); on-premises and guest mailboxes are not served by Graph`;
}
