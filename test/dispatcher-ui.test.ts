import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forceStatus, startTestDispatcher } from './support/dispatcher.ts';
import { deliveriesChart } from '../src/dispatcher/ui-charts.ts';

const basic = (password: string) => `Basic ${Buffer.from(`anyone:${password}`).toString('base64')}`;

/** The text of one <section> of the page, found by its heading id. */
function section(page: string, id: string): string {
  const start = page.indexOf(`aria-labelledby="${id}"`);
  assert.ok(start >= 0, `no section ${id}`);
  return page.slice(start, page.indexOf('</section>', start));
}

describe('the dispatcher page', () => {
  it('lists scheduled messages in due-time order with name, time, text, status and a Cancel button', async () => {
    await using t = await startTestDispatcher();
    const [late, early] = await t.schedule(
      { username: 'zoe', message: 'second', scheduledAt: '2099-01-02T09:30:00Z' },
      { username: 'adam', message: 'first', scheduledAt: '2099-01-01T09:30:00Z' },
    );
    const response = await t.request('GET', '/');
    assert.equal(response.statusCode, 200);
    assert.match(response.headers['content-type'] as string, /^text\/html; charset=utf-8/);
    const page = response.body;
    assert.match(page, /<title>Scheduled Messages · psched<\/title>/);
    const scheduled = section(page, 'scheduled-title');
    assert.ok(scheduled.indexOf('first') < scheduled.indexOf('second'), 'due-time order');
    assert.match(scheduled, /<strong>adam<\/strong>/);
    assert.match(scheduled, /<time datetime="2099-01-01T09:30:00.000Z">2099-01-01 09:30:00 UTC<\/time>/);
    assert.match(scheduled, /<span class="badge scheduled">scheduled<\/span>/);
    assert.match(scheduled, new RegExp(`<form method="post" action="/ui/messages/${early!.id}/cancel">`));
    assert.match(scheduled, new RegExp(`action="/ui/messages/${late!.id}/cancel"`));
    assert.match(scheduled, /<span class="count">2<\/span>/);
    // the script that shows times in the viewer's zone
    assert.match(page, /pschedLocalTimes/);
  });

  it('escapes every user string', async () => {
    await using t = await startTestDispatcher();
    const [dead] = await t.schedule(
      { username: '<img src=x onerror=alert(1)>', message: '<script>alert("pwned")</script> & "quotes" \'too\'', scheduledAt: '2099-01-01T00:00:00Z' },
      { username: 'ok', message: 'fine', scheduledAt: '2099-01-02T00:00:00Z' },
    );
    await forceStatus(t.dispatcher, dead!.id, 'dead', { error: 'main server answered 400: <b>bad</b>' });
    await t.schedule({ username: '"><svg onload=alert(2)>', message: '</p><iframe src=//evil>', scheduledAt: '2099-01-03T00:00:00Z' });
    const page = (await t.request('GET', '/')).body;
    for (const raw of ['<img src=x', '<script>alert', '<svg onload', '<iframe', '<b>bad</b>']) {
      assert.ok(!page.includes(raw), `unescaped ${raw}`);
    }
    assert.ok(page.includes('&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; &quot;quotes&quot; &#39;too&#39;'));
    assert.ok(page.includes('&lt;img src=x onerror=alert(1)&gt;'));
    assert.ok(page.includes('main server answered 400: &lt;b&gt;bad&lt;/b&gt;'));
  });

  it('shows dead letters with their last error and a Retry button, and the delivered history', async () => {
    await using t = await startTestDispatcher();
    const [dead, delivered] = await t.schedule(
      { username: 'dana', message: 'never arrived', scheduledAt: '2099-01-01T00:00:00Z' },
      { username: 'dora', message: 'arrived fine', scheduledAt: '2099-01-02T00:00:00Z' },
    );
    await forceStatus(t.dispatcher, dead!.id, 'dead', { error: 'main server answered 422: unprocessable' });
    await forceStatus(t.dispatcher, delivered!.id, 'delivered');
    const page = (await t.request('GET', '/')).body;
    const deadSection = section(page, 'dead-title');
    assert.match(deadSection, /never arrived/);
    assert.match(deadSection, /main server answered 422: unprocessable/);
    assert.match(deadSection, new RegExp(`action="/ui/messages/${dead!.id}/retry"`));
    const deliveredSection = section(page, 'delivered-title');
    assert.match(deliveredSection, /arrived fine/);
    assert.match(deliveredSection, /badge delivered/);
    assert.doesNotMatch(section(page, 'scheduled-title'), /never arrived|arrived fine/);
  });

  it('lists the delivered history most recently delivered first', async () => {
    await using t = await startTestDispatcher();
    const [dueFirst, dueSecond] = await t.schedule(
      { username: 'u', message: 'due first, delivered an hour ago', scheduledAt: '2099-01-01T00:00:00Z' },
      { username: 'u', message: 'due second, delivered just now', scheduledAt: '2099-01-02T00:00:00Z' },
    );
    await forceStatus(t.dispatcher, dueFirst!.id, 'delivered', { at: Date.now() - 3_600_000 });
    await forceStatus(t.dispatcher, dueSecond!.id, 'delivered');
    const delivered = section((await t.request('GET', '/')).body, 'delivered-title');
    assert.ok(delivered.indexOf('delivered just now') < delivered.indexOf('delivered an hour ago'));
  });

  it('shows the first 200 of a long list with the total', async () => {
    await using t = await startTestDispatcher();
    await t.schedule(...Array.from({ length: 205 }, (_, i) => ({ username: 'u', message: `n${i}`, scheduledAt: '2099-01-01T00:00:00Z' })));
    const scheduled = section((await t.request('GET', '/')).body, 'scheduled-title');
    assert.equal(scheduled.match(/<li /g)?.length, 200);
    assert.match(scheduled, /Showing the first 200 of 205/);
    assert.match(scheduled, /<span class="count">205<\/span>/);
  });
});

