import { SCHEDULE_COLUMNS, TARGET_COLUMNS, TARGET_INDEXED_SQL } from '../rows.ts';

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
 *
 * Lock order: every statement that changes several messages locks them in id
 * order first (`ORDER BY id FOR UPDATE` in a CTE, or a lookup per id of an
 * array the store sorts by id), then updates them, and multi-row inserts
 * insert in key order. A dispatcher runs its lease renewal,
 * startDelivery and finishDeliveries side by side on overlapping rows; locked
 * in whatever order the join produced, two of them deadlocked, PostgreSQL
 * aborted one after deadlock_timeout (1 s), and a failed renewal let live
 * claims expire (seen with 3 dispatchers and 6,000 messages: hundreds of
 * duplicate deliveries). Claims lock with SKIP LOCKED, which never waits.
 */

/**
 * A message's own columns. Leases are kept per owner (table owners,
 * migration 2): a row's lease_expires_at is its owner's, read with
 * LEASE_OF(owner column) or a join; messages.lease_expires_at is unused.
 */
const MESSAGE_COLUMNS = `id, username, message, scheduled_at, due_at, status, attempts, version,
  idempotency_key, created_at, updated_at, delivered_at, last_error, lease_owner, target, deliver_by`;

/** Qualified copy of MESSAGE_COLUMNS for statements that join. */
const M_COLUMNS = MESSAGE_COLUMNS.split(',').map((column) => `m.${column.trim()}`).join(', ');

/**
 * One message by id, if `condition` holds, locked: the body of a LATERAL
 * join over an array of ids. OFFSET 0 keeps the planner from merging it into
 * the outer query, so each id is a primary-key lookup whatever the planner
 * believes about the table; the array comes in id order, so the rows are
 * locked in id order (see "Lock order" above).
 */
const BY_ID = (id: string, condition: string) => `
  SELECT id FROM messages WHERE id = ${id} AND ${condition} OFFSET 0 FOR UPDATE`;

/** The lease of the owner in `ownerColumn`, as the statement's snapshot sees it. */
const LEASE_OF = (ownerColumn: string) => `(SELECT o.lease_expires_at FROM owners o WHERE o.owner = ${ownerColumn}) AS lease_expires_at`;

/**
 * Gives the claiming owner a lease when it has none (with the claim's expiry);
 * an existing one is left alone: claimDue and renewLeases extend it, and
 * updating the owner's one row from every insert would make concurrent
 * inserts of one dispatcher wait for each other's commits.
 */
const ENSURE_LEASE = (owner: string, leaseExpiresAt: string) => `
  INSERT INTO owners (owner, lease_expires_at) SELECT ${owner}::text, ${leaseExpiresAt}::bigint WHERE ${owner}::text IS NOT NULL
  ON CONFLICT (owner) DO NOTHING
  RETURNING lease_expires_at`;

/**
 * The attempt history rows of an outcome statement (a CTE named `recorded`
 * after `locked`): only the messages it locked, so an outcome that changes
 * nothing records nothing; in the statement's own transaction, no extra
 * round trip. Rows without an attempt number (callers that record none) are skipped.
 */
const RECORD_ATTEMPTS = (outcome: string, error: string) => `recorded AS (
      INSERT INTO delivery_attempts (message_id, finished_at, attempt, started_at, outcome, http_status, error)
      SELECT locked.id, locked.finished_at, locked.attempt, locked.started_at, '${outcome}', locked.http_status, ${error}
      FROM locked WHERE locked.attempt IS NOT NULL
      ON CONFLICT DO NOTHING
    )`;

/** takeTokens: the bucket's tokens refilled up to now (as the row was before this take), capped at the burst. */
const BUCKET_REFILLED = 'least($4::float8, b.tokens + greatest(0, $5::bigint - b.refilled_at) * $3::float8 / 1000.0)';
/** takeTokens: the whole tokens taken, at most the ones asked for. */
const BUCKET_GRANT = `least($2::integer, floor(${BUCKET_REFILLED})::integer)`;

/**
 * listFiltered and listTargetFiltered: a page per status of $1 (one index
 * range each), merged in (due_at, id) order after the cursor, `where`
 * narrowing each range; user and text are checked on the rows it yields.
 */
