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
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const dispatcherMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'messages',
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

      -- list by status in due order; countByStatus reads only this index
      CREATE INDEX messages_status_due ON messages (status, due_at, id);

      -- claimDue: the unclaimed scheduled messages, in due order. Partial, so
      -- claimed and finished messages cost the refill nothing.
      CREATE INDEX messages_unclaimed_due ON messages (due_at, id)
        WHERE status = 'scheduled' AND lease_owner IS NULL;

      -- claimDue (expired leases), renewLeases, releaseClaims: only claimed rows are indexed
      CREATE INDEX messages_lease_expiry ON messages (lease_expires_at) WHERE lease_owner IS NOT NULL;
      CREATE INDEX messages_lease_owner ON messages (lease_owner) WHERE lease_owner IS NOT NULL;

      CREATE UNIQUE INDEX messages_idempotency_key ON messages (idempotency_key)
        WHERE idempotency_key IS NOT NULL;

      -- purgeDelivered
      CREATE INDEX messages_delivered_at ON messages (delivered_at) WHERE status = 'delivered';
    `,
  },
];

export const mainMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'posts',
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
