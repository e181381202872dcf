import type { Clock, Timer } from '../clock.ts';
import { dueBefore } from './heap.ts';

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
  /**
   * The rate's bucket is shared with the other dispatchers of a pool (in the
   * store, see `takeShared`): tokens are taken from it, not refilled here.
   */
  sharedRate?: boolean;
}

/** No limits at all (a target that sets none, or one not known yet): one object, not a new one per admission. */
export const NO_LIMITS: TargetLimits = Object.freeze({});

/**
 * One dispatcher's limits when `dispatchers` run on the store. The rate is
 * the pool's whole rate, its bucket shared in the store: whichever
 * dispatcher holds a target's messages gets its tokens, so one that holds
 * them all delivers at the full rate, and all together never faster. The
 * in-flight cap is split evenly (rounded up, at least 1 each: a cap below
 * the number of dispatchers is exceeded by up to that number).
 */
export function shareOfLimits(limits: TargetLimits, dispatchers: number): TargetLimits {
  if (dispatchers <= 1) return limits;
  return {
    ...limits,
    sharedRate: limits.ratePerSecond !== undefined && limits.ratePerSecond > 0,
    maxInFlight: limits.maxInFlight === undefined ? undefined : Math.max(1, Math.ceil(limits.maxInFlight / dispatchers)),
  };
}

/** What the shared bucket gave: `granted` tokens, and when it has one again if that was fewer than asked. */
export interface SharedGrant {
  granted: number;
  /** Milliseconds until the bucket holds a whole token again. */
  waitMs: number;
}

/** How long to wait before asking a shared bucket again after the store failed. */
const SHARED_RETRY_MS = 1000;
/** The shortest wait for a shared bucket that granted nothing: at most 50 queries a second per throttled target. */
const SHARED_MIN_WAIT_MS = 20;
/** A shared bucket's answer not come by then counts as a failure. */
const SHARED_TIMEOUT_MS = 5000;

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
  /**
   * Takes up to `want` tokens of a target's bucket shared by a pool (limits
   * with `sharedRate`): rate per second, capacity burst. Needed when any
   * target's limits say sharedRate.
   */
  takeShared?: (target: string, want: number, limits: { ratePerSecond: number; burst: number }, now: number) => Promise<SharedGrant>;
  /** A shared bucket could not be read (the store failed): the target waits SHARED_RETRY_MS and asks again. */
  onSharedError?: (err: unknown, target: string) => void;
}

interface TargetState<E> {
  readonly target: string;
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
  /** A request to the shared bucket is under way (one at a time per target). */
  asking: boolean;
}

