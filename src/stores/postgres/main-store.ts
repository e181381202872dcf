import type pg from 'pg';
import type { FeedQuery, MainStore, NewPost, Post } from '../../main/store.ts';
import { checkSchemaName, createPool, defaultErrorLog } from './connection.ts';
import { runMigrations } from './migrate.ts';
import { mainMigrations } from './migrations.ts';
import { mainStatements as sql } from './statements.ts';

/**
 * The main server's feed on PostgreSQL. Every addPost is one INSERT ... ON
 * CONFLICT (message_id) DO NOTHING committed with synchronous_commit on, so a
 * resolved post is on disk. Concurrent deliveries commit on separate pooled
 * connections and PostgreSQL flushes their WAL together (its own group commit).
 */

export interface PostgresMainStoreOptions {
  /** Every table lives in this schema, created if missing. */
  schema?: string;
  /** Connections; deliveries from the whole dispatcher pool arrive here concurrently. */
  poolSize?: number;
  /** Where connection trouble is reported; defaults to stderr. */
  onError?: (message: string, err: unknown) => void;
}

/** Enough concurrent commits to share each WAL flush, few enough to leave room for the dispatchers' connections. */
const DEFAULT_POOL_SIZE = 8;

export async function openPostgresMainStore(url: string, options: PostgresMainStoreOptions = {}): Promise<MainStore> {
  const schema = options.schema === undefined ? undefined : checkSchemaName(options.schema);
  const pool = createPool(url, { schema, max: options.poolSize ?? DEFAULT_POOL_SIZE, onError: options.onError ?? defaultErrorLog });
  try {
    // Fail here, with pg's message, when the URL is wrong.
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end();
    throw err;
  }
  return new PostgresMainStore(pool, schema);
}

interface PostRow {
  id: string;
  message_id: string | null;
  username: string;
  message: string;
  posted_at: number;
  scheduled_at: number | null;
}

class PostgresMainStore implements MainStore {
  #pool: pg.Pool;
  #schema: string | undefined;
  #closed: Promise<void> | undefined;

  constructor(pool: pg.Pool, schema: string | undefined) {
    this.#pool = pool;
    this.#schema = schema;
  }

  migrate(): Promise<void> {
    return runMigrations(this.#pool, { table: 'main_migrations', schema: this.#schema, migrations: mainMigrations });
  }

  async addPost(post: NewPost): Promise<{ post: Post; created: boolean }> {
    // The post that holds this message id can be deleted between our INSERT and our look-up: then try again.
    for (let turn = 0; turn < 3; turn++) {
      const inserted = await this.#pool.query<PostRow>({
        name: 'insertPost',
        text: sql.insertPost,
        values: [post.id, post.messageId, post.username, post.message, post.postedAt, post.scheduledAt],
      });
      if (inserted.rows[0]) return { post: toPost(inserted.rows[0]), created: true };
      const existing = await this.#pool.query<PostRow>({ name: 'getPostByMessageId', text: sql.getPostByMessageId, values: [post.messageId] });
      if (existing.rows[0]) return { post: toPost(existing.rows[0]), created: false };
    }
    throw new Error(`Could not add the post for message ${post.messageId}: its post keeps being inserted and deleted concurrently`);
  }

  async listPosts(query: FeedQuery): Promise<Post[]> {
    if (query.limit <= 0) return [];
    const { rows } = query.before
      ? await this.#pool.query<PostRow>({ name: 'listPostsBefore', text: sql.listPostsBefore, values: [query.limit, query.before.postedAt, query.before.id] })
      : await this.#pool.query<PostRow>({ name: 'listPosts', text: sql.listPosts, values: [query.limit] });
    return rows.map(toPost);
  }

  async countPosts(): Promise<number> {
    const { rows } = await this.#pool.query<{ count: number }>({ name: 'countPosts', text: sql.countPosts });
    return rows[0]!.count;
  }

  close(): Promise<void> {
    this.#closed ??= this.#pool.end();
    return this.#closed;
  }
}

function toPost(row: PostRow): Post {
  return {
    id: row.id,
    messageId: row.message_id,
    username: row.username,
    message: row.message,
    postedAt: row.posted_at,
    scheduledAt: row.scheduled_at,
  };
}
