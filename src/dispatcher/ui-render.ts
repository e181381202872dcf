import { html, type SafeHtml } from '../html.ts';
import { LIMITS } from '../protocol/messages.ts';
import { formatWallClock } from '../protocol/time.ts';
import { LOCAL_TIME_SCRIPT, page, timeTag } from '../ui/layout.ts';
import type { MinuteStats } from './metrics.ts';
import { formatEvery, localTime } from '../protocol/recurrence.ts';
import type { AttemptRecord, MessageStatus, StoredMessage, StoredSchedule } from './store.ts';
import { deliverWithinText, type TargetJson } from '../protocol/targets.ts';
import { deliveriesChart, formatMs, latenessChart } from './ui-charts.ts';
import { CONSOLE_SCRIPT } from './ui-script.ts';

/**
 * The dispatcher's pages, rendered on the server, complete without
 * JavaScript (./ui-script.ts only adds live updates, local times, select-all
 * and confirmations). Every user string goes through html``.
 *
 * - The console (`/`): the last hour's numbers and charts, a filter form
 *   (status, user, text, due range: a GET, so a filtered view is a link), and
 *   four paged lists: scheduled (and delivering) in due order; dead letters
 *   and expired messages (not sent: past their deliver-by), each with retry,
 *   discard and bulk retry/discard of the ticked ones; and the delivered
 *   history newest first. Each list pages on its own cursor.
 * - A message's page (`/ui/messages/:id`): every field, its attempt history,
 *   and what can be done with it now (edit time and text, cancel; retry or
 *   discard a dead letter or an expired message).
 *
 * Stable hooks for tests and scripts: #overview, #filters, #scheduled-card,
 * #dead-card, #expired-card, #delivered-card (each list's <ul> is #scheduled,
 * #dead, #expired, #delivered, its items li[data-id]), a.next-page /
 * a.first-page in each card, #bulk-dead, #bulk-expired, #message-card,
 * #message-facts, #attempts-card (tbody tr per attempt), #live; elements
 * marked data-live are refreshed by the script.
 */

export interface Notice {
  kind: 'ok' | 'error';
  /** Text, or markup psched built (a <time>), never request text. */
  text: string | SafeHtml;
}

/** Which lists the console shows: all of them, or one status. */
export const SHOWS = ['all', 'scheduled', 'delivering', 'dead', 'expired', 'delivered'] as const;
export type Show = (typeof SHOWS)[number];

/** The filter form's values as given (shown again as typed). */
export interface FilterValues {
  show: Show;
  /** A target's name, or '' for all. */
  target: string;
  user: string;
  q: string;
  /** datetime-local values (or RFC 3339 from a hand-made URL), read in timeZone. */
  dueFrom: string;
  dueTo: string;
  timeZone: string;
}

export const NO_FILTERS = (timeZone: string): FilterValues => ({ show: 'all', target: '', user: '', q: '', dueFrom: '', dueTo: '', timeZone });

export const LIST_NAMES = ['scheduled', 'dead', 'expired', 'delivered'] as const;
export type ListName = (typeof LIST_NAMES)[number];

/** Each list's cursor parameter in the console's URL. */
export const CURSOR_PARAMS: Record<ListName, string> = { scheduled: 'scheduledPage', dead: 'deadPage', expired: 'expiredPage', delivered: 'deliveredPage' };

/**
 * The messages the engine gave up on, one list each, replayed (retry) or
 * discarded alike: dead letters (refused or out of attempts) and expired
 * ones (never sent: past their deliver-by). What the page calls them.
 */
export const REPLAYABLE = {
  dead: { one: 'dead letter', many: 'dead letters', title: 'Dead letters' },
  expired: { one: 'expired message', many: 'expired messages', title: 'Expired' },
} as const;
export type Replayable = keyof typeof REPLAYABLE;

export const isReplayable = (status: string): status is Replayable => status === 'dead' || status === 'expired';

export interface ListPage {
  items: StoredMessage[];
  /** The next page's cursor, null on the last page. */
  next: string | null;
}

