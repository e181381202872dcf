import pg from 'pg';
import { UnavailableError } from '../../errors.ts';

/**
 * Connection plumbing shared by both PostgreSQL stores: pools that live in an
 * optional schema, bigint columns parsed to numbers, identifier checks.
 *
 * Times are stored as epoch milliseconds in `bigint` columns (not timestamptz):
 * the stores never do date arithmetic in SQL, the values round-trip exactly,
 * and the SQLite stores keep the same integers. pg returns int8 as a string by
 * default; every pool made here parses it to a number (epoch ms and counts
 * stay far below 2^53).
 */

const INT8_OID = 20;

const numericInt8Types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

/**
 * Lower-case identifiers only, so names never need quoting in SQL or in
 * `-c search_path=`; at most 48 characters, so the wake channel
 * `psched_wake_<schema>` fits PostgreSQL's 63-byte names.
 */
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,47}$/;

export function checkSchemaName(schema: string): string {
  if (!IDENTIFIER.test(schema)) {
    throw new Error(`Invalid PostgreSQL schema name ${JSON.stringify(schema)}: use 1-48 lower-case letters, digits and underscores, not starting with a digit`);
  }
  return schema;
}

/**
 * Where a store lives: `options.schema`, else a `schema` parameter of the URL
 * (`postgres://host/db?schema=pool_a`), so a `--db` value alone can give each
 * pool of dispatchers its own tables and wake-up channel in one database.
 * Returns the URL without that parameter (it is not a pg connection setting).
 */
export function resolveSchema(url: string, schema: string | undefined): { url: string; schema: string | undefined } {
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  const fromUrl = parsed?.searchParams.get('schema') ?? undefined;
  if (parsed && fromUrl !== undefined) {
    parsed.searchParams.delete('schema');
    url = parsed.toString();
  }
  const chosen = schema ?? fromUrl;
  return { url, schema: chosen === undefined ? undefined : checkSchemaName(chosen) };
}

export interface PoolOptions {
  /** Every table lives in this schema (set as the search_path of each connection). */
  schema?: string;
  max: number;
  /**
   * False for pools whose writes may be lost in a PostgreSQL crash without harm
   * (the engine's state transitions): commits then return before the WAL fsync.
   */
  synchronousCommit?: boolean;
  onError: (message: string, err: unknown) => void;
}

/** The `options` startup parameter: per-connection settings applied by the server. */
export function sessionOptions(schema: string | undefined, synchronousCommit = true): string | undefined {
  const settings: string[] = [];
  if (schema) settings.push(`-c search_path=${checkSchemaName(schema)}`);
  if (!synchronousCommit) settings.push('-c synchronous_commit=off');
  return settings.length > 0 ? settings.join(' ') : undefined;
}

/** An unreachable server fails a call after this long instead of hanging it; a live one connects in milliseconds. */
const CONNECT_TIMEOUT_MS = 10_000;

export function createPool(url: string, options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    application_name: 'psched',
    max: options.max,
    options: sessionOptions(options.schema, options.synchronousCommit),
    types: numericInt8Types,
    // A psched process keeps its few connections warm; idle ones go after a minute.
    idleTimeoutMillis: 60_000,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', (err) => options.onError('idle PostgreSQL connection failed', err));
  return pool;
}

/** A connection of its own, outside any pool (LISTEN needs one that is never handed to anyone else). */
export function createClient(url: string, schema: string | undefined, applicationName: string): pg.Client {
  return new pg.Client({ connectionString: url, application_name: applicationName, options: sessionOptions(schema), types: numericInt8Types });
}

export function defaultErrorLog(message: string, err: unknown): void {
  console.error(`psched postgres: ${message}:`, err instanceof Error ? err.message : err);
}

/** Runs one named statement (prepared once per connection); a lost database becomes an UnavailableError (503). */
export async function runStatement<R extends pg.QueryResultRow>(pool: pg.Pool, name: string, text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
  try {
    return await pool.query<R>({ name, text, values });
  } catch (err) {
    throw asUnavailable(err);
  }
}

/** A connection failure as an UnavailableError (503, "try again later"); any other error as it is. */
export function asUnavailable(err: unknown): unknown {
  if (!isConnectionError(err)) return err;
  // a refused connection to a host name with several addresses is an AggregateError without a message
  const reason = (err as Error).message || String((err as { code?: unknown }).code);
  return new UnavailableError(`The PostgreSQL database is unavailable: ${reason}`, { cause: err });
}

/** SQLSTATEs that mean "the server is not there for us", not "this statement is wrong". */
const CONNECTION_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
const CONNECTION_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'EHOSTUNREACH']);

function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (code.startsWith('08') || CONNECTION_SQLSTATES.has(code) || CONNECTION_ERRNOS.has(code))) return true;
  // pg's own words for a connection that died or never came (no code attached)
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(err.message);
}

/** Runs `work` inside BEGIN/COMMIT on one pooled client; rolls back on any error. */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let result: T;
  try {
    await client.query('BEGIN');
    result = await work(client);
    await client.query('COMMIT');
  } catch (err) {
    // A client that cannot even roll back has a broken connection: destroy it rather than return it to the pool.
    const broken = await client.query('ROLLBACK').then(() => undefined, (rollbackErr: unknown) => rollbackErr as Error);
    client.release(broken);
    throw err;
  }
  client.release();
  return result;
}
