import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock, type Settler } from '../src/clock.ts';
import type { AttemptResult, Deliverer } from '../src/dispatcher/delivery.ts';
import { OUTCOME_FLUSH_DELAY_MS, retryDelayMs, SchedulingEngine, type EngineOptions } from '../src/dispatcher/engine.ts';
import { DueBuffer } from '../src/dispatcher/heap.ts';
import { DispatcherMetrics } from '../src/dispatcher/metrics.ts';
import type { DispatcherStore, StoredMessage } from '../src/dispatcher/store.ts';
import { uuidv7 } from '../src/ids.ts';
import { openSqliteDispatcherStore } from '../src/stores/sqlite/dispatcher-store.ts';

/**
 * The engine's timing logic on a FakeClock and a real SQLite store. A
 * scripted deliverer records the fake time of every call, so "delivered at
 * its due time" is checked to the millisecond without any sleep.
 */

const SECOND = 1000;

interface Call {
  id: string;
  at: number;
  attempt: number;
  text: string;
}

type Script = (message: StoredMessage, call: number) => AttemptResult | Promise<AttemptResult>;

/** Records each call with the fake time; answers as scripted (default: delivered). */
class ScriptedDeliverer implements Deliverer {
  readonly calls: Call[] = [];
  /** Per call, what the engine gave the deliverer to ask as the request is written. */
  readonly mayStillSend: ((() => boolean) | undefined)[] = [];
  script: Script = () => ({ kind: 'delivered', status: 200 });
  #clock: FakeClock;

  constructor(clock: FakeClock) {
    this.#clock = clock;
  }

  deliver(message: StoredMessage, mayStillSend?: () => boolean): Promise<AttemptResult> {
    this.calls.push({ id: message.id, at: this.#clock.now(), attempt: message.attempts, text: message.message });
    this.mayStillSend.push(mayStillSend);
    return Promise.resolve(this.script(message, this.calls.length));
  }

  callsFor(id: string): Call[] {
    return this.calls.filter((call) => call.id === id);
  }

  async close(): Promise<void> {}
}

/** A delivery the test finishes by hand. */
function held(): { promise: Promise<AttemptResult>; finish: (result: AttemptResult) => void } {
  let finish!: (result: AttemptResult) => void;
  const promise = new Promise<AttemptResult>((resolve) => { finish = resolve; });
  return { promise, finish };
}

/**
 * Counts the calls made to each store method, and keeps the ones under way
 * so FakeClock can wait for them (`settled`) before it fires the next timer.
 */
function countingStore(store: DispatcherStore): { store: DispatcherStore; calls: Map<string, number>; settled: Settler } {
  const calls = new Map<string, number>();
  const underWay = new Set<Promise<unknown>>();
  const proxy = new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver) as unknown;
      if (typeof value !== 'function' || typeof name !== 'string') return value;
      return (...args: unknown[]) => {
        calls.set(name, (calls.get(name) ?? 0) + 1);
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (result instanceof Promise) {
          underWay.add(result);
          const done = () => { underWay.delete(result); };
          result.then(done, done);
        }
        return result;
      };
    },
  });
  const settled: Settler = async () => {
    if (underWay.size === 0) return false;
    await Promise.allSettled([...underWay]);
    return true;
  };
  return { store: proxy, calls, settled };
}

