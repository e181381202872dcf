import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchChromium } from './support/chromium.ts';
import { Processes, freePort, waitHealthy } from './support/processes.ts';

/**
 * Issue 3, part 8: a real browser (Debian's Chromium through playwright-core)
 * against `psched dev` — main server and dispatcher as `npm start` runs them.
 * With JavaScript, a message composed for two seconds ahead appears in the
 * feed through Server-Sent Events without a reload; without JavaScript the
 * plain form posts work: submit, redirect, a visible confirmation or error.
 * Issue 13: a past time refused, the character counter, editing, confirm
 * before cancel, no stale notice on reload, and the phone layout.
 */

/** How long the page may take to show a post due in 2 s: delivery is milliseconds, the rest is a loaded CI box. */
const POST_APPEARS_MS = 15_000;

/** A zone other than the server's (UTC), so a time read in the wrong zone would be hours off. */
const VIEWER_ZONE = 'America/New_York';

/** Clicks and waits for the redirect that follows: every form post lands on a new `?flash=`. */
async function submit(page: Page, click: () => Promise<void>): Promise<void> {
  const before = new URL(page.url()).searchParams.get('flash');
  await Promise.all([page.waitForURL((url) => url.searchParams.has('flash') && url.searchParams.get('flash') !== before), click()]);
}

