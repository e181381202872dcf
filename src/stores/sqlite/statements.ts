/**
 * Every SQL statement the SQLite stores run, by name. The PostgreSQL stores
 * use the same names for the same jobs, so one store reads like the other.
 * Parameters are named (`:owner`) and bound from plain objects (./prepared.ts).
 * `{ sql, row }` entries work on many rows per call: `row` is repeated at
 * `{rows}` once per row.
 *
 * `INDEXED BY` pins the index a query is written for (without statistics the
 * planner may pick another, and a refill would read every claimed row), and
 * turns a schema change that breaks that index into an error instead of a
 * slow scan.
 */

import { SCHEDULE_COLUMNS, TARGET_COLUMNS, TARGET_INDEXED_SQL } from '../rows.ts';
import type { MultiRowSql } from './prepared.ts';

/**
 * A message row, read from `messages m` joined with its owner's lease
 * (`FROM ${WITH_LEASE}`): leases are kept per owner (migration 3).
 */
const MESSAGE_COLUMNS = `m.id, m.username, m.message, m.scheduled_at, m.due_at, m.status, m.attempts, m.version,
  m.idempotency_key, m.created_at, m.updated_at, m.delivered_at, m.last_error, m.lease_owner, o.lease_expires_at, m.target, m.deliver_by`;
const WITH_LEASE = 'messages m LEFT JOIN owners o ON o.owner = m.lease_owner';

/** The same columns from RETURNING, which cannot join: the store adds the owner's lease (getLease). */
const RETURNED_COLUMNS = `id, username, message, scheduled_at, due_at, status, attempts, version,
  idempotency_key, created_at, updated_at, delivered_at, last_error, lease_owner, NULL AS lease_expires_at, target, deliver_by`;

/**
 * listFiltered and listTargetFiltered: one page of messages through `index`,
 * in (due_at, id) order after the cursor, `where` narrowing the range the
 * index reads; user and text are checked on the rows it yields.
 */
const filteredPage = (index: string, where: string) => `
    SELECT ${MESSAGE_COLUMNS} FROM messages m INDEXED BY ${index} LEFT JOIN owners o ON o.owner = m.lease_owner
    WHERE ${where} AND (m.due_at, m.id) > (:afterDueAt, :afterId) AND m.due_at >= :dueFrom AND m.due_at < :dueTo
      AND (:username IS NULL OR m.username = :username)
      AND (:text IS NULL OR instr(lower(m.message), lower(:text)) > 0)
    ORDER BY m.due_at, m.id LIMIT :limit`;

/** takeTokens: the bucket's tokens refilled up to now (as the row was before this take), capped at the burst. */
const BUCKET_REFILLED = 'min(:burst, tokens + max(0, :now - refilled_at) * :rate / 1000.0)';
/** takeTokens: the whole tokens taken (the cast truncates: floor for these non-negative values), at most the ones asked for. */
const BUCKET_GRANT = `min(:want, CAST(${BUCKET_REFILLED} AS INTEGER))`;

