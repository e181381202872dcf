import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../src/clock.ts';
import { EarlyStarts, ReadyQueue } from '../src/dispatcher/started.ts';
import type { StoredMessage } from '../src/dispatcher/store.ts';

/** The engine's two holding places between startDelivery and the send, on their own. */
const started = (id: string, dueAt: number) => ({ id, dueAt }) as StoredMessage;

describe('ReadyQueue', () => {
  it('hands messages out first in, first out, and retains in order', () => {
    const queue = new ReadyQueue();
    for (const id of ['a', 'b', 'c', 'd']) queue.push(started(id, 0));
    assert.equal(queue.shift()!.id, 'a');
    assert.equal(queue.retain((m) => m.id !== 'c'), 1);
    assert.deepEqual(queue.messages().map((m) => m.id), ['b', 'd']);
    assert.deepEqual([queue.shift()!.id, queue.shift()!.id, queue.shift(), queue.size], ['b', 'd', undefined, 0]);
  });
});

describe('EarlyStarts', () => {
  it('hands each message over at its due time, in due order, whatever order the batches landed in', async () => {
    const clock = new FakeClock(1_000);
    const handed: [number, string[]][] = [];
    const early = new EarlyStarts(clock, (messages) => handed.push([clock.now(), messages.map((m) => m.id)]), () => true);
    early.add([started('late', 1_030), started('later', 1_040)]);
    early.add([started('first', 1_010), started('same', 1_010)]);
    await clock.advance(100);
    assert.deepEqual(handed, [[1_010, ['first', 'same']], [1_030, ['late']], [1_040, ['later']]]);
    assert.equal(early.size, 0);
  });

  it('arms no timer while the engine is not running, and retain drops what went elsewhere', async () => {
    const clock = new FakeClock(0);
    let running = false;
    const handed: string[] = [];
    const early = new EarlyStarts(clock, (messages) => handed.push(...messages.map((m) => m.id)), () => running);
    early.add([started('a', 10), started('b', 20)]);
    assert.equal(clock.pendingTimers, 0);
    running = true;
    assert.equal(early.retain((m) => m.id === 'b'), 1);
    await clock.advance(30);
    assert.deepEqual(handed, ['b']);
  });
});