describe('the page\'s buttons', () => {
  it('Cancel removes the message and redirects back with a confirmation', async () => {
    await using t = await startTestDispatcher();
    const [m] = await t.schedule({ username: 'u', message: 'cancel me', scheduledAt: '2099-01-01T00:00:00Z' });
    const response = await t.request('POST', `/ui/messages/${m!.id}/cancel`, { body: '', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, '/?notice=cancelled');
    assert.equal(await t.dispatcher.store.get(m!.id), undefined);
    const page = (await t.request('GET', '/?notice=cancelled')).body;
    assert.match(page, /<div class="notice ok" role="status">Message cancelled: it will not be delivered.<\/div>/);
    assert.doesNotMatch(page, /cancel me/);
  });

  it('Cancel says so when it is too late or the message is gone', async () => {
    await using t = await startTestDispatcher();
    const [m] = await t.schedule({ username: 'u', message: 'done', scheduledAt: '2099-01-01T00:00:00Z' });
    await forceStatus(t.dispatcher, m!.id, 'delivered');
    const late = await t.request('POST', `/ui/messages/${m!.id}/cancel`);
    assert.equal(late.statusCode, 303);
    assert.equal(late.headers.location, '/?notice=too-late&status=delivered');
    assert.match((await t.request('GET', late.headers.location)).body, /notice error.*Too late: that message is already delivered\./);
    const gone = await t.request('POST', '/ui/messages/01890000-0000-7000-8000-000000000000/cancel');
    assert.equal(gone.headers.location, '/?notice=not-found');
    assert.equal((await t.dispatcher.store.get(m!.id))!.status, 'delivered');
  });

  it('Retry schedules a dead letter again', async () => {
    await using t = await startTestDispatcher();
    const [m] = await t.schedule({ username: 'u', message: 'again', scheduledAt: '2099-01-01T00:00:00Z' });
    await forceStatus(t.dispatcher, m!.id, 'dead');
    const response = await t.request('POST', `/ui/messages/${m!.id}/retry`);
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, '/?notice=retried');
    assert.equal((await t.dispatcher.store.get(m!.id))!.status, 'scheduled');
  });

  it('refuses form posts from another site', async () => {
    await using t = await startTestDispatcher();
    const [m] = await t.schedule({ username: 'u', message: 'keep me', scheduledAt: '2099-01-01T00:00:00Z' });
    const foreign: Record<string, string>[] = [{ 'sec-fetch-site': 'cross-site' }, { origin: 'https://evil.example' }, { 'sec-fetch-site': 'same-site' },
      // a sandboxed iframe, a data: URL or a redirect from elsewhere: the browser hides the origin
      { origin: 'null' }, { origin: 'null', 'sec-fetch-site': 'same-site' }];
    for (const headers of foreign) {
      const response = await t.request('POST', `/ui/messages/${m!.id}/cancel`, { headers });
      assert.equal(response.statusCode, 403, JSON.stringify(headers));
    }
    assert.ok(await t.dispatcher.store.get(m!.id));
    const own = await t.request('POST', `/ui/messages/${m!.id}/cancel`, { headers: { 'sec-fetch-site': 'same-origin', origin: 'http://localhost:80', host: 'localhost:80' } });
    assert.equal(own.statusCode, 303);
  });

  it('never echoes request text into a notice', async () => {
    await using t = await startTestDispatcher();
    const page = (await t.request('GET', '/?notice=too-late&status=<script>x</script>')).body;
    assert.match(page, /Too late: that message is already on its way\./);
    assert.ok(!page.includes('<script>x'));
    assert.doesNotMatch((await t.request('GET', '/?notice=<b>hi</b>')).body, /<b>hi|notice (ok|error)/);
  });
});

