import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseUserTime, formatWallClock, isValidTimeZone, timeZoneCacheSize, timeZoneOffset } from '../src/protocol/time.ts';
import { toMessageJson } from '../src/dispatcher/message-json.ts';
import { signHeader, verifySignature } from '../src/protocol/signing.ts';
import { validateMessagePatch, validateScheduleRequest, textLength } from '../src/protocol/messages.ts';
import { deliverWithinText } from '../src/protocol/targets.ts';
import { html, unsafeRaw } from '../src/html.ts';
import { ValidationError } from '../src/errors.ts';
import { uuidv7 } from '../src/ids.ts';
import { readError, readMessage, readMessagePage } from '../src/protocol/wire.ts';

describe('parseUserTime', () => {
  it('takes RFC 3339 instants with an offset as they are', () => {
    assert.equal(parseUserTime('2026-12-24T09:00:00Z', 'Europe/Berlin'), Date.UTC(2026, 11, 24, 9));
    assert.equal(parseUserTime('2026-12-24T09:00:00.250+02:00', 'UTC'), Date.UTC(2026, 11, 24, 7, 0, 0, 250));
  });

  it('reads wall-clock times in the given zone, the original\'s format included', () => {
    assert.equal(parseUserTime('2014-08-01 13:30:00', 'UTC'), Date.UTC(2014, 7, 1, 13, 30));
    assert.equal(parseUserTime('2014-08-01T13:30', 'America/Vancouver'), Date.UTC(2014, 7, 1, 20, 30));
    assert.equal(parseUserTime('2026-01-15 09:00', 'Europe/Berlin'), Date.UTC(2026, 0, 15, 8));
  });

  it('gets the offset right on both sides of a DST change', () => {
    // Europe/Berlin leaves summer time on 2026-10-25 at 03:00 local.
    assert.equal(parseUserTime('2026-10-24 12:00', 'Europe/Berlin'), Date.UTC(2026, 9, 24, 10));
    assert.equal(parseUserTime('2026-10-26 12:00', 'Europe/Berlin'), Date.UTC(2026, 9, 26, 11));
    assert.equal(timeZoneOffset(Date.UTC(2026, 6, 1), 'Europe/Berlin'), 2 * 3600_000);
  });

  it('refuses impossible and malformed times, naming the field', () => {
    for (const bad of ['2026-02-30 10:00', '2026-13-01 10:00', 'tomorrow', '2026-12-24', '2026-12-24 25:00']) {
      assert.throws(() => parseUserTime(bad, 'UTC', 'time'), (err: unknown) => err instanceof ValidationError && err.field === 'time', bad);
    }
  });

  it('reads what toISOString writes exactly as Date.parse does, and refuses impossible days in that form too', () => {
    for (const instant of [Date.UTC(2024, 1, 29, 23, 59, 59, 999), Date.UTC(2026, 11, 24, 9), Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(100, 0, 1)]) {
      const text = new Date(instant).toISOString();
      assert.equal(parseUserTime(text, 'UTC'), instant, text);
      assert.equal(parseUserTime(text.replace(/\.\d{3}Z$/, 'Z'), 'UTC'), Math.floor(instant / 1000) * 1000, text);
    }
    // years 1-99 are years 1-99, not 1900-1999, with an offset or without
    assert.equal(parseUserTime('0001-01-01T00:00:00Z', 'UTC'), Date.parse('0001-01-01T00:00:00Z'));
    assert.equal(parseUserTime('0050-06-01 12:00', 'UTC'), Date.parse('0050-06-01T12:00:00Z'));
    // Paris kept its local mean time, +00:09:21, until 1891
    assert.equal(parseUserTime('0004-02-29T12:00', 'Europe/Paris'), Date.parse('0004-02-29T12:00:00Z') - (9 * 60 + 21) * 1000);
    for (const bad of ['2026-02-29T00:00:00Z', '2026-04-31T00:00:00.000Z', '2026-13-01T00:00:00Z', '2026-12-24T23:60:00Z', '2026-12-24T23:59:60Z', '2026-12-24T23:59:59.9x9Z', '2026-12-24T09:00:00+Z']) {
      assert.throws(() => parseUserTime(bad, 'UTC'), ValidationError, bad);
    }
  });

  it('moves a wall-clock time in a DST gap forward by the gap, in every zone', () => {
    // New York skips 02:00-03:00 on 2026-03-08: 02:30 is 03:30 EDT (07:30Z), not 01:30 EST
    assert.equal(parseUserTime('2026-03-08 02:30', 'America/New_York'), Date.UTC(2026, 2, 8, 7, 30));
    assert.equal(parseUserTime('2026-03-08 01:59:59', 'America/New_York'), Date.UTC(2026, 2, 8, 6, 59, 59));
    assert.equal(parseUserTime('2026-03-08 03:00', 'America/New_York'), Date.UTC(2026, 2, 8, 7));
    // Lord Howe skips 02:00-02:30 on 2026-10-04 (+10:30 -> +11): 02:15 is 02:45 +11
    assert.equal(parseUserTime('2026-10-04 02:15', 'Australia/Lord_Howe'), Date.parse('2026-10-04T02:45:00+11:00'));
    // Berlin skips 02:00-03:00 on 2026-03-29
    assert.equal(parseUserTime('2026-03-29 02:30', 'Europe/Berlin'), Date.parse('2026-03-29T03:30:00+02:00'));
    // Apia skipped all of 2011-12-30: noon that day is noon the next
    assert.equal(parseUserTime('2011-12-30 12:00', 'Pacific/Apia'), Date.parse('2011-12-31T12:00:00+14:00'));
  });

  it('takes the earlier instant of a wall-clock time that happens twice', () => {
    // New York repeats 01:00-02:00 on 2026-11-01: 01:30 EDT (05:30Z) comes before 01:30 EST (06:30Z)
    assert.equal(parseUserTime('2026-11-01 01:30', 'America/New_York'), Date.UTC(2026, 10, 1, 5, 30));
    assert.equal(parseUserTime('2026-11-01 02:00', 'America/New_York'), Date.UTC(2026, 10, 1, 7));
    // Lord Howe repeats 01:30-02:00 on 2026-04-05 (+11 -> +10:30)
    assert.equal(parseUserTime('2026-04-05 01:45', 'Australia/Lord_Howe'), Date.parse('2026-04-05T01:45:00+11:00'));
    assert.equal(parseUserTime('2026-10-25 02:30', 'Europe/Berlin'), Date.parse('2026-10-25T02:30:00+02:00'));
  });

  it('refuses 24:00 and year 0000 with an offset and without', () => {
    for (const bad of ['2026-12-24T24:00:00Z', '2026-12-24T24:00Z', '2026-12-24 24:00:00+01:00', '2026-12-24T24:00', '2026-12-24 24:00:00',
      '0000-01-01T00:00:00Z', '0000-01-01T00:00:00.000Z', '0000-06-01T12:00:00+02:00', '0000-01-01 00:00', '0000-06-01T12:00']) {
      assert.throws(() => parseUserTime(bad, 'Europe/Paris', 'time'), (err: unknown) => err instanceof ValidationError && err.field === 'time', bad);
    }
    assert.equal(parseUserTime('9999-12-31T23:59:59Z', 'UTC'), Date.UTC(9999, 11, 31, 23, 59, 59));
    assert.equal(parseUserTime('9999-12-31 23:59:59', 'Europe/Paris'), Date.UTC(9999, 11, 31, 22, 59, 59));
  });

  it('formats instants as the original\'s wall-clock text', () => {
    assert.equal(formatWallClock(Date.UTC(2014, 7, 1, 20, 30), 'America/Vancouver'), '2014-08-01 13:30:00');
  });
});

