/**
 * The SQLite schemas, as numbered migrations. APPEND-ONLY: a migration that
 * has shipped is never edited or removed (databases in the field have already
 * applied it); a change is a new migration with the next number.
 * Applied by ./migrate.ts.
 *
 * Times are epoch milliseconds (INTEGER). Ids are UUIDv7 text: time-ordered,
 * so a WITHOUT ROWID table keyed by them appends at the right edge of one
 * B-tree (inserting 100k rows took ~360 ms against ~950 ms with random UUIDs).
 */
import type { Migration } from '../migration.ts';

export type { Migration };

export const dispatcherMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'messages',
    breaking: true,
    sql: `
      CREATE TABLE messages (
        id TEXT NOT NULL PRIMARY KEY,
        username TEXT NOT NULL,
        message TEXT NOT NULL,
        scheduled_at INTEGER NOT NULL,
        due_at INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('scheduled', 'delivering', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        version INTEGER NOT NULL DEFAULT 1,
        idempotency_key TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        delivered_at INTEGER,
        last_error TEXT,
        lease_owner TEXT,
        lease_expires_at INTEGER
      ) WITHOUT ROWID;

      -- list by status in due order; countByStatus reads only this index. claimDue
      -- finds unclaimed messages here too: lease_owner in the index lets it step over
      -- claimed ones (at most the owners' buffers) without reading their rows. One
      -- index instead of a second, partial one for unclaimed rows makes each insert
      -- write one B-tree less (13-30% faster batch inserts, measured).
      CREATE INDEX messages_status_due ON messages (status, due_at, id, lease_owner);

      -- renewLeases, releaseClaims (by owner) and expired claims (a scan of the
      -- claimed rows only: the index is partial)
      CREATE INDEX messages_lease ON messages (lease_owner, lease_expires_at) WHERE lease_owner IS NOT NULL;

      CREATE UNIQUE INDEX messages_idempotency_key ON messages (idempotency_key)
        WHERE idempotency_key IS NOT NULL;

      -- purgeDelivered
      CREATE INDEX messages_delivered_at ON messages (delivered_at) WHERE status = 'delivered';
    `,
  },
  {
    version: 2,
    name: 'message counts',
    breaking: true,
    sql: `
      -- countByStatus without counting: a count(*) over a million messages
      -- blocks the event loop ~150 ms, delaying every delivery due meanwhile.
      -- The store adds each call's net change in the same transaction (one
      -- statement per call, not a trigger per row: triggers cost inserts 25%).
      CREATE TABLE message_counts (
        status TEXT NOT NULL PRIMARY KEY,
        count INTEGER NOT NULL
      ) WITHOUT ROWID;
      INSERT INTO message_counts (status, count) VALUES ('scheduled', 0), ('delivering', 0), ('delivered', 0), ('dead', 0);
      UPDATE message_counts SET count = (SELECT count(*) FROM messages WHERE messages.status = message_counts.status);
    `,
  },
  {
    version: 3,
    name: 'one lease per owner',
    breaking: true,
    sql: `
      -- A lease per owner instead of per message: renewing is one row, however
      -- many messages the owner holds (renewing 20,000 claimed rows every
      -- lease/3 cost ~60 ms of event loop in 1,000-row chunks, each chunk a
      -- lateness spike). A message's lease is its owner's (messages.lease_owner
      -- joined here); messages.lease_expires_at is no longer used (dropping a
      -- column would rewrite the table).
      CREATE TABLE owners (
        owner TEXT NOT NULL PRIMARY KEY,
        lease_expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      INSERT INTO owners (owner, lease_expires_at)
        SELECT lease_owner, max(lease_expires_at) FROM messages WHERE lease_owner IS NOT NULL GROUP BY lease_owner;

      -- an owner's claims in due order: expired claims (a dead owner's), the
      -- count renewLeases reports, releaseClaims
      DROP INDEX messages_lease;
      CREATE INDEX messages_owner_due ON messages (lease_owner, due_at, id) WHERE lease_owner IS NOT NULL;
    `,
  },
  {
    version: 4,
    name: 'delivery attempts',
    breaking: false,
    sql: `
      -- One row per finished delivery attempt: the console's attempt history.
      -- Written by finishDeliveries in the transaction that records the
      -- outcomes (one multi-row INSERT more), deleted with its message (remove,
      -- purgeDelivered). Keyed by message first, so a message's history is one
      -- range and deleting it one range; finished_at before attempt because
      -- a retried dead letter counts its attempts from 1 again. Additive: an
      -- older psched ignores the table (its purge leaves the rows behind).
      CREATE TABLE delivery_attempts (
        message_id TEXT NOT NULL,
        finished_at INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead')),
        http_status INTEGER,
        error TEXT,
        PRIMARY KEY (message_id, finished_at, attempt)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 5,
    name: 'schedules',
    breaking: false,
    sql: `
      -- Recurring messages (issue 11). Additive: an older psched ignores the table.
      -- Occurrences become ordinary rows of messages, with ids derived from the
      -- schedule id and the instant, so messages needs no new column.
      CREATE TABLE schedules (
        id TEXT NOT NULL PRIMARY KEY,
        username TEXT NOT NULL,
        message TEXT NOT NULL,
        cron TEXT,
        every_ms INTEGER,
        time_zone TEXT NOT NULL,
        start_at INTEGER,
        end_at INTEGER,
        max_occurrences INTEGER,
        dst_gap TEXT NOT NULL CHECK (dst_gap IN ('shift', 'skip')),
        dst_overlap TEXT NOT NULL CHECK (dst_overlap IN ('first', 'last', 'both')),
        catch_up TEXT NOT NULL CHECK (catch_up IN ('latest', 'all', 'none')),
        catch_up_max INTEGER NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        next_fire_at INTEGER,
        occurrences INTEGER NOT NULL DEFAULT 0,
        last_fire_at INTEGER,
        idempotency_key TEXT,
        version INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK ((cron IS NULL) <> (every_ms IS NULL))
      ) WITHOUT ROWID;

      -- materializeDue: the active schedules in fire order; paused and ended ones are not indexed
      CREATE INDEX schedules_due ON schedules (next_fire_at, id) WHERE paused = 0 AND next_fire_at IS NOT NULL;

      CREATE UNIQUE INDEX schedules_idempotency_key ON schedules (idempotency_key) WHERE idempotency_key IS NOT NULL;
    `,
  },
  {
    version: 6,
    name: 'targets',
    // an older psched would deliver every target's messages to its one --main-url
    breaking: true,
    sql: `
      -- Main servers as named delivery targets (issue 12). The built-in one,
      -- 'default', is the configuration (--main-url and its flags) and has no
      -- row. Adding a column with a constant default rewrites nothing.
      ALTER TABLE messages ADD COLUMN target TEXT NOT NULL DEFAULT 'default';
      ALTER TABLE schedules ADD COLUMN target TEXT NOT NULL DEFAULT 'default';

      -- Idempotency keys are a target's own: two main servers using the same
      -- key must not get each other's message back.
      DROP INDEX messages_idempotency_key;
      CREATE UNIQUE INDEX messages_idempotency_key ON messages (target, idempotency_key) WHERE idempotency_key IS NOT NULL;
      DROP INDEX schedules_idempotency_key;
      CREATE UNIQUE INDEX schedules_idempotency_key ON schedules (target, idempotency_key) WHERE idempotency_key IS NOT NULL;

      -- A target's lists (every list its own token sees) in due order, and
      -- removeTarget's count of what it still has to deliver: one range each.
      -- One B-tree more per insert, the price of not scanning every target's rows.
      CREATE INDEX messages_target_status_due ON messages (target, status, due_at, id);
      CREATE INDEX schedules_target ON schedules (target, id);

      CREATE TABLE targets (
        name TEXT NOT NULL PRIMARY KEY,
        url TEXT NOT NULL,
        protocol TEXT NOT NULL CHECK (protocol IN ('json', 'legacy')),
        signature_scheme TEXT NOT NULL CHECK (signature_scheme IN ('psched', 'standard-webhooks')),
        signing_secret TEXT,
        token_hash TEXT,
        rate_per_second REAL,
        burst INTEGER,
        max_in_flight INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE UNIQUE INDEX targets_token_hash ON targets (token_hash) WHERE token_hash IS NOT NULL;
    `,
  },
  {
    version: 7,
    name: 'target in the claim index',
    breaking: false,
    sql: `
      -- claimDue skipping a throttled target's backlog (flow control) reads
      -- each message's target from the index instead of its row: the steps
      -- over that backlog, inside the write transaction, cost index entries
      -- only. Additive: an older psched uses the index as before.
      DROP INDEX messages_status_due;
      CREATE INDEX messages_status_due ON messages (status, due_at, id, lease_owner, target);
    `,
  },
  {
    version: 8,
    name: 'deliver-by',
    // an older psched would deliver a message past its deliver-by; it runs against the rebuilt table as before
    breaking: false,
    sql: `
      -- Deliver-by (issue 12): a message may carry the latest time it is
      -- still worth delivering, a target a default window after the
      -- scheduled time; past it the message is not sent but set 'expired'.
      -- SQLite cannot change a CHECK constraint: the table is rebuilt (its
      -- rows copied once, in this migration's transaction) with the new
      -- status allowed and the new column, and its indexes made again under
      -- the same names. The unused lease_expires_at (migration 3) goes.
      CREATE TABLE messages_rebuilt (
        id TEXT NOT NULL PRIMARY KEY,
        target TEXT NOT NULL DEFAULT 'default',
        username TEXT NOT NULL,
        message TEXT NOT NULL,
        scheduled_at INTEGER NOT NULL,
        due_at INTEGER NOT NULL,
        deliver_by INTEGER,
        status TEXT NOT NULL CHECK (status IN ('scheduled', 'delivering', 'delivered', 'dead', 'expired')),
        attempts INTEGER NOT NULL DEFAULT 0,
        version INTEGER NOT NULL DEFAULT 1,
        idempotency_key TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        delivered_at INTEGER,
        last_error TEXT,
        lease_owner TEXT
      ) WITHOUT ROWID;
      INSERT INTO messages_rebuilt (id, target, username, message, scheduled_at, due_at, status, attempts, version,
          idempotency_key, created_at, updated_at, delivered_at, last_error, lease_owner)
        SELECT id, target, username, message, scheduled_at, due_at, status, attempts, version,
          idempotency_key, created_at, updated_at, delivered_at, last_error, lease_owner
        FROM messages;
      DROP TABLE messages;
      ALTER TABLE messages_rebuilt RENAME TO messages;
      CREATE INDEX messages_status_due ON messages (status, due_at, id, lease_owner, target);
      CREATE INDEX messages_owner_due ON messages (lease_owner, due_at, id) WHERE lease_owner IS NOT NULL;
      CREATE UNIQUE INDEX messages_idempotency_key ON messages (target, idempotency_key) WHERE idempotency_key IS NOT NULL;
      CREATE INDEX messages_delivered_at ON messages (delivered_at) WHERE status = 'delivered';
      CREATE INDEX messages_target_status_due ON messages (target, status, due_at, id);
      INSERT INTO message_counts (status, count) VALUES ('expired', 0);

      ALTER TABLE targets ADD COLUMN deliver_within_ms INTEGER;
    `,
  },
  {
    // 10, as PostgreSQL's (its 9 validates migration 8's check; this store's rebuild needed none)
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
        name TEXT NOT NULL PRIMARY KEY,
        tokens REAL NOT NULL,
        refilled_at INTEGER NOT NULL,
        granted INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 11,
    name: 'target index without deliveries',
    breaking: false,
    sql: `
      -- A target's index (migration 6) loses the messages delivering and
      -- delivered: every delivery moved its entry twice, and with many
      -- targets each entry sat on a page of its own target's, so those moves
      -- were a third of the pages each delivery commit wrote (1,000 targets:
      -- 914k WAL writes for 80k deliveries, 627k without them, measured).
      -- A target's delivering messages (a few in flight) and delivered ones
      -- are read from the pool-wide indexes (messages_status_due holds the
      -- target; messages_delivered_at lists newest first). The condition is
      -- ../rows.ts's TARGET_INDEXED_STATUSES, written out: a migration's SQL never changes.
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
        id TEXT NOT NULL PRIMARY KEY,
        message_id TEXT,
        username TEXT NOT NULL,
        message TEXT NOT NULL,
        posted_at INTEGER NOT NULL,
        scheduled_at INTEGER
      ) WITHOUT ROWID;

      -- a redelivered message finds its post; legacy posts (no message id) are not indexed
      CREATE UNIQUE INDEX posts_message_id ON posts (message_id) WHERE message_id IS NOT NULL;

      -- the feed, newest first, keyset on (posted_at, id)
      CREATE INDEX posts_feed ON posts (posted_at, id);
    `,
  },
];
