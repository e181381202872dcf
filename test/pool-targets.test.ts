import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SIGNATURE_HEADER, verifySignature } from '../src/protocol/signing.ts';
import { REFRESH_MS } from '../src/dispatcher/targets.ts';
import { startTestDispatcher } from './support/dispatcher.ts';
import { createTestSchema, postgresTestUrl } from './support/postgres.ts';
import { waitFor } from './support/processes.ts';
import { startReceiver } from './support/receiver.ts';

/**
 * Targets in a pool (issue 12): the targets table is the pool's, shared on
 * one PostgreSQL schema. A target created through one dispatcher is known to
 * another at its first use (read on a miss: a token, a message naming it);
 * a change or a removal made through one reaches the other within
 * REFRESH_MS (it re-reads the targets every REFRESH_MS). Two dispatchers in
 * this process, each with its own store connections, as two processes would.
 */

const url = postgresTestUrl();
const skip = url ? false : 'PSCHED_TEST_POSTGRES_URL is not set (.ci/run sets it)';
const OPERATOR = 'operator-token-0123456789';
const SHOP_TOKEN = 'shop-token-0123456789abcdef';
const SHOP_SECRET = 'shop-signing-secret';

describe('targets in a PostgreSQL pool', { skip }, () => {
  it('a target created through one dispatcher is delivered to by another; its change and removal reach the other within seconds', async () => {
    await using schema = await createTestSchema(url!);
    const db = new URL(url!);
    db.searchParams.set('schema', schema.name);
    await using first = await startReceiver();
    await using second = await startReceiver();
    await using a = await startTestDispatcher({ db: db.toString(), apiToken: OPERATOR });
    await using b = await startTestDispatcher({ db: db.toString(), apiToken: OPERATOR });
    await a.dispatcher.listen();
    await b.dispatcher.listen();

    const created = await a.request('POST', '/v1/targets', { token: OPERATOR, body: { name: 'shop', url: first.url, signingSecret: SHOP_SECRET, token: SHOP_TOKEN } });
    assert.equal(created.statusCode, 201, created.body);

    // through the other dispatcher at once: its token, and the operator naming it
    const viaToken = await b.request('POST', '/v1/messages', { token: SHOP_TOKEN, body: { username: 'u', message: 'via b, its token', delaySeconds: 0 } });
    assert.equal(viaToken.statusCode, 201, viaToken.body);
    const viaOperator = await b.request('POST', '/v1/messages', { token: OPERATOR, body: { username: 'u', message: 'via b, the operator', delaySeconds: 0, target: 'shop' } });
    assert.equal(viaOperator.statusCode, 201, viaOperator.body);
    const arrived = [await first.nextRequest(), await first.nextRequest()];
    assert.deepEqual(arrived.map((r) => JSON.parse(r.body).message).sort(), ['via b, its token', 'via b, the operator']);
    for (const request of arrived) {
      assert.deepEqual(verifySignature(SHOP_SECRET, request.headers[SIGNATURE_HEADER] as string, request.body, Date.now()), { ok: true });
    }
    await waitFor(async () => (await b.request('GET', `/v1/messages/${viaToken.json().id}`, { token: SHOP_TOKEN })).json().status === 'delivered', { what: 'delivered' });

    // a target b has never heard of, met first in a message b claims (refill), not through b's API
    const created2 = await a.request('POST', '/v1/targets', { token: OPERATOR, body: { name: 'blog', url: second.url } });
    assert.equal(created2.statusCode, 201);
    await a.dispatcher.engine.stop(); // a delivers nothing more: what is scheduled through it is b's to deliver
    const unclaimed = await a.dispatcher.store.insert([{ id: '0190f3a0-0000-7000-8000-0000000000b1', target: 'blog', username: 'u', message: 'for blog', scheduledAt: Date.now(), idempotencyKey: null }], Date.now());
    assert.equal(unclaimed[0]!.created, true);
    await b.dispatcher.engine.refill();
    assert.equal(JSON.parse((await second.nextRequest()).body).message, 'for blog');

    // a change through a: b delivers to the new URL within a refresh
    const changedAt = Date.now();
    assert.equal((await a.request('PATCH', '/v1/targets/shop', { token: OPERATOR, body: { url: second.url } })).statusCode, 200);
    let sent = 0;
    await waitFor(async () => {
      await b.request('POST', '/v1/messages', { token: SHOP_TOKEN, body: { username: 'u', message: `after the change ${sent++}`, delaySeconds: 0 } });
      const taken = second.requests.filter((r) => JSON.parse(r.body).message.startsWith('after the change'));
      return taken.length > 0;
    }, { timeoutMs: 3 * REFRESH_MS + 2000, intervalMs: 100, what: 'a delivery to the changed URL' });
    const took = Date.now() - changedAt;
    assert.ok(took <= 3 * REFRESH_MS + 2000, `took ${took} ms`);

    // a removal through a: b no longer takes its token within a refresh
    await waitFor(async () => (await b.request('GET', '/v1/messages?status=scheduled', { token: SHOP_TOKEN })).json().items.length === 0 || undefined, { what: 'shop\'s messages delivered' });
    await waitFor(async () => (await a.request('DELETE', '/v1/targets/shop', { token: OPERATOR })).statusCode === 204 || undefined, { what: 'shop removed' });
    await waitFor(async () => (await b.request('GET', '/v1/messages', { token: SHOP_TOKEN })).statusCode === 401 || undefined, { timeoutMs: 3 * REFRESH_MS + 2000, what: 'b refusing the removed target\'s token' });
  });
});
