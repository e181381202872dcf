import { createHash, randomUUID } from 'node:crypto';
import type { Clock } from '../clock.ts';
import { UnavailableError, ValidationError } from '../errors.ts';
import { validateMessagePatch, validateScheduleRequest } from '../protocol/messages.ts';
import { encodeCursor, parseLimit } from '../protocol/paging.ts';
import { MESSAGE_STATUSES, readError, readMessage, readMessagePage, type MessageJson } from '../protocol/wire.ts';
import { scheduleOnOriginal, unsupported, type OriginalScheduledJson } from './original-dispatcher.ts';
import { mergeListings, resourcePath, withDispatcher, type DispatcherAnswer, type DispatcherPool } from './pool.ts';

/**
 * Scheduled messages as the main server offers them (/v1/scheduled, the
 * original's scheduleMessage.php, the UI): input is validated here so bad
 * input never leaves, then the request goes to the dispatcher pool.
 *
 * Requests are forwarded normalised: the time as an RFC 3339 UTC instant, so
 * "09:00" means 09:00 in the main server's (or the client's) zone whatever
 * zone a dispatcher runs in, and a failover does not shift a delaySeconds.
 *
 * With the `legacy` protocol the pool holds original PHP dispatchers: a new
 * message goes as the original main server's form (./original-dispatcher.ts),
 * and listing, changing and cancelling, which they cannot do, are refused
 * with a NotSupportedError.
 */

/** A dispatcher's message plus the dispatcher that holds it. */
export interface ScheduledJson extends MessageJson {
  dispatcher: string;
}

export interface ScheduledPage {
  items: ScheduledJson[];
  nextCursor: string | null;
  /** Dispatchers that did not answer: their messages are missing from this page. */
  unavailable: { dispatcher: string; message: string }[];
}

export interface ListQuery {
  limit?: unknown;
  cursor?: unknown;
  status?: unknown;
}

export const LIST_LIMIT = { fallback: 50, max: 200 } as const;


export class ScheduledMessages {
  #pool: DispatcherPool;
  #clock: Clock;
  #timeZone: string;
  #protocol: 'json' | 'legacy';

  constructor(pool: DispatcherPool, clock: Clock, timeZone: string, protocol: 'json' | 'legacy' = 'json') {
    this.#pool = pool;
    this.#clock = clock;
    this.#timeZone = timeZone;
    this.#protocol = protocol;
  }

  /** Whether the pool holds original PHP dispatchers (no keys, no listing, no changes). */
  get original(): boolean {
    return this.#protocol === 'legacy';
  }

