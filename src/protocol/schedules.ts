import { ValidationError } from '../errors.ts';
import { LIMITS, requireText } from './messages.ts';
import {
  CATCH_UP_POLICIES, DEFAULT_CATCH_UP, DEFAULT_CATCH_UP_MAX, DEFAULT_DST_POLICY, DST_GAP_POLICIES, DST_OVERLAP_POLICIES,
  RECURRENCE_LIMITS, describeNote, formatEvery, localTime, nextOccurrences, parseEvery, validateCron,
  type CatchUpPolicy, type DstGapPolicy, type DstOverlapPolicy, type LocalTime, type Recurrence,
} from './recurrence.ts';
import { isValidTimeZone, parseUserTime } from './time.ts';

/**
 * The shape of a schedule (a recurring message) on the wire, shared by the
 * dispatcher's /v1/schedules and the main server's pass-through. Checked
 * here, field by field, before anything is stored: a bad field is a 400
 * naming it.
 *
 *   { username, message, cron | every, timeZone?, startAt?, endAt?, maxOccurrences?,
 *     dstPolicy?: { gap?: shift|skip, overlap?: first|last|both },
 *     catchUp?: latest|all|none, catchUpMax?, paused?, idempotencyKey? }
 */

export interface ScheduleRequestBody {
  username: string;
  message: string;
  cron?: string;
  every?: string;
  timeZone?: string;
  startAt?: string;
  endAt?: string;
  maxOccurrences?: number;
  dstPolicy?: { gap?: DstGapPolicy; overlap?: DstOverlapPolicy };
  catchUp?: CatchUpPolicy;
  catchUpMax?: number;
  paused?: boolean;
  idempotencyKey?: string;
}

/** A schedule's settings, checked; times as epoch ms. */
export interface ValidScheduleSettings {
  /** Exactly one of cron and everyMs is set. */
  cron: string | null;
  everyMs: number | null;
  timeZone: string;
  startAt: number | null;
  endAt: number | null;
  maxOccurrences: number | null;
  dstGap: DstGapPolicy;
  dstOverlap: DstOverlapPolicy;
  catchUp: CatchUpPolicy;
  /** With catchUp 'all': at most this many missed occurrences are posted. */
  catchUpMax: number;
  paused: boolean;
}

export interface ValidScheduleRequest extends ValidScheduleSettings {
  username: string;
  message: string;
  idempotencyKey: string | null;
}

/** Only the fields given, checked (PATCH). A rule given replaces the other kind: `every` clears cron. */
export type ValidSchedulePatch = Partial<ValidScheduleSettings & { message: string }>;

const CREATE_FIELDS = new Set(['username', 'message', 'cron', 'every', 'timeZone', 'startAt', 'endAt', 'maxOccurrences', 'dstPolicy', 'catchUp', 'catchUpMax', 'paused', 'idempotencyKey']);
const PATCH_FIELDS = new Set(['message', 'cron', 'every', 'timeZone', 'startAt', 'endAt', 'maxOccurrences', 'dstPolicy', 'catchUp', 'catchUpMax', 'paused']);
/** A preview of a rule not yet saved needs no text. */
const PREVIEW_FIELDS = new Set([...CREATE_FIELDS, 'count']);

function objectBody(input: unknown): Record<string, unknown> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ValidationError('body must be a JSON object');
  return input as Record<string, unknown>;
}

function refuseUnknown(body: Record<string, unknown>, known: Set<string>, what: string): void {
  for (const key of Object.keys(body)) {
    if (!known.has(key)) throw new ValidationError(`${key} is not a field ${what} (${[...known].join(', ')})`, key);
  }
}

/** Zone names as ICU lists them, by their lower-case spelling: to write a name sent in another case as listed. */
let zoneSpellings: Map<string, string> | undefined;

/**
 * An IANA zone Intl accepts, kept as sent (ICU's own canonical names are
 * sometimes the old ones: Asia/Kolkata would become Asia/Calcutta), except
 * that a name listed in another case is written as listed ("europe/berlin"
 * -> "Europe/Berlin").
 */
function checkTimeZone(value: unknown): string {
  if (typeof value !== 'string' || !isValidTimeZone(value)) {
    throw new ValidationError(`timeZone must be an IANA time zone such as "Europe/Berlin" (got ${JSON.stringify(value)})`, 'timeZone');
  }
  zoneSpellings ??= new Map([...Intl.supportedValuesOf('timeZone'), 'UTC'].map((zone) => [zone.toLowerCase(), zone]));
  return zoneSpellings.get(value.toLowerCase()) ?? value;
}

