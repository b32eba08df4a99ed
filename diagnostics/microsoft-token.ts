import type { TokenAudience, TokenProvider } from '../auth/app-only-token-provider';
import { ActionableError } from '../model/actionable-error';
import { maskIdentifier } from '../model/redact';
import type { Check, CheckOutcome, Protocol } from './checks';
import { adminConsentHint, graphRbacHint } from './exchange-hints';

/**
 * The Microsoft identity stages of a connection test: a fresh token and what it says
 * (audience, tenant, roles or scopes, expiry), whether it carries the permission the protocol
 * needs, and for delegated credentials whether the signed-in account is the mailbox.
 * The token itself never leaves this module: only claims decoded from it do.
 */

/** The claims the checks read, normalised (space-separated `scp` as a list, '' when absent). */
export interface TokenClaims {
	aud: string;
	tid: string;
	appid: string;
	idtyp: 'app' | 'user' | '';
	roles: string[];
	scp: string[];
	upn: string;
	oid: string;
	exp: number;
}

/** Decodes a JWT's payload (no signature check: the server decides); undefined when it is not one. */
export function decodeClaims(token: string): TokenClaims | undefined {
	const parts = token.split('.');
	if (parts.length !== 3) return undefined;
	let payload: Record<string, unknown>;
	try {
		payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as Record<string, unknown>;
	} catch {
		return undefined;
	}
	if (!payload || typeof payload !== 'object') return undefined;
	const text = (value: unknown) => (typeof value === 'string' ? value : '');
	const aud = Array.isArray(payload.aud) ? text(payload.aud[0]) : text(payload.aud);
	const roles = Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === 'string') : [];
	const scp = text(payload.scp).split(' ').filter(Boolean);
	const declared = text(payload.idtyp);
	// idtyp is an optional claim: without it, scopes mean a user token and roles alone an app token
	const idtyp = declared === 'app' || declared === 'user' ? declared : scp.length ? 'user' : roles.length ? 'app' : '';
	return {
		aud,
		tid: text(payload.tid),
		appid: text(payload.appid) || text(payload.azp),
		idtyp,
		roles,
		scp,
		upn: text(payload.upn) || text(payload.preferred_username) || text(payload.unique_name),
		oid: text(payload.oid),
		exp: typeof payload.exp === 'number' ? payload.exp : 0,
	};
}

/** What a token check learnt, for the permission and mailbox checks after it (one per token check). */
export interface TokenFindings {
	claims?: TokenClaims;
	expiresAt?: Date;
}

const GUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
/** Identifiers an error message quotes (tenant and client ids) shown masked. */
export const maskGuids = (text: string): string => text.replace(GUID, (id) => maskIdentifier(id));
const isGuid = (value: string) => new RegExp(`^${GUID.source}$`, 'i').test(value);

/** Acquires a fresh token for the audience and reports what it grants; never the token. */
export function tokenCheck(params: { tokens: TokenProvider; audience: TokenAudience; authorityHost: string; tenantId: string; findings: TokenFindings }): Check {
	const { tokens, audience, authorityHost, tenantId, findings } = params;
	const where = { authorityHost, tenant: maskIdentifier(tenantId) };
	return {
		step: 'token',
		target: audience,
		async run(): Promise<CheckOutcome> {
			delete findings.claims;
			delete findings.expiresAt;
			let token: string;
			let expiresAt: Date;
			try {
				({ token, expiresAt } = await tokens.getToken(audience, { forceRefresh: true }));
			} catch (error) {
				if (!(error instanceof ActionableError)) throw error;
				// MSAL reports an unknown tenant (AADSTS90002 at discovery) without naming it: say which was asked for
				const hint = error.code === 'TENANT_OR_CLOUD' ? `Tenant ID ${where.tenant} was asked for at ${authorityHost}. ${error.hint}` : error.hint;
				return { status: 'fail', detail: maskGuids(`${error.message} (tenant ${where.tenant} at ${authorityHost})`), hint, code: error.code, facts: where };
			}
			findings.expiresAt = expiresAt;
			const minutes = Math.round((expiresAt.getTime() - Date.now()) / 60_000);
			const claims = decodeClaims(token);
			if (!claims) {
				return { status: 'warn', detail: `a token for ${audience} from ${authorityHost} (tenant ${where.tenant}), expiring in ${minutes} min, that is not a JWT: its permissions cannot be read here`, hint: 'The login check decides whether the token is accepted', code: 'TOKEN_OPAQUE', facts: { ...where, expiresInMinutes: minutes } };
			}
			findings.claims = claims;
			const granted = claims.idtyp === 'user' ? claims.scp : claims.roles;
			const grantKind = claims.idtyp === 'user' ? 'scp' : 'roles';
			const facts: CheckOutcome['facts'] = {
				...where,
				audience: claims.aud,
				tokenType: claims.idtyp || 'unknown',
				appId: maskIdentifier(claims.appid),
				[grantKind]: granted,
				expiresInMinutes: minutes,
				expiresAt: expiresAt.toISOString(),
			};
			if (claims.upn) facts.signedInAs = maskIdentifier(claims.upn);
			const detail = `${claims.idtyp === 'user' ? `delegated token (signed in as ${maskIdentifier(claims.upn)})` : 'app-only token'} for ${claims.aud} from ${authorityHost}, tenant ${where.tenant}, app ${facts.appId}; ${grantKind}: ${granted.join(', ') || 'none'}; expires in ${minutes} min`;
			// a tenant named by GUID that the token does not carry: the credential points elsewhere
			if (isGuid(tenantId) && claims.tid && claims.tid.toLowerCase() !== tenantId.toLowerCase()) {
				return { status: 'warn', detail: `${detail}; issued by tenant ${maskIdentifier(claims.tid)}, not ${where.tenant}`, hint: 'Check Tenant ID in the credential: the token comes from another tenant', code: 'TENANT_MISMATCH', facts };
			}
			return { status: 'pass', detail, facts };
		},
	};
}

