import { randomUUID } from 'node:crypto';
import { formFields } from '../http-bodies.ts';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Clock } from '../clock.ts';
import type { MainConfig } from '../config.ts';
import { NotScheduledError, OutcomeUnknownError, ValidationError, toHttpError } from '../errors.ts';
import { isValidTimeZone, parseUserTime } from '../protocol/time.ts';
import { requirePageToken } from '../http.ts';
import { readFeedPage, FEED_LIMIT } from './feed.ts';
import type { DispatcherAnswer } from './pool.ts';
import { answeredMessage, answerErrorText, DispatcherAnswerError, type ScheduledMessages } from './scheduled.ts';
import type { Schedules } from './schedules.ts';
import { readError } from '../protocol/wire.ts';
import type { MainStore } from './store.ts';
import {
  DEFAULT_LEAD_MS, REPEAT_KINDS, WEEKDAYS, pickerValue, renderHome, wallClockText, type ComposeValues, type HomeView, type Notice,
} from './ui.ts';

/**
 * The page at `/` and the plain form posts behind it. Every form post answers
 * with a redirect (303) to `/?flash=<id>`, Post/Redirect/Get, so a reload
 * never posts again; what happened is kept on the server under that id (see
 * Flashes) and shown once: a reload shows the page without the notice.
 *
 * A compose form that failed comes back filled in, so nothing typed is lost
 * (on a reload too), with the same idempotency key: when the dispatcher did
 * not confirm (the message may or may not be scheduled) the page says so, and
 * submitting the form again stores it at most once. Only the page after a
 * success has a new key.
 *
 * A time already past is refused here unless "post now" is ticked: the form
 * is for people, and a wrong AM/PM must not turn into an instant post. The
 * JSON API keeps taking past times as "due now" (documented).
 */
export interface UiRoutesContext {
  config: Readonly<MainConfig>;
  store: MainStore;
  clock: Clock;
  scheduled: ScheduledMessages;
  schedules: Schedules;
}

/** Posts shown per page of the feed. */
const FEED_PAGE = FEED_LIMIT.fallback;

/** Scheduled messages shown per page; "Later messages" pages on. */
const SCHEDULED_SHOWN = 50;

/** Recurring messages shown on the page. */
const SCHEDULES_SHOWN = 50;

/** Fire times a compose form's preview shows. */
const PREVIEW_COUNT = 5;

/** Characters of a message quoted in a notice: enough to recognise it. */
const PREVIEW_LENGTH = 80;

/**
 * Flashes kept at once and for how long. A flash lives from a form post to the
 * GET of its redirect (milliseconds) and, for a compose form that failed, until
 * the user reloads or leaves: ten minutes covers a coffee; a thousand covers
 * any page traffic between a post and its redirect, and bounds the memory (at
 * most 5,000 characters each).
 */
const MAX_FLASHES = 1_000;
const FLASH_TTL_MS = 10 * 60_000;

/**
 * What a form post leaves for the page it redirects to, in memory under a
 * random id (no user text in the URL, so a crafted link cannot put words on
 * the page): the notice, shown by the first GET only, and a compose form to
 * show again, kept for reloads until it expires.
 */
class Flashes {
  #items = new Map<string, { notice?: Notice | undefined; compose?: ComposeValues | undefined; expires: number }>();
  #clock: Clock;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  put(notice: Notice, compose?: ComposeValues): string {
    const now = this.#clock.now();
    // a Map iterates in insertion order: the oldest first
    for (const [id, flash] of this.#items) {
      if (flash.expires > now && this.#items.size < MAX_FLASHES) break;
      this.#items.delete(id);
    }
    const id = randomUUID();
    this.#items.set(id, { notice, compose, expires: now + FLASH_TTL_MS });
    return id;
  }

