import { isDeliveryUnknown, MailTransportError } from '../../../transports/contracts';
import { EwsError, ewsErrorFor, ewsHttpError, ewsNetworkError, ewsDeliveryUnknown } from '../../../transports/ews/errors';
import { EXCHANGE_ONLINE_EWS_NOTICE, isExchangeOnline } from '../../../transports/ews/exchange-online';
import { buildEnvelope, buildSplitEnvelope, parseSoapResponse, serverBusyBackOff } from '../../../transports/ews/soap';
import { EWS_CODES, EXCHANGE_ONLINE_EWS_URL, type EwsResponseMessage } from '../../../transports/ews/types';
import { parseXml } from '../../../transports/ews/xml';

const context = { operation: 'GetFolder', mailbox: 'shared@contoso.example' };

function message(code: string, extra: Partial<EwsResponseMessage> = {}): EwsResponseMessage {
	return { responseClass: 'Error', code, element: {}, ...extra };
}

describe('EWS response codes become one line with the fix', () => {
	test.each([
		['ErrorAccessDenied', EWS_CODES.ACCESS_DENIED, /FullAccess/],
		['ErrorImpersonateUserDenied', EWS_CODES.IMPERSONATION_DENIED, /ApplicationImpersonation.*full_access_as_app.*RBAC for Applications/],
		['ErrorNonExistentMailbox', EWS_CODES.MAILBOX_NOT_FOUND, /Check the address shared@contoso.example.*on this Exchange server/],
		['ErrorInvalidSyncStateData', EWS_CODES.INVALID_SYNC_STATE, /from scratch/],
		['ErrorSendAsDenied', EWS_CODES.SEND_AS_DENIED, /Send As/],
		['ErrorItemNotFound', EWS_CODES.ITEM_NOT_FOUND, /moved or deleted/],
		['ErrorFolderNotFound', EWS_CODES.FOLDER_NOT_FOUND, /folder/],
		['ErrorInvalidServerVersion', EWS_CODES.INVALID_SERVER_VERSION, /older Server Version/],
		['ErrorMessageSizeExceeded', EWS_CODES.MESSAGE_TOO_LARGE, /MaxSendSize/],
		['ErrorSomethingNew', EWS_CODES.REQUEST_FAILED, /response code/],
	])('%s -> %s', (ewsCode, code, hint) => {
		const error = ewsErrorFor(message(ewsCode, { text: 'The server said\nthis.' }), context);
		expect(error).toBeInstanceOf(EwsError);
		expect(error).toBeInstanceOf(MailTransportError);
		expect(error.code).toBe(code);
		expect(error.ewsCode).toBe(ewsCode);
		expect(error.hint).toMatch(hint);
		expect(error.message).toContain(ewsCode);
		expect(error.message).toContain('GetFolder');
		expect(error.message).not.toMatch(/\n/);
	});

	test('ErrorServerBusy names the back-off in the hint', () => {
		const error = ewsErrorFor(message('ErrorServerBusy', { details: { BackOffMilliseconds: '29950' } }), context);
		expect(error.code).toBe(EWS_CODES.SERVER_BUSY);
		expect(error.backOffMs).toBe(29950);
		expect(error.hint).toContain('30 s (BackOffMilliseconds 29950)');
	});
});

describe('HTTP answers', () => {
	const url = 'https://mail.contoso.example/EWS/Exchange.asmx';
	test('401 hints per scheme', () => {
		expect(ewsHttpError(401, '', { operation: 'GetFolder', url, scheme: 'ntlm' }).hint).toMatch(/user name, domain and password.*NTLM/);
		expect(ewsHttpError(401, '', { operation: 'GetFolder', url, scheme: 'basic' }).hint).toMatch(/Basic authentication is enabled on the EWS virtual directory/);
		const bearer = ewsHttpError(401, '', { operation: 'GetFolder', url, scheme: 'bearer', flavour: 'app-only', wwwAuthenticate: 'Bearer realm="", error="invalid_token"' });
		expect(bearer.code).toBe(EWS_CODES.UNAUTHORIZED);
		expect(bearer.responseCode).toBe(401);
		expect(bearer.hint).toMatch(/full_access_as_app.*admin consent.*audience/);
		expect(bearer.message).toContain('invalid_token');
		expect(ewsHttpError(401, '', { operation: 'GetFolder', url, scheme: 'bearer', flavour: 'ropc' }).hint).toMatch(/EWS.AccessAsUser.All/);
	});

	test('403 "EWS is not allowed for this app" -> EWS_APP_NOT_ALLOWED with the allow-list fix and the dates', () => {
		const error = ewsHttpError(403, '<html>EWS is not allowed for this app.</html>', { operation: 'GetFolder', url: EXCHANGE_ONLINE_EWS_URL, scheme: 'bearer', flavour: 'app-only' });
		expect(error.code).toBe(EWS_CODES.APP_NOT_ALLOWED);
		expect(error.hint).toContain('Set-OrganizationConfig -EWSEnabled $true');
		expect(error.hint).toContain('EwsAllowedAppIDs');
		expect(error.hint).toMatch(/list is written whole/);
		expect(error.hint).toMatch(/24 h/);
		expect(error.hint).toMatch(/Graph.*1 April 2027/);
	});

	test('network failures: time-out, TLS, refused', () => {
		expect(ewsNetworkError(Object.assign(new Error('x'), { code: 'EWS_IDLE_TIMEOUT' }), { operation: 'FindItem', url, timeoutMs: 5000 }).code).toBe(EWS_CODES.TIMEOUT);
		const tls = ewsNetworkError(Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }), { operation: 'FindItem', url });
		expect(tls.code).toBe(EWS_CODES.TLS);
		expect(tls.hint).toMatch(/Trusted CA/);
		expect(ewsNetworkError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), { operation: 'FindItem', url }).code).toBe(EWS_CODES.NETWORK);
	});

	test('delivery unknown carries the suffix every node checks', () => {
		const error = ewsDeliveryUnknown(new Error('socket hang up'), 'CreateItem');
		expect(error.code).toBe(EWS_CODES.DELIVERY_UNKNOWN);
		expect(isDeliveryUnknown(error)).toBe(true);
	});
});

