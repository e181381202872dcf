import { EventEmitter } from 'node:events';
import type { Clock, Timer } from '../clock.ts';
import { uuidv7 } from '../ids.ts';
import type { ValidScheduleRequest } from '../protocol/messages.ts';
import type { AttemptResult, Deliverer } from './delivery.ts';
import { ENGINE_DEFAULTS } from './engine-defaults.ts';
import { DueBuffer, type BufferEntry } from './heap.ts';
import { FlowControl, NO_LIMITS, shareOfLimits, type TargetFlowStats, type TargetLimits } from './flow-control.ts';
import { Holdings } from './holdings.ts';
import { OutcomeWriter } from './outcome-writer.ts';
import { EarlyStarts, ReadyQueue } from './started.ts';
import type { DispatcherMetrics } from './metrics.ts';
import type {
  ChangeOutcome, ClaimRequest, DeliveryResult, DispatcherStore, InsertOutcome, MessagePatch, StoredMessage,
} from './store.ts';
import { DEFAULT_TARGET } from './store.ts';

/**
 * The scheduling engine: delivers every message at its due time, to the
 * millisecond, with the database as the source of truth.
 *
 * - Buffer: the messages this owner has claimed (leased) in the store, in a
 *   min-heap on (dueAt, id). Refills claim what is due within the horizon,
 *   up to the free capacity; new messages due within it are claimed and
 *   buffered at insert.
 * - One timer, armed for the earliest entry. When it fires, every entry due
 *   by now is moved to `delivering` in one store call per chunk (a CAS on
 *   version and owner, so an edited, deleted or taken-over message never goes
 *   out stale), handed to the deliverer with bounded concurrency, and the
 *   outcomes are written back in one `finishDeliveries` call per event-loop
 *   turn.
 * - A retry due within the horizon keeps its lease and stays in this buffer;
 *   one due later is handed back to the store and claimed again in time.
 *   Capacity counts every message the owner holds, wherever it is in the
 *   pipeline (./holdings.ts), so the cap bounds memory including retries.
 * - Nothing is started or sent once the lease may have lapsed (a process
 *   paused past it): see #leaseHolds and #regainLease.
 *
 * Events (tests await them instead of sleeping):
 * - 'outcome' (message, result): an attempt's outcome, after the store recorded it.
 * - 'refilled' (claimed): a refill claimed `claimed` messages.
 * - 'idle': nothing due is waiting and no delivery or write is in progress.
 */

export interface EngineLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface EngineOptions {
  store: DispatcherStore;
  deliverer: Deliverer;
  clock: Clock;
  metrics: DispatcherMetrics;
  logger?: EngineLogger;
  /** Default: a fresh UUIDv7 per engine (per process start). */
  ownerId?: string;
  /**
   * Messages due within this window are held in memory. Default 60 s: long
   * enough that a refill every 15 s (horizon/4) always finds a message well
   * before it is due, short enough that the buffer stays small for typical
   * rates (50,000 messages/minute fit the default cap).
   */
  horizonMs?: number;
  /** Cap on messages held in memory (~200 bytes each). Default 50,000. */
  maxBuffered?: number;
  /** A claim not renewed within this expires and another owner may take over. Default 10 s. */
  leaseMs?: number;
  /** Attempts before a message is dead-lettered. Default 10. */
  maxAttempts?: number;
  /** First retry backoff; doubles per attempt, equal jitter (see retryDelayMs). Default 1 s. */
  retryBaseMs?: number;
  /** Longest retry backoff. Default 5 min. */
  retryMaxMs?: number;
  /** Deliveries in flight at once. Default 128. */
  concurrency?: number;
  /** How long delivered messages stay in the history. Default 7 days. */
  retentionMs?: number;
  /** How long stop() waits for deliveries in flight before handing them back. Default 10 s. */
  stopGraceMs?: number;
  /** Jitter source in [0, 1). Default Math.random. */
  random?: () => number;
  /**
   * Where the default target's deliveries go (its URL), named in the log
   * line of a failed attempt; a stored target's are named by their target.
   */
  target?: string;
  /** Each target's flow control: rate, burst, deliveries in flight (./flow-control.ts). Default: none. */
  limitsOf?: (target: string) => TargetLimits;
  /**
   * A target's default deliver-by window: its messages that carry no
   * deliver-by of their own are not started later than this many ms after
   * their scheduled time. Asked at every start, so a change applies to what
   * is buffered and held back too. Default: none.
   */
  deliverWithinOf?: (target: string) => number | undefined;
  /**
   * Messages are started at least this far ahead of their due time, however
   * fast startDelivery answers (at most MAX_START_LEAD_MS), so one store call
   * starts a few milliseconds' worth of messages and the outcomes ride along
   * in its transaction. Default 0: only as far ahead as the store's round
   * trip asks. The dispatcher sets it (./app.ts, START_LEAD_MS).
   */
  minStartLeadMs?: number;
}


export interface SweepReport {
  results: { message: StoredMessage; result: AttemptResult }[];
}

export interface EngineEvents {
  outcome: [message: StoredMessage, result: AttemptResult];
  /** Set expired unsent (past its deliver-by), after the store recorded it. */
  expired: [message: StoredMessage];
  refilled: [claimed: number];
  idle: [];
}

/**
 * Messages moved to `delivering` per store call. SQLite runs a store call
 * synchronously (~20 µs a row), so a chunk blocks the event loop for its
 * length: 256 rows is ~5 ms, while 20,000 messages due at one instant still
 * need only ~80 calls.
 */
const START_CHUNK = 256;

/**
 * Messages claimed per store call during a refill, for the same reason: a
 * refill of 50,000 in one call would block every timer for about a second
 * (~17 µs a row, ~60 µs for an expired claim). Chunks of 256 stay under ~15 ms
 * and let due messages go out between them.
 */
const REFILL_CHUNK = 256;

/**
 * startDelivery calls in flight at once. On PostgreSQL each is a round trip
 * (~1 ms): with one at a time, a message coming due during it waited for it
 * (and then for its own), measured p99 32 ms late; a second call starts it at
 * once. SQLite merges the calls of one event-loop turn into one transaction,
 * so there this only matters while a chunk is being written. Kept below the
 * PostgreSQL engine pool (4 connections), leaving one for outcome writes,
 * claims and renewals.
 */
const MAX_STARTS_IN_FLIGHT = 3;

/**
 * Where startDelivery is slow (a PostgreSQL round trip: 1-5 ms, more under
 * load), messages are started ahead of their due time so the round trip is
 * over when they are due; they are still sent at their due time, never
 * before. The lead is twice the recent round trip (none while that stays
 * under a millisecond, as on SQLite, unless minStartLeadMs asks for one), at most this. A timer firing takes
 * every message due within two leads, so one call covers a lead's worth of
 * messages instead of a millisecond's (a fifth of the statements at 4,000
 * messages/s with a 5 ms lead). The price, kept small on purpose: in the last
 * 2 x lead ms (at most 10) before its due time a message may already be
 * `delivering`, so a PATCH or DELETE then answers 409 instead of taking effect.
 */
