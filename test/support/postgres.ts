import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * Schema-per-test helpers for the PostgreSQL tests. Each test creates a
 * schema `psched_test_<random>` and opens its stores with `{ schema }`, so
 * tests never see each other's tables or wake-ups (the wake channel is named
 * after the schema), and dropping the schema deletes everything.
 *
 *   const url = postgresTestUrl();          // undefined: skip the PostgreSQL tests
 *   await using schema = await createTestSchema(url);
 *   const store = await openPostgresDispatcherStore(url, { schema: schema.name });
 */

/** The database the PostgreSQL tests use, from PSCHED_TEST_POSTGRES_URL (.ci/run sets it). */
export function postgresTestUrl(): string | undefined {
  return process.env.PSCHED_TEST_POSTGRES_URL || undefined;
}

export interface TestSchema {
  name: string;
  /** Drops the schema and everything in it; safe to call twice. */
  drop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export function testSchemaName(): string {
  return `psched_test_${randomBytes(6).toString('hex')}`;
}

/** Creates a fresh, empty schema. */
export async function createTestSchema(url: string): Promise<TestSchema> {
  const name = testSchemaName();
  await withAdminClient(url, (client) => client.query(`CREATE SCHEMA ${name}`));
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    await dropTestSchema(url, name);
  };
  return { name, drop, [Symbol.asyncDispose]: drop };
}

export async function dropTestSchema(url: string, name: string): Promise<void> {
  await withAdminClient(url, (client) => client.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`));
}

/** Runs `work` on a short-lived connection of its own (outside any store's pools). */
export async function withAdminClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'psched-test' });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
