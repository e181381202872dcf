import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { signHeader, SIGNATURE_HEADER } from '../src/protocol/signing.ts';
import { formatWallClock } from '../src/protocol/time.ts';
import {
  Processes, freePort, inParallel, requestJson, waitFor, waitHealthy, type ServiceProcess,
} from './support/processes.ts';

/**
 * Issue 3, part 8: the whole system through real HTTP, as separate processes
 * (`psched dispatcher` and `psched main` sharing a token and a signing secret,
 * as `psched dev` sets them up), plus the CLI client and `psched dev` itself.
 * The tests of this file run in order on the same two services.
 */

interface Post {
  id: string;
  messageId: string | null;
  username: string;
  message: string;
  postedAt: string;
  scheduledAt: string | null;
}

/** Short lease and horizon: after a kill -9 the restarted dispatcher takes over within seconds (see crash-dispatcher.test.ts). */
const DISPATCHER_TUNING = { lease: '2s', horizon: '8s' };

const BURST = 500;
const BURST_SPREAD_MS = 2_000;
/** The burst starts after scheduling it is surely done (1-2 s on this shared box), so the kill lands inside it. */
const BURST_FIRST_DUE_MS = 2_500;
const KILL_AFTER_POSTED = 150;

describe('the whole system: main + dispatcher processes over real HTTP', () => {
  const procs = new Processes();
  /** The dispatchers' API token (the main server sends it) and the main server's own access token. */
  // hex: a random base64url value can start with '-', which a command line reads as a flag
  const token = randomBytes(18).toString('hex');
  const accessToken = randomBytes(18).toString('hex');
  const secret = randomBytes(32).toString('hex');
  let dispatcher: ServiceProcess;
  let main: ServiceProcess;

  before(async () => {
    const dir = procs.tempDir();
    const [mainPort, dispatcherPort] = [await freePort(), await freePort()];
    const shared = { 'api-token': token, 'signing-secret': secret };
    [dispatcher, main] = await Promise.all([
      procs.startService('dispatcher', { ...shared, ...DISPATCHER_TUNING, db: join(dir, 'dispatcher.db'), 'main-url': `http://127.0.0.1:${mainPort}` }, dispatcherPort),
      procs.startService('main', { ...shared, 'access-token': accessToken, db: join(dir, 'main.db'), 'dispatcher-url': `http://127.0.0.1:${dispatcherPort}`, timezone: 'UTC' }, mainPort),
    ]);
  });
  after(() => procs.cleanup());

  /** Every post of the feed, newest first, through its keyset pagination. */
  const wholeFeed = async (): Promise<Post[]> => {
    const posts: Post[] = [];
    let cursor: string | null = null;
    do {
      const answer = await requestJson('GET', `${main.url}/v1/posts?limit=200${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(answer.status, 200);
      posts.push(...(answer.body.items as Post[]));
      cursor = answer.body.nextCursor;
    } while (cursor);
    return posts;
  };

  const postsOf = async (messageId: string) => (await wholeFeed()).filter((post) => post.messageId === messageId);

  /** The dispatcher's view of a message (status delivered once its post was acknowledged). */
  const dispatcherMessage = async (id: string) => (await requestJson('GET', `${dispatcher.url}/v1/messages/${id}`, { token })).body as { status: string };

  /**
   * Waits until the message is in the feed and the dispatcher has recorded
   * the delivery (so no attempt is still on its way), then returns its posts.
   */
  const awaitPosted = async (messageId: string, timeoutMs = 15_000): Promise<Post[]> => {
    await waitFor(async () => (await postsOf(messageId)).length > 0, { timeoutMs, intervalMs: 50, what: `message ${messageId} in the feed` });
    await waitFor(async () => (await dispatcherMessage(messageId)).status === 'delivered', { timeoutMs: 5_000, what: `message ${messageId} recorded as delivered` });
    return postsOf(messageId);
  };

  const deliver = (payload: unknown, signature: string | undefined, body = JSON.stringify(payload)) =>
    requestJson('POST', `${main.url}/v1/posts`, { body, headers: signature ? { [SIGNATURE_HEADER]: signature } : {} });

  it('JSON POST /v1/scheduled: the message comes due and is in the feed exactly once', async () => {
    const text = `json ${randomUUID()}`;
    const scheduled = await requestJson('POST', `${main.url}/v1/scheduled`, { token: accessToken, body: { username: 'Ann', message: text, delaySeconds: 1 } });
    assert.equal(scheduled.status, 201, JSON.stringify(scheduled.body));
    assert.equal(scheduled.body.status, 'scheduled');
    assert.equal(scheduled.body.dispatcher, dispatcher.url);

    const posts = await awaitPosted(scheduled.body.id);
    assert.equal(posts.length, 1);
    const [post] = posts as [Post];
    assert.equal(post.username, 'Ann');
    assert.equal(post.message, text);
    assert.equal(post.scheduledAt, scheduled.body.scheduledAt);
    assert.ok(Date.parse(post.postedAt) >= Date.parse(scheduled.body.scheduledAt), 'posted at or after its due time, never before');
  });

  it('the original form POST /scheduleMessage.php: datetime-local times, in the page\'s zone or the server\'s', async () => {
    // a datetime-local value has whole seconds: the next whole second, 2 s ahead
    const due = Math.ceil((Date.now() + 2_000) / 1000) * 1000;
    const cases = [
      { timezone: 'Asia/Tokyo', text: `form tokyo ${randomUUID()}` },
      { timezone: undefined, text: `form server zone ${randomUUID()}` }, // main runs with --timezone UTC
    ];
    const ids: string[] = [];
    for (const { timezone, text } of cases) {
      const time = formatWallClock(due, timezone ?? 'UTC').replace(' ', 'T');
      const form = new URLSearchParams({ username: 'Form', message: text, time, ...(timezone ? { timezone } : {}) });
      const answer = await requestJson('POST', `${main.url}/scheduleMessage.php`, {
        token: accessToken,
        body: form.toString(),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.result, 'Success');
      assert.deepEqual(answer.body.received, { username: 'Form', message: text, time });
      assert.equal(answer.body.externalResult.scheduledAt, new Date(due).toISOString(), `${time} in ${timezone ?? 'the server zone'}`);
      ids.push(answer.body.externalResult.id);
    }
    for (const id of ids) {
      const posts = await awaitPosted(id);
      assert.equal(posts.length, 1);
      assert.ok(Date.parse(posts[0]!.postedAt) >= due);
    }
  });

  it('a redelivery of a posted message answers 200 and the feed still holds one post', async () => {
    const scheduled = await requestJson('POST', `${main.url}/v1/scheduled`, { token: accessToken, body: { username: 'Bo', message: `redelivered ${randomUUID()}`, delaySeconds: 0 } });
    assert.equal(scheduled.status, 201);
    const [post] = (await awaitPosted(scheduled.body.id)) as [Post];

    // the dispatcher's payload again, as if its acknowledgement had been lost: attempt 2, freshly signed
    const payload = { id: scheduled.body.id, username: post.username, message: post.message, scheduledAt: scheduled.body.scheduledAt, attempt: 2 };
    const body = JSON.stringify(payload);
    const again = await deliver(payload, signHeader(secret, Date.now(), body), body);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.id, post.id, 'answers with the post already made');
    assert.equal((await postsOf(scheduled.body.id)).length, 1);
  });

  it('refuses deliveries with a missing, forged, stale or replayed signature (401) and posts nothing', async () => {
    const payload = { id: randomUUID(), username: 'Mallory', message: `forged ${randomUUID()}`, scheduledAt: new Date().toISOString(), attempt: 1 };
    const body = JSON.stringify(payload);
    const now = Date.now();
    const otherBody = JSON.stringify({ ...payload, id: randomUUID() });
    const refusals = {
      missing: await deliver(payload, undefined, body),
      'wrong secret': await deliver(payload, signHeader('not-the-secret', now, body), body),
      'tampered body': await deliver(payload, signHeader(secret, now, otherBody), body),
      'stale (replayed 10 minutes later)': await deliver(payload, signHeader(secret, now - 10 * 60_000, body), body),
      'from the future': await deliver(payload, signHeader(secret, now + 10 * 60_000, body), body),
    };
    for (const [why, answer] of Object.entries(refusals)) {
      assert.equal(answer.status, 401, `${why}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.error.code, 'unauthorized', why);
    }
    assert.deepEqual(await postsOf(payload.id), []);
    // the same delivery properly signed is taken: the refusals were for the signature alone
    const signed = await deliver(payload, signHeader(secret, Date.now(), body), body);
    assert.equal(signed.status, 201, JSON.stringify(signed.body));
  });

  it('with no dispatcher up, scheduling answers 503 and nothing is stored anywhere', async () => {
    const stopped = await dispatcher.stop('SIGTERM');
    assert.deepEqual(stopped, { code: 0, signal: null }, `the dispatcher exits cleanly on SIGTERM:\n${dispatcher.output}`);

    const text = `while down ${randomUUID()}`;
    const json = await requestJson('POST', `${main.url}/v1/scheduled`, { token: accessToken, body: { username: 'Ann', message: text, delaySeconds: 0 } });
    assert.equal(json.status, 503, JSON.stringify(json.body));
    assert.match(json.body.error.message, /dispatcher/i);
    const form = await requestJson('POST', `${main.url}/scheduleMessage.php`, {
      token: accessToken,
      body: new URLSearchParams({ username: 'Ann', message: text, time: '2014-08-01 13:30:00' }).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(form.status, 503);
    // the original's shape, received first as in all its answers
    assert.equal(JSON.stringify(form.body), JSON.stringify({ received: { username: 'Ann', message: text, time: '2014-08-01 13:30:00' }, result: 'Failure', failure: 'No response from Dispatcher' }));
    const list = await requestJson('GET', `${main.url}/v1/scheduled`, { token: accessToken });
    assert.equal(list.status, 503);

    dispatcher = await procs.restart(dispatcher);
    const everything = await dispatcherMessages(dispatcher, token);
    assert.deepEqual(everything.filter((m) => m.message === text), [], 'the dispatcher holds nothing of it');
    assert.deepEqual((await wholeFeed()).filter((post) => post.message === text), [], 'the feed holds nothing of it');
  });

  it(`kill -9 of the dispatcher while it delivers ${BURST} messages: after a restart each is in the feed exactly once`, async (t) => {
    const prefix = `burst ${randomUUID()} #`;
    const start = Date.now();
    const results = await inParallel(BURST, 16, async (i) => {
      const scheduledAt = new Date(start + BURST_FIRST_DUE_MS + (i * BURST_SPREAD_MS) / BURST).toISOString();
      const answer = await requestJson('POST', `${main.url}/v1/scheduled`, { token: accessToken, body: { username: 'Burst', message: `${prefix}${i}`, scheduledAt } });
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      return answer.body.id as string;
    });
    const ids = new Set(results.map((r) => (r.status === 'fulfilled' ? r.value : assert.fail(String(r.reason)))));
    t.diagnostic(`scheduled ${BURST} through the main server in ${Date.now() - start} ms`);
    const burstPosts = async () => (await wholeFeed()).filter((post) => post.message.startsWith(prefix));

    await waitFor(async () => (await burstPosts()).length >= KILL_AFTER_POSTED, {
      timeoutMs: BURST_FIRST_DUE_MS + BURST_SPREAD_MS + 10_000,
      intervalMs: 10,
      what: `${KILL_AFTER_POSTED} burst posts`,
    });
    assert.equal((await dispatcher.kill9()).signal, 'SIGKILL');
    const atKill = (await burstPosts()).length;
    assert.ok(atKill < BURST, `killed in the middle of the burst (${atKill} of ${BURST} posted)`);

    dispatcher = await procs.restart(dispatcher);
    const restartedAt = Date.now();
    await waitFor(async () => (await burstPosts()).length >= BURST, { timeoutMs: 30_000, intervalMs: 50, what: `all ${BURST} burst posts` });
    t.diagnostic(`killed at ${atKill}/${BURST} posted; the rest were posted within ${Date.now() - restartedAt} ms of the restart`);
    // nothing left on its way: every burst message is recorded as delivered, so no late duplicate can still come
    await waitFor(async () => {
      const messages = (await dispatcherMessages(dispatcher, token)).filter((m) => ids.has(m.id));
      return messages.length === BURST && messages.every((m) => m.status === 'delivered');
    }, { timeoutMs: 10_000, what: 'every burst message recorded as delivered' });

    const posts = await burstPosts();
    const perMessage = new Map<string, number>();
    for (const post of posts) perMessage.set(post.messageId!, (perMessage.get(post.messageId!) ?? 0) + 1);
    assert.deepEqual([...perMessage.keys()].filter((id) => !ids.has(id)), [], 'only scheduled messages are posted');
    assert.deepEqual([...perMessage.entries()].filter(([, n]) => n !== 1), [], 'no message is posted twice');
    assert.equal(perMessage.size, BURST, 'every message is posted');
    assert.equal(posts.length, BURST);
  });

  it('psched schedule / scheduled / cancel against the running main server', async () => {
    // run from an empty folder: the client must not pick up a ./data/dev-credentials.json
    const cwd = procs.tempDir();
    const client = (...args: string[]) => procs.run([...args, '--url', main.url, '--token', accessToken], { cwd });

    const soon = await client('schedule', '--in', '2s', '--user', 'Ann', `hello ${randomUUID()}`);
    assert.equal(soon.code, 0, soon.stderr);
    const soonId = /^scheduled (\S+)/.exec(soon.stdout)?.[1];
    assert.ok(soonId, `prints the id: ${soon.stdout}`);

    const later = await client('schedule', '--in', '1h', '--user', 'Ann', '--json', 'in an hour');
    assert.equal(later.code, 0, later.stderr);
    const laterId = (JSON.parse(later.stdout) as { id: string }).id;

    const listed = await client('scheduled', '--json');
    assert.equal(listed.code, 0, listed.stderr);
    const listedIds = (JSON.parse(listed.stdout) as { items: { id: string }[] }).items.map((item) => item.id);
    assert.ok(listedIds.includes(laterId), 'lists the message due in an hour');

    const cancel = await client('cancel', laterId);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal(cancel.stdout.trim(), `cancelled ${laterId}`);
    const again = await client('cancel', laterId);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /HTTP 404/);
    const relisted = await client('scheduled');
    assert.equal(relisted.code, 0, relisted.stderr);
    assert.doesNotMatch(relisted.stdout, new RegExp(laterId));

    const noToken = await procs.run(['scheduled', '--url', main.url], { cwd }); // this main server has an --access-token
    assert.equal(noToken.code, 1);
    assert.match(noToken.stderr, /HTTP 401/);

    assert.equal((await awaitPosted(soonId)).length, 1, 'the message scheduled from the CLI is posted');
  });
});