interface Harness {
  clock: FakeClock;
  store: DispatcherStore;
  storeCalls: Map<string, number>;
  deliverer: ScriptedDeliverer;
  metrics: DispatcherMetrics;
  engine: SchedulingEngine;
  /** Schedules one message `delayMs` from now through the engine; returns its id. */
  schedule(delayMs: number, text?: string): Promise<string>;
  /** Inserts straight into the store (unclaimed), as another process or an earlier run would have. */
  insertUnclaimed(scheduledAt: number, text?: string, target?: string): Promise<string>;
  status(id: string): Promise<StoredMessage>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function harness(options: Partial<EngineOptions> & { start?: boolean } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'psched-engine-'));
  const real = openSqliteDispatcherStore(join(dir, 'dispatcher.db'));
  await real.migrate();
  const { store, calls: storeCalls, settled } = countingStore(real);
  const clock = new FakeClock();
  clock.settleWith(settled);
  const deliverer = new ScriptedDeliverer(clock);
  const metrics = new DispatcherMetrics();
  const engine = new SchedulingEngine({ store, deliverer, clock, metrics, random: () => 0.5, ...options });
  if (options.start !== false) await engine.start();
  return {
    clock, store, storeCalls, deliverer, metrics, engine,
    async schedule(delayMs, text = 'hello') {
      const [outcome] = await engine.schedule([{ username: 'ada', message: text, scheduledAt: clock.now() + delayMs, idempotencyKey: null }]);
      return outcome!.message.id;
    },
    async insertUnclaimed(scheduledAt, text = 'from before', target) {
      const id = uuidv7();
      await real.insert([{ id, username: 'ada', message: text, scheduledAt, idempotencyKey: null, target }], clock.now());
      return id;
    },
    async status(id) {
      const message = await real.get(id);
      assert.ok(message, `message ${id} exists`);
      return message;
    },
    async [Symbol.asyncDispose]() {
      await engine.stop();
      await real.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('DueBuffer', () => {
  it('hands out due entries in (dueAt, id) order, honouring replacements and removals', () => {
    const buffer = new DueBuffer();
    const expected = new Map<string, number>();
    let seed = 7;
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    for (let i = 0; i < 5000; i++) {
      const id = `m${Math.floor(random() * 2000)}`;
      const roll = random();
      if (roll < 0.2) {
        buffer.delete(id);
        expected.delete(id);
      } else {
        const dueAt = Math.floor(random() * 1000);
        buffer.put({ id, version: i, dueAt, target: 'default', scheduledAt: dueAt, deliverBy: null });
        expected.set(id, dueAt);
      }
    }
    buffer.put({ id: 'm1', version: -1, dueAt: 0, target: 'default', scheduledAt: 0, deliverBy: null }); // an older version never replaces a newer one
    assert.equal(buffer.size, expected.size);
    const firstHalf = buffer.takeDue(499, Infinity);
    const rest = buffer.takeDue(Infinity, Infinity);
    const want = [...expected].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
    assert.deepEqual([...firstHalf, ...rest].map((entry) => [entry.id, entry.dueAt]), want);
    assert.ok(firstHalf.every((entry) => entry.dueAt <= 499) && rest.every((entry) => entry.dueAt > 499));
    assert.equal(buffer.size, 0);
    assert.equal(buffer.peek(), undefined);
  });
});

describe('SchedulingEngine timing', () => {
  it('delivers a message exactly at its due time, not a millisecond before', async () => {
    await using h = await harness();
    const dueAt = h.clock.now() + 5 * SECOND;
    const id = await h.schedule(5 * SECOND);
    assert.equal(h.engine.bufferedCount, 1, 'due within the horizon: buffered at once');

    await h.clock.advance(5 * SECOND - 1);
    assert.equal(h.deliverer.calls.length, 0);
    await h.clock.advance(1);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls, [{ id, at: dueAt, attempt: 1, text: 'hello' }]);
    const stored = await h.status(id);
    assert.equal(stored.status, 'delivered');
    assert.equal(stored.deliveredAt, dueAt);
    assert.equal(stored.leaseOwner, null);
    assert.equal(h.engine.bufferedCount, 0);

    const { outcomes, latenessCount, latenessSumMs } = h.metrics.snapshot();
    assert.deepEqual(outcomes, { delivered: 1, retry: 0, dead: 0, expired: 0 });
    assert.equal(latenessCount, 1);
    assert.equal(latenessSumMs, 0);
  });

  it('with a minimum start lead, starts a few milliseconds\' worth per store call and writes their outcomes along, still sending each at its due time', async () => {
    // one message due every millisecond for 40 ms, the clock stepping a millisecond at a time
    const run = async (minStartLeadMs: number) => {
      await using h = await harness({ minStartLeadMs });
      const first = h.clock.now() + SECOND;
      const dueTimes = Array.from({ length: 40 }, (_, i) => first + i);
      await h.engine.schedule(dueTimes.map((scheduledAt, i) => ({ username: 'ada', message: `m${i}`, scheduledAt, idempotencyKey: null })));
      await h.clock.set(first - 20);
      const before = { starts: h.storeCalls.get('startDelivery') ?? 0, outcomes: h.storeCalls.get('finishDeliveries') ?? 0 };
      for (let at = first - 19; at <= first + 60; at++) await h.clock.set(at);
      await h.engine.whenIdle();
      const sentLate = h.deliverer.calls.map((call) => call.at - dueTimes[Number(call.text.slice(1))]!);
      const delivered = (await h.store.list({ limit: 100, status: 'delivered' })).length;
      return { sentLate, delivered, starts: h.storeCalls.get('startDelivery')! - before.starts, outcomes: h.storeCalls.get('finishDeliveries')! - before.outcomes };
    };
    const alone = await run(0);
    const led = await run(4);
    for (const { sentLate, delivered } of [alone, led]) {
      assert.deepEqual(sentLate, Array(40).fill(0), 'each sent exactly at its due time');
      assert.equal(delivered, 40);
    }
    assert.equal(alone.starts, 40, 'without a lead: a store call per millisecond');
    assert.ok(led.starts <= 12, `with a 4 ms lead: about one call per 4 ms (${led.starts})`);
    assert.ok(led.outcomes <= led.starts + 1, `outcomes written along with the starts (${led.outcomes} writes)`);
  });

  it('starts ahead of time where startDelivery is slow, and still sends each message at its due time, never before', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'psched-engine-'));
    const real = openSqliteDispatcherStore(join(dir, 'dispatcher.db'));
    await real.migrate();
    const clock = new FakeClock();
    // answers 3 ms (of fake time) after it is asked, like PostgreSQL under load
    const slow: DispatcherStore = new Proxy(real, {
      get(target, name) {
        const value = Reflect.get(target, name) as unknown;
        if (name !== 'startDelivery') return typeof value === 'function' ? value.bind(target) : value;
        return (...args: Parameters<DispatcherStore['startDelivery']>) => new Promise((resolve, reject) => {
          clock.setTimer(() => { target.startDelivery(...args).then(resolve, reject); }, 3);
        });
      },
    });
    const deliverer = new ScriptedDeliverer(clock);
    const engine = new SchedulingEngine({ store: slow, deliverer, clock, metrics: new DispatcherMetrics() });
    try {
      await engine.start();
      const start = clock.now();
      const dueTimes = Array.from({ length: 12 }, (_, i) => start + (i + 1) * SECOND);
      await engine.schedule(dueTimes.map((scheduledAt, i) => ({ username: 'ada', message: `m${i}`, scheduledAt, idempotencyKey: null })));
      const statusAt = new Map<number, string>();
      for (const dueAt of dueTimes) {
        // the last message, 2 ms before it is due: started by now (after a few round trips the lead is 5 ms), not yet sent
        await clock.set(dueAt - 2);
        statusAt.set(dueAt, (await real.list({ limit: 100, status: 'delivering' })).length > 0 ? 'delivering' : 'scheduled');
        await clock.set(dueAt + 10);
        await engine.whenIdle();
      }
      const calls = deliverer.calls.map((call) => call.at - Number(/\d+$/.exec(call.text)![0]) * SECOND - SECOND - start);
      assert.deepEqual(calls.slice(0, 2), [3, 3], 'at first it starts at the due time and sends when the 3 ms round trip is over');
      assert.ok(calls.every((late) => late >= 0), `never before the due time: ${calls.join(', ')}`);
      assert.deepEqual(calls.slice(-6), [0, 0, 0, 0, 0, 0], 'once the lead covers the round trip, exactly at the due time');
      assert.equal(statusAt.get(dueTimes.at(-1)!), 'delivering', 'started ahead of its due time');
      assert.equal(statusAt.get(dueTimes[0]!), 'scheduled', 'no lead while round trips were not yet known to be slow');
    } finally {
      await engine.stop();
      await real.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('re-arms its one timer when an earlier message arrives', async () => {
    await using h = await harness();
    const start = h.clock.now();
    const later = await h.schedule(10 * SECOND);
    const earlier = await h.schedule(3 * SECOND);
    const sameInstant = await h.schedule(3 * SECOND);
    await h.clock.advance(10 * SECOND);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => [call.id, call.at - start]), [
      [earlier, 3 * SECOND], [sameInstant, 3 * SECOND], [later, 10 * SECOND],
    ]);
  });

  it('sends past-due messages at once', async () => {
    await using h = await harness();
    const id = await h.schedule(-1000 * 24 * 3600 * SECOND);
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.id), [id]);
    assert.equal(h.deliverer.calls[0]!.at, h.clock.now());
  });

  it('holds only messages within the horizon; a refill brings later ones in before they are due', async () => {
    await using h = await harness({ horizonMs: 60 * SECOND });
    const dueAt = h.clock.now() + 120 * SECOND;
    const id = await h.schedule(120 * SECOND);
    assert.equal(h.engine.bufferedCount, 0);
    assert.equal((await h.status(id)).leaseOwner, null);

    // refills run every horizon/4 = 15 s; at +45 s the horizon reaches +105 s only
    await h.clock.advance(45 * SECOND);
    assert.equal(h.engine.bufferedCount, 0);
    await h.clock.advance(15 * SECOND);
    assert.equal(h.engine.bufferedCount, 1, 'claimed by the refill at +60 s');
    assert.equal((await h.status(id)).leaseOwner, h.engine.ownerId);

    await h.clock.set(dueAt);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.at), [dueAt]);
  });

  it('never holds more than maxBuffered messages, and refills as room frees up', async () => {
    await using h = await harness({ maxBuffered: 3, start: false });
    const dueAt = h.clock.now() + SECOND;
    const ids = [];
    for (let i = 0; i < 7; i++) ids.push(await h.insertUnclaimed(dueAt + i));
    const seen: number[] = [];
    h.engine.events.on('refilled', () => seen.push(h.engine.bufferedCount));
    await h.engine.start();
    assert.equal(h.engine.bufferedCount, 3);

    // a new message does not squeeze in either: it stays unclaimed until there is room
    const extra = await h.schedule(2 * SECOND);
    assert.equal((await h.status(extra)).leaseOwner, null);

    await h.clock.advance(2 * SECOND);
    for (let round = 0; round < 5 && h.deliverer.calls.length < 8; round++) {
      await h.engine.whenIdle();
      await h.clock.advance(0);
    }
    assert.deepEqual(new Set(h.deliverer.calls.map((call) => call.id)), new Set([...ids, extra]));
    assert.ok(seen.every((count) => count <= 3), `buffered counts at refills: ${seen.join(', ')}`);
  });

  it('refills in chunks, so a large backlog never blocks the timers in one store call', async () => {
    await using h = await harness({ start: false });
    const past = h.clock.now() - 3600 * SECOND;
    await h.store.insert(Array.from({ length: 600 }, (_, i) => ({ id: uuidv7(), username: 'ada', message: `m${i}`, scheduledAt: past + i, idempotencyKey: null })), h.clock.now());
    let claimed = -1;
    h.engine.events.once('refilled', (count) => { claimed = count; });
    await h.engine.start();
    assert.equal(claimed, 600);
    assert.equal(h.storeCalls.get('claimDue'), 3, '600 claims in chunks of 256');
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.equal((await h.store.countByStatus()).delivered, 600);
  });

  it('starts many messages due at one instant in chunks and records outcomes in batches', async () => {
    await using h = await harness({ concurrency: 16 });
    const dueAt = h.clock.now() + SECOND;
    const requests = Array.from({ length: 600 }, (_, i) => ({ username: 'bulk', message: `m${i}`, scheduledAt: dueAt, idempotencyKey: null }));
    await h.engine.schedule(requests);
    assert.equal(h.engine.bufferedCount, 600);

    await h.clock.advance(SECOND);
    await h.engine.whenIdle();
    assert.equal(h.deliverer.calls.length, 600);
    assert.ok(h.deliverer.calls.every((call) => call.at === dueAt));
    assert.equal(h.storeCalls.get('startDelivery'), 3, '600 messages in chunks of 256');
    const writes = h.storeCalls.get('finishDeliveries') ?? 0;
    assert.ok(writes >= 1 && writes <= 60, `outcomes written in ${writes} calls`);
    assert.deepEqual((await h.store.countByStatus()).delivered, 600);
  });
});

