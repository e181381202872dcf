import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { FakeClock } from '../src/clock.ts';
import { ConfigError, dispatcherConfig } from '../src/config.ts';
import { createJsonDeliverer, deliveryPayload } from '../src/dispatcher/delivery.ts';
import type { StoredMessage } from '../src/dispatcher/store.ts';
import { signHeader } from '../src/protocol/signing.ts';
import { startTestMain } from './support/main.ts';
import { startReceiver } from './support/receiver.ts';

/**
 * Deliveries signed the Standard Webhooks way (--signature-scheme
 * standard-webhooks), checked with that project's own npm verifier, as a
 * receiver in another stack would; and the main server taking them.
 */

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

function storedMessage(attempts: number): StoredMessage {
  const at = Date.UTC(2030, 0, 1, 9, 0, 0, 250);
  return {
    id: '0190f3a0-0000-7000-8000-0000000000aa', target: 'default', username: 'Ann', message: 'Stand-up in five ✨ <b>', scheduledAt: at, dueAt: at,
    status: 'delivering', attempts, version: 1, idempotencyKey: null, createdAt: at, updatedAt: at, deliveredAt: null,
    lastError: null, leaseOwner: 'owner', leaseExpiresAt: at + 10_000, deliverBy: null,
  };
}

describe('Standard Webhooks deliveries', () => {
  it('verify with the standardwebhooks library, and carry the scheduled time, attempt and send time', async () => {
    await using receiver = await startReceiver();
    const clock = new FakeClock(Date.now());
    const deliverer = createJsonDeliverer({ mainUrl: receiver.url, signingSecret: SECRET, signatureScheme: 'standard-webhooks', timeoutMs: 5000, connections: 1, clock });
    try {
      const message = storedMessage(2);
      assert.equal((await deliverer.deliver(message)).kind, 'delivered');
      const request = await receiver.nextRequest();
      const headers = request.headers as Record<string, string>;
      const verified = new Webhook(SECRET).verify(request.body, headers) as ReturnType<typeof deliveryPayload>;
      assert.deepEqual(verified, deliveryPayload(message));
      assert.equal(headers['webhook-id'], message.id, 'the id receivers dedupe on: the same on every attempt');
      assert.equal(headers['webhook-timestamp'], String(Math.floor(clock.now() / 1000)));
      assert.equal(headers['psched-signature'], undefined, 'one scheme per delivery');
      assert.deepEqual([headers['psched-scheduled-at'], headers['psched-attempt'], headers['psched-sent-at']],
        ['2030-01-01T09:00:00.250Z', '2', new Date(clock.now()).toISOString()]);

      assert.throws(() => new Webhook(SECRET).verify(request.body.replace('Ann', 'Bob'), headers), /No matching signature/, 'a changed body fails');
      assert.throws(() => new Webhook(`whsec_${randomBytes(32).toString('base64')}`).verify(request.body, headers), /No matching signature/, 'another secret fails');
    } finally {
      await deliverer.close();
    }
  });

  it('are taken by the main server, which still takes psched-signed ones with the same secret', async () => {
    const clock = new FakeClock(Date.now());
    await using t = await startTestMain({ signingSecret: SECRET }, { clock });
    const payload = deliveryPayload(storedMessage(1));
    const body = JSON.stringify(payload);
    const post = (headers: Record<string, string>, text = body) => t.server.app.inject({ method: 'POST', url: '/v1/posts', headers: { 'content-type': 'application/json', ...headers }, payload: text });
    const signed = (at: number) => {
      const timestamp = Math.floor(at / 1000);
      return { 'webhook-id': payload.id, 'webhook-timestamp': String(timestamp), 'webhook-signature': new Webhook(SECRET).sign(payload.id, new Date(timestamp * 1000), body) };
    };

    assert.equal((await post(signed(clock.now()))).statusCode, 201);
    assert.equal((await post(signed(clock.now()))).statusCode, 200, 'the same delivery again: already posted');
    const tampered = await post(signed(clock.now()), body.replace('Stand-up', 'Sit-down'));
    assert.equal(tampered.statusCode, 401);
    assert.match(tampered.json().error.message, /webhook-signature does not match/);
    const stale = await post(signed(clock.now() - 10 * 60_000));
    assert.equal(stale.statusCode, 401);
    assert.match(stale.json().error.message, /stale webhook-timestamp/);
    const otherId = await post({ ...signed(clock.now()), 'webhook-id': 'another-id' });
    assert.equal(otherId.statusCode, 401, 'the id is signed too');

    const second = JSON.stringify({ ...payload, id: '0190f3a0-0000-7000-8000-0000000000bb' });
    const pschedSigned = await post({ 'psched-signature': signHeader(SECRET, clock.now(), second) }, second);
    assert.equal(pschedSigned.statusCode, 201);
  });

  it('need a whsec_ secret of 24 to 64 bytes: the dispatcher refuses to start otherwise, naming the flag', () => {
    const refuse = (given: Record<string, string>) => assert.throws(() => dispatcherConfig({ signatureScheme: 'standard-webhooks', ...given }, {}),
      (err: unknown) => err instanceof ConfigError && /--signing-secret/.test(err.message));
    refuse({});
    refuse({ signingSecret: 'plain-text-secret' });
    refuse({ signingSecret: `whsec_${randomBytes(8).toString('base64')}` });
    refuse({ signingSecret: 'whsec_not base64!' });
    assert.equal(dispatcherConfig({ signatureScheme: 'standard-webhooks', signingSecret: SECRET }, {}).signatureScheme, 'standard-webhooks');
    assert.throws(() => dispatcherConfig({ signatureScheme: 'hmac' }, {}), /--signature-scheme must be psched or standard-webhooks/);
  });
});
