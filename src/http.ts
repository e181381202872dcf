import { hash, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { toHttpError, UnauthorizedError } from './errors.ts';
import { html } from './html.ts';
import { isLoopbackHost } from './loopback.ts';
import { page } from './ui/layout.ts';
import { decodeJsonBody, parseFormBody, parseJsonBody, requireUtf8Charset } from './http-bodies.ts';

/**
 * What both HTTP services share: Fastify with pino JSON logs, form bodies (the
 * original's endpoints), a body-size limit, the one error handler that turns
 * errors into `{ "error": { "code", "message" } }`, and bearer-token auth.
 */
export interface HttpServerOptions {
  /** pino options, or false for silence (tests). */
  logger: boolean | { level: string };
  /** Largest accepted body in bytes, for routes without a limit of their own (a batch has one). */
  bodyLimit?: number;
  /**
   * Turns the Host check on (see hostCheck): only requests addressed to a
   * loopback name or to one of these are answered. For services that trust
   * whoever reaches them on loopback (no token); undefined: no check.
   */
  allowedHosts?: readonly string[] | undefined;
  /** DEFAULT_TIMEOUTS unless given (tests use short ones). */
  timeouts?: Partial<HttpTimeouts> | undefined;
}

export const DEFAULT_BODY_LIMIT = 8 * 1024 * 1024;

/** Form posts (the original's endpoints, the pages) carry one message: 64 KiB is ample. */
export const FORM_BODY_LIMIT = 64 * 1024;

/**
 * How long a client may take. Fastify's defaults let a connection that never
 * finishes its headers or its body hold a socket for 60 s or for ever, so a
 * few hundred slow clients would use up the file descriptors.
 */
export interface HttpTimeouts {
  /** Until the request line and headers have arrived: a browser or curl sends them at once. */
  headersMs: number;
  /**
   * Until the whole request, body included, has arrived. The 8 MiB body limit
   * in 30 s needs at least 280 KB/s from the client. It does not bound the
   * answer: an event stream (/v1/events) or a long cron sweep is not cut off.
   */
  requestMs: number;
  /**
   * An idle keep-alive connection between requests. Longer than the clients'
   * own reuse window, so the server is never the one to close a connection a
   * client is about to reuse: undici (the main server's calls to the
   * dispatchers, the dispatchers' deliveries) follows the `Keep-Alive:
   * timeout=72` hint this sends, and load balancers commonly idle out at 60 s.
   */
  keepAliveMs: number;
}

export const DEFAULT_TIMEOUTS: Readonly<HttpTimeouts> = Object.freeze({ headersMs: 10_000, requestMs: 30_000, keepAliveMs: 72_000 });

/**
 * What a 413 says: the limit, in bytes, that the request went over. A route's
 * own limit applies to every body; without one a form has FORM_BODY_LIMIT and
 * anything else the server's.
 */
function tooLargeMessage(request: FastifyRequest, serverLimit: number): string {
  const routeLimit = request.routeOptions.bodyLimit ?? serverLimit;
  const isForm = /^application\/x-www-form-urlencoded\s*(;|$)/i.test(request.headers['content-type'] ?? '');
  const limit = routeLimit === serverLimit && isForm ? FORM_BODY_LIMIT : routeLimit;
  return `Request body is too large: ${request.method} ${request.routeOptions.url ?? request.url} takes at most ${limit} bytes`;
}

export async function createHttpServer(options: HttpServerOptions): Promise<FastifyInstance> {
  const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  const app = Fastify({
    logger: options.logger,
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    requestTimeout: timeouts.requestMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    // No socket inactivity timeout (connectionTimeout): it would also cut off
    // an answer that is slow to start, such as a cron sweep waiting on its
    // deliveries. The three limits above cover the idle and the slow clients.
    http: {
      headersTimeout: Math.min(timeouts.headersMs, timeouts.requestMs),
      // Node looks for expired requests only this often (default 30 s, which
      // would let a slow client stay up to twice the limit)
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(timeouts.headersMs / 4))),
    },
    // one log line per request would cost more than the request itself at 10,000/s
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: 'idle',
    // the router's own refusals and malformed HTTP answer in the same shape as every other error
    frameworkErrors: (err, _request, reply: FastifyReply) => {
      const status = err.statusCode ?? 400;
      const code = status === 414 ? 'uri_too_long' : 'invalid_request';
      const message = err.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? `A path segment is longer than ${MAX_PARAM_LENGTH} characters: no id is that long`
        : err.code === 'FST_ERR_BAD_URL' ? 'The URL is malformed (a % not followed by two hex digits, or bytes that are not UTF-8)'
          : err.message;
      void reply.status(status).send({ error: { code, message } });
    },
    clientErrorHandler: answerClientError,
  });
  // bodies are read strictly as UTF-8 (./http-bodies.ts), so nothing is stored with a character nobody sent
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    try {
      requireUtf8Charset(request.headers['content-type']);
      done(null, parseJsonBody(decodeJsonBody(body as Buffer)));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'buffer', bodyLimit: FORM_BODY_LIMIT }, (request, body, done) => {
    try {
      requireUtf8Charset(request.headers['content-type']);
      done(null, parseFormBody(body as Buffer));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  // first, so a refused request reaches no other hook, route or 404 answer
  if (options.allowedHosts) app.addHook('onRequest', hostCheck(options.allowedHosts));
  const serverLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
  app.setErrorHandler((err, request, reply) => {
    const { status, body } = toHttpError(err);
    if (status === 413) body.error.message = tooLargeMessage(request, serverLimit);
    if (status >= 500) request.log.error({ err }, 'request failed');
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send({ error: { code: 'not_found', message: `No route for ${request.method} ${request.url}` } });
  });
  return app;
}

/** Fastify's default: the longest path parameter the router takes (ids are 36 characters). */
const MAX_PARAM_LENGTH = 100;

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (malformed
 * request lines, oversized headers, a request that took too long): answered
 * on the socket in the documented shape, then closed.
 */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return;
  const [status, code, message] = err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'headers_too_large', 'The request headers are too large (16 KiB in all at most)']
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'request_timeout', 'The request did not arrive in time']
      : [400, 'invalid_request', `Malformed HTTP request (${err.code ?? 'parse error'}): ${err.message}`];
  const body = JSON.stringify({ error: { code, message } });
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