const MAX_START_LEAD_MS = 5;

/** Weight of the newest round trip in the running average the lead follows. */
const ROUND_TRIP_WEIGHT = 0.2;

/**
 * Delivery outcomes wait up to this long for company before they are written.
 * Every store write has a fixed cost (an SQLite transaction writes each page
 * it touched to the WAL: 4 messages per transaction cost ~200 µs each, 64
 * per transaction ~20 µs, measured), and outcomes trickle in one by one at a
 * steady rate. Not on the injected clock: this batches writes, it is no
 * timing logic. A crash inside the window only means a redelivery, which the
 * receiver dedupes by id.
 */
export const OUTCOME_FLUSH_DELAY_MS = 10;

/** Outcomes written at once without waiting for the delay. */
export const OUTCOME_BATCH = 256;

/** Old delivered history is purged this often; purging is cheap but there is no hurry. */
const PURGE_INTERVAL_MS = 10 * 60_000;

/** After a store error the engine waits this long before trying the same work again. */
const STORE_ERROR_BACKOFF_MS = 1000;

/**
 * How often the periodic refill runs: every quarter horizon, so a message is
 * claimed well before it is due; and in a pool every quarter lease, because a
 * dead owner's claims become claimable one lease after its last renewal and
 * nobody is told: the next refill finds them. So the others take over its
 * messages at most 1.25 leases after it died (default lease 10 s: every 2.5 s,
 * one cheap indexed query).
 */
export function refillIntervalMs(horizonMs: number, leaseMs: number): number {
  return Math.max(1, Math.floor(Math.min(horizonMs, leaseMs) / 4));
}

/**
 * Backoff before retry number `attempt` (1-based): "equal jitter" over
 * ceiling = min(max, base * 2^(attempt-1)), between half the ceiling and the
 * ceiling. Full jitter (0 to the ceiling) spreads retries more, but an
 * unlucky message could spend all its attempts in seconds: with the defaults,
 * one went dead inside a 60 s outage. With a floor of half the ceiling the
 * defaults (1 s base, 5 min max, 10 attempts) wait at least 255.5 s before
 * the last attempt, whatever the draws.
 */
export function retryDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(ceiling / 2 + (ceiling / 2) * random());
}

/** An answered attempt, or (result undefined) a started message not sent: its deliver-by passed while it waited for a slot. */
type PendingOutcome = { message: StoredMessage; result: AttemptResult | undefined; record: DeliveryResult };

interface SweepCollector {
  waiting: Set<string>;
  results: SweepReport['results'];
  resolve: (report: SweepReport) => void;
}

const silentLogger: EngineLogger = { info() {}, warn() {}, error() {} };

export class SchedulingEngine {
  readonly ownerId: string;
  readonly events = new EventEmitter<EngineEvents>();

  readonly #store: DispatcherStore;
  readonly #deliverer: Deliverer;
  readonly #clock: Clock;
  readonly #metrics: DispatcherMetrics;
  readonly #logger: EngineLogger;
  readonly #horizonMs: number;
  readonly #maxBuffered: number;
  readonly #leaseMs: number;
  readonly #maxAttempts: number;
  readonly #deliverWithinOf: (target: string) => number | undefined;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #concurrency: number;
  readonly #retentionMs: number;
  readonly #stopGraceMs: number;
  readonly #random: () => number;
  readonly #target: string | undefined;
  /** Started messages waiting for a delivery slot beyond this make the starter pause. */
  readonly #readyMax: number;
  readonly #minStartLeadMs: number;

  #state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  #stopped: Promise<void> | undefined;
  #buffer = new DueBuffer();

  #timer: Timer | undefined;
  #timerAt = 0;
  /** Refill, lease renewal and purge timers, one slot each. */
  #periodic: Timer[] = [];
  /** One-off timers that repeat work a store error interrupted. */
  #retryTimers = new Set<Timer>();
  #unsubscribeWake: (() => void) | undefined;

  /** Entries handed to startDelivery, one array per call awaiting its answer. */
  #starting = new Set<BufferEntry[]>();
  #startingCount = 0;
  /** A startDelivery failed: no new ones until the backoff ran out. */
  #startsPaused = false;
  /** Started ahead of their due time (see MAX_START_LEAD_MS), in dueAt order, waiting for it. */
  readonly #early: EarlyStarts;
  /** Running average of startDelivery round trips on the injected clock, in ms. */
  #startRoundTripMs = 0;
  /** Started messages waiting for a delivery slot. */
  readonly #ready = new ReadyQueue();
  #inFlight = new Set<string>();
  /** Outcomes not yet written, and the batch being written (./outcome-writer.ts). */
  readonly #outcomes: OutcomeWriter<PendingOutcome>;
  /** Due entries whose target has no room yet, per target (./flow-control.ts). */
  readonly #flow: FlowControl<BufferEntry>;
  /** Capacity promised to schedule() calls whose insert has not resolved yet. */
  #reserved = 0;
  /** Store calls that may claim for this owner; stop() lets them land before releasing claims. */
  #claimingCalls = new Set<Promise<unknown>>();

  /** Dispatchers running on the store (live leases), counted at each renewal: they share each target's limits. */
  #dispatchers = 1;
  /** Targets the last refill skipped: their parked backlog was large (see #saturatedBacklog). */
  #skipped = new Set<string>();
  /** A target with this many parked is claimed no more until half of them left (a tenth of --max-buffered). */
  readonly #saturatedBacklog: number;
  #refilling: Promise<number> | undefined;
  #refillAgain = false;
  /** The last refill hit its limit: more is due than fitted, refill again as soon as room frees up. */
  #moreWaiting = false;

  /**
   * Buffered retries waiting out a backoff (not a Retry-After). The next
   * delivery that succeeds brings them forward to now: the main server is
   * back, and after a long outage their backoffs (up to minutes) would
   * otherwise keep them waiting long after it recovered.
   */
  #backingOff = new Map<string, string>();
  /** Per target, when its current run of failed attempts began (none after a success): one main server's recovery says nothing of another's. */
  #failingSince = new Map<string, number>();

  /**
   * Until when this owner's lease is known to hold in the store: the latest
   * renewal's expiry, counted only if its answer came back before the lease
   * it extended ran out. Nothing is sent or started past it (less a margin):
   * a process paused longer than its lease (SIGSTOP, a VM stall, a swap
   * storm) wakes up with queues of messages that another owner may have
   * taken over and delivered meanwhile.
   */
  #leaseValidUntil = 0;
  readonly #leaseMarginMs: number;
  /** The lease may have lapsed: nothing is started or sent until #regainLease() has checked what is still ours. */
  #leaseLost = false;
  /** startDelivery calls under way; #regainLease waits for them before it checks what they moved. */
  #startCalls = new Set<Promise<void>>();

