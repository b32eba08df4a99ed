import { createPoller } from '../../harness/n8n-run';
import { appOnlyGraphCredential, ASSISTANT, registerGraphApp, startGraphPeers, type GraphPeers } from '../../nodes/graph-fixture';

let peers: GraphPeers;

beforeAll(async () => {
	peers = await startGraphPeers();
});
afterAll(async () => {
	await peers?.graph.close();
	await peers?.idp.close();
});

const subjects = (items: Array<{ json: Record<string, unknown> }>) => items.map((i) => String(i.json.subject));
const deliver = (subject: string) => peers.graph.addMessage(ASSISTANT, { subject, from: { address: 'x@example.org' }, to: [{ address: ASSISTANT }] });

describe('the Read Mailbox Trigger through Graph when Graph no longer accepts its delta link', () => {
	it('emits the mail that arrived meanwhile once, and no old mail', async () => {
		const app = registerGraphApp(peers, { mailboxes: [ASSISTANT] });
		const credentials = appOnlyGraphCredential(peers, app, { mailbox: ASSISTANT });
		const parameters = { authentication: 'microsoftAppOnlyGraph', folder: 'INBOX', options: { downloadAttachments: false } };
		deliver('old');
		const poller = await createPoller({ parameters, credentials });
		expect(await poller.poll()).toEqual([]);
		deliver('before expiry');
		expect(subjects(await poller.poll())).toEqual(['before expiry']);

		expect(peers.graph.expireDeltaTokens()).toBeGreaterThan(0);
		deliver('while expired 1');
		deliver('while expired 2');
		expect(subjects(await poller.poll())).toEqual(['while expired 1', 'while expired 2']);
		expect(await poller.poll()).toEqual([]);
		deliver('after');
		expect(subjects(await poller.poll())).toEqual(['after']);
	});
});
