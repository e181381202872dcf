import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchChromium } from './support/chromium.ts';
import { Processes, requestJson, waitFor, type ServiceProcess } from './support/processes.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';

/**
 * Issue 13: the dispatcher's console in a real browser (Debian's Chromium
 * through playwright-core) against a `psched dispatcher` process with an API
 * token, delivering to a local receiver that answers by the message's text:
 * "[refuse]" gets 400 (dead at once), "[flaky]" 503 for its first two
 * attempts, "[down]" 503 until the test lets it through, anything else 200.
 * Paging and filters (with and without JavaScript), live updates, a
 * message's page with its attempt history and edits, bulk retry of dead
 * letters and of expired messages (past their deliver-by).
 */

const TOKEN = 'console-token';
/** A zone other than the server's (UTC), so a time read in the wrong zone would be hours off. */
const VIEWER_ZONE = 'America/New_York';
/** The script refreshes every 5 s; a loaded CI box may take a while longer to deliver and render. */
const LIVE_MS = 20_000;

/** Clicks and waits for the redirect-after-post to land. */
async function submit(page: Page, click: () => Promise<unknown>): Promise<void> {
  await Promise.all([page.waitForEvent('framenavigated'), click()]);
  await page.waitForLoadState('domcontentloaded');
}

describe('the dispatcher console in Chromium', () => {
  const procs = new Processes();
  let browser: Browser | undefined;
  let receiver: Receiver;
  let dispatcher: ServiceProcess;
  const contexts: BrowserContext[] = [];
  const flakyCalls = new Map<string, number>();
  let downUp = false;

  const api = (method: string, path: string, body?: unknown) => requestJson(method, `${dispatcher.url}${path}`, { body, token: TOKEN });
  const schedule = async (items: Record<string, unknown>[]) => {
    const answer = await api('POST', '/v1/messages/batch', items);
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
    return answer.body as { id: string }[];
  };

  before(async () => {
    receiver = await startReceiver();
    receiver.fallback = (request) => {
      const message = (JSON.parse(request.body) as { id: string; message: string });
      if (message.message.includes('[refuse]')) return { status: 400, body: { error: 'refused' } };
      if (message.message.includes('[down]') && !downUp) return { status: 503 };
      if (message.message.includes('[flaky]')) {
        const calls = (flakyCalls.get(message.id) ?? 0) + 1;
        flakyCalls.set(message.id, calls);
        if (calls <= 2) return { status: 503 };
      }
      return { status: 201 };
    };
    [browser, dispatcher] = await Promise.all([
      launchChromium(),
      procs.startService('dispatcher', {
        db: join(procs.tempDir(), 'dispatcher.db'),
        'main-url': receiver.url,
        'api-token': TOKEN,
        'retry-base': '300ms',
        'log-level': 'warn',
      }),
    ]);
  });

  after(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    await browser?.close();
    await procs.cleanup();
    await receiver.close();
  });

  const newPage = async (options: { javaScriptEnabled: boolean; viewport?: { width: number; height: number } }) => {
    const context = await browser!.newContext({
      viewport: { width: 1280, height: 800 }, ...options, timezoneId: VIEWER_ZONE, locale: 'en-US',
      httpCredentials: { username: 'operator', password: TOKEN },
    });
    context.setDefaultTimeout(10_000);
    contexts.push(context);
    const page = await context.newPage();
    const errors: Error[] = [];
    page.on('pageerror', (err) => errors.push(err));
    return Object.assign(page, { errors });
  };

  it('without JavaScript: pages through the scheduled list and filters by user and text', async () => {
    const tag = randomUUID().slice(0, 8);
    await schedule(Array.from({ length: 205 }, (_, i) => ({ username: `pager-${tag}`, message: `page me ${i}`, scheduledAt: new Date(Date.UTC(2098, 0, 1) + i * 60_000).toISOString() })));
    await schedule([
      { username: `ann-${tag}`, message: 'Coffee at ten', scheduledAt: '2098-06-01T14:00:00Z' },
      { username: `ann-${tag}`, message: 'lunch at one', scheduledAt: '2098-06-01T17:00:00Z' },
      { username: `ann-${tag}`, message: 'more COFFEE', scheduledAt: '2098-06-02T14:00:00Z' },
    ]);
    const page = await newPage({ javaScriptEnabled: false });
    await page.goto(`${dispatcher.url}/?user=pager-${tag}`);
    const items = page.locator('#scheduled > li');
    assert.equal(await items.count(), 200);
    assert.equal(await items.first().locator('.text').innerText(), 'page me 0');
    await submit(page, () => page.locator('#scheduled-card a.next-page').click());
    assert.match(page.url(), /scheduledPage=/);
    assert.equal(await items.count(), 5);
    assert.equal(await items.first().locator('.text').innerText(), 'page me 200');
    assert.equal(await page.locator('#scheduled-card a.next-page').count(), 0, 'the last page');
    await submit(page, () => page.locator('#scheduled-card a.first-page').click());
    assert.equal(await items.first().locator('.text').innerText(), 'page me 0');

    await page.goto(dispatcher.url);
    await page.fill('#filter-user', `ann-${tag}`);
    await page.fill('#filter-q', 'coffee');
    await submit(page, () => page.click('#filters button[type="submit"]'));
    assert.deepEqual(await items.locator('.text').allInnerTexts(), ['Coffee at ten', 'more COFFEE']);
    assert.equal(await page.locator('#filter-user').inputValue(), `ann-${tag}`, 'the form keeps the filters');
    await page.selectOption('#filter-show', 'dead');
    await submit(page, () => page.click('#filters button[type="submit"]'));
    assert.equal(await page.locator('#scheduled-card').count(), 0, 'only the dead letters');
    assert.match(await page.locator('#dead-card').innerText(), /Nothing matches the filters\./);
  });

  it('with JavaScript: the due range is read in the viewer\'s zone', async () => {
    const user = `zone-${randomUUID().slice(0, 8)}`;
    // 09:00 and 11:00 in New York (UTC-5 in January)
    await schedule([
      { username: user, message: 'at nine', scheduledAt: '2098-01-15T14:00:00Z' },
      { username: user, message: 'at eleven', scheduledAt: '2098-01-15T16:00:00Z' },
    ]);
    const page = await newPage({ javaScriptEnabled: true });
    await page.goto(dispatcher.url);
    assert.equal(await page.locator('#filters input[name="timeZone"]').inputValue(), VIEWER_ZONE);
    await page.fill('#filter-user', user);
    await page.fill('#filter-from', '2098-01-15T10:00');
    await page.fill('#filter-to', '2098-01-15T12:00');
    await submit(page, () => page.click('#filters button[type="submit"]'));
    assert.deepEqual(await page.locator('#scheduled > li .text').allInnerTexts(), ['at eleven']);
    assert.deepEqual(page.errors, []);
  });

  it('with JavaScript: new, delivered and dead messages show up without a reload', async () => {
    const page = await newPage({ javaScriptEnabled: true });
    await page.goto(dispatcher.url);
    await page.locator('#live', { hasText: 'live' }).waitFor();
    await page.evaluate(() => Object.assign(window, { notReloaded: true }));
    const deliveredBefore = Number((await page.locator('.stat.delivered .stat-n').innerText()).replaceAll(',', ''));
    const text = `Live ${randomUUID()}`;
    const later = `Later ${randomUUID()}`;
    await schedule([
      { username: 'live', message: text, delaySeconds: 0 },
      { username: 'live', message: `${text} [refuse]`, delaySeconds: 0 },
      // due before every other test's messages: the first page of the scheduled list
      { username: 'live', message: later, scheduledAt: '2090-03-01T00:00:00Z' },
    ]);
    await page.locator('#delivered > li', { hasText: text }).waitFor({ timeout: LIVE_MS });
    await page.locator('#dead > li', { hasText: `${text} [refuse]` }).waitFor({ timeout: LIVE_MS });
    await page.locator('#scheduled > li', { hasText: later }).waitFor({ timeout: LIVE_MS });
    assert.equal(await page.evaluate(() => (window as { notReloaded?: boolean }).notReloaded), true, 'the page was not reloaded');
    assert.ok(Number((await page.locator('.stat.delivered .stat-n').innerText()).replaceAll(',', '')) > deliveredBefore, 'the counts follow');
    assert.match(await page.locator('#chart-deliveries .chart-summary').innerText(), /Last hour: [1-9][\d,]* delivered/);
    assert.deepEqual(page.errors, []);
  });

  it('a message\'s page: its attempt history grows live (time, outcome, status, latency); edit time and text', async () => {
    const [flaky] = await schedule([{ username: 'hist', message: `Flaky ${randomUUID()} [flaky]`, delaySeconds: 0 }]);
    const page = await newPage({ javaScriptEnabled: true });
    await page.goto(`${dispatcher.url}/ui/messages/${flaky!.id}`);
    await page.evaluate(() => Object.assign(window, { notReloaded: true }));
    const rows = page.locator('#attempts tbody tr');
    await waitFor(async () => (await rows.count()) === 3, { what: 'three attempts on the page', timeoutMs: LIVE_MS, intervalMs: 200 });
    assert.equal(await page.evaluate(() => (window as { notReloaded?: boolean }).notReloaded), true, 'updated without a reload');
    const cells = await Promise.all([0, 1, 2].map((i) => rows.nth(i).locator('td').allInnerTexts()));
    assert.deepEqual(cells.map((row) => [row[0], row[2]]), [['1', 'failed, retried'], ['2', 'failed, retried'], ['3', 'delivered']]);
    assert.match(cells[0]![3]!, /^HTTP 503\b/);
    assert.equal(cells[2]![3], 'HTTP 201');
    for (const row of cells) {
      assert.match(row[1]!, /^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d:\d\d [AP]M$/, 'the start in the viewer\'s time');
      assert.match(row[4]!, /^\d+(\.\d)? (ms|s)$/);
    }
    await page.locator('#message-card .badge.delivered').waitFor({ timeout: LIVE_MS });

    // edit a scheduled one: the picker shows its time in the viewer's zone, to the second
    const [editable] = await schedule([{ username: 'edit', message: 'before', scheduledAt: '2098-07-04T16:00:30Z' }]);
    await page.goto(`${dispatcher.url}/ui/messages/${editable!.id}`);
    assert.equal(await page.locator('#edit-time').inputValue(), '2098-07-04T12:00:30');
    await page.fill('#edit-time', '2098-07-04T13:15');
    await submit(page, () => page.click('form.reschedule button'));
    assert.match(await page.locator('.notice').innerText(), /^Time changed: it will be delivered at Jul 4, 2098, 1:15:00 PM\.$/);
    assert.equal((await api('GET', `/v1/messages/${editable!.id}`)).body.scheduledAt, '2098-07-04T17:15:00.000Z');
    await page.fill('#edit-text', 'after');
    assert.equal(await page.locator('#edit .counter').innerText(), '5 / 5,000');
    await submit(page, () => page.click('form.edit-text button'));
    assert.equal(await page.locator('.notice').innerText(), 'Text changed: it will be delivered with the new text.');
    assert.equal(await page.locator('#message-card .text').innerText(), 'after');
    assert.doesNotMatch(page.url(), /notice=/, 'the notice is taken out of the address: a reload does not repeat it');
    assert.deepEqual(page.errors, []);
  });

  it('bulk retry: tick dead letters (or all on the page), confirm, and they are delivered', async () => {
    const user = `bulk-${randomUUID().slice(0, 8)}`;
    const texts = ['one', 'two', 'three'].map((n) => `Bulk ${n} [refuse]`);
    const made = await schedule(texts.map((message) => ({ username: user, message, delaySeconds: 0 })));
    await waitFor(async () => {
      const dead = await Promise.all(made.map(async (m) => (await api('GET', `/v1/messages/${m.id}`)).body.status));
      return dead.every((status) => status === 'dead');
    }, { what: 'three dead letters', timeoutMs: LIVE_MS });
    // the receiver takes them now
    const refusing = receiver.fallback;
    receiver.fallback = (request) => (JSON.parse(request.body).message.startsWith('Bulk ') ? { status: 201 } : (refusing as (r: typeof request) => { status: number })(request));
    try {
      const page = await newPage({ javaScriptEnabled: true });
      await page.goto(`${dispatcher.url}/?show=dead&user=${user}`);
      const dead = page.locator('#dead > li');
      assert.equal(await dead.count(), 3);
      await dead.filter({ hasText: 'Bulk one' }).locator('input.pick').check();
      await dead.filter({ hasText: 'Bulk three' }).locator('input.pick').check();
      const questions: string[] = [];
      page.once('dialog', (dialog) => { questions.push(dialog.message()); void dialog.accept(); });
      await submit(page, () => page.click('#bulk-retry'));
      assert.deepEqual(questions, ['Retry 2 dead letters?']);
      assert.match(await page.locator('.notice').innerText(), /^2 dead letters scheduled again: being delivered now\.$/);
      await waitFor(async () => (await dead.count()) === 1, { what: 'the retried letters leaving the dead list', timeoutMs: LIVE_MS, intervalMs: 200 });
      assert.equal(await dead.locator('.text').innerText(), 'Bulk two [refuse]');
      for (const m of [made[0]!, made[2]!]) {
        await waitFor(async () => (await api('GET', `/v1/messages/${m.id}`)).body.status === 'delivered', { what: 'a retried letter delivered', timeoutMs: LIVE_MS });
      }
      // "All on this page", without a dialog refused
      await page.locator('#select-all-dead').check();
      assert.equal(await dead.locator('input.pick:checked').count(), 1);
      page.once('dialog', (dialog) => void dialog.dismiss());
      await page.click('#bulk-discard');
      assert.equal(await dead.count(), 1, 'dismissed: nothing discarded');
      assert.deepEqual(page.errors, []);

      // and without JavaScript the same form works
      const plain = await newPage({ javaScriptEnabled: false });
      await plain.goto(`${dispatcher.url}/?show=dead&user=${user}`);
      await plain.locator('#dead input.pick').check();
      await submit(plain, () => plain.click('#bulk-retry'));
      assert.match(await plain.locator('.notice').innerText(), /^1 dead letter scheduled again/);
      await waitFor(async () => (await api('GET', `/v1/messages/${made[1]!.id}`)).body.status === 'delivered', { what: 'the last one delivered', timeoutMs: LIVE_MS });
    } finally {
      receiver.fallback = refusing;
    }
  });

  it('expired: messages still unsent at their deliver-by show up in their own card, live; retried from it in bulk, they are delivered', async () => {
    const user = `expire-${randomUUID().slice(0, 8)}`;
    const page = await newPage({ javaScriptEnabled: true });
    await page.goto(`${dispatcher.url}/?show=expired&user=${user}`);
    await page.locator('#live', { hasText: 'live' }).waitFor();
    assert.match(await page.locator('#expired-card').innerText(), /Nothing matches the filters\./);
    // its main server answers 503 meanwhile: retried (300 ms, 600 ms …) until the deliver-by, then set expired unsent
    const deliverBy = new Date(Date.now() + 1500).toISOString();
    const made = await schedule(['one', 'two'].map((n) => ({ username: user, message: `Expire ${n} [down]`, delaySeconds: 0, deliverBy })));
    const expired = page.locator('#expired > li');
    await waitFor(async () => (await expired.count()) === 2, { what: 'two expired messages on the page, without a reload', timeoutMs: LIVE_MS, intervalMs: 200 });
    for (const m of made) assert.equal((await api('GET', `/v1/messages/${m.id}`)).body.status, 'expired');
    assert.match(await expired.first().innerText(), /not sent: past its deliver-by/);
    assert.equal(await expired.first().locator('.badge.expired').innerText(), 'expired');
    assert.ok(Number((await page.locator('.stat.expired .stat-n').innerText()).replaceAll(',', '')) >= 2, 'counted in the overview');

    downUp = true;
    await page.locator('#select-all-expired').check();
    assert.equal(await expired.locator('input.pick:checked').count(), 2);
    const questions: string[] = [];
    page.once('dialog', (dialog) => { questions.push(dialog.message()); void dialog.accept(); });
    await submit(page, () => page.click('#bulk-retry-expired'));
    assert.deepEqual(questions, ['Retry 2 expired messages?']);
    assert.match(await page.locator('.notice').innerText(), /^2 expired messages scheduled again: being delivered now\.$/);
    for (const m of made) {
      await waitFor(async () => (await api('GET', `/v1/messages/${m.id}`)).body.status === 'delivered', { what: 'a replayed expired message delivered', timeoutMs: LIVE_MS });
    }
    await waitFor(async () => (await expired.count()) === 0, { what: 'the replayed messages leaving the expired list', timeoutMs: LIVE_MS, intervalMs: 200 });
    assert.deepEqual(page.errors, []);
  });

  it('on a 390 px phone nothing is wider than the screen, light or dark', async () => {
    const page = await newPage({ javaScriptEnabled: true, viewport: { width: 390, height: 844 } });
    for (const path of ['/', `/ui/messages/${(await schedule([{ username: 'phone', message: 'small screen', scheduledAt: '2098-01-01T00:00:00Z' }]))[0]!.id}`]) {
      for (const colorScheme of ['light', 'dark'] as const) {
        await page.emulateMedia({ colorScheme });
        await page.goto(`${dispatcher.url}${path}`);
        assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), 390, `${path} ${colorScheme}: no sideways scrolling`);
      }
    }
  });
});
