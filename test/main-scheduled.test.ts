import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { dispatcherConfig } from '../src/config.ts';
import { createDispatcher } from '../src/dispatcher/app.ts';
import { openSqliteDispatcherStore } from '../src/stores/sqlite/dispatcher-store.ts';
import { forceStatus, startTestDispatcher, type TestDispatcher } from './support/dispatcher.ts';
import { startReceiver } from './support/receiver.ts';
import { basicAuth, closedPortUrl, startTestMain } from './support/main.ts';
import { startStallingFront } from './support/pool.ts';

const FUTURE = '2099-01-01T09:30:00Z';

/** A real dispatcher listening on a free port (its engine started; nothing here comes due). */
async function listeningDispatcher(options: Record<string, string> = {}): Promise<TestDispatcher & { url: string }> {
  const t = await startTestDispatcher(options);
  const url = await t.dispatcher.listen();
  return Object.assign(t, { url });
}

async function storedCount(t: TestDispatcher): Promise<number> {
  const page = (await t.request('GET', '/v1/messages?limit=1000')).json() as { items: unknown[] };
  return page.items.length;
}

/**
 * A real dispatcher on its own SQLite file whose every fdatasync fails once
 * `failSync()` is called: the next write is committed but answered 500
 * durability_unknown, and the store halts (later writes: 503 nothing written).
 */
