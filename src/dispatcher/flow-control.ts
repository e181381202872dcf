import type { Clock, Timer } from '../clock.ts';

/**
 * Flow control per delivery target: how fast and how many at once the
 * engine may start deliveries to one main server. It sits between the
 * due-time heap and the starter: a due entry whose target may take one more
 * is admitted at once; otherwise it is parked here, in due order, and
 * handed back to the starter when the target has room again: its token
 * bucket refilled, an answer freed an in-flight place, or its Retry-After
 * pause ran out. Entries of other targets never queue behind a parked one,
 * so a slow, down or rate-limited main server delays only its own messages.
 *
 * "In flight" counts admitted deliveries until their attempt is answered (or
 * they leave the pipeline unsent): the starter's store round trip included,
 * so the cap holds however many are between start and send.
 */

export interface TargetLimits {
  /** Deliveries started per second, on average (a token bucket). Unset: no rate limit. */
  ratePerSecond?: number;
  /** How many may start at once after a quiet spell; default one second's worth, at least 1. */
  burst?: number;
  /** Deliveries admitted and not yet answered, at most. Unset: only the engine's concurrency bounds them. */
  maxInFlight?: number;
}

/**
 * One dispatcher's share of a target's limits when `dispatchers` run on the
 * store: each delivers about as many of the target's messages as the others
 * (they claim in turn), so a pool keeps near the target's rate and cap as a
 * whole. Uneven claims make the pool slower than the limit, never faster.
 */
export function shareOfLimits(limits: TargetLimits, dispatchers: number): TargetLimits {
  if (dispatchers <= 1) return limits;
  const rate = limits.ratePerSecond === undefined ? undefined : limits.ratePerSecond / dispatchers;
  return {
    ratePerSecond: rate,
    burst: limits.burst === undefined ? undefined : Math.max(1, Math.floor(limits.burst / dispatchers)),
    maxInFlight: limits.maxInFlight === undefined ? undefined : Math.max(1, Math.ceil(limits.maxInFlight / dispatchers)),
  };
}

export interface FlowEntry {
  readonly id: string;
  readonly dueAt: number;
  readonly target: string;
}

export interface TargetFlowStats {
  /** Due entries parked, waiting for the target to have room. */
  backlog: number;
  /** Admitted and not yet answered. */
  inFlight: number;
  /** Milliseconds spent with a backlog since the engine started (the current spell included). */
  throttledMs: number;
  /** The due time of the oldest parked entry: how late the backlog is. */
  oldestDueAt: number | undefined;
  /** Until when a Retry-After keeps the target paused (0: not paused). */
  pausedUntil: number;
}

export interface FlowControlOptions<E extends FlowEntry> {
  clock: Clock;
  limitsOf: (target: string) => TargetLimits;
  /**
   * Parked entries the target now has room for: already admitted, for the
   * starter to start (and those `unsendable`, which leave without).
   */
  release: (entries: E[]) => void;
  /** An entry that will not be sent (past its deliver-by): it leaves the backlog without a token or a place. Default: none. */
  unsendable?: (entry: E, now: number) => boolean;
}

interface TargetState<E> {
  tokens: number;
  refilledAt: number;
  readonly admitted: Set<string>;
  /** Sorted by (dueAt, id): the oldest due leaves first. */
  parked: E[];
  pausedUntil: number;
  throttledMs: number;
  throttledSince: number | undefined;
  /** When the time-based wait (tokens, pause) ends; undefined when it waits for an answer or nothing. */
  wakeAt: number | undefined;
}

export class FlowControl<E extends FlowEntry> {
  readonly #clock: Clock;
  readonly #limitsOf: (target: string) => TargetLimits;
  readonly #release: (entries: E[]) => void;
  readonly #unsendable: (entry: E, now: number) => boolean;
  readonly #targets = new Map<string, TargetState<E>>();
  /** Which target holds an id, admitted or parked: forget(id) needs no target. */
  readonly #targetOfId = new Map<string, string>();
  #parkedCount = 0;
  #timer: Timer | undefined;
  #timerAt = Infinity;

  constructor(options: FlowControlOptions<E>) {
    this.#clock = options.clock;
    this.#limitsOf = options.limitsOf;
    this.#release = options.release;
    this.#unsendable = options.unsendable ?? (() => false);
  }

