import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ConflictError, NotFoundError } from '../errors.ts';
import { parseLimit } from '../protocol/paging.ts';
import {
  checkScheduleWindow, parsePreviewCount, validateScheduleCreate, validateSchedulePatch, validateSchedulePreview,
} from '../protocol/schedules.ts';
import { uuidv7 } from '../ids.ts';
import type { DispatcherContext } from './context.ts';
import { requireVisible, scopeOf, splitTarget, targetForCreate, targetForList } from './principal.ts';
import { ValidationError } from '../errors.ts';
import { TARGET_NAME } from '../protocol/targets.ts';
import {
  changesRule, changesTiming, nextFireAfter, occurrenceMessageId, pendingOccurrenceIds, pendingOccurrenceTimes, previewOccurrences, requireFireable,
  toScheduleJson,
} from './schedules.ts';
import type { ScheduleChanges, StoredSchedule } from './store.ts';

/**
 * /v1/schedules: recurring messages. Input is checked in full
 * (../protocol/schedules.ts) before anything is stored. Changes are a
 * read-compute-write with a compare-and-set on the schedule's version, tried
 * again when the materialiser advanced it meanwhile.
 *
 * What a change does to occurrences already materialised (at most the
 * materialiser's lead, a few seconds, ahead): a change of text, rule, zone,
 * window or policy, a pause and a delete withdraw the ones not yet being
 * delivered. A change of when it fires (rule, zone, window, DST policy,
 * maxOccurrences, pause) works the next fire time out again from now; one
 * that leaves those alone (text, catch-up) keeps it, so nothing due and not
 * yet materialised is skipped, and the withdrawn occurrences are
 * materialised again with the new text. A resumed schedule fires from now
 * on: what fell due while it was paused is not caught up. A schedule whose
 * rule and window leave no occurrence after now is refused (400): created,
 * or changed in its rule, zone, window or DST policy.
 */

const SCHEDULE_BODY_LIMIT = 128 * 1024;
const PAGE_LIMIT = { fallback: 100, max: 1000 };
/** Compare-and-set attempts before a change gives up (the materialiser advances a schedule at most once a second). */
const CHANGE_ATTEMPTS = 5;

export function registerScheduleRoutes(v1: FastifyInstance, ctx: DispatcherContext): void {
  const { store, clock, config, schedules } = ctx;
  v1.post('/schedules', { bodyLimit: SCHEDULE_BODY_LIMIT }, async (request, reply) => {
    const { target: named, rest } = splitTarget(request.body);
    const valid = validateScheduleCreate(rest, { timeZone: config.timeZone });
    const target = await targetForCreate(request, ctx, named);
    const now = clock.now();
    const { idempotencyKey, ...settings } = valid;
    requireFireable({ ...settings, createdAt: now }, now);
    const nextFireAt = nextFireAfter({ ...settings, createdAt: now, occurrences: 0 }, now);
    const { schedule, created } = await store.insertSchedule({ id: uuidv7(now), target, ...settings, idempotencyKey, nextFireAt }, now);
    if (created && nextFireAt !== null && nextFireAt <= now + schedules.leadMs) void schedules.run();
    void reply.code(created ? 201 : 200).header('location', `/v1/schedules/${schedule.id}`);
    return toScheduleJson(schedule);
  });

  v1.get('/schedules', async (request) => {
    const query = request.query as Record<string, unknown>;
    const limit = parseLimit(query.limit === '' ? undefined : query.limit, PAGE_LIMIT);
    const afterId = typeof query.cursor === 'string' && query.cursor !== '' ? query.cursor : undefined;
    const target = targetForList(request, parseTarget(query.target));
    const rows = await store.listSchedules({ limit: limit + 1, afterId, target });
    const items = rows.slice(0, limit);
    return { items: items.map(toScheduleJson), nextCursor: rows.length > limit ? items.at(-1)!.id : null };
  });

  // a rule not yet saved: the same body as POST, username and message optional
  v1.post('/schedules/preview', { bodyLimit: SCHEDULE_BODY_LIMIT }, async (request) => {
    const body = request.body as Record<string, unknown> | null;
    const count = parsePreviewCount(typeof body === 'object' && body !== null ? body.count : undefined);
    const settings = validateSchedulePreview(request.body, { timeZone: config.timeZone });
    const now = clock.now();
    return { timeZone: settings.timeZone, items: previewOccurrences({ ...settings, createdAt: now, occurrences: 0 }, now, count) };
  });

  v1.get('/schedules/:id', async (request) => {
    return toScheduleJson(await existing(request, request.params as { id: string }));
  });

  v1.get('/schedules/:id/preview', async (request) => {
    const schedule = await existing(request, request.params as { id: string });
    const count = parsePreviewCount((request.query as Record<string, unknown>).count);
    const now = clock.now();
    const from = schedule.paused || schedule.nextFireAt === null ? now : schedule.nextFireAt - 1;
    const items = schedule.nextFireAt === null && !schedule.paused ? [] : previewOccurrences(schedule, from, count);
    return { timeZone: schedule.timeZone, items };
  });

  v1.patch('/schedules/:id', { bodyLimit: SCHEDULE_BODY_LIMIT }, async (request) => {
    const { id } = request.params as { id: string };
    await checkOwn(request, id);
    const changed = await changeSchedule(ctx, id, request.body);
    if (!changed) throw notFound(id);
    return toScheduleJson(changed);
  });

  v1.delete('/schedules/:id', async (request, reply) => {
    const { id } = request.params as { id: string };
    await checkOwn(request, id);
    if (!(await deleteSchedule(ctx, id))) throw notFound(id);
    return reply.code(204).send();
  });

  /** The schedule, when it exists and the caller may see it (a target sees its own only); else 404. */
  async function existing(request: FastifyRequest, { id }: { id: string }): Promise<StoredSchedule> {
    const schedule = await store.getSchedule(id);
    requireVisible(request, schedule?.target, () => notFound(id));
    return schedule!;
  }

  /** For a target's token: 404 unless the schedule is its own (a schedule's target never changes). */
  async function checkOwn(request: FastifyRequest, id: string): Promise<void> {
    if (scopeOf(request) !== undefined) await existing(request, { id });
  }
}

