'use strict';
// A fake Microsoft identity platform (Entra ID, login.microsoftonline.com) for tests.
// It speaks the endpoints @azure/msal-node uses, over HTTPS (MSAL refuses plain HTTP
// authorities), checks credentials the way Entra does (secret value and expiry,
// certificate assertions by thumbprint, PKCE, rotating revocable refresh tokens) and
// answers errors in Entra's shape (AADSTS codes) so error mapping can be tested.
// Access tokens are real RS256 JWTs; `introspect` plays the part of Exchange deciding
// whether a token may open a mailbox (also over HTTP for Dovecot's oauth2 passdb).
const crypto = require('node:crypto');
const http = require('node:http');
const https = require('node:https');

const EXCHANGE_APP_ID = '00000002-0000-0ff1-ce00-000000000000';
const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000';
// Resource URIs a scope may name, mapped to the first-party app (resource principal)
// behind them. outlook.office.com and outlook.office365.com are both Exchange Online.
const DEFAULT_RESOURCES = {
	'https://outlook.office.com': EXCHANGE_APP_ID,
	'https://outlook.office365.com': EXCHANGE_APP_ID,
	'https://graph.microsoft.com': GRAPH_APP_ID,
	[EXCHANGE_APP_ID]: EXCHANGE_APP_ID,
	[GRAPH_APP_ID]: GRAPH_APP_ID,
};
// Unqualified app roles are Graph's, except these Exchange Online API ones.
const EXCHANGE_ROLES = new Set(['IMAP.AccessAsApp', 'POP.AccessAsApp', 'SMTP.SendAsApp', 'full_access_as_app', 'EWS.AccessAsApp']);
// What a delegated `<resource>/.default` expands to when the app lists no delegatedScopes.
const DEFAULT_DELEGATED = {
	[EXCHANGE_APP_ID]: ['IMAP.AccessAsUser.All', 'POP.AccessAsUser.All', 'SMTP.Send', 'EWS.AccessAsUser.All'],
	[GRAPH_APP_ID]: ['Mail.Send', 'Mail.ReadWrite', 'User.Read'],
};
// The permission each mail protocol needs (app role, delegated scope): what a per-mailbox
// protocol switch (Set-CASMailbox -ImapEnabled / -SmtpClientAuthenticationDisabled) refuses.
const PROTOCOL_PERMISSIONS = {
	imap: ['IMAP.AccessAsApp', 'IMAP.AccessAsUser.All'],
	pop: ['POP.AccessAsApp', 'POP.AccessAsUser.All'],
	smtp: ['SMTP.SendAsApp', 'SMTP.Send'],
	ews: ['full_access_as_app', 'EWS.AccessAsApp', 'EWS.AccessAsUser.All'],
};
const OIDC_SCOPES = new Set(['openid', 'profile', 'email', 'offline_access']);
const MULTI_TENANT_SEGMENTS = new Set(['organizations', 'common']);
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const CLOCK_SKEW_SECONDS = 300; // Entra tolerates about five minutes on assertions
const CODE_LIFETIME_SECONDS = 600;

const b64url = (data) => Buffer.from(data).toString('base64url');
const nowSeconds = () => Math.floor(Date.now() / 1000);
const lower = (value) => String(value ?? '').toLowerCase();
const entraTimestamp = (date = new Date()) => date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');

/** An Entra error: HTTP status, OAuth `error`, AADSTS number, message. */
class EntraError extends Error {
	constructor(status, error, code, message, extra = {}) {
		super(`AADSTS${code}: ${message}`);
		this.status = status;
		this.error = error;
		this.code = code;
		this.extra = extra;
	}
}
const invalidRequest = (code, message) => new EntraError(400, 'invalid_request', code, message);
const invalidGrant = (code, message, extra) => new EntraError(400, 'invalid_grant', code, message, extra);
const invalidClient = (code, message) => new EntraError(401, 'invalid_client', code, message);
const missingParameter = (name) => invalidRequest(900144, `The request body must contain the following parameter: '${name}'.`);

