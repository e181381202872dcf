import {
  MESSAGE_STATUSES,
  type AttemptRecord,
  type ChangeOutcome,
  type ClaimRequest,
  type DeliveredQuery,
  type DeliveryResult,
  type DispatcherStore,
  type InsertOutcome,
  type ListQuery,
  type MessagePatch,
  type MessageStatus,
  type NewMessage,
  type NewSchedule,
  type ScheduleChangeOutcome,
  type ScheduleChanges,
  type SchedulePlan,
  type StoredMessage,
  type StoredSchedule,
  type NewTarget,
  type StoredTarget,
  type TargetChanges,
  type TargetRemoveOutcome,
  DEFAULT_TARGET,
} from '../../dispatcher/store.ts';
import type { SqliteConnection } from './connection.ts';
import { SqliteDatabase, type SqliteDurabilityOptions } from './database.ts';
import type { GroupCommit } from './group-commit.ts';
import { dispatcherMigrations } from './migrations.ts';
import { lockForOneDispatcher } from './owner-lock.ts';
import type { Params } from './prepared.ts';
import { dispatcherStatements as sql } from './statements.ts';
import {
  type AttemptRow, type MessageRow, type ScheduleRow, changedSchedule, withdrawal, compareDue, compareIds, filterParams, isFiltered, isTargetIndexed,
  newStoredMessage, newStoredSchedule, toAttempt, toMessage, toSchedule,
  type TargetRow, changedTarget, newStoredTarget, toTarget,
} from '../rows.ts';

/**
 * Rows per transaction for the engine's bulk changes (purge). node:sqlite
 * runs on the event loop: one 50,000-row change held it 270 ms, delaying
 * every delivery due meanwhile. At ~5 µs a row a chunk of 1,000 holds it
 * ~5 ms, and other calls run between chunks.
 */
const ROWS_PER_CHUNK = 1000;

/**
 * The dispatcher's store on embedded SQLite (node:sqlite). One process owns
 * the file; writes go through group commit (./group-commit.ts).
 *
 * Leases are kept per owner (table owners, migration 3): renewing is one row,
 * and a message's lease is its owner's. Every lease in the file when it is
 * opened belongs to a process that is gone (one process owns the file), so
 * migrate() expires them all: the first refill takes over their claims at
 * once instead of waiting a lease time.
 *
 * Durability: user writes (insert, update, remove, retry) are 'durable': they
 * resolve once the WAL is fsynced after their COMMIT. The engine's own transitions (claims, leases,
 * startDelivery, finishDeliveries, purge) are 'relaxed' (synchronous=NORMAL):
 * they survive a crash of the process, and losing the last few to a power cut
 * only means a message is claimed or delivered again, which the receiver
 * dedupes by id. The next durable call's fsync takes them to disk too.
 */
export interface SqliteDispatcherStoreOptions {
  /** Lock the file to this process (./owner-lock.ts): what a dispatcher does; tests may share a file. */
  oneProcess?: boolean;
  /** Injects the WAL sync (tests make it fail). */
  fdatasync?: SqliteDurabilityOptions['fdatasync'];
}

export function openSqliteDispatcherStore(path: string, options: SqliteDispatcherStoreOptions = {}): DispatcherStore {
  // locked before the file is opened: a second dispatcher must not touch it
  const release = options.oneProcess && path !== ':memory:' ? lockForOneDispatcher(path) : undefined;
  try {
    return new SqliteDispatcherStore(path, release, options.fdatasync);
  } catch (err) {
    release?.();
    throw err;
  }
}

interface InsertCall {
  messages: NewMessage[];
  now: number;
  claim: ClaimRequest | undefined;
  resolve: (outcomes: InsertOutcome[]) => void;
  reject: (reason: unknown) => void;
}

type InsertResult = { ok: true; outcomes: InsertOutcome[] } | { ok: false; error: unknown };

interface DueRow {
  id: string;
  due_at: number;
  status: MessageStatus;
}

class SqliteDispatcherStore implements DispatcherStore {
  readonly shared = false;
  #database: SqliteDatabase;
  #connection: SqliteConnection;
  #commits: GroupCommit;

  /** The insert that later calls may still join (see insert()), and the group commit's count when it was queued. */
  #joining: { calls: InsertCall[]; enqueued: number } | undefined;

