import type { ICredentialDataDecryptedObject, INodeCredentialTestResult } from 'n8n-workflow';

import { appOnlyTokens, assertMailboxAllowed, readAppOnlyCredential } from './microsoft-connection';
import { describeItemError } from './node-errors';
import { maskIdentifier } from './redact';

/** Test button: acquire an Exchange token and report the result, never the token itself. */
export async function testAppOnlyCredential(
	data: ICredentialDataDecryptedObject,
): Promise<INodeCredentialTestResult> {
	let secrets: string[] = [];
	try {
		const credential = readAppOnlyCredential(data);
		secrets = credential.secrets;
		if (credential.mailbox) assertMailboxAllowed(credential, credential.mailbox, 'Default Mailbox');
		const { expiresAt } = await appOnlyTokens(credential).getToken('exchange', { forceRefresh: true });
		const minutes = Math.round((expiresAt.getTime() - Date.now()) / 60_000);
		return {
			status: 'OK',
			message: `Token for ${credential.config.cloud.exchangeHost} acquired for app ${maskIdentifier(credential.config.clientId)} in tenant ${maskIdentifier(credential.config.tenantId)} (valid ${minutes} min).`,
		};
	} catch (error) {
		const { message, hint } = describeItemError(error, secrets);
		return { status: 'Error', message: hint ? `${message}. Fix: ${hint}` : message };
	}
}
