import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import type { DispatcherStore } from '../src/dispatcher/store.ts';
import { openSqliteDispatcherStore } from '../src/stores/sqlite/dispatcher-store.ts';
import { startTestDispatcher } from './support/dispatcher.ts';
import { deliveryPayload, startTestMain } from './support/main.ts';

/**
 * Issue 14, items 15 and 19: bad bytes are refused naming the field (never
 * stored as U+FFFD), and every refusal, the web framework's and Node's HTTP
 * parser's included, answers `{"error":{"code","message"}}` saying what happened.
 */

const MESSAGE = { username: 'ann', message: 'hi', scheduledAt: '2030-01-01T00:00:00Z' };
const JSON_TYPE = { 'content-type': 'application/json' };

/** MESSAGE as JSON bytes, with `bytes` spliced into the username. */
function withBadUsername(bytes: number[]): Buffer {
  const [before, after] = JSON.stringify({ ...MESSAGE, username: 'an@' }).split('@') as [string, string];
  return Buffer.concat([Buffer.from(before), Buffer.from(bytes), Buffer.from(after)]);
}

async function storedCount(store: DispatcherStore): Promise<number> {
  return Object.values(await store.countByStatus()).reduce((a, b) => a + b, 0);
}

function errorOf(body: string): { code: string; message: string; field?: string } {
  const parsed = JSON.parse(body) as { error: { code: string; message: string; field?: string } };
  assert.equal(typeof parsed.error.code, 'string');
  assert.equal(typeof parsed.error.message, 'string');
  return parsed.error;
}

/** Writes raw bytes to a listening server and reads everything it answers until it closes. */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => { answer += chunk; });
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
    socket.write(request);
  });
}

describe('text must be UTF-8 and Unicode, or it is refused naming the field', () => {
  for (const [what, bytes] of [['a byte that is never UTF-8 (0xFF)', [0xff]], ['a truncated sequence (0xC3)', [0xc3]], ['an encoded surrogate (ED A0 80)', [0xed, 0xa0, 0x80]]] as const) {
    it(`JSON with ${what}: 400 naming username, nothing stored`, async () => {
      await using d = await startTestDispatcher();
      const answer = await d.dispatcher.app.inject({ method: 'POST', url: '/v1/messages', headers: JSON_TYPE, payload: withBadUsername([...bytes]) });
      assert.equal(answer.statusCode, 400, answer.body);
      const error = errorOf(answer.body);
      assert.equal(error.field, 'username');
      assert.match(error.message, /UTF-8/);
      assert.equal(await storedCount(d.dispatcher.store), 0);
    });
  }

  it('a lone surrogate escape in JSON: 400 naming the field; a pair (an emoji) is fine', async () => {
    await using d = await startTestDispatcher();
    const lone = await d.request('POST', '/v1/messages', { body: JSON.stringify(MESSAGE).replace('"hi"', '"hi \\ud83d"'), headers: JSON_TYPE });
    assert.equal(lone.statusCode, 400, lone.body);
    assert.equal(errorOf(lone.body).field, 'message');
    const pair = await d.request('POST', '/v1/messages', { body: JSON.stringify(MESSAGE).replace('"hi"', '"hi \\ud83d\\ude00"'), headers: JSON_TYPE });
    assert.equal(pair.statusCode, 201, pair.body);
    assert.equal((pair.json() as { message: string }).message, 'hi 😀');
    assert.equal(await storedCount(d.dispatcher.store), 1);
  });

  it('a batch with one bad item stores none of them, and names the item', async () => {
    await using d = await startTestDispatcher();
    const body = JSON.stringify([MESSAGE, { ...MESSAGE, message: 'x\\udc00' }]).replace('x\\\\udc00', 'x\\udc00');
    const answer = await d.request('POST', '/v1/messages/batch', { body, headers: JSON_TYPE });
    assert.equal(answer.statusCode, 400, answer.body);
    assert.equal(errorOf(answer.body).field, 'items[1].message');
    assert.equal(await storedCount(d.dispatcher.store), 0);
  });

  it('a charset other than UTF-8 is refused with 415', async () => {
    await using d = await startTestDispatcher();
    const answer = await d.dispatcher.app.inject({
      method: 'POST', url: '/v1/messages', headers: { 'content-type': 'application/json; charset=iso-8859-1' },
      payload: Buffer.from(JSON.stringify({ ...MESSAGE, username: 'café' }), 'latin1'),
    });
    assert.equal(answer.statusCode, 415, answer.body);
    assert.match(errorOf(answer.body).message, /charset=iso-8859-1/);
    assert.equal(await storedCount(d.dispatcher.store), 0);
  });

  it('a form whose percent-escapes are not UTF-8 is refused naming the field; escapes that are, and a stray %, arrive exact', async () => {
    await using d = await startTestDispatcher();
    const form = (payload: string) => d.dispatcher.app.inject({
      method: 'POST', url: '/scheduleMessage.php', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload,
    });
    const bad = await form('username=an%FF&message=hi&time=2030-01-01+00%3A00%3A00');
    assert.equal(bad.statusCode, 400, bad.body);
    assert.equal(errorOf(bad.body).field, 'username');
    assert.equal(await storedCount(d.dispatcher.store), 0);

    const good = await form('username=Ren%C3%A9e&message=100%25+sure+%zz+%F0%9F%98%80&time=2030-01-01+00%3A00%3A00');
    assert.equal(good.statusCode, 200, good.body);
    const [stored] = await d.dispatcher.store.list({ limit: 10 });
    assert.equal(stored?.username, 'Renée');
    assert.equal(stored?.message, '100% sure %zz 😀');
  });

  it('the main server refuses a delivery that is not UTF-8, and its JSON API refuses form and text bodies with 415', async () => {
    await using main = await startTestMain();
    const payload = Buffer.from(JSON.stringify(deliveryPayload({ message: 'caf@' })).replace('@', '\u00e9'), 'latin1');
    const delivery = await main.server.app.inject({ method: 'POST', url: '/v1/posts', headers: JSON_TYPE, payload });
    assert.equal(delivery.statusCode, 400, delivery.body);
    assert.equal(errorOf(delivery.body).field, 'message');
    for (const type of ['application/x-www-form-urlencoded', 'text/plain']) {
      const answer = await main.server.app.inject({ method: 'POST', url: '/v1/scheduled', headers: { 'content-type': type }, payload: 'username=a' });
      assert.equal(answer.statusCode, 415, `${type}: ${answer.body}`);
      assert.equal(errorOf(answer.body).code, 'unsupported_media_type');
    }
  });
});

