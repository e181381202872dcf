import { html, type SafeHtml } from '../html.ts';
import { formatWallClock } from '../protocol/time.ts';
import { LIMITS } from '../protocol/messages.ts';
import { LOCAL_TIME_SCRIPT, page, timeTag } from '../ui/layout.ts';
import type { PostJson } from './feed.ts';
import type { ScheduledJson } from './scheduled.ts';
import { MAIN_PAGE_SCRIPT } from './ui-script.ts';

/**
 * The main server's page: the original's compose form and feed, plus the
 * messages still scheduled, with edit-time and cancel. Server-rendered and
 * complete without JavaScript; every user string goes through html``.
 *
 * The feed is newest first (the original showed oldest first): new posts
 * arrive live at the top, where the eye is, and a long feed pages backwards.
 *
 * The compose form carries its own idempotency key (a hidden input), made
 * when the page is rendered, kept when the form is shown again after a
 * failure or an unknown outcome, new only with the page after a success:
 * sending the same form twice stores one message.
 *
 * Stable hooks for tests and scripts: #notice, #compose, #feed (li.post, with
 * id "post-<id>"), #older, #scheduled (li with data-id = the message id),
 * form.reschedule, form.cancel, #live.
 */

export interface Notice {
  /** `warn`: it may or may not have happened (the dispatcher did not confirm). */
  kind: 'ok' | 'error' | 'warn';
  text: string;
}

export interface ComposeValues {
  username: string;
  message: string;
  /** datetime-local value, "YYYY-MM-DDTHH:MM" (seconds allowed: step="1", for messages due in a few seconds). */
  time: string;
  timeZone: string;
  /** True for the server's default time, which the script replaces with the viewer's. */
  isDefault: boolean;
  /** This form's idempotency key: the same on every submit of this form. */
  idempotencyKey: string;
}

export interface HomeView {
  notice?: Notice | undefined;
  compose: ComposeValues;
  posts: PostJson[];
  /** Cursor of the next (older) page of the feed, null on the last page. */
  olderCursor: string | null;
  /** True on the first page: only it updates live. */
  live: boolean;
  scheduled: { items: ScheduledJson[]; more: boolean; problem?: string | undefined };
  /** The zone the server reads times in when no script sends the viewer's. */
  timeZone: string;
}

/** How far ahead the compose form's time defaults to, as the original's page did. */
export const DEFAULT_LEAD_MS = 5 * 60_000;

/** "YYYY-MM-DD HH:MM" in a zone, with ":SS" when the seconds are not zero: for notices. */
export function wallClockText(instant: number, timeZone: string): string {
  const text = formatWallClock(instant, timeZone);
  return text.endsWith(':00') ? text.slice(0, 16) : text;
}

/** A datetime-local value ("YYYY-MM-DDTHH:MM") for an instant in a zone. */
export function pickerValue(instant: number, timeZone: string): string {
  return formatWallClock(instant, timeZone).slice(0, 16).replace(' ', 'T');
}

export function renderHome(view: HomeView): string {
  const body = html`
${view.notice ? html`<div id="notice" class="notice ${view.notice.kind}" role="status">${view.notice.text}</div>` : ''}
<div class="grid-2">
  <div class="column">
    ${composeCard(view.compose)}
    ${scheduledCard(view)}
  </div>
  ${feedCard(view)}
</div>`;
  return page({
    title: 'Feed',
    subtitle: 'compose a message, pick when it is posted',
    body,
    script: LOCAL_TIME_SCRIPT + MAIN_PAGE_SCRIPT,
  });
}

function composeCard(values: ComposeValues): SafeHtml {
  return html`<section class="card" id="compose-card">
  <h2>Schedule a message</h2>
  <form id="compose" method="post" action="/ui/schedule">
    <label for="compose-message">Message</label>
    <textarea id="compose-message" name="message" required>${values.message}</textarea>
    <label for="compose-username">Name</label>
    <input id="compose-username" name="username" required maxlength="${LIMITS.usernameMax}" autocomplete="nickname" value="${values.username}">
    <label for="compose-time">Post at</label>
    <input id="compose-time" type="datetime-local" name="time" step="1" required value="${values.time}"${values.isDefault ? html` data-default` : ''}>
    <input type="hidden" name="timezone" value="${values.timeZone}">
    <input type="hidden" name="idempotencyKey" value="${values.idempotencyKey}">
    <p class="empty">Time zone: <span class="tz-name">${values.timeZone}</span></p>
    <div class="actions"><button type="submit">Schedule</button></div>
  </form>
</section>`;
}

function scheduledCard(view: HomeView): SafeHtml {
  const { items, more, problem } = view.scheduled;
  return html`<section class="card" id="scheduled-card">
  <h2>Scheduled <span class="count" id="scheduled-count">${items.length}${more ? '+' : ''}</span></h2>
  ${problem ? html`<p class="notice error" id="scheduled-problem">${problem}</p>` : ''}
  ${items.length === 0 && !problem ? html`<p class="empty" id="scheduled-empty">Nothing scheduled.</p>` : ''}
  <ul class="items" id="scheduled">${items.map((item) => scheduledItem(item, view.timeZone))}</ul>
</section>`;
}

function scheduledItem(item: ScheduledJson, timeZone: string): SafeHtml {
  const instant = Date.parse(item.scheduledAt);
  const path = `/ui/scheduled/${encodeURIComponent(item.id)}`;
  return html`<li data-id="${item.id}">
    <div class="meta"><strong class="username">${item.username}</strong><span>due ${timeTag(instant)}</span><span class="badge ${item.status}">${item.status}</span></div>
    <p class="text">${item.message}</p>
    <div class="row-actions">
      <form class="reschedule" method="post" action="${path}/reschedule">
        <input type="datetime-local" name="time" required aria-label="New time" value="${pickerValue(instant, timeZone)}" data-instant="${item.scheduledAt}">
        <input type="hidden" name="timezone" value="${timeZone}">
        <button type="submit" class="small secondary">Change time</button>
      </form>
      <form class="cancel" method="post" action="${path}/cancel">
        <button type="submit" class="small danger">Cancel</button>
      </form>
    </div>
  </li>`;
}

function feedCard(view: HomeView): SafeHtml {
  return html`<section class="card" id="feed-card">
  <h2>Feed <span class="badge" id="live" hidden></span></h2>
  ${view.posts.length === 0 ? html`<p class="empty" id="feed-empty">${view.live ? 'No posts yet. Schedule one: it appears here at its time.' : 'No older posts.'}</p>` : ''}
  <ul class="items" id="feed" data-live="${view.live ? 'true' : 'false'}">${view.posts.map(postItem)}</ul>
  ${view.olderCursor ? html`<p><a class="button" id="older" href="/?cursor=${encodeURIComponent(view.olderCursor)}">Older posts</a></p>` : ''}
  ${view.live ? '' : html`<p><a href="/" id="newest">Back to the newest posts</a></p>`}
</section>`;
}

function postItem(post: PostJson): SafeHtml {
  return html`<li class="post" id="post-${post.id}">
    <div class="meta">Posted By <strong class="username">${post.username}</strong> at ${timeTag(Date.parse(post.postedAt))}</div>
    <p class="text">${post.message}</p>
  </li>`;
}
