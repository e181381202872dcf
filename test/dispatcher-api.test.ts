import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import type { AttemptResult } from '../src/dispatcher/delivery.ts';
import type { StoredMessage } from '../src/dispatcher/store.ts';
import { verifySignature } from '../src/protocol/signing.ts';
import { BATCH_BODY_LIMIT } from '../src/protocol/messages.ts';
import { forceStatus, startTestDispatcher } from './support/dispatcher.ts';
import { startReceiver } from './support/receiver.ts';
import { assertOpenApiDocument } from './support/openapi.ts';
import { whilePingFails } from './support/stores.ts';

const FAR = '2099-01-01T00:00:00.000Z';
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

interface Json {
  [key: string]: any;
}

describe('POST /v1/messages', () => {
  it('schedules a message and answers 201 with the stored message', async () => {
    await using t = await startTestDispatcher();
    const response = await t.request('POST', '/v1/messages', { body: { username: 'ada', message: 'hello', scheduledAt: '2099-01-01T10:00:00+02:00' } });
    assert.equal(response.statusCode, 201);
    const body = response.json() as Json;
    assert.deepEqual(Object.keys(body).sort(), ['attempts', 'createdAt', 'deliverBy', 'deliveredAt', 'dueAt', 'id', 'idempotencyKey', 'lastError', 'message', 'scheduledAt', 'status', 'target', 'updatedAt', 'username']);
    assert.equal(body.username, 'ada');
    assert.equal(body.message, 'hello');
    assert.equal(body.scheduledAt, '2099-01-01T08:00:00.000Z');
    assert.equal(body.dueAt, body.scheduledAt);
    assert.equal(body.status, 'scheduled');
    assert.equal(body.attempts, 0);
    assert.equal(body.deliveredAt, null);
    assert.equal(body.lastError, null);
    assert.equal(body.idempotencyKey, null);
    assert.match(body.createdAt, ISO_MS);
    assert.equal(response.headers.location, `/v1/messages/${body.id}`);

    const fetched = await t.request('GET', `/v1/messages/${body.id}`);
    assert.equal(fetched.statusCode, 200);
    assert.deepEqual(fetched.json(), body);
  });

  it('accepts delaySeconds and reads a time without offset in the configured zone', async () => {
    await using t = await startTestDispatcher({ timeZone: 'Europe/Berlin' });
    const before = Date.now();
    const delayed = (await t.request('POST', '/v1/messages', { body: { username: 'a', message: 'm', delaySeconds: 3600 } })).json() as Json;
    const due = Date.parse(delayed.scheduledAt);
    assert.ok(due >= before + 3_600_000 && due <= Date.now() + 3_600_000);

    const summer = (await t.request('POST', '/v1/messages', { body: { username: 'a', message: 'm', scheduledAt: '2099-06-01 12:00:00' } })).json() as Json;
    assert.equal(summer.scheduledAt, '2099-06-01T10:00:00.000Z');
    const tokyo = (await t.request('POST', '/v1/messages', { body: { username: 'a', message: 'm', scheduledAt: '2099-06-01T12:00', timeZone: 'Asia/Tokyo' } })).json() as Json;
    assert.equal(tokyo.scheduledAt, '2099-06-01T03:00:00.000Z');
  });

  it('answers the first message (200) when an idempotencyKey comes again', async () => {
    await using t = await startTestDispatcher();
    const first = await t.request('POST', '/v1/messages', { body: { username: 'a', message: 'first', scheduledAt: FAR, idempotencyKey: 'k-1' } });
    assert.equal(first.statusCode, 201);
    const again = await t.request('POST', '/v1/messages', { body: { username: 'b', message: 'second', scheduledAt: FAR, idempotencyKey: 'k-1' } });
    assert.equal(again.statusCode, 200);
    assert.deepEqual(again.json(), first.json());
    const list = (await t.request('GET', '/v1/messages')).json() as Json;
    assert.equal(list.items.length, 1);
  });

  const badBodies: [string, Json, string][] = [
    ['username missing', { message: 'm', scheduledAt: FAR }, 'username'],
    ['username not a string', { username: 7, message: 'm', scheduledAt: FAR }, 'username'],
    ['username empty', { username: '', message: 'm', scheduledAt: FAR }, 'username'],
    ['username of spaces', { username: '   ', message: 'm', scheduledAt: FAR }, 'username'],
    ['username of zero-width characters', { username: '\u200B\u2060\uFEFF', message: 'm', scheduledAt: FAR }, 'username'],
    ['message of white space and zero-width joiners', { username: 'u', message: ' \n\u200D\u200C', scheduledAt: FAR }, 'message'],
    ['username of 65 characters', { username: 'u'.repeat(65), message: 'm', scheduledAt: FAR }, 'username'],
    ['message missing', { username: 'u', scheduledAt: FAR }, 'message'],
    ['message empty', { username: 'u', message: '', scheduledAt: FAR }, 'message'],
    ['message of 5,001 characters', { username: 'u', message: 'x'.repeat(5001), scheduledAt: FAR }, 'message'],
    ['no time at all', { username: 'u', message: 'm' }, 'scheduledAt'],
    ['scheduledAt unreadable', { username: 'u', message: 'm', scheduledAt: 'tomorrow' }, 'scheduledAt'],
    ['scheduledAt impossible date', { username: 'u', message: 'm', scheduledAt: '2099-02-30T10:00:00Z' }, 'scheduledAt'],
    ['scheduledAt and delaySeconds', { username: 'u', message: 'm', scheduledAt: FAR, delaySeconds: 5 }, 'scheduledAt'],
    ['delaySeconds negative', { username: 'u', message: 'm', delaySeconds: -1 }, 'delaySeconds'],
    ['delaySeconds a string', { username: 'u', message: 'm', delaySeconds: '5' }, 'delaySeconds'],
    ['idempotencyKey too long', { username: 'u', message: 'm', scheduledAt: FAR, idempotencyKey: 'k'.repeat(201) }, 'idempotencyKey'],
    ['timeZone unknown', { username: 'u', message: 'm', scheduledAt: FAR, timeZone: 'Mars/Olympus' }, 'timeZone'],
    ['an unknown field', { username: 'u', message: 'm', scheduledAt: FAR, priority: 1 }, 'priority'],
  ];
  for (const [name, body, field] of badBodies) {
    it(`answers 400 naming ${field} for ${name}, storing nothing`, async () => {
      await using t = await startTestDispatcher();
      const response = await t.request('POST', '/v1/messages', { body });
      assert.equal(response.statusCode, 400);
      const { error } = response.json() as Json;
      assert.equal(error.code, 'invalid_request');
      assert.equal(error.field, field);
      assert.ok(error.message.includes(field), error.message);
      assert.deepEqual((await t.request('GET', '/v1/messages')).json(), { items: [], nextCursor: null });
    });
  }

  it('counts characters, not UTF-16 units: 5,000 emoji fit', async () => {
    await using t = await startTestDispatcher();
    const response = await t.request('POST', '/v1/messages', { body: { username: '😀'.repeat(64), message: '😀'.repeat(5000), scheduledAt: FAR } });
    assert.equal(response.statusCode, 201);
  });

  it('answers 400 to a body that is not a JSON object, or not JSON', async () => {
    await using t = await startTestDispatcher();
    for (const payload of ['[1,2]', '"text"', '{"username":']) {
      const response = await t.request('POST', '/v1/messages', { body: payload, headers: { 'content-type': 'application/json' } });
      assert.equal(response.statusCode, 400, payload);
      assert.equal((response.json() as Json).error.code, 'invalid_request');
    }
  });

  it('answers 415 to a body that is not JSON', async () => {
    await using t = await startTestDispatcher();
    for (const type of ['application/x-www-form-urlencoded', 'text/plain', 'application/xml']) {
      const response = await t.request('POST', '/v1/messages', { body: 'username=a&message=b&delaySeconds=0', headers: { 'content-type': type } });
      assert.equal(response.statusCode, 415, type);
      const { error } = response.json() as Json;
      assert.equal(error.code, 'unsupported_media_type');
      assert.match(error.message, /application\/json/);
    }
    assert.equal(((await t.request('GET', '/v1/messages')).json() as Json).items.length, 0);
  });

  it('answers 413 to an oversized body', async () => {
    await using t = await startTestDispatcher();
    const response = await t.request('POST', '/v1/messages', { body: { username: 'u', message: 'x'.repeat(200_000), scheduledAt: FAR } });
    assert.equal(response.statusCode, 413);
    assert.equal((response.json() as Json).error.code, 'payload_too_large');
    assert.match((response.json() as Json).error.message, /POST \/v1\/messages takes at most 131072 bytes/);
  });

  it('takes a batch of the documented maximum whatever its text: 1,000 messages of 5,000 characters JSON must escape', async () => {
    await using t = await startTestDispatcher();
    // U+0001 is the longest a character can be in UTF-8 JSON: "\u0001", 6 bytes
    const worst = (n: number) => '\u0001'.repeat(n);
    const items = Array.from({ length: 1000 }, (_, i) => ({
      username: worst(64), message: worst(5000), idempotencyKey: `${i}`.padEnd(200, '\u0001'), scheduledAt: '2099-12-31T23:59:59.999+14:00', timeZone: 'America/Argentina/ComodRivadavia',
    }));
    // the last item is bad, so the body is read and checked through, and nothing is stored
    items[999]!.scheduledAt = 'never';
    const body = JSON.stringify(items);
    assert.ok(Buffer.byteLength(body) > 31_000_000, String(Buffer.byteLength(body)));
    const response = await t.request('POST', '/v1/messages/batch', { body, headers: { 'content-type': 'application/json' } });
    assert.equal(response.statusCode, 400, response.body.slice(0, 200));
    assert.equal((response.json() as Json).error.field, 'items[999].scheduledAt');
  });

  it('answers a batch over its limit 413 in the error shape, saying the limit in bytes', async () => {
    await using t = await startTestDispatcher();
    const response = await t.request('POST', '/v1/messages/batch', { body: ' '.repeat(BATCH_BODY_LIMIT + 1), headers: { 'content-type': 'application/json' } });
    assert.equal(response.statusCode, 413);
    const { error } = response.json() as Json;
    assert.equal(error.code, 'payload_too_large');
    assert.equal(error.message, `Request body is too large: POST /v1/messages/batch takes at most ${BATCH_BODY_LIMIT} bytes`);
    assert.equal(BATCH_BODY_LIMIT, 32_608_000);
  });

  it('stores text exactly as sent', async () => {
    await using t = await startTestDispatcher();
    const texts = [
      'emoji 😀👩‍👩‍👧‍👦 and flags 🇩🇪',
      `quotes " ' \` and backslash \\ and "nested 'quotes'"`,
      '<script>alert("x")</script><img src=x onerror=alert(1)>',
      "'; DROP TABLE messages; --",
      'line one\nline two\r\n\ttabbed \u2028 separator \u0007 bell',
      '  leading and trailing spaces  ',
      'ümlaut, 日本語, العربية, עברית',
    ];
    for (const text of texts) {
      const created = (await t.request('POST', '/v1/messages', { body: { username: text.slice(0, 20), message: text, scheduledAt: FAR } })).json() as Json;
      assert.equal(created.message, text);
      const fetched = (await t.request('GET', `/v1/messages/${created.id}`)).json() as Json;
      assert.equal(fetched.message, text);
      assert.equal(fetched.username, text.slice(0, 20));
      assert.equal((await t.dispatcher.store.get(created.id))!.message, text);
    }
  });
});

