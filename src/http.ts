import { timingSafeEqual } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { toHttpError, UnauthorizedError } from './errors.ts';
import { decodeJsonBody, parseFormBody, parseJsonBody, requireUtf8Charset } from './http-bodies.ts';

/**
 * What both HTTP services share: Fastify with pino JSON logs, form bodies (the
 * original's endpoints), a body-size limit, the one error handler that turns
 * errors into `{ "error": { "code", "message" } }`, and bearer-token auth.
 */
export interface HttpServerOptions {
  /** pino options, or false for silence (tests). */
  logger: boolean | { level: string };
  /** Largest accepted body in bytes. A 1,000-message batch of 5,000-character texts fits. */
  bodyLimit?: number;
}

export const DEFAULT_BODY_LIMIT = 8 * 1024 * 1024;

/** Form posts (the original's endpoints, the pages) carry one message: 64 KiB is ample. */
const FORM_BODY_LIMIT = 64 * 1024;

export async function createHttpServer(options: HttpServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger,
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
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
  app.setErrorHandler((err, request, reply) => {
    const { status, body } = toHttpError(err);
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

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The token a request carries: `Authorization: Bearer <token>`, or (for
 * browsers, `allowBasic`) HTTP Basic auth with the token as the password.
 */
export function requestToken(request: FastifyRequest, allowBasic: boolean): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const [scheme, value] = header.split(' ', 2);
  if (!value) return undefined;
  if (scheme?.toLowerCase() === 'bearer') return value.trim();
  if (allowBasic && scheme?.toLowerCase() === 'basic') {
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
    if (!isAuthorized(request, token, true)) {
      void reply.header('www-authenticate', `Basic realm="${realm}", charset="UTF-8"`);
      throw new UnauthorizedError('This page needs the API token: log in with any user name and the token as password');
    }
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
  if (typeof origin !== 'string' || origin === 'null') return site !== undefined;
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

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost|\[::1\])$/i;

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.test(host);
}

/** /v1 speaks JSON only: a body of any other type is refused before it is read. */
export async function requireJsonBody(request: FastifyRequest, reply: FastifyReply) {
  const type = request.headers['content-type'];
  const hasBody = type !== undefined || request.headers['transfer-encoding'] !== undefined || Number(request.headers['content-length'] ?? 0) > 0;
  if (!hasBody || /^application\/json\s*(;|$)/i.test(type ?? '')) return;
  return reply.code(415).send({
    error: { code: 'unsupported_media_type', message: `Send the body as application/json (got ${type ?? 'no content-type'})` },
  });
}