function parseTarget(value: unknown): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || (value !== 'default' && !TARGET_NAME.test(value))) {
    throw new ValidationError(`target must be a target's name (got ${JSON.stringify(value)})`, 'target');
  }
  return value;
}

function notFound(id: string): NotFoundError {
  return new NotFoundError(`No schedule with id ${JSON.stringify(id)}`);
}

/**
 * Applies a change (a PATCH body) to a schedule: a compare-and-set on its
 * version, tried again when the materialiser advanced it meanwhile. Returns
 * undefined for an unknown id; throws a ValidationError for bad input, a
 * ConflictError when it kept changing.
 */
export async function changeSchedule({ store, clock, schedules }: DispatcherContext, id: string, body: unknown): Promise<StoredSchedule | undefined> {
  for (let attempt = 0; attempt < CHANGE_ATTEMPTS; attempt++) {
    const schedule = await store.getSchedule(id);
    if (!schedule) return undefined;
    const patch = validateSchedulePatch(body, { scheduleTimeZone: schedule.timeZone });
    const now = clock.now();
    const merged: StoredSchedule = { ...schedule, ...patch };
    checkScheduleWindow(merged.startAt, merged.endAt);
    // a pause, a resume or a new maxOccurrences of a schedule already ended is no new way to never fire
    if (changesRule(schedule, merged)) requireFireable(merged, now);
    const timing = changesTiming(schedule, merged);
    const pendingTimes = pendingOccurrenceTimes(schedule, now);
    const pending = pendingTimes.map((at) => occurrenceMessageId(schedule.id, at));
    // the store takes the ones it actually withdraws off the count; assume all of them for the next fire time
    // (should fewer go, the materialiser's plan still stops at maxOccurrences)
    merged.occurrences = Math.max(0, schedule.occurrences - pending.length);
    // Same times (only text or catch-up settings changed): the next fire time stays, so occurrences due and
    // not yet materialised (a lagging or catching-up schedule) are not skipped; the withdrawn ones ahead come
    // again, with the new text. Otherwise it is worked out again from now.
    const nextFireAt = timing ? nextFireAfter(merged, now) : pendingTimes[0] ?? schedule.nextFireAt;
    const changes: ScheduleChanges = { ...patch, nextFireAt };
    const outcome = await store.updateSchedule(id, schedule.version, changes, now, pending);
    if (outcome.kind === 'not_found') return undefined;
    if (outcome.kind === 'ok') {
      if (!outcome.schedule.paused && outcome.schedule.nextFireAt !== null && outcome.schedule.nextFireAt <= now + schedules.leadMs) void schedules.run();
      return outcome.schedule;
    }
  }
  throw new ConflictError('the schedule kept changing while this change was being made; send it again');
}

/** Deletes a schedule and the occurrences it materialised ahead; false for an unknown id. */
export async function deleteSchedule({ store, clock }: DispatcherContext, id: string): Promise<boolean> {
  // the occurrences to withdraw come from the row as the delete's transaction holds it, not from an earlier read
  return store.removeSchedule(id, (schedule) => pendingOccurrenceIds(schedule, clock.now()));
}