describe('dead letters on the page', () => {
  it('Discard says the dead letter is discarded (it said "Message cancelled"), and removes it', async () => {
    await using t = await startTestDispatcher();
    const [m] = await t.schedule({ username: 'u', message: 'gone wrong', scheduledAt: '2099-01-01T00:00:00Z' });
    await forceStatus(t.dispatcher, m!.id, 'dead');
    const discarded = await t.request('POST', `/ui/messages/${m!.id}/discard`);
    assert.equal(discarded.statusCode, 303);
    const page = (await t.request('GET', discarded.headers.location as string)).body;
    assert.match(page, /Dead letter discarded: it will not be delivered or retried\./);
    assert.equal(await t.dispatcher.store.get(m!.id), undefined);
    assert.match((await t.request('GET', '/')).body, new RegExp(`^(?![\\s\\S]*${m!.id}/discard)`), 'no Discard button left for it');
  });
});

describe('the page with --api-token', () => {
  const token = 'page-token';

  it('asks the browser for Basic auth and accepts the token as password or bearer', async () => {
    await using t = await startTestDispatcher({ apiToken: token });
    const none = await t.request('GET', '/');
    assert.equal(none.statusCode, 401);
    assert.match(none.headers['www-authenticate'] as string, /^Basic realm="psched dispatcher"/);
    assert.equal((await t.request('GET', '/', { headers: { authorization: basic('wrong') } })).statusCode, 401);
    assert.equal((await t.request('GET', '/', { headers: { authorization: basic(token) } })).statusCode, 200);
    assert.equal((await t.request('GET', '/', { token })).statusCode, 200);
  });

  it('shows a browser that was refused a page, not JSON: what to log in with, and the login prompt again', async () => {
    await using t = await startTestDispatcher({ apiToken: token });
    const browser = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8', authorization: basic('wrong') };
    const refused = await t.request('GET', '/', { headers: browser });
    assert.equal(refused.statusCode, 401);
    assert.match(refused.headers['content-type'] as string, /^text\/html/);
    assert.match(refused.headers['www-authenticate'] as string, /^Basic realm="psched dispatcher"/);
    assert.match(refused.body, /<h2>This page needs the API token<\/h2>/);
    assert.doesNotMatch(refused.body, /page-token/, 'never the token itself');
    // scripts still get the documented JSON error
    assert.equal((await t.request('GET', '/')).json().error.code, 'unauthorized');
  });

  it('protects the buttons too', async () => {
    await using t = await startTestDispatcher({ apiToken: token });
    const [m] = await t.schedule({ username: 'u', message: 'm', scheduledAt: '2099-01-01T00:00:00Z' });
    assert.equal((await t.request('POST', `/ui/messages/${m!.id}/cancel`)).statusCode, 401);
    assert.ok(await t.dispatcher.store.get(m!.id));
    const response = await t.request('POST', `/ui/messages/${m!.id}/cancel`, { headers: { authorization: basic(token) } });
    assert.equal(response.statusCode, 303);
  });
});

const form = (fields: [string, string][]) => ({
  body: new URLSearchParams(fields).toString(),
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
});

/** Moves a scheduled message through attempts as the engine would, recording each in its history. */
async function deliverWithHistory(t: Awaited<ReturnType<typeof startTestDispatcher>>, id: string, outcomes: { outcome: 'retry' | 'delivered' | 'dead'; httpStatus?: number; error?: string }[]) {
  const { store } = t.dispatcher;
  const owner = `history-${id}`;
  const now = Date.now();
  const message = await store.get(id);
  await store.claimDue(owner, message!.dueAt + 1, now, now + 600_000, 100_000);
  let at = now;
  for (const [i, { outcome, httpStatus, error }] of outcomes.entries()) {
    await store.startDelivery(owner, [{ id, version: message!.version }], at);
    await store.finishDeliveries(owner, [{ id, outcome, at: outcome === 'retry' ? at + 1 : at + 20, error, attempt: { number: i + 1, startedAt: at, finishedAt: at + 20, httpStatus } }]);
    at += 1000;
  }
  await store.releaseClaims(owner);
}

