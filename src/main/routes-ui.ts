import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Clock } from '../clock.ts';
import type { MainConfig } from '../config.ts';
import { NotScheduledError, OutcomeUnknownError, toHttpError } from '../errors.ts';
import { requirePageToken } from '../http.ts';
import { readFeedPage, FEED_LIMIT } from './feed.ts';
import type { DispatcherAnswer } from './pool.ts';
import type { ScheduledMessages } from './scheduled.ts';
import type { MainStore } from './store.ts';
import { DEFAULT_LEAD_MS, pickerValue, renderHome, wallClockText, type ComposeValues, type HomeView, type Notice } from './ui.ts';

/**
 * The page at `/` and the plain form posts behind it. Each form answers with a
 * redirect (303) back to the page, which shows what happened in #notice
 * (`?notice=` or `?error=`), so reloading never posts twice. A compose form
 * that failed is shown again at once, filled in, so nothing typed is lost,
 * with the same idempotency key: when the dispatcher did not confirm (the
 * message may or may not be scheduled) the page says so, and submitting the
 * form again stores it at most once. Only the page after a success has a new key.
 */
export interface UiRoutesContext {
  config: Readonly<MainConfig>;
  store: MainStore;
  clock: Clock;
  scheduled: ScheduledMessages;
}

/** Posts shown per page of the feed. */
const FEED_PAGE = FEED_LIMIT.fallback;

/** Scheduled messages shown; the count says "+" when there are more. */
const SCHEDULED_SHOWN = 50;

/** Characters of a message quoted in a notice: enough to recognise it, well within MAX_NOTICE_LENGTH. */
const PREVIEW_LENGTH = 80;

/** Notices come back through the URL: cap them so a crafted link cannot fill the page. */
const MAX_NOTICE_LENGTH = 300;

export function registerUiRoutes(app: FastifyInstance, context: UiRoutesContext): void {
  const { config, store, clock, scheduled } = context;
  const auth = { preHandler: requirePageToken(config.accessToken, 'psched') };

  const defaultCompose = (): ComposeValues => ({
    username: '',
    message: '',
    time: pickerValue(clock.now() + DEFAULT_LEAD_MS, config.timeZone),
    timeZone: config.timeZone,
    isDefault: true,
    idempotencyKey: randomUUID(),
  });

  const renderPage = async (reply: FastifyReply, options: { status?: number; notice?: Notice; compose?: ComposeValues; cursor?: string }) => {
    const [feed, pending] = await Promise.all([
      readFeedPage(store, { limit: FEED_PAGE, cursor: options.cursor }),
      scheduled.list({ limit: String(SCHEDULED_SHOWN), status: 'scheduled' }).then(
        (page) => ({
          items: page.items,
          more: page.nextCursor !== null,
          problem: page.unavailable.length > 0 ? `Not shown: messages on ${page.unavailable.map((u) => `${u.dispatcher} (${u.message})`).join(', ')}` : undefined,
        }),
        (err: unknown) => ({ items: [], more: false, problem: toHttpError(err).body.error.message }),
      ),
    ]);
    const view: HomeView = {
      notice: options.notice,
      compose: options.compose ?? defaultCompose(),
      posts: feed.items,
      olderCursor: feed.nextCursor,
      live: !options.cursor,
      scheduled: pending,
      timeZone: config.timeZone,
    };
    return reply.status(options.status ?? 200).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(renderHome(view));
  };

  app.get('/', auth, async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    const cursor = typeof query.cursor === 'string' && query.cursor ? query.cursor : undefined;
    try {
      return await renderPage(reply, { notice: noticeFrom(query), cursor });
    } catch (err) {
      if (!cursor || toHttpError(err).status !== 400) throw err;
      return renderPage(reply, { status: 400, notice: { kind: 'error', text: 'That page of the feed does not exist: showing the newest posts.' } });
    }
  });

  app.post('/ui/schedule', auth, async (request, reply) => {
    const form = formFields(request.body);
    const compose: ComposeValues = {
      username: form('username'),
      message: form('message'),
      time: form('time'),
      timeZone: form('timezone') || config.timeZone,
      isDefault: false,
      // a page rendered before forms had keys: this submit gets one, kept if the form comes back
      idempotencyKey: form('idempotencyKey') || randomUUID(),
    };
    let answer: DispatcherAnswer;
    try {
      answer = await scheduled.schedule({
        username: compose.username,
        message: compose.message,
        scheduledAt: compose.time,
        timeZone: compose.timeZone,
        // original dispatchers take no key (the form's own is then unused)
        ...(scheduled.original ? {} : { idempotencyKey: compose.idempotencyKey }),
      });
    } catch (err) {
      if (err instanceof OutcomeUnknownError) {
        const advice = err.idempotencyKey === null
          ? 'The original dispatcher cannot tell a second submit from a new message: look at its page before submitting again, or it may be posted twice.'
          : 'Submitting this form again is safe: it will not be posted twice.';
        return renderPage(reply, { status: err.status, notice: { kind: 'warn', text: `May or may not be scheduled: ${err.detail}. ${advice}` }, compose });
      }
      const { status, body } = toHttpError(err);
      const text = err instanceof NotScheduledError ? err.message : `Not scheduled: ${body.error.message}`;
      return renderPage(reply, { status, notice: { kind: 'error', text }, compose });
    }
    if (answer.status >= 400) {
      return renderPage(reply, { status: answer.status, notice: { kind: 'error', text: `Not scheduled: ${answerMessage(answer)}` }, compose });
    }
    const stored = answer.body as { scheduledAt: string; message: string };
    const at = `${wallClockText(Date.parse(stored.scheduledAt), compose.timeZone)} (${compose.timeZone})`;
    // 200: this form's key was stored before (a submit whose answer was lost): that message stands, as first sent
    if (answer.status === 200) return redirectWith(reply, 'notice', `Already scheduled for ${at} by an earlier submit of this form, not posted twice: ${preview(stored.message)}`);
    return redirectWith(reply, 'notice', `Scheduled for ${at}.`);
  });

  app.post('/ui/scheduled/:id/reschedule', auth, async (request, reply) => {
    const { id } = request.params as { id: string };
    const form = formFields(request.body);
    const timeZone = form('timezone') || config.timeZone;
    return settle(reply, () => scheduled.update(id, { scheduledAt: form('time'), timeZone }), (answer) => {
      const at = Date.parse((answer.body as { scheduledAt: string }).scheduledAt);
      return `Moved to ${wallClockText(at, timeZone)} (${timeZone}).`;
    });
  });

  app.post('/ui/scheduled/:id/cancel', auth, async (request, reply) => {
    const { id } = request.params as { id: string };
    return settle(reply, () => scheduled.cancel(id), () => 'Cancelled.');
  });
}