export interface ConsoleView {
  notice?: Notice | undefined;
  counts: Record<MessageStatus, number>;
  minutes: MinuteStats[];
  filters: FilterValues;
  /** User, text or due range given (totals are then unknown: the lists say "n+"). */
  narrowed: boolean;
  lists: Partial<Record<ListName, ListPage>>;
  /** Recurring messages in creation order (the unfiltered view only), at most schedulesLimit. */
  schedules?: StoredSchedule[] | undefined;
  schedulesLimit?: number;
  /** The cursors this page was asked for. */
  cursors: Partial<Record<ListName, string>>;
  mainUrl: string;
  /** The zone the server reads times in when no script sends the viewer's. */
  serverTimeZone: string;
  /** The delivery targets, the built-in default first (no secrets: TargetJson has none). */
  targets: TargetJson[];
}

const plural = (n: number, word: string) => `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;

/** Characters of a text quoted in a control's accessible name. */
const LABEL_PREVIEW = 40;

function preview(text: string): string {
  const chars = [...text];
  return chars.length > LABEL_PREVIEW ? `${chars.slice(0, LABEL_PREVIEW).join('')}…` : text;
}

/** The console's URL for these filters and cursors (defaults left out). */
export function consoleHref(filters: FilterValues, cursors: Partial<Record<ListName, string>> = {}, serverTimeZone?: string): string {
  const params = new URLSearchParams();
  if (filters.show !== 'all') params.set('show', filters.show);
  if (filters.target) params.set('target', filters.target);
  if (filters.user) params.set('user', filters.user);
  if (filters.q) params.set('q', filters.q);
  if (filters.dueFrom) params.set('dueFrom', filters.dueFrom);
  if (filters.dueTo) params.set('dueTo', filters.dueTo);
  if ((filters.dueFrom || filters.dueTo) && filters.timeZone && filters.timeZone !== serverTimeZone) params.set('timeZone', filters.timeZone);
  for (const list of LIST_NAMES) {
    const cursor = cursors[list];
    if (cursor) params.set(CURSOR_PARAMS[list], cursor);
  }
  const query = params.toString();
  return query ? `/?${query}` : '/';
}

function badge(status: MessageStatus): SafeHtml {
  return html`<span class="badge ${status}">${status}</span>`;
}

function noticeBlock(notice: Notice | undefined): SafeHtml | string {
  return notice ? html`<div class="notice ${notice.kind}" role="status">${notice.text}</div>` : '';
}

/** A one-button form post; `back` (hidden) says where to come back to, `view` which console view. */
function postButton(action: string, label: string, style: string, hidden: Record<string, string> = {}, ariaLabel?: string): SafeHtml {
  const fields = Object.entries(hidden).filter(([, value]) => value !== '').map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`);
  return html`<form method="post" action="${action}">${fields}<button type="submit" class="${style}"${ariaLabel ? html` aria-label="${ariaLabel}"` : ''}>${label}</button></form>`;
}

const messagePath = (m: StoredMessage) => `/ui/messages/${encodeURIComponent(m.id)}`;

/** Where a pending message stands: being delivered (attempt n), or waiting to retry after failed attempts. */
function progress(m: StoredMessage): SafeHtml | string {
  if (m.status === 'delivering') return html`<span>attempt ${m.attempts} in progress</span>`;
  if (m.attempts === 0) return '';
  return html`<span>retrying after ${plural(m.attempts, 'failed attempt')}${m.lastError ? html`: <code>${m.lastError}</code>` : ''}</span>`;
}

/** Which target (main server) a message goes to. */
function targetChip(target: string): SafeHtml {
  return html`<span class="target" title="delivery target">→ <a href="${consoleHref({ ...NO_FILTERS(''), target })}">${target}</a></span>`;
}

function detailsLink(m: StoredMessage): SafeHtml {
  return html`<a class="details" href="${messagePath(m)}" aria-label="Details and attempt history of the message from ${m.username}: ${preview(m.message)}">Details</a>`;
}

