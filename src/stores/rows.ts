import { DEFAULT_TARGET, type AttemptOutcome, type AttemptRecord, type ClaimRequest, type MessageFilter, type MessageStatus, type NewMessage, type NewSchedule, type NewTarget, type StoredMessage, type StoredSchedule, type StoredTarget } from '../dispatcher/store.ts';
import type { CatchUpPolicy, DstGapPolicy, DstOverlapPolicy } from '../protocol/recurrence.ts';
import type { Post } from '../main/store.ts';

/**
 * The tables' rows as both backends return them (the same column names, times
 * as epoch-ms numbers), and their mapping to the stores' types: one place, so
 * SQLite and PostgreSQL cannot drift apart.
 */
export interface MessageRow {
  id: string;
  target: string;
  username: string;
  message: string;
  scheduled_at: number;
  due_at: number;
  status: MessageStatus;
  attempts: number;
  version: number;
  idempotency_key: string | null;
  created_at: number;
  updated_at: number;
  delivered_at: number | null;
  last_error: string | null;
  lease_owner: string | null;
  lease_expires_at: number | null;
  deliver_by: number | null;
}

export interface AttemptRow {
  message_id: string;
  attempt: number;
  started_at: number;
  finished_at: number;
  outcome: AttemptOutcome;
  http_status: number | null;
  error: string | null;
}

export function toAttempt(row: AttemptRow): AttemptRecord {
  return {
    messageId: row.message_id,
    attempt: row.attempt,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    outcome: row.outcome,
    httpStatus: row.http_status,
    error: row.error,
    latencyMs: row.finished_at - row.started_at,
  };
}

/** The filter fields as both stores bind them: sentinels for an open range, nulls for no user or text. */
export function filterParams(filter: MessageFilter): { dueFrom: number; dueTo: number; username: string | null; text: string | null; target: string | null } {
  return {
    target: filter.target ?? null,
    dueFrom: filter.dueFrom ?? -Number.MAX_SAFE_INTEGER,
    dueTo: filter.dueTo ?? Number.MAX_SAFE_INTEGER,
    username: filter.username ?? null,
    text: filter.text ?? null,
  };
}

/**
 * The statuses a target's own index (messages_target_status_due, migration
 * 11 of both stores) holds. Not 'delivering' nor 'delivered': a delivery's
 * two status changes then touch none of its entries, which with 1,000
 * targets (each message on a page of its own target's) were a third of the
 * pages every SQLite delivery commit wrote. A target's messages in the other
 * statuses are read from the pool-wide messages_status_due.
 */
export const TARGET_INDEXED_STATUSES = ['scheduled', 'dead', 'expired'] as const satisfies readonly MessageStatus[];

/** The index's condition as SQL, `status IN (...)`'s list: a query names it word for word to use a partial index. */
export const TARGET_INDEXED_SQL = `(${TARGET_INDEXED_STATUSES.map((status) => `'${status}'`).join(', ')})`;

/** Whether a target's messages in this status are a range of its own index. */
export function isTargetIndexed(status: MessageStatus): boolean {
  return (TARGET_INDEXED_STATUSES as readonly MessageStatus[]).includes(status);
}

/** True when a query narrows by any filter field (the stores then use their filtered statements). */
export function isFiltered(filter: MessageFilter): boolean {
  return filter.target !== undefined || filter.username !== undefined || filter.text !== undefined || filter.dueFrom !== undefined || filter.dueTo !== undefined;
}

export interface PostRow {
  id: string;
  message_id: string | null;
  username: string;
  message: string;
  posted_at: number;
  scheduled_at: number | null;
}

export function toMessage(row: MessageRow): StoredMessage {
  return {
    id: row.id,
    target: row.target,
    username: row.username,
    message: row.message,
    scheduledAt: row.scheduled_at,
    dueAt: row.due_at,
    status: row.status,
    attempts: row.attempts,
    version: row.version,
    idempotencyKey: row.idempotency_key,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    deliveredAt: row.delivered_at,
    lastError: row.last_error,
    leaseOwner: row.lease_owner,
    leaseExpiresAt: row.lease_expires_at,
    deliverBy: row.deliver_by === null ? null : Number(row.deliver_by),
  };
}

export function toPost(row: PostRow): Post {
  return {
    id: row.id,
    messageId: row.message_id,
    username: row.username,
    message: row.message,
    postedAt: row.posted_at,
    scheduledAt: row.scheduled_at,
  };
}

/** Byte order of ids, as both databases sort them (PostgreSQL ids are COLLATE "C"). */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The (dueAt, id) order every list and claim uses. */
export function compareDue(a: StoredMessage, b: StoredMessage): number {
  return a.dueAt - b.dueAt || compareIds(a.id, b.id);
}

/** A new message as both stores write it: scheduled, due when asked, leased to the claimer when due within its horizon. */
export function newStoredMessage(message: NewMessage, now: number, claim: ClaimRequest | undefined): StoredMessage {
  const claimed = claim !== undefined && message.scheduledAt <= claim.dueBefore;
  return {
    id: message.id,
    target: message.target ?? DEFAULT_TARGET,
    username: message.username,
    message: message.message,
    scheduledAt: message.scheduledAt,
    dueAt: message.scheduledAt,
    status: 'scheduled',
    attempts: 0,
    version: 1,
    idempotencyKey: message.idempotencyKey,
    createdAt: now,
    updatedAt: now,
    deliveredAt: null,
    lastError: null,
    leaseOwner: claimed ? claim.owner : null,
    leaseExpiresAt: claimed ? claim.leaseExpiresAt : null,
    deliverBy: message.deliverBy ?? null,
  };
}