describe('time zone names', () => {
  it('are cached by canonical zone and in bounded number: case variants neither grow the cache nor change results', () => {
    const before = timeZoneCacheSize();
    const letters = 'europe/paris';
    const variants: string[] = [];
    for (let mask = 0; mask < 2 ** 11; mask++) {
      let bit = 0;
      variants.push([...letters].map((c) => (c === '/' ? c : mask & (1 << bit++) ? c.toUpperCase() : c)).join(''));
    }
    assert.equal(new Set(variants).size, 2048);
    for (const zone of variants) {
      assert.equal(parseUserTime('2026-07-01 12:00', zone), Date.UTC(2026, 6, 1, 10), zone);
      assert.equal(formatWallClock(Date.UTC(2026, 0, 1, 12), zone), '2026-01-01 13:00:00', zone);
    }
    const after = timeZoneCacheSize();
    assert.ok(after.formatters <= before.formatters + 1, `formatters: ${before.formatters} -> ${after.formatters}`);
    assert.ok(after.spellings <= 1024, `spellings: ${after.spellings}`);
  });

  it('never cache a zone Intl refuses', () => {
    const before = timeZoneCacheSize();
    for (let i = 0; i < 500; i++) assert.equal(isValidTimeZone(`Mars/Olympus_${i}`), false);
    assert.deepEqual(timeZoneCacheSize(), before);
  });
});

