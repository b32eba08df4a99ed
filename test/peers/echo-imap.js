'use strict';
// A hostile IMAP server for redaction tests: it refuses every sign-in and echoes what the
// client sent (LOGIN arguments, the base64 SASL string of AUTHENTICATE) in its NO reply, the
// way a careless or malicious server might. Counts connections, so a test can show that
// nothing connected at all.
const net = require('node:net');
const tls = require('node:tls');

/**
 * @param {object} options
 * @param {{cert: string, key: string}} [options.pki] implicit TLS when given, else plain TCP
 */
async function startEchoImap(options = {}) {
	const stats = { connections: 0, commands: [] };
	const sockets = new Set();
	const onSocket = (socket) => {
		stats.connections++;
		sockets.add(socket);
		socket.on('close', () => sockets.delete(socket));
		socket.on('error', () => {});
		socket.write('* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=PLAIN] echo ready\r\n');
		let buffer = '';
		let continuation = null; // tag of an AUTHENTICATE waiting for its SASL line
		socket.on('data', (chunk) => {
			buffer += chunk.toString('utf8');
			let end;
			while ((end = buffer.indexOf('\r\n')) >= 0) {
				const line = buffer.slice(0, end);
				buffer = buffer.slice(end + 2);
				stats.commands.push(line);
				if (continuation) {
					socket.write(`${continuation} NO [AUTHENTICATIONFAILED] refused ${line}\r\n`);
					continuation = null;
					continue;
				}
				const [tag, command = '', ...rest] = line.split(' ');
				const verb = command.toUpperCase();
				if (verb === 'CAPABILITY') socket.write(`* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=PLAIN\r\n${tag} OK done\r\n`);
				else if (verb === 'AUTHENTICATE' && rest.length < 2) {
					continuation = tag;
					socket.write('+ \r\n');
				} else if (verb === 'AUTHENTICATE' || verb === 'LOGIN') socket.write(`${tag} NO [AUTHENTICATIONFAILED] refused ${rest.join(' ')}\r\n`);
				else if (verb === 'LOGOUT') {
					socket.write(`* BYE\r\n${tag} OK bye\r\n`);
					socket.end();
				} else socket.write(`${tag} OK done\r\n`);
			}
		});
	};
	const server = options.pki ? tls.createServer({ key: options.pki.key, cert: options.pki.cert }, onSocket) : net.createServer(onSocket);
	await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
	return {
		host: '127.0.0.1',
		port: server.address().port,
		stats,
		reset() {
			stats.connections = 0;
			stats.commands.length = 0;
		},
		close() {
			for (const socket of sockets) socket.destroy();
			return new Promise((resolve) => server.close(() => resolve()));
		},
	};
}

module.exports = { startEchoImap };
