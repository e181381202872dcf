import { DatabaseSync, type SQLInputValue, type StatementResultingChanges, type StatementSync } from 'node:sqlite';

/**
 * One node:sqlite connection with the settings both stores share, and a cache
 * of prepared statements keyed by their SQL text (preparing costs more than
 * running a small statement, so each SQL string is prepared once).
 */

export type Params = Record<string, SQLInputValue>;

/** `INSERT INTO t (a, b) VALUES` and one row's tuple `(:a, :b)`, repeated for many rows. */
export interface RowInsert {
  into: string;
  row: string;
}

/** Rows per multi-row INSERT, largest first (100 rows x ~10 values stays far below SQLite's 32,766 variables). */
const MULTI_ROW_SIZES = [100, 10, 1];

/**
 * How long a write waits for another connection's lock before failing. Only a
 * second process starting at the same moment (both migrating) ever holds one:
 * in normal operation one process owns the file.
 */
const BUSY_TIMEOUT_MS = 10_000;

/**
 * Page cache per connection, in KiB (negative = KiB for SQLite). The default
 * 2 MiB keeps too few index pages of a million-message table in memory; 32 MiB
 * keeps the hot edges of every index while staying far below the RSS budget.
 */
const CACHE_SIZE_KIB = 32 * 1024;

/**
 * FULL: every COMMIT fsyncs the WAL (a resolved user write is on disk).
 * NORMAL: the WAL is fsynced only at checkpoints; a commit survives a crash of
 * the process but may be lost with the machine's power. Never corrupts.
 */
export type Synchronous = 'FULL' | 'NORMAL';

export class SqliteConnection {
  readonly db: DatabaseSync;
  #statements = new Map<string, Statement>();
  #multiRowInserts = new Map<string, StatementSync>();
  #synchronous: Synchronous = 'FULL';

  constructor(path: string) {
    this.db = new DatabaseSync(path);
    this.db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // WAL: readers never block the writer, and a commit appends to one file (one fsync)
    this.db.exec('PRAGMA journal_mode = WAL');
    this.db.exec('PRAGMA synchronous = FULL');
    this.db.exec(`PRAGMA cache_size = -${CACHE_SIZE_KIB}`);
    this.db.exec('PRAGMA temp_store = MEMORY');
  }

  /** The prepared statement for `sql`, prepared on first use. */
  statement(sql: string): Statement {
    let prepared = this.#statements.get(sql);
    if (!prepared) {
      prepared = new Statement(this.db, sql);
      this.#statements.set(sql, prepared);
    }
    return prepared;
  }

  /**
   * Inserts `rows` with as few calls into SQLite as possible: multi-row
   * INSERTs of 100 rows, then of 10, then single rows (only three prepared
   * statements per table). One call per row made large groups 2x slower
   * (measured: 100,000 rows in groups of 800, 536 ms row by row, 272 ms).
   */
  insertRows(insert: RowInsert, rows: Params[]): void {
    const tuple = compileTuple(insert.row);
    let done = 0;
    for (const size of MULTI_ROW_SIZES) {
      if (rows.length - done < size) continue;
      const statement = this.#multiRowInsert(insert.into, tuple.text, size);
      for (; rows.length - done >= size; done += size) {
        const values: SQLInputValue[] = [];
        for (let i = done; i < done + size; i++) pushValues(values, tuple.names, rows[i]!);
        statement.run(...values);
      }
    }
  }

  #multiRowInsert(into: string, tupleText: string, size: number): StatementSync {
    const key = `${into}\n${size}`;
    let prepared = this.#multiRowInserts.get(key);
    if (!prepared) {
      prepared = this.db.prepare(`${into} ${Array(size).fill(tupleText).join(', ')}`);
      this.#multiRowInserts.set(key, prepared);
    }
    return prepared;
  }

  /** Switches the fsync policy for the next transactions (a no-op when unchanged). */
  setSynchronous(mode: Synchronous): void {
    if (mode === this.#synchronous) return;
    this.db.exec(`PRAGMA synchronous = ${mode}`);
    this.#synchronous = mode;
  }

  get inTransaction(): boolean {
    return this.db.isTransaction;
  }

  close(): void {
    this.#statements.clear();
    this.#multiRowInserts.clear();
    if (this.db.isOpen) this.db.close();
  }
}

/**
 * A prepared statement whose SQL names its parameters (`:owner`) but which is
 * bound by position: node:sqlite looks every named parameter up under three
 * prefixes, which made a 100-message insert batch 1.7x slower (measured).
 * `:name` becomes `?N` (N = the name's first appearance), so a name may repeat.
 * The SQL must not contain `:` outside parameters (no string literals with one).
 */
export class Statement {
  #prepared: StatementSync;
  #names: string[] = [];

  constructor(db: DatabaseSync, sql: string) {
    const text = sql.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (_, name: string) => {
      let index = this.#names.indexOf(name);
      if (index < 0) index = this.#names.push(name) - 1;
      return `?${index + 1}`;
    });
    this.#prepared = db.prepare(text);
  }

  run(params: Params = {}): StatementResultingChanges {
    return this.#prepared.run(...this.#values(params));
  }

  get<Row>(params: Params = {}): Row | undefined {
    return this.#prepared.get(...this.#values(params)) as Row | undefined;
  }

  all<Row>(params: Params = {}): Row[] {
    return this.#prepared.all(...this.#values(params)) as Row[];
  }

  #values(params: Params): SQLInputValue[] {
    const values: SQLInputValue[] = [];
    pushValues(values, this.#names, params);
    return values;
  }
}

const compiledTuples = new Map<string, { text: string; names: string[] }>();

/** A row tuple with `?` per parameter occurrence, and the names in that order. */
function compileTuple(row: string): { text: string; names: string[] } {
  let compiled = compiledTuples.get(row);
  if (!compiled) {
    const names: string[] = [];
    const text = row.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (_, name: string) => {
      names.push(name);
      return '?';
    });
    compiled = { text, names };
    compiledTuples.set(row, compiled);
  }
  return compiled;
}

function pushValues(values: SQLInputValue[], names: string[], params: Params): void {
  for (const name of names) {
    const value = params[name];
    if (value === undefined) throw new Error(`SQL parameter :${name} is missing`);
    values.push(value);
  }
}
