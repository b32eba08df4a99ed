/**
 * Self-test of the fault proxy against a real TCP peer: what each fault does to the bytes
 * both ends see, checked at the peer and at the client.
 */
import net from 'node:net';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startFaultProxy } = require('./fault-proxy');

type Proxy = Awaited<ReturnType<typeof startFaultProxy>>;

/** A line peer: greets, then answers every line `x` with `echo x`; remembers what it received. */
async function startPeer() {
	const received: Buffer[] = [];
	const sockets = new Set<net.Socket>();
	const server = net.createServer((socket) => {
		sockets.add(socket);
		socket.on('error', () => {});
		socket.on('close', () => sockets.delete(socket));
		socket.write('* READY\r\n');
		let pending = '';
		socket.on('data', (chunk) => {
			received.push(chunk);
			pending += chunk.toString('latin1');
			let eol;
			while ((eol = pending.indexOf('\n')) >= 0) {
				const line = pending.slice(0, eol).replace(/\r$/, '');
				pending = pending.slice(eol + 1);
				socket.write(`echo ${line}\r\n`);
			}
		});
	});
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	return {
		port: (server.address() as net.AddressInfo).port,
		received: () => Buffer.concat(received).toString('latin1'),
		close: () => {
			for (const s of sockets) s.destroy();
			return new Promise<void>((resolve) => server.close(() => resolve()));
		},
	};
}

