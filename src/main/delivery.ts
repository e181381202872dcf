import type { IncomingHttpHeaders } from 'node:http';
import { UnauthorizedError, ValidationError } from '../errors.ts';
import { LIMITS, textLength } from '../protocol/messages.ts';
import { SIGNATURE_HEADER, STANDARD_WEBHOOKS_HEADERS, verifySignature, verifyStandardWebhooks } from '../protocol/signing.ts';

/**
 * What the main server checks on a delivery (dispatcher -> POST /v1/posts):
 * the signature over the exact bytes received, then the payload's shape.
 */

export interface ReceivedDelivery {
  /** The dispatcher's message id: the key posts are deduplicated on. */
  messageId: string;
  username: string;
  message: string;
  scheduledAt: number;
  attempt: number | null;
}

const MAX_MESSAGE_ID_LENGTH = 200;

/** Throws UnauthorizedError (401) when the signature is missing, forged or stale. */
/**
 * Checks a delivery's signature, in whichever scheme it came: Standard
 * Webhooks when it carries webhook-signature, else psched's own.
 */
export function requireValidSignature(secret: string, headers: IncomingHttpHeaders, rawBody: string, now: number): void {
  const one = (name: string) => {
    const value = headers[name];
    return Array.isArray(value) ? value.join(name === SIGNATURE_HEADER ? ',' : ' ') : value;
  };
  if (headers[STANDARD_WEBHOOKS_HEADERS.signature] !== undefined) {
    const check = verifyStandardWebhooks(secret, {
      id: one(STANDARD_WEBHOOKS_HEADERS.id), timestamp: one(STANDARD_WEBHOOKS_HEADERS.timestamp), signature: one(STANDARD_WEBHOOKS_HEADERS.signature),
    }, rawBody, now);
    if (!check.ok) throw new UnauthorizedError(`Delivery refused: ${check.reason} (Standard Webhooks, see the README)`);
    return;
  }
  const check = verifySignature(secret, one(SIGNATURE_HEADER), rawBody, now);
  if (!check.ok) throw new UnauthorizedError(`Delivery refused: ${check.reason} (${SIGNATURE_HEADER}, see the README for the scheme)`);
}

function text(body: Record<string, unknown>, field: string, max: number): string {
  const value = body[field];
  if (typeof value !== 'string' || value.length === 0) throw new ValidationError(`${field} is required and must be a non-empty string`, field);
  const length = textLength(value);
  if (length > max) throw new ValidationError(`${field} must be at most ${max} characters (got ${length})`, field);
  // as in scheduling: PostgreSQL text cannot hold NUL
  if (value.includes('\u0000')) throw new ValidationError(`${field} must not contain the NUL character (\\u0000)`, field);
  return value;
}

/** Validates a delivery payload `{id, username, message, scheduledAt, attempt}`; unknown fields are ignored. */
export function parseDelivery(input: unknown): ReceivedDelivery {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ValidationError('body must be a JSON object');
  const body = input as Record<string, unknown>;
  const messageId = text(body, 'id', MAX_MESSAGE_ID_LENGTH);
  const username = text(body, 'username', LIMITS.usernameMax);
  const message = text(body, 'message', LIMITS.messageMax);
  const scheduledAt = typeof body.scheduledAt === 'string' ? Date.parse(body.scheduledAt) : NaN;
  if (!Number.isFinite(scheduledAt)) throw new ValidationError('scheduledAt must be an RFC 3339 time', 'scheduledAt');
  let attempt: number | null = null;
  if (body.attempt !== undefined && body.attempt !== null) {
    if (!Number.isInteger(body.attempt) || (body.attempt as number) < 1) throw new ValidationError('attempt must be a whole number ≥ 1', 'attempt');
    attempt = body.attempt as number;
  }
  return { messageId, username, message, scheduledAt, attempt };
}
