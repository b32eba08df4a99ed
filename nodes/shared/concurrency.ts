/**
 * Runs `work` for every index with at most `limit` in flight, in index order of start.
 * After `shouldStop()` turns true no new work starts; work already running finishes.
 */
export async function forEachWithLimit(
	indexes: number[],
	limit: number,
	work: (index: number) => Promise<void>,
	shouldStop: () => boolean = () => false,
): Promise<void> {
	let next = 0;
	const lanes = Array.from({ length: Math.max(1, Math.min(limit, indexes.length)) }, async () => {
		while (next < indexes.length && !shouldStop()) {
			const index = indexes[next++];
			await work(index);
		}
	});
	await Promise.all(lanes);
}
