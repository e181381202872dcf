import { parseArgs } from 'node:util';
import type { DispatcherStore, NewMessage } from '../src/dispatcher/store.ts';
import { uuidv7 } from '../src/ids.ts';
import { openPostgresDispatcherStore } from '../src/stores/postgres/dispatcher-store.ts';
import { openPostgresMainStore } from '../src/stores/postgres/main-store.ts';
import { createTestSchema } from '../test/support/postgres.ts';

/**
 * Micro benchmark of the PostgreSQL stores alone (no HTTP), every resolved
 * user write committed with synchronous_commit on; the counterpart of
 * bench/store-sqlite.ts. Runs in a fresh schema that it drops at the end.
 *
 *   node bench/store-postgres.ts                      # full run
 *   node bench/store-postgres.ts --scale 0.1          # quick
 *   node bench/store-postgres.ts --url postgres://…   # default: PSCHED_TEST_POSTGRES_URL, else the local test database
 */
const { values: opts } = parseArgs({
  options: {
    scale: { type: 'string', default: '1' },
    url: { type: 'string', default: process.env.PSCHED_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test' },
  },
});
const scale = Number(opts.scale);
const n = (count: number) => Math.max(1, Math.round(count * scale));
const url = opts.url;

const NOW = Date.now();
const TEXT = 'A scheduled message of a typical length, with an emoji 🎉 and a bit more text to be realistic.';

function message(scheduledAt = NOW + 3_600_000): NewMessage {
  return { id: uuidv7(), username: 'bench', message: TEXT, scheduledAt, idempotencyKey: null };
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

function percentile(sorted: number[], p: number): string {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!.toFixed(2);
}

async function benchInserts(store: DispatcherStore, label: string): Promise<void> {
  const singles = n(20_000);
  const singleMs = await concurrently(singles, 32, () => store.insert([message()], NOW));
  console.log(`  single inserts, 32 concurrent callers${label}: ${singles.toLocaleString('en-US')} in ${Math.round(singleMs)} ms = ${rate(singles, singleMs)}`);

  const singlesWithKey = n(20_000);
  let key = 0;
  const keyedMs = await concurrently(singlesWithKey, 32, () => store.insert([{ ...message(), idempotencyKey: `k${label}-${key++}` }], NOW));
  console.log(`  single inserts with idempotency keys${label}:   ${singlesWithKey.toLocaleString('en-US')} in ${Math.round(keyedMs)} ms = ${rate(singlesWithKey, keyedMs)}`);
}

async function benchDispatcher(): Promise<void> {
  await using schema = await createTestSchema(url);
  const store = await openPostgresDispatcherStore(url, { schema: schema.name });
  await store.migrate();

  await benchInserts(store, '');

  for (const callers of [1, 4]) {
    const batches = n(1_000);
    const batchMs = await concurrently(batches, callers, () => store.insert(Array.from({ length: 100 }, () => message()), NOW));
    console.log(`  batches of 100, ${callers} concurrent caller(s): ${(batches * 100).toLocaleString('en-US')} in ${Math.round(batchMs)} ms = ${rate(batches * 100, batchMs)}`);
  }

  // the engine's path for messages due now: claim, start, finish, in chunks of 1000
  const due = n(20_000);
  for (let done = 0; done < due; done += 1000) {
    await store.insert(Array.from({ length: Math.min(1000, due - done) }, () => message(NOW - 1)), NOW);
  }
  const drainStart = performance.now();
  for (;;) {
    const claimed = await store.claimDue('bench', NOW, NOW, NOW + 30_000, 1000);
    if (claimed.length === 0) break;
    const started = await store.startDelivery('bench', claimed.map((m) => ({ id: m.id, version: m.version })), NOW);
    await store.finishDeliveries('bench', started.map((m) => ({ id: m.id, outcome: 'delivered' as const, at: NOW })));
  }
  const drainMs = performance.now() - drainStart;
  console.log(`  claim + start + finish of ${due.toLocaleString('en-US')} due messages: ${Math.round(drainMs)} ms = ${rate(due, drainMs)}`);

  // what a due message waits for before its HTTP request leaves: one startDelivery round trip
  const rounds = n(500);
  const claimed = await (async () => {
    await store.insert(Array.from({ length: rounds }, () => message(NOW - 1)), NOW, { owner: 'bench', leaseExpiresAt: NOW + 60_000, dueBefore: NOW });
    return store.list({ status: 'scheduled', limit: rounds, after: { dueAt: NOW - 2, id: '' } });
  })();
  const latencies: number[] = [];
  for (const m of claimed) {
    const start = performance.now();
    await store.startDelivery('bench', [{ id: m.id, version: m.version }], NOW);
    latencies.push(performance.now() - start);
  }
  latencies.sort((a, b) => a - b);
  console.log(`  startDelivery of one message (asynchronous commit): p50 ${percentile(latencies, 50)} ms, p99 ${percentile(latencies, 99)} ms`);

  const countStart = performance.now();
  const counts = await store.countByStatus();
  console.log(`  countByStatus: ${(performance.now() - countStart).toFixed(1)} ms (${JSON.stringify(counts)})`);
  await store.close();

  // the same single inserts, each call its own statement: what grouping buys
  await using ungroupedSchema = await createTestSchema(url);
  const ungrouped = await openPostgresDispatcherStore(url, { schema: ungroupedSchema.name, groupInserts: false });
  await ungrouped.migrate();
  await benchInserts(ungrouped, ' (not grouped)');
  await ungrouped.close();
}

async function benchMain(groupInserts: boolean): Promise<void> {
  await using schema = await createTestSchema(url);
  const store = await openPostgresMainStore(url, { schema: schema.name, groupInserts });
  await store.migrate();
  const posts = n(20_000);
  const ms = await concurrently(posts, 32, () => {
    const id = uuidv7();
    return store.addPost({ id, messageId: id, username: 'bench', message: TEXT, postedAt: Date.now(), scheduledAt: NOW });
  });
  console.log(`  addPost, 32 concurrent callers${groupInserts ? '' : ' (not grouped)'}: ${posts.toLocaleString('en-US')} in ${Math.round(ms)} ms = ${rate(posts, ms)}`);
  if (groupInserts) {
    const listStart = performance.now();
    for (let i = 0; i < 100; i++) await store.listPosts({ limit: 50 });
    console.log(`  listPosts(50): ${((performance.now() - listStart) / 100).toFixed(2)} ms`);
  }
  await store.close();
}

console.log('PostgreSQL dispatcher store');
await benchDispatcher();
console.log('PostgreSQL main store');
await benchMain(true);
await benchMain(false);
