import { html, type SafeHtml, unsafeRaw } from '../html.ts';

/**
 * The page shell both services share, so the main server's page and the
 * dispatcher's look like one product. No framework, no build step: one
 * stylesheet inlined, server-rendered HTML, optional small scripts.
 */
const STYLES = `
:root { --bg:#f6f7fb; --card:#fff; --field:#fff; --ink:#1d2433; --muted:#667085; --line:#e4e7ec; --accent:#4f46e5; --accent-ink:#fff;
  --ok:#067647; --ok-bg:#ecfdf3; --warn:#b54708; --warn-bg:#fffaeb; --bad:#b42318; --bad-bg:#fef3f2; --bad-line:#fecdca; --info:#175cd3; --info-bg:#eff8ff; --expired:#6941c6; --expired-bg:#f4f3ff; --arrive:#eef2ff;
  color-scheme: light dark;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: var(--ink); background: var(--bg); }
@media (prefers-color-scheme: dark) {
  :root { --bg:#0f1320; --card:#171c2b; --field:#0f1320; --ink:#e6e8ef; --muted:#9aa3b5; --line:#2a3145; --accent:#8b85ff; --accent-ink:#0f1320;
    --ok:#6ce9a6; --ok-bg:#0b2a1d; --warn:#fdb022; --warn-bg:#2e1f05; --bad:#fda29b; --bad-bg:#37110e; --bad-line:#7a271a; --info:#84caff; --info-bg:#0b2545; --expired:#bdb4fe; --expired-bg:#27115f; --arrive:#262c52; }
}
* { box-sizing: border-box; }
body { margin: 0; }
header.top { background: var(--card); border-bottom: 1px solid var(--line); }
header.top .inner { max-width: 1100px; margin: 0 auto; padding: 14px 20px; display: flex; align-items: baseline; gap: 14px; }
header.top h1 { font-size: 20px; margin: 0; }
header.top .brand { color: var(--accent); font-weight: 700; }
header.top .sub { color: var(--muted); font-size: 14px; }
main { max-width: 1100px; margin: 0 auto; padding: 20px; display: grid; gap: 20px; }
.grid-2 { display: grid; grid-template-columns: minmax(280px, 430px) 1fr; gap: 20px; align-items: start; }
.column { display: grid; gap: 20px; align-content: start; min-width: 0; }
@media (max-width: 800px) { .grid-2 { grid-template-columns: 1fr; } }
/* the main page: compose, feed, scheduled in the document; side by side on a wide screen, in that order on a phone */
.home { display: grid; gap: 20px; align-items: start; grid-template-columns: minmax(280px, 430px) minmax(0, 1fr); grid-template-rows: auto 1fr;
  grid-template-areas: "compose feed" "scheduled feed"; }
.home > #compose-card { grid-area: compose; } .home > #feed-card { grid-area: feed; } .home > #scheduled-card { grid-area: scheduled; }
@media (max-width: 800px) { .home { grid-template-columns: minmax(0, 1fr); grid-template-rows: none; grid-template-areas: "compose" "feed" "scheduled"; } }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 18px 20px; box-shadow: 0 1px 2px rgba(16,24,40,.04); }
section.card h2 { font-size: 16px; margin: 0 0 12px; display: flex; align-items: center; gap: 8px; }
.count { background: var(--bg); color: var(--muted); border-radius: 999px; padding: 1px 8px; font-size: 12px; font-weight: 600; }
label { display: block; font-size: 13px; font-weight: 600; color: var(--muted); margin: 10px 0 4px; }
input, textarea, select { width: 100%; font: inherit; padding: 9px 11px; border: 1px solid var(--line); border-radius: 8px; background: var(--field); color: var(--ink); }
textarea { min-height: 96px; resize: vertical; }
input:focus, textarea:focus { outline: 2px solid color-mix(in srgb, var(--accent) 35%, transparent); border-color: var(--accent); }
button, .button { font: inherit; font-weight: 600; border: 1px solid var(--accent); background: var(--accent); color: var(--accent-ink); border-radius: 8px; padding: 8px 14px; cursor: pointer; text-decoration: none; display: inline-block; }
button.secondary, .button.secondary { background: var(--card); color: var(--ink); border-color: var(--line); }
button.danger { background: var(--card); color: var(--bad); border-color: var(--bad-line); }
button.link { background: none; border: none; padding: 0; color: var(--accent); font-size: 13px; }
button:focus-visible, .button:focus-visible, summary:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
button.small { padding: 4px 10px; font-size: 13px; }
.actions { margin-top: 14px; display: flex; gap: 8px; }
ul.items { list-style: none; margin: 0; padding: 0; }
ul.items > li { border-top: 1px solid var(--line); padding: 12px 0; }
ul.items > li:first-child { border-top: none; }
.meta { font-size: 13px; color: var(--muted); display: flex; gap: 8px; flex-wrap: wrap; align-items: center; }
.meta strong { color: var(--ink); }
.text { margin: 6px 0 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.badge { font-size: 12px; font-weight: 600; border-radius: 999px; padding: 1px 8px; }
.badge.scheduled { color: var(--info); background: var(--info-bg); }
.badge.delivering { color: var(--warn); background: var(--warn-bg); }
.badge.delivered { color: var(--ok); background: var(--ok-bg); }
.badge.dead { color: var(--bad); background: var(--bad-bg); }
.badge.expired { color: var(--expired); background: var(--expired-bg); }
.notice { border-radius: 8px; padding: 10px 12px; font-size: 14px; }
.notice.ok { color: var(--ok); background: var(--ok-bg); }
.notice.error { color: var(--bad); background: var(--bad-bg); }
.notice.warn { color: var(--warn); background: var(--warn-bg); }
.empty { color: var(--muted); font-size: 14px; margin: 4px 0; }
.row-actions { display: flex; gap: 6px; margin-top: 8px; flex-wrap: wrap; align-items: center; }
.row-actions form { display: flex; gap: 6px; margin: 0; align-items: center; }
.row-actions input { width: auto; min-width: 0; padding: 4px 8px; font-size: 13px; }
.hint { color: var(--muted); font-size: 12px; margin: 4px 0 0; text-align: right; }
.hint.over { color: var(--bad); font-weight: 600; }
.field-error { color: var(--bad); background: var(--bad-bg); border-radius: 8px; padding: 6px 10px; font-size: 13px; margin: 6px 0 0; }
label.check { display: flex; gap: 8px; align-items: center; color: var(--ink); font-weight: 500; font-size: 14px; }
label.check input { width: auto; margin: 0; }
fieldset.repeat { border: 1px solid var(--line); border-radius: 8px; margin: 12px 0 0; padding: 4px 12px 10px; }
fieldset.repeat legend { font-weight: 600; font-size: 14px; padding: 0 4px; }
.days { display: flex; flex-wrap: wrap; gap: 4px 12px; margin: 6px 0 0; }
ol.preview { margin: 4px 0 0; padding-left: 20px; font-size: 14px; }
ol.preview .local, p.next .local { color: var(--muted); }
ol.preview .note { display: block; color: var(--muted); font-size: 12px; }
input.ignored { opacity: .5; }
.pager { display: flex; gap: 12px; align-items: center; justify-content: space-between; margin: 12px 0 0; }
form.reschedule { display: flex; gap: 6px; margin: 8px 0 0; flex-wrap: wrap; align-items: center; }
form.reschedule input { flex: 1 1 215px; max-width: 260px; width: auto; min-width: 0; padding: 4px 8px; font-size: 13px; }
button { white-space: nowrap; }
.row-actions:has(details.edit) { justify-content: space-between; align-items: flex-start; flex-wrap: nowrap; }
details.edit { flex: 1 1 auto; min-width: 0; padding-top: 4px; }
details.edit summary { cursor: pointer; color: var(--accent); font-size: 13px; font-weight: 600; width: max-content; }
details.edit form { display: grid; gap: 6px; margin-top: 6px; }
details.edit form button { justify-self: start; }
details.edit textarea { min-height: 72px; }
/* long texts: clamped by the page's script (so without it everything shows), "Show more" opens them */
.text.clamped { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 6; overflow: hidden; }
code { font-size: 12px; color: var(--muted); }
@keyframes arrive { from { background: var(--arrive); } to { background: transparent; } }
li.new { animation: arrive 2s ease-out; }
[hidden] { display: none !important; }
a { color: var(--accent); }
.button.small { padding: 4px 10px; font-size: 13px; }
/* the dispatcher's console */
.stats { display: grid; grid-template-columns: repeat(5, minmax(0, 1fr)); gap: 10px; margin-bottom: 14px; }
.stat { display: grid; gap: 2px; padding: 10px 12px; border: 1px solid var(--line); border-radius: 10px; text-decoration: none; color: var(--ink); }
.stat:hover { border-color: var(--accent); }
.stat-n { font-size: 22px; font-weight: 700; font-variant-numeric: tabular-nums; }
.stat-label { font-size: 13px; color: var(--muted); }
.stat.scheduled .stat-n { color: var(--info); } .stat.delivering .stat-n { color: var(--warn); }
.stat.dead .stat-n { color: var(--bad); } .stat.expired .stat-n { color: var(--expired); } .stat.delivered .stat-n { color: var(--ok); }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
figure.chart { margin: 0; min-width: 0; }
figure.chart figcaption { font-size: 13px; font-weight: 600; margin-bottom: 4px; display: flex; flex-wrap: wrap; gap: 4px 10px; align-items: center; }
figure.chart svg { width: 100%; height: auto; display: block; background: var(--bg); border-radius: 8px; }
figure.chart .grid { stroke: var(--line); stroke-width: 1; }
figure.chart .axis { fill: var(--muted); font-size: 15px; font-family: inherit; }
figure.chart .delivered, .legend i.delivered { fill: var(--ok); background: var(--ok); }
figure.chart .retry, .legend i.retry { fill: var(--warn); background: var(--warn); }
figure.chart .dead, .legend i.dead { fill: var(--bad); background: var(--bad); }
figure.chart .expired, .legend i.expired { fill: var(--expired); background: var(--expired); }
figure.chart .lateness, .legend i.lateness { fill: var(--info); background: var(--info); }
figure.chart .worst, .legend i.worst { fill: var(--ink); background: var(--ink); }
.legend { font-weight: 500; color: var(--muted); font-size: 12px; display: inline-flex; gap: 4px; align-items: center; flex-wrap: wrap; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-left: 6px; }
.chart-summary { font-size: 12px; color: var(--muted); margin: 4px 0 0; }
form.filters { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr) minmax(0, 1.4fr) minmax(0, 1.2fr) minmax(0, 1.2fr); gap: 0 12px; align-items: start; }
form.filters > div { min-width: 0; }
form.filters .filter-actions { display: flex; gap: 8px; grid-column: 1 / -1; margin-top: 12px; }
form.filters label { margin-top: 0; }
form.bulk { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; padding: 8px 10px; margin: 0 0 6px; border-radius: 8px; background: var(--bg); font-size: 13px; }
form.bulk label.check { font-size: 13px; margin: 0; }
.bulk-hint { color: var(--muted); }
input.pick { width: auto; margin: 0 2px 0 0; }
a.details { font-size: 13px; font-weight: 600; }
.row-actions a.details { margin-left: auto; }
.crumbs { margin: 0; font-size: 14px; }
dl.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 8px 16px; margin: 14px 0; }
dl.facts div { min-width: 0; }
dl.facts dt { font-size: 12px; color: var(--muted); font-weight: 600; }
dl.facts dd { margin: 2px 0 0; font-size: 14px; overflow-wrap: anywhere; }
.muted { color: var(--muted); }
#edit form { display: grid; gap: 6px; margin: 4px 0 0; }
#edit form + form { margin-top: 16px; }
#edit .inline { display: flex; gap: 8px; flex-wrap: wrap; }
#edit .inline input { flex: 1 1 220px; width: auto; max-width: 280px; font-size: inherit; padding: 9px 11px; }
#edit form button { justify-self: start; }
table.attempts { width: 100%; border-collapse: collapse; font-size: 14px; }
table.attempts th { text-align: left; font-size: 12px; color: var(--muted); font-weight: 600; padding: 6px 8px; border-bottom: 1px solid var(--line); }
table.attempts td { padding: 8px; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
table.attempts + .empty, #attempts-empty + .empty { margin-top: 10px; }
table.attempts .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.attempts code.status { font-size: 13px; color: var(--ink); font-weight: 600; }
.error-text { color: var(--bad); }
@media (max-width: 800px) {
  .stats { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .charts { grid-template-columns: minmax(0, 1fr); }
  form.filters { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  form.filters > div { margin-top: 8px; }
  form.filters .wide { grid-column: 1 / -1; }
}
@media (max-width: 600px) {
  table.attempts thead { display: none; }
  table.attempts, table.attempts tbody { display: block; }
  table.attempts tr { display: grid; grid-template-columns: minmax(0, 1fr); gap: 3px; padding: 10px 0; border-bottom: 1px solid var(--line); }
  table.attempts td { display: flex; gap: 8px; align-items: baseline; border: none; padding: 0; text-align: left; }
  table.attempts td::before { content: attr(data-label); flex: 0 0 64px; color: var(--muted); font-size: 12px; font-weight: 600; }
  dl.facts { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  table.attempts td.num { text-align: left; }
}
`;

