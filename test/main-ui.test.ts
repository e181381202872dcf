import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../src/clock.ts';
import { forceStatus, startTestDispatcher, type TestDispatcher } from './support/dispatcher.ts';
import { basicAuth, closedPortUrl, deliveryPayload, startTestMain, type TestMain } from './support/main.ts';
import { startStallingFront } from './support/pool.ts';

async function listeningDispatcher(options: Record<string, string> = {}): Promise<TestDispatcher & { url: string }> {
  const t = await startTestDispatcher(options);
  const url = await t.dispatcher.listen();
  return Object.assign(t, { url });
}

/** The markup of the element with this id, up to its closing tag (enough for these flat sections). */
function element(page: string, id: string, closing = '</section>'): string {
  const start = page.indexOf(`id="${id}"`);
  assert.ok(start >= 0, `no #${id}`);
  return page.slice(start, page.indexOf(closing, start));
}

/** The compose form's fields as a browser would submit them, with `changes` typed in. */
function composeFields(page: string, changes: Record<string, string>): Record<string, string> {
  const compose = element(page, 'compose', '</form>');
  const fields: Record<string, string> = {};
  for (const [input, name, value] of compose.matchAll(/<input[^>]*name="(\w+)"[^>]*value="([^"]*)"[^>]*>/g)) {
    // an unticked box is not sent
    if (/type="checkbox"/.test(input) && !/ checked/.test(input)) continue;
    fields[name!] = value!.replaceAll('&amp;', '&');
  }
  return { ...fields, ...changes };
}

/** Follows a 303 the way a browser does: GET the Location. */
async function follow(t: TestMain, response: { statusCode: number; headers: Record<string, unknown> }, headers: Record<string, string> = {}) {
  assert.equal(response.statusCode, 303);
  const location = response.headers.location as string;
  assert.match(location, /^\/\?/);
  return t.request('GET', location, { headers });
}

