import type { FastifyInstance } from 'fastify';
import { systemClock, type Clock } from '../clock.ts';
import type { DispatcherConfig } from '../config.ts';
import { createHttpServer, isLoopbackHost, type HttpTimeouts } from '../http.ts';
import { openDispatcherStore } from '../stores/index.ts';
import type { DispatcherContext } from './context.ts';
import { createJsonDeliverer, createLegacyDeliverer, type Deliverer } from './delivery.ts';
import { SchedulingEngine } from './engine.ts';
import { DispatcherMetrics } from './metrics.ts';
import { registerApiRoutes } from './routes-api.ts';
import { registerLegacyRoutes } from './routes-legacy.ts';
import { ScheduleMaterializer } from './schedules.ts';
import type { DispatcherStore } from './store.ts';
import { TargetRegistry, type DeliverySettings } from './targets.ts';
import { registerUiRoutes } from './ui.ts';

/**
 * A dispatcher: store + scheduling engine + delivery + HTTP, wired from one
 * config. Nothing runs until `listen()`; `close()` (or `await using`) stops it.
 */
export interface Dispatcher extends AsyncDisposable {
  readonly app: FastifyInstance;
  readonly engine: SchedulingEngine;
  readonly schedules: ScheduleMaterializer;
  readonly store: DispatcherStore;
  readonly config: Readonly<DispatcherConfig>;
  /** The delivery targets: the engine's deliverer, which picks each message's target's own. */
  readonly targets: TargetRegistry;
  /**
   * Resolves (never rejects) if the store halts because it can no longer
   * promise durability (a failed fsync). The engine has stopped by then and
   * writes are refused; the process should exit and be restarted: `psched
   * dispatcher` exits with status 1 at once.
   */
  readonly halted: Promise<Error>;
  /** Starts the engine, then listens on config.host:config.port; resolves with the base URL. */
  listen(): Promise<string>;
  /**
   * Stops taking requests (waits for those in progress), stops the engine
   * (finishes or hands back in-flight deliveries), closes the delivery
   * connections and the store it opened. Idempotent.
   */
  close(): Promise<void>;
}

export interface DispatcherDeps {
  clock?: Clock;
  /** A store to use instead of opening config.db. It stays open on close(): the caller owns it. */
  store?: DispatcherStore;
  /** Delivers the default target's messages instead of the one built from the flags (tests); stored targets still get their own. */
  deliverer?: Deliverer;
  /** false silences the logs (tests); default: JSON logs at config.logLevel. */
  logger?: boolean | { stream: { write(line: string): void } };
  /** Overrides how long clients may take to send a request (tests; see HttpTimeouts in ../http.ts). */
  httpTimeouts?: Partial<HttpTimeouts>;
}

/**
 * Keep-alive connections to a legacy main server: a quarter of the delivery
 * concurrency. Each answer takes well under a millisecond on a local network,
 * so a connection serves several deliveries in the time one is in flight.
 */
function connectionsFor(concurrency: number): number {
  return Math.max(1, Math.floor(concurrency / 4));
}

/**
 * JSON deliveries are pipelined: up to --pipelining (default 32) requests in
 * flight per keep-alive connection, on concurrency/pipelining connections. Sending
 * and answering in bursts costs both ends less CPU per delivery (20,000
 * messages due at once, local receiver, 2-core machine: 4 connections x 32
 * drained in 1.3-1.9 s at 64-84 µs of dispatcher CPU per delivery; 32 x 1 in
 * 2.0 s at 96 µs, and the receiver used a third more). The price is
 * head-of-line blocking: a slow answer holds up the requests behind it on
 * its connection, and a timeout resets the connection, whose queued
 * deliveries each fail as one attempt and wait for the engine's backoff
 * (./delivery.ts refuses undici's silent re-send). Legacy PHP receivers get one
 * request per connection at a time, as the original sent them.
 */

/**
 * Deliveries start (move to `delivering`, one store call) at least this far
 * ahead of their due time, and are still sent at it. At a steady 4,000 due a
 * second, starting each millisecond's few messages on their own made ~900
 * SQLite transactions a second, each writing its touched index pages to the
 * WAL, and the outcomes went in transactions of their own; starting 4 ms'
 * worth at once, outcomes along, made a quarter as many (1,090 instead of
 * 4,440 in `npm run bench:feed`'s run). The price is the engine's lead's:
 * within 2 x 4 ms of its due time a message may already be delivering, so a
 * PATCH or DELETE answers 409.
 */
const START_LEAD_MS = 4;

/** A target's deliverer: the same connections and pipelining for every target, the built-in one's included. */
function createDeliverer(target: DeliverySettings, config: Readonly<DispatcherConfig>, clock: Clock): Deliverer {
  const common = { mainUrl: target.url, timeoutMs: config.deliveryTimeoutMs, clock };
  if (target.protocol === 'legacy') return createLegacyDeliverer({ ...common, connections: connectionsFor(config.concurrency) });
  const pipelining = Math.min(config.pipelining, config.concurrency);
  return createJsonDeliverer({
    ...common,
    signingSecret: target.signingSecret ?? undefined,
    signatureScheme: target.signatureScheme,
    connections: Math.ceil(config.concurrency / pipelining),
    pipelining,
  });
}

