/**
 * The dispatcher's storage contract. The engine, delivery and HTTP code use
 * only this interface; SQLite (src/stores/sqlite) and PostgreSQL
 * (src/stores/postgres) implement it, and one contract suite
 * (test/dispatcher-store.test.ts) runs against both. Statements that do the
 * same job have the same name in both (21 of them). The rest diverge on
 * purpose: SQLite builds a claim, a lease renewal or a release from several
 * small statements in one transaction (an in-process statement costs
 * microseconds), PostgreSQL makes each one statement (every statement is a
 * network round trip and holds row locks meanwhile).
 *
 * Glossary
 * - message: one scheduled post. `scheduledAt` is when the user wants it out;
 *   `dueAt` is when the next delivery attempt is due (equal to scheduledAt
 *   until a retry pushes it back).
 * - deliver-by: the latest time a message is still worth delivering, its
 *   own or its target's default (scheduledAt + deliverWithinMs). The engine
 *   starts nothing past it: such a message is set `expired` unsent
 *   (`expire`), visible, counted and replayable (`retry`) like a dead letter.
 * - owner: one running dispatcher process (a random id per start).
 * - claim / lease: an owner that holds a message in its in-memory buffer marks
 *   it with its id and a lease expiry. Another owner may take the message only
 *   once the lease has expired. This is how a pool on one PostgreSQL database
 *   never delivers a message twice while every owner is alive, and recovers a
 *   dead owner's messages after one lease time. A store may keep one lease per
 *   owner (SQLite does: renewing is then one row however many messages the
 *   owner holds); a message's leaseExpiresAt is its holder's lease either way.
 * - version: bumped by every change a user makes (PATCH, retry). An owner may
 *   start delivering only the version it buffered, so a stale buffer entry can
 *   never deliver an old time or text.
 * - schedule: a recurring message (issue 11). Its rule (src/protocol/recurrence.ts)
 *   decides the occurrence instants; `nextFireAt` is the first one not yet
 *   materialised. Materialising an occurrence turns it into an ordinary
 *   message, whose id the caller derives from the schedule id and the
 *   instant, and advances nextFireAt, both in one transaction: the store
 *   inserts the message only if no message has that id, so doing it twice is a
 *   no-op. The store does not read rules: the caller's plan function does.
 *
 * - target: a main server messages are delivered to (issue 12). Every message
 *   and schedule belongs to one, by name; an occurrence inherits its
 *   schedule's. The built-in `default` target (--main-url and its flags) is
 *   not stored; every other one is a row of its own, shared by a pool.
 *   Idempotency keys are scoped to a target: two main servers may use the
 *   same key without seeing each other's message.
 *
 * Deliberately left out: delivery itself, HTTP, time zones. The store never
 * reads a clock: every time comes in as an argument.
 *
 * Durability: a resolved `insert`, `update`, `remove` or `retry` is committed
 * to disk (fsync). Implementations reach throughput by group commit: calls
 * made in the same tick share one transaction, each under its own savepoint,
 * so one failing call never takes down its neighbours. State transitions made
 * by the engine (`startDelivery`, `finishDeliveries`) may be committed without
 * waiting for fsync: losing one in a crash only means a redelivery, which the
 * receiver dedupes by id.
 */

import type { ValidScheduleSettings } from '../protocol/schedules.ts';
import type { MessageStatus } from '../protocol/wire.ts';

export { MESSAGE_STATUSES, type MessageStatus } from '../protocol/wire.ts';

/** The name of the built-in target: today's --main-url and its flags, never stored. */
export const DEFAULT_TARGET = 'default';

export interface StoredMessage {
  id: string;
  /** The target (main server) it is delivered to. */
  target: string;
  username: string;
  message: string;
  /** Epoch ms: when the user wants the message delivered. */
  scheduledAt: number;
  /** Epoch ms: when the next attempt is due. */
  dueAt: number;
  status: MessageStatus;
  /** Delivery attempts started so far. */
  attempts: number;
  version: number;
  idempotencyKey: string | null;
  createdAt: number;
  updatedAt: number;
  deliveredAt: number | null;
  lastError: string | null;
  /** The owner holding the message in its buffer, or null. */
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
  /** Epoch ms: not sent after this (its own deliver-by; null: only its target's default applies). */
  deliverBy: number | null;
}

