/**
 * A map bounded in size and in idle time: the least recently used entry goes first when
 * full, and entries unused for `idleMs` go at the next access or on an unref'd timer, so a
 * quiet process does not keep them either. `onEvict` lets an entry drop what it holds.
 */
export interface IdleLruOptions<V> {
	maxEntries: number;
	idleMs: number;
	/** Clock, injectable for tests. */
	now?: () => number;
	onEvict?: (value: V) => void;
}

export class IdleLruCache<V> {
	// Map order is recency order: a touched entry is re-inserted at the end.
	private readonly entries = new Map<string, { value: V; usedAt: number }>();
	private timer?: NodeJS.Timeout;

	constructor(private readonly options: IdleLruOptions<V>) {}

	private now(): number {
		return (this.options.now ?? Date.now)();
	}

	get size(): number {
		this.sweep();
		return this.entries.size;
	}

	get(key: string): V | undefined {
		this.sweep();
		const entry = this.entries.get(key);
		if (!entry) return undefined;
		this.entries.delete(key);
		entry.usedAt = this.now();
		this.entries.set(key, entry);
		return entry.value;
	}

	set(key: string, value: V): void {
		this.sweep();
		const previous = this.entries.get(key);
		this.entries.delete(key);
		if (previous && previous.value !== value) this.options.onEvict?.(previous.value);
		this.entries.set(key, { value, usedAt: this.now() });
		while (this.entries.size > this.options.maxEntries) {
			const [oldestKey, oldest] = this.entries.entries().next().value!;
			this.evict(oldestKey, oldest.value);
		}
		this.schedule();
	}

	clear(): void {
		for (const [key, entry] of [...this.entries]) this.evict(key, entry.value);
	}

	private evict(key: string, value: V): void {
		this.entries.delete(key);
		this.options.onEvict?.(value);
	}

	/** Drops idle entries; the oldest come first, so the walk stops at the first fresh one. */
	private sweep(): void {
		const cutoff = this.now() - this.options.idleMs;
		for (const [key, entry] of this.entries) {
			if (entry.usedAt > cutoff) break;
			this.evict(key, entry.value);
		}
		if (this.entries.size === 0 && this.timer) {
			clearTimeout(this.timer);
			this.timer = undefined;
		}
	}

	private schedule(): void {
		if (this.timer) return;
		this.timer = setTimeout(() => {
			this.timer = undefined;
			this.sweep();
			if (this.entries.size) this.schedule();
		}, this.options.idleMs);
		this.timer.unref();
	}
}
