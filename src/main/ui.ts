import { html, type SafeHtml } from '../html.ts';
import { formatWallClock } from '../protocol/time.ts';
import { LIMITS } from '../protocol/messages.ts';
import { LOCAL_TIME_SCRIPT, page, timeTag } from '../ui/layout.ts';
import type { PostJson } from './feed.ts';
import type { ScheduledJson } from './scheduled.ts';
import type { ScheduleJson } from './schedules.ts';
import type { PreviewItem } from '../protocol/schedules.ts';
import { MAIN_PAGE_SCRIPT } from './ui-script.ts';

/**
 * The main server's page: the original's compose form and feed, plus the
 * messages still scheduled, with edit (time to the second, text) and cancel.
 * Server-rendered and complete without JavaScript; every user string goes
 * through html``.
 *
 * The feed is newest first (the original showed oldest first): new posts
 * arrive live at the top, where the eye is, and a long feed pages backwards.
 * The page reads compose, feed, scheduled in the document (and so on a phone,
 * and for a screen reader); on a wide screen the scheduled list sits under
 * the compose form, beside the feed.
 *
 * The compose form carries its own idempotency key (a hidden input), made
 * when the page is rendered, kept when the form is shown again after a
 * failure or an unknown outcome, new only with the page after a success:
 * sending the same form twice stores one message.
 *
 * Every per-message control has an accessible name that says which message
 * ("Cancel the message from Ann due …: Hello…"), not just "Cancel".
 *
 * Stable hooks for tests and scripts: #notice, #compose (#compose-now, the
 * "post now" box; #compose-counter; #compose-time-error), #feed (li.post, with
 * id "post-<id>"), #older, #scheduled (li with data-id = the message id),
 * #scheduled-count, #scheduled-empty, #later, form.reschedule, form.edit-text,
 * form.cancel, #live. Recurring messages: #compose-repeat (select
 * name="repeat", the day boxes name="days", #compose-rule, the DST selects),
 * the Preview button (name="action" value="preview"), #compose-preview,
 * #schedules (li with data-id = the schedule id), form.pause, form.resume,
 * form.delete.
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
  /** "Post now" ticked: the time is ignored, the message is sent at once. */
  postNow: boolean;
  /** This form's idempotency key: the same on every submit of this form. */
  idempotencyKey: string;
  /** Repeat: once, daily or weekly at the picked time of day, or a custom cron rule or `every` interval. */
  repeat: RepeatKind;
  /** Weekly: the days ticked (MON…SUN). */
  days: string[];
  /** Custom: a cron rule ("0 9 * * MON-FRI") or "every 15m". */
  rule: string;
  dstGap: 'shift' | 'skip';
  dstOverlap: 'first' | 'last' | 'both';
  /** A preview asked for: the next fire times (or why there are none), nothing saved. */
  preview?: { timeZone: string; items: PreviewItem[] } | { error: string } | undefined;
}

export const REPEAT_KINDS = ['none', 'daily', 'weekly', 'custom'] as const;
export type RepeatKind = (typeof REPEAT_KINDS)[number];
export const WEEKDAYS = ['MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT', 'SUN'] as const;

export interface HomeView {
  notice?: Notice | undefined;
  compose: ComposeValues;
  posts: PostJson[];
  /** Cursor of the next (older) page of the feed, null on the last page. */
  olderCursor: string | null;
  /** True on the first page: only it updates live. */
  live: boolean;
  scheduled: {
    items: ScheduledJson[];
    /** Cursor of the next (later) page of the scheduled list, null on the last page. */
    laterCursor: string | null;
    /** True when this is not the first page of the scheduled list. */
    paged: boolean;
    problem?: string | undefined;
  };
  /** The cursors this page was asked for, kept by the links that page the other list. */
  cursors: { feed?: string | undefined; scheduled?: string | undefined };
  /** The zone the server reads times in when no script sends the viewer's. */
  timeZone: string;
  schedules: { items: ScheduleJson[]; problem?: string | undefined };
}

/** How far ahead the compose form's time defaults to, as the original's page did. */
export const DEFAULT_LEAD_MS = 5 * 60_000;

/** Characters of a message quoted in a control's accessible name: enough to tell messages apart, short enough to listen to. */
const LABEL_PREVIEW = 40;

