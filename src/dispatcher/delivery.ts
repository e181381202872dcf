import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { Pool, buildConnector, type Dispatcher } from 'undici';
import { systemClock, type Clock } from '../clock.ts';
import { phpFormBody } from '../protocol/legacy.ts';
import type { DeliveryPayload } from '../protocol/messages.ts';
import { DELIVERY_HEADERS, SIGNATURE_HEADER, signHeader, standardWebhooksHeaders } from '../protocol/signing.ts';
import type { StoredMessage } from './store.ts';

/**
 * Delivery: one HTTP attempt to hand a due message to the main server, and
 * what that attempt means for the message. Deliverers never throw: every
 * failure is an AttemptResult. Backoff, attempt limits and the store are the
 * engine's business.
 *
 * Outcomes (both protocols):
 * - 2xx (JSON protocol), or a 2xx JSON answer with result "Success" (legacy): delivered.
 * - 408, 429, 5xx, timeouts, connection errors: retry. 429 and 503 pass their
 *   Retry-After (seconds or HTTP date) on as retryAfterMs.
 * - any other status (other 4xx, unfollowed 3xx): dead; retrying cannot help.
 * Legacy specifics: a 2xx answer with result "Failure" is dead (the original
 * main server refuses only malformed posts, which stay malformed); a 2xx
 * answer that is not JSON is retried, because PHP prints its fatal errors
 * (database down and the like) as an HTML page with status 200.
 */

export type AttemptResult =
  | { kind: 'delivered'; status: number; response?: unknown }
  | { kind: 'retry'; error: string; status?: number; retryAfterMs?: number; response?: unknown }
  | { kind: 'dead'; error: string; status?: number; response?: unknown };

export interface Deliverer {
  /**
   * Sends one attempt. `mayStillSend`, when given, is asked again at the
   * moment the request is written to its connection (it may wait there for a
   * free one): false leaves it unsent, a retry. The engine passes its lease
   * check, so a process paused between deciding and writing (SIGSTOP, a VM
   * stall) does not send what another dispatcher took over meanwhile.
   */
  deliver(message: StoredMessage, mayStillSend?: () => boolean): Promise<AttemptResult>;
  /** Waits for requests in flight, then closes the connections. */
  close(): Promise<void>;
}

/** The error of an attempt left unsent because the sender's lease lapsed while it waited for a connection. */
export const NOT_SENT_LEASE = 'not sent: the lease lapsed while it waited to be written (was the process paused?)';

/** Answers are read only to classify them and show them (legacy cron); anything longer is cut off. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export interface JsonDelivererOptions {
  /** Base URL of the main server; deliveries go to `{mainUrl}/v1/posts`. */
  mainUrl: string;
  /** Signs each delivery when set, the `signatureScheme` way (default psched: the Psched-Signature header). */
  signingSecret?: string;
  signatureScheme?: 'psched' | 'standard-webhooks';
  /** An attempt not connected, answered or finished within this is retried. */
  timeoutMs: number;
  /** Keep-alive connections to the main server. */
  connections: number;
  clock: Clock;
  /**
   * HTTP/1.1 requests sent on one connection before earlier answers arrive.
   * Default 1 (none). Deliveries are idempotent by their Idempotency-Key, so
   * pipelining is safe (a reset connection's queued requests fail as one
   * attempt each and are retried by the engine, never re-sent by undici);
   * 4 connections x 32 drained 20,000 deliveries ~30% faster than 32 x 1 on
   * the 2-core machine, at the price of head-of-line blocking behind a slow answer.
   */
  pipelining?: number;
}

export function createJsonDeliverer(options: JsonDelivererOptions): Deliverer {
  const target = new HttpTarget(options.mainUrl, '/v1/posts', options.timeoutMs, options.connections, options.pipelining ?? 1);
  const { signingSecret, clock } = options;
  const standardWebhooks = options.signatureScheme === 'standard-webhooks';
  return {
    async deliver(message, mayStillSend) {
      const payload = deliveryPayload(message);
      const body = JSON.stringify(payload);
      const now = clock.now();
      // When it was meant to go out, which attempt this is and when it was sent, for a receiver
      // measuring lateness: the signature covers them (the first two are in the signed body, the
      // send time is the signature's timestamp); these headers repeat them for routing and logs.
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'idempotency-key': message.id,
        [DELIVERY_HEADERS.scheduledAt]: payload.scheduledAt,
        [DELIVERY_HEADERS.attempt]: String(payload.attempt),
        [DELIVERY_HEADERS.sentAt]: new Date(now).toISOString(),
      };
      if (signingSecret && standardWebhooks) Object.assign(headers, standardWebhooksHeaders(signingSecret, message.id, now, body));
      else if (signingSecret) headers[SIGNATURE_HEADER] = signHeader(signingSecret, now, body);
      const answer = await target.post(headers, body, mayStillSend);
      if (answer.kind === 'failed') return { kind: 'retry', error: answer.error };
      const { status, response } = answer;
      if (status >= 200 && status < 300) return { kind: 'delivered', status, response };
      return failedStatus(answer, clock);
    },
    close: () => target.close(),
  };
}

