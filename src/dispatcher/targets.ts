import type { DispatcherConfig } from '../config.ts';
import { tokenHash, type TargetJson } from '../protocol/targets.ts';
import type { AttemptResult, Deliverer } from './delivery.ts';
import { NO_LIMITS, type TargetLimits } from './flow-control.ts';
import { DEFAULT_TARGET, type DispatcherStore, type StoredMessage, type StoredTarget } from './store.ts';

/**
 * The delivery targets a dispatcher knows (issue 12), and the Deliverer that
 * hands each message to its own target's main server.
 *
 * - `default` is built in: today's flags (--main-url, --main-protocol,
 *   --signing-secret, --signature-scheme), served by the deliverer the
 *   dispatcher was built with. It is never stored.
 * - Every other target is a row of the store. The registry keeps them in
 *   memory, with one deliverer (one undici keep-alive pool) each, made at
 *   its first delivery, rebuilt after the target changed, closed when it is
 *   removed and at close().
 *
 * Freshness in a pool (one PostgreSQL database, several dispatchers): a
 * target this dispatcher does not know yet is read from the store at once
 * (on a miss: a message, a token or a create naming it), so one created
 * through another dispatcher works here at its first use; changes and
 * removals made elsewhere are picked up by a periodic re-read, every
 * REFRESH_MS, on a store others share (PostgreSQL); on one this process
 * owns (SQLite) nothing changes but through it, and re-reading 1,000 targets
 * every second cost ~2% of a busy dispatcher's CPU for nothing. Changes
 * made through this dispatcher apply at once (the routes call learn() and
 * removed() with just that target: re-reading all of them per create made
 * registering 1,000 targets quadratic).
 */

/**
 * How often the targets are read again from the store: the bound on how long
 * a change made through another dispatcher of a pool (a new URL, a rotated
 * token or secret, a removal) takes to apply here. One small query; a second
 * keeps "within a couple of seconds" true with room to spare.
 */
export const REFRESH_MS = 1000;


/** What a deliverer is built from: a target's delivery settings. */
export type DeliverySettings = Pick<StoredTarget, 'url' | 'protocol' | 'signingSecret' | 'signatureScheme'>;

export interface TargetRegistryOptions {
  store: DispatcherStore;
  config: Readonly<DispatcherConfig>;
  /** Delivers the default target's messages (closed by close()). */
  defaultDeliverer: Deliverer;
  /** Builds a stored target's deliverer. */
  createDeliverer: (settings: DeliverySettings) => Deliverer;
  /** Default REFRESH_MS. */
  refreshMs?: number;
  /** Reports a failed periodic re-read (the store is down): the targets known stay in use. */
  onError?: (err: unknown) => void;
  /** The built-in target's flow control (--main-rate and the rest). */
  defaultLimits?: TargetLimits;
  /** A target's limits may have changed (it is new, changed or gone): the engine's flow control looks again. */
  onLimitsChanged?: (name: string) => void;
  /** A target is gone (removed here or through another dispatcher): what is kept per target can go. */
  onRemoved?: (name: string) => void;
}

/**
 * In-flight cap of a stored target that sets none: a quarter of the
 * dispatcher's delivery slots, so one slow main server (answers taking the
 * whole --delivery-timeout) can never hold every slot while the others wait.
 */
export function defaultMaxInFlight(concurrency: number): number {
  return Math.max(1, Math.ceil(concurrency / 4));
}

interface Known {
  target: StoredTarget;
  /** Its flow control, read once per version of the target (the engine asks at every admission). */
  limits: TargetLimits;
  /** Made at the first delivery. */
  deliverer: Deliverer | undefined;
}

export class TargetRegistry implements Deliverer {
  readonly #store: DispatcherStore;
  readonly #config: Readonly<DispatcherConfig>;
  readonly #default: Deliverer;
  readonly #create: (settings: DeliverySettings) => Deliverer;
  readonly #refreshMs: number;
  readonly #onError: (err: unknown) => void;
  readonly #defaultLimits: TargetLimits;
  readonly #onLimitsChanged: (name: string) => void;
  readonly #onRemoved: (name: string) => void;
  #known = new Map<string, Known>();
  #byTokenHash = new Map<string, string>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #closing: Promise<void> | undefined;
  /** Deliverers of changed or removed targets, closing (close() waits for them). */
  #retiring = new Set<Promise<void>>();