  /** The notice (once) and the compose form (until it expires) left under `id`. */
  take(id: string): { notice?: Notice | undefined; compose?: ComposeValues | undefined } {
    const flash = this.#items.get(id);
    if (!flash || flash.expires <= this.#clock.now()) return {};
    const { notice, compose } = flash;
    if (compose) flash.notice = undefined;
    else this.#items.delete(id);
    return { notice, compose };
  }
}

export function registerUiRoutes(app: FastifyInstance, context: UiRoutesContext): void {
  const { config, store, clock, scheduled, schedules } = context;
  const auth = { preHandler: requirePageToken(config.accessToken, 'psched') };
  const flashes = new Flashes(clock);

  const defaultCompose = (): ComposeValues => ({
    username: '',
    message: '',
    time: pickerValue(clock.now() + DEFAULT_LEAD_MS, config.timeZone).slice(0, 16),
    timeZone: config.timeZone,
    isDefault: true,
    postNow: false,
    idempotencyKey: randomUUID(),
    ...NO_REPEAT,
  });

  const renderPage = async (
    reply: FastifyReply,
    options: { status?: number; notice?: Notice | undefined; compose?: ComposeValues | undefined; cursor?: string | undefined; later?: string | undefined },
  ) => {
    const [feed, pending, recurring] = await Promise.all([
      readFeedPage(store, { limit: FEED_PAGE, cursor: options.cursor }),
      scheduled.list({ limit: String(SCHEDULED_SHOWN), status: 'scheduled', cursor: options.later }).then(
        (page) => ({
          items: page.items,
          laterCursor: page.nextCursor,
          paged: options.later !== undefined,
          problem: page.unavailable.length > 0 ? `Not shown: messages on ${page.unavailable.map((u) => `${u.dispatcher} (${u.message})`).join(', ')}` : undefined,
        }),
        (err: unknown) => {
          // a dispatcher refusing the cursor: a link that is not (or no longer) a page; the GET shows the first page
          if (err instanceof DispatcherAnswerError && err.answer.status === 400 && options.later) throw new ValidationError('later is not a page of the scheduled list', 'later');
          const problem = err instanceof DispatcherAnswerError ? answerErrorText(err.answer) : toHttpError(err).body.error.message;
          return { items: [], laterCursor: null, paged: options.later !== undefined, problem };
        },
      ),
      schedules.list({ limit: String(SCHEDULES_SHOWN) }).then(
        (page) => ({ items: page.items, problem: page.unavailable.length > 0 ? `Not shown: schedules on ${page.unavailable.map((u) => `${u.dispatcher} (${u.message})`).join(', ')}` : undefined }),
        (err: unknown) => ({ items: [], problem: toHttpError(err).body.error.message }),
      ),
    ]);
    const view: HomeView = {
      notice: options.notice,
      compose: options.compose ?? defaultCompose(),
      posts: feed.items,
      olderCursor: feed.nextCursor,
      live: !options.cursor,
      scheduled: pending,
      cursors: { feed: options.cursor, scheduled: options.later },
      timeZone: config.timeZone,
      schedules: recurring,
    };
    return reply.status(options.status ?? 200).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(renderHome(view));
  };

  const redirectWith = (reply: FastifyReply, notice: Notice, compose?: ComposeValues) =>
    reply.redirect(`/?${new URLSearchParams({ flash: flashes.put(notice, compose) })}`, 303);

  app.get('/', auth, async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    const text = (name: string) => (typeof query[name] === 'string' && query[name] ? (query[name] as string) : undefined);
    const cursor = text('cursor');
    const later = text('later');
    const flash = text('flash');
    const { notice, compose } = flash ? flashes.take(flash) : {};
    try {
      return await renderPage(reply, { notice, compose, cursor, later });
    } catch (err) {
      if (!(cursor || later) || toHttpError(err).status !== 400) throw err;
      return renderPage(reply, { status: 400, notice: { kind: 'error', text: 'That page of the list does not exist: showing the first page.' }, compose });
    }
  });

