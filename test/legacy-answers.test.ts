import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseServiceFlags } from '../src/cli/services.ts';
import { MAIN_OPTIONS, mainConfig } from '../src/config.ts';
import { startReceiver } from './support/receiver.ts';
import { startTestDispatcher } from './support/dispatcher.ts';
import { closedPortUrl, startTestMain } from './support/main.ts';
import { CAPTURED } from './support/original.ts';

/** The original's answers, field order included (`received` first), and the flags its 403 names. */
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

describe('--legacy-post-message', () => {
  it('works as a bare flag, as its own 403 tells users to pass it', async () => {
    await using refusing = await startTestMain({ signingSecret: 's' });
    const refused = await refusing.request('POST', '/postMessage.php', { body: CAPTURED.cronDelivery.body, headers: FORM });
    assert.equal(refused.statusCode, 403);
    const flag = /--legacy-post-message\b/.exec((refused.json() as { failure: string }).failure)?.[0];
    assert.equal(flag, '--legacy-post-message');

    const { given } = parseServiceFlags('main', MAIN_OPTIONS, [flag, '--signing-secret', 's']);
    assert.equal(mainConfig(given, {}).legacyPostMessage, true);
    await using accepting = await startTestMain({ ...given, signingSecret: 's' } as Record<string, string>);
    assert.equal((await accepting.request('POST', '/postMessage.php', { body: CAPTURED.cronDelivery.body, headers: FORM })).statusCode, 200);

    assert.equal(mainConfig(parseServiceFlags('main', MAIN_OPTIONS, ['--legacy-post-message', 'no']).given, {}).legacyPostMessage, false);
    assert.equal(mainConfig(parseServiceFlags('main', MAIN_OPTIONS, ['--legacy-post-message=false']).given, {}).legacyPostMessage, false);
    assert.equal(mainConfig(parseServiceFlags('main', MAIN_OPTIONS, ['--port', '9000', '--legacy-post-message']).given, {}).legacyPostMessage, true);
  });
});

describe('the main server\'s scheduleMessage.php answers as the original did', () => {
  it('externalResult is the original dispatcher\'s answer ({"received":…,"result":"Success"}), then the stored message', async () => {
    await using d = await startTestDispatcher();
    const url = await d.dispatcher.listen();
    await using t = await startTestMain({ dispatcherUrls: url });
    const response = await t.form('/scheduleMessage.php', { username: 'Curl', message: "I'm scheduling a message!", time: '2099-08-01T13:30' });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as { externalResult: Record<string, unknown> };
    assert.deepEqual(Object.keys(body), ['received', 'result', 'externalResult']);
    assert.deepEqual(Object.keys(body.externalResult).slice(0, 2), ['received', 'result']);
    assert.deepEqual(body.externalResult.received, { username: 'Curl', message: "I'm scheduling a message!", time: '2099-08-01 13:30' });
    assert.equal(body.externalResult.result, 'Success');
    assert.equal((await d.dispatcher.store.get(body.externalResult.id as string))?.message, "I'm scheduling a message!");
  });

  it('a dispatcher\'s refusal and no dispatcher at all answer with received first', async () => {
    await using refusing = await startReceiver();
    refusing.fallback = { status: 409, body: { error: { code: 'conflict', message: 'already taken' } } };
    await using t = await startTestMain({ dispatcherUrls: refusing.url });
    const fields = { username: 'a', message: 'b', time: '2099-08-01T13:30' };
    const refused = await t.form('/scheduleMessage.php', fields);
    assert.equal(refused.statusCode, 409);
    const body = refused.json() as { externalResult: Record<string, unknown> };
    assert.deepEqual(Object.keys(body), ['received', 'result', 'failure', 'externalResult']);
    assert.deepEqual(Object.keys(body.externalResult).slice(0, 3), ['received', 'result', 'failure']);
    assert.equal(body.externalResult.result, 'Failure');
    assert.equal(body.externalResult.failure, 'already taken');

    await using down = await startTestMain({ dispatcherUrls: await closedPortUrl() });
    const none = await down.form('/scheduleMessage.php', fields);
    assert.equal(none.statusCode, 503);
    assert.equal(none.body, JSON.stringify({ received: fields, result: 'Failure', failure: 'No response from Dispatcher' }));
  });
});

describe('a value that is not UTF-8 once decoded the second time', () => {
  it('is refused in the original\'s shape, received first, storing nothing', async () => {
    await using t = await startTestDispatcher();
    const response = await t.request('POST', '/scheduleMessage.php', { body: 'username=a&message=caf%25E9&time=2030-01-01%2B00%253A00', headers: FORM });
    assert.equal(response.statusCode, 400);
    const body = response.json() as { received: unknown; failure: string };
    assert.deepEqual(Object.keys(body), ['received', 'result', 'failure']);
    assert.deepEqual(body.received, { username: 'a', message: 'caf%E9', time: '2030-01-01+00%3A00' });
    assert.match(body.failure, /message is not valid UTF-8/);
    assert.equal((await t.dispatcher.store.list({ limit: 1 })).length, 0);
  });
});