function checkRule(body: Record<string, unknown>): { cron: string | null; everyMs: number | null } | undefined {
  if (body.cron !== undefined && body.every !== undefined) throw new ValidationError('give either cron or every, not both', 'every');
  if (body.cron !== undefined) {
    if (typeof body.cron !== 'string') throw new ValidationError('cron must be a string such as "0 9 * * MON-FRI"', 'cron');
    return { cron: validateCron(body.cron, 'cron'), everyMs: null };
  }
  if (body.every !== undefined) {
    const ms = typeof body.every === 'string' ? parseEvery(body.every) : undefined;
    if (ms === undefined) throw new ValidationError(`every must be a duration such as "90s", "15m", "1h30m" or "1d" (got ${JSON.stringify(body.every)})`, 'every');
    if (ms < RECURRENCE_LIMITS.everyMinMs || ms > RECURRENCE_LIMITS.everyMaxMs) {
      throw new ValidationError(`every must be between 1s and ${formatEvery(RECURRENCE_LIMITS.everyMaxMs)} (got ${JSON.stringify(body.every)})`, 'every');
    }
    return { cron: null, everyMs: ms };
  }
  return undefined;
}

function checkTime(body: Record<string, unknown>, field: 'startAt' | 'endAt', timeZone: string): number | null | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (value === null) return null;
  if (typeof value !== 'string') throw new ValidationError(`${field} must be a date and time string, or null`, field);
  return parseUserTime(value, timeZone, field);
}

function checkInteger(body: Record<string, unknown>, field: string, min: number, max: number, nullable: boolean): number | null | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (value === null && nullable) return null;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(`${field} must be a whole number from ${min} to ${max}${nullable ? ', or null' : ''} (got ${JSON.stringify(value)})`, field);
  }
  return value;
}

function checkEnum<T extends string>(value: unknown, allowed: readonly T[], field: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new ValidationError(`${field} must be one of ${allowed.join(', ')} (got ${JSON.stringify(value)})`, field);
  }
  return value as T;
}

function checkDstPolicy(value: unknown): { gap?: DstGapPolicy; overlap?: DstOverlapPolicy } {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError('dstPolicy must be an object such as {"gap": "shift", "overlap": "first"}', 'dstPolicy');
  }
  const policy = value as Record<string, unknown>;
  for (const key of Object.keys(policy)) {
    if (key !== 'gap' && key !== 'overlap') throw new ValidationError(`dstPolicy.${key} is not a field (gap, overlap)`, `dstPolicy.${key}`);
  }
  return { gap: checkEnum(policy.gap, DST_GAP_POLICIES, 'dstPolicy.gap'), overlap: checkEnum(policy.overlap, DST_OVERLAP_POLICIES, 'dstPolicy.overlap') };
}

function checkBoolean(value: unknown, field: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new ValidationError(`${field} must be true or false`, field);
  return value;
}

function checkWindow(startAt: number | null, endAt: number | null): void {
  if (startAt !== null && endAt !== null && endAt < startAt) throw new ValidationError('endAt must not be before startAt', 'endAt');
}

function settingsOf(body: Record<string, unknown>, defaultTimeZone: string): ValidScheduleSettings {
  const rule = checkRule(body);
  if (!rule) throw new ValidationError('give a rule: cron (such as "0 9 * * MON-FRI") or every (such as "15m")', 'cron');
  const timeZone = body.timeZone === undefined ? defaultTimeZone : checkTimeZone(body.timeZone);
  const startAt = checkTime(body, 'startAt', timeZone) ?? null;
  const endAt = checkTime(body, 'endAt', timeZone) ?? null;
  checkWindow(startAt, endAt);
  const dst = checkDstPolicy(body.dstPolicy);
  return {
    ...rule,
    timeZone,
    startAt,
    endAt,
    maxOccurrences: checkInteger(body, 'maxOccurrences', 1, RECURRENCE_LIMITS.maxOccurrences, true) ?? null,
    dstGap: dst.gap ?? DEFAULT_DST_POLICY.gap,
    dstOverlap: dst.overlap ?? DEFAULT_DST_POLICY.overlap,
    catchUp: checkEnum(body.catchUp, CATCH_UP_POLICIES, 'catchUp') ?? DEFAULT_CATCH_UP,
    catchUpMax: checkInteger(body, 'catchUpMax', 1, RECURRENCE_LIMITS.catchUpMax, false) ?? DEFAULT_CATCH_UP_MAX,
    paused: checkBoolean(body.paused, 'paused') ?? false,
  };
}

function idempotencyKeyOf(body: Record<string, unknown>): string | null {
  const key = body.idempotencyKey;
  if (key === undefined || key === null) return null;
  if (typeof key !== 'string' || key.length < 1 || key.length > LIMITS.idempotencyKeyMax) {
    throw new ValidationError(`idempotencyKey must be a string of 1 to ${LIMITS.idempotencyKeyMax} characters`, 'idempotencyKey');
  }
  return key;
}

