import { connectionKinds, credentialsFor } from '../../connections/registry';
import { ModernAuthTestConnection } from '../../nodes/ModernAuthTestConnection/ModernAuthTestConnection.node';

// The node's selectors come from the registry: a new kind (or a protocol a kind gains, such as
// EWS) shows up in the Test Connection node without touching it.
describe('Test Connection (Modern Auth) description', () => {
	const node = new ModernAuthTestConnection();
	const property = (name: string) => node.description.properties.find((p) => p.name === name)!;

	it('offers every kind of the registry under Authentication, each with its credential and Test button', () => {
		expect((property('authentication').options as Array<{ value: string }>).map((o) => o.value)).toEqual(connectionKinds.map((k) => k.authentication));
		expect(node.description.credentials).toEqual(credentialsFor('test'));
		for (const credential of node.description.credentials ?? []) {
			if (credential.testedBy) expect(typeof node.methods.credentialTest[credential.testedBy as string]).toBe('function');
		}
		expect(node.description.usableAsTool).toBe(true);
	});

	it('offers Default and each protocol some kind serves; Mailbox shows only where the kind picks a mailbox', () => {
		const protocols = [...new Set(connectionKinds.flatMap((k) => k.protocols))];
		expect((property('protocol').options as Array<{ value: string }>).map((o) => o.value)).toEqual(['default', ...protocols]);
		expect(property('mailbox').displayOptions?.show?.authentication).toEqual(connectionKinds.filter((k) => k.selectsMailbox).map((k) => k.authentication));
	});
});
