import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Cron } from 'croner';
import { planSchedule } from '../src/dispatcher/schedules.ts';
import type { StoredSchedule } from '../src/dispatcher/store.ts';
import {
  DEFAULT_DST_POLICY, DST_GAP_POLICIES, DST_OVERLAP_POLICIES, lastOccurrencesBefore, nextOccurrence, nextOccurrences,
  previousOccurrence, searchWork, type DstPolicy, type Occurrence, type Recurrence,
} from '../src/protocol/recurrence.ts';
import { timeZoneOffset } from '../src/protocol/time.ts';

/**
 * The occurrence search's cost and its answers near DST transitions. The
 * search jumps across a transition in a few croner calls instead of walking
 * every match within the transition's span; `reference` below is the walk it
 * replaced (the previous nextCron, without its match budget), and the new
 * search must give exactly its answers, notes included, for every policy in
 * the zones the feature names (and Antarctica/Troll's two-hour shift,
 * Santiago's midnight one). Work is counted in searchWork (croner calls,
 * steps), never timed.
 */

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const Z = (text: string) => Date.parse(text);

function rule(cron: string, timeZone: string, dstPolicy: DstPolicy = DEFAULT_DST_POLICY): Recurrence {
  return { cron, everyMs: null, timeZone, startAt: null, endAt: null, dstPolicy, createdAt: 0 };
}

// ---- the walk this search replaced (src/protocol/recurrence.ts before), with no budget ----

function referenceInstants(wall: number, zone: string): { instants: number[]; shifted?: number } {
  const before = timeZoneOffset(wall - DAY, zone);
  const after = timeZoneOffset(wall + DAY, zone);
  if (before === after && timeZoneOffset(wall - before, zone) === before) return { instants: [wall - before] };
  const instants = [...new Set([wall - before, wall - after])].filter((i) => timeZoneOffset(i, zone) === wall - i).sort((a, b) => a - b);
  return instants.length > 0 ? { instants } : { instants: [], shifted: wall - before };
}

function referenceOfWall(wall: number, zone: string, policy: DstPolicy): Occurrence[] {
  const { instants, shifted } = referenceInstants(wall, zone);
  if (instants.length === 1) return [{ at: instants[0]! }];
  if (instants.length === 0) return policy.gap === 'shift' ? [{ at: shifted!, note: 'gap-shifted' }] : [];
  const [first, second] = instants as [number, number];
  if (policy.overlap === 'first') return [{ at: first, note: 'overlap-first' }];
  if (policy.overlap === 'last') return [{ at: second, note: 'overlap-second' }];
  return [{ at: first, note: 'overlap-first' }, { at: second, note: 'overlap-second' }];
}

function reference(r: Recurrence, after: number): Occurrence | undefined {
  const cron = new Cron(r.cron!, { utcOffset: 0, paused: true });
  const zone = r.timeZone;
  const offsets = [timeZoneOffset(after - DAY, zone), timeZoneOffset(after, zone), timeZoneOffset(after + DAY, zone)];
  const span = Math.max(...offsets) - Math.min(...offsets);
  let cursor = after + timeZoneOffset(after, zone) - span;
  let best: Occurrence | undefined;
  for (;;) {
    const match = cron.nextRun(new Date(cursor));
    if (match === null) return best;
    const wall = match.getTime();
    if (best !== undefined && wall - Math.max(timeZoneOffset(wall - DAY, zone), timeZoneOffset(wall + DAY, zone)) > best.at) return best;
    for (const o of referenceOfWall(wall, zone, r.dstPolicy)) {
      if (o.at > after && (best === undefined || o.at < best.at)) best = o;
    }
    if (best !== undefined && span === 0) return best;
    cursor = wall;
  }
}

/** The 2026 transitions of a zone: the first instant of each new offset, to the second. */
function transitions2026(zone: string): number[] {
  const found: number[] = [];
  for (let day = Z('2026-01-01T00:00:00Z'); day < Z('2027-01-01T00:00:00Z'); day += DAY) {
    if (timeZoneOffset(day, zone) === timeZoneOffset(day + DAY, zone)) continue;
    let [lo, hi] = [day, day + DAY];
    while (hi - lo > SECOND) {
      const mid = lo + Math.floor((hi - lo) / 2 / SECOND) * SECOND;
      if (timeZoneOffset(mid, zone) === timeZoneOffset(day, zone)) lo = mid;
      else hi = mid;
    }
    found.push(hi);
  }
  return found;
}