describe('the console: filters and paging', () => {
  it('narrows every list by status, user, text and due range, and keeps the form filled in', async () => {
    await using t = await startTestDispatcher();
    const [ann1, bo, ann2, dead] = await t.schedule(
      { username: 'ann', message: 'Coffee at ten', scheduledAt: '2099-01-01T10:00:00Z' },
      { username: 'bo', message: 'coffee again', scheduledAt: '2099-01-01T11:00:00Z' },
      { username: 'ann', message: 'lunch', scheduledAt: '2099-01-02T12:00:00Z' },
      { username: 'ann', message: 'coffee, undeliverable', scheduledAt: '2099-01-03T12:00:00Z' },
    );
    await forceStatus(t.dispatcher, dead!.id, 'dead');
    const page = (await t.request('GET', '/?user=ann&q=COFFEE')).body;
    const scheduled = section(page, 'scheduled-title');
    assert.match(scheduled, new RegExp(ann1!.id));
    assert.doesNotMatch(scheduled, new RegExp(`${bo!.id}|${ann2!.id}`));
    assert.match(section(page, 'dead-title'), new RegExp(dead!.id));
    assert.match(page, /<input id="filter-user" name="user" maxlength="64" value="ann"/);
    assert.match(page, /<input id="filter-q" type="search" name="q" maxlength="200" value="COFFEE"/);
    assert.match(scheduled, /<span class="count">1<\/span>/, 'a filtered list counts what it shows');
    // one status: the other lists are left out
    const deadOnly = (await t.request('GET', '/?show=dead')).body;
    assert.ok(!deadOnly.includes('aria-labelledby="scheduled-title"') && !deadOnly.includes('aria-labelledby="delivered-title"'));
    assert.match(section(deadOnly, 'dead-title'), new RegExp(dead!.id));
    // a due range, read in the given zone (Berlin: UTC+1 in January)
    const ranged = section((await t.request('GET', '/?dueFrom=2099-01-01T11:30&dueTo=2099-01-02T13:00&timeZone=Europe/Berlin')).body, 'scheduled-title');
    assert.match(ranged, new RegExp(bo!.id));
    assert.doesNotMatch(ranged, new RegExp(`${ann1!.id}|${ann2!.id}`));
    assert.match(section((await t.request('GET', '/?q=nothing-like-this')).body, 'scheduled-title'), /Nothing matches the filters\./);
  });

  it('answers a filter it cannot read with 400, saying which, never echoing it into the notice', async () => {
    await using t = await startTestDispatcher();
    await t.schedule({ username: 'u', message: 'still listed', scheduledAt: '2099-01-01T00:00:00Z' });
    const bad = await t.request('GET', '/?dueFrom=<b>yesterday</b>');
    assert.equal(bad.statusCode, 400);
    assert.match(bad.body, /<div class="notice error" role="status">The &quot;due from&quot; time is not a date and time/);
    assert.ok(!bad.body.includes('<b>yesterday'));
    assert.match(bad.body, /still listed/, 'the lists, unfiltered');
    const order = await t.request('GET', '/?dueFrom=2099-01-02T00:00&dueTo=2099-01-01T00:00');
    assert.equal(order.statusCode, 400);
    assert.match(order.body, /not later than &quot;due from&quot;/);
    assert.equal((await t.request('GET', '/?show=everything')).statusCode, 400);
    const cursor = await t.request('GET', '/?scheduledPage=garbage');
    assert.equal(cursor.statusCode, 400);
    assert.match(cursor.body, /That page of the list does not exist/);
  });

  it('pages each list on its own cursor: next page, and back to the first', async () => {
    await using t = await startTestDispatcher();
    const messages = await t.schedule(...Array.from({ length: 205 }, (_, i) => ({ username: 'u', message: `n${i}`, scheduledAt: new Date(Date.UTC(2099, 0, 1) + i * 60_000).toISOString() })));
    const first = section((await t.request('GET', '/')).body, 'scheduled-title');
    const next = /<a class="button secondary next-page" href="([^"]+)">Next page<\/a>/.exec(first);
    assert.ok(next, 'a next page');
    const href = next[1]!.replaceAll('&amp;', '&');
    assert.match(href, /^\/\?scheduledPage=/);
    const second = section((await t.request('GET', href)).body, 'scheduled-title');
    assert.equal(second.match(/<li /g)?.length, 5);
    assert.ok(second.includes(messages[200]!.id) && second.includes(messages[204]!.id) && !second.includes(messages[199]!.id));
    assert.match(second, /<a class="first-page" href="\/">Back to the first page<\/a>/);
    assert.doesNotMatch(second, /next-page/, 'the last page has no next');
    // the filters go along with the cursor
    const filtered = section((await t.request('GET', '/?user=u')).body, 'scheduled-title');
    assert.match(filtered, /href="\/\?user=u&amp;scheduledPage=/);
    assert.match(filtered, /<span class="count">200\+<\/span>/);
  });
});

