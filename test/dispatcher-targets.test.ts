import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SIGNATURE_HEADER, verifySignature, verifyStandardWebhooks } from '../src/protocol/signing.ts';
import { forceStatus, startTestDispatcher, type TestDispatcher } from './support/dispatcher.ts';
import { startReceiver, takeRequests, type RecordedRequest } from './support/receiver.ts';
import { assertOpenApiDocument } from './support/openapi.ts';

/**
 * Delivery targets (issue 12 items 1 and 2): /v1/targets, the isolation of
 * one target's token from another's messages and schedules, and delivery to
 * each target's own main server, signed with its own secret.
 */

const FAR = '2099-01-01T00:00:00.000Z';
const OPERATOR = 'operator-token-0123456789';
const SHOP_TOKEN = 'shop-token-0123456789abcdef';
const BLOG_TOKEN = 'blog-token-0123456789abcdef';
const SHOP_SECRET = 'shop-signing-secret-xyz';
const BLOG_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

interface Json {
  [key: string]: any;
}

async function withTargets(t: TestDispatcher, token = OPERATOR): Promise<void> {
  for (const body of [
    { name: 'shop', url: 'http://127.0.0.1:9/shop', signingSecret: SHOP_SECRET, token: SHOP_TOKEN, ratePerSecond: 50, burst: 100, maxInFlight: 8 },
    { name: 'blog', url: 'http://127.0.0.1:9', signatureScheme: 'standard-webhooks', signingSecret: BLOG_SECRET, token: BLOG_TOKEN },
  ]) {
    const response = await t.request('POST', '/v1/targets', { body, token });
    assert.equal(response.statusCode, 201, response.body);
  }
}

