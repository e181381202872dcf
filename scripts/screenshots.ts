/**
 * Makes the README's screenshots: `node scripts/screenshots.ts`.
 *
 * Starts its own services on a temp folder and free ports, fills them with a
 * small story (posts in the feed, messages scheduled ahead, a dead letter from
 * a time the main server was down), and photographs both pages with Debian's
 * Chromium, light and dark (prefers-color-scheme):
 *   docs/screenshots/main.png, main-dark.png              1280x800: compose + scheduled beside the feed
 *   docs/screenshots/main-phone.png, main-phone-dark.png  390 px wide, the whole page: compose, feed, scheduled
 *   docs/screenshots/dispatcher.png, dispatcher-dark.png  1280x800: scheduled, dead letters, delivered history
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

    // 1. a dead letter: the dispatcher alone, its main server down, one attempt allowed
    const lonely = await procs.startService('dispatcher', {
      db: join(dir, 'dispatcher.db'),
      'main-url': `http://127.0.0.1:${await freePort()}`,
      'max-attempts': '1',
    }, dispatcherPort);
    const dead = await requestJson('POST', `${lonely.url}/v1/messages`, {
      body: { username: 'Reports', message: 'The weekly report is ready.', delaySeconds: 0 },
    });
    assert.equal(dead.status, 201, JSON.stringify(dead.body));
    await waitFor(async () => (await requestJson('GET', `${lonely.url}/v1/messages/${dead.body.id}`)).body.status === 'dead', { what: 'the dead letter' });
    assert.equal((await lonely.stop('SIGTERM')).code, 0);

    // 2. the whole system, as `npm start` runs it, on the same data
    const dev = procs.spawn(['dev', '--main-port', String(mainPort), '--dispatcher-port', String(dispatcherPort), '--dir', dir, '--log-level', 'warn']);
    await waitHealthy(mainUrl, dev);
    await waitHealthy(dispatcherUrl, dev);
    const { apiToken } = JSON.parse(readFileSync(join(dir, 'dev-credentials.json'), 'utf8')) as { apiToken: string };

    // the original's own example first (due in 2014: posted at once), then the others one by one
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
    for (const { inMs, ...message } of SCHEDULED) {
      const answer = await requestJson('POST', `${mainUrl}/v1/scheduled`, {
        body: { ...message, scheduledAt: new Date(roundToQuarterHour(Date.now() + inMs)).toISOString() },
      });
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
    }

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
      const dispatcherContext = await browser.newContext({ ...contextOptions, colorScheme, httpCredentials: { username: 'admin', password: apiToken } });
      const dispatcherPage = await dispatcherContext.newPage();
      await dispatcherPage.goto(dispatcherUrl);
      const path = join(OUT_DIR, `dispatcher${suffix}.png`);
      await dispatcherPage.screenshot({ path });
      written.push(path);
      await dispatcherContext.close();
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
