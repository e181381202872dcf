import { DatabaseSync } from 'node:sqlite';
import { StoreInUseError } from '../../errors.ts';
import { realDatabasePath } from './path.ts';

/**
 * One dispatcher process per SQLite file. Opening a dispatcher's file expires
 * every lease in it (the process that held them is assumed gone), so a second
 * dispatcher on the same file would take over the first one's messages and
 * both would deliver them. It is refused at start with a clear message.
 *
 * The lock is an SQLite database of its own beside the file (`<file>-lock`),
 * held in exclusive locking mode: SQLite's file locks are the operating
 * system's, released when the process ends however it ends (kill -9
 * included), so a crash never leaves a stale lock behind.
 */
const SQLITE_BUSY = 5;

/** Takes the lock for `dbPath`; returns what releases it. Throws a StoreInUseError when another process holds it. */
export function lockForOneDispatcher(dbPath: string): () => void {
  // through symbolic links: two links to one file must meet at one lock
  const lock = new DatabaseSync(`${realDatabasePath(dbPath)}-lock`);
  try {
    // kept until the connection closes: the first write takes the exclusive lock, and it is never given back
    lock.exec('PRAGMA locking_mode = EXCLUSIVE');
    // its content does not matter: no journal file beside it
    lock.exec('PRAGMA journal_mode = MEMORY');
    lock.exec('BEGIN EXCLUSIVE');
    lock.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL)');
    lock.exec('DELETE FROM holder');
    lock.prepare('INSERT INTO holder (pid) VALUES (?)').run(process.pid);
    lock.exec('COMMIT');
  } catch (err) {
    lock.close();
    if ((err as { errcode?: number }).errcode === SQLITE_BUSY) {
      throw new StoreInUseError(
        `${dbPath} is in use by another psched dispatcher: an SQLite file belongs to one dispatcher process `
        + '(give each its own --db, or run a pool on PostgreSQL)',
      );
    }
    throw err;
  }
  return () => lock.close();
}
