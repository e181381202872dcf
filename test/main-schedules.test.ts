import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../src/clock.ts';
import { startTestDispatcher, type TestDispatcher } from './support/dispatcher.ts';
import { startTestMain } from './support/main.ts';

/** The main server's /v1/schedules: checked here, passed through to the dispatcher pool; a preview computed here. */

interface Json {
  [key: string]: any;
}

async function listeningDispatcher(): Promise<TestDispatcher & { url: string }> {
  const t = await startTestDispatcher();
  const url = await t.dispatcher.listen();
  return Object.assign(t, { url });
}

describe("the main server's /v1/schedules", () => {
  it('creates a schedule on a dispatcher of the pool, lists, reads, previews, changes and deletes it', async () => {
    await using d1 = await listeningDispatcher();
    await using d2 = await listeningDispatcher();
    await using main = await startTestMain({ dispatcherUrls: `${d1.url},${d2.url}`, timeZone: 'Europe/Berlin' });
    const created = await main.request('POST', '/v1/schedules', { body: { username: 'ada', message: 'weekly', cron: '0 9 * * MON', startAt: '2099-01-01 00:00' } });
    assert.equal(created.statusCode, 201, created.body);
    const body = created.json() as Json;
    assert.equal(body.timeZone, 'Europe/Berlin', 'the main server\'s zone when none is given');
    assert.equal(body.startAt, '2098-12-31T23:00:00.000Z', 'startAt read in that zone, sent on as UTC');
    assert.equal(body.next.local, '2099-01-05 09:00:00');
    assert.ok([d1.url, d2.url].includes(body.dispatcher));
    assert.ok(body.idempotencyKey, 'a key is always sent');

    const list = (await main.request('GET', '/v1/schedules')).json() as Json;
    assert.deepEqual(list.items.map((s: Json) => s.id), [body.id]);
    assert.equal((await main.request('GET', `/v1/schedules/${body.id}`)).json().message, 'weekly');
    const preview = (await main.request('GET', `/v1/schedules/${body.id}/preview?count=2`)).json() as Json;
    assert.deepEqual(preview.items.map((i: Json) => i.local), ['2099-01-05 09:00:00', '2099-01-12 09:00:00']);
    const paused = await main.request('PATCH', `/v1/schedules/${body.id}`, { body: { paused: true } });
    assert.equal(paused.statusCode, 200, paused.body);
    assert.equal((paused.json() as Json).status, 'paused');
    assert.equal((await main.request('PATCH', `/v1/schedules/${body.id}`, { body: { catchUp: 'sometimes' } })).json().error.field, 'catchUp');
    assert.equal((await main.request('DELETE', `/v1/schedules/${body.id}`)).statusCode, 204);
    assert.equal((await main.request('GET', `/v1/schedules/${body.id}`)).statusCode, 404);
  });

  it('refuses bad input itself, naming the field, and sends nothing; passes on a dispatcher\'s refusal', async () => {
    await using d1 = await listeningDispatcher();
    await using main = await startTestMain({ dispatcherUrls: d1.url });
    const bad = await main.request('POST', '/v1/schedules', { body: { username: 'a', message: 'm', every: '15 minutes' } });
    assert.equal(bad.statusCode, 400);
    assert.equal((bad.json() as Json).error.field, 'every');
    assert.deepEqual((await d1.request('GET', '/v1/schedules')).json().items, []);
    // one that would never fire is refused by the dispatcher, and its 400 passed on as it is
    const never = await main.request('POST', '/v1/schedules', { body: { username: 'a', message: 'm', cron: '0 9 * * *', startAt: '2030-01-01T00:00:00Z', endAt: '2030-01-01T08:00:00Z' } });
    assert.equal(never.statusCode, 400, never.body);
    assert.equal((never.json() as Json).error.field, 'endAt');
    assert.match((never.json() as Json).error.message, /would never fire/);
    assert.deepEqual((await d1.request('GET', '/v1/schedules')).json().items, []);
  });

  it('previews a rule not yet saved, with DST notes, without a dispatcher', async () => {
    await using main = await startTestMain({}, { clock: new FakeClock(Date.parse('2026-10-30T00:00:00Z')) });
    const preview = await main.request('POST', '/v1/schedules/preview', { body: { cron: '30 1 * * *', timeZone: 'America/New_York', dstPolicy: { overlap: 'both' }, startAt: '2026-10-31T00:00:00Z', count: 3 } });
    assert.equal(preview.statusCode, 200, preview.body);
    assert.deepEqual((preview.json() as Json).items.map((i: Json) => [i.local, i.utcOffset]), [
      ['2026-10-31 01:30:00', '-04:00'], ['2026-11-01 01:30:00', '-04:00'], ['2026-11-01 01:30:00', '-05:00'],
    ]);
  });
});
