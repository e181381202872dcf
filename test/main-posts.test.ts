import assert from 'node:assert/strict';
import { get, type IncomingMessage } from 'node:http';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { FakeClock } from '../src/clock.ts';
import { deliveryPayload, startTestMain } from './support/main.ts';
import { mainStoreFactories, whilePingFails } from './support/stores.ts';

const SECRET = 'test-signing-secret';

describe('receiving deliveries (POST /v1/posts)', () => {
  it('stores a correctly signed delivery: 201 with the post, timed at its arrival', async () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1, 12));
    await using t = await startTestMain({ signingSecret: SECRET }, { clock });
    const payload = deliveryPayload({ username: 'Zoë', message: 'Hi 👋 "quoted" <b>' });
    const response = await t.deliver(payload, { secret: SECRET, at: clock.now() });
    assert.equal(response.statusCode, 201, response.body);
    const post = response.json();
    assert.equal(post.messageId, payload.id);
    assert.equal(post.username, 'Zoë');
    assert.equal(post.message, 'Hi 👋 "quoted" <b>');
    assert.equal(post.postedAt, '2030-01-01T12:00:00.000Z');
    assert.equal(post.scheduledAt, payload.scheduledAt);
    assert.equal(await t.server.store.countPosts(), 1);
  });

  it('refuses a missing, forged, stale or wrong-body signature with 401 and stores nothing', async () => {
    const clock = new FakeClock();
    await using t = await startTestMain({ signingSecret: SECRET }, { clock });
    const payload = deliveryPayload();
    const cases = {
      missing: await t.deliver(payload),
      forged: await t.deliver(payload, { secret: 'not-the-secret', at: clock.now() }),
      stale: await t.deliver(payload, { secret: SECRET, at: clock.now() - 10 * 60_000 }),
      malformed: await t.deliver(payload, { header: 'nonsense' }),
    };
    // a signature over other bytes: the same JSON re-serialised with a space
    const signedOther = await t.server.app.inject({
      method: 'POST',
      url: '/v1/posts',
      headers: { 'content-type': 'application/json', 'psched-signature': (await import('../src/protocol/signing.ts')).signHeader(SECRET, clock.now(), JSON.stringify(payload)) },
      payload: JSON.stringify(payload, null, 1),
    });
    for (const [name, response] of Object.entries({ ...cases, signedOther })) {
      assert.equal(response.statusCode, 401, `${name}: ${response.body}`);
      assert.equal(response.json().error.code, 'unauthorized');
    }
    assert.match(cases.stale.json().error.message, /stale/);
    assert.equal(await t.server.store.countPosts(), 0);
  });

  it('does not take a form body in place of the signed JSON', async () => {
    await using t = await startTestMain({ signingSecret: SECRET });
    const response = await t.form('/v1/posts', { id: 'x', username: 'a', message: 'b', scheduledAt: '2030-01-01T00:00:00Z' });
    assert.equal(response.statusCode, 400);
    assert.equal(await t.server.store.countPosts(), 0);
  });

  it('is idempotent on the message id: a redelivery answers 200 with the same post, the feed holds one', async () => {
    const clock = new FakeClock();
    await using t = await startTestMain({ signingSecret: SECRET }, { clock });
    const payload = deliveryPayload();
    const first = await t.deliver(payload, { secret: SECRET, at: clock.now() });
    await clock.advance(1000);
    const again = await t.deliver({ ...payload, attempt: 2 }, { secret: SECRET, at: clock.now() });
    assert.equal(first.statusCode, 201);
    assert.equal(again.statusCode, 200);
    assert.deepEqual(again.json(), first.json());
    const feed = (await t.request('GET', '/v1/posts')).json();
    assert.equal(feed.items.length, 1);
  });

  it('accepts unsigned deliveries when no signing secret is configured', async () => {
    await using t = await startTestMain();
    assert.equal((await t.deliver(deliveryPayload())).statusCode, 201);
  });

  it('answers 400 naming the field for a bad payload', async () => {
    const clock = new FakeClock();
    await using t = await startTestMain({ signingSecret: SECRET }, { clock });
    const bad = await t.deliver(deliveryPayload({ username: '' }), { secret: SECRET, at: clock.now() });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.field, 'username');
    const notJson = await t.deliver('{"id":', { secret: SECRET, at: clock.now() });
    assert.equal(notJson.statusCode, 400);
    assert.equal(await t.server.store.countPosts(), 0);
  });
});

