import { X509Certificate } from 'node:crypto';

import type { TokenProvider } from '../auth/app-only-token-provider';
import { ActionableError } from '../model/actionable-error';
import { maskIdentifier } from '../model/redact';
import { createGraphClient } from '../transports/graph/graph-client';
import type { Check, CheckOutcome } from './checks';
import { maskGuids } from './microsoft-token';

/**
 * The credential's own expiry: the certificate pasted into it (read here, no network), and the
 * client secret's end date as the app registration lists it in Graph, when the app may read
 * its own registration.
 */

/** Expiry this close is a warning: time to rotate before sign-in stops. */
export const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 24 * 60 * 60 * 1000;

const isoDay = (date: Date) => date.toISOString().slice(0, 10);
const daysUntil = (date: Date) => Math.floor((date.getTime() - Date.now()) / DAY_MS);

/** Status of a credential that ends at `end`: fail when past, warn within 30 days. */
function expiryStatus(end: Date): 'pass' | 'warn' | 'fail' {
	const left = end.getTime() - Date.now();
	if (left <= 0) return 'fail';
	return left <= EXPIRY_WARNING_DAYS * DAY_MS ? 'warn' : 'pass';
}

const thumbprint = (fingerprint: string) => fingerprint.replace(/:/g, '').toUpperCase();

/** The certificate of a certificate credential: validity and the thumbprints Entra shows. */
export function certificateExpiryCheck(certificatePem: string): Check {
	return {
		step: 'credential',
		target: 'certificate',
		async run(): Promise<CheckOutcome> {
			let certificate: X509Certificate;
			try {
				certificate = new X509Certificate(certificatePem);
			} catch {
				return { status: 'fail', detail: 'the certificate in the credential is not a valid PEM certificate', hint: 'Paste the public certificate including -----BEGIN CERTIFICATE----- and -----END CERTIFICATE-----', code: 'CERTIFICATE_INVALID' };
			}
			const validFrom = new Date(certificate.validFrom);
			const validTo = new Date(certificate.validTo);
			const facts = {
				subject: certificate.subject.replace(/\n/g, ', '),
				// public values: Entra lists certificates by these (Certificates & secrets > Thumbprint)
				thumbprintSha1: thumbprint(certificate.fingerprint),
				thumbprintSha256: thumbprint(certificate.fingerprint256),
				validFrom: validFrom.toISOString(),
				validTo: validTo.toISOString(),
				daysLeft: daysUntil(validTo),
			};
			const which = `certificate ${facts.subject} (thumbprint ${facts.thumbprintSha1})`;
			const renew = `Create a new certificate, upload its public part to the app registration (Entra admin center > App registrations > (your app) > Certificates & secrets > Certificates > Upload certificate) and put it and its private key in the credential`;
			if (validFrom.getTime() > Date.now()) {
				return { status: 'fail', detail: `${which} is valid only from ${isoDay(validFrom)}`, hint: 'Check the clock of the machine that made the certificate, or wait until it is valid', code: 'CERTIFICATE_NOT_YET_VALID', facts };
			}
			const status = expiryStatus(validTo);
			if (status === 'fail') return { status, detail: `${which} expired on ${isoDay(validTo)}`, hint: renew, code: 'CERTIFICATE_EXPIRED', facts };
			if (status === 'warn') {
				return { status, detail: `${which} expires on ${isoDay(validTo)}, in ${facts.daysLeft} days`, hint: `${renew} before then (upload the new one first: both work until the old one expires)`, code: 'CERTIFICATE_EXPIRING', facts };
			}
			return { status, detail: `${which} valid until ${isoDay(validTo)} (${facts.daysLeft} days)`, facts };
		},
	};
}

interface PasswordCredential {
	displayName?: string | null;
	endDateTime?: string | null;
	hint?: string | null;
	keyId?: string | null;
}

const READ_OWN_REGISTRATION = (clientId: string) =>
	`To let the test read the secret's expiry, give the app read access to its own registration: either the Microsoft Graph Application permission Application.Read.All (Entra admin center > App registrations > (app ${clientId}) > API permissions > Add a permission > Microsoft Graph > Application permissions, then Grant admin consent), ` +
	`or Application.ReadWrite.OwnedBy plus the app as an owner of itself, in Microsoft Graph PowerShell: New-MgApplicationOwnerByRef -ApplicationId <App registration object id> -BodyParameter @{'@odata.id'='https://graph.microsoft.com/v1.0/servicePrincipals/<Enterprise Application object id>'}`;

