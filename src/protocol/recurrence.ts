import { Cron } from 'croner';
import { ValidationError } from '../errors.ts';
import { timeZoneOffset } from './time.ts';

/**
 * Recurrence rules: when a schedule fires. Shared by the dispatcher (which
 * materialises occurrences), the main server (which previews them on its
 * page) and the CLI.
 *
 * Two kinds of rule:
 * - `cron`: five fields (minute hour day-of-month month day-of-week), or six
 *   with a leading seconds field, matched against the wall clock of the
 *   schedule's time zone. Day of month and day of week are ORed when both are
 *   restricted, as in Vixie cron and POSIX.
 * - `every`: a fixed duration of elapsed time from the first occurrence
 *   (startAt, else one interval after creation). It never looks at a wall
 *   clock: `every 1d` fires 24 hours apart, so across a DST change it fires
 *   an hour earlier or later on the local clock. Use a cron rule for "every
 *   day at 09:00".
 *
 * How wall-clock times become instants: croner (a well-kept cron library)
 * only matches the fields, in floating time (utcOffset 0: a wall-clock time
 * written as if it were UTC, so the host's zone and croner's own DST handling
 * never come into it). Each match is then mapped to instants here, with the
 * zone's offsets read from Intl, and the DST policies are ours:
 * - a wall-clock time the zone skips (spring forward, the gap):
 *   `shift` (default): moved forward by the length of the gap, as a one-shot
 *   time is (02:30 on a New York spring-forward day is 03:30 EDT);
 *   `skip`: no occurrence that day.
 * - a wall-clock time that happens twice (fall back, the overlap):
 *   `first` (default): the earlier one only (01:30 EDT); `last`: the later
 *   one only (01:30 EST); `both`: each of them.
 * The occurrences are a set of instants: a shifted time that lands on an
 * instant the rule matches anyway fires once, so `*\/15 * * * *` across a
 * gap fires once per real quarter hour, never twice at 03:00.
 */

export const DST_GAP_POLICIES = ['shift', 'skip'] as const;
export const DST_OVERLAP_POLICIES = ['first', 'last', 'both'] as const;
export const CATCH_UP_POLICIES = ['latest', 'all', 'none'] as const;
export type DstGapPolicy = (typeof DST_GAP_POLICIES)[number];
export type DstOverlapPolicy = (typeof DST_OVERLAP_POLICIES)[number];
export type CatchUpPolicy = (typeof CATCH_UP_POLICIES)[number];

export interface DstPolicy {
  gap: DstGapPolicy;
  overlap: DstOverlapPolicy;
}

export const DEFAULT_DST_POLICY: Readonly<DstPolicy> = Object.freeze({ gap: 'shift', overlap: 'first' });
/** One post for what was missed: a reminder that was due during an outage still goes out, once. */
export const DEFAULT_CATCH_UP: CatchUpPolicy = 'latest';
export const DEFAULT_CATCH_UP_MAX = 100;

export const RECURRENCE_LIMITS = {
  everyMinMs: 1000,
  everyMaxMs: 3660 * 86_400_000,
  catchUpMax: 1000,
  previewMax: 100,
  maxOccurrences: 1_000_000_000,
} as const;

/** What decides the instants a schedule fires at. */
export interface Recurrence {
  cron: string | null;
  everyMs: number | null;
  timeZone: string;
  /** Inclusive: nothing fires before it. For `every`, the first occurrence. */
  startAt: number | null;
  /** Inclusive: nothing fires after it. */
  endAt: number | null;
  dstPolicy: DstPolicy;
  /** When the schedule was created: `every` without startAt first fires one interval later. */
  createdAt: number;
}

/** How an occurrence's wall-clock time came about, for previews. */
export type OccurrenceNote = 'gap-shifted' | 'overlap-first' | 'overlap-second';

export interface Occurrence {
  at: number;
  note?: OccurrenceNote;
}

const DAY_MS = 86_400_000;

// ---- durations --------------------------------------------------------------

const EVERY = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/** "15m", "1d", "1h30m", "90s" -> ms; undefined when it is not such a duration. */
export function parseEvery(text: string): number | undefined {
  const trimmed = text.trim().toLowerCase();
  const match = EVERY.exec(trimmed);
  if (!match || trimmed === '') return undefined;
  const [, d, h, m, s] = match;
  return ((Number(d ?? 0) * 24 + Number(h ?? 0)) * 60 + Number(m ?? 0)) * 60_000 + Number(s ?? 0) * 1000;
}