describe('SchedulingEngine retries', () => {
  it('computes equal-jitter exponential backoff: between half the ceiling and the ceiling', () => {
    const ceilings = [1, 2, 3, 4, 5, 9, 10].map((attempt) => retryDelayMs(attempt, 1000, 30_000, () => 0.999999));
    assert.deepEqual(ceilings, [999, 1999, 3999, 7999, 15_999, 29_999, 29_999]);
    const floors = [1, 2, 3, 4, 5, 9, 10].map((attempt) => retryDelayMs(attempt, 1000, 30_000, () => 0));
    assert.deepEqual(floors, [500, 1000, 2000, 4000, 8000, 15_000, 15_000]);
    for (let i = 0; i < 200; i++) {
      const delay = retryDelayMs(3, 1000, 30_000, Math.random);
      assert.ok(delay >= 2000 && delay < 4000, `attempt 3 backoff ${delay} within [2000, 4000)`);
    }
  });

  it('rides out a 60 s outage with the default settings, however the jitter falls, and catches up as soon as one delivery succeeds', async () => {
    // random 0: the shortest backoffs, the worst case for running out of attempts
    await using h = await harness({ random: () => 0 });
    const start = h.clock.now();
    const back = start + 60 * SECOND;
    h.deliverer.script = () => (h.clock.now() < back ? { kind: 'retry', error: 'ECONNREFUSED' } : { kind: 'delivered', status: 200 });
    const during = await Promise.all(Array.from({ length: 20 }, (_, i) => h.schedule(i * 100, `during ${i}`)));
    await h.clock.advance(61 * SECOND);
    const after = await h.schedule(0, 'after');
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.equal(h.metrics.snapshot().outcomes.dead, 0, 'nothing went dead');
    for (const id of [...during, after]) {
      const stored = await h.status(id);
      assert.equal(stored.status, 'delivered', `${stored.message}: ${stored.status}`);
      // the first success brought every waiting retry forward: none waits out its backoff
      assert.equal(stored.deliveredAt, start + 61 * SECOND, `${stored.message} delivered at +${(stored.deliveredAt! - start) / SECOND} s`);
    }
  });

  it('caps a Retry-After at --retry-max', async () => {
    await using h = await harness({ retryMaxMs: 30 * SECOND });
    h.deliverer.script = (_message, call) => (call === 1 ? { kind: 'retry', error: 'main server answered 503', status: 503, retryAfterMs: 99_999_999 * SECOND } : { kind: 'delivered', status: 200 });
    const start = h.clock.now();
    const id = await h.schedule(0);
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.equal((await h.status(id)).dueAt, start + 30 * SECOND);
    await h.clock.advance(30 * SECOND);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.at - start), [0, 30 * SECOND]);
  });

  it('a retry due beyond the horizon gives its buffer slot back: messages due now still go out with a full buffer', async () => {
    // a backoff, not a Retry-After: a Retry-After pauses the whole target (see the flow-control tests)
    await using h = await harness({ maxBuffered: 10, horizonMs: 10 * SECOND, retryBaseMs: 160 * SECOND, random: () => 0.5 });
    h.deliverer.script = (message) => (message.message === 'parked' && message.attempts === 1
      ? { kind: 'retry', error: 'main server answered 500', status: 500 }
      : { kind: 'delivered', status: 200 });
    const parkedAt = h.clock.now();
    const parked = await Promise.all(Array.from({ length: 10 }, () => h.schedule(0, 'parked')));
    await h.clock.advance(0);
    await h.engine.whenIdle();
    for (const id of parked) assert.equal((await h.status(id)).leaseOwner, null, 'handed back until it comes within the horizon');
    assert.equal(h.engine.bufferedCount, 0);

    const start = h.clock.now();
    const now = await Promise.all(Array.from({ length: 5 }, () => h.schedule(SECOND, 'due now')));
    await h.clock.advance(SECOND);
    await h.engine.whenIdle();
    for (const id of now) assert.equal((await h.status(id)).deliveredAt, start + SECOND);

    // and the parked ones are claimed again in time for their next attempt
    await h.clock.advance(120 * SECOND);
    await h.engine.whenIdle();
    for (const id of parked) assert.equal((await h.status(id)).status, "delivered");
    const second = h.deliverer.calls.filter((call) => call.text === 'parked' && call.attempt === 2);
    assert.equal(second.length, 10);
    // equal jitter with random 0.5: three quarters of the 160 s ceiling
    assert.ok(second.every((call) => call.at === parkedAt + 120 * SECOND), 'each at its backoff, to the millisecond');
  });

  it('retries with exponential backoff, then delivers', async () => {
    await using h = await harness({ retryBaseMs: 1000, random: () => 0.5 });
    h.deliverer.script = (_message, call) => (call < 3 ? { kind: 'retry', error: 'main server answered 503', status: 503 } : { kind: 'delivered', status: 200 });
    const start = h.clock.now();
    const id = await h.schedule(0);
    await h.clock.advance(10 * SECOND);
    await h.engine.whenIdle();
    // backoffs: 0.75 * 1000 after attempt 1, 0.75 * 2000 after attempt 2
    assert.deepEqual(h.deliverer.calls.map((call) => [call.attempt, call.at - start]), [[1, 0], [2, 750], [3, 2250]]);
    const stored = await h.status(id);
    assert.equal(stored.status, 'delivered');
    assert.equal(stored.attempts, 3);
    assert.deepEqual(h.metrics.snapshot().outcomes, { delivered: 1, retry: 2, dead: 0, expired: 0 });
    assert.equal(h.metrics.snapshot().latenessCount, 1, 'lateness counts first attempts only');
  });

  it('records every attempt in the message\'s history and the last hour\'s per-minute numbers', async () => {
    await using h = await harness({ retryBaseMs: 1000, random: () => 0.5 });
    const slow = held();
    h.deliverer.script = (_message, call) => (call === 1 ? { kind: 'retry', error: 'main server answered 503', status: 503 }
      : call === 2 ? { kind: 'retry', error: 'connection refused' } : slow.promise);
    const start = h.clock.now();
    const id = await h.schedule(0);
    await h.clock.advance(2250);
    await h.clock.advance(40);
    slow.finish({ kind: 'delivered', status: 201 });
    await h.engine.whenIdle();
    assert.deepEqual((await h.store.attempts(id)).map((a) => [a.attempt, a.startedAt - start, a.latencyMs, a.outcome, a.httpStatus, a.error]), [
      [1, 0, 0, 'retry', 503, 'main server answered 503'],
      [2, 750, 0, 'retry', null, 'connection refused'],
      [3, 2250, 40, 'delivered', 201, null],
    ]);
    const minutes = h.metrics.lastHour(h.clock.now());
    assert.equal(minutes.length, 60);
    const total = (key: 'delivered' | 'retry' | 'dead' | 'latenessCount') => minutes.reduce((sum, minute) => sum + minute[key], 0);
    assert.deepEqual([total('delivered'), total('retry'), total('dead'), total('latenessCount')], [1, 2, 0, 1]);
    assert.ok(minutes.every((minute, i) => i === 0 || minute.start - minutes[i - 1]!.start === 60_000), 'one slot a minute, oldest first');
    // an hour later the numbers have aged out
    assert.equal(h.metrics.lastHour(h.clock.now() + 3_600_000).reduce((sum, minute) => sum + minute.delivered + minute.retry, 0), 0);
  });

  it('waits as long as Retry-After says', async () => {
    await using h = await harness();
    h.deliverer.script = (_message, call) => (call === 1 ? { kind: 'retry', error: 'main server answered 429', status: 429, retryAfterMs: 7000 } : { kind: 'delivered', status: 200 });
    const start = h.clock.now();
    const id = await h.schedule(0);
    await h.clock.advance(0);
    await h.engine.whenIdle();
    const retried = await h.status(id);
    assert.equal(retried.status, 'scheduled');
    assert.equal(retried.dueAt, start + 7000);
    assert.equal(retried.leaseOwner, h.engine.ownerId, 'a retried message stays claimed');
    await h.clock.advance(6999);
    assert.equal(h.deliverer.calls.length, 1);
    await h.clock.advance(1);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.at - start), [0, 7000]);
  });

  it('hands back a retry due beyond the horizon, claims it again and delivers it on time', async () => {
    await using h = await harness({ horizonMs: 10 * SECOND });
    h.deliverer.script = (_message, call) => (call === 1 ? { kind: 'retry', error: 'busy', retryAfterMs: 60 * SECOND } : { kind: 'delivered', status: 200 });
    const start = h.clock.now();
    const id = await h.schedule(0);
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.equal((await h.status(id)).leaseOwner, null);
    await h.clock.advance(61 * SECOND);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.at - start), [0, 60 * SECOND]);
  });

  it('dead-letters after maxAttempts, and on a dead answer at once', async () => {
    await using h = await harness({ maxAttempts: 3, retryBaseMs: 100 });
    h.deliverer.script = (message) => (message.message === 'refused'
      ? { kind: 'dead', error: 'main server answered 400', status: 400 }
      : { kind: 'retry', error: 'ECONNREFUSED' });
    const flaky = await h.schedule(0, 'flaky');
    const refused = await h.schedule(0, 'refused');
    await h.clock.advance(10 * SECOND);
    await h.engine.whenIdle();

    assert.equal(h.deliverer.callsFor(flaky).length, 3);
    const dead = await h.status(flaky);
    assert.equal(dead.status, 'dead');
    assert.match(dead.lastError ?? '', /gave up after 3 attempts: ECONNREFUSED/);
    assert.equal(h.deliverer.callsFor(refused).length, 1);
    assert.equal((await h.status(refused)).status, 'dead');
    assert.equal(h.engine.bufferedCount, 0);
  });

  it('logs every failed attempt (warn) and every message gone dead (error), naming message, target, status and attempt', async () => {
    const lines: { level: string; fields: Record<string, unknown>; msg?: string }[] = [];
    const record = (level: string) => (fields: object, msg?: string) => { lines.push({ level, fields: fields as Record<string, unknown>, msg }); };
    await using h = await harness({
      maxAttempts: 2, retryBaseMs: 100, target: 'http://main.example:8080',
      logger: { info: () => {}, warn: record('warn'), error: record('error') },
    });
    h.deliverer.script = (message) => (message.message === 'refused'
      ? { kind: 'dead', error: 'main server answered 401', status: 401 }
      : { kind: 'retry', error: 'main server answered 503', status: 503 });
    const flaky = await h.schedule(0, 'flaky');
    const refused = await h.schedule(0, 'refused');
    await h.clock.advance(10 * SECOND);
    await h.engine.whenIdle();

    const about = (id: string) => lines.filter((line) => line.fields.id === id).map((line) => [line.level, line.fields.status, line.fields.attempt, line.fields.target]);
    assert.deepEqual(about(flaky), [['warn', 503, 1, 'http://main.example:8080'], ['error', 503, 2, 'http://main.example:8080']]);
    assert.deepEqual(about(refused), [['error', 401, 1, 'http://main.example:8080']]);
    assert.match(String(lines.find((line) => line.level === 'error' && line.fields.id === flaky)?.fields.error), /gave up after 2 attempts/);
  });

  it('replays a dead message on retry', async () => {
    await using h = await harness();
    h.deliverer.script = (_message, call) => (call === 1 ? { kind: 'dead', error: 'main server answered 400', status: 400 } : { kind: 'delivered', status: 200 });
    const id = await h.schedule(0);
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.equal((await h.status(id)).status, 'dead');

    await h.clock.advance(5 * SECOND);
    const outcome = await h.engine.retry(id);
    assert.equal(outcome.kind, 'ok');
    await h.clock.advance(0);
    await h.engine.whenIdle();
    const replayed = await h.status(id);
    assert.equal(replayed.status, 'delivered');
    assert.equal(replayed.attempts, 1);
    assert.deepEqual(h.deliverer.calls.map((call) => call.attempt), [1, 1]);
    assert.equal(h.deliverer.calls[1]!.at, h.clock.now());

    assert.deepEqual(await h.engine.retry(id), { kind: 'conflict', status: 'delivered' });
  });
});

