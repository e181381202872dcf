import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ConflictError, NotFoundError, ValidationError } from '../errors.ts';
import { isAuthorized, requireJsonBody, requireToken } from '../http.ts';
import { authenticate, requireVisible, scopeOf, splitTarget, targetForCreate, targetForList } from './principal.ts';
import { registerTargetRoutes } from './routes-targets.ts';
import { BATCH_BODY_LIMIT, LIMITS, checkDeliverBy, validateMessagePatch, validateScheduleRequest, type ValidScheduleRequest } from '../protocol/messages.ts';
import { decodeCursor, encodeCursor, parseLimit } from '../protocol/paging.ts';
import { parseMessageFilter } from './filters.ts';
import { toAttemptJson, toMessageJson } from './message-json.ts';
import { ATTEMPT_LIST_SCHEMA, MESSAGE_ARRAY_SCHEMA, MESSAGE_PAGE_SCHEMA, MESSAGE_SCHEMA, openApiDocument } from './openapi.ts';
import type { DispatcherContext } from './context.ts';
import { registerScheduleRoutes } from './routes-schedules.ts';
import { MESSAGE_STATUSES, type ChangeOutcome, type MessageStatus, type StoredMessage } from './store.ts';

/**
 * The JSON API (/v1), /healthz, /metrics and /openapi.json. Input is checked
 * by the shared validators (src/protocol/messages.ts) before anything is
 * stored, so bad input stores nothing; errors go through the shared handler.
 */

/**
 * One message is at most 5,000 characters; written as JSON escapes
 * ("\ud83d\ude00", 12 bytes per emoji) that is 60 KB. 128 KiB leaves room for
 * the other fields and refuses anything else early.
 */
const SINGLE_BODY_LIMIT = 128 * 1024;

const PAGE_LIMIT = { fallback: 100, max: 1000 };

export function registerApiRoutes(app: FastifyInstance, ctx: DispatcherContext): void {
  app.register(async (v1) => {
    // the operator's token, or a target's (./principal.ts)
    v1.addHook('onRequest', authenticate(ctx));
    v1.addHook('onRequest', requireJsonBody);
    registerMessageRoutes(v1, ctx);
    registerScheduleRoutes(v1, ctx);
    registerTargetRoutes(v1, ctx);
  }, { prefix: '/v1' });

  // Open for load balancers, so it says only whether this dispatcher is up:
  // the buffered and in-flight counts tell how much is scheduled and when, as
  // /metrics does, and are shown only with the token (or when none is set).
  // The database error, which may name hosts and files, goes to the log only.
  app.get('/healthz', async (request, reply) => {
    void reply.header('cache-control', 'no-store');
    try {
      await ctx.store.ping();
    } catch (err) {
      request.log.error({ err }, 'health check: the database does not answer');
      return reply.status(503).send({ status: 'not ready' });
    }
    if (!isAuthorized(request, ctx.config.apiToken)) return { status: 'ok' };
    return { status: 'ok', owner: ctx.engine.ownerId, buffered: ctx.engine.bufferedCount, inFlight: ctx.engine.inFlightCount };
  });

  // Behind the token when one is set: the counts reveal how much a deployment
  // schedules and when, and Prometheus sends a bearer token (`authorization`
  // in the scrape config) at no cost. /healthz stays open for load balancers
  // and, without the token, says nothing about the messages.
  app.get('/metrics', { onRequest: requireToken(ctx.config.apiToken) }, async (_request, reply) => {
    const byStatus = await ctx.store.countByStatus();
    void reply.type(ctx.metrics.contentType).header('cache-control', 'no-store');
    return ctx.metrics.render({ byStatus, buffered: ctx.engine.bufferedCount, targets: ctx.engine.targetGauges() });
  });

  const openApi = JSON.stringify(openApiDocument());
  app.get('/openapi.json', async (_request, reply) => {
    void reply.type('application/json; charset=utf-8');
    return openApi;
  });
}

