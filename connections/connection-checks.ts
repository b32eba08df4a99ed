import { ActionableError } from '../model/actionable-error';
import { outcomeOfError, withPropagationRetry, type Check, type CheckOutcome, type DiagnoseOptions, type Protocol } from '../diagnostics/checks';
import { withRelease } from '../diagnostics/login-context';
import { reachCheck } from '../diagnostics/network';
import { roundTripCheck, type RoundTripParams } from '../diagnostics/round-trip';
import { tlsCheck, type TlsEndpoint } from '../diagnostics/tls-probe';
import type { MailReader, MailSender } from '../transports/contracts';
import type { ConnectionKind } from './connection';

/** The protocol asked for, when the kind serves it; else an error naming those it does. */
export function servedProtocol(kind: Pick<ConnectionKind, 'displayName' | 'protocols'>, options: DiagnoseOptions): Protocol {
	const protocol = options.protocol || kind.protocols[0];
	if (kind.protocols.includes(protocol)) return protocol;
	throw new ActionableError(
		`${kind.displayName} cannot be tested over ${protocol.toUpperCase()}`,
		'PROTOCOL_NOT_SERVED',
		`Choose one of the protocols this credential serves: ${kind.protocols.map((p) => p.toUpperCase()).join(', ')}`,
	);
}

/** A host a connection talks to, as the reach and TLS checks need it. */
export type Endpoint = Pick<TlsEndpoint, 'host' | 'port' | 'mode' | 'role' | 'ca' | 'rejectUnauthorized'>;

export const targetOf = (endpoint: Pick<Endpoint, 'host' | 'port'>) => `${endpoint.host}:${endpoint.port}`;

/** The identity platform's host and port from its https URL. */
export function identityEndpoint(authorityHost: string, ca?: string): Endpoint {
	const url = new URL(authorityHost);
	return { host: url.hostname, port: Number(url.port || 443), mode: 'tls', role: 'identity platform', ca, rejectUnauthorized: true };
}

export const reachOf = (endpoint: Endpoint): Check => reachCheck(endpoint.host, endpoint.port, { role: endpoint.role });

/** TLS of an endpoint (it needs that endpoint's reach); no encryption is a warning. */
export const tlsOf = (endpoint: Endpoint): Check =>
	tlsCheck({ host: endpoint.host, port: endpoint.port, mode: endpoint.mode, role: endpoint.role, ca: endpoint.ca || undefined, rejectUnauthorized: endpoint.rejectUnauthorized });

/** `needs` of a check talking to the endpoint: its TLS check (a warning for no encryption counts as passed). */
export const overEndpoint = (endpoint: Endpoint) => [`tls:${targetOf(endpoint)}`];

/** Repeats the propagation-prone refusals when the caller asked for it. */
export const retried = (check: Check, options: DiagnoseOptions): Check => withPropagationRetry(check, options.propagationRetry);

/** A check that runs only when `reason()` says nothing against it; else skipped with that reason. */
export function onlyIf(check: Check, reason: () => string | undefined): Check {
	return {
		...check,
		async run(signal) {
			const why = reason();
			if (why) return { status: 'skipped', detail: `skipped: ${why}` };
			return await check.run(signal);
		},
	};
}

/** Calls `seen` with the check's outcome (thrown errors as the failure they become). */
export function observed(check: Check, seen: (outcome: CheckOutcome) => void): Check {
	return {
		...check,
		async run(signal) {
			const outcome = await check.run(signal).catch(outcomeOfError);
			seen(outcome);
			return outcome;
		},
	};
}

/** A check that says why a step is not offered (e.g. the round trip of a kind that cannot read). */
export const notOffered = (step: Check['step'], target: string, why: string): Check => ({
	step,
	target,
	run: async () => ({ status: 'skipped', detail: `skipped: ${why}` }),
});

/** The round trip over a sender (and reader) made for it and closed after, also when the run gives up on it. */
export function roundTripOver(open: () => { sender: MailSender; reader?: MailReader }, params: Omit<RoundTripParams, 'sender' | 'reader'>, needs: string[]): Check {
	const shape = roundTripCheck({ ...params, sender: undefined as unknown as MailSender });
	return {
		...shape,
		needs,
		async run(signal) {
			const { sender, reader } = open();
			const release = async () => {
				await sender.close().catch(() => {});
				await reader?.close().catch(() => {});
			};
			return await withRelease(signal, release, () => roundTripCheck({ ...params, sender, reader }).run(signal));
		},
	};
}