describe('a message\'s page', () => {
  it('shows every field and the attempt history: time, outcome, status code or error, latency', async () => {
    await using t = await startTestDispatcher();
    const [m] = await t.schedule({ username: 'hist', message: 'with a past', scheduledAt: '2099-01-01T00:00:00Z', idempotencyKey: 'key-7' });
    await deliverWithHistory(t, m!.id, [
      { outcome: 'retry', httpStatus: 503, error: 'main server answered 503' },
      { outcome: 'retry', error: 'timeout after 10000 ms' },
      { outcome: 'delivered', httpStatus: 201 },
    ]);
    const response = await t.request('GET', `/ui/messages/${m!.id}`);
    assert.equal(response.statusCode, 200);
    const page = response.body;
    assert.match(page, /<span class="badge delivered">delivered<\/span>/);
    assert.match(page, /key-7/);
    const history = page.slice(page.indexOf('id="attempts-card"'));
    assert.equal(history.match(/<tr>/g)?.length, 4, 'a header and three attempts');
    assert.match(history, /<span class="count">3<\/span>/);
    assert.match(history, /HTTP 503<\/code> <span class="error-text">main server answered 503/);
    assert.match(history, /timeout after 10000 ms/);
    assert.match(history, /HTTP 201/);
    assert.equal(history.match(/20 ms/g)?.length, 3, 'latency of each');
    const missing = await t.request('GET', '/ui/messages/01890000-0000-7000-8000-000000000000');
    assert.equal(missing.statusCode, 404);
    assert.match(missing.body, /No such message/);
  });

  it('edits the time (read in the form\'s zone) and the text, with a notice; refuses a past or unreadable time and empty text with 400', async () => {
    await using t = await startTestDispatcher();
    const [m] = await t.schedule({ username: 'u', message: 'old text', scheduledAt: '2099-01-01T00:00:00Z' });
    const moved = await t.request('POST', `/ui/messages/${m!.id}/reschedule`, form([['time', '2099-06-01T12:30:15'], ['timeZone', 'Europe/Berlin']]));
    assert.equal(moved.statusCode, 303);
    const at = Date.parse('2099-06-01T10:30:15Z');
    assert.equal(moved.headers.location, `/ui/messages/${m!.id}?notice=rescheduled&at=${at}`);
    assert.equal((await t.dispatcher.store.get(m!.id))!.scheduledAt, at);
    assert.match((await t.request('GET', moved.headers.location as string)).body, /notice ok.*Time changed: it will be delivered at <time datetime="2099-06-01T10:30:15.000Z">/);

    for (const time of ['2001-01-01T00:00', 'not a time', '']) {
      const refused = await t.request('POST', `/ui/messages/${m!.id}/reschedule`, form([['time', time], ['timeZone', 'UTC']]));
      assert.equal(refused.statusCode, 400, time);
      assert.match(refused.body, /<p class="field-error" role="alert">Not changed: /);
    }
    assert.equal((await t.dispatcher.store.get(m!.id))!.scheduledAt, at, 'unchanged');

    const edited = await t.request('POST', `/ui/messages/${m!.id}/edit`, form([['message', 'new\r\ntext']]));
    assert.equal(edited.headers.location, `/ui/messages/${m!.id}?notice=edited`);
    assert.equal((await t.dispatcher.store.get(m!.id))!.message, 'new\ntext');
    const empty = await t.request('POST', `/ui/messages/${m!.id}/edit`, form([['message', ' \u200b ']]));
    assert.equal(empty.statusCode, 400);
    assert.match(empty.body, /Not changed: message/);

    await forceStatus(t.dispatcher, m!.id, 'delivered');
    const late = await t.request('POST', `/ui/messages/${m!.id}/edit`, form([['message', 'too late']]));
    assert.equal(late.headers.location, `/ui/messages/${m!.id}?notice=too-late&status=delivered`);
  });

  it('its buttons come back to it; a cancel goes back to the list, the filters kept', async () => {
    await using t = await startTestDispatcher();
    const [dead, scheduled] = await t.schedule(
      { username: 'u', message: 'dead', scheduledAt: '2099-01-01T00:00:00Z' },
      { username: 'u', message: 'cancel me', scheduledAt: '2099-01-02T00:00:00Z' },
    );
    await forceStatus(t.dispatcher, dead!.id, 'dead');
    const retried = await t.request('POST', `/ui/messages/${dead!.id}/retry`, form([['back', 'detail']]));
    assert.equal(retried.headers.location, `/ui/messages/${dead!.id}?notice=retried`);
    const cancelled = await t.request('POST', `/ui/messages/${scheduled!.id}/cancel`, form([['back', 'detail']]));
    assert.equal(cancelled.headers.location, '/?notice=cancelled');
    const fromView = await t.request('POST', `/ui/messages/${dead!.id}/cancel`, form([['view', '/?show=scheduled&user=u&evil=https://x']]));
    assert.equal(fromView.headers.location, '/?show=scheduled&user=u&notice=cancelled');
    const offsite = await t.request('POST', '/ui/messages/01890000-0000-7000-8000-000000000000/cancel', form([['view', 'https://evil.example/']]));
    assert.equal(offsite.headers.location, '/?notice=not-found');
  });
});