/** Checks a new schedule (POST /v1/schedules). `timeZone` is the server's default zone. */
export function validateScheduleCreate(input: unknown, options: { timeZone: string }): ValidScheduleRequest {
  const body = objectBody(input);
  const username = requireText(body, 'username', LIMITS.usernameMax, '');
  const message = requireText(body, 'message', LIMITS.messageMax, '');
  const settings = settingsOf(body, options.timeZone);
  const idempotencyKey = idempotencyKeyOf(body);
  refuseUnknown(body, CREATE_FIELDS, 'of a schedule');
  return { username, message, ...settings, idempotencyKey };
}

/** Checks a rule to preview before it is saved (username and message may be left out); `count` is read separately. */
export function validateSchedulePreview(input: unknown, options: { timeZone: string }): ValidScheduleSettings {
  const body = objectBody(input);
  refuseUnknown(body, PREVIEW_FIELDS, 'of a schedule preview');
  return settingsOf(body, options.timeZone);
}

/**
 * Checks a change (PATCH /v1/schedules/:id). startAt and endAt given without
 * an offset are read in the new timeZone if one is given, else the
 * schedule's.
 */
export function validateSchedulePatch(input: unknown, options: { scheduleTimeZone: string }): ValidSchedulePatch {
  const body = objectBody(input);
  refuseUnknown(body, PATCH_FIELDS, 'you can change');
  if (Object.keys(body).length === 0) throw new ValidationError(`give at least one field to change (${[...PATCH_FIELDS].join(', ')})`);
  const patch: ValidSchedulePatch = {};
  if (body.message !== undefined) patch.message = requireText(body, 'message', LIMITS.messageMax, '');
  const rule = checkRule(body);
  if (rule) Object.assign(patch, rule);
  if (body.timeZone !== undefined) patch.timeZone = checkTimeZone(body.timeZone);
  const zone = patch.timeZone ?? options.scheduleTimeZone;
  const startAt = checkTime(body, 'startAt', zone);
  if (startAt !== undefined) patch.startAt = startAt;
  const endAt = checkTime(body, 'endAt', zone);
  if (endAt !== undefined) patch.endAt = endAt;
  const maxOccurrences = checkInteger(body, 'maxOccurrences', 1, RECURRENCE_LIMITS.maxOccurrences, true);
  if (maxOccurrences !== undefined) patch.maxOccurrences = maxOccurrences;
  const dst = checkDstPolicy(body.dstPolicy);
  if (dst.gap) patch.dstGap = dst.gap;
  if (dst.overlap) patch.dstOverlap = dst.overlap;
  const catchUp = checkEnum(body.catchUp, CATCH_UP_POLICIES, 'catchUp');
  if (catchUp) patch.catchUp = catchUp;
  const catchUpMax = checkInteger(body, 'catchUpMax', 1, RECURRENCE_LIMITS.catchUpMax, false);
  if (catchUpMax != null) patch.catchUpMax = catchUpMax;
  const paused = checkBoolean(body.paused, 'paused');
  if (paused !== undefined) patch.paused = paused;
  return patch;
}

/** Checks a schedule after a patch is applied (the window may now be reversed). */
export function checkScheduleWindow(startAt: number | null, endAt: number | null): void {
  checkWindow(startAt, endAt);
}

/** `?count=` of a preview: 1 to 100, 10 when left out. */
export function parsePreviewCount(value: unknown): number {
  if (value === undefined || value === '') return 10;
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > RECURRENCE_LIMITS.previewMax) {
    throw new ValidationError(`count must be a whole number from 1 to ${RECURRENCE_LIMITS.previewMax} (got ${JSON.stringify(value)})`, 'count');
  }
  return n;
}

export function recurrenceOf(schedule: ValidScheduleSettings & { createdAt: number }): Recurrence {
  return {
    cron: schedule.cron,
    everyMs: schedule.everyMs,
    timeZone: schedule.timeZone,
    startAt: schedule.startAt,
    endAt: schedule.endAt,
    dstPolicy: { gap: schedule.dstGap, overlap: schedule.dstOverlap },
    createdAt: schedule.createdAt,
  };
}

export interface PreviewItem extends LocalTime {
  /** Set when DST moved or doubled the wall-clock time. */
  note?: string;
}

/** The next `count` occurrences after `after`, each with its local time and offset (maxOccurrences left counted). */
export function previewOccurrences(schedule: ValidScheduleSettings & { createdAt: number; occurrences: number }, after: number, count: number): PreviewItem[] {
  const left = schedule.maxOccurrences === null ? count : Math.max(0, Math.min(count, schedule.maxOccurrences - schedule.occurrences));
  return nextOccurrences(recurrenceOf(schedule), after, left).map((occurrence) => {
    const item: PreviewItem = localTime(occurrence.at, schedule.timeZone);
    const note = describeNote(occurrence.note);
    if (note) item.note = note;
    return item;
  });
}