export interface NewMessage {
  id: string;
  /** Absent: the default target. */
  target?: string;
  username: string;
  message: string;
  scheduledAt: number;
  idempotencyKey: string | null;
  /** Absent or null: none of its own. */
  deliverBy?: number | null;
}

/** Set on insert/update/retry when the caller wants to hold the message in its own buffer at once. */
export interface ClaimRequest {
  owner: string;
  leaseExpiresAt: number;
  /** Only messages due at or before this instant are claimed; later ones stay unclaimed. */
  dueBefore: number;
}

export interface InsertOutcome {
  message: StoredMessage;
  /** False when the idempotency key matched an existing message, which is returned instead. */
  created: boolean;
}

export interface MessagePatch {
  scheduledAt?: number;
  message?: string;
  /** null: the message no longer has one of its own. */
  deliverBy?: number | null;
}

export type ChangeOutcome =
  | { kind: 'ok'; message: StoredMessage }
  | { kind: 'not_found' }
  | { kind: 'conflict'; status: MessageStatus };

/**
 * What an operator narrows a list down to (the console's filters, the API's
 * query). Every field given must hold. Text search is a scan of the rows the
 * status (and due range) leave: fine for a console, not for a hot path.
 */
export interface MessageFilter {
  /** Exactly this target. */
  target?: string;
  /** Exactly this user name. */
  username?: string;
  /**
   * The text contains this, ignoring case (SQLite folds only ASCII letters;
   * PostgreSQL folds every letter its lower() knows).
   */
  text?: string;
  /** Due at or after this instant (epoch ms). */
  dueFrom?: number;
  /** Due before this instant (epoch ms). */
  dueTo?: number;
}

export interface ListQuery extends MessageFilter {
  /** One status, or several (merged in due order); all when absent. */
  status?: MessageStatus | readonly MessageStatus[];
  limit: number;
  /** Keyset cursor: the (dueAt, id) of the last message of the previous page. */
  after?: { dueAt: number; id: string };
}

export interface DeliveredQuery extends MessageFilter {
  /** Keyset cursor: the (deliveredAt, id) of the last message of the previous page (newest first). */
  before?: { deliveredAt: number; id: string };
}

export type AttemptOutcome = 'delivered' | 'retry' | 'dead';

/**
 * One finished delivery attempt, kept for the message's history for as long
 * as the message itself: removed with it (cancel, discard) and purged with it
 * (--retention after delivery).
 */
export interface AttemptRecord {
  messageId: string;
  /** 1-based; counts from 1 again after a dead letter is retried (the message's attempts are reset). */
  attempt: number;
  /** Epoch ms: the request was handed to the deliverer. */
  startedAt: number;
  /** Epoch ms: its answer (or failure) came back. */
  finishedAt: number;
  /** What the attempt meant: delivered, to be retried, or given up (dead). */
  outcome: AttemptOutcome;
  /** The receiver's HTTP status; null when none came (timeout, refused connection). */
  httpStatus: number | null;
  /** Why it failed; null when delivered. */
  error: string | null;
  /** finishedAt - startedAt. */
  latencyMs: number;
}

export interface DeliveryResult {
  id: string;
  /** expired: started but not sent, its deliver-by passed before it could go (its attempt is not counted). */
  outcome: 'delivered' | 'retry' | 'dead' | 'expired';
  /** delivered: delivery time. retry: the next due time. dead, expired: when it died or expired. */
  at: number;
  error?: string;
  /** retry only: hand the claim back (lease dropped) instead of keeping it for the next attempt. */
  release?: boolean;
  /**
   * The attempt this outcome ends, written to the message's attempt history
   * in the same transaction (see AttemptRecord); none is written without it.
   */
  attempt?: { number: number; startedAt: number; finishedAt: number; httpStatus?: number };
}

/** A recurring message as stored: its checked settings (see ValidScheduleSettings) and its progress. */
export interface StoredSchedule extends ValidScheduleSettings {
  id: string;
  /** The target its occurrences are delivered to (they inherit it). */
  target: string;
  username: string;
  message: string;
  /** The first occurrence not yet materialised; null once the schedule has ended (endAt, maxOccurrences). */
  nextFireAt: number | null;
  /** Occurrences materialised so far (what maxOccurrences counts). */
  occurrences: number;
  /** The instant of the latest occurrence materialised. */
  lastFireAt: number | null;
  idempotencyKey: string | null;
  /** Bumped by every change, a materialisation included: updateSchedule compares it. */
  version: number;
  createdAt: number;
  updatedAt: number;
}