function signJwt(payload, privateKey, kid) {
	const header = { typ: 'JWT', alg: 'RS256', x5t: kid, kid };
	const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
	return `${input}.${crypto.sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
}

/** Splits a compact JWT; null when it is not one. */
function decodeJwt(token) {
	const parts = String(token ?? '').split('.');
	if (parts.length !== 3) return null;
	try {
		return {
			header: JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')),
			payload: JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')),
			input: Buffer.from(`${parts[0]}.${parts[1]}`),
			signature: Buffer.from(parts[2], 'base64url'),
		};
	} catch {
		return null;
	}
}

function verifyRsa(alg, input, signature, key) {
	if (alg === 'RS256') return crypto.verify('sha256', input, key, signature);
	if (alg === 'PS256') {
		return crypto.verify('sha256', input, { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: crypto.constants.RSA_PSS_SALTLEN_AUTO }, signature);
	}
	return false;
}

function toSeconds(value) {
	if (value === undefined || value === null) return null;
	if (value instanceof Date) return Math.floor(value.getTime() / 1000);
	if (typeof value === 'number') return value > 1e11 ? Math.floor(value / 1000) : value; // ms or s
	return Math.floor(new Date(value).getTime() / 1000);
}

/**
 * @param {object} options
 * @param {{cert: string, key: string}} options.pki server certificate for localhost (see certs.js)
 * @param {number} [options.port=0] HTTPS port
 * @param {number} [options.introspectionPort] also serve POST /introspect over plain HTTP on
 *   127.0.0.1 (for Dovecot); 0 picks a free port; omitted: a free port as well
 * @param {'reject'|'allow'} [options.refreshTokenReuse='reject'] whether a rotated-out refresh
 *   token still works ('allow' is what Entra does for confidential clients)
 * @param {Record<string,string>} [options.resources] extra resource URI -> resource app id
 */
async function startFakeIdentity(options) {
	const resources = { ...DEFAULT_RESOURCES, ...(options.resources ?? {}) };
	const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
	const jwk = publicKey.export({ format: 'jwk' });
	// RFC 7638 thumbprint as key id, like Entra's base64url kids
	const kid = b64url(crypto.createHash('sha256').update(JSON.stringify({ e: jwk.e, kty: 'RSA', n: jwk.n })).digest());

	const tenants = new Map(); // tenant id -> tenant
	const tenantAliases = new Map(); // lower(id or domain) -> tenant
	const codes = new Map(); // authorization code -> grant
	const refreshTokens = new Map(); // refresh token -> grant
	const mailboxGrants = new Map(); // `${tid}|${lower(clientId or upn)}` -> Set(lower mailbox)
	// `${tid}|${lower(principal)}|${lower(mailbox)}` -> passing introspections still to refuse
	const pendingGrants = new Map();
	const disabledProtocols = new Map(); // lower(mailbox) -> Set(protocol)
	const requests = [];
	const issued = []; // every access and refresh token minted (canary scans look for them)
	const settings = { tokenLifetime: 3600, refreshTokenLifetime: 90 * 24 * 3600, answerDelay: { ms: 0, route: 'token' } };
	const delayTimers = new Set();

	let authorityHost = ''; // set once the port is known
	let host = '';

	// ---- directory ----

	function findTenant(ref) {
		return tenantAliases.get(lower(ref)) ?? null;
	}
	function requireTenant(ref) {
		const tenant = findTenant(ref);
		if (!tenant) throw new Error(`fake-identity: unknown tenant ${ref}`);
		return tenant;
	}

	function addTenant({ id = crypto.randomUUID(), domains = [] } = {}) {
		const tenant = { id, domains: [...domains], apps: new Map(), users: new Map() };
		tenants.set(id, tenant);
		for (const alias of [id, ...domains]) tenantAliases.set(lower(alias), tenant);
		return tenant;
	}

	/**
	 * `secrets`: strings or {value, expiresAt, displayName?, keyId?} (Graph's passwordCredentials).
	 * `rolesPendingTries`: the first n introspections that would pass an app role are refused
	 * ('permission still propagating'), as right after admin consent.
	 * `ownedBySelf`: the app is an owner of its own registration (the fake Graph's applications
	 * route lets Application.ReadWrite.OwnedBy read it then).
	 */
	function addApp({ tenant, clientId = crypto.randomUUID(), name, secrets = [], certificates = [], consented = true, appRoles = [], delegatedScopes, redirectUris = [], publicClient = false, servicePrincipalId = crypto.randomUUID(), objectId = crypto.randomUUID(), ownedBySelf = false, rolesPendingTries = 0 }) {
		const home = requireTenant(tenant);
		const app = {
			clientId,
			name: name ?? `app-${clientId.slice(0, 8)}`,
			tenantId: home.id,
			servicePrincipalId,
			consented,
			appRoles: [...appRoles],
			delegatedScopes: delegatedScopes ? [...delegatedScopes] : null,
			redirectUris: [...redirectUris],
			publicClient,
			rolesPendingTries,
			objectId, // the app registration's own object id (not the service principal's)
			ownedBySelf, // the app is an owner of its registration (Application.ReadWrite.OwnedBy reads it)
			secrets: secrets
				.map((s) => (typeof s === 'string' ? { value: s } : { ...s }))
				.map((s) => ({ value: s.value, expiresAt: toSeconds(s.expiresAt), displayName: s.displayName ?? null, keyId: s.keyId ?? crypto.randomUUID(), startAt: toSeconds(s.startAt) ?? nowSeconds() })),
			certificates: certificates.map((c) => {
				const x509 = new crypto.X509Certificate(typeof c === 'string' ? c : c.pem);
				const sha1 = crypto.createHash('sha1').update(x509.raw).digest();
				const sha256 = crypto.createHash('sha256').update(x509.raw).digest();
				return {
					x509,
					publicKey: x509.publicKey,
					sha1Hex: sha1.toString('hex').toUpperCase(),
					sha256Hex: sha256.toString('hex').toUpperCase(),
					x5t: sha1.toString('base64url'),
					x5tS256: sha256.toString('base64url'),
				};
			}),
		};
		home.apps.set(lower(clientId), app);
		return app; // live record: tests may flip e.g. app.consented
	}

	function addUser({ tenant, username, password, mfaRequired = false, displayName, oid = crypto.randomUUID() }) {
		const home = requireTenant(tenant);
		const user = { username, password, mfaRequired, displayName: displayName ?? username.split('@')[0], oid, tenantId: home.id };
		home.users.set(lower(username), user);
		return user;
	}

	/**
	 * Exchange-side permission: app (service principal + Add-MailboxPermission) or user
	 * (delegate/shared mailbox). `pendingTries`: the first n introspections that would pass for
	 * this principal and mailbox are refused ('permission still propagating'), then they pass.
	 */
	function grantMailbox({ tenant, clientId, username, mailbox, pendingTries = 0 }) {
		const home = requireTenant(tenant);
		const key = `${home.id}|${lower(clientId ?? username)}`;
		if (!mailboxGrants.has(key)) mailboxGrants.set(key, new Set());
		mailboxGrants.get(key).add(lower(mailbox));
		if (pendingTries > 0) pendingGrants.set(`${key}|${lower(mailbox)}`, pendingTries);
		else pendingGrants.delete(`${key}|${lower(mailbox)}`);
	}
	/** One refusal of a grant still propagating is spent: true while some are left. */
	function stillPropagating(tid, principal, mailbox) {
		const key = `${tid}|${lower(principal)}|${lower(mailbox)}`;
		const left = pendingGrants.get(key) ?? 0;
		if (left <= 0) return false;
		pendingGrants.set(key, left - 1);
		return true;
	}
	/** The protocol switched off for the mailbox that `permission` belongs to, or null. */
	function disabledProtocolFor(mailbox, permission) {
		const off = disabledProtocols.get(lower(mailbox));
		if (!off || !permission) return null;
		return [...off].find((protocol) => PROTOCOL_PERMISSIONS[protocol].includes(roleName(permission))) ?? null;
	}
	function setProtocol(mailbox, protocol, enabled) {
		if (!PROTOCOL_PERMISSIONS[protocol]) throw new Error(`fake-identity: unknown protocol ${protocol}`);
		const key = lower(mailbox);
		if (!disabledProtocols.has(key)) disabledProtocols.set(key, new Set());
		disabledProtocols.get(key)[enabled ? 'delete' : 'add'](protocol);
	}
	function mayOpen(tid, principal, mailbox) {
		return Boolean(mailboxGrants.get(`${tid}|${lower(principal)}`)?.has(lower(mailbox)));
	}

	// ---- tokens ----

	/** Resource principal of an app role: 'https://host/Role' or an unqualified name. */
	function roleBelongsTo(role, principal) {
		const slash = role.lastIndexOf('/');
		if (slash > 0) return resources[role.slice(0, slash).replace(/\/$/, '')] === principal;
		return (EXCHANGE_ROLES.has(role) ? EXCHANGE_APP_ID : GRAPH_APP_ID) === principal;
	}
	const roleName = (role) => role.slice(role.lastIndexOf('/') + 1);

	function mintAccessToken({ tenant, clientId, username, audience, roles, scp, lifetime = settings.tokenLifetime }) {
		const home = requireTenant(tenant);
		const app = home.apps.get(lower(clientId));
		const iat = nowSeconds();
		const claims = {
			aud: audience,
			// Exchange and Graph take v1.0 tokens: issuer is sts.windows.net even from the v2 endpoint
			iss: `https://sts.windows.net/${home.id}/`,
			iat,
			nbf: iat,
			exp: iat + lifetime,
			appid: clientId,
			appidacr: '1',
			tid: home.id,
			ver: '1.0',
			uti: b64url(crypto.randomBytes(16)),
		};
		if (username) {
			const user = home.users.get(lower(username));
			Object.assign(claims, {
				idtyp: 'user',
				oid: user?.oid ?? crypto.randomUUID(),
				sub: b64url(crypto.createHash('sha256').update(`${clientId}|${username}`).digest()),
				upn: user?.username ?? username,
				unique_name: user?.username ?? username,
				name: user?.displayName ?? username,
				scp: Array.isArray(scp) ? scp.join(' ') : scp ?? '',
				amr: ['pwd'],
			});
		} else {
			Object.assign(claims, {
				idtyp: 'app',
				oid: app?.servicePrincipalId ?? crypto.randomUUID(),
				sub: app?.servicePrincipalId ?? crypto.randomUUID(),
			});
			if (roles && roles.length) claims.roles = [...roles];
		}
		const token = signJwt(claims, privateKey, kid);
		issued.push(token);
		return token;
	}

	function idToken(tenant, app, user, nonce) {
		const iat = nowSeconds();
		const claims = {
			aud: app.clientId,
			iss: `${authorityHost}/${tenant.id}/v2.0`,
			iat,
			nbf: iat,
			exp: iat + 3600,
			name: user.displayName,
			oid: user.oid,
			preferred_username: user.username,
			sub: b64url(crypto.createHash('sha256').update(`${app.clientId}|${user.oid}`).digest()),
			tid: tenant.id,
			ver: '2.0',
		};
		if (nonce !== undefined && nonce !== null) claims.nonce = nonce;
		return signJwt(claims, privateKey, kid);
	}

	/**
	 * Delegated scope string -> one resource and the permission names in it, as Entra reads
	 * it: unqualified names are Graph's, OIDC scopes are separate, one resource per request.
	 */
	function parseDelegatedScopes(scopeString, app, tenant) {
		const items = String(scopeString ?? '').split(/\s+/).filter(Boolean);
		const oidc = items.filter((s) => OIDC_SCOPES.has(lower(s))).map(lower);
		const wanted = items.filter((s) => !OIDC_SCOPES.has(lower(s)));
		let audience = null;
		let principal = null;
		const names = [];
		for (const scope of wanted) {
			const slash = scope.lastIndexOf('/');
			const resource = slash > 0 ? scope.slice(0, slash) : 'https://graph.microsoft.com';
			const name = slash > 0 ? scope.slice(slash + 1) : scope;
			const owner = resources[resource];
			if (!owner) {
				throw new EntraError(400, 'invalid_resource', 500011, `The resource principal named ${resource} was not found in the tenant named ${tenant.id}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`);
			}
			if (principal && owner !== principal) {
				throw new EntraError(400, 'invalid_scope', 28000, `Provided value for the input parameter scope is not valid because it contains more than one resource. Scope ${scopeString} is not valid.`);
			}
			principal = owner;
			audience = audience ?? resource;
			if (name === '.default') names.push(...delegatedFor(app, owner));
			else names.push(name);
		}
		if (!principal) {
			// only openid/profile/offline_access: Entra issues a Graph token
			principal = GRAPH_APP_ID;
			audience = 'https://graph.microsoft.com';
			names.push('User.Read');
		}
		if (app.delegatedScopes) {
			const allowed = new Set(delegatedFor(app, principal).map(lower));
			const missing = names.filter((n) => !allowed.has(lower(n)));
			if (missing.length) throw notConsented(app);
		}
		return { oidc, audience, principal, names: [...new Set(names)], echoed: wanted };
	}
	function delegatedFor(app, principal) {
		if (!app.delegatedScopes) return DEFAULT_DELEGATED[principal] ?? [];
		return app.delegatedScopes.filter((s) => roleBelongsTo(s, principal)).map(roleName);
	}
	function notConsented(app) {
		return invalidGrant(65001, `The user or administrator has not consented to use the application with ID '${app.clientId}' named '${app.name}'. Send an interactive authorization request for this user and resource.`, { suberror: 'consent_required' });
	}

	/** Token response for a user (auth code, refresh token, password grants). */
	function userTokenResponse(tenant, app, user, scopeString, { nonce, forceRefreshToken = false, clientInfo = false }) {
		const parsed = parseDelegatedScopes(scopeString, app, tenant);
		const body = {
			token_type: 'Bearer',
			scope: parsed.echoed.join(' ') || parsed.names.map((n) => `${parsed.audience}/${n}`).join(' '),
			expires_in: settings.tokenLifetime,
			ext_expires_in: settings.tokenLifetime,
			access_token: mintAccessToken({ tenant: tenant.id, clientId: app.clientId, username: user.username, audience: parsed.audience, scp: parsed.names }),
		};
		if (forceRefreshToken || parsed.oidc.includes('offline_access')) {
			body.refresh_token = issueRefreshToken(tenant, app, user, scopeString);
		}
		if (parsed.oidc.includes('openid')) body.id_token = idToken(tenant, app, user, nonce);
		if (clientInfo) body.client_info = b64url(JSON.stringify({ uid: user.oid, utid: tenant.id }));
		return body;
	}

	function issueRefreshToken(tenant, app, user, scopeString) {
		// opaque, like Entra's; the prefix only makes them recognisable in logs
		const token = `0.A${b64url(crypto.randomBytes(48))}`;
		issued.push(token);
		const issuedAt = nowSeconds();
		refreshTokens.set(token, {
			tenantId: tenant.id,
			clientId: app.clientId,
			username: user.username,
			scope: scopeString,
			issuedAt,
			expiresAt: issuedAt + settings.refreshTokenLifetime,
			used: false,
			revokedAt: null,
		});
		return token;
	}

	// ---- client authentication ----

	function tokenEndpointAudiences(tenant) {
		const out = new Set();
		for (const alias of [tenant.id, ...tenant.domains]) {
			out.add(lower(`${authorityHost}/${alias}/oauth2/v2.0/token`));
			out.add(lower(`${authorityHost}/${alias}/oauth2/token`));
		}
		out.add(lower(`${authorityHost}/${tenant.id}/v2.0`)); // Entra also accepts its issuer
		return out;
	}

	function authenticateClient(app, tenant, form, basic, grantType) {
		const secret = form.client_secret ?? basic?.secret;
		if (secret !== undefined) {
			const now = nowSeconds();
			const match = app.secrets.filter((s) => s.value === secret);
			if (match.some((s) => !s.expiresAt || s.expiresAt > now)) return 'secret';
			if (match.length) {
				throw invalidClient(7000222, `The provided client secret keys for app '${app.clientId}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.`);
			}
			throw invalidClient(7000215, `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${app.clientId}'.`);
		}
		if (form.client_assertion !== undefined) {
			if (form.client_assertion_type !== ASSERTION_TYPE) {
				throw invalidRequest(50027, `JWT token is invalid or malformed. client_assertion_type must be '${ASSERTION_TYPE}'.`);
			}
			verifyAssertion(app, tenant, form.client_assertion);
			return 'certificate';
		}
		if (app.publicClient && grantType !== 'client_credentials') return 'none';
		throw invalidClient(7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.");
	}

	function verifyAssertion(app, tenant, assertion) {
		const jwt = decodeJwt(assertion);
		if (!jwt) throw invalidClient(50027, 'JWT token is invalid or malformed.');
		const { header, payload } = jwt;
		const byS256 = header['x5t#S256'];
		const cert = byS256 ? app.certificates.find((c) => c.x5tS256 === byS256) : app.certificates.find((c) => c.x5t === header.x5t);
		const presented = Buffer.from(String(byS256 ?? header.x5t ?? ''), 'base64url').toString('hex').toUpperCase();
		const signatureFailure = (reason) =>
			invalidClient(700027, `Client assertion failed signature validation. [Reason - ${reason}, Thumbprint of key used by client: '${presented}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '${app.clientId}'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments if you are not using the global cloud.]`);
		if (!cert) throw signatureFailure('The key was not found.');
		if (header.alg !== 'RS256' && header.alg !== 'PS256') throw signatureFailure(`The algorithm '${header.alg}' is not supported.`);
		if (!verifyRsa(header.alg, jwt.input, jwt.signature, cert.publicKey)) {
			throw signatureFailure('The provided signature value did not match the expected signature value.');
		}
		if (Date.parse(cert.x509.validTo) < Date.now()) throw signatureFailure('The key used is expired.');
		if (payload.iss !== app.clientId || payload.sub !== app.clientId) {
			throw invalidClient(700021, "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .");
		}
		const audiences = [].concat(payload.aud ?? []).map((a) => lower(String(a).split('?')[0]));
		if (!audiences.some((a) => tokenEndpointAudiences(tenant).has(a))) {
			throw invalidClient(700027, `Client assertion contains an invalid audience '${payload.aud}'. The audience must be the token endpoint of tenant '${tenant.id}'.`);
		}
		const now = nowSeconds();
		if (typeof payload.exp !== 'number' || payload.exp + CLOCK_SKEW_SECONDS < now || (typeof payload.nbf === 'number' && payload.nbf - CLOCK_SKEW_SECONDS > now)) {
			const iso = (s) => (typeof s === 'number' ? new Date(s * 1000).toISOString() : 'none');
			throw invalidClient(700024, `Client assertion is not within its valid time range. Current time: ${iso(now)}, assertion valid from ${iso(payload.nbf)}, expiry time of assertion ${iso(payload.exp)}. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .`);
		}
	}

	// ---- grants ----

	function unknownTenant(ref) {
		return invalidRequest(90002, `Tenant '${ref}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`);
	}
	function unknownApp(clientId, tenant) {
		return new EntraError(400, 'unauthorized_client', 700016, `Application with identifier '${clientId}' was not found in the directory '${tenant.domains[0] ?? tenant.id}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`);
	}

	/** The tenant a grant names when the path says organizations/common. */
	function tenantOfGrant(grantType, form) {
		if (grantType === 'authorization_code') return tenants.get(codes.get(form.code)?.tenantId);
		if (grantType === 'refresh_token') return tenants.get(refreshTokens.get(form.refresh_token)?.tenantId);
		if (grantType === 'password') return findTenant(String(form.username ?? '').split('@')[1]);
		return undefined;
	}

	function handleToken(segment, form, basic) {
		const grantType = form.grant_type;
		if (!grantType) throw missingParameter('grant_type');
		if (!['client_credentials', 'authorization_code', 'refresh_token', 'password'].includes(grantType)) {
			throw new EntraError(400, 'unsupported_grant_type', 70003, `The app requested an unsupported grant type '${grantType}'.`);
		}
		const clientId = form.client_id ?? basic?.clientId;
		if (!clientId) throw missingParameter('client_id');

		let tenant;
		if (MULTI_TENANT_SEGMENTS.has(lower(segment))) {
			if (grantType === 'client_credentials') {
				throw invalidRequest(50059, 'No tenant-identifying information found in either the request or implied by any provided credentials.');
			}
			tenant = tenantOfGrant(grantType, form);
			if (!tenant) {
				if (grantType === 'password') throw invalidGrant(50034, 'The user account {EUII Hidden} does not exist in the directory. To sign into this application, the account must be added to the directory.');
				throw invalidGrant(9002313, 'Invalid request. Request is malformed or invalid.');
			}
		} else {
			tenant = findTenant(segment);
			if (!tenant) throw unknownTenant(segment);
		}
		const app = tenant.apps.get(lower(clientId));
		if (!app) throw unknownApp(clientId, tenant);
		authenticateClient(app, tenant, form, basic, grantType);
		if (!app.consented) throw notConsented(app);
		const clientInfo = form.client_info === '1';

		if (grantType === 'client_credentials') {
			if (!form.scope) throw missingParameter('scope');
			const scopes = form.scope.split(/\s+/).filter(Boolean);
			if (scopes.length !== 1 || !scopes[0].endsWith('/.default')) {
				throw new EntraError(400, 'invalid_scope', 1002012, `The provided value for scope ${form.scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`);
			}
			const audience = scopes[0].slice(0, -'/.default'.length);
			const principal = resources[audience];
			if (!principal) {
				throw new EntraError(400, 'invalid_resource', 500011, `The resource principal named ${audience} was not found in the tenant named ${tenant.id}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`);
			}
			const roles = app.appRoles.filter((r) => roleBelongsTo(r, principal)).map(roleName);
			return {
				token_type: 'Bearer',
				scope: form.scope,
				expires_in: settings.tokenLifetime,
				ext_expires_in: settings.tokenLifetime,
				access_token: mintAccessToken({ tenant: tenant.id, clientId: app.clientId, audience, roles }),
			};
		}

		if (grantType === 'authorization_code') {
			if (!form.code) throw missingParameter('code');
			const grant = codes.get(form.code);
			if (!grant || grant.tenantId !== tenant.id || lower(grant.clientId) !== lower(app.clientId)) {
				throw invalidGrant(9002313, 'Invalid request. Request is malformed or invalid.');
			}
			if (grant.used) throw invalidGrant(54005, 'OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.');
			if (grant.expiresAt < nowSeconds()) {
				throw invalidGrant(70008, 'The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.');
			}
			if (form.redirect_uri !== grant.redirectUri) {
				throw invalidGrant(50011, `The redirect URI '${form.redirect_uri}' specified in the request does not match the redirect URI '${grant.redirectUri}' of the authorization request.`);
			}
			if (grant.codeChallenge) {
				const verifier = form.code_verifier ?? '';
				const computed = grant.codeChallengeMethod === 'S256' ? b64url(crypto.createHash('sha256').update(verifier).digest()) : verifier;
				if (!verifier || computed !== grant.codeChallenge) {
					throw invalidGrant(501481, 'The Code_Verifier does not match the code_challenge supplied in the authorization request.');
				}
			}
			grant.used = true;
			const user = tenant.users.get(lower(grant.username));
			return userTokenResponse(tenant, app, user, form.scope ?? grant.scope, { nonce: grant.nonce, clientInfo });
		}

		if (grantType === 'refresh_token') {
			if (!form.refresh_token) throw missingParameter('refresh_token');
			const grant = refreshTokens.get(form.refresh_token);
			if (!grant || grant.tenantId !== tenant.id || lower(grant.clientId) !== lower(app.clientId)) {
				throw invalidGrant(9002313, 'Invalid request. Request is malformed or invalid.');
			}
			if (grant.revokedAt) {
				throw invalidGrant(50173, `The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '${new Date(grant.issuedAt * 1000).toISOString()}' and the TokensValidFrom date (before which tokens are not valid) for this user is '${new Date(grant.revokedAt * 1000).toISOString()}'.`);
			}
			if (grant.expiresAt < nowSeconds()) {
				throw invalidGrant(700082, `The refresh token has expired due to inactivity. The token was issued on ${new Date(grant.issuedAt * 1000).toISOString()} and was inactive for ${settings.refreshTokenLifetime} seconds.`);
			}
			if (grant.used && options.refreshTokenReuse !== 'allow') {
				// Not Entra behaviour for confidential clients (their old refresh tokens keep
				// working); strict rotation lets tests prove the newest token is stored.
				throw invalidGrant(70008, 'The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource. (The refresh token was already redeemed.)');
			}
			const user = tenant.users.get(lower(grant.username));
			if (!user) throw invalidGrant(50034, 'The user account {EUII Hidden} does not exist in the directory.');
			const body = userTokenResponse(tenant, app, user, form.scope ?? grant.scope, { forceRefreshToken: true, clientInfo });
			grant.used = true; // only once the new pair is issued
			return body;
		}

		// password (ROPC)
		if (!form.username) throw missingParameter('username');
		if (form.password === undefined) throw missingParameter('password');
		const user = tenant.users.get(lower(form.username));
		if (!user) throw invalidGrant(50034, `The user account {EUII Hidden} does not exist in the ${tenant.id} directory. To sign into this application, the account must be added to the directory.`);
		if (user.password !== form.password) throw invalidGrant(50126, 'Error validating credentials due to invalid username or password.');
		const parsed = parseDelegatedScopes(form.scope, app, tenant);
		if (user.mfaRequired) {
			throw invalidGrant(50076, `Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '${parsed.principal}'.`, { suberror: 'basic_action' });
		}
		return userTokenResponse(tenant, app, user, form.scope, { clientInfo });
	}

	/** GET /{tenant}/oauth2/v2.0/authorize: auto-approves as login_hint (or the tenant's first user). */
	function handleAuthorize(segment, query, res) {
		const multi = MULTI_TENANT_SEGMENTS.has(lower(segment));
		const hint = query.get('login_hint');
		let tenant = multi ? findTenant(String(hint ?? '').split('@')[1]) : findTenant(segment);
		const clientId = query.get('client_id') ?? '';
		if (!tenant && multi) tenant = [...tenants.values()].find((t) => t.apps.has(lower(clientId)));
		if (!tenant) return sendError(res, unknownTenant(segment), query.get('client-request-id'));
		const app = tenant.apps.get(lower(clientId));
		if (!app) return sendError(res, unknownApp(clientId, tenant));
		const redirectUri = query.get('redirect_uri') ?? '';
		if (!app.redirectUris.includes(redirectUri)) {
			return sendError(res, invalidRequest(50011, `The redirect URI '${redirectUri}' specified in the request does not match the redirect URIs configured for the application '${app.clientId}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.`));
		}
		const state = query.get('state');
		const redirect = (params) => {
			const target = new URL(redirectUri);
			for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) target.searchParams.set(k, v);
			if (state !== null) target.searchParams.set('state', state);
			if (query.get('response_mode') === 'form_post') {
				const fields = [...target.searchParams].map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`).join('');
				res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
				return res.end(`<html><body onload="document.forms[0].submit()"><form method="POST" action="${escapeHtml(redirectUri)}">${fields}</form></body></html>`);
			}
			res.writeHead(302, { location: target.toString() });
			res.end();
		};
		const redirectError = (e) => redirect({ error: e.extra?.suberror === 'consent_required' ? 'consent_required' : e.error, error_description: e.message, error_codes: String(e.code) });
		if (query.get('response_type') !== 'code') {
			return redirect({ error: 'unsupported_response_type', error_description: 'AADSTS70005: response_type must be code.' });
		}
		const user = hint ? tenant.users.get(lower(hint)) : tenant.users.values().next().value;
		if (!user) return redirectError(invalidRequest(hint ? 50034 : 50058, hint ? `The user account {EUII Hidden} does not exist in the ${tenant.id} directory.` : 'A silent sign-in request was sent but no user is signed in.'));
		if (!app.consented) return redirectError(notConsented(app));
		try {
			parseDelegatedScopes(query.get('scope'), app, tenant);
		} catch (e) {
			return redirectError(e);
		}
		const code = `1.A${b64url(crypto.randomBytes(48))}`;
		const challenge = query.get('code_challenge');
		codes.set(code, {
			tenantId: tenant.id,
			clientId: app.clientId,
			username: user.username,
			redirectUri,
			scope: query.get('scope') ?? '',
			nonce: query.get('nonce') ?? undefined,
			codeChallenge: challenge,
			codeChallengeMethod: challenge ? query.get('code_challenge_method') ?? 'plain' : null,
			expiresAt: nowSeconds() + CODE_LIFETIME_SECONDS,
			used: false,
		});
		return redirect({
			code,
			client_info: query.get('client_info') === '1' ? b64url(JSON.stringify({ uid: user.oid, utid: tenant.id })) : undefined,
			session_state: crypto.randomUUID(),
		});
	}

	// ---- introspection (the resource server's view) ----

	const sameResource = (a, b) => lower(a) === lower(b) || (resources[a] && resources[a] === resources[b]);

	/**
	 * @param {string} token
	 * @param {{audience?: string, mailbox?: string, scope?: string, role?: string}} [want]
	 *   audience: resource the token must be for (Exchange aliases count as one);
	 *   mailbox: mailbox to open; scope/role: delegated permission / app role required
	 */
	function introspect(token, want = {}) {
		const inactive = (reason) => ({ active: false, reason });
		const jwt = decodeJwt(token);
		if (!jwt) return inactive('malformed token');
		if (jwt.header.alg !== 'RS256' || jwt.header.kid !== kid || !crypto.verify('sha256', jwt.input, publicKey, jwt.signature)) {
			return inactive('bad signature');
		}
		const claims = jwt.payload;
		const now = nowSeconds();
		if (typeof claims.exp !== 'number' || claims.exp <= now) return inactive('token expired');
		if (typeof claims.nbf === 'number' && claims.nbf > now + CLOCK_SKEW_SECONDS) return inactive('token not yet valid');
		if (want.audience && !sameResource(want.audience, claims.aud)) return inactive(`wrong audience ${claims.aud}`);
		const scp = claims.scp ? claims.scp.split(' ') : [];
		const roles = claims.roles ?? [];
		const info = {
			active: true,
			aud: claims.aud,
			tid: claims.tid,
			appid: claims.appid,
			client_id: claims.appid,
			oid: claims.oid,
			sub: claims.sub,
			idtyp: claims.idtyp,
			token_type: 'Bearer',
			iat: claims.iat,
			exp: claims.exp,
			scope: claims.idtyp === 'app' ? roles.join(' ') : claims.scp,
		};
		const protocolOff = (mailbox, permission) => {
			const protocol = disabledProtocolFor(mailbox, permission);
			return protocol && inactive(`${protocol} disabled for ${mailbox}`);
		};
		if (claims.idtyp === 'app') {
			if (want.role && !roles.includes(want.role)) return inactive(`missing role ${want.role}`);
			if (!want.mailbox) return inactive('app-only token needs a mailbox');
			const off = protocolOff(want.mailbox, want.role);
			if (off) return off;
			if (!mayOpen(claims.tid, claims.appid, want.mailbox)) return inactive(`app ${claims.appid} has no permission on ${want.mailbox}`);
			const app = tenants.get(claims.tid)?.apps.get(lower(claims.appid));
			if (want.role && app?.rolesPendingTries > 0) {
				app.rolesPendingTries--;
				return inactive('permission still propagating');
			}
			if (stillPropagating(claims.tid, claims.appid, want.mailbox)) return inactive('permission still propagating');
			return { ...info, roles, username: want.mailbox };
		}
		if (want.scope && !scp.includes(want.scope)) return inactive(`missing scope ${want.scope}`);
		const mailbox = want.mailbox ?? claims.upn;
		const off = protocolOff(mailbox, want.scope);
		if (off) return off;
		if (lower(mailbox) !== lower(claims.upn)) {
			if (!mayOpen(claims.tid, claims.upn, mailbox)) return inactive(`${claims.upn} has no permission on ${mailbox}`);
			if (stillPropagating(claims.tid, claims.upn, mailbox)) return inactive('permission still propagating');
		}
		return { ...info, scp: claims.scp, upn: claims.upn, username: mailbox };
	}

	async function handleIntrospect(req, url, res) {
		const form = req.method === 'POST' ? Object.fromEntries(new URLSearchParams(await readBody(req))) : {};
		const param = (name) => form[name] ?? url.searchParams.get(name) ?? undefined;
		const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
		const token = param('token') ?? param('access_token') ?? bearer?.[1];
		const result = introspect(token, { audience: param('audience'), mailbox: param('mailbox'), scope: param('required_scope'), role: param('required_role') });
		sendJson(res, 200, result);
	}

	// ---- HTTP ----

	function openIdConfiguration(segment) {
		const multi = MULTI_TENANT_SEGMENTS.has(lower(segment));
		const tenant = multi ? null : findTenant(segment);
		if (!multi && !tenant) return null;
		const path = multi ? lower(segment) : tenant.id; // Entra answers with the tenant id, not the domain
		const base = `${authorityHost}/${path}`;
		return {
			token_endpoint: `${base}/oauth2/v2.0/token`,
			token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
			jwks_uri: `${base}/discovery/v2.0/keys`,
			response_modes_supported: ['query', 'fragment', 'form_post'],
			subject_types_supported: ['pairwise'],
			id_token_signing_alg_values_supported: ['RS256'],
			response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
			scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
			issuer: `${authorityHost}/${multi ? '{tenantid}' : tenant.id}/v2.0`,
			request_uri_parameter_supported: false,
			userinfo_endpoint: 'https://graph.microsoft.com/oidc/userinfo',
			authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
			device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
			http_logout_supported: true,
			frontchannel_logout_supported: true,
			end_session_endpoint: `${base}/oauth2/v2.0/logout`,
			claims_supported: ['sub', 'iss', 'cloud_instance_name', 'cloud_instance_host_name', 'cloud_graph_host_name', 'msgraph_host', 'aud', 'exp', 'iat', 'auth_time', 'acr', 'nonce', 'preferred_username', 'name', 'tid', 'ver', 'at_hash', 'c_hash', 'email'],
			kerberos_endpoint: `${base}/kerberos`,
			tenant_region_scope: 'EU',
			cloud_instance_name: 'microsoftonline.com',
			cloud_graph_host_name: 'graph.windows.net',
			msgraph_host: 'graph.microsoft.com',
			rbac_url: 'https://pas.windows.net',
		};
	}

	function sendJson(res, status, body, headers = {}) {
		res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store, no-cache', ...headers });
		res.end(JSON.stringify(body));
	}

	function sendError(res, error, correlationId) {
		const traceId = crypto.randomUUID();
		const correlation = correlationId || crypto.randomUUID();
		const timestamp = entraTimestamp();
		const body = {
			error: error.error,
			error_description: `${error.message}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlation}\r\nTimestamp: ${timestamp}`,
			error_codes: [error.code],
			timestamp,
			trace_id: traceId,
			correlation_id: correlation,
			error_uri: `${authorityHost}/error?code=${error.code}`,
		};
		if (error.extra?.suberror) body.suberror = error.extra.suberror;
		sendJson(res, error.status, body, { 'x-ms-request-id': traceId, ...(error.extra?.headers ?? {}) });
	}

	// ---- fault hooks of the token endpoint (test/faults) ----

	const tokenFaults = { failures: 0, status: 500, retryAfterSeconds: undefined, stalled: false };
	const stalledRequests = new Set();

	/** A fault due for this token request: answers it (or holds it) and returns true. */
	function injectTokenFault(res, record, correlationId) {
		if (tokenFaults.stalled) {
			record.error = 'stalled';
			stalledRequests.add(res);
			res.on('close', () => stalledRequests.delete(res));
			return true;
		}
		if (tokenFaults.failures <= 0) return false;
		tokenFaults.failures--;
		record.error = 'AADSTS50000';
		const headers = tokenFaults.retryAfterSeconds === undefined ? {} : { 'retry-after': String(tokenFaults.retryAfterSeconds) };
		// what Entra answers when its token service fails
		sendError(res, new EntraError(tokenFaults.status, 'server_error', 50000, 'There was an error issuing a token or an issue with our sign-in service.', { headers }), correlationId);
		return true;
	}

	async function handle(req, res) {
		const url = new URL(req.url, `https://${host || 'localhost'}`);
		const segments = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
		const record = { method: req.method, path: url.pathname, grantType: null, tenant: segments[0] ?? null, clientId: null, scope: null, at: Date.now(), status: null, error: null };
		requests.push(record);
		res.on('finish', () => {
			record.status = res.statusCode;
		});
		const { ms, route: delayed } = settings.answerDelay;
		if (ms > 0 && url.pathname !== '/introspect' && (delayed === 'all' || url.pathname.endsWith('/oauth2/v2.0/token'))) {
			await new Promise((resolve) => {
				const timer = setTimeout(() => resolve(delayTimers.delete(timer)), ms);
				delayTimers.add(timer);
			});
			if (res.destroyed) return;
		}
		const correlationId = req.headers['client-request-id'];
		const route = segments.slice(1).join('/');
		try {
			if (url.pathname === '/introspect') return await handleIntrospect(req, url, res);
			if (req.method === 'GET' && segments[0] === 'common' && route === 'discovery/instance') {
				// instance discovery: MSAL calls it unless knownAuthorities/cloudDiscoveryMetadata say otherwise
				const authorize = url.searchParams.get('authorization_endpoint') ?? `${authorityHost}/common/oauth2/v2.0/authorize`;
				const tenantSegment = new URL(authorize).pathname.split('/').filter(Boolean)[0] ?? 'common';
				return sendJson(res, 200, {
					tenant_discovery_endpoint: `${authorityHost}/${tenantSegment}/v2.0/.well-known/openid-configuration`,
					'api-version': '1.1',
					metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
				});
			}
			if (req.method === 'GET' && (route === 'v2.0/.well-known/openid-configuration' || route === '.well-known/openid-configuration')) {
				const config = openIdConfiguration(segments[0]);
				if (!config) return sendError(res, new EntraError(400, 'invalid_tenant', 90002, unknownTenant(segments[0]).message.replace(/^AADSTS90002: /, '')), correlationId);
				return sendJson(res, 200, config);
			}
			if (req.method === 'GET' && (route === 'discovery/v2.0/keys' || route === 'discovery/keys')) {
				return sendJson(res, 200, { keys: [{ kty: 'RSA', use: 'sig', kid, x5t: kid, n: jwk.n, e: jwk.e, alg: 'RS256' }] });
			}
			if (req.method === 'GET' && route === 'oauth2/v2.0/authorize') {
				record.grantType = 'authorize';
				record.clientId = url.searchParams.get('client_id');
				record.scope = url.searchParams.get('scope');
				return handleAuthorize(segments[0], url.searchParams, res);
			}
			if (req.method === 'POST' && route === 'oauth2/v2.0/token') {
				const form = Object.fromEntries(new URLSearchParams(await readBody(req)));
				const basic = parseBasic(req.headers.authorization);
				Object.assign(record, { grantType: form.grant_type ?? null, clientId: form.client_id ?? basic?.clientId ?? null, scope: form.scope ?? null });
				if (injectTokenFault(res, record, correlationId)) return;
				try {
					return sendJson(res, 200, handleToken(segments[0], form, basic));
				} catch (error) {
					if (!(error instanceof EntraError)) throw error;
					record.error = `AADSTS${error.code}`;
					return sendError(res, error, correlationId);
				}
			}
			if (route === 'oauth2/v2.0/logout') {
				res.writeHead(200, { 'content-type': 'text/plain' });
				return res.end('signed out');
			}
			sendJson(res, 404, { error: 'not_found', error_description: `fake-identity: no route for ${req.method} ${url.pathname}` });
		} catch (error) {
			if (error instanceof EntraError) return sendError(res, error, correlationId);
			sendJson(res, 500, { error: 'server_error', error_description: `fake-identity: ${error.stack ?? error}` });
		}
	}

	const server = https.createServer({ key: options.pki.key, cert: options.pki.cert }, (req, res) => {
		handle(req, res).catch(() => res.destroy());
	});
	await listen(server, options.port ?? 0, '127.0.0.1');
	const { port } = server.address();
	// `localhost` may resolve to ::1 first: listen there too when the host has IPv6
	const server6 = https.createServer({ key: options.pki.key, cert: options.pki.cert }, server.listeners('request')[0]);
	const has6 = await listen(server6, port, '::1').then(
		() => true,
		() => false,
	);
	host = `localhost:${port}`;
	authorityHost = `https://${host}`;

	// plain-HTTP introspection for Dovecot (its oauth2 passdb posts token=... here)
	const introspectionServer = http.createServer((req, res) => {
		const url = new URL(req.url, 'http://127.0.0.1');
		if (url.pathname !== '/introspect') return sendJson(res, 404, { error: 'not_found' });
		handleIntrospect(req, url, res).catch(() => res.destroy());
	});
	await listen(introspectionServer, options.introspectionPort ?? 0, '127.0.0.1');

	const idp = {
		host,
		port,
		authorityHost,
		/** JWKS with the token signing key. */
		jwksUri: (tenant = 'common') => `${authorityHost}/${tenant}/discovery/v2.0/keys`,
		tokenEndpoint: (tenant) => `${authorityHost}/${tenant}/oauth2/v2.0/token`,
		introspectionUrl: `http://127.0.0.1:${introspectionServer.address().port}/introspect`,
		signingKey: { kid, publicKey },
		requests,
		/** Every access and refresh token this platform minted, oldest first. */
		issuedTokens: issued,
		addTenant,
		addApp,
		addUser,
		grantMailbox,
		introspect,
		/** The live app record (secrets with expiresAt/displayName/keyId...), or null. */
		findApp({ tenant, clientId }) {
			return findTenant(tenant)?.apps.get(lower(clientId)) ?? null;
		},
		/**
		 * Switches a protocol off for a mailbox, as Set-CASMailbox -ImapEnabled $false /
		 * -SmtpClientAuthenticationDisabled $true do: introspection refuses a request whose
		 * required role / scope is that protocol's (pass role / required_role to make it count).
		 */
		disableProtocol(mailbox, protocol) {
			setProtocol(mailbox, protocol, false);
		},
		enableProtocol(mailbox, protocol) {
			setProtocol(mailbox, protocol, true);
		},
		mintAccessToken,
		/**
		 * Token-endpoint requests matching the filter (every field optional; scope matches
		 * as a substring), or a predicate over the request records.
		 */
		counts(filter = {}) {
			const token = requests.filter((r) => r.method === 'POST' && r.path.endsWith('/oauth2/v2.0/token'));
			if (typeof filter === 'function') return token.filter(filter).length;
			return token.filter(
				(r) =>
					(filter.grantType === undefined || r.grantType === filter.grantType) &&
					(filter.clientId === undefined || lower(r.clientId) === lower(filter.clientId)) &&
					(filter.tenant === undefined || lower(r.tenant) === lower(filter.tenant)) &&
					(filter.scope === undefined || String(r.scope ?? '').includes(filter.scope)) &&
					(filter.status === undefined || r.status === filter.status) &&
					(filter.error === undefined || r.error === filter.error),
			).length;
		},
		/**
		 * The next `count` token requests fail with HTTP `status` (default 500) and Entra's
		 * AADSTS50000 server error, with a Retry-After header when `retryAfterSeconds` is given.
		 */
		failTokenRequests(count, { status = 500, retryAfterSeconds } = {}) {
			Object.assign(tokenFaults, { failures: count, status, retryAfterSeconds });
		},
		/** Token requests from now on are never answered (held open) until resumeTokenRequests(). */
		stallTokenRequests() {
			tokenFaults.stalled = true;
		},
		/** Ends the stall and drops the requests it held; returns how many it held. */
		resumeTokenRequests() {
			tokenFaults.stalled = false;
			const held = stalledRequests.size;
			for (const res of stalledRequests) res.destroy();
			stalledRequests.clear();
			return held;
		},
		/** Revokes matching refresh tokens (like Revoke-MgUserSignInSession); returns how many. */
		revokeRefreshTokens({ username, clientId, tenant } = {}) {
			const tid = tenant ? requireTenant(tenant).id : null;
			let n = 0;
			for (const grant of refreshTokens.values()) {
				if (grant.revokedAt) continue;
				if (username && lower(grant.username) !== lower(username)) continue;
				if (clientId && lower(grant.clientId) !== lower(clientId)) continue;
				if (tid && grant.tenantId !== tid) continue;
				grant.revokedAt = nowSeconds();
				n++;
			}
			return n;
		},
		/** Access token lifetime in seconds (default 3600). MSAL renews tokens 300 s before expiry. */
		setTokenLifetime(seconds) {
			settings.tokenLifetime = seconds;
		},
		/**
		 * Holds every answer of the token endpoint (route 'token') or of every HTTPS route but
		 * /introspect ('all') for `ms` before handling it; 0 turns it off. For time-out tests.
		 */
		delayAnswers(ms, route = 'token') {
			settings.answerDelay = { ms, route };
		},
		/** Refresh token inactivity lifetime in seconds (default 90 days). */
		setRefreshTokenLifetime(seconds) {
			settings.refreshTokenLifetime = seconds;
			for (const grant of refreshTokens.values()) grant.expiresAt = grant.issuedAt + seconds;
		},
		close() {
			for (const timer of delayTimers) clearTimeout(timer);
			delayTimers.clear();
			const servers = [server, introspectionServer, ...(has6 ? [server6] : [])];
			return Promise.all(
				servers.map(
					(s) =>
						new Promise((resolve) => {
							s.close(() => resolve());
							s.closeAllConnections(); // MSAL's fetch keeps connections alive
						}),
				),
			);
		},
	};
	return idp;
}

function listen(server, port, address) {
	return new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(port, address, () => {
			server.off('error', reject);
			server.on('error', () => {});
			resolve();
		});
	});
}

function readBody(req) {
	return new Promise((resolve, reject) => {
		const chunks = [];
		let size = 0;
		req.on('data', (chunk) => {
			size += chunk.length;
			if (size > 1024 * 1024) return req.destroy(new Error('body too large'));
			chunks.push(chunk);
		});
		req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
		req.on('error', reject);
	});
}

/** client_secret_basic: Basic base64(urlencode(id):urlencode(secret)). */
function parseBasic(header) {
	const match = /^Basic\s+(.+)$/i.exec(header ?? '');
	if (!match) return null;
	const decoded = Buffer.from(match[1], 'base64').toString('utf8');
	const colon = decoded.indexOf(':');
	if (colon < 0) return null;
	return { clientId: decodeURIComponent(decoded.slice(0, colon)), secret: decodeURIComponent(decoded.slice(colon + 1)) };
}

function escapeHtml(value) {
	return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

module.exports = { startFakeIdentity };