describe('bulk actions on dead letters', () => {
  it('retries the ticked dead letters and says how many, skipping any that are no longer dead', async () => {
    await using t = await startTestDispatcher();
    const [a, b, c, live] = await t.schedule(...['a', 'b', 'c', 'live'].map((message) => ({ username: 'u', message, scheduledAt: '2099-01-01T00:00:00Z' })));
    for (const m of [a, b, c]) await forceStatus(t.dispatcher, m!.id, 'dead');
    const page = section((await t.request('GET', '/')).body, 'dead-title');
    assert.match(page, /<form id="bulk-dead" class="bulk" method="post" action="\/ui\/dead\/retry" data-one="dead letter" data-many="dead letters">/);
    assert.match(page, new RegExp(`<input type="checkbox" class="pick" name="id" value="${a!.id}" form="bulk-dead"`));
    const response = await t.request('POST', '/ui/dead/retry', form([['view', '/?show=dead'], ['id', a!.id], ['id', b!.id], ['id', live!.id]]));
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, '/?show=dead&notice=bulk-retried&done=2&skipped=1');
    assert.deepEqual(await Promise.all([a, b, c, live].map(async (m) => (await t.dispatcher.store.get(m!.id))!.status)), ['scheduled', 'scheduled', 'dead', 'scheduled']);
    assert.match((await t.request('GET', response.headers.location as string)).body,
      /<div class="notice ok" role="status">2 dead letters scheduled again: being delivered now\. 1 skipped: no longer dead letters/);
  });

  it('discards only ticked dead letters, never a message scheduled again meanwhile; nothing ticked says so', async () => {
    await using t = await startTestDispatcher();
    const [a, b, again] = await t.schedule(...['a', 'b', 'again'].map((message) => ({ username: 'u', message, scheduledAt: '2099-01-01T00:00:00Z' })));
    for (const m of [a, b, again]) await forceStatus(t.dispatcher, m!.id, 'dead');
    await t.dispatcher.store.retry(again!.id, Date.now() + 3_600_000 * 24 * 365 * 50);
    const response = await t.request('POST', '/ui/dead/discard', form([['id', a!.id], ['id', again!.id], ['id', b!.id]]));
    assert.equal(response.headers.location, '/?notice=bulk-discarded&done=2&skipped=1');
    assert.equal(await t.dispatcher.store.get(a!.id), undefined);
    assert.equal(await t.dispatcher.store.get(b!.id), undefined);
    assert.equal((await t.dispatcher.store.get(again!.id))!.status, 'scheduled');
    const none = await t.request('POST', '/ui/dead/discard', form([['view', '/']]));
    assert.equal(none.headers.location, '/?notice=none-selected');
    assert.match((await t.request('GET', '/?notice=none-selected')).body, /Nothing selected: tick the dead letters/);
  });

  it('are refused from another site and without the token', async () => {
    await using t = await startTestDispatcher({ apiToken: 'tok' });
    const [m] = await t.schedule({ username: 'u', message: 'x', scheduledAt: '2099-01-01T00:00:00Z' });
    await forceStatus(t.dispatcher, m!.id, 'dead');
    const auth = { authorization: basic('tok') };
    for (const path of ['/ui/dead/retry', '/ui/dead/discard', `/ui/messages/${m!.id}/edit`, `/ui/messages/${m!.id}/reschedule`]) {
      assert.equal((await t.request('POST', path, { ...form([['id', m!.id]]) })).statusCode, 401, path);
      const cross = await t.request('POST', path, { body: `id=${m!.id}`, headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'cross-site' } });
      assert.equal(cross.statusCode, 403, path);
    }
    assert.equal((await t.request('GET', `/ui/messages/${m!.id}`)).statusCode, 401);
    assert.equal((await t.dispatcher.store.get(m!.id))!.status, 'dead');
  });
});

