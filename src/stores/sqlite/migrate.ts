import type { SqliteConnection } from './connection.ts';
import { newerSchemaMessage } from '../migration.ts';
import type { Migration } from './migrations.ts';

/**
 * Applies the migrations a database has not seen yet, in order. Each runs in
 * its own `BEGIN IMMEDIATE` transaction (the write lock is taken before
 * anything is read) that first records its version in `migrations`: a second
 * process starting at the same moment waits for the lock, then sees the
 * version and skips it, so no migration is ever applied twice.
 */
export function runMigrations(connection: SqliteConnection, migrations: readonly Migration[]): void {
  connection.db.exec(`CREATE TABLE IF NOT EXISTS migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL
  )`);
  // whether each applied migration is breaking, for an older psched to read (see ../migration.ts); older rows count as breaking
  const columns = connection.db.prepare('PRAGMA table_info(migrations)').all() as { name: string }[];
  if (!columns.some((column) => column.name === 'breaking')) connection.db.exec('ALTER TABLE migrations ADD COLUMN breaking INTEGER NOT NULL DEFAULT 1');
  refuseNewerSchema(connection, migrations);
  for (const migration of migrations) {
    connection.statement('BEGIN IMMEDIATE').run();
    try {
      const applied = connection.statement('SELECT 1 FROM migrations WHERE version = :version').get({ version: migration.version });
      if (!applied) {
        connection.statement('INSERT INTO migrations (version, name, applied_at, breaking) VALUES (:version, :name, :appliedAt, :breaking)')
          .run({ version: migration.version, name: migration.name, appliedAt: Date.now(), breaking: migration.breaking ? 1 : 0 });
        connection.db.exec(migration.sql);
      }
      connection.statement('COMMIT').run();
    } catch (err) {
      if (connection.inTransaction) connection.statement('ROLLBACK').run();
      throw new Error(
        `SQLite migration ${migration.version} (${migration.name}) failed: ${(err as Error).message}. Nothing of it was applied; fix the cause and start again.`,
        { cause: err },
      );
    }
  }
}

/** A database migrated by a newer psched with a breaking change may hold data this version would mishandle. */
function refuseNewerSchema(connection: SqliteConnection, migrations: readonly Migration[]): void {
  const known = migrations.at(-1)?.version ?? 0;
  const breaking = (connection.db.prepare('SELECT version FROM migrations WHERE version > ? AND breaking <> 0 ORDER BY version').all(known) as { version: number }[])
    .map((row) => row.version);
  if (breaking.length > 0) throw new Error(newerSchemaMessage('SQLite', breaking, known));
}
