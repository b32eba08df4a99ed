'use strict';
// A TCP proxy on 127.0.0.1 in front of a real peer (Dovecot, the SMTP peer, later Graph/EWS
// fakes) that injects network faults: it delays, stalls, resets or truncates a connection at a
// chosen byte count or protocol step, in either direction. One place for every transport's
// fault tests; it only sees bytes, so protocol steps are patterns on plaintext streams (use a
// peer's plain port; byte-count faults work on TLS streams too).
//
//   const proxy = await startFaultProxy({ target: { host, port } });
//   proxy.inject({ connection: 1, direction: 'server', match: /\* 5 FETCH/, action: 'reset' });
//   ... point the client at proxy.port ...
//   proxy.fired      // which faults fired, where
//   proxy.stats()    // connections, bytes each way
//   await proxy.close();
const net = require('node:net');

const ACTIONS = ['delay', 'stall', 'reset', 'truncate'];
// Enough to find a protocol step split across TCP chunks; patterns are short command/response lines.
const MATCH_WINDOW = 4096;
// time for the receiver to read what was forwarded before a reset
const RESET_GRACE_MS = 25;

/**
 * @typedef {object} Fault
 * @property {'delay'|'stall'|'reset'|'truncate'} action
 *   delay: hold every later chunk `delayMs` (both directions, order kept);
 *   stall: stop forwarding both ways, sockets stay open (until `stallMs`, or for good);
 *   reset: destroy both sockets with a TCP RST;
 *   truncate: forward up to the trigger point, then end both sockets cleanly (FIN).
 * @property {number|number[]|'all'|((n: number) => boolean)} [connection='all'] which
 *   connections (1-based, in accept order) the fault applies to
 * @property {'server'|'client'} [direction='server'] stream watched: 'server' is
 *   server -> client, 'client' is client -> server
 * @property {number} [afterBytes] trigger once this many bytes went that way (0: at once)
 * @property {string|RegExp} [match] trigger where this pattern appears in that stream
 * @property {'after'|'before'} [position='after'] with match: the matched bytes are forwarded
 *   first ('after') or held back ('before', e.g. the server never gets the command)
 * @property {number} [delayMs] latency per chunk for 'delay'
 * @property {number} [stallMs] for 'stall': resume after this long (default: never)
 */

function validate(fault) {
	if (!fault || !ACTIONS.includes(fault.action)) throw new Error(`fault-proxy: action must be one of ${ACTIONS.join(', ')}: ${JSON.stringify(fault)}`);
	if (fault.direction !== undefined && fault.direction !== 'server' && fault.direction !== 'client') {
		throw new Error(`fault-proxy: direction is 'server' (server -> client) or 'client' (client -> server)`);
	}
	if (fault.afterBytes !== undefined && fault.match !== undefined) throw new Error('fault-proxy: give afterBytes or match, not both');
	if (fault.action === 'delay' && !(fault.delayMs > 0)) throw new Error('fault-proxy: delay needs delayMs > 0');
	return { direction: 'server', position: 'after', connection: 'all', ...fault };
}

function appliesTo(fault, n) {
	const which = fault.connection;
	if (which === 'all' || which === undefined) return true;
	if (typeof which === 'function') return Boolean(which(n));
	return [].concat(which).includes(n);
}

/**
 * Where in `chunk` the fault triggers (bytes of chunk to forward first), or -1.
 * `passed` bytes went this way before the chunk; `window` holds the tail of them (latin1).
 * A byte-count trigger at the end of a chunk fires once the whole chunk is forwarded.
 */