describe('POST /v1/messages/batch', () => {
  it('schedules every item and answers 201 with them in order', async () => {
    await using t = await startTestDispatcher();
    const items = [
      { username: 'a', message: 'one', scheduledAt: '2099-01-03T00:00:00Z' },
      { username: 'b', message: 'two', delaySeconds: 7200 },
      { username: 'c', message: 'three', scheduledAt: '2099-01-01T00:00:00Z' },
    ];
    const response = await t.request('POST', '/v1/messages/batch', { body: items });
    assert.equal(response.statusCode, 201);
    const body = response.json() as Json[];
    assert.deepEqual(body.map((m) => m.message), ['one', 'two', 'three']);
    assert.ok(body.every((m) => m.status === 'scheduled'));
    assert.equal(((await t.request('GET', '/v1/messages')).json() as Json).items.length, 3);
  });

  it('also takes {"items": [...]}', async () => {
    await using t = await startTestDispatcher();
    const response = await t.request('POST', '/v1/messages/batch', { body: { items: [{ username: 'a', message: 'm', scheduledAt: FAR }] } });
    assert.equal(response.statusCode, 201);
    assert.equal((response.json() as Json[]).length, 1);
  });

  it('is all or nothing: one bad item is named and nothing is stored', async () => {
    await using t = await startTestDispatcher();
    const items = [
      { username: 'a', message: 'fine', scheduledAt: FAR },
      { username: 'b', message: 'fine too', scheduledAt: FAR },
      { username: 'c', message: '', scheduledAt: FAR },
      { username: 'd', message: 'never checked', scheduledAt: 'nope' },
    ];
    const response = await t.request('POST', '/v1/messages/batch', { body: items });
    assert.equal(response.statusCode, 400);
    const { error } = response.json() as Json;
    assert.equal(error.field, 'items[2].message');
    assert.match(error.message, /items\[2\]\.message/);
    assert.deepEqual((await t.request('GET', '/v1/messages')).json(), { items: [], nextCursor: null });
  });

  it('refuses an empty batch, more than 1,000 items, and a body that is no array', async () => {
    await using t = await startTestDispatcher();
    const item = { username: 'a', message: 'm', scheduledAt: FAR };
    for (const body of [[], Array.from({ length: 1001 }, () => item), item, { items: 'no' }]) {
      const response = await t.request('POST', '/v1/messages/batch', { body });
      assert.equal(response.statusCode, 400);
      assert.equal((response.json() as Json).error.field, 'items');
    }
    assert.equal(((await t.request('GET', '/v1/messages')).json() as Json).items.length, 0);
  });

  it('takes 1,000 items', async () => {
    await using t = await startTestDispatcher();
    const items = Array.from({ length: 1000 }, (_, i) => ({ username: `u${i}`, message: `m${i}`, scheduledAt: FAR }));
    const response = await t.request('POST', '/v1/messages/batch', { body: items });
    assert.equal(response.statusCode, 201);
    assert.equal((await t.dispatcher.store.countByStatus()).scheduled, 1000);
  });

  it('answers an item repeating an idempotencyKey with the first message', async () => {
    await using t = await startTestDispatcher();
    const earlier = (await t.request('POST', '/v1/messages', { body: { username: 'a', message: 'earlier', scheduledAt: FAR, idempotencyKey: 'old' } })).json() as Json;
    const items = [
      { username: 'a', message: 'x', scheduledAt: FAR, idempotencyKey: 'new' },
      { username: 'a', message: 'y', scheduledAt: FAR, idempotencyKey: 'new' },
      { username: 'a', message: 'z', scheduledAt: FAR, idempotencyKey: 'old' },
      { username: 'a', message: 'w', scheduledAt: FAR },
    ];
    const response = await t.request('POST', '/v1/messages/batch', { body: items });
    assert.equal(response.statusCode, 201);
    const body = response.json() as Json[];
    assert.equal(body[1]!.id, body[0]!.id);
    assert.equal(body[1]!.message, 'x');
    assert.deepEqual(body[2], earlier);
    assert.equal((await t.dispatcher.store.countByStatus()).scheduled, 3);

    const replay = await t.request('POST', '/v1/messages/batch', { body: items.slice(0, 3) });
    assert.equal(replay.statusCode, 200);
    assert.deepEqual(replay.json(), body.slice(0, 3));
  });
});