describe('the main page', () => {
  it('shows the compose form with a default time five minutes ahead, the feed newest first, and the scheduled messages', async () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1, 12, 0, 30));
    await using d = await listeningDispatcher();
    await d.schedule({ username: 'Bea', message: 'later', scheduledAt: '2099-01-01T09:30:15Z' });
    await using t = await startTestMain({ dispatcherUrls: d.url, timeZone: 'Europe/Berlin' }, { clock });
    await t.deliver(deliveryPayload({ username: 'Ann', message: 'older post' }));
    await clock.advance(1000);
    await t.deliver(deliveryPayload({ username: 'Ann', message: 'newer post' }));

    const response = await t.request('GET', '/');
    assert.equal(response.statusCode, 200);
    assert.match(response.headers['content-type'] as string, /^text\/html; charset=utf-8/);
    const page = response.body;
    const compose = element(page, 'compose', '</form>');
    assert.match(compose, /method="post" action="\/ui\/schedule"/);
    assert.match(compose, /<textarea id="compose-message" name="message" required aria-describedby="compose-counter"><\/textarea>/);
    assert.match(compose, /id="compose-counter" data-max="5000">Up to 5,000 characters\./);
    assert.match(compose, /<input type="checkbox" id="compose-now" name="postNow" value="1">/);
    assert.match(compose, /name="username"/);
    // 12:00:30 UTC + 5 min, in Berlin (UTC+1 in winter)
    assert.match(compose, /type="datetime-local" name="time" step="1" required value="2030-01-01T13:05" data-default/);
    assert.match(compose, /<input type="hidden" name="timezone" value="Europe\/Berlin">/);

    const feed = element(page, 'feed', '</ul>');
    assert.ok(feed.indexOf('newer post') < feed.indexOf('older post'), 'newest first');
    assert.match(feed, /Posted By <strong class="username">Ann<\/strong> at <time datetime="2030-01-01T12:00:31.000Z">/);

    const scheduled = element(page, 'scheduled-card');
    assert.match(scheduled, /<strong class="username">Bea<\/strong>/);
    assert.match(scheduled, /later/);
    assert.match(scheduled, /class="reschedule" method="post" action="\/ui\/scheduled\/[\w-]+\/reschedule"/);
    // the time to the second, in the server's zone until the script puts the viewer's
    assert.match(scheduled, /type="datetime-local" name="time" step="1" required [^>]*value="2099-01-01T10:30:15" data-instant="2099-01-01T09:30:15.000Z"/);
    assert.match(scheduled, /class="cancel" method="post" action="\/ui\/scheduled\/[\w-]+\/cancel"/);
    assert.match(scheduled, /class="edit-text" method="post" action="\/ui\/scheduled\/[\w-]+\/edit">\s*<textarea name="message" required [^>]*>later<\/textarea>/);
    // every control says which message it acts on
    const which = 'the message from Bea due 2099-01-01 10:30:15 (Europe/Berlin): later';
    for (const label of [`New time for ${which}`, `Change the time of ${which}`, `Cancel ${which}`, `Edit the text of ${which}`, `New text for ${which}`, `Save the new text of ${which}`]) {
      assert.ok(scheduled.includes(`aria-label="${label}"`), label);
    }
    assert.match(scheduled, /id="scheduled-empty" hidden>/);
    // compose, feed, scheduled in the document: the order on a phone and for a screen reader
    assert.ok(page.indexOf('id="compose-card"') < page.indexOf('id="feed-card"') && page.indexOf('id="feed-card"') < page.indexOf('id="scheduled-card"'));
    assert.match(feed, /aria-live="polite"/);
    assert.match(page, /<link rel="icon" href="data:image\/svg\+xml,/);
    // the optional script: local times and the live feed
    assert.match(page, /pschedLocalTimes/);
    assert.match(page, /new EventSource\('\/v1\/events\?after=/);
  });

  it('says "Nothing scheduled." when nothing is, and pages a long scheduled list with "Later messages"', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const empty = element((await t.request('GET', '/')).body, 'scheduled-card');
    assert.match(empty, /id="scheduled-count" data-more="false">0</);
    assert.match(empty, /id="scheduled-empty">Nothing scheduled\.</);

    await d.schedule(...Array.from({ length: 52 }, (_, i) => ({ username: 'a', message: `due #${i + 1}.`, scheduledAt: new Date(Date.UTC(2099, 0, 1) + i * 60_000).toISOString() })));
    const first = element((await t.request('GET', '/')).body, 'scheduled-card');
    assert.match(first, /id="scheduled-count" data-more="true">50\+</);
    assert.ok(first.includes('due #50.') && !first.includes('due #51.'));
    const later = /id="later" href="([^"]+)"/.exec(first)![1]!.replaceAll('&amp;', '&');
    const second = element((await t.request('GET', later)).body, 'scheduled-card');
    assert.match(second, /id="scheduled-count" data-more="false">2</);
    assert.ok(second.includes('due #51.') && second.includes('due #52.') && !second.includes('due #50.'));
    assert.match(second, /id="earliest"/);
    assert.ok(!second.includes('id="later"'));
    // a cursor that is not one: the first page, saying so
    const bad = await t.request('GET', '/?later=not-a-cursor');
    assert.equal(bad.statusCode, 400);
    assert.match(element(bad.body, 'notice', '</div>'), /That page of the list does not exist: showing the first page\./);
    assert.match(element(bad.body, 'scheduled-card'), /id="scheduled-count" data-more="true">50\+</);
  });

  it('escapes every user string: posts, scheduled messages, notices; and a URL cannot put a notice on the page', async () => {
    const evil = '<script>alert("x")</script> & \'quotes\'';
    await using d = await listeningDispatcher();
    await d.schedule({ username: '"><img src=x onerror=alert(1)>', message: evil, scheduledAt: '2099-01-01T00:00:00Z' });
    await using t = await startTestMain({ dispatcherUrls: d.url });
    await t.deliver(deliveryPayload({ username: '<b>bold</b>', message: evil }));
    await t.form('/postMessage.php', { username: '<svg onload=alert(2)>', message: '</p><iframe src=//evil>' });
    // the parse error quotes the time as typed
    const refused = await follow(t, await t.form('/ui/schedule', { message: 'm', username: 'u', time: '<script>alert(3)</script>', timezone: 'UTC' }));
    const page = refused.body;
    for (const raw of ['<script>alert', '<img src=x', '<b>bold</b>', '<svg onload', '<iframe']) {
      assert.ok(!page.includes(raw), `unescaped ${raw}`);
    }
    assert.ok(page.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;'));
    assert.match(element(page, 'notice', '</div>'), /&lt;script&gt;alert\(3\)&lt;\/script&gt;/);
    // notices live on the server under a random id: a crafted link shows none
    const crafted = (await t.request('GET', `/?error=${encodeURIComponent('Your account is locked: call 555')}&notice=x&flash=made-up`)).body;
    assert.ok(!crafted.includes('id="notice"') && !crafted.includes('call 555'));
  });

  it('pages the feed backwards with an "Older posts" link; older pages do not go live', async () => {
    const clock = new FakeClock();
    await using t = await startTestMain({}, { clock });
    for (let i = 1; i <= 52; i++) {
      await t.deliver(deliveryPayload({ message: `post #${i}.` }));
      await clock.advance(1);
    }
    const first = (await t.request('GET', '/')).body;
    assert.match(first, /data-live="true"/);
    assert.ok(first.includes('post #52.') && !first.includes('post #2.'));
    const older = /id="older" href="([^"]+)"/.exec(first)![1]!.replaceAll('&amp;', '&');
    const second = (await t.request('GET', older)).body;
    assert.match(second, /data-live="false"/);
    assert.ok(second.includes('post #2.') && second.includes('post #1.') && !second.includes('post #52.'));
    assert.ok(!second.includes('id="older"'));
  });

  it('still shows the feed when no dispatcher answers, saying so where the scheduled messages would be', async () => {
    await using t = await startTestMain({ dispatcherUrls: await closedPortUrl() });
    await t.deliver(deliveryPayload({ message: 'still here' }));
    const response = await t.request('GET', '/');
    assert.equal(response.statusCode, 200);
    assert.match(response.body, /still here/);
    assert.match(element(response.body, 'scheduled-card'), /id="scheduled-problem">No dispatcher answered/);
  });
});

