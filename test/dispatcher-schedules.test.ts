import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../src/clock.ts';
import { occurrenceMessageId } from '../src/dispatcher/schedules.ts';
import { startTestDispatcher } from './support/dispatcher.ts';

/**
 * /v1/schedules over HTTP (in-process). The engine is not started: the tests
 * look at what is stored and answered; the materialiser is run by hand where
 * a test needs occurrences.
 */

interface Json {
  [key: string]: any;
}

const NOW = Date.parse('2026-03-01T12:00:00Z');

describe('/v1/schedules', () => {
  it('creates a schedule (201) with its next fire time in its zone, gets and lists it', async () => {
    await using t = await startTestDispatcher({}, { clock: new FakeClock(NOW) });
    const created = await t.request('POST', '/v1/schedules', { body: { username: 'ada', message: 'stand-up', cron: '30 2 * * *', timeZone: 'america/new_york', startAt: '2026-03-07 00:00' } });
    assert.equal(created.statusCode, 201, created.body);
    const body = created.json() as Json;
    assert.equal(created.headers.location, `/v1/schedules/${body.id}`);
    assert.deepEqual({ ...body, id: undefined, createdAt: undefined, updatedAt: undefined }, {
      id: undefined, target: 'default', username: 'ada', message: 'stand-up', cron: '30 2 * * *', every: null, timeZone: 'America/New_York',
      startAt: '2026-03-07T05:00:00.000Z', endAt: null, maxOccurrences: null, dstPolicy: { gap: 'shift', overlap: 'first' },
      catchUp: 'latest', catchUpMax: 100, status: 'active', paused: false, nextFireAt: '2026-03-07T07:30:00.000Z',
      next: { at: '2026-03-07T07:30:00.000Z', local: '2026-03-07 02:30:00', utcOffset: '-05:00' },
      occurrences: 0, lastFireAt: null, idempotencyKey: null, version: 1, createdAt: undefined, updatedAt: undefined,
    });
    assert.deepEqual((await t.request('GET', `/v1/schedules/${body.id}`)).json(), body);
    const list = (await t.request('GET', '/v1/schedules')).json() as Json;
    assert.deepEqual(list, { items: [body], nextCursor: null });
  });

  it('pages the list by id', async () => {
    await using t = await startTestDispatcher({}, { clock: new FakeClock(NOW) });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(((await t.request('POST', '/v1/schedules', { body: { username: 'a', message: `m${i}`, every: '1h' } })).json() as Json).id);
    const first = (await t.request('GET', '/v1/schedules?limit=2')).json() as Json;
    assert.deepEqual(first.items.map((s: Json) => s.id), ids.slice(0, 2));
    const second = (await t.request('GET', `/v1/schedules?limit=2&cursor=${first.nextCursor}`)).json() as Json;
    assert.deepEqual(second.items.map((s: Json) => s.id), ids.slice(2));
    assert.equal(second.nextCursor, null);
  });

  it('answers the first schedule (200) when an idempotencyKey comes again', async () => {
    await using t = await startTestDispatcher({}, { clock: new FakeClock(NOW) });
    const first = await t.request('POST', '/v1/schedules', { body: { username: 'a', message: 'm', every: '15m', idempotencyKey: 'k' } });
    const again = await t.request('POST', '/v1/schedules', { body: { username: 'a', message: 'other', every: '15m', idempotencyKey: 'k' } });
    assert.equal(first.statusCode, 201);
    assert.equal(again.statusCode, 200);
    assert.deepEqual(again.json(), first.json());
  });

  it('previews the next N fire instants with local time and offset, DST notes included, saved or not', async () => {
    await using t = await startTestDispatcher({}, { clock: new FakeClock(Date.parse('2026-03-06T12:00:00Z')) });
    const unsaved = await t.request('POST', '/v1/schedules/preview', { body: { cron: '30 2 * * *', timeZone: 'America/New_York', count: 3 } });
    assert.equal(unsaved.statusCode, 200, unsaved.body);
    assert.deepEqual(unsaved.json(), {
      timeZone: 'America/New_York',
      items: [
        { at: '2026-03-07T07:30:00.000Z', local: '2026-03-07 02:30:00', utcOffset: '-05:00' },
        { at: '2026-03-08T07:30:00.000Z', local: '2026-03-08 03:30:00', utcOffset: '-04:00', note: 'the wall-clock time does not exist that day (DST gap): moved forward by the gap' },
        { at: '2026-03-09T06:30:00.000Z', local: '2026-03-09 02:30:00', utcOffset: '-04:00' },
      ],
    });
    const skip = (await t.request('POST', '/v1/schedules/preview', { body: { cron: '30 2 * * *', timeZone: 'America/New_York', dstPolicy: { gap: 'skip' }, count: 2 } })).json() as Json;
    assert.deepEqual(skip.items.map((i: Json) => i.local), ['2026-03-07 02:30:00', '2026-03-09 02:30:00']);
    const saved = (await t.request('POST', '/v1/schedules', { body: { username: 'a', message: 'm', cron: '30 2 * * *', timeZone: 'America/New_York', maxOccurrences: 2 } })).json() as Json;
    const preview = await t.request('GET', `/v1/schedules/${saved.id}/preview?count=5`);
    assert.equal(preview.statusCode, 200);
    assert.deepEqual((preview.json() as Json).items.map((i: Json) => i.at), ['2026-03-07T07:30:00.000Z', '2026-03-08T07:30:00.000Z'], 'maxOccurrences caps the preview');
    assert.equal((await t.request('GET', `/v1/schedules/${saved.id}/preview?count=0`)).statusCode, 400);
  });

  it('refuses bad input with a 400 naming the field, and stores nothing', async () => {
    await using t = await startTestDispatcher({}, { clock: new FakeClock(NOW) });
    const base = { username: 'a', message: 'm', cron: '0 9 * * *' };
    const cases: [Json, string][] = [
      [{ ...base, cron: '0 9 * *' }, 'cron'],
      [{ ...base, cron: '0 25 * * *' }, 'cron'],
      [{ ...base, cron: '0 0 30 2 *' }, 'cron'],
      [{ username: 'a', message: 'm' }, 'cron'],
      [{ ...base, every: '15m' }, 'every'],
      [{ username: 'a', message: 'm', every: '15' }, 'every'],
      [{ username: 'a', message: 'm', every: '0s' }, 'every'],
      [{ ...base, timeZone: 'Mars/Olympus' }, 'timeZone'],
      [{ ...base, startAt: 'tomorrow' }, 'startAt'],
      [{ ...base, startAt: '2026-05-01T00:00:00Z', endAt: '2026-04-01T00:00:00Z' }, 'endAt'],
      [{ ...base, maxOccurrences: 0 }, 'maxOccurrences'],
      [{ ...base, dstPolicy: { gap: 'later' } }, 'dstPolicy.gap'],
      [{ ...base, dstPolicy: { overlap: 'twice' } }, 'dstPolicy.overlap'],
      [{ ...base, dstPolicy: { fold: 'x' } }, 'dstPolicy.fold'],
      [{ ...base, catchUp: 'some' }, 'catchUp'],
      [{ ...base, catchUpMax: 5000 }, 'catchUpMax'],
      [{ ...base, paused: 'yes' }, 'paused'],
      [{ ...base, username: ' ' }, 'username'],
      [{ ...base, message: '' }, 'message'],
      [{ ...base, colour: 'red' }, 'colour'],
    ];
    for (const [body, field] of cases) {
      const response = await t.request('POST', '/v1/schedules', { body });
      assert.equal(response.statusCode, 400, JSON.stringify(body));
      assert.equal((response.json() as Json).error.field, field, JSON.stringify(body));
    }
    assert.deepEqual((await t.request('GET', '/v1/schedules')).json(), { items: [], nextCursor: null });
  });

  it('PATCH changes text and rule, pauses and resumes; 404 for an unknown id; DELETE removes it', async () => {
    const clock = new FakeClock(NOW);
    await using t = await startTestDispatcher({}, { clock });
    const created = (await t.request('POST', '/v1/schedules', { body: { username: 'a', message: 'm', cron: '0 9 * * *', timeZone: 'Europe/Berlin' } })).json() as Json;
    assert.equal(created.nextFireAt, '2026-03-02T08:00:00.000Z');
    const changed = await t.request('PATCH', `/v1/schedules/${created.id}`, { body: { message: 'new text', every: '90m' } });
    assert.equal(changed.statusCode, 200, changed.body);
    const body = changed.json() as Json;
    assert.equal(body.message, 'new text');
    assert.equal(body.cron, null);
    assert.equal(body.every, '1h30m');
    assert.equal(body.version, 2);
    const paused = (await t.request('PATCH', `/v1/schedules/${created.id}`, { body: { paused: true } })).json() as Json;
    assert.equal(paused.status, 'paused');
    assert.equal(paused.next, null);
    await clock.advance(10 * 3_600_000);
    const resumed = (await t.request('PATCH', `/v1/schedules/${created.id}`, { body: { paused: false } })).json() as Json;
    assert.equal(resumed.status, 'active');
    assert.ok(Date.parse(resumed.nextFireAt) > clock.now(), 'resumed: fires from now on');
    assert.equal((await t.request('PATCH', `/v1/schedules/${created.id}`, { body: { dstPolicy: { gap: 'never' } } })).statusCode, 400);
    assert.equal((await t.request('PATCH', `/v1/schedules/${created.id}`, { body: {} })).statusCode, 400);
    assert.equal((await t.request('PATCH', '/v1/schedules/nope', { body: { paused: true } })).statusCode, 404);
    assert.equal((await t.request('DELETE', `/v1/schedules/${created.id}`)).statusCode, 204);
    assert.equal((await t.request('GET', `/v1/schedules/${created.id}`)).statusCode, 404);
    assert.equal((await t.request('DELETE', `/v1/schedules/${created.id}`)).statusCode, 404);
  });

  it('a pause or a delete withdraws occurrences materialised ahead; a text change re-materialises them with the new text', async () => {
    const clock = new FakeClock(NOW);
    await using t = await startTestDispatcher({}, { clock });
    const { dispatcher } = t;
    await dispatcher.engine.start();
    await dispatcher.schedules.start();
    const created = (await t.request('POST', '/v1/schedules', { body: { username: 'a', message: 'old', every: '2s', startAt: new Date(NOW + 2000).toISOString() } })).json() as Json;
    await dispatcher.schedules.run();
    const pendingIds = [NOW + 2000, NOW + 4000].map((at) => occurrenceMessageId(created.id, at));
    for (const id of pendingIds) assert.equal((await dispatcher.store.get(id))?.message, 'old');
    await t.request('PATCH', `/v1/schedules/${created.id}`, { body: { message: 'new' } });
    await dispatcher.schedules.run();
    for (const id of pendingIds) assert.equal((await dispatcher.store.get(id))?.message, 'new');
    await t.request('PATCH', `/v1/schedules/${created.id}`, { body: { paused: true } });
    for (const id of pendingIds) assert.equal(await dispatcher.store.get(id), undefined);
    await t.request('PATCH', `/v1/schedules/${created.id}`, { body: { paused: false } });
    await dispatcher.schedules.run();
    assert.ok(await dispatcher.store.get(pendingIds[0]!));
    assert.equal((await t.request('DELETE', `/v1/schedules/${created.id}`)).statusCode, 204);
    for (const id of pendingIds) assert.equal(await dispatcher.store.get(id), undefined);
  });

  it('a text-only PATCH keeps the next fire time: occurrences due and not yet materialised still come, with the new text', async () => {
    const clock = new FakeClock(NOW);
    await using t = await startTestDispatcher({}, { clock });
    const { dispatcher } = t;
    const created = (await t.request('POST', '/v1/schedules', { body: { username: 'a', message: 'old', every: '10s', startAt: new Date(NOW + 10_000).toISOString() } })).json() as Json;
    // the materialiser is behind by 30 s (not started yet; less than the minute after which catch-up applies):
    // the occurrences at 10 s, 20 s and 30 s are due and not materialised
    await clock.advance(30_000);
    assert.equal((await dispatcher.store.getSchedule(created.id))?.nextFireAt, NOW + 10_000);
    for (const body of [{ message: 'new' }, { catchUp: 'all' }, { catchUpMax: 5, message: 'new' }]) {
      const changed = await t.request('PATCH', `/v1/schedules/${created.id}`, { body });
      assert.equal(changed.statusCode, 200, changed.body);
      assert.equal((changed.json() as Json).nextFireAt, new Date(NOW + 10_000).toISOString(), JSON.stringify(body));
    }
    await dispatcher.schedules.start();
    for (const at of [NOW + 10_000, NOW + 20_000, NOW + 30_000]) {
      assert.equal((await dispatcher.store.get(occurrenceMessageId(created.id, at)))?.message, 'new', `the occurrence at +${(at - NOW) / 1000}s`);
    }
    // a change of when it fires still works the next fire time out from now
    await clock.advance(30_000);
    const retimed = (await t.request('PATCH', `/v1/schedules/${created.id}`, { body: { every: '7s' } })).json() as Json;
    assert.ok(Date.parse(retimed.nextFireAt) > clock.now(), retimed.nextFireAt);
  });

  it('refuses (400, nothing stored) a schedule that would never fire: endAt before its first occurrence, created or changed', async () => {
    const clock = new FakeClock(NOW);
    await using t = await startTestDispatcher({}, { clock });
    const cases: [Json, string, RegExp][] = [
      // startAt in 3001: croner finds no match after 2999, so this rule has no occurrence at all
      [{ cron: '0 9 * * *', startAt: '3001-01-01T00:00:00Z', endAt: '3001-01-01T08:00:00Z' }, 'startAt', /no occurrence from startAt \(3001-01-01T00:00:00.000Z\) on: the schedule would never fire/],
      [{ cron: '0 9 * * *', startAt: '2030-01-01T00:00:00Z', endAt: '2030-01-01T08:00:00Z' }, 'endAt', /endAt \(2030-01-01T08:00:00.000Z\) is before the rule's first occurrence \(2030-01-01T09:00:00.000Z\): the schedule would never fire/],
      // endAt already past
      [{ cron: '0 9 * * *', endAt: '2026-03-01T11:00:00Z' }, 'endAt', /is before the rule's first occurrence/],
      // 2026-03-08 02:30 is in New York's gap, skipped: the next is in 2027 (its gap comes on the 14th)
      [{ cron: '30 2 8 3 *', timeZone: 'America/New_York', dstPolicy: { gap: 'skip' }, endAt: '2026-12-31T00:00:00Z' }, 'endAt', /first occurrence \(2027-03-08T07:30:00.000Z\)/],
      // without startAt the first occurrence of an interval is one interval after creation
      [{ every: '1h', endAt: '2026-03-01T12:30:00Z' }, 'endAt', /first occurrence \(2026-03-01T13:00:00.000Z\)/],
    ];
    for (const [rule, field, message] of cases) {
      const response = await t.request('POST', '/v1/schedules', { body: { username: 'a', message: 'm', ...rule } });
      assert.equal(response.statusCode, 400, JSON.stringify(rule));
      const error = (response.json() as Json).error;
      assert.equal(error.field, field, JSON.stringify(rule));
      assert.match(error.message, message);
    }
    assert.deepEqual((await t.request('GET', '/v1/schedules')).json(), { items: [], nextCursor: null });
    // a window that holds one occurrence is fine
    const fine = await t.request('POST', '/v1/schedules', { body: { username: 'a', message: 'm', cron: '0 9 * * *', startAt: '2030-01-01T00:00:00Z', endAt: '2030-01-01T09:00:00Z' } });
    assert.equal(fine.statusCode, 201, fine.body);
    const created = fine.json() as Json;
    assert.equal(created.nextFireAt, '2030-01-01T09:00:00.000Z');
    // changed into one that never fires: refused, and the schedule is as it was
    for (const [body, field] of [
      [{ endAt: '2030-01-01T08:59:59Z' }, 'endAt'], [{ cron: '0 10 * * *' }, 'endAt'], [{ startAt: '2030-01-01T09:00:01Z', endAt: '2030-01-01T12:00:00Z' }, 'endAt'],
      [{ startAt: '3001-01-01T00:00:00Z', endAt: null }, 'startAt'],
    ] as const) {
      const response = await t.request('PATCH', `/v1/schedules/${created.id}`, { body });
      assert.equal(response.statusCode, 400, JSON.stringify(body));
      assert.equal((response.json() as Json).error.field, field, JSON.stringify(body));
    }
    assert.deepEqual((await t.request('GET', `/v1/schedules/${created.id}`)).json(), created);
    // a text change to a finished schedule is not a timing change, and is taken
    assert.equal((await t.request('PATCH', `/v1/schedules/${created.id}`, { body: { message: 'still fine' } })).statusCode, 200);
  });

  it('a delete withdraws the occurrences materialised between its read and its write (no stale list)', async () => {
    const clock = new FakeClock(NOW);
    await using t = await startTestDispatcher({}, { clock });
    const { dispatcher } = t;
    await dispatcher.engine.start();
    await dispatcher.schedules.start();
    const created = (await t.request('POST', '/v1/schedules', { body: { username: 'a', message: 'm', every: '2s', startAt: new Date(NOW + 2000).toISOString() } })).json() as Json;
    await dispatcher.schedules.run();
    // two seconds pass and the materialiser runs right after any read of the schedule, as a concurrent one would between a read and a write
    const store = dispatcher.store;
    const getSchedule = store.getSchedule.bind(store);
    store.getSchedule = async (id) => {
      const schedule = await getSchedule(id);
      await clock.advance(2000);
      await dispatcher.schedules.run();
      return schedule;
    };
    const ids = [NOW + 4000, NOW + 6000].map((at) => occurrenceMessageId(created.id, at));
    assert.equal((await t.request('DELETE', `/v1/schedules/${created.id}`)).statusCode, 204);
    store.getSchedule = getSchedule;
    await dispatcher.schedules.run();
    for (const id of ids) assert.equal(await store.get(id), undefined, 'no occurrence materialised before the delete survives it');
    assert.equal((await store.countByStatus()).scheduled, 0);
  });

  it('a pause and a resume count only the occurrences actually withdrawn, once', async () => {
    const clock = new FakeClock(NOW);
    await using t = await startTestDispatcher({}, { clock });
    const { dispatcher } = t;
    await dispatcher.schedules.start();
    const created = (await t.request('POST', '/v1/schedules', { body: { username: 'a', message: 'm', every: '1s', startAt: new Date(NOW + 1000).toISOString(), maxOccurrences: 100 } })).json() as Json;
    await dispatcher.schedules.run();
    assert.equal((await dispatcher.store.getSchedule(created.id))?.occurrences, 5);
    await clock.advance(2500);
    // 1 and 2 are due (posted, or about to be); 3, 4 and 5 are withdrawn
    await t.request('PATCH', `/v1/schedules/${created.id}`, { body: { paused: true } });
    assert.equal((await dispatcher.store.getSchedule(created.id))?.occurrences, 2);
    // a resume withdraws nothing more (and materialises at once)
    await t.request('PATCH', `/v1/schedules/${created.id}`, { body: { paused: false } });
    await dispatcher.schedules.run();
    const existing = [];
    for (let at = NOW + 1000; at <= clock.now() + 5000; at += 1000) if (await dispatcher.store.get(occurrenceMessageId(created.id, at))) existing.push(at);
    assert.equal((await dispatcher.store.getSchedule(created.id))?.occurrences, existing.length, 'the count is the occurrences that exist');
  });

  it('one-shot messages keep no lead-time ceiling: a message for the year 2100 is stored and listed', async () => {
    await using t = await startTestDispatcher({}, { clock: new FakeClock(NOW) });
    const response = await t.request('POST', '/v1/messages', { body: { username: 'a', message: 'hello, 2100', scheduledAt: '2100-01-01T00:00:00Z' } });
    assert.equal(response.statusCode, 201);
    const list = (await t.request('GET', '/v1/messages?status=scheduled')).json() as Json;
    assert.deepEqual(list.items.map((m: Json) => [m.message, m.scheduledAt]), [['hello, 2100', '2100-01-01T00:00:00.000Z']]);
  });

  it("the dispatcher's page lists schedules with the next occurrence, and pauses, resumes and deletes them", async () => {
    await using t = await startTestDispatcher({}, { clock: new FakeClock(NOW) });
    const created = (await t.request('POST', '/v1/schedules', { body: { username: 'Ann', message: 'stand-up <b>', cron: '0 9 * * MON-FRI', timeZone: 'Asia/Kolkata' } })).json() as Json;
    const page = (await t.request('GET', '/')).body;
    const card = page.slice(page.indexOf('id="schedules-card"'), page.indexOf('</section>', page.indexOf('id="schedules-card"')));
    assert.match(card, /cron 0 9 \* \* MON-FRI in Asia\/Kolkata/);
    assert.match(card, /next <time datetime="2026-03-02T03:30:00.000Z">.*\(2026-03-02 09:00:00 \+05:30 there\)/s);
    assert.match(card, /stand-up &lt;b&gt;/, 'escaped');
    const form = { body: '', headers: { 'content-type': 'application/x-www-form-urlencoded' } };
    const paused = await t.request('POST', `/ui/schedules/${created.id}/pause`, form);
    assert.equal(paused.headers.location, '/?notice=paused');
    assert.equal((await t.request('GET', `/v1/schedules/${created.id}`)).json().status, 'paused');
    assert.match((await t.request('GET', '/?notice=paused')).body, /Schedule paused/);
    assert.equal((await t.request('POST', `/ui/schedules/${created.id}/resume`, form)).headers.location, '/?notice=resumed');
    assert.equal((await t.request('GET', `/v1/schedules/${created.id}`)).json().status, 'active');
    assert.equal((await t.request('POST', `/ui/schedules/${created.id}/delete`, form)).headers.location, '/?notice=schedule-deleted');
    assert.equal((await t.request('POST', `/ui/schedules/${created.id}/delete`, form)).headers.location, '/?notice=no-schedule');
  });
});
