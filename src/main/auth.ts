import type { FastifyReply, FastifyRequest } from 'fastify';
import { UnauthorizedError } from '../errors.ts';
import { isAuthorized } from '../http.ts';

/**
 * Who may call what on the main server:
 * - reading the feed (GET /v1/posts, /v1/events) is public: it is what the site publishes;
 * - the page and scheduling (/, /v1/scheduled, /scheduleMessage.php, /ui/*) need the
 *   access token when one is set (--access-token; --api-token is what this server sends
 *   to the dispatchers, not what it asks of its own users);
 * - deliveries (POST /v1/posts) need the signature when a signing secret is set.
 */

/** A preHandler for the JSON API: the token as Bearer, or as the Basic password (curl -u :token). */
export function requireApiToken(token: string | undefined) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    if (!isAuthorized(request, token, true)) {
      throw new UnauthorizedError('Missing or wrong access token: send "Authorization: Bearer <token>"');
    }
  };
}
