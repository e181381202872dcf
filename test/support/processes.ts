import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Real psched processes for system tests: `node bin/psched.js …` children on
 * 127.0.0.1, each with its own temp data folder, waited for through /healthz,
 * killed with SIGKILL or stopped with a signal, and always cleaned up.
 *
 *   const procs = new Processes();            // one per test file
 *   after(() => procs.cleanup());             // kills whatever is left, deletes the temp dirs
 *   const dir = procs.tempDir();
 *   const dispatcher = await procs.startService('dispatcher', { db: join(dir, 'd.db'), 'main-url': … });
 *   await dispatcher.kill9();
 *   const again = await procs.startService('dispatcher', { ...same options, port: String(dispatcher.port) });
 */

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const PSCHED_BIN = join(REPO_ROOT, 'bin', 'psched.js');

/** A child's output kept for failure messages: the tail is what explains a crash. */
const OUTPUT_KEPT = 64 * 1024;

/**
 * How long a service may take to answer /healthz. Node compiles the
 * TypeScript sources on each start: under a second on an idle machine, a few
 * on this shared 2-core box while other suites run.
 */
const START_TIMEOUT_MS = 20_000;

/** How long a signalled child may take to exit before the test fails. */
const EXIT_TIMEOUT_MS = 15_000;

/**
 * The environment of every child: the parent's minus every PSCHED_ variable
 * (a developer's PSCHED_MAIN_PORT or PSCHED_DISPATCHER_DB must not leak into a test), quiet
 * logs unless PSCHED_TEST_LOG_LEVEL asks for more.
 */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('PSCHED_')) env[key] = value;
  env.PSCHED_LOG_LEVEL = process.env.PSCHED_TEST_LOG_LEVEL ?? 'warn';
  return { ...env, ...extra };
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it). */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}

/**
 * `count` distinct free ports, held open together while they are picked: ports
 * picked one after another can repeat (a pool test's main server once got the
 * port just picked for one of its dispatchers, which then answered 404 for the
 * dispatcher's own routes).
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    await Promise.all(servers.map((server) => new Promise<void>((resolvePromise, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolvePromise);
    })));
    return servers.map((server) => (server.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolvePromise) => (server.listening ? server.close(() => resolvePromise()) : resolvePromise()))));
  }
}

export interface WaitOptions {
  timeoutMs?: number;
  /** Time between checks; default 25 ms. */
  intervalMs?: number;
  /** Says what was awaited, for the timeout message (a function is called at the timeout: for output seen by then). */
  what?: string | (() => string);
}

/** Thrown by a `waitFor` check to stop waiting at once (a child died): no use polling on. */
export class GiveUp extends Error {
  override name = 'GiveUp';
}

/**
 * Bounded polling: calls `check` until it returns something other than
 * undefined/false (which it resolves with), or fails after `timeoutMs` with
 * the last value or error seen; a GiveUp thrown by `check` fails it at once.
 * For conditions observable only over HTTP.
 */
export async function waitFor<T>(check: () => Promise<T | undefined | false> | T | undefined | false, options: WaitOptions = {}): Promise<T> {
  const { timeoutMs = 10_000, intervalMs = 25, what = 'condition' } = options;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (err) {
      if (err instanceof GiveUp) throw err;
      last = err;
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what} (last: ${detail})`);
    }
    await new Promise((resolvePromise) => setTimeout(resolvePromise, intervalMs));
  }
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running child process of psched. */
export class PschedProcess {
  readonly child: ChildProcess;
  readonly args: readonly string[];
  /** Resolves once the child has exited (whatever the reason). */
  readonly exited: Promise<Exit>;
  #output = '';
  #exit: Exit | undefined;

  constructor(args: readonly string[], options: { env?: Record<string, string>; cwd?: string } = {}) {
    this.args = args;
    this.child = spawn(process.execPath, [PSCHED_BIN, ...args], {
      cwd: options.cwd ?? REPO_ROOT,
      env: childEnv(options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => {
      this.#output = (this.#output + chunk.toString('utf8')).slice(-OUTPUT_KEPT);
    };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    this.exited = new Promise((resolvePromise) => {
      this.child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        resolvePromise(this.#exit);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  /** Everything the child wrote to stdout and stderr (the last 64 KiB). */
  get output(): string {
    return this.#output;
  }

  /** Resolves once the output contains `text`; fails if the child exits first or after timeoutMs. */
  async waitForOutput(text: string, timeoutMs = START_TIMEOUT_MS): Promise<void> {
    await waitFor(() => {
      if (this.#output.includes(text)) return true;
      if (!this.running) throw new GiveUp(`psched ${this.args[0]} exited (${JSON.stringify(this.#exit)}) before printing ${JSON.stringify(text)}:\n${this.#output}`);
      return false;
    }, { timeoutMs, intervalMs: 20, what: () => `psched ${this.args[0]} to print ${JSON.stringify(text)}; its output:\n${this.#output}` });
  }

  /** Sends `signal` and waits for the exit; fails if it takes longer than EXIT_TIMEOUT_MS. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<Exit> {
    if (this.running) this.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`psched ${this.args[0]} did not exit within ${EXIT_TIMEOUT_MS} ms of ${signal}:\n${this.#output}`)), EXIT_TIMEOUT_MS);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** kill -9: the process dies at once, no shutdown code runs. */
  kill9(): Promise<Exit> {
    return this.stop('SIGKILL');
  }
}

