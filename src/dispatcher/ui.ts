import type { FastifyInstance, FastifyReply } from 'fastify';
import { formFields } from '../http-bodies.ts';
import { ValidationError } from '../errors.ts';
import { html } from '../html.ts';
import { refuseCrossSiteWrites, requirePageToken } from '../http.ts';
import { decodeCursor, encodeCursor } from '../protocol/paging.ts';
import { isValidTimeZone } from '../protocol/time.ts';
import { validateMessagePatch } from '../protocol/messages.ts';
import { timeTag } from '../ui/layout.ts';
import type { DispatcherContext } from './context.ts';
import { changeSchedule, deleteSchedule } from './routes-schedules.ts';
import { parseMessageFilter } from './filters.ts';
import { toTargetJson } from './targets.ts';
import { MESSAGE_STATUSES, type ChangeOutcome, type MessageFilter, type MessageStatus } from './store.ts';
import {
  CURSOR_PARAMS, LIST_NAMES, REPLAYABLE, SHOWS, renderConsole, renderMessagePage, renderMissingMessage,
  type ConsoleView, type FilterValues, type ListName, type ListPage, type Notice, type Replayable, type Show,
} from './ui-render.ts';

/**
 * The dispatcher's web pages: the operator's console at `/` and a page per
 * message at `/ui/messages/:id` (rendered by ./ui-render.ts). Reads go to
 * the store, changes through the engine, as the API does. Every button is a
 * plain form post that redirects back with a notice (Post/Redirect/Get), so
 * it all works without JavaScript; the posts need the page's credentials and
 * are refused from other sites (refuseCrossSiteWrites).
 */

/** Page sizes: enough to eyeball, small enough to render quickly with a million pending; each list pages on. */
export const UI_LIMITS = { pending: 200, dead: 100, expired: 100, delivered: 50, schedules: 200 } as const;

/** Messages one bulk action takes: more than a page of dead letters or expired ones (100) never comes from the page. */
const BULK_MAX = 1000;

/** A count in a notice: digits only, so no request text reaches the page. */
function countParam(value: unknown): number | undefined {
  return typeof value === 'string' && /^\d{1,7}$/.test(value) ? Number(value) : undefined;
}

const countOf = (n: number, list: Replayable) => `${n.toLocaleString('en-US')} ${n === 1 ? REPLAYABLE[list].one : REPLAYABLE[list].many}`;
const capital = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

/** The notices a redirect may ask for: a fixed table, so no request text is ever echoed into the page. */
function noticeFor(query: Record<string, unknown>): Notice | undefined {
  const status = typeof query.status === 'string' && (MESSAGE_STATUSES as readonly string[]).includes(query.status) ? query.status : undefined;
  const done = countParam(query.done) ?? 0;
  const skipped = countParam(query.skipped) ?? 0;
  // which list a retry or discard was about: the dead letters unless it says expired
  const list: Replayable = query.list === 'expired' ? 'expired' : 'dead';
  const { one, many } = REPLAYABLE[list];
  const skippedText = skipped > 0 ? ` ${skipped.toLocaleString('en-US')} skipped: no longer ${many} (retried, discarded or changed meanwhile).` : '';
  // an instant (epoch ms) the page shows as a <time>: digits only
  const at = typeof query.at === 'string' && /^\d{1,15}$/.test(query.at) ? Number(query.at) : undefined;
  switch (query.notice) {
    case 'cancelled': return { kind: 'ok', text: 'Message cancelled: it will not be delivered.' };
    case 'discarded': return { kind: 'ok', text: `${capital(one)} discarded: it will not be delivered or retried.` };
    case 'retried': return { kind: 'ok', text: `${capital(one)} scheduled again: it is being delivered now${list === 'expired' ? ', past its deliver-by' : ''}.` };
    case 'rescheduled': return { kind: 'ok', text: at === undefined ? 'Time changed.' : html`Time changed: it will be delivered at ${timeTag(at)}.` };
    case 'edited': return { kind: 'ok', text: 'Text changed: it will be delivered with the new text.' };
    case 'bulk-retried': return { kind: done > 0 ? 'ok' : 'error', text: `${countOf(done, list)} scheduled again: being delivered now.${skippedText}` };
    case 'bulk-discarded': return { kind: done > 0 ? 'ok' : 'error', text: `${countOf(done, list)} discarded: they will not be delivered or retried.${skippedText}` };
    case 'none-selected': return { kind: 'error', text: `Nothing selected: tick the ${many} to retry or discard first.` };
    case 'not-found': return { kind: 'error', text: 'That message no longer exists.' };
    case 'paused': return { kind: 'ok', text: 'Schedule paused: it posts nothing until resumed.' };
    case 'resumed': return { kind: 'ok', text: 'Schedule resumed: it posts again from now on.' };
    case 'schedule-deleted': return { kind: 'ok', text: 'Schedule deleted: it posts no more.' };
    case 'no-schedule': return { kind: 'error', text: 'That schedule no longer exists.' };
    case 'too-late': return { kind: 'error', text: `Too late: that message is already ${status ?? 'on its way'}.` };
    case 'not-dead': return { kind: 'error', text: `Only dead letters and expired messages can be retried; that message is ${status ?? 'neither'}.` };
    default: return undefined;
  }
}

