import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startTestDispatcher } from './support/dispatcher.ts';
import { startTestMain, type TestMain } from './support/main.ts';
import {
  CAPTURED, HARD_TEXTS, originalCronDelivery, originalEndpointReads, originalMainForward, phpSenderBody, startOriginalMain, urldecode, urlencode,
} from './support/original.ts';

/**
 * psched beside the PHP original, each direction on the wire as the original
 * writes and reads it (test/support/original.ts). Text and names must arrive
 * byte for byte.
 */
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

describe('the fakes of the original', () => {
  it('reproduce its captured requests byte for byte, and read them back as it did', () => {
    assert.equal(originalMainForward(CAPTURED.mainForward.fields), CAPTURED.mainForward.body);
    assert.equal(originalCronDelivery(CAPTURED.cronDelivery.fields), CAPTURED.cronDelivery.body);
    assert.equal(originalEndpointReads(CAPTURED.mainForward.body, 'message'), 'C2 future: see you in 30 s');
    assert.equal(originalEndpointReads(CAPTURED.mainForward.body, 'time'), '2026-12-02 16:30:00');
    assert.equal(originalEndpointReads(CAPTURED.cronDelivery.body, 'message'), "I'm scheduling a message!");
    // the documented loss: text typed by a person, encoded once, decoded twice
    assert.equal(originalEndpointReads(new URLSearchParams({ message: '1+1=2 & 100% sure, %41' }).toString(), 'message'), '1 1=2 & 100% sure, A');
    for (const text of HARD_TEXTS) assert.equal(urldecode(urlencode(text)), text);
  });
});

describe('original main server -> psched dispatcher (POST /scheduleMessage.php, encoded twice)', () => {
  it('stores the captured request with its exact text and answers the original\'s Success', async () => {
    await using t = await startTestDispatcher({ timeZone: 'UTC' });
    const response = await t.request('POST', '/scheduleMessage.php', { body: CAPTURED.mainForward.body, headers: FORM });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.body, JSON.stringify({
      received: { username: 'Ann', message: 'C2 future: see you in 30 s', time: '2026-12-02 16:30:00' },
      result: 'Success',
    }));
    const stored = await t.dispatcher.store.list({ limit: 10 });
    assert.equal(stored.length, 1);
    assert.equal(stored[0]!.username, 'Ann');
    assert.equal(stored[0]!.message, 'C2 future: see you in 30 s');
    assert.equal(stored[0]!.scheduledAt, Date.UTC(2026, 11, 2, 16, 30, 0));
  });

  it('stores every hard text exactly, as message and as name, with or without seconds', async () => {
    await using t = await startTestDispatcher({ timeZone: 'UTC' });
    for (const [i, text] of HARD_TEXTS.entries()) {
      const time = i % 2 === 0 ? '2030-01-01T00:00:00' : '2030-01-01T00:00';
      const body = originalMainForward({ username: text.slice(0, 64), message: text, time });
      const response = await t.request('POST', '/scheduleMessage.php', { body, headers: FORM });
      assert.equal(response.statusCode, 200, `${text}: ${response.body}`);
      assert.deepEqual((response.json() as { received: unknown }).received, { username: text.slice(0, 64), message: text, time: time.replace('T', ' ') });
    }
    const stored = await t.dispatcher.store.list({ limit: 100 });
    assert.deepEqual(stored.map((m) => m.message).sort(), [...HARD_TEXTS].sort());
    assert.deepEqual(stored.map((m) => m.username).sort(), HARD_TEXTS.map((text) => text.slice(0, 64)).sort());
    assert.ok(stored.every((m) => m.scheduledAt === Date.UTC(2030, 0, 1)));
  });

  it('takes a request typed by hand (encoded once, the time with its colons) exactly as sent', async () => {
    await using t = await startTestDispatcher({ timeZone: 'UTC' });
    for (const text of HARD_TEXTS) {
      // what `curl --data-urlencode` sends; the original decoded it once more ("1 1=2 & 100% sure, A")
      const body = new URLSearchParams({ username: 'Curl', message: text, time: '2030-01-01 00:00:00' }).toString();
      const response = await t.request('POST', '/scheduleMessage.php', { body, headers: FORM });
      assert.equal(response.statusCode, 200, `${text}: ${response.body}`);
      assert.equal((response.json() as { received: { message: string } }).received.message, text);
    }
    const stored = await t.dispatcher.store.list({ limit: 100 });
    assert.deepEqual(stored.map((m) => m.message).sort(), [...HARD_TEXTS].sort());
  });

  it('answers the original\'s Failure for a field missing from a PHP sender\'s request', async () => {
    await using t = await startTestDispatcher({ timeZone: 'UTC' });
    const response = await t.request('POST', '/scheduleMessage.php', { body: phpSenderBody({ username: 'Ann', time: '2030-01-01 00:00:00' }), headers: FORM });
    assert.equal(response.statusCode, 400);
    assert.equal(response.body, JSON.stringify({
      received: { username: 'Ann', message: null, time: '2030-01-01 00:00:00' },
      result: 'Failure',
      failure: 'Invalid Post. Expected three non-zero strings (username, message, time).',
    }));
  });
});

