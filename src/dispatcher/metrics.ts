import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { serviceRegistry } from '../metrics.ts';
import type { TargetFlowStats } from './flow-control.ts';
import { MESSAGE_STATUSES, type MessageStatus } from './store.ts';

/**
 * The dispatcher's counters and lateness histogram (prom-client), with the
 * process and runtime metrics, for GET /metrics. Gauges that live in the
 * store or the engine (counts by status, buffered) are passed to `render` by
 * the caller, so this module never touches either.
 */

/** What became of a message the engine took up: an attempt's outcome, or expired unsent (past its deliver-by). */
export const OUTCOME_KINDS = ['delivered', 'retry', 'dead', 'expired'] as const;
export type OutcomeKind = (typeof OUTCOME_KINDS)[number];

/** A target's flow-control numbers at a scrape: the engine's FlowControl stats, named. */
export type TargetGauges = { target: string } & Pick<TargetFlowStats, 'backlog' | 'inFlight' | 'throttledMs'>;

/**
 * Lateness bucket bounds in seconds. Fine below 10 ms because the target is
 * p50 <= 2 ms and p99 <= 10 ms; coarse above, where only "how bad" matters
 * (a restart after downtime makes minutes of lateness).
 */
const LATENESS_BUCKETS_S = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** One minute of this dispatcher's deliveries, for the console's charts. */
export interface MinuteStats {
  /** Epoch ms of the minute's start. */
  start: number;
  delivered: number;
  retry: number;
  dead: number;
  /** Not sent: past their deliver-by. */
  expired: number;
  /** First attempts started in this minute, and their lateness (ms). */
  latenessCount: number;
  latenessSumMs: number;
  latenessMaxMs: number;
}

function emptyMinute(start: number): MinuteStats {
  return { start, delivered: 0, retry: 0, dead: 0, expired: 0, latenessCount: 0, latenessSumMs: 0, latenessMaxMs: 0 };
}

/** Minutes of history kept for the charts: the last hour. */
const MINUTES_KEPT = 60;
const MINUTE_MS = 60_000;

/**
 * Per-minute totals of the last hour in a ring of 60 slots: O(1) per
 * outcome, fixed memory, nothing written anywhere. The console's charts read
 * them; they are this process's numbers (a pool's other dispatchers keep their own).
 */
class MinuteSeries {
  #slots: MinuteStats[] = [];

  #slot(at: number): MinuteStats {
    const start = Math.floor(at / MINUTE_MS) * MINUTE_MS;
    const index = Math.floor(start / MINUTE_MS) % MINUTES_KEPT;
    let slot = this.#slots[index];
    if (!slot || slot.start !== start) {
      slot = emptyMinute(start);
      this.#slots[index] = slot;
    }
    return slot;
  }

  outcome(kind: OutcomeKind, at: number): void {
    this.#slot(at)[kind]++;
  }

  lateness(ms: number, at: number): void {
    const slot = this.#slot(at);
    slot.latenessCount++;
    slot.latenessSumMs += ms;
    if (ms > slot.latenessMaxMs) slot.latenessMaxMs = ms;
  }

  /** The 60 minutes up to and including now's, oldest first; minutes without a delivery are zeros. */
  lastHour(now: number): MinuteStats[] {
    const current = Math.floor(now / MINUTE_MS) * MINUTE_MS;
    const minutes: MinuteStats[] = [];
    for (let i = MINUTES_KEPT - 1; i >= 0; i--) {
      const start = current - i * MINUTE_MS;
      const slot = this.#slots[Math.floor(start / MINUTE_MS) % MINUTES_KEPT];
      minutes.push(slot && slot.start === start ? { ...slot } : emptyMinute(start));
    }
    return minutes;
  }
}

