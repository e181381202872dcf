import type pg from 'pg';
import { createClient } from './connection.ts';

/**
 * LISTEN on one dedicated connection for the other dispatchers' wake-ups
 * (pg_notify in ./statements.ts). Each store sends its own random id as the
 * payload and ignores notifications carrying it, so a store is only woken by
 * the others.
 *
 * If the connection drops, it reconnects with backoff and then wakes its
 * listeners once: notifications sent while it was away are lost, and a refill
 * costs less than missing one.
 */

/** First reconnect delay, doubled after every failed attempt up to the maximum. */
const RECONNECT_FIRST_MS = 100;
/** Cap on the delay: a dispatcher notices a recovered database within 5 s (its periodic refill covers the gap). */
const RECONNECT_MAX_MS = 5_000;

/** One channel per schema, so stores in different schemas (parallel tests) never hear each other. */
export function wakeChannel(schema: string | undefined): string {
  return schema ? `psched_wake_${schema}` : 'psched_wake';
}

export interface WakeListenerOptions {
  url: string;
  schema: string | undefined;
  /** This store's id: notifications carrying it are its own and are ignored. */
  selfId: string;
  onError: (message: string, err: unknown) => void;
}

export class WakeListener {
  readonly channel: string;
  #options: WakeListenerOptions;
  #listeners = new Set<() => void>();
  #client: pg.Client | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  /** The connection attempt under way, which close() waits for. */
  #connecting: Promise<void> | undefined;
  #reconnectDelay = RECONNECT_FIRST_MS;
  #closed = false;

  constructor(options: WakeListenerOptions) {
    this.#options = options;
    this.channel = wakeChannel(options.schema);
  }

  /** Connects and listens; rejects if the first connection fails. */
  async start(): Promise<void> {
    await this.#track(this.#connect());
  }

  add(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    this.#listeners.clear();
    await this.#connecting?.catch(() => {});
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }

  #track(connecting: Promise<void>): Promise<void> {
    this.#connecting = connecting;
    return connecting.finally(() => {
      if (this.#connecting === connecting) this.#connecting = undefined;
    });
  }

  async #connect(): Promise<void> {
    const client = createClient(this.#options.url, this.#options.schema, 'psched-wake');
    client.on('notification', (notification) => {
      if (notification.channel === this.channel && notification.payload !== this.#options.selfId) this.#wake();
    });
    client.on('error', (err) => this.#lost(client, err));
    client.on('end', () => this.#lost(client, new Error('connection ended')));
    try {
      await client.connect();
      await client.query(`LISTEN ${this.channel}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.#closed) {
      await client.end().catch(() => {});
      return;
    }
    this.#client = client;
    this.#reconnectDelay = RECONNECT_FIRST_MS;
  }

  #wake(): void {
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch (err) {
        this.#options.onError('a wake listener threw', err);
      }
    }
  }

  /** Called for every error or end of a client; acts once, for the current client only. */
  #lost(client: pg.Client, err: unknown): void {
    if (this.#closed || client !== this.#client) return;
    this.#client = undefined;
    client.end().catch(() => {});
    this.#options.onError(`the LISTEN connection dropped; reconnecting in ${this.#reconnectDelay} ms`, err);
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    const delay = this.#reconnectDelay;
    this.#reconnectDelay = Math.min(delay * 2, RECONNECT_MAX_MS);
    this.#reconnectTimer = setTimeout(() => {
      this.#track(this.#connect()).then(
        () => {
          // whatever was notified while we were away is lost: let the listeners refill
          if (!this.#closed) this.#wake();
        },
        (err: unknown) => {
          if (this.#closed) return;
          this.#options.onError(`reconnecting the LISTEN connection failed; retrying in ${this.#reconnectDelay} ms`, err);
          this.#scheduleReconnect();
        },
      );
    }, delay);
  }
}