/** The shortest "1d2h3m4s" spelling of a whole number of seconds. */
export function formatEvery(ms: number): string {
  let rest = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  return parts.join('') || '0s';
}

// ---- cron patterns ----------------------------------------------------------

/**
 * Compiled patterns, least recently used first. A Cron object is a few KB and
 * costs tens of µs to build; 100,000 schedules mostly share a few patterns.
 */
const MAX_PATTERNS = 1024;
const patterns = new Map<string, Cron>();

function matcher(pattern: string): Cron {
  let cron = patterns.get(pattern);
  if (cron) {
    patterns.delete(pattern);
    patterns.set(pattern, cron);
    return cron;
  }
  // utcOffset 0: floating time, see the header. paused: never runs anything.
  cron = new Cron(pattern, { utcOffset: 0, paused: true });
  patterns.set(pattern, cron);
  if (patterns.size > MAX_PATTERNS) patterns.delete(patterns.keys().next().value!);
  return cron;
}

/**
 * Checks a cron pattern: five fields, or six with seconds first; croner's own
 * extensions (L, W, #, nicknames such as @daily) are accepted as it reads
 * them. Throws a ValidationError naming `field`; returns the pattern trimmed,
 * its runs of spaces made one.
 */
export function validateCron(text: string, field = 'cron'): string {
  const pattern = text.trim().replace(/\s+/g, ' ');
  const fields = pattern.split(' ').length;
  if (!pattern.startsWith('@') && fields !== 5 && fields !== 6) {
    throw new ValidationError(`${field} must have five fields (minute hour day-of-month month day-of-week), or six with seconds first; got ${fields}: ${JSON.stringify(text)}`, field);
  }
  let cron: Cron;
  try {
    cron = matcher(pattern);
  } catch (err) {
    throw new ValidationError(`${field} is not a valid cron pattern (${(err as Error).message.replace(/^CronPattern: /, '')}): ${JSON.stringify(text)}`, field);
  }
  // the fields can be valid one by one and never meet (February 30th)
  if (cron.nextRun(new Date(Date.UTC(2000, 0, 1))) === null) {
    throw new ValidationError(`${field} never matches a date: ${JSON.stringify(text)}`, field);
  }
  return pattern;
}

// ---- finding occurrences ----------------------------------------------------
//
// The occurrences of a cron rule are a set of instants: every instant whose
// wall-clock time matches (less the pass of an overlap the policy leaves out),
// plus, with gap `shift`, each matching wall-clock time in a gap moved forward
// by the gap's length. nextOccurrence is the least of them after an instant,
// previousOccurrence the greatest before one.
//
// Away from a transition the offset is one number, so the wall clock and the
// instant move together and croner's next (or previous) match is the answer:
// one call. Within a day of a transition the instants split into at most
// three runs, each with a fixed mapping from wall clock to instant: before the
// transition (its old offset), the gap's shifted times, after it (its new
// offset). Each run's first (or last) occurrence is one croner call, so a
// step costs a few calls whatever the rule: not every match in the
// transition's span (3,600 an hour for a per-second rule, 7,200 across
// Antarctica/Troll's two hours).

/** A change of a zone's offset: `at` is the first instant with the new offset. */
interface Transition {
  at: number;
  before: number;
  after: number;
}

/**
 * What the searches did, for tests that bound the work (steps of the search,
 * croner matches asked for, offset lookups). Counted always: a few additions.
 */
export const searchWork = { steps: 0, matches: 0, offsets: 0 };

function offsetAt(instant: number, timeZone: string): number {
  searchWork.offsets++;
  return timeZoneOffset(instant, timeZone);
}

function nextMatch(cron: Cron, wallAsUtc: number): number | undefined {
  searchWork.matches++;
  return cron.nextRun(new Date(wallAsUtc))?.getTime();
}

function previousMatch(cron: Cron, wallAsUtc: number): number | undefined {
  searchWork.matches++;
  return cron.previousRuns(1, new Date(wallAsUtc))[0]?.getTime();
}

/** The last transition found per zone: a per-second rule asks about the same one thousands of times. */
const MAX_TRANSITIONS = 1024;
const transitions = new Map<string, Transition>();

/**
 * The offset at `instant`, and the transition within a day either side of
 * it (undefined when the offset is the same a day before, at and a day after
 * it). Like wallClockToInstant in ./time.ts, it assumes at most one change
 * within a day either side (true of every zone in the tz database today).
 */
