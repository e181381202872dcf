import { createHash } from 'node:crypto';
import { Pool } from 'undici';
import { UnavailableError } from '../errors.ts';

/**
 * The main server's view of the dispatcher pool: one keep-alive undici pool
 * per dispatcher, requests that carry the API token, and the three ways the
 * main server talks to the pool:
 *
 * - `create`: one dispatcher stores a new message. Spread round-robin, failing
 *   over only when the message surely was not stored (see `create`).
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

/** Keep-alive connections per dispatcher: enough for bursts of UI and API calls. */
const CONNECTIONS_PER_DISPATCHER = 16;

export interface DispatcherRequest {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Path under the dispatcher's base URL, starting with "/", query included. */
  path: string;
  body?: unknown;
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
 * - `refused`: the dispatcher answered that it did not do it (5xx from its own error
 *   handler, which answers only after the transaction rolled back; or a refused token).
 * - `unconfirmed`: the request was sent but no definite answer came back (timeout,
 *   connection lost, a proxy's 502/504): it may or may not have taken effect.
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
   * - `not-sent` or `refused` (no connection; a 5xx or refused token): try the next dispatcher;
   * - `unconfirmed` (sent, no definite answer): ask the same dispatcher once
   *   more with the same key, which it dedupes; if that fails too, stop with a
   *   503 that tells the client to retry with the same key;
   * - a definite answer (2xx, 4xx): return it.
   *
   * The first dispatcher asked is the next in turn, or, when the client chose
   * the key, one derived from the key: a client that retries after an
   * unconfirmed answer reaches the same dispatcher, which dedupes it.
   */
  async create(request: DispatcherRequest, options: { idempotencyKey: string; clientKey: boolean }): Promise<DispatcherAnswer> {
    const n = this.#members.length;
    const start = options.clientKey ? keyHash(options.idempotencyKey) % n : this.#next++ % n;
    const failures: DispatcherFailure[] = [];
    for (let i = 0; i < n; i++) {
      const index = (start + i) % n;
      try {
        return await this.send(index, request);
      } catch (err) {
        if (!(err instanceof DispatcherFailure)) throw err;
        if (err.kind !== 'unconfirmed') {
          failures.push(err);
          continue;
        }
      }
      try {
        return await this.send(index, request);
      } catch (err) {
        if (!(err instanceof DispatcherFailure)) throw err;
        throw new UnavailableError(
          `Dispatcher ${err.dispatcher} did not confirm (${err.message}); it may have stored the message. ` +
            `Retry with idempotencyKey ${JSON.stringify(options.idempotencyKey)} to be sure it is stored once.`,
          { cause: err },
        );
      }
    }
    throw noDispatcherAnswered(failures);
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
    const headers = request.body === undefined ? this.#headers : { ...this.#headers, 'content-type': 'application/json' };
    let status: number;
    let text: string;
    try {
      const response = await member.pool.request({
        method: request.method,
        path: member.basePath + request.path,
        headers,
        body: request.body === undefined ? undefined : JSON.stringify(request.body),
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
    if (status >= 500) throw new DispatcherFailure(member.url, 'refused', `HTTP ${status}${errorMessage(body)}`);
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

function errorMessage(body: unknown): string {
  const message = (body as { error?: { message?: unknown } } | null)?.error?.message;
  return typeof message === 'string' ? `: ${message}` : '';
}

function keyHash(key: string): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0);
}