describe('/v1/targets', () => {
  it('creates, shows, lists (the built-in default first), changes and removes a target; secrets only as set/not set', async () => {
    await using t = await startTestDispatcher({ apiToken: OPERATOR, mainUrl: 'http://127.0.0.1:9/main', signingSecret: 'the-default-secret', mainDeliverWithin: '30m' });
    const created = await t.request('POST', '/v1/targets', {
      token: OPERATOR,
      body: { name: 'shop', url: 'http://127.0.0.1:9/shop/', signingSecret: SHOP_SECRET, token: SHOP_TOKEN, ratePerSecond: 2.5, burst: 10, maxInFlight: 4, deliverWithinMs: 60_000 },
    });
    assert.equal(created.statusCode, 201);
    assert.equal(created.headers.location, '/v1/targets/shop');
    const body = created.json() as Json;
    assert.deepEqual({ ...body, createdAt: undefined, updatedAt: undefined }, {
      name: 'shop', url: 'http://127.0.0.1:9/shop', protocol: 'json', signatureScheme: 'psched', signingSecretSet: true, tokenSet: true,
      ratePerSecond: 2.5, burst: 10, maxInFlight: 4, deliverWithinMs: 60_000, builtIn: false, createdAt: undefined, updatedAt: undefined,
    });
    assert.deepEqual((await t.request('GET', '/v1/targets/shop', { token: OPERATOR })).json(), body);

    const list = (await t.request('GET', '/v1/targets', { token: OPERATOR })).json() as Json;
    assert.deepEqual(list.items.map((target: Json) => [target.name, target.builtIn]), [['default', true], ['shop', false]]);
    assert.deepEqual(list.items[0], {
      name: 'default', url: 'http://127.0.0.1:9/main', protocol: 'json', signatureScheme: 'psched', signingSecretSet: true, tokenSet: true,
      ratePerSecond: null, burst: null, maxInFlight: null, deliverWithinMs: 1_800_000, builtIn: true, createdAt: null, updatedAt: null,
    });
    assert.deepEqual((await t.request('GET', '/v1/targets/default', { token: OPERATOR })).json(), list.items[0]);

    const changed = await t.request('PATCH', '/v1/targets/shop', { token: OPERATOR, body: { protocol: 'legacy', signingSecret: null, burst: null, deliverWithinMs: null } });
    assert.equal(changed.statusCode, 200, changed.body);
    assert.deepEqual(
      [changed.json().protocol, changed.json().signingSecretSet, changed.json().burst, changed.json().ratePerSecond, changed.json().tokenSet, changed.json().deliverWithinMs],
      ['legacy', false, null, 2.5, true, null],
    );

    assert.equal((await t.request('DELETE', '/v1/targets/shop', { token: OPERATOR })).statusCode, 204);
    assert.equal((await t.request('GET', '/v1/targets/shop', { token: OPERATOR })).statusCode, 404);
    assert.equal((await t.request('DELETE', '/v1/targets/shop', { token: OPERATOR })).statusCode, 404);
    assert.equal((await t.request('PATCH', '/v1/targets/shop', { token: OPERATOR, body: { burst: 1 } })).statusCode, 404);
  });

  const badBodies: [string, Json, string][] = [
    ['no name', { url: 'http://a.example' }, 'name'],
    ['a name with upper case', { name: 'Shop', url: 'http://a.example' }, 'name'],
    ['a name starting with a dash', { name: '-shop', url: 'http://a.example' }, 'name'],
    ['a name of 64 characters', { name: 'a'.repeat(64), url: 'http://a.example' }, 'name'],
    ['the built-in name', { name: 'default', url: 'http://a.example' }, 'name'],
    ['no url', { name: 'shop' }, 'url'],
    ['a url that is not one', { name: 'shop', url: 'shop.example' }, 'url'],
    ['a url that is not http', { name: 'shop', url: 'ftp://shop.example' }, 'url'],
    ['a url with a password', { name: 'shop', url: 'http://u:p@shop.example' }, 'url'],
    ['an unknown protocol', { name: 'shop', url: 'http://a.example', protocol: 'grpc' }, 'protocol'],
    ['an unknown signature scheme', { name: 'shop', url: 'http://a.example', signatureScheme: 'pgp' }, 'signatureScheme'],
    ['standard-webhooks without a whsec_ secret', { name: 'shop', url: 'http://a.example', signatureScheme: 'standard-webhooks', signingSecret: 'plain' }, 'signingSecret'],
    ['standard-webhooks without a secret', { name: 'shop', url: 'http://a.example', signatureScheme: 'standard-webhooks' }, 'signingSecret'],
    ['a negative rate', { name: 'shop', url: 'http://a.example', ratePerSecond: -1 }, 'ratePerSecond'],
    ['a zero rate', { name: 'shop', url: 'http://a.example', ratePerSecond: 0 }, 'ratePerSecond'],
    ['a rate as text', { name: 'shop', url: 'http://a.example', ratePerSecond: '10' }, 'ratePerSecond'],
    ['a burst of 0', { name: 'shop', url: 'http://a.example', burst: 0 }, 'burst'],
    ['a fractional in-flight cap', { name: 'shop', url: 'http://a.example', maxInFlight: 1.5 }, 'maxInFlight'],
    ['a deliver-by window of 0', { name: 'shop', url: 'http://a.example', deliverWithinMs: 0 }, 'deliverWithinMs'],
    ['a deliver-by window as text', { name: 'shop', url: 'http://a.example', deliverWithinMs: '1h' }, 'deliverWithinMs'],
    ['a deliver-by window over a year', { name: 'shop', url: 'http://a.example', deliverWithinMs: 367 * 86_400_000 }, 'deliverWithinMs'],
    ['a short token', { name: 'shop', url: 'http://a.example', token: 'short' }, 'token'],
    ['the operator\'s token', { name: 'shop', url: 'http://a.example', token: OPERATOR }, 'token'],
    ['an unknown field', { name: 'shop', url: 'http://a.example', colour: 'red' }, 'colour'],
  ];
  for (const [what, body, field] of badBodies) {
    it(`refuses ${what} with 400 naming ${field}, storing nothing`, async () => {
      await using t = await startTestDispatcher({ apiToken: OPERATOR });
      const response = await t.request('POST', '/v1/targets', { token: OPERATOR, body });
      assert.equal(response.statusCode, 400, response.body);
      assert.equal((response.json() as Json).error.field, field);
      assert.deepEqual(((await t.request('GET', '/v1/targets', { token: OPERATOR })).json() as Json).items.map((x: Json) => x.name), ['default']);
    });
  }

  it('refuses a bad change with 400 naming the field and changes nothing; a second target of one name or token is a 409', async () => {
    await using t = await startTestDispatcher({ apiToken: OPERATOR });
    await withTargets(t);
    const before = (await t.request('GET', '/v1/targets/shop', { token: OPERATOR })).json();
    for (const [body, field] of [[{ url: 'nope' }, 'url'], [{ ratePerSecond: -5 }, 'ratePerSecond'], [{ name: 'other' }, 'name'],
      [{ signatureScheme: 'standard-webhooks' }, 'signingSecret'], [{ burst: 5, colour: 'red' }, 'colour']] as const) {
      const response = await t.request('PATCH', '/v1/targets/shop', { token: OPERATOR, body });
      assert.equal(response.statusCode, 400, response.body);
      assert.equal((response.json() as Json).error.field, field);
    }
    assert.deepEqual((await t.request('GET', '/v1/targets/shop', { token: OPERATOR })).json(), before);
    assert.equal((await t.request('POST', '/v1/targets', { token: OPERATOR, body: { name: 'shop', url: 'http://x.example' } })).statusCode, 409);
    const sameToken = await t.request('POST', '/v1/targets', { token: OPERATOR, body: { name: 'other', url: 'http://x.example', token: SHOP_TOKEN } });
    assert.equal(sameToken.statusCode, 409);
    assert.equal((await t.request('PATCH', '/v1/targets/blog', { token: OPERATOR, body: { token: SHOP_TOKEN } })).statusCode, 409);
    assert.equal((await t.request('GET', '/v1/targets/other', { token: OPERATOR })).statusCode, 404);
  });

  it('refuses to change or remove the built-in default target (409 saying why)', async () => {
    await using t = await startTestDispatcher({ apiToken: OPERATOR });
    for (const method of ['PATCH', 'DELETE']) {
      const response = await t.request(method, '/v1/targets/default', { token: OPERATOR, body: method === 'PATCH' ? { url: 'http://x.example' } : undefined });
      assert.equal(response.statusCode, 409);
      assert.match((response.json() as Json).error.message, /built in.*--main-url/);
    }
  });

  it('refuses to remove a target while it has messages to deliver or schedules (409), then removes it', async () => {
    await using t = await startTestDispatcher({ apiToken: OPERATOR });
    await withTargets(t);
    const message = (await t.request('POST', '/v1/messages', { token: SHOP_TOKEN, body: { username: 'u', message: 'm', scheduledAt: FAR } })).json() as Json;
    const schedule = (await t.request('POST', '/v1/schedules', { token: SHOP_TOKEN, body: { username: 'u', message: 'm', every: '1h' } })).json() as Json;
    const refused = await t.request('DELETE', '/v1/targets/shop', { token: OPERATOR });
    assert.equal(refused.statusCode, 409);
    assert.match((refused.json() as Json).error.message, /1 message\(s\) not yet delivered and 1 schedule\(s\)/);
    assert.equal((await t.request('DELETE', `/v1/messages/${message.id}`, { token: SHOP_TOKEN })).statusCode, 204);
    assert.equal((await t.request('DELETE', `/v1/schedules/${schedule.id}`, { token: SHOP_TOKEN })).statusCode, 204);
    assert.equal((await t.request('DELETE', '/v1/targets/shop', { token: OPERATOR })).statusCode, 204);
    // its token no longer opens anything
    assert.equal((await t.request('GET', '/v1/messages', { token: SHOP_TOKEN })).statusCode, 401);
  });

  it('is the operator\'s alone: a target\'s token gets 403, no token or a wrong one 401', async () => {
    await using t = await startTestDispatcher({ apiToken: OPERATOR });
    await withTargets(t);
    for (const [method, url] of [['GET', '/v1/targets'], ['GET', '/v1/targets/shop'], ['POST', '/v1/targets'], ['PATCH', '/v1/targets/shop'], ['DELETE', '/v1/targets/blog']]) {
      const body = method === 'GET' || method === 'DELETE' ? undefined : { name: 'x', url: 'http://x.example' };
      assert.equal((await t.request(method!, url!, { token: SHOP_TOKEN, body })).statusCode, 403, `${method} ${url}`);
      assert.equal((await t.request(method!, url!, { body })).statusCode, 401, `${method} ${url}`);
      assert.equal((await t.request(method!, url!, { token: 'wrong-token-0123456789', body })).statusCode, 401, `${method} ${url}`);
    }
    assert.equal((await t.request('GET', '/v1/targets/blog', { token: OPERATOR })).statusCode, 200);
  });

  it('without --api-token (loopback) a request without a token is the operator, one with a target\'s token is that target', async () => {
    await using t = await startTestDispatcher();
    await withTargets(t, '');
    assert.equal((await t.request('GET', '/v1/targets')).statusCode, 200);
    assert.equal((await t.request('GET', '/v1/targets', { token: SHOP_TOKEN })).statusCode, 403);
    const mine = (await t.request('POST', '/v1/messages', { token: SHOP_TOKEN, body: { username: 'u', message: 'm', scheduledAt: FAR } })).json() as Json;
    assert.equal(mine.target, 'shop');
  });

  it('never shows a secret or a token: not in any answer, not on the page', async () => {
    await using t = await startTestDispatcher({ apiToken: OPERATOR, signingSecret: 'the-default-secret-value' });
    const answers: string[] = [];
    const record = async (method: string, url: string, body?: unknown, token = OPERATOR) => {
      const response = await t.request(method, url, { token, body });
      answers.push(response.body);
      return response;
    };
    await record('POST', '/v1/targets', { name: 'shop', url: 'http://127.0.0.1:9', signingSecret: SHOP_SECRET, token: SHOP_TOKEN });
    await record('PATCH', '/v1/targets/shop', { signingSecret: `${SHOP_SECRET}-2`, token: `${SHOP_TOKEN}-2` });
    await record('POST', '/v1/targets', { name: 'shop', url: 'http://127.0.0.1:9', signingSecret: SHOP_SECRET, token: BLOG_TOKEN });
    await record('POST', '/v1/targets', { name: 'blog', url: 'nope', signingSecret: BLOG_SECRET, token: BLOG_TOKEN });
    await record('GET', '/v1/targets');
    await record('GET', '/v1/targets/shop');
    await record('GET', '/v1/targets/default');
    await record('GET', '/openapi.json');
    await record('POST', '/v1/messages', { username: 'u', message: 'm', scheduledAt: FAR }, `${SHOP_TOKEN}-2`);
    await record('GET', '/v1/messages', undefined, `${SHOP_TOKEN}-2`);
    const page = await t.request('GET', '/', { headers: { authorization: `Basic ${Buffer.from(`x:${OPERATOR}`).toString('base64')}`, accept: 'text/html' } });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /shop/);
    answers.push(page.body);
    for (const secret of [SHOP_SECRET, SHOP_TOKEN, BLOG_SECRET, BLOG_TOKEN, 'the-default-secret-value', OPERATOR]) {
      for (const answer of answers) assert.ok(!answer.includes(secret), `an answer shows ${secret}: ${answer.slice(0, 200)}`);
    }
  });

  it('the page shows each message\'s target, filters by target and lists the targets', async () => {
    await using t = await startTestDispatcher({ apiToken: OPERATOR });
    await withTargets(t);
    await t.request('POST', '/v1/messages', { token: SHOP_TOKEN, body: { username: 'u', message: 'for the shop', scheduledAt: FAR } });
    await t.request('POST', '/v1/messages', { token: BLOG_TOKEN, body: { username: 'u', message: 'for the blog', scheduledAt: FAR } });
    const page = (url: string) => t.request('GET', url, { headers: { authorization: `Basic ${Buffer.from(`x:${OPERATOR}`).toString('base64')}`, accept: 'text/html' } });
    const all = (await page('/')).body;
    assert.match(all, /for the shop/);
    assert.match(all, /for the blog/);
    assert.match(all, /<span class="target" title="delivery target">→ <a href="\/\?target=shop">shop<\/a><\/span>/);
    assert.match(all, /<select id="filter-target" name="target"><option value="">All<\/option><option value="default">default<\/option><option value="blog">blog<\/option><option value="shop">shop<\/option><\/select>/);
    assert.match(all, /id="targets-card"/);
    assert.match(all, /<tr id="t-shop">.*<code>http:\/\/127\.0\.0\.1:9\/shop<\/code><\/td><td>json<\/td><td>psched<\/td><td>yes<\/td><td>50\/s, burst 100, ≤ 8 in flight<\/td>/s);
    assert.match(all, /<tr id="t-blog">.*<td>standard-webhooks<\/td>/s);
    const shopOnly = await page('/?target=shop');
    assert.equal(shopOnly.statusCode, 200);
    assert.match(shopOnly.body, /for the shop/);
    assert.doesNotMatch(shopOnly.body, /for the blog/);
    assert.match(shopOnly.body, /<option value="shop" selected>shop<\/option>/);
    assert.equal((await page('/?target=Not%20a%20name')).statusCode, 400);
  });

  it('is in the OpenAPI document', async () => {
    await using t = await startTestDispatcher();
    assertOpenApiDocument(t.dispatcher.app, await t.request('GET', '/openapi.json'), [
      'GET /v1/targets', 'POST /v1/targets', 'GET /v1/targets/{name}', 'PATCH /v1/targets/{name}', 'DELETE /v1/targets/{name}',
    ]);
  });
});