describe('SchedulingEngine flow control', () => {
  it('starts a rate-limited target\'s deliveries at its rate once the burst is spent, oldest due first', async () => {
    await using h = await harness({ limitsOf: () => ({ ratePerSecond: 10, burst: 2 }) });
    const start = h.clock.now();
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await h.schedule(SECOND, `m${i}`));
    await h.clock.advance(SECOND);
    assert.equal(h.deliverer.calls.length, 2, 'the burst goes at its due time');
    assert.equal(h.engine.bufferedCount, 0, 'the rest is parked, not in the heap');
    await h.clock.advance(500);
    const scrape = await h.metrics.render({ byStatus: { scheduled: 0, delivering: 0, delivered: 0, dead: 0, expired: 0 }, buffered: 0, targets: h.engine.targetGauges() });
    assert.match(scrape, /^psched_target_backlog\{target="default"\} 5$/m, 'ten parked, five gone since');
    assert.match(scrape, /^psched_target_throttled_seconds_total\{target="default"\} 0\.5$/m);
    assert.match(scrape, /^psched_target_deliveries_total\{target="default",outcome="delivered"\} 7$/m);
    await h.clock.advance(1500);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.at - start - SECOND), [0, 0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
    assert.deepEqual(h.deliverer.calls.map((call) => call.text), ids.map((_, i) => `m${i}`));
    for (const id of ids) assert.equal((await h.status(id)).status, 'delivered');
  });

  it('a 503 with Retry-After pauses the target: nothing of it starts before the pause ends, then everything does', async () => {
    await using h = await harness();
    h.deliverer.script = (message) => (message.message === 'first' && message.attempts === 1
      ? { kind: 'retry', error: 'main server answered 503', status: 503, retryAfterMs: 5 * SECOND }
      : { kind: 'delivered', status: 200 });
    const start = h.clock.now();
    await h.schedule(0, 'first');
    for (let i = 0; i < 3; i++) await h.schedule(SECOND, 'later');
    await h.clock.advance(4999);
    assert.deepEqual(h.deliverer.calls.map((call) => call.text), ['first'], 'none sent during the pause');
    await h.clock.advance(1);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.slice(1).map((call) => [call.text, call.at - start]), [
      ['later', 5000], ['later', 5000], ['later', 5000], ['first', 5000],
    ], 'the paused ones in due order, the retry at its Retry-After');
  });

  it('messages already started when the pause came are not sent during it: they go when it ends', async () => {
    await using h = await harness({ concurrency: 1 });
    const first = held();
    h.deliverer.script = (message) => (message.message === 'first' && message.attempts === 1 ? first.promise : { kind: 'delivered', status: 200 });
    const start = h.clock.now();
    await h.schedule(0, 'first');
    for (let i = 0; i < 3; i++) await h.schedule(0, 'queued');
    await h.clock.advance(0);
    assert.equal(h.deliverer.calls.length, 1, 'one slot: the others wait in the ready queue, started');
    first.finish({ kind: 'retry', error: 'main server answered 503', status: 503, retryAfterMs: 5 * SECOND });
    await h.clock.advance(4999);
    assert.equal(h.deliverer.calls.length, 1, 'none sent during the pause');
    await h.clock.advance(1);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.slice(1).map((call) => [call.text, call.at - start]), [
      ['first', 5000], ['queued', 5000], ['queued', 5000], ['queued', 5000],
    ]);
  });

  it('the legacy sweep does not wait for messages their target holds back', async () => {
    await using h = await harness();
    h.deliverer.script = (message) => (message.message === 'first'
      ? { kind: 'retry', error: 'main server answered 503', status: 503, retryAfterMs: 60 * SECOND }
      : { kind: 'delivered', status: 200 });
    await h.schedule(0, 'first');
    await h.clock.advance(0);
    await h.schedule(0, 'held back');
    await h.schedule(0, 'held back');
    const report = await h.engine.sweep();
    assert.deepEqual(report.results, [], 'nothing attempted, and the sweep did not wait out the 60 s pause');
    assert.equal(h.deliverer.calls.length, 1);
  });

  it('never has more deliveries of a target in flight than its cap, and refills the cap as answers come', async () => {
    await using h = await harness({ limitsOf: () => ({ maxInFlight: 2 }) });
    const pending: ReturnType<typeof held>[] = [];
    h.deliverer.script = () => {
      const delivery = held();
      pending.push(delivery);
      return delivery.promise;
    };
    for (let i = 0; i < 5; i++) await h.schedule(0, `m${i}`);
    await h.clock.advance(0);
    assert.equal(h.engine.inFlightCount, 2);
    assert.equal(h.deliverer.calls.length, 2);
    pending[0]!.finish({ kind: 'delivered', status: 200 });
    await h.clock.advance(0);
    assert.equal(h.deliverer.calls.length, 3);
    assert.equal(h.engine.inFlightCount, 2);
    for (let i = 1; i < 5; i++) {
      pending[i]!.finish({ kind: 'delivered', status: 200 });
      await h.clock.advance(0);
    }
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.text), ['m0', 'm1', 'm2', 'm3', 'm4']);
  });

  it('a parked message that is removed is never sent, and frees nothing it did not hold', async () => {
    await using h = await harness({ limitsOf: () => ({ maxInFlight: 1 }) });
    const first = held();
    h.deliverer.script = (message) => (message.message === 'first' ? first.promise : { kind: 'delivered', status: 200 });
    await h.schedule(0, 'first');
    const removed = await h.schedule(0, 'removed');
    const kept = await h.schedule(0, 'kept');
    await h.clock.advance(0);
    assert.equal((await h.engine.remove(removed)).kind, 'ok');
    first.finish({ kind: 'delivered', status: 200 });
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.text), ['first', 'kept']);
    assert.equal((await h.status(kept)).status, 'delivered');
  });
});

