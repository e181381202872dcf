import { LIMITS } from './messages.ts';
import { LEGACY_FAILURES } from './legacy.ts';
import { MESSAGE_STATUSES } from './wire.ts';

/**
 * The schemas both services' OpenAPI documents share (the dispatcher's
 * /v1/messages and the main server's /v1/scheduled speak the same message).
 * MESSAGE_SCHEMA and friends are also the dispatcher routes' response schemas,
 * so what the documents promise is what the serializer writes.
 */

const instant = (description: string) => ({ type: 'string', format: 'date-time', description });
const nullableInstant = (description: string) => ({ type: ['string', 'null'], format: 'date-time', description });

export const MESSAGE_SCHEMA = {
  type: 'object',
  required: ['id', 'username', 'message', 'scheduledAt', 'dueAt', 'status', 'attempts', 'createdAt', 'updatedAt', 'deliveredAt', 'lastError', 'idempotencyKey'],
  properties: {
    id: { type: 'string', description: 'UUIDv7, also the Idempotency-Key of every delivery' },
    target: { type: 'string', description: 'the delivery target (main server) it belongs to; "default" is the dispatcher\'s --main-url' },
    username: { type: 'string' },
    message: { type: 'string', description: 'exactly as sent' },
    scheduledAt: instant('when the message is to be delivered (UTC, ms)'),
    dueAt: instant('when the next delivery attempt is due; later than scheduledAt after a retry'),
    status: { type: 'string', enum: [...MESSAGE_STATUSES] },
    attempts: { type: 'integer', description: 'delivery attempts started' },
    createdAt: instant('when the dispatcher accepted it'),
    updatedAt: instant('last change'),
    deliveredAt: nullableInstant('when the main server accepted it'),
    lastError: { type: ['string', 'null'], description: 'why the last attempt failed' },
    idempotencyKey: { type: ['string', 'null'] },
    deliverBy: nullableInstant('its own deliver-by: not sent after it but set expired (its target\'s deliverWithinMs applies when null)'),
  },
} as const;

export const MESSAGE_PAGE_SCHEMA = {
  type: 'object',
  required: ['items', 'nextCursor'],
  properties: {
    items: { type: 'array', items: MESSAGE_SCHEMA },
    nextCursor: { type: ['string', 'null'], description: 'pass as ?cursor= for the next page; null on the last page' },
  },
} as const;

export const MESSAGE_ARRAY_SCHEMA = { type: 'array', items: MESSAGE_SCHEMA } as const;

export const ERROR_SCHEMA = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', examples: ['invalid_request', 'unauthorized', 'not_found', 'conflict', 'payload_too_large', 'unsupported_media_type'] },
        message: { type: 'string', description: 'what is wrong, naming the field' },
        field: { type: 'string', description: 'the bad field, e.g. "scheduledAt" or "items[3].message"' },
        status: { type: 'string', enum: [...MESSAGE_STATUSES], description: 'on 409: the message\'s current status' },
      },
    },
  },
} as const;

export const SCHEDULE_REQUEST_SCHEMA = {
  type: 'object',
  required: ['username', 'message'],
  additionalProperties: false,
  description: 'Give exactly one of scheduledAt or delaySeconds.',
  properties: {
    username: { type: 'string', minLength: 1, maxLength: LIMITS.usernameMax },
    message: { type: 'string', minLength: 1, maxLength: LIMITS.messageMax, description: 'length counted in characters (code points)' },
    scheduledAt: { type: 'string', description: 'RFC 3339, e.g. "2026-12-24T09:00:00Z"; without an offset ("2026-12-24 09:00:00") it is read in timeZone. Years 0001-9999, hours 00-23 (no 24:00); a time the zone skips moves forward by the gap, a time that happens twice is the earlier' },
    delaySeconds: { type: 'number', minimum: 0, maximum: LIMITS.maxDelaySeconds },
    timeZone: { type: 'string', description: 'IANA zone for a scheduledAt without offset; default: the dispatcher\'s --timezone' },
    idempotencyKey: { type: 'string', minLength: 1, maxLength: LIMITS.idempotencyKeyMax, description: 'the same key again returns the first message (200) instead of scheduling a second' },
    deliverBy: { type: ['string', 'null'], description: 'RFC 3339 (read like scheduledAt): the latest time it is still worth delivering; not sent after it but set expired, replayable like a dead letter. Not before scheduledAt, not past. Default: its target\'s deliverWithinMs after scheduledAt, if set' },
  },
} as const;

export const PATCH_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    scheduledAt: SCHEDULE_REQUEST_SCHEMA.properties.scheduledAt,
    message: SCHEDULE_REQUEST_SCHEMA.properties.message,
    timeZone: SCHEDULE_REQUEST_SCHEMA.properties.timeZone,
    deliverBy: { ...SCHEDULE_REQUEST_SCHEMA.properties.deliverBy, description: 'a new deliver-by (not before scheduledAt); null drops the message\'s own' },
  },
} as const;

export const LEGACY_ANSWER_SCHEMA = {
  type: 'object',
  required: ['received', 'result'],
  properties: {
    received: {
      type: 'object',
      properties: { username: { type: ['string', 'null'] }, message: { type: ['string', 'null'] }, time: { type: ['string', 'null'] } },
    },
    result: { type: 'string', enum: ['Success', 'Failure'] },
    failure: { type: 'string', examples: [LEGACY_FAILURES.schedule] },
  },
} as const;

