import type { FastifyInstance, FastifyReply } from 'fastify';
import { addressList } from '../allowlist.ts';
import type { MainConfig } from '../config.ts';
import { NotScheduledError, OutcomeUnknownError, ValidationError, toHttpError } from '../errors.ts';
import { isAuthorized, requireJsonBody } from '../http.ts';
import {
  legacyDispatcherAnswer, legacyFailure, legacyForwarded, legacyNoDispatcher, legacyOutcomeUnknown, readLegacyScheduleForm, LEGACY_FAILURES,
} from '../protocol/legacy.ts';
import { isValidTimeZone } from '../protocol/time.ts';
import { requireApiToken } from './auth.ts';
import type { DispatcherAnswer } from './pool.ts';
import type { OriginalScheduledJson } from './original-dispatcher.ts';
import { answerErrorText, DispatcherAnswerError, type ScheduledMessages } from './scheduled.ts';
import type { Schedules } from './schedules.ts';

/**
 * Scheduling through the main server: the JSON API (/v1/scheduled) and the
 * original's scheduleMessage.php. Both spend this server's credentials at the
 * dispatchers, so both need the API token when one is configured.
 */
export interface ScheduledRoutesContext {
  config: Readonly<MainConfig>;
  scheduled: ScheduledMessages;
  schedules: Schedules;
}

export function registerScheduledRoutes(app: FastifyInstance, context: ScheduledRoutesContext): void {
  const { config, scheduled, schedules } = context;
  const allowed = addressList(config.legacyAllow);
  const auth = { preHandler: requireApiToken(config.accessToken) };
  // the JSON API reads JSON only, as the dispatcher's does: a form or text body is refused before it is read
  const jsonApi = { ...auth, onRequest: requireJsonBody };

  app.post('/v1/scheduled', jsonApi, async (request, reply) => passThrough(reply, await scheduled.schedule(request.body)));

  app.get('/v1/scheduled', auth, async (request, reply) => {
    try {
      return await scheduled.list(request.query as Record<string, unknown>);
    } catch (err) {
      if (err instanceof DispatcherAnswerError) return passThrough(reply, err.answer);
      throw err;
    }
  });

  app.patch('/v1/scheduled/:id', jsonApi, async (request, reply) => {
    const { id } = request.params as { id: string };
    return passThrough(reply, await scheduled.update(id, request.body));
  });

  app.delete('/v1/scheduled/:id', auth, async (request, reply) => {
    const { id } = request.params as { id: string };
    return passThrough(reply, await scheduled.cancel(id));
  });

  // recurring messages, passed through to the pool (./schedules.ts); a preview is computed here
  app.post('/v1/schedules', jsonApi, async (request, reply) => passThrough(reply, await schedules.create(request.body)));
  app.get('/v1/schedules', auth, async (request) => schedules.list(request.query as Record<string, unknown>));
  app.post('/v1/schedules/preview', jsonApi, async (request) => schedules.preview(request.body));
  app.get('/v1/schedules/:id', auth, async (request, reply) => passThrough(reply, await schedules.get((request.params as { id: string }).id)));
  app.get('/v1/schedules/:id/preview', auth, async (request, reply) =>
    passThrough(reply, await schedules.previewSaved((request.params as { id: string }).id, (request.query as Record<string, unknown>).count)));
  app.patch('/v1/schedules/:id', jsonApi, async (request, reply) => passThrough(reply, await schedules.update((request.params as { id: string }).id, request.body)));
  app.delete('/v1/schedules/:id', auth, async (request, reply) => passThrough(reply, await schedules.remove((request.params as { id: string }).id)));

  /**
   * The original's form: `time` is the datetime-local value, read in the
   * `timezone` field's zone when the page sent one, else --legacy-timezone
   * (by default this host's zone, as the original read it).
   * Answers in the original's shape, `externalResult` in the original
   * dispatcher's (`{"received":…,"result":"Success"}`) followed by the stored
   * message's fields; failures with a 4xx/503 status instead of the original's 200.
   * The form carries no idempotency key: one is derived from the sender's
   * address and the message (contentKey), so the same form sent again (after
   * a timeout, or a 502 "Unknown" when the dispatcher did not confirm) is
   * stored once. In front of original dispatchers (no keys) it is not, and
   * the answer says so; `externalResult` is then the original's own answer,
   * as the original main server sent it (null when it was not JSON).
   */
  app.post('/scheduleMessage.php', async (request, reply) => {
    const { received, values, problem } = readLegacyScheduleForm(request.body);
    if (!isAuthorized(request, config.accessToken, true) && !allowed.allows(request.ip)) {
      request.log.warn({ address: request.ip }, 'POST /scheduleMessage.php refused: no access token, and the caller is not on --legacy-allow');
      void reply.header('www-authenticate', 'Basic realm="psched", charset="UTF-8"');
      return reply.status(401).send(legacyFailure(received, 'Missing or wrong API token: send "Authorization: Bearer <token>" (or curl -u :<token>)'));
    }
    if (!values) return reply.status(400).send(legacyFailure(received, problem ?? LEGACY_FAILURES.schedule));
    let answer: DispatcherAnswer;
    try {
      const timeZone = legacyTimeZone(request.body) ?? config.legacyTimeZone;
      answer = await scheduled.schedule(
        { username: values.username, message: values.message, scheduledAt: values.time, timeZone },
        { keyFromContent: { sender: request.ip } },
      );
    } catch (err) {
      if (err instanceof OutcomeUnknownError) {
        const advice = err.idempotencyKey === null
          ? 'The original dispatcher takes no idempotency key: sending the same form again may post it twice; look at its page first.'
          : 'Sending the same form again is safe: it will not be posted twice.';
        return reply.status(err.status).send(legacyOutcomeUnknown(received, `${err.detail}: it may or may not be scheduled. ${advice}`));
      }
      if (err instanceof NotScheduledError) {
        const externalResult = typeof err.answer === 'object' ? err.answer : null;
        return reply.status(err.status).send({ ...legacyFailure(received, err.message), externalResult });
      }
      const { status, body } = toHttpError(err);
      if (status === 503) return reply.status(503).send(legacyNoDispatcher(received));
      return reply.status(status).send(legacyFailure(received, body.error.message));
    }
    if (answer.status >= 400) {
      const failure = answerErrorText(answer);
      return reply.status(answer.status).send({ ...legacyFailure(received, failure), externalResult: scheduled.original ? answer.body : legacyDispatcherAnswer(values, { result: 'Failure', failure }, answer.body) });
    }
    // an original dispatcher's own answer as it gave it; a psched dispatcher's in the original's shape, then the stored message
    const externalResult = scheduled.original
      ? (answer.body as OriginalScheduledJson).externalResult
      : legacyDispatcherAnswer(values, { result: 'Success' }, answer.body);
    return reply.status(200).send(legacyForwarded(received, externalResult));
  });
}

/** Sends a dispatcher's answer on as it is: its status and its JSON body (none for 204). */
function passThrough(reply: FastifyReply, answer: DispatcherAnswer): FastifyReply {
  void reply.status(answer.status);
  return answer.status === 204 || answer.body === null ? reply.send() : reply.send(answer.body);
}

function legacyTimeZone(body: unknown): string | undefined {
  const value = (body as Record<string, unknown> | null)?.timezone;
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || !isValidTimeZone(value)) throw new ValidationError('timezone must be an IANA time zone such as "Europe/Berlin"', 'timezone');
  return value;
}

