/**
 * Every SQL statement the PostgreSQL stores run, by name. The names and jobs
 * match the SQLite stores (../sqlite/statements.ts); where SQLite loops over
 * rows, these take arrays (`unnest`) and do the whole batch in one statement.
 * Parameters are positional; each statement lists them in its `Params:` line.
 *
 * Wake-ups: statements that can leave a message unclaimed take a `wake`
 * boolean and a channel/payload, and call pg_notify in their own transaction,
 * so other dispatchers hear of the change exactly when it commits
 * (see ./wake.ts).
 */

const MESSAGE_COLUMNS = `id, username, message, scheduled_at, due_at, status, attempts, version,
  idempotency_key, created_at, updated_at, delivered_at, last_error, lease_owner, lease_expires_at`;

/** Qualified copy of MESSAGE_COLUMNS for statements that join. */
const M_COLUMNS = MESSAGE_COLUMNS.split(',').map((column) => `m.${column.trim()}`).join(', ');

export const dispatcherStatements = {
  /**
   * Params: $1 ids, $2 usernames, $3 messages, $4 scheduledAts, $5 idempotencyKeys,
   * $6 nows, $7 leaseOwners, $8 leaseExpiresAts (arrays, one element per message),
   * $9 wake, $10 channel, $11 payload.
   * Skips messages whose idempotency key exists (the caller fetches those) and
   * returns the ids it inserted. Later duplicates of a key within the arrays are skipped too.
   */
  insertMessages: `
    WITH inserted AS (
      INSERT INTO messages (id, username, message, scheduled_at, due_at, status, attempts, version,
        idempotency_key, created_at, updated_at, lease_owner, lease_expires_at)
      SELECT id, username, message, scheduled_at, scheduled_at, 'scheduled', 0, 1,
        idempotency_key, now, now, lease_owner, lease_expires_at
      FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::text[], $8::bigint[])
        AS t(id, username, message, scheduled_at, idempotency_key, now, lease_owner, lease_expires_at)
      ON CONFLICT (idempotency_key) DO NOTHING
      RETURNING id, lease_owner
    )
    SELECT id, CASE WHEN $9::boolean AND lease_owner IS NULL THEN pg_notify($10, $11) END AS woke
    FROM inserted`,

  /** Params: $1 id. */
  getMessage: `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = $1`,

  /** Params: $1 idempotency keys (array). */
  getMessagesByIdempotencyKeys: `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE idempotency_key = ANY($1::text[])`,

  /** Params: $1 id. */
  getStatus: `SELECT status FROM messages WHERE id = $1`,

  /**
   * Params: $1 statuses (array), $2 limit. One index range per status
   * (messages_status_due), merged: at most limit rows read per status.
   */
  listByStatus: `
    SELECT ${M_COLUMNS}
    FROM unnest($1::text[]) AS s(status)
    CROSS JOIN LATERAL (
      SELECT ${MESSAGE_COLUMNS} FROM messages
      WHERE status = s.status
      ORDER BY due_at, id LIMIT $2
    ) m
    ORDER BY m.due_at, m.id LIMIT $2`,

  /** Params: $1 statuses (array), $2 limit, $3 afterDueAt, $4 afterId. */
  listByStatusAfter: `
    SELECT ${M_COLUMNS}
    FROM unnest($1::text[]) AS s(status)
    CROSS JOIN LATERAL (
      SELECT ${MESSAGE_COLUMNS} FROM messages
      WHERE status = s.status AND (due_at, id) > ($3::bigint, $4::text)
      ORDER BY due_at, id LIMIT $2
    ) m
    ORDER BY m.due_at, m.id LIMIT $2`,

  /**
   * Params: $1 id, $2 now, $3 scheduledAt (or null), $4 message (or null),
   * $5 owner, $6 dueBefore, $7 leaseExpiresAt (the claim, or nulls), $8 wake, $9 channel, $10 payload.
   * A new scheduledAt also moves dueAt; the lease goes to $5 only when due by $6.
   */
  updateMessage: `
    WITH changed AS (
      UPDATE messages SET
        scheduled_at = coalesce($3::bigint, scheduled_at),
        due_at = coalesce($3::bigint, due_at),
        message = coalesce($4::text, message),
        version = version + 1,
        updated_at = $2,
        lease_owner = CASE WHEN coalesce($3::bigint, due_at) <= $6::bigint THEN $5::text END,
        lease_expires_at = CASE WHEN coalesce($3::bigint, due_at) <= $6::bigint THEN $7::bigint END
      WHERE id = $1 AND status = 'scheduled'
      RETURNING ${MESSAGE_COLUMNS}
    )
    SELECT *, CASE WHEN $8::boolean AND lease_owner IS NULL THEN pg_notify($9, $10) END AS woke FROM changed`,

  /** Params: $1 id. */
  removeMessage: `
    DELETE FROM messages WHERE id = $1 AND status IN ('scheduled', 'dead')
    RETURNING ${MESSAGE_COLUMNS}`,

  /** Params: $1 id, $2 now, $3 owner, $4 dueBefore, $5 leaseExpiresAt, $6 wake, $7 channel, $8 payload. */
  retryMessage: `
    WITH changed AS (
      UPDATE messages SET
        status = 'scheduled',
        due_at = $2,
        attempts = 0,
        version = version + 1,
        updated_at = $2,
        last_error = NULL,
        lease_owner = CASE WHEN $2 <= $4::bigint THEN $3::text END,
        lease_expires_at = CASE WHEN $2 <= $4::bigint THEN $5::bigint END
      WHERE id = $1 AND status = 'dead'
      RETURNING ${MESSAGE_COLUMNS}
    )
    SELECT *, CASE WHEN $6::boolean AND lease_owner IS NULL THEN pg_notify($7, $8) END AS woke FROM changed`,

  /**
   * Params: $1 owner, $2 dueBefore, $3 now, $4 leaseExpiresAt, $5 limit.
   * Candidates are the never-claimed messages (index messages_unclaimed_due)
   * and the claims whose owner stopped renewing (index messages_lease_expiry);
   * SKIP LOCKED passes over rows another dispatcher is claiming at this very
   * moment, so two dispatchers never get the same message. A dead owner's
   * in-flight delivery goes back to scheduled.
   *
   * Why `status = ANY ('{scheduled}')` and not `status = 'scheduled'`: with
   * the plain equality the planner prefers messages_status_due and filters
   * out lease_owner, reading every claimed message first (they are the
   * soonest due: 12 ms instead of 0.1 ms behind 50,000 claims). A one-element
   * array still proves the partial index's predicate, but leaves
   * messages_status_due unable to return rows in due_at order.
   */
  claimDue: `
    WITH unclaimed AS (
      SELECT id, due_at FROM messages
      WHERE status = ANY ('{scheduled}') AND lease_owner IS NULL AND due_at <= $2
      ORDER BY due_at, id LIMIT $5
      FOR UPDATE SKIP LOCKED
    ), expired AS (
      SELECT id, due_at FROM messages
      WHERE lease_owner IS NOT NULL AND lease_expires_at < $3
        AND status IN ('scheduled', 'delivering') AND due_at <= $2
      ORDER BY due_at, id LIMIT $5
      FOR UPDATE SKIP LOCKED
    ), chosen AS (
      SELECT id FROM (SELECT * FROM unclaimed UNION ALL SELECT * FROM expired) AS candidates
      ORDER BY due_at, id LIMIT $5
    )
    UPDATE messages m SET status = 'scheduled', lease_owner = $1, lease_expires_at = $4
    FROM chosen WHERE m.id = chosen.id
    RETURNING ${M_COLUMNS}`,

  /**
   * Params: $1 owner, $2 leaseExpiresAt, $3 after id ('' to start), $4 chunk size.
   * One chunk of the owner's claims in id order (index messages_lease_owner);
   * the caller repeats from `last` until a chunk comes back short.
   */
  renewLeases: `
    WITH chunk AS (
      SELECT id FROM messages WHERE lease_owner = $1 AND id > $3 ORDER BY id LIMIT $4
    ), renewed AS (
      UPDATE messages m SET lease_expires_at = $2
      FROM chunk WHERE m.id = chunk.id AND m.lease_owner = $1
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM chunk) AS scanned, (SELECT max(id) FROM chunk) AS last,
      (SELECT count(*) FROM renewed) AS renewed`,

  /** Params: $1 owner, $2 channel, $3 payload. Returns how many; wakes the others when any. */
  releaseClaims: `
    WITH released AS (
      UPDATE messages SET
        status = CASE WHEN status = 'delivering' THEN 'scheduled' ELSE status END,
        lease_owner = NULL,
        lease_expires_at = NULL
      WHERE lease_owner = $1
      RETURNING 1
    )
    SELECT count, CASE WHEN count > 0 THEN pg_notify($2, $3) END AS woke
    FROM (SELECT count(*) AS count FROM released) AS r`,

  /**
   * Params: $1 owner, $2 ids, $3 versions (arrays), $4 now.
   * Compare-and-set per (id, version); returns the rows that moved with their
   * position in the arrays.
   */
  startDelivery: `
    UPDATE messages m SET status = 'delivering', attempts = m.attempts + 1, updated_at = $4
    FROM unnest($2::text[], $3::integer[]) WITH ORDINALITY AS e(id, version, position)
    WHERE m.id = e.id AND m.version = e.version AND m.lease_owner = $1 AND m.status = 'scheduled'
    RETURNING ${M_COLUMNS}, e.position`,

  /** Params: $1 owner, $2 ids, $3 ats (arrays). */
  markDelivered: `
    UPDATE messages m SET status = 'delivered', delivered_at = r.at, updated_at = r.at, last_error = NULL,
      lease_owner = NULL, lease_expires_at = NULL
    FROM unnest($2::text[], $3::bigint[]) AS r(id, at)
    WHERE m.id = r.id AND m.lease_owner = $1 AND m.status = 'delivering'`,

  /** Params: $1 owner, $2 ids, $3 ats, $4 errors (arrays). Stays leased to the owner, which keeps it buffered. */
  markRetry: `
    UPDATE messages m SET status = 'scheduled', due_at = r.at, last_error = r.error
    FROM unnest($2::text[], $3::bigint[], $4::text[]) AS r(id, at, error)
    WHERE m.id = r.id AND m.lease_owner = $1 AND m.status = 'delivering'`,

  /** Params: $1 owner, $2 ids, $3 ats, $4 errors (arrays). */
  markDead: `
    UPDATE messages m SET status = 'dead', updated_at = r.at, last_error = r.error,
      lease_owner = NULL, lease_expires_at = NULL
    FROM unnest($2::text[], $3::bigint[], $4::text[]) AS r(id, at, error)
    WHERE m.id = r.id AND m.lease_owner = $1 AND m.status = 'delivering'`,

  /** Params: $1 limit. Most recently delivered first (index messages_delivered_at, read backwards). */
  listRecentlyDelivered: `
    SELECT ${MESSAGE_COLUMNS} FROM messages
    WHERE status = 'delivered'
    ORDER BY delivered_at DESC, id DESC LIMIT $1`,

  countByStatus: `SELECT status, count(*) AS count FROM messages GROUP BY status`,

  /** Params: $1 before. */
  purgeDelivered: `DELETE FROM messages WHERE status = 'delivered' AND delivered_at < $1`,
} as const;

const POST_COLUMNS = 'id, message_id, username, message, posted_at, scheduled_at';

export const mainStatements = {
  /**
   * Params: $1 ids, $2 messageIds, $3 usernames, $4 messages, $5 postedAts, $6 scheduledAts
   * (arrays, one element per post). Skips posts whose message id is known (the
   * caller fetches those) and returns the ids it inserted.
   */
  insertPost: `
    INSERT INTO posts (id, message_id, username, message, posted_at, scheduled_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
    ON CONFLICT (message_id) DO NOTHING
    RETURNING id`,

  /** Params: $1 messageId. */
  getPostByMessageId: `SELECT ${POST_COLUMNS} FROM posts WHERE message_id = $1`,

  /** Params: $1 limit. */
  listPosts: `SELECT ${POST_COLUMNS} FROM posts ORDER BY posted_at DESC, id DESC LIMIT $1`,

  /** Params: $1 limit, $2 beforePostedAt, $3 beforeId. */
  listPostsBefore: `
    SELECT ${POST_COLUMNS} FROM posts
    WHERE (posted_at, id) < ($2::bigint, $3::text)
    ORDER BY posted_at DESC, id DESC LIMIT $1`,

  countPosts: `SELECT count(*) AS count FROM posts`,
} as const;
