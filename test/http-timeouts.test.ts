import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { startTestDispatcher } from './support/dispatcher.ts';
import { startTestMain } from './support/main.ts';

/**
 * Slow and idle clients lose their connection (src/http.ts HttpTimeouts).
 * Real sockets, since inject() has none; the limits are shortened through the
 * app factories so each case takes well under a second, and every case keeps
 * sending bytes where a slowloris would, so it is the limit that closes the
 * connection, not an inactivity timeout.
 */
const TIMEOUTS = { headersMs: 300, requestMs: 600, keepAliveMs: 300 };
/** Long enough for the limit plus Node's check interval; far below the old limits (60 s for headers, none for bodies). */
const WITHIN_MS = 3_000;

interface Connection {
  socket: Socket;
  /** Everything the server has sent so far. */
  received(): string;
  /** Resolves with the ms until the server closed the connection, or rejects after `ms`. */
  closedWithin(ms: number): Promise<number>;
}

async function open(url: string): Promise<Connection> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let text = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('error', () => {});
  const start = Date.now();
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - start)));
  return {
    socket,
    received: () => text,
    closedWithin: (ms) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the connection is still open after ${ms} ms; received ${JSON.stringify(text)}`)), ms);
      });
      return Promise.race([closed, late]).finally(() => clearTimeout(timer));
    },
  };
}

/** Writes `chunks` one by one, `everyMs` apart, until the socket closes or they run out. */
function dribble(socket: Socket, chunks: string[], everyMs: number): () => void {
  const timer = setInterval(() => {
    const chunk = chunks.shift();
    if (chunk === undefined || socket.destroyed) return clearInterval(timer);
    socket.write(chunk);
  }, everyMs);
  return () => clearInterval(timer);
}

for (const service of ['dispatcher', 'main server'] as const) {
  const start = async () => {
    if (service === 'dispatcher') {
      const t = await startTestDispatcher({ host: '127.0.0.1' }, { httpTimeouts: TIMEOUTS });
      return { url: await t.dispatcher.listen(), t };
    }
    const t = await startTestMain({ host: '127.0.0.1' }, { httpTimeouts: TIMEOUTS });
    return { url: await t.server.listen(), t };
  };

  describe(`${service}: slow and idle clients`, () => {
    it('closes a connection whose headers never end (slowloris), even while it keeps sending header lines', async () => {
      const { url, t } = await start();
      await using _ = t;
      const c = await open(url);
      c.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n');
      const stop = dribble(c.socket, Array.from({ length: 200 }, (_, i) => `X-Slow-${i}: x\r\n`), 50);
      try {
        const ms = await c.closedWithin(WITHIN_MS);
        assert.ok(ms >= TIMEOUTS.headersMs - 50, `closed after ${ms} ms, before the limit`);
        assert.match(c.received(), /^HTTP\/1\.1 408 /);
      } finally {
        stop();
        c.socket.destroy();
      }
    });

    it('closes a connection that never sends a byte (21,000 of them took every file descriptor)', async () => {
      const { url, t } = await start();
      await using _ = t;
      const c = await open(url);
      try {
        const ms = await c.closedWithin(WITHIN_MS);
        assert.ok(ms >= TIMEOUTS.headersMs - 50, `closed after ${ms} ms, before the limit`);
      } finally {
        c.socket.destroy();
      }
    });

    it('closes a connection whose body stays shorter than its content-length', async () => {
      const { url, t } = await start();
      await using _ = t;
      const c = await open(url);
      const path = service === 'dispatcher' ? '/v1/messages' : '/v1/posts';
      c.socket.write(`POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
      const stop = dribble(c.socket, Array.from({ length: 100 }, () => ' '), 50);
      try {
        const ms = await c.closedWithin(WITHIN_MS);
        assert.ok(ms >= TIMEOUTS.requestMs - 50, `closed after ${ms} ms, before the limit`);
        assert.match(c.received(), /^HTTP\/1\.1 408 /);
      } finally {
        stop();
        c.socket.destroy();
      }
    });

    it('closes an idle keep-alive connection after its answer, and answers complete requests as before', async () => {
      const { url, t } = await start();
      await using _ = t;
      const c = await open(url);
      c.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await c.closedWithin(WITHIN_MS);
      assert.match(c.received(), /^HTTP\/1\.1 200 /);
      assert.match(c.received(), /"status":"ok"/);
    });

    if (service === 'main server') {
      it('keeps an event stream open past the request limit: the limits bound the request, not the answer', async () => {
        const { url, t } = await start();
        await using _ = t;
        const c = await open(url);
        c.socket.write('GET /v1/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n');
        await assert.rejects(c.closedWithin(TIMEOUTS.requestMs * 2 + 500), /still open/);
        assert.match(c.received(), /^HTTP\/1\.1 200 /);
        c.socket.destroy();
      });
    }
  });
}
