import { DatabaseSync } from 'node:sqlite';
import { MultiRowStatement, Statement, type MultiRowSql } from './prepared.ts';

/**
 * One node:sqlite connection with the settings both stores share, and a cache
 * of prepared statements (preparing costs more than running a small
 * statement, so each SQL text is prepared once).
 */

/**
 * How long a write waits for another connection's lock before failing. Only a
 * second process starting at the same moment (both migrating) ever holds one:
 * in normal operation one process owns the file.
 */
const BUSY_TIMEOUT_MS = 10_000;

/**
 * Page cache per connection, in KiB. Pages it misses come from the OS page
 * cache (one read call each), so this only spares hot index pages that call;
 * 16 MiB (SQLite's default is 2) holds the busy edges of a million-message
 * table's indexes while leaving room in the dispatcher's 300 MB RSS budget.
 */
const CACHE_SIZE_KIB = 16 * 1024;

/**
 * WAL pages after which a COMMIT copies the WAL back into the database file
 * itself (a checkpoint, with fsyncs, on the event loop). The checkpointer
 * thread (./checkpointer.ts) normally copies every commit soon after it lands;
 * this only bounds the WAL (16,384 pages: 64 MiB) when that thread falls
 * behind a long burst of writes.
 */
const AUTOCHECKPOINT_PAGES = 16_384;

export class SqliteConnection {
  readonly db: DatabaseSync;
  #statements = new Map<string, Statement>();
  #multiRowStatements = new Map<MultiRowSql, MultiRowStatement>();

  constructor(path: string) {
    this.db = new DatabaseSync(path);
    this.db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // WAL: readers never block the writer, and a commit appends to one file (one fsync)
    this.db.exec('PRAGMA journal_mode = WAL');
    // NORMAL: COMMIT does not fsync; a commit survives a crash of the process, and the
    // group commit's WalSync fsyncs the WAL before a durable call resolves (./wal-sync.ts)
    this.db.exec('PRAGMA synchronous = NORMAL');
    this.db.exec(`PRAGMA cache_size = -${CACHE_SIZE_KIB}`);
    this.db.exec('PRAGMA temp_store = MEMORY');
    this.db.exec(`PRAGMA wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
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

  /** The multi-row statement for `multiRow` (a constant of ./statements.ts), prepared on first use. */
  multiRow(multiRow: MultiRowSql): MultiRowStatement {
    let prepared = this.#multiRowStatements.get(multiRow);
    if (!prepared) {
      prepared = new MultiRowStatement(this.db, multiRow);
      this.#multiRowStatements.set(multiRow, prepared);
    }
    return prepared;
  }

  get inTransaction(): boolean {
    return this.db.isTransaction;
  }

  close(): void {
    this.#statements.clear();
    this.#multiRowStatements.clear();
    if (this.db.isOpen) this.db.close();
  }
}
