import type { FastifyReply, FastifyRequest } from 'fastify';
import { ForbiddenError, NotFoundError, UnauthorizedError, ValidationError } from '../errors.ts';
import { isAuthorized, requestToken } from '../http.ts';
import type { DispatcherContext } from './context.ts';
import { DEFAULT_TARGET } from './store.ts';

/**
 * Who calls /v1 (issue 12 item 2):
 * - the operator: the request carries --api-token, or the dispatcher has
 *   none (loopback only) and the request carries no target's token. It sees
 *   and may change everything, names `target` when scheduling and filters
 *   lists with `?target=`, and alone manages targets.
 * - a target (a main server): the request carries that target's token. It
 *   schedules for its own target only, lists only its own, and another
 *   target's message or schedule answers 404, exactly as one that does not
 *   exist, so a token cannot tell another target's ids from made-up ones.
 *   Naming another target (a body's `target`, `?target=`) is refused with
 *   403: that the caller asked for what it may not have is no secret.
 */
export type Principal = { kind: 'operator' } | { kind: 'target'; target: string };

const OPERATOR: Principal = Object.freeze({ kind: 'operator' });

/**
 * Kept on the request under a symbol: a WeakMap entry per request made every
 * young-generation collection walk an ephemeron table (~1 µs a request).
 */
const PRINCIPAL = Symbol('principal');
type WithPrincipal = FastifyRequest & { [PRINCIPAL]?: Principal };

function setPrincipal(request: FastifyRequest, principal: Principal): void {
  (request as WithPrincipal)[PRINCIPAL] = principal;
}

/**
 * The /v1 onRequest hook: resolves the caller, or answers 401. A callback
 * hook rather than an async one: the operator's token is checked without a
 * promise and a turn of the microtask queue per request; only a target's
 * token waits for the registry.
 */
export function authenticate({ config, targets }: DispatcherContext) {
  return (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void => {
    if (config.apiToken && isAuthorized(request, config.apiToken)) {
      setPrincipal(request, OPERATOR);
      return done();
    }
    const token = requestToken(request, false);
    if (token === undefined) return settle(request, undefined, config.apiToken, done);
    targets.byToken(token).then((target) => settle(request, target, config.apiToken, done), done);
  };
}

function settle(request: FastifyRequest, target: { name: string } | undefined, apiToken: string | undefined, done: (err?: Error) => void): void {
  if (target) setPrincipal(request, { kind: 'target', target: target.name });
  // no --api-token (loopback only): whoever reaches it is the operator, as before targets
  else if (!apiToken) setPrincipal(request, OPERATOR);
  else return done(new UnauthorizedError('Missing or wrong API token: send "Authorization: Bearer <token>" (the operator\'s --api-token, or a target\'s token)'));
  done();
}

export function principalOf(request: FastifyRequest): Principal {
  return (request as WithPrincipal)[PRINCIPAL] ?? OPERATOR;
}

/** The target a caller is confined to; undefined for the operator. */
export function scopeOf(request: FastifyRequest): string | undefined {
  const principal = principalOf(request);
  return principal.kind === 'target' ? principal.target : undefined;
}

export function requireOperator(request: FastifyRequest, what: string): void {
  const scope = scopeOf(request);
  if (scope !== undefined) throw new ForbiddenError(`${what} needs the operator's token (--api-token); this is target ${JSON.stringify(scope)}'s token`);
}

/**
 * The target a new message or schedule is for: the caller's own (a
 * target's token), or the one the operator names (`default` when none).
 * `named` is the body's `target`; `field` names it in errors.
 */
export async function targetForCreate(request: FastifyRequest, ctx: DispatcherContext, named: unknown, field = 'target'): Promise<string> {
  const scope = scopeOf(request);
  if (named === undefined || named === null) return scope ?? DEFAULT_TARGET;
  if (typeof named !== 'string') throw new ValidationError(`${field} must be a target's name`, field);
  if (scope !== undefined) {
    if (named === scope) return scope;
    throw new ForbiddenError(`${field}: this token is target ${JSON.stringify(scope)}'s and schedules only for it (got ${JSON.stringify(named)})`);
  }
  if (!(await ctx.targets.exists(named))) {
    throw new ValidationError(`${field}: no target named ${JSON.stringify(named)} (GET /v1/targets lists them)`, field);
  }
  return named;
}

/** The target a list is narrowed to: the caller's own, or the operator's `?target=` (undefined: all). */
export function targetForList(request: FastifyRequest, requested: string | undefined): string | undefined {
  const scope = scopeOf(request);
  if (scope === undefined) return requested;
  if (requested !== undefined && requested !== scope) {
    throw new ForbiddenError(`target: this token is target ${JSON.stringify(scope)}'s and lists only its own (got ${JSON.stringify(requested)})`);
  }
  return scope;
}

/**
 * Throws `notFound` unless the caller may see a thing of `target` (the
 * operator sees all). A thing that does not exist is passed as undefined.
 */
export function requireVisible(request: FastifyRequest, target: string | undefined, notFound: () => NotFoundError): void {
  if (target === undefined) throw notFound();
  const scope = scopeOf(request);
  if (scope !== undefined && scope !== target) throw notFound();
}

/** A body without its `target` field (the shared validators refuse fields they do not know), and that field. */
export function splitTarget(body: unknown): { target: unknown; rest: unknown } {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || !('target' in body)) return { target: undefined, rest: body };
  const { target, ...rest } = body as Record<string, unknown>;
  return { target, rest };
}
