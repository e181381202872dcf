import { ValidationError } from '../errors.ts';

/**
 * Times as people and the original send them. An instant with an offset
 * (RFC 3339) is taken as is; a wall-clock time without one ("2014-08-01
 * 13:30:00", the datetime-local "2014-08-01T13:30") is read in a time zone.
 *
 * The rules, the same with an offset and without:
 * - years 0001-9999; hours 00-23 (no "24:00", which would be the next day's
 *   00:00), minutes and seconds 00-59 (no leap second), real calendar days;
 * - a wall-clock time that a zone skips (a spring-forward gap, 02:30 on
 *   2026-03-08 in New York) moves forward by the gap's length (03:30 EDT);
 * - a wall-clock time that happens twice (fall back, 01:30 on 2026-11-01 in
 *   New York) is the earlier of the two (01:30 EDT).
 * These are Temporal's "compatible" disambiguation, which is also what
 * java.time and most calendars do.
 */
const WALL_CLOCK = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3})\d*)?)?$/;
const WITH_OFFSET = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})$/i;

/**
 * Intl.DateTimeFormat objects cost ~130 µs to build and tens of KB each, and
 * Intl reads zone names without regard to case: keyed by the name as sent,
 * 50,000 requests spelling "Europe/Paris" in different cases held 50,000 of
 * them (338 MB -> 1,455 MB). Formatters are keyed by the canonical zone Intl
 * resolves a name to, at most MAX_FORMATTERS of them (far more zones than a
 * deployment uses at once); the spellings seen, each a short string naming its
 * canonical zone, at most MAX_SPELLINGS, so an odd spelling costs one build,
 * not one per message of a batch. Both are least-recently-used caches. A name
 * Intl refuses throws before anything is stored.
 */
const MAX_FORMATTERS = 64;
const MAX_SPELLINGS = 1024;
const formatters = new Map<string, Intl.DateTimeFormat>();
const canonicalNames = new Map<string, string>();

/** How many entries the zone caches hold (for tests: both stay bounded). */
export function timeZoneCacheSize(): { formatters: number; spellings: number } {
  return { formatters: formatters.size, spellings: canonicalNames.size };
}

