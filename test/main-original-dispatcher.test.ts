import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mainConfig } from '../src/config.ts';
import { closedPortUrl, startTestMain, type TestMain } from './support/main.ts';
import { phpJsonEncode, startOriginalDispatcher, type OriginalMode } from './support/original-dispatcher.ts';
import { startReceiver } from './support/receiver.ts';

/**
 * The main server in front of an original PHP dispatcher
 * (--dispatcher-protocol legacy), against a stand-in that answers as the
 * original does (test/support/original-dispatcher.ts).
 */

const LEGACY = { dispatcherProtocol: 'legacy' } as const;

/** The page a browser shows after a form post: every form post redirects (303) to the page with its notice. */
async function pageAfter(t: TestMain, response: { statusCode: number; headers: Record<string, unknown>; body: string }) {
  assert.equal(response.statusCode, 303, response.body);
  const location = response.headers.location as string;
  assert.match(location, /^\/\?/);
  return t.request('GET', location);
}

describe('--dispatcher-protocol', () => {
  it('is json unless set, by flag or PSCHED_DISPATCHER_PROTOCOL, and refuses anything else', () => {
    assert.equal(mainConfig({}, {}).dispatcherProtocol, 'json');
    assert.equal(mainConfig({}, { PSCHED_DISPATCHER_PROTOCOL: 'legacy' }).dispatcherProtocol, 'legacy');
    assert.equal(mainConfig({ dispatcherProtocol: 'json' }, { PSCHED_DISPATCHER_PROTOCOL: 'legacy' }).dispatcherProtocol, 'json');
    assert.throws(() => mainConfig({ dispatcherProtocol: 'php' }, {}), /--dispatcher-protocol must be json or legacy/);
  });
});

