import { LIMITS } from '../protocol/messages.ts';
import {
  ERROR_SCHEMA, LEGACY_ANSWER_SCHEMA, MESSAGE_SCHEMA, PATCH_SCHEMA, RECURRING_PATCH_SCHEMA, RECURRING_PREVIEW_REQUEST_SCHEMA, RECURRING_PREVIEW_SCHEMA,
  RECURRING_REQUEST_SCHEMA, RECURRING_SCHEMA, SCHEDULE_REQUEST_SCHEMA, errorResponse, idParam, json, ref,
} from '../protocol/openapi-parts.ts';
import { MESSAGE_STATUSES } from '../protocol/wire.ts';

/**
 * The main server's API as an OpenAPI 3.1 document (served at /openapi.json):
 * scheduling through the dispatcher pool, the feed, deliveries, the
 * original's endpoints. The message schemas are the dispatcher's
 * (../protocol/openapi-parts.ts): /v1/scheduled passes its answers through.
 */

const SCHEDULED_SCHEMA = {
  ...MESSAGE_SCHEMA,
  required: [...MESSAGE_SCHEMA.required, 'dispatcher'],
  properties: { ...MESSAGE_SCHEMA.properties, dispatcher: { type: 'string', description: 'the dispatcher holding it' } },
} as const;

const POST_SCHEMA = {
  type: 'object',
  required: ['id', 'messageId', 'username', 'message', 'postedAt', 'scheduledAt'],
  properties: {
    id: { type: 'string' },
    messageId: { type: ['string', 'null'], description: 'the scheduled message it came from; null for the original\'s unsigned posts' },
    username: { type: 'string' },
    message: { type: 'string' },
    postedAt: { type: 'string', format: 'date-time', description: 'when it arrived here' },
    scheduledAt: { type: ['string', 'null'], format: 'date-time' },
  },
} as const;

const DELIVERY_SCHEMA = {
  type: 'object',
  required: ['id', 'username', 'message', 'scheduledAt', 'attempt'],
  properties: {
    id: { type: 'string', description: 'the message id: a redelivery of the same id answers 200 with the post already in the feed' },
    username: { type: 'string', maxLength: LIMITS.usernameMax },
    message: { type: 'string', maxLength: LIMITS.messageMax },
    scheduledAt: { type: 'string', format: 'date-time' },
    attempt: { type: 'integer', minimum: 1 },
  },
} as const;

const page = (items: object) => ({
  type: 'object', required: ['items', 'nextCursor'],
  properties: { items: { type: 'array', items }, nextCursor: { type: ['string', 'null'], description: 'pass as ?cursor= for the next page' } },
});