export async function createDispatcher(config: Readonly<DispatcherConfig>, deps: DispatcherDeps = {}): Promise<Dispatcher> {
  const clock = deps.clock ?? systemClock;
  const store = deps.store ?? (await openDispatcherStore(config.db));
  const ownsStore = deps.store === undefined;
  const builtIn: DeliverySettings = {
    url: config.mainUrl, protocol: config.mainProtocol, signingSecret: config.signingSecret ?? null, signatureScheme: config.signatureScheme,
  };
  let log: ((err: unknown) => void) | undefined;
  const deliverer = new TargetRegistry({
    store,
    config,
    defaultDeliverer: deps.deliverer ?? createDeliverer(builtIn, config, clock),
    createDeliverer: (settings) => createDeliverer(settings, config, clock),
    onError: (err) => log?.(err),
    defaultLimits: { ratePerSecond: config.mainRatePerSecond, burst: config.mainBurst, maxInFlight: config.mainMaxInFlight },
    onLimitsChanged: (name) => limitsChanged?.(name),
    onRemoved: (name) => removed?.(name),
  });
  let limitsChanged: ((name: string) => void) | undefined;
  let removed: ((name: string) => void) | undefined;
  try {
    const app = await createHttpServer({
      logger: deps.logger === false ? false : { level: config.logLevel, ...(typeof deps.logger === 'object' ? { stream: deps.logger.stream } : {}) },
      timeouts: deps.httpTimeouts,
      // without a token (allowed on loopback only) anyone who reaches it may schedule: see hostCheck
      allowedHosts: !config.apiToken && isLoopbackHost(config.host) ? config.allowedHosts : undefined,
    });
    // the original read such times in its host's zone: a migrating operator sees which zone psched uses
    app.log.info({ legacyTimeZone: config.legacyTimeZone }, `the original's /scheduleMessage.php reads times without an offset in ${config.legacyTimeZone} (--legacy-timezone)`);
    log = (err) => app.log.warn({ err }, 'the delivery targets could not be read again from the store; the ones known stay in use');
    const metrics = new DispatcherMetrics();
    const engine = new SchedulingEngine({
      store,
      deliverer,
      clock,
      metrics,
      logger: app.log,
      horizonMs: config.horizonMs,
      maxBuffered: config.maxBuffered,
      leaseMs: config.leaseMs,
      maxAttempts: config.maxAttempts,
      retryBaseMs: config.retryBaseMs,
      retryMaxMs: config.retryMaxMs,
      concurrency: config.concurrency,
      retentionMs: config.retentionMs,
      target: config.mainUrl,
      limitsOf: (target) => deliverer.limitsOf(target),
      deliverWithinOf: (target) => deliverer.deliverWithinOf(target),
      minStartLeadMs: START_LEAD_MS,
    });
    limitsChanged = (name) => engine.limitsChanged(name);
    removed = (name) => engine.targetRemoved(name);
    const halted = new Promise<Error>((resolve) => {
      store.onHalt((err) => {
        app.log.fatal({ err }, 'the store halted: the disk did not confirm a write; stopping deliveries, restart this dispatcher');
        engine.halt(err);
        resolve(err);
      });
    });
    const schedules = new ScheduleMaterializer({ store, engine, clock, logger: app.log });
    const ctx: DispatcherContext = { config, store, engine, metrics, clock, schedules, targets: deliverer };
    registerApiRoutes(app, ctx);
    registerLegacyRoutes(app, ctx);
    registerUiRoutes(app, ctx);
    await app.ready();
    void halted.then(() => schedules.stop());
    return new RunningDispatcher(app, engine, schedules, store, config, deliverer, halted, async () => {
      await deliverer.close();
      if (ownsStore) await store.close();
    });
  } catch (err) {
    await deliverer.close().catch(() => {});
    if (ownsStore) await store.close().catch(() => {});
    throw err;
  }
}

class RunningDispatcher implements Dispatcher {
  readonly app: FastifyInstance;
  readonly engine: SchedulingEngine;
  readonly schedules: ScheduleMaterializer;
  readonly store: DispatcherStore;
  readonly config: Readonly<DispatcherConfig>;
  readonly targets: TargetRegistry;
  readonly halted: Promise<Error>;
  #releaseResources: () => Promise<void>;
  #closing: Promise<void> | undefined;

  constructor(
    app: FastifyInstance,
    engine: SchedulingEngine,
    schedules: ScheduleMaterializer,
    store: DispatcherStore,
    config: Readonly<DispatcherConfig>,
    targets: TargetRegistry,
    halted: Promise<Error>,
    releaseResources: () => Promise<void>,
  ) {
    this.targets = targets;
    this.app = app;
    this.engine = engine;
    this.schedules = schedules;
    this.store = store;
    this.config = config;
    this.halted = halted;
    this.#releaseResources = releaseResources;
  }

  async listen(): Promise<string> {
    if (this.#closing) throw new Error('this dispatcher is closed; create a new one');
    // before the engine: its first deliveries find their targets known
    await this.targets.start();
    await this.engine.start();
    // after the engine: occurrences it materialises (a restart's catch-up first) are claimed at once
    await this.schedules.start();
    try {
      return await this.app.listen({ host: this.config.host, port: this.config.port });
    } catch (err) {
      await this.schedules.stop();
      await this.engine.stop();
      throw new Error(`the dispatcher cannot listen on ${this.config.host}:${this.config.port}: ${(err as Error).message}`, { cause: err });
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    try {
      // HTTP first: requests in progress finish (their schedule calls still reach a running engine)
      await this.app.close();
    } finally {
      try {
        await this.schedules.stop();
        await this.engine.stop();
      } finally {
        await this.#releaseResources();
      }
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
