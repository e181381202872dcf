/**
 * Makes the README's screenshots: `node scripts/screenshots.ts`.
 *
 * Starts its own services on a temp folder and free ports, fills them with a
 * small story (posts in the feed, messages scheduled ahead, dead letters and
 * a message that expired unsent from a time the main server was down), and photographs both pages with Debian's
 * Chromium, light and dark (prefers-color-scheme):
 *   docs/screenshots/main.png, main-dark.png              1280x800: compose + scheduled beside the feed
 *   docs/screenshots/main-phone.png, main-phone-dark.png  390 px wide, the whole page: compose, feed, scheduled
 *   docs/screenshots/dispatcher.png, dispatcher-dark.png  1280 px wide, the whole console: overview and charts,
 *     filters, scheduled, dead letters and expired (bulk retry/discard), delivered history
 *   docs/screenshots/dispatcher-phone.png, dispatcher-phone-dark.png  the console on a 390 px phone
 *   docs/screenshots/dispatcher-filtered.png  the console filtered to one user's dead letters, two ticked
 *   docs/screenshots/dispatcher-message-scheduled.png  a scheduled message's page: change its time or text, cancel
 *   docs/screenshots/dispatcher-message.png, dispatcher-message-dark.png  a message's page: fields, edit, attempt history
 *   docs/screenshots/dispatcher-message-phone.png, dispatcher-message-phone-dark.png  the same on a phone
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium } from '../test/support/chromium.ts';
import { Processes, REPO_ROOT, freePort, requestJson, waitFor, waitHealthy } from '../test/support/processes.ts';

const OUT_DIR = join(REPO_ROOT, 'docs', 'screenshots');
const VIEWPORT = { width: 1280, height: 800 };
/** An iPhone 12 to 15's CSS width: the narrow screen the page is checked on. */
const PHONE = { width: 390, height: 844 };
const VIEWER_ZONE = 'Europe/Berlin';

// Texts stay in the Basic Multilingual Plane (☕ is fine): Debian's Chromium here has no
// colour-emoji font, so 🎂 or 🚀 would show as empty boxes in the pictures.
const POSTED = [
  { username: 'Ann', message: 'Good morning! Coffee and cake in the kitchen at 10 ☕' },
  { username: 'Bo', message: 'Reminder: the release train leaves on Friday at 16:00. Merge your branches by Thursday night.' },
  { username: 'Dee', message: 'Happy birthday, Sam! Cake is on the third floor.' },
  {
    username: 'Cy',
    // long enough to be collapsed behind "Show more"
    message: [
      'Notes from the retro:',
      '- the deploy checklist lives in the wiki now',
      '- on-call swaps go through the calendar, not chat',
      '- staging is rebuilt every night at 02:00',
      '- flaky tests get a ticket the day they fail',
      '- the release notes draft is open for comments',
      '- next retro in two weeks, same room',
    ].join('\n'),
  },
];

/** Sent while the main server was down: dead letters for the console's bulk actions. */
const DEAD = [
  { username: 'Reports', message: 'The weekly report is ready.' },
  { username: 'Reports', message: 'Monthly numbers: the dashboard is updated.' },
  { username: 'Eve', message: 'Lunch poll results are in!' },
];

const HOUR = 3_600_000;
const SCHEDULED = [
  { username: 'Ann', message: 'Stand-up moves to the big room today.', inMs: 2 * HOUR },
  { username: 'Eve', message: 'Last call for the team lunch poll: vote before noon!', inMs: 20 * HOUR },
  { username: 'Bo', message: 'Release 2.4 is out. Thank you all!', inMs: 4 * 24 * HOUR },
];