  app.post('/ui/schedule', auth, async (request, reply) => {
    const form = formFields(request.body);
    const compose: ComposeValues = {
      username: form('username'),
      message: fromTextarea(form('message')),
      time: form('time'),
      timeZone: form('timezone') || config.timeZone,
      isDefault: false,
      postNow: form('postNow') !== '',
      // a page rendered before forms had keys: this submit gets one, kept if the form comes back
      idempotencyKey: form('idempotencyKey') || randomUUID(),
      ...repeatFields(request.body),
    };
    const refuse = (kind: Notice['kind'], text: string) => redirectWith(reply, { kind, text }, compose);
    if (compose.repeat !== 'none' || form('action') === 'preview') return recurring(reply, compose, form('action') === 'preview');
    if (!compose.postNow) {
      const passed = pastTime(compose.time, compose.timeZone, clock.now());
      if (passed) return refuse('error', `Not scheduled: ${passed} has already passed. Pick a later time, or tick "Post now" to post it at once.`);
    }
    let answer: DispatcherAnswer;
    try {
      answer = await scheduled.schedule({
        username: compose.username,
        message: compose.message,
        ...(compose.postNow ? { delaySeconds: 0 } : { scheduledAt: compose.time }),
        timeZone: compose.timeZone,
        // original dispatchers take no key (the form's own is then unused)
        ...(scheduled.original ? {} : { idempotencyKey: compose.idempotencyKey }),
      });
    } catch (err) {
      if (err instanceof OutcomeUnknownError) {
        const advice = err.idempotencyKey === null
          ? 'The original dispatcher cannot tell a second submit from a new message: look at its page before submitting again, or it may be posted twice.'
          : 'Submitting this form again is safe: it will not be posted twice.';
        return refuse('warn', `May or may not be scheduled: ${err.detail}. ${advice}`);
      }
      return refuse('error', err instanceof NotScheduledError ? err.message : `Not scheduled: ${toHttpError(err).body.error.message}`);
    }
    if (answer.status >= 400) return refuse('error', `Not scheduled: ${answerErrorText(answer)}`);
    const stored = answeredMessage(answer);
    const at = `${wallClockText(Date.parse(stored.scheduledAt), compose.timeZone)} (${compose.timeZone})`;
    // 200: this form's key was stored before (a submit whose answer was lost): that message stands, as first sent
    if (answer.status === 200) return redirectWith(reply, { kind: 'ok', text: `Already scheduled for ${at} by an earlier submit of this form, not posted twice: ${preview(stored.message)}` });
    return redirectWith(reply, { kind: 'ok', text: compose.postNow ? 'Sent: it is posted now.' : `Scheduled for ${at}.` });
  });

  app.post('/ui/scheduled/:id/reschedule', auth, async (request, reply) => {
    const { id } = request.params as { id: string };
    const form = formFields(request.body);
    const timeZone = form('timezone') || config.timeZone;
    const passed = pastTime(form('time'), timeZone, clock.now());
    if (passed) return redirectWith(reply, { kind: 'error', text: `Not moved: ${passed} has already passed. Pick a later time.` });
    return settle(reply, () => scheduled.update(id, { scheduledAt: form('time'), timeZone }), (answer) => {
      const at = Date.parse(answeredMessage(answer).scheduledAt);
      return `Moved to ${wallClockText(at, timeZone)} (${timeZone}).`;
    });
  });

  app.post('/ui/scheduled/:id/edit', auth, async (request, reply) => {
    const { id } = request.params as { id: string };
    const message = fromTextarea(formFields(request.body)('message'));
    return settle(reply, () => scheduled.update(id, { message }), (answer) => `Text changed: ${preview(answeredMessage(answer).message)}`);
  });

  app.post('/ui/scheduled/:id/cancel', auth, async (request, reply) => {
    const { id } = request.params as { id: string };
    return settle(reply, () => scheduled.cancel(id), () => 'Cancelled.');
  });

