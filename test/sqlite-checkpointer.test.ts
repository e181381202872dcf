import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Checkpointer } from '../src/stores/sqlite/checkpointer.ts';
import { SqliteConnection } from '../src/stores/sqlite/connection.ts';

/**
 * The checkpoint thread copies committed WAL frames into the database file,
 * which the writing connection no longer does itself (its autocheckpoint is
 * only a safety valve). Seen from outside: a copy of the database file alone,
 * without its WAL, holds what was committed.
 */

function rowsInFileAlone(file: string, folder: string): number {
  const copy = join(folder, `copy-${Math.random().toString(36).slice(2)}.db`);
  copyFileSync(file, copy);
  const db = new DatabaseSync(copy);
  try {
    const table = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'items'").get() as { n: number };
    return table.n === 0 ? 0 : (db.prepare('SELECT count(*) AS n FROM items').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe('SQLite checkpoint thread', () => {
  it('copies committed writes into the database file, which the writer alone leaves in the WAL', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'psched-checkpoint-'));
    const file = join(folder, 'test.db');
    const connection = new SqliteConnection(file);
    const checkpointer = new Checkpointer(file);
    try {
      connection.db.exec('CREATE TABLE items (id INTEGER PRIMARY KEY, text TEXT NOT NULL)');
      const insert = connection.db.prepare('INSERT INTO items (text) VALUES (?)');
      connection.db.exec('BEGIN');
      for (let i = 0; i < 2000; i++) insert.run(`item ${i} `.repeat(10));
      connection.db.exec('COMMIT');
      // ~200 pages: below the writer's own autocheckpoint, so only the WAL has them
      assert.equal(rowsInFileAlone(file, folder), 0);

      checkpointer.nudge();
      await checkpointer.idle();
      assert.equal(rowsInFileAlone(file, folder), 2000);

      // a second nudge soon after waits out the interval, then copies the newer commit too
      connection.db.exec('BEGIN');
      for (let i = 0; i < 500; i++) insert.run('more');
      connection.db.exec('COMMIT');
      checkpointer.nudge();
      await checkpointer.idle();
      assert.equal(rowsInFileAlone(file, folder), 2500);
    } finally {
      await checkpointer.close();
      connection.close();
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it('closes at once when nothing was ever committed', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'psched-checkpoint-'));
    try {
      const checkpointer = new Checkpointer(join(folder, 'empty.db'));
      await checkpointer.idle();
      await checkpointer.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