  #releaseLock: (() => void) | undefined;
  #halted: Error | undefined;
  #haltListeners = new Set<(err: Error) => void>();

  constructor(path: string, releaseLock?: () => void, fdatasync?: SqliteDurabilityOptions['fdatasync']) {
    this.#releaseLock = releaseLock;
    this.#database = new SqliteDatabase(path, { fdatasync, onFailure: (err) => this.#halt(err) });
    this.#connection = this.#database.connection;
    this.#commits = this.#database.commits;
  }

  async migrate(): Promise<void> {
    await this.#database.migrate(dispatcherMigrations);
    await this.#commits.write('relaxed', () => this.#changes(sql.expireAllLeases, {}));
  }

  /**
   * Calls made while an earlier insert still waits for its group, with no
   * other call queued after it, join that insert's job: one multi-row INSERT
   * and one count update for all of them instead of a savepoint, an INSERT
   * and an UPDATE each (single-message scheduling: 16 requests in flight come
   * in groups of ~8). They see each other as calls in that order would: a
   * later call's idempotency key finds an earlier call's message.
   */
  insert(messages: NewMessage[], now: number, claim?: ClaimRequest): Promise<InsertOutcome[]> {
    return new Promise((resolve, reject) => {
      const call: InsertCall = { messages, now, claim, resolve, reject };
      const joining = this.#joining;
      if (joining && this.#commits.enqueued === joining.enqueued) {
        joining.calls.push(call);
        return;
      }
      const calls = [call];
      const job = this.#commits.write('durable', () => {
        if (this.#joining?.calls === calls) this.#joining = undefined;
        return this.#insertCalls(calls);
      });
      this.#joining = { calls, enqueued: this.#commits.enqueued };
      job.then((results) => {
        for (let i = 0; i < calls.length; i++) {
          const result = results[i]!;
          if (result.ok) calls[i]!.resolve(result.outcomes);
          else calls[i]!.reject(result.error);
        }
      }, (err: unknown) => {
        // never run (store closed or halted) or its group failed: no later call may join it
        if (this.#joining?.calls === calls) this.#joining = undefined;
        for (const joined of calls) joined.reject(err);
      });
    });
  }

  /** Runs the joined calls in one INSERT; if that fails, each on its own, so one call's error is its own. */
  #insertCalls(calls: InsertCall[]): InsertResult[] {
    if (calls.length === 1) return [{ ok: true, outcomes: this.#insertAll(calls)[0]! }];
    const connection = this.#connection;
    connection.statement('SAVEPOINT joined').run();
    try {
      const all = this.#insertAll(calls);
      connection.statement('RELEASE joined').run();
      return all.map((outcomes) => ({ ok: true, outcomes }));
    } catch (err) {
      if (!connection.inTransaction) throw err;
      connection.statement('ROLLBACK TO joined').run();
      connection.statement('RELEASE joined').run();
    }
    return calls.map((call) => {
      connection.statement('SAVEPOINT joined').run();
      try {
        const [outcomes] = this.#insertAll([call]);
        connection.statement('RELEASE joined').run();
        return { ok: true, outcomes: outcomes! };
      } catch (error) {
        // disk full or an I/O error: SQLite rolled the whole transaction back, so the whole group fails
        if (!connection.inTransaction) throw error;
        connection.statement('ROLLBACK TO joined').run();
        connection.statement('RELEASE joined').run();
        return { ok: false, error };
      }
    });
  }

  #insertAll(calls: InsertCall[]): InsertOutcome[][] {
    // keys created earlier in these calls: not in the table until the rows go in at the end
    const createdByKey = new Map<string, StoredMessage>();
    const rows: Params[] = [];
    const results = calls.map(({ messages, now, claim }) => {
      const outcomes: InsertOutcome[] = [];
      const created: StoredMessage[] = [];
      for (const message of messages) {
        const target = message.target ?? DEFAULT_TARGET;
        // keys are a target's own; a NUL cannot be in a target name
        const key = message.idempotencyKey === null ? null : `${target}\u0000${message.idempotencyKey}`;
        if (key !== null) {
          const existing = createdByKey.get(key) ?? this.#messageWithKey(target, message.idempotencyKey!);
          if (existing) {
            outcomes.push({ message: { ...existing }, created: false });
            continue;
          }
        }
        const stored = newStoredMessage(message, now, claim);
        if (key !== null) createdByKey.set(key, stored);
        created.push(stored);
        outcomes.push({ message: stored, created: true });
        rows.push({
          id: stored.id,
          username: stored.username,
          message: stored.message,
          scheduledAt: stored.scheduledAt,
          idempotencyKey: stored.idempotencyKey,
          now,
          leaseOwner: stored.leaseOwner,
          target: stored.target,
          deliverBy: stored.deliverBy,
        });
      }
      if (claim && created.some((stored) => stored.leaseOwner !== null)) {
        const leaseExpiresAt = this.#ensureLease(claim.owner, claim.leaseExpiresAt);
        for (const stored of created) if (stored.leaseOwner !== null) stored.leaseExpiresAt = leaseExpiresAt;
      }
      return outcomes;
    });
    this.#connection.multiRow(sql.insertMessages).run(rows);
    this.#addToCount('scheduled', rows.length);
    return results;
  }

