/** One page of a Graph collection. */
export interface GraphPage<T> {
	value?: T[];
	'@odata.nextLink'?: string;
	'@odata.deltaLink'?: string;
}

/** Query options as Graph writes them: `$` names unescaped, values percent-encoded. */
export function withQuery(path: string, query: Record<string, string | number | undefined>): string {
	const parts = Object.entries(query)
		.filter(([, value]) => value !== undefined && value !== '')
		.map(([key, value]) => `${key}=${encodeURIComponent(String(value))}`);
	return parts.length ? `${path}?${parts.join('&')}` : path;
}
