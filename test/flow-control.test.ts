import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../src/clock.ts';
import { FlowControl, shareOfLimits, type FlowEntry, type TargetLimits } from '../src/dispatcher/flow-control.ts';

function harness(limits: Record<string, TargetLimits>) {
  const clock = new FakeClock();
  const released: { id: string; target: string; at: number }[] = [];
  const flow = new FlowControl<FlowEntry>({
    clock,
    limitsOf: (target) => limits[target] ?? {},
    release: (entries) => {
      for (const entry of entries) released.push({ id: entry.id, target: entry.target, at: clock.now() });
    },
  });
  let seq = 0;
  const entry = (target: string, dueAt = clock.now()): FlowEntry => ({ id: `${target}-${String(seq++).padStart(4, '0')}`, dueAt, target });
  return { clock, flow, released, entry };
}

describe('FlowControl', () => {
  it('starts a rate-limited target at its rate after the burst, and the others at once', async () => {
    const { clock, flow, released, entry } = harness({ slow: { ratePerSecond: 10, burst: 5 } });
    const start = clock.now();
    const admitted = Array.from({ length: 30 }, () => entry('slow')).filter((e) => flow.admit(e, clock.now()));
    assert.equal(admitted.length, 5, 'the burst goes at once');
    assert.equal(flow.parkedCount, 25);
    assert.ok(Array.from({ length: 100 }, () => entry('fast')).every((e) => flow.admit(e, clock.now())), 'another target is not held up');

    await clock.advance(2000);
    assert.equal(released.length, 20, 'ten a second');
    assert.deepEqual(released.slice(0, 3).map((r) => r.at - start), [100, 200, 300]);
    assert.equal(flow.parkedCount, 5);
    await clock.advance(500);
    assert.equal(flow.parkedCount, 0);
    assert.equal(flow.stats('slow')!.throttledMs, 2500);
  });

  it('caps deliveries in flight: an answer lets the oldest parked entry go', () => {
    const { clock, flow, released, entry } = harness({ capped: { maxInFlight: 2 } });
    const now = clock.now();
    const late = entry('capped', now + 50);
    const first = entry('capped', now);
    const second = entry('capped', now);
    assert.ok(flow.admit(first, now));
    assert.ok(flow.admit(second, now));
    const older = entry('capped', now - 1000);
    assert.equal(flow.admit(late, now), false);
    assert.equal(flow.admit(older, now), false);
    assert.equal(flow.stats('capped')!.oldestDueAt, now - 1000);

    flow.finished(first.id);
    assert.deepEqual(released.map((r) => r.id), [older.id], 'oldest due first, whatever the order it was parked in');
    assert.ok(flow.admit(older, now), 'a released entry holds its place already');
    assert.equal(flow.stats('capped')!.inFlight, 2);
    flow.finished(first.id);
    assert.equal(released.length, 1, 'finishing twice frees one place');
    flow.finished(second.id);
    assert.deepEqual(released.map((r) => r.id), [older.id, late.id]);
  });

  it('a new entry never overtakes the target\'s parked ones', () => {
    const { clock, flow, entry } = harness({ capped: { maxInFlight: 1 } });
    const now = clock.now();
    const a = entry('capped');
    assert.ok(flow.admit(a, now));
    assert.equal(flow.admit(entry('capped'), now), false);
    flow.finished(a.id); // releases the parked one, which takes the only place
    assert.equal(flow.admit(entry('capped'), now), false);
  });

  it('pauses one target until its Retry-After runs out', async () => {
    const { clock, flow, released, entry } = harness({});
    const start = clock.now();
    flow.pause('busy', start + 5000);
    const waiting = [entry('busy'), entry('busy')];
    assert.ok(waiting.every((e) => !flow.admit(e, clock.now())));
    assert.ok(flow.admit(entry('other'), clock.now()));
    assert.equal(flow.stats('busy')!.pausedUntil, start + 5000);
    await clock.advance(4999);
    assert.equal(released.length, 0);
    await clock.advance(1);
    assert.deepEqual(released.map((r) => [r.id, r.at - start]), waiting.map((e) => [e.id, 5000]));
    flow.pause('busy', start + 1000);
    assert.ok(flow.admit(entry('busy'), clock.now()), 'an earlier Retry-After does not shorten or renew a pause');
  });

  it('forgets parked and admitted entries alike', () => {
    const { clock, flow, released, entry } = harness({ capped: { maxInFlight: 1 } });
    const now = clock.now();
    const running = entry('capped');
    const parked = entry('capped');
    const next = entry('capped');
    flow.admit(running, now);
    flow.admit(parked, now);
    flow.admit(next, now);
    assert.equal(flow.forget(parked.id), true);
    assert.deepEqual([...flow.parkedIds()], [next.id]);
    assert.equal(flow.forget(running.id), false, 'an admitted entry was not parked');
    assert.deepEqual(released.map((r) => r.id), [next.id], 'but its place went to the next');
  });

  it('looks at parked entries again when the limits are raised', () => {
    const limits: Record<string, TargetLimits> = { capped: { maxInFlight: 1 } };
    const { clock, flow, released, entry } = harness(limits);
    const now = clock.now();
    flow.admit(entry('capped'), now);
    flow.admit(entry('capped'), now);
    flow.admit(entry('capped'), now);
    limits.capped = { maxInFlight: 3 };
    flow.limitsChanged('capped');
    assert.equal(released.length, 2);
    assert.deepEqual(flow.saturated(1), []);
  });

  it('in a pool keeps the whole rate (its bucket shared) and splits the in-flight cap evenly, never below one', () => {
    assert.deepEqual(shareOfLimits({ ratePerSecond: 10, burst: 5, maxInFlight: 4 }, 3), { ratePerSecond: 10, burst: 5, maxInFlight: 2, sharedRate: true });
    assert.deepEqual(shareOfLimits({ maxInFlight: 1 }, 2), { maxInFlight: 1, sharedRate: false });
    const alone = { ratePerSecond: 10 };
    assert.equal(shareOfLimits(alone, 1), alone);
  });

  it('with a shared bucket takes only the tokens the pool grants: parked entries go as grants come, and wait as long as the bucket says', async () => {
    const clock = new FakeClock();
    const asks: { want: number; at: number }[] = [];
    const grants: (() => { granted: number; waitMs: number } | Error)[] = [
      () => ({ granted: 2, waitMs: 0 }),
      () => ({ granted: 0, waitMs: 250 }),
      () => new Error('connection lost'),
      () => ({ granted: 1, waitMs: 0 }),
    ];
    const errors: string[] = [];
    const released: string[] = [];
    const flow = new FlowControl<FlowEntry>({
      clock,
      limitsOf: () => ({ ratePerSecond: 4, burst: 3, sharedRate: true }),
      release: (entries) => released.push(...entries.map((e) => e.id)),
      takeShared: async (_target, want, limits, now) => {
        assert.deepEqual(limits, { ratePerSecond: 4, burst: 3 });
        asks.push({ want, at: now });
        const next = grants.shift()?.() ?? { granted: 0, waitMs: 10_000 };
        if (next instanceof Error) throw next;
        return next;
      },
      onSharedError: (err) => errors.push((err as Error).message),
    });
    const start = clock.now();
    const entries = ['a', 'b', 'c', 'd'].map((id) => ({ id, dueAt: start, target: 'pool' }));
    assert.equal(flow.admit(entries[0]!, start), false, 'no token of its own: parked until the pool grants one');
    for (const entry of entries.slice(1)) assert.equal(flow.admit(entry, start), false);
    await clock.advance(0);
    assert.deepEqual(released, ['a', 'b'], 'two granted, two released, oldest first');
    assert.deepEqual(asks.map((a) => [a.want, a.at - start]), [[3, 0], [2, 0]], 'one ask for what was parked, at most a burst; again at once after a grant');
    await clock.advance(249);
    assert.equal(asks.length, 2, 'none granted: waits the 250 ms the bucket said');
    await clock.advance(1);
    assert.deepEqual(errors, ['connection lost']);
    await clock.advance(999);
    assert.equal(asks.length, 3, 'after a failure: a second');
    await clock.advance(1);
    assert.deepEqual(released, ['a', 'b', 'c']);
    assert.equal(flow.parkedCount, 1);
  });

  it('a shared bucket\'s request the store never answers counts as failed after 5 s: the target asks again, it does not stall', async () => {
    const clock = new FakeClock();
    const errors: string[] = [];
    const released: string[] = [];
    let asks = 0;
    const flow = new FlowControl<FlowEntry>({
      clock,
      limitsOf: () => ({ ratePerSecond: 1, burst: 1, sharedRate: true }),
      release: (entries) => released.push(...entries.map((e) => e.id)),
      takeShared: () => (++asks === 1 ? new Promise(() => {}) : Promise.resolve({ granted: 1, waitMs: 0 })),
      onSharedError: (err) => errors.push((err as Error).message),
    });
    assert.equal(flow.admit({ id: 'a', dueAt: clock.now(), target: 'pool' }, clock.now()), false);
    await clock.advance(4999);
    assert.deepEqual([asks, errors.length], [1, 0]);
    await clock.advance(1);
    assert.deepEqual(errors, ['the store did not answer within 5000 ms']);
    await clock.advance(1000);
    assert.equal(asks, 2);
    assert.deepEqual(released, ['a']);
  });

  it('names the targets whose backlog reached a size', () => {
    const { clock, flow, entry } = harness({ a: { maxInFlight: 0 }, b: { maxInFlight: 0 } });
    for (let i = 0; i < 3; i++) flow.admit(entry('a'), clock.now());
    flow.admit(entry('b'), clock.now());
    assert.deepEqual(flow.saturated(3), ['a']);
  });
});
