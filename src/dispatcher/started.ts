import type { Clock, Timer } from '../clock.ts';
import type { StoredMessage } from './store.ts';

/**
 * Where a message waits between its startDelivery and its send: started
 * messages already due wait for a delivery slot in the ReadyQueue; those
 * started ahead of their due time (to hide the store's round trip) wait in
 * EarlyStarts, whose timer moves each to the ready queue at its due time.
 * Both are holding places of the engine's ledger.
 */

/** A FIFO of started messages waiting for a delivery slot; shift() is O(1) (a head index, compacted when empty). */
export class ReadyQueue {
  #items: (StoredMessage | undefined)[] = [];
  #head = 0;

  get size(): number {
    return this.#items.length - this.#head;
  }

  push(message: StoredMessage): void {
    this.#items.push(message);
  }

  shift(): StoredMessage | undefined {
    if (this.#head === this.#items.length) return undefined;
    const message = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) this.clear();
    return message;
  }

  messages(): StoredMessage[] {
    return this.#items.slice(this.#head) as StoredMessage[];
  }

  /** Keeps only the messages `keep` accepts, in order; returns how many went. */
  retain(keep: (message: StoredMessage) => boolean): number {
    const before = this.size;
    this.#items = this.messages().filter(keep);
    this.#head = 0;
    return before - this.size;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

/**
 * Messages started ahead of their due time, in due order, each handed to
 * `due` when its time comes; the timer is armed only while `running()`
 * (a stopping engine hands them back instead).
 */
export class EarlyStarts {
  readonly #clock: Clock;
  readonly #due: (messages: StoredMessage[]) => void;
  readonly #running: () => boolean;
  #messages: StoredMessage[] = [];
  #timer: Timer | undefined;
  #timerAt = 0;

  constructor(clock: Clock, due: (messages: StoredMessage[]) => void, running: () => boolean) {
    this.#clock = clock;
    this.#due = due;
    this.#running = running;
  }

  get size(): number {
    return this.#messages.length;
  }

  messages(): readonly StoredMessage[] {
    return this.#messages;
  }

  /** Adds messages not yet due (starts run side by side, so batches may land out of order) and arms the timer. */
  add(messages: StoredMessage[]): void {
    if (messages.length === 0) return;
    const all = this.#messages;
    all.push(...messages);
    for (let i = 1; i < all.length; i++) {
      if (all[i - 1]!.dueAt > all[i]!.dueAt) {
        all.sort((a, b) => a.dueAt - b.dueAt);
        break;
      }
    }
    this.#arm();
  }

  /** Keeps only the messages `keep` accepts; returns how many went. */
  retain(keep: (message: StoredMessage) => boolean): number {
    const before = this.size;
    this.#messages = this.#messages.filter(keep);
    this.#arm();
    return before - this.size;
  }

  /** Forgets every message and the timer. */
  clear(): void {
    this.cancelTimer();
    this.#messages = [];
  }

  cancelTimer(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #arm(): void {
    const first = this.#messages[0];
    if (first === undefined || !this.#running()) return;
    if (this.#timer !== undefined) {
      if (this.#timerAt <= first.dueAt) return;
      this.#timer.cancel();
    }
    this.#timerAt = first.dueAt;
    this.#timer = this.#clock.setTimer(this.#onTimer, first.dueAt - this.#clock.now());
  }

  // a timer firing a hair early finds none due and re-arms
  #onTimer = (): void => {
    this.#timer = undefined;
    const now = this.#clock.now();
    let due = 0;
    while (due < this.#messages.length && this.#messages[due]!.dueAt <= now) due++;
    const dueNow = this.#messages.splice(0, due);
    this.#arm();
    this.#due(dueNow);
  };
}
