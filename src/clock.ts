/**
 * Time is injected: the engine and delivery code read the time and set their
 * timers through a Clock, so their timing logic is tested with FakeClock in
 * milliseconds of real time. One exception, on purpose: the engine batches
 * outcome writes on real setImmediate/setTimeout (10 ms), which decides how
 * many writes there are, never when a message goes out.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Calls `fn` once, `delayMs` from now (negative delays fire at once). */
  setTimer(fn: () => void, delayMs: number): Timer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, delayMs) {
    const handle = setTimeout(fn, Math.max(0, delayMs));
    return { cancel: () => clearTimeout(handle) };
  },
};

interface PendingTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A manual clock for tests: time moves only when `advance` or `set` is called. */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: PendingTimer[] = [];

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
      const next = this.#timers
        .filter((t) => !t.cancelled && t.at <= target)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) break;
      this.#timers = this.#timers.filter((t) => t !== next);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
      // let promise chains started by the timer run before the next one fires
      await flushMicrotasks();
    }
    this.#now = Math.max(this.#now, target);
    this.#timers = this.#timers.filter((t) => !t.cancelled);
    await flushMicrotasks();
  }
}

/**
 * Lets work started by a timer finish before the next fires. The stores
 * answer on real event-loop turns (SQLite's group commit runs its
 * transaction in a setImmediate; the engine's outcome batch waits for one),
 * and the longest chain in the engine today, a start, its delivery, the
 * outcome's write and the next start, takes fewer than ten. A change that
 * lengthens that chain must raise this, or tests see work half done.
 */
async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
