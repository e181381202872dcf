import { createHash } from 'node:crypto';
import { Pool } from 'undici';
import { OutcomeUnknownError, UnavailableError, ValidationError } from '../errors.ts';
import { readError, type Page } from '../protocol/wire.ts';

/**
 * The main server's view of the dispatcher pool: one keep-alive undici pool
 * per dispatcher, requests that carry the API token, and the three ways the
 * main server talks to the pool:
 *
 * - `create`: one dispatcher stores a new message. Spread round-robin, failing
 *   over only when the message surely was not stored, and answering "outcome
 *   unknown" rather than "not stored" when that is not known (see `create`).
 * - `createOnce`: the same for a request without an idempotency key (an
 *   original PHP dispatcher's form): never sent twice, not even to the same one.
 * - `all`: every dispatcher answers (listing).
 * - `find`: ask one after another until one knows the message (PATCH/DELETE).
 *
 * A dispatcher's definite answers (2xx, 4xx) are returned as they are; what is
 * not an answer (no connection, a timeout, a 5xx, a refused token) becomes a
 * DispatcherFailure saying whether the request may have taken effect.
 */

/**
 * How long to wait for a TCP connection. Dispatchers sit on the same host or
 * LAN: one that has not accepted within a second is down, and the next one
 * should get the request while the user is still waiting.
 */
const CONNECT_TIMEOUT_MS = 1_000;

/**
 * How long to wait for an answer once the request is sent. A durable write is
 * one group-committed fsync (milliseconds); seconds mean an overloaded or
 * stuck dispatcher. Long enough not to give up on a slow disk.
 */
const REQUEST_TIMEOUT_MS = 5_000;

/**
 * How many idempotency keys with an unknown outcome the pool remembers, with
 * the dispatcher that may hold each. A resubmission comes within minutes of
 * its unknown answer; 10,000 keys of at most 200 characters are a few MB at
 * worst, and a key forgotten (or lost with a restart) still goes first to the
 * dispatcher its hash picks, where a first attempt without failover went.
 */
const MAX_UNKNOWN_KEYS = 10_000;

/** The code a dispatcher answers with when its fsync failed after the commit (src/errors.ts). */
const DURABILITY_UNKNOWN = 'durability_unknown';

/** Keep-alive connections per dispatcher: enough for bursts of UI and API calls. */
const CONNECTIONS_PER_DISPATCHER = 16;

export interface DispatcherRequest {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Path under the dispatcher's base URL, starting with "/", query included. */
  path: string;
  /** Sent as JSON. */
  body?: unknown;
  /**
   * Sent as it is, as application/x-www-form-urlencoded (instead of `body`),
   * on a connection of its own that is closed after the answer: an original
   * PHP dispatcher behind Apache closes idle keep-alive connections after a
   * few seconds, and a POST on one it is closing fails with a reset that
   * could only be called "outcome unknown"; the original's curl opened one
   * connection per request too.
   */
  form?: string;
}

export interface DispatcherAnswer {
  /** The base URL of the dispatcher that answered. */
  dispatcher: string;
  status: number;
  /** Parsed JSON, the raw text when it was not JSON, null when empty. */
  body: unknown;
}

/**
 * - `not-sent`: the request never reached the dispatcher (no connection): nothing happened there.
 * - `refused`: the dispatcher answered that it did not do it: a 503 (its store
 *   refuses writes: "nothing was written" after a failed sync, or its database
 *   is unreachable) or a refused token. (A PostgreSQL connection lost during
 *   COMMIT is a 503 too, though the commit may have happened; the request then
 *   goes on with the same key to a dispatcher on the same database, which
 *   dedupes it.)
 * - `unconfirmed`: the request was sent but no definite answer came back: a
 *   timeout, a connection lost mid-request, a proxy's 502/504, or a 500. A 500
 *   `durability_unknown` says the row was committed but the disk did not
 *   confirm it; any other 500 may come after the commit too (an answer that
 *   failed to serialise), so none of them says "not stored".
 */
export type FailureKind = 'not-sent' | 'refused' | 'unconfirmed';

export class DispatcherFailure extends Error {
  override name = 'DispatcherFailure';
  readonly dispatcher: string;
  readonly kind: FailureKind;
  constructor(dispatcher: string, kind: FailureKind, reason: string, options?: ErrorOptions) {
    super(reason, options);
    this.dispatcher = dispatcher;
    this.kind = kind;
  }
}

