import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type pg from 'pg';
import type { DispatcherStore, NewMessage, StoredMessage } from '../src/dispatcher/store.ts';
import type { MainStore } from '../src/main/store.ts';
import { uuidv7 } from '../src/ids.ts';
import { createTestSchema, postgresTestUrl } from './support/postgres.ts';

/**
 * What a pool of dispatchers needs from the PostgreSQL store beyond the
 * contract suite, at the store level (each store opened here stands for one
 * process): one owner's transitions running side by side never deadlock, an
 * owner whose renewal ran late never takes its own deliveries back, and a
 * claim that could not take everything wakes the others. Found by the pool
 * tests (test/pool-failover.test.ts); each fails on the statements before the fix.
 */

const url = postgresTestUrl();
const T = Date.UTC(2030, 0, 1);
const MINUTE = 60_000;

function newMessage(overrides: Partial<NewMessage> = {}): NewMessage {
  return { id: uuidv7(), username: 'ann', message: 'hello', scheduledAt: T, idempotencyKey: null, ...overrides };
}

/** Stores on one fresh schema, closed and dropped at the end. */
async function openSchema() {
  const schema = await createTestSchema(url!);
  const [{ openPostgresDispatcherStore }, { openPostgresMainStore }] = await Promise.all([
    import('../src/stores/postgres/dispatcher-store.ts'),
    import('../src/stores/postgres/main-store.ts'),
  ]);
  const opened: { close(): Promise<void> }[] = [];
  return {
    name: schema.name,
    async dispatcher(): Promise<DispatcherStore> {
      const store = await openPostgresDispatcherStore(url!, { schema: schema.name, onError: () => {} });
      opened.push(store);
      await store.migrate();
      return store;
    },
    async main(): Promise<MainStore> {
      const store = await openPostgresMainStore(url!, { schema: schema.name });
      opened.push(store);
      await store.migrate();
      return store;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(opened.map((store) => store.close()));
      await schema.drop();
    },
  };
}

/**
 * A raw LISTEN on the schema's wake channel. `heardBefore()` sends a marker
 * through the channel and counts the notifications that arrived before it
 * since the last call: notifications arrive in commit order, so once the
 * marker is in, everything committed earlier is too.
 */
async function wakeCounter(schema: string) {
  const [{ default: pg }, { wakeChannel }] = await Promise.all([import('pg'), import('../src/stores/postgres/wake.ts')]);
  const channel = wakeChannel(schema);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(`LISTEN ${channel}`);
  let heard = 0;
  let markerArrived: ((count: number) => void) | undefined;
  client.on('notification', (notification) => {
    if (notification.payload === 'marker') {
      const count = heard;
      heard = 0;
      markerArrived?.(count);
    } else {
      heard++;
    }
  });
  return {
    async heardBefore(): Promise<number> {
      const count = new Promise<number>((resolve) => {
        markerArrived = resolve;
      });
      await client.query('SELECT pg_notify($1, $2)', [channel, 'marker']);
      return count;
    },
    close: () => client.end(),
  };
}

const ids = (messages: StoredMessage[]) => messages.map((message) => message.id);