function registerMessageRoutes(v1: FastifyInstance, ctx: DispatcherContext): void {
  const { engine, store, clock, config } = ctx;
  const messageResponse = { 200: MESSAGE_SCHEMA, 201: MESSAGE_SCHEMA };

  /** The message, when it exists and the caller may see it (a target sees its own only); else 404. */
  async function visible(request: FastifyRequest, id: string): Promise<StoredMessage> {
    const message = await store.get(id);
    requireVisible(request, message?.target, () => notFound(id));
    return message!;
  }

  /** For a target's token: 404 unless the message is its own, before the change is made (a message's target never changes). */
  async function checkOwn(request: FastifyRequest, id: string): Promise<void> {
    if (scopeOf(request) !== undefined) await visible(request, id);
  }

  v1.post('/messages', { bodyLimit: SINGLE_BODY_LIMIT, schema: { response: messageResponse } }, async (request, reply) => {
    const { target: named, rest } = splitTarget(request.body);
    const valid = validateScheduleRequest(rest, { now: clock.now(), timeZone: config.timeZone });
    const target = await targetForCreate(request, ctx, named);
    const [outcome] = await engine.schedule([{ ...valid, target }]);
    const { message, created } = outcome!;
    void reply.code(created ? 201 : 200).header('location', `/v1/messages/${message.id}`);
    return toMessageJson(message);
  });

  v1.post('/messages/batch', { bodyLimit: BATCH_BODY_LIMIT, schema: { response: { 200: MESSAGE_ARRAY_SCHEMA, 201: MESSAGE_ARRAY_SCHEMA } } }, async (request, reply) => {
    const items = batchItems(request.body);
    const now = clock.now();
    // every item is checked before anything is stored: one bad item rejects the batch
    const valid: TargetedRequest[] = [];
    for (const [i, item] of items.entries()) {
      const { target: named, rest } = splitTarget(item);
      const checked = validateScheduleRequest(rest, { now, timeZone: config.timeZone, prefix: `items[${i}].` });
      valid.push({ ...checked, target: await targetForCreate(request, ctx, named, `items[${i}].target`) });
    }
    // Items repeating an idempotencyKey of an earlier item in the same batch
    // are not scheduled again: they answer with that earlier item's message,
    // exactly as a later request with the key would (the first one wins, even
    // if the texts differ). Done here so it holds whatever the store does
    // with duplicate keys inside one transaction.
    const { unique, slots } = dedupeByKey(valid);
    const outcomes = await engine.schedule(unique);
    void reply.code(outcomes.some((o) => o.created) ? 201 : 200);
    return slots.map((slot) => toMessageJson(outcomes[slot]!.message));
  });

  v1.get('/messages', { schema: { response: { 200: MESSAGE_PAGE_SCHEMA } } }, async (request) => {
    const query = givenParams(request.query as Record<string, unknown>);
    const status = parseStatus(query.status);
    const limit = parseLimit(query.limit, PAGE_LIMIT);
    const filter = parseMessageFilter(query, config.timeZone);
    filter.target = targetForList(request, filter.target);
    const cursor = query.cursor === undefined ? undefined : decodeCursor(String(query.cursor));
    const after = cursor && { dueAt: cursor.at, id: cursor.id };
    // one more than asked tells whether another page exists, so the last page has no cursor
    const rows = await store.list({ ...filter, status, limit: limit + 1, after });
    const items = rows.slice(0, limit);
    const last = items.at(-1);
    return { items: items.map(toMessageJson), nextCursor: rows.length > limit && last ? encodeCursor({ at: last.dueAt, id: last.id }) : null };
  });

  v1.get('/messages/:id', { schema: { response: { 200: MESSAGE_SCHEMA } } }, async (request) => {
    const { id } = request.params as { id: string };
    return toMessageJson(await visible(request, id));
  });

  v1.get('/messages/:id/attempts', { schema: { response: { 200: ATTEMPT_LIST_SCHEMA } } }, async (request) => {
    const { id } = request.params as { id: string };
    // the message first: an unknown id is a 404, a message not yet tried an empty list
    const [message, attempts] = await Promise.all([store.get(id), store.attempts(id)]);
    requireVisible(request, message?.target, () => notFound(id));
    return { items: attempts.map(toAttemptJson) };
  });

  v1.patch('/messages/:id', { bodyLimit: SINGLE_BODY_LIMIT, schema: { response: { 200: MESSAGE_SCHEMA } } }, async (request) => {
    const { id } = request.params as { id: string };
    const patch = validateMessagePatch(request.body, { timeZone: config.timeZone, now: clock.now() });
    if (patch.scheduledAt !== undefined || patch.deliverBy != null) {
      // one of the two against the other as stored (read once: it is also the visibility check):
      // a deliver-by before the scheduled time would expire it unsent
      const current = await visible(request, id);
      const deliverBy = patch.deliverBy === undefined ? current.deliverBy : patch.deliverBy;
      if (deliverBy !== null) checkDeliverBy(deliverBy, patch.scheduledAt ?? current.scheduledAt, '', patch.deliverBy === undefined ? 'scheduledAt' : 'deliverBy');
    } else await checkOwn(request, id);
    return toMessageJson(settle(await engine.update(id, patch), id, 'changed'));
  });

  v1.delete('/messages/:id', async (request, reply) => {
    const { id } = request.params as { id: string };
    await checkOwn(request, id);
    settle(await engine.remove(id), id, 'cancelled');
    return reply.code(204).send();
  });

  v1.post('/messages/:id/retry', { schema: { response: { 200: MESSAGE_SCHEMA } } }, async (request) => {
    const { id } = request.params as { id: string };
    await checkOwn(request, id);
    const outcome = await engine.retry(id);
    if (outcome.kind === 'conflict') {
      throw new ConflictError(`Only dead or expired messages can be retried; this one is ${outcome.status}`, outcome.status);
    }
    return toMessageJson(settle(outcome, id, 'retried'));
  });
}