describe('GET /v1/messages', () => {
  it('lists in due-time order, page by page', async () => {
    await using t = await startTestDispatcher();
    const days = [5, 1, 4, 2, 3];
    await t.schedule(...days.map((d) => ({ username: 'u', message: `day ${d}`, scheduledAt: `2099-01-0${d}T00:00:00Z` })));
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor ? `?limit=2&cursor=${cursor}` : '?limit=2';
      const response = await t.request('GET', `/v1/messages${query}`);
      assert.equal(response.statusCode, 200);
      const page = response.json() as Json;
      seen.push(...page.items.map((m: Json) => m.message));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    assert.deepEqual(seen, ['day 1', 'day 2', 'day 3', 'day 4', 'day 5']);
    assert.equal(pages, 3);
  });

  it('pages through messages due at the same instant without losing or repeating any', async () => {
    await using t = await startTestDispatcher();
    await t.schedule(...Array.from({ length: 7 }, (_, i) => ({ username: 'u', message: `m${i}`, scheduledAt: FAR })));
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const page = (await t.request('GET', `/v1/messages?limit=3${cursor ? `&cursor=${cursor}` : ''}`)).json() as Json;
      ids.push(...page.items.map((m: Json) => m.id));
      cursor = page.nextCursor;
    } while (cursor);
    assert.equal(new Set(ids).size, 7);
  });

  it('filters by status and defaults to 100 per page', async () => {
    await using t = await startTestDispatcher();
    const scheduled = await t.schedule(...Array.from({ length: 102 }, (_, i) => ({ username: 'u', message: `m${i}`, scheduledAt: FAR })));
    await forceStatus(t.dispatcher, scheduled[0]!.id, 'dead');
    const all = (await t.request('GET', '/v1/messages')).json() as Json;
    assert.equal(all.items.length, 100);
    assert.equal(typeof all.nextCursor, 'string');
    const dead = (await t.request('GET', '/v1/messages?status=dead')).json() as Json;
    assert.deepEqual(dead.items.map((m: Json) => m.id), [scheduled[0]!.id]);
    assert.equal(dead.nextCursor, null);
    assert.equal(((await t.request('GET', '/v1/messages?status=scheduled&limit=1000')).json() as Json).items.length, 101);
    // empty parameters, as a form sends them, mean "not given"
    assert.equal(((await t.request('GET', '/v1/messages?status=&limit=&cursor=')).json() as Json).items.length, 100);
  });

  it('filters by user, text and due range, and pages within the filter', async () => {
    await using t = await startTestDispatcher();
    const [a, b, c, d] = await t.schedule(
      { username: 'ann', message: 'Coffee at ten', scheduledAt: '2099-01-01T10:00:00Z' },
      { username: 'bo', message: 'coffee again', scheduledAt: '2099-01-01T11:00:00Z' },
      { username: 'ann', message: 'lunch', scheduledAt: '2099-01-01T12:00:00Z' },
      { username: 'ann', message: 'more COFFEE', scheduledAt: '2099-01-02T10:00:00Z' },
    );
    const list = async (query: string) => ((await t.request('GET', `/v1/messages?${query}`)).json() as Json).items.map((m: Json) => m.id);
    assert.deepEqual(await list('user=ann'), [a!.id, c!.id, d!.id]);
    assert.deepEqual(await list('user=ann&q=coffee'), [a!.id, d!.id]);
    assert.deepEqual(await list('dueFrom=2099-01-01T11:30:00Z&dueTo=2099-01-02T10:00:00Z'), [c!.id]);
    // wall-clock times in the given zone (Berlin is an hour ahead of UTC in January)
    assert.deepEqual(await list('dueFrom=2099-01-01 12:00&dueTo=2099-01-01 13:00&timeZone=Europe/Berlin'), [b!.id]);
    const first = (await t.request('GET', '/v1/messages?user=ann&limit=2')).json() as Json;
    assert.deepEqual(first.items.map((m: Json) => m.id), [a!.id, c!.id]);
    assert.deepEqual(await list(`user=ann&limit=2&cursor=${first.nextCursor}`), [d!.id]);
  });

  const badQueries: [string, string][] = [
    ['dueFrom=tomorrow', 'dueFrom'],
    ['dueTo=2099-02-30T00:00:00Z', 'dueTo'],
    ['dueFrom=2099-01-02T00:00:00Z&dueTo=2099-01-01T00:00:00Z', 'dueTo'],
    ['timeZone=Mars/Olympus&dueFrom=2099-01-01 10:00', 'timeZone'],
    ['user=a&user=b', 'user'],
    [`q=${'x'.repeat(201)}`, 'q'],
    ['status=sent', 'status'],
    ['status=Scheduled', 'status'],
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['limit=ten', 'limit'],
    ['limit=2.5', 'limit'],
    ['cursor=not-a-cursor', 'cursor'],
    [`cursor=${Buffer.from('x.y.z').toString('base64url')}`, 'cursor'],
  ];
  for (const [query, field] of badQueries) {
    it(`answers 400 naming ${field} for ?${query}`, async () => {
      await using t = await startTestDispatcher();
      const response = await t.request('GET', `/v1/messages?${query}`);
      assert.equal(response.statusCode, 400);
      const { error } = response.json() as Json;
      assert.equal(error.field, field);
      assert.ok(error.message.includes(field));
    });
  }
});