/** `target` absent: the default target. */
export type NewSchedule = Omit<StoredSchedule, 'target' | 'occurrences' | 'lastFireAt' | 'version' | 'createdAt' | 'updatedAt'> & { target?: string };

/**
 * A main server messages are delivered to, as stored (the default target is
 * not: it is the configuration). The limits are kept for the flow control
 * (issue 12 item 3); null is none. The secrets are write-only through the
 * API: the signing secret is stored as given (signing needs it), the token
 * only as its SHA-256 (hex), which is all authentication needs.
 */
export interface StoredTarget {
  /** [a-z0-9][a-z0-9-]{0,62}; never `default`. */
  name: string;
  /** Base URL: deliveries go to {url}/v1/posts (json) or {url}/postMessage.php (legacy). */
  url: string;
  protocol: 'json' | 'legacy';
  signatureScheme: 'psched' | 'standard-webhooks';
  signingSecret: string | null;
  /** SHA-256 (hex) of the token the main server calls this dispatcher's API with; null: it has none. */
  tokenHash: string | null;
  ratePerSecond: number | null;
  burst: number | null;
  maxInFlight: number | null;
  /** Default deliver-by of its messages without one: scheduledAt + this (ms); null: none. */
  deliverWithinMs: number | null;
  createdAt: number;
  updatedAt: number;
}

export type NewTarget = Omit<StoredTarget, 'createdAt' | 'updatedAt'>;

/** New values for a target's fields (what is left out stays; null clears a nullable one). */
export type TargetChanges = Partial<Omit<StoredTarget, 'name' | 'createdAt' | 'updatedAt'>>;

export type TargetRemoveOutcome =
  | { kind: 'ok' }
  | { kind: 'not_found' }
  /** It still has messages not yet delivered or dead, or schedules: nothing was removed. */
  | { kind: 'in_use'; pendingMessages: number; schedules: number };

/** New values for a schedule's fields (what is left out stays). */
export type ScheduleChanges = Partial<Pick<StoredSchedule,
  'message' | 'cron' | 'everyMs' | 'timeZone' | 'startAt' | 'endAt' | 'maxOccurrences' | 'dstGap' | 'dstOverlap'
  | 'catchUp' | 'catchUpMax' | 'paused' | 'nextFireAt'>>;

export type ScheduleChangeOutcome =
  /** `withdrawn`: how many of the cancelled messages were still scheduled and are gone. */
  | { kind: 'ok'; schedule: StoredSchedule; withdrawn: number }
  | { kind: 'not_found' }
  /** The schedule's version is no longer the one expected (materialised or changed meanwhile): read it again. */
  | { kind: 'conflict' };

/** What a materialisation does with one due schedule (computed by the caller from the row, inside the transaction). */
export interface SchedulePlan {
  /** The occurrences to insert, with ids derived from the schedule and the instant (already there: skipped). */
  messages: NewMessage[];
  nextFireAt: number | null;
  /** Unchanged when no message is planned. */
  lastFireAt: number | null;
}

export interface DispatcherStore {
  /**
   * Whether other processes may change it meanwhile: true for PostgreSQL (a
   * pool shares the database), false for SQLite (one process owns the file,
   * so what this process did not write has not changed).
   */
  readonly shared: boolean;

  /** Applies pending migrations; safe when several processes start at once. */
  migrate(): Promise<void>;

  /**
   * Inserts all messages in one transaction (all or nothing). A message whose
   * idempotencyKey already exists is not inserted; the existing one comes back
   * with created=false. With `claim`, new messages due before claim.dueBefore
   * are inserted already leased to claim.owner (who gets a lease until
   * claim.leaseExpiresAt if it has none; an existing one is left as it is:
   * claimDue and renewLeases extend it).
   */
  insert(messages: NewMessage[], now: number, claim?: ClaimRequest): Promise<InsertOutcome[]>;

  get(id: string): Promise<StoredMessage | undefined>;

  /** In (dueAt, id) order, `limit` at most, after the cursor, narrowed by the filter fields given. */
  list(query: ListQuery): Promise<StoredMessage[]>;

  /** A message's finished attempts, oldest first (empty for an unknown id). */
  attempts(id: string): Promise<AttemptRecord[]>;

  /** Changes a scheduled message (version+1, lease dropped or moved to `claim`); conflict once delivering/delivered/dead. */
  update(id: string, patch: MessagePatch, now: number, claim?: ClaimRequest): Promise<ChangeOutcome>;

