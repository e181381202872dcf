import type { ScheduleJson } from '../protocol/wire.ts';
import { createHash } from 'node:crypto';
import type { Clock, Timer } from '../clock.ts';
import { ValidationError } from '../errors.ts';
import {
  formatEvery, lastOccurrencesBefore, localTime, nextOccurrence, occurrencesBetween, type Occurrence,
} from '../protocol/recurrence.ts';
import { recurrenceOf, type ValidScheduleSettings } from '../protocol/schedules.ts';
import type { EngineLogger, SchedulingEngine } from './engine.ts';
import type { DispatcherStore, SchedulePlan, StoredSchedule } from './store.ts';

export { previewOccurrences, recurrenceOf, type PreviewItem } from '../protocol/schedules.ts';

/**
 * Schedules on the dispatcher: turning due occurrences into ordinary messages
 * (the materialiser), and the arithmetic the API needs (next fire time,
 * previews, which occurrences a change withdraws).
 *
 * Exactly once per occurrence: an occurrence's message id is derived from the
 * schedule id and the instant (occurrenceMessageId), and the store inserts it
 * and advances the schedule's nextFireAt in one transaction, skipping an id
 * that exists. A dispatcher killed at any point either committed both or
 * neither; two dispatchers of a pool never materialise one schedule at once
 * (FOR UPDATE SKIP LOCKED), and if they did the second insert would be a
 * no-op. From then on the message is the engine's like any other: leased,
 * delivered at its instant to the millisecond, retried, dead-lettered.
 */

/**
 * Occurrences are materialised this long before they are due: long enough
 * that the engine has claimed and buffered the message when it comes due (a
 * materialiser run every second, a refill right after), short enough that a
 * change or a pause withdraws at most a few seconds' worth, and that a
 * dispatcher killed mid-way leaves little for the others to take over.
 */
export const DEFAULT_LEAD_MS = 5000;

/** How often the materialiser looks for due schedules. */
export const DEFAULT_MATERIALIZE_INTERVAL_MS = 1000;

/**
 * An occurrence is "missed" (and the schedule's catchUp policy decides about
 * it) when it was due more than this long ago when the materialiser got to
 * it: after downtime, not after a busy second. Occurrences late by less go
 * out as usual, late.
 */
export const DEFAULT_MISSED_AFTER_MS = 60_000;

/** Schedules per materialiseDue call (one transaction): ~20 µs a message on SQLite, so a chunk holds the event loop ~5 ms. */
const MATERIALIZE_CHUNK = 256;

/** Occurrences planned for one schedule at once; a faster rule continues at the next run. */
const MAX_OCCURRENCES_PER_PLAN = 1000;

/**
 * The message id of a schedule's occurrence at `at`: UUIDv7-shaped, its
 * timestamp the occurrence instant (so occurrences append in time order, as
 * other messages do), its other bits from a hash of the schedule id. The same
 * schedule and instant give the same id, so a second materialisation is a no-op.
 */