/** A fixed text per filter field: what is wrong, without repeating what was typed. */
const FILTER_PROBLEMS: Record<string, string> = {
  dueFrom: 'The "due from" time is not a date and time: pick one with the date picker.',
  dueTo: 'The "due before" time is not a date and time, or not later than "due from".',
  target: 'That is not a target\'s name: pick one from the list.',
  user: 'The user name is too long (at most 64 characters) or given twice.',
  q: 'The text to search for is too long (at most 200 characters) or given twice.',
  timeZone: 'The time zone is not one this server knows.',
  show: 'Pick a status from the list.',
};

export function registerUiRoutes(app: FastifyInstance, ctx: DispatcherContext): void {
  const auth = requirePageToken(ctx.config.apiToken, 'psched dispatcher');
  const write = { onRequest: [auth, refuseCrossSiteWrites] };
  const { engine, store, config, clock } = ctx;

  const html200 = (reply: FastifyReply, status = 200) => reply.status(status).type('text/html; charset=utf-8').header('cache-control', 'no-store');

  app.get('/', { onRequest: auth }, async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    const notice = noticeFor(query);
    const values = filterValues(query, config.timeZone);
    let filter: MessageFilter;
    let cursors: Partial<Record<ListName, string>>;
    try {
      if (!(SHOWS as readonly string[]).includes(values.show)) throw new ValidationError('show', 'show');
      filter = parseMessageFilter(query, config.timeZone);
      cursors = cursorParams(query);
      const view = await loadConsole(ctx, values, filter, cursors);
      view.notice = notice;
      void html200(reply);
      return renderConsole(view);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      // the form comes back as typed, with what was wrong; the lists unfiltered, on their first pages
      const problem = err.field === 'cursor' ? 'That page of the list does not exist: showing the first page.'
        : FILTER_PROBLEMS[err.field ?? ''] ?? 'Those filters cannot be read: showing everything.';
      const view = await loadConsole(ctx, { ...values, show: 'all' }, {}, {});
      view.filters = values;
      view.notice = { kind: 'error', text: problem };
      void html200(reply, 400);
      return renderConsole(view);
    }
  });

  app.get('/ui/messages/:id', { onRequest: auth }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const [message, attempts] = await Promise.all([store.get(id), store.attempts(id)]);
    if (!message) {
      void html200(reply, 404);
      return renderMissingMessage();
    }
    void html200(reply);
    return renderMessagePage({
      message, attempts, timeZone: config.timeZone, deliverWithinMs: ctx.targets.deliverWithinOf(message.target), notice: noticeFor(request.query as Record<string, unknown>),
    });
  });

  app.post('/ui/messages/:id/cancel', write, async (request, reply) => {
    const { id } = request.params as { id: string };
    return redirectAfter(reply, request.body, id, await engine.remove(id), 'cancelled', 'too-late', true);
  });

  // the notice names what it was (a dead letter or an expired message): read first
  app.post('/ui/messages/:id/discard', write, async (request, reply) => {
    const { id } = request.params as { id: string };
    const list = await listOf(id);
    return redirectAfter(reply, request.body, id, await engine.remove(id), 'discarded', 'too-late', true, list);
  });

  app.post('/ui/messages/:id/retry', write, async (request, reply) => {
    const { id } = request.params as { id: string };
    const list = await listOf(id);
    return redirectAfter(reply, request.body, id, await engine.retry(id), 'retried', 'not-dead', false, list);
  });

  async function listOf(id: string): Promise<Replayable | undefined> {
    const status = (await store.get(id))?.status;
    return status === 'expired' ? 'expired' : undefined;
  }

  // PATCH semantics (the API's validator and engine.update), from a form: the time is read in the form's zone
  app.post('/ui/messages/:id/reschedule', write, async (request, reply) => {
    const { id } = request.params as { id: string };
    const form = formFields(request.body);
    const time = form('time');
    const zone = form('timeZone');
    const timeZone = zone && isValidTimeZone(zone) ? zone : config.timeZone;
    const refuse = (problem: string) => showEditAgain(reply, id, { time, problem, field: 'time' }, timeZone);
    let scheduledAt: number;
    try {
      scheduledAt = validateMessagePatch({ scheduledAt: time, timeZone }, { timeZone }).scheduledAt!;
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      return refuse('Not changed: that is not a date and time. Pick one with the date picker.');
    }
    // the page refuses a past time, as the main server's page does: a wrong AM/PM must not deliver at once
    if (scheduledAt < clock.now()) return refuse('Not changed: that time has already passed. Pick a later one.');
    const outcome = await engine.update(id, { scheduledAt });
    if (outcome.kind === 'ok') return reply.redirect(`/ui/messages/${encodeURIComponent(id)}?notice=rescheduled&at=${outcome.message.scheduledAt}`, 303);
    return redirectAfter(reply, { back: 'detail' }, id, outcome, 'rescheduled', 'too-late', false);
  });

  app.post('/ui/messages/:id/edit', write, async (request, reply) => {
    const { id } = request.params as { id: string };
    // a browser sends a textarea's line breaks as CRLF: stored as typed (LF), as the main server's page does
    const text = formFields(request.body)('message').replaceAll('\r\n', '\n');
    let message: string;
    try {
      message = validateMessagePatch({ message: text }, { timeZone: config.timeZone }).message!;
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      return showEditAgain(reply, id, { text, problem: `Not changed: ${err.message}.`, field: 'text' }, config.timeZone);
    }
    return redirectAfter(reply, { back: 'detail' }, id, await engine.update(id, { message }), 'edited', 'too-late', false);
  });

  /** A refused edit: the message's page again (400), the form as typed, the problem beside it. */
  async function showEditAgain(reply: FastifyReply, id: string, edit: { time?: string; text?: string; problem: string; field: 'time' | 'text' }, timeZone: string) {
    const [message, attempts] = await Promise.all([store.get(id), store.attempts(id)]);
    if (!message) return reply.redirect('/?notice=not-found', 303);
    void html200(reply, 400);
    return renderMessagePage({ message, attempts, timeZone, edit, notice: { kind: 'error', text: edit.problem } });
  }

  // the ticked dead letters (/ui/dead/…) or expired messages (/ui/expired/…): only those still in that list
  // are touched, so a stale tick never cancels one scheduled again meanwhile, nor replays one of the other list
  for (const list of Object.keys(REPLAYABLE) as Replayable[]) {
    for (const [action, notice] of [['retry', 'bulk-retried'], ['discard', 'bulk-discarded']] as const) {
      app.post(`/ui/${list}/${action}`, write, async (request, reply) => {
        const { ids, view } = bulkForm(request.body);
        const params: Record<string, string> = list === 'dead' ? {} : { list };
        if (ids.length === 0) return reply.redirect(withNotice(view, { notice: 'none-selected', ...params }), 303);
        const current = await Promise.all(ids.map((id) => store.get(id)));
        const outcomes = await Promise.all(current.map((message): Promise<ChangeOutcome> | ChangeOutcome => message?.status === list
          ? (action === 'retry' ? engine.retry(message.id) : engine.remove(message.id))
          : message ? { kind: 'conflict', status: message.status } : { kind: 'not_found' }));
        return bulkRedirect(reply, view, notice, outcomes, params);
      });
    }
  }

  for (const action of ['pause', 'resume'] as const) {
    app.post(`/ui/schedules/:id/${action}`, write, async (request, reply) => {
      const { id } = request.params as { id: string };
      const changed = await changeSchedule(ctx, id, { paused: action === 'pause' });
      return reply.redirect(changed ? `/?notice=${action === 'pause' ? 'paused' : 'resumed'}` : '/?notice=no-schedule', 303);
    });
  }

  app.post('/ui/schedules/:id/delete', write, async (request, reply) => {
    const { id } = request.params as { id: string };
    return reply.redirect((await deleteSchedule(ctx, id)) ? '/?notice=schedule-deleted' : '/?notice=no-schedule', 303);
  });

  function bulkRedirect(reply: FastifyReply, view: string, notice: string, outcomes: ChangeOutcome[], params: Record<string, string>) {
    const done = outcomes.filter((outcome) => outcome.kind === 'ok').length;
    return reply.redirect(withNotice(view, { notice, done: String(done), skipped: String(outcomes.length - done), ...params }), 303);
  }

  function bulkForm(body: unknown): { ids: string[]; view: string } {
    const fields = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
    const raw = fields.id;
    const ids = [...new Set((Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]).filter((id): id is string => typeof id === 'string' && id !== ''))];
    if (ids.length > BULK_MAX) throw new ValidationError(`at most ${BULK_MAX} messages at once (got ${ids.length})`, 'id');
    return { ids, view: safeView(fields.view) };
  }
}

