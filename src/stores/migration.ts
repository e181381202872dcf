/**
 * One numbered schema change, the same type for both stores. Up to 3 the
 * numbers differ (SQLite 2 = PostgreSQL 3, the message counts; SQLite 3 =
 * PostgreSQL 2, one lease per owner); from 4 on a change takes the same
 * number in both stores' lists when it exists in both.
 *
 * `breaking` says whether a psched that does not know this migration can
 * still run against the schema once it is applied. A pool is upgraded one
 * dispatcher at a time: the first new one applies the migration while the old
 * ones keep running, and an old one that restarts meets a newer schema. It
 * refuses to start only when one of the newer migrations is breaking (the
 * flag is recorded in the database, so old code can read it); for a breaking
 * migration, stop every dispatcher of the pool before starting a new one.
 * Additive changes (a new table or index, a new nullable column) are not
 * breaking; a changed meaning of existing data is.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  breaking: boolean;
}

/** The message for a schema a newer psched migrated with a change this one cannot run against. */
export function newerSchemaMessage(store: 'SQLite' | 'PostgreSQL', breakingVersions: number[], known: number): string {
  return `This ${store} database has schema version ${breakingVersions.at(-1)}, newer than this psched knows (${known}), with a change it cannot run against `
    + `(breaking migration ${breakingVersions.join(', ')}). Upgrade psched or use another --db.`;
}
