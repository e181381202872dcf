import { createHash } from 'node:crypto';
import { ValidationError } from '../errors.ts';
import { formatEvery } from './recurrence.ts';
import { standardWebhooksSecretProblem } from './signing.ts';

/**
 * Delivery targets (issue 12): the main servers one dispatcher or pool
 * delivers to, each with its URL, protocol, signing, token and limits.
 * Here: the wire shape of /v1/targets and the checks of its input, shared by
 * the dispatcher's routes and the CLI. The secrets are write-only: a
 * TargetJson says whether one is set, never what it is.
 */

export const TARGET_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const TARGET_PROTOCOLS = ['json', 'legacy'] as const;
export const SIGNATURE_SCHEMES = ['psched', 'standard-webhooks'] as const;
export type TargetProtocol = (typeof TARGET_PROTOCOLS)[number];
export type SignatureScheme = (typeof SIGNATURE_SCHEMES)[number];

export const TARGET_LIMITS = {
  urlMax: 2048,
  secretMax: 1024,
  /** A token is a bearer credential: short ones can be guessed. */
  tokenMin: 16,
  tokenMax: 512,
  /** Deliveries per second at most (a number; fractions allowed: 0.5 is one every two seconds). */
  rateMax: 1_000_000,
  burstMax: 1_000_000,
  maxInFlightMax: 100_000,
  /** A default deliver-by window of at most a year, in ms. */
  deliverWithinMaxMs: 366 * 24 * 3600_000,
} as const;

export interface TargetJson {
  name: string;
  url: string;
  protocol: TargetProtocol;
  signatureScheme: SignatureScheme;
  /** Whether deliveries are signed; the secret itself is never shown. */
  signingSecretSet: boolean;
  /** Whether a main server can call this dispatcher's API as this target; the token is never shown. */
  tokenSet: boolean;
  ratePerSecond: number | null;
  burst: number | null;
  maxInFlight: number | null;
  /** Default deliver-by of its messages that carry none: scheduledAt + this many ms; null: none. */
  deliverWithinMs: number | null;
  /** True for `default`: the dispatcher's own flags (--main-url …), not editable through the API. */
  builtIn: boolean;
  /** Null for the built-in target. */
  createdAt: string | null;
  updatedAt: string | null;
}

/** What creating a target asks for, checked. */
export interface ValidTargetCreate {
  name: string;
  url: string;
  protocol: TargetProtocol;
  signatureScheme: SignatureScheme;
  signingSecret: string | null;
  token: string | null;
  ratePerSecond: number | null;
  burst: number | null;
  maxInFlight: number | null;
  deliverWithinMs: number | null;
}

/** A change (PATCH): only the fields given; null clears the secret, the token or a limit. */
export type ValidTargetPatch = Partial<Omit<ValidTargetCreate, 'name'>>;

const CREATE_FIELDS = new Set(['name', 'url', 'protocol', 'signatureScheme', 'signingSecret', 'token', 'ratePerSecond', 'burst', 'maxInFlight', 'deliverWithinMs']);
const PATCH_FIELDS = new Set([...CREATE_FIELDS].filter((field) => field !== 'name'));

/** A deliver-by window as people read it: "1h30m", "1s500ms" (whole seconds as formatEvery writes them, the rest in ms). */
export function deliverWithinText(ms: number): string {
  const rest = ms % 1000;
  if (rest === 0) return formatEvery(ms);
  return ms < 1000 ? `${ms}ms` : `${formatEvery(ms - rest)}${rest}ms`;
}

/** The token as stored: its SHA-256, hex. A token is random enough that no salt or slow hash is needed; a lookup by it must be fast. */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function validateTargetCreate(input: unknown): ValidTargetCreate {
  const body = objectBody(input);
  refuseUnknown(body, CREATE_FIELDS);
  const name = checkName(body.name);
  if (body.url === undefined) throw new ValidationError('url is required: the main server\'s base URL, such as "https://shop.example"', 'url');
  const valid: ValidTargetCreate = {
    name,
    url: checkUrl(body.url),
    protocol: checkChoice(body.protocol, TARGET_PROTOCOLS, 'protocol') ?? 'json',
    signatureScheme: checkChoice(body.signatureScheme, SIGNATURE_SCHEMES, 'signatureScheme') ?? 'psched',
    signingSecret: checkSecret(body.signingSecret) ?? null,
    token: checkToken(body.token) ?? null,
    ratePerSecond: checkRate(body.ratePerSecond) ?? null,
    burst: checkCount(body.burst, 'burst', TARGET_LIMITS.burstMax) ?? null,
    maxInFlight: checkCount(body.maxInFlight, 'maxInFlight', TARGET_LIMITS.maxInFlightMax) ?? null,
    deliverWithinMs: checkCount(body.deliverWithinMs, 'deliverWithinMs', TARGET_LIMITS.deliverWithinMaxMs) ?? null,
  };
  checkSigning(valid.signatureScheme, valid.signingSecret);
  return valid;
}

/**
 * Checks a change against the target as it is (`current`): the signing
 * scheme and secret must still fit together once merged.
 */