  constructor(options: TargetRegistryOptions) {
    this.#store = options.store;
    this.#config = options.config;
    this.#default = options.defaultDeliverer;
    this.#create = options.createDeliverer;
    this.#refreshMs = options.refreshMs ?? REFRESH_MS;
    this.#onError = options.onError ?? (() => {});
    this.#defaultLimits = options.defaultLimits ?? NO_LIMITS;
    this.#onLimitsChanged = options.onLimitsChanged ?? (() => {});
    this.#onRemoved = options.onRemoved ?? (() => {});
  }

  /** A target's flow control, as the engine asks for it at every admission (so no store read: unknown names get none). */
  limitsOf(name: string): TargetLimits {
    if (name === DEFAULT_TARGET) return this.#defaultLimits;
    // a target not known here yet (created elsewhere a moment ago): no limits until the registry reads it
    return this.#known.get(name)?.limits ?? NO_LIMITS;
  }

  /**
   * A target's default deliver-by window (ms after the scheduled time), as the
   * engine asks for it at every start; undefined: none (unknown names none).
   */
  deliverWithinOf(name: string): number | undefined {
    if (name === DEFAULT_TARGET) return this.#config.mainDeliverWithinMs;
    return this.#known.get(name)?.target.deliverWithinMs ?? undefined;
  }

