/**
 * Time is injected: the engine and delivery code read the time and set every
 * timer through a Clock, so their timing logic is tested with FakeClock in
 * milliseconds of real time.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Calls `fn` once, `delayMs` from now (negative delays fire at once). */
  setTimer(fn: () => void, delayMs: number): Timer;
  /**
   * Calls `fn` once, after the I/O of this event-loop turn (setImmediate):
   * no time passes, but answers that arrive in the same turn are seen first.
   */
  defer(fn: () => void): Timer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, delayMs) {
    const handle = setTimeout(fn, Math.max(0, delayMs));
    return { cancel: () => clearTimeout(handle) };
  },
  defer(fn) {
    const handle = setImmediate(fn);
    return { cancel: () => clearImmediate(handle) };
  },
};

/**
 * Tells FakeClock whether work a timer started is still under way: resolves
 * true once the work it waited for finished, false if there was none.
 */
export type Settler = () => Promise<boolean>;

interface PendingTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A manual clock for tests: time moves only when `advance` or `set` is
 * called. After each timer it fires, it lets the work that timer started
 * settle before firing the next: deferred callbacks (real turns, no time
 * passes) and whatever the registered settlers wait for, such as the store
 * calls under way (a store answers on real event-loop turns: SQLite's group
 * commit runs its transaction in a setImmediate).
 */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: PendingTimer[] = [];
  #deferred = 0;
  #settlers: Settler[] = [];

  constructor(start = Date.UTC(2030, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(fn: () => void, delayMs: number): Timer {
    const timer: PendingTimer = { at: this.#now + Math.max(0, delayMs), seq: this.#seq++, fn, cancelled: false };
    this.#timers.push(timer);
    return { cancel: () => { timer.cancelled = true; } };
  }

  defer(fn: () => void): Timer {
    this.#deferred++;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      this.#deferred--;
    };
    const handle = setImmediate(() => {
      finish();
      fn();
    });
    return { cancel: () => { clearImmediate(handle); finish(); } };
  }

  /** Makes advance and set wait, after each timer, until `settler` reports nothing under way. */
  settleWith(settler: Settler): void {
    this.#settlers.push(settler);
  }

  /** Number of timers still waiting to fire. */
  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  /**
   * Moves time forward without firing anything: what a process paused
   * (SIGSTOP, a stalled VM) finds when it resumes. The next advance or set
   * fires what came due meanwhile, in due order, as Node does after a pause.
   */
  jump(ms: number): void {
    this.#now += ms;
  }

  /** Moves time forward, firing every timer that comes due on the way, in order. */
  async advance(ms: number): Promise<void> {
    await this.set(this.#now + ms);
  }

  async set(target: number): Promise<void> {
    for (;;) {
      await this.settle();
      const next = this.#timers
        .filter((t) => !t.cancelled && t.at <= target)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) break;
      this.#timers = this.#timers.filter((t) => t !== next);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
    }
    this.#now = Math.max(this.#now, target);
    this.#timers = this.#timers.filter((t) => !t.cancelled);
  }

  /**
   * Returns once nothing started so far is under way: one real turn for the
   * promise chains of the last callback, then again as long as a deferred
   * callback is pending or a settler had something to wait for.
   */
  async settle(): Promise<void> {
    for (;;) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      const waited = await Promise.all(this.#settlers.map((settler) => settler()));
      if (this.#deferred === 0 && !waited.includes(true)) return;
    }
  }
}