/** "YYYY-MM-DD HH:MM" in a zone, with ":SS" when the seconds are not zero: for notices. */
export function wallClockText(instant: number, timeZone: string): string {
  const text = formatWallClock(instant, timeZone);
  return text.endsWith(':00') ? text.slice(0, 16) : text;
}

/** A datetime-local value ("YYYY-MM-DDTHH:MM", with ":SS" when the seconds are not zero) for an instant in a zone. */
export function pickerValue(instant: number, timeZone: string): string {
  return wallClockText(instant, timeZone).replace(' ', 'T');
}

/** A link to this page with the given cursors (either list's position kept when the other pages). */
function pageHref(cursors: { feed?: string | undefined; scheduled?: string | undefined }): string {
  const params = new URLSearchParams();
  if (cursors.feed) params.set('cursor', cursors.feed);
  if (cursors.scheduled) params.set('later', cursors.scheduled);
  const query = params.toString();
  return query ? `/?${query}` : '/';
}

export function renderHome(view: HomeView): string {
  const body = html`
${view.notice ? html`<div id="notice" class="notice ${view.notice.kind}" role="status">${view.notice.text}</div>` : ''}
<div class="home">
  ${composeCard(view.compose)}
  ${feedCard(view)}
  ${scheduledCard(view)}
  ${schedulesCard(view)}
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
    <textarea id="compose-message" name="message" required aria-describedby="compose-counter">${values.message}</textarea>
    <p class="hint counter" id="compose-counter" data-max="${LIMITS.messageMax}">Up to ${LIMITS.messageMax.toLocaleString('en-US')} characters.</p>
    <label for="compose-username">Name</label>
    <input id="compose-username" name="username" required maxlength="${LIMITS.usernameMax}" autocomplete="nickname" value="${values.username}">
    <label for="compose-time">Post at</label>
    <input id="compose-time" type="datetime-local" name="time" step="1" required value="${values.time}"${values.isDefault ? html` data-default` : ''} aria-describedby="compose-time-error compose-tz">
    <p class="field-error" id="compose-time-error" role="alert" hidden></p>
    <label class="check"><input type="checkbox" id="compose-now" name="postNow" value="1"${values.postNow ? html` checked` : ''}> Post now (ignore the time)</label>
    ${repeatFields(values)}
    <input type="hidden" name="timezone" value="${values.timeZone}">
    <input type="hidden" name="idempotencyKey" value="${values.idempotencyKey}">
    <p class="empty" id="compose-tz">Time zone: <span class="tz-name">${values.timeZone}</span></p>
    <div class="actions"><button type="submit">Schedule</button> <button type="submit" class="secondary" name="action" value="preview" id="compose-preview-button">Preview</button></div>
    ${previewList(values.preview)}
  </form>
</section>`;
}

const REPEAT_LABELS: Record<RepeatKind, string> = { none: 'Once', daily: 'Every day at that time', weekly: 'Weekly on the days ticked, at that time', custom: 'Custom rule' };

/** The compose form's repeat choice; without JavaScript every part shows, and the choice says which counts. */
function repeatFields(values: ComposeValues): SafeHtml {
  const option = (value: string, label: string, selected: boolean) => html`<option value="${value}"${selected ? html` selected` : ''}>${label}</option>`;
  return html`<fieldset class="repeat" id="compose-repeat">
      <legend>Repeat</legend>
      <label for="compose-repeat-kind">Repeat</label>
      <select id="compose-repeat-kind" name="repeat">${REPEAT_KINDS.map((kind) => option(kind, REPEAT_LABELS[kind], values.repeat === kind))}</select>
      <div class="days" id="compose-days" role="group" aria-label="Days of the week (weekly)">${WEEKDAYS.map((day) => html`<label class="check"><input type="checkbox" name="days" value="${day}"${values.days.includes(day) ? html` checked` : ''}> ${day.slice(0, 1)}${day.slice(1).toLowerCase()}</label>`)}</div>
      <div id="compose-custom">
        <label for="compose-rule">Custom rule</label>
        <input id="compose-rule" name="rule" value="${values.rule}" placeholder="0 9 * * MON-FRI, or every 15m" aria-describedby="compose-rule-hint">
        <p class="hint" id="compose-rule-hint">A cron rule (minute hour day month weekday) on the clock of the time zone below, or "every" and a duration (elapsed time: 90s, 15m, 1d). The first post is not before the time above.</p>
      </div>
      <label for="compose-dst-gap">When the time does not exist (clocks go forward)</label>
      <select id="compose-dst-gap" name="dstGap">${option('shift', 'Post it later by the gap (default)', values.dstGap === 'shift')}${option('skip', 'Skip that day', values.dstGap === 'skip')}</select>
      <label for="compose-dst-overlap">When the time happens twice (clocks go back)</label>
      <select id="compose-dst-overlap" name="dstOverlap">${option('first', 'The first time (default)', values.dstOverlap === 'first')}${option('last', 'The second time', values.dstOverlap === 'last')}${option('both', 'Both times', values.dstOverlap === 'both')}</select>
    </fieldset>`;
}

