import { SqliteConnection } from './connection.ts';
import { GroupCommit } from './group-commit.ts';
import { runMigrations } from './migrate.ts';
import type { Migration } from './migrations.ts';

/** What each SQLite store is built on: one connection and group commit for its calls. */
export class SqliteDatabase {
  readonly connection: SqliteConnection;
  readonly commits: GroupCommit;

  constructor(path: string) {
    this.connection = new SqliteConnection(path);
    this.commits = new GroupCommit(this.connection);
  }

  migrate(migrations: readonly Migration[]): Promise<void> {
    return this.commits.exclusive(() => runMigrations(this.connection, migrations));
  }

  /** Commits what is queued, then closes the file. */
  async close(): Promise<void> {
    this.commits.close();
    this.connection.close();
  }
}
