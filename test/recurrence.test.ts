import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_DST_POLICY, formatEvery, lastOccurrencesBefore, localTime, nextOccurrences, parseEvery, searchWork, validateCron,
  type DstPolicy, type Recurrence,
} from '../src/protocol/recurrence.ts';
import { ValidationError } from '../src/errors.ts';

/**
 * The rule engine across real DST transitions of 2026 (the tz data Node's ICU
 * ships): croner matches the fields in floating time, and the mapping to
 * instants with the gap/overlap policies is ours, so these check every
 * policy on each kind of transition, including Lord Howe's 30-minute one and
 * a southern-hemisphere zone whose DST runs from October to April.
 */

const Z = (text: string) => Date.parse(text);
const iso = (instants: number[]) => instants.map((at) => new Date(at).toISOString().replace('.000Z', 'Z'));

function rule(overrides: Partial<Recurrence>): Recurrence {
  return { cron: null, everyMs: null, timeZone: 'UTC', startAt: null, endAt: null, dstPolicy: { ...DEFAULT_DST_POLICY }, createdAt: Z('2026-01-01T00:00:00Z'), ...overrides };
}

function fires(cron: string, timeZone: string, after: string, count: number, dstPolicy: Partial<DstPolicy> = {}): string[] {
  const r = rule({ cron, timeZone, dstPolicy: { ...DEFAULT_DST_POLICY, ...dstPolicy } });
  return iso(nextOccurrences(r, Z(after), count).map((o) => o.at));
}

