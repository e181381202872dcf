import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { waitFor } from './support/processes.ts';
import { postgresTestUrl } from './support/postgres.ts';
import { TestPool, acceptedIds, deliveriesById } from './support/pool.ts';

/**
 * Issue 14, item 3: a pool member frozen (SIGSTOP) for longer than its lease
 * wakes up with queues of started messages that another dispatcher took over
 * and delivered meanwhile. It must send none of them: the only duplicates on
 * the wire are the deliveries it had already sent when it froze.
 *
 * d1 (one delivery at a time) holds 1,000 messages due at one instant, so a
 * few hundred are started and queued when it is frozen; d0 takes them over
 * one lease later.
 */

const url = postgresTestUrl();
const TOTAL = 1_000;
const LEASE_MS = 2_000;
const FROZEN = 1;

describe('a pool member paused past its lease', { skip: url ? false : 'PSCHED_TEST_POSTGRES_URL is not set (.ci/run sets it)' }, () => {
  const pool = new TestPool(url ?? '');
  after(() => pool.cleanup());

  it('sends nothing another dispatcher took over while it was frozen', { timeout: 120_000 }, async (t) => {
    await pool.start({
      dispatchers: 2,
      dispatcherFlags: { lease: `${LEASE_MS}ms`, horizon: '20s' },
      flagsFor: (i): Record<string, string> => (i === FROZEN ? { concurrency: '1' } : {}),
    });
    const warmUp = await pool.warmUp(20);
    const frozen = pool.dispatchers[FROZEN]!;
    const name = `d${FROZEN}`;

    const dueAt = Date.now() + 1_500;
    const ids = await pool.schedule(FROZEN, Array.from({ length: TOTAL }, (_, i) => ({ message: `paused ${i}`, scheduledAt: dueAt })));
    await waitFor(() => pool.proxy.deliveries.filter((d) => d.via === name && d.scheduledAt === dueAt).length >= 20,
      { timeoutMs: 20_000, intervalMs: 2, what: `${name} under way with the burst` });
    process.kill(frozen.pid!, 'SIGSTOP');
    const frozenAt = Date.now();

    // the other one takes over after the lease and delivers the rest
    const all = [...warmUp, ...ids];
    await waitFor(() => acceptedIds(pool.proxy).size === all.length,
      { timeoutMs: 60_000, intervalMs: 20, what: () => `all ${all.length} accepted (have ${acceptedIds(pool.proxy).size})` });
    const frozenFor = Date.now() - frozenAt;
    assert.ok(frozenFor > LEASE_MS, `frozen ${frozenFor} ms, longer than the lease`);

    const resumedAt = Date.now(); // before the signal: nothing it begins after waking can predate it
    process.kill(frozen.pid!, 'SIGCONT');
    // begun after resuming: a request it had begun to write when it froze (its headers
    // arrived, the rest after SIGCONT) was already sent, like one in flight
    const sentSinceResumed = () => pool.proxy.deliveries.filter((d) => d.via === name && d.headersAt >= resumedAt);
    const finishedAfterResume = () => pool.proxy.deliveries.filter((d) => d.via === name && d.headersAt < resumedAt && d.receivedAt >= resumedAt);
    await frozen.ready(); // answering again: its overdue timers have run
    await waitFor(() => frozen.output.includes('lease regained') || sentSinceResumed().length > 0,
      { timeoutMs: 20_000, intervalMs: 10, what: `${name} to regain its lease` });
    const staleSends = sentSinceResumed();
    // frozen in between, so whatever it had begun before it resumed it had begun before it froze
    const sentBeforeFreeze = new Set(pool.proxy.deliveries.filter((d) => d.via === name && d.headersAt < resumedAt).map((d) => d.id));
    const feed = await pool.feed();
    const perMessage = new Map<string, number>();
    for (const post of feed) perMessage.set(post.messageId!, (perMessage.get(post.messageId!) ?? 0) + 1);
    const duplicated = [...deliveriesById(pool.proxy)].filter(([, list]) => list.length > 1);
    t.diagnostic(`${name} sent ${sentBeforeFreeze.size} before it froze for ${frozenFor} ms; ${staleSends.length} sends begun after it resumed; `
      + `${finishedAfterResume().length} begun before the freeze and finished after; ${duplicated.length} wire duplicates`);

    assert.deepEqual(staleSends.map((d) => d.id), [], 'nothing sent after resuming');
    assert.equal(feed.length, all.length, 'one post per message');
    for (const id of all) assert.equal(perMessage.get(id), 1, `message ${id} is in the feed once`);
    for (const [id, list] of duplicated) {
      assert.ok(sentBeforeFreeze.has(id) && list[0]!.via === name, `duplicate ${id} was in flight when ${name} froze: ${JSON.stringify(list)}`);
    }
  });
});
