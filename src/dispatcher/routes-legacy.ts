import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { addressList, type AddressList } from '../allowlist.ts';
import { ValidationError } from '../errors.ts';
import { isAuthorized, refuseCrossSiteWrites } from '../http.ts';
import {
  LEGACY_FAILURES,
  legacyFailure,
  legacySuccess,
  legacySweepAnswer,
  readLegacyScheduleForm,
} from '../protocol/legacy.ts';
import { validateScheduleRequest } from '../protocol/messages.ts';
import type { DispatcherContext } from './context.ts';
import type { AttemptResult } from './delivery.ts';

/**
 * The original dispatcher's endpoints, answering its JSON shapes, so the
 * seed's curl examples and the original main server keep working:
 *   POST /scheduleMessage.php            form username, message, time (decoded once
 *                                        more when an original main server encoded it twice;
 *                                        a time without an offset read in --legacy-timezone)
 *   GET  /cron/checkScheduledMessages.php deliver everything due now
 * Failures answer 400 (the original said 200) with the original's body.
 */
export function registerLegacyRoutes(app: FastifyInstance, { engine, clock, config }: DispatcherContext): void {
  const allowed = addressList(config.legacyAllow);
  const auth = legacyAuth(config.apiToken, allowed);
  // Without a token (loopback only) a form on any site the user visits could
  // post here, as the page's own forms are protected against (./ui.ts). With a
  // token, a browser cannot attach it (Bearer only, no Basic prompt) and the
  // token itself is the proof. Clients that send neither Origin nor
  // Sec-Fetch-Site (curl, the original PHP main server) are not affected.
  const scheduleGuard = config.apiToken ? { preHandler: auth } : { onRequest: refuseCrossSiteWrites };

  app.post('/scheduleMessage.php', scheduleGuard, async (request, reply) => {
    const form = readLegacyScheduleForm(request.body);
    if (!form.values) return reply.code(400).send(legacyFailure(form.received, form.problem ?? LEGACY_FAILURES.schedule));
    const { username, message, time } = form.values;
    try {
      const valid = validateScheduleRequest({ username, message, scheduledAt: time }, { now: clock.now(), timeZone: config.legacyTimeZone });
      await engine.schedule([valid]);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      return reply.code(400).send(legacyFailure(form.received, failureText(err, time, config.legacyTimeZone)));
    }
    return legacySuccess(form.received);
  });

  app.get('/cron/checkScheduledMessages.php', { preHandler: auth }, async () => {
    const { results } = await engine.sweep();
    return legacySweepAnswer(results.map(({ message, result }) => ({
      username: message.username,
      message: message.message,
      mainAnswer: mainAnswer(result),
    })));
  });
}

/**
 * The token, or a caller on --legacy-allow: the original main server and its
 * cron cannot send a token. A refusal answers in the original's shape and is
 * logged with the caller's address, so an operator sees which host to allow.
 */
function legacyAuth(token: string | undefined, allowed: AddressList) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (isAuthorized(request, token) || allowed.allows(request.ip)) return undefined;
    request.log.warn({ address: request.ip, url: request.url }, 'legacy endpoint refused: no API token, and the caller is not on --legacy-allow');
    const failure = `Missing or wrong API token: send "Authorization: Bearer <token>", or start the dispatcher with --legacy-allow ${request.ip} to let this host in without one`;
    const body = request.method === 'POST' ? legacyFailure(readLegacyScheduleForm(request.body).received, failure) : { result: 'Failure', failure };
    return reply.code(401).send(body);
  };
}

/** The original's failure texts were terse; these say what to send instead. */
function failureText(err: ValidationError, time: string, timeZone: string): string {
  if (err.field === 'scheduledAt') {
    return `Invalid Post. time must be "YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DDTHH:MM[:SS]" (read in ${timeZone}); got ${JSON.stringify(time)}.`;
  }
  return `Invalid Post. ${err.message}.`;
}

/** What the original put in externalResult: the main server's decoded JSON answer (null when it gave none). */
function mainAnswer(result: AttemptResult): unknown {
  const response: unknown = result.response;
  if (typeof response !== 'string') return response ?? null;
  try {
    return JSON.parse(response);
  } catch {
    return response;
  }
}