describe('scheduling on an original dispatcher', () => {
  it("forwards the captured example byte for byte, as the original main server did, and answers in the original main server's shape", async () => {
    await using original = await startOriginalDispatcher();
    await using t = await startTestMain({ ...LEGACY, dispatcherUrls: original.url });
    const response = await t.form('/scheduleMessage.php', { username: 'Ann', message: 'C2 future: see you in 30 s', time: '2026-12-02T16:30:00' });
    assert.equal(response.statusCode, 200, response.body);

    assert.equal(original.requests.length, 1);
    const [request] = original.requests;
    assert.equal(request!.method, 'POST');
    assert.equal(request!.path, '/scheduleMessage.php');
    assert.equal(request!.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(request!.body, 'username=Ann&message=C2%2Bfuture%253A%2Bsee%2Byou%2Bin%2B30%2Bs&time=2026-12-02%2B16%253A30%253A00');
    assert.deepEqual(original.stored, [{ username: 'Ann', message: 'C2 future: see you in 30 s', time: '2026-12-02 16:30:00' }]);

    assert.deepEqual(response.json(), {
      received: { username: 'Ann', message: 'C2 future: see you in 30 s', time: '2026-12-02T16:30:00' },
      result: 'Success',
      externalResult: { received: { username: 'Ann', message: 'C2 future: see you in 30 s', time: '2026-12-02 16:30:00' }, result: 'Success' },
    });
  });

  it('hard texts arrive exactly, once the original has decoded them twice', async () => {
    await using original = await startOriginalDispatcher();
    await using t = await startTestMain({ ...LEGACY, dispatcherUrls: original.url });
    const texts = [
      '1+1=2 & 100% sure, %41',
      'She said "hi" and it\'s fine',
      '<b>markup</b> &amp; <script>alert(1)</script>',
      'Merry Christmas 🎄 👩‍👩‍👧',
      'Crème brûlée à Zürich, ñandú, Ωμέγα',
      'x',
      'line one\nline two\ttab ~!*()\'',
    ];
    for (const text of texts) {
      const response = await t.request('POST', '/v1/scheduled', { body: { username: text, message: text, scheduledAt: '2099-01-01T09:30:00Z' } });
      assert.equal(response.statusCode, 201, response.body);
      assert.deepEqual(original.stored.at(-1), { username: text, message: text, time: '2099-01-01 09:30:00' }, text);
    }
    assert.equal(original.stored.length, texts.length);
  });

  it("sends the time as wall-clock time in the main server's --timezone, whatever zone the client gave", async () => {
    await using original = await startOriginalDispatcher();
    await using t = await startTestMain({ ...LEGACY, dispatcherUrls: original.url, timeZone: 'Europe/Berlin' });
    await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'instant', scheduledAt: '2099-07-01T10:00:00Z' } });
    await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'New York', scheduledAt: '2099-01-01 08:15:30', timeZone: 'America/New_York' } });
    await t.form('/scheduleMessage.php', { username: 'a', message: 'page in Tokyo', time: '2099-08-01T13:30', timezone: 'Asia/Tokyo' });
    assert.deepEqual(original.stored.map((m) => m.time), ['2099-07-01 12:00:00', '2099-01-01 14:15:30', '2099-08-01 06:30:00']);
  });

  it('answers POST /v1/scheduled 201 with what is known: no id, the time, the dispatcher and its own answer', async () => {
    await using original = await startOriginalDispatcher();
    await using t = await startTestMain({ ...LEGACY, dispatcherUrls: original.url });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'Ann', message: 'Merry Christmas 🎄', scheduledAt: '2099-12-24T09:00:00Z' } });
    assert.equal(response.statusCode, 201, response.body);
    assert.deepEqual(response.json(), {
      id: null,
      status: 'scheduled',
      username: 'Ann',
      message: 'Merry Christmas 🎄',
      scheduledAt: '2099-12-24T09:00:00.000Z',
      idempotencyKey: null,
      dispatcher: original.url,
      externalResult: { received: { username: 'Ann', message: 'Merry Christmas 🎄', time: '2099-12-24 09:00:00' }, result: 'Success' },
    });
  });

  it('refuses an idempotencyKey (the original cannot dedupe) before sending anything', async () => {
    await using original = await startOriginalDispatcher();
    await using t = await startTestMain({ ...LEGACY, dispatcherUrls: original.url });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'b', scheduledAt: '2099-01-01T00:00:00Z', idempotencyKey: 'k1' } });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.field, 'idempotencyKey');
    assert.match(response.json().error.message, /may be stored twice/);
    assert.equal(original.requests.length, 0);
  });

  it('refuses a deliverBy (the original would send it however late) before sending anything', async () => {
    await using original = await startOriginalDispatcher();
    await using t = await startTestMain({ ...LEGACY, dispatcherUrls: original.url });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'b', scheduledAt: '2099-01-01T00:00:00Z', deliverBy: '2099-01-01T01:00:00Z' } });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.field, 'deliverBy');
    assert.match(response.json().error.message, /^deliverBy cannot be honoured: the original dispatcher at \S+ takes none, and would deliver it however late/);
    assert.equal(original.requests.length, 0);
    // null is no deliver-by: accepted
    const none = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'b', scheduledAt: '2099-01-01T00:00:00Z', deliverBy: null } });
    assert.equal(none.statusCode, 201, none.body);
  });

  it('opens a connection per message and closes it after the answer, as curl did (Apache drops idle keep-alive connections)', async () => {
    await using original = await startOriginalDispatcher();
    await using t = await startTestMain({ ...LEGACY, dispatcherUrls: original.url });
    for (const message of ['first', 'second', 'third']) {
      const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message, scheduledAt: '2099-01-01T00:00:00Z' } });
      assert.equal(response.statusCode, 201, response.body);
    }
    assert.equal(new Set(original.requests.map((r) => r.remotePort)).size, 3, 'three connections');
    assert.ok(original.requests.every((r) => r.headers.connection === 'close'), 'each asks for its connection to be closed');
  });

  it('tries the next dispatcher when one refuses the connection', async () => {
    const down = await closedPortUrl();
    await using original = await startOriginalDispatcher();
    await using t = await startTestMain({ ...LEGACY, dispatcherUrls: `${down},${original.url}` });
    for (let i = 0; i < 2; i++) {
      const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: `m${i}`, scheduledAt: '2099-01-01T00:00:00Z' } });
      assert.equal(response.statusCode, 201, response.body);
      assert.equal(response.json().dispatcher, original.url);
    }
    assert.deepEqual(original.stored.map((m) => m.message), ['m0', 'm1']);
  });
});