/** The console view a form came from: only the console's own parameters survive (no open redirect, no request text). */
function safeView(value: unknown): string {
  if (typeof value !== 'string' || !value.startsWith('/?')) return '/';
  const given = new URLSearchParams(value.slice(2));
  const kept = new URLSearchParams();
  for (const name of ['show', 'user', 'q', 'dueFrom', 'dueTo', 'timeZone', ...Object.values(CURSOR_PARAMS)]) {
    const v = given.get(name);
    if (v) kept.set(name, v);
  }
  const query = kept.toString();
  return query ? `/?${query}` : '/';
}

function withNotice(view: string, params: Record<string, string>): string {
  const query = new URLSearchParams(view.startsWith('/?') ? view.slice(2) : '');
  for (const [name, value] of Object.entries(params)) query.set(name, value);
  return `/?${query}`;
}

/**
 * Post/Redirect/Get: a reload after the redirect does not repeat the action.
 * From a message's page (back=detail) it goes back there, unless the message is gone.
 */
function redirectAfter(reply: FastifyReply, body: unknown, id: string, outcome: ChangeOutcome, done: string, conflict: string, removes: boolean, list?: Replayable) {
  const form = formFields(body);
  const detail = form('back') === 'detail';
  const base = detail && !(removes && outcome.kind === 'ok') && outcome.kind !== 'not_found' ? `/ui/messages/${encodeURIComponent(id)}` : safeView(form('view'));
  const params: Record<string, string> = outcome.kind === 'ok' ? { notice: done, ...(list ? { list } : {}) }
    : outcome.kind === 'not_found' ? { notice: 'not-found' }
    : { notice: conflict, status: outcome.status };
  if (base.startsWith('/ui/')) return reply.redirect(`${base}?${new URLSearchParams(params)}`, 303);
  return reply.redirect(withNotice(base, params), 303);
}


