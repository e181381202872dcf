import { ValidationError } from '../errors.ts';
import { isValidTimeZone, parseUserTime } from './time.ts';

/**
 * The shape of a scheduling request, shared by the dispatcher's
 * POST /v1/messages and the main server's POST /v1/scheduled, and the shape of
 * a delivery (dispatcher -> main server POST /v1/posts).
 */
export const LIMITS = {
  usernameMax: 64,
  messageMax: 5000,
  idempotencyKeyMax: 200,
  batchMax: 1000,
  /** Far enough for any real use, small enough that dates stay valid everywhere. */
  maxDelaySeconds: 100 * 365 * 24 * 3600,
} as const;

/**
 * A batch of the documented maximum (1,000 messages of 5,000 characters) must
 * fit whatever its text, sent as JSON in UTF-8: a character is at most 4 bytes
 * there, or 6 for one JSON must escape (a control character, "\u0001"). So
 * 6 bytes for every character of username, message and idempotencyKey, and
 * 1 KiB per item for field names, scheduledAt, timeZone and whitespace:
 * 32,608,000 bytes. (The server's 8 MiB refused 1,000 messages of 5,000 "é".)
 * Text written as \uXXXX escapes without need (Python's json.dumps with its
 * default ensure_ascii) takes 6-12 bytes a character and can exceed it.
 */
export const BATCH_BODY_LIMIT = LIMITS.batchMax * (6 * (LIMITS.usernameMax + LIMITS.messageMax + LIMITS.idempotencyKeyMax) + 1024);

export interface ScheduleRequestBody {
  username: string;
  message: string;
  scheduledAt?: string;
  delaySeconds?: number;
  idempotencyKey?: string;
  /** IANA zone for a scheduledAt without offset; defaults to the server's --timezone. */
  timeZone?: string;
  /** RFC 3339: not sent after this (set expired instead); defaults to the target's deliver-by window, if any. */
  deliverBy?: string;
}

export interface ValidScheduleRequest {
  username: string;
  message: string;
  scheduledAt: number;
  idempotencyKey: string | null;
  /** Epoch ms, or null: none of its own. Optional so callers that build requests themselves (the legacy form) need not say. */
  deliverBy?: number | null;
}

export interface DeliveryPayload {
  id: string;
  username: string;
  message: string;
  /** RFC 3339 UTC with milliseconds. */
  scheduledAt: string;
  attempt: number;
}

const SCHEDULE_FIELDS = new Set(['username', 'message', 'scheduledAt', 'delaySeconds', 'idempotencyKey', 'timeZone', 'deliverBy']);
const PATCH_FIELDS = new Set(['scheduledAt', 'message', 'timeZone', 'deliverBy']);

/** Length in characters as people count them (code points), so an emoji is one. */
export function textLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * A character that shows something: not white space (spaces, tabs, line
 * breaks, U+3000 …), not a format character (\p{Cf}: zero-width space, joiners,
 * U+2060, the BOM U+FEFF, bidi controls …) and not one Unicode says to render
 * as nothing (Hangul fillers, variation selectors). A name or text made only
 * of those looks empty on the page, so it counts as empty.
 */
const VISIBLE = /[^\p{White_Space}\p{Cf}\p{Default_Ignorable_Code_Point}]/u;

/** True when `text` has no visible character (see VISIBLE): empty, blank or invisible. */
export function isBlank(text: string): boolean {
  return !VISIBLE.test(text);
}

/** The refusal of a blank field, in one wording for every endpoint. */
export function blankProblem(field: string): string {
  return `${field} must contain a visible character, not only spaces or invisible characters such as U+200B`;
}

