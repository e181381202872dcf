import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext } from 'playwright-core';
import { launchChromium } from './support/chromium.ts';
import { Processes, freePort, waitHealthy } from './support/processes.ts';

/**
 * Issue 3, part 8: a real browser (Debian's Chromium through playwright-core)
 * against `psched dev` — main server and dispatcher as `npm start` runs them.
 * With JavaScript, a message composed for two seconds ahead appears in the
 * feed through Server-Sent Events without a reload; without JavaScript the
 * plain form posts work: submit, redirect, a visible confirmation or error.
 */

/** How long the page may take to show a post due in 2 s: delivery is milliseconds, the rest is a loaded CI box. */
const POST_APPEARS_MS = 15_000;

/** A zone other than the server's (UTC), so a time read in the wrong zone would be hours off. */
const VIEWER_ZONE = 'America/New_York';

describe('the main page in Chromium', () => {
  const procs = new Processes();
  let browser: Browser | undefined;
  let mainUrl: string;
  const contexts: BrowserContext[] = [];

  before(async () => {
    const dir = procs.tempDir();
    const [mainPort, dispatcherPort] = [await freePort(), await freePort()];
    const dev = procs.spawn(['dev', '--main-port', String(mainPort), '--dispatcher-port', String(dispatcherPort), '--dir', dir, '--log-level', 'warn']);
    mainUrl = `http://127.0.0.1:${mainPort}`;
    // launch the browser while the services start: both take a second or two
    [browser] = await Promise.all([
      launchChromium(),
      waitHealthy(mainUrl, dev).then(() => waitHealthy(`http://127.0.0.1:${dispatcherPort}`, dev)),
    ]);
  });

  after(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    await browser?.close();
    await procs.cleanup();
  });

  const newContext = async (options: { javaScriptEnabled: boolean }) => {
    const context = await browser!.newContext({ ...options, timezoneId: VIEWER_ZONE, locale: 'en-US', viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(10_000);
    contexts.push(context);
    return context;
  };

  it('with JavaScript: a message due in 2 s appears in the feed without a reload (SSE)', async () => {
    const page = await (await newContext({ javaScriptEnabled: true })).newPage();
    const pageErrors: Error[] = [];
    page.on('pageerror', (err) => pageErrors.push(err));
    await page.goto(mainUrl);
    // the script put the viewer's zone into the form and connected the live feed
    assert.equal(await page.locator('#compose input[name="timezone"]').inputValue(), VIEWER_ZONE);
    await page.locator('#live', { hasText: 'live' }).waitFor();

    const text = `Hello from Chromium ${randomUUID()}`;
    // the picker shows wall-clock time in the viewer's zone: now + 2 s there, whole seconds
    const due = await page.evaluate(() => {
      const at = new Date(Math.ceil((Date.now() + 2_000) / 1000) * 1000);
      const pad = (n: number) => String(n).padStart(2, '0');
      const value = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
      return { value, instant: at.getTime() };
    });
    await page.fill('#compose-message', text);
    await page.fill('#compose-username', 'Chromium');
    await page.fill('#compose-time', due.value);
    await Promise.all([page.waitForURL(/[?&]notice=/), page.click('#compose button[type="submit"]')]);

    const notice = page.locator('#notice');
    assert.match(await notice.innerText(), new RegExp(`Scheduled for .*${VIEWER_ZONE.replace('/', '\\/')}`));
    const pending = page.locator('#scheduled > li', { hasText: text });
    assert.equal(await pending.count(), 1, 'the message is listed as scheduled');

    // from here on no navigation may happen: the post must arrive through the open page
    await page.evaluate(() => Object.assign(window, { pschedNotReloaded: true }));
    const post = page.locator('#feed li.post', { hasText: text });
    await post.waitFor({ timeout: POST_APPEARS_MS });
    const appearedAt = Date.now();
    assert.equal(await page.evaluate(() => (window as { pschedNotReloaded?: boolean }).pschedNotReloaded), true, 'the page was not reloaded');
    assert.ok(appearedAt >= due.instant, 'posted at its time, not before');
    assert.equal(await post.locator('.username').innerText(), 'Chromium');
    assert.equal(await pending.count(), 0, 'the delivered message left the scheduled list');
    assert.equal(await page.locator('#feed li.post', { hasText: text }).count(), 1, 'shown once');
    assert.deepEqual(pageErrors, []);
  });

  it('without JavaScript: submit, redirect, a visible confirmation; cancel; an error keeps what was typed', async () => {
    const page = await (await newContext({ javaScriptEnabled: false })).newPage();
    await page.goto(mainUrl);
    assert.equal(await page.locator('#live').isVisible(), false, 'no live feed without JavaScript');

    // the time picker's default (five minutes ahead, in the server's zone) is kept
    const text = `No script needed ${randomUUID()}`;
    await page.fill('#compose-message', text);
    await page.fill('#compose-username', 'Plain');
    await Promise.all([page.waitForURL(/[?&]notice=/), page.click('#compose button[type="submit"]')]);
    assert.equal(await page.locator('#notice').isVisible(), true);
    assert.match(await page.locator('#notice').innerText(), /^Scheduled for \d{4}-\d\d-\d\d \d\d:\d\d \(UTC\)\.$/);
    const item = page.locator('#scheduled > li', { hasText: text });
    assert.equal(await item.count(), 1, 'listed as scheduled after the redirect');

    await Promise.all([page.waitForURL(/[?&]notice=Cancelled/), item.locator('form.cancel button').click()]);
    assert.equal(await page.locator('#notice').innerText(), 'Cancelled.');
    assert.equal(await page.locator('#scheduled > li', { hasText: text }).count(), 0);

    // refused input: the page says why and the form still holds what was typed
    const tooLong = 'x'.repeat(5_001);
    await page.fill('#compose-message', tooLong);
    await page.fill('#compose-username', 'Plain');
    await page.click('#compose button[type="submit"]');
    await page.locator('#notice.error').waitFor();
    assert.match(await page.locator('#notice').innerText(), /^Not scheduled: .*message/);
    assert.equal(await page.locator('#compose-message').inputValue(), tooLong);
    assert.equal(await page.locator('#compose-username').inputValue(), 'Plain');
  });
});