const feed = async (main: TestMain) => (await main.server.store.listPosts({ limit: 100 })).map((p) => ({ username: p.username, message: p.message }));

describe('original dispatcher -> psched main server (POST /postMessage.php, encoded twice)', () => {
  it('posts the captured delivery with its exact text, echoing it decoded', async () => {
    await using t = await startTestMain();
    const response = await t.request('POST', '/postMessage.php', { body: CAPTURED.cronDelivery.body, headers: FORM });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.body, JSON.stringify({ received: { username: 'Curl', message: "I'm scheduling a message!" }, result: 'Success' }));
    assert.deepEqual(await feed(t), [{ username: 'Curl', message: "I'm scheduling a message!" }]);
  });

  it('posts every hard text exactly, as message and as name', async () => {
    await using t = await startTestMain();
    for (const text of HARD_TEXTS) {
      const response = await t.request('POST', '/postMessage.php', { body: originalCronDelivery({ username: text.slice(0, 64), message: text }), headers: FORM });
      assert.equal(response.statusCode, 200, `${text}: ${response.body}`);
    }
    assert.deepEqual((await feed(t)).reverse(), HARD_TEXTS.map((text) => ({ username: text.slice(0, 64), message: text })));
  });

  it('takes a post typed by hand as sent when it holds a character urlencode never writes; --legacy-post-encoding single takes every post as sent', async () => {
    await using t = await startTestMain();
    const typed = new URLSearchParams({ username: 'Curl', message: '1+1=2 & 100% sure, %41' }).toString();
    assert.equal((await t.request('POST', '/postMessage.php', { body: typed, headers: FORM })).statusCode, 200);
    // letters, digits and + only: indistinguishable from a PHP sender's, so decoded once more, as the original did
    assert.equal((await t.request('POST', '/postMessage.php', { body: 'username=Curl&message=a%2Bb', headers: FORM })).statusCode, 200);
    assert.deepEqual((await feed(t)).reverse(), [{ username: 'Curl', message: '1+1=2 & 100% sure, %41' }, { username: 'Curl', message: 'a b' }]);

    await using single = await startTestMain({ legacyPostEncoding: 'single' });
    assert.equal((await single.request('POST', '/postMessage.php', { body: 'username=Curl&message=a%2Bb', headers: FORM })).statusCode, 200);
    assert.equal((await single.request('POST', '/postMessage.php', { body: CAPTURED.cronDelivery.body, headers: FORM })).statusCode, 200);
    assert.deepEqual((await feed(single)).reverse(), [{ username: 'Curl', message: 'a+b' }, { username: 'Curl', message: 'I%27m+scheduling+a+message%21' }]);
  });

  it('refuses a value that is not UTF-8 once decoded the second time, storing nothing', async () => {
    await using t = await startTestMain();
    const response = await t.request('POST', '/postMessage.php', { body: 'username=Curl&message=caf%25E9', headers: FORM });
    assert.equal(response.statusCode, 400);
    assert.match(response.body, /message is not valid UTF-8/);
    assert.equal(await t.server.store.countPosts(), 0);
  });
});

