/**
 * The original PHP psched's HTTP interface (see /work/shared/ORIGINAL-PROTOCOL.md):
 * its form fields and its JSON answer shapes, byte for byte, so the seed's
 * curl examples and any script written against the original keep working.
 * Used by the dispatcher (scheduleMessage.php, cron/checkScheduledMessages.php)
 * and the main server (postMessage.php, scheduleMessage.php).
 *
 * One deliberate difference: the original answered failures with HTTP 200;
 * psched answers them with a 4xx status and the same JSON body.
 */

import { ValidationError } from '../errors.ts';
import { urldecodeBytes } from '../http-bodies.ts';

/** The original's failure texts, verbatim (including its punctuation). */
export const LEGACY_FAILURES = {
  schedule: 'Invalid Post. Expected three non-zero strings (username, message, time).',
  post: 'Invalid Post. Expected two non-zero strings (username, message)',
  noDispatcher: 'No response from Dispatcher',
} as const;

/**
 * How the original encoded values on the wire (ORIGINAL-PROTOCOL.md, "How
 * values are encoded"): every PHP sender posted
 * `http_build_query([field => urlencode(value)])`, each value encoded twice,
 * and every PHP endpoint read `urldecode($_POST[field])`, decoding once more
 * than the form parser. psched speaks both sides of that:
 *
 * - the dispatcher's scheduleMessage.php (and the main server's) tells the two
 *   apart by the time: after one decoding, a time from a PHP sender reads
 *   `2026-12-02+16%3A30%3A00` (never a `:`), one typed by hand
 *   `2026-12-02 16:30:00`. A double-encoded request has each value decoded
 *   once more; a single-encoded one is taken exactly as sent (the original
 *   decoded it again, turning `1+1` into `1 1`: not carried over).
 * - the main server's postMessage.php has no such tell (no time field): it
 *   decodes once more by default, as the original did, because every program
 *   that calls it (the original's cron, psched's `--main-protocol legacy`)
 *   double-encodes; see decodeLegacyPost.
 * - psched's legacy delivery double-encodes, so the original's postMessage.php
 *   ends up with the exact text.
 */

/**
 * PHP's urlencode: every byte of the UTF-8 text as %XX (upper case) except
 * letters, digits and `-_.`; a space as `+`.
 */