const COMMON_ERRORS = {
  '400': errorResponse('bad input; error.field names the field'),
  '401': errorResponse('missing or wrong access token (only when the server has --access-token)'),
};
const NO_DISPATCHER = {
  '502': errorResponse('outcome_unknown: a dispatcher may have stored it without confirming (send it again with the same idempotencyKey); not_scheduled: an original dispatcher refused it'),
  '503': errorResponse('no dispatcher took it: nothing stored'),
};

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'psched main server',
      version: '1',
      description:
        'Schedules messages on its pool of dispatchers, receives their signed deliveries and publishes the feed. ' +
        'With --access-token set, scheduling, the page and /metrics need `Authorization: Bearer <token>` (or HTTP Basic with the token as password); the feed is public. ' +
        'Deliveries (POST /v1/posts) are signed with the shared --signing-secret (header psched-signature).',
    },
    security: [{ bearerAuth: [] }],
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Scheduled: SCHEDULED_SCHEMA, ScheduleRequest: SCHEDULE_REQUEST_SCHEMA, MessagePatch: PATCH_SCHEMA,
        Post: POST_SCHEMA, Delivery: DELIVERY_SCHEMA, Error: ERROR_SCHEMA, LegacyAnswer: LEGACY_ANSWER_SCHEMA,
        Schedule: { ...RECURRING_SCHEMA, properties: { ...RECURRING_SCHEMA.properties, dispatcher: { type: 'string', description: 'the dispatcher that answered' } } },
        ScheduleCreate: RECURRING_REQUEST_SCHEMA, SchedulePatch: RECURRING_PATCH_SCHEMA,
        SchedulePreviewRequest: RECURRING_PREVIEW_REQUEST_SCHEMA, SchedulePreview: RECURRING_PREVIEW_SCHEMA,
      },
    },
    paths: {
      '/v1/scheduled': {
        post: {
          summary: 'Schedule a message on one dispatcher of the pool',
          description: 'Without an idempotencyKey the server makes one. Moved to another dispatcher only when the first surely stored nothing.',
          requestBody: { required: true, content: json(ref('ScheduleRequest')) },
          responses: {
            '201': { description: 'stored by the named dispatcher', content: json(ref('Scheduled')) },
            '200': { description: 'the idempotencyKey was seen before: the first message', content: json(ref('Scheduled')) },
            ...COMMON_ERRORS, ...NO_DISPATCHER,
            '415': errorResponse('the body must be application/json'),
          },
        },
        get: {
          summary: 'Scheduled messages of every dispatcher, merged in due-time order',
          parameters: [
            { name: 'status', in: 'query', schema: { type: 'string', enum: [...MESSAGE_STATUSES] } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 200, default: 50 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' } },
          ],
          responses: { '200': { description: 'a page', content: json(page(ref('Scheduled'))) }, ...COMMON_ERRORS, '503': errorResponse('no dispatcher answered') },
        },
      },
      '/v1/schedules': {
        post: {
          summary: 'Create a recurring message on one dispatcher of the pool',
          description: 'Checked here, then passed to the pool as a message is (an idempotencyKey is always sent; moved to another dispatcher only when the first surely stored nothing).',
          requestBody: { required: true, content: json(ref('ScheduleCreate')) },
          responses: {
            '201': { description: 'stored by the named dispatcher', content: json(ref('Schedule')) },
            '200': { description: 'the idempotencyKey was seen before: the first schedule', content: json(ref('Schedule')) },
            ...COMMON_ERRORS, ...NO_DISPATCHER,
          },
        },
        get: {
          summary: 'Every dispatcher\'s schedules in creation order',
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 200, default: 50 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' } },
          ],
          responses: { '200': { description: 'a page; unavailable names dispatchers that did not answer', content: json({ ...page(ref('Schedule')), properties: { ...page(ref('Schedule')).properties, unavailable: { type: 'array', items: { type: 'object' } } } }) }, ...COMMON_ERRORS, '503': NO_DISPATCHER['503'] },
        },
      },
      '/v1/schedules/preview': {
        post: {
          summary: 'The next fire instants of a rule not yet saved (computed here)',
          requestBody: { required: true, content: json(ref('SchedulePreviewRequest')) },
          responses: { '200': { description: 'the next count occurrences', content: json(ref('SchedulePreview')) }, ...COMMON_ERRORS },
        },
      },
      '/v1/schedules/{id}': {
        parameters: [idParam],
        get: { summary: 'One schedule (from the dispatcher that knows it)', responses: { '200': { description: 'the schedule', content: json(ref('Schedule')) }, ...COMMON_ERRORS, '404': errorResponse('unknown id'), '503': NO_DISPATCHER['503'] } },
        patch: {
          summary: 'Change a schedule, pause or resume it',
          requestBody: { required: true, content: json(ref('SchedulePatch')) },
          responses: { '200': { description: 'changed', content: json(ref('Schedule')) }, ...COMMON_ERRORS, '404': errorResponse('unknown id'), '409': errorResponse('changing meanwhile: send again'), '503': NO_DISPATCHER['503'] },
        },
        delete: { summary: 'Delete a schedule', responses: { '204': { description: 'deleted' }, ...COMMON_ERRORS, '404': errorResponse('unknown id'), '503': NO_DISPATCHER['503'] } },
      },
      '/v1/schedules/{id}/preview': {
        parameters: [idParam],
        get: {
          summary: 'The next fire instants of a saved schedule',
          parameters: [{ name: 'count', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 10 } }],
          responses: { '200': { description: 'the next count occurrences', content: json(ref('SchedulePreview')) }, ...COMMON_ERRORS, '404': errorResponse('unknown id') },
        },
      },
      '/v1/scheduled/{id}': {
        parameters: [idParam],
        patch: {
          summary: 'Change the time and/or text of a scheduled message (the holding dispatcher\'s answer)',
          requestBody: { required: true, content: json(ref('MessagePatch')) },
          responses: {
            '200': { description: 'changed', content: json(ref('Scheduled')) }, ...COMMON_ERRORS,
            '404': errorResponse('unknown id'), '409': errorResponse('too late: being delivered or delivered'),
            '501': errorResponse('not_supported: an original dispatcher cannot change messages'), '503': errorResponse('a dispatcher that may hold it did not answer'),
          },
        },
        delete: {
          summary: 'Cancel a scheduled message',
          responses: {
            '204': { description: 'cancelled' }, '401': COMMON_ERRORS['401'], '404': errorResponse('unknown id'), '409': errorResponse('too late'),
            '501': errorResponse('not_supported: an original dispatcher cannot cancel messages'), '503': errorResponse('a dispatcher that may hold it did not answer'),
          },
        },
      },
      '/v1/posts': {
        post: {
          summary: 'A delivery from a dispatcher (signed)',
          security: [],
          requestBody: { required: true, content: json(ref('Delivery')) },
          responses: {
            '201': { description: 'posted to the feed (committed to disk)', content: json(ref('Post')) },
            '200': { description: 'a redelivery: the post already in the feed', content: json(ref('Post')) },
            '400': COMMON_ERRORS['400'], '401': errorResponse('missing, forged or stale signature'),
          },
        },
        get: {
          summary: 'The feed, newest first',
          security: [],
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 200, default: 50 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' } },
          ],
          responses: { '200': { description: 'a page', content: json(page(ref('Post'))) }, '400': COMMON_ERRORS['400'] },
        },
      },
      '/v1/events': {
        get: {
          summary: 'The feed live, as Server-Sent Events (event: post, data: a Post); Last-Event-ID replays what was missed',
          security: [],
          responses: { '200': { description: 'text/event-stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, '503': errorResponse('--max-event-streams reached (Retry-After)') },
        },
      },
      '/scheduleMessage.php': {
        post: {
          summary: 'The original\'s scheduling endpoint (form fields username, message, time)',
          requestBody: { required: true, content: { 'application/x-www-form-urlencoded': { schema: { type: 'object', required: ['username', 'message', 'time'], properties: { username: { type: 'string' }, message: { type: 'string' }, time: { type: 'string', examples: ['2014-08-01T13:30'] } } } } } },
          responses: {
            '200': { description: 'Success, with the dispatcher\'s answer as externalResult', content: json(ref('LegacyAnswer')) },
            '400': { description: 'Failure: bad input', content: json(ref('LegacyAnswer')) },
            '502': { description: 'Unknown: may or may not be scheduled', content: json(ref('LegacyAnswer')) },
            '503': { description: 'Failure: no response from dispatcher', content: json(ref('LegacyAnswer')) },
          },
        },
      },
      '/postMessage.php': {
        post: {
          summary: 'The original\'s unsigned post (form fields username, message): without a signing secret, with --legacy-post-message, or from --legacy-allow',
          security: [],
          requestBody: { required: true, content: { 'application/x-www-form-urlencoded': { schema: { type: 'object', required: ['username', 'message'], properties: { username: { type: 'string' }, message: { type: 'string' } } } } } },
          responses: { '200': { description: 'posted', content: json(ref('LegacyAnswer')) }, '400': { description: 'invalid', content: json(ref('LegacyAnswer')) }, '403': { description: 'only signed deliveries are accepted', content: json(ref('LegacyAnswer')) } },
        },
      },
      '/metrics': { get: { summary: 'Prometheus metrics: posts by route and result, open event streams, process and runtime', responses: { '200': { description: 'Prometheus text', content: { 'text/plain': { schema: { type: 'string' } } } }, '401': COMMON_ERRORS['401'] } } },
      '/healthz': { get: { summary: 'Liveness', security: [], responses: { '200': { description: 'ok', content: json({ type: 'object', properties: { status: { const: 'ok' } } }) } } } },
      '/openapi.json': { get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI 3.1', content: json({ type: 'object' }) } } } },
      '/': { get: { summary: 'The page: compose, scheduled, live feed (HTML)', responses: { '200': { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } } } } },
    },
  };
}
