/** The HTTP status and Graph error code a failed call carries, whichever layer threw it. */
export function statusOf(error: unknown): number | undefined {
	const e = error as { statusCode?: unknown; status?: unknown; responseCode?: unknown } | undefined;
	const status = Number(e?.statusCode ?? e?.status ?? e?.responseCode);
	return Number.isInteger(status) && status > 0 ? status : undefined;
}

export function graphCodeOf(error: unknown): string | undefined {
	const e = error as { graphCode?: unknown; body?: { error?: { code?: unknown } } } | undefined;
	const code = e?.graphCode ?? e?.body?.error?.code;
	return typeof code === 'string' ? code : undefined;
}
