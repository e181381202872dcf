import { decodeCursor, encodeCursor, parseLimit } from '../protocol/paging.ts';
import type { MainStore, Post } from './store.ts';

/**
 * The feed on the wire: a post as JSON, and `GET /v1/posts` pages, newest
 * first, with an opaque keyset cursor (the position of the last post of the
 * previous page), so a page never shifts when new posts arrive.
 */
export interface PostJson {
  id: string;
  /** The dispatcher's message id; null for posts made through the original's /postMessage.php. */
  messageId: string | null;
  username: string;
  message: string;
  /** RFC 3339 UTC: when the post arrived. */
  postedAt: string;
  scheduledAt: string | null;
}

export interface FeedPage {
  items: PostJson[];
  nextCursor: string | null;
}

export const FEED_LIMIT = { fallback: 50, max: 200 } as const;

export function toPostJson(post: Post): PostJson {
  return {
    id: post.id,
    messageId: post.messageId,
    username: post.username,
    message: post.message,
    postedAt: new Date(post.postedAt).toISOString(),
    scheduledAt: post.scheduledAt === null ? null : new Date(post.scheduledAt).toISOString(),
  };
}

/** `?limit=` of the feed. */
export function parseFeedLimit(value: unknown): number {
  return parseLimit(value, FEED_LIMIT);
}

/** One page of the feed. Reads one post more than asked to know whether another page exists. */
export async function readFeedPage(store: MainStore, options: { limit: number; cursor?: string | undefined }): Promise<FeedPage> {
  const cursor = options.cursor ? decodeCursor(options.cursor) : undefined;
  const before = cursor && { postedAt: cursor.at, id: cursor.id };
  const posts = await store.listPosts({ limit: options.limit + 1, before });
  const page = posts.slice(0, options.limit);
  const last = page.at(-1);
  return {
    items: page.map(toPostJson),
    nextCursor: posts.length > options.limit && last ? encodeCursor({ at: last.postedAt, id: last.id }) : null,
  };
}