describe('cron rules across DST transitions', () => {
  describe('America/New_York (gap 02:00-03:00 on 2026-03-08, overlap 01:00-02:00 on 2026-11-01)', () => {
    it('gap, shift (default): 02:30 that day is 03:30 EDT', () => {
      assert.deepEqual(fires('30 2 * * *', 'America/New_York', '2026-03-07T00:00:00Z', 3),
        ['2026-03-07T07:30:00Z', '2026-03-08T07:30:00Z', '2026-03-09T06:30:00Z']);
    });
    it('gap, skip: no occurrence that day', () => {
      assert.deepEqual(fires('30 2 * * *', 'America/New_York', '2026-03-07T00:00:00Z', 2, { gap: 'skip' }),
        ['2026-03-07T07:30:00Z', '2026-03-09T06:30:00Z']);
    });
    it('overlap, first (default): 01:30 EDT only', () => {
      assert.deepEqual(fires('30 1 * * *', 'America/New_York', '2026-10-31T00:00:00Z', 3),
        ['2026-10-31T05:30:00Z', '2026-11-01T05:30:00Z', '2026-11-02T06:30:00Z']);
    });
    it('overlap, last: 01:30 EST only', () => {
      assert.deepEqual(fires('30 1 * * *', 'America/New_York', '2026-10-31T00:00:00Z', 3, { overlap: 'last' }),
        ['2026-10-31T05:30:00Z', '2026-11-01T06:30:00Z', '2026-11-02T06:30:00Z']);
    });
    it('overlap, both: 01:30 EDT and 01:30 EST', () => {
      assert.deepEqual(fires('30 1 * * *', 'America/New_York', '2026-10-31T00:00:00Z', 4, { overlap: 'both' }),
        ['2026-10-31T05:30:00Z', '2026-11-01T05:30:00Z', '2026-11-01T06:30:00Z', '2026-11-02T06:30:00Z']);
    });
    it('a sub-hourly rule fires once per real half hour across the gap (shifted times never double an instant)', () => {
      assert.deepEqual(fires('*/30 * * * *', 'America/New_York', '2026-03-08T05:59:00Z', 5),
        ['2026-03-08T06:00:00Z', '2026-03-08T06:30:00Z', '2026-03-08T07:00:00Z', '2026-03-08T07:30:00Z', '2026-03-08T08:00:00Z']);
      assert.deepEqual(fires('*/30 * * * *', 'America/New_York', '2026-03-08T05:59:00Z', 4, { gap: 'skip' }),
        ['2026-03-08T06:00:00Z', '2026-03-08T06:30:00Z', '2026-03-08T07:00:00Z', '2026-03-08T07:30:00Z']);
    });
    it('a sub-hourly rule across the overlap: first leaves the repeated hour out, both fires through it in order', () => {
      assert.deepEqual(fires('*/30 * * * *', 'America/New_York', '2026-11-01T04:30:00Z', 3),
        ['2026-11-01T05:00:00Z', '2026-11-01T05:30:00Z', '2026-11-01T07:00:00Z']);
      assert.deepEqual(fires('*/30 * * * *', 'America/New_York', '2026-11-01T04:30:00Z', 5, { overlap: 'both' }),
        ['2026-11-01T05:00:00Z', '2026-11-01T05:30:00Z', '2026-11-01T06:00:00Z', '2026-11-01T06:30:00Z', '2026-11-01T07:00:00Z']);
    });
    it('a time matched both in the gap and after it fires once', () => {
      assert.deepEqual(fires('30 2,3 8 3 *', 'America/New_York', '2026-03-08T00:00:00Z', 2),
        ['2026-03-08T07:30:00Z', '2027-03-08T07:30:00Z']);
    });
  });

  describe('Europe/Berlin (gap 02:00-03:00 on 2026-03-29, overlap 02:00-03:00 on 2026-10-25)', () => {
    it('gap: shift to 03:30 CEST, or skip', () => {
      assert.deepEqual(fires('30 2 * * *', 'Europe/Berlin', '2026-03-28T12:00:00Z', 2), ['2026-03-29T01:30:00Z', '2026-03-30T00:30:00Z']);
      assert.deepEqual(fires('30 2 * * *', 'Europe/Berlin', '2026-03-28T12:00:00Z', 1, { gap: 'skip' }), ['2026-03-30T00:30:00Z']);
    });
    it('overlap: first, last, both', () => {
      assert.deepEqual(fires('30 2 * * *', 'Europe/Berlin', '2026-10-24T12:00:00Z', 2), ['2026-10-25T00:30:00Z', '2026-10-26T01:30:00Z']);
      assert.deepEqual(fires('30 2 * * *', 'Europe/Berlin', '2026-10-24T12:00:00Z', 2, { overlap: 'last' }), ['2026-10-25T01:30:00Z', '2026-10-26T01:30:00Z']);
      assert.deepEqual(fires('30 2 * * *', 'Europe/Berlin', '2026-10-24T12:00:00Z', 3, { overlap: 'both' }),
        ['2026-10-25T00:30:00Z', '2026-10-25T01:30:00Z', '2026-10-26T01:30:00Z']);
    });
  });

  describe('Australia/Lord_Howe (30-minute changes: gap 02:00-02:30 on 2026-10-04, overlap 01:30-02:00 on 2026-04-05)', () => {
    it('gap: 02:15 shifts by 30 minutes to 02:45 (+11:00), or is skipped', () => {
      assert.deepEqual(fires('15 2 * * *', 'Australia/Lord_Howe', '2026-10-02T12:00:00Z', 3),
        ['2026-10-02T15:45:00Z', '2026-10-03T15:45:00Z', '2026-10-04T15:15:00Z']);
      assert.deepEqual(fires('15 2 * * *', 'Australia/Lord_Howe', '2026-10-02T12:00:00Z', 2, { gap: 'skip' }),
        ['2026-10-02T15:45:00Z', '2026-10-04T15:15:00Z']);
    });
    it('overlap: 01:45 at +11:00 and 30 minutes later at +10:30', () => {
      assert.deepEqual(fires('45 1 * * *', 'Australia/Lord_Howe', '2026-04-04T00:00:00Z', 2), ['2026-04-04T14:45:00Z', '2026-04-05T15:15:00Z']);
      assert.deepEqual(fires('45 1 * * *', 'Australia/Lord_Howe', '2026-04-04T00:00:00Z', 1, { overlap: 'last' }), ['2026-04-04T15:15:00Z']);
      assert.deepEqual(fires('45 1 * * *', 'Australia/Lord_Howe', '2026-04-04T00:00:00Z', 2, { overlap: 'both' }), ['2026-04-04T14:45:00Z', '2026-04-04T15:15:00Z']);
    });
  });

  describe('Australia/Sydney (southern hemisphere: overlap 02:00-03:00 on 2026-04-05, gap 02:00-03:00 on 2026-10-04)', () => {
    it('overlap in April: first, both', () => {
      assert.deepEqual(fires('30 2 * * *', 'Australia/Sydney', '2026-04-04T00:00:00Z', 2), ['2026-04-04T15:30:00Z', '2026-04-05T16:30:00Z']);
      assert.deepEqual(fires('30 2 * * *', 'Australia/Sydney', '2026-04-04T00:00:00Z', 2, { overlap: 'both' }), ['2026-04-04T15:30:00Z', '2026-04-04T16:30:00Z']);
    });
    it('gap in October: shift to 03:30 AEDT, or skip', () => {
      assert.deepEqual(fires('30 2 * * *', 'Australia/Sydney', '2026-10-02T12:00:00Z', 3),
        ['2026-10-02T16:30:00Z', '2026-10-03T16:30:00Z', '2026-10-04T15:30:00Z']);
      assert.deepEqual(fires('30 2 * * *', 'Australia/Sydney', '2026-10-02T12:00:00Z', 2, { gap: 'skip' }),
        ['2026-10-02T16:30:00Z', '2026-10-04T15:30:00Z']);
    });
  });

  describe('Asia/Kolkata (+05:30 all year, no DST)', () => {
    it('fires at 09:00 IST = 03:30Z every day, whatever the policy', () => {
      for (const policy of [{}, { gap: 'skip', overlap: 'both' }] as const) {
        assert.deepEqual(fires('0 9 * * *', 'Asia/Kolkata', '2026-03-27T00:00:00Z', 3, policy),
          ['2026-03-27T03:30:00Z', '2026-03-28T03:30:00Z', '2026-03-29T03:30:00Z']);
      }
    });
  });

  it('does not depend on the host time zone (croner runs in floating time)', () => {
    const saved = process.env.TZ;
    try {
      for (const tz of ['Australia/Sydney', 'America/New_York', 'UTC']) {
        process.env.TZ = tz;
        assert.deepEqual(fires('0 * * * *', 'UTC', '2025-10-05T01:30:00Z', 3), ['2025-10-05T02:00:00Z', '2025-10-05T03:00:00Z', '2025-10-05T04:00:00Z']);
        assert.deepEqual(fires('30 2 * * *', 'America/New_York', '2026-03-07T00:00:00Z', 2), ['2026-03-07T07:30:00Z', '2026-03-08T07:30:00Z']);
      }
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });

  it('takes a seconds field, weekday names, and ORs day of month with day of week as Vixie cron does', () => {
    assert.deepEqual(fires('*/20 * * * * *', 'UTC', '2026-01-01T00:00:00Z', 3), ['2026-01-01T00:00:20Z', '2026-01-01T00:00:40Z', '2026-01-01T00:01:00Z']);
    assert.deepEqual(fires('0 9 * * MON-FRI', 'Europe/Berlin', '2026-01-02T12:00:00Z', 2), ['2026-01-05T08:00:00Z', '2026-01-06T08:00:00Z']);
    // the 1st of the month OR a Monday: Thu 1st, then Mon 5th
    assert.deepEqual(fires('0 0 1 * MON', 'UTC', '2026-01-01T00:00:00Z', 2), ['2026-01-05T00:00:00Z', '2026-01-12T00:00:00Z']);
    assert.deepEqual(fires('0 0 1 * MON', 'UTC', '2025-12-31T00:00:00Z', 2), ['2026-01-01T00:00:00Z', '2026-01-05T00:00:00Z']);
  });

  it('honours startAt (inclusive) and endAt (inclusive)', () => {
    const r = rule({ cron: '0 12 * * *', startAt: Z('2026-05-02T12:00:00Z'), endAt: Z('2026-05-04T12:00:00Z') });
    assert.deepEqual(iso(nextOccurrences(r, Z('2026-01-01T00:00:00Z'), 10).map((o) => o.at)),
      ['2026-05-02T12:00:00Z', '2026-05-03T12:00:00Z', '2026-05-04T12:00:00Z']);
  });
});

describe('every rules count elapsed time', () => {
  it('every 1d across the New York gap stays 24 hours apart (09:00 EST, then 10:00 EDT on the wall clock)', () => {
    const r = rule({ everyMs: 86_400_000, timeZone: 'America/New_York', startAt: Z('2026-03-07T14:00:00Z') });
    const found = nextOccurrences(r, 0, 3).map((o) => localTime(o.at, 'America/New_York'));
    assert.deepEqual(found.map((t) => [t.local, t.utcOffset]), [['2026-03-07 09:00:00', '-05:00'], ['2026-03-08 10:00:00', '-04:00'], ['2026-03-09 10:00:00', '-04:00']]);
  });
  it('without startAt, the first occurrence is one interval after creation', () => {
    const r = rule({ everyMs: 15 * 60_000, createdAt: Z('2026-01-01T00:00:07Z') });
    assert.deepEqual(iso(nextOccurrences(r, Z('2026-01-01T00:00:07Z'), 2).map((o) => o.at)), ['2026-01-01T00:15:07Z', '2026-01-01T00:30:07Z']);
  });
  it('finds the last occurrences before an instant without walking from the start (a one-second rule, a year later)', () => {
    const r = rule({ everyMs: 1000, startAt: Z('2026-01-01T00:00:00Z') });
    assert.deepEqual(iso(lastOccurrencesBefore(r, Z('2026-01-01T00:00:00Z'), Z('2027-01-01T00:00:00Z'), 2).map((o) => o.at)),
      ['2026-12-31T23:59:58Z', '2026-12-31T23:59:59Z']);
    const cron = rule({ cron: '*/10 * * * * *' });
    const before = searchWork.steps;
    assert.deepEqual(iso(lastOccurrencesBefore(cron, Z('2026-01-01T00:00:00Z'), Z('2026-06-01T00:00:00Z'), 1).map((o) => o.at)), ['2026-05-31T23:59:50Z']);
    assert.ok(searchWork.steps - before <= 2, `${searchWork.steps - before} steps`);
  });
});

describe('parsing', () => {
  it('reads durations with units, and writes them back shortest', () => {
    assert.equal(parseEvery('15m'), 900_000);
    assert.equal(parseEvery('1d'), 86_400_000);
    assert.equal(parseEvery('1h30m'), 5_400_000);
    assert.equal(parseEvery('90s'), 90_000);
    for (const bad of ['', '15', 'm', '1.5h', '-1m', '1m1h']) assert.equal(parseEvery(bad), undefined, bad);
    assert.equal(formatEvery(5_400_000), '1h30m');
    assert.equal(formatEvery(90_000), '1m30s');
  });
  it('refuses a bad cron pattern with a ValidationError naming the field', () => {
    for (const bad of ['* * * *', '61 * * * *', '0 0 31 2 *', 'every day']) {
      assert.throws(() => validateCron(bad), (err: unknown) => err instanceof ValidationError && err.field === 'cron', bad);
    }
    assert.equal(validateCron('  0  9 * *   MON-FRI '), '0 9 * * MON-FRI');
  });
  it('presents an instant with its local time and offset', () => {
    assert.deepEqual(localTime(Z('2026-10-04T15:15:00Z'), 'Australia/Lord_Howe'), { at: '2026-10-04T15:15:00.000Z', local: '2026-10-05 02:15:00', utcOffset: '+11:00' });
    assert.deepEqual(localTime(Z('2026-03-27T03:30:00Z'), 'Asia/Kolkata').utcOffset, '+05:30');
  });
});