export function requireText(body: Record<string, unknown>, field: string, max: number, prefix: string): string {
  const value = body[field];
  if (typeof value !== 'string') throw new ValidationError(`${prefix}${field} is required and must be a string`, prefix + field);
  if (value.length === 0) throw new ValidationError(`${prefix}${field} must not be empty`, prefix + field);
  // a string has at most as many code points as UTF-16 units: count them only when it might be too long
  if (value.length > max) {
    const length = textLength(value);
    if (length > max) throw new ValidationError(`${prefix}${field} must be at most ${max} characters (got ${length})`, prefix + field);
  }
  // PostgreSQL text cannot hold NUL; refusing it everywhere keeps both stores alike.
  if (value.includes('\u0000')) throw new ValidationError(`${prefix}${field} must not contain the NUL character (\\u0000)`, prefix + field);
  if (isBlank(value)) throw new ValidationError(blankProblem(prefix + field), prefix + field);
  return value;
}

/**
 * Validates one scheduling request. `prefix` names the item in a batch
 * ("items[3].") so errors point at the exact field.
 */
export function validateScheduleRequest(
  input: unknown,
  options: { now: number; timeZone: string; prefix?: string },
): ValidScheduleRequest {
  const prefix = options.prefix ?? '';
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ValidationError(`${prefix ? prefix.slice(0, -1) : 'body'} must be a JSON object`, prefix ? prefix.slice(0, -1) : undefined);
  }
  const body = input as Record<string, unknown>;
  const username = requireText(body, 'username', LIMITS.usernameMax, prefix);
  const message = requireText(body, 'message', LIMITS.messageMax, prefix);

  let timeZone = options.timeZone;
  if (body.timeZone !== undefined) {
    if (typeof body.timeZone !== 'string' || !isValidTimeZone(body.timeZone)) {
      throw new ValidationError(`${prefix}timeZone must be an IANA time zone such as "Europe/Berlin"`, prefix + 'timeZone');
    }
    timeZone = body.timeZone;
  }

  const hasAt = body.scheduledAt !== undefined && body.scheduledAt !== null;
  const hasDelay = body.delaySeconds !== undefined && body.delaySeconds !== null;
  if (hasAt === hasDelay) {
    throw new ValidationError(`${prefix}give exactly one of scheduledAt (RFC 3339 time) or delaySeconds (number ≥ 0)`, prefix + 'scheduledAt');
  }
  let scheduledAt: number;
  if (hasAt) {
    if (typeof body.scheduledAt !== 'string') throw new ValidationError(`${prefix}scheduledAt must be a string`, prefix + 'scheduledAt');
    scheduledAt = parseUserTime(body.scheduledAt, timeZone, prefix + 'scheduledAt');
  } else {
    const delay = body.delaySeconds;
    if (typeof delay !== 'number' || !Number.isFinite(delay) || delay < 0 || delay > LIMITS.maxDelaySeconds) {
      throw new ValidationError(`${prefix}delaySeconds must be a number from 0 to ${LIMITS.maxDelaySeconds}`, prefix + 'delaySeconds');
    }
    scheduledAt = options.now + Math.round(delay * 1000);
  }

  let idempotencyKey: string | null = null;
  if (body.idempotencyKey !== undefined && body.idempotencyKey !== null) {
    if (typeof body.idempotencyKey !== 'string' || body.idempotencyKey.length < 1 || body.idempotencyKey.length > LIMITS.idempotencyKeyMax) {
      throw new ValidationError(`${prefix}idempotencyKey must be a string of 1 to ${LIMITS.idempotencyKeyMax} characters`, prefix + 'idempotencyKey');
    }
    idempotencyKey = body.idempotencyKey;
  }
  for (const key of Object.keys(body)) {
    if (!SCHEDULE_FIELDS.has(key)) throw new ValidationError(`${prefix}${key} is not a known field`, prefix + key);
  }
  const deliverBy = body.deliverBy === undefined ? null : readDeliverBy(body.deliverBy, timeZone, prefix);
  if (deliverBy !== null) {
    checkDeliverBy(deliverBy, scheduledAt, prefix);
    refusePast(deliverBy, options.now, prefix);
  }
  return { username, message, scheduledAt, idempotencyKey, deliverBy };
}

