/**
 * How a scheduled message looks on the wire between psched's components (the
 * dispatcher's /v1 API, which the main server reads and passes on): times as
 * RFC 3339 UTC with milliseconds, internals (version, lease) left out.
 */

export const MESSAGE_STATUSES = ['scheduled', 'delivering', 'delivered', 'dead'] as const;
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];

export interface MessageJson {
  id: string;
  username: string;
  message: string;
  scheduledAt: string;
  dueAt: string;
  status: MessageStatus;
  attempts: number;
  createdAt: string;
  updatedAt: string;
  deliveredAt: string | null;
  lastError: string | null;
  idempotencyKey: string | null;
}

/** A page of a list: `nextCursor` is null on the last page. */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