  #messageWithKey(target: string, idempotencyKey: string): StoredMessage | undefined {
    const row = this.#row(sql.getMessageByIdempotencyKey, { target, idempotencyKey });
    return row && toMessage(row);
  }

  get(id: string): Promise<StoredMessage | undefined> {
    return this.#commits.read(() => {
      const row = this.#row(sql.getMessage, { id });
      return row && toMessage(row);
    });
  }

  list(query: ListQuery): Promise<StoredMessage[]> {
    return this.#commits.read(() => {
      if (query.limit <= 0) return [];
      const statuses = query.status === undefined ? MESSAGE_STATUSES : typeof query.status === 'string' ? [query.status] : query.status;
      if (statuses.length === 1) return this.#listStatus(statuses[0]!, query);
      // No index spans every status: merge the per-status pages, each already in (dueAt, id) order.
      return [...new Set(statuses)].flatMap((status) => this.#listStatus(status, query))
        .sort(compareDue)
        .slice(0, query.limit);
    });
  }

  #listStatus(status: MessageStatus, query: ListQuery): StoredMessage[] {
    const { target, ...filter } = filterParams(query);
    const rows = isFiltered(query)
      ? this.#rows(target !== null && isTargetIndexed(status) ? sql.listTargetFiltered : sql.listFiltered, {
        status,
        afterDueAt: query.after?.dueAt ?? -Number.MAX_SAFE_INTEGER,
        afterId: query.after?.id ?? '',
        limit: query.limit,
        target,
        ...filter,
      })
      : query.after
        ? this.#rows(sql.listByStatusAfter, { status, afterDueAt: query.after.dueAt, afterId: query.after.id, limit: query.limit })
        : this.#rows(sql.listByStatus, { status, limit: query.limit });
    return rows.map(toMessage);
  }

  listRecentlyDelivered(limit: number, query: DeliveredQuery = {}): Promise<StoredMessage[]> {
    return this.#commits.read(() => {
      if (limit <= 0) return [];
      if (!isFiltered(query) && !query.before) return this.#rows(sql.listRecentlyDelivered, { limit }).map(toMessage);
      return this.#rows(sql.listDeliveredFiltered, {
        beforeAt: query.before?.deliveredAt ?? Number.MAX_SAFE_INTEGER,
        // above every id (ids are UUIDs: hex digits and dashes)
        beforeId: query.before?.id ?? '~',
        limit,
        ...filterParams(query),
      }).map(toMessage);
    });
  }

  attempts(id: string): Promise<AttemptRecord[]> {
    return this.#commits.read(() => this.#connection.statement(sql.listAttempts).all<AttemptRow>({ id }).map(toAttempt));
  }

  update(id: string, patch: MessagePatch, now: number, claim?: ClaimRequest): Promise<ChangeOutcome> {
    return this.#commits.write('durable', () => this.#change(id, sql.updateMessage, {
      id,
      now,
      scheduledAt: patch.scheduledAt ?? null,
      message: patch.message ?? null,
      setDeliverBy: patch.deliverBy === undefined ? 0 : 1,
      deliverBy: patch.deliverBy ?? null,
      ...claimParams(claim),
    }));
  }

  remove(id: string): Promise<ChangeOutcome> {
    return this.#commits.write('durable', () => {
      const outcome = this.#change(id, sql.removeMessage, { id });
      if (outcome.kind === 'ok') {
        this.#addToCount(outcome.message.status, -1);
        this.#changes(sql.removeAttempts, { id });
      }
      return outcome;
    });
  }

  retry(id: string, now: number, claim?: ClaimRequest, deliverBy: number | null = null): Promise<ChangeOutcome> {
    return this.#commits.write('durable', () => {
      const before = this.#connection.statement(sql.getStatus).get<{ status: MessageStatus }>({ id });
      const outcome = this.#change(id, sql.retryMessage, { id, now, deliverBy, ...claimParams(claim) });
      if (outcome.kind === 'ok') this.#move(before!.status, 'scheduled', 1);
      return outcome;
    });
  }

  /**
   * Runs a statement that changes one message only in an allowed status, and
   * tells why it did not. An owner claiming the message gets a lease if it has none.
   */
  #change(id: string, statement: string, params: Params): ChangeOutcome {
    const row = this.#row(statement, params);
    if (row) {
      if (row.lease_owner !== null) {
        row.lease_expires_at = row.lease_owner === params.owner
          ? this.#ensureLease(row.lease_owner, params.leaseExpiresAt as number)
          : this.#leaseOf(row.lease_owner);
      }
      return { kind: 'ok', message: toMessage(row) };
    }
    const current = this.#connection.statement(sql.getStatus).get<{ status: MessageStatus }>({ id });
    return current ? { kind: 'conflict', status: current.status } : { kind: 'not_found' };
  }

  claimDue(owner: string, dueBefore: number, now: number, leaseExpiresAt: number, limit: number, skipTargets: readonly string[] = []): Promise<StoredMessage[]> {
    if (limit <= 0) return Promise.resolve([]);
    return this.#commits.write('relaxed', () => {
      // the claimer's own lease first: it never counts itself as expired
      this.#extendLease(owner, leaseExpiresAt);
      const unclaimed = skipTargets.length === 0
        ? this.#connection.statement(sql.findUnclaimedDue).all<DueRow>({ dueBefore, limit })
        : this.#connection.statement(sql.findUnclaimedDueSkipping).all<DueRow>({ dueBefore, limit, skipTargets: JSON.stringify(skipTargets) });
      const expiredOwners = this.#connection.statement(sql.findExpiredOwners).all<{ owner: string }>({ now, owner });
      // each expired owner's claims come out of the index in due order; merged with the unclaimed ones below
      const expired = expiredOwners.flatMap(({ owner: expiredOwner }) =>
        this.#connection.statement(sql.findOwnerClaims).all<DueRow>({ expiredOwner, dueBefore, limit, skipTargets: JSON.stringify(skipTargets) }));
      const isExpired = new Set(expired.map((row) => row.id));
      const due = unclaimed.concat(expired)
        .sort((a, b) => a.due_at - b.due_at || compareIds(a.id, b.id))
        .slice(0, limit);
      const ids = (rows: DueRow[]) => rows.map(({ id }) => ({ id }));
      this.#connection.multiRow(sql.claimMessages).run(ids(due.filter((row) => !isExpired.has(row.id))), { owner });
      this.#connection.multiRow(sql.reclaimMessages).run(ids(due.filter((row) => isExpired.has(row.id))), { owner });
      this.#move('delivering', 'scheduled', due.filter((row) => row.status === 'delivering').length);
      if (expiredOwners.length > 0) this.#changes(sql.forgetExpiredOwners, { now, owner });
      const claimed = new Map(this.#connection.multiRow(sql.getMessages).all<MessageRow>(ids(due)).map((row) => [row.id, row]));
      return due.map((row) => toMessage(claimed.get(row.id)!));
    });
  }

  /** One row, however many messages the owner holds; returns how many it holds. */
  renewLeases(owner: string, leaseExpiresAt: number): Promise<number> {
    return this.#commits.write('relaxed', () => {
      this.#extendLease(owner, leaseExpiresAt);
      return this.#connection.statement(sql.countClaims).get<{ count: number }>({ owner })!.count;
    });
  }

  releaseClaims(owner: string): Promise<number> {
    return this.#commits.write('relaxed', () => {
      const deliveries = this.#changes(sql.releaseDeliveries, { owner });
      this.#move('delivering', 'scheduled', deliveries);
      const released = deliveries + this.#changes(sql.releaseClaims, { owner });
      this.#changes(sql.releaseLease, { owner });
      return released;
    });
  }

  startDelivery(owner: string, entries: { id: string; version: number }[], now: number): Promise<StoredMessage[]> {
    if (entries.length === 0) return Promise.resolve([]);
    return this.#commits.write('relaxed', () => {
      const startable = this.#stillHeld(owner, entries).map(({ row }) => row);
      this.#connection.multiRow(sql.startDelivery).run(startable.map((row) => ({ id: row.id })), { now });
      this.#move('scheduled', 'delivering', startable.length);
      // in the order asked for: the engine delivers in that (due) order
      return startable.map((row) => ({ ...toMessage(row), status: 'delivering' as const, attempts: row.attempts + 1, updatedAt: now }));
    });
  }

  expire(owner: string, entries: { id: string; version: number; error: string }[], now: number): Promise<StoredMessage[]> {
    if (entries.length === 0) return Promise.resolve([]);
    return this.#commits.write('relaxed', () => {
      const expired = this.#stillHeld(owner, entries);
      this.#connection.multiRow(sql.markExpired).run(expired.map(({ row, entry }) => ({ id: row.id, error: entry.error })), { now });
      this.#move('scheduled', 'expired', expired.length);
      return expired.map(({ row, entry }) => ({
        ...toMessage(row), status: 'expired' as const, updatedAt: now, lastError: entry.error, leaseOwner: null, leaseExpiresAt: null,
      }));
    });
  }

  /**
   * The compare-and-set of startDelivery and expire, checked on rows read
   * inside the caller's transaction (nothing can change them in between):
   * the entries still scheduled, leased to `owner`, in the version asked
   * for, in the order asked for; an id asked for twice counts once.
   */
  #stillHeld<E extends { id: string; version: number }>(owner: string, entries: E[]): { entry: E; row: MessageRow }[] {
    const rows = this.#connection.multiRow(sql.getMessages).all<MessageRow>(entries.map((entry) => ({ id: entry.id })));
    const byId = new Map(rows.map((row) => [row.id, row]));
    const held: { entry: E; row: MessageRow }[] = [];
    for (const entry of entries) {
      const row = byId.get(entry.id);
      if (row && row.status === 'scheduled' && row.lease_owner === owner && row.version === entry.version) {
        held.push({ entry, row });
        byId.delete(entry.id);
      }
    }
    return held;
  }

  finishDeliveries(owner: string, results: DeliveryResult[]): Promise<void> {
    if (results.length === 0) return Promise.resolve();
    return this.#commits.write('relaxed', () => {
      const rows = (outcome: DeliveryResult['outcome']) => results
        .filter((result) => result.outcome === outcome)
        .map((result) => ({ id: result.id, at: result.at, error: result.error ?? null }));
      const retries = results
        .filter((result) => result.outcome === 'retry')
        .map((result) => ({ id: result.id, at: result.at, error: result.error ?? null, release: result.release ? 1 : 0 }));
      // the history first: it is written only for messages still delivering, which the marks below change
      const attempts = results.filter((result) => result.attempt !== undefined).map(({ id, outcome, error, attempt }) => ({
        id,
        attempt: attempt!.number,
        startedAt: attempt!.startedAt,
        finishedAt: attempt!.finishedAt,
        outcome,
        httpStatus: attempt!.httpStatus ?? null,
        error: error ?? null,
      }));
      if (attempts.length > 0) this.#connection.multiRow(sql.recordAttempts).run(attempts, { owner });
      this.#move('delivering', 'delivered', this.#connection.multiRow(sql.markDelivered).run(rows('delivered'), { owner }));
      this.#move('delivering', 'scheduled', this.#connection.multiRow(sql.markRetry).run(retries, { owner }));
      this.#move('delivering', 'dead', this.#connection.multiRow(sql.markDead).run(rows('dead'), { owner }));
      this.#move('delivering', 'expired', this.#connection.multiRow(sql.markExpiredUnsent).run(rows('expired'), { owner }));
    });
  }

  takeTokens(target: string, want: number, ratePerSecond: number, burst: number, now: number): Promise<{ granted: number; remaining: number }> {
    return this.#commits.write('relaxed', () => {
      const row = this.#connection.statement(sql.takeTokens).get<{ granted: number; tokens: number }>({ name: target, want, rate: ratePerSecond, burst, now })!;
      return { granted: row.granted, remaining: row.tokens };
    });
  }

  countLiveOwners(now: number): Promise<number> {
    return this.#commits.read(() => this.#connection.statement(sql.countLiveOwners).get<{ count: number }>({ now })!.count);
  }

  countByStatus(): Promise<Record<MessageStatus, number>> {
    return this.#commits.read(() => {
      const counts = Object.fromEntries(MESSAGE_STATUSES.map((status) => [status, 0])) as Record<MessageStatus, number>;
      const rows = this.#connection.statement(sql.countByStatus).all<{ status: MessageStatus; count: number }>();
      for (const row of rows) counts[row.status] = row.count;
      return counts;
    });
  }

  purgeDelivered(before: number): Promise<number> {
    return this.#inChunks(() => {
      this.#changes(sql.purgeDeliveredAttempts, { before, limit: ROWS_PER_CHUNK });
      const purged = this.#changes(sql.purgeDelivered, { before, limit: ROWS_PER_CHUNK });
      this.#addToCount('delivered', -purged);
      return purged;
    });
  }

  // ---- schedules --------------------------------------------------------------

  insertSchedule(schedule: NewSchedule, now: number): Promise<{ schedule: StoredSchedule; created: boolean }> {
    return this.#commits.write('durable', () => {
      if (schedule.idempotencyKey !== null) {
        const existing = this.#connection.statement(sql.getScheduleByIdempotencyKey).get<ScheduleRow>({
          target: schedule.target ?? DEFAULT_TARGET, idempotencyKey: schedule.idempotencyKey,
        });
        if (existing) return { schedule: toSchedule(existing), created: false };
      }
      const stored = newStoredSchedule(schedule, now);
      this.#connection.statement(sql.insertSchedule).run(scheduleParams(stored));
      return { schedule: stored, created: true };
    });
  }

  getSchedule(id: string): Promise<StoredSchedule | undefined> {
    return this.#commits.read(() => this.#schedule(id));
  }

  listSchedules(query: { limit: number; afterId?: string; target?: string }): Promise<StoredSchedule[]> {
    return this.#commits.read(() => {
      if (query.limit <= 0) return [];
      const rows = query.target !== undefined
        ? this.#connection.statement(sql.listTargetSchedules).all<ScheduleRow>({ target: query.target, limit: query.limit, afterId: query.afterId ?? '' })
        : query.afterId === undefined
        ? this.#connection.statement(sql.listSchedules).all<ScheduleRow>({ limit: query.limit })
        : this.#connection.statement(sql.listSchedulesAfter).all<ScheduleRow>({ limit: query.limit, afterId: query.afterId });
      return rows.map(toSchedule);
    });
  }

  updateSchedule(id: string, expectedVersion: number, changes: ScheduleChanges, now: number, cancelMessageIds: string[]): Promise<ScheduleChangeOutcome> {
    return this.#commits.write('durable', () => {
      const current = this.#schedule(id);
      if (!current) return { kind: 'not_found' };
      if (current.version !== expectedVersion) return { kind: 'conflict' };
      const withdrawn = this.#cancelOccurrences(cancelMessageIds);
      const changed = changedSchedule(current, { ...changes, ...withdrawal(current, withdrawn, now) }, now);
      this.#connection.statement(sql.writeSchedule).run(scheduleParams(changed));
      return { kind: 'ok', schedule: changed, withdrawn };
    });
  }

  removeSchedule(id: string, withdraw: (schedule: StoredSchedule) => string[]): Promise<boolean> {
    // one write transaction: no materialisation can come between this read and the delete
    return this.#commits.write('durable', () => {
      const current = this.#schedule(id);
      if (!current) return false;
      this.#changes(sql.removeSchedule, { id });
      this.#cancelOccurrences(withdraw(current));
      return true;
    });
  }

  materializeDue(dueBefore: number, limit: number, now: number, plan: (schedule: StoredSchedule) => SchedulePlan): Promise<{ schedules: number; created: StoredMessage[] }> {
    if (limit <= 0) return Promise.resolve({ schedules: 0, created: [] });
    return this.#commits.write('relaxed', () => {
      const due = this.#connection.statement(sql.findDueSchedules).all<ScheduleRow>({ dueBefore, limit }).map(toSchedule);
      const created: StoredMessage[] = [];
      for (const schedule of due) {
        const { messages, nextFireAt, lastFireAt } = plan(schedule);
        let added = 0;
        for (const message of messages) {
          const params = { id: message.id, username: message.username, message: message.message, scheduledAt: message.scheduledAt, now, target: schedule.target };
          if (this.#changes(sql.insertOccurrence, params) > 0) {
            created.push(newStoredMessage({ ...message, target: schedule.target }, now, undefined));
            added++;
          }
        }
        const advanced = changedSchedule(schedule, { nextFireAt, lastFireAt, occurrences: schedule.occurrences + added }, now);
        this.#connection.statement(sql.writeSchedule).run(scheduleParams(advanced));
      }
      this.#addToCount('scheduled', created.length);
      return { schedules: due.length, created };
    });
  }

  #schedule(id: string): StoredSchedule | undefined {
    const row = this.#connection.statement(sql.getSchedule).get<ScheduleRow>({ id });
    return row && toSchedule(row);
  }

  #cancelOccurrences(ids: string[]): number {
    let cancelled = 0;
    for (const id of ids) cancelled += this.#changes(sql.cancelOccurrence, { id });
    this.#addToCount('scheduled', -cancelled);
    return cancelled;
  }

  // ---- targets ----------------------------------------------------------------

  listTargets(): Promise<StoredTarget[]> {
    return this.#commits.read(() => this.#connection.statement(sql.listTargets).all<TargetRow>().map(toTarget));
  }

  getTarget(name: string): Promise<StoredTarget | undefined> {
    return this.#commits.read(() => this.#target(name));
  }

  targetByTokenHash(tokenHash: string): Promise<StoredTarget | undefined> {
    return this.#commits.read(() => {
      const row = this.#connection.statement(sql.getTargetByTokenHash).get<TargetRow>({ tokenHash });
      return row && toTarget(row);
    });
  }

  insertTarget(target: NewTarget, now: number): Promise<boolean> {
    return this.#commits.write('durable', () => this.#changes(sql.insertTarget, targetParams(newStoredTarget(target, now))) > 0);
  }

  updateTarget(name: string, changes: TargetChanges, now: number): Promise<StoredTarget | undefined> {
    return this.#commits.write('durable', () => {
      const current = this.#target(name);
      if (!current) return undefined;
      const changed = changedTarget(current, changes, now);
      this.#changes(sql.writeTarget, targetParams(changed));
      return changed;
    });
  }

  removeTarget(name: string): Promise<TargetRemoveOutcome> {
    // one write transaction: nothing can be scheduled for it between the counts and the delete
    return this.#commits.write('durable', (): TargetRemoveOutcome => {
      if (!this.#target(name)) return { kind: 'not_found' };
      const pendingMessages = this.#connection.statement(sql.countTargetPending).get<{ count: number }>({ name })!.count;
      const schedules = this.#connection.statement(sql.countTargetSchedules).get<{ count: number }>({ name })!.count;
      if (pendingMessages > 0 || schedules > 0) return { kind: 'in_use', pendingMessages, schedules };
      this.#changes(sql.removeTarget, { name });
      return { kind: 'ok' };
    });
  }

  #target(name: string): StoredTarget | undefined {
    const row = this.#connection.statement(sql.getTarget).get<TargetRow>({ name });
    return row && toTarget(row);
  }

  ping(): Promise<void> {
    if (this.#halted) return Promise.reject(this.#halted);
    return this.#commits.read(() => {
      this.#connection.statement('SELECT 1').get();
    });
  }

  onWake(_listener: () => void): () => void {
    // One process owns the SQLite file: nobody else can change it behind our back.
    return () => {};
  }

  onHalt(listener: (err: Error) => void): () => void {
    if (this.#halted) {
      const halted = this.#halted;
      queueMicrotask(() => listener(halted));
      return () => {};
    }
    this.#haltListeners.add(listener);
    return () => this.#haltListeners.delete(listener);
  }

  #halt(err: Error): void {
    this.#halted = err;
    const listeners = [...this.#haltListeners];
    this.#haltListeners.clear();
    for (const listener of listeners) listener(err);
  }

  async close(): Promise<void> {
    try {
      await this.#database.close();
    } finally {
      this.#releaseLock?.();
      this.#releaseLock = undefined;
    }
  }

  /** Runs `step` in one group commit after another until a chunk comes back short; returns the rows changed. */
  async #inChunks(step: () => number): Promise<number> {
    let total = 0;
    for (;;) {
      const changed = await this.#commits.write('relaxed', step);
      total += changed;
      if (changed < ROWS_PER_CHUNK) return total;
    }
  }

  /** Gives the owner a lease until `leaseExpiresAt` unless it has one; returns the lease's expiry. */
  #ensureLease(owner: string, leaseExpiresAt: number): number {
    this.#changes(sql.ensureLease, { owner, leaseExpiresAt });
    return this.#leaseOf(owner)!;
  }

  /** Extends the owner's lease to at least `leaseExpiresAt`; returns the lease's expiry. */
  #extendLease(owner: string, leaseExpiresAt: number): number {
    this.#changes(sql.extendLease, { owner, leaseExpiresAt });
    return this.#leaseOf(owner)!;
  }

  #leaseOf(owner: string): number | null {
    return this.#connection.statement(sql.getLease).get<{ lease_expires_at: number }>({ owner })?.lease_expires_at ?? null;
  }

  /** Keeps message_counts right: every change of a status's size goes through here, in the same transaction. */
  #addToCount(status: MessageStatus, change: number): void {
    if (change !== 0) this.#connection.statement(sql.addToCount).run({ status, change });
  }

  #move(from: MessageStatus, to: MessageStatus, count: number): void {
    this.#addToCount(from, -count);
    this.#addToCount(to, count);
  }

  #row(statement: string, params: Params): MessageRow | undefined {
    return this.#connection.statement(statement).get<MessageRow>(params);
  }

  #rows(statement: string, params: Params): MessageRow[] {
    return this.#connection.statement(statement).all<MessageRow>(params);
  }

  #changes(statement: string, params: Params): number {
    return Number(this.#connection.statement(statement).run(params).changes);
  }
}