export class FlowControl<E extends FlowEntry> {
  readonly #clock: Clock;
  readonly #limitsOf: (target: string) => TargetLimits;
  readonly #release: (entries: E[]) => void;
  readonly #unsendable: (entry: E, now: number) => boolean;
  readonly #takeShared: FlowControlOptions<E>['takeShared'];
  readonly #onSharedError: (err: unknown, target: string) => void;
  readonly #targets = new Map<string, TargetState<E>>();
  /**
   * The targets whose wakeAt is set: the timer looks at these alone, not at
   * every target (a throttled one's wake-up fired ~10 times a second, each
   * walking all 1,000 targets of the bench's targets phase).
   */
  readonly #waking = new Set<TargetState<E>>();
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
    this.#takeShared = options.takeShared;
    this.#onSharedError = options.onSharedError ?? (() => {});
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
    if (state) this.#waking.delete(state);
    return true;
  }

  /** Stops the timer and forgets everything (the engine stopped; the store keeps the messages). */
  clear(): void {
    this.cancelTimer();
    this.#targets.clear();
    this.#waking.clear();
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
      state = {
        target, tokens: Infinity, refilledAt: now, admitted: new Set(), parked: [], pausedUntil: 0, throttledMs: 0, throttledSince: undefined, wakeAt: undefined, asking: false,
      };
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
    if (limits.sharedRate) {
      // only tokens the pool's bucket granted: none of its own making
      if (!Number.isFinite(state.tokens)) state.tokens = 0;
      if (state.tokens < 1) return false;
      state.tokens -= 1;
      return true;
    }
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
    while (at > 0 && dueBefore(entry, state.parked[at - 1]!)) at--;
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
    this.#wakeAt(state, undefined, now);
  }

  /** When a parked target can take its next entry by waiting alone (a token, the pause's end); answers wake it otherwise. */
  #scheduleWake(target: string, state: TargetState<E>, now: number): void {
    const limits = this.#limitsOf(target);
    let wakeAt: number | undefined;
    if (now < state.pausedUntil) wakeAt = state.pausedUntil;
    else if (limits.maxInFlight !== undefined && state.admitted.size >= limits.maxInFlight) wakeAt = undefined;
    else if (limits.sharedRate && state.tokens < 1) {
      this.#askShared(target, state, limits);
      wakeAt = undefined; // the grant wakes it
    } else if (limits.ratePerSecond !== undefined && limits.ratePerSecond > 0 && state.tokens < 1) {
      wakeAt = state.refilledAt + Math.ceil(((1 - state.tokens) * 1000) / limits.ratePerSecond);
    } else wakeAt = now; // room already (limits were raised): look again at once
    this.#wakeAt(state, wakeAt, now);
  }

  /** The target waits until `at` (undefined: for an answer or a grant); the one timer fires by then. */
  #wakeAt(state: TargetState<E>, at: number | undefined, now: number): void {
    state.wakeAt = at;
    if (at === undefined) {
      this.#waking.delete(state);
      return;
    }
    this.#waking.add(state);
    if (at < this.#timerAt) this.#arm(at, now);
  }

  /**
   * Asks the pool's bucket for as many tokens as the target has parked
   * entries (at most a burst): granted ones release entries at once; none
   * granted, the target waits until the bucket holds one again (at least
   * SHARED_MIN_WAIT_MS: a fast rate would otherwise be a query a
   * millisecond). One request per target at a time; one that the store does
   * not answer within SHARED_TIMEOUT_MS counts as failed, so a hung query
   * cannot stall the target for good.
   */
  #askShared(target: string, state: TargetState<E>, limits: TargetLimits): void {
    if (state.asking) return;
    const takeShared = this.#takeShared;
    if (!takeShared) throw new Error('FlowControl: a target\'s limits say sharedRate, but no takeShared was given');
    const rate = limits.ratePerSecond!;
    const burst = Math.max(1, Math.floor(limits.burst ?? rate));
    state.asking = true;
    const current = () => this.#targets.get(target) === state;
    const waitThen = (ms: number) => {
      if (!current() || state.parked.length === 0) return;
      const now = this.#clock.now();
      this.#wakeAt(state, now + Math.max(SHARED_MIN_WAIT_MS, ms), now);
    };
    // asked once the starter's chunk has parked all it will: one request for them all
    queueMicrotask(() => {
      if (!current()) {
        state.asking = false;
        return;
      }
      let answered = false;
      const settle = (): boolean => {
        if (answered) return false;
        answered = true;
        timeout.cancel();
        state.asking = false;
        return true;
      };
      const timeout = this.#clock.setTimer(() => {
        if (!settle()) return;
        this.#onSharedError(new Error(`the store did not answer within ${SHARED_TIMEOUT_MS} ms`), target);
        waitThen(SHARED_RETRY_MS);
      }, SHARED_TIMEOUT_MS);
      const want = Math.min(Math.max(1, state.parked.length), burst);
      takeShared(target, want, { ratePerSecond: rate, burst }, this.#clock.now()).then((grant) => {
        // tokens taken are this dispatcher's, even when they come late, up to a burst
        if (current()) state.tokens = Math.min(burst, (Number.isFinite(state.tokens) ? state.tokens : 0) + grant.granted);
        if (!settle() || !current()) return;
        if (grant.granted > 0) this.#releaseFrom(target, state, this.#clock.now());
        else waitThen(grant.waitMs);
      }, (err: unknown) => {
        if (!settle()) return;
        this.#onSharedError(err, target);
        waitThen(SHARED_RETRY_MS);
      });
    });
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
    // a copy: releasing wakes some again
    for (const state of [...this.#waking]) {
      if (state.wakeAt! <= now && state.parked.length > 0) {
        this.#wakeAt(state, undefined, now);
        this.#releaseFrom(state.target, state, now);
      }
    }
    let next = Infinity;
    for (const state of this.#waking) if (state.parked.length > 0) next = Math.min(next, state.wakeAt!);
    if (next !== Infinity) this.#arm(next, now);
  };
}

