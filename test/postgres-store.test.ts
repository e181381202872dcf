import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { ClaimRequest, DispatcherStore, NewMessage } from '../src/dispatcher/store.ts';
import type { MainStore } from '../src/main/store.ts';
import { UnavailableError } from '../src/errors.ts';
import { uuidv7 } from '../src/ids.ts';
import { createTestSchema, dropTestSchema, postgresTestUrl, testSchemaName, withAdminClient } from './support/postgres.ts';

/**
 * What only the PostgreSQL stores do (the shared behaviour is in the contract
 * suites): several processes migrating at once, several pools claiming at
 * once, and LISTEN/NOTIFY wake-ups between stores. Each store opened here is
 * a "process" of its own: its own pools and LISTEN connection.
 */

const url = postgresTestUrl();
const T = Date.UTC(2030, 0, 1);
const MINUTE = 60_000;
const CLAIM_ALL: ClaimRequest = { owner: 'owner-a', leaseExpiresAt: T + MINUTE, dueBefore: Number.MAX_SAFE_INTEGER };

function newMessage(overrides: Partial<NewMessage> = {}): NewMessage {
  return { id: uuidv7(), username: 'ann', message: 'hello', scheduledAt: T, idempotencyKey: null, ...overrides };
}

/** Loaded lazily, so a run without PostgreSQL never loads pg or these modules. */
async function postgresModules() {
  const [{ openPostgresDispatcherStore }, { openPostgresMainStore }, { wakeChannel }] = await Promise.all([
    import('../src/stores/postgres/dispatcher-store.ts'),
    import('../src/stores/postgres/main-store.ts'),
    import('../src/stores/postgres/wake.ts'),
  ]);
  return { openPostgresDispatcherStore, openPostgresMainStore, wakeChannel };
}

/** Closes every store opened through it, then drops the schema. */
class Stores {
  readonly schema: string;
  #opened: { close(): Promise<void> }[] = [];

  constructor(schema: string) {
    this.schema = schema;
  }

  /** Connection trouble goes to `onError`; by default it is expected and kept quiet. */
  async dispatcher(onError: (message: string, err: unknown) => void = () => {}): Promise<DispatcherStore> {
    const { openPostgresDispatcherStore } = await postgresModules();
    const store = await openPostgresDispatcherStore(url!, { schema: this.schema, onError });
    this.#opened.push(store);
    return store;
  }

  async main(): Promise<MainStore> {
    const { openPostgresMainStore } = await postgresModules();
    const store = await openPostgresMainStore(url!, { schema: this.schema });
    this.#opened.push(store);
    return store;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.#opened.map((store) => store.close()));
    await dropTestSchema(url!, this.schema);
  }
}

/** A migrated dispatcher store per name, all on one fresh schema. */
async function migratedDispatchers(stores: Stores, count: number): Promise<DispatcherStore[]> {
  const opened = await Promise.all(Array.from({ length: count }, () => stores.dispatcher()));
  await opened[0]!.migrate();
  return opened;
}

/** Resolves on the next call of a wake listener. */
function nextWake(store: DispatcherStore): Promise<void> {
  return new Promise((resolve) => {
    const unsubscribe = store.onWake(() => {
      unsubscribe();
      resolve();
    });
  });
}

/** A raw LISTEN on a store's wake channel: sees every notification, with its payload. */
async function rawListener(schema: string) {
  const { default: pg } = await import('pg');
  const { wakeChannel } = await postgresModules();
  const channel = wakeChannel(schema);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(`LISTEN ${channel}`);
  const received: string[] = [];
  let waiting: (() => void) | undefined;
  client.on('notification', (notification: pg.Notification) => {
    received.push(notification.payload ?? '');
    waiting?.();
  });
  return {
    /** Sends a marker through the channel and returns everything heard up to and including it. */
    async heardUntilMarker(marker: string): Promise<string[]> {
      const heard = new Promise<void>((resolve) => {
        waiting = () => {
          if (received.includes(marker)) resolve();
        };
      });
      await client.query('SELECT pg_notify($1, $2)', [channel, marker]);
      await heard;
      return received.splice(0, received.length);
    },
    close: () => client.end(),
  };
}

