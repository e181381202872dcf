import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { DispatcherStore, NewMessage } from '../src/dispatcher/store.ts';
import { uuidv7 } from '../src/ids.ts';
import { openSqliteDispatcherStore } from '../src/stores/sqlite/dispatcher-store.ts';
import { openSqliteMainStore } from '../src/stores/sqlite/main-store.ts';

/**
 * Micro benchmark of the SQLite stores alone (no HTTP), every resolved write
 * fsynced: how far group commit carries the store below the HTTP layer.
 *
 *   node bench/store-sqlite.ts               # full run
 *   node bench/store-sqlite.ts --scale 0.1   # quick
 *   node bench/store-sqlite.ts --pending 1000000
 */
const { values: opts } = parseArgs({
  options: {
    scale: { type: 'string', default: '1' },
    pending: { type: 'string', default: '0' },
  },
});
const scale = Number(opts.scale);
const n = (count: number) => Math.max(1, Math.round(count * scale));

const NOW = Date.now();
const TEXT = 'A scheduled message of a typical length, with an emoji 🎉 and a bit more text to be realistic.';

function message(scheduledAt = NOW + 3_600_000): NewMessage {
  return { id: uuidv7(), username: 'bench', message: TEXT, scheduledAt, idempotencyKey: null };
}

/** Deliveries per startDelivery and finishDeliveries call: what one group commit of the targets phase holds (~11 each, counted). */
const DELIVERY_GROUP = 11;

function rss(): string {
  return `${Math.round(process.memoryUsage().rss / 2 ** 20)} MB`;
}

function rate(count: number, ms: number): string {
  return `${Math.round((count / ms) * 1000).toLocaleString('en-US')}/s`;
}

/** `callers` concurrent loops, each awaiting one call at a time, `total` calls in all. */
async function concurrently(total: number, callers: number, call: () => Promise<unknown>): Promise<number> {
  let started = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: callers }, async () => {
    while (started < total) {
      started++;
      await call();
    }
  }));
  return performance.now() - start;
}

async function fill(store: DispatcherStore, count: number): Promise<number> {
  const start = performance.now();
  for (let done = 0; done < count; done += 1000) {
    const batch = Array.from({ length: Math.min(1000, count - done) }, () => message(NOW + 7 * 86_400_000 + done));
    await store.insert(batch, NOW);
  }
  return performance.now() - start;
}

