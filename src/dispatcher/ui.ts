import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { html, type SafeHtml } from '../html.ts';
import { refuseCrossSiteWrites, requirePageToken } from '../http.ts';
import { LOCAL_TIME_SCRIPT, page, timeTag } from '../ui/layout.ts';
import { formatEvery, localTime } from '../protocol/recurrence.ts';
import type { DispatcherContext } from './context.ts';
import { changeSchedule, deleteSchedule } from './routes-schedules.ts';
import { MESSAGE_STATUSES, type ChangeOutcome, type MessageStatus, type StoredMessage, type StoredSchedule } from './store.ts';

/**
 * The dispatcher's web page at `/`, the original's "Scheduled Messages" done
 * properly: pending messages in due-time order with a Cancel button, dead
 * letters with Retry, and the delivered history. Server-rendered; the buttons
 * are plain form posts that redirect back with a notice, so it all works
 * without JavaScript (the only script rewrites times into the viewer's zone).
 */

/** Page sizes: enough to eyeball, small enough to render quickly with a million pending; the API pages through the rest. */
export const UI_LIMITS = { pending: 200, dead: 100, delivered: 50, schedules: 200 } as const;

export interface DispatcherPageData {
  /** Scheduled and delivering messages in due-time order, at most UI_LIMITS.pending. */
  pending: StoredMessage[];
  dead: StoredMessage[];
  /** Most recently delivered first. */
  delivered: StoredMessage[];
  counts: Record<MessageStatus, number>;
  /** Recurring messages in creation order, at most UI_LIMITS.schedules. */
  schedules: StoredSchedule[];
  mainUrl: string;
  notice?: Notice;
}

export interface Notice {
  kind: 'ok' | 'error';
  text: string;
}

/** The notices a redirect may ask for: a fixed table, so no request text is ever echoed into the page. */
function noticeFor(query: Record<string, unknown>): Notice | undefined {
  const status = typeof query.status === 'string' && (MESSAGE_STATUSES as readonly string[]).includes(query.status) ? query.status : undefined;
  switch (query.notice) {
    case 'cancelled': return { kind: 'ok', text: 'Message cancelled: it will not be delivered.' };
    case 'discarded': return { kind: 'ok', text: 'Dead letter discarded: it will not be delivered or retried.' };
    case 'retried': return { kind: 'ok', text: 'Dead letter scheduled again: it is being delivered now.' };
    case 'not-found': return { kind: 'error', text: 'That message no longer exists.' };
    case 'too-late': return { kind: 'error', text: `Too late: that message is already ${status ?? 'on its way'}.` };
    case 'paused': return { kind: 'ok', text: 'Schedule paused: it posts nothing until resumed.' };
    case 'resumed': return { kind: 'ok', text: 'Schedule resumed: it posts again from now on.' };
    case 'schedule-deleted': return { kind: 'ok', text: 'Schedule deleted: it posts no more.' };
    case 'no-schedule': return { kind: 'error', text: 'That schedule no longer exists.' };
    case 'not-dead': return { kind: 'error', text: `Only dead letters can be retried; that message is ${status ?? 'not dead'}.` };
    default: return undefined;
  }
}

export function registerUiRoutes(app: FastifyInstance, ctx: DispatcherContext): void {
  const auth = requirePageToken(ctx.config.apiToken, 'psched dispatcher');

  app.get('/', { onRequest: auth }, async (request, reply) => {
    const data = await loadPageData(ctx);
    data.notice = noticeFor(request.query as Record<string, unknown>);
    void reply.type('text/html; charset=utf-8').header('cache-control', 'no-store');
    return renderDispatcherPage(data);
  });

  app.post('/ui/messages/:id/cancel', { onRequest: [auth, refuseCrossSiteWrites] }, async (request, reply) => {
    const { id } = request.params as { id: string };
    return redirectAfter(reply, await ctx.engine.remove(id), 'cancelled', 'too-late');
  });

  app.post('/ui/messages/:id/discard', { onRequest: [auth, refuseCrossSiteWrites] }, async (request, reply) => {
    const { id } = request.params as { id: string };
    return redirectAfter(reply, await ctx.engine.remove(id), 'discarded', 'too-late');
  });

  app.post('/ui/messages/:id/retry', { onRequest: [auth, refuseCrossSiteWrites] }, async (request, reply) => {
    const { id } = request.params as { id: string };
    return redirectAfter(reply, await ctx.engine.retry(id), 'retried', 'not-dead');
  });

  for (const action of ['pause', 'resume'] as const) {
    app.post(`/ui/schedules/:id/${action}`, { onRequest: [auth, refuseCrossSiteWrites] }, async (request, reply) => {
      const { id } = request.params as { id: string };
      const changed = await changeSchedule(ctx, id, { paused: action === 'pause' });
      return reply.redirect(changed ? `/?notice=${action === 'pause' ? 'paused' : 'resumed'}` : '/?notice=no-schedule', 303);
    });
  }

  app.post('/ui/schedules/:id/delete', { onRequest: [auth, refuseCrossSiteWrites] }, async (request, reply) => {
    const { id } = request.params as { id: string };
    return reply.redirect((await deleteSchedule(ctx, id)) ? '/?notice=schedule-deleted' : '/?notice=no-schedule', 303);
  });
}