export function isValidTimeZone(timeZone: string): boolean {
  try {
    formatterFor(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** Reads `key` from an insertion-ordered Map used as an LRU cache, marking it most recently used. */
function touch<V>(cache: Map<string, V>, key: string): V | undefined {
  const value = cache.get(key);
  if (value !== undefined) {
    cache.delete(key);
    cache.set(key, value);
  }
  return value;
}

function remember<V>(cache: Map<string, V>, key: string, value: V, max: number): void {
  cache.set(key, value);
  if (cache.size > max) cache.delete(cache.keys().next().value!);
}

function buildFormatter(timeZone: string): Intl.DateTimeFormat {
  return new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  const canonical = touch(canonicalNames, timeZone);
  if (canonical !== undefined) {
    let formatter = touch(formatters, canonical);
    if (!formatter) {
      formatter = buildFormatter(canonical);
      remember(formatters, canonical, formatter, MAX_FORMATTERS);
    }
    return formatter;
  }
  // throws a RangeError for a zone Intl does not know: nothing is cached
  const built = buildFormatter(timeZone);
  const name = built.resolvedOptions().timeZone;
  remember(canonicalNames, timeZone, name, MAX_SPELLINGS);
  let formatter = touch(formatters, name);
  if (!formatter) {
    formatter = built;
    remember(formatters, name, formatter, MAX_FORMATTERS);
  }
  return formatter;
}

/** The zone's offset from UTC, in ms, at the given instant. */
export function timeZoneOffset(instant: number, timeZone: string): number {
  const parts: Record<string, number> = {};
  for (const part of formatterFor(timeZone).formatToParts(new Date(instant))) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  const asUtc = utc(parts.year!, parts.month!, parts.day!, parts.hour!, parts.minute!, parts.second!, 0);
  return asUtc - Math.floor(instant / 1000) * 1000;
}

/** Date.UTC for a month counted from 1, and with years 0-99 as those years (Date.UTC reads them as 1900-1999). */
function utc(year: number, month: number, day: number, hour: number, minute: number, second: number, ms: number): number {
  const instant = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  return year >= 100 ? instant : new Date(instant).setUTCFullYear(year);
}

/** True when the fields name a time that exists on the calendar, within the years 0001-9999. */
function validFields(year: number, month: number, day: number, hour: number, minute: number, second: number): boolean {
  return year >= 1 && year <= 9999 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month)
    && hour <= 23 && minute <= 59 && second <= 59;
}

/**
 * Parses a time given by a user. Throws a ValidationError naming `field`.
 * Wall-clock times are read in `timeZone` (an IANA name, "UTC" by default),
 * by the rules at the top of this file.
 */
export function parseUserTime(text: string, timeZone: string, field = 'scheduledAt'): number {
  const canonical = parseCanonicalUtc(text);
  if (canonical !== undefined) return canonical;
  const trimmed = text.trim();
  const withOffset = WITH_OFFSET.exec(trimmed);
  if (withOffset) {
    const [, y, mo, d, h, mi, s] = withOffset;
    // Date.parse rolls "02-30" over into March and "24:00" into the next day, and takes year 0000
    if (validFields(Number(y), Number(mo), Number(d), Number(h), Number(mi), Number(s ?? 0))) {
      const instant = Date.parse(trimmed.replace(' ', 'T'));
      if (Number.isFinite(instant)) return instant;
    }
  }
  const match = WALL_CLOCK.exec(trimmed);
  if (match) {
    const [, y, mo, d, h, mi, s, frac] = match;
    const fields = [Number(y), Number(mo), Number(d), Number(h), Number(mi), Number(s ?? 0)] as const;
    if (validFields(...fields)) {
      const ms = frac ? Number(frac.padEnd(3, '0')) : 0;
      return wallClockToInstant(utc(...fields, ms), timeZone);
    }
  }
  throw new ValidationError(
    `${field} must be a date and time such as "2026-12-24T09:00:00Z" (RFC 3339) or "2026-12-24 09:00:00" (read in ${timeZone}), years 0001-9999, hours 00-23; got ${JSON.stringify(text)}`,
    field,
  );
}

/**
 * "2026-12-24T09:00:00Z" or "2026-12-24T09:00:00.000Z" exactly, what programs
 * send (toISOString), read digit by digit: Date.parse costs ~0.3 µs and runs
 * for every message of a batch. Anything else returns undefined and takes the
 * general path.
 */
function parseCanonicalUtc(text: string): number | undefined {
  const length = text.length;
  if ((length !== 20 && length !== 24) || text.charCodeAt(length - 1) !== 90 /* Z */) return undefined;
  if (text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || text.charCodeAt(10) !== 84 /* T */
    || text.charCodeAt(13) !== 58 || text.charCodeAt(16) !== 58) return undefined;
  if (length === 24 && text.charCodeAt(19) !== 46 /* . */) return undefined;
  const year = digits(text, 0, 4);
  const month = digits(text, 5, 2);
  const day = digits(text, 8, 2);
  const hour = digits(text, 11, 2);
  const minute = digits(text, 14, 2);
  const second = digits(text, 17, 2);
  const ms = length === 24 ? digits(text, 20, 3) : 0;
  // Date.UTC reads years 0-99 as 1900-1999: those take the general path
  if (year < 100 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59 || ms < 0) return undefined;
  return Date.UTC(year, month - 1, day, hour, minute, second, ms);
}

/** The number written by `count` ASCII digits at `start`, or -1 if one is not a digit. */
function digits(text: string, start: number, count: number): number {
  let value = 0;
  for (let i = start; i < start + count; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

function daysInMonth(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

const DAY_MS = 86_400_000;
/**
 * Offsets are looked up no earlier than 0001-01-01: Intl writes year 0 as "1"
 * (1 BC, its era left out), which would read as a year off. No zone changed
 * its offset anywhere near then.
 */
const FIRST_LOOKUP = utc(1, 1, 1, 0, 0, 0, 0);

/**
 * Converts a wall-clock time (its fields encoded as if UTC) in `timeZone` to
 * an instant: in a gap, moved forward by the gap's length; when it happens
 * twice, the earlier one. Assumes at most one change of offset within a day
 * either side, as every zone of the tz database has.
 */
export function wallClockToInstant(wallAsUtc: number, timeZone: string): number {
  if (timeZone === 'UTC') return wallAsUtc;
  const before = timeZoneOffset(Math.max(wallAsUtc - DAY_MS, FIRST_LOOKUP), timeZone);
  const after = timeZoneOffset(wallAsUtc + DAY_MS, timeZone);
  const withBefore = wallAsUtc - before;
  if (before === after) return withBefore;
  const withAfter = wallAsUtc - after;
  const beforeFits = timeZoneOffset(withBefore, timeZone) === before;
  const afterFits = timeZoneOffset(withAfter, timeZone) === after;
  if (beforeFits && afterFits) return Math.min(withBefore, withAfter); // it happens twice: the earlier
  if (afterFits) return withAfter;
  // beforeFits alone, or neither (a gap): the offset before the change, which
  // lands as far past the change as the time is into the gap
  return withBefore;
}

/** Formats an instant as the original's "YYYY-MM-DD HH:MM:SS" in the given zone. */
export function formatWallClock(instant: number, timeZone: string): string {
  const shifted = new Date(instant + timeZoneOffset(instant, timeZone));
  return shifted.toISOString().slice(0, 19).replace('T', ' ');
}
