import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DispatcherStore, NewMessage } from '../src/dispatcher/store.ts';
import { uuidv7 } from '../src/ids.ts';
import { requestJson, waitFor } from './support/processes.ts';
import { postgresTestUrl } from './support/postgres.ts';
import { TestPool, acceptedIds, deliveriesById, quantile } from './support/pool.ts';

/**
 * Issue 4, how a pool of dispatcher processes on one PostgreSQL schema shares
 * the work while all of them live:
 * - a message scheduled through any dispatcher for "now" is delivered at once
 *   by whichever holds it: the one it went through (claimed at insert), or,
 *   when that one has no room, another one woken by LISTEN/NOTIFY, with no
 *   polling delay;
 * - two dispatchers never hold the same message, even when all of them race
 *   for the same unclaimed messages, or for a dead owner's expired claims.
 */

const url = postgresTestUrl();
const skip = url ? false : 'PSCHED_TEST_POSTGRES_URL is not set (.ci/run sets it)';

async function scheduleNow(pool: TestPool, index: number, message: string): Promise<{ id: string; acceptedAt: number }> {
  const answer = await requestJson('POST', `${pool.dispatchers[index]!.url}/v1/messages`, {
    token: pool.token, body: { username: 'now', message, delaySeconds: 0 },
  });
  assert.equal(answer.status, 201, JSON.stringify(answer.body));
  return { id: (answer.body as { id: string }).id, acceptedAt: Date.now() };
}

/** Resolves with the delivery of `id` (from whichever dispatcher) once the main server accepted it. */
function delivered(pool: TestPool, id: string) {
  return waitFor(() => pool.proxy.deliveries.find((d) => d.id === id && d.status === 201), { timeoutMs: 40_000, intervalMs: 2, what: `delivery of ${id}` });
}

describe('a message for "now" through any dispatcher of a pool', { skip }, () => {
  /**
   * The periodic refill runs every min(lease, horizon)/4 = 60 s here, longer
   * than these tests take: a delivery before half of that cannot have waited
   * for a refill, only for the claim at insert or the NOTIFY wake-up. The
   * bound is what the mechanism rules out, not a latency target (those are
   * the benchmark's job), so a loaded machine does not fail it.
   */
  const LEASE_MS = 240_000;
  const REFILL_INTERVAL_MS = LEASE_MS / 4;
  const NOW_BOUND_MS = REFILL_INTERVAL_MS / 2;
  const pool = new TestPool(url ?? '');
  before(async () => {
    // d0 holds one message at most: once it holds one, what it takes in is left for the others
    await pool.start({ dispatchers: 3, dispatcherFlags: { lease: `${LEASE_MS}ms`, horizon: `${LEASE_MS}ms` }, flagsFor: (i): Record<string, string> => (i === 0 ? { 'max-buffered': '1' } : {}) });
    await pool.warmUp(20);
  });
  after(() => pool.cleanup());

  it('is delivered at once by the dispatcher it went through', async (t) => {
    const latencies: number[] = [];
    for (let round = 0; round < 5; round++) {
      for (let d = 0; d < 3; d++) {
        const { id, acceptedAt } = await scheduleNow(pool, d, `now via d${d} #${round}`);
        const delivery = await delivered(pool, id);
        assert.equal(delivery.via, `d${d}`, 'the dispatcher that stored it claimed it at insert');
        latencies.push(delivery.receivedAt - acceptedAt);
      }
    }
    t.diagnostic(`from the 201 to the main server: p50 ${quantile(latencies, 0.5)} ms, max ${Math.max(...latencies)} ms (bound ${NOW_BOUND_MS} ms; periodic refill every ${REFILL_INTERVAL_MS} ms)`);
    assert.ok(Math.max(...latencies) <= NOW_BOUND_MS);
  });

  it('is delivered at once by another dispatcher, woken by NOTIFY, when the one it went through has no room', async (t) => {
    // fill d0's buffer with a message due in 50 s (within its horizon, so d0 claims it)
    await pool.schedule(0, [{ message: 'holds d0\'s only slot', scheduledAt: Date.now() + 50_000 }]);
    const latencies: number[] = [];
    const takers = new Set<string>();
    for (let round = 0; round < 6; round++) {
      const { id, acceptedAt } = await scheduleNow(pool, 0, `now via a full d0 #${round}`);
      const delivery = await delivered(pool, id);
      assert.notEqual(delivery.via, 'd0', 'd0 had no room for it');
      takers.add(delivery.via);
      latencies.push(delivery.receivedAt - acceptedAt);
    }
    t.diagnostic(`stored by d0, delivered by ${[...takers].join(' and ')}: from the 201 p50 ${quantile(latencies, 0.5)} ms, max ${Math.max(...latencies)} ms (bound ${NOW_BOUND_MS} ms)`);
    assert.ok(Math.max(...latencies) <= NOW_BOUND_MS);
  });
});

