/**
 * A loopback TCP proxy that adds latency: every chunk is held `oneWayDelayMs` before it is
 * forwarded, in each direction, so a request/response pays ~2x that (the RTT). Order is
 * kept (one FIFO per direction), half-closes are forwarded after the same delay, and
 * backpressure pauses the sending side. Listens and connects on loopback only.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export interface LatencyProxy {
	host: string;
	port: number;
	connections: number;
	close(): Promise<void>;
}

function pipeDelayed(src: net.Socket, dst: net.Socket, delayMs: number, onFailure: () => void): void {
	const queue: Array<{ at: number; chunk: Buffer | null }> = [];
	let timer: NodeJS.Timeout | undefined;
	let ended = false;
	let waitingForDrain = false;

	const flush = () => {
		timer = undefined;
		const now = performance.now();
		// setTimeout works in whole milliseconds; a chunk due within 0.5 ms goes now.
		while (queue.length > 0 && queue[0].at <= now + 0.5) {
			const { chunk } = queue.shift()!;
			if (dst.destroyed) continue;
			if (chunk === null) {
				dst.end();
				continue;
			}
			if (!dst.write(chunk) && !waitingForDrain) {
				waitingForDrain = true;
				src.pause();
				dst.once('drain', () => {
					waitingForDrain = false;
					src.resume();
				});
			}
		}
		if (queue.length > 0) timer = setTimeout(flush, Math.max(1, Math.ceil(queue[0].at - now)));
	};
	const enqueue = (chunk: Buffer | null) => {
		queue.push({ at: performance.now() + delayMs, chunk });
		timer ??= setTimeout(flush, delayMs);
	};

	src.on('data', (chunk: Buffer) => enqueue(chunk));
	const forwardEnd = () => {
		if (ended) return;
		ended = true;
		enqueue(null);
	};
	src.on('end', forwardEnd);
	src.on('close', forwardEnd);
	src.on('error', onFailure);
}

export async function startLatencyProxy(
	target: { host: string; port: number },
	oneWayDelayMs: number,
): Promise<LatencyProxy> {
	if (!LOOPBACK.has(target.host)) throw new Error(`latency proxy: ${target.host} is not a loopback address`);
	const sockets = new Set<net.Socket>();
	const proxy: LatencyProxy = { host: '127.0.0.1', port: 0, connections: 0, close: async () => {} };
	const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
		proxy.connections++;
		const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
		const fail = () => {
			client.destroy();
			upstream.destroy();
		};
		for (const socket of [client, upstream]) {
			sockets.add(socket);
			socket.on('close', () => sockets.delete(socket));
		}
		pipeDelayed(client, upstream, oneWayDelayMs, fail);
		pipeDelayed(upstream, client, oneWayDelayMs, fail);
	});
	await new Promise<void>((resolve, reject) => {
		server.once('error', reject);
		server.listen(0, '127.0.0.1', () => resolve());
	});
	proxy.port = (server.address() as net.AddressInfo).port;
	proxy.close = () =>
		new Promise<void>((resolve) => {
			for (const socket of sockets) socket.destroy();
			server.close(() => resolve());
		});
	return proxy;
}