export function validateTargetPatch(input: unknown, current: { signatureScheme: SignatureScheme; signingSecret: string | null }): ValidTargetPatch {
  const body = objectBody(input);
  if (body.name !== undefined) throw new ValidationError('name cannot be changed: create a target of the new name and remove this one', 'name');
  refuseUnknown(body, PATCH_FIELDS);
  const patch: ValidTargetPatch = {};
  if (body.url !== undefined) patch.url = checkUrl(body.url);
  const protocol = checkChoice(body.protocol, TARGET_PROTOCOLS, 'protocol');
  if (protocol) patch.protocol = protocol;
  const scheme = checkChoice(body.signatureScheme, SIGNATURE_SCHEMES, 'signatureScheme');
  if (scheme) patch.signatureScheme = scheme;
  if (body.signingSecret !== undefined) patch.signingSecret = checkSecret(body.signingSecret) ?? null;
  if (body.token !== undefined) patch.token = checkToken(body.token) ?? null;
  if (body.ratePerSecond !== undefined) patch.ratePerSecond = checkRate(body.ratePerSecond) ?? null;
  if (body.burst !== undefined) patch.burst = checkCount(body.burst, 'burst', TARGET_LIMITS.burstMax) ?? null;
  if (body.maxInFlight !== undefined) patch.maxInFlight = checkCount(body.maxInFlight, 'maxInFlight', TARGET_LIMITS.maxInFlightMax) ?? null;
  if (body.deliverWithinMs !== undefined) {
    patch.deliverWithinMs = checkCount(body.deliverWithinMs, 'deliverWithinMs', TARGET_LIMITS.deliverWithinMaxMs) ?? null;
  }
  if (Object.keys(patch).length === 0) throw new ValidationError(`give at least one field to change (${[...PATCH_FIELDS].join(', ')})`);
  checkSigning(patch.signatureScheme ?? current.signatureScheme, patch.signingSecret === undefined ? current.signingSecret : patch.signingSecret);
  return patch;
}

export function checkName(value: unknown): string {
  if (typeof value !== 'string' || !TARGET_NAME.test(value)) {
    throw new ValidationError(
      `name must be 1 to 63 lower-case letters, digits and dashes, starting with a letter or digit (got ${JSON.stringify(value ?? null)})`, 'name');
  }
  if (value === 'default') throw new ValidationError('name "default" is the built-in target (--main-url and its flags): choose another', 'name');
  return value;
}

function objectBody(input: unknown): Record<string, unknown> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ValidationError('body must be a JSON object');
  return input as Record<string, unknown>;
}

function refuseUnknown(body: Record<string, unknown>, known: Set<string>): void {
  for (const key of Object.keys(body)) {
    if (!known.has(key)) throw new ValidationError(`${key} is not a field of a target (${[...known].join(', ')})`, key);
  }
}

function checkUrl(value: unknown): string {
  const problem = 'url must be an http(s) URL without user, password, query or fragment, such as "https://shop.example"';
  if (typeof value !== 'string' || value.length > TARGET_LIMITS.urlMax) throw new ValidationError(problem, 'url');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ValidationError(`${problem} (got ${JSON.stringify(value)})`, 'url');
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || url.search || url.hash) {
    throw new ValidationError(`${problem} (got ${JSON.stringify(value)})`, 'url');
  }
  return value.replace(/\/+$/, '');
}

function checkChoice<T extends string>(value: unknown, allowed: readonly T[], field: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new ValidationError(`${field} must be one of ${allowed.join(', ')} (got ${JSON.stringify(value)})`, field);
  }
  return value as T;
}

function checkSecret(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length < 1 || value.length > TARGET_LIMITS.secretMax) {
    throw new ValidationError(`signingSecret must be a string of 1 to ${TARGET_LIMITS.secretMax} characters, or null for unsigned deliveries`, 'signingSecret');
  }
  return value;
}

function checkToken(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length < TARGET_LIMITS.tokenMin || value.length > TARGET_LIMITS.tokenMax || /\s/.test(value)) {
    throw new ValidationError(
      `token must be ${TARGET_LIMITS.tokenMin} to ${TARGET_LIMITS.tokenMax} characters without spaces (openssl rand -hex 32), or null for none`, 'token');
  }
  return value;
}

function checkRate(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > TARGET_LIMITS.rateMax) {
    throw new ValidationError(`ratePerSecond must be a number greater than 0 and at most ${TARGET_LIMITS.rateMax}, or null for no limit (got ${JSON.stringify(value)})`, 'ratePerSecond');
  }
  return value;
}

function checkCount(value: unknown, field: string, max: number): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new ValidationError(`${field} must be a whole number from 1 to ${max}, or null for none (got ${JSON.stringify(value)})`, field);
  }
  return value;
}

function checkSigning(scheme: SignatureScheme, secret: string | null): void {
  if (scheme !== 'standard-webhooks') return;
  const problem = secret === null ? 'is required with signatureScheme standard-webhooks' : standardWebhooksSecretProblem(secret);
  if (problem) throw new ValidationError(`signingSecret ${problem}`, 'signingSecret');
}
