import type { FastifyInstance, FastifyRequest } from 'fastify';
import { addressList } from '../allowlist.ts';
import type { Clock } from '../clock.ts';
import type { MainConfig } from '../config.ts';
import { ValidationError } from '../errors.ts';
import { decodeJsonBody, parseJsonBody, requireUtf8Charset } from '../http-bodies.ts';
import { uuidv7 } from '../ids.ts';
import { LEGACY_FAILURES, legacyFailure, legacySuccess, readLegacyPostForm } from '../protocol/legacy.ts';
import { LIMITS, blankProblem, isBlank, textLength } from '../protocol/messages.ts';
import { requireValidSignature, parseDelivery } from './delivery.ts';
import { RETRY_AFTER_S, type EventStreams } from './events.ts';
import type { MainMetrics } from './metrics.ts';
import { parseFeedLimit, readFeedPage, toPostJson } from './feed.ts';
import type { MainStore, NewPost } from './store.ts';

/**
 * Posts in and out: deliveries from the dispatchers (POST /v1/posts, and the
 * original's /postMessage.php), the feed (GET /v1/posts) and its live stream
 * (GET /v1/events). Reading is public: the feed is what the site publishes.
 * Writing is protected by the delivery signature.
 */
export interface PostRoutesContext {
  config: Readonly<MainConfig>;
  store: MainStore;
  clock: Clock;
  streams: EventStreams;
  metrics: MainMetrics;
}

/** How many recent posts a reconnecting stream is offered when it names the last one it saw. */
const REPLAY_LIMIT = 100;

export async function registerPostRoutes(app: FastifyInstance, context: PostRoutesContext): Promise<void> {
  const { config, store, clock, streams, metrics } = context;
  const allowed = addressList(config.legacyAllow);

  const addPost = async (post: Omit<NewPost, 'id' | 'postedAt'>) => {
    const now = clock.now();
    const outcome = await store.addPost({ ...post, id: uuidv7(now), postedAt: now });
    metrics.recordPost(post.messageId === null ? 'legacy' : 'delivery', outcome.created);
    // the post as JSON once, for the live streams (when any is open) and the answer
    const json = toPostJson(outcome.post);
    if (outcome.created && streams.size > 0) streams.broadcast(json);
    return { json, created: outcome.created };
  };

  // Deliveries are signed over the exact bytes sent: this scope reads the JSON
  // body as text, checks the signature on that text, and only then parses it.
  await app.register(async (scope) => {
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, raw, done) => {
      try {
        requireUtf8Charset(request.headers['content-type']);
        const text = decodeJsonBody(raw as Buffer);
        if (config.signingSecret) {
          requireValidSignature(config.signingSecret, request.headers, text, clock.now());
        }
        done(null, parseJsonBody(text));
      } catch (err) {
        done(err as Error, undefined);
      }
    });

    scope.post('/v1/posts', async (request, reply) => {
      if (config.signingSecret && !/^application\/json\s*(;|$)/i.test(request.headers['content-type'] ?? '')) {
        // Only the JSON parser above checks signatures: any other body is refused.
        throw new ValidationError('a delivery is a signed JSON body (content-type: application/json)');
      }
      const delivery = parseDelivery(request.body);
      const { json, created } = await addPost({
        messageId: delivery.messageId,
        username: delivery.username,
        message: delivery.message,
        scheduledAt: delivery.scheduledAt,
      });
      return reply.status(created ? 201 : 200).send(json);
    });
  });

  app.post('/postMessage.php', async (request, reply) => {
    const { received, values, problem: encodingProblem } = readLegacyPostForm(request.body, config.legacyPostEncoding);
    if (config.signingSecret && !config.legacyPostMessage && !allowed.allows(request.ip)) {
      request.log.warn({ address: request.ip }, 'unsigned POST /postMessage.php refused: the caller is not on --legacy-allow');
      return reply.status(403).send(legacyFailure(received,
        'Unsigned posts are refused: this server verifies signed deliveries (POST /v1/posts). ' +
          `Start it with --legacy-post-message (PSCHED_LEGACY_POST_MESSAGE=true) to accept the original dispatcher, or --legacy-allow ${request.ip} to accept it from this host only.`));
    }
    if (!values) return reply.status(400).send(legacyFailure(received, encodingProblem ?? LEGACY_FAILURES.post));
    const problem = textProblem(values);
    if (problem) return reply.status(400).send(legacyFailure(received, problem));
    await addPost({ messageId: null, username: values.username, message: values.message, scheduledAt: null });
    return reply.status(200).send(legacySuccess(received));
  });

  app.get('/v1/posts', async (request) => {
    const query = request.query as Record<string, unknown>;
    const cursor = query.cursor;
    if (cursor !== undefined && typeof cursor !== 'string') throw new ValidationError('cursor must be given once', 'cursor');
    return readFeedPage(store, { limit: parseFeedLimit(query.limit), cursor: cursor || undefined });
  });

  app.get('/v1/events', async (request, reply) => {
    const refused = streams.refusal();
    if (refused) {
      void reply.header('retry-after', String(RETRY_AFTER_S));
      throw refused;
    }
    reply.hijack();
    const lastSeen = lastEventId(request);
    streams.open(reply.raw, lastSeen ? () => missedPosts(store, lastSeen) : undefined);
  });

  app.get('/healthz', async (request, reply) => {
    void reply.header('cache-control', 'no-store');
    try {
      await store.ping();
    } catch (err) {
      request.log.error({ err }, 'health check: the database does not answer');
      return reply.status(503).send({ status: 'not ready' });
    }
    return { status: 'ok' };
  });
}

/** The limits of scheduling, applied to the original's unsigned posts too. */
function textProblem(values: { username: string; message: string }): string | undefined {
  if (textLength(values.username) > LIMITS.usernameMax) return `username must be at most ${LIMITS.usernameMax} characters`;
  if (textLength(values.message) > LIMITS.messageMax) return `message must be at most ${LIMITS.messageMax} characters`;
  if (values.username.includes('\u0000') || values.message.includes('\u0000')) return 'username and message must not contain the NUL character';
  if (isBlank(values.username)) return blankProblem('username');
  if (isBlank(values.message)) return blankProblem('message');
  return undefined;
}

/**
 * The last post the client has: the Last-Event-ID header a reconnecting
 * EventSource sends, or `?after=<post id>` from a page that was rendered with
 * that post on top (so a post arriving between rendering and connecting is not
 * missed); `?after=none` from a page that showed no post gets the recent ones.
 */
function lastEventId(request: FastifyRequest): string | undefined {
  const header = request.headers['last-event-id'];
  const after = (request.query as Record<string, unknown>).after;
  const id = typeof header === 'string' && header.length > 0 ? header : after;
  return typeof id === 'string' && id.length > 0 && id.length <= 100 ? id : undefined;
}

/**
 * The posts newer than `lastSeenId`, oldest first. When that post is not among
 * the most recent REPLAY_LIMIT, the client missed more than a replay carries:
 * it gets the most recent ones (it skips those it already shows).
 */
async function missedPosts(store: MainStore, lastSeenId: string) {
  const recent = await store.listPosts({ limit: REPLAY_LIMIT });
  const seenAt = recent.findIndex((post) => post.id === lastSeenId);
  return (seenAt >= 0 ? recent.slice(0, seenAt) : recent).reverse().map(toPostJson);
}