async function main(): Promise<void> {
  const procs = new Processes();
  const browser = await launchChromium();
  try {
    const dir = procs.tempDir('psched-screenshots-');
    const [mainPort, dispatcherPort] = [await freePort(), await freePort()];
    const mainUrl = `http://127.0.0.1:${mainPort}`;
    const dispatcherUrl = `http://127.0.0.1:${dispatcherPort}`;

    // 1. dead letters and a message still retrying: the dispatcher alone, its main server down, three attempts allowed
    const lonely = await procs.startService('dispatcher', {
      db: join(dir, 'dispatcher.db'),
      'main-url': `http://127.0.0.1:${await freePort()}`,
      'max-attempts': '3',
      'retry-base': '1s',
    }, dispatcherPort);
    const messageOf = async (id: string) => (await requestJson('GET', `${lonely.url}/v1/messages/${id}`)).body as { status: string; attempts: number };
    const deadIds: string[] = [];
    for (const message of DEAD) {
      const dead = await requestJson('POST', `${lonely.url}/v1/messages`, { body: { ...message, delaySeconds: 0 } });
      assert.equal(dead.status, 201, JSON.stringify(dead.body));
      deadIds.push(dead.body.id);
    }
    for (const id of deadIds) await waitFor(async () => (await messageOf(id)).status === 'dead', { what: 'a dead letter', timeoutMs: 20_000 });
    // worth sending only within 400 ms: its first retry comes later (at least half of --retry-base), so it is set expired, never made dead
    const expired = await requestJson('POST', `${lonely.url}/v1/messages`, {
      body: { username: 'Ann', message: 'Stand-up starts in one minute, join the call!', delaySeconds: 0, deliverBy: new Date(Date.now() + 400).toISOString() },
    });
    assert.equal(expired.status, 201, JSON.stringify(expired.body));
    await waitFor(async () => (await messageOf(expired.body.id)).status === 'expired', { what: 'an expired message', timeoutMs: 20_000 });
    // two failed attempts, then the dispatcher stops: the whole system delivers it on its next attempt
    const late = await requestJson('POST', `${lonely.url}/v1/messages`, { body: { username: 'Bo', message: 'Deploy window opens in 10 minutes.', delaySeconds: 0 } });
    await waitFor(async () => (await messageOf(late.body.id)).attempts >= 2 && (await messageOf(late.body.id)).status === 'scheduled', { what: 'two failed attempts', timeoutMs: 20_000 });
    assert.equal((await lonely.stop('SIGTERM')).code, 0);

    // 2. the whole system, as `npm start` runs it, on the same data
    const dev = procs.spawn(['dev', '--main-port', String(mainPort), '--dispatcher-port', String(dispatcherPort), '--dir', dir, '--log-level', 'warn']);
    await waitHealthy(mainUrl, dev);
    await waitHealthy(dispatcherUrl, dev);
    const { apiToken } = JSON.parse(readFileSync(join(dir, 'dev-credentials.json'), 'utf8')) as { apiToken: string };

    // a few deliveries for the dispatcher's charts first: older than the story, so the feed's top shows the story
    for (let i = 0; i < 8; i++) {
      const answer = await requestJson('POST', `${mainUrl}/v1/scheduled`, { body: { username: 'CI', message: `Build ${120 + i} passed.`, delaySeconds: 0 } });
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      await awaitPost(mainUrl, answer.body.id);
    }
    // the original's own example (due in 2014: posted at once), then the others one by one
    const curl = await requestJson('POST', `${mainUrl}/scheduleMessage.php`, {
      body: new URLSearchParams({ username: 'Curl', message: "I'm scheduling a message!", time: '2014-08-01 13:30:00' }).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(curl.status, 200, JSON.stringify(curl.body));
    await awaitPost(mainUrl, curl.body.externalResult.id);
    for (const post of POSTED) {
      const answer = await requestJson('POST', `${mainUrl}/v1/scheduled`, { body: { ...post, delaySeconds: 0 } });
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      await awaitPost(mainUrl, answer.body.id);
    }
    const scheduledIds: string[] = [];
    for (const { inMs, ...message } of SCHEDULED) {
      const answer = await requestJson('POST', `${mainUrl}/v1/scheduled`, {
        body: { ...message, scheduledAt: new Date(roundToQuarterHour(Date.now() + inMs)).toISOString() },
      });
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      scheduledIds.push(answer.body.id);
    }

    await waitFor(async () => (await requestJson('GET', `${dispatcherUrl}/v1/messages/${late.body.id}`, { token: apiToken })).body.status === 'delivered', { what: 'the late message delivered', timeoutMs: 20_000 });

    mkdirSync(OUT_DIR, { recursive: true });
    const contextOptions = { viewport: VIEWPORT, timezoneId: VIEWER_ZONE, locale: 'en-US' };

    const written: string[] = [];
    for (const colorScheme of ['light', 'dark'] as const) {
      const suffix = colorScheme === 'dark' ? '-dark' : '';
      for (const [name, viewport] of [['main', VIEWPORT], ['main-phone', PHONE]] as const) {
        const mainPage = await (await browser.newContext({ ...contextOptions, viewport, colorScheme })).newPage();
        await mainPage.goto(mainUrl);
        await mainPage.locator('#live', { hasText: 'live' }).waitFor();
        // someone halfway through writing the next message
        await mainPage.fill('#compose-message', 'Pizza for everyone who stays for the release');
        await mainPage.fill('#compose-username', 'Ann');
        await mainPage.locator('#compose-username').blur();
        const path = join(OUT_DIR, `${name}${suffix}.png`);
        await mainPage.screenshot({ path, fullPage: name === 'main-phone' });
        written.push(path);
        await mainPage.context().close();
      }
      for (const [name, viewport] of [['dispatcher', VIEWPORT], ['dispatcher-phone', PHONE]] as const) {
        const dispatcherContext = await browser.newContext({ ...contextOptions, viewport, colorScheme, httpCredentials: { username: 'admin', password: apiToken } });
        const dispatcherPage = await dispatcherContext.newPage();
        await dispatcherPage.goto(dispatcherUrl);
        await dispatcherPage.locator('#live', { hasText: 'live' }).waitFor();
        const path = join(OUT_DIR, `${name}${suffix}.png`);
        await dispatcherPage.screenshot({ path, fullPage: true });
        written.push(path);

        if (name === 'dispatcher' && colorScheme === 'light') {
          // filtered to one user's dead letters, two of them ticked for a bulk action
          await dispatcherPage.goto(`${dispatcherUrl}/?show=dead&user=Reports`);
          for (const box of await dispatcherPage.locator('#dead input.pick').all()) await box.check();
          const filtered = join(OUT_DIR, 'dispatcher-filtered.png');
          await dispatcherPage.screenshot({ path: filtered });
          written.push(filtered);
          // a scheduled message's page: its time and text can still be changed
          await dispatcherPage.goto(`${dispatcherUrl}/ui/messages/${scheduledIds[0]}`);
          const editable = join(OUT_DIR, 'dispatcher-message-scheduled.png');
          await dispatcherPage.screenshot({ path: editable, fullPage: true });
          written.push(editable);
        }

        // the message that failed twice and was delivered on its third attempt
        await dispatcherPage.goto(`${dispatcherUrl}/ui/messages/${late.body.id}`);
        const messagePath = join(OUT_DIR, `${name === 'dispatcher' ? 'dispatcher-message' : 'dispatcher-message-phone'}${suffix}.png`);
        await dispatcherPage.screenshot({ path: messagePath, fullPage: true });
        written.push(messagePath);
        await dispatcherContext.close();
      }
    }

    const exit = await dev.stop('SIGINT');
    assert.equal(exit.code, 0, dev.output);
    console.log(`wrote ${written.join(', ')}`);
  } finally {
    await browser.close();
    await procs.cleanup();
  }
}

async function awaitPost(mainUrl: string, messageId: string): Promise<void> {
  await waitFor(async () => {
    const feed = await requestJson('GET', `${mainUrl}/v1/posts`);
    return (feed.body.items as { messageId: string }[]).some((post) => post.messageId === messageId);
  }, { what: `message ${messageId} in the feed` });
}

/** Scheduled times on the quarter hour look like times people pick. */
function roundToQuarterHour(instant: number): number {
  const quarter = 15 * 60_000;
  return Math.ceil(instant / quarter) * quarter;
}

await main();
