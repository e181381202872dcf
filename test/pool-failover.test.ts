import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { OUTCOME_BATCH } from '../src/dispatcher/engine.ts';
import { waitFor } from './support/processes.ts';
import { postgresTestUrl, withAdminClient } from './support/postgres.ts';
import { TestPool, acceptedIds, deliveriesById, quantile, type WireDelivery } from './support/pool.ts';

/**
 * Issue 4, "a pool that survives losing one": three `psched dispatcher`
 * processes on one PostgreSQL schema deliver 6,000 messages due over 6 s to
 * a real main server; one is killed with `kill -9` midway. Its claims expire
 * after one lease and the two others deliver its messages: every message
 * reaches the feed exactly once, and the only duplicates on the wire are the
 * deliveries the dead one had sent but not recorded.
 */

const url = postgresTestUrl();

const TOTAL = 6_000;
const DISPATCHERS = 3;
const SPREAD_MS = 6_000;
/** The first message is due this long after scheduling starts: scheduling 6,000 takes under a second even on a busy 2-core box. */
const FIRST_DUE_MS = 2_500;
const KILLED = 1;
/**
 * A short lease so the takeover fits a test: claims outlive their owner by at
 * most this (renewed every lease/3), and refills run every lease/4. The
 * horizon holds the whole burst, so each message is claimed by the dispatcher
 * it was scheduled through, at insert.
 */
const LEASE_MS = 2_000;
const HORIZON_MS = 20_000;
/** Deliveries in flight per dispatcher (the default). */
const CONCURRENCY = 128;
/**
 * What the dead one had sent but not recorded: its deliveries in flight, plus
 * the answered ones whose outcomes wait for company before they are written
 * (up to OUTCOME_BATCH) and the batch being written (as many again). Bounding
 * by the concurrency alone failed 3 runs in 9 (130-141).
 */
const UNRECORDED_BOUND = CONCURRENCY + 2 * OUTCOME_BATCH;
/**
 * Takeover: the dead one's claims expire at most one lease after the kill (a
 * live one renews every lease/3), the next refill of a live one finds them
 * (every lease/4), then a claim, a startDelivery and a send by a dispatcher
 * busy with its own burst: up to a second on the shared 2-core box, so one
 * more lease of slack. What the bound rules out is waiting for anything
 * slower than the lease (refills every horizon/4, as before, took up to
 * lease + 5 s here).
 */
const TAKEOVER_BOUND_MS = 2 * LEASE_MS + LEASE_MS / 4;
/**
 * Extra lateness of a taken-over message over live messages due at the same
 * time: the takeover, plus the time two dispatchers already busy with their
 * own burst need to deliver ~1,500 leftovers (~0.5-1 s measured).
 */
const EXTRA_LATENESS_BOUND_MS = TAKEOVER_BOUND_MS + 1_500;