/** Runs a change and redirects to the page with what came of it. */
async function settle(reply: FastifyReply, change: () => Promise<DispatcherAnswer>, success: (answer: DispatcherAnswer) => string) {
  let answer: DispatcherAnswer;
  try {
    answer = await change();
  } catch (err) {
    return redirectWith(reply, 'error', toHttpError(err).body.error.message);
  }
  if (answer.status < 300) return redirectWith(reply, 'notice', success(answer));
  if (answer.status === 404) return redirectWith(reply, 'error', 'That message is no longer scheduled: it was cancelled or has been posted.');
  if (answer.status === 409) {
    const status = (answer.body as { error?: { status?: string } } | null)?.error?.status;
    return redirectWith(reply, 'error', `Too late: the message is already ${status ?? 'on its way'}.`);
  }
  return redirectWith(reply, 'error', answerMessage(answer));
}

/** The start of a message, to name it in a notice. */
function preview(text: string): string {
  return text.length > PREVIEW_LENGTH ? `${text.slice(0, PREVIEW_LENGTH)}…` : text;
}

function redirectWith(reply: FastifyReply, kind: 'notice' | 'error', text: string) {
  return reply.redirect(`/?${new URLSearchParams({ [kind]: text })}`, 303);
}

function noticeFrom(query: Record<string, unknown>): Notice | undefined {
  for (const kind of ['error', 'notice'] as const) {
    const text = query[kind];
    if (typeof text === 'string' && text) return { kind: kind === 'error' ? 'error' : 'ok', text: text.slice(0, MAX_NOTICE_LENGTH) };
  }
  return undefined;
}

/** A form field as a string; missing or repeated fields read as empty. */
function formFields(body: unknown): (name: string) => string {
  const fields = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  return (name) => (typeof fields[name] === 'string' ? (fields[name] as string) : '');
}

function answerMessage(answer: DispatcherAnswer): string {
  const message = (answer.body as { error?: { message?: unknown } } | null)?.error?.message;
  return typeof message === 'string' ? message : `The dispatcher answered HTTP ${answer.status}`;
}
