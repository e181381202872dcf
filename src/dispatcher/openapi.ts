import { BATCH_BODY_LIMIT, LIMITS } from '../protocol/messages.ts';
import {
  ERROR_SCHEMA, LEGACY_ANSWER_SCHEMA, MESSAGE_PAGE_SCHEMA, MESSAGE_SCHEMA, PATCH_SCHEMA, RECURRING_PATCH_SCHEMA, RECURRING_PREVIEW_REQUEST_SCHEMA,
  RECURRING_PREVIEW_SCHEMA, RECURRING_REQUEST_SCHEMA, RECURRING_SCHEMA, SCHEDULE_REQUEST_SCHEMA, errorResponse, idParam, json, ref,
} from '../protocol/openapi-parts.ts';
import { SEARCH_MAX } from './filters.ts';
import { MESSAGE_STATUSES } from './store.ts';
import { SIGNATURE_SCHEMES, TARGET_LIMITS, TARGET_PROTOCOLS } from '../protocol/targets.ts';

const TARGET_NAME_SCHEMA = { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'the target\'s name; "default" is the built-in one' } as const;

/** A delivery target as the API shows it: secrets as set/not set, never their values. */
const TARGET_SCHEMA = {
  type: 'object',
  required: ['name', 'url', 'protocol', 'signatureScheme', 'signingSecretSet', 'tokenSet', 'ratePerSecond', 'burst', 'maxInFlight', 'deliverWithinMs', 'builtIn', 'createdAt', 'updatedAt'],
  properties: {
    name: TARGET_NAME_SCHEMA,
    url: { type: 'string', description: 'base URL: deliveries go to {url}/v1/posts (json) or {url}/postMessage.php (legacy)' },
    protocol: { type: 'string', enum: [...TARGET_PROTOCOLS] },
    signatureScheme: { type: 'string', enum: [...SIGNATURE_SCHEMES] },
    signingSecretSet: { type: 'boolean', description: 'whether deliveries are signed (the secret is write-only)' },
    tokenSet: { type: 'boolean', description: 'whether the target has a token to call this API with (write-only)' },
    ratePerSecond: { type: ['number', 'null'], description: 'stored for the per-target flow control' },
    burst: { type: ['integer', 'null'] },
    maxInFlight: { type: ['integer', 'null'] },
    deliverWithinMs: { type: ['integer', 'null'], description: 'default deliver-by of its messages that carry none: not sent later than this many ms after their scheduled time, set expired instead' },
    builtIn: { type: 'boolean', description: 'true for "default": the dispatcher\'s --main-url and its flags, not editable here' },
    createdAt: { type: ['string', 'null'], format: 'date-time' },
    updatedAt: { type: ['string', 'null'], format: 'date-time' },
  },
} as const;

const TARGET_FIELDS = {
  url: { type: 'string', maxLength: TARGET_LIMITS.urlMax, description: 'an http(s) URL without user, password, query or fragment' },
  protocol: { type: 'string', enum: [...TARGET_PROTOCOLS], default: 'json', description: 'json (signed POST {url}/v1/posts) or legacy (form POST {url}/postMessage.php), as --main-protocol' },
  signatureScheme: { type: 'string', enum: [...SIGNATURE_SCHEMES], default: 'psched', description: 'as --signature-scheme; standard-webhooks needs a whsec_ secret' },
  signingSecret: { type: ['string', 'null'], maxLength: TARGET_LIMITS.secretMax, description: 'write-only; null: unsigned deliveries' },
  token: { type: ['string', 'null'], minLength: TARGET_LIMITS.tokenMin, maxLength: TARGET_LIMITS.tokenMax, description: 'write-only: the bearer token this target\'s main server calls /v1 with (stored as its SHA-256); null: none' },
  ratePerSecond: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: TARGET_LIMITS.rateMax },
  burst: { type: ['integer', 'null'], minimum: 1, maximum: TARGET_LIMITS.burstMax },
  maxInFlight: { type: ['integer', 'null'], minimum: 1, maximum: TARGET_LIMITS.maxInFlightMax },
  deliverWithinMs: { type: ['integer', 'null'], minimum: 1, maximum: TARGET_LIMITS.deliverWithinMaxMs, description: 'default deliver-by window in ms after scheduledAt (messages with their own deliverBy keep theirs); null: none' },
} as const;

