import type { ScheduleJson as WireScheduleJson } from '../protocol/wire.ts';
import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.ts';
import { NotSupportedError, UnavailableError, ValidationError } from '../errors.ts';
import { parseLimit } from '../protocol/paging.ts';
import {
  parsePreviewCount, previewOccurrences, validateScheduleCreate, validateSchedulePatch, validateSchedulePreview,
  type PreviewItem, type ValidScheduleSettings,
} from '../protocol/schedules.ts';
import { mergeListings, resourcePath, withDispatcher, type DispatcherAnswer, type DispatcherPool } from './pool.ts';

/**
 * Schedules (recurring messages) as the main server offers them
 * (/v1/schedules, the page, the CLI): passed through to the dispatcher pool
 * as messages are. A new schedule is checked here, then sent normalised
 * (times as RFC 3339 UTC, the zone as Intl names it) with an idempotency key
 * to one dispatcher, failing over as a message does (DispatcherPool.create):
 * a retry is never stored twice. Reads and changes go to whichever
 * dispatcher knows the schedule (DispatcherPool.find); a pool on one
 * PostgreSQL database shares its schedules, and any dispatcher of it
 * materialises them.
 *
 * A preview is computed here, from the same rule code the dispatchers run
 * (../protocol/recurrence.ts): the page shows it before anything is saved.
 */

export const SCHEDULE_LIST_LIMIT = { fallback: 50, max: 200 } as const;

/** A dispatcher's schedule plus the dispatcher that holds it. */
export interface ScheduleJson extends WireScheduleJson {
  dispatcher: string;
}

export interface SchedulePage {
  items: ScheduleJson[];
  nextCursor: string | null;
  unavailable: { dispatcher: string; message: string }[];
}

export class Schedules {
  #pool: DispatcherPool;
  #clock: Clock;
  #timeZone: string;
  #original: boolean;

  constructor(pool: DispatcherPool, clock: Clock, timeZone: string, protocol: 'json' | 'legacy' = 'json') {
    this.#pool = pool;
    this.#clock = clock;
    this.#timeZone = timeZone;
    this.#original = protocol === 'legacy';
  }

  async create(input: unknown): Promise<DispatcherAnswer> {
    if (this.#original) throw noSchedules(this.#pool.urls);
    const valid = validateScheduleCreate(input, { timeZone: this.#timeZone });
    const idempotencyKey = valid.idempotencyKey ?? randomUUID();
    const body = { ...wireSettings(valid), username: valid.username, message: valid.message, idempotencyKey };
    return withDispatcher(await this.#pool.create({ method: 'POST', path: '/v1/schedules', body }, { idempotencyKey, clientKey: valid.idempotencyKey !== null }));
  }

  /**
   * Every dispatcher's schedules merged in id order, duplicates (a shared
   * database) dropped. The cursor is the last id returned: every dispatcher
   * continues after it.
   */
  async list(query: { limit?: unknown; cursor?: unknown }): Promise<SchedulePage> {
    if (this.#original) throw noSchedules(this.#pool.urls);
    const limit = parseLimit(query.limit === '' ? undefined : query.limit, SCHEDULE_LIST_LIMIT);
    const params = new URLSearchParams({ limit: String(limit) });
    if (query.cursor !== undefined && query.cursor !== '') {
      if (typeof query.cursor !== 'string') throw new ValidationError('cursor must be a string', 'cursor');
      params.set('cursor', query.cursor);
    }
    const answers = await this.#pool.all({ method: 'GET', path: `/v1/schedules?${params}` });
    const { items, more, unavailable } = mergeListings(answers, (answer) => {
      const page = answer.body as { items?: WireScheduleJson[]; nextCursor?: string | null } | null;
      if (answer.status !== 200 || !Array.isArray(page?.items)) throw new UnavailableError(`Dispatcher ${answer.dispatcher} answered HTTP ${answer.status} to a schedule listing`);
      return { items: page.items, nextCursor: page.nextCursor ?? null };
    }, (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0), limit);
    return { items, nextCursor: more && items.length > 0 ? items.at(-1)!.id : null, unavailable };
  }

  async get(id: string): Promise<DispatcherAnswer> {
    if (this.#original) throw noSchedules(this.#pool.urls);
    return withDispatcher(await this.#pool.find({ method: 'GET', path: schedulePath(id) }));
  }

  async previewSaved(id: string, count: unknown): Promise<DispatcherAnswer> {
    if (this.#original) throw noSchedules(this.#pool.urls);
    const n = parsePreviewCount(count);
    return this.#pool.find({ method: 'GET', path: `${schedulePath(id)}/preview?count=${n}` });
  }

  /**
   * The fields are checked here (their zone may be the schedule's, which the
   * dispatcher knows: a time without offset is read there), then sent as given.
   */
  async update(id: string, input: unknown): Promise<DispatcherAnswer> {
    if (this.#original) throw noSchedules(this.#pool.urls);
    validateSchedulePatch(input, { scheduleTimeZone: 'UTC' });
    return withDispatcher(await this.#pool.find({ method: 'PATCH', path: schedulePath(id), body: input }));
  }

  async remove(id: string): Promise<DispatcherAnswer> {
    if (this.#original) throw noSchedules(this.#pool.urls);
    return this.#pool.find({ method: 'DELETE', path: schedulePath(id) });
  }

  /** The next fire instants of a rule not yet saved, computed here. */
  preview(input: unknown): { timeZone: string; items: PreviewItem[] } {
    const body = typeof input === 'object' && input !== null ? (input as Record<string, unknown>) : {};
    const count = parsePreviewCount(body.count);
    const settings = validateSchedulePreview(input, { timeZone: this.#timeZone });
    const now = this.#clock.now();
    return { timeZone: settings.timeZone, items: previewOccurrences({ ...settings, createdAt: now, occurrences: 0 }, now, count) };
  }
}

/** A schedule's settings as sent on: times as RFC 3339 UTC, the rule as the dispatcher reads it. */
function wireSettings(valid: ValidScheduleSettings): Record<string, unknown> {
  const iso = (ms: number | null) => (ms === null ? undefined : new Date(ms).toISOString());
  const body: Record<string, unknown> = {
    timeZone: valid.timeZone,
    dstPolicy: { gap: valid.dstGap, overlap: valid.dstOverlap },
    catchUp: valid.catchUp,
    catchUpMax: valid.catchUpMax,
    paused: valid.paused,
  };
  if (valid.cron !== null) body.cron = valid.cron;
  else body.every = `${Math.round(valid.everyMs! / 1000)}s`;
  if (valid.startAt !== null) body.startAt = iso(valid.startAt);
  if (valid.endAt !== null) body.endAt = iso(valid.endAt);
  if (valid.maxOccurrences !== null) body.maxOccurrences = valid.maxOccurrences;
  return body;
}

function schedulePath(id: string): string {
  return resourcePath('/v1/schedules', id);
}

function noSchedules(urls: readonly string[]): NotSupportedError {
  const which = urls.length === 1 ? `The original dispatcher at ${urls[0]} has` : `The original dispatchers at ${urls.join(', ')} have`;
  return new NotSupportedError(`${which} no recurring messages (--dispatcher-protocol legacy): schedules need psched dispatchers`);
}