  #sweeps = new Set<SweepCollector>();
  #quietWaiters: (() => void)[] = [];

  /** Every stage's count and ids, read by capacity, idleness, quiet and sweeps (./holdings.ts). */
  readonly #holdings = new Holdings({
    buffered: { count: () => this.#buffer.size, ids: () => [] },
    throttled: { count: () => this.#flow.parkedCount, ids: () => this.#flow.parkedIds() },
    starting: { count: () => this.#startingCount, ids: () => [...this.#starting].flat().map((entry) => entry.id) },
    early: { count: () => this.#early.size, ids: () => this.#early.messages().map((message) => message.id) },
    ready: { count: () => this.#ready.size, ids: () => this.#ready.messages().map((message) => message.id) },
    inFlight: { count: () => this.#inFlight.size, ids: () => this.#inFlight },
    pending: { count: () => this.#outcomes.pending.length, ids: () => this.#outcomes.pending.map(({ message }) => message.id) },
    writing: { count: () => this.#outcomes.writing.length, ids: () => this.#outcomes.writing.map(({ message }) => message.id) },
    reserved: { count: () => this.#reserved, ids: () => [] },
  });

  constructor(options: EngineOptions) {
    this.#store = options.store;
    this.#deliverer = options.deliverer;
    this.#clock = options.clock;
    this.#metrics = options.metrics;
    this.#logger = options.logger ?? silentLogger;
    this.ownerId = options.ownerId ?? uuidv7();
    this.#horizonMs = options.horizonMs ?? ENGINE_DEFAULTS.horizonMs;
    this.#maxBuffered = options.maxBuffered ?? ENGINE_DEFAULTS.maxBuffered;
    this.#leaseMs = options.leaseMs ?? ENGINE_DEFAULTS.leaseMs;
    this.#maxAttempts = options.maxAttempts ?? ENGINE_DEFAULTS.maxAttempts;
    this.#retryBaseMs = options.retryBaseMs ?? ENGINE_DEFAULTS.retryBaseMs;
    this.#retryMaxMs = options.retryMaxMs ?? ENGINE_DEFAULTS.retryMaxMs;
    this.#concurrency = Math.max(1, options.concurrency ?? ENGINE_DEFAULTS.concurrency);
    this.#retentionMs = options.retentionMs ?? ENGINE_DEFAULTS.retentionMs;
    this.#stopGraceMs = options.stopGraceMs ?? ENGINE_DEFAULTS.stopGraceMs;
    this.#random = options.random ?? Math.random;
    this.#target = options.target;
    this.#deliverWithinOf = options.deliverWithinOf ?? (() => undefined);
    this.#readyMax = Math.max(START_CHUNK, this.#concurrency);
    this.#minStartLeadMs = Math.max(0, options.minStartLeadMs ?? 0);
    this.#leaseMarginMs = Math.floor(this.#leaseMs / 10);
    this.#saturatedBacklog = Math.max(1, Math.floor(this.#maxBuffered / 10));
    const limitsOf = options.limitsOf ?? (() => NO_LIMITS);
    this.#flow = new FlowControl<BufferEntry>({
      clock: this.#clock,
      limitsOf: (target) => shareOfLimits(limitsOf(target), this.#dispatchers),
      unsendable: (entry, now) => this.#pastDeadline(entry, now),
      // in a pool, the rate's bucket is the store's: the dispatcher holding a target's messages gets its tokens
      takeShared: async (target, want, { ratePerSecond, burst }, now) => {
        const { granted, remaining } = await this.#store.takeTokens(target, want, ratePerSecond, burst, now);
        return { granted, waitMs: granted >= want ? 0 : Math.ceil(((1 - remaining) * 1000) / ratePerSecond) };
      },
      onSharedError: (err, target) => this.#logger.warn({ err, target }, 'taking delivery tokens from the pool\'s shared bucket failed; the target waits a second'),
      release: (entries) => {
        for (const entry of entries) this.#buffer.put(entry);
        this.#kickStarter();
        this.#refillIfDrained(entries[0]!.target);
      },
    });
    this.#early = new EarlyStarts(this.#clock, (messages) => this.#earlyDue(messages), () => this.#state === 'running');
    this.#outcomes = new OutcomeWriter<PendingOutcome>({
      clock: this.#clock,
      batchSize: OUTCOME_BATCH,
      delayMs: OUTCOME_FLUSH_DELAY_MS,
      write: (batch) => this.#store.finishDeliveries(this.ownerId, batch.map((item) => item.record)),
      urgent: () => this.#state !== 'running' || (this.#inFlight.size === 0 && this.#ready.size === 0 && this.#early.size === 0 && !this.#startDueWithin(OUTCOME_FLUSH_DELAY_MS)),
      written: (batch) => this.#outcomesWritten(batch),
      failed: (err, batch) => this.#outcomesFailed(err, batch),
    });
  }

  get bufferedCount(): number {
    return this.#buffer.size;
  }

  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  /** A target's limits changed (or it is new or gone): its parked messages are looked at again. */
  limitsChanged(target: string): void {
    this.#flow.limitsChanged(target);
  }

  /**
   * A target is gone: its flow-control state, recovery bookkeeping and
   * metric series go too (a removed target has nothing left to deliver; one
   * still holding messages keeps its state until they leave).
   */
  targetRemoved(target: string): void {
    if (!this.#flow.drop(target)) return;
    this.#failingSince.delete(target);
    this.#metrics.forgetTarget(target);
  }

  /** Each target's flow-control numbers, for /metrics and the page (targets this engine delivered to or held back). */
  *targetGauges(): Iterable<{ target: string } & TargetFlowStats> {
    for (const target of this.#flow.targets()) {
      const stats = this.#flow.stats(target);
      if (stats) yield { target, ...stats };
    }
  }

  /** Claims everything due within the horizon (past-due first: they go out at once) and starts the timers. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new Error(`SchedulingEngine.start(): the engine is ${this.#state}; create a new one`);
    this.#state = 'running';
    // a new owner holds nothing yet: every claim it makes from now on lasts at least this long
    this.#leaseValidUntil = this.#clock.now() + this.#leaseMs;
    this.#unsubscribeWake = this.#store.onWake(() => void this.refill());
    await this.refill();
    void this.#countDispatchers(this.#clock.now());
    this.#every(refillIntervalMs(this.#horizonMs, this.#leaseMs), () => void this.refill());
    this.#every(Math.max(1, Math.floor(this.#leaseMs / 3)), () => void this.#renewLeases());
    this.#every(PURGE_INTERVAL_MS, () => void this.#purge());
    void this.#purge();
    this.#logger.info({ owner: this.ownerId, horizonMs: this.#horizonMs, maxBuffered: this.#maxBuffered }, 'scheduling engine started');
  }

  /** Stops timers, waits (up to the grace period) for deliveries in flight, records them, releases every claim. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Inserts new messages; those due within the horizon are claimed and buffered at once. */
  async schedule(requests: (ValidScheduleRequest & { target?: string })[]): Promise<InsertOutcome[]> {
    const now = this.#clock.now();
    const messages = requests.map((request) => ({
      id: uuidv7(now),
      target: request.target,
      username: request.username,
      message: request.message,
      scheduledAt: request.scheduledAt,
      idempotencyKey: request.idempotencyKey,
      deliverBy: request.deliverBy ?? null,
    }));
    // Claim only when all of them fit; otherwise a refill brings them in as room frees up.
    const claim = this.#state === 'running' && this.#freeCapacity() >= messages.length ? this.#claimRequest(now) : undefined;
    const reserved = claim ? messages.length : 0;
    this.#reserved += reserved;
    let outcomes: InsertOutcome[];
    try {
      // only an insert that claims needs tracking (#track): one without a claim holds nothing of this owner's
      const inserted = this.#store.insert(messages, now, claim);
      outcomes = await (claim ? this.#track(inserted) : inserted);
    } finally {
      this.#reserved -= reserved;
    }
    if (claim && this.#state === 'running') {
      for (const { message, created } of outcomes) {
        if (created && message.leaseOwner === this.ownerId) this.#buffer.put(entryOf(message));
      }
      this.#arm();
    }
    return outcomes;
  }

  update(id: string, patch: MessagePatch): Promise<ChangeOutcome> {
    const now = this.#clock.now();
    return this.#change(id, this.#track(this.#store.update(id, patch, now, this.#claimFor(id, now))));
  }

  async remove(id: string): Promise<ChangeOutcome> {
    const outcome = await this.#store.remove(id);
    if (outcome.kind === 'ok') this.#drop(id);
    return outcome;
  }

  /**
   * Replays a dead or expired message: due now, attempts reset. Its deliver-by
   * starts again from now: its target's window after now, or none (its own,
   * long past for an expired one, would expire it again at once).
   */
  async retry(id: string): Promise<ChangeOutcome> {
    const current = await this.#store.get(id);
    const now = this.#clock.now();
    const within = current && this.#deliverWithinOf(current.target);
    const deliverBy = within === undefined ? null : now + within;
    return this.#change(id, this.#track(this.#store.retry(id, now, this.#claimFor(id, now), deliverBy)));
  }

  /**
   * The legacy cron: claims what is due now, and resolves once every message
   * due now (or already on its way) has had one attempt recorded, except
   * those its target's flow control holds back (they go when it has room).
   */
  async sweep(): Promise<SweepReport> {
    if (this.#state !== 'running') return { results: [] };
    await this.refill();
    const waiting = new Set<string>(this.#buffer.idsDueBy(this.#clock.now()));
    for (const id of this.#holdings.startedIds()) waiting.add(id);
    if (waiting.size === 0) return { results: [] };
    const report = new Promise<SweepReport>((resolve) => this.#sweeps.add({ waiting, results: [], resolve }));
    this.#kickStarter();
    return report;
  }

  /**
   * Claims due messages within the horizon, up to the free capacity. Runs on
   * a timer and on store wake-ups; concurrent calls share one run (plus one
   * more if asked during it). Resolves with how many were claimed.
   */
  refill(): Promise<number> {
    if (this.#state !== 'running') return Promise.resolve(0);
    if (this.#refilling) {
      this.#refillAgain = true;
      return this.#refilling;
    }
    this.#refilling = this.#refillLoop().finally(() => {
      this.#refilling = undefined;
    });
    return this.#refilling;
  }

  /** Resolves when nothing due is waiting and no delivery or store write is in progress. */
  whenIdle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.events.once('idle', () => resolve()));
  }

  // ---- refill, leases, purge -------------------------------------------------

  async #refillLoop(): Promise<number> {
    let claimed = 0;
    do {
      this.#refillAgain = false;
      claimed += await this.#refillOnce();
    } while (this.#refillAgain && this.#state === 'running');
    return claimed;
  }

  /** Claims in chunks until nothing more is due within the horizon or the buffer is full. */
  async #refillOnce(): Promise<number> {
    let total = 0;
    while (this.#state === 'running') {
      const room = this.#freeCapacity();
      const limit = Math.min(REFILL_CHUNK, room);
      if (limit <= 0) {
        this.#moreWaiting = true;
        break;
      }
      const now = this.#clock.now();
      let claimed: StoredMessage[];
      try {
        const skip = this.#flow.saturated(this.#saturatedBacklog);
        this.#skipped = new Set(skip);
        claimed = await this.#store.claimDue(this.ownerId, now + this.#horizonMs, now, now + this.#leaseMs, limit, skip);
      } catch (err) {
        this.#logger.error({ err }, 'refill failed; the next refill tries again');
        break;
      }
      if (this.#state !== 'running') break; // stop() releases these claims
      for (const message of claimed) this.#buffer.put(entryOf(message));
      total += claimed.length;
      this.#arm();
      if (claimed.length < limit) {
        this.#moreWaiting = false;
        break;
      }
      if (limit === room) {
        this.#moreWaiting = true;
        break;
      }
    }
    this.events.emit('refilled', total);
    return total;
  }

  /**
   * A skipped target whose backlog has halved is claimed again: its parked
   * messages must not run out before the next periodic refill.
   */
  #refillIfDrained(target: string): void {
    if (!this.#skipped.has(target) || this.#flow.backlogOf(target) > this.#saturatedBacklog / 2) return;
    this.#skipped.delete(target);
    void this.refill();
  }

  async #renewLeases(): Promise<void> {
    if (this.#leaseLost) return; // #regainLease renews
    const issuedAt = this.#clock.now();
    try {
      await this.#store.renewLeases(this.ownerId, issuedAt + this.#leaseMs);
    } catch (err) {
      this.#logger.error({ err }, 'lease renewal failed; claims expire unless the next renewal succeeds');
      return;
    }
    // answered in time: the lease never lapsed, and now lasts until issuedAt + lease (renewals never shorten it)
    if (this.#leaseHolds()) this.#leaseValidUntil = Math.max(this.#leaseValidUntil, issuedAt + this.#leaseMs);
    await this.#countDispatchers(issuedAt);
  }

  /** How many dispatchers share the store now; when that changed, every target's share of its limits did too. */
  async #countDispatchers(now: number): Promise<void> {
    let live: number;
    try {
      live = Math.max(1, await this.#store.countLiveOwners(now));
    } catch (err) {
      this.#logger.warn({ err }, 'counting the pool\'s dispatchers failed; flow control keeps the last count');
      return;
    }
    if (live === this.#dispatchers || this.#state !== 'running') return;
    this.#dispatchers = live;
    for (const target of [...this.#flow.targets()]) this.#flow.limitsChanged(target);
  }

  /**
   * Whether the lease still holds, with a margin for the send itself and for
   * clocks of a pool that differ a little. The first time it does not, the
   * engine stops starting and sending, and #regainLease takes over.
   */
  /** Asked by the deliverer as the request is written: the lease check again, a pause may have come in between. */
  readonly #mayStillSend = (): boolean => this.#leaseHolds();

  #leaseHolds(): boolean {
    if (this.#leaseLost) return false;
    if (this.#clock.now() < this.#leaseValidUntil - this.#leaseMarginMs) return true;
    if (this.#state !== 'running') return false;
    this.#leaseLost = true;
    this.#logger.warn(
      { owner: this.ownerId, leaseValidUntil: new Date(this.#leaseValidUntil).toISOString() },
      'the lease may have lapsed (was the process paused?): sending nothing until what is still ours is checked',
    );
    void this.#regainLease();
    return false;
  }

  /**
   * After a possible lapse: renews the lease, then keeps of the started
   * messages (queued or early) only those the store still shows delivering
   * for this owner, attempt for attempt; another owner took over the rest.
   * From the renewal on, what is still ours stays ours, so a check read
   * after it is final. Buffered entries need no check: startDelivery's
   * compare-and-set on the owner refuses those taken over.
   */
  async #regainLease(): Promise<void> {
    while (this.#state === 'running') {
      await Promise.allSettled([...this.#startCalls]);
      const issuedAt = this.#clock.now();
      let kept: Set<string>;
      try {
        await this.#store.renewLeases(this.ownerId, issuedAt + this.#leaseMs);
        kept = await this.#stillOurs([...this.#ready.messages(), ...this.#early.messages()]);
      } catch (err) {
        this.#logger.error({ err }, 'renewing a lapsed lease failed; trying again shortly');
        await new Promise<void>((resolve) => this.#retryLater(resolve));
        continue;
      }
      if (this.#state !== 'running') return;
      this.#leaseValidUntil = issuedAt + this.#leaseMs;
      if (this.#clock.now() >= this.#leaseValidUntil - this.#leaseMarginMs) continue; // stalled again meanwhile
      const dropped = this.#keepStarted(kept);
      this.#leaseLost = false;
      this.#logger.warn({ owner: this.ownerId, dropped }, 'lease regained; messages taken over meanwhile were dropped unsent');
      this.#pump();
      this.#checkQuiet();
      return;
    }
  }

  /** The ids of `messages` the store still shows as this owner's, in the delivery attempt they were started for. */
  async #stillOurs(messages: StoredMessage[]): Promise<Set<string>> {
    const stored = await Promise.all(messages.map((message) => this.#store.get(message.id)));
    const ours = new Set<string>();
    messages.forEach((message, i) => {
      const now = stored[i];
      if (now && now.status === 'delivering' && now.leaseOwner === this.ownerId && now.attempts === message.attempts) ours.add(message.id);
    });
    return ours;
  }

  /** Drops from the ready and early queues what is not in `kept`; returns how many went. */
  #keepStarted(kept: Set<string>): number {
    const keep = (message: StoredMessage) => {
      if (kept.has(message.id)) return true;
      this.#flow.finished(message.id);
      this.#settleSweepsWithout(message.id);
      return false;
    };
    return this.#ready.retain(keep) + this.#early.retain(keep);
  }


  async #purge(): Promise<void> {
    try {
      const purged = await this.#store.purgeDelivered(this.#clock.now() - this.#retentionMs);
      if (purged > 0) this.#logger.info({ purged }, 'purged delivered history past retention');
    } catch (err) {
      this.#logger.warn({ err }, 'purging delivered history failed');
    }
  }

  /** Runs `fn` every `intervalMs` of the injected clock until stop(). */
  #every(intervalMs: number, fn: () => void): void {
    const slot = this.#periodic.length;
    const tick = () => {
      if (this.#state !== 'running') return;
      this.#periodic[slot] = this.#clock.setTimer(tick, intervalMs);
      fn();
    };
    this.#periodic.push(this.#clock.setTimer(tick, intervalMs));
  }

  /** Runs `fn` once after STORE_ERROR_BACKOFF_MS, unless stop() comes first. */
  #retryLater(fn: () => void): void {
    const timer = this.#clock.setTimer(() => {
      this.#retryTimers.delete(timer);
      fn();
    }, STORE_ERROR_BACKOFF_MS);
    this.#retryTimers.add(timer);
  }

  /** Remembers a store call that may claim for this owner until it settles. */
  #track<T>(call: Promise<T>): Promise<T> {
    this.#claimingCalls.add(call);
    const forget = () => this.#claimingCalls.delete(call);
    call.then(forget, forget);
    return call;
  }

  // ---- the delivery pipeline: timer -> start -> deliver -> write -----------

  /**
   * Arms the one timer for the earliest buffered entry, unless it already
   * fires by then. Stands down while starting more would have to wait anyway
   * (starts saturated, ready queue full, or backing off after a store error):
   * whatever frees that up kicks the starter again.
   */
  #arm(): void {
    if (this.#state !== 'running' || !this.#canStartMore()) return;
    const next = this.#buffer.peek();
    if (next === undefined) return;
    const fireAt = next.dueAt - this.#lead();
    if (this.#timer !== undefined) {
      if (this.#timerAt <= fireAt) return;
      this.#timer.cancel();
    }
    this.#timerAt = fireAt;
    this.#timer = this.#clock.setTimer(this.#onTimer, fireAt - this.#clock.now());
  }

  /** How far ahead of its due time a message is started (MAX_START_LEAD_MS). */
  #lead(): number {
    const lead = Math.round(2 * this.#startRoundTripMs);
    return Math.min(MAX_START_LEAD_MS, Math.max(this.#minStartLeadMs, lead < 2 ? 0 : lead));
  }

  /** True when the starter will run within `ms` (a buffered entry is due to start by then), taking pending outcomes along. */
  #startDueWithin(ms: number): boolean {
    const next = this.#buffer.peek();
    return next !== undefined && next.dueAt - this.#lead() <= this.#clock.now() + ms;
  }

  #onTimer = (): void => {
    this.#timer = undefined;
    // if the system timer fired a hair before the wall clock reached dueAt, the starter finds nothing due and re-arms
    this.#kickStarter();
  };

  #canStartMore(): boolean {
    return !this.#startsPaused && !this.#leaseLost && this.#starting.size < MAX_STARTS_IN_FLIGHT
      && this.#ready.size + this.#startingCount + this.#early.size < this.#readyMax;
  }

  /**
   * Starts every due entry (or, `ahead`, due within two leads), chunk by
   * chunk, as far as the limits allow; then re-arms the timer. A slot freed by
   * an answer (#pump) starts only what is due now: with a lead, what comes due
   * within it waits for the timer, which starts a lead's worth in one store
   * call instead of a few messages at every answer.
   */
  #kickStarter(ahead = true): void {
    if (this.#state === 'running' && !this.#leaseHolds()) return; // #regainLease kicks it again
    while (this.#state === 'running' && this.#canStartMore()) {
      const now = this.#clock.now();
      const due = this.#buffer.takeDue(ahead ? now + 2 * this.#lead() : now, START_CHUNK);
      if (due.length === 0) break;
      // entries of a target without room are parked by the flow control, which hands them back when it has;
      // a legacy sweep does not wait for them (the cron's request would hang for a whole pause or backlog)
      const entries: BufferEntry[] = [];
      const expired: BufferEntry[] = [];
      for (const entry of due) {
        // past its deliver-by: set expired without taking its target's rate or room
        if (this.#pastDeadline(entry, now)) {
          this.#flow.finished(entry.id);
          expired.push(entry);
        } else if (this.#flow.admit(entry, now)) entries.push(entry);
        else if (this.#sweeps.size > 0) this.#settleSweepsWithout(entry.id);
      }
      if (expired.length > 0) this.#underWay(this.#expire(expired, now));
      if (entries.length === 0) continue;
      // outcomes waiting for company go along: on SQLite both land in the same transaction
      this.#outcomes.flushNow();
      this.#underWay(this.#start(entries, now));
    }
    this.#arm();
  }

  /** Remembers a starter's store call until it settles: #regainLease waits for them before it checks what they moved. */
  #underWay(call: Promise<void>): void {
    this.#startCalls.add(call);
    void call.finally(() => this.#startCalls.delete(call));
  }

  /**
   * Whether the entry (or started message) would go out past its deadline if
   * started at `now`: it is sent at its due time when started ahead of it
   * (the start lead), so that counts, not the moment of the start.
   */
  #pastDeadline(entry: Deadlined, now: number): boolean {
    return Math.max(now, entry.dueAt) > this.#deadlineOf(entry);
  }

  /** The latest instant the entry may start: its own deliver-by, else its target's default window after its scheduled time. */
  #deadlineOf(entry: Deadlined): number {
    if (entry.deliverBy !== null) return entry.deliverBy;
    const within = this.#deliverWithinOf(entry.target);
    return within === undefined ? Infinity : entry.scheduledAt + within;
  }

  /**
   * Sets entries past their deliver-by expired, never sent (a compare-and-set
   * like startDelivery's: one changed or taken over meanwhile is left alone).
   * Counted as starting while the store call is under way.
   */
  async #expire(entries: BufferEntry[], now: number): Promise<void> {
    const expired = await this.#starterCall(entries, 'setting messages past their deliver-by expired', () => this.#store.expire(this.ownerId, entries.map((entry) => ({
      id: entry.id,
      version: entry.version,
      error: this.#expiryError(entry),
    })), now));
    if (expired) {
      for (const entry of entries) this.#settleSweepsWithout(entry.id);
      // room freed: after an outage a buffer full of stale messages empties at once, and more come in
      if (this.#moreWaiting && this.#freeCapacity() >= this.#maxBuffered / 2) void this.refill();
      const at = this.#clock.now();
      for (const message of expired) {
        this.#metrics.recordOutcome('expired', at, message.target);
        this.events.emit('expired', message);
      }
      if (expired.length > 0) this.#logger.warn({ count: expired.length, ids: expired.slice(0, 10).map((m) => m.id) }, 'messages past their deliver-by were not sent: expired (replay them from the page or the API)');
    }
    this.#kickStarter();
    this.#checkQuiet();
  }

  /** Moves one chunk to `delivering` and queues what moved for delivery. */
  async #start(entries: BufferEntry[], now: number): Promise<void> {
    const started = await this.#starterCall(entries, 'starting deliveries', async () => {
      const moved = await this.#store.startDelivery(this.ownerId, entries, now);
      const roundTrip = this.#clock.now() - now;
      this.#startRoundTripMs += ROUND_TRIP_WEIGHT * (roundTrip - this.#startRoundTripMs);
      return moved;
    });
    if (started) {
      if (started.length < entries.length) this.#settleDropped(entries, started);
      const now = this.#clock.now();
      // the buffer's due time rules: it is the store's, or earlier for a retry brought forward
      const bufferedDue = new Map(entries.map((entry) => [entry.id, entry.dueAt]));
      const early: StoredMessage[] = [];
      for (let message of started) {
        const dueAt = bufferedDue.get(message.id) ?? message.dueAt;
        if (dueAt < message.dueAt) message = { ...message, dueAt };
        if (message.dueAt <= now) this.#ready.push(message);
        else early.push(message);
      }
      this.#early.add(early);
    }
    this.#pump();
    this.#checkQuiet();
  }

  /**
   * A store call of the starter's for `entries` (start, expire): they count as
   * starting meanwhile; when it fails they go back to the heap and nothing
   * more starts until the store backoff ran out (undefined is returned).
   */
  async #starterCall<T>(entries: BufferEntry[], what: string, call: () => Promise<T>): Promise<T | undefined> {
    this.#starting.add(entries);
    this.#startingCount += entries.length;
    try {
      return await call();
    } catch (err) {
      this.#logger.error({ err, count: entries.length }, `${what} failed; trying again shortly`);
      for (const entry of entries) this.#buffer.put(entry);
      this.#pauseStarts();
      return undefined;
    } finally {
      this.#starting.delete(entries);
      this.#startingCount -= entries.length;
    }
  }

  /** After a failed store call of the starter: nothing more starts (or expires) until the backoff ran out. */
  #pauseStarts(): void {
    if (this.#startsPaused || this.#state !== 'running') return;
    this.#startsPaused = true;
    this.#retryLater(() => {
      this.#startsPaused = false;
      this.#kickStarter();
    });
  }

  /** Early starts now due join the ready queue. */
  #earlyDue(messages: StoredMessage[]): void {
    for (const message of messages) this.#ready.push(message);
    this.#pump();
  }

  /** Starts deliveries from the ready queue while slots are free, then lets the starter refill the queue. */
  #pump(): void {
    if (this.#ready.size > 0 && !this.#leaseHolds()) return; // #regainLease pumps again
    while (this.#inFlight.size < this.#concurrency && this.#ready.size > 0 && this.#state === 'running') {
      this.#deliver(this.#ready.shift()!);
    }
    this.#kickStarter(false);
  }

  #deliver(message: StoredMessage): void {
    this.#backingOff.delete(message.id);
    const startedAt = this.#clock.now();
    // started in time, it may have waited for a slot since (every one busy): past its deliver-by now, it is not sent
    if (this.#pastDeadline(message, startedAt)) {
      this.#expireUnsent(message, startedAt);
      return;
    }
    this.#inFlight.add(message.id);
    const pausedUntil = this.#flow.pausedUntil(message.target, startedAt);
    let attempt: Promise<AttemptResult>;
    if (pausedUntil > 0) {
      // admitted before its target asked for a pause (a Retry-After answer to another message): not sent, due again at the pause's end
      attempt = Promise.resolve({
        kind: 'retry',
        error: `not sent: the target asked for a pause (Retry-After) until ${new Date(pausedUntil).toISOString()}`,
        retryAfterMs: pausedUntil - startedAt,
      });
    } else {
      if (message.attempts === 1) {
        // measured from when the message could first have gone out: its due time, or its creation for one scheduled in the past
        this.#metrics.observeLateness(startedAt - Math.max(message.dueAt, message.createdAt), startedAt, message.target);
      }
      try {
        attempt = this.#deliverer.deliver(message, this.#mayStillSend);
      } catch (err) {
        attempt = Promise.reject(err);
      }
    }
    attempt.then(
      (result) => this.#complete(message, result, startedAt),
      (err: unknown) => this.#complete(message, { kind: 'retry', error: `deliverer failed: ${err instanceof Error ? err.message : String(err)}` }, startedAt),
    );
  }

