import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ConflictError, NotFoundError, ValidationError } from '../errors.ts';
import { checkName, tokenHash, validateTargetCreate, validateTargetPatch, type TargetJson } from '../protocol/targets.ts';
import type { DispatcherContext } from './context.ts';
import { requireOperator } from './principal.ts';
import { DEFAULT_TARGET, type TargetChanges } from './store.ts';
import { toTargetJson } from './targets.ts';

/**
 * /v1/targets: the main servers this dispatcher (or pool) delivers to
 * (issue 12). The operator's alone: a target's token gets 403. Input is
 * checked in full (../protocol/targets.ts) before anything is stored. The
 * secrets are write-only: answers say signingSecretSet and tokenSet, never
 * the values. `default` is the dispatcher's own flags: listed, never changed
 * or removed here (409). A target is removed only once it has nothing left
 * to deliver and no schedules (409 naming what it still has): removing it
 * earlier would leave its messages with nowhere to go.
 */

const TARGET_BODY_LIMIT = 16 * 1024;

export function registerTargetRoutes(v1: FastifyInstance, ctx: DispatcherContext): void {
  const { store, clock, targets, config } = ctx;
  const operatorOnly = async (request: FastifyRequest) => requireOperator(request, 'managing targets');

  v1.get('/targets', { onRequest: operatorOnly }, async () => {
    const stored = await store.listTargets();
    const items: TargetJson[] = [targets.defaultJson(), ...stored.map(toTargetJson)];
    return { items };
  });

  v1.get('/targets/:name', { onRequest: operatorOnly }, async (request) => {
    const { name } = request.params as { name: string };
    if (name === DEFAULT_TARGET) return targets.defaultJson();
    const target = await store.getTarget(name);
    if (!target) throw notFound(name);
    return toTargetJson(target);
  });

  v1.post('/targets', { onRequest: operatorOnly, bodyLimit: TARGET_BODY_LIMIT }, async (request, reply) => {
    const valid = validateTargetCreate(request.body);
    const hash = valid.token === null ? null : await checkToken(valid.token, valid.name);
    const { token: _token, ...settings } = valid;
    const created = await tokenRace(hash, () => store.insertTarget({ ...settings, tokenHash: hash }, clock.now()));
    if (!created) throw new ConflictError(`a target named ${JSON.stringify(valid.name)} exists: change it with PATCH /v1/targets/${valid.name}`);
    const target = (await store.getTarget(valid.name))!;
    targets.learn(target);
    void reply.code(201).header('location', `/v1/targets/${valid.name}`);
    return toTargetJson(target);
  });

  v1.patch('/targets/:name', { onRequest: operatorOnly, bodyLimit: TARGET_BODY_LIMIT }, async (request) => {
    const { name } = request.params as { name: string };
    refuseBuiltIn(name, 'changed');
    const current = await store.getTarget(name);
    if (!current) throw notFound(name);
    const patch = validateTargetPatch(request.body, current);
    const { token, ...rest } = patch;
    const changes: TargetChanges = { ...rest };
    if (token !== undefined) changes.tokenHash = token === null ? null : await checkToken(token, name);
    const changed = await tokenRace(changes.tokenHash ?? null, () => store.updateTarget(name, changes, clock.now()));
    if (!changed) throw notFound(name);
    targets.learn(changed);
    return toTargetJson(changed);
  });

  v1.delete('/targets/:name', { onRequest: operatorOnly }, async (request, reply) => {
    const { name } = request.params as { name: string };
    refuseBuiltIn(name, 'removed');
    const outcome = await store.removeTarget(name);
    if (outcome.kind === 'not_found') throw notFound(name);
    if (outcome.kind === 'in_use') {
      const what = [
        outcome.pendingMessages > 0 ? `${outcome.pendingMessages} message(s) not yet delivered` : '',
        outcome.schedules > 0 ? `${outcome.schedules} schedule(s)` : '',
      ].filter(Boolean).join(' and ');
      throw new ConflictError(`target ${JSON.stringify(name)} still has ${what}: cancel or wait for them (GET /v1/messages?target=${name}, /v1/schedules?target=${name}), then remove it`);
    }
    targets.removed(name);
    return reply.code(204).send();
  });

  /**
   * Runs a write that stores a token hash: one given to another target by a
   * request racing this one (checkToken saw it free) fails the unique index;
   * that is the same 409 as when checkToken sees it.
   */
  async function tokenRace<T>(hash: string | null, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (err) {
      if (hash !== null && (await store.targetByTokenHash(hash).catch(() => undefined))) {
        throw new ConflictError('token is another target\'s: give each target a token of its own (openssl rand -hex 32)', undefined, { cause: err });
      }
      throw err;
    }
  }

  /** The token's hash, unless the token is the operator's or another target's (a token names one caller). */
  async function checkToken(token: string, name: string): Promise<string> {
    if (config.apiToken !== undefined && token === config.apiToken) {
      throw new ValidationError('token must not be the operator\'s --api-token: a target\'s token is its own', 'token');
    }
    const hash = tokenHash(token);
    const holder = await store.targetByTokenHash(hash);
    if (holder && holder.name !== name) throw new ConflictError('token is another target\'s: give each target a token of its own (openssl rand -hex 32)');
    return hash;
  }
}

function refuseBuiltIn(name: string, action: string): void {
  if (name === DEFAULT_TARGET) {
    throw new ConflictError(`target "default" is built in: it is this dispatcher's --main-url, --main-protocol, --signing-secret and --signature-scheme, and cannot be ${action} through the API (change the flags and restart)`);
  }
  checkNameOrNotFound(name);
}

/** A name that could not be a target's is not one: 404, as for any unknown name. */
function checkNameOrNotFound(name: string): void {
  try {
    checkName(name);
  } catch {
    throw notFound(name);
  }
}

function notFound(name: string): NotFoundError {
  return new NotFoundError(`No target named ${JSON.stringify(name)}`);
}