export function occurrenceMessageId(scheduleId: string, at: number): string {
  const hash = createHash('sha256').update(scheduleId).digest();
  const bytes = Buffer.alloc(16);
  bytes.writeUIntBE(at, 0, 6);
  hash.copy(bytes, 6, 0, 10);
  bytes[6] = 0x70 | (bytes[6]! & 0x0f);
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The first occurrence after `after` the schedule may still post, or null:
 * none left (endAt passed, maxOccurrences reached).
 */
export function nextFireAfter(schedule: ValidScheduleSettings & { createdAt: number; occurrences: number }, after: number): number | null {
  if (schedule.maxOccurrences !== null && schedule.occurrences >= schedule.maxOccurrences) return null;
  return nextOccurrence(recurrenceOf(schedule), after)?.at ?? null;
}

/**
 * Refuses settings whose rule and window leave no occurrence after `now`: a
 * schedule that would be stored and never fire (endAt before the first
 * occurrence; a startAt past the last year croner searches, 2999; a pattern
 * that ends). A 400 naming endAt, startAt or the rule.
 */
export function requireFireable(settings: ValidScheduleSettings & { createdAt: number }, now: number): void {
  const first = nextOccurrence({ ...recurrenceOf(settings), endAt: null }, now);
  const iso = (ms: number) => new Date(ms).toISOString();
  if (first === undefined) {
    const field = settings.startAt !== null ? 'startAt' : settings.cron !== null ? 'cron' : 'every';
    const from = settings.startAt !== null && settings.startAt > now ? `startAt (${iso(settings.startAt)})` : `now (${iso(now)})`;
    throw new ValidationError(`the rule has no occurrence from ${from} on: the schedule would never fire (cron rules are matched up to the end of the year 2999)`, field);
  }
  if (settings.endAt !== null && first.at > settings.endAt) {
    throw new ValidationError(`endAt (${iso(settings.endAt)}) is before the rule's first occurrence (${iso(first.at)}): the schedule would never fire; move endAt later or startAt earlier`, 'endAt');
  }
}

/** The settings that decide which instants a schedule's rule gives. */
const RULE_FIELDS = ['cron', 'everyMs', 'timeZone', 'startAt', 'endAt', 'dstGap', 'dstOverlap'] as const;

/** Whether `changed` has another rule, zone, window or DST policy than `schedule`: a change that must leave it fireable. */
export function changesRule(schedule: ValidScheduleSettings, changed: ValidScheduleSettings): boolean {
  return RULE_FIELDS.some((field) => schedule[field] !== changed[field]);
}

/**
 * Whether `changed` fires at other times than `schedule`: its rule, or how
 * many times or whether it fires (text and catch-up settings do not count).
 */
export function changesTiming(schedule: ValidScheduleSettings, changed: ValidScheduleSettings): boolean {
  return changesRule(schedule, changed) || schedule.maxOccurrences !== changed.maxOccurrences || schedule.paused !== changed.paused;
}

/**
 * What to materialise of a due schedule, `now` being the time and
 * `dueBefore` how far ahead: every occurrence from nextFireAt up to
 * dueBefore, except that those due before `now - missedAfterMs` (an outage)
 * follow the catchUp policy: `latest` posts the last of them, `all` the last
 * catchUpMax of them, `none` none. maxOccurrences caps the lot.
 */
export function planSchedule(schedule: StoredSchedule, now: number, dueBefore: number, missedAfterMs: number): SchedulePlan {
  const rule = recurrenceOf(schedule);
  const first = schedule.nextFireAt!;
  const cutoff = now - missedAfterMs;
  let fires: Occurrence[] = [];
  let after = first - 1;
  if (first < cutoff) {
    const keep = schedule.catchUp === 'latest' ? 1 : schedule.catchUp === 'all' ? schedule.catchUpMax : 0;
    fires = lastOccurrencesBefore(rule, first, cutoff, keep);
    after = cutoff - 1;
  }
  const current = occurrencesBetween(rule, after, dueBefore, MAX_OCCURRENCES_PER_PLAN);
  fires = fires.concat(current);
  const remaining = schedule.maxOccurrences === null ? Infinity : Math.max(0, schedule.maxOccurrences - schedule.occurrences);
  let nextFireAt: number | null;
  if (fires.length >= remaining) {
    fires = fires.slice(0, remaining);
    nextFireAt = null;
  } else {
    // a full plan continues after its last occurrence; otherwise everything up to dueBefore is done
    const resumeAfter = current.length === MAX_OCCURRENCES_PER_PLAN ? current.at(-1)!.at : Math.max(dueBefore, after);
    nextFireAt = nextOccurrence(rule, resumeAfter)?.at ?? null;
  }
  return {
    messages: fires.map(({ at }) => ({ id: occurrenceMessageId(schedule.id, at), username: schedule.username, message: schedule.message, scheduledAt: at, idempotencyKey: null })),
    nextFireAt,
    lastFireAt: fires.at(-1)?.at ?? schedule.lastFireAt,
  };
}

/**
 * The ids of occurrences materialised ahead and not yet due (in (now,
 * lastFireAt]): what a change, a pause or a delete withdraws. At most the
 * lead's worth.
 */
export function pendingOccurrenceIds(schedule: StoredSchedule, now: number): string[] {
  return pendingOccurrenceTimes(schedule, now).map((at) => occurrenceMessageId(schedule.id, at));
}

/** The instants of pendingOccurrenceIds, in order. */
export function pendingOccurrenceTimes(schedule: StoredSchedule, now: number): number[] {
  if (schedule.lastFireAt === null || schedule.lastFireAt <= now) return [];
  return occurrencesBetween(recurrenceOf(schedule), now, schedule.lastFireAt, MAX_OCCURRENCES_PER_PLAN).map(({ at }) => at);
}

/** The API's view of a schedule. */
export function toScheduleJson(schedule: StoredSchedule): ScheduleJson {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  const status = schedule.paused ? 'paused' : schedule.nextFireAt === null ? 'finished' : 'active';
  return {
    id: schedule.id,
    target: schedule.target,
    username: schedule.username,
    message: schedule.message,
    cron: schedule.cron,
    every: schedule.everyMs === null ? null : formatEvery(schedule.everyMs),
    timeZone: schedule.timeZone,
    startAt: iso(schedule.startAt),
    endAt: iso(schedule.endAt),
    maxOccurrences: schedule.maxOccurrences,
    dstPolicy: { gap: schedule.dstGap, overlap: schedule.dstOverlap },
    catchUp: schedule.catchUp,
    catchUpMax: schedule.catchUpMax,
    status,
    paused: schedule.paused,
    nextFireAt: status === 'active' ? iso(schedule.nextFireAt) : null,
    next: status === 'active' ? localTime(schedule.nextFireAt!, schedule.timeZone) : null,
    occurrences: schedule.occurrences,
    lastFireAt: iso(schedule.lastFireAt),
    idempotencyKey: schedule.idempotencyKey,
    version: schedule.version,
    createdAt: new Date(schedule.createdAt).toISOString(),
    updatedAt: new Date(schedule.updatedAt).toISOString(),
  };
}

export interface MaterializerOptions {
  store: DispatcherStore;
  engine: SchedulingEngine;
  clock: Clock;
  logger?: EngineLogger;
  leadMs?: number;
  intervalMs?: number;
  missedAfterMs?: number;
}

export interface MaterializerRun {
  schedules: number;
  created: number;
}

/**
 * Every `intervalMs` (and when woken): materialises every occurrence due
 * within `leadMs`, chunk by chunk, then asks the engine to refill so it
 * claims the new messages at once. On start it runs at once: a restarted
 * dispatcher applies each schedule's catch-up policy before anything else.
 */
export class ScheduleMaterializer {
  readonly #store: DispatcherStore;
  readonly #engine: SchedulingEngine;
  readonly #clock: Clock;
  readonly #logger: EngineLogger | undefined;
  readonly #leadMs: number;
  readonly #intervalMs: number;
  readonly #missedAfterMs: number;
  #timer: Timer | undefined;
  #running: Promise<MaterializerRun> | undefined;
  #again = false;
  #state: 'new' | 'running' | 'stopped' = 'new';

  constructor(options: MaterializerOptions) {
    this.#store = options.store;
    this.#engine = options.engine;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#leadMs = options.leadMs ?? DEFAULT_LEAD_MS;
    this.#intervalMs = options.intervalMs ?? DEFAULT_MATERIALIZE_INTERVAL_MS;
    this.#missedAfterMs = options.missedAfterMs ?? DEFAULT_MISSED_AFTER_MS;
  }

  get leadMs(): number {
    return this.#leadMs;
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') return;
    this.#state = 'running';
    await this.run();
    this.#schedule();
  }

  /** Runs now (or once more right after the run in progress); resolves with what that run did. */
  run(): Promise<MaterializerRun> {
    if (this.#state !== 'running') return Promise.resolve({ schedules: 0, created: 0 });
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async stop(): Promise<void> {
    this.#state = 'stopped';
    this.#timer?.cancel();
    this.#timer = undefined;
    await this.#running?.catch(() => {});
  }

  #schedule(): void {
    if (this.#state !== 'running') return;
    this.#timer = this.#clock.setTimer(() => {
      this.#timer = undefined;
      void this.run().finally(() => this.#schedule());
    }, this.#intervalMs);
  }

  async #loop(): Promise<MaterializerRun> {
    const total = { schedules: 0, created: 0 };
    do {
      this.#again = false;
      for (;;) {
        if (this.#state !== 'running') return total;
        const now = this.#clock.now();
        let result: Awaited<ReturnType<DispatcherStore['materializeDue']>>;
        try {
          result = await this.#store.materializeDue(now + this.#leadMs, MATERIALIZE_CHUNK, now, (schedule) => this.#plan(schedule, now));
        } catch (err) {
          this.#logger?.error({ err }, 'materialising schedules failed; the next run tries again');
          return total;
        }
        total.schedules += result.schedules;
        total.created += result.created.length;
        // claimed now, not at the next periodic refill: they are due within seconds
        if (result.created.length > 0) await this.#engine.refill();
        if (result.schedules < MATERIALIZE_CHUNK) break;
      }
    } while (this.#again);
    return total;
  }

  #plan(schedule: StoredSchedule, now: number): SchedulePlan {
    try {
      return planSchedule(schedule, now, now + this.#leadMs, this.#missedAfterMs);
    } catch (err) {
      // a bug must not stall every other schedule: this one is looked at again in a minute
      this.#logger?.error({ err, schedule: schedule.id }, 'planning a schedule failed; trying it again in a minute');
      return { messages: [], nextFireAt: now + 60_000, lastFireAt: schedule.lastFireAt };
    }
  }
}