describe('the page without JavaScript: form posts and redirects', () => {
  it('schedules from the compose form: 303 back to the page, which confirms and lists the message', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const response = await t.form('/ui/schedule', { message: 'Hello <world>', username: 'Ann', time: '2099-12-24T09:00', timezone: 'Europe/Berlin' });
    const page = (await follow(t, response)).body;
    assert.match(element(page, 'notice', '</div>'), /class="notice ok"[^>]*>Scheduled for 2099-12-24 09:00 \(Europe\/Berlin\)\./);
    const scheduled = element(page, 'scheduled-card');
    assert.match(scheduled, /Hello &lt;world&gt;/);
    assert.match(scheduled, /<time datetime="2099-12-24T08:00:00.000Z">/);
  });

  it('shows the form again, filled in, with the error when the input is bad', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const posted = await t.form('/ui/schedule', { message: 'keep <this>', username: '', time: '2099-12-24T09:00', timezone: 'UTC', idempotencyKey: 'form-1' });
    // Post/Redirect/Get: a reload of what the browser shows is a GET, never the form again
    const response = await follow(t, posted);
    assert.equal(response.statusCode, 200);
    assert.match(element(response.body, 'notice', '</div>'), /class="notice error"[^>]*>Not scheduled: username/);
    const compose = element(response.body, 'compose', '</form>');
    assert.match(compose, /<textarea[^>]*>keep &lt;this&gt;<\/textarea>/);
    assert.match(compose, /value="2099-12-24T09:00"(?! data-default)/);
    assert.equal(composeFields(response.body, {}).idempotencyKey, 'form-1', 'the same form, the same key');
    assert.equal((await d.request('GET', '/v1/messages')).json().items.length, 0);

    // a reload: what was typed is still there, the error is not shown again
    const reloaded = await t.request('GET', posted.headers.location as string);
    assert.ok(!reloaded.body.includes('id="notice"'), 'no stale notice');
    assert.match(element(reloaded.body, 'compose', '</form>'), /<textarea[^>]*>keep &lt;this&gt;<\/textarea>/);
    assert.equal(composeFields(reloaded.body, {}).idempotencyKey, 'form-1');
  });

  it('shows a notice once: a reload of the page after a success shows the page without it', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const response = await t.form('/ui/schedule', { message: 'once', username: 'Ann', time: '2099-12-24T09:00', timezone: 'UTC' });
    assert.match(element((await follow(t, response)).body, 'notice', '</div>'), /Scheduled for 2099-12-24 09:00 \(UTC\)\./);
    const reloaded = (await t.request('GET', response.headers.location as string)).body;
    assert.ok(!reloaded.includes('id="notice"'));
    assert.match(composeFields(reloaded, {}).time ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d$/, 'a fresh form');
  });

  it('refuses a time already past, saying so and keeping the form, unless "Post now" is ticked', async () => {
    await using d = await listeningDispatcher();
    const clock = new FakeClock(Date.UTC(2030, 5, 1, 9, 47, 30));
    await using t = await startTestMain({ dispatcherUrls: d.url }, { clock });
    // 09:47 (a minute already begun) in Berlin is 07:47 UTC: hours past
    const fields = { message: 'wrong AM/PM', username: 'Ann', time: '2030-06-01T09:47', timezone: 'Europe/Berlin', idempotencyKey: 'past-1' };
    const refused = await follow(t, await t.form('/ui/schedule', fields));
    assert.match(element(refused.body, 'notice', '</div>'),
      /class="notice error"[^>]*>Not scheduled: 2030-06-01 09:47 \(Europe\/Berlin\) has already passed\. Pick a later time, or tick &quot;Post now&quot; to post it at once\./);
    assert.match(element(refused.body, 'compose', '</form>'), /<textarea[^>]*>wrong AM\/PM<\/textarea>/);
    assert.match(element(refused.body, 'compose', '</form>'), /id="compose-now" name="postNow" value="1">/, 'not ticked for the user');
    assert.equal((await d.request('GET', '/v1/messages')).json().items.length, 0, 'nothing sent');
    // in the server's zone too: 09:47:00 UTC is 30 s ago
    const justPast = await follow(t, await t.form('/ui/schedule', { ...fields, timezone: 'UTC' }));
    assert.match(element(justPast.body, 'notice', '</div>'), /2030-06-01 09:47 \(UTC\) has already passed/);

    // ticked, but refused for another reason: it comes back ticked
    const stillTicked = await follow(t, await t.form('/ui/schedule', { ...fields, username: '', postNow: '1' }));
    assert.match(element(stillTicked.body, 'compose', '</form>'), /id="compose-now" name="postNow" value="1" checked>/);
    const now = await follow(t, await t.form('/ui/schedule', { ...fields, postNow: '1' }));
    assert.match(element(now.body, 'notice', '</div>'), /class="notice ok"[^>]*>Sent: it is posted now\./);
    const [stored] = (await d.request('GET', '/v1/messages')).json().items as { scheduledAt: string; idempotencyKey: string }[];
    assert.equal(stored?.idempotencyKey, 'past-1');
    assert.equal(stored?.scheduledAt, new Date(clock.now()).toISOString(), 'due now (the main server\'s now)');

    // the JSON API is unchanged: a past time is "due now"
    const api = await t.request('POST', '/v1/scheduled', { body: { username: 'api', message: 'm', scheduledAt: '2020-01-01T00:00:00Z' } });
    assert.equal(api.statusCode, 201);
  });

  it('shows the form again with a 503 when no dispatcher answers', async () => {
    await using t = await startTestMain({ dispatcherUrls: await closedPortUrl() });
    const response = await follow(t, await t.form('/ui/schedule', { message: 'm', username: 'u', time: '2099-12-24T09:00', timezone: 'UTC' }));
    assert.match(element(response.body, 'notice', '</div>'), /Not scheduled: No dispatcher answered/);
  });

  it('gives each rendered form its own idempotency key, and the page after a success a new one', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const page = (await t.request('GET', '/')).body;
    const key = composeFields(page, {}).idempotencyKey;
    assert.match(key ?? '', /^[\w-]{20,}$/, 'a hidden idempotencyKey input');
    assert.notEqual(composeFields((await t.request('GET', '/')).body, {}).idempotencyKey, key, 'another page, another key');
    const fields = composeFields(page, { message: 'one', username: 'Ann', time: '2099-12-24T09:00' });
    const after = (await follow(t, await t.form('/ui/schedule', fields))).body;
    assert.notEqual(composeFields(after, {}).idempotencyKey, key, 'a new key for the next message');
    // the dispatcher was sent the form's key
    assert.deepEqual((await d.request('GET', '/v1/messages')).json().items.map((m: { idempotencyKey: string }) => m.idempotencyKey), [key]);
  });

  it('says "may or may not be scheduled" (not "not scheduled") when the dispatcher stored it but did not answer, and the same form sent again is stored once', async () => {
    await using d = await listeningDispatcher();
    // the page's own listing still answers: only the scheduling request stalls
    await using stalled = await startStallingFront(d.url, { stalling: true, methods: ['POST'] });
    await using t = await startTestMain({ dispatcherUrls: stalled.url }, { dispatcherTimeoutMs: 300 });
    const page = (await t.request('GET', '/')).body;
    const fields = composeFields(page, { message: 'only once', username: 'Ann', time: '2099-12-24T09:00' });

    const unknown = await follow(t, await t.form('/ui/schedule', fields));
    const notice = element(unknown.body, 'notice', '</div>');
    assert.match(notice, /class="notice warn"[^>]*>May or may not be scheduled: .*Submitting this form again is safe: it will not be posted twice\./);
    assert.doesNotMatch(notice, /Not scheduled/);
    // shown again filled in, with the same key: "try again" is the same form
    const shownAgain = composeFields(unknown.body, {});
    assert.equal(shownAgain.idempotencyKey, fields.idempotencyKey);
    assert.match(element(unknown.body, 'compose', '</form>'), /<textarea[^>]*>only once<\/textarea>/);
    await stalled.settled();
    assert.equal((await d.request('GET', '/v1/messages')).json().items.length, 1, 'it was stored');

    // the user submits again; even while the dispatcher still stalls it is never a second message
    const stillUnknown = await follow(t, await t.form('/ui/schedule', { ...shownAgain, message: 'only once', time: '2099-12-24T09:00' }));
    assert.match(element(stillUnknown.body, 'notice', '</div>'), /class="notice warn"/);
    stalled.stalling = false;
    const settled = await t.form('/ui/schedule', { ...shownAgain, message: 'only once', time: '2099-12-24T09:00' });
    const confirmed = element((await follow(t, settled)).body, 'notice', '</div>');
    assert.match(confirmed, /class="notice ok"[^>]*>Already scheduled for 2099-12-24 09:00 \(UTC\) by an earlier submit of this form, not posted twice: only once/);
    await stalled.settled();
    const stored = (await d.request('GET', '/v1/messages')).json().items;
    assert.deepEqual(stored.map((m: { message: string }) => m.message), ['only once']);
  });

  it('changes the time of a scheduled message (to the second, never into the past), its text, and cancels it, confirming each', async () => {
    await using d = await listeningDispatcher();
    const [message] = await d.schedule({ username: 'a', message: 'move me', scheduledAt: '2099-01-01T00:00:00Z' });
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const moved = await t.form(`/ui/scheduled/${message!.id}/reschedule`, { time: '2099-03-01T08:15', timezone: 'UTC' });
    assert.match(element((await follow(t, moved)).body, 'notice', '</div>'), /Moved to 2099-03-01 08:15 \(UTC\)\./);
    assert.equal((await d.dispatcher.store.get(message!.id))?.scheduledAt, Date.UTC(2099, 2, 1, 8, 15));

    const toTheSecond = await t.form(`/ui/scheduled/${message!.id}/reschedule`, { time: '2099-03-01T08:15:42', timezone: 'UTC' });
    assert.match(element((await follow(t, toTheSecond)).body, 'notice', '</div>'), /Moved to 2099-03-01 08:15:42 \(UTC\)\./);
    assert.equal((await d.dispatcher.store.get(message!.id))?.scheduledAt, Date.UTC(2099, 2, 1, 8, 15, 42));
    const past = await t.form(`/ui/scheduled/${message!.id}/reschedule`, { time: '2020-03-01T08:15', timezone: 'UTC' });
    assert.match(element((await follow(t, past)).body, 'notice', '</div>'), /class="notice error"[^>]*>Not moved: 2020-03-01 08:15 \(UTC\) has already passed\. Pick a later time\./);
    assert.equal((await d.dispatcher.store.get(message!.id))?.scheduledAt, Date.UTC(2099, 2, 1, 8, 15, 42), 'not moved');

    // a browser sends the textarea's line breaks as CRLF: stored as typed
    const edited = await t.form(`/ui/scheduled/${message!.id}/edit`, { message: 'moved,\r\nand <edited>' });
    const afterEdit = (await follow(t, edited)).body;
    assert.match(element(afterEdit, 'notice', '</div>'), /class="notice ok"[^>]*>Text changed: moved,\nand &lt;edited&gt;/);
    assert.equal((await d.dispatcher.store.get(message!.id))?.message, 'moved,\nand <edited>');
    const tooLong = await follow(t, await t.form(`/ui/scheduled/${message!.id}/edit`, { message: 'x'.repeat(5_001) }));
    assert.match(element(tooLong.body, 'notice', '</div>'), /class="notice error"[^>]*>message must be at most 5000 characters/);

    const cancelled = await t.form(`/ui/scheduled/${message!.id}/cancel`, {});
    const page = (await follow(t, cancelled)).body;
    assert.match(element(page, 'notice', '</div>'), /Cancelled\./);
    assert.doesNotMatch(element(page, 'scheduled-card'), /move me/);
    assert.equal(await d.dispatcher.store.get(message!.id), undefined);
  });

  it('explains a cancel that came too late or found nothing', async () => {
    await using d = await listeningDispatcher();
    const [message] = await d.schedule({ username: 'a', message: 'x', scheduledAt: '2099-01-01T00:00:00Z' });
    await forceStatus(d.dispatcher, message!.id, 'delivered');
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const late = (await follow(t, await t.form(`/ui/scheduled/${message!.id}/cancel`, {}))).body;
    assert.match(element(late, 'notice', '</div>'), /class="notice error"[^>]*>Too late: the message is already delivered\./);
    const gone = (await follow(t, await t.form('/ui/scheduled/01900000-0000-7000-8000-000000000000/cancel', {}))).body;
    assert.match(element(gone, 'notice', '</div>'), /no longer scheduled/);
    const badTime = (await follow(t, await t.form(`/ui/scheduled/${message!.id}/reschedule`, { time: '', timezone: 'UTC' }))).body;
    assert.match(element(badTime, 'notice', '</div>'), /class="notice error"/);
  });

  it('explains an edit of a message that expired unsent (past its deliver-by)', async () => {
    await using d = await listeningDispatcher();
    const [message] = await d.schedule({ username: 'a', message: 'x', scheduledAt: '2099-01-01T00:00:00Z', deliverBy: '2099-01-01T01:00:00Z' });
    await forceStatus(d.dispatcher, message!.id, 'expired', { error: 'not sent: past its deliver-by, 2099-01-01T01:00:00.000Z' });
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const late = (await follow(t, await t.form(`/ui/scheduled/${message!.id}/edit`, { message: 'too late' }))).body;
    assert.match(element(late, 'notice', '</div>'), /class="notice error"[^>]*>Too late: the message expired unsent \(it was past its deliver-by\); it can be replayed from the dispatcher&#39;s page\./);
    assert.equal((await d.dispatcher.store.get(message!.id))!.message, 'x');
  });
});

