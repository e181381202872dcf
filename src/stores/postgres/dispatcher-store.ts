import { randomUUID } from 'node:crypto';
import type pg from 'pg';
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
} from '../../dispatcher/store.ts';
import { asUnavailable, createPool, defaultErrorLog, inTransaction, resolveSchema, runStatement } from './connection.ts';
import { GroupInsert } from './group-insert.ts';
import { runMigrations } from './migrate.ts';
import { dispatcherMigrations } from './migrations.ts';
import { dispatcherStatements as sql } from './statements.ts';
import { WakeListener } from './wake.ts';
import {
  type AttemptRow, type MessageRow, type ScheduleRow, changedSchedule, withdrawal, compareDue, compareIds, filterParams, isFiltered, isTargetIndexed,
  newStoredMessage, newStoredSchedule, toAttempt, toMessage, toSchedule,
  type TargetRow, changedTarget, newStoredTarget, targetValues, toTarget,
} from '../rows.ts';

/**
 * The dispatcher's store on PostgreSQL: the backend a pool of dispatchers
 * shares. Claims use FOR UPDATE SKIP LOCKED, so two dispatchers never hold the
 * same message; changes that leave a message unclaimed NOTIFY the others
 * (./wake.ts), so whoever has room claims it at once.
 *
 * Durability: user writes (insert, update, remove, retry) go through a pool
 * with synchronous_commit on: they resolve once the WAL is flushed. The
 * engine's own transitions (claims, leases, startDelivery, finishDeliveries,
 * purge) go through a small pool with synchronous_commit off: they are
 * visible to every other connection at once, and losing the last few to a
 * crash of PostgreSQL itself only means a message is claimed or delivered
 * again, which the receiver dedupes by id.
 *
 * When is a message "unclaimed but due soon" (worth waking the others for)?
 * When the caller did not claim it: an insert, update or retry without a
 * ClaimRequest (the caller's buffer is full or it does not buffer), or
 * releaseClaims. With a ClaimRequest, whatever stays unclaimed is due beyond
 * the caller's horizon, which the others' periodic refill will reach in time.
 * And a claimDue that took as many as it asked for wakes the others too: more
 * may be waiting (a dead owner's leftovers, a burst entering the horizon), and
 * the work spreads when they claim the rest side by side.
 */

export interface PostgresDispatcherStoreOptions {
  /** Every table lives in this schema, created if missing (one per test, or one per pool of dispatchers); default: the URL's `?schema=`, else the search_path. */
  schema?: string;
  /** Connections for user writes and reads (the engine's transitions have their own small pool). */
  poolSize?: number;
  /** Where connection trouble is reported; defaults to stderr. */
  onError?: (message: string, err: unknown) => void;
  /** False sends every insert call as its own statement (to measure what grouping them buys). Default true. */
  groupInserts?: boolean;
}

/**
 * Connections per dispatcher for user writes and reads. Group commit turns a
 * burst of inserts into few statements, so a handful suffices, and a pool of
 * dispatchers (this + the engine's 4 + 1 LISTEN each) stays far below
 * PostgreSQL's default max_connections (100).
 */
const DEFAULT_POOL_SIZE = 4;

/**
 * Connections for the engine's transitions. The engine runs about one claim,
 * one lease renewal, one startDelivery and one finishDeliveries at a time;
 * with a connection each, a due message's startDelivery never queues behind
 * a long claim or renewal.
 */
const ENGINE_POOL_SIZE = 4;

export async function openPostgresDispatcherStore(databaseUrl: string, options: PostgresDispatcherStoreOptions = {}): Promise<DispatcherStore> {
  const { url, schema } = resolveSchema(databaseUrl, options.schema);
  const onError = options.onError ?? defaultErrorLog;
  const selfId = randomUUID();
  const wake = new WakeListener({ url, schema, selfId, onError });
  // Connecting the listener first also checks the URL: a wrong one fails here, not at the first call.
  await wake.start().catch((err: unknown) => {
    throw asUnavailable(err);
  });
  return new PostgresDispatcherStore({
    schema,
    selfId,
    wake,
    pool: createPool(url, { schema, max: options.poolSize ?? DEFAULT_POOL_SIZE, onError }),
    enginePool: createPool(url, { schema, max: ENGINE_POOL_SIZE, synchronousCommit: false, onError }),
    groupInserts: options.groupInserts ?? true,
  });
}

