import type { ICredentialDataDecryptedObject, INodeCredentialTestResult } from 'n8n-workflow';

import { describeItemError } from './node-errors';
import { maskIdentifier } from './redact';
import { createSmtpSender, readSmtpCredential, securityLabel } from './smtp-connection';

/** The credential's Test button: connect, secure, authenticate, and say what happened. */
export async function testSmtpCredential(
	data: ICredentialDataDecryptedObject,
): Promise<INodeCredentialTestResult> {
	const credential = readSmtpCredential(data);
	let sender;
	try {
		sender = createSmtpSender(credential, { maxConnections: 1 });
		await sender.verify();
	} catch (error) {
		const { message, hint } = describeItemError(error, [credential.password]);
		return { status: 'Error', message: hint ? `${message}. Fix: ${hint}` : message };
	} finally {
		await sender?.close();
	}
	const who = credential.user ? `authenticated as ${maskIdentifier(credential.user)}` : 'no sign-in';
	const warning = credential.ignoreCertificateErrors ? ' WARNING: certificate checks are off.' : '';
	return {
		status: 'OK',
		message: `Connected to ${credential.host}:${credential.port} with ${securityLabel(credential)}, ${who}.${warning}`,
	};
}
