/**
 * Looks for secret values in text that leaves the nodes, in every form a leak takes: as is,
 * JSON-escaped, hex, base64 and base64url (alone, or inside a larger base64 blob such as an
 * XOAUTH2 SASL string, at each of the three byte alignments), and any 24-character piece
 * (a reply cut to length still leaks). Written independently of model/redact.ts, so
 * the audit does not check the redaction with itself.
 */
const PIECE = 24;

function base64Cores(value: string): string[] {
	const bytes = Buffer.from(value, 'utf8');
	const cores: string[] = [];
	for (let skip = 0; skip < 3; skip++) {
		const usable = Math.floor((bytes.length - skip) / 3) * 3;
		if (usable < 12) continue;
		const core = bytes.subarray(skip, skip + usable);
		cores.push(core.toString('base64'), core.toString('base64url'));
	}
	return cores;
}

/** The part of a value that is secret: a JWT's header is the same for every token of an issuer. */
function secretPart(value: string): string {
	const parts = value.split('.');
	return parts.length === 3 && value.startsWith('eyJ') ? `${parts[1]}.${parts[2]}` : value;
}

export function leakForms(value: string): string[] {
	const forms = new Set<string>([value, JSON.stringify(value).slice(1, -1)]);
	const bytes = Buffer.from(value, 'utf8');
	forms.add(bytes.toString('hex'));
	forms.add(bytes.toString('base64'));
	forms.add(bytes.toString('base64url'));
	for (const core of base64Cores(value)) forms.add(core);
	const secret = secretPart(value);
	for (let at = 0; at + PIECE <= secret.length; at += PIECE) {
		const piece = secret.slice(at, at + PIECE);
		// PEM line breaks and base64 padding are not secret.
		if (/^[\s-]*$/.test(piece) || piece.includes('-----')) continue;
		forms.add(piece);
		forms.add(JSON.stringify(piece).slice(1, -1));
	}
	return [...forms].filter((form) => form.length >= 8);
}

export interface CanaryHit {
	canary: string;
	form: string;
	where: string;
}

/** Every occurrence of any form of any canary in the named texts. */
export function findCanaries(canaries: Record<string, string>, texts: Record<string, string>): CanaryHit[] {
	const hits: CanaryHit[] = [];
	for (const [canary, value] of Object.entries(canaries)) {
		const forms = leakForms(value);
		for (const [where, text] of Object.entries(texts)) {
			for (const form of forms) {
				for (let at = text.indexOf(form); at >= 0; at = text.indexOf(form, at + 1)) hits.push({ canary, form: form.slice(0, 12), where });
			}
		}
	}
	return hits;
}
