/**
 * Microsoft clouds: where to sign in and which hosts serve mail in each.
 * National-cloud Exchange hosts are not all documented; every host can be overridden
 * through the "Custom" cloud (which is also how tests point at a local fake platform).
 */
export type CloudName = 'global' | 'usGovGccHigh' | 'usGovDod' | 'china' | 'custom';

export interface CloudEndpoints {
	name: CloudName;
	/** https://login.microsoftonline.com (no trailing slash) */
	authorityHost: string;
	/** https://graph.microsoft.com */
	graphHost: string;
	/** https://outlook.office365.com: audience for app-only IMAP/POP/SMTP/EWS tokens */
	exchangeHost: string;
	/**
	 * Resource of delegated IMAP/SMTP scopes (IMAP.AccessAsUser.All, SMTP.Send) where it is not
	 * exchangeHost: Microsoft documents https://outlook.office.com for the global cloud.
	 */
	delegatedExchangeHost?: string;
	/** SMTP submission host and IMAP host for this cloud */
	smtpHost: string;
	imapHost: string;
}

export const CLOUDS: Record<Exclude<CloudName, 'custom'>, CloudEndpoints> = {
	global: {
		name: 'global',
		authorityHost: 'https://login.microsoftonline.com',
		graphHost: 'https://graph.microsoft.com',
		exchangeHost: 'https://outlook.office365.com',
		delegatedExchangeHost: 'https://outlook.office.com',
		smtpHost: 'smtp.office365.com',
		imapHost: 'outlook.office365.com',
	},
	usGovGccHigh: {
		name: 'usGovGccHigh',
		authorityHost: 'https://login.microsoftonline.us',
		graphHost: 'https://graph.microsoft.us',
		exchangeHost: 'https://outlook.office365.us',
		smtpHost: 'smtp.office365.us',
		imapHost: 'outlook.office365.us',
	},
	usGovDod: {
		name: 'usGovDod',
		authorityHost: 'https://login.microsoftonline.us',
		graphHost: 'https://dod-graph.microsoft.us',
		exchangeHost: 'https://outlook-dod.office365.us',
		smtpHost: 'smtp-dod.office365.us',
		imapHost: 'outlook-dod.office365.us',
	},
	china: {
		name: 'china',
		authorityHost: 'https://login.chinacloudapi.cn',
		graphHost: 'https://microsoftgraph.chinacloudapi.cn',
		exchangeHost: 'https://partner.outlook.cn',
		smtpHost: 'smtp.partner.outlook.cn',
		imapHost: 'partner.outlook.cn',
	},
};

/** What the credentials' Cloud selector shows for each cloud. */
export const CLOUD_LABELS: Record<CloudName, string> = {
	global: 'Global (Microsoft 365)',
	usGovGccHigh: 'US Government (GCC High)',
	usGovDod: 'US Government (DoD)',
	china: 'China (21Vianet)',
	custom: 'Custom',
};

export interface CustomCloudInput {
	authorityHost?: string;
	graphHost?: string;
	exchangeHost?: string;
	smtpHost?: string;
	imapHost?: string;
}

const withScheme = (value: string) => (/^https?:\/\//i.test(value) ? value : `https://${value}`);
const trimSlash = (value: string) => value.replace(/\/+$/, '');

export function resolveCloud(name: string, custom: CustomCloudInput = {}): CloudEndpoints {
	if (name !== 'custom') {
		const cloud = CLOUDS[name as Exclude<CloudName, 'custom'>];
		if (!cloud) throw new Error(`Unknown Microsoft cloud "${name}"`);
		return cloud;
	}
	const base = CLOUDS.global;
	const host = (value: string | undefined, fallback: string) =>
		value && value.trim() ? trimSlash(withScheme(value.trim())) : fallback;
	const bare = (value: string | undefined, fallback: string) =>
		value && value.trim() ? value.trim().replace(/^https?:\/\//i, '').replace(/\/+$/, '') : fallback;
	return {
		name: 'custom',
		authorityHost: host(custom.authorityHost, base.authorityHost),
		graphHost: host(custom.graphHost, base.graphHost),
		exchangeHost: host(custom.exchangeHost, base.exchangeHost),
		delegatedExchangeHost: host(custom.exchangeHost, base.delegatedExchangeHost ?? base.exchangeHost),
		smtpHost: bare(custom.smtpHost, base.smtpHost),
		imapHost: bare(custom.imapHost, base.imapHost),
	};
}

/** Scope for an app-only (client credentials) token of one audience. */
export function appOnlyScope(cloud: CloudEndpoints, audience: 'exchange' | 'graph'): string {
	return `${audience === 'graph' ? cloud.graphHost : cloud.exchangeHost}/.default`;
}

/** The resource delegated IMAP and SMTP scopes are issued for. */
export function delegatedExchangeResource(cloud: CloudEndpoints): string {
	return cloud.delegatedExchangeHost ?? cloud.exchangeHost;
}

/** Delegated Graph mail scopes (the signed-in user's and shared mailboxes). */
export const DELEGATED_GRAPH_SCOPES = ['Mail.ReadWrite', 'Mail.Send', 'Mail.ReadWrite.Shared', 'Mail.Send.Shared'];
/** Delegated Exchange scopes for XOAUTH2 over IMAP and SMTP. */
export const DELEGATED_EXCHANGE_SCOPES = ['IMAP.AccessAsUser.All', 'SMTP.Send'];

/** The scope a delegated credential asks for: one audience per token (Graph or Exchange), plus a refresh token. */
export function delegatedScope(cloud: CloudEndpoints, audience: 'exchange' | 'graph'): string {
	const [resource, scopes] = audience === 'graph' ? [cloud.graphHost, DELEGATED_GRAPH_SCOPES] : [delegatedExchangeResource(cloud), DELEGATED_EXCHANGE_SCOPES];
	return [...scopes.map((scope) => `${resource}/${scope}`), 'offline_access'].join(' ');
}
