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
 * Occurrences are strictly increasing instants: one that a shift lands on or
 * before an occurrence already produced is dropped, so `*\/15 * * * *` across
 * a gap fires once per real quarter hour, never twice at 03:00.
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

// ---- wall clock to instants -------------------------------------------------

/**
 * The instants a wall-clock time (written as if UTC) names in `timeZone`:
 * one normally, two in an overlap (earlier first), none in a gap, where
 * `shifted` is the instant moved forward by the gap's length. Like
 * wallClockToInstant in ./time.ts, it assumes at most one offset change
 * within a day either side.
 */
export function wallClockInstants(wallAsUtc: number, timeZone: string): { instants: number[]; shifted?: number } {
  const before = timeZoneOffset(wallAsUtc - DAY_MS, timeZone);
  const after = timeZoneOffset(wallAsUtc + DAY_MS, timeZone);
  if (before === after) {
    const instant = wallAsUtc - before;
    // a change and its reversal within two days (none in the tz database today): check, and fall back to a search
    if (timeZoneOffset(instant, timeZone) === before) return { instants: [instant] };
  }
  const instants = [...new Set([wallAsUtc - before, wallAsUtc - after])]
    .filter((instant) => timeZoneOffset(instant, timeZone) === wallAsUtc - instant)
    .sort((a, b) => a - b);
  if (instants.length > 0) return { instants };
  // in the gap: the offset before the change lands as far past it as the time is into the gap
  return { instants: [], shifted: wallAsUtc - before };
}

/** The instants a wall-clock match fires at under `policy`, with how each came about. */
function occurrencesOfWallTime(wallAsUtc: number, timeZone: string, policy: DstPolicy): Occurrence[] {
  const { instants, shifted } = wallClockInstants(wallAsUtc, timeZone);
  if (instants.length === 1) return [{ at: instants[0]! }];
  if (instants.length === 0) return policy.gap === 'shift' && shifted !== undefined ? [{ at: shifted, note: 'gap-shifted' }] : [];
  const [first, second] = instants as [number, number];
  if (policy.overlap === 'first') return [{ at: first, note: 'overlap-first' }];
  if (policy.overlap === 'last') return [{ at: second, note: 'overlap-second' }];
  return [{ at: first, note: 'overlap-first' }, { at: second, note: 'overlap-second' }];
}

/** The largest change of offset within a day either side of `instant` (0 away from any transition). */
function transitionSpan(instant: number, timeZone: string): number {
  const offsets = [timeZoneOffset(instant - DAY_MS, timeZone), timeZoneOffset(instant, timeZone), timeZoneOffset(instant + DAY_MS, timeZone)];
  return Math.max(...offsets) - Math.min(...offsets);
}

/**
 * Matches examined per call of nextOccurrence at most: a rule that fires every
 * second examines 3,600 around a one-hour transition; a rule never matching
 * again (a year field in the past) ends the search.
 */
const MAX_MATCHES_PER_STEP = 10_000;

/** The first occurrence strictly after `after` (epoch ms), or undefined when there is none (endAt passed, a pattern that ends). */
export function nextOccurrence(rule: Recurrence, after: number): Occurrence | undefined {
  const floor = rule.startAt === null ? after : Math.max(after, rule.startAt - 1);
  const found = rule.everyMs !== null ? nextEvery(rule, floor) : nextCron(rule, floor);
  if (found === undefined || (rule.endAt !== null && found.at > rule.endAt)) return undefined;
  return found;
}

function nextEvery(rule: Recurrence, after: number): Occurrence | undefined {
  const every = rule.everyMs!;
  const anchor = rule.startAt ?? rule.createdAt + every;
  if (after < anchor) return { at: anchor };
  return { at: anchor + (Math.floor((after - anchor) / every) + 1) * every };
}

function nextCron(rule: Recurrence, after: number): Occurrence | undefined {
  const cron = matcher(rule.cron!);
  const zone = rule.timeZone;
  // Matches up to `span` before the wall-clock time of `after` may still land after it
  // (a time in a gap shifted forward, the second pass of an overlap): start that far back.
  const span = transitionSpan(after, zone);
  let cursor = after + timeZoneOffset(after, zone) - span;
  let best: Occurrence | undefined;
  for (let i = 0; i < MAX_MATCHES_PER_STEP; i++) {
    const match = cron.nextRun(new Date(cursor));
    if (match === null) return best;
    const wall = match.getTime();
    // no later match can land before `best`: every instant of `wall` is at least wall - maxOffset
    if (best !== undefined && wall - Math.max(timeZoneOffset(wall - DAY_MS, zone), timeZoneOffset(wall + DAY_MS, zone)) > best.at) return best;
    for (const occurrence of occurrencesOfWallTime(wall, zone, rule.dstPolicy)) {
      if (occurrence.at > after && (best === undefined || occurrence.at < best.at)) best = occurrence;
    }
    if (best !== undefined && span === 0) return best;
    cursor = wall;
  }
  return best;
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
 * after an outage needs without walking every occurrence since `from` (a
 * one-second rule after a month down). Looks back in widening windows.
 */
export function lastOccurrencesBefore(rule: Recurrence, from: number, before: number, count: number): Occurrence[] {
  if (count <= 0 || before <= from) return [];
  for (const window of [3_600_000, DAY_MS, 35 * DAY_MS, 400 * DAY_MS, Infinity]) {
    const start = Math.max(from, before - window);
    const found: Occurrence[] = [];
    let cursor = start - 1;
    for (;;) {
      const next = nextOccurrence(rule, cursor);
      if (next === undefined || next.at >= before) break;
      found.push(next);
      if (found.length > count) found.shift();
      cursor = next.at;
    }
    if (found.length >= count || start === from) return found;
  }
  return [];
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
