import type { ServerResponse } from 'node:http';
import type { Clock, Timer } from '../clock.ts';
import type { PostJson } from './feed.ts';

/**
 * The open Server-Sent Events streams of `GET /v1/events`: each new post goes
 * to every stream as `event: post`. A comment line keeps idle connections open
 * through proxies; `closeAll` ends every stream so the HTTP server can close.
 */

/**
 * Comment lines at this interval keep proxies and load balancers (which often
 * drop connections idle for 30-60 s) from cutting an idle stream.
 */
export const HEARTBEAT_MS = 15_000;

/** How long a browser waits before reconnecting after the stream broke. */
const RECONNECT_MS = 2_000;

/**
 * A client that does not read its stream must not make the server buffer
 * without bound: past this much unsent data it is cut off; its browser
 * reconnects and catches up through Last-Event-ID.
 */
const MAX_UNSENT_BYTES = 1024 * 1024;

interface Stream {
  response: ServerResponse;
  /** Posts that arrived while the replay for Last-Event-ID was being read. */
  pending: PostJson[] | null;
  sent: Set<string> | null;
}

export class EventStreams {
  #clock: Clock;
  #heartbeatMs: number;
  #streams = new Set<Stream>();
  #heartbeat: Timer | undefined;
  #closed = false;

  constructor(clock: Clock, heartbeatMs = HEARTBEAT_MS) {
    this.#clock = clock;
    this.#heartbeatMs = heartbeatMs;
  }

  get size(): number {
    return this.#streams.size;
  }

  /**
   * Starts a stream on a response the caller hijacked. `replay`, when given,
   * reads the posts the client missed (after its Last-Event-ID), oldest first;
   * posts published meanwhile are held back and sent after it, without repeats.
   */
  open(response: ServerResponse, replay?: () => Promise<PostJson[]>): void {
    if (this.#closed) {
      response.writeHead(503).end();
      return;
    }
    const stream: Stream = { response, pending: replay ? [] : null, sent: null };
    this.#streams.add(stream);
    response.on('close', () => this.#drop(stream));
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // nginx buffers responses by default, which would hold events back
      'x-accel-buffering': 'no',
    });
    response.write(`retry: ${RECONNECT_MS}\n: connected\n\n`);
    this.#armHeartbeat();
    if (!replay) return;
    replay().then(
      (missed) => {
        stream.sent = new Set();
        for (const post of missed) this.#write(stream, post);
      },
      () => {
        // The replay is a courtesy: the live stream goes on without it.
      },
    ).finally(() => {
      const held = stream.pending ?? [];
      stream.pending = null;
      for (const post of held) if (!stream.sent?.has(post.id)) this.#write(stream, post);
      stream.sent = null;
    });
  }

  broadcast(post: PostJson): void {
    for (const stream of this.#streams) {
      if (stream.pending) stream.pending.push(post);
      else this.#write(stream, post);
    }
  }

  /** Ends every stream and stops the heartbeat; later `open` calls answer 503. */
  closeAll(): void {
    this.#closed = true;
    for (const stream of [...this.#streams]) {
      stream.response.end();
      this.#drop(stream);
    }
  }

  #write(stream: Stream, post: PostJson): void {
    // a replay can finish after its client left
    if (!this.#streams.has(stream) || stream.response.writableEnded) return;
    stream.sent?.add(post.id);
    stream.response.write(`id: ${post.id}\nevent: post\ndata: ${JSON.stringify(post)}\n\n`);
    if (stream.response.writableLength > MAX_UNSENT_BYTES) stream.response.destroy();
  }

  #drop(stream: Stream): void {
    this.#streams.delete(stream);
    if (this.#streams.size === 0) {
      this.#heartbeat?.cancel();
      this.#heartbeat = undefined;
    }
  }

  /** One timer for all streams, running only while a stream is open. */
  #armHeartbeat(): void {
    if (this.#heartbeat) return;
    this.#heartbeat = this.#clock.setTimer(() => {
      this.#heartbeat = undefined;
      for (const stream of this.#streams) stream.response.write(': heartbeat\n\n');
      if (this.#streams.size > 0) this.#armHeartbeat();
    }, this.#heartbeatMs);
  }
}
