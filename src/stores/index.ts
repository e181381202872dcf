import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DispatcherStore } from '../dispatcher/store.ts';
import type { MainStore } from '../main/store.ts';
import { openSqliteDispatcherStore } from './sqlite/dispatcher-store.ts';
import { openSqliteMainStore } from './sqlite/main-store.ts';

/**
 * Opens the store a `--db` value names, migrated and ready: a `postgres://` or
 * `postgresql://` URL opens PostgreSQL, anything else is a SQLite file path
 * (its folder is created). The PostgreSQL modules are loaded only when asked
 * for, so SQLite users never load pg. A dispatcher's SQLite file is locked to
 * the process that opened it until the store closes (./sqlite/owner-lock.ts).
 */

export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db);
}

export async function openDispatcherStore(db: string): Promise<DispatcherStore> {
  let store: DispatcherStore;
  if (isPostgresUrl(db)) {
    const { openPostgresDispatcherStore } = await import('./postgres/dispatcher-store.ts');
    store = await openPostgresDispatcherStore(db);
  } else {
    createParentFolder(db);
    store = openSqliteDispatcherStore(db, { oneProcess: true });
  }
  return migrated(store);
}

export async function openMainStore(db: string): Promise<MainStore> {
  let store: MainStore;
  if (isPostgresUrl(db)) {
    const { openPostgresMainStore } = await import('./postgres/main-store.ts');
    store = await openPostgresMainStore(db);
  } else {
    createParentFolder(db);
    store = openSqliteMainStore(db);
  }
  return migrated(store);
}

async function migrated<S extends { migrate(): Promise<void>; close(): Promise<void> }>(store: S): Promise<S> {
  try {
    await store.migrate();
    return store;
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
}

function createParentFolder(path: string): void {
  if (path === ':memory:') return;
  mkdirSync(dirname(path), { recursive: true });
}
