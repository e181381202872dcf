import { ValidationError } from '../errors.ts';
import type { MessageStatus, StoredMessage } from './store.ts';

/**
 * How a stored message looks on the wire (the /v1 API): times as RFC 3339 UTC
 * with milliseconds, internals (version, lease) left out. And the opaque
 * keyset cursor of `GET /v1/messages`.
 */
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

/**
 * RFC 3339 of an instant, remembering the last two: a message's dueAt is
 * usually its scheduledAt and its updatedAt its createdAt, and a batch's
 * messages share their createdAt (each conversion costs ~1 µs, a quarter of
 * what storing the message costs).
 */
let recent: [number, string, number, string] = [NaN, '', NaN, ''];
function iso(instant: number): string {
  if (instant === recent[0]) return recent[1];
  if (instant === recent[2]) return recent[3];
  const text = new Date(instant).toISOString();
  recent = [instant, text, recent[0], recent[1]];
  return text;
}

export function toMessageJson(m: StoredMessage): MessageJson {
  return {
    id: m.id,
    username: m.username,
    message: m.message,
    scheduledAt: iso(m.scheduledAt),
    dueAt: iso(m.dueAt),
    status: m.status,
    attempts: m.attempts,
    createdAt: iso(m.createdAt),
    updatedAt: iso(m.updatedAt),
    deliveredAt: m.deliveredAt === null ? null : iso(m.deliveredAt),
    lastError: m.lastError,
    idempotencyKey: m.idempotencyKey,
  };
}

export interface Cursor {
  dueAt: number;
  id: string;
}

/** base64url of "<dueAt>.<id>": opaque to clients, so the key can change without breaking them. */
export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(`${cursor.dueAt}.${cursor.id}`, 'utf8').toString('base64url');
}

const CURSOR = /^(-?\d{1,16})\.([\w-]{1,100})$/;

export function decodeCursor(text: string): Cursor {
  const match = /^[\w-]{1,200}$/.test(text) ? CURSOR.exec(Buffer.from(text, 'base64url').toString('utf8')) : null;
  if (!match) throw new ValidationError('cursor is not a cursor this API returned (pass nextCursor unchanged)', 'cursor');
  return { dueAt: Number(match[1]), id: match[2]! };
}
