import { Workflow, type INodeTypes } from 'n8n-workflow';

import { ModernAuthMicrosoftDelegatedOAuth2Api } from '../../credentials/ModernAuthMicrosoftDelegatedOAuth2Api.credentials';

// The delegated credential's hidden fields are n8n expressions over the credential's own
// fields ($self), resolved by n8n when it builds the authorize and token requests. Resolved
// here with n8n's own expression engine, for every cloud: the hosts must be that cloud's.
const nodeTypes = { getByName: () => undefined, getByNameAndVersion: () => undefined, getKnownTypes: () => ({}) } as unknown as INodeTypes;
const workflow = new Workflow({ nodes: [{ id: '1', name: 'N', type: 'x', typeVersion: 1, position: [0, 0], parameters: {} }], connections: {}, active: false, nodeTypes });
const fields = new ModernAuthMicrosoftDelegatedOAuth2Api().properties;
const resolve = (name: string, self: Record<string, string>) =>
	workflow.expression.getParameterValue(String(fields.find((f) => f.name === name)!.default), null, 0, 0, 'N', [], 'internal', {}, undefined, false, self);

const graph = (host: string) => `${host}/Mail.ReadWrite ${host}/Mail.Send ${host}/Mail.ReadWrite.Shared ${host}/Mail.Send.Shared offline_access`;
const exchange = (host: string) => `${host}/IMAP.AccessAsUser.All ${host}/SMTP.Send offline_access`;

describe('delegated credential: scopes and sign-in URLs per cloud', () => {
	it.each([
		['global', 'https://graph.microsoft.com', 'https://outlook.office.com', 'https://login.microsoftonline.com'],
		['usGovGccHigh', 'https://graph.microsoft.us', 'https://outlook.office365.us', 'https://login.microsoftonline.us'],
		['usGovDod', 'https://dod-graph.microsoft.us', 'https://outlook-dod.office365.us', 'https://login.microsoftonline.us'],
		['china', 'https://microsoftgraph.chinacloudapi.cn', 'https://partner.outlook.cn', 'https://login.chinacloudapi.cn'],
	])('%s: Graph scopes on its Graph host, IMAP/SMTP scopes on its Exchange resource', (cloud, graphHost, exchangeHost, authority) => {
		expect(resolve('scope', { cloud, useFor: 'graph' })).toBe(graph(graphHost));
		expect(resolve('scope', { cloud, useFor: 'imapSmtp' })).toBe(exchange(exchangeHost));
		expect(resolve('authUrl', { cloud, tenant: 'contoso.example' })).toBe(`${authority}/contoso.example/oauth2/v2.0/authorize`);
		expect(resolve('accessTokenUrl', { cloud, tenant: '' })).toBe(`${authority}/organizations/oauth2/v2.0/token`);
	});

	it('custom: the hosts typed into the credential, trailing slashes dropped; the global ones when left empty', () => {
		const custom = { cloud: 'custom', graphHost: 'https://127.0.0.1:8443/', exchangeResource: 'https://exchange.test', authorityHost: 'https://127.0.0.1:9443/', tenant: 't' };
		expect(resolve('scope', { ...custom, useFor: 'graph' })).toBe(graph('https://127.0.0.1:8443'));
		expect(resolve('scope', { ...custom, useFor: 'imapSmtp' })).toBe(exchange('https://exchange.test'));
		expect(resolve('authUrl', custom)).toBe('https://127.0.0.1:9443/t/oauth2/v2.0/authorize');
		expect(resolve('scope', { cloud: 'custom', useFor: 'graph' })).toBe(graph('https://graph.microsoft.com'));
		expect(resolve('scope', { cloud: 'custom', useFor: 'imapSmtp' })).toBe(exchange('https://outlook.office.com'));
	});
});