/** Post/Redirect/Get: a reload after the redirect does not repeat the action. */
function redirectAfter(reply: FastifyReply, outcome: ChangeOutcome, done: string, conflict: string) {
  const target = outcome.kind === 'ok' ? `/?notice=${done}`
    : outcome.kind === 'not_found' ? '/?notice=not-found'
    : `/?notice=${conflict}&status=${outcome.status}`;
  return reply.redirect(target, 303);
}

export async function loadPageData(ctx: DispatcherContext): Promise<DispatcherPageData> {
  const { store, config } = ctx;
  const [scheduled, delivering, dead, delivered, counts, schedules] = await Promise.all([
    store.list({ status: 'scheduled', limit: UI_LIMITS.pending }),
    store.list({ status: 'delivering', limit: UI_LIMITS.pending }),
    store.list({ status: 'dead', limit: UI_LIMITS.dead }),
    store.listRecentlyDelivered(UI_LIMITS.delivered),
    store.countByStatus(),
    store.listSchedules({ limit: UI_LIMITS.schedules }),
  ]);
  const pending = [...scheduled, ...delivering]
    .sort((a, b) => a.dueAt - b.dueAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .slice(0, UI_LIMITS.pending);
  return { pending, dead, delivered, counts, schedules, mainUrl: config.mainUrl };
}

const plural = (n: number, word: string) => `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;

function badge(status: MessageStatus): SafeHtml {
  return html`<span class="badge ${status}">${status}</span>`;
}

function postButton(action: string, label: string, style: string): SafeHtml {
  return html`<form method="post" action="${action}"><button type="submit" class="${style}">${label}</button></form>`;
}

function shownOf(shown: number, total: number, apiQuery: string): SafeHtml {
  if (total <= shown) return html``;
  return html`<p class="empty">Showing the first ${shown.toLocaleString('en-US')} of ${total.toLocaleString('en-US')}; page through all of them with <code>GET /v1/messages?${apiQuery}</code>.</p>`;
}

/** Where a pending message stands: being delivered (attempt n), or waiting to retry after failed attempts. */
function progress(m: StoredMessage): SafeHtml | string {
  if (m.status === 'delivering') return html`<span>attempt ${m.attempts} in progress</span>`;
  if (m.attempts === 0) return '';
  return html`<span>retrying after ${plural(m.attempts, 'failed attempt')}${m.lastError ? html`: <code>${m.lastError}</code>` : ''}</span>`;
}

function pendingItem(m: StoredMessage): SafeHtml {
  return html`<li id="m-${m.id}">
  <div class="meta"><strong>${m.username}</strong> ${badge(m.status)}
    <span>due ${timeTag(m.dueAt)}</span>
    ${m.dueAt !== m.scheduledAt ? html`<span>(scheduled for ${timeTag(m.scheduledAt)})</span>` : ''}
    ${progress(m)}
  </div>
  <p class="text">${m.message}</p>
  ${m.status === 'scheduled' ? html`<div class="row-actions">${postButton(`/ui/messages/${encodeURIComponent(m.id)}/cancel`, 'Cancel', 'danger small')}</div>` : ''}
</li>`;
}

function deadItem(m: StoredMessage): SafeHtml {
  return html`<li id="m-${m.id}">
  <div class="meta"><strong>${m.username}</strong> ${badge('dead')}
    <span>scheduled for ${timeTag(m.scheduledAt)}</span><span>gave up after ${plural(m.attempts, 'attempt')}</span>
  </div>
  <p class="text">${m.message}</p>
  <div class="meta">Last error: <code>${m.lastError ?? 'unknown'}</code></div>
  <div class="row-actions">
    ${postButton(`/ui/messages/${encodeURIComponent(m.id)}/retry`, 'Retry', 'small')}
    ${postButton(`/ui/messages/${encodeURIComponent(m.id)}/discard`, 'Discard', 'secondary small')}
  </div>
</li>`;
}

function deliveredItem(m: StoredMessage): SafeHtml {
  const lateness = m.deliveredAt === null ? undefined : m.deliveredAt - m.scheduledAt;
  return html`<li id="m-${m.id}">
  <div class="meta"><strong>${m.username}</strong> ${badge('delivered')}
    <span>delivered ${m.deliveredAt === null ? '' : timeTag(m.deliveredAt)}</span>
    <span>scheduled for ${timeTag(m.scheduledAt)}</span>
    ${lateness !== undefined && lateness >= 1000 ? html`<span>(${formatLateness(lateness)} late)</span>` : ''}
    ${m.attempts > 1 ? html`<span>on attempt ${m.attempts}</span>` : ''}
  </div>
  <p class="text">${m.message}</p>
</li>`;
}

function scheduleItem(s: StoredSchedule): SafeHtml {
  const path = `/ui/schedules/${encodeURIComponent(s.id)}`;
  const rule = s.cron !== null ? `cron ${s.cron}` : `every ${formatEvery(s.everyMs!)}`;
  const status = s.paused ? 'paused' : s.nextFireAt === null ? 'finished' : 'active';
  const next = status === 'active' ? localTime(s.nextFireAt!, s.timeZone) : undefined;
  return html`<li id="s-${s.id}">
  <div class="meta"><strong>${s.username}</strong> <span class="badge ${status}">${status}</span>
    <span>${rule} in ${s.timeZone}</span>
    ${next ? html`<span>next ${timeTag(s.nextFireAt!)} (${next.local} ${next.utcOffset} there)</span>` : ''}
    <span>${plural(s.occurrences, 'post')} so far${s.maxOccurrences !== null ? ` of ${s.maxOccurrences}` : ''}</span>
  </div>
  <p class="text">${s.message}</p>
  <div class="row-actions">
    ${s.paused ? postButton(`${path}/resume`, 'Resume', 'small') : status === 'active' ? postButton(`${path}/pause`, 'Pause', 'secondary small') : ''}
    ${postButton(`${path}/delete`, 'Delete', 'danger small')}
  </div>
</li>`;
}

function formatLateness(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds < 120) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 120) return `${minutes} min`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `${hours} h` : `${Math.round(hours / 24)} days`;
}

function list(items: StoredMessage[], render: (m: StoredMessage) => SafeHtml, empty: string): SafeHtml {
  return items.length === 0 ? html`<p class="empty">${empty}</p>` : html`<ul class="items">${items.map(render)}</ul>`;
}

export function renderDispatcherPage(data: DispatcherPageData): string {
  const { counts } = data;
  const pendingTotal = counts.scheduled + counts.delivering;
  const body = html`
${data.notice ? html`<div class="notice ${data.notice.kind}" role="status">${data.notice.text}</div>` : ''}
<section class="card" aria-labelledby="scheduled-title">
  <h2 id="scheduled-title">Scheduled Messages <span class="count">${pendingTotal.toLocaleString('en-US')}</span></h2>
  ${list(data.pending, pendingItem, 'Nothing scheduled. Schedule with POST /v1/messages or the original\'s /scheduleMessage.php.')}
  ${shownOf(data.pending.length, pendingTotal, 'status=scheduled')}
</section>
<section class="card" aria-labelledby="schedules-title" id="schedules-card">
  <h2 id="schedules-title">Recurring <span class="count">${data.schedules.length}${data.schedules.length === UI_LIMITS.schedules ? '+' : ''}</span></h2>
  ${data.schedules.length === 0 ? html`<p class="empty">No recurring messages. Create one with POST /v1/schedules.</p>` : html`<ul class="items">${data.schedules.map(scheduleItem)}</ul>`}
  ${data.schedules.length === UI_LIMITS.schedules ? html`<p class="empty">The first ${UI_LIMITS.schedules} are shown; page through all of them with <code>GET /v1/schedules</code>.</p>` : ''}
</section>
<section class="card" aria-labelledby="dead-title">
  <h2 id="dead-title">Dead letters <span class="count">${counts.dead.toLocaleString('en-US')}</span></h2>
  ${list(data.dead, deadItem, 'No dead letters: every delivery so far was accepted or is still being retried.')}
  ${shownOf(data.dead.length, counts.dead, 'status=dead')}
</section>
<section class="card" aria-labelledby="delivered-title">
  <h2 id="delivered-title">Delivered <span class="count">${counts.delivered.toLocaleString('en-US')}</span></h2>
  ${list(data.delivered, deliveredItem, 'Nothing delivered yet.')}
  ${counts.delivered > data.delivered.length ? html`<p class="empty">The ${data.delivered.length} most recent are shown.</p>` : ''}
</section>`;
  return page({
    title: 'Scheduled Messages',
    subtitle: `dispatcher · delivers to ${data.mainUrl} · times in your time zone`,
    body,
    script: LOCAL_TIME_SCRIPT,
  });
}