const filteredPage = (where: string) => `
    SELECT ${M_COLUMNS}, ${LEASE_OF('m.lease_owner')}
    FROM unnest($1::text[]) AS s(status)
    CROSS JOIN LATERAL (
      SELECT ${MESSAGE_COLUMNS} FROM messages
      WHERE ${where} AND (due_at, id) > ($3::bigint, $4::text) AND due_at >= $5::bigint AND due_at < $6::bigint
        AND ($7::text IS NULL OR username = $7::text)
        AND ($8::text IS NULL OR strpos(lower(message), lower($8::text)) > 0)
      ORDER BY due_at, id LIMIT $2
    ) m
    ORDER BY m.due_at, m.id LIMIT $2`;

export const dispatcherStatements = {
  /**
   * Params: $1 ids, $2 usernames, $3 messages, $4 scheduledAts, $5 idempotencyKeys,
   * $6 nows, $7 leaseOwners, $8 leaseExpiresAts (arrays, one element per message),
   * $9 wake, $10 channel, $11 payload, $12 targets, $13 deliverBys (arrays).
   * Skips messages whose idempotency key exists (the caller fetches those) and
   * returns the ids it inserted, with the lease their owner had before (null
   * when this statement gave it one). Later duplicates of a key within the
   * arrays are skipped too.
   */
  insertMessages: `
    WITH lease AS (
      INSERT INTO owners (owner, lease_expires_at)
      SELECT lease_owner, max(lease_expires_at)
      FROM unnest($7::text[], $8::bigint[]) AS c(lease_owner, lease_expires_at)
      WHERE lease_owner IS NOT NULL GROUP BY lease_owner
      ON CONFLICT (owner) DO NOTHING
    ), inserted AS (
      INSERT INTO messages (id, username, message, scheduled_at, due_at, status, attempts, version,
        idempotency_key, created_at, updated_at, lease_owner, target, deliver_by)
      SELECT id, username, message, scheduled_at, scheduled_at, 'scheduled', 0, 1,
        idempotency_key, now, now, lease_owner, target, deliver_by
      FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::text[], $12::text[], $13::bigint[])
        AS t(id, username, message, scheduled_at, idempotency_key, now, lease_owner, target, deliver_by)
      ORDER BY target, idempotency_key
      ON CONFLICT (target, idempotency_key) DO NOTHING
      RETURNING id, lease_owner
    )
    SELECT id, ${LEASE_OF('inserted.lease_owner')},
      CASE WHEN $9::boolean AND lease_owner IS NULL THEN pg_notify($10, $11) END AS woke
    FROM inserted`,

  /** Params: $1 id. */
  getMessage: `SELECT ${MESSAGE_COLUMNS}, ${LEASE_OF('m.lease_owner')} FROM messages m WHERE id = $1`,

  /** Params: $1 targets, $2 idempotency keys (arrays, pairwise: keys are a target's own). */
  getMessagesByIdempotencyKeys: `
    SELECT ${MESSAGE_COLUMNS}, ${LEASE_OF('m.lease_owner')} FROM messages m
    WHERE (target, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,

  /** Params: $1 id. */
  getStatus: `SELECT status FROM messages WHERE id = $1`,

  /**
   * Params: $1 statuses (array), $2 limit. One index range per status
   * (messages_status_due), merged: at most limit rows read per status.
   */
  listByStatus: `
    SELECT ${M_COLUMNS}, ${LEASE_OF('m.lease_owner')}
    FROM unnest($1::text[]) AS s(status)
    CROSS JOIN LATERAL (
      SELECT ${MESSAGE_COLUMNS} FROM messages
      WHERE status = s.status
      ORDER BY due_at, id LIMIT $2
    ) m
    ORDER BY m.due_at, m.id LIMIT $2`,

  /** Params: $1 statuses (array), $2 limit, $3 afterDueAt, $4 afterId. */
  listByStatusAfter: `
    SELECT ${M_COLUMNS}, ${LEASE_OF('m.lease_owner')}
    FROM unnest($1::text[]) AS s(status)
    CROSS JOIN LATERAL (
      SELECT ${MESSAGE_COLUMNS} FROM messages
      WHERE status = s.status AND (due_at, id) > ($3::bigint, $4::text)
      ORDER BY due_at, id LIMIT $2
    ) m
    ORDER BY m.due_at, m.id LIMIT $2`,

  /**
   * Params: $1 statuses (array), $2 limit, $3 afterDueAt, $4 afterId, $5 dueFrom,
   * $6 dueTo, $7 username (or null), $8 text (or null), $9 target (or null).
   * The console's filtered page: the cursor and due range bound each status's
   * index range; user and text are checked on the rows it yields (a scan
   * when they match few: an operator's query, not a hot path).
   */
  listFiltered: filteredPage('status = s.status AND ($9::text IS NULL OR target = $9::text)'),

  /**
   * listFiltered for one target ($9, not null) in statuses of
   * TARGET_INDEXED_STATUSES (../rows.ts): its own index range
   * (messages_target_status_due, migration 11). The status list is written
   * out: the planner uses a partial index only where the query implies its
   * condition, which a parameter never does.
   */
  listTargetFiltered: filteredPage(`target = $9::text AND status = s.status AND status IN ${TARGET_INDEXED_SQL}`),

  /**
   * Params: $1 limit, $2 beforeAt, $3 beforeId, $4 dueFrom, $5 dueTo, $6 username (or null), $7 text (or null), $8 target (or null).
   * listRecentlyDelivered with a cursor and filters: newest first.
   */
  listDeliveredFiltered: `
    SELECT ${MESSAGE_COLUMNS}, NULL::bigint AS lease_expires_at FROM messages
    WHERE status = 'delivered' AND (delivered_at, id) < ($2::bigint, $3::text)
      AND due_at >= $4::bigint AND due_at < $5::bigint
      AND ($6::text IS NULL OR username = $6::text)
      AND ($7::text IS NULL OR strpos(lower(message), lower($7::text)) > 0)
      AND ($8::text IS NULL OR target = $8::text)
    ORDER BY delivered_at DESC, id DESC LIMIT $1`,

  /** Params: $1 id. A message's attempt history, oldest first (the primary key's range). */
  listAttempts: `
    SELECT message_id, attempt, started_at, finished_at, outcome, http_status, error FROM delivery_attempts
    WHERE message_id = $1 ORDER BY finished_at, attempt`,

  /**
   * Params: $1 id, $2 now, $3 scheduledAt (or null), $4 message (or null),
   * $5 owner, $6 dueBefore, $7 leaseExpiresAt (the claim, or nulls), $8 wake, $9 channel, $10 payload,
   * $11 whether deliverBy changes, $12 the new deliverBy (or null).
   * A new scheduledAt also moves dueAt; the lease goes to $5 only when due by $6.
   */
  updateMessage: `
    WITH changed AS (
      UPDATE messages SET
        scheduled_at = coalesce($3::bigint, scheduled_at),
        due_at = coalesce($3::bigint, due_at),
        message = coalesce($4::text, message),
        deliver_by = CASE WHEN $11::boolean THEN $12::bigint ELSE deliver_by END,
        version = version + 1,
        updated_at = $2,
        lease_owner = CASE WHEN coalesce($3::bigint, due_at) <= $6::bigint THEN $5::text END
      WHERE id = $1 AND status = 'scheduled'
      RETURNING ${MESSAGE_COLUMNS}
    ), lease AS (${ENSURE_LEASE('(SELECT lease_owner FROM changed)', '$7')})
    SELECT changed.*,
      coalesce((SELECT lease_expires_at FROM lease), (SELECT o.lease_expires_at FROM owners o WHERE o.owner = changed.lease_owner)) AS lease_expires_at,
      CASE WHEN $8::boolean AND lease_owner IS NULL THEN pg_notify($9, $10) END AS woke
    FROM changed`,

  /** Params: $1 id. */
  removeMessage: `
    WITH removed AS (
      DELETE FROM messages WHERE id = $1 AND status IN ('scheduled', 'dead', 'expired')
      RETURNING ${MESSAGE_COLUMNS}
    ), history AS (
      DELETE FROM delivery_attempts a USING removed WHERE a.message_id = removed.id
    )
    SELECT removed.*, ${LEASE_OF('removed.lease_owner')} FROM removed`,

  /** Params: $1 id, $2 now, $3 owner, $4 dueBefore, $5 leaseExpiresAt, $6 wake, $7 channel, $8 payload, $9 deliverBy (or null). */
  retryMessage: `
    WITH changed AS (
      UPDATE messages SET
        status = 'scheduled',
        due_at = $2,
        attempts = 0,
        version = version + 1,
        updated_at = $2,
        last_error = NULL,
        deliver_by = $9::bigint,
        lease_owner = CASE WHEN $2 <= $4::bigint THEN $3::text END
      WHERE id = $1 AND status IN ('dead', 'expired')
      RETURNING ${MESSAGE_COLUMNS}
    ), lease AS (${ENSURE_LEASE('(SELECT lease_owner FROM changed)', '$5')})
    SELECT changed.*,
      coalesce((SELECT lease_expires_at FROM lease), (SELECT o.lease_expires_at FROM owners o WHERE o.owner = changed.lease_owner)) AS lease_expires_at,
      CASE WHEN $6::boolean AND lease_owner IS NULL THEN pg_notify($7, $8) END AS woke
    FROM changed`,

  /**
   * Params: $1 owner, $2 dueBefore, $3 now, $4 leaseExpiresAt, $5 limit, $6 channel, $7 payload.
   * Extends the claimer's own lease first (so it never counts as expired
   * itself), then takes the never-claimed messages (index
   * messages_unclaimed_due) and the claims of owners whose lease expired
   * (owners, then index messages_owner_due per expired owner: one per dead
   * process at most); SKIP LOCKED passes over rows another dispatcher is
   * claiming at this very moment, so two dispatchers never get the same
   * message. A dead owner's in-flight delivery goes back to scheduled.
   *
   * An owner never takes back its own messages, however late its renewal
   * ran: they are in its buffer or its pipeline (in flight, or awaiting
   * their write), and setting a delivering one back to scheduled would
   * deliver it twice and lose the first outcome.
   *
   * A claim that fills its limit wakes the others: more may be due than this
   * owner took (a dead owner's leftovers, a burst entering the horizon), and
   * they claim the rest side by side instead of leaving it all to one.
   *
   * Why `status = ANY ('{scheduled}')` and not `status = 'scheduled'`: with
   * the plain equality the planner prefers messages_status_due and filters
   * out lease_owner, reading every claimed message first (they are the
   * soonest due: 12 ms instead of 0.1 ms behind 50,000 claims). A one-element
   * array still proves the partial index's predicate, but leaves
   * messages_status_due unable to return rows in due_at order.
   */
  claimDue: `
    WITH lease AS (
      INSERT INTO owners (owner, lease_expires_at) VALUES ($1, $4)
      ON CONFLICT (owner) DO UPDATE SET lease_expires_at = greatest(owners.lease_expires_at, excluded.lease_expires_at)
      RETURNING lease_expires_at
    ), unclaimed AS (
      SELECT id, due_at FROM messages
      WHERE status = ANY ('{scheduled}') AND lease_owner IS NULL AND due_at <= $2 AND target <> ALL ($8::text[])
      ORDER BY due_at, id LIMIT $5
      FOR UPDATE SKIP LOCKED
    ), expired AS (
      SELECT held.id, held.due_at FROM owners o
      CROSS JOIN LATERAL (
        SELECT id, due_at FROM messages
        WHERE lease_owner = o.owner AND due_at <= $2 AND target <> ALL ($8::text[])
        ORDER BY due_at, id LIMIT $5
        FOR UPDATE SKIP LOCKED
      ) AS held
      WHERE o.lease_expires_at < $3 AND o.owner <> $1
    ), chosen AS (
      SELECT id FROM (SELECT * FROM unclaimed UNION ALL SELECT * FROM expired) AS candidates
      ORDER BY due_at, id LIMIT $5
    ), claimed AS (
      UPDATE messages m SET status = 'scheduled', lease_owner = $1
      FROM chosen WHERE m.id = chosen.id
      RETURNING ${M_COLUMNS}
    )
    SELECT claimed.*, (SELECT lease_expires_at FROM lease) AS lease_expires_at, wake.woke
    FROM claimed CROSS JOIN (SELECT CASE WHEN count(*) >= $5 THEN pg_notify($6, $7) END AS woke FROM claimed) AS wake`,

  /**
   * Params: $1 owner, $2 leaseExpiresAt. One row however many messages the
   * owner holds; returns how many it holds. Owners whose lease ran out a day
   * before and who hold nothing are forgotten (a dispatcher killed with
   * kill -9 leaves its row behind; a live one that stalls that long gets a
   * new row with its next renewal).
   */
  renewLeases: `
    WITH lease AS (
      INSERT INTO owners (owner, lease_expires_at) VALUES ($1, $2)
      ON CONFLICT (owner) DO UPDATE SET lease_expires_at = greatest(owners.lease_expires_at, excluded.lease_expires_at)
    ), forgotten AS (
      DELETE FROM owners o WHERE o.lease_expires_at < $2 - 86400000 AND o.owner <> $1
        AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.lease_owner = o.owner)
    )
    SELECT count(*) AS count FROM messages WHERE lease_owner = $1`,

  /** Params: $1 owner, $2 channel, $3 payload. Returns how many; wakes the others when any. */
  releaseClaims: `
    WITH locked AS (
      SELECT id FROM messages WHERE lease_owner = $1 ORDER BY id FOR UPDATE
    ), released AS (
      UPDATE messages m SET
        status = CASE WHEN m.status = 'delivering' THEN 'scheduled' ELSE m.status END,
        lease_owner = NULL
      FROM locked WHERE m.id = locked.id AND m.lease_owner = $1
      RETURNING 1
    ), lease AS (
      DELETE FROM owners WHERE owner = $1
    )
    SELECT count, CASE WHEN count > 0 THEN pg_notify($2, $3) END AS woke
    FROM (SELECT count(*) AS count FROM released) AS r`,

  /**
   * Params: $1 owner, $2 ids (in id order: the lock order), $3 versions,
   * $4 positions (arrays), $5 now.
   * Compare-and-set per (id, version); returns the rows that moved with their
   * position. Each id is looked up on its own (BY_ID): joined with the owner's
   * messages instead, the planner read all of them whenever it guessed their
   * number wrong (150 ms with 20,000 claimed, on a table not yet analyzed).
   */
  startDelivery: `
    WITH locked AS (
      SELECT m.id, e.position
      FROM unnest($2::text[], $3::integer[], $4::integer[]) AS e(id, version, position)
      CROSS JOIN LATERAL (${BY_ID('e.id', `version = e.version AND lease_owner = $1 AND status = 'scheduled'`)}) AS m
    )
    UPDATE messages m SET status = 'delivering', attempts = m.attempts + 1, updated_at = $5
    FROM locked WHERE m.id = locked.id
    RETURNING ${M_COLUMNS}, ${LEASE_OF('$1')}, locked.position`,

  /**
   * Params: $1 target, $2 want, $3 ratePerSecond, $4 burst, $5 now. takeTokens: refill by the
   * time since the last take (never negative), cap at the burst, take what is asked or the whole
   * tokens there are. ON CONFLICT locks the row, and every SET expression reads it as it was.
   */
  takeTokens: `
    INSERT INTO target_buckets AS b (name, tokens, refilled_at, granted)
    VALUES ($1, $4::float8 - least($2::integer, floor($4::float8)::integer), $5::bigint, least($2::integer, floor($4::float8)::integer))
    ON CONFLICT (name) DO UPDATE SET
      granted = ${BUCKET_GRANT},
      tokens = ${BUCKET_REFILLED} - ${BUCKET_GRANT},
      -- a taker a little behind adds nothing; one over a second behind means a clock was wrong and jumped: start from it
      refilled_at = CASE WHEN b.refilled_at - $5::bigint > 1000 THEN $5::bigint ELSE greatest(b.refilled_at, $5::bigint) END
    RETURNING granted, tokens`,

  /**
   * Params: $1 owner, $2 ids (in id order: the lock order), $3 versions, $4 now, $5 errors (arrays but $4).
   * Compare-and-set per (id, version), as startDelivery: messages past their
   * deliver-by, set expired unsent; returns the rows that moved.
   */
  expireMessages: `
    WITH locked AS (
      SELECT m.id, e.error
      FROM unnest($2::text[], $3::integer[], $5::text[]) AS e(id, version, error)
      CROSS JOIN LATERAL (${BY_ID('e.id', `version = e.version AND lease_owner = $1 AND status = 'scheduled'`)}) AS m
    )
    UPDATE messages m SET status = 'expired', updated_at = $4, last_error = locked.error, lease_owner = NULL
    FROM locked WHERE m.id = locked.id
    RETURNING ${M_COLUMNS}, NULL::bigint AS lease_expires_at`,

  /**
   * Params: $1 owner, $2 ids (in id order), $3 ats, then the attempts
   * (ATTEMPT_ARRAYS: $4 numbers, $5 startedAts, $6 finishedAts, $7 httpStatuses; null number: none) (arrays).
   */
  markDelivered: `
    WITH locked AS (
      SELECT m.id, r.at, r.attempt, r.started_at, r.finished_at, r.http_status
      FROM unnest($2::text[], $3::bigint[], $4::integer[], $5::bigint[], $6::bigint[], $7::integer[]) AS r(id, at, attempt, started_at, finished_at, http_status)
      CROSS JOIN LATERAL (${BY_ID('r.id', `lease_owner = $1 AND status = 'delivering'`)}) AS m
    ), ${RECORD_ATTEMPTS('delivered', 'NULL::text')}
    UPDATE messages m SET status = 'delivered', delivered_at = locked.at, updated_at = locked.at, last_error = NULL,
      lease_owner = NULL
    FROM locked WHERE m.id = locked.id`,

  /**
   * Params: $1 owner, $2 ids (in id order), $3 ats, $4 errors, $5 releases, then the attempts
   * ($6 numbers, $7 startedAts, $8 finishedAts, $9 httpStatuses) (arrays).
   * Stays leased to the owner, which keeps it buffered, unless released (due beyond its horizon).
   */
  markRetry: `
    WITH locked AS (
      SELECT m.id, r.at, r.error, r.release, r.attempt, r.started_at, r.finished_at, r.http_status
      FROM unnest($2::text[], $3::bigint[], $4::text[], $5::boolean[], $6::integer[], $7::bigint[], $8::bigint[], $9::integer[])
        AS r(id, at, error, release, attempt, started_at, finished_at, http_status)
      CROSS JOIN LATERAL (${BY_ID('r.id', `lease_owner = $1 AND status = 'delivering'`)}) AS m
    ), ${RECORD_ATTEMPTS('retry', 'locked.error')}
    UPDATE messages m SET status = 'scheduled', due_at = locked.at, last_error = locked.error,
      lease_owner = CASE WHEN locked.release THEN NULL ELSE m.lease_owner END
    FROM locked WHERE m.id = locked.id`,

  /**
   * Params: $1 owner, $2 ids (in id order), $3 ats, $4 errors, then the attempts
   * ($5 numbers, $6 startedAts, $7 finishedAts, $8 httpStatuses) (arrays).
   */
  markDead: `
    WITH locked AS (
      SELECT m.id, r.at, r.error, r.attempt, r.started_at, r.finished_at, r.http_status
      FROM unnest($2::text[], $3::bigint[], $4::text[], $5::integer[], $6::bigint[], $7::bigint[], $8::integer[])
        AS r(id, at, error, attempt, started_at, finished_at, http_status)
      CROSS JOIN LATERAL (${BY_ID('r.id', `lease_owner = $1 AND status = 'delivering'`)}) AS m
    ), ${RECORD_ATTEMPTS('dead', 'locked.error')}
    UPDATE messages m SET status = 'dead', updated_at = locked.at, last_error = locked.error,
      lease_owner = NULL
    FROM locked WHERE m.id = locked.id`,

  /** Params: $1 owner, $2 ids (in id order), $3 ats, $4 errors (arrays). Started but never sent: the attempt counted was not made. */
  markExpiredUnsent: `
    WITH locked AS (
      SELECT m.id, r.at, r.error
      FROM unnest($2::text[], $3::bigint[], $4::text[]) AS r(id, at, error)
      CROSS JOIN LATERAL (${BY_ID('r.id', `lease_owner = $1 AND status = 'delivering'`)}) AS m
    )
    UPDATE messages m SET status = 'expired', attempts = greatest(0, m.attempts - 1), updated_at = locked.at, last_error = locked.error,
      lease_owner = NULL
    FROM locked WHERE m.id = locked.id`,

  /** Params: $1 limit. Most recently delivered first (index messages_delivered_at, read backwards). */
  listRecentlyDelivered: `
    SELECT ${MESSAGE_COLUMNS}, NULL::bigint AS lease_expires_at FROM messages
    WHERE status = 'delivered'
    ORDER BY delivered_at DESC, id DESC LIMIT $1`,

  countByStatus: `SELECT status, sum(count)::bigint AS count FROM message_counts GROUP BY status`,

  countLiveOwners: `SELECT count(*)::int AS count FROM owners WHERE lease_expires_at >= $1`,

  /** Params: $1 before. Returns how many messages; their attempt history goes with them. */
  purgeDelivered: `
    WITH purged AS (
      DELETE FROM messages WHERE status = 'delivered' AND delivered_at < $1
      RETURNING id
    ), history AS (
      DELETE FROM delivery_attempts a USING purged WHERE a.message_id = purged.id
    )
    SELECT count(*) AS count FROM purged`,

  // ---- schedules (migration 5) ----------------------------------------------

  /** Params: $1..$22 the columns in SCHEDULE_COLUMNS order. Returns nothing when the target's idempotency key exists. */
  insertSchedule: `
    INSERT INTO schedules (${SCHEDULE_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
    ON CONFLICT (target, idempotency_key) DO NOTHING
    RETURNING id`,

  /** Params: $1 id. */
  getSchedule: `SELECT ${SCHEDULE_COLUMNS} FROM schedules WHERE id = $1`,

  /** Params: $1 id. The row locked for a change (updateSchedule). */
  lockSchedule: `SELECT ${SCHEDULE_COLUMNS} FROM schedules WHERE id = $1 FOR UPDATE`,

  /** Params: $1 idempotency key, $2 target. */
  getScheduleByIdempotencyKey: `SELECT ${SCHEDULE_COLUMNS} FROM schedules WHERE idempotency_key = $1 AND target = $2`,

  /** Params: $1 limit. */
  listSchedules: `SELECT ${SCHEDULE_COLUMNS} FROM schedules ORDER BY id LIMIT $1`,

  /** Params: $1 limit, $2 afterId. */
  listSchedulesAfter: `SELECT ${SCHEDULE_COLUMNS} FROM schedules WHERE id > $2 ORDER BY id LIMIT $1`,

  /** Params: $1 limit, $2 afterId ('' for the first page), $3 target. One target's schedules (index schedules_target). */
  listTargetSchedules: `SELECT ${SCHEDULE_COLUMNS} FROM schedules WHERE target = $3 AND id > $2 ORDER BY id LIMIT $1`,

  /**
   * Params: $1 id, $2 message, $3 cron, $4 everyMs, $5 timeZone, $6 startAt, $7 endAt, $8 maxOccurrences,
   * $9 dstGap, $10 dstOverlap, $11 catchUp, $12 catchUpMax, $13 paused, $14 nextFireAt, $15 occurrences,
   * $16 lastFireAt, $17 version, $18 updatedAt.
   */
  writeSchedule: `
    UPDATE schedules SET message = $2, cron = $3, every_ms = $4, time_zone = $5, start_at = $6, end_at = $7,
      max_occurrences = $8, dst_gap = $9, dst_overlap = $10, catch_up = $11, catch_up_max = $12, paused = $13,
      next_fire_at = $14, occurrences = $15, last_fire_at = $16, version = $17, updated_at = $18
    WHERE id = $1`,

  /** Params: $1 id. */
  removeSchedule: `DELETE FROM schedules WHERE id = $1 RETURNING id`,

  /** Params: $1 ids (array). Occurrences withdrawn by a schedule change, unless their delivery has begun. */
  cancelOccurrences: `DELETE FROM messages WHERE id = ANY($1::text[]) AND status = 'scheduled'`,

  /** Params: $1 dueBefore. Whether any active schedule is due: one round trip, no transaction, on the materialiser's idle runs. */
  anyDueSchedule: `SELECT EXISTS (SELECT 1 FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= $1) AS due`,

  /**
   * Params: $1 dueBefore, $2 limit. Active schedules due, earliest first,
   * locked: SKIP LOCKED passes over the ones another dispatcher is
   * materialising at this moment, so the pool shares the work and no two
   * plan the same schedule at once.
   */
  findDueSchedules: `
    SELECT ${SCHEDULE_COLUMNS} FROM schedules
    WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= $1
    ORDER BY next_fire_at, id LIMIT $2
    FOR UPDATE SKIP LOCKED`,

  /**
   * Params: $1 ids, $2 usernames, $3 messages, $4 scheduledAts, $6 targets (arrays), $5 now.
   * Occurrences, unclaimed; an id already there is skipped. Returns the ids inserted.
   */
  insertOccurrences: `
    INSERT INTO messages (id, username, message, scheduled_at, due_at, status, attempts, version,
      idempotency_key, created_at, updated_at, lease_owner, target)
    SELECT id, username, message, scheduled_at, scheduled_at, 'scheduled', 0, 1, NULL, $5, $5, NULL, target
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $6::text[]) AS t(id, username, message, scheduled_at, target)
    ORDER BY id
    ON CONFLICT (id) DO NOTHING
    RETURNING id`,

  /** Params: $1 ids, $2 nextFireAts, $3 lastFireAts, $4 occurrences, $5 versions (arrays), $6 now. */
  advanceSchedules: `
    UPDATE schedules s SET next_fire_at = a.next_fire_at, last_fire_at = a.last_fire_at, occurrences = a.occurrences,
      version = a.version, updated_at = $6
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::integer[]) AS a(id, next_fire_at, last_fire_at, occurrences, version)
    WHERE s.id = a.id`,

  // ---- targets (migration 6) ------------------------------------------------

  listTargets: `SELECT ${TARGET_COLUMNS} FROM targets ORDER BY name`,

  /** Params: $1 name. */
  getTarget: `SELECT ${TARGET_COLUMNS} FROM targets WHERE name = $1`,

  /** Params: $1 name. The row locked for a change or a removal. */
  lockTarget: `SELECT ${TARGET_COLUMNS} FROM targets WHERE name = $1 FOR UPDATE`,

  /** Params: $1 token hash. */
  getTargetByTokenHash: `SELECT ${TARGET_COLUMNS} FROM targets WHERE token_hash = $1`,

  /** Params: $1..$11 the columns in TARGET_COLUMNS order. Returns nothing when the name exists. */
  insertTarget: `
    INSERT INTO targets (${TARGET_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT (name) DO NOTHING
    RETURNING name`,

  /**
   * Params: $1 name, $2 url, $3 protocol, $4 signatureScheme, $5 signingSecret, $6 tokenHash,
   * $7 ratePerSecond, $8 burst, $9 maxInFlight, $10 updatedAt, $11 deliverWithinMs.
   */
  writeTarget: `
    UPDATE targets SET url = $2, protocol = $3, signature_scheme = $4, signing_secret = $5, token_hash = $6,
      rate_per_second = $7, burst = $8, max_in_flight = $9, updated_at = $10, deliver_within_ms = $11
    WHERE name = $1`,

  /**
   * Params: $1 name. What it still has to deliver, and its schedules
   * (indexes messages_target_status_due for the scheduled ones,
   * messages_status_due for the few delivering, schedules_target); run with the
   * target's row locked. A message inserted by another transaction not yet
   * committed is not counted: it is dead at its delivery, its error naming
   * the target that is gone.
   */
  countTargetUse: `
    SELECT ((SELECT count(*) FROM messages WHERE target = $1 AND status = 'scheduled' AND status IN ${TARGET_INDEXED_SQL})
        + (SELECT count(*) FROM messages WHERE status = 'delivering' AND target = $1))::integer AS pending,
      (SELECT count(*) FROM schedules WHERE target = $1)::integer AS schedules`,

  /** Params: $1 name. */
  removeTarget: `DELETE FROM targets WHERE name = $1`,
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
      AS p(id, message_id, username, message, posted_at, scheduled_at)
    ORDER BY message_id
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