/** A clock face in the accent colour, inline: no route, no file, no request that could 404. */
const FAVICON = `data:image/svg+xml,${encodeURIComponent(
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#4f46e5"/>' +
    '<circle cx="16" cy="16" r="10" fill="none" stroke="#fff" stroke-width="3"/><path d="M16 10v6.5l4 2.5" fill="none" stroke="#fff" stroke-width="3" stroke-linecap="round"/></svg>',
)}`;

export interface PageOptions {
  title: string;
  subtitle: string;
  body: SafeHtml;
  /** Inline script psched itself wrote (never user text). */
  script?: string;
}

export function page(options: PageOptions): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${options.title} · psched</title>
<link rel="icon" href="${FAVICON}">
<style>${unsafeRaw(STYLES)}</style>
</head>
<body>
<header class="top"><div class="inner"><h1><span class="brand">psched</span> ${options.title}</h1><span class="sub">${options.subtitle}</span></div></header>
<main>
${options.body}
</main>
${options.script ? html`<script>${unsafeRaw(options.script)}</script>` : ''}
</body>
</html>`.value;
}

/** A time rendered in UTC on the server and rewritten into the viewer's zone by `LOCAL_TIME_SCRIPT`. */
export function timeTag(instant: number): SafeHtml {
  const iso = new Date(instant).toISOString();
  return html`<time datetime="${iso}">${iso.slice(0, 19).replace('T', ' ')} UTC</time>`;
}

/** Rewrites every <time datetime> into the viewer's own time zone. */
export const LOCAL_TIME_SCRIPT = `
function pschedLocalTimes(root) {
  const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  for (const el of (root || document).querySelectorAll('time[datetime]')) {
    const d = new Date(el.getAttribute('datetime'));
    if (!isNaN(d)) { el.textContent = fmt.format(d); el.title = d.toISOString(); }
  }
}
pschedLocalTimes();
`;
