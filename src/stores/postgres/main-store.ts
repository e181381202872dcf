import type pg from 'pg';
import type { FeedQuery, MainStore, NewPost, Post } from '../../main/store.ts';
import { createPool, defaultErrorLog, resolveSchema, runStatement } from './connection.ts';
import { GroupInsert } from './group-insert.ts';
import { runMigrations } from './migrate.ts';
import { mainMigrations } from './migrations.ts';
import { mainStatements as sql } from './statements.ts';
import { type PostRow, toPost } from '../rows.ts';

/**
 * The main server's feed on PostgreSQL. Deliveries arrive concurrently from
 * the whole dispatcher pool: the addPost calls of one tick go out as one
 * INSERT ... ON CONFLICT (message_id) DO NOTHING (./group-insert.ts), committed
 * with synchronous_commit on, so a resolved post is on disk.
 */

export interface PostgresMainStoreOptions {
  /** Every table lives in this schema, created if missing; default: the URL's `?schema=`, else the search_path. */
  schema?: string;
  /** Connections; deliveries from the whole dispatcher pool arrive here concurrently. */
  poolSize?: number;
  /** Where connection trouble is reported; defaults to stderr. */
  onError?: (message: string, err: unknown) => void;
  /** False sends every addPost as its own statement (to measure what grouping buys). Default true. */
  groupInserts?: boolean;
}

/** Enough concurrent commits to share each WAL flush, few enough to leave room for the dispatchers' connections. */
const DEFAULT_POOL_SIZE = 8;

export async function openPostgresMainStore(databaseUrl: string, options: PostgresMainStoreOptions = {}): Promise<MainStore> {
  const { url, schema } = resolveSchema(databaseUrl, options.schema);
  const pool = createPool(url, { schema, max: options.poolSize ?? DEFAULT_POOL_SIZE, onError: options.onError ?? defaultErrorLog });
  try {
    // Fail here, not at the first post, when the URL is wrong.
    await runStatement(pool, 'ping', 'SELECT 1');
  } catch (err) {
    await pool.end();
    throw err;
  }
  return new PostgresMainStore(pool, schema, options.groupInserts ?? true);
}

class PostgresMainStore implements MainStore {
  #pool: pg.Pool;
  #schema: string | undefined;
  #inserts: GroupInsert<NewPost>;
  #closed: Promise<void> | undefined;

  constructor(pool: pg.Pool, schema: string | undefined, groupInserts: boolean) {
    this.#pool = pool;
    this.#schema = schema;
    this.#inserts = new GroupInsert((posts) => this.#insertPosts(posts), { enabled: groupInserts });
  }

  migrate(): Promise<void> {
    return runMigrations(this.#pool, { table: 'main_migrations', schema: this.#schema, migrations: mainMigrations });
  }

  async addPost(post: NewPost): Promise<{ post: Post; created: boolean }> {
    // The post that holds this message id can be deleted between our INSERT and our look-up: then try again.
    for (let turn = 0; turn < 3; turn++) {
      const inserted = await this.#inserts.insert([post]);
      if (inserted.has(post.id)) return { post: { ...post }, created: true };
      // Only a known message id skips a post (a duplicate id fails the statement).
      const existing = await this.#run<PostRow>('getPostByMessageId', [post.messageId]);
      if (existing.rows[0]) return { post: toPost(existing.rows[0]), created: false };
    }
    throw new Error(`Could not add the post for message ${post.messageId}: its post keeps being inserted and deleted concurrently`);
  }

  /** One statement for the posts of one or several calls (./group-insert.ts). */
  async #insertPosts(posts: NewPost[]): Promise<Set<string>> {
    const result = await this.#run<{ id: string }>('insertPost', [
      posts.map((p) => p.id),
      posts.map((p) => p.messageId),
      posts.map((p) => p.username),
      posts.map((p) => p.message),
      posts.map((p) => p.postedAt),
      posts.map((p) => p.scheduledAt),
    ]);
    return new Set(result.rows.map((row) => row.id));
  }

  async listPosts(query: FeedQuery): Promise<Post[]> {
    if (query.limit <= 0) return [];
    const { rows } = query.before
      ? await this.#run<PostRow>('listPostsBefore', [query.limit, query.before.postedAt, query.before.id])
      : await this.#run<PostRow>('listPosts', [query.limit]);
    return rows.map(toPost);
  }

  async ping(): Promise<void> {
    await this.#pool.query('SELECT 1');
  }

  async countPosts(): Promise<number> {
    const { rows } = await this.#run<{ count: number }>('countPosts');
    return rows[0]!.count;
  }

  /** Runs one statement of ./statements.ts by name. */
  #run<R extends pg.QueryResultRow>(name: keyof typeof sql, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    return runStatement<R>(this.#pool, name, sql[name], values);
  }

  close(): Promise<void> {
    this.#closed ??= this.#inserts.drain().then(() => this.#pool.end());
    return this.#closed;
  }
}