const TARGET_PARAM = { name: 'target', in: 'query', schema: TARGET_NAME_SCHEMA, description: 'only this target\'s (the operator; a target\'s token always sees only its own, and naming another is a 403)' } as const;
const WITH_TARGET = { target: { ...TARGET_NAME_SCHEMA, description: 'the operator only: the target it is for (default "default"; unknown: 400). A target\'s token schedules for itself; naming another is a 403' } } as const;

export { MESSAGE_ARRAY_SCHEMA, MESSAGE_PAGE_SCHEMA, MESSAGE_SCHEMA } from '../protocol/openapi-parts.ts';

/** One finished delivery attempt (GET /v1/messages/{id}/attempts). */
export const ATTEMPT_SCHEMA = {
  type: 'object',
  required: ['attempt', 'startedAt', 'finishedAt', 'outcome', 'httpStatus', 'error', 'latencyMs'],
  properties: {
    attempt: { type: 'integer', minimum: 1, description: 'counts from 1 again after a dead letter is retried' },
    startedAt: { type: 'string', format: 'date-time' },
    finishedAt: { type: 'string', format: 'date-time' },
    outcome: { type: 'string', enum: ['delivered', 'retry', 'dead'] },
    httpStatus: { type: ['integer', 'null'], description: 'the main server\'s status; null when none came (timeout, refused connection)' },
    error: { type: ['string', 'null'] },
    latencyMs: { type: 'integer', minimum: 0 },
  },
} as const;

export const ATTEMPT_LIST_SCHEMA = { type: 'object', required: ['items'], properties: { items: { type: 'array', items: ATTEMPT_SCHEMA } } } as const;

/** The dispatcher's API as an OpenAPI 3.1 document (served at /openapi.json); the shared schemas are in ../protocol/openapi-parts.ts. */