describe('expired messages on the page', () => {
  const expiredError = 'not sent: past its deliver-by, 2099-01-01T01:00:00.000Z';

  it('lists them in a card of their own: when due, the deliver-by, why, Retry and Discard; counted in the overview and a status to show', async () => {
    await using t = await startTestDispatcher();
    const [late, dead] = await t.schedule(
      { username: 'eli', message: 'too late to matter', scheduledAt: '2099-01-01T00:00:00Z', deliverBy: '2099-01-01T01:00:00Z' },
      { username: 'eli', message: 'refused', scheduledAt: '2099-01-02T00:00:00Z' },
    );
    await forceStatus(t.dispatcher, late!.id, 'expired', { error: expiredError });
    await forceStatus(t.dispatcher, dead!.id, 'dead');
    const page = (await t.request('GET', '/')).body;
    const expired = section(page, 'expired-title');
    assert.match(expired, /<h2 id="expired-title">Expired <span class="count">1<\/span><\/h2>/);
    assert.match(expired, /too late to matter/);
    assert.match(expired, /<span class="badge expired">expired<\/span>/);
    assert.match(expired, /<span>scheduled for <time datetime="2099-01-01T00:00:00.000Z">/);
    assert.match(expired, /<span>deliver by <time datetime="2099-01-01T01:00:00.000Z">[^<]*<\/time><\/span><span>never sent<\/span>/);
    assert.match(expired, new RegExp(`Why: <code>${expiredError}</code>`));
    assert.match(expired, new RegExp(`action="/ui/messages/${late!.id}/retry"`));
    assert.match(expired, new RegExp(`action="/ui/messages/${late!.id}/discard"`));
    assert.match(expired, /<form id="bulk-expired" class="bulk" method="post" action="\/ui\/expired\/retry" data-one="expired message" data-many="expired messages">/);
    assert.match(expired, new RegExp(`<input type="checkbox" class="pick" name="id" value="${late!.id}" form="bulk-expired"`));
    assert.match(expired, /id="bulk-discard-expired" formaction="\/ui\/expired\/discard"/);
    assert.doesNotMatch(expired, /refused/, 'a dead letter is not expired');
    assert.doesNotMatch(section(page, 'dead-title'), /too late to matter/);
    assert.match(section(page, 'overview-title'), /<a class="stat expired" href="\/\?show=expired"><span class="stat-n">1<\/span><span class="stat-label">expired unsent<\/span><\/a>/);
    assert.match(page, /<option value="expired">Expired<\/option>/);
    const only = await t.request('GET', '/?show=expired');
    assert.equal(only.statusCode, 200);
    assert.ok(!only.body.includes('aria-labelledby="dead-title"') && !only.body.includes('aria-labelledby="scheduled-title"'));
    assert.match(section(only.body, 'expired-title'), new RegExp(late!.id));
    assert.match(only.body, /<option value="expired" selected>Expired<\/option>/);
    assert.match(section((await t.request('GET', '/?show=expired&user=nobody')).body, 'expired-title'), /Nothing matches the filters\./);
  });

  it('Retry and Discard say it was an expired message, from the list and from its page', async () => {
    await using t = await startTestDispatcher();
    const [a, b] = await t.schedule(
      { username: 'u', message: 'replay me', scheduledAt: '2099-01-01T00:00:00Z', deliverBy: '2099-01-01T01:00:00Z' },
      { username: 'u', message: 'drop me', scheduledAt: '2099-01-01T00:00:00Z' },
    );
    await forceStatus(t.dispatcher, a!.id, 'expired', { error: expiredError });
    await forceStatus(t.dispatcher, b!.id, 'expired', { error: expiredError });
    const detail = (await t.request('GET', `/ui/messages/${a!.id}`)).body;
    assert.match(detail, /<span class="badge expired">expired<\/span>/);
    assert.match(detail, /<dt>Deliver by<\/dt><dd>deliver by <time datetime="2099-01-01T01:00:00.000Z">/);
    assert.match(detail, new RegExp(`action="/ui/messages/${a!.id}/retry"`));
    const retried = await t.request('POST', `/ui/messages/${a!.id}/retry`, form([['view', '/?show=expired']]));
    assert.equal(retried.headers.location, '/?show=expired&notice=retried&list=expired');
    const stored = (await t.dispatcher.store.get(a!.id))!;
    assert.equal(stored.status, 'scheduled');
    assert.equal(stored.deliverBy, null, 'a replay drops its own deliver-by');
    assert.match((await t.request('GET', retried.headers.location as string)).body, /notice ok" role="status">Expired message scheduled again: it is being delivered now, past its deliver-by\./);
    const discarded = await t.request('POST', `/ui/messages/${b!.id}/discard`, form([['back', 'detail']]));
    assert.equal(discarded.headers.location, '/?notice=discarded&list=expired');
    assert.equal(await t.dispatcher.store.get(b!.id), undefined);
    assert.match((await t.request('GET', discarded.headers.location as string)).body, /Expired message discarded: it will not be delivered or retried\./);
    // a dead letter's notices are as they were
    assert.match((await t.request('GET', '/?notice=retried')).body, /Dead letter scheduled again: it is being delivered now\./);
    assert.match((await t.request('GET', '/?notice=not-dead&status=delivered')).body, /Only dead letters and expired messages can be retried; that message is delivered\./);
  });

  it('bulk retry and discard take only the ticked messages still expired, and say how many', async () => {
    await using t = await startTestDispatcher();
    const [a, b, dead, live] = await t.schedule(...['a', 'b', 'dead', 'live'].map((message) => ({ username: 'u', message, scheduledAt: '2099-01-01T00:00:00Z' })));
    for (const m of [a, b]) await forceStatus(t.dispatcher, m!.id, 'expired', { error: expiredError });
    await forceStatus(t.dispatcher, dead!.id, 'dead');
    const retried = await t.request('POST', '/ui/expired/retry', form([['view', '/?show=expired'], ['id', a!.id], ['id', dead!.id], ['id', live!.id]]));
    assert.equal(retried.headers.location, '/?show=expired&notice=bulk-retried&done=1&skipped=2&list=expired');
    assert.deepEqual(await Promise.all([a, b, dead, live].map(async (m) => (await t.dispatcher.store.get(m!.id))!.status)), ['scheduled', 'expired', 'dead', 'scheduled']);
    assert.match((await t.request('GET', retried.headers.location as string)).body,
      /1 expired message scheduled again: being delivered now\. 2 skipped: no longer expired messages/);
    const discarded = await t.request('POST', '/ui/expired/discard', form([['id', b!.id], ['id', dead!.id]]));
    assert.equal(discarded.headers.location, '/?notice=bulk-discarded&done=1&skipped=1&list=expired');
    assert.equal(await t.dispatcher.store.get(b!.id), undefined);
    assert.equal((await t.dispatcher.store.get(dead!.id))!.status, 'dead', 'a dead letter ticked among them is left alone');
    const none = await t.request('POST', '/ui/expired/discard', form([['view', '/']]));
    assert.equal(none.headers.location, '/?notice=none-selected&list=expired');
    assert.match((await t.request('GET', none.headers.location as string)).body, /Nothing selected: tick the expired messages to retry or discard first\./);
    assert.equal((await t.request('POST', '/ui/expired/retry', { headers: { 'sec-fetch-site': 'cross-site' } })).statusCode, 403);
  });

  it('shows a target\'s deliver-by window, and on a message\'s page the deliver-by it gives', async () => {
    await using t = await startTestDispatcher({ mainDeliverWithin: '1h' });
    const [m] = await t.schedule({ username: 'u', message: 'window', scheduledAt: '2099-01-01T00:00:00Z' });
    const targets = section((await t.request('GET', '/')).body, 'targets-title');
    assert.match(targets, /<tr id="t-default">[\s\S]*<td>expires after 1h<\/td><\/tr>/);
    const detail = (await t.request('GET', `/ui/messages/${m!.id}`)).body;
    assert.match(detail, /<dt>Deliver by<\/dt><dd>deliver by <time datetime="2099-01-01T01:00:00.000Z">[^<]*<\/time> \(its target&#39;s 1h\)<\/dd>/);
    await using plain = await startTestDispatcher();
    const [n] = await plain.schedule({ username: 'u', message: 'no window', scheduledAt: '2099-01-01T00:00:00Z' });
    assert.match((await plain.request('GET', `/ui/messages/${n!.id}`)).body, /<dt>Deliver by<\/dt><dd><span class="muted">—<\/span>/);
    assert.match(section((await plain.request('GET', '/')).body, 'targets-title'), /<td>none<\/td><\/tr>/);
  });

  it('the scheduled list shows a message\'s own deliver-by', async () => {
    await using t = await startTestDispatcher();
    await t.schedule({ username: 'u', message: 'by noon', scheduledAt: '2099-01-01T09:00:00Z', deliverBy: '2099-01-01T12:00:00Z' });
    assert.match(section((await t.request('GET', '/')).body, 'scheduled-title'), /<span>deliver by <time datetime="2099-01-01T12:00:00.000Z">/);
  });
});

describe('the deliveries chart', () => {
  it('stacks the expired with the other outcomes and names them in each minute\'s tooltip and the summary', () => {
    const minute = (start: number, counts: Partial<Record<'delivered' | 'retry' | 'dead' | 'expired', number>>) =>
      ({ start, delivered: 0, retry: 0, dead: 0, expired: 0, latenessCount: 0, latenessSumMs: 0, latenessMaxMs: 0, ...counts });
    const chart = String(deliveriesChart([minute(0, { delivered: 3 }), minute(60_000, { delivered: 1, expired: 4 })]));
    assert.match(chart, /<title>this minute: 1 delivered, 0 to retry, 0 dead, 4 expired<\/title>/);
    assert.match(chart, /<rect [^>]*class="expired"\/>/);
    assert.match(chart, /Last hour: 4 delivered, 0 failed and retried, 0 dead, 4 expired unsent; busiest minute 5\./);
    assert.match(chart, /<i class="expired"><\/i>expired/);
  });
});
