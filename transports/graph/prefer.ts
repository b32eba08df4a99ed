/**
 * A Prefer header for one call. A call's own Prefer replaces the client's default one, so the
 * immutable-id preference (ids that survive moves) is always repeated here.
 */
export function preferHeader(...preferences: string[]): string {
	return ['IdType="ImmutableId"', ...preferences].join(', ');
}