async function syncFailingDispatcher() {
  const dir = mkdtempSync(join(tmpdir(), 'psched-sync-fails-'));
  const db = join(dir, 'dispatcher.db');
  let failing = false;
  const store = openSqliteDispatcherStore(db, {
    oneProcess: true,
    fdatasync: (fd, callback) => {
      if (failing) callback(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
      else import('node:fs').then((fs) => fs.fdatasync(fd, callback));
    },
  });
  await store.migrate();
  const dispatcher = await createDispatcher(dispatcherConfig({ db, port: '0', mainUrl: 'http://127.0.0.1:9' }, {}), { logger: false, store });
  const url = await dispatcher.listen();
  return {
    url,
    dispatcher,
    failSync: () => { failing = true; },
    async [Symbol.asyncDispose]() {
      try {
        await dispatcher.close();
        await store.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** The pool's first choice for a client's key (sha256, first 32 bits, modulo the pool size): a key it sends to `index` first. */
function keyFirstTo(index: number, size: number, prefix: string): string {
  for (let i = 0; ; i++) {
    const key = `${prefix}-${i}`;
    if (createHash('sha256').update(key).digest().readUInt32BE(0) % size === index) return key;
  }
}

describe('POST /v1/scheduled', () => {
  it('forwards to a dispatcher and answers its 201 with the stored message and which dispatcher holds it', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'Ann', message: 'Merry Christmas 🎄', scheduledAt: FUTURE } });
    assert.equal(response.statusCode, 201, response.body);
    const body = response.json();
    assert.equal(body.username, 'Ann');
    assert.equal(body.message, 'Merry Christmas 🎄');
    assert.equal(body.scheduledAt, '2099-01-01T09:30:00.000Z');
    assert.equal(body.status, 'scheduled');
    assert.equal(body.dispatcher, d.url);
    assert.ok(body.idempotencyKey, 'a key is always sent');
    const stored = await d.dispatcher.store.get(body.id);
    assert.equal(stored?.message, 'Merry Christmas 🎄');
  });

  it('forwards a deliverBy (read like scheduledAt) to the dispatcher, which stores it; refuses one before scheduledAt, naming it', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url, timeZone: 'Europe/Berlin' });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'by noon', scheduledAt: '2099-07-01 09:00', deliverBy: '2099-07-01 12:00' } });
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(response.json().deliverBy, '2099-07-01T10:00:00.000Z');
    assert.equal((await d.dispatcher.store.get(response.json().id))!.deliverBy, Date.parse('2099-07-01T10:00:00Z'));
    const without = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'whenever', scheduledAt: FUTURE } });
    assert.equal(without.json().deliverBy, null);
    const before = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'x', scheduledAt: '2099-07-01 09:00', deliverBy: '2099-07-01 08:00' } });
    assert.equal(before.statusCode, 400);
    assert.equal(before.json().error.field, 'deliverBy');
  });

  it("reads a time without offset in the main server's zone, or the request's timeZone", async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url, timeZone: 'Europe/Berlin' });
    const inServerZone = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'b', scheduledAt: '2099-07-01 12:00' } });
    assert.equal(inServerZone.json().scheduledAt, '2099-07-01T10:00:00.000Z');
    const inGivenZone = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'b', scheduledAt: '2099-07-01 12:00', timeZone: 'America/New_York' } });
    assert.equal(inGivenZone.json().scheduledAt, '2099-07-01T16:00:00.000Z');
  });

  it('answers 200 with the first message when the same idempotencyKey comes again', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const body = { username: 'a', message: 'once', scheduledAt: FUTURE, idempotencyKey: 'client-key-1' };
    const first = await t.request('POST', '/v1/scheduled', { body });
    const again = await t.request('POST', '/v1/scheduled', { body });
    assert.equal(first.statusCode, 201);
    assert.equal(again.statusCode, 200);
    assert.equal(again.json().id, first.json().id);
    assert.equal(await storedCount(d), 1);
  });

  it('refuses bad input with 400 naming the field, and forwards nothing', async () => {
    await using receiver = await startReceiver();
    await using t = await startTestMain({ dispatcherUrls: receiver.url });
    const cases: [unknown, string][] = [
      [{ message: 'x', scheduledAt: FUTURE }, 'username'],
      [{ username: 'a'.repeat(65), message: 'x', scheduledAt: FUTURE }, 'username'],
      [{ username: 'a', message: '', scheduledAt: FUTURE }, 'message'],
      [{ username: ' \u200B ', message: 'x', scheduledAt: FUTURE }, 'username'],
      [{ username: 'a', message: '\uFEFF\t', scheduledAt: FUTURE }, 'message'],
      [{ username: 'a', message: 'x', scheduledAt: 'tomorrow' }, 'scheduledAt'],
      [{ username: 'a', message: 'x', delaySeconds: -1 }, 'delaySeconds'],
      [{ username: 'a', message: 'x', scheduledAt: FUTURE, color: 'red' }, 'color'],
    ];
    for (const [body, field] of cases) {
      const response = await t.request('POST', '/v1/scheduled', { body });
      assert.equal(response.statusCode, 400, JSON.stringify(body));
      assert.equal(response.json().error.field, field);
    }
    assert.equal(receiver.requests.length, 0);
  });

  it("passes a dispatcher's 4xx answer through as it is", async () => {
    await using receiver = await startReceiver();
    receiver.script({ status: 413, body: { error: { code: 'payload_too_large', message: 'too big' } } });
    await using t = await startTestMain({ dispatcherUrls: receiver.url });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'x', scheduledAt: FUTURE } });
    assert.equal(response.statusCode, 413);
    assert.deepEqual(response.json(), { error: { code: 'payload_too_large', message: 'too big' } });
  });

  it('spreads messages round-robin over the pool', async () => {
    await using a = await listeningDispatcher();
    await using b = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: `${a.url},${b.url}` });
    const holders: string[] = [];
    for (let i = 0; i < 4; i++) {
      const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: `m${i}`, scheduledAt: FUTURE } });
      assert.equal(response.statusCode, 201);
      holders.push(response.json().dispatcher);
    }
    assert.deepEqual(holders, [a.url, b.url, a.url, b.url]);
    assert.equal(await storedCount(a), 2);
    assert.equal(await storedCount(b), 2);
  });

  it('fails over to the next dispatcher when one refuses the connection', async () => {
    const down = await closedPortUrl();
    await using up = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: `${down},${up.url}` });
    for (let i = 0; i < 2; i++) {
      const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: `m${i}`, scheduledAt: FUTURE } });
      assert.equal(response.statusCode, 201, response.body);
      assert.equal(response.json().dispatcher, up.url);
    }
    assert.equal(await storedCount(up), 2);
  });

  it('fails over when a dispatcher answers 503 (its store refused the write: nothing was written)', async () => {
    await using refusing = await startReceiver();
    refusing.fallback = { status: 503, body: { error: { code: 'unavailable', message: 'nothing was written: this store halted after a failed disk sync' } } };
    await using up = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: `${refusing.url},${up.url}` });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'x', scheduledAt: FUTURE } });
    assert.equal(response.statusCode, 201);
    assert.equal(response.json().dispatcher, up.url);
    assert.equal(refusing.requests.length, 1);
  });

  it('fails over when a dispatcher answers 507 storage_full (its disk is full: the write was rolled back)', async () => {
    await using full = await startReceiver();
    full.fallback = { status: 507, body: { error: { code: 'storage_full', message: 'The disk is full: nothing was stored' } } };
    await using up = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: `${full.url},${up.url}` });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'x', scheduledAt: FUTURE } });
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(response.json().dispatcher, up.url);
    assert.equal(full.requests.length, 1);
  });

  it('never stores a second copy elsewhere after a 500 durability_unknown: answers 502 outcome_unknown', async () => {
    await using failing = await syncFailingDispatcher();
    await using other = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: `${failing.url},${other.url}` });
    failing.failSync();
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'committed, not synced', scheduledAt: FUTURE } });
    assert.equal(response.statusCode, 502, response.body);
    const { error } = response.json();
    assert.equal(error.code, 'outcome_unknown');
    assert.match(error.message, /may or may not be stored/);
    assert.match(error.message, /durability|disk/i, 'says why');
    assert.equal(await storedCount(other), 0, 'no copy on the second dispatcher');
    // the row was committed on the first: it is there (and would be delivered after a restart)
    assert.deepEqual((await failing.dispatcher.store.list({ limit: 10 })).map((m) => m.message), ['committed, not synced']);
  });

  it('treats any other 500 as unknown too, and does not fail over', async () => {
    await using failing = await startReceiver();
    failing.fallback = { status: 500, body: { error: { code: 'internal_error', message: 'Internal server error' } } };
    await using other = await startReceiver();
    await using t = await startTestMain({ dispatcherUrls: `${failing.url},${other.url}` });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'x', scheduledAt: FUTURE } });
    assert.equal(response.statusCode, 502);
    assert.equal(response.json().error.code, 'outcome_unknown');
    assert.equal(other.requests.length, 0);
  });

  it('asks the same dispatcher again (same key) when an answer is lost, never the next one', async () => {
    await using flaky = await startReceiver();
    await using other = await startReceiver();
    // the first attempt gets no answer in time; the retry is answered
    flaky.script({ status: 201, hang: true }, { status: 201, body: { id: 'm1', scheduledAt: '2099-01-01T09:30:00.000Z' } });
    await using t = await startTestMain({ dispatcherUrls: `${flaky.url},${other.url}` }, { dispatcherTimeoutMs: 300 });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'x', scheduledAt: FUTURE } });
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(flaky.requests.length, 2);
    assert.equal(other.requests.length, 0);
    const [first, second] = flaky.requests.map((r) => JSON.parse(r.body));
    assert.equal(second.idempotencyKey, first.idempotencyKey);
  });

  it('answers 502 outcome_unknown, naming the key, when a dispatcher that stored the message keeps not answering', async () => {
    await using d = await listeningDispatcher();
    await using stalled = await startStallingFront(d.url, { stalling: true });
    await using other = await startReceiver();
    await using t = await startTestMain({ dispatcherUrls: `${stalled.url},${other.url}` }, { dispatcherTimeoutMs: 300 });
    const body = { username: 'a', message: 'stored, not confirmed', scheduledAt: FUTURE, idempotencyKey: keyFirstTo(0, 2, 'k-stall') };
    const response = await t.request('POST', '/v1/scheduled', { body });
    assert.equal(response.statusCode, 502, response.body);
    assert.equal(response.json().error.code, 'outcome_unknown');
    assert.match(response.json().error.message, /may or may not be stored/);
    assert.ok(response.json().error.message.includes(body.idempotencyKey), 'names the key to send again');
    assert.equal(other.requests.length, 0, 'never sent to a second dispatcher');
    await stalled.settled();
    assert.equal(await storedCount(d), 1);
    assert.equal(stalled.forwarded.length, 2, 'asked once more with the same key');

    // the dispatcher answers again: the same request is the same message
    stalled.stalling = false;
    const again = await t.request('POST', '/v1/scheduled', { body });
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(again.json().message, 'stored, not confirmed');
    assert.equal(await storedCount(d), 1);
  });

  it('sends a key whose outcome is unknown only to the dispatcher that may hold it, even when another comes first for that key', async () => {
    // the key's first choice is down; the second stores it and does not answer
    const downUrl = await closedPortUrl();
    await using holder = await listeningDispatcher();
    await using stalled = await startStallingFront(holder.url, { stalling: true });
    await using t = await startTestMain({ dispatcherUrls: `${downUrl},${stalled.url}` }, { dispatcherTimeoutMs: 300 });
    const body = { username: 'a', message: 'once', scheduledAt: FUTURE, idempotencyKey: keyFirstTo(0, 2, 'k-pinned') };
    const unknown = await t.request('POST', '/v1/scheduled', { body });
    assert.equal(unknown.statusCode, 502, unknown.body);
    await stalled.settled();

    // the first choice comes up; the holder still stalls: asking the first choice would store a second copy
    await using firstChoice = await startTestDispatcher({ port: new URL(downUrl).port });
    await firstChoice.dispatcher.listen();
    const stillUnknown = await t.request('POST', '/v1/scheduled', { body });
    assert.equal(stillUnknown.statusCode, 502, stillUnknown.body);
    assert.equal(await storedCount(firstChoice), 0, 'nothing sent to a dispatcher that cannot know the key');

    stalled.stalling = false;
    const settled = await t.request('POST', '/v1/scheduled', { body });
    assert.equal(settled.statusCode, 200, settled.body);
    assert.equal(settled.json().dispatcher, stalled.url);
    assert.equal(await storedCount(holder), 1);
    assert.equal(await storedCount(firstChoice), 0);
  });

  it('answers 503 naming every dispatcher when none answers, and nothing is stored anywhere', async () => {
    const downA = await closedPortUrl();
    const downB = await closedPortUrl();
    await using t = await startTestMain({ dispatcherUrls: `${downA},${downB}` });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'x', scheduledAt: FUTURE } });
    assert.equal(response.statusCode, 503);
    const { error } = response.json();
    assert.equal(error.code, 'unavailable');
    assert.match(error.message, /^No dispatcher answered: /);
    assert.ok(error.message.includes(downA) && error.message.includes(downB), error.message);
    assert.equal(await t.server.store.countPosts(), 0);
  });

  it('sends the API token to the dispatchers; its own clients need only the access token, when one is set', async () => {
    await using d = await listeningDispatcher({ apiToken: 'tok' });
    const body = { username: 'a', message: 'x', scheduledAt: FUTURE };
    {
      await using open = await startTestMain({ dispatcherUrls: d.url, apiToken: 'tok' });
      assert.equal((await open.request('POST', '/v1/scheduled', { body })).statusCode, 201);
    }
    await using t = await startTestMain({ dispatcherUrls: d.url, apiToken: 'tok', accessToken: 'users' });
    assert.equal((await t.request('POST', '/v1/scheduled', { body })).statusCode, 401);
    assert.equal((await t.request('POST', '/v1/scheduled', { body, token: 'tok' })).statusCode, 401);
    assert.equal((await t.request('GET', '/v1/scheduled')).statusCode, 401);
    assert.equal((await t.request('POST', '/v1/scheduled', { body, token: 'users' })).statusCode, 201);
    assert.equal((await t.request('GET', '/v1/scheduled', { headers: { authorization: basicAuth('users') } })).statusCode, 200);
  });

  it('answers 503 with a hint when the dispatchers refuse its token', async () => {
    await using d = await listeningDispatcher({ apiToken: 'theirs' });
    await using t = await startTestMain({ dispatcherUrls: d.url, apiToken: 'ours' });
    const response = await t.request('POST', '/v1/scheduled', { body: { username: 'a', message: 'x', scheduledAt: FUTURE } });
    assert.equal(response.statusCode, 503);
    assert.match(response.json().error.message, /--api-token/);
  });
});

