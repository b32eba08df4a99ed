'use strict';
// A real SMTP server for tests and benchmarks, built on nodemailer's smtp-server.
// It records exactly what arrived (envelope, raw bytes, who authenticated, whether TLS
// was on) so tests assert on what the peer received, not on what our code says it sent.
const { SMTPServer } = require('smtp-server');

/**
 * @param {object} options
 * @param {{ca: string, cert: string, key: string}} options.pki
 * @param {Record<string,string>} [options.users] user -> password for PLAIN/LOGIN
 * @param {boolean} [options.implicitTls] TLS from the first byte (port-465 style)
 * @param {boolean} [options.allowInsecureAuth] allow AUTH before STARTTLS
 * @param {boolean} [options.authOptional] accept mail without AUTH
 * @param {(token: string, user: string) => Promise<boolean|{ok: boolean, reason?: string}>} [options.validateBearer]
 *   XOAUTH2 validator (used with the fake identity platform)
 * @param {boolean} [options.keepRaw=true] keep raw messages (benchmarks turn it off)
 * @param {(message: {envelope: {from: string, to: string[]}, user: string, raw: Buffer}) => Promise<void>|void} [options.onMessage]
 *   called with each accepted message before the server answers 250 (e.g. to deliver it into Dovecot)
 * @param {number} [options.port=0]
 * Settable after start on the returned object, to mirror Microsoft 365 refusals:
 *   authRefusal = '5.7.139 Authentication unsuccessful, basic authentication is disabled'
 *   senderRefusal = { code: 550, message: '5.7.60 SMTP; Client does not have permissions to send as this sender' }
 *   refuseRecipient(address, { code, message }) refuses that RCPT TO every time
 * Scripted faults (fault injection), see inject() below.
 */
