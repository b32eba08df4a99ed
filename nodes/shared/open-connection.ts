import type { ICredentialDataDecryptedObject, IExecuteFunctions, ILoadOptionsFunctions, INodeCredentialTestResult, IPollFunctions } from 'n8n-workflow';

import { ActionableError } from '../../model/actionable-error';
import { addSecret } from '../../model/redact';
import type { Connection, ConnectionKind } from '../../connections/connection';
import { kindFor, kindForCredential, type Direction, credentialTestsFor } from '../../connections/registry';
import { describeItemError } from './node-errors';

type CredentialContext = IExecuteFunctions | ILoadOptionsFunctions | IPollFunctions;

/**
 * Opens the credential chosen by "Authentication". n8n enters only here: it decrypts the
 * credential and, for OAuth2 credentials, redeems and stores the rotated refresh token (with
 * a lock, so queue-mode workers do not race); both new tokens join the connection's secrets.
 */
export async function openConnection(ctx: CredentialContext, authentication: string): Promise<Connection> {
	const kind = kindFor(authentication);
	const data = await ctx.getCredentials(kind.credentialType);
	// The connection's live secret list, once open: where the refreshed tokens go.
	const opened: { connection?: Connection } = {};
	const refreshOAuth2Token = (ctx as IExecuteFunctions).helpers?.refreshOAuth2Token;
	const refreshDelegated = refreshOAuth2Token
		? async () => {
				const fresh = (await refreshOAuth2Token.call(ctx as IExecuteFunctions, kind.credentialType)) as { access_token?: string; refresh_token?: string };
				addSecret(opened.connection?.secrets ?? [], fresh?.refresh_token);
				if (!fresh?.access_token) throw new Error('the token endpoint returned no access token');
				addSecret(opened.connection?.secrets ?? [], fresh.access_token);
				return fresh.access_token;
			}
		: undefined;
	opened.connection = await kind.open(data, { refreshDelegated });
	return opened.connection;
}

/** The sending half of a connection; an Authentication that only reads is refused. */
export function sendingParts(connection: Connection): Required<Pick<Connection, 'identityFor' | 'sender'>> {
	if (!connection.identityFor || !connection.sender) {
		throw new ActionableError('This Authentication cannot send mail', 'AUTHENTICATION_CANNOT_SEND', 'Choose an Authentication for sending');
	}
	return { identityFor: connection.identityFor.bind(connection), sender: connection.sender.bind(connection) };
}

/**
 * The Test button of one credential type: open, run the kind's staged checks (each kind's
 * `test()` keeps them inside TEST_BUTTON_BUDGET_MS), and say which step failed and its fix
 * (never a secret).
 */
export async function testCredential(kind: ConnectionKind, data: ICredentialDataDecryptedObject): Promise<INodeCredentialTestResult> {
	let connection: Connection | undefined;
	try {
		connection = await kind.open(data, {});
		return { status: 'OK', message: await connection.test() };
	} catch (error) {
		const { message, hint } = describeItemError(error, connection?.secrets ?? []);
		// A server's reply often ends in a full stop already: one, not two, before the fix.
		return { status: 'Error', message: hint ? `${message.replace(/\.+$/, '')}. Fix: ${hint}` : message };
	}
}

type CredentialTest = (this: unknown, credential: { data?: ICredentialDataDecryptedObject }) => Promise<INodeCredentialTestResult>;

/** The `methods.credentialTest` a node needs for the `testedBy` of its credentials. */
export function credentialTestMethods(direction: Direction): Record<string, CredentialTest> {
	return Object.fromEntries(
		credentialTestsFor(direction).map(({ method, credentialType }) => [
			method,
			async function (this: unknown, credential: { data?: ICredentialDataDecryptedObject }) {
				return await testCredential(kindForCredential(credentialType), credential.data ?? {});
			},
		]),
	);
}
