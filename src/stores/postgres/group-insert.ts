/**
 * Group commit for inserts. Every `insert` call made in the same tick of the
 * event loop (the HTTP requests parsed in one poll phase, say) is queued and
 * sent on the next `setImmediate` as ONE multi-row INSERT: one round trip, one
 * commit, one WAL flush for all of them, instead of one each.
 *
 * Each call stays all-or-nothing on its own: if the merged statement fails
 * (one call's duplicate id, say), nothing of it was written, and every call of
 * the group is run again alone, so only the faulty one fails.
 */

/**
 * Rows per merged statement: bounds its size and the rerun that a failed group
 * costs. A burst of single-message requests in one tick stays far below it;
 * calls this large are batches already and go out alone.
 */
const MAX_GROUP_ROWS = 1000;

/**
 * Inserts the rows in one statement (all or nothing), skipping rows whose
 * unique key exists; resolves with the ids actually inserted.
 */
export type InsertStatement<Row> = (rows: Row[]) => Promise<Set<string>>;

interface PendingCall<Row> {
  rows: Row[];
  resolve: (inserted: Set<string>) => void;
  reject: (err: unknown) => void;
}

export class GroupInsert<Row> {
  #execute: InsertStatement<Row>;
  #queue: PendingCall<Row>[] = [];
  #flushScheduled = false;
  #running = new Set<Promise<void>>();
  #enabled: boolean;

  constructor(execute: InsertStatement<Row>, options: { enabled: boolean } = { enabled: true }) {
    this.#execute = execute;
    this.#enabled = options.enabled;
  }

  /** Resolves with the ids inserted by this call's group (a superset of this call's inserted ids). */
  insert(rows: Row[]): Promise<Set<string>> {
    if (!this.#enabled || rows.length >= MAX_GROUP_ROWS) return this.#execute(rows);
    return new Promise((resolve, reject) => {
      this.#queue.push({ rows, resolve, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /** Sends what is queued now and waits until every group has finished. */
  async drain(): Promise<void> {
    this.#flush();
    await Promise.all(this.#running);
  }

  #flush(): void {
    this.#flushScheduled = false;
    const calls = this.#queue;
    this.#queue = [];
    for (const group of splitByRows(calls)) {
      const running = this.#run(group);
      this.#running.add(running);
      void running.finally(() => this.#running.delete(running));
    }
  }

  async #run(group: PendingCall<Row>[]): Promise<void> {
    if (group.length === 1) {
      const call = group[0]!;
      await this.#execute(call.rows).then(call.resolve, call.reject);
      return;
    }
    try {
      const inserted = await this.#execute(group.flatMap((call) => call.rows));
      for (const call of group) call.resolve(inserted);
    } catch {
      // Nothing of the group was written: run each call alone so only the faulty one fails.
      await Promise.all(group.map((call) => this.#execute(call.rows).then(call.resolve, call.reject)));
    }
  }
}

function splitByRows<Row>(calls: PendingCall<Row>[]): PendingCall<Row>[][] {
  const groups: PendingCall<Row>[][] = [];
  let current: PendingCall<Row>[] = [];
  let rows = 0;
  for (const call of calls) {
    if (current.length > 0 && rows + call.rows.length > MAX_GROUP_ROWS) {
      groups.push(current);
      current = [];
      rows = 0;
    }
    current.push(call);
    rows += call.rows.length;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}