describe("the original's POST /postMessage.php", () => {
  it('stores a form post and answers the original JSON shape', async () => {
    await using t = await startTestMain();
    const response = await t.form('/postMessage.php', { username: 'Curl', message: 'Hi' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.body, '{"received":{"username":"Curl","message":"Hi"},"result":"Success"}');
    const [post] = (await t.request('GET', '/v1/posts')).json().items;
    assert.equal(post.username, 'Curl');
    assert.equal(post.messageId, null);
  });

  it('answers the original Failure shape with 400 when a field is missing', async () => {
    await using t = await startTestMain();
    const response = await t.form('/postMessage.php', { username: 'Curl' });
    assert.equal(response.statusCode, 400);
    assert.deepEqual(response.json(), {
      received: { username: 'Curl', message: null },
      result: 'Failure',
      failure: 'Invalid Post. Expected two non-zero strings (username, message)',
    });
    assert.equal(await t.server.store.countPosts(), 0);
  });

  it('is refused with 403 and a reason when only signed deliveries are accepted', async () => {
    await using t = await startTestMain({ signingSecret: SECRET });
    const response = await t.form('/postMessage.php', { username: 'Curl', message: 'Hi' });
    assert.equal(response.statusCode, 403);
    const body = response.json();
    assert.equal(body.result, 'Failure');
    assert.deepEqual(body.received, { username: 'Curl', message: 'Hi' });
    assert.match(body.failure, /--legacy-post-message/);
    assert.equal(await t.server.store.countPosts(), 0);
  });

  it('refuses text over the limits, with NUL or blank, as scheduling does', async () => {
    await using t = await startTestMain();
    for (const fields of [{ username: 'a'.repeat(65), message: 'x' }, { username: 'a', message: 'x'.repeat(5001) }, { username: 'a', message: 'nul\u0000' },
      { username: ' \u200B ', message: 'x' }, { username: 'a', message: '\u2060\uFEFF' }]) {
      const response = await t.form('/postMessage.php', fields);
      assert.equal(response.statusCode, 400);
      assert.equal(response.json().result, 'Failure');
    }
    assert.equal(await t.server.store.countPosts(), 0);
  });

  it('is accepted next to signed deliveries when switched on explicitly', async () => {
    await using t = await startTestMain({ signingSecret: SECRET, legacyPostMessage: 'true' });
    const response = await t.form('/postMessage.php', { username: 'Curl', message: 'Hi' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.json().result, 'Success');
  });
});

describe('the feed (GET /v1/posts)', () => {
  it('pages newest first with a keyset cursor', async () => {
    const clock = new FakeClock();
    await using t = await startTestMain({}, { clock });
    for (let i = 1; i <= 5; i++) {
      await t.deliver(deliveryPayload({ message: `post ${i}` }));
      await clock.advance(1);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const response = await t.request('GET', `/v1/posts?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(response.statusCode, 200);
      const page: { items: { message: string }[]; nextCursor: string | null } = response.json();
      seen.push(...page.items.map((p) => p.message));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    assert.deepEqual(seen, ['post 5', 'post 4', 'post 3', 'post 2', 'post 1']);
    assert.equal(pages, 3);
  });

  it('ends with nextCursor null when the last page is exactly full', async () => {
    await using t = await startTestMain();
    for (let i = 0; i < 2; i++) await t.deliver(deliveryPayload());
    assert.equal((await t.request('GET', '/v1/posts?limit=2')).json().nextCursor, null);
  });

  it('refuses a bad limit or cursor with 400', async () => {
    await using t = await startTestMain();
    for (const query of ['limit=0', 'limit=201', 'limit=ten', 'cursor=not-a-cursor', 'cursor=' + Buffer.from('x.y').toString('base64url')]) {
      const response = await t.request('GET', `/v1/posts?${query}`);
      assert.equal(response.statusCode, 400, query);
    }
  });
});

/** Reads a Server-Sent Events stream: awaits named events, no sleeps. */
class EventReader {
  #buffer = '';
  #events: { event: string; id?: string; data: string; comment?: string }[] = [];
  #waiters: (() => void)[] = [];
  ended: Promise<void>;

  constructor(response: IncomingMessage) {
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      this.#buffer += chunk;
      let end: number;
      while ((end = this.#buffer.indexOf('\n\n')) >= 0) {
        const block = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        const entry: { event: string; id?: string; data: string; comment?: string } = { event: 'message', data: '' };
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) entry.comment = line.slice(1).trim();
          else if (line.startsWith('event: ')) entry.event = line.slice(7);
          else if (line.startsWith('data: ')) entry.data += line.slice(6);
          else if (line.startsWith('id: ')) entry.id = line.slice(4);
        }
        this.#events.push(entry);
        for (const wake of this.#waiters.splice(0)) wake();
      }
    });
    this.ended = new Promise((resolve) => response.on('end', resolve));
  }

  /** The next entry matching `test`, consuming everything before it. */
  async next(test: (entry: { event: string; id?: string; data: string; comment?: string }) => boolean) {
    for (;;) {
      const index = this.#events.findIndex(test);
      if (index >= 0) return this.#events.splice(0, index + 1).at(-1)!;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }
}

function openEvents(baseUrl: string, headers: Record<string, string> = {}): Promise<{ reader: EventReader; response: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    get(`${baseUrl}/v1/events`, { headers }, (response) => resolve({ reader: new EventReader(response), response })).on('error', reject);
  });
}

describe('the live feed (GET /v1/events)', () => {
  it('streams each new post as an `event: post`, once', async () => {
    await using t = await startTestMain();
    const url = await t.server.listen();
    const { reader, response } = await openEvents(url);
    assert.equal(response.statusCode, 200);
    assert.match(response.headers['content-type']!, /^text\/event-stream/);
    await reader.next((e) => e.comment === 'connected');
    const payload = deliveryPayload({ message: 'live <3' });
    await t.deliver(payload);
    await t.deliver(payload); // a redelivery is not a new post
    await t.form('/postMessage.php', { username: 'Curl', message: 'second' });
    const first = await reader.next((e) => e.event === 'post');
    const post = JSON.parse(first.data);
    assert.equal(post.message, 'live <3');
    assert.equal(post.messageId, payload.id);
    assert.equal(first.id, post.id);
    const second = await reader.next((e) => e.event === 'post');
    assert.equal(JSON.parse(second.data).message, 'second');
    response.destroy();
  });

  it('replays the posts a reconnecting client missed (Last-Event-ID), oldest first', async () => {
    await using t = await startTestMain();
    const ids: string[] = [];
    for (let i = 1; i <= 3; i++) ids.push((await t.deliver(deliveryPayload({ message: `m${i}` }))).json().id);
    const url = await t.server.listen();
    const { reader, response } = await openEvents(url, { 'last-event-id': ids[0]! });
    const replayed = [await reader.next((e) => e.event === 'post'), await reader.next((e) => e.event === 'post')];
    assert.deepEqual(replayed.map((e) => JSON.parse(e.data).message), ['m2', 'm3']);
    await t.deliver(deliveryPayload({ message: 'm4' }));
    assert.equal(JSON.parse((await reader.next((e) => e.event === 'post')).data).message, 'm4');
    response.destroy();
  });

  it('sends a heartbeat comment every 15 s of quiet', async () => {
    const clock = new FakeClock();
    await using t = await startTestMain({}, { clock });
    const url = await t.server.listen();
    const { reader, response } = await openEvents(url);
    await reader.next((e) => e.comment === 'connected');
    await clock.advance(15_000);
    await reader.next((e) => e.comment === 'heartbeat');
    await clock.advance(15_000);
    await reader.next((e) => e.comment === 'heartbeat');
    response.destroy();
  });

  it('forgets a stream whose client left, and close() ends the open ones', async () => {
    const clock = new FakeClock();
    await using t = await startTestMain({}, { clock });
    const url = await t.server.listen();
    const gone = await openEvents(url);
    await gone.reader.next((e) => e.comment === 'connected');
    const staying = await openEvents(url);
    await staying.reader.next((e) => e.comment === 'connected');
    const closed = new Promise((resolve) => gone.response.socket.on('close', resolve));
    gone.response.destroy();
    await closed;
    // the next broadcast reaches only the stream still open, without errors
    await t.deliver(deliveryPayload());
    await staying.reader.next((e) => e.event === 'post');
    await t.server.close();
    await staying.reader.ended;
    assert.equal(clock.pendingTimers, 0, 'no heartbeat left running');
  });
});

describe('the live feed under load', () => {
  it('takes at most --max-event-streams clients: the next is answered 503 in the error shape, and a leaving one frees its slot', async () => {
    await using t = await startTestMain({ maxEventStreams: '2' });
    const url = await t.server.listen();
    const first = await openEvents(url);
    const second = await openEvents(url);
    await first.reader.next((e) => e.comment === 'connected');
    await second.reader.next((e) => e.comment === 'connected');
    assert.equal(t.server.streams.size, 2);

    const refused = await fetch(`${url}/v1/events`);
    assert.equal(refused.status, 503);
    assert.match(refused.headers.get('content-type')!, /^application\/json/);
    assert.equal(refused.headers.get('retry-after'), '5');
    const body = await refused.json();
    assert.equal(body.error.code, 'unavailable');
    assert.match(body.error.message, /--max-event-streams/);
    assert.equal(t.server.streams.size, 2);

    const dropped = once(t.server.streams, 'drop');
    first.response.destroy();
    await dropped;
    assert.equal(t.server.streams.size, 1, 'the closed client is forgotten');

    const third = await openEvents(url);
    assert.equal(third.response.statusCode, 200);
    await third.reader.next((e) => e.comment === 'connected');
    await t.deliver(deliveryPayload({ message: 'to both' }));
    assert.equal(JSON.parse((await second.reader.next((e) => e.event === 'post')).data).message, 'to both');
    assert.equal(JSON.parse((await third.reader.next((e) => e.event === 'post')).data).message, 'to both');
    second.response.destroy();
    third.response.destroy();
  });

  it('holds back at most 256 KiB for a client while its replay is read, then cuts it off and forgets what it held', async () => {
    await using t = await startTestMain();
    const seen = (await t.deliver(deliveryPayload({ message: 'seen' }))).json().id;
    // the replay reads the feed: that read waits until the test lets it go
    let releaseRead!: () => void;
    const readHeld = new Promise<void>((resolve) => (releaseRead = resolve));
    let replayStarted!: () => void;
    const started = new Promise<void>((resolve) => (replayStarted = resolve));
    const listPosts = t.server.store.listPosts.bind(t.server.store);
    t.server.store.listPosts = async (options) => {
      replayStarted();
      await readHeld;
      return listPosts(options);
    };
    const url = await t.server.listen();
    const client = await openEvents(url, { 'last-event-id': seen });
    await client.reader.next((e) => e.comment === 'connected');
    await started;
    await t.deliver(deliveryPayload({ message: 'small' }));
    assert.equal(t.server.streams.heldPosts, 1);

    // the largest posts: 5,000 emoji, 20 kB of UTF-8 each; 13 of them pass 256 KiB
    const dropped = once(t.server.streams, 'drop');
    client.response.on('error', () => {}); // the cut: "aborted"
    const cut = new Promise((resolve) => client.response.on('close', resolve));
    for (let i = 0; i < 13; i++) await t.deliver(deliveryPayload({ message: '😀'.repeat(5000) }));
    await dropped;
    await cut;
    assert.equal(t.server.streams.size, 0);
    assert.equal(t.server.streams.heldPosts, 0);
    releaseRead();
  });
});

for (const factory of mainStoreFactories()) {
  describe(`receiving on the ${factory.name} store`, () => {
    it('concurrent redeliveries of one message: one 201, the rest 200 with the same post, one post in the feed', async () => {
      await using handle = await factory.create();
      await using t = await startTestMain({ signingSecret: SECRET }, { store: handle.store });
      const payload = deliveryPayload({ message: 'once only' });
      const answers = await Promise.all(Array.from({ length: 8 }, (_, attempt) => t.deliver({ ...payload, attempt: attempt + 1 }, { secret: SECRET })));
      assert.deepEqual(answers.map((a) => a.statusCode).sort(), [200, 200, 200, 200, 200, 200, 200, 201]);
      assert.equal(new Set(answers.map((a) => a.json().id)).size, 1);
      const feed = (await t.request('GET', '/v1/posts')).json();
      assert.deepEqual(feed.items.map((p: { message: string }) => p.message), ['once only']);
    });

    it('legacy posts and signed deliveries share one feed, newest first', async () => {
      await using handle = await factory.create();
      const clock = new FakeClock();
      await using t = await startTestMain({}, { store: handle.store, clock });
      await t.deliver(deliveryPayload({ message: 'signed' }));
      await clock.advance(5);
      await t.form('/postMessage.php', { username: 'Curl', message: 'legacy' });
      const feed = (await t.request('GET', '/v1/posts?limit=1')).json();
      assert.equal(feed.items[0].message, 'legacy');
      const rest = (await t.request('GET', `/v1/posts?limit=1&cursor=${feed.nextCursor}`)).json();
      assert.equal(rest.items[0].message, 'signed');
    });
  });
}

describe('the Host check (DNS rebinding)', () => {
  it('a main server open to unsigned writes on loopback answers only loopback names (421 otherwise, nothing stored)', async () => {
    for (const options of [{}, { accessToken: 'tok' }, { accessToken: 'tok', signingSecret: 'sig', legacyPostMessage: 'true' }]) {
      await using t = await startTestMain(options);
      const post = await t.server.app.inject({ method: 'POST', url: '/postMessage.php', headers: { host: 'evil.example:8080', 'content-type': 'application/x-www-form-urlencoded' }, payload: 'username=u&message=m' });
      assert.equal(post.statusCode, 421, JSON.stringify(options));
      assert.equal((post.json() as { error: { code: string } }).error.code, 'misdirected_request');
      assert.equal((await t.request('GET', '/v1/posts', { headers: { host: 'evil.example' } })).statusCode, 421);
      assert.equal((await t.request('GET', '/', { headers: { host: 'evil.example' } })).statusCode, 421);
      assert.equal((await t.request('GET', '/v1/posts')).json().items.length, 0);
      assert.equal((await t.request('GET', '/v1/posts', { headers: { host: '127.0.0.1:8080' } })).statusCode, 200);
    }
  });

  it('answers --allowed-hosts names too, and any name once scheduling needs a token and deliveries a signature', async () => {
    {
      await using t = await startTestMain({ allowedHosts: 'feed.lan' });
      assert.equal((await t.request('GET', '/v1/posts', { headers: { host: 'feed.lan:8080' } })).statusCode, 200);
      assert.equal((await t.request('GET', '/v1/posts', { headers: { host: 'evil.example' } })).statusCode, 421);
    }
    await using t = await startTestMain({ accessToken: 'tok', signingSecret: 'sig' });
    assert.equal((await t.request('GET', '/v1/posts', { headers: { host: 'psched.example.com' } })).statusCode, 200);
  });
});

describe('GET /healthz', () => {
  it('answers ok', async () => {
    await using t = await startTestMain();
    const response = await t.request('GET', '/healthz');
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { status: 'ok' });
  });
});

describe('the main server\'s GET /metrics', () => {
  it('counts posts new and redelivered, open event streams, and the process and runtime metrics; behind the access token', async () => {
    await using t = await startTestMain({ signingSecret: SECRET, accessToken: 'metrics-token' });
    const payload = deliveryPayload();
    assert.equal((await t.deliver(payload, { secret: SECRET })).statusCode, 201);
    assert.equal((await t.deliver(payload, { secret: SECRET })).statusCode, 200);

    assert.equal((await t.request('GET', '/metrics')).statusCode, 401);
    const answer = await t.request('GET', '/metrics', { token: 'metrics-token' });
    assert.equal(answer.statusCode, 200);
    assert.match(answer.headers['content-type'] as string, /^text\/plain/);
    assert.match(answer.body, /^psched_posts_total\{via="delivery",result="created"\} 1$/m);
    assert.match(answer.body, /^psched_posts_total\{via="delivery",result="duplicate"\} 1$/m);
    assert.match(answer.body, /^psched_posts_total\{via="legacy",result="created"\} 0$/m);
    assert.match(answer.body, /^psched_event_streams 0$/m);
    assert.match(answer.body, /^process_resident_memory_bytes \d/m);
    assert.match(answer.body, /^nodejs_eventloop_lag_p99_seconds \d/m);
  });
});

describe('the main server\'s GET /healthz', () => {
  it('answers ok while its database answers, and 503 "not ready" (nothing of the error) when it does not', async () => {
    await using t = await startTestMain();
    assert.deepEqual((await t.request('GET', '/healthz')).json(), { status: 'ok' });
    await whilePingFails(t.server.store, async () => {
      const response = await t.request('GET', '/healthz');
      assert.equal(response.statusCode, 503);
      assert.deepEqual(response.json(), { status: 'not ready' });
    });
  });
});
