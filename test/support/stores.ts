import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DispatcherStore } from '../../src/dispatcher/store.ts';
import type { MainStore } from '../../src/main/store.ts';
import { openSqliteDispatcherStore } from '../../src/stores/sqlite/dispatcher-store.ts';
import { openSqliteMainStore } from '../../src/stores/sqlite/main-store.ts';

/**
 * The stores the contract suites run against: SQLite always; PostgreSQL when
 * PSCHED_TEST_POSTGRES_URL is set. Each `create()` makes a fresh, empty,
 * migrated store of its own (a temp SQLite file, a new PostgreSQL schema
 * `psched_test_<random>`) and `cleanup()` deletes it again.
 *
 *   for (const factory of dispatcherStoreFactories()) describe(factory.name, () => {
 *     it('…', async () => {
 *       await using handle = await factory.create();
 *       await handle.store.insert(…);
 *     });
 *   });
 */
export interface StoreHandle<S> {
  /** Open and migrated. */
  store: S;
  /** Opens another store on the same data (reopen, migrate-twice tests); cleanup() closes it if the test did not. */
  open(): Promise<S>;
  /** Closes `store` and deletes the data. */
  cleanup(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface StoreFactory<S> {
  name: string;
  create(): Promise<StoreHandle<S>>;
}

interface Closable {
  migrate(): Promise<void>;
  close(): Promise<void>;
}

export function dispatcherStoreFactories(): StoreFactory<DispatcherStore>[] {
  const factories = [sqliteFactory('dispatcher', openSqliteDispatcherStore)];
  const url = process.env.PSCHED_TEST_POSTGRES_URL;
  if (url) {
    factories.push(postgresFactory(url, async (schema) => {
      const { openPostgresDispatcherStore } = await import('../../src/stores/postgres/dispatcher-store.ts');
      return openPostgresDispatcherStore(url, { schema });
    }));
  }
  return factories;
}

export function mainStoreFactories(): StoreFactory<MainStore>[] {
  const factories = [sqliteFactory('main', openSqliteMainStore)];
  const url = process.env.PSCHED_TEST_POSTGRES_URL;
  if (url) {
    factories.push(postgresFactory(url, async (schema) => {
      const { openPostgresMainStore } = await import('../../src/stores/postgres/main-store.ts');
      return openPostgresMainStore(url, { schema });
    }));
  }
  return factories;
}

function sqliteFactory<S extends Closable>(kind: string, open: (path: string) => S): StoreFactory<S> {
  return {
    name: 'sqlite',
    async create() {
      const folder = mkdtempSync(join(tmpdir(), `psched-${kind}-`));
      const path = join(folder, `${kind}.db`);
      const openMigrated = async () => {
        const store = open(path);
        await store.migrate();
        return store;
      };
      return handle(await openMigrated(), openMigrated, async () => {
        rmSync(folder, { recursive: true, force: true });
      });
    },
  };
}

// PostgreSQL modules (and pg) are imported only when PSCHED_TEST_POSTGRES_URL is set.
function postgresFactory<S extends Closable>(url: string, openInSchema: (schema: string) => Promise<S>): StoreFactory<S> {
  return {
    name: 'postgres',
    async create() {
      const { createTestSchema } = await import('./postgres.ts');
      const schema = await createTestSchema(url);
      const openMigrated = async () => {
        const store = await openInSchema(schema.name);
        await store.migrate();
        return store;
      };
      return handle(await openMigrated(), openMigrated, schema.drop);
    },
  };
}

function handle<S extends Closable>(store: S, openAgain: () => Promise<S>, deleteData: () => Promise<void>): StoreHandle<S> {
  const reopened: S[] = [];
  let cleaned = false;
  const open = async () => {
    const another = await openAgain();
    reopened.push(another);
    return another;
  };
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await store.close();
    // a failed test may leave these open; closing one the test already closed may throw
    for (const another of reopened) await another.close().catch(() => {});
    await deleteData();
  };
  return { store, open, cleanup, [Symbol.asyncDispose]: cleanup };
}

/** Runs `run` while `store.ping()` fails as a broken disk would (its message names a path that must not leak into an answer). */
export async function whilePingFails<T>(store: { ping(): Promise<void> }, run: () => Promise<T>): Promise<T> {
  const ping = store.ping;
  store.ping = async () => {
    throw new Error('SQLITE_IOERR: disk I/O error at /secret/path/store.db');
  };
  try {
    return await run();
  } finally {
    store.ping = ping;
  }
}
