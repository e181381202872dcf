import type { Migration } from './migrate.ts';

/**
 * The PostgreSQL schemas, as numbered migrations. APPEND-ONLY: a migration
 * that has shipped is never edited or removed; a change is a new migration
 * with the next number. Applied by ./migrate.ts.
 *
 * Tables, columns and index names match the SQLite stores
 * (../sqlite/migrations.ts), with these differences:
 * - Times are epoch milliseconds in `bigint` (see ./connection.ts).
 * - Ids are `text COLLATE "C"`: byte order, like SQLite's BINARY, so the
 *   (dueAt, id) keyset cursors page identically on both stores, whatever the
 *   database's collation.
 * - Each store records its versions in its own table (dispatcher_migrations,
 *   main_migrations, instead of SQLite's one `migrations` per file), because
 *   a dispatcher and a main server may share one PostgreSQL database.
 */

export const dispatcherMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'messages',
    breaking: true,
    sql: `
      CREATE TABLE messages (
        id text COLLATE "C" NOT NULL PRIMARY KEY,
        username text NOT NULL,
        message text NOT NULL,
        scheduled_at bigint NOT NULL,
        due_at bigint NOT NULL,
        status text NOT NULL CHECK (status IN ('scheduled', 'delivering', 'delivered', 'dead')),
        attempts integer NOT NULL DEFAULT 0,
        version integer NOT NULL DEFAULT 1,
        idempotency_key text,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        delivered_at bigint,
        last_error text,
        lease_owner text,
        lease_expires_at bigint
      );

      -- list by status in due order; countByStatus
      CREATE INDEX messages_status_due ON messages (status, due_at, id);

      -- claimDue: the unclaimed scheduled messages, in due order. Partial, so
      -- claimed and finished messages cost the refill nothing, and
      -- FOR UPDATE SKIP LOCKED walks it past rows another dispatcher is claiming.
      CREATE INDEX messages_unclaimed_due ON messages (due_at, id)
        WHERE status = 'scheduled' AND lease_owner IS NULL;

      -- claimDue (expired leases), renewLeases (in id-ordered chunks), releaseClaims: only claimed rows are indexed
      CREATE INDEX messages_lease_expiry ON messages (lease_expires_at) WHERE lease_owner IS NOT NULL;
      CREATE INDEX messages_lease_owner ON messages (lease_owner, id) WHERE lease_owner IS NOT NULL;

      -- Not partial (NULLs never conflict anyway), so INSERT ... ON CONFLICT (idempotency_key) infers it.
      CREATE UNIQUE INDEX messages_idempotency_key ON messages (idempotency_key);

      -- purgeDelivered
      CREATE INDEX messages_delivered_at ON messages (delivered_at) WHERE status = 'delivered';
    `,
  },
  {
    version: 2,
    name: 'one lease per owner',
    breaking: true,
    sql: `
      -- A lease per owner instead of per message: renewing is one row, however
      -- many messages the owner holds. Renewing 20,000 claimed rows took 100
      -- statements every lease/3, which held the engine's connections and the
      -- rows' locks while startDelivery waited (lateness p50 100 ms at 4,000
      -- messages/s). A message's lease is its owner's (messages.lease_owner
      -- joined here); messages.lease_expires_at is no longer used.
      CREATE TABLE owners (
        owner text NOT NULL PRIMARY KEY,
        lease_expires_at bigint NOT NULL
      );
      INSERT INTO owners (owner, lease_expires_at)
        SELECT lease_owner, max(lease_expires_at) FROM messages WHERE lease_owner IS NOT NULL GROUP BY lease_owner;

      -- an expired owner's claims in due order (claimDue)
      DROP INDEX messages_lease_expiry;
      CREATE INDEX messages_owner_due ON messages (lease_owner, due_at, id) WHERE lease_owner IS NOT NULL;
    `,
  },
  {
    version: 3,
    name: 'message counts',
    breaking: false,
    sql: `
      -- countByStatus without counting, as on SQLite (its migration 2): a
      -- count(*) GROUP BY read every message on every /metrics scrape.
      -- Unlike SQLite, several dispatchers write here at once, so:
      -- - the counts are kept by a statement-level trigger over the
      --   statement's transition tables (one run per statement, not per row),
      --   so every writer counts, whatever its version or statement;
      -- - each connection adds to its own slot (backend pid mod 16) and a
      --   read sums the slots, so writers do not queue on four hot rows;
      -- - a statement that changes no status (claims, renewals) writes nothing.
      -- Measured here: ~20 us of server time per statement plus ~0.3 us per
      -- row (inserting 100,000 rows 500 at a time: 190-196 ms without,
      -- 213-234 ms with); the engine writes in batches, so per message it is
      -- well under a microsecond.
      -- Not breaking: a psched that does not know it still counts with count(*).
      LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE; -- writers wait; the counts start exact

      CREATE TABLE message_counts (
        status text NOT NULL,
        slot smallint NOT NULL,
        count bigint NOT NULL,
        PRIMARY KEY (status, slot)
      );
      INSERT INTO message_counts (status, slot, count)
        SELECT status, 0, count(*) FROM messages GROUP BY status;

      CREATE FUNCTION count_message_statuses() RETURNS trigger LANGUAGE plpgsql
      SET search_path FROM CURRENT AS $$
      BEGIN
        -- each branch names only the transition tables its event defines
        IF TG_OP = 'INSERT' THEN
          INSERT INTO message_counts AS c (status, slot, count)
            SELECT status, pg_backend_pid() % 16, count(*) FROM new_rows GROUP BY status
            ON CONFLICT (status, slot) DO UPDATE SET count = c.count + excluded.count;
        ELSIF TG_OP = 'DELETE' THEN
          INSERT INTO message_counts AS c (status, slot, count)
            SELECT status, pg_backend_pid() % 16, -count(*) FROM old_rows GROUP BY status
            ON CONFLICT (status, slot) DO UPDATE SET count = c.count + excluded.count;
        ELSE
          INSERT INTO message_counts AS c (status, slot, count)
            SELECT status, pg_backend_pid() % 16, sum(change) FROM (
              SELECT status, 1 AS change FROM new_rows
              UNION ALL
              SELECT status, -1 FROM old_rows
            ) AS changes GROUP BY status HAVING sum(change) <> 0
            ON CONFLICT (status, slot) DO UPDATE SET count = c.count + excluded.count;
        END IF;
        RETURN NULL;
      END $$;

      CREATE TRIGGER messages_count_inserts AFTER INSERT ON messages
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_message_statuses();
      CREATE TRIGGER messages_count_updates AFTER UPDATE ON messages
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_message_statuses();
      CREATE TRIGGER messages_count_deletes AFTER DELETE ON messages
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_message_statuses();
    `,
  },
  {
    version: 4,
    name: 'delivery attempts',
    breaking: false,
    sql: `
      -- One row per finished delivery attempt: the console's attempt history,
      -- as on SQLite (../sqlite/migrations.ts, version 4). Written by the
      -- statements that record outcomes (a CTE of markDelivered, markRetry,
      -- markDead: no extra round trip), deleted with its message (remove,
      -- purgeDelivered). No foreign key: the delete is explicit, as on SQLite,
      -- and the hot insert checks nothing more.
      CREATE TABLE delivery_attempts (
        message_id text COLLATE "C" NOT NULL,
        finished_at bigint NOT NULL,
        attempt integer NOT NULL,
        started_at bigint NOT NULL,
        outcome text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead')),
        http_status integer,
        error text,
        PRIMARY KEY (message_id, finished_at, attempt)
      );
    `,
  },
  {
    version: 5,
    name: 'schedules',
    breaking: false,
    sql: `
      -- Recurring messages (issue 11). Additive: an older psched ignores the table.
      CREATE TABLE schedules (
        id text COLLATE "C" NOT NULL PRIMARY KEY,
        username text NOT NULL,
        message text NOT NULL,
        cron text,
        every_ms bigint,
        time_zone text NOT NULL,
        start_at bigint,
        end_at bigint,
        max_occurrences bigint,
        dst_gap text NOT NULL CHECK (dst_gap IN ('shift', 'skip')),
        dst_overlap text NOT NULL CHECK (dst_overlap IN ('first', 'last', 'both')),
        catch_up text NOT NULL CHECK (catch_up IN ('latest', 'all', 'none')),
        catch_up_max integer NOT NULL,
        paused boolean NOT NULL DEFAULT false,
        next_fire_at bigint,
        occurrences bigint NOT NULL DEFAULT 0,
        last_fire_at bigint,
        idempotency_key text,
        version integer NOT NULL DEFAULT 1,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        CHECK ((cron IS NULL) <> (every_ms IS NULL))
      );

      -- materializeDue (FOR UPDATE SKIP LOCKED walks it): active schedules in fire order
      CREATE INDEX schedules_due ON schedules (next_fire_at, id) WHERE NOT paused AND next_fire_at IS NOT NULL;

      CREATE UNIQUE INDEX schedules_idempotency_key ON schedules (idempotency_key);
    `,
  },
  {
    version: 6,
    name: 'targets',
    // an older psched would deliver every target's messages to its one --main-url
    breaking: true,
    sql: `
      -- Main servers as named delivery targets (issue 12), as on SQLite
      -- (../sqlite/migrations.ts, version 6). A constant default rewrites no rows.
      ALTER TABLE messages ADD COLUMN target text COLLATE "C" NOT NULL DEFAULT 'default';
      ALTER TABLE schedules ADD COLUMN target text COLLATE "C" NOT NULL DEFAULT 'default';

      -- Idempotency keys are a target's own; not partial, so ON CONFLICT (target, idempotency_key) infers them.
      DROP INDEX messages_idempotency_key;
      CREATE UNIQUE INDEX messages_idempotency_key ON messages (target, idempotency_key);
      DROP INDEX schedules_idempotency_key;
      CREATE UNIQUE INDEX schedules_idempotency_key ON schedules (target, idempotency_key);

      -- a target's lists in due order, removeTarget's count
      CREATE INDEX messages_target_status_due ON messages (target, status, due_at, id);
      CREATE INDEX schedules_target ON schedules (target, id);

      CREATE TABLE targets (
        name text COLLATE "C" NOT NULL PRIMARY KEY,
        url text NOT NULL,
        protocol text NOT NULL CHECK (protocol IN ('json', 'legacy')),
        signature_scheme text NOT NULL CHECK (signature_scheme IN ('psched', 'standard-webhooks')),
        signing_secret text,
        token_hash text,
        rate_per_second double precision,
        burst integer,
        max_in_flight integer,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL
      );
      CREATE UNIQUE INDEX targets_token_hash ON targets (token_hash);
    `,
  },
  {
    version: 7,
    name: 'target in the claim index',
    breaking: false,
    sql: `
      -- claimDue skipping a throttled target's backlog (flow control): the
      -- target is in the unclaimed index, so its rows are told apart there
      -- before any is locked. The same role as SQLite's migration 7.
      -- Additive: an older psched uses the index as before.
      DROP INDEX messages_unclaimed_due;
      CREATE INDEX messages_unclaimed_due ON messages (due_at, id) INCLUDE (target)
        WHERE status = 'scheduled' AND lease_owner IS NULL;
    `,
  },
  {
    version: 8,
    name: 'deliver-by',
    // an older psched would deliver a message past its deliver-by, and shows an expired one with a status it does not know
    breaking: false,
    sql: `
      -- Deliver-by (issue 12): a message may carry the latest time it is
      -- still worth delivering, a target a default window after the
      -- scheduled time; past it the message is not sent but set 'expired'.
      -- The counts' trigger counts the new status like any other.
      ALTER TABLE messages ADD COLUMN deliver_by bigint;
      ALTER TABLE targets ADD COLUMN deliver_within_ms bigint;
      -- NOT VALID: the new check holds for every write from now on, without
      -- reading the existing rows while this transaction locks the table;
      -- migration 9 checks those in a transaction of its own
      ALTER TABLE messages DROP CONSTRAINT messages_status_check;
      ALTER TABLE messages ADD CONSTRAINT messages_status_check
        CHECK (status IN ('scheduled', 'delivering', 'delivered', 'dead', 'expired')) NOT VALID;
    `,
  },
  {
    version: 9,
    name: 'deliver-by: validate the status check',
    breaking: false,
    sql: `
      -- Reads every row under a lock that lets reads and writes go on (SHARE
      -- UPDATE EXCLUSIVE), unlike migration 8's ALTERs: a long table delays
      -- no dispatcher. (SQLite has no migration 9: its rebuild checked every row.)
      ALTER TABLE messages VALIDATE CONSTRAINT messages_status_check;
    `,
  },
  {
    version: 10,
    name: 'shared rate buckets',
    breaking: false,
    sql: `
      -- A pool's flow control (issue 12): each rate-limited target's token
      -- bucket, shared by every dispatcher on the database, so the pool as a
      -- whole keeps to the rate whichever dispatcher holds the messages.
      -- \`granted\` is what the last take got (an UPSERT returns the row after
      -- it). Additive: an older psched splits the rate over the dispatchers.
      CREATE TABLE target_buckets (
        name text NOT NULL PRIMARY KEY,
        tokens double precision NOT NULL,
        refilled_at bigint NOT NULL,
        granted integer NOT NULL
      );
    `,
  },
  {
    version: 11,
    name: 'target index without deliveries',
    breaking: false,
    sql: `
      -- As ../sqlite/migrations.ts's 11: a target's index keeps only its
      -- scheduled, dead and expired messages (../rows.ts's
      -- TARGET_INDEXED_STATUSES), so the row versions a delivery writes
      -- (delivering, delivered) add no entry to it. Its delivering and
      -- delivered messages are read from messages_status_due, filtered by
      -- target. Additive for an older psched of the pool: its queries name
      -- no index. Building it locks the messages table against writes for
      -- as long as it takes (seconds for millions of rows).
      DROP INDEX messages_target_status_due;
      CREATE INDEX messages_target_status_due ON messages (target, status, due_at, id)
        WHERE status IN ('scheduled', 'dead', 'expired');
    `,
  },
];

export const mainMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'posts',
    breaking: true,
    sql: `
      CREATE TABLE posts (
        id text COLLATE "C" NOT NULL PRIMARY KEY,
        message_id text,
        username text NOT NULL,
        message text NOT NULL,
        posted_at bigint NOT NULL,
        scheduled_at bigint
      );

      -- a redelivered message finds its post (INSERT ... ON CONFLICT (message_id));
      -- legacy posts have none, and NULLs never conflict
      CREATE UNIQUE INDEX posts_message_id ON posts (message_id);

      -- the feed, newest first, keyset on (posted_at, id)
      CREATE INDEX posts_feed ON posts (posted_at, id);
    `,
  },
];