export type Flavour = 'app-only' | 'delegated';

export interface PermissionNeed {
	audience: TokenAudience;
	anyOf: string[];
	label: string;
}

// Graph: the Inbox read needs one of the read permissions; sending (round trip) Mail.Send.
const GRAPH_READ = ['Mail.Read', 'Mail.ReadWrite'];
const GRAPH_READ_SHARED = ['Mail.Read.Shared', 'Mail.ReadWrite.Shared'];

const NEEDS: Record<Protocol, Record<Flavour, PermissionNeed>> = {
	smtp: {
		'app-only': { audience: 'exchange', anyOf: ['SMTP.SendAsApp'], label: 'SMTP.SendAsApp (Office 365 Exchange Online, Application)' },
		delegated: { audience: 'exchange', anyOf: ['SMTP.Send'], label: 'SMTP.Send (Office 365 Exchange Online, Delegated)' },
	},
	imap: {
		'app-only': { audience: 'exchange', anyOf: ['IMAP.AccessAsApp'], label: 'IMAP.AccessAsApp (Office 365 Exchange Online, Application)' },
		delegated: { audience: 'exchange', anyOf: ['IMAP.AccessAsUser.All'], label: 'IMAP.AccessAsUser.All (Office 365 Exchange Online, Delegated)' },
	},
	graph: {
		'app-only': { audience: 'graph', anyOf: GRAPH_READ, label: 'Mail.Read or Mail.ReadWrite (Microsoft Graph, Application)' },
		// the .Shared variants include the user's own mailbox
		delegated: { audience: 'graph', anyOf: [...GRAPH_READ, ...GRAPH_READ_SHARED], label: 'Mail.ReadWrite (Microsoft Graph, Delegated; Mail.ReadWrite.Shared for another mailbox)' },
	},
	ews: {
		'app-only': { audience: 'exchange', anyOf: ['full_access_as_app', 'EWS.AccessAsApp'], label: 'full_access_as_app (Office 365 Exchange Online, Application)' },
		delegated: { audience: 'exchange', anyOf: ['EWS.AccessAsUser.All'], label: 'EWS.AccessAsUser.All (Office 365 Exchange Online, Delegated)' },
	},
};

/** The permission a protocol needs in the token, and which token carries it. */
export function requiredPermission(protocol: Protocol, flavour: Flavour): PermissionNeed {
	const need = NEEDS[protocol][flavour];
	return { ...need, anyOf: [...need.anyOf] };
}

// What each Graph mail permission lets the node do (the Graph test reads the Inbox and may send).
const GRAPH_ENABLES: Array<[string[], string]> = [
	[['Mail.Read', 'Mail.Read.Shared'], 'read'],
	[['Mail.ReadWrite', 'Mail.ReadWrite.Shared'], 'read, move, flag and delete'],
	[['Mail.Send', 'Mail.Send.Shared'], 'send'],
];

function graphPermissionSummary(granted: string[]): { text: string; facts: Record<string, boolean> } {
	const has = (names: string[]) => names.some((n) => granted.includes(n));
	const parts = GRAPH_ENABLES.map(([names, enables]) => `${names[0]} (${enables}) ${has(names) ? 'present' : 'missing'}`);
	return {
		text: parts.join(', '),
		facts: { canRead: has([...GRAPH_READ, ...GRAPH_READ_SHARED]), canWrite: has(['Mail.ReadWrite', 'Mail.ReadWrite.Shared']), canSend: has(['Mail.Send', 'Mail.Send.Shared']) },
	};
}