/** A psched service (dispatcher or main) that answers on `url`. */
export class ServiceProcess extends PschedProcess {
  readonly kind: 'dispatcher' | 'main';
  readonly port: number;
  readonly url: string;
  readonly options: Readonly<Record<string, string>>;

  constructor(kind: 'dispatcher' | 'main', port: number, options: Record<string, string>, env?: Record<string, string>) {
    const flags = Object.entries({ ...options, port: String(port), host: '127.0.0.1' }).flatMap(([flag, value]) => [`--${flag}`, value]);
    super([kind, ...flags], { env });
    this.kind = kind;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.options = options;
  }

  /** Resolves when GET /healthz answers 200; fails with the child's output if it exits or takes too long. */
  async ready(): Promise<this> {
    await waitHealthy(this.url, this);
    return this;
  }
}

/** Polls `${url}/healthz` until it answers 200; `process`, if given, must stay alive meanwhile. */
export async function waitHealthy(url: string, process?: PschedProcess): Promise<void> {
  await waitFor(async () => {
    if (process && !process.running) {
      throw new GiveUp(`psched ${process.args[0]} exited before it was healthy:\n${process.output}`);
    }
    try {
      const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      return response.status === 200;
    } catch {
      return false;
    }
  }, { timeoutMs: START_TIMEOUT_MS, intervalMs: 50, what: () => `${url}/healthz${process ? `; the process's output:\n${process.output}` : ''}` });
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The children and temp folders of one test file. `cleanup()` (in `after`)
 * kills every child still running and deletes the folders; an exit handler
 * SIGKILLs leftovers even when the test process dies before `after` runs.
 */
export class Processes {
  #children = new Set<PschedProcess>();
  #dirs: string[] = [];
  #onExit = () => {
    for (const child of this.#children) if (child.running) child.child.kill('SIGKILL');
  };

  constructor() {
    process.on('exit', this.#onExit);
  }

  /** A fresh folder under the OS temp dir, deleted by cleanup(). */
  tempDir(prefix = 'psched-system-'): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.#dirs.push(dir);
    return dir;
  }

  /**
   * Starts `psched dispatcher|main` with `options` as flags (flag name without
   * dashes => value) on `port` (default: a free one), and waits for /healthz.
   */
  async startService(kind: 'dispatcher' | 'main', options: Record<string, string>, port?: number, env?: Record<string, string>): Promise<ServiceProcess> {
    const service = this.track(new ServiceProcess(kind, port ?? (await freePort()), options, env));
    return service.ready();
  }

  /** Starts the same service again on its port with its options (after a kill), and waits for /healthz. */
  restart(service: ServiceProcess): Promise<ServiceProcess> {
    if (service.running) throw new Error(`psched ${service.kind} on ${service.url} is still running`);
    return this.startService(service.kind, { ...service.options }, service.port);
  }

  /** Starts any psched command; the caller waits for whatever it needs. */
  spawn(args: readonly string[], options: { env?: Record<string, string>; cwd?: string } = {}): PschedProcess {
    return this.track(new PschedProcess(args, options));
  }

  /** Runs a short psched command (schedule, scheduled, cancel) to completion. */
  async run(args: readonly string[], options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
    const child = this.spawn(args, options);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
    let timer: NodeJS.Timeout | undefined;
    const timeoutMs = options.timeoutMs ?? START_TIMEOUT_MS;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        child.child.kill('SIGKILL');
        reject(new Error(`psched ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${child.output}`));
      }, timeoutMs);
    });
    try {
      const { code } = await Promise.race([child.exited, timeout]);
      return { code, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') };
    } finally {
      clearTimeout(timer);
      this.#children.delete(child);
    }
  }

  track<T extends PschedProcess>(child: T): T {
    this.#children.add(child);
    void child.exited.then(() => this.#children.delete(child));
    return child;
  }

  /** SIGKILLs every child still running, waits for them, deletes the temp folders. */
  async cleanup(): Promise<void> {
    const running = [...this.#children].filter((child) => child.running);
    for (const child of running) child.child.kill('SIGKILL');
    await Promise.all(running.map((child) => child.exited));
    this.#children.clear();
    for (const dir of this.#dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
    process.off('exit', this.#onExit);
  }
}

/** A JSON request to a service; the parsed answer (null when empty). */
export async function requestJson(
  method: string,
  url: string,
  options: { body?: unknown; token?: string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let payload: string | undefined;
  if (options.body !== undefined) {
    payload = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const response = await fetch(url, { method, headers, body: payload, signal: AbortSignal.timeout(options.timeoutMs ?? 10_000) });
  const text = await response.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  return { status: response.status, body, headers: response.headers };
}

/**
 * Runs `task(i)` for i in 0..count-1 with at most `concurrency` at once, like
 * a client with that many connections; resolves with every outcome in order.
 */
export async function inParallel<T>(count: number, concurrency: number, task: (i: number) => Promise<T>): Promise<PromiseSettledResult<T>[]> {
  const results: PromiseSettledResult<T>[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      try {
        results[i] = { status: 'fulfilled', value: await task(i) };
      } catch (reason) {
        results[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}