const POLICIES: DstPolicy[] = DST_GAP_POLICIES.flatMap((gap) => DST_OVERLAP_POLICIES.map((overlap) => ({ gap, overlap })));
const ZONES = ['America/New_York', 'Europe/Berlin', 'Australia/Lord_Howe', 'Australia/Sydney', 'Asia/Kolkata', 'Antarctica/Troll', 'America/Santiago'];
/** Dense rules are compared over hours around a transition, daily ones over days. */
const RULES: { cron: string; window: number; zones?: string[]; policies?: DstPolicy[] }[] = [
  { cron: '0 */5 * * * *', window: 3 * HOUR },
  // (Troll's two hours are left to the coarser rules: the old walk took ~240 calls a minutely step there)
  // and to three policies that between them take every branch (each gap and overlap choice once)
  {
    cron: '* * * * *', window: 70 * MINUTE, zones: ZONES.filter((zone) => zone !== 'Antarctica/Troll'),
    policies: [{ gap: 'shift', overlap: 'first' }, { gap: 'skip', overlap: 'last' }, { gap: 'shift', overlap: 'both' }],
  },
  { cron: '*/15 * * * *', window: 6 * HOUR },
  { cron: '10,35 * * * *', window: 6 * HOUR },
  { cron: '30 2 * * *', window: 5 * DAY },
  { cron: '45 1 * * *', window: 5 * DAY },
  { cron: '15 2 * * *', window: 5 * DAY },
  { cron: '0 0 * * *', window: 5 * DAY },
  { cron: '0 30 0-3 * * *', window: 5 * DAY },
];

describe('the occurrence search near DST transitions', () => {
  it('gives exactly the answers of the walk it replaced, notes included, for every policy, zone and rule', () => {
    let compared = 0;
    for (const zone of ZONES) {
      // Kolkata has none: compare around two ordinary instants
      const around = transitions2026(zone);
      for (const t of around.length > 0 ? around : [Z('2026-03-29T01:00:00Z'), Z('2026-10-25T01:00:00Z')]) {
        for (const { cron, window, zones, policies } of RULES) {
          if (zones && !zones.includes(zone)) continue;
          for (const policy of policies ?? POLICIES) {
            const r = rule(cron, zone, policy);
            const label = `${cron} in ${zone} around ${new Date(t).toISOString()}, ${policy.gap}/${policy.overlap}`;
            // walking from occurrence to occurrence, from more than a day before (the search's fast path) ...
            const start = t - window;
            let expected = reference(r, start);
            let actual = nextOccurrence(r, start);
            while (expected !== undefined && expected.at < t + window) {
              assert.deepEqual(actual, expected, label);
              compared++;
              expected = reference(r, expected.at);
              actual = nextOccurrence(r, actual!.at);
            }
            // ... and from instants that are not occurrences, every 17m13s
            for (let after = t - 2 * HOUR - 7 * SECOND; after < t + 2 * HOUR; after += 17 * MINUTE + 13 * SECOND) {
              assert.deepEqual(nextOccurrence(r, after), reference(r, after), `${label}, after ${new Date(after).toISOString()}`);
              compared++;
            }
          }
        }
      }
    }
    assert.ok(compared > 20_000, `compared ${compared}`);
  });

  it('searching backwards finds the same occurrences as going forward', () => {
    for (const zone of ZONES) {
      for (const t of transitions2026(zone)) {
        for (const { cron, window } of RULES) {
          for (const policy of POLICIES) {
            const r = rule(cron, zone, policy);
            const forward: Occurrence[] = [];
            for (let o = nextOccurrence(r, t - window - 1); o !== undefined && o.at < t + window; o = nextOccurrence(r, o.at)) forward.push(o);
            const backward = lastOccurrencesBefore(r, t - window, t + window, forward.length + 5);
            assert.deepEqual(backward, forward, `${cron} in ${zone} around ${new Date(t).toISOString()}, ${policy.gap}/${policy.overlap}`);
          }
        }
      }
    }
  });

  it('costs a few croner calls a step across a transition, whatever the rule (was ~120 a minutely step, ~7,200 a per-second one)', () => {
    for (const zone of ['America/New_York', 'Australia/Lord_Howe', 'Antarctica/Troll']) {
      for (const t of transitions2026(zone)) {
        for (const cron of ['* * * * * *', '* * * * *']) {
          for (const policy of POLICIES) {
            const r = rule(cron, zone, policy);
            let most = 0;
            let steps = 0;
            for (let after = t - 3 * HOUR; after < t + 3 * HOUR; after += 61 * SECOND) {
              for (const search of [nextOccurrence, previousOccurrence]) {
                const before = { ...searchWork };
                assert.ok(search(r, after) !== undefined);
                most = Math.max(most, searchWork.matches - before.matches);
                steps = Math.max(steps, searchWork.steps - before.steps);
              }
            }
            // one croner call a step away from a transition; at most three (before it, the gap, after it) across one
            assert.ok(most <= 3, `${cron} in ${zone}: ${most} croner calls for one step`);
            assert.ok(steps <= 4, `${cron} in ${zone}: ${steps} search steps`);
          }
        }
      }
    }
  });

  it('away from a transition a step is one croner call and three offset lookups (seven when the match is a day or more away)', () => {
    for (const [cron, offsets] of [['* * * * * *', 3], ['* * * * *', 3], ['0 9 * * MON-FRI', 3], ['0 9 1 * *', 7]] as const) {
      const r = rule(cron, 'Europe/Berlin');
      for (const search of [nextOccurrence, previousOccurrence]) {
        const before = { ...searchWork };
        assert.ok(search(r, Z('2026-06-10T12:00:00Z')) !== undefined);
        assert.deepEqual({ matches: searchWork.matches - before.matches, offsets: searchWork.offsets - before.offsets, steps: searchWork.steps - before.steps },
          { matches: 1, offsets, steps: 1 }, `${cron}, ${search.name}`);
      }
    }
  });
});