function pendingItem(m: StoredMessage, view: string): SafeHtml {
  return html`<li id="m-${m.id}" data-id="${m.id}">
  <div class="meta"><strong>${m.username}</strong> ${badge(m.status)} ${targetChip(m.target)}
    <span>due ${timeTag(m.dueAt)}</span>
    ${m.dueAt !== m.scheduledAt ? html`<span>(scheduled for ${timeTag(m.scheduledAt)})</span>` : ''}
    ${m.deliverBy !== null ? html`<span>deliver by ${timeTag(m.deliverBy)}</span>` : ''}
    ${progress(m)}
  </div>
  <p class="text">${m.message}</p>
  <div class="row-actions">${m.status === 'scheduled' ? html`${postButton(`${messagePath(m)}/cancel`, 'Cancel', 'danger small', { view }, `Cancel the message from ${m.username}: ${preview(m.message)}`)}<a class="button secondary small" href="${messagePath(m)}#edit">Edit</a>` : ''}${detailsLink(m)}</div>
</li>`;
}

/** When a message may still be sent: its own deliver-by, else its target's window after its scheduled time; null: no limit. */
export function deliverByOf(m: StoredMessage, deliverWithinMs: number | null | undefined): { at: number; own: boolean } | null {
  if (m.deliverBy !== null) return { at: m.deliverBy, own: true };
  return deliverWithinMs == null ? null : { at: m.scheduledAt + deliverWithinMs, own: false };
}

