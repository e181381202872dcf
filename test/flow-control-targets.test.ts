import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { freePort } from './support/processes.ts';
import { startTestDispatcher } from './support/dispatcher.ts';
import { startReceiver, takeRequests, type RecordedRequest } from './support/receiver.ts';

/**
 * Issue 12's flow control end to end: one dispatcher, real HTTP receivers,
 * three targets — one healthy, one that answers 503 with Retry-After: 5 and is
 * limited to 5 a second, one that refuses every connection. The bounds are
 * invariants of the limits (what the receivers saw, against each other), not
 * wall-clock budgets.
 */

const OPERATOR = 'operator-token-0123456789';
const TOKENS = { healthy: 'healthy-token-0123456789ab', busy: 'busy-token-0123456789abcd', down: 'down-token-0123456789abcd' };
const PER_TARGET = 10;

interface Json {
  [key: string]: any;
}

describe('flow control per target, end to end', () => {
  it('a paused and rate-limited target and a down one never hold up a healthy one; the limits hold at the receiver; nothing is lost; isolation holds', async () => {
    await using healthy = await startReceiver();
    await using busy = await startReceiver();
    busy.script({ status: 503, headers: { 'retry-after': '5' } });
    await using t = await startTestDispatcher({ apiToken: OPERATOR, mainUrl: healthy.url });
    const closedPort = await freePort();
    for (const body of [
      { name: 'healthy', url: healthy.url, token: TOKENS.healthy },
      { name: 'busy', url: busy.url, token: TOKENS.busy, ratePerSecond: 5, burst: 1 },
      { name: 'down', url: `http://127.0.0.1:${closedPort}`, token: TOKENS.down },
    ]) {
      const response = await t.request('POST', '/v1/targets', { token: OPERATOR, body });
      assert.equal(response.statusCode, 201, response.body);
    }
    await t.dispatcher.listen();

    const dueAt = Date.now() + 500;
    const sent: Record<keyof typeof TOKENS, Json[]> = { healthy: [], busy: [], down: [] };
    for (const target of ['busy', 'down', 'healthy'] as const) {
      const body = Array.from({ length: PER_TARGET }, (_, i) => ({ username: 'u', message: `${target} ${i}`, scheduledAt: new Date(dueAt).toISOString() }));
      const response = await t.request('POST', '/v1/messages/batch', { token: TOKENS[target], body });
      assert.equal(response.statusCode, 201, response.body);
      sent[target] = response.json() as Json[];
    }

    const [healthyRequests, busyRequests] = await Promise.all([takeRequests(healthy, PER_TARGET), takeRequests(busy, 1 + PER_TARGET)]);
    const [refused, ...afterPause] = busyRequests;
    // the outcomes of the last answers are written (the down target's retries wait out their backoff meanwhile)
    await t.dispatcher.engine.whenIdle();

    // the healthy target went out while the busy one was paused
    const pauseEnds = refused!.receivedAt + 5000;
    assert.ok(healthyRequests.every((request) => request.receivedAt < pauseEnds), 'every healthy delivery before the busy target\'s pause ended');
    // the busy target: nothing during its Retry-After, then at most its burst plus 5 in any second
    assert.ok(afterPause.every((request) => request.receivedAt >= pauseEnds - 5), 'nothing sent to the busy target during its Retry-After');
    const times = afterPause.map((request) => request.receivedAt);
    const busiestSecond = Math.max(...times.map((at) => times.filter((other) => other >= at && other < at + 1000).length));
    assert.ok(busiestSecond <= 6, `at most burst 1 + 5 a second, saw ${busiestSecond} in one second`);
    assert.ok(times.at(-1)! - times[0]! >= ((PER_TARGET - 2) * 1000) / 5, 'ten deliveries at 5 a second after a burst of one take at least 1.6 s');

    // nothing lost: every message delivered once, the down target's still waiting for their next attempt
    const texts = (requests: RecordedRequest[]) => requests.map((request) => JSON.parse(request.body).message).sort();
    assert.deepEqual(texts(healthyRequests), sent.healthy.map((m) => m.message).sort());
    assert.deepEqual(texts(afterPause), sent.busy.map((m) => m.message).sort());
    assert.equal(texts([refused!]).length, 1);
    for (const message of sent.down) {
      const stored = (await t.request('GET', `/v1/messages/${message.id}`, { token: OPERATOR })).json() as Json;
      assert.ok(['scheduled', 'delivering'].includes(stored.status), `the down target's messages are retried, not lost or dead: ${stored.status}`);
      assert.ok(stored.attempts >= 1);
    }
    for (const message of [...sent.healthy, ...sent.busy]) {
      assert.equal(((await t.request('GET', `/v1/messages/${message.id}`, { token: OPERATOR })).json() as Json).status, 'delivered');
    }
    // isolation: one main server's token does not see another's message
    assert.equal((await t.request('GET', `/v1/messages/${sent.busy[0]!.id}`, { token: TOKENS.healthy })).statusCode, 404);
    assert.equal((await t.request('GET', `/v1/messages/${sent.healthy[0]!.id}`, { token: TOKENS.busy })).statusCode, 404);

    const metrics = (await t.request('GET', '/metrics', { token: OPERATOR })).body;
    assert.match(metrics, /^psched_target_deliveries_total\{target="busy",outcome="delivered"\} 10$/m);
    assert.match(metrics, /^psched_target_deliveries_total\{target="busy",outcome="retry"\} 1$/m);
    assert.match(metrics, /^psched_target_deliveries_total\{target="healthy",outcome="delivered"\} 10$/m);
    const throttled = Number(/^psched_target_throttled_seconds_total\{target="busy"\} ([\d.]+)$/m.exec(metrics)?.[1]);
    assert.ok(throttled >= 5, `the busy target spent its pause and its rate limit throttled: ${throttled} s`);
  });
});
