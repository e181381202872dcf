import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../src/clock.ts';
import { startReceiver, type RecordedRequest } from './support/receiver.ts';
import { startTestDispatcher } from './support/dispatcher.ts';
import { originalEndpointReads } from './support/original.ts';

/** Exactly what `curl --data "…"` sends: the text as typed, form-encoded content type. */
const SEED_FORM = "username=Curl&message=I'm scheduling a message!&time=2014-08-01 13:30:00";
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();

/** The original main server's answer to postMessage.php: each field read as urldecode($_POST[field]). */
function originalMainAnswer(request: RecordedRequest) {
  const read = (field: string) => originalEndpointReads(request.body, field);
  return { status: 200, body: { received: { username: read('username'), message: read('message') }, result: 'Success' } };
}

describe('POST /scheduleMessage.php', () => {
  it('takes the seed\'s curl example and answers the original\'s JSON', async () => {
    await using t = await startTestDispatcher();
    const response = await t.request('POST', '/scheduleMessage.php', { body: SEED_FORM, headers: FORM });
    assert.equal(response.statusCode, 200);
    assert.equal(response.body, JSON.stringify({
      received: { username: 'Curl', message: "I'm scheduling a message!", time: '2014-08-01 13:30:00' },
      result: 'Success',
    }));
    const [stored] = await t.dispatcher.store.list({ limit: 10 });
    assert.equal(stored!.username, 'Curl');
    assert.equal(stored!.message, "I'm scheduling a message!");
    assert.equal(stored!.scheduledAt, Date.UTC(2014, 7, 1, 13, 30, 0));
  });

  it('reads the time in the configured zone, with T and without seconds too', async () => {
    await using t = await startTestDispatcher({ timeZone: 'Europe/Berlin' });
    const response = await t.request('POST', '/scheduleMessage.php', { body: form({ username: 'a', message: 'b', time: '2014-08-01T13:30' }), headers: FORM });
    assert.equal(response.statusCode, 200);
    const [stored] = await t.dispatcher.store.list({ limit: 10 });
    assert.equal(stored!.scheduledAt, Date.UTC(2014, 7, 1, 11, 30, 0));
  });

  it('accepts a one-character message (the original refused it)', async () => {
    await using t = await startTestDispatcher();
    const response = await t.request('POST', '/scheduleMessage.php', { body: form({ username: 'a', message: 'b', time: '2030-01-01 00:00:00' }), headers: FORM });
    assert.equal(response.statusCode, 200);
    assert.equal((response.json() as { result: string }).result, 'Success');
  });

  it('answers 400 with the original\'s failure when a field is missing or empty', async () => {
    await using t = await startTestDispatcher();
    const cases: [string, object][] = [
      ['username=Curl&message=hi', { username: 'Curl', message: 'hi', time: null }],
      ['username=&message=hi&time=2014-08-01 13:30:00', { username: '', message: 'hi', time: '2014-08-01 13:30:00' }],
      ['', { username: null, message: null, time: null }],
      ['username=a&username=b&message=hi&time=2014-08-01 13:30:00', { username: null, message: 'hi', time: '2014-08-01 13:30:00' }],
    ];
    for (const [body, received] of cases) {
      const response = await t.request('POST', '/scheduleMessage.php', { body, headers: FORM });
      assert.equal(response.statusCode, 400, body);
      assert.equal(response.body, JSON.stringify({
        received,
        result: 'Failure',
        failure: 'Invalid Post. Expected three non-zero strings (username, message, time).',
      }));
    }
    assert.equal((await t.dispatcher.store.list({ limit: 10 })).length, 0);
  });

  it('answers 400 with a clear failure for a bad time, an overlong or a blank field, storing nothing', async () => {
    await using t = await startTestDispatcher();
    const badTime = await t.request('POST', '/scheduleMessage.php', { body: form({ username: 'a', message: 'b', time: 'next tuesday' }), headers: FORM });
    assert.equal(badTime.statusCode, 400);
    const timeAnswer = badTime.json() as { received: object; result: string; failure: string };
    assert.deepEqual(timeAnswer.received, { username: 'a', message: 'b', time: 'next tuesday' });
    assert.equal(timeAnswer.result, 'Failure');
    assert.match(timeAnswer.failure, /time must be "YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DDTHH:MM\[:SS\]" \(read in UTC\); got "next tuesday"/);

    const long = await t.request('POST', '/scheduleMessage.php', { body: form({ username: 'a', message: 'x'.repeat(5001), time: '2030-01-01 00:00:00' }), headers: FORM });
    assert.equal(long.statusCode, 400);
    assert.match((long.json() as { failure: string }).failure, /message must be at most 5000 characters/);

    const blank = await t.request('POST', '/scheduleMessage.php', { body: form({ username: ' \u200B\u00A0', message: 'b', time: '2030-01-01 00:00:00' }), headers: FORM });
    assert.equal(blank.statusCode, 400);
    assert.match((blank.json() as { failure: string }).failure, /^Invalid Post\. username must contain a visible character/);

    const huge = await t.request('POST', '/scheduleMessage.php', { body: form({ username: 'a', message: 'x'.repeat(70_000), time: '2030-01-01 00:00:00' }), headers: FORM });
    assert.equal(huge.statusCode, 413);
    assert.deepEqual(huge.json(), { error: { code: 'payload_too_large', message: 'Request body is too large: POST /scheduleMessage.php takes at most 65536 bytes' } });
    assert.equal((await t.dispatcher.store.list({ limit: 10 })).length, 0);
  });

  it('stores markup and quotes exactly, and echoes them back as sent', async () => {
    await using t = await startTestDispatcher();
    const fields = { username: '<b>"Bobby"</b>', message: "'; DROP TABLE messages; -- 😀 <script>alert(1)</script>", time: '2030-01-01 00:00:00' };
    const response = await t.request('POST', '/scheduleMessage.php', { body: form(fields), headers: FORM });
    assert.deepEqual(response.json(), { received: fields, result: 'Success' });
    const [stored] = await t.dispatcher.store.list({ limit: 1 });
    assert.equal(stored!.username, fields.username);
    assert.equal(stored!.message, fields.message);
  });

  it('without a token, refuses form posts a browser marks as coming from another site (403, nothing stored)', async () => {
    await using t = await startTestDispatcher();
    const foreign: Record<string, string>[] = [
      { 'sec-fetch-site': 'cross-site' },
      { origin: 'https://evil.example', host: 'localhost:8081' },
      { 'sec-fetch-site': 'same-site', origin: 'http://localhost:3000', host: 'localhost:8081' },
      { origin: 'null' },
    ];
    for (const headers of foreign) {
      const response = await t.request('POST', '/scheduleMessage.php', { body: SEED_FORM, headers: { ...FORM, ...headers } });
      assert.equal(response.statusCode, 403, JSON.stringify(headers));
      assert.equal((response.json() as { error: { code: string } }).error.code, 'forbidden');
      assert.match((response.json() as { error: { message: string } }).error.message, /Cross-site request refused/);
    }
    assert.equal((await t.dispatcher.store.list({ limit: 10 })).length, 0);
    // a browser on the dispatcher's own origin, and non-browser clients (curl, the original PHP main server) that send neither header
    const own = { 'sec-fetch-site': 'same-origin', origin: 'http://localhost:8081', host: 'localhost:8081' };
    assert.equal((await t.request('POST', '/scheduleMessage.php', { body: SEED_FORM, headers: { ...FORM, ...own } })).statusCode, 200);
    assert.equal((await t.request('POST', '/scheduleMessage.php', { body: SEED_FORM, headers: FORM })).statusCode, 200);
    assert.equal((await t.dispatcher.store.list({ limit: 10 })).length, 2);
  });

  it('needs the bearer token when one is set', async () => {
    await using t = await startTestDispatcher({ apiToken: 'tok' });
    assert.equal((await t.request('POST', '/scheduleMessage.php', { body: SEED_FORM, headers: FORM })).statusCode, 401);
    assert.equal((await t.request('GET', '/cron/checkScheduledMessages.php')).statusCode, 401);
    assert.equal((await t.request('POST', '/scheduleMessage.php', { body: SEED_FORM, headers: FORM, token: 'tok' })).statusCode, 200);
  });
});

