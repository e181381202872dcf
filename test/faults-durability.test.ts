import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dispatcherConfig } from '../src/config.ts';
import { createDispatcher } from '../src/dispatcher/app.ts';
import { DurabilityUnknownError } from '../src/errors.ts';
import { openDispatcherStore } from '../src/stores/index.ts';
import { openSqliteDispatcherStore } from '../src/stores/sqlite/dispatcher-store.ts';
import { WalSync } from '../src/stores/sqlite/wal-sync.ts';
import { uuidv7 } from '../src/ids.ts';

/**
 * Faults of the disk under the SQLite store (issue 14, items 2 and 5): a
 * WAL sync that fails or cannot even open the WAL must never wedge the
 * store, never answer "not stored" for a write that was committed, and halt
 * the dispatcher (crash-stop); a symlinked --db syncs and locks the real file.
 */

function tempFolder() {
  const path = mkdtempSync(join(tmpdir(), 'psched-faults-'));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

const message = (text = 'hello') => ({ id: uuidv7(), username: 'Ann', message: text, scheduledAt: Date.now() + 3600_000, idempotencyKey: null });

describe('WAL sync faults', () => {
  it('a WAL that cannot be opened rejects the waiting call and every later one, instead of wedging', async () => {
    using folder = tempFolder();
    let failures = 0;
    // opening a WAL in a folder that does not exist throws synchronously, as EMFILE does
    const sync = new WalSync(join(folder.path, 'missing', 'x.db-wal'), { onFailure: () => failures++ });
    await assert.rejects(sync.durable(), (err: Error) => err instanceof DurabilityUnknownError && /ENOENT/.test(err.message));
    await assert.rejects(sync.durable(), DurabilityUnknownError);
    await assert.rejects(sync.durable(), DurabilityUnknownError);
    assert.equal(failures, 1, 'the owner is told once');
    await sync.close();
  });

  it('a failed fdatasync is final: later syncs are not attempted over possibly lost pages', async () => {
    using folder = tempFolder();
    const file = join(folder.path, 'x.db-wal');
    writeFileSync(file, '');
    let calls = 0;
    const sync = new WalSync(file, {
      fdatasync: (_fd, callback) => {
        calls++;
        callback(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
      },
    });
    await assert.rejects(sync.durable(), /EIO/);
    await assert.rejects(sync.durable(), /EIO/);
    assert.equal(calls, 1);
    await sync.close();
  });
});

describe('a dispatcher whose WAL sync fails', () => {
  it('answers "durability unknown" (not a plain 500) for the committed write, halts, and refuses later writes as not stored', async () => {
    using folder = tempFolder();
    const db = join(folder.path, 'dispatcher.db');
    let failSync = false;
    const store = openSqliteDispatcherStore(db, {
      oneProcess: true,
      fdatasync: (fd, callback) => {
        if (failSync) callback(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
        else import('node:fs').then((fs) => fs.fdatasync(fd, callback));
      },
    });
    await store.migrate();
    const config = dispatcherConfig({ db, port: '0', mainUrl: 'http://127.0.0.1:9' }, {});
    const dispatcher = await createDispatcher(config, { logger: false, store });
    try {
      await dispatcher.engine.start();
      const post = (text: string) => dispatcher.app.inject({
        method: 'POST', url: '/v1/messages', headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ username: 'Ann', message: text, delaySeconds: 3600 }),
      });
      assert.equal((await post('before')).statusCode, 201);

      failSync = true;
      const unknown = await post('during');
      assert.equal(unknown.statusCode, 500);
      assert.equal(unknown.json().error.code, 'durability_unknown', unknown.body);
      assert.match(unknown.json().error.message, /may or may not be stored/);

      const reason = await dispatcher.halted;
      assert.ok(reason instanceof DurabilityUnknownError);
      assert.equal(dispatcher.engine.bufferedCount, 0, 'the engine stopped');

      const refused = await post('after');
      assert.equal(refused.statusCode, 503, refused.body);
      assert.match(refused.json().error.message, /nothing was written/);
      // not healthy either: a load balancer stops sending it requests until the restart
      await assert.rejects(store.ping(), DurabilityUnknownError);
      assert.equal((await dispatcher.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 503);
    } finally {
      await dispatcher.close();
      await store.close();
    }

    // the committed write is in the file: a restart delivers it (so it must never be stored again elsewhere)
    const reopened = openSqliteDispatcherStore(db);
    await reopened.migrate();
    try {
      const texts = (await reopened.list({ limit: 10 })).map((m) => m.message).sort();
      assert.deepEqual(texts, ['before', 'during']);
    } finally {
      await reopened.close();
    }
  });
});

describe('a symlinked --db', () => {
  it('syncs the WAL SQLite writes (beside the real file) and shares the real file\'s one-dispatcher lock', async () => {
    using folder = tempFolder();
    const real = join(folder.path, 'real.db');
    const link = join(folder.path, 'link.db');
    const seed = await openDispatcherStore(real);
    await seed.close();
    symlinkSync(real, link);

    const store = await openDispatcherStore(link);
    try {
      const [stored] = await store.insert([message('through the link')], Date.now());
      assert.equal(stored?.created, true, 'a durable write through the link resolves');
      await assert.rejects(openDispatcherStore(real), /in use by another psched dispatcher/);
      await assert.rejects(openDispatcherStore(link), /in use by another psched dispatcher/);
    } finally {
      await store.close();
    }
  });

  it('a dispatcher on a symlinked path starts, stores and is locked', async () => {
    using folder = tempFolder();
    const real = join(folder.path, 'real.db');
    const link = join(folder.path, 'link.db');
    symlinkSync(real, link);
    await assert.rejects(openDispatcherStore(link), /symbolic link to a file that does not exist/);
    await (await openDispatcherStore(real)).close();
    const config = dispatcherConfig({ db: link, port: '0', mainUrl: 'http://127.0.0.1:9' }, {});
    const dispatcher = await createDispatcher(config, { logger: false });
    try {
      await dispatcher.engine.start();
      const answer = await dispatcher.app.inject({
        method: 'POST', url: '/v1/messages', headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ username: 'Ann', message: 'linked', delaySeconds: 3600 }),
      });
      assert.equal(answer.statusCode, 201, answer.body);
      await assert.rejects(createDispatcher(dispatcherConfig({ db: real, port: '0' }, {}), { logger: false }), /in use/);
    } finally {
      await dispatcher.close();
    }
  });
});
