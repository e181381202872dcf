import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { Processes, freePorts, requestJson, waitFor, type ServiceProcess } from './processes.ts';
import { createTestSchema, type TestSchema } from './postgres.ts';

/**
 * A pool of real `psched dispatcher` processes on one PostgreSQL schema,
 * delivering to a real `psched main` process through a recording proxy, for
 * the pool tests (test/pool-*.test.ts):
 *
 *   dispatcher d0 ─┐
 *   dispatcher d1 ─┼─> proxy /d1/v1/posts ──> main /v1/posts (feed, dedupes by message id)
 *   dispatcher d2 ─┘   (records who sent what, when, and the main server's answer)
 *
 * Each dispatcher gets its own prefix in --main-url, so the proxy knows which
 * one sent each delivery, even after it died.
 */

export interface WireDelivery {
  /** The dispatcher that sent it (its name, e.g. "d1"). */
  via: string;
  id: string;
  attempt: number;
  scheduledAt: number;
  /** Date.now() when the proxy had the request's headers (the sender had begun sending it). */
  headersAt: number;
  /** Date.now() when the proxy had the whole request. */
  receivedAt: number;
  /** The main server's answer: 201 new post, 200 already in the feed; 502 when it could not be reached; 0 until it answers. */
  status: number;
  /** Date.now() when the main server's answer came back (0 until then). */
  answeredAt: number;
  /** The sender's port: deliveries on one keep-alive connection share it. */
  remotePort: number;
}

export interface DeliveryProxy {
  readonly url: string;
  /** Every delivery seen, in arrival order. */
  readonly deliveries: WireDelivery[];
  /** The --main-url to give dispatcher `name`. */
  mainUrlFor(name: string): string;
  close(): Promise<void>;
}

