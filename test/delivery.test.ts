import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { createServer, type Socket } from 'node:net';
import { FakeClock } from '../src/clock.ts';
import { NOT_SENT_LEASE, createJsonDeliverer, createLegacyDeliverer, parseRetryAfter } from '../src/dispatcher/delivery.ts';
import type { StoredMessage } from '../src/dispatcher/store.ts';
import { verifySignature } from '../src/protocol/signing.ts';
import { originalEndpointReads } from './support/original.ts';
import { startReceiver } from './support/receiver.ts';

const SECRET = 'test-signing-secret';

function storedMessage(overrides: Partial<StoredMessage> = {}): StoredMessage {
  const at = Date.UTC(2014, 7, 1, 13, 30);
  return {
    id: '0190f3a0-0000-7000-8000-000000000001',
    target: 'default',
    username: 'Curl',
    message: "I'm scheduling a message! ✨ <b>&amp;</b> '; DROP TABLE posts;--",
    scheduledAt: at,
    dueAt: at,
    status: 'delivering',
    attempts: 1,
    version: 1,
    idempotencyKey: null,
    createdAt: at,
    updatedAt: at,
    deliveredAt: null,
    lastError: null,
    leaseOwner: 'owner',
    leaseExpiresAt: at + 10_000,
    deliverBy: null,
    ...overrides,
  };
}

