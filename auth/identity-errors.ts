import { ActionableError } from '../model/actionable-error';
import { maskIdentifier } from '../model/redact';
import { formatSeconds, IDENTITY_TIMEOUT_CODE, tokenTimeoutMs } from './timed-network-client';

/** A sign-in failure at the Microsoft identity platform, with the AADSTS code when known. */
export class IdentityError extends ActionableError {
	constructor(
		message: string,
		code: string,
		hint: string,
		readonly aadsts?: number,
	) {
		super(message, code, hint);
		this.name = 'IdentityError';
	}
}

/** The identity platform took longer than the per-request deadline. */
export function identityTimeoutError(authorityHost: string, timeoutMs: number): IdentityError {
	return new IdentityError(
		`The Microsoft identity platform did not answer within ${formatSeconds(timeoutMs)} (${authorityHost})`,
		'IDENTITY_TIMEOUT',
		'Try again later; if it persists, check that n8n can reach the sign-in host (proxy, firewall) and the Microsoft 365 service status. MAM_TOKEN_TIMEOUT_MS sets the limit in milliseconds',
	);
}

interface AadstsRule {
	summary: string;
	hint: string;
}

// The codes users of app registrations actually hit, with the fix an admin can act on.
const AADSTS: Record<number, AadstsRule> = {
	700016: {
		summary: 'the application (client ID) was not found in the tenant',
		hint: 'Check Client ID and Tenant ID (Entra admin center → App registrations → Overview), and that the app is consented in this tenant',
	},
	7000215: {
		summary: 'the client secret is invalid',
		hint: 'Paste the secret VALUE, not the secret ID (Certificates & secrets → Client secrets → Value, shown only once when created)',
	},
	7000222: {
		summary: 'the client secret has expired',
		hint: 'Create a new client secret (Certificates & secrets) and update the credential, or switch to a certificate',
	},
	50126: {
		summary: 'wrong user name or password',
		hint: 'Check the account name and password',
	},
	50076: {
		summary: 'multi-factor authentication is required',
		hint: 'Password sign-in cannot do MFA: use the delegated credential (Connect my account) or app-only access',
	},
	50079: {
		summary: 'multi-factor authentication registration is required',
		hint: 'Password sign-in cannot do MFA: use the delegated credential (Connect my account) or app-only access',
	},
	65001: {
		summary: 'the application has not been granted consent',
		hint: 'Grant admin consent for the API permissions (App registrations → API permissions → Grant admin consent)',
	},
	90002: {
		summary: 'the tenant was not found',
		hint: 'Check Tenant ID (a GUID or a verified domain) and that the Cloud setting matches the tenant (Global, US Government, China)',
	},
	700027: {
		summary: 'the certificate assertion was rejected',
		hint: 'Upload this certificate (public .cer/.pem) to the app registration (Certificates & secrets), and check the private key matches it',
	},
	70008: {
		summary: 'the refresh token has expired or was revoked',
		hint: 'Reconnect this credential (open it and click Connect my account)',
	},
	700082: {
		summary: 'the refresh token has expired due to inactivity',
		hint: 'Reconnect this credential (open it and click Connect my account)',
	},
	50173: {
		summary: 'the grant has expired because the password changed or the session was revoked',
		hint: 'Reconnect this credential (open it and click Connect my account)',
	},
	53003: {
		summary: 'blocked by Conditional Access',
		hint: 'Ask the Entra administrator to allow this app or sign-in location in Conditional Access',
	},
	500011: {
		summary: 'the resource (the Graph or Exchange host asked for) is not known in this tenant',
		hint: 'Check Cloud and, for a Custom cloud, Graph Host and Exchange Host in the credential (e.g. https://graph.microsoft.com, https://outlook.office365.com)',
	},
	1002012: {
		summary: 'the scope is not valid for client credentials',
		hint: 'App-only access needs a scope ending in /.default',
	},
};

interface MsalLikeError {
	errorCode?: string;
	errorMessage?: string;
	subError?: string;
	message?: string;
	name?: string;
}