describe('psched dispatcher -> original main server (--main-protocol legacy)', () => {
  it('sends the captured cron body byte for byte, and the original ends up with every hard text exactly', async () => {
    await using original = await startOriginalMain();
    await using t = await startTestDispatcher({ mainUrl: original.url, mainProtocol: 'legacy' });
    await t.dispatcher.engine.start();
    await t.schedule({ username: 'Curl', message: "I'm scheduling a message!", delaySeconds: 0 });
    assert.equal((await original.nextPost()).request.body, CAPTURED.cronDelivery.body);

    // the original refuses a one-byte name or message (strlen > 1): those cannot reach it, whoever sends them
    const texts = HARD_TEXTS.filter((text) => Buffer.byteLength(text) > 1);
    await t.schedule(...texts.map((text) => ({ username: text.slice(0, 64), message: text, delaySeconds: 0 })));
    const posted = [];
    for (const _ of texts) posted.push(await original.nextPost());
    assert.deepEqual(posted.map((p) => p.message).sort(), [...texts].sort());
    assert.deepEqual(posted.map((p) => p.username).sort(), texts.map((text) => text.slice(0, 64)).sort());
    for (const { request } of posted) assert.match(request.headers['content-type'] as string, /^application\/x-www-form-urlencoded/);
  });
});

describe('psched dispatcher (legacy) -> psched main server, and the original main server -> psched -> psched', () => {
  it('a message forwarded by the original main server reaches the psched feed once, at its due time, with its exact text', async () => {
    await using main = await startTestMain();
    const mainUrl = await main.server.listen();
    await using t = await startTestDispatcher({ mainUrl, mainProtocol: 'legacy', timeZone: 'UTC' });
    const url = await t.dispatcher.listen();
    const arrived = postsArriving(main);
    // due in a second and a half: the original's times have whole seconds
    const due = Math.ceil((Date.now() + 1500) / 1000) * 1000;
    const time = new Date(due).toISOString().slice(0, 19);
    for (const text of HARD_TEXTS) {
      const response = await fetch(`${url}/scheduleMessage.php`, { method: 'POST', headers: FORM, body: originalMainForward({ username: 'Ann', message: text, time }) });
      assert.equal(response.status, 200, await response.text());
    }
    const posts = await arrived(HARD_TEXTS.length);
    assert.ok(posts.every((post) => post.at >= due), 'delivered before its due time');
    assert.deepEqual(posts.map((p) => p.message).sort(), [...HARD_TEXTS].sort());
    assert.deepEqual((await feed(main)).map((p) => p.message).sort(), [...HARD_TEXTS].sort());
  });
});

/** Resolves with the first `count` posts the main server stores, each with the time it was stored. */
function postsArriving(main: TestMain): (count: number) => Promise<{ message: string; at: number }[]> {
  const posts: { message: string; at: number }[] = [];
  let wanted = Infinity;
  let done: () => void;
  const complete = new Promise<void>((resolve) => { done = resolve; });
  const store = main.server.store;
  const addPost = store.addPost.bind(store);
  store.addPost = async (post) => {
    const outcome = await addPost(post);
    posts.push({ message: post.message, at: Date.now() });
    if (posts.length >= wanted) done();
    return outcome;
  };
  return async (count) => {
    wanted = count;
    if (posts.length >= count) done();
    await complete;
    return posts;
  };
}

describe('psched main server (--dispatcher-protocol legacy) -> psched dispatcher\'s scheduleMessage.php', () => {
  it('stores every hard text exactly: what psched sends as the original main server is read back as such', async () => {
    await using d = await startTestDispatcher();
    const url = await d.dispatcher.listen();
    await using t = await startTestMain({ dispatcherUrls: url, dispatcherProtocol: 'legacy' });
    for (const text of HARD_TEXTS) {
      const response = await t.request('POST', '/v1/scheduled', { body: { username: text.slice(0, 64), message: text, scheduledAt: '2099-01-01T00:00:00Z' } });
      assert.equal(response.statusCode, 201, `${text}: ${response.body}`);
    }
    const stored = await d.dispatcher.store.list({ limit: 100 });
    assert.deepEqual(stored.map((m) => m.message).sort(), [...HARD_TEXTS].sort());
    assert.deepEqual(stored.map((m) => m.username).sort(), HARD_TEXTS.map((text) => text.slice(0, 64)).sort());
    assert.ok(stored.every((m) => m.scheduledAt === Date.UTC(2099, 0, 1)));
  });
});