/** The JSON body of a delivery, keys in the documented order. */
export function deliveryPayload(message: StoredMessage): DeliveryPayload {
  return {
    id: message.id,
    username: message.username,
    message: message.message,
    scheduledAt: new Date(message.scheduledAt).toISOString(),
    attempt: message.attempts,
  };
}

export interface LegacyDelivererOptions {
  /** Base URL of the main server; deliveries go to `{mainUrl}/postMessage.php`. */
  mainUrl: string;
  timeoutMs: number;
  connections: number;
  /** Reads Retry-After dates; the system clock by default. */
  clock?: Clock;
}

/**
 * Delivers as the PHP original did: a form post of username and message,
 * each value encoded twice (`http_build_query` of `urlencode`d values), since
 * the original's postMessage.php decodes once more than its form parser.
 * psched's own postMessage.php decodes the same way (--legacy-post-encoding).
 */
export function createLegacyDeliverer(options: LegacyDelivererOptions): Deliverer {
  const target = new HttpTarget(options.mainUrl, '/postMessage.php', options.timeoutMs, options.connections, 1);
  const clock = options.clock ?? systemClock;
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  return {
    async deliver(message, mayStillSend) {
      const body = phpFormBody({ username: message.username, message: message.message });
      const answer = await target.post(headers, body, mayStillSend);
      if (answer.kind === 'failed') return { kind: 'retry', error: answer.error };
      const { status, response } = answer;
      if (status < 200 || status >= 300) return failedStatus(answer, clock);
      const result = (response as { result?: unknown } | undefined)?.result;
      if (result === 'Success') return { kind: 'delivered', status, response };
      if (result === 'Failure') {
        const failure = (response as { failure?: unknown }).failure;
        return { kind: 'dead', status, response, error: `main server answered Failure: ${typeof failure === 'string' ? failure : 'no reason given'}` };
      }
      return { kind: 'retry', status, response, error: `main server answered ${status} without a JSON result` };
    },
    close: () => target.close(),
  };
}

type HttpAnswer =
  | { kind: 'answered'; status: number; retryAfter: string | undefined; response: unknown; text: string }
  | { kind: 'failed'; error: string };

/**
 * A keep-alive pool to one endpoint of the main server.
 *
 * Pipelined requests sent close together leave in one write per
 * connection: undici writes each request on its own (a writev system call
 * each, ~30 µs on loopback, where the kernel also does the receiving end's
 * TCP work), so its connections are corked from the first request of a turn
 * of the event loop until its check phase (setImmediate, queued after the one
 * in which undici writes the first request to a connection that was idle).
 * undici corks and uncorks around each request; corks nest, so they go out
 * at ours. Measured with `npm run bench:feed` (20,000 due over 5 s): the
 * dispatcher made 2.7 write system calls per delivery instead of 3.4 (the
 * rest are SQLite's), the main server 4.4 reads and writes instead of 5.0.
 */
class HttpTarget {
  #pool: Pool;
  #path: string;
  #pipelined: boolean;
  #sockets = new Set<Socket>();
  #corked = false;