describe('Exchange Online', () => {
	test.each([
		[EXCHANGE_ONLINE_EWS_URL, true],
		['https://outlook.office.de/EWS/Exchange.asmx', true],
		['https://partner.outlook.cn/EWS/Exchange.asmx', true],
		['https://outlook.office365.us/EWS/Exchange.asmx', true],
		['https://contoso-com.mail.protection.outlook.com/EWS/Exchange.asmx', true],
		['https://mail.contoso.example/EWS/Exchange.asmx', false],
		['https://outlook.office365.com.evil.example/EWS/Exchange.asmx', false],
		['not a url', false],
	])('%s -> %s', (url, online) => {
		expect(isExchangeOnline(url)).toBe(online);
	});

	test('the notice has both dates, on-premises, and prefer Graph', () => {
		expect(EXCHANGE_ONLINE_EWS_NOTICE).toContain('1 October 2026');
		expect(EXCHANGE_ONLINE_EWS_NOTICE).toContain('1 April 2027');
		expect(EXCHANGE_ONLINE_EWS_NOTICE).toMatch(/On-premises/i);
		expect(EXCHANGE_ONLINE_EWS_NOTICE).toMatch(/prefer Graph/);
	});
});

describe('XML: every value through the builder, text kept exactly', () => {
	const hostile = '  Re: Q&A <script>"quoted" \'single\' — Grüße 日本 😀 \r\n\ttab  ';

	test('a value survives the builder and the parser unchanged (text and attribute)', () => {
		const xml = buildEnvelope('CreateFolder', { 'm:Folders': { 't:Folder': { 't:DisplayName': hostile, '@_Attr': hostile } } }, { version: 'Exchange2013_SP1' });
		expect(xml).not.toContain('<script>');
		const parsed = parseXml(xml) as any;
		const folder = parsed.Envelope.Body.CreateFolder.Folders.Folder[0];
		expect(folder.DisplayName).toBe(hostile);
		expect(folder['@_Attr']).toBe(hostile);
	});

	test('a character XML 1.0 cannot carry is refused naming the field', () => {
		expect(() => buildEnvelope('CreateItem', { 'm:Items': { 't:Message': { 't:Subject': 'bell \u0007 here' } } }, { version: 'Exchange2013_SP1' })).toThrow(
			expect.objectContaining({ code: EWS_CODES.INVALID_XML_CHARACTER, message: expect.stringContaining('CreateItem.Items.Message.Subject') }),
		);
		expect(() => buildEnvelope('CreateItem', { 'm:Items': { 't:Message': { '@_Name': 'lone \uD800 surrogate' } } }, { version: 'Exchange2013_SP1' })).toThrow(/U\+D800/);
		expect(() => buildEnvelope('GetFolder', { 'm:X': 'fine \uFFFD \u{1F600}' }, { version: 'Exchange2013_SP1' })).not.toThrow();
	});

	test('the envelope carries the server version and, when impersonating, ExchangeImpersonation', () => {
		const xml = buildEnvelope('GetFolder', {}, { version: 'Exchange2016', impersonate: 'robot@contoso.example' });
		expect(xml).toContain('<t:RequestServerVersion Version="Exchange2016"/>');
		expect(xml).toContain('<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>robot@contoso.example</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>');
		expect(xml).toContain('xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"');
	});

	test('a split envelope puts the placeholder exactly between head and tail', () => {
		const { head, tail } = buildSplitEnvelope('CreateItem', { 'm:Items': { 't:Message': { 't:MimeContent': { '@_CharacterSet': 'UTF-8', '#text': 'PLACE' } } } }, 'PLACE', { version: 'Exchange2013_SP1' });
		expect(head.endsWith('<t:MimeContent CharacterSet="UTF-8">')).toBe(true);
		expect(tail.startsWith('</t:MimeContent>')).toBe(true);
	});

	test('an oversized or malformed response is refused, not parsed', () => {
		const previous = process.env.MAM_EWS_MAX_RESPONSE_BYTES;
		process.env.MAM_EWS_MAX_RESPONSE_BYTES = '1000';
		try {
			expect(() => parseXml(`<a>${'x'.repeat(2000)}</a>`)).toThrow(expect.objectContaining({ code: EWS_CODES.RESPONSE_INVALID }));
		} finally {
			if (previous === undefined) delete process.env.MAM_EWS_MAX_RESPONSE_BYTES;
			else process.env.MAM_EWS_MAX_RESPONSE_BYTES = previous;
		}
		expect(() => parseSoapResponse('<html><body>Sign in</body></html>', 'GetFolder')).toThrow(expect.objectContaining({ code: EWS_CODES.RESPONSE_INVALID }));
	});

	test('entity expansion is bounded (billion laughs)', () => {
		const bomb = `<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]><l>${'&e;'.repeat(200)}</l>`;
		const started = Date.now();
		let text = '';
		try {
			text = String((parseXml(bomb) as any).l ?? '');
		} catch (error) {
			expect((error as EwsError).code).toBe(EWS_CODES.RESPONSE_INVALID);
		}
		expect(text.length).toBeLessThan(1_000_000);
		expect(Date.now() - started).toBeLessThan(2000);
	});
});