  get parkedCount(): number {
    return this.#parkedCount;
  }

  *parkedIds(): Iterable<string> {
    for (const state of this.#targets.values()) for (const entry of state.parked) yield entry.id;
  }

  /**
   * True when the entry may start now (it takes a token and an in-flight
   * place, or already held them); false when it was parked instead. An entry
   * never overtakes older parked ones of its target.
   */
  admit(entry: E, now: number): boolean {
    const state = this.#state(entry.target, now);
    if (state.admitted.has(entry.id)) return true;
    if (state.parked.length === 0 && this.#take(state, this.#limitsOf(entry.target), now)) {
      state.admitted.add(entry.id);
      this.#targetOfId.set(entry.id, entry.target);
      return true;
    }
    this.#park(state, entry, now);
    this.#scheduleWake(entry.target, state, now);
    return false;
  }

  /** The attempt was answered, or the entry left the pipeline unsent: its in-flight place is free. */
  finished(id: string): void {
    const target = this.#targetOfId.get(id);
    if (target === undefined) return;
    const state = this.#targets.get(target)!;
    if (!state.admitted.delete(id)) return;
    this.#targetOfId.delete(id);
    if (state.parked.length > 0) this.#releaseFrom(target, state, this.#clock.now());
  }

  /** Forgets an entry wherever it is (the message was changed or removed); true if it was parked. */
  forget(id: string): boolean {
    const target = this.#targetOfId.get(id);
    if (target === undefined) return false;
    const state = this.#targets.get(target)!;
    const at = state.parked.findIndex((entry) => entry.id === id);
    if (at < 0) {
      this.finished(id);
      return false;
    }
    state.parked.splice(at, 1);
    this.#parkedCount--;
    this.#targetOfId.delete(id);
    if (state.parked.length === 0) this.#endThrottle(state, this.#clock.now());
    return true;
  }

  /** A Retry-After from the target: nothing more starts for it until `until`. */
  pause(target: string, until: number): void {
    const now = this.#clock.now();
    const state = this.#state(target, now);
    if (until <= state.pausedUntil) return;
    state.pausedUntil = until;
    if (state.parked.length > 0) this.#scheduleWake(target, state, now);
  }

  /** A target's limits changed (or it was removed): its parked entries are looked at again. */
  limitsChanged(target: string): void {
    const state = this.#targets.get(target);
    if (state && state.parked.length > 0) this.#releaseFrom(target, state, this.#clock.now());
  }

  stats(target: string): TargetFlowStats | undefined {
    const state = this.#targets.get(target);
    if (!state) return undefined;
    const now = this.#clock.now();
    return {
      backlog: state.parked.length,
      inFlight: state.admitted.size,
      throttledMs: state.throttledMs + (state.throttledSince === undefined ? 0 : now - state.throttledSince),
      oldestDueAt: state.parked[0]?.dueAt,
      pausedUntil: state.pausedUntil > now ? state.pausedUntil : 0,
    };
  }

  /** Until when a Retry-After pauses the target; 0 when it is not paused at `now`. */
  pausedUntil(target: string, now: number): number {
    const until = this.#targets.get(target)?.pausedUntil ?? 0;
    return until > now ? until : 0;
  }

  backlogOf(target: string): number {
    return this.#targets.get(target)?.parked.length ?? 0;
  }

  targets(): Iterable<string> {
    return this.#targets.keys();
  }

  /** Targets with at least `backlog` parked entries: the refill claims no more of theirs until they drain. */
  saturated(backlog: number): string[] {
    const full: string[] = [];
    for (const [target, state] of this.#targets) if (state.parked.length >= backlog) full.push(target);
    return full;
  }

  /** Forgets a target's state (it was removed) unless it still holds entries; true when it is gone. */
  drop(target: string): boolean {
    const state = this.#targets.get(target);
    if (state && (state.parked.length > 0 || state.admitted.size > 0)) return false;
    this.#targets.delete(target);
    return true;
  }

  /** Stops the timer and forgets everything (the engine stopped; the store keeps the messages). */
  clear(): void {
    this.cancelTimer();
    this.#targets.clear();
    this.#targetOfId.clear();
    this.#parkedCount = 0;
  }

  cancelTimer(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  #state(target: string, now: number): TargetState<E> {
    let state = this.#targets.get(target);
    if (!state) {
      state = { tokens: Infinity, refilledAt: now, admitted: new Set(), parked: [], pausedUntil: 0, throttledMs: 0, throttledSince: undefined, wakeAt: undefined };
      this.#targets.set(target, state);
    }
    return state;
  }

  /** Takes a token and checks the in-flight cap and the pause; false leaves the state as it was. */
  #take(state: TargetState<E>, limits: TargetLimits, now: number): boolean {
    if (now < state.pausedUntil) return false;
    if (limits.maxInFlight !== undefined && state.admitted.size >= limits.maxInFlight) return false;
    const rate = limits.ratePerSecond;
    if (rate === undefined || rate <= 0) return true;
    const capacity = Math.max(1, limits.burst ?? rate);
    state.tokens = Math.min(capacity, state.tokens + ((now - state.refilledAt) * rate) / 1000);
    state.refilledAt = now;
    if (state.tokens < 1) return false;
    state.tokens -= 1;
    return true;
  }

  #park(state: TargetState<E>, entry: E, now: number): void {
    // entries arrive mostly in due order: search from the end
    let at = state.parked.length;
    while (at > 0 && before(entry, state.parked[at - 1]!)) at--;
    state.parked.splice(at, 0, entry);
    this.#parkedCount++;
    this.#targetOfId.set(entry.id, entry.target);
    state.throttledSince ??= now;
  }

