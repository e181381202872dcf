import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import type { Clock } from '../../src/clock.ts';
import { MAIN_OPTIONS, mainConfig } from '../../src/config.ts';
import { createMainServer, type MainServer } from '../../src/main/app.ts';
import type { HttpTimeouts } from '../../src/http.ts';
import type { MainStore } from '../../src/main/store.ts';
import { signHeader } from '../../src/protocol/signing.ts';

/**
 * A main server for HTTP tests: its own temp SQLite file (or the store given), silent logs, driven
 * in-process with `app.inject()` (or `listen()` for streams and real
 * dispatchers). Dispose it (`await using`) to close everything and delete the file.
 */
export interface TestMain extends AsyncDisposable {
  server: MainServer;
  request(method: string, url: string, options?: RequestOptions): Promise<LightMyRequestResponse>;
  /** A form post (application/x-www-form-urlencoded), as a browser without JavaScript sends it. */
  form(url: string, fields: Record<string, string>, options?: { headers?: Record<string, string> }): Promise<LightMyRequestResponse>;
  /** POST /v1/posts as a dispatcher delivers: the exact body, signed with `secret` at `at` (default now). */
  deliver(payload: unknown, options?: { secret?: string; at?: number; header?: string }): Promise<LightMyRequestResponse>;
}

export interface RequestOptions {
  body?: unknown;
  token?: string;
  headers?: Record<string, string>;
}

export async function startTestMain(
  options: Partial<Record<keyof typeof MAIN_OPTIONS, string>> = {},
  deps: { clock?: Clock; dispatcherTimeoutMs?: number; store?: MainStore; httpTimeouts?: Partial<HttpTimeouts>; logger?: { stream: { write(line: string): void } } } = {},
): Promise<TestMain> {
  const dir = mkdtempSync(join(tmpdir(), 'psched-main-'));
  // a closed port by default: tests that schedule pass their dispatchers' URLs
  // times in UTC whatever the host's zone (legacy endpoints included: --legacy-timezone follows --timezone)
  const config = mainConfig({ db: join(dir, 'main.db'), port: '0', dispatcherUrls: 'http://127.0.0.1:9', timeZone: 'UTC', ...options }, {});
  let server: MainServer;
  try {
    server = await createMainServer(config, { logger: false, ...deps });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const request: TestMain['request'] = (method, url, { body, token, headers = {} } = {}) => {
    const allHeaders: Record<string, string> = { ...headers };
    if (token) allHeaders.authorization = `Bearer ${token}`;
    if (body !== undefined && typeof body !== 'string') allHeaders['content-type'] ??= 'application/json';
    return server.app.inject({
      method: method as 'GET',
      url,
      headers: allHeaders,
      payload: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  };

  return {
    server,
    request,
    form(url, fields, { headers = {} } = {}) {
      return server.app.inject({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        payload: new URLSearchParams(fields).toString(),
      });
    },
    deliver(payload, { secret, at = Date.now(), header } = {}) {
      const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      const signature = header ?? (secret ? signHeader(secret, at, body) : undefined);
      if (signature) headers['psched-signature'] = signature;
      return server.app.inject({ method: 'POST', url: '/v1/posts', headers, payload: body });
    },
    async [Symbol.asyncDispose]() {
      try {
        await server.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** A URL on 127.0.0.1 where nothing listens: connections to it are refused. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

export const basicAuth = (password: string) => `Basic ${Buffer.from(`anyone:${password}`).toString('base64')}`;

let counter = 0;

/** A delivery payload as the dispatcher sends it; a fresh id unless given. */
export function deliveryPayload(fields: Partial<{ id: string; username: string; message: string; scheduledAt: string; attempt: number }> = {}) {
  counter++;
  return {
    id: `01900000-0000-7000-8000-${String(counter).padStart(12, '0')}`,
    username: 'Ann',
    message: `hello ${counter}`,
    scheduledAt: '2030-01-01T00:00:00.000Z',
    attempt: 1,
    ...fields,
  };
}