function previewList(preview: ComposeValues['preview']): SafeHtml | string {
  if (!preview) return '';
  if ('error' in preview) return html`<p class="notice error" id="compose-preview">No preview: ${preview.error}</p>`;
  if (preview.items.length === 0) return html`<p class="empty" id="compose-preview">This rule never fires.</p>`;
  return html`<div id="compose-preview"><p class="hint">Next posts (nothing is saved yet):</p><ol class="preview">${preview.items.map((item) => html`<li>${timeTag(Date.parse(item.at))} <span class="local">= ${item.local} ${item.utcOffset} (${preview.timeZone})</span>${item.note ? html` <em class="note">${item.note}</em>` : ''}</li>`)}</ol></div>`;
}

/** The rule of a schedule in words a reader of the page knows. */
function ruleText(item: ScheduleJson): string {
  return item.cron !== null ? `cron ${item.cron}` : `every ${item.every}`;
}

function schedulesCard(view: HomeView): SafeHtml {
  const { items, problem } = view.schedules;
  return html`<section class="card" id="schedules-card">
  <h2>Recurring <span class="count" id="schedules-count">${items.length}</span></h2>
  ${problem ? html`<p class="notice error" id="schedules-problem">${problem}</p>` : ''}
  ${items.length === 0 && !problem ? html`<p class="empty" id="schedules-empty">No recurring messages. Pick a repeat in the form above.</p>` : ''}
  <ul class="items" id="schedules">${items.map(scheduleItem)}</ul>
</section>`;
}

function scheduleItem(item: ScheduleJson): SafeHtml {
  const path = `/ui/schedules/${encodeURIComponent(item.id)}`;
  const which = `the recurring message from ${item.username} (${ruleText(item)}, ${item.timeZone})`;
  return html`<li data-id="${item.id}">
    <div class="meta"><strong class="username">${item.username}</strong><span>${ruleText(item)} in ${item.timeZone}</span><span class="badge ${item.status}">${item.status}</span></div>
    <p class="text">${item.message}</p>
    <p class="next">${item.next ? html`next ${timeTag(Date.parse(item.next.at))} <span class="local">= ${item.next.local} ${item.next.utcOffset} (${item.timeZone})</span>` : item.status === 'paused' ? 'paused: resume to post again' : 'finished: no more posts'}</p>
    <div class="row-actions">
      ${item.paused
        ? html`<form class="resume" method="post" action="${path}/resume"><button type="submit" class="small secondary" aria-label="Resume ${which}">Resume</button></form>`
        : item.status === 'active' ? html`<form class="pause" method="post" action="${path}/pause"><button type="submit" class="small secondary" aria-label="Pause ${which}">Pause</button></form>` : ''}
      <form class="delete" method="post" action="${path}/delete"><button type="submit" class="small danger" aria-label="Delete ${which}">Delete</button></form>
    </div>
  </li>`;
}

function scheduledCard(view: HomeView): SafeHtml {
  const { items, laterCursor, paged, problem } = view.scheduled;
  const more = laterCursor !== null;
  return html`<section class="card" id="scheduled-card">
  <h2>Scheduled <span class="count" id="scheduled-count" data-more="${more ? 'true' : 'false'}">${items.length}${more ? '+' : ''}</span></h2>
  ${problem ? html`<p class="notice error" id="scheduled-problem">${problem}</p>` : ''}
  ${problem && items.length === 0 ? '' : html`<p class="empty" id="scheduled-empty"${items.length > 0 ? html` hidden` : ''}>${more ? 'Nothing left on this page: see the later messages.' : paged ? 'Nothing scheduled after these.' : 'Nothing scheduled.'}</p>`}
  <ul class="items" id="scheduled">${items.map((item) => scheduledItem(item, view.timeZone))}</ul>
  ${more || paged ? html`<p class="pager">${paged ? html`<a href="${pageHref({ feed: view.cursors.feed })}" id="earliest">Back to the earliest</a>` : ''}${more ? html`<a class="button secondary" id="later" href="${pageHref({ feed: view.cursors.feed, scheduled: laterCursor })}">Later messages</a>` : ''}</p>` : ''}
</section>`;
}

