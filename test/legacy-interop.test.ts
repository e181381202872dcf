import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startTestDispatcher } from './support/dispatcher.ts';
import {
  CAPTURED, HARD_TEXTS, originalCronDelivery, originalEndpointReads, originalMainForward, phpSenderBody, urldecode, urlencode,
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
