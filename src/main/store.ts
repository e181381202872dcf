/**
 * The main server's storage contract: the feed of posted messages. SQLite and
 * PostgreSQL implement it; one contract suite (test/main-store.test.ts) runs
 * against both. Like the dispatcher's store it never reads a clock.
 *
 * Posting is idempotent on the dispatcher's message id: a redelivery returns
 * the post already stored (created=false), so the feed holds each message once.
 * A resolved `addPost` is committed to disk.
 */

export interface Post {
  /** The feed's own id (UUIDv7). */
  id: string;
  /** The dispatcher's message id; null for posts made through the original's /postMessage.php. */
  messageId: string | null;
  username: string;
  message: string;
  /** Epoch ms: when the post arrived (the original's "time posted"). */
  postedAt: number;
  /** Epoch ms the message was scheduled for, when it came from a dispatcher. */
  scheduledAt: number | null;
}

export interface NewPost {
  id: string;
  messageId: string | null;
  username: string;
  message: string;
  postedAt: number;
  scheduledAt: number | null;
}

export interface FeedQuery {
  limit: number;
  /** Keyset cursor: the (postedAt, id) of the last post of the previous page; newest first. */
  before?: { postedAt: number; id: string };
}

export interface MainStore {
  migrate(): Promise<void>;
  addPost(post: NewPost): Promise<{ post: Post; created: boolean }>;
  /** Newest first. */
  listPosts(query: FeedQuery): Promise<Post[]>;
  countPosts(): Promise<number>;
  /** Resolves when the store answers a trivial query now (/healthz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}