  /** Deletes a scheduled, dead or expired message and its attempt history; conflict once delivering or delivered. */
  remove(id: string): Promise<ChangeOutcome>;

  /**
   * Moves a dead or expired message back to scheduled, due `now`, attempts
   * reset, its deliver-by set to `deliverBy` (default none: the caller gives
   * the replay a window of its own); conflict for any other status.
   */
  retry(id: string, now: number, claim?: ClaimRequest, deliverBy?: number | null): Promise<ChangeOutcome>;

  /**
   * Claims up to `limit` messages due before `dueBefore` that are unclaimed or
   * whose lease expired before `now` (status scheduled, or delivering with an
   * expired lease: a dead owner's in-flight delivery, set back to scheduled).
   * In dueAt order. PostgreSQL uses FOR UPDATE SKIP LOCKED. Messages of the
   * `skipTargets` are left alone: the engine holds as many of theirs as their
   * flow control lets out for now, and claiming more would fill its buffer
   * with one throttled target's backlog while the others' messages wait.
   */
  claimDue(owner: string, dueBefore: number, now: number, leaseExpiresAt: number, limit: number, skipTargets?: readonly string[]): Promise<StoredMessage[]>;

  /**
   * Takes up to `want` tokens of a target's delivery-rate bucket, one bucket
   * shared by every dispatcher on the store (flow control in a pool): it
   * refills at `ratePerSecond` up to `burst`, by the `now` of whoever takes
   * (a clock a little behind the last taker's adds nothing; one more than a
   * second behind is taken for a clock that jumped, and the bucket goes on
   * from it rather than waiting for it to catch up); a bucket not yet used
   * starts full. Atomic: two dispatchers taking at once never get the same
   * token. Returns how many it took and how many are left (a fraction).
   */
  takeTokens(target: string, want: number, ratePerSecond: number, burst: number, now: number): Promise<{ granted: number; remaining: number }>;

  /** Extends every lease the owner holds (never shortens one); returns how many messages it holds. */
  renewLeases(owner: string, leaseExpiresAt: number): Promise<number>;

  /** Hands back every claim of the owner (clean shutdown): delivering ones go back to scheduled. */
  releaseClaims(owner: string): Promise<number>;

  /**
   * Compare-and-set, scheduled -> delivering, attempts+1, for each (id,
   * version) still leased to `owner`. Returns the messages that moved; the
   * others were changed, deleted or taken over and must not be delivered.
   */
  startDelivery(owner: string, entries: { id: string; version: number }[], now: number): Promise<StoredMessage[]>;

  /**
   * Compare-and-set, scheduled -> expired (lease dropped, `error` as its last
   * error), for each (id, version) still leased to `owner`: messages past
   * their deliver-by, never sent. Returns the messages that moved, as they
   * are now. Committed without waiting for the disk, like startDelivery:
   * lost in a crash, the message is claimed and expired again.
   */
  expire(owner: string, entries: { id: string; version: number; error: string }[], now: number): Promise<StoredMessage[]>;

  /**
   * Records delivery outcomes of messages the owner is delivering:
   * delivered (deliveredAt set, lease dropped), retry (back to scheduled with
   * the new dueAt, still leased to the owner unless `release`), dead (lease
   * dropped), expired (lease dropped, attempts one fewer: it was never sent);
   * and, for each result with `attempt`, one row of attempt history, in the
   * same transaction. Results for messages the owner is not delivering change
   * nothing and record no attempt.
   */
  finishDeliveries(owner: string, results: DeliveryResult[]): Promise<void>;

  /**
   * Delivered messages, most recently delivered first, `limit` at most (the
   * web UI's history; an index on delivered time serves it and purgeDelivered),
   * before the cursor and narrowed by the filter fields given.
   */
  listRecentlyDelivered(limit: number, query?: DeliveredQuery): Promise<StoredMessage[]>;

  /**
   * Resolves when the store can serve reads and writes now: a trivial query
   * answered (/healthz). Rejects once it halted (a failed fsync).
   */
  ping(): Promise<void>;

  /** Number of messages per status. */
  countByStatus(): Promise<Record<MessageStatus, number>>;

  /** Owners whose lease still holds at `now`: the dispatchers running on this store (they share each target's limits). */
  countLiveOwners(now: number): Promise<number>;

