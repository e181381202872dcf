import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, dispatcherConfig, mainConfig } from '../src/config.ts';
import { startTestDispatcher } from './support/dispatcher.ts';
import { startTestMain } from './support/main.ts';
import { CAPTURED } from './support/original.ts';

/** --legacy-allow: the original's servers cannot send a token; listed addresses may call the legacy endpoints without one. */
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

/** Collects JSON log lines. */
function logLines() {
  const lines: Record<string, unknown>[] = [];
  return { lines, logger: { stream: { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>); } } } };
}

describe('--legacy-allow on the dispatcher', () => {
  it('lets listed addresses (IPv4, IPv6, CIDR, IPv4 on a dual-stack socket) call the legacy endpoints without the token, and nothing else', async () => {
    const logs = logLines();
    await using t = await startTestDispatcher({ apiToken: 'tok', legacyAllow: '10.0.0.5, 10.0.1.0/24,fd00::/8', timeZone: 'UTC' }, { logger: logs.logger });
    const from = (remoteAddress: string, method: 'GET' | 'POST', url: string, payload?: string) =>
      t.dispatcher.app.inject({ method, url, remoteAddress, headers: payload === undefined ? {} : FORM, payload });

    for (const address of ['10.0.0.5', '10.0.1.77', '::ffff:10.0.0.5', 'fd00::1']) {
      const response = await from(address, 'POST', '/scheduleMessage.php', CAPTURED.mainForward.body);
      assert.equal(response.statusCode, 200, `${address}: ${response.body}`);
      assert.equal((await from(address, 'GET', '/cron/checkScheduledMessages.php')).statusCode, 200, address);
    }
    assert.equal((await t.dispatcher.store.list({ limit: 10 })).length, 4);

    // every other call still needs the token, from a listed address too
    assert.equal((await t.dispatcher.app.inject({ method: 'GET', url: '/v1/messages', remoteAddress: '10.0.0.5' })).statusCode, 401);
    assert.equal((await t.dispatcher.app.inject({ method: 'GET', url: '/', remoteAddress: '10.0.0.5' })).statusCode, 401);

    for (const address of ['10.0.0.6', '10.0.2.1', '127.0.0.1', 'fe80::1']) {
      const refused = await from(address, 'POST', '/scheduleMessage.php', CAPTURED.mainForward.body);
      assert.equal(refused.statusCode, 401, address);
      const body = refused.json() as { received: unknown; result: string; failure: string };
      assert.deepEqual(Object.keys(body), ['received', 'result', 'failure']);
      assert.equal(body.result, 'Failure');
      assert.match(body.failure, new RegExp(`--legacy-allow ${address.replace(/\./g, '\\.')}`));
      assert.ok(logs.lines.some((line) => line.address === address && /refused/.test(String(line.msg))), `no log line for ${address}`);
    }
    assert.equal((await from('10.0.0.6', 'GET', '/cron/checkScheduledMessages.php')).statusCode, 401);
    assert.equal((await t.dispatcher.store.list({ limit: 10 })).length, 4);
  });

  it('is closed by default: without the token the legacy endpoints answer 401 even from loopback', async () => {
    await using t = await startTestDispatcher({ apiToken: 'tok' });
    const response = await t.dispatcher.app.inject({ method: 'POST', url: '/scheduleMessage.php', remoteAddress: '127.0.0.1', headers: FORM, payload: CAPTURED.mainForward.body });
    assert.equal(response.statusCode, 401);
    assert.equal(dispatcherConfig({}, {}).legacyAllow.length, 0);
  });

  it('reads PSCHED_LEGACY_ALLOW and refuses entries that are not addresses or ranges', () => {
    assert.deepEqual(dispatcherConfig({}, { PSCHED_LEGACY_ALLOW: '10.0.0.5,2001:db8::/32' }).legacyAllow, ['10.0.0.5', '2001:db8::/32']);
    assert.deepEqual(mainConfig({ legacyAllow: '10.0.0.5' }, {}).legacyAllow, ['10.0.0.5']);
    for (const bad of ['example.com', '10.0.0.0/33', '10.0.0.5/8/1', 'fd00::/129', '10.0.0/8']) {
      assert.throws(() => dispatcherConfig({ legacyAllow: bad }, {}), (err: unknown) => err instanceof ConfigError && /--legacy-allow/.test(err.message), bad);
    }
  });
});

describe('--legacy-allow on the main server', () => {
  it('accepts unsigned posts to postMessage.php from listed addresses only, logging refusals; /v1/posts still needs the signature', async () => {
    const logs = logLines();
    await using t = await startTestMain({ signingSecret: 's', legacyAllow: '10.0.0.5' }, { logger: logs.logger });
    const post = (remoteAddress: string) => t.server.app.inject({ method: 'POST', url: '/postMessage.php', remoteAddress, headers: FORM, payload: CAPTURED.cronDelivery.body });
    assert.equal((await post('10.0.0.5')).statusCode, 200);
    const refused = await post('10.0.0.6');
    assert.equal(refused.statusCode, 403);
    assert.match((refused.json() as { failure: string }).failure, /--legacy-post-message .*--legacy-allow 10\.0\.0\.6/);
    assert.ok(logs.lines.some((line) => line.address === '10.0.0.6'));
    const unsigned = await t.server.app.inject({
      method: 'POST', url: '/v1/posts', remoteAddress: '10.0.0.5', headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ id: '01900000-0000-7000-8000-000000000001', username: 'a', message: 'b', scheduledAt: '2030-01-01T00:00:00.000Z', attempt: 1 }),
    });
    assert.equal(unsigned.statusCode, 401);
    assert.equal(await t.server.store.countPosts(), 1);
  });

  it('lets listed addresses use scheduleMessage.php without the access token', async () => {
    await using t = await startTestMain({ accessToken: 'tok', legacyAllow: '10.0.0.0/8' });
    const schedule = (remoteAddress: string) => t.server.app.inject({ method: 'POST', url: '/scheduleMessage.php', remoteAddress, headers: FORM, payload: 'username=a&message=b&time=2099-01-01T00:00' });
    assert.equal((await schedule('192.168.1.1')).statusCode, 401);
    // past the token: refused only because no dispatcher listens
    assert.equal((await schedule('10.1.2.3')).statusCode, 503);
  });
});
