import type { Clock, Timer } from '../clock.ts';

/**
 * The engine's last stage: outcomes of finished deliveries wait here until
 * they are written to the store, in batches. A batch goes at once when it is
 * full or the engine says nothing else is on its way (`urgent`), else after
 * `delayMs`, taking every answer that arrived meanwhile; one batch is written
 * at a time, and the one in progress schedules the next.
 *
 * It owns the outcomes between the answer and the store: `pending` and
 * `writing` are its two holding places in the engine's ledger.
 */
export interface OutcomeWriterOptions<T> {
  clock: Clock;
  /** Outcomes per batch that make it go at once. */
  batchSize: number;
  /** How long a batch that is not full waits for company. */
  delayMs: number;
  /** The store call that records one batch. */
  write(batch: T[]): Promise<void>;
  /** True when no more answers are on their way (or the engine is stopping): write without waiting. */
  urgent(): boolean;
  /** After a batch was written. */
  written(batch: T[]): void;
  /** A write failed: the batch is pending again, at the front; the engine decides when to try again (`schedule`). */
  failed(err: unknown, batch: T[]): void;
}

export class OutcomeWriter<T> {
  readonly #options: OutcomeWriterOptions<T>;
  #pending: T[] = [];
  #writing: T[] = [];
  #write: Promise<void> | undefined;
  #timer: Timer | undefined;
  #soon = false;

  constructor(options: OutcomeWriterOptions<T>) {
    this.#options = options;
  }

  get pending(): readonly T[] {
    return this.#pending;
  }

  get writing(): readonly T[] {
    return this.#writing;
  }

  /** Takes one outcome and schedules its batch. */
  add(outcome: T): void {
    this.#pending.push(outcome);
    this.schedule();
  }

  schedule(): void {
    if (this.#write) return; // the write in progress schedules the next one
    if (this.#pending.length >= this.#options.batchSize || this.#options.urgent()) {
      if (this.#soon) return;
      this.#timer?.cancel();
      this.#soon = true;
      // after this turn's I/O: answers that arrive in the same turn join the batch
      this.#timer = this.#options.clock.defer(this.#flush);
    } else {
      this.#timer ??= this.#options.clock.setTimer(this.#flush, this.#options.delayMs);
    }
  }

  /** Writes what is pending now, in this turn's group commit (alongside a startDelivery). */
  flushNow(): void {
    if (!this.#write && this.#pending.length > 0) void this.#flush();
  }

  /** Writes everything pending and waits for it (shutdown): a few rounds, as a write can fail. */
  async drain(rounds = 3): Promise<void> {
    for (let round = 0; round < rounds && (this.#pending.length > 0 || this.#write); round++) {
      if (this.#write) await this.#write.catch(() => {});
      else await this.#flush();
    }
  }

  /** Cancels the wait for the next batch; pending outcomes stay. */
  cancelTimer(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#soon = false;
  }

  /** Forgets every pending outcome (their claims are handed back or the store halted). */
  discardPending(): void {
    this.#pending = [];
  }

  #flush = async (): Promise<void> => {
    this.cancelTimer();
    if (this.#write || this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#writing = batch;
    this.#write = this.#options.write(batch);
    try {
      await this.#write;
    } catch (err) {
      this.#pending = batch.concat(this.#pending);
      this.#writing = [];
      this.#write = undefined;
      this.#options.failed(err, batch);
      return;
    }
    this.#writing = [];
    this.#write = undefined;
    if (this.#pending.length > 0) this.schedule();
    this.#options.written(batch);
  };
}