function filterValues(query: Record<string, unknown>, serverTimeZone: string): FilterValues {
  const text = (name: string) => (typeof query[name] === 'string' ? (query[name] as string) : '');
  const show = text('show') || 'all';
  return {
    show: show as Show,
    target: text('target'),
    user: text('user'),
    q: text('q'),
    dueFrom: text('dueFrom'),
    dueTo: text('dueTo'),
    timeZone: text('timeZone') || serverTimeZone,
  };
}

function cursorParams(query: Record<string, unknown>): Partial<Record<ListName, string>> {
  const cursors: Partial<Record<ListName, string>> = {};
  for (const list of LIST_NAMES) {
    const value = query[CURSOR_PARAMS[list]];
    if (value === undefined || value === '') continue;
    if (typeof value !== 'string') throw new ValidationError('cursor', 'cursor');
    decodeCursor(value); // a bad one is a 400 before anything is read
    cursors[list] = value;
  }
  return cursors;
}

/** One page of a list in due order: one more row than shown tells whether another page exists. */
async function duePage(ctx: DispatcherContext, statuses: MessageStatus[], filter: MessageFilter, limit: number, cursor: string | undefined): Promise<ListPage> {
  const after = cursor === undefined ? undefined : (({ at, id }) => ({ dueAt: at, id }))(decodeCursor(cursor));
  const rows = await ctx.store.list({ ...filter, status: statuses, limit: limit + 1, after });
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, next: rows.length > limit && last ? encodeCursor({ at: last.dueAt, id: last.id }) : null };
}