/**
 * Compares SHA-256 digests rather than the texts: timingSafeEqual needs equal
 * lengths, and checking the lengths first would tell a caller how long the
 * token is. The digests always match in length, so the time says nothing.
 */
function sameSecret(given: string, expected: string): boolean {
  let expectedDigest = secretDigests.get(expected);
  if (!expectedDigest) {
    expectedDigest = sha256(expected);
    secretDigests.set(expected, expectedDigest);
  }
  return timingSafeEqual(sha256(given), expectedDigest);
}

/** One-shot hash(): a Hash object per request cost ~2 µs, this ~1.2 µs (measured). */
const sha256 = (text: string) => hash('sha256', text, 'buffer');

/** The configured tokens' digests, made once: hashing both sides of every request cost ~4 µs of it. (A process has one or two tokens.) */
const secretDigests = new Map<string, Buffer>();

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * The token a request carries: exactly `Authorization: Bearer <token>` (the
 * scheme in any case, one space, then everything to the end is the token, so
 * `Bearer <token> junk` is a different, wrong, token), or (for browsers,
 * `allowBasic`) HTTP Basic auth with the token as the password.
 */
export function requestToken(request: FastifyRequest, allowBasic: boolean): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const space = header.indexOf(' ');
  if (space < 0) return undefined;
  const scheme = header.slice(0, space).toLowerCase();
  const value = header.slice(space + 1);
  if (scheme === 'bearer') return value;
  if (allowBasic && scheme === 'basic' && BASE64.test(value)) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 ? decoded.slice(colon + 1) : undefined;
  }
  return undefined;
}

/** True when no token is configured or the request carries it. */
export function isAuthorized(request: FastifyRequest, token: string | undefined, allowBasic = false): boolean {
  if (!token) return true;
  const given = requestToken(request, allowBasic);
  return given !== undefined && sameSecret(given, token);
}

/** A preHandler that answers 401 unless the request carries the token. */
export function requireToken(token: string | undefined) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    if (!isAuthorized(request, token)) {
      throw new UnauthorizedError('Missing or wrong API token: send "Authorization: Bearer <token>"');
    }
  };
}

/** For HTML pages: asks the browser for Basic auth (any user name, the token as password). */
export function requirePageToken(token: string | undefined, realm: string) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (isAuthorized(request, token, true)) return undefined;
    void reply.header('www-authenticate', `Basic realm="${realm}", charset="UTF-8"`);
    const message = 'This page needs the API token: log in with any user name and the token as password';
    // a browser whose user cancelled the login (or gave a wrong password) sees a page, not JSON
    if (!/text\/html/.test(request.headers.accept ?? '')) throw new UnauthorizedError(message);
    return reply.status(401).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(page({
      title: 'Log in',
      subtitle: realm,
      body: html`<section class="card"><h2>This page needs the API token</h2>
<p>Reload the page and log in with any user name, and the API token as the password
(<code>--api-token</code> or <code>PSCHED_API_TOKEN</code> of this server; with <code>npm start</code>, the
<code>apiToken</code> in <code>./data/dev-credentials.json</code>).</p>
<p><a class="button" href="">Try again</a></p></section>`,
    }));
  };
}