describe('SchedulingEngine deliver-by', () => {
  /** Schedules through the engine with a deliver-by of its own, `deliverBy` ms after now. */
  async function scheduleBy(h: Harness, delayMs: number, deliverByMs: number, text: string): Promise<string> {
    const now = h.clock.now();
    const [outcome] = await h.engine.schedule([{ username: 'ada', message: text, scheduledAt: now + delayMs, idempotencyKey: null, deliverBy: now + deliverByMs }]);
    return outcome!.message.id;
  }

  it('a message held back by its target past its deliver-by is set expired, never sent, and takes none of the target\'s rate', async () => {
    await using h = await harness({ limitsOf: () => ({ ratePerSecond: 1, burst: 1 }) });
    const start = h.clock.now();
    const expiredEvents: string[] = [];
    h.engine.events.on('expired', (message) => expiredEvents.push(message.id));
    await h.schedule(0, 'first');
    const late = await scheduleBy(h, 0, 300, 'worthless after 300 ms');
    const patient = await h.schedule(0, 'can wait');
    await h.clock.advance(2 * SECOND);
    await h.engine.whenIdle();
    // the token freed at 1000 goes to the patient one: the expired one took none
    assert.deepEqual(h.deliverer.calls.map((call) => [call.text, call.at - start]), [['first', 0], ['can wait', 1000]]);
    const expired = await h.status(late);
    assert.equal(expired.status, 'expired');
    assert.equal(expired.attempts, 0, 'no attempt was made');
    assert.match(expired.lastError ?? '', /not sent: past its deliver-by, \d{4}-\d\d-\d\dT/);
    assert.deepEqual(expiredEvents, [late]);
    assert.equal((await h.status(patient)).status, 'delivered');
    assert.equal(h.metrics.snapshot().outcomes.expired, 1);
    const scrape = await h.metrics.render({ byStatus: await h.store.countByStatus(), buffered: 0, targets: h.engine.targetGauges() });
    assert.match(scrape, /^psched_deliveries_total\{outcome="expired"\} 1$/m);
    assert.match(scrape, /^psched_target_deliveries_total\{target="default",outcome="expired"\} 1$/m);
    assert.match(scrape, /^psched_messages\{status="expired"\} 1$/m);
  });

  for (const minStartLeadMs of [0, 4]) {
    it(`a retry that would come after the deliver-by comes just after it instead, and expires unsent (start lead ${minStartLeadMs} ms)`, async () => {
      await using h = await harness({ retryBaseMs: 10 * SECOND, random: () => 0.5, minStartLeadMs });
      h.deliverer.script = () => ({ kind: 'retry', error: 'main server answered 500', status: 500 });
      const start = h.clock.now();
      const id = await scheduleBy(h, 0, 2 * SECOND, 'one minute of news');
      await h.clock.advance(2 * SECOND);
      // not before its retry's start, which the lead brings forward: that retry, due at 2001, would be sent after the deliver-by
      if (minStartLeadMs === 0) assert.equal((await h.status(id)).status, 'scheduled', 'not yet: its deliver-by is at 2000');
      await h.clock.advance(1);
      await h.engine.whenIdle();
      assert.deepEqual(h.deliverer.calls.map((call) => call.at - start), [0], 'one attempt, none after the deliver-by');
      const message = await h.status(id);
      assert.equal(message.status, 'expired');
      assert.equal(message.attempts, 1);
      assert.ok(message.updatedAt >= start + 2001 - minStartLeadMs && message.updatedAt <= start + 2001,
        `expired when its retry came up (${message.updatedAt - start}), not at the backoff's end`);
    });
  }

  it('a target\'s default window expires what comes too late after downtime and sends what is still in time', async () => {
    await using h = await harness({ start: false, deliverWithinOf: (target) => (target === 'news' ? 3600 * SECOND : undefined) });
    const now = h.clock.now();
    const stale = await h.insertUnclaimed(now - 2 * 3600 * SECOND, 'two hours old', 'news');
    const fresh = await h.insertUnclaimed(now - 60 * SECOND, 'a minute old', 'news');
    const otherTarget = await h.insertUnclaimed(now - 2 * 3600 * SECOND, 'no window', 'shop');
    await h.engine.start();
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.equal((await h.status(stale)).status, 'expired');
    assert.equal((await h.status(fresh)).status, 'delivered');
    assert.equal((await h.status(otherTarget)).status, 'delivered', 'a target without a window delivers however late');
    assert.deepEqual(h.deliverer.calls.map((call) => call.text).sort(), ['a minute old', 'no window']);
  });

  it('a window narrowed while a backlog is held back applies to it at once', async () => {
    let windowMs = 3600 * SECOND;
    await using h = await harness({ limitsOf: () => ({ ratePerSecond: 1, burst: 1 }), deliverWithinOf: () => windowMs });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await h.schedule(0, `m${i}`));
    await h.clock.advance(1100);
    assert.equal(h.deliverer.calls.length, 2, 'one a second: the backlog waits');
    windowMs = 1500; // the operator decides these are worthless after 1.5 s
    await h.clock.advance(900);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.text), ['m0', 'm1'], 'the two left expired at 2 s, unsent');
    assert.deepEqual(await Promise.all(ids.map(async (id) => (await h.status(id)).status)), ['delivered', 'delivered', 'expired', 'expired']);
  });

  it('a message started in time that waited for a delivery slot past its deliver-by is not sent: expired, its attempt not counted', async () => {
    await using h = await harness({ concurrency: 1 });
    const slow = held();
    h.deliverer.script = (message) => (message.message === 'slow' ? slow.promise : { kind: 'delivered', status: 200 });
    const expiredEvents: StoredMessage[] = [];
    h.engine.events.on('expired', (message) => expiredEvents.push(message));
    await h.schedule(0, 'slow');
    const waiting = await scheduleBy(h, 0, 500, 'worthless after 500 ms');
    const patient = await h.schedule(0, 'can wait');
    await h.clock.advance(0);
    assert.equal((await h.status(waiting)).status, 'delivering', 'started, waiting in the ready queue for the one slot');
    await h.clock.advance(2 * SECOND);
    slow.finish({ kind: 'delivered', status: 200 });
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.text), ['slow', 'can wait']);
    const expired = await h.status(waiting);
    assert.equal(expired.status, 'expired');
    assert.equal(expired.attempts, 0, 'startDelivery counted one; none was made');
    assert.equal(expired.leaseOwner, null);
    assert.match(expired.lastError ?? '', /not sent: past its deliver-by/);
    assert.deepEqual(expiredEvents.map((m) => [m.id, m.status, m.attempts]), [[waiting, 'expired', 0]]);
    assert.deepEqual(await h.store.attempts(waiting), [], 'no attempt in its history');
    assert.equal((await h.status(patient)).status, 'delivered');
    assert.equal((await h.store.countByStatus()).expired, 1);
  });

  it('a Retry-After pauses the target for all of it, even when the answered message itself expires sooner', async () => {
    await using h = await harness({ deliverWithinOf: () => 5 * SECOND });
    h.deliverer.script = (message) => (message.message === 'a'
      ? { kind: 'retry', error: 'main server answered 429', status: 429, retryAfterMs: 60 * SECOND }
      : { kind: 'delivered', status: 200 });
    const start = h.clock.now();
    const a = await h.schedule(0, 'a');
    const b = await scheduleBy(h, SECOND, 50 * SECOND, 'b');
    const c = await scheduleBy(h, SECOND, 120 * SECOND, 'c');
    await h.clock.advance(59 * SECOND);
    assert.deepEqual(h.deliverer.calls.map((call) => call.text), ['a'], 'nothing else during the 60 s pause');
    assert.equal((await h.status(a)).status, 'expired', 'a itself expired at its window\'s end, unsent again');
    await h.clock.advance(SECOND);
    await h.engine.whenIdle();
    assert.equal((await h.status(b)).status, 'expired', 'b\'s deliver-by passed during the pause');
    assert.equal((await h.status(c)).status, 'delivered');
    assert.deepEqual(h.deliverer.calls.map((call) => [call.text, call.at - start]), [['a', 0], ['c', 60 * SECOND]]);
  });

  it('a failed expire is tried again after the store backoff, not in a loop, and the message is still not sent', async () => {
    await using h = await harness({ start: false });
    const real = h.store.expire.bind(h.store);
    let calls = 0;
    h.store.expire = async (...args) => {
      if (++calls === 1) throw new Error('disk I/O error');
      return real(...args);
    };
    const start = h.clock.now();
    await h.engine.start();
    const [outcome] = await h.engine.schedule([{ username: 'ada', message: 'too late already', scheduledAt: start - 10, idempotencyKey: null, deliverBy: start - 5 }]);
    await h.clock.advance(999);
    assert.equal(calls, 1, 'one call, then the backoff');
    assert.equal((await h.status(outcome!.message.id)).status, 'scheduled');
    await h.clock.advance(1);
    await h.engine.whenIdle();
    assert.equal(calls, 2);
    assert.equal((await h.status(outcome!.message.id)).status, 'expired');
    assert.equal(h.deliverer.calls.length, 0);
  });

  it('a message its target\'s window expired is replayed with a window from now, and delivered', async () => {
    await using h = await harness({ start: false, deliverWithinOf: () => SECOND });
    const now = h.clock.now();
    const id = await h.insertUnclaimed(now - 5 * SECOND, 'five seconds late');
    await h.engine.start();
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.equal((await h.status(id)).status, 'expired');
    const replayed = await h.engine.retry(id);
    assert.ok(replayed.kind === 'ok');
    assert.equal(replayed.message.deliverBy, h.clock.now() + SECOND, 'the target\'s window, from the replay');
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.equal((await h.status(id)).status, 'delivered');
    assert.deepEqual(h.deliverer.calls.map((call) => call.text), ['five seconds late']);
  });

  it('a replayed expired message is delivered now, however late', async () => {
    await using h = await harness({ limitsOf: () => ({ ratePerSecond: 1, burst: 1 }) });
    await h.schedule(0, 'first');
    const late = await scheduleBy(h, 0, 100, 'late');
    await h.clock.advance(SECOND);
    await h.engine.whenIdle();
    assert.equal((await h.status(late)).status, 'expired');
    const replayed = await h.engine.retry(late);
    assert.ok(replayed.kind === 'ok');
    assert.equal(replayed.message.deliverBy, null);
    await h.clock.advance(SECOND);
    await h.engine.whenIdle();
    assert.equal((await h.status(late)).status, 'delivered');
  });
});