interface Parts {
  schema: string | undefined;
  selfId: string;
  wake: WakeListener;
  pool: pg.Pool;
  enginePool: pg.Pool;
  groupInserts: boolean;
}

class PostgresDispatcherStore implements DispatcherStore {
  readonly shared = true;
  #schema: string | undefined;
  #selfId: string;
  #wake: WakeListener;
  #pool: pg.Pool;
  #enginePool: pg.Pool;
  #inserts: GroupInsert<NewRow>;
  #closed: Promise<void> | undefined;

  constructor(parts: Parts) {
    this.#schema = parts.schema;
    this.#selfId = parts.selfId;
    this.#wake = parts.wake;
    this.#pool = parts.pool;
    this.#enginePool = parts.enginePool;
    this.#inserts = new GroupInsert((rows) => this.#insertRows(rows), { enabled: parts.groupInserts });
  }

  migrate(): Promise<void> {
    return runMigrations(this.#pool, { table: 'dispatcher_migrations', schema: this.#schema, migrations: dispatcherMigrations });
  }

  async insert(messages: NewMessage[], now: number, claim?: ClaimRequest): Promise<InsertOutcome[]> {
    if (messages.length === 0) return [];
    const rows = messages.map((message) => newRow(message, now, claim));
    const outcomes = new Map<NewRow, InsertOutcome>();
    let pending = rows;
    // A conflicting message can be deleted between our INSERT and our look-up; it is inserted on the next turn.
    for (let turn = 0; turn < 3 && pending.length > 0; turn++) {
      const inserted = await this.#inserts.insert(pending);
      const skipped = pending.filter((row) => !inserted.has(row.message.id));
      for (const row of pending) if (inserted.has(row.message.id)) outcomes.set(row, { message: row.message, created: true });
      // Only an idempotency key conflict skips a row (a duplicate id fails the statement).
      const existing = await this.#byIdempotencyKey(skipped.map((row) => row.message));
      for (const row of skipped) {
        const found = existing.get(keyOf(row.message.target, row.message.idempotencyKey!));
        if (found) outcomes.set(row, { message: found, created: false });
      }
      pending = skipped.filter((row) => !outcomes.has(row));
    }
    if (pending.length > 0) {
      throw new Error(`Could not insert message ${pending[0]!.message.id}: a message with its idempotency key keeps being inserted and deleted concurrently`);
    }
    return rows.map((row) => outcomes.get(row)!);
  }

  /**
   * One statement for rows of one or several calls (./group-insert.ts). A
   * claimed message's lease is its owner's: the one it had, or the claim's
   * when this insert gave it its first.
   */
  async #insertRows(rows: NewRow[]): Promise<Set<string>> {
    const messages = rows.map((row) => row.message);
    const result = await this.#run<{ id: string; lease_expires_at: number | null }>(this.#pool, 'insertMessages', [
      messages.map((m) => m.id),
      messages.map((m) => m.username),
      messages.map((m) => m.message),
      messages.map((m) => m.scheduledAt),
      messages.map((m) => m.idempotencyKey),
      messages.map((m) => m.createdAt),
      messages.map((m) => m.leaseOwner),
      messages.map((m) => m.leaseExpiresAt),
      // in a group of calls, an unclaimed row of a claiming call may wake the others too: harmless
      rows.some((row) => row.wake),
      this.#wake.channel,
      this.#selfId,
      messages.map((m) => m.target),
      messages.map((m) => m.deliverBy),
    ]);
    const leases = new Map(result.rows.map((row) => [row.id, row.lease_expires_at]));
    for (const message of messages) {
      const lease = leases.get(message.id);
      if (lease != null && message.leaseOwner !== null) message.leaseExpiresAt = lease;
    }
    return new Set(leases.keys());
  }

  /** The existing messages with these messages' (target, idempotency key), by keyOf. */
  async #byIdempotencyKey(messages: StoredMessage[]): Promise<Map<string, StoredMessage>> {
    if (messages.length === 0) return new Map();
    const { rows } = await this.#run<MessageRow>(this.#pool, 'getMessagesByIdempotencyKeys', [
      messages.map((m) => m.target), messages.map((m) => m.idempotencyKey),
    ]);
    return new Map(rows.map((row) => [keyOf(row.target, row.idempotency_key!), toMessage(row)]));
  }

  async get(id: string): Promise<StoredMessage | undefined> {
    const { rows } = await this.#run<MessageRow>(this.#pool, 'getMessage', [id]);
    return rows[0] && toMessage(rows[0]);
  }

  async list(query: ListQuery): Promise<StoredMessage[]> {
    if (query.limit <= 0) return [];
    const statuses = query.status === undefined ? [...MESSAGE_STATUSES] : typeof query.status === 'string' ? [query.status] : [...new Set(query.status)];
    if (isFiltered(query)) {
      const f = filterParams(query);
      const params = (some: MessageStatus[]) => [
        some, query.limit, query.after?.dueAt ?? -Number.MAX_SAFE_INTEGER, query.after?.id ?? '', f.dueFrom, f.dueTo, f.username, f.text, f.target,
      ];
      if (f.target === null) return (await this.#run<MessageRow>(this.#pool, 'listFiltered', params(statuses))).rows.map(toMessage);
      // a target's own index holds some statuses; the others come from the pool-wide index, filtered by target
      const indexed = statuses.filter(isTargetIndexed);
      const others = statuses.filter((status) => !isTargetIndexed(status));
      const pages = await Promise.all([
        indexed.length > 0 ? this.#run<MessageRow>(this.#pool, 'listTargetFiltered', params(indexed)) : undefined,
        others.length > 0 ? this.#run<MessageRow>(this.#pool, 'listFiltered', params(others)) : undefined,
      ]);
      return pages.flatMap((page) => page?.rows ?? []).map(toMessage).sort(compareDue).slice(0, query.limit);
    }
    const { rows } = query.after
      ? await this.#run<MessageRow>(this.#pool, 'listByStatusAfter', [statuses, query.limit, query.after.dueAt, query.after.id])
      : await this.#run<MessageRow>(this.#pool, 'listByStatus', [statuses, query.limit]);
    return rows.map(toMessage);
  }

  update(id: string, patch: MessagePatch, now: number, claim?: ClaimRequest): Promise<ChangeOutcome> {
    return this.#change(id, 'updateMessage', [
      id, now, patch.scheduledAt ?? null, patch.message ?? null,
      claim?.owner ?? null, claim?.dueBefore ?? null, claim?.leaseExpiresAt ?? null,
      claim === undefined, this.#wake.channel, this.#selfId,
      patch.deliverBy !== undefined, patch.deliverBy ?? null,
    ]);
  }

  remove(id: string): Promise<ChangeOutcome> {
    return this.#change(id, 'removeMessage', [id]);
  }

  retry(id: string, now: number, claim?: ClaimRequest, deliverBy: number | null = null): Promise<ChangeOutcome> {
    return this.#change(id, 'retryMessage', [
      id, now, claim?.owner ?? null, claim?.dueBefore ?? null, claim?.leaseExpiresAt ?? null,
      claim === undefined, this.#wake.channel, this.#selfId, deliverBy,
    ]);
  }

  /** Runs a statement that changes one message only in an allowed status, and tells why it did not. */
  async #change(id: string, name: 'updateMessage' | 'removeMessage' | 'retryMessage', values: unknown[]): Promise<ChangeOutcome> {
    const { rows } = await this.#run<MessageRow>(this.#pool, name, values);
    if (rows[0]) return { kind: 'ok', message: toMessage(rows[0]) };
    const current = await this.#run<{ status: MessageStatus }>(this.#pool, 'getStatus', [id]);
    return current.rows[0] ? { kind: 'conflict', status: current.rows[0].status } : { kind: 'not_found' };
  }

  async claimDue(owner: string, dueBefore: number, now: number, leaseExpiresAt: number, limit: number, skipTargets: readonly string[] = []): Promise<StoredMessage[]> {
    if (limit <= 0) return [];
    const { rows } = await this.#run<MessageRow>(this.#enginePool, 'claimDue', [
      owner, dueBefore, now, leaseExpiresAt, limit, this.#wake.channel, this.#selfId, skipTargets,
    ]);
    return rows.map(toMessage).sort(compareDue);
  }

  /** One row however many messages the owner holds (migration 2); returns how many it holds. */
  async renewLeases(owner: string, leaseExpiresAt: number): Promise<number> {
    const { rows } = await this.#run<{ count: number }>(this.#enginePool, 'renewLeases', [owner, leaseExpiresAt]);
    return rows[0]?.count ?? 0;
  }

  async releaseClaims(owner: string): Promise<number> {
    const { rows } = await this.#run<{ count: number }>(this.#enginePool, 'releaseClaims', [owner, this.#wake.channel, this.#selfId]);
    return rows[0]?.count ?? 0;
  }

  async startDelivery(owner: string, entries: { id: string; version: number }[], now: number): Promise<StoredMessage[]> {
    if (entries.length === 0) return [];
    // sent in id order (the lock order), answered in the order asked for
    const positioned = entries.map((entry, position) => ({ ...entry, position })).sort((a, b) => compareIds(a.id, b.id));
    const { rows } = await this.#run<MessageRow & { position: number }>(this.#enginePool, 'startDelivery', [
      owner, positioned.map((e) => e.id), positioned.map((e) => e.version), positioned.map((e) => e.position), now,
    ]);
    const startedIds = new Set<string>();
    return rows.sort((a, b) => a.position - b.position)
      // an id asked for twice starts once
      .filter((row) => !startedIds.has(row.id) && startedIds.add(row.id))
      .map(toMessage);
  }

  async takeTokens(target: string, want: number, ratePerSecond: number, burst: number, now: number): Promise<{ granted: number; remaining: number }> {
    const { rows } = await this.#run<{ granted: number; tokens: number }>(this.#enginePool, 'takeTokens', [target, want, ratePerSecond, burst, now]);
    return { granted: rows[0]!.granted, remaining: Number(rows[0]!.tokens) };
  }

  async expire(owner: string, entries: { id: string; version: number; error: string }[], now: number): Promise<StoredMessage[]> {
    if (entries.length === 0) return [];
    // in id order: the lock order
    const sorted = [...entries].sort((a, b) => compareIds(a.id, b.id));
    const { rows } = await this.#run<MessageRow>(this.#enginePool, 'expireMessages', [
      owner, sorted.map((e) => e.id), sorted.map((e) => e.version), now, sorted.map((e) => e.error),
    ]);
    const order = new Map(entries.map((entry, position) => [entry.id, position]));
    return rows.sort((a, b) => order.get(a.id)! - order.get(b.id)!).map(toMessage);
  }

  async finishDeliveries(owner: string, results: DeliveryResult[]): Promise<void> {
    // in id order: the lock order
    const byOutcome = (outcome: DeliveryResult['outcome']) => results.filter((r) => r.outcome === outcome).sort((a, b) => compareIds(a.id, b.id));
    const delivered = byOutcome('delivered');
    const retried = byOutcome('retry');
    const dead = byOutcome('dead');
    const expired = byOutcome('expired');
    // One statement per outcome kind, each recording its attempts too; they touch different rows, so they may run side by side.
    await Promise.all([
      delivered.length > 0 && this.#run(this.#enginePool, 'markDelivered', [owner, delivered.map((r) => r.id), delivered.map((r) => r.at), ...attemptArrays(delivered)]),
      retried.length > 0 && this.#run(this.#enginePool, 'markRetry', [
        owner, retried.map((r) => r.id), retried.map((r) => r.at), retried.map((r) => r.error ?? null), retried.map((r) => r.release === true),
        ...attemptArrays(retried),
      ]),
      dead.length > 0 && this.#run(this.#enginePool, 'markDead', [owner, dead.map((r) => r.id), dead.map((r) => r.at), dead.map((r) => r.error ?? null), ...attemptArrays(dead)]),
      expired.length > 0 && this.#run(this.#enginePool, 'markExpiredUnsent', [owner, expired.map((r) => r.id), expired.map((r) => r.at), expired.map((r) => r.error ?? null)]),
    ]);
  }

  async listRecentlyDelivered(limit: number, query: DeliveredQuery = {}): Promise<StoredMessage[]> {
    if (limit <= 0) return [];
    if (!isFiltered(query) && !query.before) {
      const { rows } = await this.#run<MessageRow>(this.#pool, 'listRecentlyDelivered', [limit]);
      return rows.map(toMessage);
    }
    const f = filterParams(query);
    const { rows } = await this.#run<MessageRow>(this.#pool, 'listDeliveredFiltered', [
      // '~' sorts after every id (UUIDs: hex digits and dashes) in byte order
      limit, query.before?.deliveredAt ?? Number.MAX_SAFE_INTEGER, query.before?.id ?? '~', f.dueFrom, f.dueTo, f.username, f.text, f.target,
    ]);
    return rows.map(toMessage);
  }

  async attempts(id: string): Promise<AttemptRecord[]> {
    const { rows } = await this.#run<AttemptRow>(this.#pool, 'listAttempts', [id]);
    return rows.map(toAttempt);
  }

  async ping(): Promise<void> {
    await this.#pool.query('SELECT 1');
  }

  async countLiveOwners(now: number): Promise<number> {
    const { rows } = await this.#run<{ count: number }>(this.#pool, 'countLiveOwners', [now]);
    return rows[0]?.count ?? 0;
  }

  async countByStatus(): Promise<Record<MessageStatus, number>> {
    const counts = Object.fromEntries(MESSAGE_STATUSES.map((status) => [status, 0])) as Record<MessageStatus, number>;
    const { rows } = await this.#run<{ status: MessageStatus; count: number }>(this.#pool, 'countByStatus');
    for (const row of rows) counts[row.status] = row.count;
    return counts;
  }

  async purgeDelivered(before: number): Promise<number> {
    const { rows } = await this.#run<{ count: number }>(this.#enginePool, 'purgeDelivered', [before]);
    return rows[0]?.count ?? 0;
  }

  // ---- schedules --------------------------------------------------------------

  async insertSchedule(schedule: NewSchedule, now: number): Promise<{ schedule: StoredSchedule; created: boolean }> {
    const stored = newStoredSchedule(schedule, now);
    // a conflicting schedule can be deleted between our INSERT and our look-up; it is inserted on the next turn
    for (let turn = 0; turn < 3; turn++) {
      const inserted = await this.#run(this.#pool, 'insertSchedule', scheduleValues(stored));
      if ((inserted.rowCount ?? 0) > 0) return { schedule: stored, created: true };
      const { rows } = await this.#run<ScheduleRow>(this.#pool, 'getScheduleByIdempotencyKey', [schedule.idempotencyKey, stored.target]);
      if (rows[0]) return { schedule: toSchedule(rows[0]), created: false };
    }
    throw new Error(`Could not insert schedule ${schedule.id}: a schedule with its idempotency key keeps being inserted and deleted concurrently`);
  }

  async getSchedule(id: string): Promise<StoredSchedule | undefined> {
    const { rows } = await this.#run<ScheduleRow>(this.#pool, 'getSchedule', [id]);
    return rows[0] && toSchedule(rows[0]);
  }

  async listSchedules(query: { limit: number; afterId?: string; target?: string }): Promise<StoredSchedule[]> {
    if (query.limit <= 0) return [];
    const { rows } = query.target !== undefined
      ? await this.#run<ScheduleRow>(this.#pool, 'listTargetSchedules', [query.limit, query.afterId ?? '', query.target])
      : query.afterId === undefined
      ? await this.#run<ScheduleRow>(this.#pool, 'listSchedules', [query.limit])
      : await this.#run<ScheduleRow>(this.#pool, 'listSchedulesAfter', [query.limit, query.afterId]);
    return rows.map(toSchedule);
  }

  updateSchedule(id: string, expectedVersion: number, changes: ScheduleChanges, now: number, cancelMessageIds: string[]): Promise<ScheduleChangeOutcome> {
    return this.#transaction(this.#pool, async (client) => {
      const { rows } = await client.query<ScheduleRow>({ name: 'lockSchedule', text: sql.lockSchedule, values: [id] });
      if (!rows[0]) return { kind: 'not_found' } as const;
      const current = toSchedule(rows[0]);
      if (current.version !== expectedVersion) return { kind: 'conflict' } as const;
      const withdrawn = await cancelOccurrences(client, cancelMessageIds);
      const changed = changedSchedule(current, { ...changes, ...withdrawal(current, withdrawn, now) }, now);
      await client.query({ name: 'writeSchedule', text: sql.writeSchedule, values: [
        changed.id, changed.message, changed.cron, changed.everyMs, changed.timeZone, changed.startAt, changed.endAt, changed.maxOccurrences,
        changed.dstGap, changed.dstOverlap, changed.catchUp, changed.catchUpMax, changed.paused, changed.nextFireAt, changed.occurrences,
        changed.lastFireAt, changed.version, changed.updatedAt,
      ] });
      return { kind: 'ok', schedule: changed, withdrawn } as const;
    });
  }

  removeSchedule(id: string, withdraw: (schedule: StoredSchedule) => string[]): Promise<boolean> {
    return this.#transaction(this.#pool, async (client) => {
      // the row lock waits for a materialisation holding it, then reads what it committed; none can start after
      const { rows } = await client.query<ScheduleRow>({ name: 'lockSchedule', text: sql.lockSchedule, values: [id] });
      if (!rows[0]) return false;
      await client.query({ name: 'removeSchedule', text: sql.removeSchedule, values: [id] });
      await cancelOccurrences(client, withdraw(toSchedule(rows[0])));
      return true;
    });
  }

  materializeDue(dueBefore: number, limit: number, now: number, plan: (schedule: StoredSchedule) => SchedulePlan): Promise<{ schedules: number; created: StoredMessage[] }> {
    if (limit <= 0) return Promise.resolve({ schedules: 0, created: [] });
    return this.#materializeIfDue(dueBefore, limit, now, plan);
  }

  /** The materialiser asks every second: a transaction (three round trips on an engine connection) only when something is due. */
  async #materializeIfDue(dueBefore: number, limit: number, now: number, plan: (schedule: StoredSchedule) => SchedulePlan): Promise<{ schedules: number; created: StoredMessage[] }> {
    const { rows: [any] } = await this.#run<{ due: boolean }>(this.#enginePool, 'anyDueSchedule', [dueBefore]);
    if (!any?.due) return { schedules: 0, created: [] };
    return this.#transaction(this.#enginePool, async (client) => {
      const { rows } = await client.query<ScheduleRow>({ name: 'findDueSchedules', text: sql.findDueSchedules, values: [dueBefore, limit] });
      if (rows.length === 0) return { schedules: 0, created: [] };
      const due = rows.map(toSchedule);
      const plans = due.map((schedule) => plan(schedule));
      // each occurrence is its schedule's target's
      const messages = plans.flatMap((p, i) => p.messages.map((m) => ({ ...m, target: due[i]!.target })));
      const created: StoredMessage[] = [];
      let insertedIds = new Set<string>();
      if (messages.length > 0) {
        const inserted = await client.query<{ id: string }>({
          name: 'insertOccurrences',
          text: sql.insertOccurrences,
          values: [
            messages.map((m) => m.id), messages.map((m) => m.username), messages.map((m) => m.message), messages.map((m) => m.scheduledAt), now,
            messages.map((m) => m.target),
          ],
        });
        insertedIds = new Set(inserted.rows.map((row) => row.id));
        for (const message of messages) if (insertedIds.has(message.id)) created.push(newStoredMessage(message, now, undefined));
      }
      await client.query({
        name: 'advanceSchedules',
        text: sql.advanceSchedules,
        values: [
          due.map((s) => s.id), plans.map((p) => p.nextFireAt), plans.map((p) => p.lastFireAt),
          due.map((s, i) => s.occurrences + plans[i]!.messages.filter((m) => insertedIds.has(m.id)).length), due.map((s) => s.version + 1), now,
        ],
      });
      return { schedules: due.length, created };
    });
  }

  // ---- targets ----------------------------------------------------------------

  async listTargets(): Promise<StoredTarget[]> {
    const { rows } = await this.#run<TargetRow>(this.#pool, 'listTargets');
    return rows.map(toTarget);
  }

  async getTarget(name: string): Promise<StoredTarget | undefined> {
    const { rows } = await this.#run<TargetRow>(this.#pool, 'getTarget', [name]);
    return rows[0] && toTarget(rows[0]);
  }

  async targetByTokenHash(tokenHash: string): Promise<StoredTarget | undefined> {
    const { rows } = await this.#run<TargetRow>(this.#pool, 'getTargetByTokenHash', [tokenHash]);
    return rows[0] && toTarget(rows[0]);
  }

  async insertTarget(target: NewTarget, now: number): Promise<boolean> {
    const result = await this.#run(this.#pool, 'insertTarget', targetValues(newStoredTarget(target, now)));
    return (result.rowCount ?? 0) > 0;
  }

  updateTarget(name: string, changes: TargetChanges, now: number): Promise<StoredTarget | undefined> {
    return this.#transaction(this.#pool, async (client) => {
      const { rows } = await client.query<TargetRow>({ name: 'lockTarget', text: sql.lockTarget, values: [name] });
      if (!rows[0]) return undefined;
      const t = changedTarget(toTarget(rows[0]), changes, now);
      await client.query({ name: 'writeTarget', text: sql.writeTarget, values: [
        t.name, t.url, t.protocol, t.signatureScheme, t.signingSecret, t.tokenHash, t.ratePerSecond, t.burst, t.maxInFlight, t.updatedAt,
        t.deliverWithinMs,
      ] });
      return t;
    });
  }

  removeTarget(name: string): Promise<TargetRemoveOutcome> {
    return this.#transaction(this.#pool, async (client): Promise<TargetRemoveOutcome> => {
      const { rows } = await client.query<TargetRow>({ name: 'lockTarget', text: sql.lockTarget, values: [name] });
      if (!rows[0]) return { kind: 'not_found' };
      const use = await client.query<{ pending: number; schedules: number }>({ name: 'countTargetUse', text: sql.countTargetUse, values: [name] });
      const { pending, schedules } = use.rows[0]!;
      if (pending > 0 || schedules > 0) return { kind: 'in_use', pendingMessages: pending, schedules };
      await client.query({ name: 'removeTarget', text: sql.removeTarget, values: [name] });
      return { kind: 'ok' };
    });
  }

  /** A transaction on one pooled client, connection failures answered as 503. */
  async #transaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    try {
      return await inTransaction(pool, work);
    } catch (err) {
      throw asUnavailable(err);
    }
  }

  onWake(listener: () => void): () => void {
    return this.#wake.add(listener);
  }

  onHalt(_listener: (err: Error) => void): () => void {
    // PostgreSQL handles its own fsync failures (it stops; we see a lost connection)
    return () => {};
  }

  /** Runs one statement of ./statements.ts by name. */
  #run<R extends pg.QueryResultRow>(pool: pg.Pool, name: keyof typeof sql, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    return runStatement<R>(pool, name, sql[name], values);
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#inserts.drain();
      await Promise.all([this.#wake.close(), this.#pool.end(), this.#enginePool.end()]);
    })();
    return this.#closed;
  }
}