/** Connection errors that happen before a single byte of the request is sent. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT',
]);

const REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  UND_ERR_CONNECT_TIMEOUT: 'connect timeout',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'answer stalled',
  UND_ERR_SOCKET: 'connection lost',
  ECONNRESET: 'connection reset',
};

interface Member {
  url: string;
  basePath: string;
  pool: Pool;
}

export interface DispatcherPoolOptions {
  apiToken?: string | undefined;
  /** Overrides REQUEST_TIMEOUT_MS (tests). */
  requestTimeoutMs?: number;
}

export class DispatcherPool {
  readonly urls: readonly string[];
  #members: Member[];
  #headers: Record<string, string>;
  #next = 0;
  #closed = false;
  /** Keys whose outcome is unknown, with the index of the dispatcher that may hold each (oldest first). */
  #unknown = new Map<string, number>();

  constructor(urls: readonly string[], options: DispatcherPoolOptions = {}) {
    if (urls.length === 0) throw new Error('the dispatcher pool needs at least one URL (--dispatcher-url)');
    const timeout = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    this.urls = Object.freeze([...urls]);
    this.#members = urls.map((url) => {
      const parsed = new URL(url);
      return {
        url,
        basePath: parsed.pathname.replace(/\/+$/, ''),
        pool: new Pool(parsed.origin, {
          connections: CONNECTIONS_PER_DISPATCHER,
          connect: { timeout: CONNECT_TIMEOUT_MS },
          headersTimeout: timeout,
          bodyTimeout: timeout,
        }),
      };
    });
    this.#headers = { accept: 'application/json' };
    if (options.apiToken) this.#headers.authorization = `Bearer ${options.apiToken}`;
  }

  get size(): number {
    return this.#members.length;
  }

  /**
   * Stores a new message on one dispatcher, never on two.
   *
   * The request must carry an idempotency key. That key dedupes only within
   * one dispatcher's store (dispatchers on their own SQLite files share
   * nothing; only a pool on one PostgreSQL database shares keys), so moving a
   * request to another dispatcher is safe only when the first surely did not
   * store it. Hence:
   * - `not-sent` or `refused` (no connection; a 503 or refused token): try the next dispatcher;
   * - `unconfirmed` (sent, no definite answer): ask the same dispatcher once
   *   more with the same key, which it dedupes; if that does not settle it,
   *   remember the key with that dispatcher and reject with an
   *   OutcomeUnknownError: "may or may not be stored", never "not stored";
   * - a definite answer (2xx, 4xx): return it.
   *
   * A key remembered with an unknown outcome goes to that dispatcher only,
   * whatever it answers, until it answers 2xx: another one could store a
   * second copy. Otherwise the first dispatcher asked is the next in turn,
   * or, when the client chose the key, one derived from the key: a client
   * that retries after the main server forgot the key reaches the same
   * dispatcher, which dedupes it.
   */
  async create(request: DispatcherRequest, options: { idempotencyKey: string; clientKey: boolean }): Promise<DispatcherAnswer> {
    const { idempotencyKey } = options;
    const n = this.#members.length;
    const holder = this.#unknown.get(idempotencyKey);
    if (holder !== undefined) return this.#settleOn(holder, request, idempotencyKey, 2);
    const start = options.clientKey ? keyHash(idempotencyKey) % n : this.#next++ % n;
    return this.#inTurn(start, request, (index, err) => this.#settleOn(index, request, idempotencyKey, 1, err));
  }

  /**
   * Stores a new message on one dispatcher, for a request that carries no
   * idempotency key (an original PHP dispatcher takes none): no dispatcher can
   * dedupe a second copy, so the request is sent at most once in all.
   * `not-sent` or `refused`: the next dispatcher; `unconfirmed`: an
   * OutcomeUnknownError without a key, at once; a definite answer: returned.
   */
  createOnce(request: DispatcherRequest): Promise<DispatcherAnswer> {
    return this.#inTurn(this.#next++ % this.#members.length, request, async (_index, err) => {
      throw new OutcomeUnknownError(`Dispatcher ${err.dispatcher} did not confirm (${err.message})`, null, { cause: err });
    });
  }

  /**
   * Sends `request` to one dispatcher after another from `start`, until one
   * answers definitely (returned). Only one that surely stored nothing
   * (`not-sent`, `refused`) is passed over; an `unconfirmed` one ends the turn
   * in `unconfirmed`, which decides what follows. Nobody answered: a 503.
   */
  async #inTurn(
    start: number,
    request: DispatcherRequest,
    unconfirmed: (index: number, err: DispatcherFailure) => Promise<DispatcherAnswer>,
  ): Promise<DispatcherAnswer> {
    const n = this.#members.length;
    const failures: DispatcherFailure[] = [];
    for (let i = 0; i < n; i++) {
      const index = (start + i) % n;
      try {
        return await this.send(index, request);
      } catch (err) {
        if (!(err instanceof DispatcherFailure)) throw err;
        if (err.kind === 'unconfirmed') return unconfirmed(index, err);
        failures.push(err);
      }
    }
    throw noDispatcherAnswered(failures);
  }

  /**
   * Asks dispatcher `index`, which may hold the message, up to `tries` times
   * with the same key. Asks again only after an unconfirmed answer: one that
   * is down or refuses writes now cannot say what it did with the first one.
   */
  async #settleOn(index: number, request: DispatcherRequest, idempotencyKey: string, tries: number, earlier?: DispatcherFailure): Promise<DispatcherAnswer> {
    const failures = earlier ? [earlier] : [];
    for (let i = 0; i < tries; i++) {
      try {
        const answer = await this.send(index, request);
        if (answer.status < 300) this.#unknown.delete(idempotencyKey);
        return answer;
      } catch (err) {
        if (!(err instanceof DispatcherFailure)) throw err;
        failures.push(err);
        if (err.kind !== 'unconfirmed') break;
      }
    }
    this.#unknown.delete(idempotencyKey);
    this.#unknown.set(idempotencyKey, index);
    if (this.#unknown.size > MAX_UNKNOWN_KEYS) this.#unknown.delete(this.#unknown.keys().next().value!);
    const [first, ...later] = failures;
    const again = later.length > 0 ? `; asked again: ${later.map((f) => f.message).join('; ')}` : '';
    throw new OutcomeUnknownError(`Dispatcher ${this.#members[index]!.url} did not confirm (${first!.message}${again})`, idempotencyKey, { cause: first });
  }

  /** Every dispatcher in parallel: its answer, or why there is none. */
  all(request: DispatcherRequest): Promise<(DispatcherAnswer | DispatcherFailure)[]> {
    return Promise.all(this.#members.map((_, index) => this.send(index, request).catch((err: unknown) => {
      if (err instanceof DispatcherFailure) return err;
      throw err;
    })));
  }

  /**
   * For a change to an existing message: asks one dispatcher after another
   * (never in parallel: on a shared database each would apply it) and returns
   * the first answer other than 404. When all that answered said 404 but some
   * did not answer, the message may be on those: 503 rather than a wrong 404.
   */
  async find(request: DispatcherRequest): Promise<DispatcherAnswer> {
    const failures: DispatcherFailure[] = [];
    let notFound: DispatcherAnswer | undefined;
    for (let index = 0; index < this.#members.length; index++) {
      try {
        const answer = await this.send(index, request);
        if (answer.status !== 404) return answer;
        notFound = answer;
      } catch (err) {
        if (!(err instanceof DispatcherFailure)) throw err;
        failures.push(err);
      }
    }
    if (failures.length > 0) {
      throw new UnavailableError(
        `${describeFailures(failures)}; the message may be held there, so it cannot be ${request.method === 'DELETE' ? 'cancelled' : 'changed'} now`,
        { cause: failures[0] },
      );
    }
    return notFound!;
  }

  /** One request to one dispatcher. Resolves with a definite answer (2xx-4xx), rejects with a DispatcherFailure. */
  async send(index: number, request: DispatcherRequest): Promise<DispatcherAnswer> {
    if (this.#closed) throw new Error('the dispatcher pool is closed');
    const member = this.#members[index]!;
    const contentType = request.form !== undefined ? 'application/x-www-form-urlencoded' : request.body !== undefined ? 'application/json' : undefined;
    const headers = contentType === undefined ? this.#headers : { ...this.#headers, 'content-type': contentType };
    let status: number;
    let text: string;
    try {
      const response = await member.pool.request({
        method: request.method,
        path: member.basePath + request.path,
        headers,
        body: request.form ?? (request.body === undefined ? undefined : JSON.stringify(request.body)),
        ...(request.form !== undefined ? { reset: true } : {}),
      });
      status = response.statusCode;
      text = await response.body.text();
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      const reason = REASONS[code] ?? ((err as Error).message || code || 'request failed');
      throw new DispatcherFailure(member.url, NOT_SENT_CODES.has(code) ? 'not-sent' : 'unconfirmed', reason, { cause: err });
    }
    const body = parseBody(text);
    if (status === 502 || status === 504) throw new DispatcherFailure(member.url, 'unconfirmed', `HTTP ${status} from a proxy`);
    if (status >= 500) {
      // a 503 (a store refusing writes) or a full disk (507 storage_full: rolled back) stored nothing
      const notWritten = (status === 503 && errorCode(body) !== DURABILITY_UNKNOWN) || (status === 507 && errorCode(body) === 'storage_full');
      throw new DispatcherFailure(member.url, notWritten ? 'refused' : 'unconfirmed', `HTTP ${status}${errorMessage(body)}`);
    }
    if (status === 401 || status === 403) {
      throw new DispatcherFailure(member.url, 'refused', `HTTP ${status}: it refused the API token (give both services the same --api-token)`);
    }
    return { dispatcher: member.url, status, body };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#members.map((member) => member.pool.destroy()));
  }
}