describe('a per-second rule in Antarctica/Troll (a two-hour shift) does not end at a transition', () => {
  // +00 to +02 at 2026-03-29T01:00Z, back at 2026-10-25T01:00Z
  const t = { spring: Z('2026-03-29T01:00:00Z'), fall: Z('2026-10-25T01:00:00Z') };
  const seconds = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i * SECOND);
  function schedule(policy: DstPolicy, nextFireAt: number): StoredSchedule {
    return {
      id: '018f0000-0000-7000-8000-000000000000', target: 'default', username: 'u', message: 'm', cron: '* * * * * *', everyMs: null, timeZone: 'Antarctica/Troll',
      startAt: null, endAt: null, maxOccurrences: null, dstGap: policy.gap, dstOverlap: policy.overlap, catchUp: 'latest', catchUpMax: 100,
      paused: false, idempotencyKey: null, nextFireAt, lastFireAt: null, occurrences: 0, version: 1, createdAt: nextFireAt - DAY, updatedAt: nextFireAt - DAY,
    };
  }

  it('spring forward (+00 to +02 at 01:00Z): every second fires, for each policy, and a materialised schedule goes on', () => {
    for (const policy of POLICIES) {
      const r = rule('* * * * * *', 'Antarctica/Troll', policy);
      // the gap's shifted times are the real seconds after it: once each
      assert.deepEqual(nextOccurrences(r, t.spring - 10 * SECOND, 20).map((o) => o.at), seconds(t.spring - 9 * SECOND, 20), `${policy.gap}/${policy.overlap}`);
      const plan = planSchedule(schedule(policy, t.spring - 2 * SECOND), t.spring - 2 * SECOND, t.spring + 3 * SECOND, 60_000);
      assert.deepEqual(plan.messages.map((m) => m.scheduledAt), seconds(t.spring - 2 * SECOND, 6));
      assert.equal(plan.nextFireAt, t.spring + 4 * SECOND);
    }
  });

  it('fall back (+02 to +00 at 01:00Z, 01:00-03:00 twice): first, last and both, and a materialised schedule goes on', () => {
    const expected: Record<DstPolicy['overlap'], { next: number[]; planned: number[]; nextFireAt: number }> = {
      // the repeated two hours once, on their first pass: then 03:00 local
      first: { next: [...seconds(t.fall - 9 * SECOND, 9), ...seconds(t.fall + 2 * HOUR, 11)], planned: seconds(t.fall - 2 * SECOND, 2), nextFireAt: t.fall + 2 * HOUR },
      // on their second pass: the first pass (from 23:00Z) fires nothing
      last: { next: seconds(t.fall, 20), planned: seconds(t.fall, 4), nextFireAt: t.fall + 4 * SECOND },
      both: { next: seconds(t.fall - 9 * SECOND, 20), planned: seconds(t.fall - 2 * SECOND, 6), nextFireAt: t.fall + 4 * SECOND },
    };
    for (const policy of POLICIES) {
      const r = rule('* * * * * *', 'Antarctica/Troll', policy);
      const want = expected[policy.overlap];
      assert.deepEqual(nextOccurrences(r, t.fall - 10 * SECOND, 20).map((o) => o.at), want.next, `${policy.gap}/${policy.overlap}`);
      const plan = planSchedule(schedule(policy, t.fall - 2 * SECOND), t.fall - 2 * SECOND, t.fall + 3 * SECOND, 60_000);
      assert.deepEqual(plan.messages.map((m) => m.scheduledAt), want.planned, `${policy.gap}/${policy.overlap}`);
      assert.equal(plan.nextFireAt, want.nextFireAt, `${policy.gap}/${policy.overlap}`);
    }
  });
});

