import type { FeedQuery, MainStore, NewPost, Post } from '../../main/store.ts';
import type { SqliteConnection } from './connection.ts';
import { SqliteDatabase } from './database.ts';
import type { GroupCommit } from './group-commit.ts';
import { mainMigrations } from './migrations.ts';
import { mainStatements as sql } from './statements.ts';
import { type PostRow, toPost } from '../rows.ts';

/**
 * The main server's feed on embedded SQLite. Deliveries arrive concurrently,
 * so posts are written through group commit (./group-commit.ts): concurrent
 * `addPost` calls share one fsynced COMMIT.
 */
export function openSqliteMainStore(path: string): MainStore {
  return new SqliteMainStore(path);
}

class SqliteMainStore implements MainStore {
  #database: SqliteDatabase;
  #connection: SqliteConnection;
  #commits: GroupCommit;

  constructor(path: string) {
    this.#database = new SqliteDatabase(path);
    this.#connection = this.#database.connection;
    this.#commits = this.#database.commits;
  }

  migrate(): Promise<void> {
    return this.#database.migrate(mainMigrations);
  }

  addPost(post: NewPost): Promise<{ post: Post; created: boolean }> {
    return this.#commits.write('durable', () => {
      // inserted unless its message id is there: one statement for a new post, the usual case
      const stored: Post = {
        id: post.id,
        messageId: post.messageId,
        username: post.username,
        message: post.message,
        postedAt: post.postedAt,
        scheduledAt: post.scheduledAt,
      };
      if (this.#connection.statement(sql.insertPost).run({ ...stored }).changes === 0) {
        const existing = this.#connection.statement(sql.getPostByMessageId).get<PostRow>({ messageId: post.messageId! })!;
        return { post: toPost(existing), created: false };
      }
      return { post: stored, created: true };
    });
  }

  listPosts(query: FeedQuery): Promise<Post[]> {
    return this.#commits.read(() => {
      if (query.limit <= 0) return [];
      const rows = query.before
        ? this.#connection.statement(sql.listPostsBefore)
          .all<PostRow>({ beforePostedAt: query.before.postedAt, beforeId: query.before.id, limit: query.limit })
        : this.#connection.statement(sql.listPosts).all<PostRow>({ limit: query.limit });
      return rows.map(toPost);
    });
  }

  ping(): Promise<void> {
    return this.#commits.read(() => {
      this.#connection.statement('SELECT 1').get();
    });
  }

  countPosts(): Promise<number> {
    return this.#commits.read(() => this.#connection.statement(sql.countPosts).get<{ count: number }>()!.count);
  }

  close(): Promise<void> {
    return this.#database.close();
  }
}

