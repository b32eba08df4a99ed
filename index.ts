// Entry point for programmatic use; n8n itself loads the files listed in package.json "n8n".
export { ModernAuthSmtpApi } from './credentials/ModernAuthSmtpApi.credentials';
export { ModernAuthMicrosoftDelegatedOAuth2Api } from './credentials/ModernAuthMicrosoftDelegatedOAuth2Api.credentials';
export { ModernAuthMicrosoftAppOnlyApi } from './credentials/ModernAuthMicrosoftAppOnlyApi.credentials';
export { ModernAuthSendEmail } from './nodes/ModernAuthSendEmail/ModernAuthSendEmail.node';
export { ModernAuthReadMailbox } from './nodes/ModernAuthReadMailbox/ModernAuthReadMailbox.node';
export { ModernAuthReadMailboxTrigger } from './nodes/ModernAuthReadMailboxTrigger/ModernAuthReadMailboxTrigger.node';
export { ModernAuthTestConnection } from './nodes/ModernAuthTestConnection/ModernAuthTestConnection.node';
export { ModernAuthImapApi } from './credentials/ModernAuthImapApi.credentials';
export { ModernAuthEwsApi } from './credentials/ModernAuthEwsApi.credentials';
export { ImapReader } from './transports/imap/imap-reader';
export { SmtpSender } from './transports/smtp/smtp-sender';
export type { MailReader, MailSender } from './transports/contracts';
export { connectionKinds, kindFor } from './connections/registry';
export type { Connection, ConnectionKind } from './connections/connection';
export type { OutgoingMessage, SendResult } from './model/outgoing-message';