describe('PostgreSQL stores', { skip: url ? false : 'PSCHED_TEST_POSTGRES_URL is not set' }, () => {
  it('several processes migrating a new schema at once apply each migration once', async () => {
    await using stores = new Stores(testSchemaName());
    const dispatchers = await Promise.all([1, 2, 3, 4].map(() => stores.dispatcher()));
    const mains = await Promise.all([1, 2].map(() => stores.main()));
    // The schema does not exist yet: every one of them tries to create it, and its tables.
    await Promise.all([...dispatchers, ...mains].map((store) => store.migrate()));

    const applied = await withAdminClient(url!, (client: pg.Client) => client.query<{ kind: string; version: number }>(
      `SELECT 'dispatcher' AS kind, version FROM ${stores.schema}.dispatcher_migrations
       UNION ALL SELECT 'main', version FROM ${stores.schema}.main_migrations ORDER BY kind, version`,
    ));
    const { dispatcherMigrations, mainMigrations } = await import('../src/stores/postgres/migrations.ts');
    assert.deepEqual(applied.rows, [
      ...dispatcherMigrations.map(({ version }) => ({ kind: 'dispatcher', version })),
      ...mainMigrations.map(({ version }) => ({ kind: 'main', version })),
    ]);
    const [message] = await dispatchers[3]!.insert([newMessage()], T);
    assert.equal((await dispatchers[0]!.get(message!.message.id))?.id, message!.message.id);
    assert.equal((await mains[1]!.addPost({ id: uuidv7(), messageId: null, username: 'ann', message: 'hi', postedAt: T, scheduledAt: null })).created, true);
  });

  it('a rolling upgrade: starts on a schema a newer psched migrated additively, refuses one with a breaking change', async () => {
    await using stores = new Stores(testSchemaName());
    await (await stores.dispatcher()).migrate();
    const record = (version: number, breaking: boolean) => withAdminClient(url!, (client: pg.Client) =>
      client.query(`INSERT INTO ${stores.schema}.dispatcher_migrations (version, name, breaking) VALUES ($1, 'from the future', $2)`, [version, breaking]));
    await record(998, false);
    await (await stores.dispatcher()).migrate(); // an additive change: the old version runs on
    await record(999, true);
    await assert.rejects((await stores.dispatcher()).migrate(), /schema version 999, newer than this psched knows .*breaking migration 999/);
  });

  describe('message counts (migration 3: a statement trigger, one slot per connection)', () => {
    const countedByScan = (schema: string) => withAdminClient(url!, async (client: pg.Client) => {
      const { rows } = await client.query<{ status: string; count: string }>(`SELECT status, count(*) AS count FROM ${schema}.messages GROUP BY status`);
      return Object.fromEntries(rows.map((row) => [row.status, Number(row.count)]));
    });
    const withZeros = (counts: Record<string, number>) => ({ scheduled: 0, delivering: 0, delivered: 0, dead: 0, expired: 0, ...counts });

    it('start from the messages already there when a dispatcher upgrades an existing schema', async () => {
      await using stores = new Stores(testSchemaName());
      const store = await stores.dispatcher();
      await store.migrate();
      // back to schema version 2, with messages an older psched stored
      await withAdminClient(url!, (client: pg.Client) => client.query(`
        DROP TABLE ${stores.schema}.message_counts;
        DROP FUNCTION ${stores.schema}.count_message_statuses() CASCADE;
        DELETE FROM ${stores.schema}.dispatcher_migrations WHERE version = 3;`));
      await store.insert(Array.from({ length: 30 }, (_, i) => newMessage({ scheduledAt: T + i })), T);
      await withAdminClient(url!, (client: pg.Client) => client.query(`UPDATE ${stores.schema}.messages SET status = 'dead' WHERE id IN (SELECT id FROM ${stores.schema}.messages ORDER BY id LIMIT 4)`));
      await (await stores.dispatcher()).migrate();
      assert.deepEqual(await store.countByStatus(), withZeros({ scheduled: 26, dead: 4 }));
    });

    it('stay exact with several dispatchers writing at once, and count writes by any statement', async () => {
      await using stores = new Stores(testSchemaName());
      const writers = await migratedDispatchers(stores, 3);
      await Promise.all(writers.map(async (store, w) => {
        for (let round = 0; round < 10; round++) {
          const batch = Array.from({ length: 20 }, (_, i) => newMessage({ scheduledAt: T + round * 20 + i, message: `w${w} r${round} ${i}` }));
          await store.insert(batch, T);
          const owner = `owner-${w}-${round}`;
          const claimed = await store.claimDue(owner, T + MINUTE, T, T + MINUTE, 5);
          const started = await store.startDelivery(owner, claimed.map((m) => ({ id: m.id, version: m.version })), T + 1);
          await store.finishDeliveries(owner, started.map((m, i) => (i % 2 === 0
            ? { id: m.id, outcome: 'delivered' as const, at: T + 2 }
            : { id: m.id, outcome: 'dead' as const, at: T + 2, error: 'refused' })));
          await store.remove(batch[19]!.id);
        }
      }));
      assert.deepEqual(await writers[0]!.countByStatus(), withZeros(await countedByScan(stores.schema)));
      // a statement the store does not know (an older psched's, an operator's) is counted too
      await withAdminClient(url!, (client: pg.Client) => client.query(`DELETE FROM ${stores.schema}.messages WHERE status = 'dead'`));
      const counts = await writers[1]!.countByStatus();
      assert.equal(counts.dead, 0);
      assert.deepEqual(counts, withZeros(await countedByScan(stores.schema)));
    });
  });

  it('two processes claiming at once never hold the same message', async () => {
    await using schema = await createTestSchema(url!);
    await using stores = new Stores(schema.name);
    const [a, b] = await migratedDispatchers(stores, 2);
    const all = Array.from({ length: 600 }, (_, i) => newMessage({ scheduledAt: T + i }));
    await a!.insert(all, T);

    // Warm each engine pool's connection first (claims nothing), so neither starts late.
    await Promise.all([a!.claimDue('owner-a', 0, T, T, 1), b!.claimDue('owner-b', 0, T, T, 1)]);
    // Both take small bites until nothing is left, side by side. Each waits after its first
    // bite until the other has taken one too, so both are in the race whatever the machine's
    // load (one finished all 600 before the other's first claim once, on a loaded box).
    let firstBites = 0;
    let bothBitten!: () => void;
    const bothInTheRace = new Promise<void>((resolve) => { bothBitten = resolve; });
    const claimAll = async (store: DispatcherStore, owner: string) => {
      const claimed: string[] = [];
      for (let bite = 0; ; bite++) {
        const batch = await store.claimDue(owner, T + MINUTE, T, T + MINUTE, 20);
        if (bite === 0 && ++firstBites === 2) bothBitten();
        if (bite === 0) await bothInTheRace;
        if (batch.length === 0) return claimed;
        claimed.push(...batch.map((message) => message.id));
      }
    };
    const [byA, byB] = await Promise.all([claimAll(a!, 'owner-a'), claimAll(b!, 'owner-b')]);

    const overlap = byA.filter((id) => new Set(byB).has(id));
    assert.deepEqual(overlap, []);
    assert.equal(byA.length + byB.length, all.length);
    assert.ok(byA.length > 0 && byB.length > 0, `both should get work (a: ${byA.length}, b: ${byB.length})`);
    const held = await a!.list({ status: 'scheduled', limit: 1000 });
    const inA = new Set(byA);
    for (const message of held) assert.equal(message.leaseOwner, inA.has(message.id) ? 'owner-a' : 'owner-b');
  });

  it('renewLeases renews every claim of an owner, over several chunks', async () => {
    await using schema = await createTestSchema(url!);
    await using stores = new Stores(schema.name);
    const [store] = await migratedDispatchers(stores, 1);
    const mine = await store!.insert(Array.from({ length: 450 }, () => newMessage()), T, CLAIM_ALL);
    await store!.insert([newMessage()], T, { ...CLAIM_ALL, owner: 'owner-b' });
    assert.equal(await store!.renewLeases('owner-a', T + 5 * MINUTE), 450);
    const held = await store!.list({ status: 'scheduled', limit: 1000 });
    assert.deepEqual(
      held.filter((message) => message.leaseExpiresAt === T + 5 * MINUTE).map((message) => message.id).sort(),
      mine.map((outcome) => outcome.message.id).sort(),
    );
  });

  it("a change that leaves a message unclaimed wakes another process's onWake listeners", async () => {
    await using schema = await createTestSchema(url!);
    await using stores = new Stores(schema.name);
    const [sender, other] = await migratedDispatchers(stores, 2);
    const woken = nextWake(other!);
    await sender!.insert([newMessage()], T);
    await woken;
  });

  it('wakes exactly on changes that leave a message unclaimed', async () => {
    await using schema = await createTestSchema(url!);
    await using stores = new Stores(schema.name);
    const [store] = await migratedDispatchers(stores, 1);
    const listener = await rawListener(schema.name);
    try {
      const wakesFrom = async (change: () => Promise<unknown>, marker: string) => {
        await change();
        return (await listener.heardUntilMarker(marker)).filter((payload) => payload !== marker).length;
      };
      const claimed = await store!.insert([newMessage()], T, CLAIM_ALL);
      const unclaimed = await store!.insert([newMessage(), newMessage()], T);
      assert.equal(await wakesFrom(async () => {}, 'm0'), 1, 'an insert without a claim wakes once per statement');

      assert.equal(await wakesFrom(() => store!.insert([newMessage()], T, CLAIM_ALL), 'm1'), 0, 'claimed insert');
      assert.equal(await wakesFrom(() => store!.insert([newMessage({ scheduledAt: T + MINUTE })], T, { ...CLAIM_ALL, dueBefore: T }), 'm2'), 0,
        'an insert beyond the claimer\'s horizon: the periodic refills reach it');
      assert.equal(await wakesFrom(() => store!.update(claimed[0]!.message.id, { message: 'x' }, T, CLAIM_ALL), 'm3'), 0, 'claimed update');
      assert.equal(await wakesFrom(() => store!.update(claimed[0]!.message.id, { message: 'y' }, T), 'm4'), 1, 'update without a claim');
      assert.equal(await wakesFrom(() => store!.claimDue('owner-b', T, T, T + MINUTE, 10), 'm5'), 0, 'claimDue');
      assert.equal(await wakesFrom(() => store!.releaseClaims('owner-b'), 'm6'), 1, 'releaseClaims with claims');
      assert.equal(await wakesFrom(() => store!.releaseClaims('owner-b'), 'm7'), 0, 'releaseClaims without claims');
      assert.equal(await wakesFrom(() => store!.update(unclaimed[0]!.message.id, { message: 'z' }, T + 1, CLAIM_ALL), 'm8'), 0, 'claimed update');

      const [started] = await store!.startDelivery('owner-a', [{ id: unclaimed[0]!.message.id, version: 2 }], T);
      assert.ok(started);
      await store!.finishDeliveries('owner-a', [{ id: started.id, outcome: 'dead', at: T, error: 'HTTP 400' }]);
      assert.equal(await wakesFrom(() => store!.retry(started.id, T), 'm9'), 1, 'retry without a claim');
    } finally {
      await listener.close();
    }
  });

  it('the LISTEN connection comes back after it drops, and its listeners refill once', async () => {
    await using schema = await createTestSchema(url!);
    await using stores = new Stores(schema.name);
    const errors: string[] = [];
    const listening = await stores.dispatcher((message) => errors.push(message));
    const [sender] = await migratedDispatchers(stores, 1);
    const { wakeChannel } = await postgresModules();

    const refill = nextWake(listening);
    const terminated = await withAdminClient(url!, (client: pg.Client) => client.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'psched-wake' AND query = $1`,
      [`LISTEN ${wakeChannel(schema.name)}`],
    ));
    // the sender's listener is on the same channel: both dropped
    assert.equal(terminated.rowCount, 2);
    await refill;
    assert.ok(errors.some((message) => message.includes('LISTEN connection dropped')), errors.join('; '));

    const woken = nextWake(listening);
    await sender!.insert([newMessage()], T);
    await woken;
  });

  it('an unreachable database is an UnavailableError (503), with the reason', async () => {
    const { openPostgresDispatcherStore, openPostgresMainStore } = await postgresModules();
    // nothing listens on port 1 of the loopback interface: refused at once
    const nowhere = 'postgres://postgres@127.0.0.1:1/test';
    await assert.rejects(openPostgresDispatcherStore(nowhere), (err: unknown) => err instanceof UnavailableError && /ECONNREFUSED/.test(err.message));
    await assert.rejects(openPostgresMainStore(nowhere), (err: unknown) => err instanceof UnavailableError && /ECONNREFUSED/.test(err.message));
  });

  it('a schema parameter in the URL places the stores in that schema', async () => {
    const { openPostgresDispatcherStore, openPostgresMainStore } = await postgresModules();
    const schema = testSchemaName();
    const withSchema = `${url}${url!.includes('?') ? '&' : '?'}schema=${schema}`;
    try {
      const dispatcher = await openPostgresDispatcherStore(withSchema);
      const main = await openPostgresMainStore(withSchema);
      try {
        await dispatcher.migrate();
        await main.migrate();
      } finally {
        await Promise.all([dispatcher.close(), main.close()]);
      }
      const tables = await withAdminClient(url!, (client: pg.Client) => client.query<{ table_name: string }>(
        'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name', [schema],
      ));
      assert.deepEqual(tables.rows.map((row) => row.table_name), ['delivery_attempts', 'dispatcher_migrations', 'main_migrations', 'message_counts', 'messages', 'owners', 'posts', 'schedules', 'target_buckets', 'targets']);
    } finally {
      await dropTestSchema(url!, schema);
    }
  });
});
