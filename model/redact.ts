/** Shows an identifier the way support staff need it, never the whole value: `****abcd`. */
export function maskIdentifier(value: string): string {
	if (!value) return '';
	return `****${value.slice(-4)}`;
}

/** Shortest secret that is redacted; shorter values would blank out ordinary words. */
const MIN_SECRET_LENGTH = 4;
/** Encoded forms need this many bytes of secret, so they cannot match by chance. */
const MIN_ENCODED_BYTES = 6;

/**
 * Every way a secret is seen in text: as is, JSON- and URL-escaped, hex, and its base64 /
 * base64url forms, alone and inside a larger blob. A secret inside a larger base64 blob (the XOAUTH2 SASL string
 * `user=…\x01auth=Bearer <token>\x01\x01`, a Basic header) is encoded differently
 * depending on its offset modulo 3, so for each of the three alignments the part of the
 * encoding made only of the secret's own bytes is redacted; at most two characters at each
 * edge (under two bytes) stay visible.
 */
export function secretForms(secret: string): string[] {
	const forms = new Set([secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)]);
	const bytes = Buffer.from(secret, 'utf8');
	forms.add(bytes.toString('hex'));
	forms.add(bytes.toString('hex').toUpperCase());
	forms.add(bytes.toString('base64'));
	forms.add(bytes.toString('base64url'));
	for (let skip = 0; skip < 3; skip++) {
		const usable = Math.floor((bytes.length - skip) / 3) * 3;
		if (usable < MIN_ENCODED_BYTES) continue;
		const core = bytes.subarray(skip, skip + usable);
		forms.add(core.toString('base64'));
		forms.add(core.toString('base64url'));
	}
	return [...forms].filter((form) => form.length >= MIN_SECRET_LENGTH);
}

/**
 * Adds a secret to the list of one execution. The list is live: redaction reads it when an
 * error is described, so token providers add each token they hand out and an error raised
 * after a refresh is redacted of the token that refresh returned.
 */
export function addSecret(secrets: string[], value: string | undefined): void {
	if (value && value.length >= MIN_SECRET_LENGTH && !secrets.includes(value)) secrets.push(value);
}

/**
 * A leading piece this long of a secret (in any form) is redacted with however much of the
 * secret follows it: a server reply cut to length (the SMTP transport keeps 500 characters)
 * may stop in the middle of an echoed token.
 */
const PARTIAL_ANCHOR = 16;

/** Removes every known secret, in every encoding, from a text that may end up in an error, log or output. */
export function redactSecrets(text: string, secrets: Iterable<string | undefined>): string {
	const forms = new Set<string>();
	for (const secret of secrets) if (secret && secret.length >= MIN_SECRET_LENGTH) for (const form of secretForms(secret)) forms.add(form);
	// Spans of every form are found in the original text and merged: tokens of one issuer
	// share their first characters, so one token's partial match must not hide another's.
	const spans: Array<[number, number]> = [];
	for (const form of forms) spans.push(...matches(text, form));
	if (spans.length === 0) return text;
	spans.sort((a, b) => a[0] - b[0]);
	let result = '';
	let from = 0;
	let [start, end] = spans[0];
	for (const [at, to] of spans.slice(1)) {
		if (at <= end) {
			end = Math.max(end, to);
			continue;
		}
		result += `${text.slice(from, start)}****`;
		from = end;
		[start, end] = [at, to];
	}
	return `${result}${text.slice(from, start)}****${text.slice(end)}`;
}

/** Where a form occurs whole, or from its first PARTIAL_ANCHOR characters on as far as it matches. */
function matches(text: string, form: string): Array<[number, number]> {
	const anchor = form.slice(0, PARTIAL_ANCHOR);
	const found: Array<[number, number]> = [];
	for (let at = text.indexOf(anchor); at >= 0; at = text.indexOf(anchor, at + 1)) {
		let end = at + anchor.length;
		while (end - at < form.length && text[end] === form[end - at]) end++;
		found.push([at, end]);
	}
	return found;
}

/** Redacts an error in place (message, hint, stack), keeping its class and code. */
export function redactError<T>(error: T, secrets: Iterable<string | undefined>): T {
	if (!(error instanceof Error)) return error;
	const list = [...secrets];
	error.message = redactSecrets(error.message, list);
	if (error.stack) error.stack = redactSecrets(error.stack, list);
	const withHint = error as Error & { hint?: unknown; description?: unknown };
	if (typeof withHint.hint === 'string') withHint.hint = redactSecrets(withHint.hint, list);
	if (typeof withHint.description === 'string') withHint.description = redactSecrets(withHint.description, list);
	return error;
}