function deliverByText(by: { at: number; own: boolean }, deliverWithinMs: number | null | undefined): SafeHtml {
  return html`deliver by ${timeTag(by.at)}${by.own || deliverWithinMs == null ? '' : ` (its target's ${deliverWithinText(deliverWithinMs)})`}`;
}

/** A dead letter or an expired message: why, with a tick box for the bulk form, retry and discard. */
function replayItem(m: StoredMessage, view: string, list: Replayable, deliverWithinMs: number | null | undefined): SafeHtml {
  const which = `the ${REPLAYABLE[list].one} from ${m.username}: ${preview(m.message)}`;
  const by = deliverByOf(m, deliverWithinMs);
  const why = list === 'dead'
    ? html`<span>gave up after ${plural(m.attempts, 'attempt')}</span>`
    : html`${by ? html`<span>${deliverByText(by, deliverWithinMs)}</span>` : ''}${m.attempts > 0 ? html`<span>after ${plural(m.attempts, 'failed attempt')}</span>` : html`<span>never sent</span>`}`;
  return html`<li id="m-${m.id}" data-id="${m.id}">
  <div class="meta"><input type="checkbox" class="pick" name="id" value="${m.id}" form="bulk-${list}" aria-label="Select ${which}"><strong>${m.username}</strong> ${badge(list)} ${targetChip(m.target)}
    <span>scheduled for ${timeTag(m.scheduledAt)}</span>${why}
  </div>
  <p class="text">${m.message}</p>
  <div class="meta">${list === 'dead' ? 'Last error' : 'Why'}: <code>${m.lastError ?? 'unknown'}</code></div>
  <div class="row-actions">
    ${postButton(`${messagePath(m)}/retry`, 'Retry', 'small', { view }, `Retry ${which}`)}
    ${postButton(`${messagePath(m)}/discard`, 'Discard', 'secondary small', { view }, `Discard ${which}`)}
    ${detailsLink(m)}
  </div>
</li>`;
}

function deliveredItem(m: StoredMessage): SafeHtml {
  const lateness = m.deliveredAt === null ? undefined : m.deliveredAt - m.scheduledAt;
  return html`<li id="m-${m.id}" data-id="${m.id}">
  <div class="meta"><strong>${m.username}</strong> ${badge('delivered')} ${targetChip(m.target)}
    <span>delivered ${m.deliveredAt === null ? '' : timeTag(m.deliveredAt)}</span>
    <span>scheduled for ${timeTag(m.scheduledAt)}</span>
    ${lateness !== undefined && lateness >= 1000 ? html`<span>(${formatLateness(lateness)} late)</span>` : ''}
    ${m.attempts > 1 ? html`<span>on attempt ${m.attempts}</span>` : ''}
    ${detailsLink(m)}
  </div>
  <p class="text">${m.message}</p>
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

/** The pager of one list: the next page, and back to the first when not on it. */
function pager(view: ConsoleView, list: ListName, page: ListPage): SafeHtml | string {
  const paged = view.cursors[list] !== undefined;
  if (!page.next && !paged) return '';
  const first = consoleHref(view.filters, { ...view.cursors, [list]: undefined }, view.serverTimeZone);
  const next = page.next && consoleHref(view.filters, { ...view.cursors, [list]: page.next }, view.serverTimeZone);
  return html`<p class="pager">${paged ? html`<a class="first-page" href="${first}">Back to the first page</a>` : html`<span></span>`}${next ? html`<a class="button secondary next-page" href="${next}">Next page</a>` : ''}</p>`;
}

/** The count in a list's heading: the total when known, else how many this page shows. */
function countBadge(total: number | undefined, page: ListPage): SafeHtml {
  const text = total !== undefined ? total.toLocaleString('en-US') : `${page.items.length}${page.next ? '+' : ''}`;
  return html`<span class="count">${text}</span>`;
}

function emptyText(view: ConsoleView, list: ListName, fallback: string): string {
  if (view.cursors[list]) return 'Nothing more on this page.';
  return view.narrowed ? 'Nothing matches the filters.' : fallback;
}

function listBlock(items: StoredMessage[], id: string, render: (m: StoredMessage) => SafeHtml, empty: string): SafeHtml {
  return html`${items.length === 0 ? html`<p class="empty">${empty}</p>` : ''}<ul class="items" id="${id}">${items.map(render)}</ul>`;
}

function scheduledCard(view: ConsoleView, page: ListPage, viewHref: string): SafeHtml {
  const { counts } = view;
  const total = view.narrowed ? undefined
    : view.filters.show === 'scheduled' ? counts.scheduled : view.filters.show === 'delivering' ? counts.delivering : counts.scheduled + counts.delivering;
  const firstPage = view.cursors.scheduled === undefined;
  return html`<section class="card" id="scheduled-card" aria-labelledby="scheduled-title" data-live>
  <h2 id="scheduled-title">Scheduled Messages ${countBadge(total, page)}</h2>
  ${listBlock(page.items, 'scheduled', (m) => pendingItem(m, viewHref), emptyText(view, 'scheduled', 'Nothing scheduled. Schedule with POST /v1/messages or the original\'s /scheduleMessage.php.'))}
  ${total !== undefined && firstPage && total > page.items.length ? html`<p class="empty">Showing the first ${page.items.length.toLocaleString('en-US')} of ${total.toLocaleString('en-US')}.</p>` : ''}
  ${pager(view, 'scheduled', page)}
</section>`;
}

/** The dead letters' or the expired messages' card: the same list, bulk form and pager. */
function replayCard(view: ConsoleView, page: ListPage, viewHref: string, list: Replayable): SafeHtml {
  const { one, many, title } = REPLAYABLE[list];
  const total = view.narrowed ? undefined : view.counts[list];
  const windows = new Map(view.targets.map((t) => [t.name, t.deliverWithinMs]));
  // the dead letters' buttons keep their ids (#bulk-retry, #bulk-discard) for scripts written against them
  const id = (name: string) => list === 'dead' ? name : `${name}-${list}`;
  const empty = list === 'dead'
    ? 'No dead letters: every delivery so far was accepted or is still being retried.'
    : 'Nothing expired: no message was still unsent past its deliver-by.';
  return html`<section class="card" id="${list}-card" aria-labelledby="${list}-title" data-live>
  <h2 id="${list}-title">${title} ${countBadge(total, page)}</h2>
  ${page.items.length > 0 ? html`<form id="bulk-${list}" class="bulk" method="post" action="/ui/${list}/retry" data-one="${one}" data-many="${many}">
    <input type="hidden" name="view" value="${viewHref}">
    <label class="check select-all" hidden><input type="checkbox" id="select-all-${list}"> All on this page</label>
    <span class="bulk-hint">Tick ${many}, then:</span>
    <button type="submit" class="small" id="${id('bulk-retry')}">Retry selected</button>
    <button type="submit" class="small secondary bulk-discard" id="${id('bulk-discard')}" formaction="/ui/${list}/discard">Discard selected</button>
  </form>` : ''}
  ${listBlock(page.items, list, (m) => replayItem(m, viewHref, list, windows.get(m.target)), emptyText(view, list, empty))}
  ${total !== undefined && view.cursors[list] === undefined && total > page.items.length ? html`<p class="empty">Showing the first ${page.items.length.toLocaleString('en-US')} of ${total.toLocaleString('en-US')}.</p>` : ''}
  ${pager(view, list, page)}
</section>`;
}

function deliveredCard(view: ConsoleView, page: ListPage): SafeHtml {
  const total = view.narrowed ? undefined : view.counts.delivered;
  return html`<section class="card" id="delivered-card" aria-labelledby="delivered-title" data-live>
  <h2 id="delivered-title">Delivered ${countBadge(total, page)}</h2>
  ${listBlock(page.items, 'delivered', deliveredItem, emptyText(view, 'delivered', 'Nothing delivered yet.'))}
  ${total !== undefined && view.cursors.delivered === undefined && total > page.items.length ? html`<p class="empty">The ${page.items.length} most recent are shown; kept for --retention after delivery.</p>` : ''}
  ${pager(view, 'delivered', page)}
</section>`;
}

function overviewCard(view: ConsoleView): SafeHtml {
  const { counts } = view;
  const tile = (status: MessageStatus, label: string) => html`<a class="stat ${status}" href="${consoleHref({ ...NO_FILTERS(view.filters.timeZone), show: status })}"><span class="stat-n">${counts[status].toLocaleString('en-US')}</span><span class="stat-label">${label}</span></a>`;
  return html`<section class="card" id="overview" aria-labelledby="overview-title" data-live>
  <h2 id="overview-title">Overview <span class="badge" id="live" hidden></span></h2>
  <div class="stats">${tile('scheduled', 'scheduled')}${tile('delivering', 'being delivered')}${tile('dead', 'dead letters')}${tile('expired', 'expired unsent')}${tile('delivered', 'delivered (kept)')}</div>
  <div class="charts">${deliveriesChart(view.minutes)}${latenessChart(view.minutes)}</div>
  <p class="empty">The charts are this dispatcher's own numbers since it started (at most the last hour); the counts are the whole store's.</p>
</section>`;
}

function filterCard(view: ConsoleView): SafeHtml {
  const f = view.filters;
  const option = (value: Show, label: string) => html`<option value="${value}"${f.show === value ? html` selected` : ''}>${label}</option>`;
  return html`<section class="card" id="filters-card" aria-labelledby="filters-title">
  <h2 id="filters-title">Find messages</h2>
  <form id="filters" class="filters" method="get" action="/">
    <div><label for="filter-show">Status</label><select id="filter-show" name="show">${option('all', 'All')}${option('scheduled', 'Scheduled')}${option('delivering', 'Being delivered')}${option('dead', 'Dead letters')}${option('expired', 'Expired')}${option('delivered', 'Delivered')}</select></div>
    <div><label for="filter-target">Target</label><select id="filter-target" name="target"><option value="">All</option>${targetOptions(view.targets, f.target)}</select></div>
    <div><label for="filter-user">User</label><input id="filter-user" name="user" maxlength="${LIMITS.usernameMax}" value="${f.user}" placeholder="exact name"></div>
    <div class="wide"><label for="filter-q">Text contains</label><input id="filter-q" type="search" name="q" maxlength="200" value="${f.q}" placeholder="any case"></div>
    <div><label for="filter-from">Due from</label><input id="filter-from" type="datetime-local" step="1" name="dueFrom" value="${f.dueFrom}"></div>
    <div><label for="filter-to">Due before</label><input id="filter-to" type="datetime-local" step="1" name="dueTo" value="${f.dueTo}"></div>
    <input type="hidden" name="timeZone" value="${f.timeZone}">
    <div class="filter-actions"><button type="submit">Apply</button>${view.narrowed || f.show !== 'all' ? html`<a class="button secondary" id="clear-filters" href="/">Clear</a>` : ''}</div>
  </form>
  <p class="empty">Times are read in <span class="tz-name">${f.timeZone}</span>.</p>
</section>`;
}

/** The filter's target choices: every target known, and the one asked for even when it is not (removed since). */
function targetOptions(targets: TargetJson[], chosen: string): SafeHtml[] {
  const names = targets.map((t) => t.name);
  if (chosen && !names.includes(chosen)) names.push(chosen);
  return names.map((name) => html`<option value="${name}"${name === chosen ? html` selected` : ''}>${name}</option>`);
}

/** The targets and how each is delivered to: secrets only as signed/not, token set/not. */
function targetsCard(targets: TargetJson[]): SafeHtml {
  const limits = (t: TargetJson) => [
    t.ratePerSecond !== null ? `${t.ratePerSecond}/s` : '', t.burst !== null ? `burst ${t.burst}` : '', t.maxInFlight !== null ? `≤ ${t.maxInFlight} in flight` : '',
    t.deliverWithinMs !== null ? `expires after ${deliverWithinText(t.deliverWithinMs)}` : '',
  ].filter(Boolean).join(', ') || 'none';
  const row = (t: TargetJson) => html`<tr id="t-${t.name}"><th scope="row"><a href="${consoleHref({ ...NO_FILTERS(''), target: t.name })}">${t.name}</a>${t.builtIn ? html` <span class="count">built in</span>` : ''}</th>
    <td><code>${t.url}</code></td><td>${t.protocol}</td><td>${t.signingSecretSet ? t.signatureScheme : 'unsigned'}</td><td>${t.tokenSet ? 'yes' : 'no'}</td><td>${limits(t)}</td></tr>`;
  return html`<section class="card" id="targets-card" aria-labelledby="targets-title">
  <h2 id="targets-title">Targets <span class="count">${targets.length}</span></h2>
  <table class="attempts" id="targets">
    <thead><tr><th scope="col">Name</th><th scope="col">URL</th><th scope="col">Protocol</th><th scope="col">Signed</th><th scope="col">Token</th><th scope="col">Limits</th></tr></thead>
    <tbody>${targets.map(row)}</tbody>
  </table>
  <p class="empty">Main servers this dispatcher delivers to. Manage them with <code>/v1/targets</code> or <code>psched targets</code>; default is --main-url and its flags. "Expires after" is a target's deliver-by window: a message of it not sent that long after its scheduled time is set expired instead.</p>
</section>`;
}

function scheduleItem(s: StoredSchedule): SafeHtml {
  const path = `/ui/schedules/${encodeURIComponent(s.id)}`;
  const rule = s.cron !== null ? `cron ${s.cron}` : `every ${formatEvery(s.everyMs!)}`;
  const status = s.paused ? 'paused' : s.nextFireAt === null ? 'finished' : 'active';
  const next = status === 'active' ? localTime(s.nextFireAt!, s.timeZone) : undefined;
  const which = `the schedule of ${s.username}: ${preview(s.message)}`;
  return html`<li id="s-${s.id}">
  <div class="meta"><strong>${s.username}</strong> <span class="badge ${status}">${status}</span> ${targetChip(s.target)}
    <span>${rule} in ${s.timeZone}</span>
    ${next ? html`<span>next ${timeTag(s.nextFireAt!)} (${next.local} ${next.utcOffset} there)</span>` : ''}
    <span>${plural(s.occurrences, 'post')} so far${s.maxOccurrences !== null ? ` of ${s.maxOccurrences}` : ''}</span>
  </div>
  <p class="text">${s.message}</p>
  <div class="row-actions">
    ${s.paused ? postButton(`${path}/resume`, 'Resume', 'small', {}, `Resume ${which}`) : status === 'active' ? postButton(`${path}/pause`, 'Pause', 'secondary small', {}, `Pause ${which}`) : ''}
    ${postButton(`${path}/delete`, 'Delete', 'danger small', {}, `Delete ${which}`)}
  </div>
</li>`;
}

function schedulesCard(schedules: StoredSchedule[], limit: number): SafeHtml {
  const full = schedules.length >= limit;
  return html`<section class="card" aria-labelledby="schedules-title" id="schedules-card" data-live>
  <h2 id="schedules-title">Recurring <span class="count">${schedules.length}${full ? '+' : ''}</span></h2>
  ${schedules.length === 0 ? html`<p class="empty">No recurring messages. Create one with POST /v1/schedules, psched schedule, or the main server's page.</p>` : html`<ul class="items">${schedules.map(scheduleItem)}</ul>`}
  ${full ? html`<p class="empty">The first ${limit} are shown; page through all of them with <code>GET /v1/schedules</code>.</p>` : ''}
</section>`;
}

export function renderConsole(view: ConsoleView): string {
  const viewHref = consoleHref(view.filters, view.cursors, view.serverTimeZone);
  const { scheduled, dead, expired, delivered } = view.lists;
  const body = html`
${noticeBlock(view.notice)}
${overviewCard(view)}
${filterCard(view)}
${scheduled ? scheduledCard(view, scheduled, viewHref) : ''}
${dead ? replayCard(view, dead, viewHref, 'dead') : ''}
${expired ? replayCard(view, expired, viewHref, 'expired') : ''}
${view.schedules ? schedulesCard(view.schedules, view.schedulesLimit ?? view.schedules.length + 1) : ''}
${delivered ? deliveredCard(view, delivered) : ''}
${view.filters.show === 'all' ? targetsCard(view.targets) : ''}`;
  return page({
    title: 'Scheduled Messages',
    subtitle: `dispatcher · delivers to ${view.mainUrl} · times in your time zone`,
    body,
    script: LOCAL_TIME_SCRIPT + CONSOLE_SCRIPT,
  });
}

// ---- a message's page ----------------------------------------------------------

export interface DetailView {
  notice?: Notice | undefined;
  message: StoredMessage;
  attempts: AttemptRecord[];
  /** The zone the edit form's time is shown and read in without a script. */
  timeZone: string;
  /** Its target's deliver-by window (ms after the scheduled time), if it has one. */
  deliverWithinMs?: number | null | undefined;
  /** A refused edit, shown again as typed, with what was wrong. */
  edit?: { time?: string; text?: string; problem: string; field: 'time' | 'text' };
}

/** "YYYY-MM-DDTHH:MM[:SS]" of an instant in a zone: a datetime-local value. */
export function pickerValue(instant: number, timeZone: string): string {
  const text = formatWallClock(instant, timeZone).replace(' ', 'T');
  return text.endsWith(':00') ? text.slice(0, 16) : text;
}

function fact(label: string, value: SafeHtml | string | null): SafeHtml {
  return html`<div><dt>${label}</dt><dd>${value === null || value === '' ? html`<span class="muted">—</span>` : value}</dd></div>`;
}

function attemptRow(a: AttemptRecord): SafeHtml {
  const outcome = a.outcome === 'retry' ? 'failed, retried' : a.outcome === 'dead' ? 'failed, gave up' : 'delivered';
  const badgeClass = a.outcome === 'delivered' ? 'delivered' : a.outcome === 'dead' ? 'dead' : 'delivering';
  return html`<tr>
    <td data-label="Attempt">${a.attempt}</td>
    <td data-label="Started">${timeTag(a.startedAt)}</td>
    <td data-label="Outcome"><span class="badge ${badgeClass}">${outcome}</span></td>
    <td data-label="Answer">${a.httpStatus !== null ? html`<code class="status">HTTP ${a.httpStatus}</code> ` : ''}${a.error !== null ? html`<span class="error-text">${a.error}</span>` : a.httpStatus === null ? html`<span class="muted">no answer</span>` : ''}</td>
    <td data-label="Latency" class="num">${formatMs(a.latencyMs)}</td>
  </tr>`;
}

function messageActions(m: StoredMessage): SafeHtml {
  const which = `the message from ${m.username}: ${preview(m.message)}`;
  const back = { back: 'detail' };
  if (m.status === 'scheduled') {
    return html`<div class="row-actions">${postButton(`${messagePath(m)}/cancel`, 'Cancel', 'danger small', back, `Cancel ${which}`)}</div>`;
  }
  if (isReplayable(m.status)) {
    return html`<div class="row-actions">${postButton(`${messagePath(m)}/retry`, 'Retry', 'small', back, `Retry ${which}`)}${postButton(`${messagePath(m)}/discard`, 'Discard', 'secondary small', back, `Discard ${which}`)}</div>`;
  }
  return html`<p class="empty">${m.status === 'delivering' ? 'Being delivered now: it can no longer be changed.' : 'Delivered: nothing left to do.'}</p>`;
}

function editCard(view: DetailView): SafeHtml | string {
  const m = view.message;
  if (m.status !== 'scheduled') return '';
  const edit = view.edit;
  const time = edit?.time ?? pickerValue(m.scheduledAt, view.timeZone);
  const text = edit?.text ?? m.message;
  const problem = (field: 'time' | 'text') => edit && edit.field === field ? html`<p class="field-error" role="alert">${edit.problem}</p>` : '';
  return html`<section class="card" id="edit" aria-labelledby="edit-title">
  <h2 id="edit-title">Change it</h2>
  <form class="reschedule" method="post" action="${messagePath(m)}/reschedule">
    <label for="edit-time">Deliver at</label>
    <div class="inline"><input id="edit-time" type="datetime-local" name="time" step="1" required value="${time}"${edit?.time === undefined ? html` data-instant="${new Date(m.scheduledAt).toISOString()}"` : ''}>
    <input type="hidden" name="timeZone" value="${view.timeZone}">
    <button type="submit" class="secondary">Change time</button></div>
    <p class="empty">Read in <span class="tz-name">${view.timeZone}</span>.</p>
    ${problem('time')}
  </form>
  <form class="edit-text" method="post" action="${messagePath(m)}/edit">
    <label for="edit-text">Text</label>
    <textarea id="edit-text" name="message" required>${text}</textarea>
    <p class="hint counter" data-max="${LIMITS.messageMax}">Up to ${LIMITS.messageMax.toLocaleString('en-US')} characters.</p>
    ${problem('text')}
    <button type="submit" class="secondary">Save text</button>
  </form>
</section>`;
}

export function renderMessagePage(view: DetailView): string {
  const m = view.message;
  const by = deliverByOf(m, view.deliverWithinMs);
  const body = html`
${noticeBlock(view.notice)}
<p class="crumbs"><a href="/">← All messages</a></p>
<section class="card" id="message-card" aria-labelledby="message-title" data-live>
  <h2 id="message-title"><span>Message from <strong>${m.username}</strong></span> ${badge(m.status)}</h2>
  <p class="text">${m.message}</p>
  <dl class="facts" id="message-facts">
    ${fact('Target', html`<a href="${consoleHref({ ...NO_FILTERS(''), target: m.target })}">${m.target}</a>`)}
    ${fact('Scheduled for', timeTag(m.scheduledAt))}
    ${fact(m.status === 'scheduled' && m.attempts > 0 ? 'Next attempt' : 'Due', timeTag(m.dueAt))}
    ${fact('Deliver by', by === null ? null : deliverByText(by, view.deliverWithinMs))}
    ${fact('Delivered', m.deliveredAt === null ? null : timeTag(m.deliveredAt))}
    ${fact('Attempts', String(m.attempts))}
    ${fact('Last error', m.lastError === null ? null : html`<code>${m.lastError}</code>`)}
    ${fact('Created', timeTag(m.createdAt))}
    ${fact('Changed', timeTag(m.updatedAt))}
    ${fact('Id', html`<code>${m.id}</code>`)}
    ${fact('Idempotency key', m.idempotencyKey === null ? null : html`<code>${m.idempotencyKey}</code>`)}
    ${fact('Held by', m.leaseOwner === null ? null : html`<code>${m.leaseOwner}</code>`)}
  </dl>
  ${messageActions(m)}
</section>
${editCard(view)}
<section class="card" id="attempts-card" aria-labelledby="attempts-title" data-live>
  <h2 id="attempts-title">Attempt history <span class="count">${view.attempts.length}</span> <span class="badge" id="live" hidden></span></h2>
  ${view.attempts.length === 0 ? html`<p class="empty" id="attempts-empty">No attempt has finished yet.</p>` : html`<table class="attempts" id="attempts">
    <thead><tr><th scope="col">#</th><th scope="col">Started</th><th scope="col">Outcome</th><th scope="col">HTTP status or error</th><th scope="col" class="num">Latency</th></tr></thead>
    <tbody>${view.attempts.map(attemptRow)}</tbody>
  </table>`}
  <p class="empty">Kept with the message: gone when it is cancelled or discarded, purged --retention after delivery. A retried dead letter or expired message counts its attempts from 1 again.</p>
</section>`;
  return page({
    title: 'Message',
    subtitle: `dispatcher · ${m.username} · times in your time zone`,
    body,
    script: LOCAL_TIME_SCRIPT + CONSOLE_SCRIPT,
  });
}

/** The page of an id that is not (or no longer) there. */
export function renderMissingMessage(): string {
  return page({
    title: 'Message',
    subtitle: 'dispatcher',
    body: html`<section class="card"><h2>No such message</h2><p>It was cancelled, discarded, or purged after delivery (--retention), or the link is wrong.</p><p><a class="button" href="/">All messages</a></p></section>`,
  });
}
