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

