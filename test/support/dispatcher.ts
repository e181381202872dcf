import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import type { Clock } from '../../src/clock.ts';
import { DISPATCHER_OPTIONS, dispatcherConfig } from '../../src/config.ts';
import { createDispatcher, type Dispatcher } from '../../src/dispatcher/app.ts';
import type { HttpTimeouts } from '../../src/http.ts';
import type { DispatcherStore, StoredMessage } from '../../src/dispatcher/store.ts';

/**
 * A dispatcher for HTTP tests: its own temp SQLite file, silent logs, driven
 * in-process with `app.inject()`. The engine is not started unless the test
 * calls `listen()` or `engine.start()`. Dispose it (`await using`) to close
 * everything and delete the file.
 */
export interface TestDispatcher extends AsyncDisposable {
  dispatcher: Dispatcher;
  /** JSON request to the app; `token` adds the bearer header. */
  request(method: string, url: string, options?: { body?: unknown; token?: string; headers?: Record<string, string> }): Promise<LightMyRequestResponse>;
  /** Schedules messages (POST /v1/messages/batch) and returns them as stored. */
  schedule(...items: Record<string, unknown>[]): Promise<StoredMessage[]>;
}

export async function startTestDispatcher(
  options: Partial<Record<keyof typeof DISPATCHER_OPTIONS, string>> = {},
  deps: { clock?: Clock; store?: DispatcherStore; httpTimeouts?: Partial<HttpTimeouts>; logger?: { stream: { write(line: string): void } } } = {},
): Promise<TestDispatcher> {
  const dir = mkdtempSync(join(tmpdir(), 'psched-dispatcher-'));
  // a closed port by default: tests that deliver pass their receiver's URL; times in UTC whatever the host's zone
  const config = dispatcherConfig({ db: join(dir, 'dispatcher.db'), port: '0', mainUrl: 'http://127.0.0.1:9', timeZone: 'UTC', ...options }, {});
  let dispatcher: Dispatcher;
  try {
    dispatcher = await createDispatcher(config, { logger: false, ...deps });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const token = options.apiToken;

  const request: TestDispatcher['request'] = (method, url, { body, token: given, headers = {} } = {}) => {
    const allHeaders: Record<string, string> = { ...headers };
    if (given) allHeaders.authorization = `Bearer ${given}`;
    if (body !== undefined && typeof body !== 'string') allHeaders['content-type'] ??= 'application/json';
    return dispatcher.app.inject({
      method: method as 'GET',
      url,
      headers: allHeaders,
      payload: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  };

  return {
    dispatcher,
    request,
    async schedule(...items) {
      const response = await request('POST', '/v1/messages/batch', { body: items, token });
      if (response.statusCode !== 201 && response.statusCode !== 200) throw new Error(`schedule failed: ${response.statusCode} ${response.body}`);
      const ids = (response.json() as { id: string }[]).map((m) => m.id);
      return Promise.all(ids.map(async (id) => (await dispatcher.store.get(id))!));
    },
    async [Symbol.asyncDispose]() {
      try {
        await dispatcher.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Moves a scheduled message through the store the way an engine would, so a
 * test can put it in any status without timing: `delivering`, `delivered`,
 * `dead` (with `error`) or `expired` (never sent, with `error` as its last
 * error), at the instant `at` (default now). Uses its own owner id; the message must not be
 * claimed by the test dispatcher's engine (schedule it far ahead).
 */
export async function forceStatus(
  dispatcher: Dispatcher,
  id: string,
  status: 'delivering' | 'delivered' | 'dead' | 'expired',
  { error = 'main server answered 400', at = Date.now() }: { error?: string; at?: number } = {},
): Promise<void> {
  const { store } = dispatcher;
  // an owner of its own, so releasing its other claims never touches another forced message
  const owner = `test-owner-${id}`;
  const message = await store.get(id);
  if (!message) throw new Error(`no message ${id}`);
  const now = at;
  const claimed = await store.claimDue(owner, message.dueAt + 1, now, now + 600_000, 100_000);
  const mine = claimed.find((m) => m.id === id);
  if (!mine) throw new Error(`could not claim ${id} (claimed by the engine?)`);
  if (status === 'expired') {
    await store.expire(owner, [{ id, version: mine.version, error }], now);
    await store.releaseClaims(owner);
    return;
  }
  await store.startDelivery(owner, [{ id, version: mine.version }], now);
  // (a 'delivering' message keeps the other messages of this claim leased to the test owner)
  if (status === 'delivering') return;
  await store.finishDeliveries(owner, [status === 'delivered' ? { id, outcome: 'delivered', at: now } : { id, outcome: 'dead', at: now, error }]);
  // hand back the other messages this claim picked up
  await store.releaseClaims(owner);
}