/** Turns an MSAL / network error into one line plus a hint. Never includes secrets. */
export function describeIdentityError(error: unknown, context: { authorityHost: string }): IdentityError {
	if (error instanceof IdentityError) return error;
	const e = (error ?? {}) as MsalLikeError;
	const text = `${e.errorMessage ?? ''} ${e.message ?? ''}`;
	const match = /AADSTS(\d{5,7})/.exec(text);
	if (match) {
		const code = Number(match[1]);
		const rule = AADSTS[code];
		const firstLine = oneLine(text.slice(text.indexOf(match[0])).split(/\r?\n|Trace ID:/)[0]);
		const shown = maskGuids(firstLine);
		if (rule) {
			return new IdentityError(`Microsoft sign-in failed: ${rule.summary} (${shown})`, `AADSTS${code}`, hintWithValues(code, text, context) ?? rule.hint, code);
		}
		return new IdentityError(
			`Microsoft sign-in failed: ${shown}`,
			`AADSTS${code}`,
			'Look up the AADSTS code in Microsoft’s error reference; check tenant, client ID and secret or certificate',
			code,
		);
	}
	if (e.errorCode === IDENTITY_TIMEOUT_CODE) return identityTimeoutError(context.authorityHost, tokenTimeoutMs());
	if (e.errorCode === 'invalid_grant') {
		const rule = AADSTS[70008];
		return new IdentityError(`Microsoft sign-in failed: ${rule.summary}`, 'INVALID_GRANT', rule.hint);
	}
	if (e.errorCode === 'endpoints_resolution_error' || e.errorCode === 'openid_config_error') {
		// Entra answers an unknown tenant (AADSTS90002) at discovery, which MSAL reports only
		// as "endpoints could not be resolved"; an unreachable or wrong-cloud host looks the same.
		return new IdentityError(
			`Microsoft sign-in failed: the tenant was not found at ${context.authorityHost}, or that host cannot be reached`,
			'TENANT_OR_CLOUD',
			'Check Tenant ID (GUID or verified domain) and that Cloud matches the tenant (Global, US Government, China); check n8n can reach the sign-in host (proxy, firewall, trusted CA)',
		);
	}
	if (/ENOTFOUND|ECONNREFUSED|ETIMEDOUT|fetch failed|network/i.test(text)) {
		return new IdentityError(
			`Cannot reach the Microsoft identity platform at ${context.authorityHost}: ${oneLine(text) || e.errorCode}`,
			'IDENTITY_UNREACHABLE',
			'Check the Cloud setting (Global, US Government, China) or the custom authority host, and that n8n can reach it (proxy, firewall, trusted CA)',
		);
	}
	if (e.errorCode === 'missing_tenant_id_error') {
		return new IdentityError(
			'App-only sign-in needs a specific tenant',
			'TENANT_REQUIRED',
			'Set Tenant ID to your tenant GUID or domain, not "common" or "organizations"',
		);
	}
	return new IdentityError(
		`Microsoft sign-in failed: ${oneLine(text) || e.errorCode || 'unknown error'}`,
		e.errorCode || 'IDENTITY_ERROR',
		'Check tenant, client ID, secret or certificate, and the Cloud setting',
	);
}

const GUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
/** Tenant and client ids an Entra message quotes, shown as `****` + last 4 (output never carries them whole). */
function maskGuids(text: string): string {
	return text.replace(GUID, (id) => maskIdentifier(id));
}
const maskId = (value: string) => (new RegExp(`^${GUID.source}$`, 'i').test(value) ? maskIdentifier(value) : value);

/** A value Entra quotes after `label '...'` in its message, or ''. */
function quoted(text: string, label: RegExp): string {
	return new RegExp(`${label.source}\\s*'([^']+)'`, 'i').exec(text)?.[1] ?? '';
}

/**
 * The rule's hint filled in with the values the refusal itself names (app, tenant, thumbprint),
 * so the admin sees which registration to open; undefined when the message names none.
 */
function hintWithValues(code: number, text: string, context: { authorityHost: string }): string | undefined {
	const app = quoted(text, /(?:app|application with ID|application with identifier|app Id)/);
	const ofApp = app ? ` of app ${maskId(app)}` : '';
	switch (code) {
		case 7000215:
			return `Paste the secret VALUE, not the secret ID, for app ${app ? maskId(app) : '(your app)'} (Entra admin center → App registrations → the app → Certificates & secrets → Client secrets: the Value column, shown only once when the secret is created; make a new one if it was not copied)`;
		case 7000222:
			return `Create a new client secret${ofApp} (Entra admin center → App registrations → the app → Certificates & secrets → New client secret), paste its Value into the credential, or switch to a certificate`;
		case 700016: {
			const directory = quoted(text, /in the directory/);
			if (!app) return undefined;
			return `Check Client ID and Tenant ID: app ${maskId(app)} is not registered${directory ? ` in tenant ${maskId(directory)}` : ''} (Entra admin center → App registrations → Overview shows both), or it is a multi-tenant app not yet consented there`;
		}
		case 90002: {
			const tenant = quoted(text, /Tenant/);
			return `Check Tenant ID${tenant ? ` (${maskId(tenant)})` : ''}: no such tenant at ${context.authorityHost}; use the tenant GUID or a verified domain (Entra admin center → Overview), and a Cloud matching the tenant (Global, US Government, China)`;
		}
		case 700027: {
			const thumbprint = /Thumbprint of key used by client: '([0-9A-Fa-f]*)'/.exec(text)?.[1] ?? '';
			if (/key used is expired/i.test(text)) return `The certificate${thumbprint ? ` with thumbprint ${thumbprint}` : ''} has expired: create a new one, upload it to the app registration${ofApp} (Certificates & secrets → Certificates) and put it in the credential`;
			return `Upload this certificate${thumbprint ? ` (thumbprint ${thumbprint})` : ''} to the app registration${ofApp} (Entra admin center → App registrations → the app → Certificates & secrets → Certificates → Upload certificate, the public .cer/.pem), and check the private key matches it`;
		}
		case 65001: {
			const name = quoted(text, /named/);
			if (!app) return undefined;
			// the full client id: it is what the portal's search box finds the app by
			return `Grant admin consent for app ${name ? `${name} ` : ''}(${app}): Entra admin center → App registrations → (app ${app}) → API permissions → "Grant admin consent for <your tenant>" (or Enterprise applications → the app → Permissions)`;
		}
		default:
			return undefined;
	}
}

function oneLine(text: string): string {
	return text.replace(/\s+/g, ' ').trim().slice(0, 300);
}
