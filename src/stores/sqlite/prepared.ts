import type { DatabaseSync, SQLInputValue, StatementResultingChanges, StatementSync } from 'node:sqlite';

/**
 * Prepared statements whose SQL names its parameters (`:owner`) but which are
 * bound by position: node:sqlite looks every named parameter up under three
 * prefixes, which made a 100-message insert batch 1.7x slower (measured).
 * Each `:name` becomes a `?` and its value is taken from a plain object, so a
 * name may repeat. The SQL must not contain `:` outside parameters.
 */

export type Params = Record<string, SQLInputValue>;

/**
 * A statement over many rows at once: `sql` holds `{rows}` where `row` is
 * repeated, comma-separated, once per row (`VALUES {rows}` with row
 * `(:id, :at)`, or `id IN ({rows})` with row `:id`). Parameters outside
 * `{rows}` are shared by every row.
 */
export interface MultiRowSql {
  sql: string;
  row: string;
}

export class Statement {
  #prepared: StatementSync;
  #names: string[];

  constructor(db: DatabaseSync, sql: string) {
    const compiled = compile(sql);
    this.#prepared = db.prepare(compiled.text);
    this.#names = compiled.names;
  }

  run(params: Params = {}): StatementResultingChanges {
    return this.#prepared.run(...values(this.#names, params));
  }

  get<Row>(params: Params = {}): Row | undefined {
    return this.#prepared.get(...values(this.#names, params)) as Row | undefined;
  }

  all<Row>(params: Params = {}): Row[] {
    return this.#prepared.all(...values(this.#names, params)) as Row[];
  }
}

/**
 * Runs a MultiRowSql in chunks of 100 rows, then 10, then the rest (1 to 9)
 * in one call: few calls into SQLite, and at most 11 prepared statements. One call per row made large
 * insert groups 2x slower (100,000 rows in groups of 800: 536 ms row by row,
 * 272 ms in chunks of 100, measured); chunked UPDATEs save a third.
 */
export class MultiRowStatement {
  #db: DatabaseSync;
  #before: Compiled;
  #row: Compiled;
  #after: Compiled;
  #prepared = new Map<number, StatementSync>();

  constructor(db: DatabaseSync, multiRow: MultiRowSql) {
    const parts = multiRow.sql.split('{rows}');
    if (parts.length !== 2) throw new Error(`multi-row SQL needs exactly one {rows}: ${multiRow.sql}`);
    this.#db = db;
    this.#before = compile(parts[0]!);
    this.#row = compile(multiRow.row);
    this.#after = compile(parts[1]!);
  }

  /** Returns the number of rows changed. */
  run(rows: Params[], shared: Params = {}): number {
    let changes = 0;
    this.#eachChunk(rows, shared, (statement, args) => { changes += Number(statement.run(...args).changes); });
    return changes;
  }

  all<Row>(rows: Params[], shared: Params = {}): Row[] {
    const result: Row[] = [];
    this.#eachChunk(rows, shared, (statement, args) => { result.push(...(statement.all(...args) as Row[])); });
    return result;
  }

  #eachChunk(rows: Params[], shared: Params, run: (statement: StatementSync, args: SQLInputValue[]) => void): void {
    let done = 0;
    for (const fullSize of CHUNK_SIZES) {
      // the last few rows (fewer than 10) in one call: joined inserts come in groups of ~8 (./dispatcher-store.ts)
      const size = fullSize === 1 ? rows.length - done : fullSize;
      while (size > 0 && rows.length - done >= size) {
        const args = values(this.#before.names, shared);
        for (let i = done; i < done + size; i++) args.push(...values(this.#row.names, rows[i]!));
        args.push(...values(this.#after.names, shared));
        run(this.#statement(size), args);
        done += size;
      }
    }
  }

  #statement(size: number): StatementSync {
    let prepared = this.#prepared.get(size);
    if (!prepared) {
      prepared = this.#db.prepare(`${this.#before.text}${Array(size).fill(this.#row.text).join(', ')}${this.#after.text}`);
      this.#prepared.set(size, prepared);
    }
    return prepared;
  }
}

/** Rows per call, largest first (1: the rest). 100 rows of ~10 values stays far below SQLite's 32,766 variables. */
const CHUNK_SIZES = [100, 10, 1];

interface Compiled {
  text: string;
  /** One entry per `?`, in order. */
  names: string[];
}

function compile(sql: string): Compiled {
  const names: string[] = [];
  const text = sql.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (_, name: string) => {
    names.push(name);
    return '?';
  });
  return { text, names };
}

function values(names: string[], params: Params): SQLInputValue[] {
  const result: SQLInputValue[] = [];
  for (const name of names) {
    const value = params[name];
    if (value === undefined) throw new Error(`SQL parameter :${name} is missing`);
    result.push(value);
  }
  return result;
}