  #complete(message: StoredMessage, attemptResult: AttemptResult, startedAt: number): void {
    this.#inFlight.delete(message.id);
    if (this.#state === 'stopped') return; // its claim was handed back: someone delivers it again
    let result = attemptResult;
    if (result.kind === 'retry' && message.attempts >= this.#maxAttempts) {
      const attempts = `${message.attempts} attempt${message.attempts === 1 ? '' : 's'}`;
      result = { kind: 'dead', error: `gave up after ${attempts}: ${result.error}`, status: result.status, response: result.response };
    }
    const now = this.#clock.now();
    let record: DeliveryResult;
    if (result.kind === 'delivered') {
      record = { id: message.id, outcome: 'delivered', at: now };
    } else if (result.kind === 'retry') {
      // a receiver's Retry-After is obeyed up to --retry-max: one answer must not park a message for years
      const delay = result.retryAfterMs !== undefined
        ? Math.min(result.retryAfterMs, this.#retryMaxMs)
        : retryDelayMs(message.attempts, this.#retryBaseMs, this.#retryMaxMs, this.#random);
      // a retry due past the deliver-by comes up just after it instead, and expires then, unsent
      const at = Math.min(now + Math.max(0, delay), this.#deadlineOf(message) + 1);
      // due beyond the horizon: handed back, so it holds no buffer slot meanwhile (a refill claims it in due order)
      record = { id: message.id, outcome: 'retry', at, error: result.error, release: at > now + this.#horizonMs };
    } else {
      record = { id: message.id, outcome: 'dead', at: now, error: result.error };
    }
    // the attempt's row of the message's history, written with the outcome (same transaction)
    record.attempt = { number: message.attempts, startedAt, finishedAt: now, httpStatus: result.status };
    this.#metrics.recordOutcome(result.kind, now, message.target);
    if (result.kind !== 'delivered') this.#logFailure(message, result, record);
    this.#outcomes.add({ message, result, record });
    this.#noteRecovery(message.target, result, now);
    // a Retry-After (429, 503) is the target asking for a pause: none of its messages start before it ends
    // (the whole pause: this message's own retry may come earlier, at its deliver-by, to expire)
    if (result.kind === 'retry' && result.retryAfterMs !== undefined) this.#flow.pause(message.target, now + Math.min(result.retryAfterMs, this.#retryMaxMs));
    this.#flow.finished(message.id);
    this.#pump();
  }

  /** The last error of a message expired unsent. */
  #expiryError(entry: Deadlined): string {
    return `not sent: past its deliver-by, ${new Date(this.#deadlineOf(entry)).toISOString()}`;
  }

  /** Records a started message as expired, never sent (its outcome written with the others). */
  #expireUnsent(message: StoredMessage, now: number): void {
    this.#metrics.recordOutcome('expired', now, message.target);
    this.#logger.warn({ id: message.id, target: message.target }, 'a message past its deliver-by was not sent: expired (replay it from the page or the API)');
    this.#outcomes.add({ message, result: undefined, record: { id: message.id, outcome: 'expired', at: now, error: this.#expiryError(message) } });
    this.#flow.finished(message.id);
  }

  /** A failed attempt is a warning, a message gone dead an error: an operator sees both at the default level. */
  #logFailure(message: StoredMessage, result: Exclude<AttemptResult, { kind: 'delivered' }>, record: DeliveryResult): void {
    const target = message.target === DEFAULT_TARGET ? this.#target ?? message.target : message.target;
    const fields = { id: message.id, target, status: result.status, attempt: message.attempts, error: result.error };
    if (result.kind === 'dead') this.#logger.error(fields, 'delivery failed for good: the message is dead (retry it from the page or the API)');
    else this.#logger.warn({ ...fields, retryAt: new Date(record.at).toISOString() }, 'delivery attempt failed; retrying');
  }

  /**
   * A success after at least --retry-base of nothing but failures means the
   * main server is back: the retries waiting out backoffs go now. A main
   * server that fails one request in two never fails that long at load, so
   * its retries keep their backoffs and do not burn attempts in a storm.
   */
  #noteRecovery(target: string, result: AttemptResult, now: number): void {
    if (result.kind !== 'delivered') {
      if (!this.#failingSince.has(target)) this.#failingSince.set(target, now);
      return;
    }
    const since = this.#failingSince.get(target);
    if (since === undefined) return;
    this.#failingSince.delete(target);
    if (now - since >= this.#retryBaseMs && this.#backingOff.size > 0) this.#bringRetriesForward(target, now);
  }

  /**
   * Moves the target's buffered retries in backoff to now (memory only: the store
   * keeps their later due time, which a crash would fall back to; startDelivery
   * checks version and lease, not the due time).
   */
  #bringRetriesForward(target: string, now: number): void {
    for (const [id, retryTarget] of this.#backingOff) {
      if (retryTarget !== target) continue;
      this.#backingOff.delete(id);
      const entry = this.#buffer.get(id);
      if (entry && entry.dueAt > now) this.#buffer.put({ ...entry, dueAt: now });
    }
    this.#kickStarter();
  }

  /** After a batch of outcomes was written: retries go back to the buffer, sweeps and listeners hear of each. */
  #outcomesWritten(batch: PendingOutcome[]): void {
    for (const { message, result, record } of batch) {
      if (result === undefined) {
        this.#settleSweepsWithout(message.id);
        this.events.emit('expired', { ...message, status: 'expired', attempts: message.attempts - 1, lastError: record.error ?? null, leaseOwner: null, leaseExpiresAt: null });
        continue;
      }
      if (record.outcome === 'retry' && !record.release && this.#state === 'running') {
        this.#buffer.put({ ...entryOf(message), dueAt: record.at });
        if (result.kind === 'retry' && result.retryAfterMs === undefined) this.#backingOff.set(message.id, message.target);
      }
      this.#settleSweeps(message, result);
      this.events.emit('outcome', message, result);
    }
    this.#arm();
    if (this.#moreWaiting && this.#freeCapacity() >= this.#maxBuffered / 2) void this.refill();
    this.#checkQuiet();
  }

  #outcomesFailed(err: unknown, batch: PendingOutcome[]): void {
    this.#logger.error({ err, count: batch.length }, 'recording delivery outcomes failed; trying again shortly');
    if (this.#state === 'running') this.#retryLater(() => this.#outcomes.schedule());
    this.#checkQuiet();
  }

  // ---- changes made through the API ------------------------------------------

  async #change(id: string, change: Promise<ChangeOutcome>): Promise<ChangeOutcome> {
    const outcome = await change;
    if (outcome.kind !== 'ok') return outcome;
    const message = outcome.message;
    this.#drop(id);
    if (this.#state === 'running' && message.leaseOwner === this.ownerId && message.status === 'scheduled') {
      this.#buffer.put(entryOf(message));
      this.#arm();
    }
    return outcome;
  }