/** A client that keeps everything it got and how the connection ended. */
function connect(port: number) {
	const socket = net.connect({ host: '127.0.0.1', port });
	const chunks: Array<{ at: number; data: Buffer }> = [];
	const state = { ended: false, error: undefined as (NodeJS.ErrnoException | undefined), closed: false };
	socket.on('data', (data) => chunks.push({ at: Date.now(), data }));
	socket.on('end', () => (state.ended = true));
	socket.on('error', (error) => (state.error = error));
	const closed = new Promise<void>((resolve) => socket.on('close', () => ((state.closed = true), resolve())));
	const text = () => Buffer.concat(chunks.map((c) => c.data)).toString('latin1');
	const waitFor = async (pattern: string, ms = 5000) => {
		const deadline = Date.now() + ms;
		while (!text().includes(pattern)) {
			if (Date.now() > deadline || state.closed) throw new Error(`client never got ${JSON.stringify(pattern)}; got ${JSON.stringify(text())}`);
			await sleep(5);
		}
	};
	return { socket, chunks, state, closed, text, waitFor };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let peer: Awaited<ReturnType<typeof startPeer>>;
let proxy: Proxy | undefined;

beforeEach(async () => {
	peer = await startPeer();
});
afterEach(async () => {
	await proxy?.close();
	proxy = undefined;
	await peer.close();
});

describe('fault proxy', () => {
	it('without faults forwards both ways unchanged and counts connections and bytes', async () => {
		proxy = await startFaultProxy({ target: { port: peer.port } });
		const client = connect(proxy.port);
		await client.waitFor('* READY\r\n');
		client.socket.write('hello\r\n');
		await client.waitFor('echo hello\r\n');
		expect(client.text()).toBe('* READY\r\necho hello\r\n');
		expect(peer.received()).toBe('hello\r\n');
		expect(proxy.stats()).toMatchObject({ connections: 1, open: 1, bytes: { client: 7, server: 21 } });
		client.socket.end();
		await client.closed;
		await waitUntil(() => proxy!.open === 0);
		expect(proxy.fired).toEqual([]);
	});

	it('truncate after N bytes: the client gets exactly N bytes, then a clean end (FIN)', async () => {
		proxy = await startFaultProxy({ target: { port: peer.port }, faults: [{ action: 'truncate', direction: 'server', afterBytes: 4 }] });
		const client = connect(proxy.port);
		await client.closed;
		expect(client.text()).toBe('* RE');
		expect(client.state.ended).toBe(true);
		expect(client.state.error).toBeUndefined();
		expect(proxy.fired).toEqual([{ connection: 1, action: 'truncate', direction: 'server', at: 4 }]);
	});

	it('reset after a server pattern: the client has the bytes up to the pattern, then ECONNRESET', async () => {
		proxy = await startFaultProxy({ target: { port: peer.port }, faults: [{ action: 'reset', direction: 'server', match: /echo tw./ }] });
		const client = connect(proxy.port);
		await client.waitFor('* READY\r\n');
		client.socket.write('one\r\ntwo\r\n');
		await client.closed;
		expect(client.text()).toBe('* READY\r\necho one\r\necho two');
		expect(client.state.error?.code).toBe('ECONNRESET');
		expect(proxy.fired[0]).toMatchObject({ connection: 1, action: 'reset', direction: 'server' });
	});

	it('a client pattern with position "before": the server never gets the command, but what came before it', async () => {
		proxy = await startFaultProxy({
			target: { port: peer.port },
			faults: [{ action: 'reset', direction: 'client', match: 'UID STORE', position: 'before' }],
		});
		const client = connect(proxy.port);
		await client.waitFor('* READY\r\n');
		client.socket.write('A1 NOOP\r\nA2 UID STORE 1 +FLAGS (\\Seen)\r\n');
		await client.closed;
		await sleep(50);
		expect(peer.received()).toBe('A1 NOOP\r\nA2 ');
		expect(client.state.error?.code).toBe('ECONNRESET');
	});

	it('finds a pattern split across TCP chunks', async () => {
		proxy = await startFaultProxy({ target: { port: peer.port }, faults: [{ action: 'truncate', direction: 'client', match: 'LOGOUT' }] });
		const client = connect(proxy.port);
		await client.waitFor('* READY\r\n');
		client.socket.write('A1 LOG');
		await sleep(100);
		expect(proxy.fired).toEqual([]);
		client.socket.write('OUT\r\n');
		await client.closed;
		await sleep(50);
		expect(peer.received()).toBe('A1 LOGOUT');
		expect(proxy.fired).toEqual([{ connection: 1, action: 'truncate', direction: 'client', at: 9 }]);
	});

	it('stall: nothing moves either way while the sockets stay open; stallMs lets the held bytes through', async () => {
		proxy = await startFaultProxy({ target: { port: peer.port }, faults: [{ action: 'stall', direction: 'client', match: 'two', stallMs: 700 }] });
		const client = connect(proxy.port);
		await client.waitFor('* READY\r\n');
		client.socket.write('one\r\n');
		await client.waitFor('echo one\r\n');
		client.socket.write('two\r\n');
		const stalledAt = Date.now();
		await sleep(300);
		expect(peer.received()).toBe('one\r\ntwo'); // the rest of the line is held
		expect(client.text()).toBe('* READY\r\necho one\r\n');
		expect(client.state.closed).toBe(false);
		await client.waitFor('echo two\r\n', 3000);
		expect(Date.now() - stalledAt).toBeGreaterThanOrEqual(300);
		expect(peer.received()).toBe('one\r\ntwo\r\n');
		client.socket.destroy();
	});

	it('a stall without stallMs holds until the client gives up; close() then ends everything', async () => {
		proxy = await startFaultProxy({ target: { port: peer.port }, faults: [{ action: 'stall', direction: 'server', afterBytes: 0 }] });
		const client = connect(proxy.port);
		await sleep(300);
		expect(client.text()).toBe(''); // not even the greeting
		expect(proxy.open).toBe(1);
		await proxy.close();
		await client.closed;
		proxy = undefined;
	});

	it('delay: every chunk after the trigger arrives at least delayMs late, in order', async () => {
		proxy = await startFaultProxy({ target: { port: peer.port }, faults: [{ action: 'delay', direction: 'server', afterBytes: 0, delayMs: 150 }] });
		const started = Date.now();
		const client = connect(proxy.port);
		await client.waitFor('* READY\r\n');
		expect(Date.now() - started).toBeGreaterThanOrEqual(140);
		const sent = Date.now();
		client.socket.write('a\r\n');
		client.socket.write('b\r\n');
		await client.waitFor('echo b\r\n');
		// each way is held once: client -> server and server -> client
		expect(Date.now() - sent).toBeGreaterThanOrEqual(280);
		expect(client.text()).toBe('* READY\r\necho a\r\necho b\r\n');
		client.socket.destroy();
	});

	it('applies a fault to the Nth connection only, and inject() adds faults for later connections', async () => {
		proxy = await startFaultProxy({ target: { port: peer.port }, faults: [{ action: 'reset', connection: 2, afterBytes: 2 }] });
		const first = connect(proxy.port);
		await first.waitFor('* READY\r\n');
		const second = connect(proxy.port);
		await second.closed;
		expect(second.text()).toBe('* ');
		expect(second.state.error?.code).toBe('ECONNRESET');
		proxy.inject({ action: 'truncate', afterBytes: 1 });
		const third = connect(proxy.port);
		await third.closed;
		expect(third.text()).toBe('*');
		first.socket.write('still\r\n');
		await first.waitFor('echo still\r\n');
		expect(proxy.connections).toBe(3);
		expect(proxy.fired.map((f: { connection: number }) => f.connection)).toEqual([2, 3]);
		first.socket.destroy();
	});

	it('close() frees the port and drops open connections', async () => {
		proxy = await startFaultProxy({ target: { port: peer.port } });
		const port = proxy.port;
		const client = connect(port);
		await client.waitFor('* READY\r\n');
		await proxy.close();
		proxy = undefined;
		await client.closed;
		const refused = await new Promise<string>((resolve) => {
			const s = net.connect({ host: '127.0.0.1', port });
			s.on('connect', () => (s.destroy(), resolve('connected')));
			s.on('error', (e: NodeJS.ErrnoException) => resolve(String(e.code)));
		});
		expect(refused).toBe('ECONNREFUSED');
	});

	it('rejects a fault it cannot perform', async () => {
		await expect(startFaultProxy({ target: { port: peer.port }, faults: [{ action: 'explode' }] })).rejects.toThrow(/action must be one of/);
		await expect(startFaultProxy({ target: { port: peer.port }, faults: [{ action: 'delay' }] })).rejects.toThrow(/delayMs/);
	});
});

async function waitUntil(condition: () => boolean, ms = 3000) {
	const deadline = Date.now() + ms;
	while (!condition()) {
		if (Date.now() > deadline) throw new Error('condition not reached');
		await sleep(5);
	}
}