describe('who may see and do what', () => {
  it('with an access token: the page and its forms need it (Basic prompt), reading the feed stays public', async () => {
    await using d = await listeningDispatcher({ apiToken: 'other' });
    await using t = await startTestMain({ dispatcherUrls: d.url, apiToken: 'other', accessToken: 'tok' });
    const page = await t.request('GET', '/');
    assert.equal(page.statusCode, 401);
    assert.match(page.headers['www-authenticate'] as string, /^Basic realm="psched"/);
    assert.equal((await t.request('GET', '/', { headers: { authorization: basicAuth('wrong') } })).statusCode, 401);
    assert.equal((await t.request('GET', '/', { headers: { authorization: basicAuth('tok') } })).statusCode, 200);
    assert.equal((await t.form('/ui/schedule', { message: 'm', username: 'u', time: '2099-01-01T00:00' })).statusCode, 401);
    const allowed = await t.form('/ui/schedule', { message: 'm', username: 'u', time: '2099-01-01T00:00' }, { headers: { authorization: basicAuth('tok') } });
    assert.equal(allowed.statusCode, 303);
    assert.equal((await t.request('GET', '/v1/posts')).statusCode, 200);
    assert.equal((await t.request('GET', '/healthz')).statusCode, 200);
  });

  it('refuses form posts a browser marks as coming from another site', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const fields = { message: 'm', username: 'u', time: '2099-01-01T00:00' };
    const crossSite = await t.form('/ui/schedule', fields, { headers: { 'sec-fetch-site': 'cross-site' } });
    assert.equal(crossSite.statusCode, 403);
    const otherOrigin = await t.form('/scheduleMessage.php', fields, { headers: { origin: 'http://evil.example', host: 'localhost:8080' } });
    assert.equal(otherOrigin.statusCode, 403);
    const otherPort = await t.form('/ui/schedule', fields, { headers: { 'sec-fetch-site': 'same-site', origin: 'http://localhost:3000', host: 'localhost:8080' } });
    assert.equal(otherPort.statusCode, 403);
    assert.equal((await d.request('GET', '/v1/messages')).json().items.length, 0);
    const sameOrigin = await t.form('/ui/schedule', fields, { headers: { 'sec-fetch-site': 'same-origin', origin: 'http://localhost:8080', host: 'localhost:8080' } });
    assert.equal(sameOrigin.statusCode, 303);
  });
});