/** A local port nothing listens on: bound, read, closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('JSON deliverer', () => {
  it('posts the documented body to /v1/posts with an idempotency key and a valid signature', async () => {
    await using receiver = await startReceiver();
    const clock = new FakeClock(Date.now());
    const deliverer = createJsonDeliverer({ mainUrl: receiver.url, signingSecret: SECRET, timeoutMs: 5000, connections: 2, clock });
    try {
      const message = storedMessage({ attempts: 3 });
      const result = await deliverer.deliver(message);
      assert.deepEqual(result, { kind: 'delivered', status: 200, response: { ok: true } });

      const request = await receiver.nextRequest();
      assert.equal(request.method, 'POST');
      assert.equal(request.url, '/v1/posts');
      assert.equal(request.headers['content-type'], 'application/json');
      assert.equal(request.headers['idempotency-key'], message.id);
      assert.equal(
        request.body,
        JSON.stringify({ id: message.id, username: 'Curl', message: message.message, scheduledAt: '2014-08-01T13:30:00.000Z', attempt: 3 }),
      );
      assert.deepEqual(verifySignature(SECRET, request.headers['psched-signature'] as string, request.body, clock.now()), { ok: true });
      assert.equal(verifySignature('another-secret', request.headers['psched-signature'] as string, request.body, clock.now()).ok, false);
    } finally {
      await deliverer.close();
    }
  });

  it('asks mayStillSend as the request is written, and leaves it unsent (a retry) on false', async () => {
    await using receiver = await startReceiver();
    const deliverer = createJsonDeliverer({ mainUrl: receiver.url, signingSecret: SECRET, timeoutMs: 5000, connections: 1, clock: new FakeClock(Date.now()) });
    try {
      let asked = 0;
      const refused = await deliverer.deliver(storedMessage(), () => { asked++; return false; });
      assert.deepEqual(refused, { kind: 'retry', error: NOT_SENT_LEASE });
      assert.equal(asked, 1);
      const sent = await deliverer.deliver(storedMessage({ id: '0190f3a0-0000-7000-8000-000000000002' }), () => true);
      assert.equal(sent.kind, 'delivered');
      assert.deepEqual(receiver.requests.map((request) => request.headers['idempotency-key']), ['0190f3a0-0000-7000-8000-000000000002'], 'only the allowed one reached the receiver');
    } finally {
      await deliverer.close();
    }
  });

  it('keeps a path prefix of the main URL and sends no signature without a secret', async () => {
    await using receiver = await startReceiver();
    const deliverer = createJsonDeliverer({ mainUrl: `${receiver.url}/social/`, timeoutMs: 5000, connections: 1, clock: new FakeClock() });
    try {
      assert.equal((await deliverer.deliver(storedMessage())).kind, 'delivered');
      const request = await receiver.nextRequest();
      assert.equal(request.url, '/social/v1/posts');
      assert.equal(request.headers['psched-signature'], undefined);
    } finally {
      await deliverer.close();
    }
  });

  it('retries 5xx and 408, and dies on other 4xx', async () => {
    await using receiver = await startReceiver();
    const deliverer = createJsonDeliverer({ mainUrl: receiver.url, timeoutMs: 5000, connections: 1, clock: new FakeClock() });
    try {
      receiver.script(
        { status: 500, body: 'database is down' },
        { status: 502 },
        { status: 408 },
        { status: 400, body: { error: { code: 'invalid_request', message: 'username too long' } } },
        { status: 404 },
      );
      const first = await deliverer.deliver(storedMessage());
      assert.equal(first.kind, 'retry');
      assert.equal(first.status, 500);
      assert.match((first as { error: string }).error, /500: database is down/);
      assert.equal((await deliverer.deliver(storedMessage())).kind, 'retry');
      assert.equal((await deliverer.deliver(storedMessage())).kind, 'retry');
      const bad = await deliverer.deliver(storedMessage());
      assert.equal(bad.kind, 'dead');
      assert.equal(bad.status, 400);
      assert.deepEqual(bad.response, { error: { code: 'invalid_request', message: 'username too long' } });
      assert.equal((await deliverer.deliver(storedMessage())).kind, 'dead');
    } finally {
      await deliverer.close();
    }
  });

  it('passes on Retry-After of a 429, in seconds or as an HTTP date', async () => {
    await using receiver = await startReceiver();
    const clock = new FakeClock(Date.UTC(2030, 0, 1, 12, 0, 0));
    const deliverer = createJsonDeliverer({ mainUrl: receiver.url, timeoutMs: 5000, connections: 1, clock });
    try {
      receiver.script(
        { status: 429, headers: { 'retry-after': '7' } },
        { status: 429, headers: { 'retry-after': new Date(clock.now() + 90_000).toUTCString() } },
        { status: 429 },
      );
      assert.deepEqual(pick(await deliverer.deliver(storedMessage())), { kind: 'retry', status: 429, retryAfterMs: 7000 });
      assert.deepEqual(pick(await deliverer.deliver(storedMessage())), { kind: 'retry', status: 429, retryAfterMs: 90_000 });
      assert.deepEqual(pick(await deliverer.deliver(storedMessage())), { kind: 'retry', status: 429, retryAfterMs: undefined });
    } finally {
      await deliverer.close();
    }
  });

  it('retries when the main server does not answer in time', async () => {
    await using receiver = await startReceiver();
    const deliverer = createJsonDeliverer({ mainUrl: receiver.url, timeoutMs: 200, connections: 1, clock: new FakeClock() });
    try {
      receiver.script({ status: 200, hang: true });
      const result = await deliverer.deliver(storedMessage());
      assert.equal(result.kind, 'retry');
      assert.match((result as { error: string }).error, /timeout/i);
    } finally {
      await deliverer.close();
    }
  });

  it('retries when the connection is refused', async () => {
    const port = await closedPort();
    const deliverer = createJsonDeliverer({ mainUrl: `http://127.0.0.1:${port}`, timeoutMs: 2000, connections: 1, clock: new FakeClock() });
    try {
      const result = await deliverer.deliver(storedMessage());
      assert.equal(result.kind, 'retry');
      assert.match((result as { error: string }).error, /ECONNREFUSED/);
    } finally {
      await deliverer.close();
    }
  });

  it('reuses keep-alive connections', async () => {
    await using receiver = await startReceiver();
    const deliverer = createJsonDeliverer({ mainUrl: receiver.url, timeoutMs: 5000, connections: 2, clock: new FakeClock() });
    try {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => deliverer.deliver(storedMessage({ id: `id-${i}` }))));
      assert.ok(results.every((result) => result.kind === 'delivered'));
      const sockets = new Set(receiver.requests.map((request) => request.remotePort));
      assert.ok(sockets.size <= 2, `expected at most 2 connections, saw ${sockets.size}`);
    } finally {
      await deliverer.close();
    }
  });

  it('pipelines deliveries on few connections when asked', async () => {
    await using receiver = await startReceiver();
    const deliverer = createJsonDeliverer({ mainUrl: receiver.url, timeoutMs: 5000, connections: 1, pipelining: 8, clock: new FakeClock() });
    try {
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => deliverer.deliver(storedMessage({ id: `id-${i}` }))));
      assert.ok(results.every((result) => result.kind === 'delivered'));
      assert.deepEqual(new Set(receiver.requests.map((request) => request.headers['idempotency-key'])).size, 40);
      assert.equal(new Set(receiver.requests.map((request) => request.remotePort)).size, 1);
    } finally {
      await deliverer.close();
    }
  });
});

describe('pipelined deliveries sent together', () => {
  it('leave in one write per connection: the requests of one turn, and those that waited for the connection', async () => {
    // counts the writes of this process's client sockets (undici connects through net)
    const writes: number[] = [];
    const onSocket = ({ socket }: { socket: Socket }) => {
      const index = writes.push(0) - 1;
      for (const method of ['_write', '_writev'] as const) {
        const original = socket[method];
        socket[method] = function (this: Socket, ...args: unknown[]) {
          writes[index]!++;
          return (original as (...a: unknown[]) => void).apply(this, args);
        };
      }
    };
    diagnostics.subscribe('net.client.socket', onSocket as (message: unknown) => void);
    await using receiver = await startReceiver();
    const deliverer = createJsonDeliverer({ mainUrl: receiver.url, timeoutMs: 5000, connections: 1, pipelining: 8, clock: new FakeClock() });
    try {
      const send = (from: number) => Promise.all(Array.from({ length: 8 }, (_, i) => deliverer.deliver(storedMessage({ id: `id-${from + i}` }))));
      const first = await send(0);
      assert.deepEqual(writes, [1], 'the eight that waited for the connection: one write');
      const second = await send(8);
      assert.deepEqual(writes, [2], 'eight more in one turn: one more write');
      assert.ok([...first, ...second].every((result) => result.kind === 'delivered'));
      assert.equal(receiver.requests.length, 16);
      assert.equal(new Set(receiver.requests.map((request) => request.headers['idempotency-key'])).size, 16);
    } finally {
      diagnostics.unsubscribe('net.client.socket', onSocket as (message: unknown) => void);
      await deliverer.close();
    }
  });
});

describe('pipelined deliveries to a receiver that hangs', () => {
  it('each attempt is sent once: undici never re-sends a pipelined request behind a timed-out one', async () => {
    await using receiver = await startReceiver();
    receiver.fallback = { status: 200, hang: true };
    const deliverer = createJsonDeliverer({ mainUrl: receiver.url, timeoutMs: 300, connections: 1, pipelining: 4, clock: new FakeClock() });
    try {
      const ids = Array.from({ length: 8 }, (_, i) => `id-${i}`);
      const results = await Promise.all(ids.map((id) => deliverer.deliver(storedMessage({ id }))));
      assert.ok(results.every((result) => result.kind === 'retry'), JSON.stringify(results));
      const sends = receiver.requests.map((request) => request.headers['idempotency-key']);
      assert.ok(sends.length <= ids.length, `${sends.length} requests for ${ids.length} attempts: ${sends.join(' ')}`);
      assert.equal(new Set(sends).size, sends.length, 'no attempt sent twice');
    } finally {
      await deliverer.close();
    }
  });
});

describe('legacy deliverer', () => {
  it('posts username and message form-encoded to postMessage.php; Success is delivered', async () => {
    await using receiver = await startReceiver();
    const deliverer = createLegacyDeliverer({ mainUrl: receiver.url, timeoutMs: 5000, connections: 1 });
    try {
      const message = storedMessage({ message: 'a+b = c & d ✨' });
      const answer = { received: { username: 'Curl', message: message.message }, result: 'Success' };
      receiver.script({ status: 200, body: answer });
      assert.deepEqual(await deliverer.deliver(message), { kind: 'delivered', status: 200, response: answer });

      const request = await receiver.nextRequest();
      assert.equal(request.method, 'POST');
      assert.equal(request.url, '/postMessage.php');
      assert.equal(request.headers['content-type'], 'application/x-www-form-urlencoded');
      const form = new URLSearchParams(request.body);
      assert.deepEqual([...form.keys()], ['username', 'message']);
      // encoded twice, as the original's cron did: its postMessage.php decodes once more than the form parser
      assert.equal(request.body, 'username=Curl&message=a%252Bb%2B%253D%2Bc%2B%2526%2Bd%2B%25E2%259C%25A8');
      assert.equal(originalEndpointReads(request.body, 'username'), 'Curl');
      assert.equal(originalEndpointReads(request.body, 'message'), 'a+b = c & d ✨');
    } finally {
      await deliverer.close();
    }
  });

  it('Failure is dead, a non-JSON 200 and 5xx are retried, other 4xx are dead', async () => {
    await using receiver = await startReceiver();
    const deliverer = createLegacyDeliverer({ mainUrl: receiver.url, timeoutMs: 5000, connections: 1 });
    try {
      const failure = { received: {}, result: 'Failure', failure: 'Invalid Post. Expected two non-zero strings (username, message)' };
      receiver.script(
        { status: 200, body: failure },
        { status: 400, body: failure },
        { status: 200, body: '<b>Fatal error</b>: mysqli_connect(): (HY000/2002)' },
        { status: 503 },
      );
      const refused = await deliverer.deliver(storedMessage());
      assert.equal(refused.kind, 'dead');
      assert.match((refused as { error: string }).error, /Invalid Post/);
      assert.deepEqual(refused.response, failure);
      assert.equal((await deliverer.deliver(storedMessage())).kind, 'dead');
      assert.equal((await deliverer.deliver(storedMessage())).kind, 'retry');
      assert.equal((await deliverer.deliver(storedMessage())).kind, 'retry');
    } finally {
      await deliverer.close();
    }
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates, ignores garbage, never goes negative', () => {
    const now = Date.UTC(2030, 0, 1);
    assert.equal(parseRetryAfter('120', now), 120_000);
    assert.equal(parseRetryAfter(new Date(now + 5000).toUTCString(), now), 5000);
    assert.equal(parseRetryAfter(new Date(now - 5000).toUTCString(), now), 0);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter(undefined, now), undefined);
  });
});

function pick(result: { kind: string; status?: number; retryAfterMs?: number }) {
  return { kind: result.kind, status: result.status, retryAfterMs: result.retryAfterMs };
}