/**
 * True when a browser says the request comes from another site's page. A
 * browser sends Basic credentials along with any form post to this origin, so
 * without this check a form elsewhere could schedule or cancel messages (CSRF).
 * Browsers tell the source in Sec-Fetch-Site (older ones only in Origin);
 * scripts, curl and the dispatchers send neither and are not affected.
 */
export function isCrossSiteRequest(request: FastifyRequest): boolean {
  const site = request.headers['sec-fetch-site'];
  if (site === 'cross-site') return true;
  if (site === 'same-origin' || site === 'none') return false;
  // same-site (another port or subdomain) or an older browser: compare the Origin with the host
  const origin = request.headers.origin;
  // "null" is an origin the browser hides (a sandboxed frame, a data: URL, a
  // redirect from another site): it cannot be shown to be this server's page
  if (origin === 'null') return true;
  if (typeof origin !== 'string') return site !== undefined;
  try {
    const from = new URL(origin);
    // both parsed the same way, so a default port written out ("host:80") still matches
    const hosts = [request.headers.host, request.headers['x-forwarded-host']]
      .filter((h): h is string => typeof h === 'string')
      .map((h) => new URL(`${from.protocol}//${h}`).host);
    return !hosts.includes(from.host);
  } catch {
    return true;
  }
}

/** An onRequest hook refusing cross-site writes (see isCrossSiteRequest) with 403. */
export async function refuseCrossSiteWrites(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
  if (request.method === 'GET' || request.method === 'HEAD' || request.method === 'OPTIONS') return undefined;
  if (!isCrossSiteRequest(request)) return undefined;
  return reply.status(403).send({ error: { code: 'forbidden', message: 'Cross-site request refused: submit the form from this server\'s own page' } });
}

// in a module of its own, so the configuration can check --host without loading the web framework
export { isLoopbackHost } from './loopback.ts';

/** /v1 speaks JSON only: a body of any other type is refused before it is read. (A callback hook: no promise per request.) */
export function requireJsonBody(request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  const type = request.headers['content-type'];
  if (type !== undefined ? JSON_TYPE.test(type) : request.headers['transfer-encoding'] === undefined && !(Number(request.headers['content-length'] ?? 0) > 0)) return done();
  void reply.code(415).send({
    error: { code: 'unsupported_media_type', message: `Send the body as application/json (got ${type ?? 'no content-type'})` },
  });
}

const JSON_TYPE = /^application\/json\s*(;|$)/i;

/** The name in a Host header without its port, lower case; undefined if it is not one (user info, a path, garbage). */
function hostHeaderName(host: string): string | undefined {
  const match = /^([a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::\d*)?$/i.exec(host);
  return match?.[1]!.toLowerCase();
}

/**
 * Guards a service without a token against DNS rebinding: a page on
 * evil.example whose name is then pointed at 127.0.0.1 talks to a loopback
 * service as its own origin, so neither the cross-site check nor CORS stops
 * it, and with no token nothing else does. The browser still says which name
 * it meant in the Host header, so only loopback names (localhost, 127.x.x.x,
 * [::1], any port) and the names given are answered; any other gets 421. A
 * request without Host (HTTP/1.0; Node refuses HTTP/1.1 without one) cannot
 * come from a browser and passes.
 */
export function hostCheck(allowed: readonly string[]) {
  const names = new Set(allowed.map((name) => name.toLowerCase()));
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const host = request.headers.host;
    if (host === undefined) return undefined;
    const name = hostHeaderName(host);
    if (name !== undefined && (isLoopbackHost(name) || names.has(name))) return undefined;
    return reply.status(421).send({
      error: {
        code: 'misdirected_request',
        message: 'This server has no token, so it answers only requests addressed to localhost, 127.0.0.1 or [::1]' +
          (names.size ? ` or ${[...names].join(', ')}` : '') +
          ' (a page elsewhere could otherwise reach it through DNS rebinding). ' +
          'Add the name you use with --allowed-hosts (PSCHED_ALLOWED_HOSTS), or set a token.',
      },
    });
  };
}
