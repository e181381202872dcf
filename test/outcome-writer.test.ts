import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../src/clock.ts';
import { OutcomeWriter } from '../src/dispatcher/outcome-writer.ts';

/** The engine's outcome-writing stage on its own, on a FakeClock: when batches go and what a failed write does. */
function writer(options: { urgent?: () => boolean; fail?: (batch: number[]) => boolean } = {}) {
  const clock = new FakeClock();
  const writes: number[][] = [];
  const written: number[][] = [];
  const failed: number[][] = [];
  let release: (() => void) | undefined;
  let holdWrites = false;
  const stage = new OutcomeWriter<number>({
    clock, batchSize: 3, delayMs: 10,
    urgent: options.urgent ?? (() => false),
    write: (batch) => {
      writes.push([...batch]);
      if (options.fail?.(batch)) return Promise.reject(new Error('disk full'));
      if (holdWrites) return new Promise<void>((resolve) => { release = resolve; });
      return Promise.resolve();
    },
    written: (batch) => { written.push([...batch]); },
    failed: (_err, batch) => { failed.push([...batch]); },
  });
  return { clock, stage, writes, written, failed, hold: () => { holdWrites = true; }, release: () => release?.() };
}

describe('OutcomeWriter', () => {
  it('waits delayMs for company, then writes every outcome that arrived meanwhile in one batch', async () => {
    const w = writer();
    w.stage.add(1);
    await w.clock.advance(5);
    w.stage.add(2);
    await w.clock.advance(4);
    assert.deepEqual(w.writes, [], 'not before the delay');
    await w.clock.advance(1);
    assert.deepEqual(w.writes, [[1, 2]]);
    assert.deepEqual(w.written, [[1, 2]]);
  });

  it('writes a full batch, or when nothing else is on its way, without waiting', async () => {
    const full = writer();
    for (const n of [1, 2, 3]) full.stage.add(n);
    await full.clock.advance(0);
    assert.deepEqual(full.writes, [[1, 2, 3]]);

    const urgent = writer({ urgent: () => true });
    urgent.stage.add(7);
    await urgent.clock.advance(0);
    assert.deepEqual(urgent.writes, [[7]]);
  });

  it('writes one batch at a time: what arrives during a write goes in the next', async () => {
    const w = writer({ urgent: () => true });
    w.hold();
    w.stage.add(1);
    await w.clock.advance(0);
    w.stage.add(2);
    w.stage.add(3);
    await w.clock.advance(50);
    assert.deepEqual(w.writes, [[1]], 'the second waits for the first');
    assert.deepEqual([w.stage.writing, w.stage.pending], [[1], [2, 3]]);
    w.release();
    await w.clock.advance(0);
    assert.deepEqual(w.writes, [[1], [2, 3]]);
  });

  it('puts a failed batch back in front of what came after, for the engine to try again', async () => {
    let failing = true;
    const w = writer({ urgent: () => true, fail: () => failing });
    w.stage.add(1);
    await w.clock.advance(0);
    assert.deepEqual(w.failed, [[1]]);
    w.stage.add(2);
    failing = false;
    await w.clock.advance(0);
    assert.deepEqual(w.writes.at(-1), [1, 2], 'the failed outcome first, nothing lost');
    assert.deepEqual(w.stage.pending, []);
  });

  it('drain writes everything pending and waits for it', async () => {
    const w = writer();
    w.stage.add(1);
    w.stage.add(2);
    await w.stage.drain();
    assert.deepEqual(w.written, [[1, 2]]);
    assert.equal(w.clock.pendingTimers, 0, 'the delay timer is cancelled');
  });
});