/** SMTP / EWS app-only granted in Exchange (RBAC for Applications role) instead of a role in the token. */
function exchangeRbacHint({ clientId, mailbox }: { clientId: string; mailbox: string }, role: 'SMTP.SendAsApp' | 'EWS.AccessAsApp'): string {
	return (
		`Or, if the tenant grants it with RBAC for Applications (then the role is not in the token), check the assignment in Exchange Online PowerShell: ` +
		`New-ManagementRoleAssignment -App <Enterprise Application object id> -Role 'Application ${role}' (optionally -CustomResourceScope <management scope holding ${mailbox}>); ` +
		`Test-ServicePrincipalAuthorization -Identity ${clientId} -Resource '${mailbox.replace(/'/g, "''")}'`
	);
}

/** Whether the token from the token check carries the permission the protocol needs. */
export function permissionCheck(params: { protocol: Protocol; flavour: Flavour; findings: TokenFindings; clientId: string; mailbox: string }): Check {
	const { protocol, flavour, findings, clientId, mailbox } = params;
	const need = requiredPermission(protocol, flavour);
	const values = { clientId, mailbox };
	return {
		step: 'permission',
		target: protocol,
		needs: [`token:${need.audience}`],
		async run(): Promise<CheckOutcome> {
			const claims = findings.claims;
			if (!claims) return { status: 'skipped', detail: 'skipped: the token could not be decoded, so its permissions are unknown (the login check decides)' };
			const kind = flavour === 'app-only' ? 'roles' : 'scp';
			const granted = flavour === 'app-only' ? claims.roles : claims.scp;
			const found = need.anyOf.filter((p) => granted.includes(p));
			const graph = protocol === 'graph' ? graphPermissionSummary(granted) : undefined;
			const facts: CheckOutcome['facts'] = { required: need.anyOf, [kind]: granted, ...(graph?.facts ?? {}) };
			const inToken = `${kind} in the token: ${granted.join(', ') || 'none'}`;
			if (found.length) {
				const detail = graph ? `${graph.text} (${inToken})` : `${found.join(', ')} is in the token (${inToken})`;
				return { status: 'pass', detail, facts };
			}
			const missing = `${need.label} is not in the token (${inToken})${graph ? `; ${graph.text}` : ''}`;
			if (flavour === 'delegated') {
				return {
					status: 'fail',
					detail: missing,
					hint: `Add the delegated permission ${need.anyOf[0]} to the app registration: Entra admin center > App registrations > (app ${clientId}) > API permissions > Add a permission (grant admin consent if the tenant requires it), then open the credential and click Connect my account again so the new token carries it`,
					code: 'PERMISSION_MISSING',
					facts,
				};
			}
			const consent = adminConsentHint(values, need.label);
			if (protocol === 'imap') return { status: 'fail', detail: missing, hint: consent, code: 'PERMISSION_MISSING', facts };
			// RBAC for Applications grants SMTP / Graph / EWS access in Exchange without a role in the token
			const rbac = protocol === 'graph' ? graphRbacHint(values, 'Mail.ReadWrite') : exchangeRbacHint(values, protocol === 'smtp' ? 'SMTP.SendAsApp' : 'EWS.AccessAsApp');
			return {
				status: 'warn',
				detail: `${missing}: this can still work through RBAC for Applications (an Exchange-side role assignment); the ${protocol === 'graph' ? 'read' : 'login'} check decides`,
				hint: `${consent}. ${rbac}`,
				code: 'PERMISSION_MISSING',
				facts,
			};
		},
	};
}

const sameAddress = (a: string, b: string) => a.trim().toLowerCase() === b.trim().toLowerCase();

/** What to do when a delegated credential was authorized as another account than the mailbox. */
export function wrongAccountHint(signedIn: string, mailbox: string): string {
	return (
		`signed in as ${maskIdentifier(signedIn)}, not ${mailbox}: works only where that account has FullAccess / Send As on it (a shared mailbox); ` +
		`if you meant to sign in as ${mailbox}, the browser was already signed in as another account: Connect my account again in a private window and choose ${mailbox}`
	);
}

/** Delegated: the account the token was issued to is the mailbox the node will use. */
export function mailboxAccessCheck(params: { mailbox: string; findings: TokenFindings }): Check {
	const { mailbox, findings } = params;
	return {
		step: 'mailbox-access',
		target: mailbox || 'signed-in account',
		async run(): Promise<CheckOutcome> {
			const upn = findings.claims?.upn;
			if (!upn) return { status: 'skipped', detail: 'skipped: the token names no signed-in account' };
			const facts = { signedInAs: maskIdentifier(upn), mailbox };
			if (!mailbox || sameAddress(upn, mailbox)) {
				return { status: 'pass', detail: `signed in as ${maskIdentifier(upn)}, the mailbox ${mailbox ? 'under test' : 'used by default'}`, facts };
			}
			return {
				status: 'warn',
				detail: `signed in as ${maskIdentifier(upn)}, not ${mailbox}`,
				hint: wrongAccountHint(upn, mailbox),
				code: 'MAILBOX_OTHER_ACCOUNT',
				facts,
			};
		},
	};
}
