/**
 * How a scheduled message looks on the wire between psched's components (the
 * dispatcher's /v1 API, which the main server reads and passes on): times as
 * RFC 3339 UTC with milliseconds, internals (version, lease) left out.
 */

export const MESSAGE_STATUSES = ['scheduled', 'delivering', 'delivered', 'dead', 'expired'] as const;
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];

export interface MessageJson {
  id: string;
  /** The target (main server) it is delivered to; absent from dispatchers older than targets (issue 12). */
  target?: string;
  username: string;
  message: string;
  scheduledAt: string;
  dueAt: string;
  status: MessageStatus;
  attempts: number;
  createdAt: string;
  updatedAt: string;
  deliveredAt: string | null;
  lastError: string | null;
  idempotencyKey: string | null;
  /** Its own deliver-by: not sent after it, set expired instead (issue 12); absent from older dispatchers. */
  deliverBy?: string | null;
}

/** A page of a list: `nextCursor` is null on the last page. */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** What an error answer says: `{ error: { code, message, field?, status? } }` from every psched API. */
export interface ErrorDetail {
  code?: string;
  message?: string;
  /** The input field at fault (400s). */
  field?: string;
  /** The message's status that made a change impossible (409s). */
  status?: string;
}

/**
 * Readers for answers from another psched service. They check the shape
 * instead of casting, so a dispatcher of another version (or not a
 * dispatcher at all) gives a clear error rather than undefined fields.
 */

/** The error of an answer body; empty when the body is not a psched error. */
export function readError(body: unknown): ErrorDetail {
  const error = isRecord(body) ? body.error : undefined;
  if (!isRecord(error)) return {};
  const detail: ErrorDetail = {};
  for (const key of ['code', 'message', 'field', 'status'] as const) {
    const value = error[key];
    if (typeof value === 'string') detail[key] = value;
  }
  return detail;
}

/** A message as the dispatcher's API answers it, or undefined when the body is not one. */
export function readMessage(body: unknown): MessageJson | undefined {
  if (!isRecord(body)) return undefined;
  const strings = ['id', 'username', 'message', 'scheduledAt', 'dueAt', 'createdAt', 'updatedAt'] as const;
  if (!strings.every((key) => typeof body[key] === 'string')) return undefined;
  if (typeof body.attempts !== 'number' || !(MESSAGE_STATUSES as readonly unknown[]).includes(body.status)) return undefined;
  return body as unknown as MessageJson;
}

/** A page of messages, or undefined when the body is not one (any item not a message included). */
export function readMessagePage(body: unknown): Page<MessageJson> | undefined {
  if (!isRecord(body) || !Array.isArray(body.items)) return undefined;
  const nextCursor = body.nextCursor ?? null;
  if (nextCursor !== null && typeof nextCursor !== 'string') return undefined;
  const items = body.items.map(readMessage);
  if (items.some((item) => item === undefined)) return undefined;
  return { items: items as MessageJson[], nextCursor };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A recurring message as the dispatcher's /v1/schedules answers it (times RFC 3339 UTC). */
export interface ScheduleJson {
  id: string;
  /** The target its occurrences are delivered to (absent from older dispatchers). */
  target?: string;
  username: string;
  message: string;
  cron: string | null;
  /** The interval as written back ("15m", "1h30m"), or null for a cron rule. */
  every: string | null;
  timeZone: string;
  startAt: string | null;
  endAt: string | null;
  maxOccurrences: number | null;
  dstPolicy: { gap: string; overlap: string };
  catchUp: string;
  catchUpMax: number;
  status: 'active' | 'paused' | 'finished';
  paused: boolean;
  /** The next occurrence not yet handed to the delivery engine (which takes them a few seconds ahead). */
  nextFireAt: string | null;
  /** nextFireAt on the schedule zone's wall clock. */
  next: { at: string; local: string; utcOffset: string } | null;
  occurrences: number;
  lastFireAt: string | null;
  idempotencyKey: string | null;
  version: number;
  createdAt: string;
  updatedAt: string;
}
