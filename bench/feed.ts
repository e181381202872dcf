import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { Pool } from 'undici';
import { cpuSeconds, cpuSplit, createBenchDatabase, freePort, splitByStalls, stallEvery } from './support.ts';

/**
 * `npm run bench:feed`: lateness as the feed's reader sees it. A real
 * `psched dispatcher` delivers into a real `psched main`, both started as a
 * user starts them (bin/psched.js, SQLite files, or PostgreSQL with
 * --store postgres); lateness is the main server's stored postedAt minus the
 * message's scheduledAt, read from its database after the run. The load
 * generator (this process) schedules in batches before the clock starts, so
 * during the measured window it only polls a count.
 *
 *   npm run bench:feed                         # 2,000 over 4 s, 20,000 over 5 s, drain of 20,000
 *   npm run bench:feed -- --store postgres
 *   npm run bench:feed -- --scale 0.1          # a quick smoke run
 *   npm run bench:feed -- --only feed-stall    # the main server stopped 50 ms every second
 *   npm run bench:feed -- --dispatcher-args="--pipelining 8"
 */
const { values: opts } = parseArgs({
  options: {
    store: { type: 'string', default: 'sqlite' },
    scale: { type: 'string', default: '1' },
    only: { type: 'string' },
    'node-args': { type: 'string', default: process.env.PSCHED_BENCH_NODE_ARGS ?? '' },
    // more flags for the dispatcher, e.g. --dispatcher-args="--pipelining 8 --concurrency 256"
    'dispatcher-args': { type: 'string', default: '' },
    // the feed-stall phase: the main server is stopped (SIGSTOP) this long, this often
    'stall-ms': { type: 'string', default: '50' },
    'stall-every-ms': { type: 'string', default: '1000' },
    'postgres-url': { type: 'string', default: process.env.PSCHED_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const scale = Number(opts.scale);
const n = (count: number) => Math.max(1, Math.round(count * scale));
const only = opts.only ? new Set(opts.only.split(',')) : undefined;
const wanted = (phase: string) => !only || only.has(phase);

const TOKEN = randomBytes(16).toString('hex');
const SECRET = randomBytes(32).toString('hex');
const root = join(import.meta.dirname, '..');
const children: ChildProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

/** CPU seconds per thread name (the event loop is "node"; V8's and libuv's helpers and SQLite's checkpointer have their own). */
function threadCpu(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      byName.set(name, (byName.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100);
    } catch {
      // the thread ended meanwhile
    }
  }
  return byName;
}

/** Read and write system calls a process has made so far (syscr, syscw of /proc/<pid>/io): work that does not depend on how busy the machine is. */
function syscalls(pid: number): [number, number] {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return [Number(/syscr: (\d+)/.exec(io)![1]), Number(/syscw: (\d+)/.exec(io)![1])];
}

function threadCpuSince(pid: number, before: Map<string, number>): string {
  return [...threadCpu(pid)].map(([name, s]) => [name, s - (before.get(name) ?? 0)] as const)
    .filter(([, s]) => s >= 0.01).sort((a, b) => b[1] - a[1]).map(([name, s]) => `${name} ${s.toFixed(2)}`).join(', ');
}

async function startService(kind: 'main' | 'dispatcher', port: number, flags: Record<string, string>): Promise<ChildProcess> {
  const nodeArgs = opts['node-args']!.split(' ').filter(Boolean);
  const args = Object.entries({ ...flags, port: String(port), host: '127.0.0.1', 'log-level': 'warn' }).flatMap(([flag, value]) => [`--${flag}`, value]);
  if (kind === 'dispatcher') args.push(...opts['dispatcher-args']!.split(' ').filter(Boolean));
  const child = spawn(process.execPath, [...nodeArgs, join(root, 'bin/psched.js'), kind, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  children.push(child);
  const client = new Pool(`http://127.0.0.1:${port}`);
  try {
    for (let i = 0; i < 300; i++) {
      if (child.exitCode !== null) throw new Error(`psched ${kind} exited with code ${child.exitCode}`);
      try {
        const res = await client.request({ path: '/healthz', method: 'GET' });
        await res.body.dump();
        if (res.statusCode === 200) return child;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`psched ${kind} did not start on port ${port}`);
  } finally {
    await client.close();
  }
}

/** The main server's posts as stored: how many, and postedAt - scheduledAt of each. */
interface FeedReader {
  count(): Promise<number>;
  /** Of the posts whose text starts with `label` and a space. */
  lateness(label: string): Promise<{ lateness: number[]; scheduledAt: number[]; lastPostedAt: number }>;
  close(): Promise<void>;
}

function sqliteFeed(file: string): FeedReader {
  const db = new DatabaseSync(file, { readOnly: true });
  return {
    count: async () => Number((db.prepare('SELECT count(*) AS c FROM posts').get() as { c: number }).c),
    lateness: async (label) => {
      const rows = db.prepare('SELECT posted_at - scheduled_at AS late, scheduled_at, posted_at FROM posts WHERE message LIKE ?').all(`${label} %`) as { late: number; scheduled_at: number; posted_at: number }[];
      return { lateness: rows.map((r) => r.late), scheduledAt: rows.map((r) => r.scheduled_at), lastPostedAt: Math.max(...rows.map((r) => r.posted_at)) };
    },
    close: async () => db.close(),
  };
}

function postgresFeed(url: string): FeedReader {
  const client = new pg.Client({ connectionString: url });
  const connected = client.connect();
  return {
    count: async () => {
      await connected;
      return Number((await client.query<{ c: string }>('SELECT count(*) AS c FROM posts')).rows[0]!.c);
    },
    lateness: async (label) => {
      await connected;
      const rows = (await client.query<{ late: string; scheduled_at: string; posted_at: string }>('SELECT posted_at - scheduled_at AS late, scheduled_at, posted_at FROM posts WHERE message LIKE $1', [`${label} %`])).rows;
      return { lateness: rows.map((r) => Number(r.late)), scheduledAt: rows.map((r) => Number(r.scheduled_at)), lastPostedAt: Math.max(...rows.map((r) => Number(r.posted_at))) };
    },
    close: () => client.end(),
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

async function main() {
  console.log(`psched feed benchmark: psched dispatcher -> psched main, store=${opts.store}, scale=${scale}, node ${process.version}`);
  const dir = mkdtempSync(join(tmpdir(), 'psched-bench-feed-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  let mainDb = join(dir, 'main.db');
  let dispatcherDb = join(dir, 'dispatcher.db');
  if (opts.store === 'postgres') {
    const database = await createBenchDatabase(opts['postgres-url']!, 'psched_bench_feed');
    mainDb = database.url;
    dispatcherDb = database.url;
    cleanups.push(database.drop);
  }

  const [mainPort, dispatcherPort] = [await freePort(), await freePort()];
  const mainProcess = await startService('main', mainPort, {
    db: mainDb, 'dispatcher-url': `http://127.0.0.1:${dispatcherPort}`, 'api-token': TOKEN, 'signing-secret': SECRET,
  });
  const dispatcherProcess = await startService('dispatcher', dispatcherPort, {
    db: dispatcherDb, 'main-url': `http://127.0.0.1:${mainPort}`, 'api-token': TOKEN, 'signing-secret': SECRET, 'max-buffered': '200000',
  });
  cleanups.push(async () => {
    for (const child of [dispatcherProcess, mainProcess]) {
      if (child.exitCode !== null) continue;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });
  const feed = opts.store === 'postgres' ? postgresFeed(mainDb) : sqliteFeed(mainDb);
  cleanups.push(() => feed.close());
  const client = new Pool(`http://127.0.0.1:${dispatcherPort}`, { connections: 4 });
  cleanups.push(() => client.close());

  let posted = 0;
  /** Schedules `total` messages (bodies built first), waits until the feed holds them all; returns their lateness. */
  async function run(total: number, dueAt: (i: number) => number, label: string, stall?: { everyMs: number; forMs: number }) {
    const bodies: string[] = [];
    for (let from = 0; from < total; from += 1000) {
      const items = [];
      for (let i = from; i < Math.min(total, from + 1000); i++) items.push({ username: 'bench', message: `${label} ${i}`, scheduledAt: new Date(dueAt(i)).toISOString() });
      bodies.push(JSON.stringify(items));
    }
    await Promise.all(bodies.map(async (body) => {
      const res = await client.request({ path: '/v1/messages/batch', method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body });
      const text = await res.body.text();
      if (res.statusCode !== 201) throw new Error(`batch answered ${res.statusCode}: ${text.slice(0, 200)}`);
    }));
    const firstDue = dueAt(0);
    if (Date.now() >= firstDue) throw new Error(`${label}: scheduling took past the first due time`);
    // CPU is counted from just before the first is due: the seconds of waiting before are idle, not delivery
    await new Promise((r) => setTimeout(r, firstDue - Date.now() - 20));
    const cpu = [dispatcherProcess.pid!, mainProcess.pid!].map(cpuSeconds);
    const systemBefore = [dispatcherProcess.pid!, mainProcess.pid!].map((pid) => cpuSplit(pid)[1]);
    const threadsBefore = [dispatcherProcess.pid!, mainProcess.pid!].map(threadCpu);
    const syscallsBefore = [dispatcherProcess.pid!, mainProcess.pid!].map(syscalls);
    const deadline = dueAt(total - 1) + 60_000;
    // the main server stopped now and then, from half a period after the first is due
    const stalls = stall && stallEvery(mainProcess.pid!, firstDue + stall.everyMs / 2, stall.everyMs, stall.forMs);
    let windows: [number, number][] = [];
    try {
      while ((await feed.count()) < posted + total) {
        if (Date.now() > deadline) throw new Error(`${label}: only ${(await feed.count()) - posted} of ${total} in the feed a minute after the last was due`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      windows = stalls?.end() ?? [];
    }
    const used = [dispatcherProcess.pid!, mainProcess.pid!].map((pid, i) => cpuSeconds(pid) - cpu[i]!);
    const system = [dispatcherProcess.pid!, mainProcess.pid!].map((pid, i) => cpuSplit(pid)[1] - systemBefore[i]!);
    console.log(`  (${label}: CPU dispatcher ${used[0]!.toFixed(2)} s of which system ${system[0]!.toFixed(2)} s; main ${used[1]!.toFixed(2)} s of which system ${system[1]!.toFixed(2)} s)`);
    const calls = [dispatcherProcess.pid!, mainProcess.pid!].map((pid, i) => syscalls(pid).map((count, j) => ((count - syscallsBefore[i]![j]!) / total).toFixed(2)));
    console.log(`  (${label}: system calls per message, reads/writes: dispatcher ${calls[0]!.join('/')}, main ${calls[1]!.join('/')})`);
    console.log(`  (${label}: by thread, dispatcher: ${threadCpuSince(dispatcherProcess.pid!, threadsBefore[0]!)}; main: ${threadCpuSince(mainProcess.pid!, threadsBefore[1]!)})`);
    posted += total;
    return { used, windows, ...(await feed.lateness(label)) };
  }

  // warm-up: compiled hot paths, open connections, prepared statements
  const warmUp = n(2000);
  const warmAt = Date.now() + 2000;
  await run(warmUp, (i) => warmAt + (i % 1000), 'warm-up');

  const rows: string[] = [];
  for (const [phase, total, spreadMs] of [['feed-small', n(2000), 4000], ['feed', n(20_000), 5000]] as const) {
    if (!wanted(phase)) continue;
    const start = Date.now() + 3000;
    const { used, lateness } = await run(total, (i) => start + Math.floor((i * spreadMs) / total), phase);
    const mine = lateness.sort((a, b) => a - b);
    const perMessage = (s: number) => `${Math.round((s * 1e6) / total)} µs`;
    console.log(`\n${phase}: ${total} due over ${spreadMs / 1000} s, in the feed ${mine.length}: lateness p50 ${percentile(mine, 50)} ms, p99 ${percentile(mine, 99)} ms, max ${mine.at(-1)} ms`);
    console.log(`  CPU per message: dispatcher ${perMessage(used[0]!)}, main server ${perMessage(used[1]!)}`);
    rows.push(`| ${total} due over ${spreadMs / 1000} s | ${percentile(mine, 50)} ms | ${percentile(mine, 99)} ms | ${mine.at(-1)} ms | ${perMessage(used[0]!)} | ${perMessage(used[1]!)} |`);
  }

  if (wanted('feed-stall')) {
    // issue 10 item 3: the main server stops 50 ms every second; only what is due during a stall may be late
    const [total, spreadMs, forMs, everyMs] = [n(20_000), 5000, Number(opts['stall-ms']), Number(opts['stall-every-ms'])];
    const start = Date.now() + 3000;
    const { used, lateness, scheduledAt, windows } = await run(total, (i) => start + Math.floor((i * spreadMs) / total), 'feed-stall', { everyMs, forMs });
    const { outside, during, afterwards } = splitByStalls(scheduledAt, lateness, windows);
    const perMessage = (s: number) => `${Math.round((s * 1e6) / total)} µs`;
    console.log(`\nfeed-stall: ${total} due over ${spreadMs / 1000} s, the main server stopped ${windows.map(([from, to]) => to - from).join(', ')} ms (every ${everyMs} ms)`);
    console.log(`  not due during a stall (${outside.length}): lateness p50 ${percentile(outside, 50)} ms, p99 ${percentile(outside, 99)} ms, max ${outside.at(-1)} ms`);
    console.log(`  due during a stall (${during.length}): lateness p50 ${percentile(during, 50)} ms, max ${during.at(-1)} ms`);
    console.log(`  the worst of those due after a stall ended, by how long after: ${afterwards}`);
    console.log(`  CPU per message: dispatcher ${perMessage(used[0]!)}, main server ${perMessage(used[1]!)}`);
    rows.push(`| ${total} due over ${spreadMs / 1000} s, main stopped ${forMs} ms every ${everyMs / 1000} s: not due during a stall | ${percentile(outside, 50)} ms | ${percentile(outside, 99)} ms | ${outside.at(-1)} ms | ${perMessage(used[0]!)} | ${perMessage(used[1]!)} |`);
  }

  if (wanted('ingest')) {
    // ingest capacity: everything due at one instant, posts per second until the last is in the feed (durably: the main server commits before its 2xx)
    const total = n(20_000);
    const dueAt = Date.now() + 3000;
    const { used, lastPostedAt } = await run(total, () => dueAt, 'ingest');
    const seconds = (lastPostedAt - dueAt) / 1000;
    console.log(`\ningest: ${total} due at one instant, all in the feed ${seconds.toFixed(2)} s later: ${Math.round(total / seconds)} posts/s`);
    rows.push(`| ${total} due at one instant | ingest ${Math.round(total / seconds)} posts/s | | all in ${seconds.toFixed(2)} s | ${Math.round((used[0]! * 1e6) / total)} µs | ${Math.round((used[1]! * 1e6) / total)} µs |`);
  }

  console.log('\n| load | p50 | p99 | max | dispatcher CPU/msg | main CPU/msg |\n|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of children) child.kill('SIGTERM');
    process.exit(130);
  });
}

try {
  await main();
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