export function phpUrlencode(value: string): string {
  return encodeURIComponent(value.toWellFormed())
    .replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

/**
 * PHP's urldecode: `+` is a space, `%XX` a byte; a `%` not followed by two
 * hex digits stays. The bytes must be UTF-8 (as every body psched reads):
 * otherwise a ValidationError naming `field`.
 */
export function phpUrldecode(value: string, field?: string): string {
  if (!/[%+]/.test(value)) return value;
  // the value's UTF-8 bytes, one character each: + and %XX are ASCII, never part of a multi-byte character
  const decoded = urldecodeBytes(Buffer.from(value, 'utf8').toString('latin1'));
  if (decoded !== undefined) return decoded;
  throw new ValidationError(`${field ?? 'a value'} is not valid UTF-8 once decoded a second time (it was sent encoded twice): send text as UTF-8`, field);
}

/** A form body as a PHP sender wrote it: `http_build_query` of urlencoded values, each value encoded twice. */
export function phpFormBody(fields: Record<string, string>): string {
  return Object.entries(fields).map(([key, value]) => `${phpUrlencode(key)}=${phpUrlencode(phpUrlencode(value))}`).join('&');
}

/** Only what urlencode writes: a value holding anything else was not urlencoded. */
const URLENCODED = /^[A-Za-z0-9\-_.%+]*$/;

/** True when every value could be the output of PHP's urlencode. */
function allUrlencoded(values: Record<string, string | null>): boolean {
  return Object.values(values).every((value) => value === null || URLENCODED.test(value));
}

function decodeAll<K extends string>(received: LegacyReceived<K>): LegacyReceived<K> {
  const decoded = {} as LegacyReceived<K>;
  for (const [field, value] of Object.entries(received) as [K, string | null][]) decoded[field] = value === null ? null : phpUrldecode(value, field);
  return decoded;
}

/**
 * True when a scheduleMessage.php request came from a PHP sender: its time,
 * once decoded by the form parser, still holds an encoded colon and no colon,
 * and no value holds a character urlencode never writes.
 */
export function isDoubleEncodedSchedule(received: LegacyReceived<string>): boolean {
  const time = received.time;
  return typeof time === 'string' && /%3A/i.test(time) && !time.includes(':') && allUrlencoded(received);
}

/**
 * How the main server's postMessage.php reads its values:
 * - `double` (the default, the original's rule): decoded once more, as PHP's
 *   urldecode does, unless a value holds a character urlencode never writes
 *   (a space, a quote, a colon, any non-ASCII letter…): such a request was
 *   typed by hand and is taken as sent;
 * - `single`: taken exactly as the form parser decoded them.
 */
export type LegacyPostEncoding = 'double' | 'single';

/** The original's form, each value decoded as many times as its sender encoded it. */
function decodedForm<K extends string>(form: LegacyForm<K>, doubleEncoded: boolean): LegacyForm<K> {
  if (!doubleEncoded) return form;
  try {
    const received = decodeAll(form.received);
    return { received, values: form.values && (received as Record<K, string>) };
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    return { received: form.received, values: undefined, problem: `Invalid Post. ${err.message}.` };
  }
}

/** Reads scheduleMessage.php's fields, decoding them once more when the time says a PHP sender encoded them twice. */
export function readLegacyScheduleForm(body: unknown): LegacyForm<(typeof SCHEDULE_FIELDS)[number]> {
  const form = readLegacyForm(body, SCHEDULE_FIELDS);
  return decodedForm(form, isDoubleEncodedSchedule(form.received));
}

/** Reads postMessage.php's fields as `encoding` says (see LegacyPostEncoding). */
export function readLegacyPostForm(body: unknown, encoding: LegacyPostEncoding): LegacyForm<(typeof POST_FIELDS)[number]> {
  const form = readLegacyForm(body, POST_FIELDS);
  return decodedForm(form, encoding === 'double' && allUrlencoded(form.received));
}

/** What the original echoed back: each field as received, null when it was missing. */
export type LegacyReceived<K extends string> = Record<K, string | null>;

export interface LegacySuccess<K extends string> {
  received: LegacyReceived<K>;
  result: 'Success';
}

export interface LegacyFailure<K extends string> {
  received: LegacyReceived<K>;
  result: 'Failure';
  failure: string;
}

export type LegacyAnswer<K extends string> = LegacySuccess<K> | LegacyFailure<K>;

export const SCHEDULE_FIELDS = ['username', 'message', 'time'] as const;
export const POST_FIELDS = ['username', 'message'] as const;

export interface LegacyForm<K extends string> {
  /** The fields in the original's order, for echoing back. */
  received: LegacyReceived<K>;
  /** The fields as non-empty strings, or undefined when any is missing or empty, or `problem` is set. */
  values: Record<K, string> | undefined;
  /** Why a double-encoded value could not be decoded (not UTF-8); `received` then holds the values decoded once. */
  problem?: string;
}

/**
 * Reads the original's form fields from a parsed body (urlencoded or JSON).
 * A field repeated in the form (`a=1&a=2`) arrives as an array and counts as
 * missing, as a non-string did in PHP's strlen check. A one-character value is
 * valid: the original's `strlen > 1` defect is not carried over. A blank value
 * (only spaces or invisible characters) passes here: the validation that
 * follows refuses it, naming the field.
 */
export function readLegacyForm<K extends string>(body: unknown, fields: readonly K[]): LegacyForm<K> {
  const source = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  const received = {} as LegacyReceived<K>;
  let complete = true;
  for (const field of fields) {
    const value = source[field];
    received[field] = typeof value === 'string' ? value : null;
    if (typeof value !== 'string' || value.length === 0) complete = false;
  }
  return { received, values: complete ? (received as Record<K, string>) : undefined };
}

export function legacySuccess<K extends string>(received: LegacyReceived<K>): LegacySuccess<K> {
  return { received, result: 'Success' };
}

export function legacyFailure<K extends string>(received: LegacyReceived<K>, failure: string): LegacyFailure<K> {
  return { received, result: 'Failure', failure };
}

/** The original main server's scheduleMessage.php answer: its own echo plus the dispatcher's answer. */
export function legacyForwarded<K extends string>(received: LegacyReceived<K>, externalResult: unknown) {
  return { received, result: 'Success' as const, externalResult };
}

/** The original main server's answer when the dispatcher did not answer. */
export function legacyNoDispatcher<K extends string>(received: LegacyReceived<K>): LegacyFailure<K> {
  return legacyFailure(received, LEGACY_FAILURES.noDispatcher);
}

/**
 * What the original dispatcher answered the original main server, which put
 * it in `externalResult`: its echo of the forwarded fields (the time with
 * the datetime-local T replaced by a space), then the result. `extra` (the
 * message psched stored: id, scheduledAt…) follows, so scripts reading
 * externalResult.result or externalResult.id both work.
 */
export function legacyDispatcherAnswer(
  fields: { username: string; message: string; time: string },
  outcome: { result: 'Success' } | { result: 'Failure'; failure: string },
  extra: unknown,
) {
  const received = { username: fields.username, message: fields.message, time: legacyTimeFromDatetimeLocal(fields.time) };
  const rest = typeof extra === 'object' && extra !== null && !Array.isArray(extra) ? extra as Record<string, unknown> : {};
  const { received: _r, result: _s, failure: _f, ...others } = rest;
  return { received, ...outcome, ...others };
}

/**
 * psched's answer when the dispatcher took the message but did not confirm it
 * (the original had none: it said "Failure", and the sender posted again).
 * Neither "Success" nor "Failure": a script that checks for "Success" sends
 * again, which is safe (the same form is the same message, see contentKey).
 */
export function legacyOutcomeUnknown<K extends string>(received: LegacyReceived<K>, message: string) {
  return { received, result: 'Unknown' as const, message };
}

/**
 * The original's main server forwarded the datetime-local value
 * ("2014-08-01T13:30") with the T replaced by a space.
 */
export function legacyTimeFromDatetimeLocal(value: string): string {
  return value.replace('T', ' ');
}

/** One message a cron sweep posted, as the original listed it. */
export interface LegacyPosted {
  poster_name: string;
  message: string;
}

export type LegacySweepAnswer =
  | {
    /** PHP arrays numbered from 1 encode as objects. */
    externalResult: Record<string, unknown>;
    scheduledMessagesPosted: Record<string, LegacyPosted>;
    result: 'Success';
  }
  /** What the original answered when nothing was due: an empty PHP array, and no other key. */
  | { externalResult: [] };

/**
 * The answer of `GET /cron/checkScheduledMessages.php`: entries numbered from
 * 1 in delivery order. The original built PHP arrays keyed 1, 2, …, which
 * json_encode writes as objects; with nothing due it answered
 * `{"externalResult":[]}` and nothing else — kept here so parsers of the original work.
 */
export function legacySweepAnswer(entries: readonly { username: string; message: string; mainAnswer: unknown }[]): LegacySweepAnswer {
  if (entries.length === 0) return { externalResult: [] };
  const externalResult: Record<string, unknown> = {};
  const scheduledMessagesPosted: Record<string, LegacyPosted> = {};
  entries.forEach((entry, index) => {
    const key = String(index + 1);
    externalResult[key] = entry.mainAnswer;
    scheduledMessagesPosted[key] = { poster_name: entry.username, message: entry.message };
  });
  return { externalResult, scheduledMessagesPosted, result: 'Success' };
}

/**
 * The original treated an answer of the main server's postMessage.php as a
 * success when its JSON said `"result":"Success"`. Accepts the raw text or
 * the parsed value.
 */
export function isLegacySuccess(answer: unknown): boolean {
  let value = answer;
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      return false;
    }
  }
  return typeof value === 'object' && value !== null && (value as { result?: unknown }).result === 'Success';
}