describe('a pool of 3 dispatchers on PostgreSQL, one killed with kill -9', { skip: url ? false : 'PSCHED_TEST_POSTGRES_URL is not set (.ci/run sets it)' }, () => {
  const pool = new TestPool(url ?? '');
  after(() => pool.cleanup());

  it('delivers everything exactly once to the feed; the dead one\'s messages go out within the lease', async (t) => {
    await pool.start({
      dispatchers: DISPATCHERS,
      dispatcherFlags: { lease: `${LEASE_MS}ms`, horizon: `${HORIZON_MS}ms`, concurrency: String(CONCURRENCY) },
    });
    const warmUp = await pool.warmUp(100);
    const wireBeforeBurst = pool.proxy.deliveries.length;

    // 1. 6,000 messages due over 6 s, message i through dispatcher i % 3 (which claims it at insert)
    const start = Date.now();
    const firstDue = start + FIRST_DUE_MS;
    const dueAt = (i: number) => firstDue + Math.floor((i * SPREAD_MS) / TOTAL);
    const heldBy = new Map<string, number>();
    await Promise.all(Array.from({ length: DISPATCHERS }, async (_, d) => {
      const mine = Array.from({ length: TOTAL }, (_, i) => i).filter((i) => i % DISPATCHERS === d);
      for (let from = 0; from < mine.length; from += 1_000) {
        const chunk = mine.slice(from, from + 1_000);
        const ids = await pool.schedule(d, chunk.map((i) => ({ message: `pool message ${i}`, scheduledAt: dueAt(i) })));
        for (const id of ids) heldBy.set(id, d);
      }
    }));
    const scheduledIn = Date.now() - start;
    assert.equal(heldBy.size, TOTAL);
    assert.ok(Date.now() < firstDue, `scheduling took ${scheduledIn} ms, longer than the ${FIRST_DUE_MS} ms before the first due time`);

    // 2. kill -9 one of them halfway through the burst (by due time)
    await waitFor(() => Date.now() >= firstDue + SPREAD_MS / 2, { timeoutMs: FIRST_DUE_MS + SPREAD_MS, intervalMs: 5, what: 'the middle of the burst' });
    const killedAt = Date.now();
    const exit = await pool.dispatchers[KILLED]!.kill9();
    assert.equal(exit.signal, 'SIGKILL');
    const deadAt = Date.now();
    const inFeedAtKill = acceptedIds(pool.proxy).size - warmUp.length;
    assert.ok(inFeedAtKill > 0 && inFeedAtKill < TOTAL, `killed midway (${inFeedAtKill} of ${TOTAL} in the feed)`);

    // 3. every message reaches the feed
    const all = [...warmUp, ...heldBy.keys()];
    await waitFor(() => acceptedIds(pool.proxy).size === all.length, {
      timeoutMs: SPREAD_MS + 4 * LEASE_MS + 20_000, intervalMs: 20, what: () => `all ${all.length} messages accepted (have ${acceptedIds(pool.proxy).size})`,
    });

    // 4. the feed holds each message exactly once, and nothing else
    const feed = await pool.feed();
    const perMessage = new Map<string, number>();
    for (const post of feed) perMessage.set(post.messageId!, (perMessage.get(post.messageId!) ?? 0) + 1);
    assert.equal(feed.length, all.length, 'one post per message');
    for (const id of all) assert.equal(perMessage.get(id), 1, `message ${id} is in the feed once`);

    // 5. duplicates at the wire: only deliveries the dead one had sent before it died, sent again by a live one
    const burst = pool.proxy.deliveries.slice(wireBeforeBurst);
    const byId = deliveriesById(pool.proxy);
    const dead = `d${KILLED}`;
    for (const delivery of pool.proxy.deliveries) {
      assert.ok(delivery.status === 200 || delivery.status === 201, `the main server accepted ${JSON.stringify(delivery)}`);
    }
    const duplicated = [...byId.entries()].filter(([, list]) => list.length > 1);
    for (const [id, list] of duplicated) {
      const [first, ...again] = list;
      assert.equal(first!.via, dead, `message ${id} was sent twice, the first time by ${first!.via}: ${JSON.stringify(list)}`);
      assert.ok(first!.receivedAt <= deadAt, `the dead one's copy of ${id} arrived before it died`);
      assert.ok(again.every((d) => d.via !== dead), `message ${id} was sent again by a live dispatcher only: ${JSON.stringify(list)}`);
    }
    assert.ok(duplicated.length <= UNRECORDED_BOUND, `${duplicated.length} wire duplicates, at most what the dead one can hold sent but unrecorded (${UNRECORDED_BOUND})`);
    assert.equal(burst.filter((d) => d.status === 200).length, duplicated.length, 'the main server answered 200 (already posted) exactly to the redeliveries');

    // 6. extra lateness of the dead one's messages that the others delivered: against live messages due at the same time
    const posted = (id: string): WireDelivery => byId.get(id)!.find((d) => d.status === 201)!;
    const lateness = (id: string) => posted(id).receivedAt - posted(id).scheduledAt;
    const takenOver = [...heldBy].filter(([id, d]) => d === KILLED && posted(id).via !== dead).map(([id]) => id);
    const liveByDue = [...heldBy].filter(([, d]) => d !== KILLED).map(([id]) => ({ due: posted(id).scheduledAt, lateness: lateness(id) }));
    const peerLateness = (due: number) => quantile(liveByDue.filter((m) => Math.abs(m.due - due) <= 100).map((m) => m.lateness), 0.5);
    const extra = takenOver.map((id) => lateness(id) - peerLateness(posted(id).scheduledAt));
    const maxExtra = Math.max(...extra);
    const takeover = Math.min(...takenOver.map((id) => posted(id).receivedAt)) - killedAt;
    const liveLateness = liveByDue.map((m) => m.lateness);
    t.diagnostic(`scheduled ${TOTAL} in ${scheduledIn} ms; killed d${KILLED} ${killedAt - firstDue} ms into the burst with ${inFeedAtKill} in the feed`);
    t.diagnostic(`lease ${LEASE_MS} ms: the first of the dead one's messages went out through another ${takeover} ms after the kill (bound ${TAKEOVER_BOUND_MS} ms)`);
    t.diagnostic(`the others delivered ${takenOver.length} of the dead one's messages; their lateness p50 ${quantile(takenOver.map(lateness), 0.5)} ms, ` +
      `max ${Math.max(...takenOver.map(lateness))} ms; extra over live messages due at the same time p50 ${quantile(extra, 0.5)} ms, max ${maxExtra} ms (bound ${EXTRA_LATENESS_BOUND_MS} ms)`);
    t.diagnostic(`the live ones' own messages: lateness p50 ${quantile(liveLateness, 0.5)} ms, p99 ${quantile(liveLateness, 0.99)} ms, max ${Math.max(...liveLateness)} ms`);
    t.diagnostic(`wire duplicates: ${duplicated.length} (the dead one's deliveries sent but not recorded); ${burst.length} deliveries for ${TOTAL} messages`);
    assert.ok(takenOver.length > 0, 'the dead one left messages behind');
    assert.ok(takeover <= TAKEOVER_BOUND_MS, `the others took over ${takeover} ms after the kill, bound ${TAKEOVER_BOUND_MS} ms`);
    assert.ok(maxExtra <= EXTRA_LATENESS_BOUND_MS, `the dead one's messages went out at most ${maxExtra} ms later than their peers, bound ${EXTRA_LATENESS_BOUND_MS} ms`);

    // 7. work spreads: every dispatcher delivered a share; the dead one's leftovers went to the live ones
    const count = (ids: string[]) => {
      const by: Record<string, number> = {};
      for (const id of ids) by[posted(id).via] = (by[posted(id).via] ?? 0) + 1;
      return by;
    };
    const deliveredBy = count([...heldBy.keys()]);
    t.diagnostic(`burst posts per dispatcher: ${JSON.stringify(deliveredBy)}; the dead one's leftovers: ${JSON.stringify(count(takenOver))}`);
    for (let d = 0; d < DISPATCHERS; d++) {
      if (d === KILLED) continue;
      assert.ok((deliveredBy[`d${d}`] ?? 0) >= TOTAL / DISPATCHERS, `live dispatcher d${d} delivered at least its own third (${deliveredBy[`d${d}`]})`);
    }

    // 8. the store agrees: everything delivered, nothing left claimed or in flight
    const rows = await waitFor(async () => {
      const counts = await withAdminClient(url!, async (client) =>
        (await client.query<{ status: string; count: string; claimed: string }>(
          `SELECT status, count(*) AS count, count(lease_owner) AS claimed FROM ${pool.schema.name}.messages GROUP BY status`)).rows);
      return counts.length === 1 && counts[0]!.status === 'delivered' && Number(counts[0]!.count) === all.length ? counts : undefined;
    }, { timeoutMs: 10_000, what: 'the store to record every delivery' });
    assert.equal(Number(rows[0]!.claimed), 0, 'delivered messages hold no lease');
  });
});