/** "the message from Ann due 2099-01-01 10:30 (UTC): Hello…": which message a control acts on. */
function whichMessage(item: ScheduledJson, timeZone: string): string {
  const chars = [...item.message];
  const preview = chars.length > LABEL_PREVIEW ? `${chars.slice(0, LABEL_PREVIEW).join('')}…` : item.message;
  return `the message from ${item.username} due ${wallClockText(Date.parse(item.scheduledAt), timeZone)} (${timeZone}): ${preview}`;
}

function scheduledItem(item: ScheduledJson, timeZone: string): SafeHtml {
  const instant = Date.parse(item.scheduledAt);
  const path = `/ui/scheduled/${encodeURIComponent(item.id)}`;
  const which = whichMessage(item, timeZone);
  return html`<li data-id="${item.id}">
    <div class="meta"><strong class="username">${item.username}</strong><span>due ${timeTag(instant)}</span><span class="badge ${item.status}">${item.status}</span></div>
    <p class="text">${item.message}</p>
    <form class="reschedule" method="post" action="${path}/reschedule">
      <input type="datetime-local" name="time" step="1" required aria-label="New time for ${which}" data-label="New time for" value="${pickerValue(instant, timeZone)}" data-instant="${item.scheduledAt}">
      <input type="hidden" name="timezone" value="${timeZone}">
      <button type="submit" class="small secondary" aria-label="Change the time of ${which}" data-label="Change the time of">Change time</button>
    </form>
    <p class="field-error" role="alert" hidden></p>
    <div class="row-actions">
      <details class="edit">
        <summary aria-label="Edit the text of ${which}" data-label="Edit the text of">Edit text</summary>
        <form class="edit-text" method="post" action="${path}/edit">
          <textarea name="message" required aria-label="New text for ${which}" data-label="New text for">${item.message}</textarea>
          <p class="hint counter" data-max="${LIMITS.messageMax}">Up to ${LIMITS.messageMax.toLocaleString('en-US')} characters.</p>
          <button type="submit" class="small secondary" aria-label="Save the new text of ${which}" data-label="Save the new text of">Save text</button>
        </form>
      </details>
      <form class="cancel" method="post" action="${path}/cancel">
        <button type="submit" class="small danger" aria-label="Cancel ${which}" data-label="Cancel">Cancel</button>
      </form>
    </div>
  </li>`;
}

function feedCard(view: HomeView): SafeHtml {
  return html`<section class="card" id="feed-card" aria-labelledby="feed-title">
  <h2 id="feed-title">Feed <span class="badge" id="live" hidden></span></h2>
  ${view.posts.length === 0 ? html`<p class="empty" id="feed-empty">${view.live ? 'No posts yet. Schedule one: it appears here at its time.' : 'No older posts.'}</p>` : ''}
  <ul class="items" id="feed" data-live="${view.live ? 'true' : 'false'}" aria-live="polite" aria-relevant="additions">${view.posts.map(postItem)}</ul>
  ${view.olderCursor ? html`<p class="pager"><a class="button secondary" id="older" href="${pageHref({ feed: view.olderCursor, scheduled: view.cursors.scheduled })}">Older posts</a></p>` : ''}
  ${view.live ? '' : html`<p><a href="${pageHref({ scheduled: view.cursors.scheduled })}" id="newest">Back to the newest posts</a></p>`}
</section>`;
}

function postItem(post: PostJson): SafeHtml {
  return html`<li class="post" id="post-${post.id}">
    <div class="meta">Posted By <strong class="username">${post.username}</strong> at ${timeTag(Date.parse(post.postedAt))}</div>
    <p class="text">${post.message}</p>
  </li>`;
}