async function startSmtpPeer(options) {
	const users = options.users ?? {};
	const received = [];
	const behaviour = { authRefusal: null, senderRefusal: null, recipientRefusals: new Map() };
	const stats = { connections: 0, authentications: 0, authFailures: 0, messages: 0, faults: 0 };
	/** @type {Array<{step: string, reply: 'drop' | {code: number, message: string}, skip: number, times: number}>} */
	const faults = [];
	/** The first scripted fault for this step that is due, or null (then the peer answers normally). */
	function takeFault(step) {
		for (const fault of faults) {
			if (fault.step !== step || fault.times <= 0) continue;
			if (fault.skip > 0) {
				fault.skip--;
				return null;
			}
			fault.times--;
			stats.faults++;
			return fault;
		}
		return null;
	}
	function connectionOf(session) {
		for (const connection of server.connections) if (connection.session === session) return connection;
		return null;
	}
	function replyError(reply) {
		const error = new Error(reply.message);
		error.responseCode = reply.code;
		return error;
	}
	/** Applies a fault inside an smtp-server hook: a reply through the callback, or a dropped socket. */
	function applyFault(fault, session, callback) {
		if (fault.reply === 'drop') return void connectionOf(session)?._socket.destroy();
		callback(replyError(fault.reply));
	}
	const server = new SMTPServer({
		secure: Boolean(options.implicitTls),
		key: options.pki.key,
		cert: options.pki.cert,
		authMethods: ['PLAIN', 'LOGIN', 'XOAUTH2'],
		authOptional: Boolean(options.authOptional),
		allowInsecureAuth: Boolean(options.allowInsecureAuth),
		disabledCommands: options.disableStartTls ? ['STARTTLS'] : [],
		logger: false,
		size: options.maxSize ?? 50 * 1024 * 1024,
		onConnect(session, callback) {
			stats.connections++;
			// smtp-server has no hook for the DATA command itself (before 354), so this one
			// connection's handler is wrapped.
			const connection = connectionOf(session);
			if (connection) {
				const handleData = connection.handler_DATA;
				connection.handler_DATA = function (command, done) {
					const fault = takeFault('data');
					if (!fault) return handleData.call(this, command, done);
					if (fault.reply === 'drop') this._socket.destroy();
					else this.send(fault.reply.code, fault.reply.message);
					done();
				};
			}
			const fault = takeFault('greeting');
			if (fault) return applyFault(fault, session, callback);
			callback();
		},
		onRcptTo(address, session, callback) {
			const refusal = behaviour.recipientRefusals.get(address.address.toLowerCase());
			if (refusal) return callback(replyError(refusal));
			const fault = takeFault('rcpt');
			if (fault) return applyFault(fault, session, callback);
			callback();
		},
		onMailFrom(address, session, callback) {
			const fault = takeFault('mail');
			if (fault) return applyFault(fault, session, callback);
			if (behaviour.senderRefusal) {
				const error = new Error(behaviour.senderRefusal.message);
				error.responseCode = behaviour.senderRefusal.code;
				return callback(error);
			}
			callback();
		},
		onAuth(auth, session, callback) {
			stats.authentications++;
			const fault = takeFault('auth');
			if (fault) {
				stats.authFailures++;
				return applyFault(fault, session, callback);
			}
			if (behaviour.authRefusal) {
				stats.authFailures++;
				const error = new Error(behaviour.authRefusal);
				error.responseCode = 535;
				return callback(error);
			}
			if (auth.method === 'XOAUTH2') {
				const validate = options.validateBearer;
				if (!validate) return fail();
				Promise.resolve(validate(auth.accessToken, auth.username)).then(
					(verdict) => {
						const ok = typeof verdict === 'object' ? verdict.ok : verdict;
						if (ok) return callback(null, { user: auth.username });
						stats.authFailures++;
						callback(null, { data: { status: '401', schemes: 'bearer', scope: 'https://outlook.office.com/SMTP.Send' } });
					},
					(error) => callback(error),
				);
				return;
			}
			if (Object.prototype.hasOwnProperty.call(users, auth.username) && users[auth.username] === auth.password) {
				return callback(null, { user: auth.username });
			}
			return fail();
			function fail() {
				stats.authFailures++;
				const error = new Error('5.7.3 Authentication unsuccessful');
				error.responseCode = 535;
				callback(error);
			}
		},
		onData(stream, session, callback) {
			const chunks = [];
			stream.on('data', (chunk) => {
				if (options.keepRaw !== false) chunks.push(chunk);
			});
			stream.on('end', () => {
				if (stream.sizeExceeded) {
					const error = new Error('5.3.4 Message size exceeds fixed maximum message size');
					error.responseCode = 552;
					return callback(error);
				}
				const fault = takeFault('end-of-data');
				if (fault && fault.reply !== 'drop') return callback(replyError(fault.reply));
				stats.messages++;
				const message = {
					envelope: {
						from: session.envelope.mailFrom && session.envelope.mailFrom.address,
						to: session.envelope.rcptTo.map((r) => r.address),
					},
					user: session.user,
					secure: Boolean(session.secure),
					raw: options.keepRaw === false ? null : Buffer.concat(chunks),
				};
				received.push(message);
				// The ambiguous case: the server holds the message, the client never hears so.
				if (fault) return void connectionOf(session)?._socket.destroy();
				const queued = () => callback(null, 'Message queued as ' + stats.messages);
				if (!options.onMessage) return queued();
				// delivered (e.g. into Dovecot) before the 250, as a real server's local delivery
				Promise.resolve(options.onMessage(message)).then(queued, (error) => callback(error));
			});
		},
	});
	server.on('error', () => {});
	await new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(options.port ?? 0, '127.0.0.1', resolve);
	});
	const { port } = server.server.address();
	return {
		host: '127.0.0.1',
		port,
		received,
		stats,
		set authRefusal(value) {
			behaviour.authRefusal = value;
		},
		set senderRefusal(value) {
			behaviour.senderRefusal = value;
		},
		/** Refuses RCPT TO for this address with that reply, every time. */
		refuseRecipient(address, reply) {
			behaviour.recipientRefusals.set(address.toLowerCase(), reply);
		},
		/**
		 * Scripts a fault: at `step` ('greeting' | 'auth' | 'mail' | 'rcpt' | 'data' |
		 * 'end-of-data'), after letting `skip` such steps pass, answer `reply` ({ code, message })
		 * or 'drop' the connection, `times` times; then the peer answers normally again.
		 * 'drop' at 'end-of-data' keeps the message (it was received) but never confirms it.
		 */
		inject(step, reply, { skip = 0, times = 1 } = {}) {
			if (!['greeting', 'auth', 'mail', 'rcpt', 'data', 'end-of-data'].includes(step)) throw new Error(`unknown SMTP step ${step}`);
			faults.push({ step, reply, skip, times });
		},
		/** Messages held per Subject header, to count duplicates. */
		subjects() {
			const counts = new Map();
			for (const message of received) {
				const subject = /^Subject: (.*)$/im.exec(message.raw ? message.raw.toString('utf8').split('\r\n\r\n')[0] : '')?.[1] ?? '';
				counts.set(subject, (counts.get(subject) ?? 0) + 1);
			}
			return counts;
		},
		reset() {
			behaviour.authRefusal = null;
			behaviour.senderRefusal = null;
			behaviour.recipientRefusals.clear();
			faults.length = 0;
			received.length = 0;
			for (const key of Object.keys(stats)) stats[key] = 0;
		},
		close: () => new Promise((resolve) => server.close(() => resolve())),
	};
}

module.exports = { startSmtpPeer };