describe('one message: GET, PATCH, DELETE, retry', () => {
  it('GET answers 404 for an unknown id', async () => {
    await using t = await startTestDispatcher();
    const response = await t.request('GET', '/v1/messages/01890000-0000-7000-8000-000000000000');
    assert.equal(response.statusCode, 404);
    assert.equal((response.json() as Json).error.code, 'not_found');
  });

  it('PATCH changes the time and the text', async () => {
    await using t = await startTestDispatcher({ timeZone: 'America/New_York' });
    const [m] = await t.schedule({ username: 'u', message: 'before', scheduledAt: FAR });
    const response = await t.request('PATCH', `/v1/messages/${m!.id}`, { body: { scheduledAt: '2099-07-04 09:00:00', message: 'after 😀' } });
    assert.equal(response.statusCode, 200);
    const body = response.json() as Json;
    assert.equal(body.message, 'after 😀');
    assert.equal(body.scheduledAt, '2099-07-04T13:00:00.000Z');
    assert.equal(body.dueAt, '2099-07-04T13:00:00.000Z');
    const onlyText = (await t.request('PATCH', `/v1/messages/${m!.id}`, { body: { message: 'just text' } })).json() as Json;
    assert.equal(onlyText.message, 'just text');
    assert.equal(onlyText.scheduledAt, '2099-07-04T13:00:00.000Z');
  });

  it('PATCH answers 400 naming the field, and changes nothing', async () => {
    await using t = await startTestDispatcher();
    const [m] = await t.schedule({ username: 'u', message: 'same', scheduledAt: FAR });
    const cases: [Json, string][] = [
      [{}, 'scheduledAt'],
      [{ message: '' }, 'message'],
      [{ message: 'x'.repeat(5001) }, 'message'],
      [{ scheduledAt: 'soon' }, 'scheduledAt'],
      [{ username: 'other' }, 'username'],
    ];
    for (const [body, field] of cases) {
      const response = await t.request('PATCH', `/v1/messages/${m!.id}`, { body });
      assert.equal(response.statusCode, 400, JSON.stringify(body));
      assert.equal((response.json() as Json).error.field, field);
    }
    const stored = await t.dispatcher.store.get(m!.id);
    assert.equal(stored!.message, 'same');
    assert.equal(stored!.version, m!.version);
  });

  it('PATCH and DELETE answer 404 for an unknown id and 409 with the status once it is too late', async () => {
    await using t = await startTestDispatcher();
    const unknown = '01890000-0000-7000-8000-000000000000';
    assert.equal((await t.request('PATCH', `/v1/messages/${unknown}`, { body: { message: 'x' } })).statusCode, 404);
    assert.equal((await t.request('DELETE', `/v1/messages/${unknown}`)).statusCode, 404);

    const [delivering, delivered] = await t.schedule(
      { username: 'u', message: 'in flight', scheduledAt: '2099-01-01T00:00:00Z' },
      { username: 'u', message: 'done', scheduledAt: '2099-01-02T00:00:00Z' },
    );
    await forceStatus(t.dispatcher, delivered!.id, 'delivered');
    await forceStatus(t.dispatcher, delivering!.id, 'delivering');
    for (const [m, status] of [[delivering!, 'delivering'], [delivered!, 'delivered']] as const) {
      const patch = await t.request('PATCH', `/v1/messages/${m.id}`, { body: { message: 'too late' } });
      assert.equal(patch.statusCode, 409);
      const { error } = patch.json() as Json;
      assert.equal(error.code, 'conflict');
      assert.equal(error.status, status);
      const del = await t.request('DELETE', `/v1/messages/${m.id}`);
      assert.equal(del.statusCode, 409);
      assert.equal((del.json() as Json).error.status, status);
    }
    assert.equal((await t.dispatcher.store.get(delivered!.id))!.message, 'done');
  });

  it('DELETE cancels a scheduled message (204) and it is gone', async () => {
    await using t = await startTestDispatcher();
    const [m] = await t.schedule({ username: 'u', message: 'm', scheduledAt: FAR });
    const response = await t.request('DELETE', `/v1/messages/${m!.id}`);
    assert.equal(response.statusCode, 204);
    assert.equal(response.body, '');
    assert.equal((await t.request('GET', `/v1/messages/${m!.id}`)).statusCode, 404);
    assert.equal((await t.request('DELETE', `/v1/messages/${m!.id}`)).statusCode, 404);
  });

  it('retry puts a dead message back to scheduled, and answers 409 for any other status', async () => {
    await using t = await startTestDispatcher();
    const [dead, scheduled] = await t.schedule(
      { username: 'u', message: 'dead', scheduledAt: '2099-01-01T00:00:00Z' },
      { username: 'u', message: 'fine', scheduledAt: '2099-01-02T00:00:00Z' },
    );
    await forceStatus(t.dispatcher, dead!.id, 'dead', { error: 'main server answered 400: nope' });
    const before = (await t.request('GET', `/v1/messages/${dead!.id}`)).json() as Json;
    assert.equal(before.status, 'dead');
    assert.equal(before.lastError, 'main server answered 400: nope');

    const response = await t.request('POST', `/v1/messages/${dead!.id}/retry`);
    assert.equal(response.statusCode, 200);
    const body = response.json() as Json;
    assert.equal(body.status, 'scheduled');
    assert.equal(body.attempts, 0);

    const conflict = await t.request('POST', `/v1/messages/${scheduled!.id}/retry`);
    assert.equal(conflict.statusCode, 409);
    assert.equal((conflict.json() as Json).error.status, 'scheduled');
    assert.equal((await t.request('POST', '/v1/messages/01890000-0000-7000-8000-000000000000/retry')).statusCode, 404);
  });
});

