import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { systemClock, type Clock } from '../clock.ts';
import type { MainConfig } from '../config.ts';
import { createHttpServer, isLoopbackHost, type HttpTimeouts, refuseCrossSiteWrites } from '../http.ts';
import { openMainStore } from '../stores/index.ts';
import { requireApiToken } from './auth.ts';
import { EventStreams } from './events.ts';
import { MainMetrics } from './metrics.ts';
import { openApiDocument } from './openapi.ts';
import { DispatcherPool } from './pool.ts';
import { registerPostRoutes } from './routes-posts.ts';
import { registerScheduledRoutes } from './routes-scheduled.ts';
import { registerUiRoutes } from './routes-ui.ts';
import { ScheduledMessages } from './scheduled.ts';
import { Schedules } from './schedules.ts';
import type { MainStore } from './store.ts';

/**
 * The main server: receives posts from the dispatchers, forwards scheduling to
 * the dispatcher pool, serves the feed (JSON, Server-Sent Events) and its page.
 */
export interface MainServer extends AsyncDisposable {
  readonly app: FastifyInstance;
  readonly store: MainStore;
  readonly config: Readonly<MainConfig>;
  /** The open live-feed streams (GET /v1/events): their number, and a 'drop' event as each ends. */
  readonly streams: EventStreams;
  /** Starts listening on config.host:config.port; resolves with the base URL (port 0 picks a free port). */
  listen(): Promise<string>;
  /** Ends the event streams, stops the HTTP server, the dispatcher connections and the store it opened. Idempotent. */
  close(): Promise<void>;
}

export interface MainServerDeps {
  clock?: Clock;
  /** A store to use instead of opening config.db. It stays open on close(): the caller owns it (as with createDispatcher). */
  store?: MainStore;
  /** JSON logs at config.logLevel (default true); false for silence. */
  logger?: boolean | { stream: { write(line: string): void } };
  /** Overrides how long a dispatcher may take to answer (tests). */
  dispatcherTimeoutMs?: number;
  /** Overrides how long clients may take to send a request (tests; see HttpTimeouts in ../http.ts). */
  httpTimeouts?: Partial<HttpTimeouts>;
}

/**
 * True when this server listens on loopback and takes some write from
 * whoever reaches it: scheduling without --access-token, deliveries without
 * --signing-secret, or the original's unsigned /postMessage.php. A page
 * elsewhere could then write through DNS rebinding, so the Host check is on
 * (see hostCheck in ../http.ts). Off loopback the config requires both.
 */
function opensWritesOnLoopback(config: Readonly<MainConfig>): boolean {
  const open = !config.accessToken || !config.signingSecret || config.legacyPostMessage;
  return open && isLoopbackHost(config.host);
}

export async function createMainServer(config: Readonly<MainConfig>, deps: MainServerDeps = {}): Promise<MainServer> {
  const clock = deps.clock ?? systemClock;
  const store = deps.store ?? (await openMainStore(config.db));
  const closeStore = deps.store === undefined ? () => store.close() : async () => {};
  const streams = new EventStreams(clock, { maxStreams: config.maxEventStreams });
  let pool: DispatcherPool | undefined;
  let app: FastifyInstance;
  try {
    pool = new DispatcherPool(config.dispatcherUrls, { apiToken: config.apiToken, requestTimeoutMs: deps.dispatcherTimeoutMs });
    app = await createHttpServer({
      logger: deps.logger === false ? false : { level: config.logLevel, ...(typeof deps.logger === 'object' ? { stream: deps.logger.stream } : {}) },
      timeouts: deps.httpTimeouts,
      allowedHosts: opensWritesOnLoopback(config) ? config.allowedHosts : undefined,
    });
    // the original read such times in its host's zone: a migrating operator sees which zone psched uses
    app.log.info({ legacyTimeZone: config.legacyTimeZone }, `the original's /scheduleMessage.php reads times without an offset in ${config.legacyTimeZone} (--legacy-timezone)`);
    const scheduled = new ScheduledMessages(pool, clock, config.timeZone, config.dispatcherProtocol);
    const schedules = new Schedules(pool, clock, config.timeZone, config.dispatcherProtocol);
    app.addHook('onRequest', refuseCrossSiteWrites);
    const metrics = new MainMetrics(() => streams.size);
    // behind the access token when one is set, as the dispatcher's is behind its token
    app.get('/metrics', { preHandler: requireApiToken(config.accessToken) }, async (_request, reply) => {
      void reply.type(metrics.contentType).header('cache-control', 'no-store');
      return metrics.render();
    });
    const openApi = JSON.stringify(openApiDocument());
    app.get('/openapi.json', async (_request, reply) => reply.type('application/json; charset=utf-8').send(openApi));
    await registerPostRoutes(app, { config, store, clock, streams, metrics });
    registerScheduledRoutes(app, { config, scheduled, schedules });
    registerUiRoutes(app, { config, store, clock, scheduled, schedules });
    await app.ready();
  } catch (err) {
    await pool?.close();
    await closeStore();
    throw err;
  }

  const dispatchers = pool;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      // Open event streams would keep app.close() waiting forever.
      streams.closeAll();
      try {
        await app.close();
      } finally {
        await dispatchers.close();
        await closeStore();
      }
    })();
    return closing;
  };

  return {
    app,
    store,
    config,
    streams,
    async listen() {
      await app.listen({ port: config.port, host: config.host });
      const { port } = app.server.address() as AddressInfo;
      return `http://${config.host.includes(':') && !config.host.startsWith('[') ? `[${config.host}]` : config.host}:${port}`;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
