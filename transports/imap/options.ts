export type ImapSecurity = 'tls' | 'starttls' | 'none';

export type ImapAuth =
	| { type: 'password'; user: string; pass: string }
	| {
			type: 'oauth2';
			user: string;
			/** `rejectedToken` is set after the server refused that token. */
			getAccessToken(rejectedToken?: string): Promise<{ token: string }>;
			flavour: 'app-only' | 'delegated';
	  };

export interface ImapReaderOptions {
	host: string;
	port: number;
	security: ImapSecurity;
	auth: ImapAuth;
	rejectUnauthorized: boolean;
	ca?: string;
	connectionTimeoutMs?: number;
	socketTimeoutMs?: number;
}