async function benchDispatcher(folder: string, pending: number): Promise<void> {
  const store = openSqliteDispatcherStore(join(folder, `dispatcher-${pending}.db`));
  await store.migrate();
  if (pending > 0) {
    const ms = await fill(store, pending);
    console.log(`  filled ${pending.toLocaleString('en-US')} pending messages in ${Math.round(ms)} ms (${rate(pending, ms)}), RSS ${rss()}`);
  }

  const singles = n(20_000);
  const singleMs = await concurrently(singles, 32, () => store.insert([message()], NOW));
  console.log(`  single inserts, 32 concurrent callers: ${singles.toLocaleString('en-US')} in ${Math.round(singleMs)} ms = ${rate(singles, singleMs)}`);

  const singlesWithKey = n(20_000);
  let key = 0;
  const keyedMs = await concurrently(singlesWithKey, 32, () => store.insert([{ ...message(), idempotencyKey: `k${pending}-${key++}` }], NOW));
  console.log(`  single inserts with idempotency keys:   ${singlesWithKey.toLocaleString('en-US')} in ${Math.round(keyedMs)} ms = ${rate(singlesWithKey, keyedMs)}`);

  for (const callers of [1, 4]) {
    const batches = n(1_000);
    const batchMs = await concurrently(batches, callers, () => store.insert(Array.from({ length: 100 }, () => message()), NOW));
    console.log(`  batches of 100, ${callers} concurrent caller(s): ${(batches * 100).toLocaleString('en-US')} in ${Math.round(batchMs)} ms = ${rate(batches * 100, batchMs)}`);
  }

  // the engine's path for messages due now: claim, start, finish, in chunks of 1000
  const due = n(20_000);
  await store.insert(Array.from({ length: due }, () => message(NOW - 1)), NOW);
  const drainStart = performance.now();
  for (;;) {
    const claimed = await store.claimDue('bench', NOW, NOW, NOW + 30_000, 1000);
    if (claimed.length === 0) break;
    const started = await store.startDelivery('bench', claimed.map((m) => ({ id: m.id, version: m.version })), NOW);
    await store.finishDeliveries('bench', started.map((m) => ({ id: m.id, outcome: 'delivered' as const, at: NOW })));
  }
  const drainMs = performance.now() - drainStart;
  console.log(`  claim + start + finish of ${due.toLocaleString('en-US')} due messages: ${Math.round(drainMs)} ms = ${rate(due, drainMs)}`);

  // with many targets a delivery commit holds a few deliveries, each of another target's (bench/run.ts's targets phase)
  for (const targets of [1, 1000]) {
    const spread = n(20_000);
    for (let t = 0; t < targets; t++) {
      await store.insertTarget({ name: `t${pending}-${t}`, url: 'http://127.0.0.1:9', protocol: 'json', signatureScheme: 'psched', signingSecret: null,
        tokenHash: null, ratePerSecond: null, burst: null, maxInFlight: null, deliverWithinMs: null }, NOW);
    }
    for (let done = 0; done < spread; done += 1000) {
      await store.insert(Array.from({ length: Math.min(1000, spread - done) }, (_, i) => ({ ...message(NOW - 1), target: `t${pending}-${(done + i) % targets}` })), NOW);
    }
    let groupsMs = 0;
    for (;;) {
      const claimed = await store.claimDue('bench', NOW, NOW, NOW + 30_000, 1000);
      if (claimed.length === 0) break;
      const groupsStart = performance.now();
      for (let i = 0; i < claimed.length; i += DELIVERY_GROUP) {
        const group = claimed.slice(i, i + DELIVERY_GROUP);
        const started = await store.startDelivery('bench', group.map((m) => ({ id: m.id, version: m.version })), NOW);
        await store.finishDeliveries('bench', started.map((m) => ({ id: m.id, outcome: 'delivered' as const, at: NOW, attempt: { number: 1, startedAt: NOW, finishedAt: NOW, httpStatus: 201 } })));
      }
      groupsMs += performance.now() - groupsStart;
    }
    console.log(`  start + finish in groups of ${DELIVERY_GROUP}, ${targets.toLocaleString('en-US')} target(s): ${spread.toLocaleString('en-US')} in ${Math.round(groupsMs)} ms = ${((groupsMs * 1000) / spread).toFixed(1)} µs a message`);
  }

  const countStart = performance.now();
  const counts = await store.countByStatus();
  console.log(`  countByStatus: ${(performance.now() - countStart).toFixed(1)} ms (${JSON.stringify(counts)}), RSS ${rss()}`);
  await store.close();
}

async function benchMain(folder: string): Promise<void> {
  const store = openSqliteMainStore(join(folder, 'main.db'));
  await store.migrate();
  const posts = n(20_000);
  const ms = await concurrently(posts, 32, () => {
    const id = uuidv7();
    return store.addPost({ id, messageId: id, username: 'bench', message: TEXT, postedAt: Date.now(), scheduledAt: NOW });
  });
  console.log(`  addPost, 32 concurrent callers: ${posts.toLocaleString('en-US')} in ${Math.round(ms)} ms = ${rate(posts, ms)}`);
  const listStart = performance.now();
  for (let i = 0; i < 100; i++) await store.listPosts({ limit: 50 });
  console.log(`  listPosts(50): ${((performance.now() - listStart) / 100).toFixed(2)} ms`);
  await store.close();
}

const folder = mkdtempSync(join(tmpdir(), 'psched-bench-'));
try {
  console.log(`SQLite dispatcher store (empty)`);
  await benchDispatcher(folder, 0);
  const pending = Number(opts.pending);
  if (pending > 0) {
    console.log(`SQLite dispatcher store (${pending.toLocaleString('en-US')} pending)`);
    await benchDispatcher(folder, pending);
  }
  console.log('SQLite main store');
  await benchMain(folder);
} finally {
  rmSync(folder, { recursive: true, force: true });
}