describe('SchedulingEngine flow control and claims', () => {
  it('one target\'s recovery brings forward its own retries only: a target still down keeps its backoff', async () => {
    await using h = await harness({ retryBaseMs: 1000, random: () => 0.5 });
    h.deliverer.script = (message) => (message.target === 'down' || message.attempts < 3
      ? { kind: 'retry', error: 'main server answered 500', status: 500 }
      : { kind: 'delivered', status: 200 });
    const start = h.clock.now();
    const down = await h.insertUnclaimed(start, 'down', 'down');
    await h.insertUnclaimed(start + 100, 'back', 'back');
    await h.engine.refill();
    await h.clock.advance(6 * SECOND);
    // 'back' fails at 100 and 850, then delivers at 2350 after 2.25 s of failures: the main server 'back' is back
    assert.deepEqual(h.deliverer.calls.filter((call) => call.text === 'back').map((call) => call.at - start), [100, 850, 2350]);
    // equal jitter at 0.5: 750, then 1500, then 3000 ms of backoff, not cut short by the other target's recovery
    assert.deepEqual(h.deliverer.callsFor(down).map((call) => call.at - start), [0, 750, 2250, 5250]);
  });

  it('in a pool the rate is the pool\'s: the one dispatcher holding a target\'s messages gets its whole rate from the shared bucket', async () => {
    await using h = await harness({ limitsOf: () => ({ ratePerSecond: 10, burst: 2 }) });
    // another dispatcher's lease, as its claimDue leaves it (it claims nothing here)
    await h.store.claimDue('another-dispatcher', 0, h.clock.now(), h.clock.now() + 3600 * SECOND, 1);
    await h.clock.advance(4 * SECOND); // a lease renewal counts the live dispatchers
    const start = h.clock.now();
    for (let i = 0; i < 6; i++) await h.schedule(SECOND, `m${i}`);
    await h.clock.advance(3 * SECOND);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.at - start - SECOND), [0, 0, 100, 200, 300, 400], 'the burst of 2, then 10 a second');
    assert.ok((h.storeCalls.get('takeTokens') ?? 0) >= 5, 'the tokens came from the store');
  });

  it('two dispatchers holding one target\'s messages share its rate: together burst + rate, never more', async () => {
    await using h = await harness({ limitsOf: () => ({ ratePerSecond: 10, burst: 2 }) });
    const otherDeliverer = new ScriptedDeliverer(h.clock);
    const other = new SchedulingEngine({ store: h.store, deliverer: otherDeliverer, clock: h.clock, metrics: new DispatcherMetrics(), random: () => 0.5, limitsOf: () => ({ ratePerSecond: 10, burst: 2 }) });
    await other.start();
    try {
      await h.clock.advance(4 * SECOND); // both renew and count two dispatchers
      const start = h.clock.now();
      for (let i = 0; i < 6; i++) {
        await h.schedule(SECOND, `a${i}`);
        await other.schedule([{ username: 'ada', message: `b${i}`, scheduledAt: start + SECOND, idempotencyKey: null }]);
      }
      await h.clock.advance(3 * SECOND);
      await h.engine.whenIdle();
      await other.whenIdle();
      const times = [...h.deliverer.calls, ...otherDeliverer.calls].map((call) => call.at - start - SECOND).sort((x, y) => x - y);
      assert.equal(times.length, 12);
      assert.ok(h.deliverer.calls.length > 0 && otherDeliverer.calls.length > 0, 'both delivered some');
      // a token bucket of 2 refilled at 10/s: by t ms at most 2 + floor(t / 100) may have started
      for (const [i, t] of times.entries()) assert.ok(i + 1 <= 2 + Math.floor(t / 100), `delivery ${i + 1} at ${t} ms: faster than the pool's rate (${JSON.stringify(times)})`);
      assert.ok(times.at(-1)! <= 1100, `the pool kept up the rate (${JSON.stringify(times)})`);
    } finally {
      await other.stop();
    }
  });

  it('claims no more of a target whose parked backlog is large, so the others\' messages still get room; claims it again once the backlog halved', async () => {
    // a tenth of max-buffered (100) parked makes a target saturated
    await using h = await harness({ maxBuffered: 1000, limitsOf: (target) => (target === 'slow' ? { ratePerSecond: 1, burst: 1 } : {}) });
    const start = h.clock.now();
    for (let i = 0; i < 150; i++) await h.insertUnclaimed(start, 'slow', 'slow');
    await h.engine.refill();
    await h.clock.advance(0);
    assert.equal(h.deliverer.calls.length, 1, 'one slow message out, 149 parked');

    // more slow messages due earlier than the fast ones: in due order alone, the buffer would fill with them
    for (let i = 0; i < 900; i++) await h.insertUnclaimed(start, 'slow', 'slow');
    const fast = [];
    for (let i = 0; i < 10; i++) fast.push(await h.insertUnclaimed(start + 1, 'fast', 'fast'));
    assert.equal(await h.engine.refill(), 10, 'only the fast ones claimed');
    await h.clock.advance(1);
    for (const id of fast) assert.equal((await h.status(id)).status, 'delivered');

    // at one a second the backlog halves (below 50) after 100 s: then the slow target is claimed again
    const heldBy = async () => (await h.store.list({ status: 'scheduled', limit: 2000, target: 'slow' })).filter((m) => m.leaseOwner === h.engine.ownerId).length;
    assert.equal(await heldBy(), 149, 'the parked ones, none of the 900 later ones');
    await h.clock.advance(100 * SECOND);
    assert.ok(await heldBy() > 100, 'claimed again before the backlog ran out');
  });
});