function zoneAround(instant: number, timeZone: string): { offset: number; transition: Transition | undefined } {
  const early = offsetAt(instant - DAY_MS, timeZone);
  const offset = offsetAt(instant, timeZone);
  const late = offsetAt(instant + DAY_MS, timeZone);
  if (early === offset && offset === late) return { offset, transition: undefined };
  const known = transitions.get(timeZone);
  if (known !== undefined && Math.abs(known.at - instant) <= DAY_MS && known.before === early && known.after === late) return { offset, transition: known };
  // bisect to the millisecond: ~27 lookups, once per transition and zone thanks to the cache
  let [lo, hi] = early !== offset ? [instant - DAY_MS, instant] : [instant, instant + DAY_MS];
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (offsetAt(mid, timeZone) === early) lo = mid;
    else hi = mid;
  }
  const found = { at: hi, before: early, after: late };
  transitions.delete(timeZone);
  transitions.set(timeZone, found);
  if (transitions.size > MAX_TRANSITIONS) transitions.delete(transitions.keys().next().value!);
  return { offset, transition: found };
}

/**
 * The longest overlap a zone has (Antarctica/Troll's two hours, with room):
 * an instant this close to a transition may be in the first pass of an
 * overlap, so the fast path does not answer for it.
 */
const SETTLED_MS = 3 * 3_600_000;

/**
 * Steps of one search at most. Each step returns or moves past a transition
 * (or a day), so a handful do; more is a bug, and it throws rather than
 * answer "no more occurrences" for a rule that has some.
 */
const MAX_STEPS = 64;

function tooManySteps(what: string, rule: Recurrence, at: number): Error {
  return new Error(`${what} took more than ${MAX_STEPS} steps for ${JSON.stringify(rule.cron)} in ${rule.timeZone} at ${new Date(at).toISOString()}: a bug, please report it`);
}

/** The first occurrence strictly after `after` (epoch ms), or undefined when there is none (endAt passed, a pattern that ends). */
export function nextOccurrence(rule: Recurrence, after: number): Occurrence | undefined {
  const floor = rule.startAt === null ? after : Math.max(after, rule.startAt - 1);
  const found = rule.everyMs !== null ? nextEvery(rule, floor) : nextCron(rule, floor);
  if (found === undefined || (rule.endAt !== null && found.at > rule.endAt)) return undefined;
  return found;
}

/** The last occurrence strictly before `before`, or undefined when there is none (before startAt, the first). */
export function previousOccurrence(rule: Recurrence, before: number): Occurrence | undefined {
  const ceiling = rule.endAt === null ? before : Math.min(before, rule.endAt + 1);
  const found = rule.everyMs !== null ? previousEvery(rule, ceiling) : previousCron(rule, ceiling);
  if (found === undefined || (rule.startAt !== null && found.at < rule.startAt)) return undefined;
  return found;
}

function nextEvery(rule: Recurrence, after: number): Occurrence | undefined {
  const every = rule.everyMs!;
  const anchor = rule.startAt ?? rule.createdAt + every;
  if (after < anchor) return { at: anchor };
  return { at: anchor + (Math.floor((after - anchor) / every) + 1) * every };
}

function previousEvery(rule: Recurrence, before: number): Occurrence | undefined {
  const every = rule.everyMs!;
  const anchor = rule.startAt ?? rule.createdAt + every;
  if (before <= anchor) return undefined;
  return { at: anchor + (Math.ceil((before - anchor) / every) - 1) * every };
}

function nextCron(rule: Recurrence, after: number): Occurrence | undefined {
  const cron = matcher(rule.cron!);
  const zone = rule.timeZone;
  let from = after;
  let { offset, transition: near } = zoneAround(from, zone);
  for (let step = 0; step < MAX_STEPS; step++) {
    searchWork.steps++;
    if (near !== undefined) {
      const result = nextAcross(cron, rule.dstPolicy, from, near);
      if (result !== 'later') return result;
      // nothing within a day past the transition: go on from there, where the offset is settled
      from = near.at + DAY_MS;
      ({ offset, transition: near } = zoneAround(from, zone));
      continue;
    }
    const wall = nextMatch(cron, from + offset);
    if (wall === undefined) return undefined;
    // no transition within a day of `from`: its offset holds that far, and no overlap's first pass begins
    // before SETTLED_MS short of it (a first pass takes a note, and policy `last` leaves it out)
    if (wall - offset <= from + DAY_MS - SETTLED_MS) return { at: wall - offset };
    // further on, other transitions may come between: place the match with the offset there
    const guess = wall - offsetAt(wall - offset, zone);
    const there = zoneAround(guess, zone);
    near = there.transition;
    if (near === undefined) return { at: wall - there.offset };
    // the match is near a transition: search across it from the earliest instant the match can be
    // (no instant before that has a matching wall-clock time after `from`'s)
    from = Math.max(from, wall - Math.max(near.before, near.after) - 1);
  }
  throw tooManySteps('finding the next occurrence', rule, after);
}

