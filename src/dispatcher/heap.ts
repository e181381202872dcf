/**
 * A binary min-heap of buffered messages ordered by (dueAt, id), and the
 * buffer built on it: the heap plus a Map id -> entry.
 *
 * Why a heap and not a timing wheel: the engine needs the single earliest
 * due time (to arm its one timer) and to pop everything due; both are
 * O(log n) here with no tick granularity, so delivery is exact to the ms.
 *
 * Removal and replacement are lazy: the Map says which entry is live, a heap
 * slot holding any other object is a tombstone skipped when it reaches the
 * top. Tombstones are compacted away when they outnumber live entries, so
 * memory stays bounded by the live count.
 */

export interface BufferEntry {
  readonly id: string;
  /** The message version this owner claimed; startDelivery refuses any other. */
  readonly version: number;
  readonly dueAt: number;
  /** Its message's delivery target: flow control parks entries per target. */
  readonly target: string;
  /** Its message's scheduled time and own deliver-by (null: its target's default, if any): nothing starts past the deliver-by. */
  readonly scheduledAt: number;
  readonly deliverBy: number | null;
}

/** The (dueAt, id) order of the heap, and of flow control's parked entries. */
export function dueBefore(a: { dueAt: number; id: string }, b: { dueAt: number; id: string }): boolean {
  return a.dueAt < b.dueAt || (a.dueAt === b.dueAt && a.id < b.id);
}

export class DueHeap {
  #items: BufferEntry[] = [];

  get size(): number {
    return this.#items.length;
  }

  peek(): BufferEntry | undefined {
    return this.#items[0];
  }

  push(entry: BufferEntry): void {
    const items = this.#items;
    let index = items.length;
    items.push(entry);
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!dueBefore(entry, items[parent]!)) break;
      items[index] = items[parent]!;
      index = parent;
    }
    items[index] = entry;
  }

  pop(): BufferEntry | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    this.#siftDown(0, last);
    return top;
  }

  /** Keeps only the entries `keep` accepts and rebuilds the heap in O(n). */
  filter(keep: (entry: BufferEntry) => boolean): void {
    this.#items = this.#items.filter(keep);
    for (let index = (this.#items.length >> 1) - 1; index >= 0; index--) this.#siftDown(index, this.#items[index]!);
  }

  #siftDown(start: number, entry: BufferEntry): void {
    const items = this.#items;
    const length = items.length;
    let index = start;
    for (;;) {
      let child = 2 * index + 1;
      if (child >= length) break;
      if (child + 1 < length && dueBefore(items[child + 1]!, items[child]!)) child++;
      if (!dueBefore(items[child]!, entry)) break;
      items[index] = items[child]!;
      index = child;
    }
    items[index] = entry;
  }
}

/**
 * The engine's in-memory buffer: the claimed messages due within the horizon,
 * earliest first. One live entry per message id.
 */
export class DueBuffer {
  #heap = new DueHeap();
  #live = new Map<string, BufferEntry>();

  /** Live entries (tombstones not counted). */
  get size(): number {
    return this.#live.size;
  }

  has(id: string): boolean {
    return this.#live.has(id);
  }

  get(id: string): BufferEntry | undefined {
    return this.#live.get(id);
  }

  /**
   * Adds or replaces the entry for `entry.id`. An entry of an older version
   * than the live one is ignored: a slow claim result must not undo an edit.
   */
  put(entry: BufferEntry): void {
    const current = this.#live.get(entry.id);
    if (current && current.version > entry.version) return;
    this.#live.set(entry.id, entry);
    this.#heap.push(entry);
    this.#compactIfSparse();
  }

  /** Drops the entry for `id`; true when there was one. */
  delete(id: string): boolean {
    const deleted = this.#live.delete(id);
    if (deleted) this.#compactIfSparse();
    return deleted;
  }

  /** The earliest live entry, or undefined when empty. */
  peek(): BufferEntry | undefined {
    this.#dropDeadTop();
    return this.#heap.peek();
  }

  /** Removes and returns up to `limit` live entries due at or before `now`, earliest first. */
  takeDue(now: number, limit: number): BufferEntry[] {
    const taken: BufferEntry[] = [];
    while (taken.length < limit) {
      const top = this.peek();
      if (top === undefined || top.dueAt > now) break;
      this.#heap.pop();
      this.#live.delete(top.id);
      taken.push(top);
    }
    return taken;
  }

  /** Ids of the live entries due at or before `now` (not removed). */
  idsDueBy(now: number): string[] {
    const ids: string[] = [];
    for (const entry of this.#live.values()) if (entry.dueAt <= now) ids.push(entry.id);
    return ids;
  }

  clear(): void {
    this.#heap = new DueHeap();
    this.#live.clear();
  }

  #dropDeadTop(): void {
    for (;;) {
      const top = this.#heap.peek();
      if (top === undefined || this.#live.get(top.id) === top) return;
      this.#heap.pop();
    }
  }

  #compactIfSparse(): void {
    // 2x plus a floor: compaction is O(n), so it must be rare relative to the pushes that cause it
    if (this.#heap.size > 2 * this.#live.size + 1024) {
      this.#heap.filter((entry) => this.#live.get(entry.id) === entry);
    }
  }
}