  constructor(mainUrl: string, endpoint: string, timeoutMs: number, connections: number, pipelining: number) {
    const url = new URL(mainUrl);
    this.#path = url.pathname.replace(/\/+$/, '') + endpoint;
    this.#pipelined = pipelining > 1;
    // the connector undici builds from these options by default, its sockets remembered
    const connector = buildConnector({ timeout: timeoutMs });
    this.#pool = new Pool(url.origin, {
      connections: Math.max(1, connections),
      pipelining: Math.max(1, pipelining),
      connectTimeout: timeoutMs,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      ...(this.#pipelined ? {
        connect: (options: buildConnector.Options, callback: buildConnector.Callback) => connector(options, (...args) => {
          if (args[1]) this.#remember(args[1]);
          callback(...args);
        }),
      } : {}),
    });
  }

  /** A new connection: the requests that waited for it are written in this turn, in one write too. */
  #remember(socket: Socket): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.cork();
    process.nextTick(() => socket.uncork());
  }

  #uncork = (): void => {
    this.#corked = false;
    for (const socket of this.#sockets) socket.uncork();
  };

  /**
   * One POST. Through `dispatch` with a small handler rather than
   * `request()`: no Readable stream and no promise chain per answer, ~10 µs
   * less per delivery (measured), which counts at 10,000 deliveries/s.
   */
  post(headers: Record<string, string>, body: string, mayStillSend?: () => boolean): Promise<HttpAnswer> {
    return new Promise((resolve) => {
      const options: Dispatcher.DispatchOptions = { method: 'POST', path: this.#path, headers, body };
      // undici pipelines a POST only when told it may be repeated (it may: the receiver dedupes by id)
      if (this.#pipelined) Object.assign(options, { idempotent: true, blocking: false });
      // the first request since the last uncork corks every connection (see the class)
      const corks = this.#pipelined && !this.#corked;
      if (corks) {
        this.#corked = true;
        for (const socket of this.#sockets) socket.cork();
      }
      try {
        this.#pool.dispatch(options, new AnswerReader(resolve, mayStillSend));
      } catch (err) {
        resolve({ kind: 'failed', error: describeError(err) });
      }
      if (corks) setImmediate(this.#uncork);
    });
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

/**
 * Collects one answer: status, Retry-After and at most MAX_RESPONSE_BYTES of
 * the body (a longer one is cut off and its connection closed). A body cut
 * off after the status arrived still counts as answered: the status alone
 * decides.
 */
class AnswerReader implements Dispatcher.DispatchHandler {
  #resolve: (answer: HttpAnswer) => void;
  #status = 0;
  #retryAfter: string | undefined;
  #chunks: Buffer[] = [];
  #length = 0;
  #written = false;
  readonly #mayStillSend: (() => boolean) | undefined;

  constructor(resolve: (answer: HttpAnswer) => void, mayStillSend?: () => boolean) {
    this.#resolve = resolve;
    this.#mayStillSend = mayStillSend;
  }

  /**
   * Called each time undici writes the request. When a pipelined request
   * ahead of it fails (a timeout resets the connection), undici writes the
   * requests queued behind it again on a new connection, unasked: every
   * attempt would then be sent up to pipelining-depth times while the engine
   * counts one. The second write is refused here, so the attempt fails as
   * one attempt and the engine's backoff and --max-attempts bound what is sent.
   */
  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.#written) controller.abort(new Error('not re-sent: the connection it was pipelined on failed'));
    else if (this.#mayStillSend && !this.#mayStillSend()) controller.abort(new Error(NOT_SENT_LEASE));
    this.#written = true;
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.#status = statusCode;
    const retryAfter = headers['retry-after'];
    this.#retryAfter = Array.isArray(retryAfter) ? retryAfter[0] : retryAfter;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    if (this.#length >= MAX_RESPONSE_BYTES) {
      this.#answered();
      controller.abort(new Error('answer too long: cut off'));
    }
  }

  onResponseEnd(): void {
    this.#answered();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#status > 0) this.#answered();
    else this.#resolve({ kind: 'failed', error: describeError(error) });
  }

  #answered(): void {
    const raw = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const text = raw.subarray(0, MAX_RESPONSE_BYTES).toString('utf8');
    this.#resolve({ kind: 'answered', status: this.#status, retryAfter: this.#retryAfter, response: parseJson(text), text });
  }
}

function parseJson(text: string): unknown {
  const start = text.trimStart()[0];
  if (start !== '{' && start !== '[') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Classifies a non-2xx answer: retry for 408, 429 and 5xx, dead otherwise. */
function failedStatus(answer: Extract<HttpAnswer, { kind: 'answered' }>, clock: Clock): AttemptResult {
  const { status, response } = answer;
  const error = `main server answered ${status}${summary(answer.text)}`;
  if (status === 408 || status === 429 || status >= 500) {
    const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(answer.retryAfter, clock.now()) : undefined;
    return retryAfterMs === undefined
      ? { kind: 'retry', status, error, response }
      : { kind: 'retry', status, error, response, retryAfterMs };
  }
  return { kind: 'dead', status, error, response };
}

/** Retry-After as delta-seconds or an HTTP date, in ms from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (!Number.isFinite(date)) return undefined;
  return Math.max(0, date - now);
}

/** The start of an error answer, for lastError (shown in the UI). */
function summary(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  if (!oneLine) return '';
  return `: ${oneLine.length > 200 ? oneLine.slice(0, 200) + '…' : oneLine}`;
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
  return `${typeof code === 'string' ? code + ': ' : ''}${err.message}${cause}`;
}
