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

/** The original's failure texts, verbatim (including its punctuation). */
export const LEGACY_FAILURES = {
  schedule: 'Invalid Post. Expected three non-zero strings (username, message, time).',
  post: 'Invalid Post. Expected two non-zero strings (username, message)',
  noDispatcher: 'No response from Dispatcher',
} as const;

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
  /** The fields as non-empty strings, or undefined when any is missing or empty. */
  values: Record<K, string> | undefined;
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

/** The original main server's answer when the dispatcher did not answer (no `received`). */
export function legacyNoDispatcher() {
  return { result: 'Failure' as const, failure: LEGACY_FAILURES.noDispatcher };
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

export interface LegacySweepAnswer {
  /** PHP arrays numbered from 1 encode as objects; an empty one encodes as `[]`. */
  externalResult: Record<string, unknown> | [];
  scheduledMessagesPosted: Record<string, LegacyPosted> | [];
  result: 'Success';
}

/**
 * The answer of `GET /cron/checkScheduledMessages.php`: entries numbered from
 * 1 in delivery order. The original built PHP arrays keyed 1, 2, …, which
 * json_encode writes as objects; with nothing due they stayed empty arrays,
 * which json_encode writes as `[]` — kept here so parsers of the original work.
 */
export function legacySweepAnswer(entries: readonly { username: string; message: string; mainAnswer: unknown }[]): LegacySweepAnswer {
  if (entries.length === 0) return { externalResult: [], scheduledMessagesPosted: [], result: 'Success' };
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
