import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import pg from 'pg';

/** What both benchmarks (run.ts, feed.ts) need: ports, CPU readings, a database of their own. */

/** A TCP port on 127.0.0.1 that was free a moment ago: a leftover process on a fixed port once answered for the new one. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** User and system CPU seconds a process has used so far (utime, stime of stat(5), in 1/100 s). */
export function cpuSplit(pid: number): [number, number] {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return [Number(fields[11]) / 100, Number(fields[12]) / 100];
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const [user, system] = cpuSplit(pid);
  return user + system;
}

/** Creates a fresh PostgreSQL database next to `adminUrl`; resolves with its URL and the function that drops it. */
export async function createBenchDatabase(adminUrl: string, prefix: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const dropper = new pg.Client({ connectionString: adminUrl });
      await dropper.connect();
      await dropper.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await dropper.end();
    },
  };
}

/** When a process was stopped: [stopped, continued] in epoch ms. */
export type StallWindow = [number, number];

/**
 * Stops a process for `forMs` every `everyMs` (SIGSTOP, then SIGCONT), from
 * `firstAt` on: a receiver's hiccup (a GC pause, a stalled VM) as the
 * dispatcher sees it. The kernel still takes what is sent to it meanwhile.
 * `end()` stops stalling (continuing the process if it is stopped) and
 * returns the windows it was stopped in.
 */
export function stallEvery(pid: number, firstAt: number, everyMs: number, forMs: number): { end(): StallWindow[] } {
  const windows: StallWindow[] = [];
  let timer: NodeJS.Timeout | undefined;
  let stopped: number | undefined;
  const resume = () => {
    process.kill(pid, 'SIGCONT');
    windows.push([stopped!, Date.now()]);
    stopped = undefined;
  };
  const stall = (at: number) => {
    timer = setTimeout(() => {
      stopped = Date.now();
      process.kill(pid, 'SIGSTOP');
      timer = setTimeout(() => {
        resume();
        stall(at + everyMs);
      }, forMs);
    }, Math.max(0, at - Date.now()));
  };
  stall(firstAt);
  return {
    end() {
      clearTimeout(timer);
      if (stopped !== undefined) resume();
      return windows;
    },
  };
}

/**
 * Lateness of the messages due outside every stall window (what a stall must
 * not delay) and of those due within one, from each message's due time and
 * lateness, both sorted.
 */
export function splitByStalls(dueTimes: number[], lateness: number[], windows: StallWindow[]): { outside: number[]; during: number[]; afterwards: string } {
  const outside: number[] = [];
  const during: number[] = [];
  // the worst lateness of those due 0-10, 10-20, 20-50, 50-100 and 100-200 ms after a stall ended: how long its wake lasts
  const bounds = [10, 20, 50, 100, 200];
  const worstAfter = bounds.map(() => -Infinity);
  let worstBefore = -Infinity;
  for (let i = 0; i < dueTimes.length; i++) {
    const due = dueTimes[i]!;
    if (windows.some(([from, to]) => due >= from && due <= to)) {
      during.push(lateness[i]!);
      continue;
    }
    outside.push(lateness[i]!);
    // due just before a stall: in flight when the receiver stopped, as late as the stall is long whatever the sender does
    if (windows.some(([from]) => due < from && due >= from - 10)) worstBefore = Math.max(worstBefore, lateness[i]!);
    const since = Math.min(...windows.map(([, to]) => (due > to ? due - to : Infinity)));
    const bucket = bounds.findIndex((bound) => since < bound);
    if (bucket >= 0) worstAfter[bucket] = Math.max(worstAfter[bucket]!, lateness[i]!);
  }
  const afterwards = `${worstBefore === -Infinity ? '' : `(due 0-10 ms before one: ${worstBefore}) `}` + bounds.map((bound, i) => `${i === 0 ? 0 : bounds[i - 1]}-${bound} ms: ${worstAfter[i] === -Infinity ? '-' : worstAfter[i]}`).join(', ');
  return { outside: outside.sort((a, b) => a - b), during: during.sort((a, b) => a - b), afterwards };
}