  /** Deletes delivered messages delivered before `before`, with their attempt history; returns how many messages. */
  purgeDelivered(before: number): Promise<number>;

  // ---- schedules (recurring messages) ----------------------------------------

  /**
   * Stores a new schedule (committed to disk before it resolves). One whose
   * idempotencyKey exists is not inserted: the existing one comes back with created=false.
   */
  insertSchedule(schedule: NewSchedule, now: number): Promise<{ schedule: StoredSchedule; created: boolean }>;

  getSchedule(id: string): Promise<StoredSchedule | undefined>;

  /** In id order (creation order: ids are UUIDv7), `limit` at most, after the cursor. */
  listSchedules(query: { limit: number; afterId?: string; target?: string }): Promise<StoredSchedule[]>;

  /**
   * Changes a schedule if its version is still `expectedVersion` (version+1),
   * and deletes in the same transaction the messages of `cancelMessageIds`
   * that are still scheduled (the occurrences in (now, lastFireAt] that the
   * change withdraws; ones being delivered or delivered stay). The number
   * actually deleted comes off the occurrence count, and lastFireAt becomes
   * at most `now`: what was withdrawn is no longer materialised, so a second
   * change withdraws (and subtracts) nothing more.
   */
  updateSchedule(id: string, expectedVersion: number, changes: ScheduleChanges, now: number, cancelMessageIds: string[]): Promise<ScheduleChangeOutcome>;

  /**
   * In ONE transaction: locks the schedule, asks `withdraw` which of its
   * occurrences to take back (computed from the row as locked, so none
   * materialised before the delete is missed), deletes the schedule and those
   * of them still scheduled. False when there was none. `withdraw` must not throw.
   */
  removeSchedule(id: string, withdraw: (schedule: StoredSchedule) => string[]): Promise<boolean>;

  /**
   * In ONE transaction per call: takes up to `limit` schedules not paused
   * whose nextFireAt is at or before `dueBefore` (earliest first; PostgreSQL
   * locks them FOR UPDATE SKIP LOCKED, so dispatchers of a pool share the work
   * and never plan one schedule at once), asks `plan` what to do with each,
   * inserts the planned messages unclaimed (skipping ids that exist) and
   * stores each schedule's new nextFireAt and lastFireAt, adding the messages
   * it created to the occurrence count (version+1). Returns the messages it created and how many schedules it
   * took. `plan` must not throw. Committed without waiting for the disk, like
   * the engine's transitions: losing it to a power cut loses the message and
   * the advance together, and the next call does both again. The messages
   * carry the schedule's target, whatever the plan says.
   */
  materializeDue(dueBefore: number, limit: number, now: number, plan: (schedule: StoredSchedule) => SchedulePlan): Promise<{ schedules: number; created: StoredMessage[] }>;

  // ---- targets (main servers, issue 12) ----------------------------------------

  /** Every stored target, by name. */
  listTargets(): Promise<StoredTarget[]>;

  getTarget(name: string): Promise<StoredTarget | undefined>;

  /** The target whose token has this SHA-256 (hex), if any (tokens are unique). */
  targetByTokenHash(tokenHash: string): Promise<StoredTarget | undefined>;

  /** Stores a new target (durably); false when one of that name exists (nothing changes). Throws on a token hash in use. */
  insertTarget(target: NewTarget, now: number): Promise<boolean>;

  /** Applies the changes (durably); undefined when there is no such target. */
  updateTarget(name: string, changes: TargetChanges, now: number): Promise<StoredTarget | undefined>;

  /**
   * Removes a target in one transaction, unless it still has messages
   * scheduled or delivering, or schedules. Its delivered and dead messages stay.
   */
  removeTarget(name: string): Promise<TargetRemoveOutcome>;

  /**
   * Calls `listener` when another process changed something worth a refill
   * (PostgreSQL LISTEN/NOTIFY). The SQLite store never calls it: one process owns the file.
   */
  onWake(listener: () => void): () => void;

  /**
   * Calls `listener` once when the store can no longer promise durability
   * (SQLite: an fsync of the WAL failed). From then on it refuses writes with
   * that error (a DurabilityUnknownError) and its owner must stop at once: a
   * restart reads back what the file really holds. PostgreSQL never calls it:
   * the server itself stops on a failed fsync, and a client sees a lost connection.
   */
  onHalt(listener: (err: Error) => void): () => void;

  close(): Promise<void>;
}
