import { Worker } from 'node:worker_threads';
import type { CheckpointReport } from './checkpoint-worker.ts';

/**
 * Copies the WAL back into the database file (a checkpoint) on a thread of its
 * own. node:sqlite is synchronous: a checkpoint run by the writing connection
 * (SQLite's autocheckpoint, inside a COMMIT) copies pages and fsyncs twice on
 * the event loop, holding every HTTP request and due delivery meanwhile.
 * Measured with 400,000 messages scheduled in batches of 100: the event loop
 * was busy 20% less (4.5 s instead of 5.6 s) with checkpoints on this thread.
 *
 * The writer keeps a large autocheckpoint (./connection.ts) only as a safety
 * valve for a WAL this thread cannot keep up with. `nudge()` after commits
 * asks for a checkpoint; at most one runs at a time, and at most one starts
 * every CHECKPOINT_INTERVAL_MS.
 */

/**
 * A checkpoint fsyncs the WAL and the database file, and while the WAL is
 * being written back a COMMIT appending to it may wait for the disk (the
 * kernel holds pages under writeback). A few checkpoints a second copy large
 * runs at once instead of a few pages after every commit.
 */
const CHECKPOINT_INTERVAL_MS = 200;

/**
 * The WAL starts over from its beginning only when a write begins with every
 * frame in it copied. Under a steady stream of commits (deliveries: one every
 * millisecond or so) a checkpoint every 200 ms never catches up with the last
 * commit, and the WAL grew until the writer's safety valve copied the rest on
 * the event loop: a 30-40 ms stall (20,000 deliveries over 5 s: 67 MB of WAL
 * after 3 s, then every message due during the stall was late). Past this
 * size (16 MiB), checkpoints run back to back: each copies what the commits
 * of the last one added, a few pages, until one ends with nothing left and
 * the next commit starts the WAL over.
 */
const CATCH_UP_PAGES = 4096;

export class Checkpointer {
  #worker: Worker;
  #running = false;
  #wanted = false;
  #failed = false;
  #lastStarted = -Infinity;
  /** The WAL is large: checkpoint after every commit until it starts over (see CATCH_UP_PAGES). */
  #catchingUp = false;
  #timer: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;
  #exited: Promise<void>;
  #idleWaiters: (() => void)[] = [];

  constructor(path: string) {
    this.#worker = new Worker(new URL('./checkpoint-worker.ts', import.meta.url), {
      workerData: { path },
      // none of the parent's: some are refused in a worker (--input-type, the test runner's)
      execArgv: [],
    });
    // a process with nothing else to do may exit while this thread idles
    this.#worker.unref();
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()));
    this.#worker.on('message', (report: CheckpointReport) => {
      this.#running = false;
      if (report.log >= CATCH_UP_PAGES) this.#catchingUp = true;
      else if (report.log >= 0) this.#catchingUp = false;
      if (this.#wanted) this.nudge();
      this.#wakeIdleWaiters();
    });
    this.#worker.on('error', (err) => {
      // the writer's autocheckpoint still bounds the WAL: warn and carry on without this thread
      process.emitWarning(`SQLite checkpoint thread failed: ${err.message}`);
      this.#failed = true;
      this.#running = false;
      this.#wanted = false;
      this.#wakeIdleWaiters();
    });
  }

  /** Asks for a checkpoint of what has been committed so far. */
  nudge(): void {
    if (this.#closed || this.#failed || this.#timer) return;
    if (this.#running) {
      this.#wanted = true;
      return;
    }
    const wait = this.#catchingUp ? 0 : this.#lastStarted + CHECKPOINT_INTERVAL_MS - performance.now();
    if (wait > 0) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.nudge();
      }, wait);
      this.#timer.unref();
      return;
    }
    this.#wanted = false;
    this.#running = true;
    this.#lastStarted = performance.now();
    this.#worker.postMessage('checkpoint');
  }

  /** Resolves once no checkpoint is running or waiting to run. */
  idle(): Promise<void> {
    const promise = new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    this.#wakeIdleWaiters();
    return promise;
  }

  #wakeIdleWaiters(): void {
    if (this.#running || this.#wanted || this.#timer) return;
    for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  /** Stops the thread after the checkpoint it is running, if any. */
  close(): Promise<void> {
    if (!this.#closed) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#wanted = false;
      // waiting for the thread to finish keeps the process alive
      this.#worker.ref();
      this.#worker.postMessage('close');
      this.#closed = this.#exited;
    }
    return this.#closed;
  }
}