function previousCron(rule: Recurrence, before: number): Occurrence | undefined {
  const cron = matcher(rule.cron!);
  const zone = rule.timeZone;
  let until = before;
  let { offset, transition: near } = zoneAround(until, zone);
  for (let step = 0; step < MAX_STEPS; step++) {
    searchWork.steps++;
    if (near !== undefined) {
      const result = previousAcross(cron, rule.dstPolicy, until, near);
      if (result !== 'earlier') return result;
      // nothing within a day before the transition: go on from there (matches fall on whole
      // seconds, so none lies in the 999 ms this skips, and the transition is then more than a day off)
      until = near.at - DAY_MS - 999;
      ({ offset, transition: near } = zoneAround(until, zone));
      continue;
    }
    const wall = previousMatch(cron, until + offset);
    if (wall === undefined) return undefined;
    if (wall - offset >= until - DAY_MS + SETTLED_MS) return { at: wall - offset };
    const guess = wall - offsetAt(wall - offset, zone);
    const there = zoneAround(guess, zone);
    near = there.transition;
    if (near === undefined) return { at: wall - there.offset };
    until = Math.min(until, wall - Math.min(near.before, near.after) + 1);
  }
  throw tooManySteps('finding the previous occurrence', rule, before);
}

/**
 * The instants around transition `t`, as runs with a fixed wall-clock-to-
 * instant mapping: `early` the instants before it (old offset), `shifted` the
 * gap's times moved forward (gap, policy shift), `late` the instants from it
 * on (new offset). An overlap's repeated hour is the end of `early` (its
 * first pass) and the start of `late` (its second): policy `first` leaves the
 * second out, `last` the first.
 */
function runsAround(t: Transition, policy: DstPolicy) {
  const change = t.after - t.before;
  const overlap = change < 0 ? -change : 0;
  const gap = change > 0 ? change : 0;
  return {
    /** Instants of the early run are below this. */
    earlyEnd: overlap > 0 && policy.overlap === 'last' ? t.at - overlap : t.at,
    /** Instants of the late run are at least this. */
    lateStart: overlap > 0 && policy.overlap === 'first' ? t.at + overlap : t.at,
    overlap,
    /** Wall-clock times of the gap, [from, to), when they are shifted. */
    shifted: gap > 0 && policy.gap === 'shift' ? { from: t.at + t.before, to: t.at + t.after } : undefined,
  };
}

function earlyNote(t: Transition, overlap: number, at: number): Occurrence {
  return overlap > 0 && at >= t.at - overlap ? { at, note: 'overlap-first' } : { at };
}

function lateNote(t: Transition, overlap: number, at: number): Occurrence {
  return overlap > 0 && at < t.at + overlap ? { at, note: 'overlap-second' } : { at };
}

/**
 * The least occurrence after `after` (within a day of `t`) around `t`;
 * 'later' when none is within a day past `t` (the offset beyond is not known
 * here), undefined when the pattern matches nothing later.
 */
function nextAcross(cron: Cron, policy: DstPolicy, after: number, t: Transition): Occurrence | 'later' | undefined {
  const runs = runsAround(t, policy);
  if (after < runs.earlyEnd - 1) {
    const wall = nextMatch(cron, after + t.before);
    // the early run comes first: its least occurrence is the answer
    if (wall !== undefined && wall - t.before < runs.earlyEnd) return earlyNote(t, runs.overlap, wall - t.before);
  }
  let best: Occurrence | undefined;
  if (runs.shifted) {
    const wall = nextMatch(cron, Math.max(after + t.before, runs.shifted.from - 1));
    if (wall !== undefined && wall < runs.shifted.to) best = { at: wall - t.before, note: 'gap-shifted' };
  }
  const wall = nextMatch(cron, Math.max(after, runs.lateStart - 1) + t.after);
  if (wall !== undefined) {
    const at = wall - t.after;
    // on a tie the shifted time stays: its wall-clock time is the earlier (a preview says it was shifted)
    if (best === undefined || at < best.at) best = at <= t.at + DAY_MS ? lateNote(t, runs.overlap, at) : undefined;
    if (best === undefined) return 'later';
  }
  // no match after the late run's start: the pattern has ended (unless the gap held the last one)
  return best;
}

