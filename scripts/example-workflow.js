'use strict';
// The example workflow the demo and the end-to-end run import into real n8n:
// Manual Trigger -> Read File (binary "data") -> Send Email (Modern Auth) with it attached.
const { PACKAGE_NAME } = require('./n8n-runtime');

const SEND_NODE = 'Send Email (Modern Auth)';

function sendWorkflow({ id, credentialId, credentialName, filePath, to = 'ops@example.org', subject = 'Nightly report from real n8n' }) {
	return {
		id,
		name: `Modern Auth Mail example ${id}`,
		active: false,
		settings: { executionOrder: 'v1' },
		connections: {
			'When clicking Execute': { main: [[{ node: 'Read File', type: 'main', index: 0 }]] },
			'Read File': { main: [[{ node: SEND_NODE, type: 'main', index: 0 }]] },
		},
		nodes: [
			{ id: 'a1', name: 'When clicking Execute', type: 'n8n-nodes-base.manualTrigger', typeVersion: 1, position: [0, 0], parameters: {} },
			{
				id: 'a2',
				name: 'Read File',
				type: 'n8n-nodes-base.readWriteFile',
				typeVersion: 1,
				position: [220, 0],
				parameters: { operation: 'read', fileSelector: filePath, options: {} },
			},
			{
				id: 'a3',
				name: SEND_NODE,
				type: `${PACKAGE_NAME}.modernAuthSendEmail`,
				typeVersion: 1,
				position: [440, 0],
				parameters: {
					authentication: 'smtp',
					toEmail: to,
					subject,
					emailFormat: 'text',
					text: 'See attachment.',
					options: { attachments: 'data' },
				},
				credentials: { modernAuthSmtpApi: { id: credentialId, name: credentialName } },
			},
		],
	};
}

module.exports = { sendWorkflow, SEND_NODE };
