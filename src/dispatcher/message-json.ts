import type { MessageJson } from '../protocol/wire.ts';
import type { AttemptOutcome, AttemptRecord, StoredMessage } from './store.ts';

/** A stored message as the /v1 API shows it (the shape is src/protocol/wire.ts's MessageJson). */

/**
 * RFC 3339 of an instant, with milliseconds. Date#toISOString costs ~0.9 µs
 * and a message has four times to convert, a batch's hundreds of them mostly
 * within the same second or two: the text up to the second is kept for the
 * last two seconds seen, and only the milliseconds are appended (0.04 µs).
 */
const YEAR_10000 = 253_402_300_800_000;
let recentSeconds: [number, string, number, string] = [NaN, '', NaN, ''];

function iso(instant: number): string {
  if (!(Number.isInteger(instant) && instant >= 0 && instant < YEAR_10000)) return new Date(instant).toISOString();
  const second = Math.floor(instant / 1000);
  let prefix: string;
  if (second === recentSeconds[0]) prefix = recentSeconds[1];
  else if (second === recentSeconds[2]) prefix = recentSeconds[3];
  else {
    // "2026-12-24T09:00:00."
    prefix = new Date(second * 1000).toISOString().slice(0, 20);
    recentSeconds = [second, prefix, recentSeconds[0], recentSeconds[1]];
  }
  const ms = instant - second * 1000;
  return `${prefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z`;
}

export function toMessageJson(m: StoredMessage): MessageJson {
  return {
    id: m.id,
    target: m.target,
    username: m.username,
    message: m.message,
    scheduledAt: iso(m.scheduledAt),
    dueAt: iso(m.dueAt),
    status: m.status,
    attempts: m.attempts,
    createdAt: iso(m.createdAt),
    updatedAt: iso(m.updatedAt),
    deliveredAt: m.deliveredAt === null ? null : iso(m.deliveredAt),
    lastError: m.lastError,
    idempotencyKey: m.idempotencyKey,
    deliverBy: m.deliverBy === null ? null : iso(m.deliverBy),
  };
}

/** One attempt of a message's history as GET /v1/messages/:id/attempts shows it. */
export interface AttemptJson {
  attempt: number;
  startedAt: string;
  finishedAt: string;
  outcome: AttemptOutcome;
  httpStatus: number | null;
  error: string | null;
  latencyMs: number;
}

export function toAttemptJson(a: AttemptRecord): AttemptJson {
  return {
    attempt: a.attempt,
    startedAt: iso(a.startedAt),
    finishedAt: iso(a.finishedAt),
    outcome: a.outcome,
    httpStatus: a.httpStatus,
    error: a.error,
    latencyMs: a.latencyMs,
  };
}
