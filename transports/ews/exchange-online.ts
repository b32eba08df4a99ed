/**
 * Exchange Online's EWS hosts: the global cloud, Germany, China (21Vianet), US Government, and
 * the *.protection.outlook.com front ends. Anything else is taken for on-premises Exchange.
 */
const EXCHANGE_ONLINE_HOSTS = ['outlook.office365.com', 'outlook.office.com', 'outlook.office.de', 'partner.outlook.cn', 'outlook.office365.us', 'outlook-dod.office365.us'];
const EXCHANGE_ONLINE_SUFFIXES = ['.protection.outlook.com'];

/** Whether an EWS URL is Exchange Online (where EWS is going away), not an on-premises server. */
export function isExchangeOnline(url: string): boolean {
	let host: string;
	try {
		host = new URL(url.trim()).hostname.toLowerCase().replace(/\.$/, '');
	} catch {
		return false;
	}
	return EXCHANGE_ONLINE_HOSTS.includes(host) || EXCHANGE_ONLINE_SUFFIXES.some((suffix) => host.endsWith(suffix));
}

/** Shown by the credential and the nodes when the URL is Exchange Online. */
export const EXCHANGE_ONLINE_EWS_NOTICE =
	'EWS in Exchange Online is blocked by default since 1 October 2026 unless the tenant allow-lists the app (Set-OrganizationConfig -EWSEnabled $true and the app in EwsAllowedAppIDs), and it is switched off for good on 1 April 2027. On-premises Exchange Server keeps EWS. For Exchange Online, prefer Graph (the Microsoft Graph connection of this package).';