export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
export const json = (schema: object) => ({ 'application/json': { schema } });
export const errorResponse = (description: string) => ({ description, content: json(ref('Error')) });
export const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };


// ---- schedules (recurring messages) -------------------------------------------

const DST_POLICY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    gap: { type: 'string', enum: ['shift', 'skip'], default: 'shift', description: 'a wall-clock time the zone skips (spring forward): shift = moved forward by the gap\'s length; skip = no occurrence that day' },
    overlap: { type: 'string', enum: ['first', 'last', 'both'], default: 'first', description: 'a wall-clock time that happens twice (fall back): the earlier, the later, or both' },
  },
} as const;

const LOCAL_TIME_SCHEMA = {
  type: 'object',
  required: ['at', 'local', 'utcOffset'],
  properties: {
    at: instant('the instant (UTC)'),
    local: { type: 'string', description: 'YYYY-MM-DD HH:MM:SS on the schedule\'s wall clock' },
    utcOffset: { type: 'string', description: 'the zone\'s offset then, such as -04:00 or +05:30' },
    note: { type: 'string', description: 'present when DST moved or doubled the wall-clock time' },
  },
} as const;

const SCHEDULE_SETTINGS = {
  cron: { type: 'string', description: 'five fields (minute hour day-of-month month day-of-week) or six with seconds first, matched on the zone\'s wall clock; day of month and day of week are ORed when both are given. Exactly one of cron and every.' },
  every: { type: 'string', description: 'a duration of elapsed time (90s, 15m, 1h30m, 1d; 1s to 3660d): not wall-clock time, so across DST the local time shifts by the change' },
  timeZone: { type: 'string', description: 'IANA zone for the cron rule and for startAt/endAt without offset; default the dispatcher\'s --timezone' },
  startAt: { type: 'string', description: 'nothing fires before it; for every, the first occurrence (default: one interval after creation)' },
  endAt: { type: 'string', description: 'nothing fires after it' },
  maxOccurrences: { type: 'integer', minimum: 1, description: 'ends the schedule after this many posts' },
  dstPolicy: DST_POLICY_SCHEMA,
  catchUp: { type: 'string', enum: ['latest', 'all', 'none'], default: 'latest', description: 'occurrences missed by more than a minute (the dispatchers were down): latest = one post for them, all = each (at most catchUpMax, the latest), none = none' },
  catchUpMax: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
  paused: { type: 'boolean', default: false },
} as const;

export const RECURRING_REQUEST_SCHEMA = {
  type: 'object',
  required: ['username', 'message'],
  additionalProperties: false,
  properties: {
    username: { type: 'string', minLength: 1, maxLength: LIMITS.usernameMax },
    message: { type: 'string', minLength: 1, maxLength: LIMITS.messageMax },
    ...SCHEDULE_SETTINGS,
    idempotencyKey: { type: 'string', minLength: 1, maxLength: LIMITS.idempotencyKeyMax, description: 'a repeat answers 200 with the first schedule' },
  },
} as const;

export const RECURRING_PATCH_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  description: 'any of the fields; startAt, endAt and maxOccurrences may be null to clear them. A change withdraws occurrences materialised ahead and not yet being delivered, and the next fire time is worked out again from now; paused: false resumes from now (what fell due while paused is not caught up).',
  properties: { message: { type: 'string', minLength: 1, maxLength: LIMITS.messageMax }, ...SCHEDULE_SETTINGS },
} as const;

export const RECURRING_PREVIEW_REQUEST_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  description: 'a rule not yet saved: the fields of a schedule (username and message optional), and count',
  properties: { ...RECURRING_REQUEST_SCHEMA.properties, count: { type: 'integer', minimum: 1, maximum: 100, default: 10 } },
} as const;

export const RECURRING_SCHEMA = {
  type: 'object',
  required: ['id', 'username', 'message', 'cron', 'every', 'timeZone', 'status', 'nextFireAt', 'next', 'occurrences', 'version'],
  properties: {
    id: { type: 'string' },
    target: { type: 'string', description: 'the delivery target its occurrences belong to' },
    username: { type: 'string' },
    message: { type: 'string' },
    cron: { type: ['string', 'null'] },
    every: { type: ['string', 'null'] },
    timeZone: { type: 'string' },
    startAt: nullableInstant('nothing fires before it'),
    endAt: nullableInstant('nothing fires after it'),
    maxOccurrences: { type: ['integer', 'null'] },
    dstPolicy: DST_POLICY_SCHEMA,
    catchUp: SCHEDULE_SETTINGS.catchUp,
    catchUpMax: { type: 'integer' },
    status: { type: 'string', enum: ['active', 'paused', 'finished'] },
    paused: { type: 'boolean' },
    nextFireAt: nullableInstant('the next occurrence (null when paused or finished)'),
    next: { oneOf: [LOCAL_TIME_SCHEMA, { type: 'null' }], description: 'nextFireAt with its local time and offset' },
    occurrences: { type: 'integer', description: 'occurrences posted (materialised as messages) so far' },
    lastFireAt: nullableInstant('the latest occurrence materialised'),
    idempotencyKey: { type: ['string', 'null'] },
    version: { type: 'integer' },
    createdAt: instant('created'),
    updatedAt: instant('last change (a materialisation included)'),
  },
} as const;

export const RECURRING_PREVIEW_SCHEMA = {
  type: 'object',
  required: ['timeZone', 'items'],
  properties: { timeZone: { type: 'string' }, items: { type: 'array', items: LOCAL_TIME_SCHEMA } },
} as const;
