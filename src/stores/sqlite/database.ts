import { Checkpointer } from './checkpointer.ts';
import { SqliteConnection } from './connection.ts';
import { GroupCommit } from './group-commit.ts';
import { runMigrations } from './migrate.ts';
import { realDatabasePath } from './path.ts';
import { WalSync, type WalSyncOptions } from './wal-sync.ts';
import type { Migration } from './migrations.ts';

/** How a store reacts to a WAL sync that failed (./wal-sync.ts): tests inject the failure. */
export type SqliteDurabilityOptions = WalSyncOptions;

/** What each SQLite store is built on: one connection and group commit for its calls. */
export class SqliteDatabase {
  readonly connection: SqliteConnection;
  readonly commits: GroupCommit;
  #checkpointer: Checkpointer | undefined;

  /** `path` is resolved through symbolic links, so the WAL synced is the one SQLite writes. */
  constructor(givenPath: string, durability: SqliteDurabilityOptions = {}) {
    const path = realDatabasePath(givenPath);
    this.connection = new SqliteConnection(path);
    // an in-memory database has no WAL to copy or sync
    const inMemory = path === ':memory:';
    const checkpointer = inMemory ? undefined : new Checkpointer(path);
    this.#checkpointer = checkpointer;
    this.commits = new GroupCommit(this.connection, {
      afterCommit: checkpointer && (() => checkpointer.nudge()),
      walSync: inMemory ? undefined : new WalSync(`${path}-wal`, durability),
    });
  }

  migrate(migrations: readonly Migration[]): Promise<void> {
    return this.commits.exclusive(() => runMigrations(this.connection, migrations));
  }

  /** Commits what is queued, then closes the file. */
  async close(): Promise<void> {
    await this.commits.close();
    // before the connection: the last connection to close copies the rest of the WAL and removes it
    await this.#checkpointer?.close();
    this.connection.close();
  }
}