describe('auth with --api-token', () => {
  const token = 's3cret-token';

  it('answers 401 on /v1 without the token or with a wrong one, and works with it', async () => {
    await using t = await startTestDispatcher({ apiToken: token });
    const body = { username: 'u', message: 'm', scheduledAt: FAR };
    const basic = `Basic ${Buffer.from(`user:${token}`).toString('base64')}`;
    const attempts: [string, string, Record<string, string>][] = [
      ['POST', '/v1/messages', {}],
      ['POST', '/v1/messages', { authorization: 'Bearer wrong' }],
      ['POST', '/v1/messages', { authorization: `Bearer ${token}x` }],
      ['POST', '/v1/messages', { authorization: basic }],
      ['GET', '/v1/messages', {}],
      ['GET', '/v1/messages/x', {}],
      ['DELETE', '/v1/messages/x', {}],
      ['POST', '/v1/messages/batch', {}],
      ['GET', '/metrics', {}],
    ];
    for (const [method, url, headers] of attempts) {
      const response = await t.request(method, url, { body: method === 'POST' ? body : undefined, headers });
      assert.equal(response.statusCode, 401, `${method} ${url} ${JSON.stringify(headers)}`);
      assert.equal((response.json() as Json).error.code, 'unauthorized');
    }
    assert.equal(((await t.dispatcher.store.countByStatus()).scheduled), 0);
    assert.equal((await t.request('POST', '/v1/messages', { body, token })).statusCode, 201);
    assert.equal((await t.request('GET', '/v1/messages', { token })).statusCode, 200);
    assert.equal((await t.request('GET', '/metrics', { token })).statusCode, 200);
  });

  it('accepts exactly "Bearer <token>": nothing before, after or instead of it', async () => {
    await using t = await startTestDispatcher({ apiToken: token });
    const refused = [`Bearer ${token} junk`, `Bearer ${token},x`, `Bearer  ${token}`, `Bearer ${token.slice(0, -1)}`, `Token ${token}`, `Bearer`, token];
    for (const authorization of refused) {
      const response = await t.request('GET', '/v1/messages', { headers: { authorization } });
      assert.equal(response.statusCode, 401, authorization);
      assert.equal((response.json() as Json).error.code, 'unauthorized');
    }
    // the scheme is case-insensitive (RFC 9110), the token is not
    assert.equal((await t.request('GET', '/v1/messages', { headers: { authorization: `bearer ${token}` } })).statusCode, 200);
    assert.equal((await t.request('GET', '/v1/messages', { headers: { authorization: `Bearer ${token.toUpperCase()}` } })).statusCode, 401);
  });

  it('checks the token before the content type', async () => {
    await using t = await startTestDispatcher({ apiToken: token });
    const response = await t.request('POST', '/v1/messages', { body: 'a=b', headers: { 'content-type': 'text/plain' } });
    assert.equal(response.statusCode, 401);
  });

  it('keeps /healthz and /openapi.json open', async () => {
    await using t = await startTestDispatcher({ apiToken: token });
    assert.equal((await t.request('GET', '/healthz')).statusCode, 200);
    assert.equal((await t.request('GET', '/openapi.json')).statusCode, 200);
  });

  it('open /healthz says only the status; the counts /metrics keeps behind the token need it here too', async () => {
    await using t = await startTestDispatcher({ apiToken: token });
    const open = await t.request('GET', '/healthz');
    assert.equal(open.statusCode, 200);
    assert.deepEqual(open.json(), { status: 'ok' });
    assert.deepEqual((await t.request('GET', '/healthz', { headers: { authorization: 'Bearer wrong' } })).json(), { status: 'ok' });
    const withToken = await t.request('GET', '/healthz', { token });
    assert.deepEqual(Object.keys(withToken.json() as Json).sort(), ['buffered', 'inFlight', 'owner', 'status']);
    assert.equal((withToken.json() as Json).owner, t.dispatcher.engine.ownerId);
  });
});