describe('SOAP responses as Microsoft documents them', () => {
	const getFolder = `<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Header>
    <h:ServerVersionInfo MajorVersion="15" MinorVersion="20" MajorBuildNumber="5" MinorBuildNumber="0" Version="V2018_01_08" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" xmlns="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>
  </s:Header>
  <s:Body>
    <m:GetFolderResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
      <m:ResponseMessages>
        <m:GetFolderResponseMessage ResponseClass="Success">
          <m:ResponseCode>NoError</m:ResponseCode>
          <m:Folders>
            <t:Folder>
              <t:FolderId Id="AAMkAGRi" ChangeKey="AQAAABYA"/>
              <t:DisplayName> Inbox &amp; more </t:DisplayName>
              <t:TotalCount>007</t:TotalCount>
            </t:Folder>
          </m:Folders>
        </m:GetFolderResponseMessage>
        <m:GetFolderResponseMessage ResponseClass="Error">
          <m:MessageText>The specified folder could not be found in the store.</m:MessageText>
          <m:ResponseCode>ErrorFolderNotFound</m:ResponseCode>
          <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>
        </m:GetFolderResponseMessage>
      </m:ResponseMessages>
    </m:GetFolderResponse>
  </s:Body>
</s:Envelope>`;

	test('response messages in order, one folder still an array, text exact', () => {
		const parsed = parseSoapResponse(getFolder, 'GetFolder');
		expect(parsed.fault).toBeUndefined();
		const [ok, missing] = parsed.messages!;
		expect(ok.responseClass).toBe('Success');
		expect(ok.code).toBe('NoError');
		const folders = (ok.element.Folders as any).Folder;
		expect(Array.isArray(folders)).toBe(true);
		expect(folders[0].DisplayName).toBe(' Inbox & more ');
		expect(folders[0].TotalCount).toBe('007');
		expect(folders[0].FolderId['@_Id']).toBe('AAMkAGRi');
		expect(missing).toMatchObject({ responseClass: 'Error', code: 'ErrorFolderNotFound', text: 'The specified folder could not be found in the store.' });
		expect(parsed.serverVersion?.MajorVersion).toBe('15');
	});

	test('ErrorServerBusy as a response message and as a SOAP fault gives its back-off', () => {
		const busyMessage = `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:FindItemResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages><m:FindItemResponseMessage ResponseClass="Error"><m:MessageText>The server cannot service this request right now. Try again later.</m:MessageText><m:ResponseCode>ErrorServerBusy</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:MessageXml><t:Value Name="BackOffMilliseconds">299</t:Value></m:MessageXml></m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse></s:Body></s:Envelope>`;
		const parsed = parseSoapResponse(busyMessage, 'FindItem');
		expect(parsed.messages?.[0].details).toEqual({ BackOffMilliseconds: '299' });
		expect(serverBusyBackOff(parsed)).toBe(299);
		const fault = `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorServerBusy</faultcode><faultstring xml:lang="en-US">The server cannot service this request right now. Try again later.</faultstring><detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorServerBusy</e:ResponseCode><e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">The server cannot service this request right now. Try again later.</e:Message><t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><t:Value Name="BackOffMilliseconds">5000</t:Value></t:MessageXml></detail></s:Fault></s:Body></s:Envelope>`;
		const faulted = parseSoapResponse(fault, 'FindItem');
		expect(faulted.fault?.responseCode).toBe('ErrorServerBusy');
		expect(serverBusyBackOff(faulted)).toBe(5000);
	});
});
