import { MESSAGE_STATUSES, type MessageStatus } from './store.ts';

/**
 * The dispatcher's counters and lateness histogram, rendered in the
 * Prometheus text format (version 0.0.4) for GET /metrics. Gauges that live
 * in the store or the engine (counts by status, buffered) are passed to
 * `render` by the caller, so this module never touches either.
 */

export type OutcomeKind = 'delivered' | 'retry' | 'dead';

/**
 * Lateness bucket bounds in ms. Fine below 10 ms because the target is
 * p50 <= 2 ms and p99 <= 10 ms; coarse above, where only "how bad" matters
 * (a restart after downtime makes minutes of lateness).
 */
const LATENESS_BUCKETS_MS = [0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000];

export class DispatcherMetrics {
  #outcomes: Record<OutcomeKind, number> = { delivered: 0, retry: 0, dead: 0 };
  /** Count per bucket (not cumulative); the last slot is +Inf. */
  #bucketCounts = new Array<number>(LATENESS_BUCKETS_MS.length + 1).fill(0);
  #latenessSumMs = 0;
  #latenessCount = 0;

  recordOutcome(kind: OutcomeKind): void {
    this.#outcomes[kind]++;
  }

  /** Lateness of a first delivery attempt: when it started minus when it could first have gone out. */
  observeLateness(ms: number): void {
    const value = ms > 0 ? ms : 0;
    let bucket = 0;
    while (bucket < LATENESS_BUCKETS_MS.length && value > LATENESS_BUCKETS_MS[bucket]!) bucket++;
    this.#bucketCounts[bucket]!++;
    this.#latenessSumMs += value;
    this.#latenessCount++;
  }

  /** Totals so far, for tests and logs. */
  snapshot(): { outcomes: Record<OutcomeKind, number>; latenessCount: number; latenessSumMs: number } {
    return { outcomes: { ...this.#outcomes }, latenessCount: this.#latenessCount, latenessSumMs: this.#latenessSumMs };
  }

  render(gauges: { byStatus: Record<MessageStatus, number>; buffered: number }): string {
    const lines: string[] = [];
    lines.push('# HELP psched_messages Messages in the store by status.');
    lines.push('# TYPE psched_messages gauge');
    for (const status of MESSAGE_STATUSES) lines.push(`psched_messages{status="${status}"} ${gauges.byStatus[status] ?? 0}`);

    lines.push('# HELP psched_buffered_messages Messages held in this dispatcher\'s in-memory buffer.');
    lines.push('# TYPE psched_buffered_messages gauge');
    lines.push(`psched_buffered_messages ${gauges.buffered}`);

    lines.push('# HELP psched_deliveries_total Delivery attempts by outcome.');
    lines.push('# TYPE psched_deliveries_total counter');
    for (const kind of ['delivered', 'retry', 'dead'] as const) lines.push(`psched_deliveries_total{outcome="${kind}"} ${this.#outcomes[kind]}`);

    lines.push('# HELP psched_delivery_lateness_seconds Start of a first delivery attempt minus its due time (or its creation, when scheduled in the past).');
    lines.push('# TYPE psched_delivery_lateness_seconds histogram');
    let cumulative = 0;
    for (let i = 0; i < LATENESS_BUCKETS_MS.length; i++) {
      cumulative += this.#bucketCounts[i]!;
      lines.push(`psched_delivery_lateness_seconds_bucket{le="${LATENESS_BUCKETS_MS[i]! / 1000}"} ${cumulative}`);
    }
    cumulative += this.#bucketCounts[LATENESS_BUCKETS_MS.length]!;
    lines.push(`psched_delivery_lateness_seconds_bucket{le="+Inf"} ${cumulative}`);
    lines.push(`psched_delivery_lateness_seconds_sum ${this.#latenessSumMs / 1000}`);
    lines.push(`psched_delivery_lateness_seconds_count ${this.#latenessCount}`);
    return lines.join('\n') + '\n';
  }
}
