/**
 * A failure a user can act on: a one-line message, a stable code and a hint that names the
 * fix. Every layer (auth, transports, model) throws these; nodes turn them into
 * NodeOperationErrors or continueOnFail items without knowing where they came from.
 */
export class ActionableError extends Error {
	constructor(
		message: string,
		readonly code: string,
		readonly hint: string,
	) {
		super(message);
		this.name = 'ActionableError';
	}
}