/** A message as it will be stored, and whether leaving it unclaimed should wake the others. */
interface NewRow {
  message: StoredMessage;
  /** The caller did not claim (see the header): an unclaimed row is worth a wake-up. */
  wake: boolean;
}

/** Deletes the still-scheduled messages of `ids` (occurrences a schedule change withdraws); returns how many. */
async function cancelOccurrences(client: pg.PoolClient, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const result = await client.query({ name: 'cancelOccurrences', text: sql.cancelOccurrences, values: [[...ids].sort(compareIds)] });
  return result.rowCount ?? 0;
}

/** A schedule's columns in SCHEDULE_COLUMNS order ($1..$21 of insertSchedule). */
function scheduleValues(s: StoredSchedule): unknown[] {
  return [
    s.id, s.username, s.message, s.cron, s.everyMs, s.timeZone, s.startAt, s.endAt, s.maxOccurrences,
    s.dstGap, s.dstOverlap, s.catchUp, s.catchUpMax, s.paused, s.nextFireAt, s.occurrences, s.lastFireAt, s.idempotencyKey,
    s.version, s.createdAt, s.updatedAt, s.target,
  ];
}

/** A (target, idempotency key) pair as one map key; a NUL cannot be in a target name. */
function keyOf(target: string, idempotencyKey: string): string {
  return `${target}\u0000${idempotencyKey}`;
}

function newRow(message: NewMessage, now: number, claim: ClaimRequest | undefined): NewRow {
  return { message: newStoredMessage(message, now, claim), wake: claim === undefined };
}

/** The attempt columns of the outcome statements (numbers, startedAts, finishedAts, httpStatuses); nulls where a result records none. */
function attemptArrays(results: DeliveryResult[]): unknown[][] {
  return [
    results.map((r) => r.attempt?.number ?? null),
    results.map((r) => r.attempt?.startedAt ?? null),
    results.map((r) => r.attempt?.finishedAt ?? null),
    results.map((r) => r.attempt?.httpStatus ?? null),
  ];
}