describe('delivery signatures', () => {
  const secret = 'test-secret';
  const body = '{"id":"1","message":"hi"}';

  it('verifies what was signed', () => {
    const now = 1_800_000_000_000;
    assert.deepEqual(verifySignature(secret, signHeader(secret, now, body), body, now + 1000), { ok: true });
  });

  it('refuses a missing, forged, tampered or stale signature', () => {
    const now = 1_800_000_000_000;
    const header = signHeader(secret, now, body);
    assert.equal(verifySignature(secret, undefined, body, now).ok, false);
    assert.equal(verifySignature('other-secret', header, body, now).ok, false);
    assert.equal(verifySignature(secret, header, body.replace('hi', 'ho'), now).ok, false);
    assert.equal(verifySignature(secret, header, body, now + 10 * 60_000).ok, false);
    assert.equal(verifySignature(secret, 't=abc,v1=zz', body, now).ok, false);
  });
});

describe('validateScheduleRequest', () => {
  const now = Date.UTC(2030, 0, 1);
  const options = { now, timeZone: 'UTC' };

  it('accepts scheduledAt or delaySeconds and keeps the text exactly', () => {
    const text = `Emoji 🎉, "quotes", <b>markup</b>, '; DROP TABLE messages; --`;
    assert.deepEqual(validateScheduleRequest({ username: 'Ann', message: text, delaySeconds: 1.5 }, options), {
      username: 'Ann', message: text, scheduledAt: now + 1500, idempotencyKey: null, deliverBy: null,
    });
    assert.equal(validateScheduleRequest({ username: 'A', message: 'x', delaySeconds: 0, deliverBy: '2030-01-01 10:00', timeZone: 'Asia/Tokyo' }, options).deliverBy, Date.UTC(2030, 0, 1, 1),
      'a deliverBy without an offset is read in the timeZone, like scheduledAt');
    assert.equal(validateScheduleRequest({ username: 'A', message: 'x', scheduledAt: '2030-01-02 00:00', timeZone: 'Asia/Tokyo' }, options).scheduledAt, Date.UTC(2030, 0, 1, 15));
  });

  it('counts characters as people do: one emoji is one character', () => {
    assert.equal(textLength('🎉🎉'), 2);
    validateScheduleRequest({ username: '🎉'.repeat(64), message: 'x', delaySeconds: 0 }, options);
  });

  const cases: [string, Record<string, unknown>, string][] = [
    ['missing username', { message: 'x', delaySeconds: 0 }, 'username'],
    ['empty message', { username: 'a', message: '', delaySeconds: 0 }, 'message'],
    ['message too long', { username: 'a', message: 'x'.repeat(5001), delaySeconds: 0 }, 'message'],
    ['username too long', { username: 'a'.repeat(65), message: 'x', delaySeconds: 0 }, 'username'],
    ['both times', { username: 'a', message: 'x', delaySeconds: 0, scheduledAt: '2030-01-01T00:00:00Z' }, 'scheduledAt'],
    ['no time', { username: 'a', message: 'x' }, 'scheduledAt'],
    ['negative delay', { username: 'a', message: 'x', delaySeconds: -1 }, 'delaySeconds'],
    ['bad zone', { username: 'a', message: 'x', scheduledAt: '2030-01-01 00:00', timeZone: 'Mars/Olympus' }, 'timeZone'],
    ['a deliverBy before scheduledAt', { username: 'a', message: 'x', scheduledAt: '2030-01-02T00:00:00Z', deliverBy: '2030-01-01T23:59:59Z' }, 'deliverBy'],
    ['a deliverBy already past', { username: 'a', message: 'x', scheduledAt: '2029-01-01T00:00:00Z', deliverBy: '2029-06-01T00:00:00Z' }, 'deliverBy'],
    ['a deliverBy that is no time', { username: 'a', message: 'x', delaySeconds: 0, deliverBy: 'soon' }, 'deliverBy'],
    ['a NUL character', { username: 'a', message: 'x\u0000y', delaySeconds: 0 }, 'message'],
    ['a username of spaces', { username: ' \t\u3000 ', message: 'x', delaySeconds: 0 }, 'username'],
    ['a username of zero-width characters', { username: '\u200B\u200C\u200D\u2060\uFEFF', message: 'x', delaySeconds: 0 }, 'username'],
    ['a username of format characters and spaces', { username: ' \u200E\u202E\u00AD ', message: 'x', delaySeconds: 0 }, 'username'],
    ['a username of a Hangul filler', { username: '\u3164', message: 'x', delaySeconds: 0 }, 'username'],
    ['a message of white space', { username: 'a', message: ' \n\r\t\u00A0\u2028', delaySeconds: 0 }, 'message'],
    ['a message of zero-width characters', { username: 'a', message: '\u200B'.repeat(10), delaySeconds: 0 }, 'message'],
    ['unknown field', { username: 'a', message: 'x', delaySeconds: 0, colour: 'red' }, 'colour'],
  ];
  for (const [name, body, field] of cases) {
    it(`refuses ${name}, naming ${field}`, () => {
      assert.throws(() => validateScheduleRequest(body, options), (err: unknown) => err instanceof ValidationError && err.field === field);
    });
  }

  it('takes names and texts with a visible character among invisible ones', () => {
    for (const name of ['\u200BAnn', ' a ', 'Zoë\u200D', '👩\u200D💻', '.']) {
      assert.equal(validateScheduleRequest({ username: name, message: ` ${name}\u200B`, delaySeconds: 0 }, options).username, name);
    }
  });

  it('refuses a blank message in a change too', () => {
    assert.throws(() => validateMessagePatch({ message: '\u200B ' }, { timeZone: 'UTC' }),
      (err: unknown) => err instanceof ValidationError && err.field === 'message' && /visible character/.test(err.message));
  });

  it('prefixes the field with the batch position', () => {
    assert.throws(() => validateScheduleRequest({ username: 'a' }, { ...options, prefix: 'items[3].' }),
      (err: unknown) => err instanceof ValidationError && err.field === 'items[3].message');
  });
});