export const dispatcherStatements = {
  insertMessages: {
    sql: `
      INSERT INTO messages (id, username, message, scheduled_at, due_at, status, attempts, version,
        idempotency_key, created_at, updated_at, lease_owner, target, deliver_by)
      VALUES {rows}`,
    row: `(:id, :username, :message, :scheduledAt, :scheduledAt, 'scheduled', 0, 1,
      :idempotencyKey, :now, :now, :leaseOwner, :target, :deliverBy)`,
  } satisfies MultiRowSql,

  getMessage: `SELECT ${MESSAGE_COLUMNS} FROM ${WITH_LEASE} WHERE m.id = :id`,

  getMessages: { sql: `SELECT ${MESSAGE_COLUMNS} FROM ${WITH_LEASE} WHERE m.id IN ({rows})`, row: ':id' } satisfies MultiRowSql,

  /** Keys are a target's own (migration 6). */
  getMessageByIdempotencyKey: `SELECT ${MESSAGE_COLUMNS} FROM ${WITH_LEASE} WHERE m.target = :target AND m.idempotency_key = :idempotencyKey`,

  getStatus: `SELECT status FROM messages WHERE id = :id`,

  listByStatus: `
    SELECT ${MESSAGE_COLUMNS} FROM ${WITH_LEASE}
    WHERE m.status = :status
    ORDER BY m.due_at, m.id LIMIT :limit`,

  listByStatusAfter: `
    SELECT ${MESSAGE_COLUMNS} FROM ${WITH_LEASE}
    WHERE m.status = :status AND (m.due_at, m.id) > (:afterDueAt, :afterId)
    ORDER BY m.due_at, m.id LIMIT :limit`,

  /**
   * The console's filtered page of one status: the cursor and the due range
   * bound the index range; user and text are checked on the rows it yields
   * (a scan when they match few: an operator's query, not a hot path).
   * The store passes sentinels for a missing cursor or range, nulls for a
   * missing user or text.
   */
  listFiltered: filteredPage('messages_status_due', 'm.status = :status AND (:target IS NULL OR m.target = :target)'),

  /**
   * listFiltered for one target in a status of TARGET_INDEXED_STATUSES (../rows.ts): its
   * own index range (messages_target_status_due, migration 11). The status
   * list is repeated word for word: SQLite uses a partial index only for a
   * query that names the index's condition.
   */
  listTargetFiltered: filteredPage('messages_target_status_due', `m.target = :target AND m.status = :status AND m.status IN ${TARGET_INDEXED_SQL}`),

  /** listRecentlyDelivered with a cursor and filters: newest first, before (:beforeAt, :beforeId). */
  listDeliveredFiltered: `
    SELECT ${MESSAGE_COLUMNS} FROM messages m INDEXED BY messages_delivered_at LEFT JOIN owners o ON o.owner = m.lease_owner
    WHERE m.status = 'delivered' AND (m.delivered_at, m.id) < (:beforeAt, :beforeId)
      AND m.due_at >= :dueFrom AND m.due_at < :dueTo
      AND (:target IS NULL OR m.target = :target)
      AND (:username IS NULL OR m.username = :username)
      AND (:text IS NULL OR instr(lower(m.message), lower(:text)) > 0)
    ORDER BY m.delivered_at DESC, m.id DESC LIMIT :limit`,

  /** A message's attempt history, oldest first (the primary key's range). */
  listAttempts: `
    SELECT message_id, attempt, started_at, finished_at, outcome, http_status, error FROM delivery_attempts
    WHERE message_id = :id ORDER BY finished_at, attempt`,

  /**
   * finishDeliveries: the attempts of the messages the owner is still
   * delivering (run before the outcomes change their status), one row each.
   */
  recordAttempts: {
    sql: `
      WITH a (id, attempt, started_at, finished_at, outcome, http_status, error) AS (VALUES {rows})
      INSERT OR IGNORE INTO delivery_attempts (message_id, finished_at, attempt, started_at, outcome, http_status, error)
      SELECT a.id, a.finished_at, a.attempt, a.started_at, a.outcome, a.http_status, a.error
      FROM a JOIN messages m ON m.id = a.id
      WHERE m.lease_owner = :owner AND m.status = 'delivering'`,
    row: '(:id, :attempt, :startedAt, :finishedAt, :outcome, :httpStatus, :error)',
  } satisfies MultiRowSql,

  /** remove: the message's history goes with it. */
  removeAttempts: `DELETE FROM delivery_attempts WHERE message_id = :id`,

  /** Most recently delivered first, read backwards from the purge index. */
  listRecentlyDelivered: `
    SELECT ${MESSAGE_COLUMNS} FROM messages m INDEXED BY messages_delivered_at LEFT JOIN owners o ON o.owner = m.lease_owner
    WHERE m.status = 'delivered'
    ORDER BY m.delivered_at DESC, m.id DESC LIMIT :limit`,

  /** A new scheduledAt also moves dueAt; the lease goes to :owner only when due by :dueBefore. */
  updateMessage: `
    UPDATE messages SET
      scheduled_at = coalesce(:scheduledAt, scheduled_at),
      due_at = coalesce(:scheduledAt, due_at),
      message = coalesce(:message, message),
      deliver_by = CASE WHEN :setDeliverBy THEN :deliverBy ELSE deliver_by END,
      version = version + 1,
      updated_at = :now,
      lease_owner = CASE WHEN coalesce(:scheduledAt, due_at) <= :dueBefore THEN :owner END
    WHERE id = :id AND status = 'scheduled'
    RETURNING ${RETURNED_COLUMNS}`,

  removeMessage: `
    DELETE FROM messages WHERE id = :id AND status IN ('scheduled', 'dead', 'expired')
    RETURNING ${RETURNED_COLUMNS}`,

  retryMessage: `
    UPDATE messages SET
      status = 'scheduled',
      due_at = :now,
      attempts = 0,
      version = version + 1,
      updated_at = :now,
      last_error = NULL,
      deliver_by = :deliverBy,
      lease_owner = CASE WHEN :now <= :dueBefore THEN :owner END
    WHERE id = :id AND status IN ('dead', 'expired')
    RETURNING ${RETURNED_COLUMNS}`,

  /** An owner's lease expiry, or nothing when it holds no lease. */
  getLease: `SELECT lease_expires_at FROM owners WHERE owner = :owner`,

  /**
   * Gives an owner claiming through insert/update/retry a lease when it has
   * none; an existing one is left alone (claimDue and renewLeases extend it),
   * as the PostgreSQL store does.
   */
  ensureLease: `
    INSERT INTO owners (owner, lease_expires_at) VALUES (:owner, :leaseExpiresAt)
    ON CONFLICT (owner) DO NOTHING`,

  /** Takes or extends an owner's lease; never shortens it. */
  extendLease: `
    INSERT INTO owners (owner, lease_expires_at) VALUES (:owner, :leaseExpiresAt)
    ON CONFLICT (owner) DO UPDATE SET lease_expires_at = max(lease_expires_at, excluded.lease_expires_at)`,

  /**
   * Every lease expires: run when a process opens the file, since one process
   * owns it and every lease found belongs to a process that is gone. The first
   * refill then takes over all their claims at once, instead of waiting a
   * lease time for them.
   */
  expireAllLeases: `UPDATE owners SET lease_expires_at = 0`,

  /** How many messages an owner holds (renewLeases reports it). */
  countClaims: `SELECT count(*) AS count FROM messages INDEXED BY messages_owner_due WHERE lease_owner = :owner`,

  /** claimDue, part 1: unclaimed messages, read from the index alone. */
  findUnclaimedDue: `
    SELECT id, due_at, status FROM messages INDEXED BY messages_status_due
    WHERE status = 'scheduled' AND lease_owner IS NULL AND due_at <= :dueBefore
    ORDER BY due_at, id LIMIT :limit`,

  /** claimDue, part 1 while some targets are skipped: their rows are read to tell (skipping is rare: a throttled backlog). */
  findUnclaimedDueSkipping: `
    SELECT id, due_at, status FROM messages INDEXED BY messages_status_due
    WHERE status = 'scheduled' AND lease_owner IS NULL AND due_at <= :dueBefore
      AND target NOT IN (SELECT value FROM json_each(:skipTargets))
    ORDER BY due_at, id LIMIT :limit`,

  /** claimDue, part 2: owners that stopped renewing (a handful at most: one per dead process). */
  findExpiredOwners: `SELECT owner FROM owners WHERE lease_expires_at < :now AND owner <> :owner`,

  /** claimDue, part 3: one expired owner's claims in due order (all scheduled or delivering: the others hold no lease). */
  findOwnerClaims: `
    SELECT id, due_at, status FROM messages INDEXED BY messages_owner_due
    WHERE lease_owner = :expiredOwner AND due_at <= :dueBefore AND target NOT IN (SELECT value FROM json_each(:skipTargets))
    ORDER BY due_at, id LIMIT :limit`,

  /** An expired owner with nothing left goes away (safe here: SQLite runs one writer at a time). */
  forgetExpiredOwners: `
    DELETE FROM owners WHERE lease_expires_at < :now AND owner <> :owner
      AND NOT EXISTS (SELECT 1 FROM messages INDEXED BY messages_owner_due WHERE lease_owner = owners.owner)`,

  /** Leaves status alone: naming it in SET would rewrite its index entries (3x slower, measured). */
  claimMessages: {
    sql: `UPDATE messages SET lease_owner = :owner WHERE id IN ({rows})`,
    row: ':id',
  } satisfies MultiRowSql,

  /** Expired claims; a dead owner's in-flight delivery goes back to scheduled. */
  reclaimMessages: {
    sql: `UPDATE messages SET status = 'scheduled', lease_owner = :owner WHERE id IN ({rows})`,
    row: ':id',
  } satisfies MultiRowSql,

  /** releaseClaims, part 1: deliveries in flight go back to scheduled. */
  releaseDeliveries: `
    UPDATE messages SET status = 'scheduled', lease_owner = NULL
    WHERE lease_owner = :owner AND status = 'delivering'`,

  releaseClaims: `UPDATE messages SET lease_owner = NULL WHERE lease_owner = :owner`,

  releaseLease: `DELETE FROM owners WHERE owner = :owner`,

  /** The compare-and-set (version, owner, status) is checked on the rows read by getMessages first. */
  startDelivery: {
    sql: `UPDATE messages SET status = 'delivering', attempts = attempts + 1, updated_at = :now WHERE id IN ({rows})`,
    row: ':id',
  } satisfies MultiRowSql,

  /** Messages past their deliver-by, never sent: the compare-and-set is checked on the rows read by getMessages first. */
  markExpired: {
    sql: `
      WITH outcome (id, error) AS (VALUES {rows})
      UPDATE messages SET status = 'expired', updated_at = :now, last_error = outcome.error, lease_owner = NULL
      FROM outcome WHERE messages.id = outcome.id`,
    row: '(:id, :error)',
  } satisfies MultiRowSql,

  markDelivered: {
    sql: `
      WITH outcome (id, at) AS (VALUES {rows})
      UPDATE messages SET status = 'delivered', delivered_at = outcome.at, updated_at = outcome.at, last_error = NULL,
        lease_owner = NULL
      FROM outcome
      WHERE messages.id = outcome.id AND messages.lease_owner = :owner AND messages.status = 'delivering'`,
    row: '(:id, :at)',
  } satisfies MultiRowSql,

  /** Stays leased to the owner, which keeps it buffered for the next attempt, unless released (due beyond its horizon). */
  markRetry: {
    sql: `
      WITH outcome (id, at, error, release) AS (VALUES {rows})
      UPDATE messages SET status = 'scheduled', due_at = outcome.at, last_error = outcome.error,
        lease_owner = CASE WHEN outcome.release THEN NULL ELSE messages.lease_owner END
      FROM outcome
      WHERE messages.id = outcome.id AND messages.lease_owner = :owner AND messages.status = 'delivering'`,
    row: '(:id, :at, :error, :release)',
  } satisfies MultiRowSql,

  markDead: {
    sql: `
      WITH outcome (id, at, error) AS (VALUES {rows})
      UPDATE messages SET status = 'dead', updated_at = outcome.at, last_error = outcome.error,
        lease_owner = NULL
      FROM outcome
      WHERE messages.id = outcome.id AND messages.lease_owner = :owner AND messages.status = 'delivering'`,
    row: '(:id, :at, :error)',
  } satisfies MultiRowSql,

  /** Started but never sent: the attempt startDelivery counted was not made. */
  markExpiredUnsent: {
    sql: `
      WITH outcome (id, at, error) AS (VALUES {rows})
      UPDATE messages SET status = 'expired', attempts = max(0, attempts - 1), updated_at = outcome.at, last_error = outcome.error,
        lease_owner = NULL
      FROM outcome
      WHERE messages.id = outcome.id AND messages.lease_owner = :owner AND messages.status = 'delivering'`,
    row: '(:id, :at, :error)',
  } satisfies MultiRowSql,

  countByStatus: `SELECT status, count FROM message_counts`,

  countLiveOwners: `SELECT count(*) AS count FROM owners WHERE lease_expires_at >= :now`,

  /**
   * takeTokens: refill by the time since the last take (never negative), cap
   * at the burst, take what is asked or the whole tokens there are. Every
   * SET expression reads the row as it was, so \`granted\` and \`tokens\` agree.
   */
  takeTokens: `
    INSERT INTO target_buckets (name, tokens, refilled_at, granted)
    VALUES (:name, :burst - min(:want, CAST(:burst AS INTEGER)), :now, min(:want, CAST(:burst AS INTEGER)))
    ON CONFLICT (name) DO UPDATE SET
      granted = ${BUCKET_GRANT},
      tokens = ${BUCKET_REFILLED} - ${BUCKET_GRANT},
      -- a taker a little behind adds nothing; one over a second behind means a clock was wrong and jumped: start from it
      refilled_at = CASE WHEN refilled_at - :now > 1000 THEN :now ELSE max(refilled_at, :now) END
    RETURNING granted, tokens`,

  /** Every call that changes how many messages a status has adds its net change here. */
  addToCount: `UPDATE message_counts SET count = count + :change WHERE status = :status`,

  /**
   * One chunk of a purge, part 1: the history of the messages part 2 deletes
   * (the same index range in the same transaction: the same rows).
   */
  purgeDeliveredAttempts: `
    DELETE FROM delivery_attempts
    WHERE message_id IN (
      SELECT id FROM messages INDEXED BY messages_delivered_at
      WHERE status = 'delivered' AND delivered_at < :before
      LIMIT :limit)`,

  /** One chunk of a purge, part 2. */
  purgeDelivered: `
    DELETE FROM messages
    WHERE id IN (
      SELECT id FROM messages INDEXED BY messages_delivered_at
      WHERE status = 'delivered' AND delivered_at < :before
      LIMIT :limit)`,

  // ---- schedules (migration 5) ----------------------------------------------

  insertSchedule: `
    INSERT INTO schedules (${SCHEDULE_COLUMNS})
    VALUES (:id, :username, :message, :cron, :everyMs, :timeZone, :startAt, :endAt, :maxOccurrences,
      :dstGap, :dstOverlap, :catchUp, :catchUpMax, :paused, :nextFireAt, :occurrences, :lastFireAt, :idempotencyKey,
      :version, :createdAt, :updatedAt, :target)`,

  getSchedule: `SELECT ${SCHEDULE_COLUMNS} FROM schedules WHERE id = :id`,

  getScheduleByIdempotencyKey: `SELECT ${SCHEDULE_COLUMNS} FROM schedules WHERE target = :target AND idempotency_key = :idempotencyKey`,

  listSchedules: `SELECT ${SCHEDULE_COLUMNS} FROM schedules ORDER BY id LIMIT :limit`,

  listSchedulesAfter: `SELECT ${SCHEDULE_COLUMNS} FROM schedules WHERE id > :afterId ORDER BY id LIMIT :limit`,

  /** One target's schedules after :afterId ('' for the first page), in id order (index schedules_target). */
  listTargetSchedules: `
    SELECT ${SCHEDULE_COLUMNS} FROM schedules INDEXED BY schedules_target
    WHERE target = :target AND id > :afterId ORDER BY id LIMIT :limit`,

  /** Every field a change or a materialisation may set; the store computes the row (../rows.ts changedSchedule). */
  writeSchedule: `
    UPDATE schedules SET message = :message, cron = :cron, every_ms = :everyMs, time_zone = :timeZone,
      start_at = :startAt, end_at = :endAt, max_occurrences = :maxOccurrences, dst_gap = :dstGap,
      dst_overlap = :dstOverlap, catch_up = :catchUp, catch_up_max = :catchUpMax, paused = :paused,
      next_fire_at = :nextFireAt, occurrences = :occurrences, last_fire_at = :lastFireAt,
      version = :version, updated_at = :updatedAt
    WHERE id = :id`,

  removeSchedule: `DELETE FROM schedules WHERE id = :id`,

  /** materializeDue: active schedules due by :dueBefore, earliest first (index schedules_due). */
  findDueSchedules: `
    SELECT ${SCHEDULE_COLUMNS} FROM schedules INDEXED BY schedules_due
    WHERE paused = 0 AND next_fire_at IS NOT NULL AND next_fire_at <= :dueBefore
    ORDER BY next_fire_at, id LIMIT :limit`,

  /** One occurrence, unclaimed; an id already there (materialised before) is skipped. */
  insertOccurrence: `
    INSERT INTO messages (id, username, message, scheduled_at, due_at, status, attempts, version,
      idempotency_key, created_at, updated_at, lease_owner, target)
    VALUES (:id, :username, :message, :scheduledAt, :scheduledAt, 'scheduled', 0, 1, NULL, :now, :now, NULL, :target)
    ON CONFLICT (id) DO NOTHING`,

  /** An occurrence withdrawn by a schedule change, unless its delivery has begun. */
  cancelOccurrence: `DELETE FROM messages WHERE id = :id AND status = 'scheduled'`,

  // ---- targets (migration 6) ------------------------------------------------

  listTargets: `SELECT ${TARGET_COLUMNS} FROM targets ORDER BY name`,

  getTarget: `SELECT ${TARGET_COLUMNS} FROM targets WHERE name = :name`,

  getTargetByTokenHash: `SELECT ${TARGET_COLUMNS} FROM targets WHERE token_hash = :tokenHash`,

  insertTarget: `
    INSERT INTO targets (${TARGET_COLUMNS})
    VALUES (:name, :url, :protocol, :signatureScheme, :signingSecret, :tokenHash, :ratePerSecond, :burst, :maxInFlight, :createdAt, :updatedAt, :deliverWithinMs)
    ON CONFLICT (name) DO NOTHING`,

  writeTarget: `
    UPDATE targets SET url = :url, protocol = :protocol, signature_scheme = :signatureScheme, signing_secret = :signingSecret,
      token_hash = :tokenHash, rate_per_second = :ratePerSecond, burst = :burst, max_in_flight = :maxInFlight, updated_at = :updatedAt,
      deliver_within_ms = :deliverWithinMs
    WHERE name = :name`,

  /**
   * removeTarget: what it still has to deliver. Its scheduled messages are a
   * range of its own index; the ones delivering (a few in flight at most)
   * are read from the pool-wide index, which holds the target too.
   */
  countTargetPending: `
    SELECT (SELECT count(*) FROM messages INDEXED BY messages_target_status_due
        WHERE target = :name AND status = 'scheduled' AND status IN ${TARGET_INDEXED_SQL})
      + (SELECT count(*) FROM messages INDEXED BY messages_status_due WHERE status = 'delivering' AND target = :name) AS count`,

  countTargetSchedules: `SELECT count(*) AS count FROM schedules INDEXED BY schedules_target WHERE target = :name`,

  removeTarget: `DELETE FROM targets WHERE name = :name`,
} as const;

const POST_COLUMNS = 'id, message_id, username, message, posted_at, scheduled_at';

export const mainStatements = {
  /** A redelivery (its message id is there) changes nothing: the caller reads the stored post then. */
  insertPost: `
    INSERT INTO posts (id, message_id, username, message, posted_at, scheduled_at)
    VALUES (:id, :messageId, :username, :message, :postedAt, :scheduledAt)
    ON CONFLICT (message_id) WHERE message_id IS NOT NULL DO NOTHING`,

  getPostByMessageId: `SELECT ${POST_COLUMNS} FROM posts WHERE message_id = :messageId`,

  listPosts: `SELECT ${POST_COLUMNS} FROM posts ORDER BY posted_at DESC, id DESC LIMIT :limit`,

  listPostsBefore: `
    SELECT ${POST_COLUMNS} FROM posts
    WHERE (posted_at, id) < (:beforePostedAt, :beforeId)
    ORDER BY posted_at DESC, id DESC LIMIT :limit`,

  countPosts: `SELECT count(*) AS count FROM posts`,
} as const;
