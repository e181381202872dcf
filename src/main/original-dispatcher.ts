import { NotScheduledError, NotSupportedError } from '../errors.ts';
import { formatWallClock } from '../protocol/time.ts';
import { phpFormBody } from '../protocol/legacy.ts';
import type { DispatcherAnswer, DispatcherPool } from './pool.ts';

/**
 * The main server in front of original PHP dispatchers
 * (`--dispatcher-protocol legacy`, see /work/shared/ORIGINAL-PROTOCOL.md).
 *
 * Scheduling is the original main server's form post to
 * `<url>/scheduleMessage.php`, byte for byte: each value encoded twice
 * (`http_build_query(['username' => urlencode(v), …])`), because the
 * original dispatcher reads each field as `urldecode($_POST[field])`, and the
 * time as `YYYY-MM-DD HH:MM:SS` in this server's --timezone, because the
 * original stores it as a MySQL DATETIME compared with the database's NOW().
 *
 * The original has no idempotency key: a request is sent once in all (see
 * DispatcherPool.createOnce), and only an answer whose JSON says
 * `"result":"Success"` counts as stored. The original answers everything
 * with HTTP 200, so its status says nothing: an HTML page (a wrong URL, a
 * web server's default page), an empty body or its "Failure" are all "not
 * scheduled", never passed on as a success as the original main server did.
 *
 * It cannot list, change or cancel messages (it has no API for them):
 * `unsupported` says so, naming the dispatchers.
 */

/** The fields the original dispatcher stored, as its answer echoes them. */
export interface OriginalAnswer {
  received?: { username?: string; message?: string; time?: string };
  result: 'Success';
}

/**
 * What POST /v1/scheduled answers (201) for a message stored on an original
 * dispatcher: it has no id, no key and no status to report, so `id` and
 * `idempotencyKey` are null and `status` is what psched knows; the
 * original's own answer is `externalResult`.
 */
export interface OriginalScheduledJson {
  id: null;
  status: 'scheduled';
  username: string;
  message: string;
  scheduledAt: string;
  idempotencyKey: null;
  dispatcher: string;
  externalResult: OriginalAnswer;
}

/** Characters of a non-JSON answer quoted in an error: enough to recognise the page. */
const QUOTED_LENGTH = 120;

/**
 * Schedules on one original dispatcher of the pool. Resolves with a 201
 * answer whose body is an OriginalScheduledJson; rejects with a
 * NotScheduledError when the dispatcher answered anything but its JSON
 * Success, an OutcomeUnknownError (no key) when it did not answer after the
 * request was sent, an UnavailableError when none could be reached.
 */
export async function scheduleOnOriginal(
  pool: DispatcherPool,
  message: { username: string; message: string; scheduledAt: number },
  timeZone: string,
): Promise<DispatcherAnswer> {
  const time = formatWallClock(message.scheduledAt, timeZone);
  const answer = await pool.createOnce({
    method: 'POST',
    path: '/scheduleMessage.php',
    // the original main server's body: http_build_query of the urlencoded values, so each value encoded twice
    form: phpFormBody({ username: message.username, message: message.message, time }),
  });
  const body: OriginalScheduledJson = {
    id: null,
    status: 'scheduled',
    username: message.username,
    message: message.message,
    scheduledAt: new Date(message.scheduledAt).toISOString(),
    idempotencyKey: null,
    dispatcher: answer.dispatcher,
    externalResult: readOriginalAnswer(answer),
  };
  return { dispatcher: answer.dispatcher, status: 201, body };
}

/** The original's answer when it says Success; otherwise a NotScheduledError saying what came instead. */
export function readOriginalAnswer(answer: DispatcherAnswer): OriginalAnswer {
  const { body } = answer;
  const result = typeof body === 'object' && body !== null ? (body as { result?: unknown }).result : undefined;
  if (answer.status >= 200 && answer.status < 300 && result === 'Success') return body as OriginalAnswer;
  const status = answer.status >= 200 && answer.status < 300 ? '' : `HTTP ${answer.status} with `;
  let what: string;
  if (body === null) what = 'an empty body';
  else if (typeof body === 'string') what = `a page that is not its JSON answer (${quote(body)}): is ${answer.dispatcher} an original dispatcher?`;
  else if (result === 'Failure') {
    const failure = (body as { failure?: unknown }).failure;
    what = `"Failure": ${typeof failure === 'string' ? failure : 'no reason given'}`;
  } else what = `JSON without "result":"Success" (${quote(JSON.stringify(body))})`;
  throw new NotScheduledError(`Not scheduled: the original dispatcher at ${answer.dispatcher} answered ${status}${what}`, body);
}

/** The error for listing, changing or cancelling: the original has no way to do it. */
export function unsupported(urls: readonly string[], what: 'list' | 'change' | 'cancel'): NotSupportedError {
  const which = urls.length === 1 ? `The original dispatcher at ${urls[0]}` : `The original dispatchers at ${urls.join(', ')}`;
  const pages = urls.map((url) => `${url}/`).join(', ');
  return new NotSupportedError(`${which} cannot ${what} messages (--dispatcher-protocol legacy); ${urls.length === 1 ? 'its page' : 'their pages'} ${pages} ${urls.length === 1 ? 'shows' : 'show'} what is scheduled`);
}

/** A page quoted in one line: tags and runs of white space dropped, cut to QUOTED_LENGTH. */
function quote(text: string): string {
  const flat = text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
  return JSON.stringify(flat.length > QUOTED_LENGTH ? `${flat.slice(0, QUOTED_LENGTH)}…` : flat);
}