describe('SchedulingEngine changes', () => {
  it('delivers the edited version of a buffered message at its new time, never the stale one', async () => {
    await using h = await harness();
    const start = h.clock.now();
    const moved = await h.schedule(5 * SECOND, 'original');
    const edited = await h.schedule(5 * SECOND, 'original');
    assert.equal((await h.engine.update(moved, { scheduledAt: start + 8 * SECOND })).kind, 'ok');
    assert.equal((await h.engine.update(edited, { message: 'edited' })).kind, 'ok');
    assert.equal(h.engine.bufferedCount, 2);

    await h.clock.advance(10 * SECOND);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => [call.id, call.at - start, call.text]), [
      [edited, 5 * SECOND, 'edited'], [moved, 8 * SECOND, 'original'],
    ]);
  });

  it('never delivers a removed message; answers conflict once it is delivered', async () => {
    await using h = await harness();
    const removed = await h.schedule(5 * SECOND);
    const kept = await h.schedule(5 * SECOND);
    assert.equal((await h.engine.remove(removed)).kind, 'ok');
    assert.equal(h.engine.bufferedCount, 1);
    await h.clock.advance(5 * SECOND);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => call.id), [kept]);
    assert.deepEqual(await h.engine.remove(kept), { kind: 'conflict', status: 'delivered' });
    assert.deepEqual(await h.engine.update(removed, { message: 'x' }), { kind: 'not_found' });
  });

  it('moving a message beyond the horizon hands its claim back', async () => {
    await using h = await harness({ horizonMs: 60 * SECOND });
    const id = await h.schedule(5 * SECOND);
    const outcome = await h.engine.update(id, { scheduledAt: h.clock.now() + 3600 * SECOND });
    assert.equal(outcome.kind, 'ok');
    assert.equal(h.engine.bufferedCount, 0);
    assert.equal((await h.status(id)).leaseOwner, null);
    await h.clock.advance(10 * SECOND);
    assert.equal(h.deliverer.calls.length, 0);
  });

  it('sweep delivers everything due now and reports every outcome', async () => {
    await using h = await harness();
    const a = await h.insertUnclaimed(Date.UTC(2014, 7, 1, 13, 30), 'from 2014');
    const b = await h.insertUnclaimed(h.clock.now() - 1, 'just due');
    await h.insertUnclaimed(h.clock.now() + 3600 * SECOND, 'later');
    const report = await h.engine.sweep();
    assert.deepEqual(new Set(report.results.map(({ message }) => message.id)), new Set([a, b]));
    assert.ok(report.results.every(({ result }) => result.kind === 'delivered'));
    assert.equal((await h.status(a)).status, 'delivered');
    assert.deepEqual(await h.engine.sweep(), { results: [] });
  });
});