describe('the Host check (DNS rebinding)', () => {
  const body = { username: 'u', message: 'm', scheduledAt: FAR };

  it('without a token, answers only loopback host names: others get 421 and nothing is stored', async () => {
    await using t = await startTestDispatcher();
    const foreign = ['evil.example', 'evil.example:8081', 'localhost.evil.example', '127.0.0.1.nip.io:8081', 'evil.example@localhost', 'localhost:8081/x'];
    for (const host of foreign) {
      for (const [method, url] of [['POST', '/v1/messages'], ['GET', '/'], ['GET', '/healthz'], ['GET', '/no-such-page']] as const) {
        const response = await t.request(method, url, { body: method === 'POST' ? body : undefined, headers: { host } });
        assert.equal(response.statusCode, 421, `${method} ${url} Host: ${host}`);
        const error = (response.json() as Json).error;
        assert.equal(error.code, 'misdirected_request');
        assert.match(error.message, /--allowed-hosts/);
      }
    }
    const legacy = await t.request('POST', '/scheduleMessage.php', { body: 'username=a&message=b&time=2099-01-01 00:00:00', headers: { host: 'evil.example', 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(legacy.statusCode, 421);
    assert.equal((await t.dispatcher.store.countByStatus()).scheduled, 0);
    for (const host of ['localhost', 'localhost:8081', 'LOCALHOST:80', '127.0.0.1:8081', '127.0.0.2', '[::1]:8081', '[::1]']) {
      assert.equal((await t.request('POST', '/v1/messages', { body, headers: { host } })).statusCode, 201, host);
    }
  });

  it('answers the names given with --allowed-hosts (any port, any case) too', async () => {
    await using t = await startTestDispatcher({ allowedHosts: 'psched.lan, Box.Local' });
    assert.equal((await t.request('GET', '/v1/messages', { headers: { host: 'psched.lan:8081' } })).statusCode, 200);
    assert.equal((await t.request('GET', '/v1/messages', { headers: { host: 'box.local' } })).statusCode, 200);
    assert.equal((await t.request('GET', '/v1/messages', { headers: { host: 'localhost:8081' } })).statusCode, 200);
    assert.equal((await t.request('GET', '/v1/messages', { headers: { host: 'other.lan' } })).statusCode, 421);
    assert.equal((await t.request('GET', '/v1/messages', { headers: { host: 'sub.psched.lan' } })).statusCode, 421);
  });

  it('is off with a token: the token is what a rebinding page lacks, and proxies may use any name', async () => {
    await using t = await startTestDispatcher({ apiToken: 'tok' });
    assert.equal((await t.request('GET', '/v1/messages', { token: 'tok', headers: { host: 'psched.example.com' } })).statusCode, 200);
    assert.equal((await t.request('GET', '/v1/messages', { headers: { host: 'psched.example.com' } })).statusCode, 401);
  });
});

describe('service endpoints', () => {
  it('GET /healthz answers ok', async () => {
    await using t = await startTestDispatcher();
    const response = await t.request('GET', '/healthz');
    assert.equal(response.statusCode, 200);
    const body = response.json() as Json;
    assert.equal(body.status, 'ok');
    assert.equal(body.owner, t.dispatcher.engine.ownerId);
  });

  it('GET /healthz answers 503 "not ready", and nothing of the error, when the database does not answer', async () => {
    await using t = await startTestDispatcher();
    await whilePingFails(t.dispatcher.store, async () => {
      const response = await t.request('GET', '/healthz');
      assert.equal(response.statusCode, 503);
      assert.deepEqual(response.json(), { status: 'not ready' });
    });
  });

  it('GET /metrics speaks the Prometheus text format', async () => {
    await using t = await startTestDispatcher();
    await t.schedule({ username: 'u', message: 'a', scheduledAt: FAR }, { username: 'u', message: 'b', scheduledAt: FAR });
    const response = await t.request('GET', '/metrics');
    assert.equal(response.statusCode, 200);
    assert.match(response.headers['content-type'] as string, /^text\/plain; version=0\.0\.4/);
    const text = response.body;
    assert.match(text, /^psched_messages\{status="scheduled"\} 2$/m);
    assert.match(text, /^psched_messages\{status="dead"\} 0$/m);
    assert.match(text, /^psched_buffered_messages \d+$/m);
    assert.match(text, /^# TYPE psched_deliveries_total counter$/m);
    assert.match(text, /^psched_delivery_lateness_seconds_bucket\{le="\+Inf"\} 0$/m);
    // every sample line is "name{labels} value" (process and runtime metrics included)
    assert.match(text, /^process_cpu_seconds_total /m);
    for (const line of text.trimEnd().split('\n')) {
      if (line !== '' && !line.startsWith('#')) assert.match(line, /^[a-z_][a-z0-9_]*(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[\d.]+(e[+-]?\d+)?|NaN|Nan)$/, line); // prom-client writes NaN as "Nan", which Prometheus parses
    }
  });

  it('GET /openapi.json describes every endpoint, and only routes it serves', async () => {
    await using t = await startTestDispatcher();
    assertOpenApiDocument(t.dispatcher.app, await t.request('GET', '/openapi.json'), [
      'POST /v1/messages', 'GET /v1/messages', 'POST /v1/messages/batch', 'GET /v1/messages/{id}', 'PATCH /v1/messages/{id}',
      'DELETE /v1/messages/{id}', 'POST /v1/messages/{id}/retry', 'GET /v1/messages/{id}/attempts', 'GET /healthz', 'GET /metrics', 'GET /openapi.json',
      'POST /scheduleMessage.php', 'GET /cron/checkScheduledMessages.php', 'GET /',
      'POST /v1/schedules', 'GET /v1/schedules', 'POST /v1/schedules/preview', 'GET /v1/schedules/{id}', 'PATCH /v1/schedules/{id}',
      'DELETE /v1/schedules/{id}', 'GET /v1/schedules/{id}/preview',
    ]);
  });

  it('answers unknown routes with a JSON 404', async () => {
    await using t = await startTestDispatcher();
    const response = await t.request('GET', '/v1/nothing');
    assert.equal(response.statusCode, 404);
    assert.equal((response.json() as Json).error.code, 'not_found');
  });
});

describe('deliver-by', () => {
  it('takes a deliverBy with the message, changes or drops it with PATCH, and refuses one before scheduledAt or already past, storing nothing', async () => {
    await using t = await startTestDispatcher();
    const created = await t.request('POST', '/v1/messages', { body: { username: 'a', message: 'm', scheduledAt: '2099-01-01T09:00:00Z', deliverBy: '2099-01-01T10:00:00+01:00' } });
    assert.equal(created.statusCode, 201);
    const body = created.json() as Json;
    assert.equal(body.deliverBy, '2099-01-01T09:00:00.000Z', 'exactly at its scheduled time is allowed');
    const refusals: [Json, RegExp][] = [
      [{ scheduledAt: '2099-01-01T09:00:00Z', deliverBy: '2099-01-01T08:59:59.999Z' }, /deliverBy \(2099-01-01T08:59:59\.999Z\) is before scheduledAt \(2099-01-01T09:00:00\.000Z\): the message would never be sent/],
      [{ scheduledAt: '2020-01-01T00:00:00Z', deliverBy: '2020-06-01T00:00:00Z' }, /deliverBy \(2020-06-01T00:00:00\.000Z\) is already past: the message would expire unsent/],
      [{ scheduledAt: FAR, deliverBy: 12 }, /deliverBy must be an RFC 3339 time, or null/],
      [{ scheduledAt: FAR, deliverBy: 'tomorrow' }, /deliverBy/],
    ];
    for (const [fields, problem] of refusals) {
      const refused = await t.request('POST', '/v1/messages', { body: { username: 'a', message: 'm', ...fields } });
      assert.equal(refused.statusCode, 400, JSON.stringify(fields));
      assert.equal((refused.json() as Json).error.field, 'deliverBy');
      assert.match((refused.json() as Json).error.message, problem);
    }
    const batch = await t.request('POST', '/v1/messages/batch', { body: [
      { username: 'a', message: 'ok', scheduledAt: FAR },
      { username: 'a', message: 'bad', scheduledAt: FAR, deliverBy: '2098-01-01T00:00:00Z' },
    ] });
    assert.equal(batch.statusCode, 400);
    assert.equal((batch.json() as Json).error.field, 'items[1].deliverBy');
    const listed = (await t.request('GET', '/v1/messages')).json() as Json;
    assert.deepEqual(listed.items.map((m: Json) => m.id), [body.id], 'nothing of the refused ones was stored');

    const moved = await t.request('PATCH', `/v1/messages/${body.id}`, { body: { deliverBy: '2099-01-02T00:00:00Z' } });
    assert.equal(moved.statusCode, 200);
    assert.equal((moved.json() as Json).deliverBy, '2099-01-02T00:00:00.000Z');
    // a new scheduledAt after the stored deliver-by would expire it unsent
    const tooLate = await t.request('PATCH', `/v1/messages/${body.id}`, { body: { scheduledAt: '2099-01-03T00:00:00Z' } });
    assert.equal(tooLate.statusCode, 400);
    assert.equal((tooLate.json() as Json).error.field, 'scheduledAt', 'the field the request changed');
    assert.match((tooLate.json() as Json).error.message, /scheduledAt \(2099-01-03T00:00:00\.000Z\) is after the message's deliverBy \(2099-01-02T00:00:00\.000Z\)/);
    const past = await t.request('PATCH', `/v1/messages/${body.id}`, { body: { scheduledAt: '2020-01-01T00:00:00Z', deliverBy: '2020-01-02T00:00:00Z' } });
    assert.equal(past.statusCode, 400);
    assert.equal((past.json() as Json).error.field, 'deliverBy');
    assert.match((past.json() as Json).error.message, /is already past/);
    assert.equal(((await t.request('GET', `/v1/messages/${body.id}`)).json() as Json).scheduledAt, '2099-01-01T09:00:00.000Z', 'unchanged');
    const dropped = await t.request('PATCH', `/v1/messages/${body.id}`, { body: { deliverBy: null, scheduledAt: '2099-01-03T00:00:00Z' } });
    assert.equal(dropped.statusCode, 200);
    assert.equal((dropped.json() as Json).deliverBy, null);
  });

  it('a message its main server could not take before its deliver-by is expired, listed, counted, and replayed on request', async () => {
    await using receiver = await startReceiver();
    receiver.fallback = { status: 500 };
    await using t = await startTestDispatcher({ mainUrl: receiver.url });
    await t.dispatcher.listen();
    const expired = once(t.dispatcher.engine.events, 'expired') as Promise<[StoredMessage]>;
    // every attempt answered 500; the first retry's backoff (0.5-1 s) or the second's ends after the deliver-by
    const deliverBy = new Date(Date.now() + 1500).toISOString();
    const created = (await t.request('POST', '/v1/messages', { body: { username: 'eve', message: 'flash sale', delaySeconds: 0, deliverBy } })).json() as Json;
    const [message] = await expired;
    assert.equal(message.id, created.id);
    const stored = (await t.request('GET', `/v1/messages/${created.id}`)).json() as Json;
    assert.equal(stored.status, 'expired');
    assert.equal(stored.attempts, receiver.requests.length, 'every attempt reached the receiver; none after the deliver-by');
    for (const request of receiver.requests) assert.ok(request.receivedAt <= Date.parse(deliverBy) + 200, 'none sent past it (received within 200 ms of being sent)');
    assert.equal(stored.lastError, `not sent: past its deliver-by, ${deliverBy}`);
    assert.deepEqual(((await t.request('GET', '/v1/messages?status=expired')).json() as Json).items.map((m: Json) => m.id), [created.id]);
    assert.match((await t.request('GET', '/metrics')).body, /^psched_messages\{status="expired"\} 1$/m);

    receiver.fallback = { status: 200, body: { ok: true } };
    const delivered = once(t.dispatcher.engine.events, 'outcome') as Promise<[StoredMessage, AttemptResult]>;
    const replayed = await t.request('POST', `/v1/messages/${created.id}/retry`);
    assert.equal(replayed.statusCode, 200);
    assert.equal((replayed.json() as Json).deliverBy, null);
    assert.equal((await delivered)[1].kind, 'delivered');
    assert.equal(((await t.request('GET', `/v1/messages/${created.id}`)).json() as Json).status, 'delivered');
  });
});

describe('through the real engine', () => {
  it('delivers signed, dead-letters a refused message, retries it on request, then answers 409', async () => {
    await using receiver = await startReceiver();
    receiver.script({ status: 400, body: { error: 'refused once' } });
    await using t = await startTestDispatcher({ mainUrl: receiver.url, signingSecret: 'sign-me' });
    await t.dispatcher.listen();
    const outcome = () => once(t.dispatcher.engine.events, 'outcome') as Promise<[StoredMessage, AttemptResult]>;

    const refused = outcome();
    const created = (await t.request('POST', '/v1/messages', { body: { username: 'eve', message: 'hi 😀', delaySeconds: 0 } })).json() as Json;
    const first = await receiver.nextRequest();
    assert.equal(first.url, '/v1/posts');
    assert.deepEqual(verifySignature('sign-me', first.headers['psched-signature'] as string, first.body, Date.now()), { ok: true });
    assert.deepEqual(JSON.parse(first.body), { id: created.id, username: 'eve', message: 'hi 😀', scheduledAt: created.scheduledAt, attempt: 1 });
    assert.equal((await refused)[1].kind, 'dead');
    const dead = (await t.request('GET', `/v1/messages/${created.id}`)).json() as Json;
    assert.equal(dead.status, 'dead');
    assert.match(dead.lastError, /400/);

    const delivered = outcome();
    assert.equal((await t.request('POST', `/v1/messages/${created.id}/retry`)).statusCode, 200);
    assert.equal((await delivered)[1].kind, 'delivered');
    const after = (await t.request('GET', `/v1/messages/${created.id}`)).json() as Json;
    assert.equal(after.status, 'delivered');
    assert.match(after.deliveredAt, ISO_MS);

    // the history: the refused attempt, then the one after the retry
    const history = (await t.request('GET', `/v1/messages/${created.id}/attempts`)).json() as Json;
    assert.deepEqual(history.items.map((a: Json) => [a.attempt, a.outcome, a.httpStatus]), [[1, 'dead', 400], [1, 'delivered', 200]]);
    assert.match(history.items[0].error, /400/);
    assert.equal(history.items[1].error, null);
    for (const attempt of history.items) {
      assert.match(attempt.startedAt, ISO_MS);
      assert.equal(attempt.latencyMs, Date.parse(attempt.finishedAt) - Date.parse(attempt.startedAt));
    }
    assert.equal((await t.request('GET', '/v1/messages/01890000-0000-7000-8000-000000000000/attempts')).statusCode, 404);

    const patch = await t.request('PATCH', `/v1/messages/${created.id}`, { body: { message: 'too late' } });
    assert.equal(patch.statusCode, 409);
    assert.equal((patch.json() as Json).error.status, 'delivered');
    assert.match((await t.request('GET', '/metrics')).body, /psched_deliveries_total\{outcome="delivered"\} 1/);
  });

  it('close() is idempotent and a closed dispatcher refuses to listen again', async () => {
    await using t = await startTestDispatcher();
    await t.dispatcher.listen();
    await Promise.all([t.dispatcher.close(), t.dispatcher.close()]);
    await t.dispatcher.close();
    await assert.rejects(t.dispatcher.listen(), /closed/);
  });
});
