import { UnavailableError } from '../../errors.ts';
import type { SqliteConnection } from './connection.ts';

/** What group commit needs of ./wal-sync.ts. */
export interface DurableSync {
  /** Resolves once everything committed before the call is on disk. */
  durable(): Promise<void>;
  /** Set once a sync failed: no write is accepted after it (./wal-sync.ts). */
  readonly failure?: Error | undefined;
  close(): Promise<void>;
}

/**
 * Group commit for a synchronous node:sqlite connection.
 *
 * Every write call made in the same tick of the event loop (all the HTTP
 * requests parsed in one poll phase, say) is queued and run on the next
 * `setImmediate` in ONE transaction, so they share one COMMIT and one fsync:
 * throughput grows with concurrency instead of being capped by fsync latency.
 * Each call runs under its own SAVEPOINT: one that throws (a constraint error)
 * is rolled back alone and rejects only its own promise. Promises resolve only
 * after the COMMIT.
 *
 * COMMIT itself does not wait for the disk (synchronous=NORMAL): durable calls
 * resolve after the next fdatasync of the WAL, which runs on libuv's thread
 * pool while the event loop goes on (./wal-sync.ts), so a resolved durable
 * write is on disk; relaxed calls and reads resolve at once. An in-memory
 * database has no WalSync: there is no disk to wait for.
 *
 * Reads run at once when no write is queued; otherwise they queue behind the
 * writes so a caller always reads its own earlier writes.
 */

/**
 * durable: the WAL is fsynced after the COMMIT before the call resolves.
 * relaxed: committed without waiting for the disk; the next durable call's
 * fsync or a checkpoint takes it to disk.
 */
export type Durability = 'durable' | 'relaxed';

interface Job {
  run: () => unknown;
  /** Writes run under a savepoint; reads do not need one. */
  write: boolean;
  durability: Durability;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export class GroupCommit {
  #connection: SqliteConnection;
  #queue: Job[] = [];
  #flushScheduled = false;
  #enqueued = 0;
  #closed = false;
  #afterCommit: () => void;
  #walSync: DurableSync | undefined;
  /** The WAL sync making the last durable group durable, while it runs. */
  #syncing: Promise<void> | undefined;

  /** `afterCommit` runs after every group's COMMIT (the checkpointer's nudge). */
  constructor(connection: SqliteConnection, options: { afterCommit?: () => void; walSync?: DurableSync } = {}) {
    this.#connection = connection;
    this.#afterCommit = options.afterCommit ?? (() => {});
    this.#walSync = options.walSync;
  }

  /** Runs `fn` in the next group transaction; resolves after its COMMIT. */
  write<T>(durability: Durability, fn: () => T): Promise<T> {
    return this.#enqueue(fn, true, durability);
  }

  /** How many calls were queued so far: unchanged since a call was queued, it is still the last in the queue or already run. */
  get enqueued(): number {
    return this.#enqueued;
  }

  read<T>(fn: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#queue.length > 0) return this.#enqueue(fn, false, 'relaxed');
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Runs `fn` alone, outside any group transaction, once every queued call is
   * committed (migrations manage their own transactions).
   */
  async exclusive<T>(fn: () => T): Promise<T> {
    if (this.#closed) throw closedError();
    this.#flush(true);
    return fn();
  }

  /** Commits what is queued, then refuses new calls; resolves once what they committed is on disk. */
  async close(): Promise<void> {
    this.#flush(true);
    this.#closed = true;
    await this.#walSync?.close();
  }

  #enqueue<T>(fn: () => T, write: boolean, durability: Durability): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    this.#enqueued++;
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ run: fn, write, durability, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /**
   * Commits the queue as one group. While the previous durable group's sync
   * runs, a queue holding a durable call waits for it (unless `now`): the
   * calls arriving meanwhile then share the next COMMIT and sync, as they did
   * when the sync held the event loop, instead of each small group paying
   * its own COMMIT.
   */
  #flush(now = false): void {
    this.#flushScheduled = false;
    const jobs = this.#queue;
    if (jobs.length === 0) return;
    const durable = jobs.some((job) => job.durability === 'durable');
    if (durable && this.#syncing && !now) return;
    this.#queue = [];
    const halted = this.#walSync?.failure;
    if (halted) {
      // a sync failed: nothing written from now on could be promised durable, so nothing is written
      const refused = new UnavailableError(`nothing was written: this store halted after a failed disk sync (${halted.message})`, { cause: halted });
      for (const job of jobs) {
        if (job.write) job.reject(refused);
        else settle(job, runRead(job));
      }
      return;
    }
    const connection = this.#connection;
    let outcomes: Outcome[];
    try {
      connection.statement('BEGIN IMMEDIATE').run();
      outcomes = jobs.map((job) => (job.write ? runIsolated(connection, job) : runRead(job)));
      connection.statement('COMMIT').run();
      this.#afterCommit();
    } catch (err) {
      // BEGIN, a failed rollback to a savepoint, or COMMIT failed: nothing of this group is on disk.
      if (connection.inTransaction) connection.statement('ROLLBACK').run();
      for (const job of jobs) job.reject(err);
      return;
    }
    const synced = durable ? this.#walSync?.durable() : undefined;
    if (synced) {
      const syncing = synced.then(() => {}, () => {}).then(() => {
        if (this.#syncing !== syncing) return;
        this.#syncing = undefined;
        this.#flush();
      });
      this.#syncing = syncing;
    }
    // the durable calls wait for the sync together: one reaction for the group, not a closure and a promise each
    let waiting: number[] | undefined;
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i]!;
      const outcome = outcomes[i]!;
      if (!outcome.ok) job.reject(outcome.error);
      else if (synced && job.durability === 'durable') (waiting ??= []).push(i);
      else job.resolve(outcome.value);
    }
    if (synced && waiting) {
      const durableJobs = waiting;
      synced.then(() => {
        for (const i of durableJobs) jobs[i]!.resolve((outcomes[i] as { value: unknown }).value);
      }, (err: unknown) => {
        for (const i of durableJobs) jobs[i]!.reject(err);
      });
    }
  }
}

function runIsolated(connection: SqliteConnection, job: Job): Outcome {
  connection.statement('SAVEPOINT call').run();
  try {
    const value = job.run();
    connection.statement('RELEASE call').run();
    return { ok: true, value };
  } catch (error) {
    // disk full or an I/O error: SQLite rolled the whole transaction back, so the whole group fails
    if (!connection.inTransaction) throw error;
    connection.statement('ROLLBACK TO call').run();
    connection.statement('RELEASE call').run();
    return { ok: false, error };
  }
}

function settle(job: Job, outcome: Outcome): void {
  if (outcome.ok) job.resolve(outcome.value);
  else job.reject(outcome.error);
}

function runRead(job: Job): Outcome {
  try {
    return { ok: true, value: job.run() };
  } catch (error) {
    return { ok: false, error };
  }
}

function closedError(): Error {
  return new Error('The SQLite store is closed; open a new one to use the database again.');
}
