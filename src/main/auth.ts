import type { FastifyReply, FastifyRequest } from 'fastify';
import { UnauthorizedError } from '../errors.ts';
import { isAuthorized } from '../http.ts';

/**
 * Who may call what on the main server:
 * - reading the feed (/, GET /v1/posts, /v1/events) is public — unless a token is set,
 *   then the page (which also shows scheduled messages and the compose form) needs it;
 * - scheduling (/v1/scheduled, /scheduleMessage.php, /ui/*) needs the API token when one is set;
 * - deliveries (POST /v1/posts) need the signature when a signing secret is set.
 */

/** A preHandler for the JSON API: the token as Bearer, or as the Basic password (curl -u :token). */
export function requireApiToken(token: string | undefined) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    if (!isAuthorized(request, token, true)) {
      throw new UnauthorizedError('Missing or wrong API token: send "Authorization: Bearer <token>"');
    }
  };
}

/**
 * Refuses writes that a browser makes on behalf of another site (CSRF): a
 * browser sends Basic credentials along with any form post to this origin, so
 * a form on another site could otherwise schedule or cancel messages. Browsers
 * say where a request comes from in Sec-Fetch-Site (or, older ones, Origin);
 * scripts and the dispatchers send neither and are not affected.
 */
export async function rejectCrossSiteWrites(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
  if (request.method === 'GET' || request.method === 'HEAD' || request.method === 'OPTIONS') return undefined;
  if (!isCrossSite(request)) return undefined;
  return reply.status(403).send({ error: { code: 'forbidden', message: 'Cross-site request refused: submit the form from this server\'s own page' } });
}

function isCrossSite(request: FastifyRequest): boolean {
  const site = request.headers['sec-fetch-site'];
  if (site === 'cross-site') return true;
  if (site === 'same-origin' || site === 'none') return false;
  // same-site (another port or subdomain) or an older browser: compare the Origin with the host
  const origin = request.headers.origin;
  if (typeof origin !== 'string' || origin === 'null') return false;
  const hosts = [request.headers.host, request.headers['x-forwarded-host']].filter((h): h is string => typeof h === 'string');
  try {
    return !hosts.includes(new URL(origin).host);
  } catch {
    return true;
  }
}