describe('SchedulingEngine lifecycle', () => {
  it('stop() waits for deliveries in flight, records them and releases every claim', async () => {
    await using h = await harness();
    const inFlight = held();
    h.deliverer.script = () => inFlight.promise;
    const sending = await h.schedule(0);
    const waiting = await h.schedule(30 * SECOND);
    await h.clock.advance(0);
    assert.equal(h.engine.inFlightCount, 1);

    let stopped = false;
    const stopping = h.engine.stop().then(() => { stopped = true; });
    await h.clock.advance(0);
    assert.equal(stopped, false, 'stop waits for the delivery in flight');
    inFlight.finish({ kind: 'delivered', status: 200 });
    await stopping;

    assert.equal((await h.status(sending)).status, 'delivered');
    const released = await h.status(waiting);
    assert.equal(released.status, 'scheduled');
    assert.equal(released.leaseOwner, null);
    await h.engine.stop(); // idempotent
  });

  it('stop() hands back a delivery that outlives the grace period', async () => {
    await using h = await harness({ stopGraceMs: 2 * SECOND });
    const never = held();
    h.deliverer.script = () => never.promise;
    const id = await h.schedule(0);
    await h.clock.advance(0);
    const stopping = h.engine.stop();
    await h.clock.advance(2 * SECOND);
    await stopping;
    const message = await h.status(id);
    assert.equal(message.status, 'scheduled');
    assert.equal(message.leaseOwner, null);
    never.finish({ kind: 'delivered', status: 200 });
    await h.clock.advance(0);
    assert.equal((await h.status(id)).status, 'scheduled', 'a late answer after stop changes nothing');
  });

  it('a new engine on the same store delivers what is past due at once', async () => {
    await using h = await harness({ start: false });
    const from2014 = await h.insertUnclaimed(Date.UTC(2014, 7, 1, 13, 30));
    const missed = await h.insertUnclaimed(h.clock.now() - 3600 * SECOND);
    const future = await h.insertUnclaimed(h.clock.now() + 30 * SECOND);
    await h.engine.start();
    await h.clock.advance(0);
    await h.engine.whenIdle();
    assert.deepEqual(h.deliverer.calls.map((call) => [call.id, call.at]), [[from2014, h.clock.now()], [missed, h.clock.now()]]);
    assert.equal(h.engine.bufferedCount, 1);
    await h.clock.advance(30 * SECOND);
    await h.engine.whenIdle();
    assert.equal((await h.status(future)).status, 'delivered');
  });

  it('restarted on the SQLite file after a crash, it delivers what the dead process held at once, without waiting for its lease', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'psched-engine-'));
    const file = join(dir, 'dispatcher.db');
    const first = openSqliteDispatcherStore(file);
    await first.migrate();
    const clock = new FakeClock();
    const crashed = new SchedulingEngine({ store: first, deliverer: new ScriptedDeliverer(clock), clock, metrics: new DispatcherMetrics(), leaseMs: 10 * SECOND });
    await crashed.start();
    const [outcome] = await crashed.schedule([{ username: 'ada', message: 'before the crash', scheduledAt: clock.now() + SECOND, idempotencyKey: null }]);
    assert.equal(outcome!.message.leaseOwner, crashed.ownerId);
    await first.close(); // the process dies: its claims are never handed back (and its fake timers never fire again)

    // back 2 s later: the message is past due, the dead process's lease still has 8 s to run
    const later = new FakeClock(clock.now() + 2 * SECOND);
    const second = openSqliteDispatcherStore(file);
    await second.migrate();
    const deliverer = new ScriptedDeliverer(later);
    const restarted = new SchedulingEngine({ store: second, deliverer, clock: later, metrics: new DispatcherMetrics(), leaseMs: 10 * SECOND });
    try {
      await restarted.start();
      await later.advance(0);
      await restarted.whenIdle();
      assert.deepEqual(deliverer.calls.map((call) => [call.id, call.at]), [[outcome!.message.id, later.now()]]);
      assert.equal((await second.get(outcome!.message.id))?.status, 'delivered');
    } finally {
      await restarted.stop();
      await second.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('redelivers a message a dead owner left delivering, once its lease expired', async () => {
    await using h = await harness({ leaseMs: 10 * SECOND });
    const stuck = held();
    h.deliverer.script = () => stuck.promise;
    const id = await h.schedule(0);
    await h.clock.advance(0);
    assert.equal((await h.status(id)).status, 'delivering');
    const deadOwner = h.engine.ownerId;

    // the first owner "dies": it renews nothing from now on; a second process starts after its lease ran out
    const clock = new FakeClock(h.clock.now() + 11 * SECOND);
    const deliverer = new ScriptedDeliverer(clock);
    const successor = new SchedulingEngine({ store: h.store, deliverer, clock, metrics: new DispatcherMetrics(), leaseMs: 10 * SECOND });
    try {
      await successor.start();
      await clock.advance(0);
      await successor.whenIdle();
      assert.deepEqual(deliverer.calls.map((call) => [call.id, call.attempt, call.at]), [[id, 2, clock.now()]]);
      assert.equal((await h.status(id)).status, 'delivered');
    } finally {
      await successor.stop();
    }
    // the zombie's late answer cannot overwrite the successor's record
    stuck.finish({ kind: 'retry', error: 'too late' });
    await h.clock.advance(0);
    const final = await h.status(id);
    assert.equal(final.status, 'delivered');
    assert.notEqual(final.leaseOwner, deadOwner);
  });

  it('renews its leases while it runs', async () => {
    await using h = await harness({ leaseMs: 9 * SECOND, horizonMs: 60 * SECOND });
    const id = await h.schedule(50 * SECOND);
    await h.clock.advance(30 * SECOND);
    const message = await h.status(id);
    assert.equal(message.leaseOwner, h.engine.ownerId);
    assert.ok(message.leaseExpiresAt! > h.clock.now(), 'lease still valid after 3 lease times');
  });

  it('renders Prometheus metrics', async () => {
    await using h = await harness();
    await h.schedule(0);
    await h.clock.advance(0);
    await h.engine.whenIdle();
    const text = await h.metrics.render({ byStatus: await h.store.countByStatus(), buffered: h.engine.bufferedCount });
    assert.match(text, /^psched_messages\{status="delivered"\} 1$/m);
    assert.match(text, /^psched_buffered_messages 0$/m);
    assert.match(text, /^psched_deliveries_total\{outcome="delivered"\} 1$/m);
    assert.match(text, /^psched_delivery_lateness_seconds_bucket\{le="0.001"\} 1$/m);
    assert.match(text, /^psched_delivery_lateness_seconds_count 1$/m);
    // process and runtime metrics, under their standard names
    assert.match(text, /^process_cpu_seconds_total \d/m);
    assert.match(text, /^nodejs_eventloop_lag_p99_seconds \d/m);
    assert.match(text, /^nodejs_heap_size_used_bytes \d/m);
  });
});

describe('SchedulingEngine paused past its lease', () => {
  it('tells the deliverer, as the request is written, that a pause since the decision lapsed the lease', async () => {
    await using h = await harness({ leaseMs: 10 * SECOND });
    const waiting = held();
    h.deliverer.script = () => waiting.promise;
    await h.schedule(SECOND);
    await h.clock.advance(SECOND);
    const mayStillSend = h.deliverer.mayStillSend[0]!;
    assert.equal(mayStillSend(), true, 'just decided: it may go');
    h.clock.jump(20 * SECOND); // paused between the decision and the write
    assert.equal(mayStillSend(), false, 'after a pause past the lease it must not');
    waiting.finish({ kind: 'retry', error: 'not sent' });
    await h.clock.advance(0);
  });

  /**
   * Owner A (one delivery at a time) has five messages started: one in
   * flight, held by the receiver, four queued behind it. A is then paused
   * for 30 s (three leases); B, on time, takes over and delivers all five.
   * When A resumes, either its held delivery answers first (and would free
   * a slot for the queue) or its overdue timers fire first.
   */
  async function pausedOwner(resume: 'answer first' | 'timers first', successor: boolean) {
    const h = await harness({ concurrency: 1, leaseMs: 10 * SECOND });
    const first = held();
    h.deliverer.script = (_message, call) => (call === 1 ? first.promise : { kind: 'delivered', status: 200 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await h.schedule(SECOND, `m${i}`));
    await h.clock.advance(SECOND);
    assert.equal(h.deliverer.calls.length, 1, 'one in flight');
    for (const id of ids) assert.equal((await h.status(id)).status, 'delivering');

    h.clock.jump(30 * SECOND);
    const clock = new FakeClock(h.clock.now());
    const deliverer = new ScriptedDeliverer(clock);
    const b = new SchedulingEngine({ store: h.store, deliverer, clock, metrics: new DispatcherMetrics(), leaseMs: 10 * SECOND });
    if (successor) {
      await b.start();
      await clock.advance(0);
      await b.whenIdle();
      assert.deepEqual(deliverer.calls.map((call) => call.id).sort(), [...ids].sort(), 'B took over all five');
    }

    if (resume === 'answer first') {
      first.finish({ kind: 'delivered', status: 200 });
      await h.clock.advance(0);
    } else {
      await h.clock.advance(0);
      first.finish({ kind: 'delivered', status: 200 });
    }
    // the answer waits for company before it is written (A still holds the others, unstarted)
    await h.clock.advance(OUTCOME_FLUSH_DELAY_MS);
    await h.engine.whenIdle();
    return { h, b, ids, deliverer };
  }

  for (const resume of ['answer first', 'timers first'] as const) {
    it(`never sends what another owner took over meanwhile (${resume})`, async () => {
      const { h, b, ids, deliverer } = await pausedOwner(resume, true);
      try {
        assert.deepEqual(h.deliverer.calls.map((call) => call.id), [ids[0]], 'A sent nothing after its pause');
        for (const id of ids) assert.equal((await h.status(id)).status, 'delivered');
        assert.equal(deliverer.calls.length, 5, 'each delivered once by B');
      } finally {
        await b.stop();
        await h[Symbol.asyncDispose]();
      }
    });
  }

  it('delivers what nobody took meanwhile, once its lease is renewed', async () => {
    const { h, b, ids } = await pausedOwner('answer first', false);
    try {
      assert.deepEqual(h.deliverer.calls.map((call) => call.id), ids, 'all five, in order, by A');
      for (const id of ids) assert.equal((await h.status(id)).status, 'delivered');
      const lease = (await h.status(ids[0]!)).leaseOwner;
      assert.equal(lease, null);
    } finally {
      await b.stop();
      await h[Symbol.asyncDispose]();
    }
  });
});