describe('catch-up after 30 days down, for a per-second rule', () => {
  const now = Z('2026-11-01T06:30:00Z');
  const missedAfter = 60_000;
  const cutoff = now - missedAfter;
  const down = 30 * DAY;

  function schedule(overrides: Partial<StoredSchedule>): StoredSchedule {
    return {
      id: '018f0000-0000-7000-8000-000000000001', target: 'default', username: 'u', message: 'm', cron: '* * * * * *', everyMs: null, timeZone: 'UTC',
      startAt: null, endAt: null, maxOccurrences: null, dstGap: 'shift', dstOverlap: 'first', catchUp: 'latest', catchUpMax: 100,
      paused: false, idempotencyKey: null, nextFireAt: now - down, lastFireAt: now - down - SECOND, occurrences: 0, version: 1,
      createdAt: now - 40 * DAY, updatedAt: now - 40 * DAY, ...overrides,
    };
  }

  /** What the catch-up posts, worked out the long way: every occurrence from the first missed one forward, the last `keep` kept. */
  function walkedForward(s: StoredSchedule, keep: number): number[] {
    const r = ruleOf(s);
    // from an hour before the cutoff (the walk from 30 days back would be 2.6 million steps; a second's rule has thousands of occurrences in that hour)
    return occurrencesBetweenForTest(r, cutoff - HOUR, cutoff).slice(-keep);
  }

  for (const [catchUp, catchUpMax, keep] of [['latest', 100, 1], ['all', 100, 100], ['all', 1000, 1000]] as const) {
    for (const [timeZone, dstOverlap] of [['UTC', 'first'], ['America/New_York', 'first'], ['America/New_York', 'both']] as const) {
      it(`${catchUp} (catchUpMax ${catchUpMax}) in ${timeZone}${timeZone === 'UTC' ? '' : ` (overlap ${dstOverlap}, the outage ending in the repeated hour)`}: the last ${keep} missed, found in about as many steps`, () => {
        const s = schedule({ catchUp, catchUpMax, timeZone, dstOverlap });
        const before = { ...searchWork };
        const plan = planSchedule(s, now, now + 5 * SECOND, missedAfter);
        const matches = searchWork.matches - before.matches;
        const steps = searchWork.steps - before.steps;
        const missed = plan.messages.filter((m) => m.scheduledAt < cutoff).map((m) => m.scheduledAt);
        assert.deepEqual(missed, walkedForward(s, keep));
        // then what is due now, as without an outage: the cutoff to now + the lead
        const current = plan.messages.filter((m) => m.scheduledAt >= cutoff).map((m) => m.scheduledAt);
        assert.equal(current[0], occurrencesBetweenForTest(ruleOf(s), cutoff - 1, cutoff + MINUTE)[0]);
        // the missed ones, the ~65 current ones and the next fire time, a few calls each: not 2.6 million
        assert.ok(steps <= 3 * (keep + 70), `${steps} steps`);
        assert.ok(matches <= 3 * (keep + 70), `${matches} croner calls`);
      });
    }
  }
});

function ruleOf(s: StoredSchedule): Recurrence {
  return { cron: s.cron, everyMs: s.everyMs, timeZone: s.timeZone, startAt: s.startAt, endAt: s.endAt, dstPolicy: { gap: s.dstGap, overlap: s.dstOverlap }, createdAt: s.createdAt };
}

function occurrencesBetweenForTest(r: Recurrence, after: number, until: number): number[] {
  const found: number[] = [];
  for (let o = nextOccurrence(r, after); o !== undefined && o.at < until; o = nextOccurrence(r, o.at)) found.push(o.at);
  return found;
}