  /** A claim for one message: always when it is already ours (no extra room needed), else when there is room. */
  #claimFor(id: string, now: number): ClaimRequest | undefined {
    if (this.#state !== 'running') return undefined;
    return this.#buffer.has(id) || this.#freeCapacity() >= 1 ? this.#claimRequest(now) : undefined;
  }

  #claimRequest(now: number): ClaimRequest {
    return { owner: this.ownerId, leaseExpiresAt: now + this.#leaseMs, dueBefore: now + this.#horizonMs };
  }

  /** Forgets a buffered entry; a sweep waiting for it stops waiting. */
  #drop(id: string): void {
    this.#buffer.delete(id);
    this.#flow.forget(id);
    this.#backingOff.delete(id);
    this.#settleSweepsWithout(id);
  }

  // ---- bookkeeping -------------------------------------------------------------

  /** Room for more claims: every message this owner holds counts, wherever it is in the pipeline. */
  #freeCapacity(): number {
    return this.#maxBuffered - this.#holdings.total;
  }

  #isIdle(): boolean {
    // parked messages are due and waiting: not idle while a target holds any back
    if (!this.#holdings.nothingStarted || this.#holdings.count('throttled') > 0) return false;
    const next = this.#buffer.peek();
    return next === undefined || next.dueAt > this.#clock.now() || this.#state !== 'running';
  }

  /** Wakes stop() and whenIdle() callers when the pipeline has gone quiet. */
  #checkQuiet(): void {
    if (this.#quietWaiters.length > 0 && this.#holdings.quiet) {
      const waiters = this.#quietWaiters;
      this.#quietWaiters = [];
      for (const wake of waiters) wake();
    }
    if (this.#isIdle()) this.events.emit('idle');
  }

  #settleDropped(entries: BufferEntry[], started: StoredMessage[]): void {
    const startedIds = new Set(started.map((message) => message.id));
    for (const entry of entries) {
      if (startedIds.has(entry.id)) continue;
      this.#flow.finished(entry.id);
      this.#settleSweepsWithout(entry.id);
    }
  }

  #settleSweeps(message: StoredMessage, result: AttemptResult): void {
    for (const sweep of this.#sweeps) {
      if (sweep.waiting.delete(message.id)) {
        sweep.results.push({ message, result });
        if (sweep.waiting.size === 0) this.#finishSweep(sweep);
      }
    }
  }

  #settleSweepsWithout(id: string): void {
    for (const sweep of this.#sweeps) {
      if (sweep.waiting.delete(id) && sweep.waiting.size === 0) this.#finishSweep(sweep);
    }
  }

  #finishSweep(sweep: SweepCollector): void {
    this.#sweeps.delete(sweep);
    sweep.resolve({ results: sweep.results });
  }

  // ---- shutdown ------------------------------------------------------------------

  async #stop(): Promise<void> {
    if (this.#state === 'new') {
      this.#state = 'stopped';
      return;
    }
    this.#state = 'stopping';
    this.#cancelTimers();

    await this.#waitForQuiet();
    await this.#outcomes.drain(); // recorded, so they are not delivered again after the release
    // claims made by calls still under way must land before the release, or they would outlive this owner
    await Promise.allSettled([this.#refilling, ...this.#claimingCalls]);

    this.#state = 'stopped';
    this.#backingOff.clear();
    const abandoned = this.#holdings.count('inFlight', 'early', 'ready', 'pending');
    this.#buffer.clear();
    this.#flow.clear();
    this.#early.clear();
    this.#ready.clear();
    this.#outcomes.discardPending();
    for (const sweep of [...this.#sweeps]) this.#finishSweep(sweep);
    try {
      await this.#store.releaseClaims(this.ownerId);
    } catch (err) {
      this.#logger.error({ err }, 'releasing claims failed; they expire after one lease time');
    }
    this.#logger.info({ owner: this.ownerId, handedBack: abandoned }, 'scheduling engine stopped');
    this.events.emit('idle');
  }

  #cancelTimers(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#early.cancelTimer();
    this.#flow.cancelTimer();
    for (const timer of [...this.#periodic, ...this.#retryTimers]) timer.cancel();
    this.#periodic = [];
    this.#retryTimers.clear();
    this.#outcomes.cancelTimer();
    this.#unsubscribeWake?.();
  }

  /**
   * Stops at once, after the store halted (a failed fsync): no more
   * deliveries and no more store calls, not even handing back claims, which
   * the store could not promise to write. Answers of deliveries in flight are
   * ignored; the next process on the store delivers those messages again
   * (the receiver dedupes them by id).
   */
  halt(reason: Error): void {
    if (this.#state === 'stopped') return;
    const wasRunning = this.#state !== 'new';
    this.#state = 'stopped';
    this.#stopped ??= Promise.resolve();
    this.#cancelTimers();
    this.#buffer.clear();
    this.#flow.clear();
    this.#backingOff.clear();
    this.#early.clear();
    this.#ready.clear();
    this.#outcomes.discardPending();
    for (const sweep of [...this.#sweeps]) this.#finishSweep(sweep);
    for (const wake of this.#quietWaiters.splice(0)) wake();
    if (wasRunning) this.#logger.error({ err: reason, owner: this.ownerId }, 'scheduling engine halted: the store can no longer promise durability');
    this.events.emit('idle');
  }

  /** Waits for the starter, deliveries in flight and the write in progress; true when the grace period ran out first. */
  #waitForQuiet(): Promise<boolean> {
    if (this.#holdings.quiet) return Promise.resolve(false);
    return new Promise((resolve) => {
      const grace = this.#clock.setTimer(() => resolve(true), this.#stopGraceMs);
      this.#quietWaiters.push(() => {
        grace.cancel();
        resolve(false);
      });
    });
  }
}

/** What a deadline is read from: a buffered entry or a started message alike (no copy on the delivery path). */
type Deadlined = Pick<BufferEntry, 'target' | 'dueAt' | 'scheduledAt' | 'deliverBy'>;

function entryOf(message: StoredMessage): BufferEntry {
  return { id: message.id, version: message.version, dueAt: message.dueAt, target: message.target, scheduledAt: message.scheduledAt, deliverBy: message.deliverBy };
}