describe('GET /v1/scheduled', () => {
  it('merges every dispatcher in due-time order and pages through all of them', async () => {
    await using a = await listeningDispatcher();
    await using b = await listeningDispatcher();
    await a.schedule({ username: 'a', message: 'a1', scheduledAt: '2099-01-01T00:00:00Z' }, { username: 'a', message: 'a3', scheduledAt: '2099-01-03T00:00:00Z' });
    await b.schedule({ username: 'b', message: 'b2', scheduledAt: '2099-01-02T00:00:00Z' }, { username: 'b', message: 'b4', scheduledAt: '2099-01-04T00:00:00Z' });
    await using t = await startTestMain({ dispatcherUrls: `${a.url},${b.url}` });
    const seen: { message: string; dispatcher: string }[] = [];
    let cursor: string | null = null;
    do {
      const response = await t.request('GET', `/v1/scheduled?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(response.statusCode, 200, response.body);
      const page: { items: { message: string; dispatcher: string }[]; nextCursor: string | null; unavailable: unknown[] } = response.json();
      assert.deepEqual(page.unavailable, []);
      seen.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
    assert.deepEqual(seen.map((m) => m.message), ['a1', 'b2', 'a3', 'b4']);
    assert.deepEqual(seen.map((m) => m.dispatcher), [a.url, b.url, a.url, b.url]);
  });

  it('lists what it can when a dispatcher is down, and says which one is missing', async () => {
    const down = await closedPortUrl();
    await using up = await listeningDispatcher();
    await up.schedule({ username: 'a', message: 'here', scheduledAt: FUTURE });
    await using t = await startTestMain({ dispatcherUrls: `${down},${up.url}` });
    const page = (await t.request('GET', '/v1/scheduled')).json();
    assert.deepEqual(page.items.map((m: { message: string }) => m.message), ['here']);
    assert.equal(page.unavailable.length, 1);
    assert.equal(page.unavailable[0].dispatcher, down);
  });

  it('answers 503 when no dispatcher answers, and passes a dispatcher 400 through', async () => {
    await using t = await startTestMain({ dispatcherUrls: await closedPortUrl() });
    assert.equal((await t.request('GET', '/v1/scheduled')).statusCode, 503);
    await using d = await listeningDispatcher();
    await using t2 = await startTestMain({ dispatcherUrls: d.url });
    const bad = await t2.request('GET', '/v1/scheduled?cursor=garbage');
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.field, 'cursor');
    assert.equal((await t2.request('GET', '/v1/scheduled?status=lost')).statusCode, 400);
  });
});

describe('PATCH and DELETE /v1/scheduled/:id', () => {
  it('finds the dispatcher that holds the message and passes its 200 and 204 through', async () => {
    await using a = await listeningDispatcher();
    await using b = await listeningDispatcher();
    const [onB] = await b.schedule({ username: 'b', message: 'mine', scheduledAt: FUTURE });
    await using t = await startTestMain({ dispatcherUrls: `${a.url},${b.url}` });
    const patched = await t.request('PATCH', `/v1/scheduled/${onB!.id}`, { body: { scheduledAt: '2099-02-01T00:00:00Z', message: 'changed' } });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.equal(patched.json().scheduledAt, '2099-02-01T00:00:00.000Z');
    assert.equal(patched.json().message, 'changed');
    assert.equal(patched.json().dispatcher, b.url);
    const deleted = await t.request('DELETE', `/v1/scheduled/${onB!.id}`);
    assert.equal(deleted.statusCode, 204);
    assert.equal(deleted.body, '');
    assert.equal(await b.dispatcher.store.get(onB!.id), undefined);
  });

  it('forwards a change of deliverBy, and null to drop it', async () => {
    await using d = await listeningDispatcher();
    const [message] = await d.schedule({ username: 'a', message: 'x', scheduledAt: '2099-01-01T00:00:00Z' });
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const set = await t.request('PATCH', `/v1/scheduled/${message!.id}`, { body: { deliverBy: '2099-01-01T06:00:00Z' } });
    assert.equal(set.statusCode, 200, set.body);
    assert.equal(set.json().deliverBy, '2099-01-01T06:00:00.000Z');
    assert.equal((await d.dispatcher.store.get(message!.id))!.deliverBy, Date.parse('2099-01-01T06:00:00Z'));
    const dropped = await t.request('PATCH', `/v1/scheduled/${message!.id}`, { body: { deliverBy: null } });
    assert.equal(dropped.statusCode, 200, dropped.body);
    assert.equal(dropped.json().deliverBy, null);
    assert.equal((await d.dispatcher.store.get(message!.id))!.deliverBy, null);
  });

  it('answers 409 with status expired for a message not sent by its deliver-by', async () => {
    await using d = await listeningDispatcher();
    const [message] = await d.schedule({ username: 'a', message: 'x', scheduledAt: FUTURE });
    await forceStatus(d.dispatcher, message!.id, 'expired', { error: 'not sent: past its deliver-by' });
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const late = await t.request('PATCH', `/v1/scheduled/${message!.id}`, { body: { message: 'too late' } });
    assert.equal(late.statusCode, 409);
    assert.equal(late.json().error.status, 'expired');
    const listed = await t.request('GET', '/v1/scheduled?status=expired');
    assert.equal(listed.statusCode, 200);
    assert.deepEqual(listed.json().items.map((m: { id: string }) => m.id), [message!.id]);
  });

  it('answers 404 when no dispatcher knows the id, 409 with the status once it is delivered', async () => {
    await using d = await listeningDispatcher();
    const [message] = await d.schedule({ username: 'a', message: 'x', scheduledAt: FUTURE });
    await forceStatus(d.dispatcher, message!.id, 'delivered');
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const unknown = await t.request('DELETE', '/v1/scheduled/01900000-0000-7000-8000-000000000000');
    assert.equal(unknown.statusCode, 404);
    assert.equal(unknown.json().error.code, 'not_found');
    const late = await t.request('PATCH', `/v1/scheduled/${message!.id}`, { body: { scheduledAt: FUTURE } });
    assert.equal(late.statusCode, 409);
    assert.equal(late.json().error.status, 'delivered');
    assert.equal((await t.request('DELETE', `/v1/scheduled/${message!.id}`)).statusCode, 409);
  });

  it('answers 503 rather than 404 when a dispatcher that may hold it does not answer', async () => {
    const down = await closedPortUrl();
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: `${d.url},${down}` });
    const response = await t.request('DELETE', '/v1/scheduled/01900000-0000-7000-8000-000000000000');
    assert.equal(response.statusCode, 503);
    assert.ok(response.json().error.message.includes(down));
  });

  it('validates a change before asking anyone', async () => {
    await using receiver = await startReceiver();
    await using t = await startTestMain({ dispatcherUrls: receiver.url });
    const response = await t.request('PATCH', '/v1/scheduled/x', { body: { scheduledAt: 'soon' } });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.field, 'scheduledAt');
    assert.equal(receiver.requests.length, 0);
  });
});

describe("the original's POST /scheduleMessage.php", () => {
  it('forwards a datetime-local time and answers with the dispatcher\'s JSON as externalResult', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const response = await t.form('/scheduleMessage.php', { username: 'Curl', message: "I'm scheduling a message!", time: '2099-08-01T13:30' });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json();
    assert.deepEqual(body.received, { username: 'Curl', message: "I'm scheduling a message!", time: '2099-08-01T13:30' });
    assert.equal(body.result, 'Success');
    assert.equal(body.externalResult.scheduledAt, '2099-08-01T13:30:00.000Z');
    assert.equal((await d.dispatcher.store.get(body.externalResult.id))?.message, "I'm scheduling a message!");
  });

  it("reads the time in the page's timezone field when sent", async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const response = await t.form('/scheduleMessage.php', { username: 'a', message: 'b', time: '2099-08-01 13:30:00', timezone: 'Asia/Tokyo' });
    assert.equal(response.json().externalResult.scheduledAt, '2099-08-01T04:30:00.000Z');
  });

  it('answers the original Failure shapes: 400 for missing fields, 503 "No response from Dispatcher"', async () => {
    await using t = await startTestMain({ dispatcherUrls: await closedPortUrl() });
    const missing = await t.form('/scheduleMessage.php', { username: 'a', message: 'b' });
    assert.equal(missing.statusCode, 400);
    assert.deepEqual(missing.json(), {
      received: { username: 'a', message: 'b', time: null },
      result: 'Failure',
      failure: 'Invalid Post. Expected three non-zero strings (username, message, time).',
    });
    const down = await t.form('/scheduleMessage.php', { username: 'a', message: 'b', time: '2099-08-01T13:30' });
    assert.equal(down.statusCode, 503);
    // received first, as in every answer of the original
    assert.equal(down.body, '{"received":{"username":"a","message":"b","time":"2099-08-01T13:30"},"result":"Failure","failure":"No response from Dispatcher"}');
    const badTime = await t.form('/scheduleMessage.php', { username: 'a', message: 'b', time: 'noon' });
    assert.equal(badTime.statusCode, 400);
    assert.equal(badTime.json().result, 'Failure');
    assert.match(badTime.json().failure, /scheduledAt|time/);
    const blankName = await t.form('/scheduleMessage.php', { username: '\u200B\u200B', message: 'b', time: '2099-08-01T13:30' });
    assert.equal(blankName.statusCode, 400);
    assert.equal(blankName.json().result, 'Failure');
    assert.match(blankName.json().failure, /username must contain a visible character/);
  });

  it('a form sent again after a dispatcher stored it without answering is stored once: 502 "Unknown", never "Failure"', async () => {
    await using d = await listeningDispatcher();
    await using stalled = await startStallingFront(d.url, { stalling: true });
    await using t = await startTestMain({ dispatcherUrls: stalled.url }, { dispatcherTimeoutMs: 300 });
    const fields = { username: 'Curl', message: 'posted once', time: '2099-08-01T13:30' };
    const unknown = await t.form('/scheduleMessage.php', fields);
    assert.equal(unknown.statusCode, 502, unknown.body);
    const body = unknown.json();
    assert.deepEqual(body.received, fields);
    assert.equal(body.result, 'Unknown');
    assert.match(body.message, /may or may not be scheduled\. Sending the same form again is safe: it will not be posted twice\./);
    await stalled.settled();
    assert.equal(await storedCount(d), 1);

    stalled.stalling = false;
    const again = await t.form('/scheduleMessage.php', fields);
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(again.json().result, 'Success');
    assert.equal(again.json().externalResult.message, 'posted once');
    assert.equal(await storedCount(d), 1, 'the same form is the same message');
  });

  it('derives its key from the message: another text, time or name is another message', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url });
    const base = { username: 'a', message: 'b', time: '2099-08-01T13:30' };
    const variants = [base, { ...base, message: 'c' }, { ...base, time: '2099-08-01T13:31' }, { ...base, username: 'z' }, base];
    const ids = [];
    for (const fields of variants) {
      const response = await t.form('/scheduleMessage.php', fields);
      assert.equal(response.statusCode, 200, response.body);
      ids.push(response.json().externalResult.id);
    }
    assert.equal(new Set(ids).size, 4);
    assert.equal(ids[4], ids[0], 'the first form again is the first message');
    assert.equal(await storedCount(d), 4);
  });

  it('needs the access token when one is set (Bearer or curl -u :token)', async () => {
    await using d = await listeningDispatcher({ apiToken: 'tok' });
    await using t = await startTestMain({ dispatcherUrls: d.url, apiToken: 'tok', accessToken: 'tok' });
    const fields = { username: 'a', message: 'b', time: '2099-08-01T13:30' };
    const refused = await t.form('/scheduleMessage.php', fields);
    assert.equal(refused.statusCode, 401);
    assert.equal(refused.json().result, 'Failure');
    assert.equal((await t.form('/scheduleMessage.php', fields, { headers: { authorization: basicAuth('tok') } })).statusCode, 200);
  });
});

describe('scheduling end to end', () => {
  it('a message scheduled through the main server is delivered, signed, into its feed once', async () => {
    const secret = 'shared-secret';
    const dispatcherUrl = await closedPortUrl(); // a free port for the dispatcher, known before it starts
    await using t = await startTestMain({ signingSecret: secret, dispatcherUrls: dispatcherUrl });
    const mainUrl = await t.server.listen();
    await using d = await startTestDispatcher({ signingSecret: secret, mainUrl, port: new URL(dispatcherUrl).port });
    await d.dispatcher.listen();
    // watch the live stream from before scheduling, so the post cannot slip by
    const arrived = new Promise<{ message: string; messageId: string }>((resolve, reject) => {
      get(`${mainUrl}/v1/events`, (response) => {
        let buffer = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          buffer += chunk;
          if (buffer.includes(': connected')) connected();
          const match = /event: post\ndata: (.*)\n/.exec(buffer);
          if (match) {
            response.destroy();
            resolve(JSON.parse(match[1]!));
          }
        });
      }).on('error', reject);
    });
    let connected!: () => void;
    await new Promise<void>((resolve) => { connected = resolve; });
    const scheduled = await t.request('POST', '/v1/scheduled', { body: { username: 'Ann', message: 'now!', delaySeconds: 0 } });
    assert.equal(scheduled.statusCode, 201, scheduled.body);
    const post = await arrived;
    assert.equal(post.message, 'now!');
    assert.equal(post.messageId, scheduled.json().id);
    assert.equal(await t.server.store.countPosts(), 1);
  });
});