describe('PostgreSQL store under a pool', { skip: url ? false : 'PSCHED_TEST_POSTGRES_URL is not set (.ci/run sets it)' }, () => {
  it('renewal, startDelivery and finishDeliveries of one owner side by side never deadlock', async () => {
    await using schema = await openSchema();
    const store = await schema.dispatcher();
    const owner = 'owner-a';
    const messages = Array.from({ length: 2_000 }, (_, i) => newMessage({ scheduledAt: T + i }));
    await store.insert(messages, T, { owner, leaseExpiresAt: T + MINUTE, dueBefore: Number.MAX_SAFE_INTEGER });
    // As the engine does: renewals walk the claims in id order, while deliveries start in due order
    // and finish in whatever order the answers come: here reversed and shuffled, to overlap the renewal
    // on the same rows in the opposite order.
    const byIdDescending = [...messages].sort((a, b) => (a.id < b.id ? 1 : -1));
    for (let round = 0; round < 3; round++) {
      const starts = (async () => {
        for (let from = 0; from < byIdDescending.length; from += 256) {
          const chunk = byIdDescending.slice(from, from + 256);
          const current = await Promise.all(chunk.map((m) => store.get(m.id)));
          const started = await store.startDelivery(owner, current.map((m) => ({ id: m!.id, version: m!.version })), T + round);
          assert.equal(started.length, chunk.length);
          const shuffled = started.map((m) => ({ m, key: Math.random() })).sort((a, b) => a.key - b.key).map(({ m }) => m);
          // retry keeps them leased and scheduled, ready for the next round
          await store.finishDeliveries(owner, shuffled.map((m) => ({ id: m.id, outcome: 'retry' as const, at: T + round, error: 'again' })));
        }
      })();
      const renewals = (async () => {
        for (let i = 0; i < 6; i++) assert.equal(await store.renewLeases(owner, T + MINUTE + round * 10 + i), 2_000);
      })();
      await Promise.all([starts, renewals]);
    }
    assert.deepEqual(await store.countByStatus(), { scheduled: 2_000, delivering: 0, delivered: 0, dead: 0, expired: 0 });
  });

  it('an owner never takes back its own delivering messages, even when its lease ran out; another owner does', async () => {
    await using schema = await openSchema();
    const store = await schema.dispatcher();
    const [inserted] = await store.insert([newMessage()], T, { owner: 'owner-a', leaseExpiresAt: T + 10_000, dueBefore: T + MINUTE });
    const [started] = await store.startDelivery('owner-a', [{ id: inserted!.message.id, version: 1 }], T);
    assert.equal(started?.status, 'delivering');

    // owner-a's renewal ran late: its lease has expired, but the delivery is still its own, in flight
    assert.deepEqual(await store.claimDue('owner-a', T + MINUTE, T + 11_000, T + 21_000, 10), []);
    await store.finishDeliveries('owner-a', [{ id: started!.id, outcome: 'delivered', at: T + 11_500 }]);
    assert.equal((await store.get(started!.id))?.status, 'delivered', 'its outcome still counts');

    // a dead owner's delivery is taken over by another
    const [other] = await store.insert([newMessage()], T, { owner: 'owner-dead', leaseExpiresAt: T + 10_000, dueBefore: T + MINUTE });
    await store.startDelivery('owner-dead', [{ id: other!.message.id, version: 1 }], T);
    assert.deepEqual(ids(await store.claimDue('owner-a', T + MINUTE, T + 11_000, T + 21_000, 10)), [other!.message.id]);
  });

  it('a claim that takes as many as it asked for wakes the other stores; one that takes less does not', async () => {
    await using schema = await openSchema();
    const store = await schema.dispatcher();
    const wakes = await wakeCounter(schema.name);
    try {
      // inserted with a claim request that claims none of them (due later): no wake-up
      await store.insert(Array.from({ length: 5 }, (_, i) => newMessage({ scheduledAt: T + i })), T, { owner: 'owner-a', leaseExpiresAt: T, dueBefore: 0 });
      assert.equal(await wakes.heardBefore(), 0);

      assert.equal((await store.claimDue('owner-a', T + MINUTE, T, T + MINUTE, 2)).length, 2);
      assert.equal(await wakes.heardBefore(), 1, 'a full claim wakes the others: more may be waiting');
      assert.equal((await store.claimDue('owner-a', T + MINUTE, T, T + MINUTE, 10)).length, 3);
      assert.equal(await wakes.heardBefore(), 0, 'a claim that took everything due wakes nobody');
    } finally {
      await wakes.close();
    }
  });

  it('two main servers inserting the same posts in opposite orders never deadlock', async () => {
    await using schema = await openSchema();
    await schema.main(); // migrated
    const { mainStatements } = await import('../src/stores/postgres/statements.ts');
    const { default: pg } = await import('pg');
    // The statement itself, on two connections: the store's group insert would hide a deadlock
    // by running each post of a failed group alone (after deadlock_timeout, 1 s).
    const clients = [0, 1].map(() => new pg.Client({ connectionString: url, options: `-c search_path=${schema.name}` }));
    await Promise.all(clients.map((client) => client.connect()));
    try {
      for (let round = 0; round < 5; round++) {
        // a redelivery after a failover reaching the feed while the first copy is being inserted, many at once
        const messageIds = Array.from({ length: 400 }, () => uuidv7());
        const insert = (client: pg.Client, order: string[]) => client.query(mainStatements.insertPost, [
          order.map(() => uuidv7()), order, order.map(() => 'ann'), order.map(() => 'hi'), order.map(() => T), order.map(() => T),
        ]);
        const [a, b] = await Promise.all([insert(clients[0]!, messageIds), insert(clients[1]!, [...messageIds].reverse())]);
        assert.equal(a.rowCount! + b.rowCount!, messageIds.length, 'each message posted once');
      }
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
  });
});
