import type { ICredentialDataDecryptedObject, INodeCredentialTestResult } from 'n8n-workflow';

import { checkAppOnlyTokens } from '../../connections/microsoft-graph-token-check';
import { appOnlyTokens, assertMailboxAllowed, readAppOnlyCredential } from './microsoft-connection';
import { describeItemError } from './node-errors';
import { maskIdentifier } from './redact';

/** Test button: a Graph and an Exchange token, reported without the tokens themselves. */
export async function testAppOnlyCredential(
	data: ICredentialDataDecryptedObject,
): Promise<INodeCredentialTestResult> {
	let secrets: string[] = [];
	try {
		const credential = readAppOnlyCredential(data);
		secrets = credential.secrets;
		if (credential.mailbox) assertMailboxAllowed(credential, credential.mailbox, 'Default Mailbox');
		const { cloud, clientId, tenantId } = credential.config;
		const app = `app ${maskIdentifier(clientId)} in tenant ${maskIdentifier(tenantId)}`;
		return { status: 'OK', message: await checkAppOnlyTokens(appOnlyTokens(credential), cloud, app) };
	} catch (error) {
		const { message, hint } = describeItemError(error, secrets);
		return { status: 'Error', message: hint ? `${message}. Fix: ${hint}` : message };
	}
}
