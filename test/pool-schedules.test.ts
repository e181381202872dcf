import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { occurrenceMessageId } from '../src/dispatcher/schedules.ts';
import { requestJson, waitFor } from './support/processes.ts';
import { postgresTestUrl, withAdminClient } from './support/postgres.ts';
import { TestPool, acceptedIds, deliveriesById } from './support/pool.ts';

/**
 * Issue 11, "exactly once per occurrence": three `psched dispatcher`
 * processes on one PostgreSQL schema run 30 schedules firing every second for
 * 15 s; one dispatcher is killed with `kill -9` midway. Any dispatcher
 * materialises any due schedule (FOR UPDATE SKIP LOCKED), the dead one's
 * claimed occurrences are taken over after one lease, and every occurrence
 * reaches the feed exactly once: its message id is derived from the schedule
 * and the instant, so no second materialisation can add one.
 */

const url = postgresTestUrl();

const SCHEDULES = 30;
const OCCURRENCES = 15;
const DISPATCHERS = 3;
const KILLED = 1;
const LEASE_MS = 2_000;
/** The first occurrence is due this long after the schedules are made. */
const FIRST_DUE_MS = 3_000;

describe('schedules on a pool of 3 dispatchers on PostgreSQL, one killed with kill -9', { skip: url ? false : 'PSCHED_TEST_POSTGRES_URL is not set (.ci/run sets it)' }, () => {
  const pool = new TestPool(url ?? '');
  after(() => pool.cleanup());

  it('posts every occurrence of schedules firing every second exactly once', async (t) => {
    await pool.start({ dispatchers: DISPATCHERS, dispatcherFlags: { lease: `${LEASE_MS}ms` } });
    const warmUp = await pool.warmUp(20);

    // 1. schedules of 15 one-second occurrences each, made through each dispatcher in turn and through the main server
    const startAt = Math.ceil((Date.now() + FIRST_DUE_MS) / 1000) * 1000;
    const expected: string[] = [];
    for (let s = 0; s < SCHEDULES; s++) {
      const viaMain = s % 4 === 3;
      const target = viaMain ? `${pool.main.url}/v1/schedules` : `${pool.dispatchers[s % DISPATCHERS]!.url}/v1/schedules`;
      const answer = await requestJson('POST', target, {
        token: viaMain ? undefined : pool.token,
        body: { username: 'pool', message: `every second ${s}`, every: '1s', startAt: new Date(startAt).toISOString(), maxOccurrences: OCCURRENCES },
      });
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      for (let k = 0; k < OCCURRENCES; k++) expected.push(occurrenceMessageId(answer.body.id as string, startAt + k * 1000));
    }
    assert.ok(Date.now() < startAt, 'the schedules were made before their first occurrence');

    // 2. kill -9 one dispatcher halfway through
    await waitFor(() => Date.now() >= startAt + (OCCURRENCES * 1000) / 2, { timeoutMs: FIRST_DUE_MS + OCCURRENCES * 1000, intervalMs: 5, what: 'the middle of the run' });
    const exit = await pool.dispatchers[KILLED]!.kill9();
    assert.equal(exit.signal, 'SIGKILL');
    const inFeedAtKill = expected.filter((id) => acceptedIds(pool.proxy).has(id)).length;
    assert.ok(inFeedAtKill > 0 && inFeedAtKill < expected.length, `killed midway (${inFeedAtKill} of ${expected.length} occurrences in the feed)`);

    // 3. every occurrence reaches the feed
    await waitFor(() => expected.every((id) => acceptedIds(pool.proxy).has(id)), {
      timeoutMs: OCCURRENCES * 1000 + 4 * LEASE_MS + 20_000, intervalMs: 50,
      what: () => `all ${expected.length} occurrences accepted (have ${expected.filter((id) => acceptedIds(pool.proxy).has(id)).length})`,
    });

    // 4. exactly once in the feed, and nothing else: no occurrence beyond maxOccurrences, none twice
    const feed = await pool.feed();
    const perMessage = new Map<string, number>();
    for (const post of feed) perMessage.set(post.messageId!, (perMessage.get(post.messageId!) ?? 0) + 1);
    for (const id of expected) assert.equal(perMessage.get(id), 1, `occurrence ${id} is in the feed once`);
    assert.equal(feed.length, warmUp.length + expected.length, 'one post per occurrence (and the warm-up), nothing more');

    // 5. each occurrence went out at its second (taken-over ones within the lease)
    const byId = deliveriesById(pool.proxy);
    const lateness = expected.map((id) => {
      const posted = byId.get(id)!.find((d) => d.status === 201)!;
      return posted.receivedAt - posted.scheduledAt;
    });
    const sorted = [...lateness].sort((a, b) => a - b);
    t.diagnostic(`${expected.length} occurrences, ${inFeedAtKill} in the feed at the kill; lateness p50 ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted.at(-1)} ms`);
    const postedBy: Record<string, number> = {};
    for (const id of expected) {
      const via = byId.get(id)!.find((d) => d.status === 201)!.via;
      postedBy[via] = (postedBy[via] ?? 0) + 1;
    }
    const wireDuplicates = expected.filter((id) => byId.get(id)!.length > 1).length;
    t.diagnostic(`posted per dispatcher: ${JSON.stringify(postedBy)}; ${wireDuplicates} occurrences sent twice on the wire (the dead one's, deduplicated by the main server)`);
    assert.ok((postedBy[`d${KILLED}`] ?? 0) > 0, 'the killed dispatcher had its share before it died');
    assert.ok(Object.keys(postedBy).length === DISPATCHERS, 'every dispatcher delivered occurrences');

    // 6. the store agrees: each schedule finished with all its occurrences, nothing left claimed
    const schedules = await withAdminClient(url!, async (client) =>
      (await client.query<{ occurrences: string; next_fire_at: string | null }>(`SELECT occurrences, next_fire_at FROM ${pool.schema.name}.schedules`)).rows);
    assert.equal(schedules.length, SCHEDULES);
    for (const row of schedules) {
      assert.equal(Number(row.occurrences), OCCURRENCES);
      assert.equal(row.next_fire_at, null);
    }
  });
});