function triggerOffset(fault, chunk, passed, window) {
	if (fault.match === undefined) {
		const at = fault.afterBytes ?? 0;
		if (passed + chunk.length < at) return -1;
		return Math.max(0, at - passed);
	}
	const text = window + chunk.toString('latin1');
	const pattern = fault.match instanceof RegExp ? new RegExp(fault.match.source, fault.match.flags.replace('g', '')) : null;
	let index;
	let length;
	if (pattern) {
		const found = pattern.exec(text);
		if (!found) return -1;
		index = found.index;
		length = found[0].length;
	} else {
		index = text.indexOf(fault.match);
		if (index < 0) return -1;
		length = fault.match.length;
	}
	// a match wholly inside the window was already seen (and did not trigger) before
	if (index + length <= window.length) return -1;
	const cut = (fault.position === 'before' ? index : index + length) - window.length;
	return Math.max(0, Math.min(chunk.length, cut));
}

/**
 * @param {object} options
 * @param {{host?: string, port: number}} options.target the real peer
 * @param {Fault[]} [options.faults] faults active from the start (more via inject())
 * @param {number} [options.port=0] port to listen on (127.0.0.1)
 */
async function startFaultProxy(options) {
	const target = { host: options.target.host ?? '127.0.0.1', port: options.target.port };
	let faults = (options.faults ?? []).map(validate);
	const connections = []; // per accepted connection: { n, bytes: {client, server}, closed }
	const fired = []; // { connection, action, direction, at } in firing order
	const sockets = new Set();
	let closing = false;

	const server = net.createServer((client) => {
		const n = connections.length + 1;
		const info = { n, bytes: { client: 0, server: 0 }, closed: false, fault: null };
		connections.push(info);
		// faults are chosen when the connection opens: inject() later affects later connections
		const pending = faults.filter((f) => appliesTo(f, n));
		const upstream = net.connect({ host: target.host, port: target.port });
		sockets.add(client);
		sockets.add(upstream);
		client.setNoDelay(true);
		upstream.setNoDelay(true);

		const ends = { client: { from: client, to: upstream }, server: { from: upstream, to: client } };
		const windows = { client: '', server: '' };
		let delayMs = 0;
		let chain = Promise.resolve(); // keeps delayed chunks in order
		let stalled = false;
		const held = []; // [direction, chunk] while stalled
		let dead = false;

		const finish = () => {
			if (info.closed) return;
			info.closed = true;
			dead = true;
			sockets.delete(client);
			sockets.delete(upstream);
		};
		const destroyBoth = () => {
			client.destroy();
			upstream.destroy();
			finish();
		};
		client.on('error', destroyBoth).on('close', destroyBoth);
		upstream.on('error', destroyBoth).on('close', destroyBoth);

		const inFlight = new Map([
			[client, 0],
			[upstream, 0],
		]);
		const flushed = (socket) =>
			new Promise((resolve) => {
				const check = () => (inFlight.get(socket) === 0 || socket.destroyed ? resolve() : setTimeout(check, 1));
				check();
			});
		const write = (direction, chunk) => {
			if (dead || chunk.length === 0) return;
			const { from, to } = ends[direction];
			info.bytes[direction] += chunk.length;
			inFlight.set(to, inFlight.get(to) + 1);
			const written = () => inFlight.set(to, inFlight.get(to) - 1);
			if (!to.write(chunk, written)) {
				from.pause();
				to.once('drain', () => from.resume());
			}
		};
		const forward = (direction, chunk) => {
			if (stalled) return void held.push([direction, chunk]);
			if (delayMs > 0) {
				const ms = delayMs;
				chain = chain.then(() => new Promise((resolve) => setTimeout(resolve, ms))).then(() => (stalled ? held.push([direction, chunk]) : write(direction, chunk)));
				return;
			}
			write(direction, chunk);
		};

		const act = (fault, direction) => {
			const record = { connection: n, action: fault.action, direction, at: seen[direction] };
			fired.push(record);
			info.fault = record;
			if (fault.action === 'reset') {
				// RST, not FIN: what a crashed peer or a middlebox dropping state looks like. Node
				// sends a FIN instead while a write is in flight, and a receiver drops bytes it has
				// not read when the RST comes: so wait for the forwarded bytes to go out and be read.
				dead = true;
				Promise.all([flushed(client), flushed(upstream)]).then(() =>
					setTimeout(() => {
						client.resetAndDestroy();
						upstream.resetAndDestroy();
						finish();
					}, RESET_GRACE_MS),
				);
			} else if (fault.action === 'truncate') {
				dead = true;
				client.end();
				upstream.end();
				// a peer that never closes its side must not keep the connection forever
				setTimeout(destroyBoth, 2000).unref();
			} else if (fault.action === 'stall') {
				stalled = true;
				if (fault.stallMs > 0) {
					setTimeout(() => {
						stalled = false;
						for (const [d, c] of held.splice(0)) forward(d, c);
					}, fault.stallMs).unref();
				}
			} else if (fault.action === 'delay') {
				delayMs = fault.delayMs;
			}
		};

		// bytes handed on (maybe still held by a delay or stall): what afterBytes and match count
		const seen = { client: 0, server: 0 };
		const accept = (direction, bytes) => {
			seen[direction] += bytes.length;
			windows[direction] = (windows[direction] + bytes.toString('latin1')).slice(-MATCH_WINDOW);
			forward(direction, bytes);
		};
		const onData = (direction) => (chunk) => {
			let rest = chunk;
			// a fault may trigger part-way through a chunk: forward the part before it, act, go on
			for (;;) {
				if (dead) return;
				const due = pending.filter((f) => f.direction === direction);
				let first = null;
				let cut = Infinity;
				for (const fault of due) {
					const offset = triggerOffset(fault, rest, seen[direction], windows[direction]);
					if (offset >= 0 && offset < cut) {
						first = fault;
						cut = offset;
					}
				}
				if (!first) break;
				accept(direction, rest.subarray(0, cut));
				rest = rest.subarray(cut);
				pending.splice(pending.indexOf(first), 1);
				act(first, direction);
			}
			if (!dead) accept(direction, rest);
		};
		client.on('data', onData('client'));
		upstream.on('data', onData('server'));
		// a fault at byte 0 of the server stream (e.g. stall before the greeting)
		upstream.once('connect', () => {
			for (const fault of pending.filter((f) => f.match === undefined && (f.afterBytes ?? 0) === 0)) {
				pending.splice(pending.indexOf(fault), 1);
				act(fault, fault.direction);
			}
		});
		upstream.on('end', () => !dead && !stalled && client.end());
		client.on('end', () => !dead && !stalled && upstream.end());
	});
	server.on('error', () => {});
	await new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(options.port ?? 0, '127.0.0.1', resolve);
	});

	return {
		host: '127.0.0.1',
		port: server.address().port,
		/** Every fault that fired: { connection, action, direction, at (bytes forwarded that way) }. */
		fired,
		/** Adds faults for connections accepted from now on. */
		inject(...more) {
			faults.push(...more.flat().map(validate));
		},
		/** Removes every fault (connections already open keep theirs) and forgets which fired. */
		clear() {
			faults = [];
			fired.splice(0);
		},
		/** Connections accepted so far. */
		get connections() {
			return connections.length;
		},
		/** Connections still open. */
		get open() {
			return connections.filter((c) => !c.closed).length;
		},
		/** Bytes forwarded: client = client -> server, server = server -> client; per connection too. */
		stats() {
			const sum = (d) => connections.reduce((total, c) => total + c.bytes[d], 0);
			return {
				connections: connections.length,
				open: connections.filter((c) => !c.closed).length,
				bytes: { client: sum('client'), server: sum('server') },
				perConnection: connections.map((c) => ({ n: c.n, bytes: { ...c.bytes }, closed: c.closed, fault: c.fault })),
			};
		},
		/** Drops every open connection (RST) but keeps listening. */
		dropConnections() {
			for (const socket of sockets) socket.resetAndDestroy();
		},
		/** Stops listening and destroys every connection; resolves once the port is free. */
		close() {
			if (closing) return Promise.resolve();
			closing = true;
			for (const socket of sockets) socket.destroy();
			return new Promise((resolve) => server.close(() => resolve()));
		},
	};
}

module.exports = { startFaultProxy };
