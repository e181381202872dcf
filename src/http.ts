import { timingSafeEqual } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import formbody from '@fastify/formbody';
import { toHttpError, UnauthorizedError } from './errors.ts';

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
}

export const DEFAULT_BODY_LIMIT = 8 * 1024 * 1024;

/** The original's forms carry three short fields: 64 KiB is plenty. */
export const FORM_BODY_LIMIT = 64 * 1024;

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
  const app = Fastify({
    logger: options.logger,
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    // one log line per request would cost more than the request itself at 10,000/s
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: 'idle',
  });
  await app.register(formbody, { bodyLimit: FORM_BODY_LIMIT });
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
