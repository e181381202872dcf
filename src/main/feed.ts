import { ValidationError } from '../errors.ts';
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

export const FEED_LIMIT = { default: 50, max: 200 } as const;

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

interface FeedCursor {
  postedAt: number;
  id: string;
}

/** base64url of "<postedAt>.<id>": opaque to clients, so the key can change without breaking them. */
export function encodeFeedCursor(cursor: FeedCursor): string {
  return Buffer.from(`${cursor.postedAt}.${cursor.id}`, 'utf8').toString('base64url');
}

const CURSOR = /^(\d{1,16})\.([\w-]{1,100})$/;

export function decodeFeedCursor(text: string): FeedCursor {
  const match = /^[\w-]{1,200}$/.test(text) ? CURSOR.exec(Buffer.from(text, 'base64url').toString('utf8')) : null;
  if (!match) throw new ValidationError('cursor is not a cursor this API returned (pass nextCursor unchanged)', 'cursor');
  return { postedAt: Number(match[1]), id: match[2]! };
}

export function parseFeedLimit(value: unknown): number {
  if (value === undefined || value === '') return FEED_LIMIT.default;
  const limit = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(limit >= 1 && limit <= FEED_LIMIT.max)) throw new ValidationError(`limit must be a whole number from 1 to ${FEED_LIMIT.max}`, 'limit');
  return limit;
}

/** One page of the feed. Reads one post more than asked to know whether another page exists. */
export async function readFeedPage(store: MainStore, options: { limit: number; cursor?: string | undefined }): Promise<FeedPage> {
  const before = options.cursor ? decodeFeedCursor(options.cursor) : undefined;
  const posts = await store.listPosts({ limit: options.limit + 1, before });
  const page = posts.slice(0, options.limit);
  const last = page.at(-1);
  return {
    items: page.map(toPostJson),
    nextCursor: posts.length > options.limit && last ? encodeFeedCursor({ postedAt: last.postedAt, id: last.id }) : null,
  };
}
