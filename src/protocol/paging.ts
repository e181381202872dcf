import { ValidationError } from '../errors.ts';

/**
 * Keyset paging, the same on every list of the APIs (the dispatcher's
 * messages, the main server's scheduled list and feed): `?limit=` and an
 * opaque `?cursor=` that is the last row's (sort key, id).
 */

export interface Cursor {
  /** The sort key of the last row: a due time or a posting time, epoch ms. */
  at: number;
  id: string;
}

/** base64url of "<at>.<id>": opaque to clients, so the key can change without breaking them. */
export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(`${cursor.at}.${cursor.id}`, 'utf8').toString('base64url');
}

const CURSOR = /^(-?\d{1,16})\.([\w-]{1,100})$/;

export function decodeCursor(text: string): Cursor {
  const match = /^[\w-]{1,200}$/.test(text) ? CURSOR.exec(Buffer.from(text, 'base64url').toString('utf8')) : null;
  if (!match) throw new ValidationError('cursor is not a cursor this API returned (pass nextCursor unchanged)', 'cursor');
  return { at: Number(match[1]), id: match[2]! };
}

/** `?limit=`: a whole number from 1 to `max`, `fallback` when absent or empty. */
export function parseLimit(value: unknown, { fallback, max }: { fallback: number; max: number }): number {
  if (value === undefined || value === '') return fallback;
  const limit = typeof value === 'string' && /^\d{1,7}$/.test(value) ? Number(value) : NaN;
  if (!(limit >= 1 && limit <= max)) {
    throw new ValidationError(`limit must be a whole number from 1 to ${max} (got ${JSON.stringify(value)})`, 'limit');
  }
  return limit;
}
