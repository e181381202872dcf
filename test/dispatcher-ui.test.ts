import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forceStatus, startTestDispatcher } from './support/dispatcher.ts';

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