describe('answers of an original dispatcher that are not its Success', () => {
  const cases: { what: string; mode?: OriginalMode; path?: string; oneCharacter?: boolean; says: RegExp; externalResult: unknown }[] = [
    { what: 'an HTML page with 200', mode: 'html', says: /answered a page that is not its JSON answer \("It works!"\)/, externalResult: null },
    { what: 'an HTML 404 for an unknown path', path: '/not-php', says: /answered HTTP 404 with a page that is not its JSON answer \("404 Not Found Not Found/, externalResult: null },
    { what: 'an empty body', mode: 'empty', says: /answered an empty body/, externalResult: null },
    {
      what: 'its Failure (the one-character defect)', oneCharacter: true, says: /answered "Failure": Invalid Post\. Expected three non-zero strings/,
      externalResult: { received: { username: 'a', message: 'b', time: '2099-01-01 00:00:00' }, result: 'Failure', failure: 'Invalid Post. Expected three non-zero strings (username, message, time).' },
    },
  ];
  for (const c of cases) {
    it(`${c.what} is "not scheduled" on every entry point, never Success`, async () => {
      await using original = await startOriginalDispatcher();
      if (c.mode) original.mode = c.mode;
      original.refuseOneCharacter = c.oneCharacter ?? false;
      const url = original.url + (c.path ?? '');
      await using t = await startTestMain({ ...LEGACY, dispatcherUrls: url });

      const api = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'b', scheduledAt: '2099-01-01T00:00:00Z' } });
      assert.equal(api.statusCode, 502, api.body);
      assert.equal(api.json().error.code, 'not_scheduled');
      assert.ok(api.json().error.message.startsWith(`Not scheduled: the original dispatcher at ${url} answered `), api.json().error.message);
      assert.match(api.json().error.message, c.says);

      const php = await t.form('/scheduleMessage.php', { username: 'a', message: 'b', time: '2099-01-01T00:00' });
      assert.equal(php.statusCode, 502, php.body);
      assert.equal(php.json().result, 'Failure');
      assert.match(php.json().failure, c.says);
      assert.deepEqual(php.json().externalResult, c.externalResult);

      const ui = await pageAfter(t, await t.form('/ui/schedule', { username: 'a', message: 'b', time: '2099-01-01T00:00', timezone: 'UTC' }));
      assert.match(ui.body, /<div id="notice" class="notice error" role="status">Not scheduled: the original dispatcher at /);
      assert.doesNotMatch(ui.body, /Scheduled for/);

      assert.equal(original.requests.length, 3, 'each sent once');
      assert.deepEqual(original.stored, []);
    });
  }
});