/** A datetime-local value for `instant` in the page's (the viewer's) zone, to the second. */
function pickerValueIn(page: Page, instant: number): Promise<string> {
  return page.evaluate((at) => {
    const d = new Date(at);
    const pad = (n: number) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }, instant);
}

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

  const newContext = async (options: { javaScriptEnabled: boolean; viewport?: { width: number; height: number } }) => {
    const context = await browser!.newContext({ viewport: { width: 1280, height: 800 }, ...options, timezoneId: VIEWER_ZONE, locale: 'en-US' });
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
    await submit(page, () => page.click('#compose button[type="submit"]'));

    const notice = page.locator('#notice');
    assert.match(await notice.innerText(), new RegExp(`Scheduled for .*${VIEWER_ZONE.replace('/', '\\/')}`));
    const pending = page.locator('#scheduled > li', { hasText: text });
    assert.equal(await pending.count(), 1, 'the message is listed as scheduled');
    assert.equal(await page.locator('#scheduled-count').innerText(), '1');
    assert.equal(await page.locator('#scheduled-empty').isVisible(), false);

    // from here on no navigation may happen: the post must arrive through the open page
    await page.evaluate(() => Object.assign(window, { pschedNotReloaded: true }));
    const post = page.locator('#feed li.post', { hasText: text });
    await post.waitFor({ timeout: POST_APPEARS_MS });
    const appearedAt = Date.now();
    assert.equal(await page.evaluate(() => (window as { pschedNotReloaded?: boolean }).pschedNotReloaded), true, 'the page was not reloaded');
    assert.ok(appearedAt >= due.instant, 'posted at its time, not before');
    assert.equal(await post.locator('.username').innerText(), 'Chromium');
    assert.equal(await pending.count(), 0, 'the delivered message left the scheduled list');
    assert.equal(await page.locator('#scheduled-count').innerText(), '0');
    assert.equal(await page.locator('#scheduled-empty').innerText(), 'Nothing scheduled.', 'an emptied list says so');
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
    await submit(page, () => page.click('#compose button[type="submit"]'));
    assert.equal(await page.locator('#notice').isVisible(), true);
    assert.match(await page.locator('#notice').innerText(), /^Scheduled for \d{4}-\d\d-\d\d \d\d:\d\d \(UTC\)\.$/);
    const item = page.locator('#scheduled > li', { hasText: text });
    assert.equal(await item.count(), 1, 'listed as scheduled after the redirect');

    await submit(page, () => item.locator('form.cancel button').click());
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
    // the error came through a redirect: a reload neither posts again nor shows the error again, and keeps the text
    await page.reload();
    assert.equal(await page.locator('#notice').count(), 0);
    assert.equal(await page.locator('#compose-message').inputValue(), tooLong);

    // a time already past: refused by the server too, unless "Post now"
    await page.fill('#compose-message', `Past, no script ${randomUUID()}`);
    await page.fill('#compose-time', '2020-01-01T09:47');
    await submit(page, () => page.click('#compose button[type="submit"]'));
    assert.match(await page.locator('#notice.error').innerText(), /^Not scheduled: 2020-01-01 09:47 \(UTC\) has already passed\. Pick a later time, or tick "Post now"/);
    await page.check('#compose-now');
    await submit(page, () => page.click('#compose button[type="submit"]'));
    assert.equal(await page.locator('#notice.ok').innerText(), 'Sent: it is posted now.');
  });

  it('with JavaScript: a past time is refused before it is sent, "Post now" sends it at once', async () => {
    const page = await (await newContext({ javaScriptEnabled: true })).newPage();
    await page.goto(mainUrl);
    const text = `Wrong AM/PM ${randomUUID()}`;
    await page.fill('#compose-message', text);
    await page.fill('#compose-username', 'Chromium');
    await page.fill('#compose-time', await pickerValueIn(page, Date.now() - 12 * 3_600_000));
    const url = page.url();
    await page.click('#compose button[type="submit"]');
    const error = page.locator('#compose-time-error');
    await error.waitFor();
    assert.match(await error.innerText(), /^That time has already passed \(it is now .+\)\. Pick a later time, or tick "Post now" to post it at once\.$/);
    assert.equal(await page.locator('#compose-time').getAttribute('aria-invalid'), 'true');
    assert.equal(page.url(), url, 'not sent');

    await page.check('#compose-now');
    assert.equal(await error.isVisible(), false);
    await submit(page, () => page.click('#compose button[type="submit"]'));
    assert.equal(await page.locator('#notice').innerText(), 'Sent: it is posted now.');
    await page.locator('#feed li.post', { hasText: text }).waitFor({ timeout: POST_APPEARS_MS });
    // a reload does not show the notice again
    await page.reload();
    assert.equal(await page.locator('#notice').count(), 0);
  });

  it('with JavaScript: a live character counter for the 5,000-character limit, counting as the server does', async () => {
    const page = await (await newContext({ javaScriptEnabled: true })).newPage();
    await page.goto(mainUrl);
    const counter = page.locator('#compose-counter');
    assert.equal(await counter.innerText(), '0 / 5,000');
    await page.fill('#compose-message', 'x'.repeat(4_998));
    assert.equal(await counter.innerText(), '4,998 / 5,000');
    // 🎂 is one character (code point) to the server, two UTF-16 units to a naive .length
    await page.locator('#compose-message').press('End');
    await page.keyboard.insertText('🎂');
    assert.equal(await counter.innerText(), '4,999 / 5,000');
    await page.keyboard.type('ab');
    assert.equal(await counter.innerText(), '5,001 / 5,000: 1 too many');
    assert.match((await counter.getAttribute('class')) ?? '', /\bover\b/);
    await page.fill('#compose-username', 'Counter');
    const url = page.url();
    await page.click('#compose button[type="submit"]');
    assert.equal(page.url(), url, 'not sent while too long');
    await page.keyboard.press('Backspace');
    assert.equal(await counter.innerText(), '5,000 / 5,000');
  });

  it('with JavaScript: edits the time to the second and the text, names each control after its message, confirms a cancel', async () => {
    const context = await newContext({ javaScriptEnabled: true });
    const page = await context.newPage();
    const text = `Edit me ${randomUUID()}`;
    const due = Math.floor(Date.now() / 60_000) * 60_000 + 3 * 3_600_000 + 17_000;
    const created = await page.request.post(`${mainUrl}/v1/scheduled`, { data: { username: 'Edith', message: text, scheduledAt: new Date(due).toISOString() } });
    assert.equal(created.status(), 201);
    await page.goto(mainUrl);
    const item = page.locator('#scheduled > li', { hasText: text });
    const time = item.locator('form.reschedule input[name="time"]');
    assert.equal(await time.inputValue(), await pickerValueIn(page, due), 'the viewer\'s time, to the second');
    assert.equal(await time.getAttribute('step'), '1');

    // one "Cancel" per message, each named after its message, in the viewer's time
    const shownTime = await item.locator('.meta time').innerText();
    const cancel = page.getByRole('button', { name: `Cancel the message from Edith due ${shownTime}: ${text.slice(0, 40)}…` });
    assert.equal(await cancel.count(), 1);

    const later = due + 61_000;
    await time.fill(await pickerValueIn(page, later));
    await submit(page, () => item.locator('form.reschedule button').click());
    assert.match(await page.locator('#notice').innerText(), /^Moved to \d{4}-\d\d-\d\d \d\d:\d\d:18 \(America\/New_York\)\.$/);
    assert.equal(await item.locator('.meta time').getAttribute('datetime'), new Date(later).toISOString());

    const edited = `${text}, edited`;
    await item.locator('details.edit summary').click();
    await item.locator('form.edit-text textarea').fill(edited);
    assert.match(await item.locator('form.edit-text .counter').innerText(), /^\d\d \/ 5,000$/);
    await submit(page, () => item.locator('form.edit-text button').click());
    assert.match(await page.locator('#notice').innerText(), /^Text changed: /);
    assert.equal(await page.locator('#scheduled > li', { hasText: edited }).locator('.text').innerText(), edited);

    // cancel asks first, naming the message; "no" keeps it
    const dialogs: string[] = [];
    page.once('dialog', (dialog) => { dialogs.push(dialog.message()); void dialog.dismiss(); });
    await item.locator('form.cancel button').click();
    assert.match(dialogs[0] ?? '', /^Cancel the message from Edith due .+: Edit me .+\?\n\nIt will not be posted\.$/);
    assert.equal(await item.count(), 1, 'kept');
    page.once('dialog', (dialog) => void dialog.accept());
    await submit(page, () => item.locator('form.cancel button').click());
    assert.equal(await page.locator('#notice').innerText(), 'Cancelled.');
    assert.equal(await page.locator('#scheduled > li', { hasText: text }).count(), 0);
  });

  it('with JavaScript: a long post is collapsed behind "Show more"; the page follows dark mode', async () => {
    const context = await newContext({ javaScriptEnabled: true });
    const page = await context.newPage();
    const lines = Array.from({ length: 12 }, (_, i) => `line ${i + 1} of a long post`);
    const text = `${randomUUID()}\n${lines.join('\n')}`;
    const created = await page.request.post(`${mainUrl}/v1/scheduled`, { data: { username: 'Long', message: text, delaySeconds: 0 } });
    assert.equal(created.status(), 201);
    await page.goto(mainUrl);
    const post = page.locator('#feed li.post', { hasText: 'line 1 of a long post' }).first();
    await post.waitFor({ timeout: POST_APPEARS_MS });
    const body = post.locator('.text');
    const more = post.locator('button.show-more');
    const collapsed = (await body.boundingBox())!.height;
    assert.equal(await more.innerText(), 'Show more');
    assert.equal(await more.getAttribute('aria-expanded'), 'false');
    assert.equal(await page.getByText('line 12 of a long post').isVisible(), true, 'clamped, still in the page for search and screen readers');
    await more.click();
    assert.ok((await body.boundingBox())!.height > collapsed * 1.5, 'opened');
    assert.equal(await more.innerText(), 'Show less');
    assert.equal(await more.getAttribute('aria-expanded'), 'true');
    // a short post has no button
    assert.equal(await page.locator('#feed li.post', { hasText: 'Hello from Chromium' }).locator('button.show-more').count(), 0);

    const background = () => page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor + ' / ' + getComputedStyle(document.querySelector('section.card')!).color);
    const light = await background();
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await background();
    assert.notEqual(dark, light);
    assert.match(dark, /^rgb\((\d|[1-3]\d), (\d|[1-3]\d), (\d|[1-3]\d)\) \/ rgb\(2[0-5]\d, 2[0-5]\d, 2[0-5]\d\)$/, 'dark ground, light ink');
    assert.match((await page.locator('link[rel="icon"]').getAttribute('href')) ?? '', /^data:image\/svg\+xml,/);
  });

  it('on a 390 px phone: compose, then the feed, then the scheduled list; side by side on a desktop', async () => {
    const phone = await (await newContext({ javaScriptEnabled: true, viewport: { width: 390, height: 844 } })).newPage();
    await phone.goto(mainUrl);
    const boxes = async (page: Page) => Promise.all(['#compose-card', '#feed-card', '#scheduled-card'].map(async (id) => (await page.locator(id).boundingBox())!));
    const [compose, feed, scheduled] = await boxes(phone);
    assert.ok(compose!.y + compose!.height <= feed!.y, 'the feed under the compose form');
    assert.ok(feed!.y + feed!.height <= scheduled!.y, 'the scheduled list under the feed');
    for (const box of [compose!, feed!, scheduled!]) assert.ok(box.x >= 0 && box.x + box.width <= 390, 'nothing wider than the phone');
    assert.equal(await phone.evaluate(() => document.documentElement.scrollWidth), 390, 'no sideways scrolling');

    const desktop = await (await newContext({ javaScriptEnabled: true })).newPage();
    await desktop.goto(mainUrl);
    const [wideCompose, wideFeed, wideScheduled] = await boxes(desktop);
    assert.ok(wideFeed!.x > wideCompose!.x + wideCompose!.width, 'the feed beside the compose form');
    assert.equal(wideScheduled!.x, wideCompose!.x, 'the scheduled list under the compose form');
    assert.ok(wideScheduled!.y > wideCompose!.y + wideCompose!.height);
  });
});
