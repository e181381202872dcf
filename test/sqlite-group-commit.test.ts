import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SqliteConnection } from '../src/stores/sqlite/connection.ts';
import { GroupCommit, type DurableSync } from '../src/stores/sqlite/group-commit.ts';

/**
 * Group commit with the WAL sync off the event loop: durable calls resolve
 * only once a sync after their COMMIT is done, relaxed calls and reads at
 * once, and durable calls arriving while a sync runs wait to share the next
 * COMMIT. The sync here is one the test completes by hand.
 */

class ManualSync implements DurableSync {
  pending: (() => void)[] = [];
  durable(): Promise<void> {
    return new Promise((resolve) => this.pending.push(resolve));
  }
  finishAll(): void {
    for (const finish of this.pending.splice(0)) finish();
  }
  async close(): Promise<void> {}
}

function setup() {
  const connection = new SqliteConnection(':memory:');
  connection.db.exec('CREATE TABLE items (id INTEGER PRIMARY KEY, text TEXT NOT NULL)');
  const sync = new ManualSync();
  let commits = 0;
  const commitsSeen = () => commits;
  const group = new GroupCommit(connection, { walSync: sync, afterCommit: () => { commits++; } });
  const insert = (text: string) => () => Number(connection.db.prepare('INSERT INTO items (text) VALUES (?)').run(text).lastInsertRowid);
  const count = () => (connection.db.prepare('SELECT count(*) AS n FROM items').get() as { n: number }).n;
  return { connection, sync, group, insert, count, commitsSeen };
}

/** Lets the event loop run the group's setImmediate flush and the promise callbacks after it. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('SQLite group commit with the WAL synced off the event loop', () => {
  it('resolves a durable write only after the sync that follows its COMMIT; relaxed writes and reads at once', async () => {
    const { sync, group, insert, count } = setup();
    const settled: string[] = [];
    void group.write('durable', insert('a')).then(() => settled.push('durable'));
    void group.write('relaxed', insert('b')).then(() => settled.push('relaxed'));
    await turn();
    await turn();
    assert.equal(count(), 2, 'both are committed and visible');
    assert.deepEqual(settled, ['relaxed']);
    assert.equal(await group.read(count), 2);
    sync.finishAll();
    await turn();
    assert.deepEqual(settled, ['relaxed', 'durable']);
  });

  it('holds durable writes arriving during a sync, then commits them together once it is done', async () => {
    const { sync, group, insert, count, commitsSeen } = setup();
    const first = group.write('durable', insert('first'));
    await turn();
    assert.equal(commitsSeen(), 1);
    assert.equal(sync.pending.length, 1);

    const later = [group.write('durable', insert('x')), group.write('durable', insert('y'))];
    await turn();
    await turn();
    assert.equal(commitsSeen(), 1, 'nothing more is committed while the sync runs');
    assert.equal(count(), 1);

    sync.finishAll();
    await first;
    await turn();
    assert.equal(commitsSeen(), 2, 'the two waiting writes share one COMMIT');
    assert.equal(count(), 3);
    sync.finishAll();
    assert.deepEqual((await Promise.all(later)).length, 2);
  });

  it('commits relaxed-only groups while a sync runs', async () => {
    const { sync, group, insert, count, commitsSeen } = setup();
    void group.write('durable', insert('first'));
    await turn();
    await group.write('relaxed', insert('engine'));
    assert.equal(commitsSeen(), 2);
    assert.equal(count(), 2);
    sync.finishAll();
  });

  it('rejects a durable write whose sync fails, and goes on with the next', async () => {
    const { insert, connection } = setup();
    let fail = true;
    const failing: DurableSync = {
      durable: () => (fail ? Promise.reject(new Error('EIO: fsync failed')) : Promise.resolve()),
      close: async () => {},
    };
    const group = new GroupCommit(connection, { walSync: failing });
    await assert.rejects(group.write('durable', insert('lost?')), /EIO/);
    fail = false;
    assert.equal(typeof (await group.write('durable', insert('next'))), 'number');
  });
});
