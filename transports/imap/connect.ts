import { ImapFlow, type ImapFlowOptions } from 'imapflow';

import { tlsClientOptions } from '../tls-options';
import { describeImapError } from './errors';
import type { ImapReaderOptions } from './options';

/**
 * Opens, secures and signs in one connection. An OAuth token the server refuses is renewed
 * once (the provider is told which token failed) before the refusal counts.
 */
export async function openConnection(options: ImapReaderOptions): Promise<ImapFlow> {
	let rejected: string | undefined;
	for (let attempt = 0; ; attempt++) {
		const auth: ImapFlowOptions['auth'] =
			options.auth.type === 'password'
				? { user: options.auth.user, pass: options.auth.pass }
				: { user: options.auth.user, accessToken: (await options.auth.getAccessToken(rejected)).token };
		const client = new ImapFlow({
			host: options.host,
			port: options.port,
			secure: options.security === 'tls',
			doSTARTTLS: options.security === 'starttls' ? true : options.security === 'none' ? false : undefined,
			auth,
			tls: tlsClientOptions({ rejectUnauthorized: options.rejectUnauthorized, ca: options.ca }),
			logger: false,
			disableAutoIdle: true,
			connectionTimeout: options.connectionTimeoutMs ?? 30_000,
			socketTimeout: options.socketTimeoutMs ?? 120_000,
		} as ImapFlowOptions);
		// imapflow reports late socket errors as events; without a listener they would crash n8n.
		client.on('error', () => {});
		try {
			await client.connect();
			return client;
		} catch (error) {
			await client.close();
			const refused = (error as { authenticationFailed?: boolean }).authenticationFailed;
			if (refused && options.auth.type === 'oauth2' && attempt === 0) {
				rejected = (auth as { accessToken: string }).accessToken;
				continue;
			}
			throw describeImapError(error, options);
		}
	}
}

/** LOGOUT when the server still listens, else just drop the socket. */
export async function closeConnection(client: ImapFlow): Promise<void> {
	try {
		await client.logout();
	} catch {
		client.close();
	}
}
