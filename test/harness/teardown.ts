/**
 * n8n-core creates process-wide services with background timers (an SSH tunnel reaper,
 * for one). An n8n process stops them on shutdown; tests do it after each file so that
 * anything still open afterwards points at a leak of our own (an unclosed transport).
 */
import { Container } from '@n8n/di';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { SSHClientsManager } = require('n8n-core/dist/execution-engine/ssh-clients-manager');

afterAll(() => {
	if (Container.has(SSHClientsManager)) (Container.get(SSHClientsManager) as { onShutdown(): void }).onShutdown();
});
