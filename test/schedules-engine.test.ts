import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock } from '../src/clock.ts';
import type { AttemptResult, Deliverer } from '../src/dispatcher/delivery.ts';
import { SchedulingEngine } from '../src/dispatcher/engine.ts';
import { DispatcherMetrics } from '../src/dispatcher/metrics.ts';
import { nextFireAfter, occurrenceMessageId, ScheduleMaterializer } from '../src/dispatcher/schedules.ts';
import type { DispatcherStore, NewSchedule, StoredMessage } from '../src/dispatcher/store.ts';
import { uuidv7 } from '../src/ids.ts';
import type { CatchUpPolicy, DstGapPolicy, DstOverlapPolicy } from '../src/protocol/recurrence.ts';
import { openSqliteDispatcherStore } from '../src/stores/sqlite/dispatcher-store.ts';

/**
 * Schedules end to end on a FakeClock: the materialiser turns occurrences
 * into messages, the real engine delivers them, a recording deliverer notes
 * the fake time of each delivery. Walked across real DST transitions for each
 * policy, and across an outage for each catch-up policy. The engine's horizon
 * and lease and the materialiser's interval are long (an hour, a minute) so
 * walking days of fake time takes few timer firings; delivery is still to
 * the millisecond.
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

class RecordingDeliverer implements Deliverer {
  readonly calls: { id: string; at: number; scheduledAt: number }[] = [];
  readonly #clock: FakeClock;
  constructor(clock: FakeClock) {
    this.#clock = clock;
  }
  deliver(message: StoredMessage): Promise<AttemptResult> {
    this.calls.push({ id: message.id, at: this.#clock.now(), scheduledAt: message.scheduledAt });
    return Promise.resolve({ kind: 'delivered', status: 200 });
  }
  async close(): Promise<void> {}
}

interface Rig {
  clock: FakeClock;
  store: DispatcherStore;
  deliverer: RecordingDeliverer;
  start(): Promise<void>;
  /** Stops the engine and the materialiser (an outage, or a clean stop). */
  stop(): Promise<void>;
  addSchedule(overrides: Partial<NewSchedule>): Promise<string>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function rig(start: number): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'psched-schedules-'));
  const store = openSqliteDispatcherStore(join(dir, 'dispatcher.db'));
  await store.migrate();
  const clock = new FakeClock(start);
  const deliverer = new RecordingDeliverer(clock);
  let engine: SchedulingEngine | undefined;
  let materializer: ScheduleMaterializer | undefined;
  const r: Rig = {
    clock, store, deliverer,
    async start() {
      engine = new SchedulingEngine({ store, deliverer, clock, metrics: new DispatcherMetrics(), horizonMs: HOUR, leaseMs: HOUR });
      materializer = new ScheduleMaterializer({ store, engine, clock, leadMs: 2 * MINUTE, intervalMs: MINUTE });
      await engine.start();
      await materializer.start();
    },
    async stop() {
      await materializer?.stop();
      await engine?.stop();
      materializer = undefined;
      engine = undefined;
    },
    async addSchedule(overrides) {
      const now = clock.now();
      const settings = {
        cron: null, everyMs: null, timeZone: 'UTC', startAt: null, endAt: null, maxOccurrences: null,
        dstGap: 'shift' as DstGapPolicy, dstOverlap: 'first' as DstOverlapPolicy, catchUp: 'latest' as CatchUpPolicy, catchUpMax: 100, paused: false,
        ...overrides,
      };
      const id = uuidv7(now);
      await store.insertSchedule({ id, username: 'ada', message: 'tick', idempotencyKey: null, ...settings, nextFireAt: nextFireAfter({ ...settings, createdAt: now, occurrences: 0 }, now) }, now);
      return id;
    },
    async [Symbol.asyncDispose]() {
      await r.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return r;
}

const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');

interface Walk {
  zone: string;
  cron: string;
  from: string;
  days: number;
  policy: { gap?: DstGapPolicy; overlap?: DstOverlapPolicy };
  expected: string[];
}

/** Each case: a daily rule walked over three days around a transition, every delivery at its instant to the millisecond. */
const WALKS: Walk[] = [
  { zone: 'America/New_York', cron: '30 2 * * *', from: '2026-03-07T00:00:00Z', days: 3, policy: { gap: 'shift' }, expected: ['2026-03-07T07:30:00Z', '2026-03-08T07:30:00Z', '2026-03-09T06:30:00Z'] },
  { zone: 'America/New_York', cron: '30 2 * * *', from: '2026-03-07T00:00:00Z', days: 3, policy: { gap: 'skip' }, expected: ['2026-03-07T07:30:00Z', '2026-03-09T06:30:00Z'] },
  { zone: 'America/New_York', cron: '30 1 * * *', from: '2026-10-31T00:00:00Z', days: 3, policy: { overlap: 'first' }, expected: ['2026-10-31T05:30:00Z', '2026-11-01T05:30:00Z', '2026-11-02T06:30:00Z'] },
  { zone: 'America/New_York', cron: '30 1 * * *', from: '2026-10-31T00:00:00Z', days: 3, policy: { overlap: 'last' }, expected: ['2026-10-31T05:30:00Z', '2026-11-01T06:30:00Z', '2026-11-02T06:30:00Z'] },
  { zone: 'America/New_York', cron: '30 1 * * *', from: '2026-10-31T00:00:00Z', days: 3, policy: { overlap: 'both' }, expected: ['2026-10-31T05:30:00Z', '2026-11-01T05:30:00Z', '2026-11-01T06:30:00Z', '2026-11-02T06:30:00Z'] },
  { zone: 'Europe/Berlin', cron: '30 2 * * *', from: '2026-03-28T00:00:00Z', days: 3, policy: { gap: 'shift' }, expected: ['2026-03-28T01:30:00Z', '2026-03-29T01:30:00Z', '2026-03-30T00:30:00Z'] },
  { zone: 'Europe/Berlin', cron: '30 2 * * *', from: '2026-03-28T00:00:00Z', days: 3, policy: { gap: 'skip' }, expected: ['2026-03-28T01:30:00Z', '2026-03-30T00:30:00Z'] },
  { zone: 'Europe/Berlin', cron: '30 2 * * *', from: '2026-10-24T00:00:00Z', days: 3, policy: { overlap: 'both' }, expected: ['2026-10-24T00:30:00Z', '2026-10-25T00:30:00Z', '2026-10-25T01:30:00Z', '2026-10-26T01:30:00Z'] },
  { zone: 'Australia/Lord_Howe', cron: '15 2 * * *', from: '2026-10-02T12:00:00Z', days: 3, policy: { gap: 'shift' }, expected: ['2026-10-02T15:45:00Z', '2026-10-03T15:45:00Z', '2026-10-04T15:15:00Z'] },
  { zone: 'Australia/Lord_Howe', cron: '15 2 * * *', from: '2026-10-02T12:00:00Z', days: 3, policy: { gap: 'skip' }, expected: ['2026-10-02T15:45:00Z', '2026-10-04T15:15:00Z'] },
  { zone: 'Australia/Lord_Howe', cron: '45 1 * * *', from: '2026-04-03T12:00:00Z', days: 3, policy: { overlap: 'first' }, expected: ['2026-04-03T14:45:00Z', '2026-04-04T14:45:00Z', '2026-04-05T15:15:00Z'] },
  { zone: 'Australia/Lord_Howe', cron: '45 1 * * *', from: '2026-04-03T12:00:00Z', days: 3, policy: { overlap: 'both' }, expected: ['2026-04-03T14:45:00Z', '2026-04-04T14:45:00Z', '2026-04-04T15:15:00Z', '2026-04-05T15:15:00Z'] },
  { zone: 'Australia/Sydney', cron: '30 2 * * *', from: '2026-10-02T12:00:00Z', days: 3, policy: { gap: 'shift' }, expected: ['2026-10-02T16:30:00Z', '2026-10-03T16:30:00Z', '2026-10-04T15:30:00Z'] },
  { zone: 'Australia/Sydney', cron: '30 2 * * *', from: '2026-04-03T12:00:00Z', days: 3, policy: { overlap: 'last' }, expected: ['2026-04-03T15:30:00Z', '2026-04-04T16:30:00Z', '2026-04-05T16:30:00Z'] },
  { zone: 'Asia/Kolkata', cron: '0 9 * * *', from: '2026-03-28T00:00:00Z', days: 3, policy: { gap: 'skip', overlap: 'both' }, expected: ['2026-03-28T03:30:00Z', '2026-03-29T03:30:00Z', '2026-03-30T03:30:00Z'] },
];

describe('schedules on a fake clock, across DST transitions', () => {
  for (const walk of WALKS) {
    it(`${walk.zone} "${walk.cron}" ${JSON.stringify(walk.policy)} from ${walk.from}`, async () => {
      await using r = await rig(Date.parse(walk.from));
      const id = await r.addSchedule({ cron: walk.cron, timeZone: walk.zone, dstGap: walk.policy.gap ?? 'shift', dstOverlap: walk.policy.overlap ?? 'first' });
      await r.start();
      await r.clock.advance(walk.days * DAY);
      assert.deepEqual(r.deliverer.calls.map((call) => iso(call.at)), walk.expected, 'delivered at each occurrence, to the millisecond');
      assert.deepEqual(r.deliverer.calls.map((call) => call.id), walk.expected.map((at) => occurrenceMessageId(id, Date.parse(at))));
      const schedule = await r.store.getSchedule(id);
      assert.equal(schedule?.occurrences, walk.expected.length);
    });
  }

  it('an every rule counts elapsed time: 1d across the New York gap stays 24 h apart', async () => {
    await using r = await rig(Date.parse('2026-03-06T12:00:00Z'));
    await r.addSchedule({ everyMs: DAY, timeZone: 'America/New_York', startAt: Date.parse('2026-03-07T14:00:00Z') });
    await r.start();
    await r.clock.advance(3 * DAY + 3 * HOUR);
    assert.deepEqual(r.deliverer.calls.map((call) => iso(call.at)), ['2026-03-07T14:00:00Z', '2026-03-08T14:00:00Z', '2026-03-09T14:00:00Z']);
  });

  it('a sub-hourly rule across the New York gap delivers each real half hour once', async () => {
    await using r = await rig(Date.parse('2026-03-08T05:45:00Z'));
    await r.addSchedule({ cron: '*/30 * * * *', timeZone: 'America/New_York' });
    await r.start();
    await r.clock.advance(2 * HOUR + 20 * MINUTE);
    assert.deepEqual(r.deliverer.calls.map((call) => iso(call.at)),
      ['2026-03-08T06:00:00Z', '2026-03-08T06:30:00Z', '2026-03-08T07:00:00Z', '2026-03-08T07:30:00Z', '2026-03-08T08:00:00Z']);
  });

  it('stops after maxOccurrences and at endAt', async () => {
    await using r = await rig(Date.parse('2026-01-01T00:00:00Z'));
    const capped = await r.addSchedule({ cron: '0 * * * *', maxOccurrences: 2 });
    const ended = await r.addSchedule({ cron: '30 * * * *', endAt: Date.parse('2026-01-01T02:30:00Z') });
    await r.start();
    await r.clock.advance(6 * HOUR);
    const times = (id: string) => r.deliverer.calls.filter((call) => (call.id === occurrenceMessageId(id, call.scheduledAt))).map((call) => iso(call.at));
    assert.deepEqual(times(capped), ['2026-01-01T01:00:00Z', '2026-01-01T02:00:00Z']);
    assert.deepEqual(times(ended), ['2026-01-01T00:30:00Z', '2026-01-01T01:30:00Z', '2026-01-01T02:30:00Z']);
    assert.equal((await r.store.getSchedule(capped))?.nextFireAt, null);
    assert.equal((await r.store.getSchedule(ended))?.nextFireAt, null);
  });
});

describe('catch-up after an outage', () => {
  // hourly from 00:00; up at 00:00-02:10, down 02:10-07:20 (03:00-07:00 missed: 5), restarted at 07:20
  const cases: { policy: CatchUpPolicy; max?: number; caughtUp: string[] }[] = [
    { policy: 'latest', caughtUp: ['2026-01-01T07:00:00Z'] },
    { policy: 'all', max: 3, caughtUp: ['2026-01-01T05:00:00Z', '2026-01-01T06:00:00Z', '2026-01-01T07:00:00Z'] },
    { policy: 'all', max: 100, caughtUp: ['03', '04', '05', '06', '07'].map((h) => `2026-01-01T${h}:00:00Z`) },
    { policy: 'none', caughtUp: [] },
  ];
  for (const { policy, max, caughtUp } of cases) {
    it(`${policy}${max ? ` (cap ${max})` : ''}: a restarted dispatcher applies it at once`, async () => {
      await using r = await rig(Date.parse('2026-01-01T00:00:00Z'));
      const id = await r.addSchedule({ cron: '0 * * * *', catchUp: policy, catchUpMax: max ?? 100 });
      await r.start();
      await r.clock.advance(2 * HOUR + 10 * MINUTE);
      assert.deepEqual(r.deliverer.calls.map((call) => iso(call.at)), ['2026-01-01T01:00:00Z', '2026-01-01T02:00:00Z']);
      await r.stop();
      r.deliverer.calls.length = 0;
      await r.clock.advance(5 * HOUR + 10 * MINUTE); // down: nothing runs
      assert.equal(r.deliverer.calls.length, 0);
      const restartedAt = r.clock.now();
      await r.start();
      await r.clock.advance(0);
      assert.deepEqual(r.deliverer.calls.map((call) => iso(call.scheduledAt)), caughtUp, 'what the policy posts, at once');
      assert.ok(r.deliverer.calls.every((call) => call.at === restartedAt));
      r.deliverer.calls.length = 0;
      await r.clock.advance(HOUR);
      assert.deepEqual(r.deliverer.calls.map((call) => iso(call.at)), ['2026-01-01T08:00:00Z'], 'then on as usual');
      assert.equal((await r.store.getSchedule(id))?.occurrences, 3 + caughtUp.length);
    });
  }

  it('an occurrence late by less than a minute (a busy or restarting dispatcher) is posted whatever the policy', async () => {
    await using r = await rig(Date.parse('2026-01-01T00:00:00Z'));
    await r.addSchedule({ cron: '0 * * * *', catchUp: 'none' });
    await r.clock.advance(HOUR + 30_000); // not started until 30 s after the first occurrence
    await r.start();
    await r.clock.advance(0);
    assert.deepEqual(r.deliverer.calls.map((call) => [iso(call.scheduledAt), iso(call.at)]), [['2026-01-01T01:00:00Z', '2026-01-01T01:00:30Z']]);
  });

  it('materialising twice (a crash before the advance was known, a second dispatcher) delivers once', async () => {
    await using r = await rig(Date.parse('2026-01-01T00:00:00Z'));
    const id = await r.addSchedule({ cron: '0 * * * *' });
    const schedule = (await r.store.getSchedule(id))!;
    // as if an earlier run had inserted the occurrence and died before advancing the schedule
    await r.store.insert([{ id: occurrenceMessageId(id, schedule.nextFireAt!), username: 'ada', message: 'tick', scheduledAt: schedule.nextFireAt!, idempotencyKey: null }], r.clock.now());
    await r.start();
    await r.clock.advance(HOUR + MINUTE);
    assert.deepEqual(r.deliverer.calls.map((call) => iso(call.at)), ['2026-01-01T01:00:00Z']);
  });
});