async function deliveredPage(ctx: DispatcherContext, filter: MessageFilter, limit: number, cursor: string | undefined): Promise<ListPage> {
  const before = cursor === undefined ? undefined : (({ at, id }) => ({ deliveredAt: at, id }))(decodeCursor(cursor));
  const rows = await ctx.store.listRecentlyDelivered(limit + 1, { ...filter, before });
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, next: rows.length > limit && last && last.deliveredAt !== null ? encodeCursor({ at: last.deliveredAt, id: last.id }) : null };
}

export async function loadConsole(ctx: DispatcherContext, filters: FilterValues, filter: MessageFilter, cursors: Partial<Record<ListName, string>>): Promise<ConsoleView> {
  const { show } = filters;
  const wants = (list: ListName) => show === 'all' || (list === 'scheduled' ? show === 'scheduled' || show === 'delivering' : show === list);
  const pendingStatuses: MessageStatus[] = show === 'scheduled' ? ['scheduled'] : show === 'delivering' ? ['delivering'] : ['scheduled', 'delivering'];
  const [scheduled, dead, expired, delivered, counts, schedules, stored] = await Promise.all([
    wants('scheduled') ? duePage(ctx, pendingStatuses, filter, UI_LIMITS.pending, cursors.scheduled) : undefined,
    wants('dead') ? duePage(ctx, ['dead'], filter, UI_LIMITS.dead, cursors.dead) : undefined,
    wants('expired') ? duePage(ctx, ['expired'], filter, UI_LIMITS.expired, cursors.expired) : undefined,
    wants('delivered') ? deliveredPage(ctx, filter, UI_LIMITS.delivered, cursors.delivered) : undefined,
    ctx.store.countByStatus(),
    show === 'all' ? ctx.store.listSchedules({ limit: UI_LIMITS.schedules, target: filter.target }) : undefined,
    ctx.store.listTargets(),
  ]);
  const lists: ConsoleView['lists'] = {};
  if (scheduled) lists.scheduled = scheduled;
  if (dead) lists.dead = dead;
  if (expired) lists.expired = expired;
  if (delivered) lists.delivered = delivered;
  return {
    counts,
    minutes: ctx.metrics.lastHour(ctx.clock.now()),
    filters,
    narrowed: Object.keys(filter).length > 0,
    lists,
    schedules,
    schedulesLimit: UI_LIMITS.schedules,
    cursors,
    mainUrl: ctx.config.mainUrl,
    serverTimeZone: ctx.config.timeZone,
    targets: [ctx.targets.defaultJson(), ...stored.map(toTargetJson)],
  };
}