describe('psched dev', () => {
  const procs = new Processes();
  after(() => procs.cleanup());

  it('starts both services with shared credentials, prints the URLs, and stops cleanly on Ctrl-C', async () => {
    const dir = procs.tempDir();
    const [mainPort, dispatcherPort] = [await freePort(), await freePort()];
    const dev = procs.spawn(['dev', '--main-port', String(mainPort), '--dispatcher-port', String(dispatcherPort), '--dir', dir, '--log-level', 'warn']);
    await dev.waitForOutput('Stop with Ctrl-C');
    const mainUrl = `http://127.0.0.1:${mainPort}`;
    const dispatcherUrl = `http://127.0.0.1:${dispatcherPort}`;
    assert.match(dev.output, new RegExp(`main server\\s+${mainUrl}`));
    assert.match(dev.output, new RegExp(`dispatcher\\s+${dispatcherUrl}`));
    await Promise.all([waitHealthy(mainUrl, dev), waitHealthy(dispatcherUrl, dev)]);

    // the main server opens without a password (npm start); the dispatcher wants the generated token,
    // which the main server sends, and accepts the deliveries signed with the shared secret
    const { apiToken } = JSON.parse(readFileSync(join(dir, 'dev-credentials.json'), 'utf8')) as { apiToken: string };
    assert.equal((await requestJson('GET', `${dispatcherUrl}/v1/messages`)).status, 401);
    assert.equal((await requestJson('GET', `${dispatcherUrl}/v1/messages`, { token: apiToken })).status, 200);
    const text = `dev ${randomUUID()}`;
    const scheduled = await requestJson('POST', `${mainUrl}/v1/scheduled`, { body: { username: 'Dev', message: text, delaySeconds: 0 } });
    assert.equal(scheduled.status, 201, JSON.stringify(scheduled.body));
    await waitFor(async () => {
      const feed = await requestJson('GET', `${mainUrl}/v1/posts`);
      return (feed.body.items as Post[]).some((post) => post.messageId === scheduled.body.id);
    }, { what: 'the dev message in the feed' });

    const exit = await dev.stop('SIGINT');
    assert.deepEqual(exit, { code: 0, signal: null }, dev.output);
    for (const url of [mainUrl, dispatcherUrl]) {
      await assert.rejects(fetch(`${url}/healthz`), `${url} is closed after Ctrl-C`);
    }
  });
});

interface DispatcherMessage {
  id: string;
  message: string;
  status: string;
}

/** Every message a dispatcher holds, whatever its status, through its keyset pagination. */
async function dispatcherMessages(dispatcher: ServiceProcess, token: string): Promise<DispatcherMessage[]> {
  const messages: DispatcherMessage[] = [];
  let cursor: string | null = null;
  do {
    const answer = await requestJson('GET', `${dispatcher.url}/v1/messages?limit=1000${cursor ? `&cursor=${cursor}` : ''}`, { token });
    assert.equal(answer.status, 200);
    messages.push(...(answer.body.items as DispatcherMessage[]));
    cursor = answer.body.nextCursor;
  } while (cursor);
  return messages;
}