export interface ScheduleRow {
  id: string;
  target: string;
  username: string;
  message: string;
  cron: string | null;
  every_ms: number | null;
  time_zone: string;
  start_at: number | null;
  end_at: number | null;
  max_occurrences: number | null;
  dst_gap: DstGapPolicy;
  dst_overlap: DstOverlapPolicy;
  catch_up: CatchUpPolicy;
  catch_up_max: number;
  /** SQLite: 0/1; PostgreSQL: boolean. */
  paused: number | boolean;
  next_fire_at: number | null;
  occurrences: number;
  last_fire_at: number | null;
  idempotency_key: string | null;
  version: number;
  created_at: number;
  updated_at: number;
}

export const SCHEDULE_COLUMNS = `id, username, message, cron, every_ms, time_zone, start_at, end_at, max_occurrences,
  dst_gap, dst_overlap, catch_up, catch_up_max, paused, next_fire_at, occurrences, last_fire_at, idempotency_key,
  version, created_at, updated_at, target`;

export function toSchedule(row: ScheduleRow): StoredSchedule {
  return {
    id: row.id,
    target: row.target,
    username: row.username,
    message: row.message,
    cron: row.cron,
    everyMs: row.every_ms,
    timeZone: row.time_zone,
    startAt: row.start_at,
    endAt: row.end_at,
    maxOccurrences: row.max_occurrences,
    dstGap: row.dst_gap,
    dstOverlap: row.dst_overlap,
    catchUp: row.catch_up,
    catchUpMax: row.catch_up_max,
    paused: row.paused === true || row.paused === 1,
    nextFireAt: row.next_fire_at,
    occurrences: row.occurrences,
    lastFireAt: row.last_fire_at,
    idempotencyKey: row.idempotency_key,
    version: row.version,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** A new schedule as both stores write it. */
export function newStoredSchedule(schedule: NewSchedule, now: number): StoredSchedule {
  return { ...schedule, target: schedule.target ?? DEFAULT_TARGET, occurrences: 0, lastFireAt: null, version: 1, createdAt: now, updatedAt: now };
}

/** A schedule with changes applied, as both stores write it (version+1). */
/**
 * What withdrawing `withdrawn` materialised occurrences does to a schedule at
 * `now`: they no longer count, and nothing after `now` stays materialised
 * (see DispatcherStore.updateSchedule).
 */
export function withdrawal(schedule: StoredSchedule, withdrawn: number, now: number): Pick<StoredSchedule, 'occurrences' | 'lastFireAt'> {
  return {
    occurrences: Math.max(0, schedule.occurrences - withdrawn),
    lastFireAt: schedule.lastFireAt === null ? null : Math.min(schedule.lastFireAt, now),
  };
}

export function changedSchedule(schedule: StoredSchedule, changes: Partial<StoredSchedule>, now: number): StoredSchedule {
  const defined = Object.fromEntries(Object.entries(changes).filter(([, value]) => value !== undefined));
  return { ...schedule, ...defined, version: schedule.version + 1, updatedAt: now };
}

export interface TargetRow {
  name: string;
  url: string;
  protocol: 'json' | 'legacy';
  signature_scheme: 'psched' | 'standard-webhooks';
  signing_secret: string | null;
  token_hash: string | null;
  rate_per_second: number | null;
  burst: number | null;
  max_in_flight: number | null;
  deliver_within_ms: number | null;
  created_at: number;
  updated_at: number;
}

export const TARGET_COLUMNS = `name, url, protocol, signature_scheme, signing_secret, token_hash, rate_per_second, burst, max_in_flight,
  created_at, updated_at, deliver_within_ms`;

export function toTarget(row: TargetRow): StoredTarget {
  return {
    name: row.name,
    url: row.url,
    protocol: row.protocol,
    signatureScheme: row.signature_scheme,
    signingSecret: row.signing_secret,
    tokenHash: row.token_hash,
    ratePerSecond: row.rate_per_second === null ? null : Number(row.rate_per_second),
    burst: row.burst,
    maxInFlight: row.max_in_flight,
    deliverWithinMs: row.deliver_within_ms === null ? null : Number(row.deliver_within_ms),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** A new target as both stores write it. */
export function newStoredTarget(target: NewTarget, now: number): StoredTarget {
  return { ...target, createdAt: now, updatedAt: now };
}

/** A target with changes applied (undefined fields stay), as both stores write it. */
export function changedTarget(target: StoredTarget, changes: Partial<StoredTarget>, now: number): StoredTarget {
  const defined = Object.fromEntries(Object.entries(changes).filter(([, value]) => value !== undefined));
  return { ...target, ...defined, name: target.name, createdAt: target.createdAt, updatedAt: now };
}

/** A target's columns in TARGET_COLUMNS order. */
export function targetValues(t: StoredTarget): unknown[] {
  return [t.name, t.url, t.protocol, t.signatureScheme, t.signingSecret, t.tokenHash, t.ratePerSecond, t.burst, t.maxInFlight, t.createdAt, t.updatedAt, t.deliverWithinMs];
}
