import { html, type SafeHtml } from '../html.ts';
import type { MinuteStats } from './metrics.ts';

/**
 * The console's two small charts, inline SVG drawn on the server from the
 * dispatcher's own per-minute numbers (./metrics.ts: the last hour, this
 * process only): deliveries per minute by outcome, and the lateness of first
 * attempts per minute (expired: set aside unsent, past its deliver-by, is
 * counted with the deliveries: it is what became of a due message). No library, no script: colours come from the page's
 * stylesheet (classes), so they follow dark mode; each bar has a <title>
 * (hover) and each chart a one-line summary in words, which is also what a
 * screen reader gets.
 */

const WIDTH = 600;
const HEIGHT = 120;
/** Left margin for the y labels, bottom margin for the x labels. */
const LEFT = 56;
const BOTTOM = 20;
/** Room above the top grid line for its label. */
const TOP = 12;
const PLOT_W = WIDTH - LEFT - 4;
const PLOT_H = HEIGHT - BOTTOM - TOP;

const number = (n: number) => n.toLocaleString('en-US');

function ago(minutes: MinuteStats[], i: number): string {
  const back = minutes.length - 1 - i;
  return back === 0 ? 'this minute' : `${back} min ago`;
}

/** Milliseconds as people read them: "0.4 ms", "12 ms", "3.2 s", "4 min". */
export function formatMs(ms: number): string {
  if (ms < 10) return `${Math.round(ms * 10) / 10} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${Math.round(ms / 100) / 10} s`;
  return `${Math.round(ms / 6000) / 10} min`;
}

function xAxis(): SafeHtml {
  const y = HEIGHT - 3;
  return html`<text x="${LEFT}" y="${y}" class="axis">60 min ago</text><text x="${LEFT + PLOT_W / 2}" y="${y}" class="axis" text-anchor="middle">30 min</text><text x="${WIDTH - 4}" y="${y}" class="axis" text-anchor="end">now</text>`;
}

function gridLine(y: number, label: string): SafeHtml {
  return html`<line x1="${LEFT}" x2="${WIDTH - 4}" y1="${y}" y2="${y}" class="grid"/><text x="${LEFT - 6}" y="${y + 5}" class="axis" text-anchor="end">${label}</text>`;
}

export function deliveriesChart(minutes: MinuteStats[]): SafeHtml {
  const totals = minutes.map((m) => m.delivered + m.retry + m.dead + m.expired);
  const top = Math.max(1, ...totals);
  const slot = PLOT_W / minutes.length;
  const scale = (n: number) => (n / top) * PLOT_H;
  const bars = minutes.map((m, i) => {
    if (totals[i] === 0) return html``;
    const x = LEFT + i * slot + 1;
    let y = TOP + PLOT_H;
    const parts = (['delivered', 'retry', 'dead', 'expired'] as const).map((kind) => {
      const h = scale(m[kind]);
      y -= h;
      return m[kind] > 0 ? html`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(slot - 2).toFixed(1)}" height="${Math.max(h, 1).toFixed(1)}" class="${kind}"/>` : html``;
    });
    return html`<g><title>${ago(minutes, i)}: ${number(m.delivered)} delivered, ${number(m.retry)} to retry, ${number(m.dead)} dead, ${number(m.expired)} expired</title>${parts}</g>`;
  });
  const sum = (kind: 'delivered' | 'retry' | 'dead' | 'expired') => minutes.reduce((total, m) => total + m[kind], 0);
  const summary = `Last hour: ${number(sum('delivered'))} delivered, ${number(sum('retry'))} failed and retried, ${number(sum('dead'))} dead, ${number(sum('expired'))} expired unsent; busiest minute ${number(Math.max(0, ...totals))}.`;
  return html`<figure class="chart" id="chart-deliveries">
  <figcaption>Deliveries per minute <span class="legend"><i class="delivered"></i>delivered <i class="retry"></i>retry <i class="dead"></i>dead <i class="expired"></i>expired</span></figcaption>
  <svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="${summary}">
    ${gridLine(TOP, number(top))}${gridLine(TOP + PLOT_H / 2, number(Math.round(top / 2)))}${gridLine(TOP + PLOT_H, '0')}
    ${bars}${xAxis()}
  </svg>
  <p class="chart-summary">${summary}</p>
</figure>`;
}

/**
 * Lateness on a log scale: a minute after a restart (seconds late) and the
 * usual millisecond must both stay readable. Bars are each minute's mean,
 * the tick above a bar its worst.
 */
export function latenessChart(minutes: MinuteStats[]): SafeHtml {
  const worst = Math.max(0, ...minutes.map((m) => m.latenessMaxMs));
  // decades from 0.1 ms up to the one above the worst (at least 10 ms)
  const topDecade = Math.max(1, Math.ceil(Math.log10(Math.max(worst, 1))));
  const bottomDecade = -1;
  const scale = (ms: number) => {
    const clamped = Math.max(ms, 10 ** bottomDecade);
    return ((Math.log10(clamped) - bottomDecade) / (topDecade - bottomDecade)) * PLOT_H;
  };
  const slot = PLOT_W / minutes.length;
  const bars = minutes.map((m, i) => {
    if (m.latenessCount === 0) return html``;
    const mean = m.latenessSumMs / m.latenessCount;
    const x = LEFT + i * slot + 1;
    const h = Math.max(scale(mean), 1);
    const peak = TOP + PLOT_H - scale(m.latenessMaxMs);
    return html`<g><title>${ago(minutes, i)}: ${number(m.latenessCount)} first attempts, mean ${formatMs(mean)} late, worst ${formatMs(m.latenessMaxMs)}</title><rect x="${x.toFixed(1)}" y="${(TOP + PLOT_H - h).toFixed(1)}" width="${(slot - 2).toFixed(1)}" height="${h.toFixed(1)}" class="lateness"/><rect x="${x.toFixed(1)}" y="${peak.toFixed(1)}" width="${(slot - 2).toFixed(1)}" height="2" class="worst"/></g>`;
  });
  const decades: SafeHtml[] = [];
  for (let d = bottomDecade + 1; d <= topDecade; d += topDecade - bottomDecade > 4 ? 2 : 1) {
    decades.push(gridLine(TOP + PLOT_H - scale(10 ** d), formatMs(10 ** d).replace(' ', '')));
  }
  const count = minutes.reduce((total, m) => total + m.latenessCount, 0);
  const meanAll = count === 0 ? 0 : minutes.reduce((total, m) => total + m.latenessSumMs, 0) / count;
  const summary = count === 0
    ? 'Last hour: no first attempts, so no lateness to show.'
    : `Last hour: ${number(count)} first attempts, on average ${formatMs(meanAll)} after their due time; the latest ${formatMs(worst)}.`;
  return html`<figure class="chart" id="chart-lateness">
  <figcaption>Lateness of first attempts <span class="legend"><i class="lateness"></i>mean <i class="worst"></i>worst (log scale)</span></figcaption>
  <svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="${summary}">
    ${decades}${gridLine(TOP + PLOT_H, '')}
    ${bars}${xAxis()}
  </svg>
  <p class="chart-summary">${summary}</p>
</figure>`;
}