/** The greatest occurrence before `before` (within a day of `t`) around `t`; 'earlier' when none is within a day before `t`. */
function previousAcross(cron: Cron, policy: DstPolicy, before: number, t: Transition): Occurrence | 'earlier' | undefined {
  const runs = runsAround(t, policy);
  let best: Occurrence | undefined;
  if (before > runs.lateStart) {
    const wall = previousMatch(cron, before + t.after);
    if (wall !== undefined && wall - t.after >= runs.lateStart) best = lateNote(t, runs.overlap, wall - t.after);
  }
  if (runs.shifted && before > runs.shifted.from - t.before) {
    const wall = previousMatch(cron, Math.min(before + t.before, runs.shifted.to));
    // on a tie the shifted time wins, as going forward
    if (wall !== undefined && wall >= runs.shifted.from && (best === undefined || wall - t.before >= best.at)) best = { at: wall - t.before, note: 'gap-shifted' };
  }
  if (best !== undefined) return best;
  const wall = previousMatch(cron, Math.min(before, runs.earlyEnd) + t.before);
  // no match before the early run's end: nothing earlier at all
  if (wall === undefined) return undefined;
  const at = wall - t.before;
  return at >= t.at - DAY_MS ? earlyNote(t, runs.overlap, at) : 'earlier';
}

/**
 * Occurrences in (after, until], in order, at most `max`. Stops early at the
 * end of the rule.
 */
export function occurrencesBetween(rule: Recurrence, after: number, until: number, max: number): Occurrence[] {
  const found: Occurrence[] = [];
  let cursor = after;
  while (found.length < max) {
    const next = nextOccurrence(rule, cursor);
    if (next === undefined || next.at > until) break;
    found.push(next);
    cursor = next.at;
  }
  return found;
}

/** The first `count` occurrences after `after`. */
export function nextOccurrences(rule: Recurrence, after: number, count: number): Occurrence[] {
  return occurrencesBetween(rule, after, Number.MAX_SAFE_INTEGER, count);
}

/**
 * The last `count` occurrences in [from, before), in order: what a catch-up
 * after an outage needs. Searches backwards from `before`, one step an
 * occurrence, so a one-second rule after a month down costs `count` steps,
 * not the 2.6 million occurrences since `from`.
 */
export function lastOccurrencesBefore(rule: Recurrence, from: number, before: number, count: number): Occurrence[] {
  const found: Occurrence[] = [];
  let cursor = before;
  while (found.length < count && cursor > from) {
    const previous = previousOccurrence(rule, cursor);
    if (previous === undefined || previous.at < from) break;
    found.push(previous);
    cursor = previous.at;
  }
  return found.reverse();
}

// ---- presenting an instant --------------------------------------------------

export interface LocalTime {
  /** RFC 3339, UTC. */
  at: string;
  /** "YYYY-MM-DD HH:MM:SS" on the zone's wall clock. */
  local: string;
  /** "+05:30", "-04:00". */
  utcOffset: string;
}

export function localTime(instant: number, timeZone: string): LocalTime {
  const offset = timeZoneOffset(instant, timeZone);
  const local = new Date(instant + offset).toISOString().slice(0, 19).replace('T', ' ');
  return { at: new Date(instant).toISOString(), local, utcOffset: formatOffset(offset) };
}

export function formatOffset(offsetMs: number): string {
  const minutes = Math.round(Math.abs(offsetMs) / 60_000);
  return `${offsetMs < 0 ? '-' : '+'}${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
}

/** What a preview line says of an occurrence DST moved or doubled. */
export function describeNote(note: OccurrenceNote | undefined): string | undefined {
  switch (note) {
    case 'gap-shifted': return 'the wall-clock time does not exist that day (DST gap): moved forward by the gap';
    case 'overlap-first': return 'the wall-clock time happens twice that day (DST overlap): the first one';
    case 'overlap-second': return 'the wall-clock time happens twice that day (DST overlap): the second one';
    default: return undefined;
  }
}
