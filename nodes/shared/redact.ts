/** Shows an identifier the way support staff need it, never the whole value: `****abcd`. */
export function maskIdentifier(value: string): string {
	if (!value) return '';
	return `****${value.slice(-4)}`;
}

/** Removes every known secret from a text that may end up in an error, log or output. */
export function redactSecrets(text: string, secrets: Array<string | undefined>): string {
	let result = text;
	for (const secret of secrets) {
		if (secret && secret.length >= 4) result = result.split(secret).join('****');
	}
	return result;
}