  /** Reads the targets and, on a shared store, starts re-reading them every refreshMs. */
  async start(): Promise<void> {
    await this.refresh();
    if (this.#closing || this.#timer || !this.#store.shared) return;
    this.#timer = setInterval(() => void this.refresh().catch(this.#onError), this.#refreshMs);
    this.#timer.unref();
  }

  /** Reads every target from the store: new ones are added, changed ones get a new deliverer, removed ones go. */
  async refresh(): Promise<void> {
    const targets = await this.#store.listTargets();
    const seen = new Set<string>();
    for (const target of targets) {
      seen.add(target.name);
      this.#remember(target);
    }
    for (const name of [...this.#known.keys()]) if (!seen.has(name)) this.#forget(name);
  }

  /** A target created or changed through this dispatcher: it applies at once, even within the same millisecond as its last change. */
  learn(target: StoredTarget): void {
    this.#remember(target, true);
  }

  /** A target removed through this dispatcher. */
  removed(name: string): void {
    this.#forget(name);
  }

  /** The stored target of that name (read from the store when not known yet); undefined for `default` and unknown names. */
  async get(name: string): Promise<StoredTarget | undefined> {
    const known = this.#known.get(name);
    if (known) return known.target;
    if (name === DEFAULT_TARGET) return undefined;
    const target = await this.#store.getTarget(name);
    if (target) this.#remember(target);
    return target;
  }

  /** Whether messages may be scheduled for this target: `default`, or a stored one. */
  async exists(name: string): Promise<boolean> {
    return name === DEFAULT_TARGET || (await this.get(name)) !== undefined;
  }

  /** The target whose token this is, if any (read from the store on a miss: a token set through another dispatcher). */
  async byToken(token: string): Promise<StoredTarget | undefined> {
    const hash = tokenHash(token);
    const name = this.#byTokenHash.get(hash);
    const known = name === undefined ? undefined : this.#known.get(name);
    if (known && known.target.tokenHash === hash) return known.target;
    const target = await this.#store.targetByTokenHash(hash);
    if (target) this.#remember(target);
    return target;
  }

  /** The built-in target as the API shows it: the flags, secrets as set/not set. */
  defaultJson(): TargetJson {
    const config = this.#config;
    return {
      name: DEFAULT_TARGET,
      url: config.mainUrl,
      protocol: config.mainProtocol,
      signatureScheme: config.signatureScheme,
      signingSecretSet: config.signingSecret !== undefined,
      // the main server of the default target calls the API with the operator's --api-token
      tokenSet: config.apiToken !== undefined,
      ratePerSecond: config.mainRatePerSecond ?? null,
      burst: config.mainBurst ?? null,
      maxInFlight: config.mainMaxInFlight ?? null,
      deliverWithinMs: config.mainDeliverWithinMs ?? null,
      builtIn: true,
      createdAt: null,
      updatedAt: null,
    };
  }

  deliver(message: StoredMessage, mayStillSend?: () => boolean): Promise<AttemptResult> {
    if (message.target === DEFAULT_TARGET) return this.#default.deliver(message, mayStillSend);
    const known = this.#known.get(message.target);
    if (known) return this.#delivererOf(known).deliver(message, mayStillSend);
    return this.#deliverUnknown(message, mayStillSend);
  }

  /** A target not known here: created through another dispatcher a moment ago, or gone. */
  async #deliverUnknown(message: StoredMessage, mayStillSend?: () => boolean): Promise<AttemptResult> {
    let target: StoredTarget | undefined;
    try {
      target = await this.get(message.target);
    } catch (err) {
      return { kind: 'retry', error: `could not read target ${JSON.stringify(message.target)} from the store: ${(err as Error).message}` };
    }
    const known = target && this.#known.get(target.name);
    if (!known) return { kind: 'dead', error: `target ${JSON.stringify(message.target)} does not exist (removed?): nowhere to deliver to` };
    return this.#delivererOf(known).deliver(message, mayStillSend);
  }

  #delivererOf(known: Known): Deliverer {
    known.deliverer ??= this.#create(known.target);
    return known.deliverer;
  }

  #remember(target: StoredTarget, changedHere = false): void {
    const known = this.#known.get(target.name);
    if (!changedHere && known && known.target.updatedAt === target.updatedAt) return;
    if (known) {
      if (known.target.tokenHash !== null) this.#byTokenHash.delete(known.target.tokenHash);
      this.#retire(known.deliverer);
    }
    const limits: TargetLimits = {
      ratePerSecond: target.ratePerSecond ?? undefined,
      burst: target.burst ?? undefined,
      maxInFlight: target.maxInFlight ?? defaultMaxInFlight(this.#config.concurrency),
    };
    this.#known.set(target.name, { target, limits, deliverer: undefined });
    if (target.tokenHash !== null) this.#byTokenHash.set(target.tokenHash, target.name);
    this.#onLimitsChanged(target.name);
  }

  #forget(name: string): void {
    const known = this.#known.get(name);
    if (!known) return;
    this.#known.delete(name);
    if (known.target.tokenHash !== null && this.#byTokenHash.get(known.target.tokenHash) === name) this.#byTokenHash.delete(known.target.tokenHash);
    this.#retire(known.deliverer);
    this.#onLimitsChanged(name);
    this.#onRemoved(name);
  }

  /** Closes a deliverer no longer used once its requests in flight are answered. */
  #retire(deliverer: Deliverer | undefined): void {
    if (!deliverer) return;
    const closing = deliverer.close().catch(this.#onError).finally(() => this.#retiring.delete(closing));
    this.#retiring.add(closing);
  }

  /** Stops re-reading, waits for requests in flight, closes every target's connections and the default's. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#timer);
      const deliverers = [this.#default, ...[...this.#known.values()].flatMap((known) => (known.deliverer ? [known.deliverer] : []))];
      this.#known.clear();
      this.#byTokenHash.clear();
      await Promise.all([...deliverers.map((d) => d.close()), ...this.#retiring]);
    })();
    return this.#closing;
  }
}

/** A stored target as the API shows it: secrets as set/not set, never their values. */
export function toTargetJson(target: StoredTarget): TargetJson {
  return {
    name: target.name,
    url: target.url,
    protocol: target.protocol,
    signatureScheme: target.signatureScheme,
    signingSecretSet: target.signingSecret !== null,
    tokenSet: target.tokenHash !== null,
    ratePerSecond: target.ratePerSecond,
    burst: target.burst,
    maxInFlight: target.maxInFlight,
    deliverWithinMs: target.deliverWithinMs,
    builtIn: false,
    createdAt: new Date(target.createdAt).toISOString(),
    updatedAt: new Date(target.updatedAt).toISOString(),
  };
}