function scheduleParams(schedule: StoredSchedule): Params {
  return {
    id: schedule.id,
    username: schedule.username,
    message: schedule.message,
    cron: schedule.cron,
    everyMs: schedule.everyMs,
    timeZone: schedule.timeZone,
    startAt: schedule.startAt,
    endAt: schedule.endAt,
    maxOccurrences: schedule.maxOccurrences,
    dstGap: schedule.dstGap,
    dstOverlap: schedule.dstOverlap,
    catchUp: schedule.catchUp,
    catchUpMax: schedule.catchUpMax,
    paused: schedule.paused ? 1 : 0,
    nextFireAt: schedule.nextFireAt,
    occurrences: schedule.occurrences,
    lastFireAt: schedule.lastFireAt,
    idempotencyKey: schedule.idempotencyKey,
    version: schedule.version,
    createdAt: schedule.createdAt,
    updatedAt: schedule.updatedAt,
    target: schedule.target,
  };
}

function targetParams(t: StoredTarget): Params {
  return {
    name: t.name,
    url: t.url,
    protocol: t.protocol,
    signatureScheme: t.signatureScheme,
    signingSecret: t.signingSecret,
    tokenHash: t.tokenHash,
    ratePerSecond: t.ratePerSecond,
    burst: t.burst,
    maxInFlight: t.maxInFlight,
    deliverWithinMs: t.deliverWithinMs,
    createdAt: t.createdAt,
    updatedAt: t.updatedAt,
  };
}

function claimParams(claim: ClaimRequest | undefined): { owner: string | null; dueBefore: number | null; leaseExpiresAt: number | null } {
  return claim
    ? { owner: claim.owner, dueBefore: claim.dueBefore, leaseExpiresAt: claim.leaseExpiresAt }
    : { owner: null, dueBefore: null, leaseExpiresAt: null };
}

