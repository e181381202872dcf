import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { uuidv7 } from '../src/ids.ts';
import { openDispatcherStore, openMainStore } from '../src/stores/index.ts';
import { dispatcherMigrations, mainMigrations } from '../src/stores/sqlite/migrations.ts';
import { openSqliteDispatcherStore } from '../src/stores/sqlite/dispatcher-store.ts';

/**
 * What only the SQLite stores do (the shared behaviour is in the contract
 * suites): migrations from several processes at once, refusing a newer
 * schema, opening by path, one dispatcher process per file.
 */

function tempFolder(): { path: string; [Symbol.dispose](): void } {
  const path = mkdtempSync(join(tmpdir(), 'psched-sqlite-'));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

const storeModule = new URL('../src/stores/sqlite/dispatcher-store.ts', import.meta.url).href;

/** A separate Node process that opens the file and migrates it. */
function migrateInChild(file: string): Promise<{ code: number | null; stderr: string }> {
  const script = `
    import { openSqliteDispatcherStore } from ${JSON.stringify(storeModule)};
    const store = openSqliteDispatcherStore(process.argv[1]);
    await store.migrate();
    await store.close();`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('SQLite stores', () => {
  it('applies each migration once when several processes start at the same moment', async () => {
    using folder = tempFolder();
    const file = join(folder.path, 'dispatcher.db');
    const results = await Promise.all([1, 2, 3, 4].map(() => migrateInChild(file)));
    for (const result of results) assert.equal(result.code, 0, result.stderr);
    const db = new DatabaseSync(file);
    try {
      const versions = db.prepare('SELECT version FROM migrations ORDER BY version').all().map((row) => row.version);
      assert.deepEqual(versions, dispatcherMigrations.map((migration) => migration.version));
    } finally {
      db.close();
    }
  });

  it('runs on a database a newer psched migrated additively, refuses one with a breaking change', async () => {
    using folder = tempFolder();
    const file = join(folder.path, 'dispatcher.db');
    const store = openSqliteDispatcherStore(file);
    await store.migrate();
    await store.close();
    const db = new DatabaseSync(file);
    // an additive change from a newer psched: this one still runs on it
    db.prepare('INSERT INTO migrations (version, name, applied_at, breaking) VALUES (?, ?, ?, 0)').run(998, 'from the future', 0);
    const additive = openSqliteDispatcherStore(file);
    await additive.migrate();
    await additive.close();
    // a breaking one: refused, naming it
    db.prepare('INSERT INTO migrations (version, name, applied_at, breaking) VALUES (?, ?, ?, 1)').run(999, 'from the future', 0);
    db.close();
    const newer = openSqliteDispatcherStore(file);
    await assert.rejects(newer.migrate(), /schema version 999, newer than this psched knows .*breaking migration 999/);
    await newer.close();
  });

  it('migration 8 (deliver-by) rebuilds the messages table of a version-7 database: every row, count and index kept, expired allowed', async () => {
    using folder = tempFolder();
    const file = join(folder.path, 'dispatcher.db');
    const now = Date.UTC(2030, 0, 1);
    const db = new DatabaseSync(file);
    db.exec('CREATE TABLE migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL, breaking INTEGER NOT NULL DEFAULT 1)');
    for (const migration of dispatcherMigrations.filter((m) => m.version <= 7)) {
      db.exec(migration.sql);
      db.prepare('INSERT INTO migrations (version, name, applied_at, breaking) VALUES (?, ?, ?, ?)').run(migration.version, migration.name, 0, migration.breaking ? 1 : 0);
    }
    const row = db.prepare(`INSERT INTO messages (id, target, username, message, scheduled_at, due_at, status, attempts, version, idempotency_key,
      created_at, updated_at, delivered_at, last_error, lease_owner) VALUES (?, ?, 'ann', ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, NULL)`);
    const scheduled = uuidv7();
    const dead = uuidv7();
    const delivered = uuidv7();
    row.run(scheduled, 'default', 'later ✨', now + 60_000, now + 60_000, 'scheduled', 0, 'key-1', now, now, null, null);
    row.run(dead, 'shop', 'failed', now, now, 'dead', 10, null, now, now + 5, null, 'HTTP 500');
    row.run(delivered, 'default', 'sent', now, now, 'delivered', 1, null, now, now + 1, now + 1, null);
    db.prepare("UPDATE message_counts SET count = (SELECT count(*) FROM messages WHERE messages.status = message_counts.status)").run();
    const indexesOf = (database: DatabaseSync) => database.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages' AND sql IS NOT NULL ORDER BY name").all()
      .map((row) => [row.name, String(row.sql).replace(/\s+/g, ' ')]);
    const indexesBefore = indexesOf(db);
    db.close();

    const store = openSqliteDispatcherStore(file);
    await store.migrate();
    try {
      assert.deepEqual(await store.countByStatus(), { scheduled: 1, delivering: 0, delivered: 1, dead: 1, expired: 0 });
      const kept = await store.get(scheduled);
      assert.equal(kept?.message, 'later ✨');
      assert.equal(kept?.idempotencyKey, 'key-1');
      assert.equal(kept?.deliverBy, null);
      assert.equal((await store.get(dead))?.lastError, 'HTTP 500');
      assert.equal((await store.get(dead))?.target, 'shop');
      assert.equal((await store.get(delivered))?.deliveredAt, now + 1);
      // the indexes came back: the idempotency key still finds its message, the delivered history its row
      const [again] = await store.insert([{ id: uuidv7(), username: 'ann', message: 'dup', scheduledAt: now + 60_000, idempotencyKey: 'key-1' }], now);
      assert.deepEqual([again?.created, again?.message.id], [false, scheduled]);
      assert.deepEqual((await store.listRecentlyDelivered(10)).map((m) => m.id), [delivered]);
      // and the new status is allowed
      const [claimed] = await store.claimDue('owner', now + 120_000, now, now + 10_000, 10);
      const expired = await store.expire('owner', [{ id: claimed!.id, version: claimed!.version, error: 'late' }], now + 1);
      assert.equal(expired[0]?.status, 'expired');
      assert.equal((await store.countByStatus()).expired, 1);
    } finally {
      await store.close();
    }
    const after = new DatabaseSync(file);
    try {
      // migration 11, run after it, narrows the target index to the statuses it keeps
      const expected = indexesBefore.map(([name, definition]) => name === 'messages_target_status_due'
        ? [name, `${definition} WHERE status IN ('scheduled', 'dead', 'expired')`]
        : [name, definition]);
      assert.deepEqual(indexesOf(after), expected, 'every index of messages made again, the same name and definition');
    } finally {
      after.close();
    }
  });

  it('inserts called in the same tick share one INSERT, see each other\'s keys, and fail one by one', async () => {
    using folder = tempFolder();
    const store = openSqliteDispatcherStore(join(folder.path, 'dispatcher.db'));
    await store.migrate();
    try {
      const now = Date.now();
      const message = (text: string, idempotencyKey: string | null = null, id = uuidv7()) => ({ id, username: 'ann', message: text, scheduledAt: now + 60_000, idempotencyKey });
      const [first, again, other] = await Promise.all([
        store.insert([message('one', 'key-1')], now),
        store.insert([message('two', 'key-1')], now),
        store.insert([message('three'), message('four')], now),
      ]);
      assert.deepEqual([first![0]!.created, again![0]!.created, again![0]!.message.id, again![0]!.message.message], [true, false, first![0]!.message.id, 'one']);
      assert.deepEqual(other!.map((o) => o.created), [true, true]);
      // the same id twice fails the joined INSERT: each call then runs alone, and only the repeat fails
      const id = uuidv7();
      const results = await Promise.allSettled([store.insert([message('five', null, id)], now), store.insert([message('six', null, id)], now), store.insert([message('seven')], now)]);
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
      assert.equal((await store.get(id))?.message, 'five');
      assert.equal((await store.countByStatus()).scheduled, 5);
      assert.equal((await store.list({ limit: 10, status: 'scheduled' })).length, 5);
    } finally {
      await store.close();
    }
  });

  it('openDispatcherStore and openMainStore create the folder and return migrated stores', async () => {
    using folder = tempFolder();
    const dispatcherFile = join(folder.path, 'nested', 'data', 'dispatcher.db');
    const mainFile = join(folder.path, 'nested', 'data', 'main.db');
    const dispatcher = await openDispatcherStore(dispatcherFile);
    const main = await openMainStore(mainFile);
    try {
      assert.ok(existsSync(dispatcherFile));
      assert.equal((await dispatcher.insert([{ id: uuidv7(), username: 'a', message: 'b', scheduledAt: 1, idempotencyKey: null }], 0)).length, 1);
      assert.equal(await main.countPosts(), 0);
      const db = new DatabaseSync(mainFile);
      assert.equal(db.prepare('SELECT count(*) AS n FROM migrations').get()!.n, mainMigrations.length);
      db.close();
    } finally {
      await dispatcher.close();
      await main.close();
    }
  });

  it('opening the file expires every lease in it: the claims of the process that had it are taken over at once', async () => {
    using folder = tempFolder();
    const file = join(folder.path, 'dispatcher.db');
    const now = Date.UTC(2030, 0, 1);
    const before = openSqliteDispatcherStore(file);
    await before.migrate();
    const claim = { owner: 'gone', leaseExpiresAt: now + 3600_000, dueBefore: now + 3600_000 };
    const [held] = await before.insert([{ id: uuidv7(), username: 'a', message: 'b', scheduledAt: now, idempotencyKey: null }], now, claim);
    const [started] = await before.startDelivery('gone', [held!.message], now);
    assert.equal(started?.status, 'delivering');
    await before.close(); // as good as kill -9: the lease was never handed back

    const after = openSqliteDispatcherStore(file);
    await after.migrate();
    try {
      const [taken] = await after.claimDue('next', now + 60_000, now + 1, now + 10_000, 10);
      assert.equal(taken?.id, held!.message.id, 'taken over long before the old lease would expire');
      assert.equal(taken?.status, 'scheduled');
      assert.equal(taken?.leaseOwner, 'next');
      assert.equal(taken?.leaseExpiresAt, now + 10_000);
    } finally {
      await after.close();
    }
  });

  it('refuses a second dispatcher on the same file while the first has it open, with a message saying why', async () => {
    using folder = tempFolder();
    const file = join(folder.path, 'dispatcher.db');
    const first = await openDispatcherStore(file);
    try {
      await assert.rejects(openDispatcherStore(file), (err: Error) => {
        assert.equal(err.name, 'StoreInUseError');
        assert.match(err.message, /in use by another psched dispatcher/);
        assert.ok(err.message.includes(file), err.message);
        return true;
      });
    } finally {
      await first.close();
    }
    const next = await openDispatcherStore(file);
    await next.close();
  });

  it('a dispatcher killed with SIGKILL leaves no lock behind', async () => {
    using folder = tempFolder();
    const file = join(folder.path, 'dispatcher.db');
    const script = `
      import { openDispatcherStore } from ${JSON.stringify(new URL('../src/stores/index.ts', import.meta.url).href)};
      await openDispatcherStore(process.argv[1]);
      process.stdout.write('open');
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => { if (chunk.toString().includes('open')) resolve(); });
        child.once('exit', (code) => reject(new Error(`the child exited (${code}) before opening the store`)));
      });
      await assert.rejects(openDispatcherStore(file), /in use by another psched dispatcher/);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
    }
    const after = await openDispatcherStore(file);
    await after.close();
  });

  it('a closed store rejects calls instead of touching the file', async () => {
    using folder = tempFolder();
    const store = openSqliteDispatcherStore(join(folder.path, 'dispatcher.db'));
    await store.migrate();
    await store.close();
    await assert.rejects(store.get(uuidv7()), /closed/);
    await assert.rejects(store.insert([], 0), /closed/);
    await store.close(); // twice is harmless
  });
});
