import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { Clock, Timer } from '../clock.ts';
import { toHttpError, UnavailableError } from '../errors.ts';
import type { PostJson } from './feed.ts';

/**
 * The open Server-Sent Events streams of `GET /v1/events`: each new post goes
 * to every stream as `event: post`. A comment line keeps idle connections open
 * through proxies; `closeAll` ends every stream so the HTTP server can close.
 *
 * Memory is bounded twice: at most `maxStreams` streams (--max-event-streams;
 * the next client is answered 503 until one leaves), each holding at most
 * MAX_UNSENT_BYTES its client has not read. A stream that ends gives back its
 * slot and everything it held at once ('drop' is emitted then).
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
 * without bound: past this much unsent data (or posts held back during its
 * replay) it is cut off; its browser reconnects and catches up through
 * Last-Event-ID. The largest post is about 30 KB of JSON (5,000 characters of
 * 4 UTF-8 bytes, or 6 for an escaped control character), so this holds more
 * than eight of them, and a reading client is never this far behind. With the
 * default 1,000 streams the streams hold at most 250 MiB (100 clients that
 * never read at 1 MiB each had taken a main server from 182 to 292 MB).
 */
export const MAX_UNSENT_BYTES = 256 * 1024;

/** Default of --max-event-streams. */
export const DEFAULT_MAX_STREAMS = 1000;

/** What a refused client is told to wait before trying again, in seconds (Retry-After). */
export const RETRY_AFTER_S = 5;

/** A post as one stream event: serialised once for every stream. */
interface PostEvent {
  id: string;
  text: string;
}

interface Stream {
  response: ServerResponse;
  /** Posts that arrived while the replay for Last-Event-ID was being read, and their size in bytes. */
  pending: PostEvent[] | null;
  pendingBytes: number;
  sent: Set<string> | null;
  onClose: () => void;
}

export interface EventStreamsOptions {
  heartbeatMs?: number;
  /** At most this many streams at once; the next `open` is refused with 503. */
  maxStreams?: number;
}

export class EventStreams extends EventEmitter<{ drop: [] }> {
  #clock: Clock;
  #heartbeatMs: number;
  #maxStreams: number;
  #streams = new Set<Stream>();
  #heartbeat: Timer | undefined;
  #closed = false;

  constructor(clock: Clock, options: EventStreamsOptions = {}) {
    super();
    this.#clock = clock;
    this.#heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
    this.#maxStreams = options.maxStreams ?? DEFAULT_MAX_STREAMS;
  }

  /** The streams open now. */
  get size(): number {
    return this.#streams.size;
  }

  /** Posts held back for streams still reading their replay, in all (each is bounded by MAX_UNSENT_BYTES). */
  get heldPosts(): number {
    let held = 0;
    for (const stream of this.#streams) held += stream.pending?.length ?? 0;
    return held;
  }

  /** Why a new stream would be refused now (closing, or maxStreams open), or undefined when it would be taken. */
  refusal(): UnavailableError | undefined {
    if (this.#closed) return new UnavailableError('The server is shutting down: reconnect to another one or in a moment');
    if (this.#streams.size >= this.#maxStreams) {
      return new UnavailableError(`Too many live feed connections (${this.#maxStreams}, --max-event-streams): try again in ${RETRY_AFTER_S} s, or read GET /v1/posts`);
    }
    return undefined;
  }

  /**
   * Starts a stream on a response the caller hijacked. `replay`, when given,
   * reads the posts the client missed (after its Last-Event-ID), oldest first;
   * posts published meanwhile are held back and sent after it, without repeats.
   * Beyond maxStreams, or once closing, answers 503 with the error body
   * (callers that can should ask `refusal()` first and answer through their
   * error handler).
   */
  open(response: ServerResponse, replay?: () => Promise<PostJson[]>): void {
    const refused = this.refusal();
    if (refused) {
      const { status, body } = toHttpError(refused);
      response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'retry-after': String(RETRY_AFTER_S) }).end(JSON.stringify(body));
      return;
    }
    const stream: Stream = { response, pending: replay ? [] : null, pendingBytes: 0, sent: null, onClose: () => this.#drop(stream) };
    this.#streams.add(stream);
    response.on('close', stream.onClose);
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // nginx buffers responses by default, which would hold events back
      'x-accel-buffering': 'no',
    });
    this.#send(stream, `retry: ${RECONNECT_MS}\n: connected\n\n`);
    this.#armHeartbeat();
    if (!replay) return;
    replay().then(
      (missed) => {
        if (!this.#streams.has(stream)) return;
        stream.sent = new Set();
        for (const post of missed) this.#write(stream, postEvent(post));
      },
      () => {
        // The replay is a courtesy: the live stream goes on without it.
      },
    ).finally(() => {
      const held = stream.pending ?? [];
      stream.pending = null;
      stream.pendingBytes = 0;
      for (const post of held) if (!stream.sent?.has(post.id)) this.#write(stream, post);
      stream.sent = null;
    });
  }

  broadcast(post: PostJson): void {
    if (this.#streams.size === 0) return;
    const event = postEvent(post);
    for (const stream of [...this.#streams]) {
      if (stream.pending) this.#hold(stream, event);
      else this.#write(stream, event);
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

  #hold(stream: Stream, event: PostEvent): void {
    stream.pending!.push(event);
    // a replay that takes long must not hold back more than a slow reader may leave unsent
    stream.pendingBytes += Buffer.byteLength(event.text);
    if (stream.pendingBytes > MAX_UNSENT_BYTES) stream.response.destroy();
  }

  #write(stream: Stream, event: PostEvent): void {
    // a replay can finish after its client left
    if (!this.#streams.has(stream)) return;
    stream.sent?.add(event.id);
    this.#send(stream, event.text);
  }

  #send(stream: Stream, text: string): void {
    const { response } = stream;
    if (response.writableEnded || response.destroyed) return;
    response.write(text);
    if (response.writableLength > MAX_UNSENT_BYTES) response.destroy();
  }

  /** Forgets a stream and everything it held: its slot is free at once. */
  #drop(stream: Stream): void {
    if (!this.#streams.delete(stream)) return;
    stream.response.off('close', stream.onClose);
    stream.pending = null;
    stream.pendingBytes = 0;
    stream.sent = null;
    if (this.#streams.size === 0) {
      this.#heartbeat?.cancel();
      this.#heartbeat = undefined;
    }
    this.emit('drop');
  }

  /** One timer for all streams, running only while a stream is open. */
  #armHeartbeat(): void {
    if (this.#heartbeat) return;
    this.#heartbeat = this.#clock.setTimer(() => {
      this.#heartbeat = undefined;
      for (const stream of [...this.#streams]) this.#send(stream, ': heartbeat\n\n');
      if (this.#streams.size > 0) this.#armHeartbeat();
    }, this.#heartbeatMs);
  }
}

function postEvent(post: PostJson): PostEvent {
  return { id: post.id, text: `id: ${post.id}\nevent: post\ndata: ${JSON.stringify(post)}\n\n` };
}