  /**
   * Validates and forwards a new message; the dispatcher's answer (201, 200
   * for a known key, 4xx). Rejects with an OutcomeUnknownError when it may or
   * may not be stored. Without a key in the input the key is random, or, with
   * `keyFromContent`, derived from the sender and the message (see contentKey).
   *
   * On original dispatchers no key is sent (they take none), so a key in the
   * input is refused rather than ignored: a client that sends one expects
   * that sending again is safe, and it is not; `keyFromContent` is ignored.
   * A deliverBy is refused there for the same reason: they would send the
   * message however late. To psched dispatchers it goes as an RFC 3339 instant.
   * A stored message is answered 201 with an OriginalScheduledJson.
   */
  async schedule(input: unknown, options: { keyFromContent?: { sender: string } } = {}): Promise<DispatcherAnswer> {
    const valid = validateScheduleRequest(input, { now: this.#clock.now(), timeZone: this.#timeZone });
    if (this.original) {
      if (valid.idempotencyKey !== null) throw this.#originalCannot('idempotencyKey', 'a request sent again may be stored twice; leave idempotencyKey out');
      if (valid.deliverBy != null) throw this.#originalCannot('deliverBy', 'would deliver it however late; leave deliverBy out');
      return scheduleOnOriginal(this.#pool, valid, this.#timeZone);
    }
    const scheduledAt = new Date(valid.scheduledAt).toISOString();
    const derived = valid.idempotencyKey === null && options.keyFromContent
      ? contentKey(options.keyFromContent.sender, valid.username, valid.message, scheduledAt)
      : undefined;
    const idempotencyKey = valid.idempotencyKey ?? derived ?? randomUUID();
    const answer = await this.#pool.create(
      {
        method: 'POST',
        path: '/v1/messages',
        body: {
          username: valid.username, message: valid.message, scheduledAt, idempotencyKey,
          ...(valid.deliverBy != null ? { deliverBy: new Date(valid.deliverBy).toISOString() } : {}),
        },
      },
      { idempotencyKey, clientKey: valid.idempotencyKey !== null || derived !== undefined },
    );
    return withDispatcher(answer);
  }

  /**
   * Every dispatcher's messages merged in due-time order. The cursor is the
   * dispatchers' own (due time, id) cursor of the last item returned: each
   * dispatcher continues after that point in the same order, so one cursor
   * pages through all of them. On a shared database every dispatcher lists the
   * same messages: duplicates are dropped by id.
   */
  async list(query: ListQuery): Promise<ScheduledPage> {
    if (this.original) throw unsupported(this.#pool.urls, 'list');
    const limit = parseLimit(query.limit, LIST_LIMIT);
    const params = new URLSearchParams({ limit: String(limit) });
    if (query.status !== undefined) {
      if (typeof query.status !== 'string' || !(MESSAGE_STATUSES as readonly string[]).includes(query.status)) {
        throw new ValidationError(`status must be one of ${MESSAGE_STATUSES.join(', ')}`, 'status');
      }
      params.set('status', query.status);
    }
    if (query.cursor !== undefined && query.cursor !== '') {
      if (typeof query.cursor !== 'string') throw new ValidationError('cursor must be a string', 'cursor');
      params.set('cursor', query.cursor);
    }
    const answers = await this.#pool.all({ method: 'GET', path: `/v1/messages?${params}` });
    const { items, more, unavailable } = mergeListings(answers, (answer) => {
      if (answer.status !== 200) throw new DispatcherAnswerError(answer);
      const page = readMessagePage(answer.body);
      if (!page) throw new UnavailableError(`Dispatcher ${answer.dispatcher} answered an unexpected list`);
      return page;
    }, byDueTime, limit);
    const last = items.at(-1);
    return {
      items,
      nextCursor: more && last ? encodeCursor({ at: Date.parse(last.dueAt), id: last.id }) : null,
      unavailable,
    };
  }

  /** Refused on original dispatchers: a field they take no part of, so it cannot be honoured. */
  #originalCannot(field: string, consequence: string): ValidationError {
    const many = this.#pool.size > 1;
    return new ValidationError(
      `${field} cannot be honoured: the original dispatcher${many ? 's' : ''} at ${this.#pool.urls.join(', ')} take${many ? '' : 's'} none, and ${consequence}`, field);
  }

  /** Validates and forwards a change (scheduledAt, message and/or deliverBy, null dropping it); the holder's answer (200, 404, 409). */
  async update(id: string, input: unknown): Promise<DispatcherAnswer> {
    if (this.original) throw unsupported(this.#pool.urls, 'change');
    const patch = validateMessagePatch(input, { timeZone: this.#timeZone, now: this.#clock.now() });
    const body: Record<string, string | null> = {};
    if (patch.message !== undefined) body.message = patch.message;
    if (patch.scheduledAt !== undefined) body.scheduledAt = new Date(patch.scheduledAt).toISOString();
    if (patch.deliverBy !== undefined) body.deliverBy = patch.deliverBy === null ? null : new Date(patch.deliverBy).toISOString();
    return withDispatcher(await this.#pool.find({ method: 'PATCH', path: messagePath(id), body }));
  }

  /** Cancels a scheduled message; the holder's answer (204, 404, 409). */
  async cancel(id: string): Promise<DispatcherAnswer> {
    if (this.original) throw unsupported(this.#pool.urls, 'cancel');
    return this.#pool.find({ method: 'DELETE', path: messagePath(id) });
  }
}

/** A dispatcher's 4xx answer to a listing, passed on as it is. */
export class DispatcherAnswerError extends Error {
  override name = 'DispatcherAnswerError';
  readonly answer: DispatcherAnswer;
  constructor(answer: DispatcherAnswer) {
    super(`dispatcher ${answer.dispatcher} answered HTTP ${answer.status}`);
    this.answer = answer;
  }
}

/**
 * The idempotency key of a form that cannot carry one (the original's
 * scheduleMessage.php): the same sender, name, text and instant are the same
 * message, so sending that form again never posts it twice. No time window:
 * one would split a resubmission that straddles its edge into two keys, and
 * the same text by the same name at the same instant is a duplicate in the
 * feed anyway. The dispatcher holds the key as long as the message (until it
 * is purged, --retention after delivery); to post the same thing twice, use
 * the JSON API with keys of your own.
 */
export function contentKey(sender: string, username: string, message: string, scheduledAt: string): string {
  return `content-${createHash('sha256').update(JSON.stringify([sender, username, message, scheduledAt])).digest('hex')}`;
}

function messagePath(id: string): string {
  return resourcePath('/v1/messages', id);
}

function byDueTime(a: MessageJson, b: MessageJson): number {
  const due = Date.parse(a.dueAt) - Date.parse(b.dueAt);
  if (due !== 0) return due;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * The message a successful answer carries (a dispatcher's, or what psched
 * knows of one stored on an original dispatcher, whose id is null); an
 * UnavailableError when the dispatcher answered something else.
 */
export function answeredMessage(answer: DispatcherAnswer): { id: string | null; scheduledAt: string; message: string } {
  const message = readMessage(answer.body);
  if (message) return message;
  const body = answer.body as Partial<OriginalScheduledJson> | null;
  if (body?.id === null && typeof body.scheduledAt === 'string' && typeof body.message === 'string') return { id: null, scheduledAt: body.scheduledAt, message: body.message };
  throw new UnavailableError(`Dispatcher ${answer.dispatcher} answered HTTP ${answer.status} without a message`);
}

/** What a dispatcher's error answer says, for a person: its message, else its status. */
export function answerErrorText(answer: DispatcherAnswer): string {
  return readError(answer.body).message ?? `The dispatcher answered HTTP ${answer.status}`;
}