const COMMON_ERRORS = {
  '400': errorResponse('bad input; error.field names the field'),
  '401': errorResponse('missing or wrong bearer token (only when the dispatcher has an API token)'),
};

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'psched dispatcher',
      version: '1',
      description:
        'Stores scheduled messages durably and delivers each at its due time to the main server. ' +
        'A 2xx answer means the change is committed to disk. With --api-token set, /v1, /metrics and the legacy endpoints need ' +
        '`Authorization: Bearer <token>`; the web UI also accepts HTTP Basic auth with the token as password. ' +
        'A delivery target\'s own token (see /v1/targets) opens /v1/messages and /v1/schedules for that target alone: it schedules for ' +
        'its target, lists only its own, and another target\'s message or schedule answers 404 as if it did not exist.',
    },
    security: [{ bearerAuth: [] }],
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Message: MESSAGE_SCHEMA,
        MessagePage: { ...MESSAGE_PAGE_SCHEMA, properties: { items: { type: 'array', items: ref('Message') }, nextCursor: MESSAGE_PAGE_SCHEMA.properties.nextCursor } },
        ScheduleRequest: { ...SCHEDULE_REQUEST_SCHEMA, properties: { ...SCHEDULE_REQUEST_SCHEMA.properties, ...WITH_TARGET } },
        MessagePatch: PATCH_SCHEMA,
        Error: ERROR_SCHEMA,
        LegacyAnswer: LEGACY_ANSWER_SCHEMA,
        Attempt: ATTEMPT_SCHEMA,
        AttemptList: { type: 'object', required: ['items'], properties: { items: { type: 'array', items: ref('Attempt') } } },
        Schedule: RECURRING_SCHEMA,
        SchedulePage: { type: 'object', required: ['items', 'nextCursor'], properties: { items: { type: 'array', items: ref('Schedule') }, nextCursor: { type: ['string', 'null'], description: 'pass as ?cursor= for the next page; null on the last page' } } },
        ScheduleCreate: { ...RECURRING_REQUEST_SCHEMA, properties: { ...RECURRING_REQUEST_SCHEMA.properties, ...WITH_TARGET } },
        Target: TARGET_SCHEMA,
        TargetList: { type: 'object', required: ['items'], properties: { items: { type: 'array', items: ref('Target') } } },
        TargetCreate: { type: 'object', required: ['name', 'url'], additionalProperties: false, properties: { name: TARGET_NAME_SCHEMA, ...TARGET_FIELDS } },
        TargetPatch: { type: 'object', additionalProperties: false, minProperties: 1, description: 'the fields to change; null clears signingSecret, token or a limit', properties: TARGET_FIELDS },
        SchedulePatch: RECURRING_PATCH_SCHEMA,
        SchedulePreviewRequest: RECURRING_PREVIEW_REQUEST_SCHEMA,
        SchedulePreview: RECURRING_PREVIEW_SCHEMA,
      },
    },
    paths: {
      '/v1/messages': {
        post: {
          summary: 'Schedule a message',
          requestBody: { required: true, content: json(ref('ScheduleRequest')) },
          responses: {
            '201': { description: 'scheduled (committed to disk)', content: json(ref('Message')) },
            '200': { description: 'the idempotencyKey was seen before: the first message, unchanged', content: json(ref('Message')) },
            ...COMMON_ERRORS,
            '413': errorResponse('body too large'),
            '415': errorResponse('the body must be application/json'),
          },
        },
        get: {
          summary: 'List messages in due-time order (keyset pagination)',
          parameters: [
            { name: 'status', in: 'query', schema: { type: 'string', enum: [...MESSAGE_STATUSES] } },
            TARGET_PARAM,
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' }, description: 'nextCursor of the previous page (with the same filters)' },
            { name: 'user', in: 'query', schema: { type: 'string', maxLength: LIMITS.usernameMax }, description: 'only this user name (exactly)' },
            { name: 'q', in: 'query', schema: { type: 'string', maxLength: SEARCH_MAX }, description: 'only messages whose text contains this, ignoring case (SQLite: ASCII letters only); a scan, for operators' },
            { name: 'dueFrom', in: 'query', schema: { type: 'string' }, description: 'due at or after this time (RFC 3339, or wall-clock time read in timeZone)' },
            { name: 'dueTo', in: 'query', schema: { type: 'string' }, description: 'due before this time' },
            { name: 'timeZone', in: 'query', schema: { type: 'string' }, description: 'the IANA zone dueFrom and dueTo are read in when they have no offset; default --timezone' },
          ],
          responses: { '200': { description: 'a page', content: json(ref('MessagePage')) }, ...COMMON_ERRORS },
        },
      },
      '/v1/messages/batch': {
        post: {
          summary: `Schedule up to ${LIMITS.batchMax} messages at once, all or nothing`,
          description:
            'The body is an array of ScheduleRequest (or {"items": [...]}). One bad item rejects the whole batch (400, error.field like "items[3].message") and stores nothing. ' +
            'An item whose idempotencyKey exists already, or appeared earlier in the same batch, returns that message instead of a new one. ' +
            `The body may be up to ${BATCH_BODY_LIMIT} bytes: ${LIMITS.batchMax} messages of ${LIMITS.messageMax} characters fit as UTF-8 JSON whatever the text.`,
          requestBody: { required: true, content: json({ oneOf: [{ type: 'array', items: ref('ScheduleRequest'), minItems: 1, maxItems: LIMITS.batchMax }, { type: 'object', required: ['items'], properties: { items: { type: 'array', items: ref('ScheduleRequest') } } }] }) },
          responses: {
            '201': { description: 'the messages, in request order', content: json({ type: 'array', items: ref('Message') }) },
            '200': { description: 'every item\'s idempotencyKey was seen before: the existing messages', content: json({ type: 'array', items: ref('Message') }) },
            ...COMMON_ERRORS,
            '413': errorResponse('body too large'),
            '415': errorResponse('the body must be application/json'),
          },
        },
      },
      '/v1/messages/{id}': {
        parameters: [idParam],
        get: { summary: 'One message', responses: { '200': { description: 'the message', content: json(ref('Message')) }, '401': COMMON_ERRORS['401'], '404': errorResponse('unknown id') } },
        patch: {
          summary: 'Change the time and/or text of a scheduled message',
          requestBody: { required: true, content: json(ref('MessagePatch')) },
          responses: {
            '200': { description: 'changed; it will be delivered with the new time and text', content: json(ref('Message')) },
            ...COMMON_ERRORS,
            '404': errorResponse('unknown id'),
            '409': errorResponse('too late: error.status is the current status (delivering, delivered, dead)'),
          },
        },
        delete: {
          summary: 'Cancel a scheduled (or dead) message',
          responses: { '204': { description: 'cancelled; it will not be delivered' }, '401': COMMON_ERRORS['401'], '404': errorResponse('unknown id'), '409': errorResponse('too late: error.status is the current status') },
        },
      },
      '/v1/messages/{id}/attempts': {
        parameters: [idParam],
        get: {
          summary: 'The message\'s delivery attempts, oldest first (kept as long as the message: purged with it --retention after delivery)',
          responses: { '200': { description: 'the attempt history (empty before the first attempt finished)', content: json(ref('AttemptList')) }, '401': COMMON_ERRORS['401'], '404': errorResponse('unknown id') },
        },
      },
      '/v1/messages/{id}/retry': {
        parameters: [idParam],
        post: {
          summary: 'Deliver a dead or expired message again (now, attempts reset, its own deliverBy dropped)',
          responses: { '200': { description: 'scheduled again', content: json(ref('Message')) }, '401': COMMON_ERRORS['401'], '404': errorResponse('unknown id'), '409': errorResponse('the message is neither dead nor expired; error.status is its status') },
        },
      },
      '/v1/schedules': {
        post: {
          summary: 'Create a recurring message (a schedule)',
          description: 'Each occurrence becomes an ordinary message, materialised a few seconds before it is due, with an id derived from the schedule id and the instant: exactly one message per occurrence, delivered, retried and dead-lettered like any other. A schedule that would never fire (endAt before its first occurrence) is a 400 naming endAt (or startAt, or the rule), and nothing is stored.',
          requestBody: { required: true, content: json(ref('ScheduleCreate')) },
          responses: {
            '201': { description: 'created (committed to disk); next is the first fire time', content: json(ref('Schedule')) },
            '200': { description: 'the idempotencyKey was seen before: the first schedule', content: json(ref('Schedule')) },
            ...COMMON_ERRORS,
          },
        },
        get: {
          summary: 'List schedules in creation order',
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' }, description: 'nextCursor of the previous page' },
            TARGET_PARAM,
          ],
          responses: { '200': { description: 'a page', content: json(ref('SchedulePage')) }, ...COMMON_ERRORS },
        },
      },
      '/v1/schedules/preview': {
        post: {
          summary: 'The next fire instants of a rule not yet saved',
          requestBody: { required: true, content: json(ref('SchedulePreviewRequest')) },
          responses: { '200': { description: 'the next count occurrences, with local time and offset', content: json(ref('SchedulePreview')) }, ...COMMON_ERRORS },
        },
      },
      '/v1/schedules/{id}': {
        parameters: [idParam],
        get: { summary: 'One schedule, with its next fire time', responses: { '200': { description: 'the schedule', content: json(ref('Schedule')) }, '401': COMMON_ERRORS['401'], '404': errorResponse('unknown id') } },
        patch: {
          summary: 'Change text, rule, zone, window or policies; pause or resume',
          description: 'A change of the rule, zone, window, DST policy, maxOccurrences or paused works the next fire time out again from now; a change of only message, catchUp or catchUpMax keeps it (occurrences due and not yet materialised still come). A change of rule, zone, window or DST policy that leaves no occurrence is a 400, and nothing changes.',
          requestBody: { required: true, content: json(ref('SchedulePatch')) },
          responses: {
            '200': { description: 'changed', content: json(ref('Schedule')) },
            ...COMMON_ERRORS,
            '404': errorResponse('unknown id'),
            '409': errorResponse('the schedule kept changing during the change; send it again'),
          },
        },
        delete: {
          summary: 'Delete a schedule (occurrences materialised ahead and not yet being delivered are withdrawn)',
          responses: { '204': { description: 'deleted' }, '401': COMMON_ERRORS['401'], '404': errorResponse('unknown id') },
        },
      },
      '/v1/schedules/{id}/preview': {
        parameters: [idParam],
        get: {
          summary: 'The next fire instants of a schedule',
          parameters: [{ name: 'count', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 10 } }],
          responses: { '200': { description: 'the next count occurrences (fewer when the schedule ends)', content: json(ref('SchedulePreview')) }, ...COMMON_ERRORS, '404': errorResponse('unknown id') },
        },
      },
      '/v1/targets': {
        get: {
          summary: 'The delivery targets (main servers): the built-in default first, then the stored ones by name (operator only)',
          responses: { '200': { description: 'every target', content: json(ref('TargetList')) }, '401': COMMON_ERRORS['401'], '403': errorResponse('a target\'s token: managing targets is the operator\'s') },
        },
        post: {
          summary: 'Add a target (operator only)',
          requestBody: { required: true, content: json(ref('TargetCreate')) },
          responses: {
            '201': { description: 'stored (committed to disk); its messages are delivered to its url from now on', content: json(ref('Target')) },
            ...COMMON_ERRORS,
            '403': errorResponse('a target\'s token'),
            '409': errorResponse('a target of that name exists, or the token is another target\'s'),
          },
        },
      },
      '/v1/targets/{name}': {
        parameters: [{ name: 'name', in: 'path', required: true, schema: TARGET_NAME_SCHEMA }],
        get: { summary: 'One target (operator only)', responses: { '200': { description: 'the target', content: json(ref('Target')) }, '401': COMMON_ERRORS['401'], '403': errorResponse('a target\'s token'), '404': errorResponse('unknown name') } },
        patch: {
          summary: 'Change a target (operator only); its deliveries use the change at once (other dispatchers of a pool within a second or two)',
          requestBody: { required: true, content: json(ref('TargetPatch')) },
          responses: {
            '200': { description: 'changed', content: json(ref('Target')) },
            ...COMMON_ERRORS,
            '403': errorResponse('a target\'s token'),
            '404': errorResponse('unknown name'),
            '409': errorResponse('"default" is built in (change the flags), or the token is another target\'s'),
          },
        },
        delete: {
          summary: 'Remove a target (operator only) once it has no message left to deliver and no schedule; its delivered and dead messages stay',
          responses: {
            '204': { description: 'removed' },
            '401': COMMON_ERRORS['401'],
            '403': errorResponse('a target\'s token'),
            '404': errorResponse('unknown name'),
            '409': errorResponse('"default" is built in, or the target still has messages scheduled or being delivered, or schedules (the message says how many)'),
          },
        },
      },
      '/healthz': {
        get: {
          summary: 'Liveness and database check (never needs the token; owner, buffered and inFlight only with it)',
          security: [],
          responses: {
            '200': { description: 'healthy', content: json({ type: 'object', required: ['status'], properties: { status: { const: 'ok' }, owner: { type: 'string' }, buffered: { type: 'integer' }, inFlight: { type: 'integer' } } }) },
            '503': { description: 'the database does not answer', content: json({ type: 'object', required: ['status'], properties: { status: { const: 'not ready' } } }) },
          },
        },
      },
      '/metrics': {
        get: {
          summary: 'Prometheus metrics: messages by status, buffered, deliveries by outcome, lateness histogram',
          responses: { '200': { description: 'Prometheus text format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } }, '401': COMMON_ERRORS['401'] },
        },
      },
      '/openapi.json': { get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI 3.1', content: json({ type: 'object' }) } } } },
      '/scheduleMessage.php': {
        post: {
          summary: 'The original\'s scheduling endpoint (form fields username, message, time)',
          description: 'time is "YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DDTHH:MM[:SS]", read in the dispatcher\'s --legacy-timezone (by default --timezone when given, else the host\'s zone). A request whose time still holds %3A and no colon after one decoding (what the original main server sends: each value encoded twice) has each value decoded once more; any other is taken as sent. Without the token only from --legacy-allow addresses. Failures answer 400 (401 without the token) with result "Failure".',
          requestBody: {
            required: true,
            content: { 'application/x-www-form-urlencoded': { schema: { type: 'object', required: ['username', 'message', 'time'], properties: { username: { type: 'string' }, message: { type: 'string' }, time: { type: 'string', examples: ['2014-08-01 13:30:00'] } } } } },
          },
          responses: { '200': { description: 'scheduled', content: json(ref('LegacyAnswer')) }, '400': { description: 'invalid', content: json(ref('LegacyAnswer')) }, '401': COMMON_ERRORS['401'] },
        },
      },
      '/cron/checkScheduledMessages.php': {
        get: {
          summary: 'The original\'s cron endpoint: deliver everything due now, answering what was posted',
          responses: {
            '200': {
              description: 'entries numbered from 1 in delivery order; exactly `{"externalResult":[]}` when nothing was due, as the original answered',
              content: json({
                type: 'object',
                properties: {
                  externalResult: { oneOf: [{ type: 'object', additionalProperties: true }, { type: 'array', maxItems: 0 }], description: 'the main server\'s JSON answer per message' },
                  scheduledMessagesPosted: { oneOf: [{ type: 'object', additionalProperties: { type: 'object', properties: { poster_name: { type: 'string' }, message: { type: 'string' } } } }, { type: 'array', maxItems: 0 }] },
                  result: { const: 'Success' },
                },
              }),
            },
            '401': COMMON_ERRORS['401'],
          },
        },
      },
      '/': { get: { summary: 'The web UI (HTML); accepts the bearer token or HTTP Basic auth with the token as password', responses: { '200': { description: 'HTML page', content: { 'text/html': { schema: { type: 'string' } } } } } } },
    },
  };
}