/** The 503 when no dispatcher took a request: names each one and why. */
export function noDispatcherAnswered(failures: readonly DispatcherFailure[]): UnavailableError {
  return new UnavailableError(`No dispatcher answered: ${describeFailures(failures)}`, { cause: failures[0] });
}

/** Tags a successful answer's body (a message, a schedule) with the dispatcher that holds it. */
export function withDispatcher(answer: DispatcherAnswer): DispatcherAnswer {
  if (answer.status >= 300 || typeof answer.body !== 'object' || answer.body === null || Array.isArray(answer.body)) return answer;
  return { ...answer, body: { ...answer.body, dispatcher: answer.dispatcher } };
}

/** Longest id a path to one resource may carry. */
const MAX_ID_LENGTH = 200;

/** The dispatcher path of one resource (`/v1/messages/:id`, `/v1/schedules/:id`), the id checked and encoded. */
export function resourcePath(collection: '/v1/messages' | '/v1/schedules', id: string): string {
  if (id.length === 0 || id.length > MAX_ID_LENGTH) throw new ValidationError(`id must be 1 to ${MAX_ID_LENGTH} characters`, 'id');
  return `${collection}/${encodeURIComponent(id)}`;
}

export interface MergedListing<T> {
  /** At most `limit`, in `compare` order, each tagged with the dispatcher it came from. */
  items: (T & { dispatcher: string })[];
  /** More remain: past the limit here, or on some dispatcher. */
  more: boolean;
  /** Dispatchers that did not answer: their items are missing. */
  unavailable: { dispatcher: string; message: string }[];
}