/** Forwards `POST /<name>/v1/posts` byte for byte (the signature covers the body) to `targetUrl`/v1/posts and records it. */
export async function startDeliveryProxy(targetUrl: string, port = 0): Promise<DeliveryProxy> {
  const deliveries: WireDelivery[] = [];
  // as many connections as the dispatchers may open towards us, so the proxy never queues them
  const upstream = new Pool(targetUrl, { connections: 128 });
  const server: Server = createServer((req, res) => {
    const headersAt = Date.now();
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const receivedAt = Date.now();
      const body = Buffer.concat(chunks);
      const match = /^\/([\w-]+)(\/v1\/posts)$/.exec(req.url ?? '');
      if (req.method !== 'POST' || !match) {
        res.writeHead(404).end();
        return;
      }
      const payload = JSON.parse(body.toString('utf8')) as { id: string; attempt: number; scheduledAt: string };
      const record: WireDelivery = {
        via: match[1]!, id: payload.id, attempt: payload.attempt, scheduledAt: Date.parse(payload.scheduledAt), headersAt, receivedAt, status: 0, answeredAt: 0, remotePort: req.socket.remotePort ?? 0,
      };
      deliveries.push(record);
      const headers: Record<string, string> = {};
      for (const name of ['content-type', 'idempotency-key', 'psched-signature']) {
        const value = req.headers[name];
        if (typeof value === 'string') headers[name] = value;
      }
      upstream.request({ method: 'POST', path: match[2]!, headers, body }).then(
        async (answer) => {
          const text = await answer.body.text();
          record.status = answer.statusCode;
          record.answeredAt = Date.now();
          res.writeHead(answer.statusCode, { 'content-type': 'application/json' }).end(text);
        },
        (err: unknown) => {
          record.status = 502;
          record.answeredAt = Date.now();
          res.writeHead(502, { 'content-type': 'text/plain' }).end(`proxy: ${(err as Error).message}`);
        },
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    deliveries,
    mainUrlFor: (name) => `${url}/${name}`,
    async close() {
      if (server.listening) {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
      }
      await upstream.destroy();
    },
  };
}

export interface PoolOptions {
  /** How many dispatcher processes. */
  dispatchers: number;
  /** Extra flags for every dispatcher (lease, horizon, concurrency…). */
  dispatcherFlags?: Record<string, string>;
  /** More flags for dispatcher `index` only. */
  flagsFor?: (index: number) => Record<string, string>;
}

/** The processes of one pool test: a schema, a main server, a proxy, N dispatchers. */
export class TestPool {
  readonly procs = new Processes();
  readonly token = randomBytes(16).toString('hex');
  readonly secret = randomBytes(32).toString('hex');
  schema!: TestSchema;
  main!: ServiceProcess;
  proxy!: DeliveryProxy;
  /** Index i is dispatcher `d${i}`; a restarted one replaces its entry. */
  dispatchers: ServiceProcess[] = [];
  #postgresUrl: string;

  constructor(postgresUrl: string) {
    this.#postgresUrl = postgresUrl;
  }

  /** The --db of every process: the test's schema through the URL's `schema` parameter. */
  get db(): string {
    const url = new URL(this.#postgresUrl);
    url.searchParams.set('schema', this.schema.name);
    return url.toString();
  }

  async start(options: PoolOptions): Promise<this> {
    this.schema = await createTestSchema(this.#postgresUrl);
    // dispatchers and main on free ports; the main server learns the dispatchers' URLs up front
    // every port at once, so the main server or the proxy cannot be given one picked for a dispatcher
    const [mainPort, proxyPort, ...ports] = await freePorts(options.dispatchers + 2);
    this.main = await this.procs.startService('main', {
      db: this.db,
      'dispatcher-url': ports.map((port) => `http://127.0.0.1:${port}`).join(','),
      'api-token': this.token,
      'signing-secret': this.secret,
    }, mainPort);
    this.proxy = await startDeliveryProxy(this.main.url, proxyPort);
    // one at a time: migrations take an advisory lock anyway, and the 2 cores compile TypeScript faster one by one
    for (const [i, port] of ports.entries()) {
      this.dispatchers.push(await this.procs.startService('dispatcher', {
        db: this.db,
        'main-url': this.proxy.mainUrlFor(`d${i}`),
        'api-token': this.token,
        'signing-secret': this.secret,
        ...options.dispatcherFlags,
        ...options.flagsFor?.(i),
      }, port));
    }
    return this;
  }

  /** Starts dispatcher `index` again (a new owner) on its port with its flags. */
  async restart(index: number): Promise<ServiceProcess> {
    this.dispatchers[index] = await this.procs.restart(this.dispatchers[index]!);
    return this.dispatchers[index]!;
  }

  /** Schedules through dispatcher `index` (POST /v1/messages/batch, 1,000 at most); returns the ids in order. */
  async schedule(index: number, items: { message: string; scheduledAt: number }[]): Promise<string[]> {
    const answer = await requestJson('POST', `${this.dispatchers[index]!.url}/v1/messages/batch`, {
      token: this.token,
      body: items.map((item) => ({ username: 'pool', message: item.message, scheduledAt: new Date(item.scheduledAt).toISOString() })),
      timeoutMs: 30_000,
    });
    if (answer.status !== 201) throw new Error(`scheduling through d${index} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    return (answer.body as { id: string }[]).map((message) => message.id);
  }

  /**
   * Sends `perDispatcher` messages due now through each dispatcher and waits
   * until the main server has them all. Fresh processes deliver the first few
   * hundred slowly (connections to open, code to compile, statements to
   * prepare), which would put a timed burst behind from its start. Returns the ids.
   */
  async warmUp(perDispatcher: number): Promise<string[]> {
    const now = Date.now();
    const ids = (await Promise.all(this.dispatchers.map((_, d) =>
      this.schedule(d, Array.from({ length: perDispatcher }, (_, i) => ({ message: `warm-up ${d}.${i}`, scheduledAt: now })))))).flat();
    await waitFor(() => {
      const accepted = acceptedIds(this.proxy);
      return ids.every((id) => accepted.has(id));
    }, { timeoutMs: 30_000, intervalMs: 20, what: `the ${ids.length} warm-up messages in the feed` });
    return ids;
  }

  /** Every post of the main server's feed (GET /v1/posts, page by page). */
  async feed(): Promise<{ messageId: string | null; postedAt: string; scheduledAt: string | null }[]> {
    const posts: { messageId: string | null; postedAt: string; scheduledAt: string | null }[] = [];
    let cursor: string | null = null;
    do {
      const query: string = new URLSearchParams({ limit: '200', ...(cursor ? { cursor } : {}) }).toString();
      const page = await requestJson('GET', `${this.main.url}/v1/posts?${query}`);
      if (page.status !== 200) throw new Error(`GET /v1/posts answered ${page.status}`);
      posts.push(...(page.body.items as typeof posts));
      cursor = page.body.nextCursor as string | null;
    } while (cursor);
    return posts;
  }

  /** Kills whatever runs, closes the proxy, drops the schema. */
  async cleanup(): Promise<void> {
    await this.procs.cleanup();
    await this.proxy?.close();
    await this.schema?.drop();
  }
}

/** Ids the main server has accepted (answered 2xx) so far. */
export function acceptedIds(proxy: DeliveryProxy): Set<string> {
  const ids = new Set<string>();
  for (const delivery of proxy.deliveries) if (delivery.status >= 200 && delivery.status < 300) ids.add(delivery.id);
  return ids;
}

/** Per message id, the deliveries the proxy saw, in arrival order. */
export function deliveriesById(proxy: DeliveryProxy): Map<string, WireDelivery[]> {
  const byId = new Map<string, WireDelivery[]>();
  for (const delivery of proxy.deliveries) {
    const list = byId.get(delivery.id);
    if (list) list.push(delivery);
    else byId.set(delivery.id, [delivery]);
  }
  return byId;
}

/** The p-quantile (0..1) of `values` (sorted copy); NaN when empty. */
export function quantile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}

/**
 * A dispatcher that stores but does not answer: a front that forwards every
 * request to a real dispatcher and, while `stalling`, holds its answer back
 * (the client sees a timeout), as a dispatcher does whose disk or event loop
 * stalls after the commit. Tests await `settled()` rather than sleep to know
 * that the dispatcher has done what it was sent.
 */
export interface StallingFront extends AsyncDisposable {
  readonly url: string;
  /** Every request forwarded, in arrival order, with the dispatcher's status (0 until it answered). */
  readonly forwarded: { method: string; path: string; status: number; held: boolean }[];
  /** Whether the answers to requests arriving from now on are held back. */
  stalling: boolean;
  /** Resolves once the dispatcher has answered every request forwarded so far. */
  settled(): Promise<void>;
  close(): Promise<void>;
}

/** `methods`: only requests with these methods stall (default: all), e.g. ['POST'] so a page's listing still answers. */
export async function startStallingFront(dispatcherUrl: string, options: { stalling?: boolean; methods?: string[] } = {}): Promise<StallingFront> {
  const upstream = new Pool(dispatcherUrl, { connections: 8 });
  const pending = new Set<Promise<void>>();
  const forwarded: StallingFront['forwarded'] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const method = req.method ?? 'GET';
      const record = { method, path: req.url ?? '/', status: 0, held: front.stalling && (!options.methods || options.methods.includes(method)) };
      forwarded.push(record);
      const headers: Record<string, string> = {};
      for (const name of ['content-type', 'authorization', 'accept']) {
        const value = req.headers[name];
        if (typeof value === 'string') headers[name] = value;
      }
      const body = Buffer.concat(chunks);
      const done = upstream.request({ method: record.method as 'POST', path: record.path, headers, body: body.length > 0 ? body : undefined }).then(
        async (answer) => {
          const text = await answer.body.text();
          record.status = answer.statusCode;
          if (!record.held) res.writeHead(answer.statusCode, { 'content-type': 'application/json' }).end(text);
        },
        (err: unknown) => {
          record.status = 599;
          if (!record.held) res.writeHead(502, { 'content-type': 'text/plain' }).end(`front: ${(err as Error).message}`);
        },
      );
      pending.add(done);
      void done.finally(() => pending.delete(done));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = async () => {
    if (server.listening) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    }
    await Promise.all(pending);
    await upstream.destroy();
  };
  const front: StallingFront = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    forwarded,
    stalling: options.stalling ?? false,
    async settled() {
      while (pending.size > 0) await Promise.all(pending);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
  return front;
}