describe('isolation between targets', () => {
  it('a target\'s token schedules for its own target, lists only its own, and gets 404 for another\'s message and schedule', async () => {
    await using t = await startTestDispatcher({ apiToken: OPERATOR });
    await withTargets(t);
    const create = (token: string, body: Json = {}) => t.request('POST', '/v1/messages', { token, body: { username: 'u', message: 'm', scheduledAt: FAR, ...body } });
    const shop = (await create(SHOP_TOKEN)).json() as Json;
    const shopOwn = (await create(SHOP_TOKEN, { target: 'shop' })).json() as Json;
    const blog = (await create(BLOG_TOKEN)).json() as Json;
    const [batchItem] = (await t.request('POST', '/v1/messages/batch', { token: BLOG_TOKEN, body: [{ username: 'u', message: 'b', scheduledAt: FAR }] })).json() as Json[];
    const byOperator = (await create(OPERATOR)).json() as Json;
    assert.deepEqual([shop.target, shopOwn.target, blog.target, batchItem!.target, byOperator.target], ['shop', 'shop', 'blog', 'blog', 'default']);

    const shopSchedule = (await t.request('POST', '/v1/schedules', { token: SHOP_TOKEN, body: { username: 'u', message: 'every hour', every: '1h' } })).json() as Json;
    assert.equal(shopSchedule.target, 'shop');

    // naming another target is refused, and stores nothing
    const other = await create(SHOP_TOKEN, { target: 'blog' });
    assert.equal(other.statusCode, 403);
    assert.equal((await t.request('POST', '/v1/messages/batch', { token: SHOP_TOKEN, body: [{ username: 'u', message: 'm', scheduledAt: FAR, target: 'blog' }] })).statusCode, 403);
    assert.equal((await t.request('POST', '/v1/schedules', { token: SHOP_TOKEN, body: { username: 'u', message: 'm', every: '1h', target: 'default' } })).statusCode, 403);
    assert.equal((await t.request('GET', '/v1/messages?target=blog', { token: SHOP_TOKEN })).statusCode, 403);

    // lists: only its own
    const ids = async (url: string, token: string) => ((await t.request('GET', url, { token })).json() as Json).items.map((m: Json) => m.id).sort();
    assert.deepEqual(await ids('/v1/messages', SHOP_TOKEN), [shop.id, shopOwn.id].sort());
    assert.deepEqual(await ids('/v1/messages?target=shop', SHOP_TOKEN), [shop.id, shopOwn.id].sort());
    assert.deepEqual(await ids('/v1/messages', BLOG_TOKEN), [blog.id, batchItem!.id].sort());
    assert.deepEqual(await ids('/v1/schedules', SHOP_TOKEN), [shopSchedule.id]);
    assert.deepEqual(await ids('/v1/schedules', BLOG_TOKEN), []);

    // another target's message and schedule: 404, exactly as one that does not exist
    const missing = await t.request('GET', '/v1/messages/0190f3a0-0000-7000-8000-00000000dead', { token: BLOG_TOKEN });
    const asIfMissing = (response: { statusCode: number; json(): unknown }, what: string) => {
      assert.equal(response.statusCode, 404, what);
      assert.equal((response.json() as Json).error.code, 'not_found', what);
    };
    asIfMissing(missing, 'unknown id');
    asIfMissing(await t.request('GET', `/v1/messages/${shop.id}`, { token: BLOG_TOKEN }), 'GET message');
    asIfMissing(await t.request('GET', `/v1/messages/${shop.id}/attempts`, { token: BLOG_TOKEN }), 'GET attempts');
    asIfMissing(await t.request('PATCH', `/v1/messages/${shop.id}`, { token: BLOG_TOKEN, body: { message: 'hijacked' } }), 'PATCH message');
    asIfMissing(await t.request('DELETE', `/v1/messages/${shop.id}`, { token: BLOG_TOKEN }), 'DELETE message');
    await forceStatus(t.dispatcher, shopOwn.id, 'dead', { error: 'refused' });
    asIfMissing(await t.request('POST', `/v1/messages/${shopOwn.id}/retry`, { token: BLOG_TOKEN }), 'retry message');
    asIfMissing(await t.request('GET', `/v1/schedules/${shopSchedule.id}`, { token: BLOG_TOKEN }), 'GET schedule');
    asIfMissing(await t.request('GET', `/v1/schedules/${shopSchedule.id}/preview`, { token: BLOG_TOKEN }), 'preview schedule');
    asIfMissing(await t.request('PATCH', `/v1/schedules/${shopSchedule.id}`, { token: BLOG_TOKEN, body: { paused: true } }), 'PATCH schedule');
    asIfMissing(await t.request('DELETE', `/v1/schedules/${shopSchedule.id}`, { token: BLOG_TOKEN }), 'DELETE schedule');
    asIfMissing(await t.request('GET', `/v1/messages/${byOperator.id}`, { token: SHOP_TOKEN }), 'the default target\'s message');

    // nothing of it changed
    const kept = (await t.request('GET', `/v1/messages/${shop.id}`, { token: SHOP_TOKEN })).json() as Json;
    assert.equal(kept.message, 'm');
    assert.equal(((await t.request('GET', `/v1/schedules/${shopSchedule.id}`, { token: SHOP_TOKEN })).json() as Json).paused, false);
    assert.equal(((await t.request('GET', `/v1/messages/${shopOwn.id}`, { token: SHOP_TOKEN })).json() as Json).status, 'dead');

    // its own: allowed
    assert.equal((await t.request('PATCH', `/v1/messages/${shop.id}`, { token: SHOP_TOKEN, body: { message: 'changed' } })).statusCode, 200);
    assert.equal((await t.request('POST', `/v1/messages/${shopOwn.id}/retry`, { token: SHOP_TOKEN })).statusCode, 200);
    assert.equal((await t.request('PATCH', `/v1/schedules/${shopSchedule.id}`, { token: SHOP_TOKEN, body: { paused: true } })).statusCode, 200);

    // the operator sees all, filters by target, and may act on any
    assert.deepEqual(await ids('/v1/messages', OPERATOR), [shop.id, shopOwn.id, blog.id, batchItem!.id, byOperator.id].sort());
    assert.deepEqual(await ids('/v1/messages?target=blog', OPERATOR), [blog.id, batchItem!.id].sort());
    assert.deepEqual(await ids('/v1/messages?target=default', OPERATOR), [byOperator.id]);
    assert.deepEqual(await ids('/v1/schedules?target=shop', OPERATOR), [shopSchedule.id]);
    assert.equal((await t.request('GET', `/v1/messages/${blog.id}`, { token: OPERATOR })).statusCode, 200);
    assert.equal((await t.request('DELETE', `/v1/messages/${blog.id}`, { token: OPERATOR })).statusCode, 204);
    assert.equal((await t.request('DELETE', `/v1/schedules/${shopSchedule.id}`, { token: OPERATOR })).statusCode, 204);
  });

  it('the operator names a target when scheduling; an unknown one is a 400 naming the field, storing nothing', async () => {
    await using t = await startTestDispatcher({ apiToken: OPERATOR });
    await withTargets(t);
    const forBlog = await t.request('POST', '/v1/messages', { token: OPERATOR, body: { username: 'u', message: 'm', scheduledAt: FAR, target: 'blog' } });
    assert.equal(forBlog.statusCode, 201);
    assert.equal((forBlog.json() as Json).target, 'blog');
    const unknown = await t.request('POST', '/v1/messages', { token: OPERATOR, body: { username: 'u', message: 'm', scheduledAt: FAR, target: 'nope' } });
    assert.equal(unknown.statusCode, 400);
    assert.equal((unknown.json() as Json).error.field, 'target');
    const batch = await t.request('POST', '/v1/messages/batch', { token: OPERATOR, body: [
      { username: 'u', message: 'ok', scheduledAt: FAR, target: 'shop' }, { username: 'u', message: 'm', scheduledAt: FAR, target: 'nope' },
    ] });
    assert.equal(batch.statusCode, 400);
    assert.equal((batch.json() as Json).error.field, 'items[1].target');
    const schedule = await t.request('POST', '/v1/schedules', { token: OPERATOR, body: { username: 'u', message: 'm', every: '1h', target: 'nope' } });
    assert.equal(schedule.statusCode, 400);
    assert.equal(((await t.request('GET', '/v1/messages', { token: OPERATOR })).json() as Json).items.length, 1);
    assert.equal(((await t.request('GET', '/v1/schedules', { token: OPERATOR })).json() as Json).items.length, 0);
    const forShop = await t.request('POST', '/v1/schedules', { token: OPERATOR, body: { username: 'u', message: 'm', every: '1h', target: 'shop' } });
    assert.equal((forShop.json() as Json).target, 'shop');
  });

  it('idempotency keys are a target\'s own: another target\'s key is not seen', async () => {
    await using t = await startTestDispatcher({ apiToken: OPERATOR });
    await withTargets(t);
    const post = (token: string, message: string) => t.request('POST', '/v1/messages', { token, body: { username: 'u', message, scheduledAt: FAR, idempotencyKey: 'order-42' } });
    const shop = await post(SHOP_TOKEN, 'shop');
    const blog = await post(BLOG_TOKEN, 'blog');
    assert.deepEqual([shop.statusCode, blog.statusCode], [201, 201]);
    assert.equal((blog.json() as Json).message, 'blog');
    const again = await post(BLOG_TOKEN, 'again');
    assert.equal(again.statusCode, 200);
    assert.equal((again.json() as Json).id, (blog.json() as Json).id);
  });
});