function batchItems(body: unknown): unknown[] {
  const items = Array.isArray(body) ? body
    : typeof body === 'object' && body !== null && Array.isArray((body as { items?: unknown }).items) ? (body as { items: unknown[] }).items
    : undefined;
  if (!items) throw new ValidationError('body must be a JSON array of messages (or {"items": [...]})', 'items');
  if (items.length < 1 || items.length > LIMITS.batchMax) {
    throw new ValidationError(`items must hold 1 to ${LIMITS.batchMax} messages (got ${items.length})`, 'items');
  }
  return items;
}

type TargetedRequest = ValidScheduleRequest & { target?: string };

/**
 * `unique` holds each idempotency key once per target (keys are a target's
 * own); `slots[i]` is the index in `unique` answering item i.
 */
export function dedupeByKey<R extends TargetedRequest>(valid: R[]): { unique: R[]; slots: number[] } {
  const unique: R[] = [];
  const slots: number[] = [];
  const slotOfKey = new Map<string, number>();
  for (const request of valid) {
    const key = request.idempotencyKey === null ? null : `${request.target ?? ''}\u0000${request.idempotencyKey}`;
    const known = key === null ? undefined : slotOfKey.get(key);
    if (known !== undefined) {
      slots.push(known);
      continue;
    }
    if (key !== null) slotOfKey.set(key, unique.length);
    slots.push(unique.length);
    unique.push(request);
  }
  return { unique, slots };
}

/** An empty parameter (`?status=`, as forms send it) counts as not given. */
function givenParams(query: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(query).filter(([, value]) => value !== ''));
}

function parseStatus(value: unknown): MessageStatus | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && (MESSAGE_STATUSES as readonly string[]).includes(value)) return value as MessageStatus;
  throw new ValidationError(`status must be one of ${MESSAGE_STATUSES.join(', ')} (got ${JSON.stringify(value)})`, 'status');
}

function notFound(id: string): NotFoundError {
  return new NotFoundError(`No message with id ${JSON.stringify(id)}`);
}

/** The message a change produced, or the 404/409 it deserves. */
function settle(outcome: ChangeOutcome, id: string, action: string): StoredMessage {
  if (outcome.kind === 'not_found') throw notFound(id);
  if (outcome.kind === 'conflict') {
    throw new ConflictError(`Too late: the message is ${outcome.status} and can no longer be ${action}`, outcome.status);
  }
  return outcome.message;
}