describe('dispatchers of a pool racing for the same messages', { skip }, () => {
  const LEASE_MS = 2_000;
  /** Due 2 ms apart (500/s each kind), so the race, not the machine's throughput, is what is tested. */
  const UNCLAIMED = 2_000;
  const ORPHANED = 1_000;
  const pool = new TestPool(url ?? '');
  let store: DispatcherStore | undefined;
  after(async () => {
    await store?.close();
    await pool.cleanup();
  });

  it('never lets two of them hold (and deliver) the same message', async (t) => {
    await pool.start({ dispatchers: 3, dispatcherFlags: { lease: `${LEASE_MS}ms`, horizon: '20s' } });
    const warmUp = await pool.warmUp(50);
    const { openPostgresDispatcherStore } = await import('../src/stores/postgres/dispatcher-store.ts');
    store = await openPostgresDispatcherStore(url!, { schema: pool.schema.name });

    // The test process is one more "dispatcher" that inserts what all three race for:
    // - claims of an owner that died at once: their leases expire in 1.5 s, before they are due;
    // - unclaimed messages, which wake all three (NOTIFY) to claim them side by side.
    const now = Date.now();
    const message = (scheduledAt: number, text: string): NewMessage => ({ id: uuidv7(), username: 'race', message: text, scheduledAt, idempotencyKey: null });
    const orphaned = Array.from({ length: ORPHANED }, (_, i) => message(now + 2_000 + 2 * i, `orphaned ${i}`));
    const unclaimed = Array.from({ length: UNCLAIMED }, (_, i) => message(now + 2_000 + 2 * i, `unclaimed ${i}`));
    for (let from = 0; from < ORPHANED; from += 500) {
      await store.insert(orphaned.slice(from, from + 500), now, { owner: 'owner-that-died', leaseExpiresAt: now + 1_500, dueBefore: Number.MAX_SAFE_INTEGER });
    }
    for (let from = 0; from < UNCLAIMED; from += 500) await store.insert(unclaimed.slice(from, from + 500), now);
    assert.ok(Date.now() < now + 1_500, 'inserted before the orphaned claims expire');

    const all = [...warmUp, ...orphaned.map((m) => m.id), ...unclaimed.map((m) => m.id)];
    await waitFor(() => acceptedIds(pool.proxy).size === all.length, {
      timeoutMs: 30_000, intervalMs: 20, what: () => `all ${all.length} delivered (have ${acceptedIds(pool.proxy).size})`,
    });

    // each message went out once, first attempt, from one dispatcher
    const byId = deliveriesById(pool.proxy);
    for (const id of all) {
      const list = byId.get(id)!;
      assert.equal(list.length, 1, `message ${id} was sent once: ${JSON.stringify(list)}`);
      assert.equal(list[0]!.attempt, 1);
    }
    const split = (ids: NewMessage[]) => {
      const by: Record<string, number> = {};
      for (const { id } of ids) by[byId.get(id)![0]!.via] = (by[byId.get(id)![0]!.via] ?? 0) + 1;
      return by;
    };
    const lateness = [...orphaned, ...unclaimed].map(({ id }) => byId.get(id)![0]!.receivedAt - byId.get(id)![0]!.scheduledAt);
    t.diagnostic(`unclaimed ones delivered by ${JSON.stringify(split(unclaimed))}; the dead owner's by ${JSON.stringify(split(orphaned))}; ` +
      `lateness p50 ${quantile(lateness, 0.5)} ms, p99 ${quantile(lateness, 0.99)} ms`);
    // the race was real: more than one dispatcher claimed from the same inserts (which one wins
    // each claim is the machine's scheduling: all three sharing is usual, not a guarantee)
    const takers = Object.keys(split(unclaimed));
    assert.ok(takers.length >= 2, `several dispatchers took a share of the unclaimed messages (${JSON.stringify(split(unclaimed))})`);

    const counts = await waitFor(async () => {
      const byStatus = await store!.countByStatus();
      return byStatus.delivered === all.length ? byStatus : undefined;
    }, { timeoutMs: 10_000, what: 'the store to record every delivery' });
    assert.deepEqual(counts, { scheduled: 0, delivering: 0, delivered: all.length, dead: 0, expired: 0 });
  });
});
