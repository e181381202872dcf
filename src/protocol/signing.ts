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

/** Headers every JSON delivery carries besides its signature, whatever the scheme (values as in the signed body). */
export const DELIVERY_HEADERS = { scheduledAt: 'psched-scheduled-at', attempt: 'psched-attempt', sentAt: 'psched-sent-at' } as const;
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

/**
 * The Standard Webhooks scheme (standardwebhooks.com), a per-dispatcher
 * choice beside psched's own, so a receiver in any language verifies
 * deliveries with that project's libraries:
 *
 *   webhook-id: <message id>            (the same on every attempt: receivers dedupe on it)
 *   webhook-timestamp: <unix seconds>   (the send time)
 *   webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>
 *
 * The key is the secret's bytes: a secret written `whsec_<base64>`, as the
 * scheme's libraries take it, base64-decoded.
 */
export const STANDARD_WEBHOOKS_HEADERS = { id: 'webhook-id', timestamp: 'webhook-timestamp', signature: 'webhook-signature' } as const;
const STANDARD_WEBHOOKS_PREFIX = 'whsec_';
/** The scheme asks for 24 to 64 random bytes. */
const STANDARD_WEBHOOKS_KEY_BYTES = { min: 24, max: 64 } as const;

/** What is wrong with a secret for the Standard Webhooks scheme, or undefined. */
export function standardWebhooksSecretProblem(secret: string): string | undefined {
  if (!secret.startsWith(STANDARD_WEBHOOKS_PREFIX)) return 'must be written whsec_<base64 of 24 to 64 random bytes> for the standard-webhooks scheme (openssl rand -base64 32)';
  const encoded = secret.slice(STANDARD_WEBHOOKS_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || encoded.length % 4 !== 0) return 'must be whsec_ followed by base64 for the standard-webhooks scheme';
  const bytes = Buffer.from(encoded, 'base64').length;
  if (bytes < STANDARD_WEBHOOKS_KEY_BYTES.min || bytes > STANDARD_WEBHOOKS_KEY_BYTES.max) return `must hold 24 to 64 bytes for the standard-webhooks scheme (got ${bytes})`;
  return undefined;
}

/**
 * The key of a whsec_ secret, undefined when it is not one. Checked and
 * decoded once per secret, not per delivery: a process signs or verifies
 * with the same few secrets all its life (one per delivery target, issue 12:
 * a single remembered secret was decoded again at every switch between two
 * targets). Bounded, so secrets rotated away do not pile up.
 */
const KEYS_KEPT = 1024;
const keys = new Map<string, Buffer | undefined>();
function standardWebhooksKey(secret: string): Buffer | undefined {
  if (keys.has(secret)) return keys.get(secret);
  if (keys.size >= KEYS_KEPT) keys.delete(keys.keys().next().value!);
  const key = standardWebhooksSecretProblem(secret) ? undefined : Buffer.from(secret.slice(STANDARD_WEBHOOKS_PREFIX.length), 'base64');
  keys.set(secret, key);
  return key;
}

function standardWebhooksSignature(key: Buffer, id: string, timestampSeconds: number, rawBody: string): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSeconds}.${rawBody}`).digest('base64')}`;
}

/** The three headers of a delivery signed the Standard Webhooks way, sent at `now` (ms). */
export function standardWebhooksHeaders(secret: string, id: string, now: number, rawBody: string): Record<string, string> {
  const key = standardWebhooksKey(secret);
  if (!key) throw new Error('a Standard Webhooks secret must be whsec_<base64> (the configuration checks this at start)');
  const timestamp = Math.floor(now / 1000);
  return {
    [STANDARD_WEBHOOKS_HEADERS.id]: id,
    [STANDARD_WEBHOOKS_HEADERS.timestamp]: String(timestamp),
    [STANDARD_WEBHOOKS_HEADERS.signature]: standardWebhooksSignature(key, id, timestamp, rawBody),
  };
}

/** Checks a Standard Webhooks delivery: the signature (any of the space-separated ones) and the timestamp's age. */
export function verifyStandardWebhooks(
  secret: string,
  headers: { id: string | undefined; timestamp: string | undefined; signature: string | undefined },
  rawBody: string,
  now: number,
  toleranceMs = DEFAULT_SIGNATURE_TOLERANCE_MS,
): SignatureCheck {
  const key = standardWebhooksKey(secret);
  if (!key) return { ok: false, reason: 'this server\'s signing secret is not a whsec_ secret, so it cannot check webhook-signature' };
  const { id, timestamp, signature } = headers;
  if (!id || !timestamp || !signature) return { ok: false, reason: 'missing webhook-id, webhook-timestamp or webhook-signature header' };
  if (!/^\d+$/.test(timestamp)) return { ok: false, reason: 'malformed webhook-timestamp header' };
  if (Math.abs(now - Number(timestamp) * 1000) > toleranceMs) return { ok: false, reason: 'stale webhook-timestamp' };
  const expected = Buffer.from(standardWebhooksSignature(key, id, Number(timestamp), rawBody));
  for (const candidate of signature.split(' ')) {
    const given = Buffer.from(candidate);
    if (given.length === expected.length && timingSafeEqual(given, expected)) return { ok: true };
  }
  return { ok: false, reason: 'webhook-signature does not match' };
}