/**
 * Every dispatcher's page of a listing merged into one: duplicates by id
 * dropped (on a shared database they all list the same items), sorted, cut
 * at `limit`. `read` turns one answer into its page or throws what the
 * caller answers for a bad one. A 503 when no dispatcher answered.
 */
export function mergeListings<T extends { id: string }>(
  answers: readonly (DispatcherAnswer | DispatcherFailure)[],
  read: (answer: DispatcherAnswer) => Page<T>,
  compare: (a: T, b: T) => number,
  limit: number,
): MergedListing<T> {
  const failures = answers.filter((a): a is DispatcherFailure => a instanceof DispatcherFailure);
  if (failures.length === answers.length) throw noDispatcherAnswered(failures);
  const byId = new Map<string, T & { dispatcher: string }>();
  let moreOnSomeDispatcher = false;
  for (const answer of answers) {
    if (answer instanceof DispatcherFailure) continue;
    const page = read(answer);
    if (page.nextCursor) moreOnSomeDispatcher = true;
    for (const item of page.items) if (!byId.has(item.id)) byId.set(item.id, { ...item, dispatcher: answer.dispatcher });
  }
  const merged = [...byId.values()].sort(compare);
  return {
    items: merged.slice(0, limit),
    more: merged.length > limit || moreOnSomeDispatcher,
    unavailable: failures.map((f) => ({ dispatcher: f.dispatcher, message: f.message })),
  };
}

function describeFailures(failures: readonly DispatcherFailure[]): string {
  return failures.map((failure) => `${failure.dispatcher} (${failure.message})`).join(', ');
}

function parseBody(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function errorCode(body: unknown): string | undefined {
  return readError(body).code;
}

function errorMessage(body: unknown): string {
  const { message } = readError(body);
  return message === undefined ? '' : `: ${message}`;
}

function keyHash(key: string): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0);
}