  #releaseFrom(target: string, state: TargetState<E>, now: number): void {
    const limits = this.#limitsOf(target);
    let count = 0;
    while (count < state.parked.length) {
      const entry = state.parked[count]!;
      if (this.#unsendable(entry, now)) this.#targetOfId.delete(entry.id);
      else if (this.#take(state, limits, now)) state.admitted.add(entry.id);
      else break;
      count++;
    }
    if (count > 0) {
      const released = state.parked.splice(0, count);
      this.#parkedCount -= count;
      if (state.parked.length === 0) this.#endThrottle(state, now);
      this.#release(released);
    }
    if (state.parked.length > 0) this.#scheduleWake(target, state, now);
  }

  #endThrottle(state: TargetState<E>, now: number): void {
    if (state.throttledSince !== undefined) state.throttledMs += now - state.throttledSince;
    state.throttledSince = undefined;
    state.wakeAt = undefined;
  }

  /** When a parked target can take its next entry by waiting alone (a token, the pause's end); answers wake it otherwise. */
  #scheduleWake(target: string, state: TargetState<E>, now: number): void {
    const limits = this.#limitsOf(target);
    let wakeAt: number | undefined;
    if (now < state.pausedUntil) wakeAt = state.pausedUntil;
    else if (limits.maxInFlight !== undefined && state.admitted.size >= limits.maxInFlight) wakeAt = undefined;
    else if (limits.ratePerSecond !== undefined && limits.ratePerSecond > 0 && state.tokens < 1) {
      wakeAt = state.refilledAt + Math.ceil(((1 - state.tokens) * 1000) / limits.ratePerSecond);
    } else wakeAt = now; // room already (limits were raised): look again at once
    state.wakeAt = wakeAt;
    if (wakeAt !== undefined && wakeAt < this.#timerAt) this.#arm(wakeAt, now);
  }

  #arm(at: number, now: number): void {
    this.#timer?.cancel();
    this.#timerAt = at;
    this.#timer = this.#clock.setTimer(this.#onTimer, at - now);
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#clock.now();
    for (const [target, state] of this.#targets) {
      if (state.wakeAt !== undefined && state.wakeAt <= now && state.parked.length > 0) {
        state.wakeAt = undefined;
        this.#releaseFrom(target, state, now);
      }
    }
    let next = Infinity;
    for (const state of this.#targets.values()) if (state.wakeAt !== undefined && state.parked.length > 0) next = Math.min(next, state.wakeAt);
    if (next !== Infinity) this.#arm(next, now);
  };
}

function before(a: FlowEntry, b: FlowEntry): boolean {
  return a.dueAt < b.dueAt || (a.dueAt === b.dueAt && a.id < b.id);
}
