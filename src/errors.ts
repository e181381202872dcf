/**
 * The few error classes psched throws, and the one place that turns them into
 * HTTP answers: `{ "error": { "code", "message" } }` with the matching status.
 */
export class PschedError extends Error {
  override name = 'PschedError';
  readonly status: number = 500;
  readonly code: string = 'internal_error';
}

/** Bad input: the message names the field and what is wrong with it. */
export class ValidationError extends PschedError {
  override name = 'ValidationError';
  override readonly status = 400;
  override readonly code = 'invalid_request';
  readonly field: string | undefined;
  constructor(message: string, field?: string, options?: ErrorOptions) {
    super(message, options);
    this.field = field;
  }
}

export class UnauthorizedError extends PschedError {
  override name = 'UnauthorizedError';
  override readonly status = 401;
  override readonly code = 'unauthorized';
}

/** The caller is known but may not do this (a target's token managing targets, or naming another target). */
export class ForbiddenError extends PschedError {
  override name = 'ForbiddenError';
  override readonly status = 403;
  override readonly code = 'forbidden';
}

export class NotFoundError extends PschedError {
  override name = 'NotFoundError';
  override readonly status = 404;
  override readonly code = 'not_found';
}

/** The message exists but is no longer in a state that allows the change. */
export class ConflictError extends PschedError {
  override name = 'ConflictError';
  override readonly status = 409;
  override readonly code = 'conflict';
  readonly currentStatus: string | undefined;
  constructor(message: string, currentStatus?: string, options?: ErrorOptions) {
    super(message, options);
    this.currentStatus = currentStatus;
  }
}

/** A dependency (a dispatcher, the database) did not answer. */
export class UnavailableError extends PschedError {
  override name = 'UnavailableError';
  override readonly status = 503;
  override readonly code = 'unavailable';
}

/**
 * A request was sent to a dispatcher but no definite answer came back (a
 * timeout, a connection lost mid-request, a 500 such as durability_unknown):
 * the message may or may not be stored. Never "not stored": a client told
 * that would send it again and get it posted twice. Sending it again with the
 * same idempotency key is safe. 502: the dispatcher, not this server, failed
 * to say, and a client must not read it as the 503 "nothing was stored".
 *
 * `idempotencyKey` is null when the request carried none (an original PHP
 * dispatcher takes none): then sending it again is not safe, and the message
 * says so.
 */
export class OutcomeUnknownError extends PschedError {
  override name = 'OutcomeUnknownError';
  override readonly status = 502;
  override readonly code = 'outcome_unknown';
  /** What happened, without the advice (for answers that give their own, like the page's). */
  readonly detail: string;
  readonly idempotencyKey: string | null;
  constructor(detail: string, idempotencyKey: string | null, options?: ErrorOptions) {
    super(
      idempotencyKey === null
        ? `${detail}: the message may or may not be stored. The original dispatcher takes no idempotency key: ` +
          'sending it again may store it twice; look at its page first.'
        : `${detail}: the message may or may not be stored. ` +
          `Sending it again with idempotencyKey ${JSON.stringify(idempotencyKey)} is safe: it will not be stored twice.`,
      options,
    );
    this.detail = detail;
    this.idempotencyKey = idempotencyKey;
  }
}

/**
 * A dispatcher answered, and its answer says the message is not stored,
 * though not as a psched dispatcher's 4xx: an original PHP dispatcher's
 * "Failure", an HTML page, an empty body, a status other than 2xx. 502: the
 * gateway's answer was not a success; the code tells it from outcome_unknown.
 */
export class NotScheduledError extends PschedError {
  override name = 'NotScheduledError';
  override readonly status = 502;
  override readonly code = 'not_scheduled';
  /** The dispatcher's answer: its JSON, its text, or null when empty. */
  readonly answer: unknown;
  constructor(message: string, answer: unknown, options?: ErrorOptions) {
    super(message, options);
    this.answer = answer;
  }
}

/** What the dispatchers of this pool cannot do at all (an original PHP dispatcher cannot list, change or cancel). */
export class NotSupportedError extends PschedError {
  override name = 'NotSupportedError';
  override readonly status = 501;
  override readonly code = 'not_supported';
}

/**
 * A write was committed but the disk failed to confirm it (a failed fsync of
 * the WAL): the data may or may not survive a crash. Never "not stored": a
 * caller that retried elsewhere could store it twice. On Linux a failed fsync
 * cannot be retried (the kernel may have dropped the dirty pages), so the
 * store that raises this halts: its process should exit and restart.
 */
export class DurabilityUnknownError extends PschedError {
  override name = 'DurabilityUnknownError';
  override readonly status = 500;
  override readonly code = 'durability_unknown';
}

/**
 * The disk (or the database server's) is full: the write was rolled back,
 * nothing was stored. 507, so a caller may try again later or elsewhere.
 */
export class StorageFullError extends PschedError {
  override name = 'StorageFullError';
  override readonly status = 507;
  override readonly code = 'storage_full';
}

/** SQLITE_FULL from node:sqlite, PostgreSQL's disk_full (53100), or ENOSPC from the file system. */
export function isStorageFull(err: unknown): boolean {
  const e = err as { errcode?: unknown; code?: unknown } | null;
  if (typeof e !== 'object' || e === null) return false;
  return (typeof e.errcode === 'number' && (e.errcode & 0xff) === 13) || e.code === '53100' || e.code === 'ENOSPC';
}

/**
 * A store refused to open because another process holds it (an SQLite file
 * belongs to one dispatcher). Said in one line at start, like a configuration mistake.
 */
export class StoreInUseError extends Error {
  override name = 'StoreInUseError';
}

export interface HttpErrorBody {
  error: { code: string; message: string; field?: string; status?: string };
}

/** Maps any thrown value to an HTTP status and JSON body. Unknown errors become a bare 500. */
export function toHttpError(err: unknown): { status: number; body: HttpErrorBody } {
  if (err instanceof PschedError) {
    const body: HttpErrorBody = { error: { code: err.code, message: err.message } };
    if (err instanceof ValidationError && err.field) body.error.field = err.field;
    if (err instanceof ConflictError && err.currentStatus) body.error.status = err.currentStatus;
    return { status: err.status, body };
  }
  if (isStorageFull(err)) {
    return { status: 507, body: { error: { code: 'storage_full', message: 'The disk is full: nothing was stored; try again once space is freed' } } };
  }
  const fastifyError = err as { statusCode?: number; code?: string; message?: string; validation?: unknown };
  if (typeof fastifyError?.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    const code = fastifyError.statusCode === 413 ? 'payload_too_large'
      : fastifyError.statusCode === 415 ? 'unsupported_media_type'
      : fastifyError.statusCode === 404 ? 'not_found'
      : 'invalid_request';
    return { status: fastifyError.statusCode, body: { error: { code, message: fastifyError.message ?? 'Bad request' } } };
  }
  return { status: 500, body: { error: { code: 'internal_error', message: 'Internal server error' } } };
}