describe('GET /cron/checkScheduledMessages.php', () => {
  it('answers exactly as the original when nothing is due: {"externalResult":[]}', async () => {
    await using t = await startTestDispatcher({}, { clock: new FakeClock(Date.now()) });
    await t.dispatcher.engine.start();
    await t.schedule({ username: 'u', message: 'later', scheduledAt: '2099-01-01T00:00:00Z' });
    const response = await t.request('GET', '/cron/checkScheduledMessages.php');
    assert.equal(response.statusCode, 200);
    assert.equal(response.body, '{"externalResult":[]}');
  });

  it('delivers every past-due message to postMessage.php and answers what was posted', async () => {
    await using receiver = await startReceiver();
    receiver.fallback = originalMainAnswer;
    // a fake clock that never moves: only the sweep can start these deliveries
    await using t = await startTestDispatcher({ mainUrl: receiver.url, mainProtocol: 'legacy' }, { clock: new FakeClock(Date.now()) });
    await t.dispatcher.engine.start();
    for (const fields of [{ username: 'Curl', message: "I'm scheduling a message!", time: '2014-08-01 13:30:00' }, { username: 'Ada', message: 'second & last', time: '2015-01-01 00:00:00' }]) {
      assert.equal((await t.request('POST', '/scheduleMessage.php', { body: form(fields), headers: FORM })).statusCode, 200);
    }
    assert.equal(receiver.requests.length, 0);

    const response = await t.request('GET', '/cron/checkScheduledMessages.php');
    assert.equal(response.statusCode, 200);
    const answer = response.json() as {
      externalResult: Record<string, { received: { username: string; message: string }; result: string }>;
      scheduledMessagesPosted: Record<string, { poster_name: string; message: string }>;
      result: string;
    };
    assert.deepEqual(Object.keys(answer), ['externalResult', 'scheduledMessagesPosted', 'result']);
    assert.equal(answer.result, 'Success');
    assert.deepEqual(Object.keys(answer.scheduledMessagesPosted), ['1', '2']);
    assert.deepEqual(
      Object.values(answer.scheduledMessagesPosted).map((p) => `${p.poster_name}: ${p.message}`).sort(),
      ["Ada: second & last", "Curl: I'm scheduling a message!"],
    );
    for (const key of ['1', '2']) {
      // each entry pairs the message with the main server's own answer to it
      assert.deepEqual(answer.externalResult[key], {
        received: { username: answer.scheduledMessagesPosted[key]!.poster_name, message: answer.scheduledMessagesPosted[key]!.message },
        result: 'Success',
      });
    }

    assert.equal(receiver.requests.length, 2);
    for (const request of receiver.requests) {
      assert.equal(request.method, 'POST');
      assert.equal(request.url, '/postMessage.php');
      assert.match(request.headers['content-type'] as string, /^application\/x-www-form-urlencoded/);
    }
    const counts = await t.dispatcher.store.countByStatus();
    assert.equal(counts.delivered, 2);
    assert.equal(counts.scheduled, 0);
  });
});

describe('the seed example over real HTTP', () => {
  it('delivers a past-due message at once', async () => {
    await using receiver = await startReceiver();
    await using t = await startTestDispatcher({ mainUrl: receiver.url });
    const url = await t.dispatcher.listen();
    const sentAt = Date.now();
    const response = await fetch(`${url}/scheduleMessage.php`, { method: 'POST', headers: FORM, body: SEED_FORM });
    assert.equal(response.status, 200);
    assert.equal((await response.json() as { result: string }).result, 'Success');

    const delivery = await receiver.nextRequest();
    assert.equal(delivery.url, '/v1/posts');
    const payload = JSON.parse(delivery.body) as Record<string, unknown>;
    assert.equal(payload.username, 'Curl');
    assert.equal(payload.message, "I'm scheduling a message!");
    assert.equal(payload.scheduledAt, '2014-08-01T13:30:00.000Z');
    assert.equal(delivery.headers['idempotency-key'], payload.id);
    // "at once": no cron minute, no polling interval (generous bound for a loaded 2-core machine)
    assert.ok(delivery.receivedAt - sentAt < 2000, `delivered ${delivery.receivedAt - sentAt} ms after the request`);
  });
});
