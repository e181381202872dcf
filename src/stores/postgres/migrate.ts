import type pg from 'pg';
import { inTransaction } from './connection.ts';

/**
 * Numbered, append-only migrations (./migrations.ts). Each runs in its own
 * transaction that first takes a transaction-level advisory lock, then checks
 * and records its version: any number of processes may migrate at the same
 * moment; the first applies a migration, the others wait on the lock, then
 * find the version recorded and skip it.
 */
import { newerSchemaMessage, type Migration } from '../migration.ts';

export type { Migration };

export interface MigrationTarget {
  /** Records the applied versions; one per store, so both stores can share a schema. */
  table: string;
  /** Created if missing, inside the locked transaction so concurrent starts cannot race on it. */
  schema: string | undefined;
  migrations: readonly Migration[];
}

export async function runMigrations(pool: pg.Pool, target: MigrationTarget): Promise<void> {
  // One lock per schema, not per store: a dispatcher and a main server starting
  // together on one database would otherwise race to create the same schema.
  const lockName = `psched:migrate:${target.schema ?? '(search_path)'}`;
  const known = target.migrations.at(-1)?.version ?? 0;
  for (const migration of target.migrations) {
    try {
      await inTransaction(pool, async (client) => {
        await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [lockName]);
        if (target.schema) await client.query(`CREATE SCHEMA IF NOT EXISTS ${target.schema}`);
        await client.query(`CREATE TABLE IF NOT EXISTS ${target.table} (
          version integer PRIMARY KEY,
          name text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now()
        )`);
        // whether each applied migration is breaking, for an older psched to read (see ../migration.ts); older rows count as breaking
        await client.query(`ALTER TABLE ${target.table} ADD COLUMN IF NOT EXISTS breaking boolean NOT NULL DEFAULT true`);
        const { rows } = await client.query<{ breaking: number[] | null; applied: boolean }>(
          `SELECT array_agg(version ORDER BY version) FILTER (WHERE version > $2 AND breaking) AS breaking, bool_or(version = $1) AS applied FROM ${target.table}`,
          [migration.version, known],
        );
        refuseNewerSchema(rows[0]?.breaking ?? [], known);
        if (rows[0]?.applied) return;
        await client.query(`INSERT INTO ${target.table} (version, name, breaking) VALUES ($1, $2, $3)`, [migration.version, migration.name, migration.breaking]);
        await client.query(migration.sql);
      });
    } catch (err) {
      if (err instanceof NewerSchemaError) throw err;
      throw new Error(
        `PostgreSQL migration ${migration.version} (${migration.name}) failed: ${(err as Error).message}. Nothing of it was applied; fix the cause and start again.`,
        { cause: err },
      );
    }
  }
}

class NewerSchemaError extends Error {
  override name = 'NewerSchemaError';
}

/** A database migrated by a newer psched with a breaking change may hold data this version would mishandle. */
function refuseNewerSchema(breaking: number[], known: number): void {
  if (breaking.length > 0) throw new NewerSchemaError(newerSchemaMessage('PostgreSQL', breaking, known));
}