  /**
   * A compose form with a repeat: a preview (shown in the form, nothing
   * saved) or a new schedule, first fire not before the picked time.
   */
  async function recurring(reply: FastifyReply, compose: ComposeValues, previewOnly: boolean) {
    const refuse = (text: string, preview?: ComposeValues['preview']) => redirectWith(reply, { kind: 'error', text }, { ...compose, preview });
    if (compose.repeat === 'none') return refuse('Pick a repeat (daily, weekly or a custom rule) to see when it would post.');
    if (compose.postNow) return refuse('"Post now" is for a single message: untick it to repeat.');
    let body: Record<string, unknown>;
    try {
      body = scheduleBody(compose);
    } catch (err) {
      return refuse(`Not scheduled: ${(err as Error).message}`);
    }
    if (previewOnly) {
      try {
        const preview = schedules.preview({ ...body, count: PREVIEW_COUNT });
        return redirectWith(reply, { kind: 'ok', text: 'Preview below: nothing is saved yet. Press Schedule to save it.' }, { ...compose, preview });
      } catch (err) {
        const message = toHttpError(err).body.error.message;
        return refuse(`No preview: ${message}`, { error: message });
      }
    }
    let answer: DispatcherAnswer;
    try {
      answer = await schedules.create({ ...body, username: compose.username, message: compose.message, idempotencyKey: compose.idempotencyKey });
    } catch (err) {
      if (err instanceof OutcomeUnknownError) return redirectWith(reply, { kind: 'warn', text: `May or may not be saved: ${err.detail}. Submitting this form again is safe: it will not be saved twice.` }, compose);
      return refuse(`Not scheduled: ${toHttpError(err).body.error.message}`);
    }
    if (answer.status >= 400) return refuse(`Not scheduled: ${answerErrorText(answer)}`);
    const saved = answer.body as { next: { local: string; utcOffset: string } | null; timeZone: string };
    const next = saved.next ? `first post ${saved.next.local} (${saved.timeZone}, UTC${saved.next.utcOffset})` : 'it never fires';
    return redirectWith(reply, { kind: 'ok', text: answer.status === 200 ? `Already saved by an earlier submit of this form: ${next}.` : `Repeating message saved: ${next}.` });
  }

  for (const [action, change, done] of [
    ['pause', (id: string) => schedules.update(id, { paused: true }), 'Paused.'],
    ['resume', (id: string) => schedules.update(id, { paused: false }), 'Resumed: it posts again from now on.'],
    ['delete', (id: string) => schedules.remove(id), 'Deleted: it posts no more.'],
  ] as const) {
    app.post(`/ui/schedules/:id/${action}`, auth, async (request, reply) => {
      const { id } = request.params as { id: string };
      let answer: DispatcherAnswer;
      try {
        answer = await change(id);
      } catch (err) {
        return redirectWith(reply, { kind: 'error', text: toHttpError(err).body.error.message });
      }
      if (answer.status === 404) return redirectWith(reply, { kind: 'error', text: 'That recurring message no longer exists.' });
      if (answer.status >= 300) return redirectWith(reply, { kind: 'error', text: answerErrorText(answer) });
      return redirectWith(reply, { kind: 'ok', text: done });
    });
  }

  /** Runs a change and redirects to the page with what came of it. */
  async function settle(reply: FastifyReply, change: () => Promise<DispatcherAnswer>, success: (answer: DispatcherAnswer) => string) {
    const error = (text: string) => redirectWith(reply, { kind: 'error', text });
    let answer: DispatcherAnswer;
    try {
      answer = await change();
    } catch (err) {
      return error(toHttpError(err).body.error.message);
    }
    if (answer.status < 300) return redirectWith(reply, { kind: 'ok', text: success(answer) });
    if (answer.status === 404) return error('That message is no longer scheduled: it was cancelled or has been posted.');
    if (answer.status === 409) {
      const { status } = readError(answer.body);
      if (status === 'expired') return error('Too late: the message expired unsent (it was past its deliver-by); it can be replayed from the dispatcher\'s page.');
      return error(`Too late: the message is already ${status ?? 'on its way'}.`);
    }
    return error(answerErrorText(answer));
  }
}