/** A deliver-by as given: an RFC 3339 time (read in `timeZone` without an offset), or null for none. */
function readDeliverBy(value: unknown, timeZone: string, prefix: string): number | null {
  if (value === null) return null;
  if (typeof value !== 'string') throw new ValidationError(`${prefix}deliverBy must be an RFC 3339 time, or null for none`, prefix + 'deliverBy');
  return parseUserTime(value, timeZone, prefix + 'deliverBy');
}

/**
 * A deliver-by before the scheduled time would expire the message unsent:
 * refused, naming both, and blaming `field`, the one the request changed
 * (a PATCH of scheduledAt alone past the stored deliver-by blames scheduledAt).
 */
export function checkDeliverBy(deliverBy: number, scheduledAt: number, prefix = '', field: 'deliverBy' | 'scheduledAt' = 'deliverBy'): void {
  if (deliverBy >= scheduledAt) return;
  const by = new Date(deliverBy).toISOString();
  const at = new Date(scheduledAt).toISOString();
  throw new ValidationError(field === 'deliverBy'
    ? `${prefix}deliverBy (${by}) is before scheduledAt (${at}): the message would never be sent`
    : `${prefix}scheduledAt (${at}) is after the message's deliverBy (${by}): it would never be sent; change deliverBy too, or drop it (null)`,
  prefix + field);
}

function refusePast(deliverBy: number, now: number, prefix: string): void {
  if (deliverBy < now) {
    throw new ValidationError(`${prefix}deliverBy (${new Date(deliverBy).toISOString()}) is already past: the message would expire unsent`, prefix + 'deliverBy');
  }
}

export interface ValidMessagePatch {
  scheduledAt?: number;
  message?: string;
  /** null: drop the message's own deliver-by. */
  deliverBy?: number | null;
}

/**
 * Validates a change to a scheduled message (PATCH): scheduledAt and/or
 * message, with the same rules as scheduling; timeZone reads a scheduledAt
 * without offset.
 */
export function validateMessagePatch(input: unknown, options: { timeZone: string; now?: number }): ValidMessagePatch {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ValidationError('body must be a JSON object');
  }
  const body = input as Record<string, unknown>;
  for (const key of Object.keys(body)) {
    if (!PATCH_FIELDS.has(key)) throw new ValidationError(`${key} is not a field you can change (scheduledAt, message, deliverBy)`, key);
  }
  let timeZone = options.timeZone;
  if (body.timeZone !== undefined) {
    if (typeof body.timeZone !== 'string' || !isValidTimeZone(body.timeZone)) {
      throw new ValidationError('timeZone must be an IANA time zone such as "Europe/Berlin"', 'timeZone');
    }
    timeZone = body.timeZone;
  }
  const patch: ValidMessagePatch = {};
  if (body.message !== undefined) patch.message = requireText(body, 'message', LIMITS.messageMax, '');
  if (body.scheduledAt !== undefined) {
    if (typeof body.scheduledAt !== 'string') throw new ValidationError('scheduledAt must be a string', 'scheduledAt');
    patch.scheduledAt = parseUserTime(body.scheduledAt, timeZone, 'scheduledAt');
  }
  if (body.deliverBy !== undefined) patch.deliverBy = readDeliverBy(body.deliverBy, timeZone, '');
  if (patch.message === undefined && patch.scheduledAt === undefined && patch.deliverBy === undefined) {
    throw new ValidationError('give scheduledAt, message and/or deliverBy to change', 'scheduledAt');
  }
  if (patch.deliverBy != null && patch.scheduledAt !== undefined) checkDeliverBy(patch.deliverBy, patch.scheduledAt);
  if (patch.deliverBy != null && options.now !== undefined) refusePast(patch.deliverBy, options.now, '');
  return patch;
}
