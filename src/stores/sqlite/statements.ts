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

import type { MultiRowSql } from './prepared.ts';

const MESSAGE_COLUMNS = `id, username, message, scheduled_at, due_at, status, attempts, version,
  idempotency_key, created_at, updated_at, delivered_at, last_error, lease_owner, lease_expires_at`;

export const dispatcherStatements = {
  insertMessages: {
    sql: `
      INSERT INTO messages (id, username, message, scheduled_at, due_at, status, attempts, version,
        idempotency_key, created_at, updated_at, lease_owner, lease_expires_at)
      VALUES {rows}`,
    row: `(:id, :username, :message, :scheduledAt, :scheduledAt, 'scheduled', 0, 1,
      :idempotencyKey, :now, :now, :leaseOwner, :leaseExpiresAt)`,
  } satisfies MultiRowSql,

  getMessage: `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = :id`,

  getMessages: { sql: `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id IN ({rows})`, row: ':id' } satisfies MultiRowSql,

  getMessageByIdempotencyKey: `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE idempotency_key = :idempotencyKey`,

  getStatus: `SELECT status FROM messages WHERE id = :id`,

  listByStatus: `
    SELECT ${MESSAGE_COLUMNS} FROM messages
    WHERE status = :status
    ORDER BY due_at, id LIMIT :limit`,

  listByStatusAfter: `
    SELECT ${MESSAGE_COLUMNS} FROM messages
    WHERE status = :status AND (due_at, id) > (:afterDueAt, :afterId)
    ORDER BY due_at, id LIMIT :limit`,

  /** Most recently delivered first, read backwards from the purge index. */
  listRecentlyDelivered: `
    SELECT ${MESSAGE_COLUMNS} FROM messages INDEXED BY messages_delivered_at
    WHERE status = 'delivered'
    ORDER BY delivered_at DESC, id DESC LIMIT :limit`,

  /** A new scheduledAt also moves dueAt; the lease goes to :owner only when due by :dueBefore. */
  updateMessage: `
    UPDATE messages SET
      scheduled_at = coalesce(:scheduledAt, scheduled_at),
      due_at = coalesce(:scheduledAt, due_at),
      message = coalesce(:message, message),
      version = version + 1,
      updated_at = :now,
      lease_owner = CASE WHEN coalesce(:scheduledAt, due_at) <= :dueBefore THEN :owner END,
      lease_expires_at = CASE WHEN coalesce(:scheduledAt, due_at) <= :dueBefore THEN :leaseExpiresAt END
    WHERE id = :id AND status = 'scheduled'
    RETURNING ${MESSAGE_COLUMNS}`,

  removeMessage: `
    DELETE FROM messages WHERE id = :id AND status IN ('scheduled', 'dead')
    RETURNING ${MESSAGE_COLUMNS}`,

  retryMessage: `
    UPDATE messages SET
      status = 'scheduled',
      due_at = :now,
      attempts = 0,
      version = version + 1,
      updated_at = :now,
      last_error = NULL,
      lease_owner = CASE WHEN :now <= :dueBefore THEN :owner END,
      lease_expires_at = CASE WHEN :now <= :dueBefore THEN :leaseExpiresAt END
    WHERE id = :id AND status = 'dead'
    RETURNING ${MESSAGE_COLUMNS}`,

  /** claimDue, part 1: unclaimed messages, read from the index alone. */
  findUnclaimedDue: `
    SELECT id, due_at, status FROM messages INDEXED BY messages_status_due
    WHERE status = 'scheduled' AND lease_owner IS NULL AND due_at <= :dueBefore
    ORDER BY due_at, id LIMIT :limit`,

  /** claimDue, part 2: claims whose owner stopped renewing. */
  findExpiredClaims: `
    SELECT id, due_at, status FROM messages INDEXED BY messages_lease
    WHERE lease_owner IS NOT NULL AND lease_expires_at < :now
      AND status IN ('scheduled', 'delivering') AND due_at <= :dueBefore
    ORDER BY due_at, id LIMIT :limit`,

  /** Leaves status alone: naming it in SET would rewrite its index entries (3x slower, measured). */
  claimMessages: {
    sql: `UPDATE messages SET lease_owner = :owner, lease_expires_at = :leaseExpiresAt WHERE id IN ({rows})`,
    row: ':id',
  } satisfies MultiRowSql,

  /** Expired claims; a dead owner's in-flight delivery goes back to scheduled. */
  reclaimMessages: {
    sql: `UPDATE messages SET status = 'scheduled', lease_owner = :owner, lease_expires_at = :leaseExpiresAt WHERE id IN ({rows})`,
    row: ':id',
  } satisfies MultiRowSql,

  /** One chunk of a renewal: leases not yet extended to :leaseExpiresAt. */
  renewLeases: `
    UPDATE messages SET lease_expires_at = :leaseExpiresAt
    WHERE id IN (
      SELECT id FROM messages INDEXED BY messages_lease
      WHERE lease_owner = :owner AND lease_expires_at < :leaseExpiresAt
      LIMIT :limit)`,

  /** releaseClaims, part 1: deliveries in flight go back to scheduled. */
  releaseDeliveries: `
    UPDATE messages SET status = 'scheduled', lease_owner = NULL, lease_expires_at = NULL
    WHERE lease_owner = :owner AND status = 'delivering'`,

  releaseClaims: `UPDATE messages SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = :owner`,

  /** The compare-and-set (version, owner, status) is checked on the rows read by getMessages first. */
  startDelivery: {
    sql: `UPDATE messages SET status = 'delivering', attempts = attempts + 1, updated_at = :now WHERE id IN ({rows})`,
    row: ':id',
  } satisfies MultiRowSql,

  markDelivered: {
    sql: `
      WITH outcome (id, at) AS (VALUES {rows})
      UPDATE messages SET status = 'delivered', delivered_at = outcome.at, updated_at = outcome.at, last_error = NULL,
        lease_owner = NULL, lease_expires_at = NULL
      FROM outcome
      WHERE messages.id = outcome.id AND messages.lease_owner = :owner AND messages.status = 'delivering'`,
    row: '(:id, :at)',
  } satisfies MultiRowSql,

  /** Stays leased to the owner, which keeps it buffered for the next attempt. */
  markRetry: {
    sql: `
      WITH outcome (id, at, error) AS (VALUES {rows})
      UPDATE messages SET status = 'scheduled', due_at = outcome.at, last_error = outcome.error
      FROM outcome
      WHERE messages.id = outcome.id AND messages.lease_owner = :owner AND messages.status = 'delivering'`,
    row: '(:id, :at, :error)',
  } satisfies MultiRowSql,

  markDead: {
    sql: `
      WITH outcome (id, at, error) AS (VALUES {rows})
      UPDATE messages SET status = 'dead', updated_at = outcome.at, last_error = outcome.error,
        lease_owner = NULL, lease_expires_at = NULL
      FROM outcome
      WHERE messages.id = outcome.id AND messages.lease_owner = :owner AND messages.status = 'delivering'`,
    row: '(:id, :at, :error)',
  } satisfies MultiRowSql,

  countByStatus: `SELECT status, count FROM message_counts`,

  /** Every call that changes how many messages a status has adds its net change here. */
  addToCount: `UPDATE message_counts SET count = count + :change WHERE status = :status`,

  /** One chunk of a purge. */
  purgeDelivered: `
    DELETE FROM messages
    WHERE id IN (
      SELECT id FROM messages INDEXED BY messages_delivered_at
      WHERE status = 'delivered' AND delivered_at < :before
      LIMIT :limit)`,
} as const;

const POST_COLUMNS = 'id, message_id, username, message, posted_at, scheduled_at';

export const mainStatements = {
  insertPost: `
    INSERT INTO posts (id, message_id, username, message, posted_at, scheduled_at)
    VALUES (:id, :messageId, :username, :message, :postedAt, :scheduledAt)`,

  getPostByMessageId: `SELECT ${POST_COLUMNS} FROM posts WHERE message_id = :messageId`,

  listPosts: `SELECT ${POST_COLUMNS} FROM posts ORDER BY posted_at DESC, id DESC LIMIT :limit`,

  listPostsBefore: `
    SELECT ${POST_COLUMNS} FROM posts
    WHERE (posted_at, id) < (:beforePostedAt, :beforeId)
    ORDER BY posted_at DESC, id DESC LIMIT :limit`,

  countPosts: `SELECT count(*) AS count FROM posts`,
} as const;
