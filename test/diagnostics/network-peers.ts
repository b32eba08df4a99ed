/** Small socket servers for the reach and TLS tests: each counts the connections it still holds open. */
import net from 'node:net';
import tls from 'node:tls';

export interface CountingServer {
	port: number;
	readonly connections: number;
	/** Connections not yet closed: a check must leave none behind. */
	readonly open: number;
	close(): Promise<void>;
}

const servers = new Set<CountingServer>();

/** Listens on 127.0.0.1 (a free port) and counts connections (TLS servers: the completed handshakes). */
export async function listen(server: net.Server): Promise<CountingServer> {
	const open = new Set<net.Socket>();
	let connections = 0;
	server.on(server instanceof tls.Server ? 'secureConnection' : 'connection', (socket: net.Socket) => {
		connections++;
		open.add(socket);
		socket.on('close', () => open.delete(socket));
		socket.on('error', () => undefined);
	});
	server.on('tlsClientError', () => undefined);
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	const counting: CountingServer = {
		port: (server.address() as net.AddressInfo).port,
		get open() {
			return open.size;
		},
		get connections() {
			return connections;
		},
		close: () =>
			new Promise<void>((resolve) => {
				servers.delete(counting);
				for (const socket of open) socket.destroy();
				server.close(() => resolve());
			}),
	};
	servers.add(counting);
	return counting;
}

/** Closes every server `listen` started and did not close yet (for afterAll). */
export const closeAllServers = () => Promise.all([...servers].map((server) => server.close()));

/** Accepts TCP and never says a word, nor answers a ClientHello. */
export const startSilentServer = () =>
	listen(
		net.createServer((socket) => {
			// read and drop what arrives, else unread bytes (a ClientHello) would hide the client's close
			socket.resume();
		}),
	);

/** A port that was free a moment ago: nothing listens there. */
export async function closedPort(): Promise<number> {
	const server = net.createServer();
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	const { port } = server.address() as net.AddressInfo;
	await new Promise<void>((resolve) => server.close(() => resolve()));
	return port;
}

/** Waits up to `ms` for `condition`; its last value. */
export async function until(condition: () => boolean, ms = 2_000): Promise<boolean> {
	const deadline = Date.now() + ms;
	while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
	return condition();
}
