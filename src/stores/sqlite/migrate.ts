import type { SqliteConnection } from './connection.ts';
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
  refuseNewerSchema(connection, migrations);
  for (const migration of migrations) {
    connection.statement('BEGIN IMMEDIATE').run();
    try {
      const applied = connection.statement('SELECT 1 FROM migrations WHERE version = :version').get({ version: migration.version });
      if (!applied) {
        connection.statement('INSERT INTO migrations (version, name, applied_at) VALUES (:version, :name, :appliedAt)')
          .run({ version: migration.version, name: migration.name, appliedAt: Date.now() });
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

/** A database migrated by a newer psched may hold data this version would mishandle. */
function refuseNewerSchema(connection: SqliteConnection, migrations: readonly Migration[]): void {
  const row = connection.statement('SELECT max(version) AS version FROM migrations').get<{ version: number | null }>()!;
  const known = migrations.at(-1)?.version ?? 0;
  if (row.version !== null && row.version > known) {
    throw new Error(
      `This SQLite database has schema version ${row.version}, newer than this psched knows (${known}). Upgrade psched or use another --db.`,
    );
  }
}