/**
 * "2024-01-01 09:47 (Europe/Berlin)" when `time`, read in `timeZone`, is
 * before `now`; undefined when it is not, or cannot be read (the usual
 * validation then says why).
 */
function pastTime(time: string, timeZone: string, now: number): string | undefined {
  if (!time || !isValidTimeZone(timeZone)) return undefined;
  let instant: number;
  try {
    instant = parseUserTime(time, timeZone);
  } catch {
    return undefined;
  }
  return instant < now ? `${wallClockText(instant, timeZone)} (${timeZone})` : undefined;
}

const NO_REPEAT = { repeat: 'none', days: [], rule: '', dstGap: 'shift', dstOverlap: 'first' } as const satisfies Partial<ComposeValues>;

/** The compose form's repeat fields; anything unknown reads as the default. */
function repeatFields(body: unknown): Pick<ComposeValues, 'repeat' | 'days' | 'rule' | 'dstGap' | 'dstOverlap'> {
  const fields = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const one = (name: string) => (typeof fields[name] === 'string' ? (fields[name] as string) : '');
  const pick = <T extends string>(value: string, allowed: readonly T[], fallback: T): T => ((allowed as readonly string[]).includes(value) ? (value as T) : fallback);
  const days = ([] as unknown[]).concat(fields.days ?? []).filter((day): day is string => typeof day === 'string' && (WEEKDAYS as readonly string[]).includes(day));
  return {
    repeat: pick(one('repeat'), REPEAT_KINDS, 'none'),
    days,
    rule: one('rule').trim(),
    dstGap: pick(one('dstGap'), ['shift', 'skip'] as const, 'shift'),
    dstOverlap: pick(one('dstOverlap'), ['first', 'last', 'both'] as const, 'first'),
  };
}

/**
 * The schedule a compose form asks for: daily or weekly at the picked time of
 * day (cron on the form's zone), or the custom rule; the picked time is the
 * start (nothing fires before it; an interval fires first then).
 */
function scheduleBody(compose: ComposeValues): Record<string, unknown> {
  const match = /^\d{4}-\d{2}-\d{2}T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(compose.time);
  if (!match) throw new Error('pick the date and time of the first post');
  const [, hour, minute, second] = match;
  const at = `${Number(second ?? 0) > 0 ? `${Number(second)} ` : ''}${Number(minute)} ${Number(hour)}`;
  const body: Record<string, unknown> = {
    timeZone: compose.timeZone, startAt: compose.time, dstPolicy: { gap: compose.dstGap, overlap: compose.dstOverlap },
  };
  if (compose.repeat === 'daily') body.cron = `${at} * * *`;
  else if (compose.repeat === 'weekly') {
    if (compose.days.length === 0) throw new Error('tick at least one day of the week');
    body.cron = `${at} * * ${compose.days.join(',')}`;
  } else if (/^every\s+/i.test(compose.rule)) body.every = compose.rule.replace(/^every\s+/i, '');
  else if (compose.rule) body.cron = compose.rule;
  else throw new Error('write the custom rule: a cron rule such as "0 9 * * MON-FRI", or "every 15m"');
  return body;
}

/** A browser sends a textarea's line breaks as CRLF: stored as typed (LF), so the page's counter and the limit agree. */
function fromTextarea(text: string): string {
  return text.replaceAll('\r\n', '\n');
}

/** The start of a message, to name it in a notice. */
function preview(text: string): string {
  return text.length > PREVIEW_LENGTH ? `${text.slice(0, PREVIEW_LENGTH)}…` : text;
}


