import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Delivery signatures. The dispatcher sends
 *
 *   Psched-Signature: t=<unix ms>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 *
 * and a receiver recomputes the HMAC over the timestamp and the exact bytes of
 * the body, compares in constant time, and refuses timestamps older (or newer)
 * than the tolerance, so a captured request cannot be replayed later.
 */
export const SIGNATURE_HEADER = 'psched-signature';
export const DEFAULT_SIGNATURE_TOLERANCE_MS = 5 * 60_000;

export function signatureFor(secret: string, timestamp: number, rawBody: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest('hex');
}

export function signHeader(secret: string, timestamp: number, rawBody: string): string {
  return `t=${timestamp},v1=${signatureFor(secret, timestamp, rawBody)}`;
}

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

export function verifySignature(
  secret: string,
  header: string | undefined,
  rawBody: string,
  now: number,
  toleranceMs = DEFAULT_SIGNATURE_TOLERANCE_MS,
): SignatureCheck {
  if (!header) return { ok: false, reason: `missing ${SIGNATURE_HEADER} header` };
  let timestamp: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const [key, value] = part.trim().split('=', 2);
    if (key === 't' && value && /^\d+$/.test(value)) timestamp = Number(value);
    else if (key === 'v1' && value) candidates.push(value);
  }
  if (timestamp === undefined || candidates.length === 0) return { ok: false, reason: 'malformed signature header' };
  if (Math.abs(now - timestamp) > toleranceMs) return { ok: false, reason: 'stale signature timestamp' };
  const expected = Buffer.from(signatureFor(secret, timestamp, rawBody), 'hex');
  for (const candidate of candidates) {
    const given = Buffer.from(candidate, 'hex');
    if (given.length === expected.length && timingSafeEqual(given, expected)) return { ok: true };
  }
  return { ok: false, reason: 'signature does not match' };
}