describe('delivery to each target', () => {
  it('each target\'s messages arrive only at its own URL, signed with its own secret; the default target\'s at --main-url', async () => {
    await using shopReceiver = await startReceiver();
    await using blogReceiver = await startReceiver();
    await using mainReceiver = await startReceiver();
    await using t = await startTestDispatcher({ apiToken: OPERATOR, mainUrl: mainReceiver.url, signingSecret: 'main-secret' });
    await t.request('POST', '/v1/targets', { token: OPERATOR, body: { name: 'shop', url: `${shopReceiver.url}/shop`, signingSecret: SHOP_SECRET, token: SHOP_TOKEN } });
    await t.request('POST', '/v1/targets', { token: OPERATOR, body: { name: 'blog', url: blogReceiver.url, signatureScheme: 'standard-webhooks', signingSecret: BLOG_SECRET, token: BLOG_TOKEN } });
    await t.dispatcher.listen();
    const send = async (token: string, message: string) => (await t.request('POST', '/v1/messages', { token, body: { username: 'u', message, delaySeconds: 0 } })).json() as Json;
    const sent = { shop: [await send(SHOP_TOKEN, 'shop 1'), await send(SHOP_TOKEN, 'shop 2')], blog: [await send(BLOG_TOKEN, 'blog 1')], main: [await send(OPERATOR, 'main 1')] };

    const [shop, blog, main] = await Promise.all([takeRequests(shopReceiver, 2), takeRequests(blogReceiver, 1), takeRequests(mainReceiver, 1)]);
    await t.dispatcher.engine.whenIdle();

    const texts = (requests: RecordedRequest[]) => requests.map((r) => JSON.parse(r.body).message).sort();
    assert.deepEqual(texts(shop!), ['shop 1', 'shop 2']);
    assert.deepEqual(texts(blog!), ['blog 1']);
    assert.deepEqual(texts(main!), ['main 1']);
    for (const request of shop!) {
      assert.equal(request.url, '/shop/v1/posts');
      assert.deepEqual(verifySignature(SHOP_SECRET, request.headers[SIGNATURE_HEADER] as string, request.body, Date.now()), { ok: true });
      assert.equal(verifySignature('main-secret', request.headers[SIGNATURE_HEADER] as string, request.body, Date.now()).ok, false);
    }
    const [blogRequest] = blog!;
    assert.equal(blogRequest!.headers[SIGNATURE_HEADER], undefined);
    assert.deepEqual(verifyStandardWebhooks(BLOG_SECRET, {
      id: blogRequest!.headers['webhook-id'] as string, timestamp: blogRequest!.headers['webhook-timestamp'] as string, signature: blogRequest!.headers['webhook-signature'] as string,
    }, blogRequest!.body, Date.now()), { ok: true });
    assert.deepEqual(verifySignature('main-secret', main![0]!.headers[SIGNATURE_HEADER] as string, main![0]!.body, Date.now()), { ok: true });
    // nothing more reached anyone
    assert.deepEqual([shopReceiver.requests.length, blogReceiver.requests.length, mainReceiver.requests.length], [2, 1, 1]);
    for (const message of [...sent.shop, ...sent.blog, ...sent.main]) {
      assert.equal(((await t.request('GET', `/v1/messages/${message.id}`, { token: OPERATOR })).json() as Json).status, 'delivered');
    }
  });

  it('a removed target\'s series leave /metrics; another target\'s stay', async () => {
    await using receiver = await startReceiver();
    await using t = await startTestDispatcher({ apiToken: OPERATOR });
    for (const name of ['shop', 'blog']) {
      await t.request('POST', '/v1/targets', { token: OPERATOR, body: { name, url: `${receiver.url}/${name}`, ratePerSecond: 100 } });
      await t.request('POST', '/v1/messages', { token: OPERATOR, body: { username: 'u', message: name, delaySeconds: 0, target: name } });
    }
    await t.dispatcher.listen();
    await takeRequests(receiver, 2);
    await t.dispatcher.engine.whenIdle();
    const scrape = async () => (await t.request('GET', '/metrics', { token: OPERATOR })).body;
    const before = await scrape();
    for (const name of ['shop', 'blog']) {
      assert.match(before, new RegExp(`^psched_target_deliveries_total\\{target="${name}",outcome="delivered"\\} 1$`, 'm'));
      assert.match(before, new RegExp(`^psched_target_delivery_lateness_seconds_count\\{target="${name}"\\} 1$`, 'm'));
      assert.match(before, new RegExp(`^psched_target_in_flight\\{target="${name}"\\} 0$`, 'm'));
    }
    assert.equal((await t.request('DELETE', '/v1/targets/shop', { token: OPERATOR })).statusCode, 204);
    const after = await scrape();
    assert.doesNotMatch(after, /target="shop"/);
    assert.match(after, /^psched_target_deliveries_total\{target="blog",outcome="delivered"\} 1$/m);
    assert.match(after, /^psched_target_in_flight\{target="blog"\} 0$/m);
  });

  it('a target changed takes its new URL at once; a message whose target is gone is dead, its error naming the target', async () => {
    await using before = await startReceiver();
    await using after = await startReceiver();
    await using t = await startTestDispatcher({ apiToken: OPERATOR });
    await t.request('POST', '/v1/targets', { token: OPERATOR, body: { name: 'shop', url: before.url } });
    await t.dispatcher.listen();
    const send = async (message: string, target = 'shop') => (await t.request('POST', '/v1/messages', { token: OPERATOR, body: { username: 'u', message, delaySeconds: 0, target } })).json() as Json;
    await send('first');
    assert.equal(JSON.parse((await before.nextRequest()).body).message, 'first');
    await t.request('PATCH', '/v1/targets/shop', { token: OPERATOR, body: { url: after.url } });
    await send('second');
    assert.equal(JSON.parse((await after.nextRequest()).body).message, 'second');
    assert.equal(before.requests.length, 1);

    // a message left with no target (removed by another dispatcher of a pool at the moment it was scheduled)
    const orphan = await t.dispatcher.store.insert([{ id: '0190f3a0-0000-7000-8000-0000000000ff', target: 'gone', username: 'u', message: 'orphan', scheduledAt: Date.now(), idempotencyKey: null }], Date.now());
    await t.dispatcher.engine.refill();
    await t.dispatcher.engine.whenIdle();
    const dead = (await t.request('GET', `/v1/messages/${orphan[0]!.message.id}`, { token: OPERATOR })).json() as Json;
    assert.equal(dead.status, 'dead');
    assert.match(dead.lastError, /target "gone" does not exist/);
  });
});