describe('html template', () => {
  it('escapes every interpolation unless asked not to', () => {
    const name = `<script>alert("x")</script>&'`;
    assert.equal(html`<p>${name}</p>`.value, '<p>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;</p>');
    assert.equal(html`<div>${html`<b>${name.slice(0, 8)}</b>`}${unsafeRaw('<hr>')}</div>`.value, '<div><b>&lt;script&gt;</b><hr></div>');
    assert.equal(html`${[1, '<', null]}`.value, '1&lt;');
  });
});

describe('uuidv7', () => {
  it('is time-ordered and unique', () => {
    const ids = Array.from({ length: 5000 }, () => uuidv7(1_800_000_000_000));
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual([...ids].sort(), ids);
    assert.match(ids[0]!, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('deliver-by windows as text', () => {
  it('writes whole units as intervals are written, and milliseconds that are left', () => {
    assert.deepEqual([3_600_000, 5_400_000, 1500, 250, 61_001].map(deliverWithinText), ['1h', '1h30m', '1s500ms', '250ms', '1m1s1ms']);
  });
});

describe('message JSON', () => {
  it('writes every instant as toISOString does, within one second, across seconds and outside 1970-9999', () => {
    const base = Date.UTC(2026, 11, 24, 9, 0, 0);
    const instants = [base, base + 5, base + 50, base + 999, base + 1000, base - 1, base + 7, 0, -1, Date.UTC(10000, 0, 1), base + 12.5];
    for (const instant of instants) {
      const json = toMessageJson({
        id: 'id', target: 'default', username: 'u', message: 'm', scheduledAt: instant, dueAt: instant + 1, status: 'scheduled', attempts: 0,
        version: 1, idempotencyKey: null, createdAt: base, updatedAt: instant, deliveredAt: instant, lastError: null,
        leaseOwner: null, leaseExpiresAt: null, deliverBy: null,
      });
      assert.equal(json.scheduledAt, new Date(instant).toISOString(), String(instant));
      assert.equal(json.dueAt, new Date(instant + 1).toISOString(), String(instant));
      assert.equal(json.createdAt, new Date(base).toISOString());
      assert.equal(json.deliveredAt, new Date(instant).toISOString());
    }
  });
});

describe('reading another service\'s answers (protocol/wire)', () => {
  const base = Date.UTC(2026, 11, 24, 9, 0, 0);
  const stored = toMessageJson({
    id: 'id-1', target: 'default', username: 'u', message: 'm', scheduledAt: base, dueAt: base, status: 'scheduled', attempts: 0,
    version: 1, idempotencyKey: null, createdAt: base, updatedAt: base, deliveredAt: null, lastError: null,
    leaseOwner: null, leaseExpiresAt: null, deliverBy: null,
  });

  it('reads what the dispatcher writes, through JSON', () => {
    const wire = JSON.parse(JSON.stringify({ items: [stored], nextCursor: 'c' })) as unknown;
    assert.deepEqual(readMessagePage(wire), { items: [stored], nextCursor: 'c' });
    assert.deepEqual(readMessage(JSON.parse(JSON.stringify(stored))), stored);
    assert.deepEqual(readMessagePage({ items: [] }), { items: [], nextCursor: null }, 'a missing cursor is the last page');
  });

  it('refuses shapes that are not messages instead of passing undefined fields on', () => {
    assert.equal(readMessage({ ...stored, status: 'lost' }), undefined);
    assert.equal(readMessage({ ...stored, scheduledAt: 12 }), undefined);
    assert.equal(readMessage('<html>'), undefined);
    assert.equal(readMessagePage({ items: [stored, { id: 'x' }] }), undefined, 'one bad item spoils the page');
    assert.equal(readMessagePage({ items: [stored], nextCursor: 5 }), undefined);
    assert.equal(readMessagePage([stored]), undefined);
  });

  it('reads an error answer, keeping only string fields', () => {
    assert.deepEqual(readError({ error: { code: 'conflict', message: 'already delivered', status: 'delivered', field: 7 } }), { code: 'conflict', message: 'already delivered', status: 'delivered' });
    assert.deepEqual(readError('Bad Gateway'), {});
    assert.deepEqual(readError({ error: 'nope' }), {});
    assert.deepEqual(readError(null), {});
  });
});