describe('every error answers the documented shape, saying what happened', () => {
  it('a __proto__ or constructor.prototype key is refused by name, not as "invalid JSON"', async () => {
    await using d = await startTestDispatcher();
    for (const [extra, field] of [['"__proto__":{"admin":true}', '__proto__'], ['"constructor":{"prototype":{}}', 'constructor.prototype']] as const) {
      const body = JSON.stringify(MESSAGE).replace(/}$/, `,${extra}}`);
      const answer = await d.request('POST', '/v1/messages', { body, headers: JSON_TYPE });
      assert.equal(answer.statusCode, 400, answer.body);
      const error = errorOf(answer.body);
      assert.equal(error.field, field);
      assert.doesNotMatch(error.message, /not valid JSON/);
    }
    const broken = await d.request('POST', '/v1/messages', { body: '{"username":', headers: JSON_TYPE });
    assert.equal(broken.statusCode, 400);
    assert.match(errorOf(broken.body).message, /not valid JSON/);
  });

  it('a malformed URL and an over-long id', async () => {
    await using d = await startTestDispatcher();
    const badUrl = await d.request('GET', '/v1/messages/%zz');
    assert.equal(badUrl.statusCode, 400);
    assert.equal(errorOf(badUrl.body).code, 'invalid_request');
    const long = await d.request('GET', `/v1/messages/${'a'.repeat(300)}`);
    assert.equal(long.statusCode, 414);
    assert.match(errorOf(long.body).message, /longer than 100 characters/);
  });

  it('malformed HTTP and oversized headers, refused by Node before the framework sees them', async () => {
    await using d = await startTestDispatcher();
    await d.dispatcher.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (d.dispatcher.app.server.address() as { port: number }).port;

    const garbage = await rawExchange(port, 'HELLO THERE\r\n\r\n');
    assert.match(garbage, /^HTTP\/1\.1 400 /);
    assert.equal(errorOf(garbage.slice(garbage.indexOf('\r\n\r\n') + 4)).code, 'invalid_request');

    const huge = await rawExchange(port, `GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(huge, /^HTTP\/1\.1 431 /);
    assert.equal(errorOf(huge.slice(huge.indexOf('\r\n\r\n') + 4)).code, 'headers_too_large');
  });

  it('a full disk: 507 storage_full, nothing stored', async () => {
    // a real SQLITE_FULL, from a database capped at its current size
    const capped = new DatabaseSync(':memory:');
    capped.exec('CREATE TABLE t (x); PRAGMA max_page_count = 2');
    let full: unknown;
    try {
      capped.prepare('INSERT INTO t VALUES (?)').run('x'.repeat(100_000));
    } catch (err) {
      full = err;
    }
    capped.close();
    assert.ok(full, 'the capped database refused the insert');

    const dir = mkdtempSync(join(tmpdir(), 'psched-full-'));
    const real = openSqliteDispatcherStore(join(dir, 'dispatcher.db'));
    await real.migrate();
    const store: DispatcherStore = new Proxy(real, {
      get(target, name) {
        if (name === 'insert') return () => Promise.reject(full);
        const value = Reflect.get(target, name) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    try {
      await using d = await startTestDispatcher({}, { store });
      const answer = await d.request('POST', '/v1/messages', { body: MESSAGE });
      assert.equal(answer.statusCode, 507, answer.body);
      const error = errorOf(answer.body);
      assert.equal(error.code, 'storage_full');
      assert.match(error.message, /disk is full/);
      assert.equal(await storedCount(real), 0);
    } finally {
      await real.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