describe('an original dispatcher that does not answer', () => {
  for (const mode of ['hang', 'drop'] as const) {
    it(`${mode === 'hang' ? 'a timeout' : 'a connection lost'} after sending is "may or may not be scheduled", never sent again to anyone`, async () => {
      await using original = await startOriginalDispatcher();
      original.mode = mode;
      await using other = await startReceiver();
      await using t = await startTestMain({ ...LEGACY, dispatcherUrls: `${original.url},${other.url}` }, { dispatcherTimeoutMs: 300 });

      const api = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'b', scheduledAt: '2099-01-01T00:00:00Z' } });
      assert.equal(api.statusCode, 502, api.body);
      assert.equal(api.json().error.code, 'outcome_unknown');
      assert.match(api.json().error.message, /may or may not be stored\. The original dispatcher takes no idempotency key: sending it again may store it twice/);
      assert.ok(api.json().error.message.includes(original.url));
      assert.equal(original.requests.length, 1, 'sent once, not asked again');
      assert.equal(other.requests.length, 0, 'not sent to the next dispatcher');

      // the round-robin turn passed: start again on the original for each entry point
      await t.request('POST', '/v1/scheduled', { body: { username: 'turn', message: 'turn', scheduledAt: '2099-01-01T00:00:00Z' } });
      const php = await t.form('/scheduleMessage.php', { username: 'a', message: 'b', time: '2099-01-01T00:00' });
      assert.equal(php.statusCode, 502, php.body);
      assert.equal(php.json().result, 'Unknown');
      assert.match(php.json().message, /may or may not be scheduled\. The original dispatcher takes no idempotency key: sending the same form again may post it twice/);

      await t.request('POST', '/v1/scheduled', { body: { username: 'turn', message: 'turn', scheduledAt: '2099-01-01T00:00:00Z' } });
      const ui = await pageAfter(t, await t.form('/ui/schedule', { username: 'a', message: 'b', time: '2099-01-01T00:00', timezone: 'UTC' }));
      assert.match(ui.body, /May or may not be scheduled: .*The original dispatcher cannot tell a second submit from a new message/);
      assert.doesNotMatch(ui.body, /Submitting this form again is safe/);

      assert.equal(original.requests.length, 3);
      assert.ok(other.requests.every((r) => r.body.startsWith('username=turn&')), 'only the turns went to the other dispatcher');
    });
  }
});

describe('what an original dispatcher cannot do', () => {
  it('listing, changing and cancelling answer 501 not_supported naming the dispatcher, and send nothing', async () => {
    await using original = await startOriginalDispatcher();
    await using t = await startTestMain({ ...LEGACY, dispatcherUrls: original.url });
    const calls: [string, string, unknown, string][] = [
      ['GET', '/v1/scheduled', undefined, 'list'],
      ['PATCH', '/v1/scheduled/x', { message: 'changed' }, 'change'],
      ['DELETE', '/v1/scheduled/x', undefined, 'cancel'],
    ];
    for (const [method, path, body, verb] of calls) {
      const response = await t.request(method, path, body === undefined ? {} : { body });
      assert.equal(response.statusCode, 501, `${method} ${path}: ${response.body}`);
      assert.equal(response.json().error.code, 'not_supported');
      assert.equal(response.json().error.message.startsWith(`The original dispatcher at ${original.url} cannot ${verb} messages`), true, response.json().error.message);
    }
    assert.equal(original.requests.length, 0);
  });

  it('the page renders with a note in place of the scheduled list; composing schedules; reschedule and cancel say why not', async () => {
    await using original = await startOriginalDispatcher();
    await using t = await startTestMain({ ...LEGACY, dispatcherUrls: original.url, timeZone: 'Europe/Berlin' });
    const page = await t.request('GET', '/');
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /id="compose"/);
    assert.match(page.body, new RegExp(`id="scheduled-problem">The original dispatcher at ${original.url.replaceAll('.', '\\.')} cannot list messages`));

    const composed = await t.form('/ui/schedule', { username: 'Ann', message: 'from the page', time: '2099-12-24T09:00', timezone: 'Europe/Berlin', idempotencyKey: 'form-key' });
    assert.match((await pageAfter(t, composed)).body, /Scheduled for 2099-12-24 09:00 \(Europe\/Berlin\)\./);
    assert.deepEqual(original.stored, [{ username: 'Ann', message: 'from the page', time: '2099-12-24 09:00:00' }]);

    for (const action of ['reschedule', 'cancel']) {
      const response = await pageAfter(t, await t.form(`/ui/scheduled/x/${action}`, { time: '2099-12-25T09:00', timezone: 'UTC' }));
      assert.match(response.body, /The original dispatcher at .* cannot (change|cancel) messages/);
    }
    assert.equal(original.requests.length, 1);
  });
});

describe('the stand-in', () => {
  it('writes JSON as PHP json_encode does', () => {
    assert.equal(phpJsonEncode({ a: 'x/y é 🎄' }), '{"a":"x\\/y \\u00e9 \\ud83c\\udf84"}');
  });
});