export class DispatcherMetrics {
  readonly registry: Registry = serviceRegistry();
  readonly #messages = new Gauge({ name: 'psched_messages', help: 'Messages in the store by status.', labelNames: ['status'], registers: [this.registry] });
  readonly #buffered = new Gauge({ name: 'psched_buffered_messages', help: 'Messages held in this dispatcher\'s in-memory buffer.', registers: [this.registry] });
  readonly #deliveries = new Counter({ name: 'psched_deliveries_total', help: 'Delivery attempts by outcome.', labelNames: ['outcome'], registers: [this.registry] });
  readonly #lateness = new Histogram({
    name: 'psched_delivery_lateness_seconds',
    help: 'Start of a first delivery attempt minus its due time (or its creation, when scheduled in the past).',
    buckets: LATENESS_BUCKETS_S,
    registers: [this.registry],
  });
  readonly #targetDeliveries = new Counter({ name: 'psched_target_deliveries_total', help: 'Delivery attempts by target and outcome.', labelNames: ['target', 'outcome'], registers: [this.registry] });
  readonly #targetLateness = new Histogram({
    name: 'psched_target_delivery_lateness_seconds',
    help: 'Lateness of first delivery attempts (as psched_delivery_lateness_seconds), by target: a throttled target\'s backlog shows here.',
    labelNames: ['target'],
    buckets: LATENESS_BUCKETS_S,
    registers: [this.registry],
  });
  readonly #targetBacklog = new Gauge({ name: 'psched_target_backlog', help: 'Due messages waiting for their target\'s flow control (rate, in-flight cap, Retry-After pause).', labelNames: ['target'], registers: [this.registry] });
  readonly #targetInFlight = new Gauge({ name: 'psched_target_in_flight', help: 'Deliveries started and not yet answered, by target.', labelNames: ['target'], registers: [this.registry] });
  readonly #targetThrottled = new Counter({ name: 'psched_target_throttled_seconds_total', help: 'Time a target spent with a backlog held back by its flow control.', labelNames: ['target'], registers: [this.registry] });
  /** What #targetThrottled showed at the last render, per target: the counter grows by the difference. */
  #throttledShown = new Map<string, number>();
  /** Plain totals for snapshot(): prom-client reads its own asynchronously. */
  #outcomes: Record<OutcomeKind, number> = { delivered: 0, retry: 0, dead: 0, expired: 0 };
  #latenessSumMs = 0;
  #latenessCount = 0;
  readonly #minutes = new MinuteSeries();

  constructor() {
    // every outcome shows from the start, at 0, so a rate() over it never begins with a gap
    for (const kind of OUTCOME_KINDS) this.#deliveries.inc({ outcome: kind }, 0);
  }

  /** An attempt's outcome, `at` (epoch ms, the engine's clock) when it came back. */
  recordOutcome(kind: OutcomeKind, at: number, target: string): void {
    this.#outcomes[kind]++;
    this.#deliveries.inc({ outcome: kind });
    this.#targetDeliveries.inc({ target, outcome: kind });
    this.#minutes.outcome(kind, at);
  }

  /** Lateness of a first delivery attempt: when it started (`at`) minus when it could first have gone out. */
  observeLateness(ms: number, at: number, target: string): void {
    const value = ms > 0 ? ms : 0;
    this.#lateness.observe(value / 1000);
    this.#targetLateness.observe({ target }, value / 1000);
    this.#latenessSumMs += value;
    this.#latenessCount++;
    this.#minutes.lateness(value, at);
  }

  /** Drops a removed target's series: a thousand targets come and go without /metrics keeping each forever. */
  forgetTarget(target: string): void {
    for (const outcome of OUTCOME_KINDS) this.#targetDeliveries.remove({ target, outcome });
    this.#targetLateness.remove({ target });
    this.#targetBacklog.remove({ target });
    this.#targetInFlight.remove({ target });
    this.#targetThrottled.remove({ target });
    this.#throttledShown.delete(target);
  }

  /** Per-minute deliveries and lateness of the last hour, oldest first (the console's charts). */
  lastHour(now: number): MinuteStats[] {
    return this.#minutes.lastHour(now);
  }

  /** Totals so far, for tests and logs. */
  snapshot(): { outcomes: Record<OutcomeKind, number>; latenessCount: number; latenessSumMs: number } {
    return { outcomes: { ...this.#outcomes }, latenessCount: this.#latenessCount, latenessSumMs: this.#latenessSumMs };
  }

  /** The Prometheus text exposition. */
  render(gauges: { byStatus: Record<MessageStatus, number>; buffered: number; targets?: Iterable<TargetGauges> }): Promise<string> {
    for (const status of MESSAGE_STATUSES) this.#messages.set({ status }, gauges.byStatus[status] ?? 0);
    this.#buffered.set(gauges.buffered);
    for (const { target, backlog, inFlight, throttledMs } of gauges.targets ?? []) {
      this.#targetBacklog.set({ target }, backlog);
      this.#targetInFlight.set({ target }, inFlight);
      const shown = this.#throttledShown.get(target) ?? 0;
      if (throttledMs > shown) this.#targetThrottled.inc({ target }, (throttledMs - shown) / 1000);
      else if (shown === 0) this.#targetThrottled.inc({ target }, 0);
      this.#throttledShown.set(target, Math.max(shown, throttledMs));
    }
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