/**
 * The client secret's end date, from Graph's `applications(appId=...)` (passwordCredentials):
 * ours is the one whose `hint` is the first three characters of the secret. Uses the project's
 * Graph client (token middleware, retries, the credential's CA); no mailbox is involved.
 */
export function secretExpiryCheck(params: { graphHost: string; clientId: string; clientSecret: string; tokens: TokenProvider; ca?: string }): Check {
	const { graphHost, clientId, clientSecret, tokens, ca } = params;
	const app = maskIdentifier(clientId);
	return {
		step: 'credential',
		target: 'client secret',
		async run(): Promise<CheckOutcome> {
			const client = createGraphClient({ graphHost, tokens, trust: { rejectUnauthorized: true, ca }, retry: { attempts: 2, firstBackoffMs: 200 }, timeoutMs: 8_000 });
			let listed: PasswordCredential[];
			try {
				const body = await client.get<{ passwordCredentials?: PasswordCredential[] }>(`/applications(appId='${encodeURIComponent(clientId)}')?$select=passwordCredentials`, { prefer: false });
				listed = body?.passwordCredentials ?? [];
			} catch (error) {
				return notReadable(error, clientId, app);
			} finally {
				client.close();
			}
			const prefix = clientSecret.slice(0, 3);
			const ours = listed.filter((c) => c.hint === prefix && c.endDateTime);
			if (!ours.length) {
				return { status: 'skipped', detail: `skipped: none of the ${listed.length} client secrets of app ${app} matches the one in the credential (it may belong to another app registration)`, facts: { secretsListed: listed.length } };
			}
			// Several secrets can share their first characters: the one that works is unexpired, and the soonest to end is the safe guess
			const ends = ours.map((c) => ({ credential: c, end: new Date(String(c.endDateTime)) })).sort((a, b) => a.end.getTime() - b.end.getTime());
			const { credential, end } = ends.find((e) => e.end.getTime() > Date.now()) ?? ends[ends.length - 1];
			const name = credential.displayName ? `"${credential.displayName}" ` : '';
			const which = `client secret ${name}(key ${maskIdentifier(credential.keyId ?? '')}) of app ${app}`;
			const facts: CheckOutcome['facts'] = { endDateTime: end.toISOString(), daysLeft: daysUntil(end), ambiguous: ours.length > 1 };
			if (credential.displayName) facts.displayName = credential.displayName;
			const renew = `Add a new client secret (Entra admin center > App registrations > (app ${clientId}) > Certificates & secrets > New client secret) and paste its Value into the credential`;
			const status = expiryStatus(end);
			if (status === 'fail') return { status, detail: `${which} expired on ${isoDay(end)}`, hint: renew, code: 'SECRET_EXPIRED', facts };
			if (status === 'warn') return { status, detail: `${which} expires on ${isoDay(end)}, in ${facts.daysLeft} days`, hint: `${renew} before then`, code: 'SECRET_EXPIRING', facts };
			return { status, detail: `${which} valid until ${isoDay(end)} (${facts.daysLeft} days)`, facts };
		},
	};
}

function notReadable(error: unknown, clientId: string, app: string): CheckOutcome {
	const status = (error as { responseCode?: number }).responseCode;
	if (status === 403) {
		return { status: 'skipped', detail: `skipped: app ${app} may not read its own registration in Microsoft Graph (403), so the secret's expiry is unknown`, hint: READ_OWN_REGISTRATION(clientId), code: 'SECRET_EXPIRY_UNREADABLE' };
	}
	if (status === 404) {
		return { status: 'skipped', detail: `skipped: Microsoft Graph does not list app ${app} in this tenant (registered in another tenant?), so the secret's expiry is unknown`, hint: "Check the secret's expiry in the home tenant of the app registration (Certificates & secrets)", code: 'SECRET_EXPIRY_UNREADABLE' };
	}
	// no Graph token, or Graph unreachable: not this check's failure (the token and login checks report those)
	const said = error instanceof ActionableError ? error.message : error instanceof Error ? error.message : String(error);
	return { status: 'skipped', detail: maskGuids(`skipped: the secret's expiry could not be read from Microsoft Graph: ${said}`), hint: error instanceof ActionableError ? error.hint : '', code: 'SECRET_EXPIRY_UNREADABLE' };
}
