import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ClaimRequest, DispatcherStore, NewMessage, NewSchedule, NewTarget, SchedulePlan, StoredMessage, StoredSchedule, StoredTarget } from '../src/dispatcher/store.ts';
import { uuidv7 } from '../src/ids.ts';
import { MESSAGE_STATUSES } from '../src/protocol/wire.ts';
import { dispatcherStoreFactories } from './support/stores.ts';

/**
 * The DispatcherStore contract (src/dispatcher/store.ts), run against every
 * store. It tests behaviour through the interface only, never a backend's
 * tables, so SQLite and PostgreSQL must pass the same cases.
 */

const T = Date.UTC(2030, 0, 1);
const MINUTE = 60_000;
const OWNER = 'owner-a';
const OTHER = 'owner-b';
/** A claim that takes everything, leased for a minute. */
const CLAIM_ALL: ClaimRequest = { owner: OWNER, leaseExpiresAt: T + MINUTE, dueBefore: Number.MAX_SAFE_INTEGER };

function newMessage(overrides: Partial<NewMessage> = {}): NewMessage {
  return { id: uuidv7(), username: 'ann', message: 'hello', scheduledAt: T + MINUTE, idempotencyKey: null, ...overrides };
}

async function insertOne(store: DispatcherStore, overrides: Partial<NewMessage> = {}, claim?: ClaimRequest): Promise<StoredMessage> {
  const [outcome] = await store.insert([newMessage(overrides)], T, claim);
  return outcome!.message;
}

/** Inserts a message leased to OWNER and starts delivering it. */
async function insertDelivering(store: DispatcherStore, overrides: Partial<NewMessage> = {}): Promise<StoredMessage> {
  const message = await insertOne(store, overrides, CLAIM_ALL);
  const [started] = await store.startDelivery(OWNER, [{ id: message.id, version: message.version }], T + 1);
  assert.ok(started, 'delivery should start');
  return started;
}

async function insertFinished(store: DispatcherStore, outcome: 'delivered' | 'dead', at = T + 2): Promise<StoredMessage> {
  const message = await insertDelivering(store);
  await store.finishDeliveries(OWNER, [{ id: message.id, outcome, at, error: outcome === 'dead' ? 'HTTP 400' : undefined }]);
  return (await store.get(message.id))!;
}

function newSchedule(overrides: Partial<NewSchedule> = {}): NewSchedule {
  return {
    id: uuidv7(), username: 'ann', message: 'every minute', cron: '* * * * *', everyMs: null, timeZone: 'Europe/Berlin',
    startAt: null, endAt: null, maxOccurrences: null, dstGap: 'shift', dstOverlap: 'first', catchUp: 'latest', catchUpMax: 100,
    paused: false, nextFireAt: T + MINUTE, idempotencyKey: null, ...overrides,
  };
}

/** A plan firing the schedule's nextFireAt once and moving it a minute on, with the message id the test chooses. */
function fireOnce(idOf: (schedule: StoredSchedule) => string): (schedule: StoredSchedule) => SchedulePlan {
  return (schedule) => ({
    messages: [{ id: idOf(schedule), username: schedule.username, message: schedule.message, scheduledAt: schedule.nextFireAt!, idempotencyKey: null }],
    nextFireAt: schedule.nextFireAt! + MINUTE,
    lastFireAt: schedule.nextFireAt,
  });
}

function ids(messages: { id: string }[]): string[] {
  return messages.map((message) => message.id);
}

for (const factory of dispatcherStoreFactories()) {
  describe(`DispatcherStore contract: ${factory.name}`, () => {
    it('answers a ping while open, and refuses one once closed', async () => {
      const handle = await factory.create();
      await handle.store.ping();
      await handle[Symbol.asyncDispose]();
      await assert.rejects(handle.store.ping());
    });

    describe('insert and get', () => {
      it('stores a new message with every field set', async () => {
        await using handle = await factory.create();
        const input = newMessage({ idempotencyKey: 'key-1' });
        const [outcome] = await handle.store.insert([input], T);
        const expected: StoredMessage = {
          id: input.id,
          target: 'default',
          username: 'ann',
          message: 'hello',
          scheduledAt: T + MINUTE,
          dueAt: T + MINUTE,
          status: 'scheduled',
          attempts: 0,
          version: 1,
          idempotencyKey: 'key-1',
          createdAt: T,
          updatedAt: T,
          deliveredAt: null,
          lastError: null,
          leaseOwner: null,
          leaseExpiresAt: null,
          deliverBy: null,
        };
        assert.deepEqual(outcome, { message: expected, created: true });
        assert.deepEqual(await handle.store.get(input.id), expected);
      });

      it('returns undefined for an unknown id', async () => {
        await using handle = await factory.create();
        assert.equal(await handle.store.get(uuidv7()), undefined);
      });

      it('stores text exactly as given', async () => {
        await using handle = await factory.create();
        const texts = [
          'emoji 😀👍🏽 and ünïcödé 中文 עברית',
          `quotes ' " \` and backslashes \\ \\n`,
          '<script>alert("x")</script> & <b>markup</b> &amp;',
          "'; DROP TABLE messages; -- and $1 :id ? %s",
          'line one\nline two\r\n\ttabbed  trailing spaces  ',
          '😀'.repeat(2500),
          'x'.repeat(5000),
        ];
        const inputs = texts.map((message, i) => newMessage({ message, username: `user ${i} 'O\u2019Brien' 🙂` }));
        await handle.store.insert(inputs, T);
        for (const input of inputs) {
          const stored = await handle.store.get(input.id);
          assert.equal(stored?.message, input.message);
          assert.equal(stored?.username, input.username);
        }
      });

      it('claims new messages due by claim.dueBefore, leaves later ones unclaimed', async () => {
        await using handle = await factory.create();
        const claim: ClaimRequest = { owner: OWNER, leaseExpiresAt: T + MINUTE, dueBefore: T + 10_000 };
        const soon = newMessage({ scheduledAt: T + 10_000 });
        const later = newMessage({ scheduledAt: T + 10_001 });
        const outcomes = await handle.store.insert([soon, later], T, claim);
        assert.equal(outcomes[0]!.message.leaseOwner, OWNER);
        assert.equal(outcomes[0]!.message.leaseExpiresAt, T + MINUTE);
        assert.equal(outcomes[1]!.message.leaseOwner, null);
        assert.equal(outcomes[1]!.message.leaseExpiresAt, null);
        assert.equal((await handle.store.get(soon.id))?.leaseOwner, OWNER);
        assert.equal((await handle.store.get(later.id))?.leaseOwner, null);
      });

      it('stores a batch of 1,000 completely, outcomes in input order', async () => {
        await using handle = await factory.create();
        const inputs = Array.from({ length: 1000 }, (_, i) => newMessage({
          scheduledAt: T + i,
          message: `message ${i}`,
          idempotencyKey: i % 7 === 0 ? `key-${i}` : null,
        }));
        const outcomes = await handle.store.insert(inputs, T);
        assert.deepEqual(outcomes.map((o) => o.message.id), ids(inputs));
        assert.ok(outcomes.every((o) => o.created));
        const stored = await handle.store.list({ limit: 1000 });
        assert.deepEqual(stored.map((m) => [m.id, m.message, m.scheduledAt, m.idempotencyKey]), inputs.map((m) => [m.id, m.message, m.scheduledAt, m.idempotencyKey]));
      });

      it('accepts an empty batch', async () => {
        await using handle = await factory.create();
        assert.deepEqual(await handle.store.insert([], T), []);
      });
    });

    describe('targets', () => {
      const target = (overrides: Partial<NewTarget> = {}): NewTarget => ({
        name: 'shop', url: 'http://127.0.0.1:9000', protocol: 'json', signatureScheme: 'psched', signingSecret: 'sec-1',
        tokenHash: 'a'.repeat(64), ratePerSecond: 10.5, burst: 20, maxInFlight: 4, deliverWithinMs: null, ...overrides,
      });

      it('inserts, gets, lists by name, finds by token hash, refuses a second of the same name', async () => {
        await using handle = await factory.create();
        const { store } = handle;
        assert.equal(await store.insertTarget(target({ name: 'zoo', tokenHash: null, ratePerSecond: null, burst: null, maxInFlight: null, signingSecret: null }), T), true);
        assert.equal(await store.insertTarget(target(), T + 1), true);
        assert.equal(await store.insertTarget(target({ url: 'http://elsewhere', tokenHash: 'b'.repeat(64) }), T + 2), false);
        const expected: StoredTarget = { ...target(), createdAt: T + 1, updatedAt: T + 1 };
        assert.deepEqual(await store.getTarget('shop'), expected);
        assert.deepEqual((await store.listTargets()).map((t) => t.name), ['shop', 'zoo']);
        assert.equal((await store.listTargets())[1]!.ratePerSecond, null);
        assert.deepEqual(await store.targetByTokenHash('a'.repeat(64)), expected);
        assert.equal(await store.targetByTokenHash('c'.repeat(64)), undefined);
        assert.equal(await store.getTarget('nope'), undefined);
      });

      it('updates what is given, keeps the rest, and can clear a nullable field', async () => {
        await using handle = await factory.create();
        const { store } = handle;
        await store.insertTarget(target(), T);
        const changed = await store.updateTarget('shop', { url: 'http://127.0.0.1:9001', burst: null, tokenHash: 'd'.repeat(64) }, T + 5);
        const expected: StoredTarget = { ...target(), url: 'http://127.0.0.1:9001', burst: null, tokenHash: 'd'.repeat(64), createdAt: T, updatedAt: T + 5 };
        assert.deepEqual(changed, expected);
        assert.deepEqual(await store.getTarget('shop'), expected);
        assert.equal(await store.targetByTokenHash('a'.repeat(64)), undefined);
        assert.equal(await store.updateTarget('nope', { url: 'http://x' }, T), undefined);
      });

      it('removeTarget refuses while it has messages to deliver or schedules, then removes it', async () => {
        await using handle = await factory.create();
        const { store } = handle;
        await store.insertTarget(target(), T);
        const message = await insertOne(store, { target: 'shop' });
        await insertFinished(store, 'dead'); // the default target's: does not count
        assert.deepEqual(await store.removeTarget('shop'), { kind: 'in_use', pendingMessages: 1, schedules: 0 });
        await store.remove(message.id);
        const { schedule } = await store.insertSchedule(newSchedule({ target: 'shop' }), T);
        assert.deepEqual(await store.removeTarget('shop'), { kind: 'in_use', pendingMessages: 0, schedules: 1 });
        await store.removeSchedule(schedule.id, () => []);
        assert.deepEqual(await store.removeTarget('shop'), { kind: 'ok' });
        assert.equal(await store.getTarget('shop'), undefined);
        assert.deepEqual(await store.removeTarget('shop'), { kind: 'not_found' });
      });

      it('a message carries its target (default when none is given), and lists filter by it', async () => {
        await using handle = await factory.create();
        const { store } = handle;
        const plain = await insertOne(store);
        const a1 = await insertOne(store, { target: 'a', scheduledAt: T + 2 * MINUTE });
        const b1 = await insertOne(store, { target: 'b', scheduledAt: T + 3 * MINUTE });
        const a2 = await insertOne(store, { target: 'a', scheduledAt: T + 4 * MINUTE, username: 'bob' });
        assert.equal(plain.target, 'default');
        assert.equal((await store.get(a1.id))?.target, 'a');
        assert.deepEqual(ids(await store.list({ limit: 10, target: 'a' })), ids([a1, a2]));
        assert.deepEqual(ids(await store.list({ limit: 10, target: 'b', status: 'scheduled' })), ids([b1]));
        assert.deepEqual(ids(await store.list({ limit: 10, target: 'default' })), ids([plain]));
        assert.deepEqual(ids(await store.list({ limit: 10, target: 'a', username: 'bob' })), ids([a2]));
        assert.deepEqual(ids(await store.list({ limit: 1, target: 'a', after: { dueAt: a1.dueAt, id: a1.id } })), ids([a2]));
        assert.deepEqual(ids(await store.list({ limit: 10 })), ids([plain, a1, b1, a2]));
        // the claim, the delivery and its outcome keep it
        const [claimed] = await store.claimDue(OWNER, Number.MAX_SAFE_INTEGER, T, T + MINUTE, 1);
        assert.equal(claimed?.target, 'default');
      });

      it('delivered lists filter by target', async () => {
        await using handle = await factory.create();
        const { store } = handle;
        const message = await insertOne(store, { target: 'a' }, CLAIM_ALL);
        await store.startDelivery(OWNER, [{ id: message.id, version: message.version }], T + 1);
        await store.finishDeliveries(OWNER, [{ id: message.id, outcome: 'delivered', at: T + 2 }]);
        await insertFinished(store, 'delivered', T + 3);
        assert.deepEqual(ids(await store.listRecentlyDelivered(10, { target: 'a' })), [message.id]);
        assert.equal((await store.listRecentlyDelivered(10)).length, 2);
      });

      it('a target\'s list in each status holds its own messages only, and removeTarget counts the ones delivering', async () => {
        await using handle = await factory.create();
        const { store } = handle;
        await store.insertTarget(target(), T);
        // one message of each target in each status: the stores keep some statuses in a per-target index and read the others from the pool-wide one
        const mine = new Map<string, string>();
        for (const name of ['shop', 'default']) {
          const scheduled = await insertOne(store, { target: name, scheduledAt: T + MINUTE });
          const delivering = await insertDelivering(store, { target: name });
          const finished = await Promise.all(['delivered', 'dead', 'expired'].map(async (outcome) => {
            const message = await insertDelivering(store, { target: name });
            await store.finishDeliveries(OWNER, [{ id: message.id, outcome: outcome as 'delivered' | 'dead' | 'expired', at: T + 2, error: outcome === 'delivered' ? undefined : 'x' }]);
            return [outcome, message.id] as const;
          }));
          if (name === 'shop') for (const [status, id] of [['scheduled', scheduled.id], ['delivering', delivering.id], ...finished] as const) mine.set(status, id);
        }
        for (const status of MESSAGE_STATUSES) {
          assert.deepEqual(ids(await store.list({ limit: 10, target: 'shop', status })), [mine.get(status)], status);
        }
        assert.deepEqual(ids(await store.list({ limit: 10, target: 'shop', status: ['delivering', 'scheduled'] })).sort(), [mine.get('delivering'), mine.get('scheduled')].sort());
        assert.deepEqual(await store.removeTarget('shop'), { kind: 'in_use', pendingMessages: 2, schedules: 0 });
      });

      it('idempotency keys are a target\'s own', async () => {
        await using handle = await factory.create();
        const { store } = handle;
        const [a] = await store.insert([newMessage({ target: 'a', idempotencyKey: 'k' })], T);
        const [b] = await store.insert([newMessage({ target: 'b', idempotencyKey: 'k' })], T);
        const [again] = await store.insert([newMessage({ target: 'b', idempotencyKey: 'k' })], T);
        assert.equal(a!.created, true);
        assert.equal(b!.created, true);
        assert.notEqual(a!.message.id, b!.message.id);
        assert.deepEqual([again!.created, again!.message.id], [false, b!.message.id]);
        const sa = await store.insertSchedule(newSchedule({ target: 'a', idempotencyKey: 's' }), T);
        const sb = await store.insertSchedule(newSchedule({ target: 'b', idempotencyKey: 's' }), T);
        assert.equal(sa.created && sb.created, true);
        assert.equal((await store.insertSchedule(newSchedule({ target: 'b', idempotencyKey: 's' }), T)).schedule.id, sb.schedule.id);
      });

      it('a schedule carries its target, lists filter by it, and its occurrences inherit it', async () => {
        await using handle = await factory.create();
        const { store } = handle;
        const mine = (await store.insertSchedule(newSchedule({ target: 'a' }), T)).schedule;
        const other = (await store.insertSchedule(newSchedule(), T)).schedule;
        assert.equal(mine.target, 'a');
        assert.equal(other.target, 'default');
        assert.equal((await store.getSchedule(mine.id))?.target, 'a');
        assert.deepEqual(ids(await store.listSchedules({ limit: 10, target: 'a' })), [mine.id]);
        assert.deepEqual(ids(await store.listSchedules({ limit: 10, target: 'default' })), [other.id]);
        assert.deepEqual(ids(await store.listSchedules({ limit: 10, target: 'a', afterId: mine.id })), []);
        const { created } = await store.materializeDue(T + MINUTE, 10, T, fireOnce((s) => uuidv7(s.nextFireAt!)));
        const byId = new Map(created.map((m) => [m.id, m.target]));
        assert.deepEqual([...byId.values()].sort(), ['a', 'default']);
        for (const message of created) assert.equal((await store.get(message.id))?.target, message.target);
        assert.equal((await store.list({ limit: 10, target: 'a' })).length, 1);
      });
    });

    describe('idempotency', () => {
      it('returns the existing message for a known key, created=false', async () => {
        await using handle = await factory.create();
        const first = newMessage({ idempotencyKey: 'same' });
        await handle.store.insert([first], T);
        const [again] = await handle.store.insert([newMessage({ idempotencyKey: 'same', message: 'other text' })], T + 5);
        assert.equal(again!.created, false);
        assert.equal(again!.message.id, first.id);
        assert.equal(again!.message.message, 'hello');
        assert.equal((await handle.store.list({ limit: 10 })).length, 1);
      });

      it('dedupes two messages with the same key in one batch: the second gets the first', async () => {
        await using handle = await factory.create();
        const a = newMessage({ idempotencyKey: 'k' });
        const b = newMessage({ idempotencyKey: 'k' });
        const c = newMessage({ idempotencyKey: null });
        const outcomes = await handle.store.insert([a, b, c], T);
        assert.deepEqual(outcomes.map((o) => [o.message.id, o.created]), [[a.id, true], [a.id, false], [c.id, true]]);
        assert.equal(await handle.store.get(b.id), undefined);
      });

      it('dedupes concurrent calls with the same key', async () => {
        await using handle = await factory.create();
        const results = await Promise.all([
          handle.store.insert([newMessage({ idempotencyKey: 'race' })], T),
          handle.store.insert([newMessage({ idempotencyKey: 'race' })], T),
          handle.store.insert([newMessage({ idempotencyKey: 'race' })], T),
        ]);
        const outcomes = results.flat();
        assert.equal(outcomes.filter((o) => o.created).length, 1);
        assert.equal(new Set(outcomes.map((o) => o.message.id)).size, 1);
        assert.equal((await handle.store.countByStatus()).scheduled, 1);
      });

      it('messages without a key are never deduped', async () => {
        await using handle = await factory.create();
        const outcomes = await handle.store.insert([newMessage(), newMessage()], T);
        assert.deepEqual(outcomes.map((o) => o.created), [true, true]);
      });
    });

    describe('atomicity', () => {
      it('a batch is all or nothing', async () => {
        await using handle = await factory.create();
        const existing = await insertOne(handle.store);
        const batch = [newMessage(), newMessage({ idempotencyKey: 'fresh' }), newMessage({ id: existing.id })];
        await assert.rejects(handle.store.insert(batch, T));
        assert.equal(await handle.store.get(batch[0]!.id), undefined);
        assert.equal(await handle.store.get(batch[1]!.id), undefined);
        // the key of the failed batch is free again
        const [retried] = await handle.store.insert([newMessage({ idempotencyKey: 'fresh' })], T);
        assert.equal(retried!.created, true);
      });

      it('a large batch failing near its end stores nothing', async () => {
        await using handle = await factory.create();
        const existing = await insertOne(handle.store);
        const batch = Array.from({ length: 250 }, () => newMessage());
        batch[240] = newMessage({ id: existing.id });
        await assert.rejects(handle.store.insert(batch, T));
        assert.deepEqual(await handle.store.countByStatus(), { scheduled: 1, delivering: 0, delivered: 0, dead: 0, expired: 0 });
      });

      it('a failing call does not take down concurrent calls', async () => {
        await using handle = await factory.create();
        const existing = await insertOne(handle.store);
        const good1 = newMessage();
        const good2 = newMessage();
        const results = await Promise.allSettled([
          handle.store.insert([good1], T),
          handle.store.insert([newMessage(), newMessage({ id: existing.id })], T),
          handle.store.insert([good2], T),
          handle.store.update(existing.id, { message: 'changed' }, T + 1),
        ]);
        assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
        assert.ok(await handle.store.get(good1.id));
        assert.ok(await handle.store.get(good2.id));
        assert.equal((await handle.store.get(existing.id))?.message, 'changed');
        assert.equal((await handle.store.countByStatus()).scheduled, 3);
      });
    });

    describe('list', () => {
      it('lists in (dueAt, id) order across statuses, up to the limit', async () => {
        await using handle = await factory.create();
        const late = await insertOne(handle.store, { scheduledAt: T + 3 * MINUTE });
        const early = await insertOne(handle.store, { scheduledAt: T + MINUTE });
        const delivered = await insertFinished(handle.store, 'delivered'); // dueAt T + MINUTE, inserted after early
        const middle = await insertOne(handle.store, { scheduledAt: T + 2 * MINUTE });
        assert.deepEqual(ids(await handle.store.list({ limit: 10 })), [early.id, delivered.id, middle.id, late.id]);
        assert.deepEqual(ids(await handle.store.list({ limit: 2 })), [early.id, delivered.id]);
      });

      it('filters by status', async () => {
        await using handle = await factory.create();
        const scheduled = await insertOne(handle.store);
        const delivering = await insertDelivering(handle.store);
        const delivered = await insertFinished(handle.store, 'delivered');
        const dead = await insertFinished(handle.store, 'dead');
        assert.deepEqual(ids(await handle.store.list({ status: 'scheduled', limit: 10 })), [scheduled.id]);
        assert.deepEqual(ids(await handle.store.list({ status: 'delivering', limit: 10 })), [delivering.id]);
        assert.deepEqual(ids(await handle.store.list({ status: 'delivered', limit: 10 })), [delivered.id]);
        assert.deepEqual(ids(await handle.store.list({ status: 'dead', limit: 10 })), [dead.id]);
      });

      it('pages with a keyset cursor, ties on dueAt broken by id', async () => {
        await using handle = await factory.create();
        const inputs = Array.from({ length: 25 }, (_, i) => newMessage({ scheduledAt: T + Math.floor(i / 4) * 1000 }));
        await handle.store.insert(inputs.toReversed(), T);
        const expected = inputs.map((m) => m.id); // ids are time-ordered, so creation order is id order
        for (const status of [undefined, 'scheduled'] as const) {
          const seen: string[] = [];
          let after: { dueAt: number; id: string } | undefined;
          for (;;) {
            const page = await handle.store.list({ status, limit: 7, after });
            seen.push(...ids(page));
            if (page.length < 7) break;
            const last = page.at(-1)!;
            after = { dueAt: last.dueAt, id: last.id };
          }
          assert.deepEqual(seen, expected);
        }
      });

      it('returns nothing for limit 0 and for a cursor past the end', async () => {
        await using handle = await factory.create();
        const message = await insertOne(handle.store);
        assert.deepEqual(await handle.store.list({ limit: 0 }), []);
        assert.deepEqual(await handle.store.list({ limit: 5, after: { dueAt: message.dueAt, id: message.id } }), []);
      });
    });

    describe('list with filters', () => {
      it('narrows by user, text (ignoring ASCII case), due range and several statuses, and pages with the cursor', async () => {
        await using handle = await factory.create();
        const store = handle.store;
        const a = await insertOne(store, { username: 'ann', message: 'Coffee at ten', scheduledAt: T + MINUTE });
        const b = await insertOne(store, { username: 'bo', message: 'coffee, again', scheduledAt: T + 2 * MINUTE });
        const c = await insertOne(store, { username: 'ann', message: 'lunch', scheduledAt: T + 3 * MINUTE });
        const d = await insertOne(store, { username: 'ann', message: 'COFFEE 100% _sure_', scheduledAt: T + 4 * MINUTE });
        const dead = await insertFinished(store, 'dead'); // ann, hello, due T + MINUTE
        assert.deepEqual(ids(await store.list({ limit: 10, username: 'ann' })), [a.id, dead.id, c.id, d.id]);
        assert.deepEqual(ids(await store.list({ limit: 10, username: 'Ann' })), [], 'the user name is matched exactly');
        assert.deepEqual(ids(await store.list({ limit: 10, text: 'coffee' })), [a.id, b.id, d.id]);
        assert.deepEqual(ids(await store.list({ limit: 10, text: '100% _' })), [d.id], '% and _ are plain characters');
        assert.deepEqual(ids(await store.list({ limit: 10, text: 'coffee', username: 'ann' })), [a.id, d.id]);
        assert.deepEqual(ids(await store.list({ limit: 10, dueFrom: T + 2 * MINUTE, dueTo: T + 4 * MINUTE })), [b.id, c.id], 'from inclusive, to exclusive');
        assert.deepEqual(ids(await store.list({ limit: 10, status: 'dead', username: 'ann' })), [dead.id]);
        // both due at T + MINUTE: a was made first, so its id is the smaller
        assert.deepEqual(ids(await store.list({ limit: 10, status: ['scheduled', 'dead'], dueTo: T + 2 * MINUTE })), [a.id, dead.id]);
        const first = await store.list({ limit: 2, username: 'ann' });
        const last = first.at(-1)!;
        assert.deepEqual(ids(await store.list({ limit: 2, username: 'ann', after: { dueAt: last.dueAt, id: last.id } })), [c.id, d.id]);
        assert.deepEqual(ids(await store.list({ limit: 10, status: ['scheduled', 'delivering'] })), [a.id, b.id, c.id, d.id]);
      });

      it('narrows and pages the delivered history, newest first', async () => {
        await using handle = await factory.create();
        const store = handle.store;
        const delivered: StoredMessage[] = [];
        for (let i = 0; i < 5; i++) delivered.push(await insertFinished(store, 'delivered', T + 100 * (i + 1)));
        const newestFirst = ids(delivered).toReversed();
        assert.deepEqual(ids(await store.listRecentlyDelivered(10, {})), newestFirst);
        const page = await store.listRecentlyDelivered(2, {});
        const last = page.at(-1)!;
        assert.deepEqual(ids(await store.listRecentlyDelivered(2, { before: { deliveredAt: last.deliveredAt!, id: last.id } })), newestFirst.slice(2, 4));
        assert.deepEqual(ids(await store.listRecentlyDelivered(10, { text: 'HELLO', username: 'ann' })), newestFirst);
        assert.deepEqual(await store.listRecentlyDelivered(10, { text: 'nowhere' }), []);
        assert.deepEqual(await store.listRecentlyDelivered(10, { dueFrom: T + 2 * MINUTE }), []);
      });
    });

    describe('attempt history', () => {
      it('records each finished attempt with its outcome, status, error and latency, oldest first', async () => {
        await using handle = await factory.create();
        const store = handle.store;
        const message = await insertDelivering(store);
        await store.finishDeliveries(OWNER, [{
          id: message.id, outcome: 'retry', at: T + 5000, error: 'HTTP 503',
          attempt: { number: 1, startedAt: T + 1, finishedAt: T + 41, httpStatus: 503 },
        }]);
        const [again] = await store.startDelivery(OWNER, [{ id: message.id, version: message.version }], T + 5000);
        assert.ok(again);
        await store.finishDeliveries(OWNER, [{
          id: message.id, outcome: 'retry', at: T + 9000, error: 'timeout after 10000 ms',
          attempt: { number: 2, startedAt: T + 5000, finishedAt: T + 15_000 },
        }]);
        await store.startDelivery(OWNER, [{ id: message.id, version: message.version }], T + 20_000);
        await store.finishDeliveries(OWNER, [{ id: message.id, outcome: 'delivered', at: T + 20_003, attempt: { number: 3, startedAt: T + 20_000, finishedAt: T + 20_003, httpStatus: 201 } }]);
        assert.deepEqual(await store.attempts(message.id), [
          { messageId: message.id, attempt: 1, startedAt: T + 1, finishedAt: T + 41, outcome: 'retry', httpStatus: 503, error: 'HTTP 503', latencyMs: 40 },
          { messageId: message.id, attempt: 2, startedAt: T + 5000, finishedAt: T + 15_000, outcome: 'retry', httpStatus: null, error: 'timeout after 10000 ms', latencyMs: 10_000 },
          { messageId: message.id, attempt: 3, startedAt: T + 20_000, finishedAt: T + 20_003, outcome: 'delivered', httpStatus: 201, error: null, latencyMs: 3 },
        ]);
        assert.deepEqual(await store.attempts(uuidv7()), []);
      });

      it('records a dead attempt, and nothing for an outcome that changed nothing', async () => {
        await using handle = await factory.create();
        const store = handle.store;
        const dead = await insertDelivering(store);
        const foreign = await insertDelivering(store);
        const attempt = { number: 1, startedAt: T + 1, finishedAt: T + 2, httpStatus: 400 };
        await store.finishDeliveries(OWNER, [{ id: dead.id, outcome: 'dead', at: T + 2, error: 'HTTP 400', attempt }]);
        await store.finishDeliveries(OTHER, [{ id: foreign.id, outcome: 'dead', at: T + 2, error: 'HTTP 400', attempt }]);
        await store.finishDeliveries(OWNER, [{ id: dead.id, outcome: 'delivered', at: T + 3, attempt: { ...attempt, finishedAt: T + 3 } }]);
        assert.deepEqual((await store.attempts(dead.id)).map((a) => [a.outcome, a.httpStatus, a.error]), [['dead', 400, 'HTTP 400']]);
        assert.deepEqual(await store.attempts(foreign.id), []);
      });

      it('goes with its message: on remove, and on purge after delivery', async () => {
        await using handle = await factory.create();
        const store = handle.store;
        const finish = async (outcome: 'delivered' | 'dead', at: number) => {
          const message = await insertDelivering(store);
          await store.finishDeliveries(OWNER, [{ id: message.id, outcome, at, error: outcome === 'dead' ? 'HTTP 400' : undefined, attempt: { number: 1, startedAt: at - 1, finishedAt: at } }]);
          return message;
        };
        const dead = await finish('dead', T + 10);
        const old = await finish('delivered', T + 100);
        const recent = await finish('delivered', T + 300);
        assert.equal((await store.remove(dead.id)).kind, 'ok');
        assert.deepEqual(await store.attempts(dead.id), []);
        assert.equal(await store.purgeDelivered(T + 200), 1);
        assert.deepEqual(await store.attempts(old.id), []);
        assert.equal((await store.attempts(recent.id)).length, 1);
      });

      it('keeps the history across a retry of a dead letter, counting attempts from 1 again', async () => {
        await using handle = await factory.create();
        const store = handle.store;
        const message = await insertDelivering(store);
        await store.finishDeliveries(OWNER, [{ id: message.id, outcome: 'dead', at: T + 2, error: 'HTTP 400', attempt: { number: 1, startedAt: T + 1, finishedAt: T + 2, httpStatus: 400 } }]);
        const retried = await store.retry(message.id, T + 10, CLAIM_ALL);
        assert.equal(retried.kind, 'ok');
        const [started] = await store.startDelivery(OWNER, [{ id: message.id, version: retried.kind === 'ok' ? retried.message.version : 0 }], T + 11);
        assert.equal(started?.attempts, 1);
        await store.finishDeliveries(OWNER, [{ id: message.id, outcome: 'delivered', at: T + 12, attempt: { number: 1, startedAt: T + 11, finishedAt: T + 12, httpStatus: 200 } }]);
        assert.deepEqual((await store.attempts(message.id)).map((a) => [a.attempt, a.outcome]), [[1, 'dead'], [1, 'delivered']]);
      });
    });

    describe('listRecentlyDelivered', () => {
      it('lists delivered messages, most recently delivered first, up to the limit', async () => {
        await using handle = await factory.create();
        const first = await insertFinished(handle.store, 'delivered', T + 300);
        const last = await insertFinished(handle.store, 'delivered', T + 900);
        const middle = await insertFinished(handle.store, 'delivered', T + 500);
        await insertFinished(handle.store, 'dead', T + 1000);
        await insertDelivering(handle.store);
        assert.deepEqual(ids(await handle.store.listRecentlyDelivered(10)), [last.id, middle.id, first.id]);
        assert.deepEqual(ids(await handle.store.listRecentlyDelivered(2)), [last.id, middle.id]);
        assert.deepEqual(await handle.store.listRecentlyDelivered(0), []);
      });
    });

    describe('update', () => {
      it('changes time and text, moves dueAt, bumps the version', async () => {
        await using handle = await factory.create();
        const message = await insertOne(handle.store);
        const outcome = await handle.store.update(message.id, { scheduledAt: T + 5 * MINUTE, message: 'new text' }, T + 10);
        assert.equal(outcome.kind, 'ok');
        const expected = { ...message, scheduledAt: T + 5 * MINUTE, dueAt: T + 5 * MINUTE, message: 'new text', version: 2, updatedAt: T + 10 };
        assert.deepEqual(outcome.kind === 'ok' && outcome.message, expected);
        assert.deepEqual(await handle.store.get(message.id), expected);
      });

      it('a text-only patch keeps the time', async () => {
        await using handle = await factory.create();
        const message = await insertOne(handle.store);
        const outcome = await handle.store.update(message.id, { message: 'only text' }, T + 10);
        assert.ok(outcome.kind === 'ok');
        assert.equal(outcome.message.scheduledAt, message.scheduledAt);
        assert.equal(outcome.message.dueAt, message.dueAt);
        assert.equal(outcome.message.message, 'only text');
        assert.equal(outcome.message.version, 2);
      });

      it('drops the lease, or moves it to the claim when due by claim.dueBefore', async () => {
        await using handle = await factory.create();
        const message = await insertOne(handle.store, {}, CLAIM_ALL);
        const dropped = await handle.store.update(message.id, { message: 'a' }, T + 1);
        assert.ok(dropped.kind === 'ok');
        assert.equal(dropped.message.leaseOwner, null);
        assert.equal(dropped.message.leaseExpiresAt, null);

        const claim: ClaimRequest = { owner: OTHER, leaseExpiresAt: T + 2 * MINUTE, dueBefore: T + 2 * MINUTE };
        const moved = await handle.store.update(message.id, { scheduledAt: T + 2 * MINUTE }, T + 2, claim);
        assert.ok(moved.kind === 'ok');
        assert.equal(moved.message.leaseOwner, OTHER);
        assert.equal(moved.message.leaseExpiresAt, T + 2 * MINUTE);

        const tooLate = await handle.store.update(message.id, { scheduledAt: T + 3 * MINUTE }, T + 3, claim);
        assert.ok(tooLate.kind === 'ok');
        assert.equal(tooLate.message.leaseOwner, null);
        assert.equal(tooLate.message.version, 4);
      });

      it('answers not_found for an unknown id', async () => {
        await using handle = await factory.create();
        assert.deepEqual(await handle.store.update(uuidv7(), { message: 'x' }, T), { kind: 'not_found' });
      });

      it('answers conflict with the current status once delivering, delivered or dead', async () => {
        await using handle = await factory.create();
        const delivering = await insertDelivering(handle.store);
        const delivered = await insertFinished(handle.store, 'delivered');
        const dead = await insertFinished(handle.store, 'dead');
        for (const message of [delivering, delivered, dead]) {
          assert.deepEqual(await handle.store.update(message.id, { message: 'x' }, T + 5), { kind: 'conflict', status: message.status });
          assert.deepEqual(await handle.store.get(message.id), message, 'unchanged');
        }
      });
    });

    describe('remove', () => {
      it('deletes a scheduled message and a dead one', async () => {
        await using handle = await factory.create();
        const scheduled = await insertOne(handle.store);
        const dead = await insertFinished(handle.store, 'dead');
        for (const message of [scheduled, dead]) {
          const outcome = await handle.store.remove(message.id);
          assert.equal(outcome.kind, 'ok');
          assert.equal(outcome.kind === 'ok' && outcome.message.id, message.id);
          assert.equal(await handle.store.get(message.id), undefined);
        }
      });

      it('answers conflict once delivering or delivered, not_found when unknown or already removed', async () => {
        await using handle = await factory.create();
        const delivering = await insertDelivering(handle.store);
        const delivered = await insertFinished(handle.store, 'delivered');
        assert.deepEqual(await handle.store.remove(delivering.id), { kind: 'conflict', status: 'delivering' });
        assert.deepEqual(await handle.store.remove(delivered.id), { kind: 'conflict', status: 'delivered' });
        assert.ok(await handle.store.get(delivering.id));
        const scheduled = await insertOne(handle.store);
        await handle.store.remove(scheduled.id);
        assert.deepEqual(await handle.store.remove(scheduled.id), { kind: 'not_found' });
        assert.deepEqual(await handle.store.remove(uuidv7()), { kind: 'not_found' });
      });
    });

    describe('retry', () => {
      it('moves a dead message back to scheduled, due now, attempts reset, version bumped', async () => {
        await using handle = await factory.create();
        const dead = await insertFinished(handle.store, 'dead');
        assert.equal(dead.attempts, 1);
        const outcome = await handle.store.retry(dead.id, T + 500);
        assert.ok(outcome.kind === 'ok');
        assert.equal(outcome.message.status, 'scheduled');
        assert.equal(outcome.message.dueAt, T + 500);
        assert.equal(outcome.message.scheduledAt, dead.scheduledAt);
        assert.equal(outcome.message.attempts, 0);
        assert.equal(outcome.message.version, dead.version + 1);
        assert.equal(outcome.message.updatedAt, T + 500);
        assert.equal(outcome.message.lastError, null);
        assert.equal(outcome.message.leaseOwner, null);
        assert.deepEqual(await handle.store.get(dead.id), outcome.message);
      });

      it('claims the retried message with a claim', async () => {
        await using handle = await factory.create();
        const dead = await insertFinished(handle.store, 'dead');
        const outcome = await handle.store.retry(dead.id, T + 500, CLAIM_ALL);
        assert.ok(outcome.kind === 'ok');
        assert.equal(outcome.message.leaseOwner, OWNER);
        assert.equal(outcome.message.leaseExpiresAt, CLAIM_ALL.leaseExpiresAt);
      });

      it('answers conflict for any other status, not_found when unknown', async () => {
        await using handle = await factory.create();
        const scheduled = await insertOne(handle.store);
        const delivering = await insertDelivering(handle.store);
        const delivered = await insertFinished(handle.store, 'delivered');
        for (const message of [scheduled, delivering, delivered]) {
          assert.deepEqual(await handle.store.retry(message.id, T + 5), { kind: 'conflict', status: message.status });
        }
        assert.deepEqual(await handle.store.retry(uuidv7(), T + 5), { kind: 'not_found' });
      });
    });

    describe('takeTokens (a pool\'s shared rate buckets)', () => {
      it('starts full, grants what is asked or the whole tokens there are, refills at the rate up to the burst', async () => {
        await using handle = await factory.create();
        const { store } = handle;
        assert.deepEqual(await store.takeTokens('shop', 3, 10, 5, T), { granted: 3, remaining: 2 });
        assert.deepEqual(await store.takeTokens('shop', 3, 10, 5, T), { granted: 2, remaining: 0 }, 'only whole tokens');
        assert.deepEqual(await store.takeTokens('shop', 1, 10, 5, T + 50), { granted: 0, remaining: 0.5 });
        assert.deepEqual(await store.takeTokens('shop', 4, 10, 5, T + 250), { granted: 2, remaining: 0.5 }, '2.5 by 250 ms: two whole ones taken');
        assert.deepEqual(await store.takeTokens('shop', 10, 10, 5, T + 60_000), { granted: 5, remaining: 0 }, 'never more than the burst');
        assert.deepEqual(await store.takeTokens('blog', 1, 1, 1, T), { granted: 1, remaining: 0 }, 'each target has its own');
        // a taker whose clock is a little behind the last one's adds nothing
        assert.deepEqual(await store.takeTokens('shop', 1, 10, 5, T + 59_950), { granted: 0, remaining: 0 });
        // one far behind (a clock that jumped back) gets nothing either, but the bucket goes on from its time
        assert.deepEqual(await store.takeTokens('shop', 1, 10, 5, T), { granted: 0, remaining: 0 });
        assert.deepEqual(await store.takeTokens('shop', 1, 10, 5, T + 100), { granted: 1, remaining: 0 }, 'not stalled until the clock catches up');
      });

      it('never hands one token to two takers at once', async () => {
        await using handle = await factory.create();
        const other = await handle.open();
        const takes = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? handle.store : other).takeTokens('shop', 1, 1, 10, T)));
        assert.equal(takes.reduce((sum, take) => sum + take.granted, 0), 10);
      });
    });

    describe('deliver-by and expire', () => {
      it('stores a message\'s own deliverBy, and changes or drops it with update', async () => {
        await using handle = await factory.create();
        const plain = await insertOne(handle.store);
        assert.equal(plain.deliverBy, null);
        const own = await insertOne(handle.store, { deliverBy: T + 2 * MINUTE });
        assert.equal(own.deliverBy, T + 2 * MINUTE);
        assert.equal((await handle.store.get(own.id))?.deliverBy, T + 2 * MINUTE);
        const text = await handle.store.update(own.id, { message: 'edited' }, T + 1);
        assert.ok(text.kind === 'ok');
        assert.equal(text.message.deliverBy, T + 2 * MINUTE, 'a change that does not name it keeps it');
        const moved = await handle.store.update(own.id, { deliverBy: T + 3 * MINUTE }, T + 2);
        assert.ok(moved.kind === 'ok');
        assert.equal(moved.message.deliverBy, T + 3 * MINUTE);
        const dropped = await handle.store.update(own.id, { deliverBy: null }, T + 3);
        assert.ok(dropped.kind === 'ok');
        assert.equal(dropped.message.deliverBy, null);
        assert.equal((await handle.store.get(own.id))?.deliverBy, null);
      });

      it('expires leased messages of the right version, unsent: status expired, lease dropped, attempts untouched, counted', async () => {
        await using handle = await factory.create();
        const a = await insertOne(handle.store, { deliverBy: T + MINUTE }, CLAIM_ALL);
        const b = await insertOne(handle.store, {}, CLAIM_ALL);
        const expired = await handle.store.expire(OWNER, [
          { id: b.id, version: 1, error: 'past b' },
          { id: a.id, version: 1, error: 'past a' },
        ], T + 9);
        assert.deepEqual(ids(expired), [b.id, a.id], 'in the order asked for');
        for (const [message, error] of [[expired[0]!, 'past b'], [expired[1]!, 'past a']] as const) {
          assert.equal(message.status, 'expired');
          assert.equal(message.attempts, 0);
          assert.equal(message.leaseOwner, null);
          assert.equal(message.updatedAt, T + 9);
          assert.equal(message.lastError, error);
          assert.deepEqual(await handle.store.get(message.id), message);
        }
        assert.equal((await handle.store.countByStatus()).expired, 2);
        assert.equal((await handle.store.countByStatus()).scheduled, 0);
        assert.deepEqual(ids(await handle.store.list({ status: 'expired', limit: 10 })), ids([a, b].sort((x, y) => (x.id < y.id ? -1 : 1))));
        assert.deepEqual(await handle.store.claimDue(OWNER, Number.MAX_SAFE_INTEGER, T + 10, T + MINUTE, 10), [], 'an expired message is never claimed');
      });

      it('finishDeliveries records a started message that was never sent as expired, its attempt taken back, no history', async () => {
        await using handle = await factory.create();
        const started = await insertDelivering(handle.store);
        assert.equal(started.attempts, 1);
        const other = await insertDelivering(handle.store);
        await handle.store.finishDeliveries(OWNER, [
          { id: started.id, outcome: 'expired', at: T + 9, error: 'not sent: past its deliver-by' },
          { id: other.id, outcome: 'expired', at: T + 9, error: 'x' },
        ]);
        const expired = await handle.store.get(started.id);
        assert.deepEqual([expired?.status, expired?.attempts, expired?.leaseOwner, expired?.updatedAt, expired?.lastError],
          ['expired', 0, null, T + 9, 'not sent: past its deliver-by']);
        assert.deepEqual(await handle.store.attempts(started.id), []);
        const counts = await handle.store.countByStatus();
        assert.deepEqual([counts.delivering, counts.expired], [0, 2]);
        // not the owner's delivery any more: nothing changes
        await handle.store.finishDeliveries(OTHER, [{ id: started.id, outcome: 'delivered', at: T + 10 }]);
        assert.equal((await handle.store.get(started.id))?.status, 'expired');
      });

      it('does not expire a changed, removed, foreign, unclaimed or started message', async () => {
        await using handle = await factory.create();
        const changed = await insertOne(handle.store, {}, CLAIM_ALL);
        await handle.store.update(changed.id, { message: 'edited' }, T + 1, CLAIM_ALL);
        const removed = await insertOne(handle.store, {}, CLAIM_ALL);
        await handle.store.remove(removed.id);
        const foreign = await insertOne(handle.store, {}, { ...CLAIM_ALL, owner: OTHER });
        const unclaimed = await insertOne(handle.store);
        const started = await insertDelivering(handle.store);
        const outcome = await handle.store.expire(OWNER, [changed, removed, foreign, unclaimed, started].map((m) => ({ id: m.id, version: 1, error: 'late' })), T + 5);
        assert.deepEqual(outcome, []);
        for (const message of [changed, foreign, unclaimed]) assert.equal((await handle.store.get(message.id))?.status, 'scheduled');
        assert.equal((await handle.store.get(started.id))?.status, 'delivering');
        assert.equal((await handle.store.countByStatus()).expired, 0);
        assert.deepEqual(await handle.store.expire(OWNER, [], T), []);
      });

      it('replays an expired message with retry (due now, its own deliverBy dropped) and discards one with remove', async () => {
        await using handle = await factory.create();
        const first = await insertOne(handle.store, { deliverBy: T + MINUTE }, CLAIM_ALL);
        const second = await insertOne(handle.store, {}, CLAIM_ALL);
        await handle.store.expire(OWNER, [first, second].map((m) => ({ id: m.id, version: 1, error: 'late' })), T + 5);
        const replayed = await handle.store.retry(first.id, T + 2 * MINUTE, CLAIM_ALL);
        assert.ok(replayed.kind === 'ok');
        assert.equal(replayed.message.status, 'scheduled');
        assert.equal(replayed.message.dueAt, T + 2 * MINUTE);
        assert.equal(replayed.message.deliverBy, null, 'replaying asks for a delivery now, however late');
        assert.equal(replayed.message.lastError, null);
        assert.equal(replayed.message.leaseOwner, OWNER);
        assert.equal(replayed.message.version, 2);
        const third = await insertOne(handle.store, {}, CLAIM_ALL);
        await handle.store.expire(OWNER, [{ id: third.id, version: 1, error: 'late' }], T + 5);
        const windowed = await handle.store.retry(third.id, T + 2 * MINUTE, undefined, T + 3 * MINUTE);
        assert.ok(windowed.kind === 'ok');
        assert.equal(windowed.message.deliverBy, T + 3 * MINUTE, 'the caller gives the replay a deliver-by of its own');
        const discarded = await handle.store.remove(second.id);
        assert.equal(discarded.kind, 'ok');
        assert.equal(await handle.store.get(second.id), undefined);
        const counts = await handle.store.countByStatus();
        assert.equal(counts.expired, 0);
        assert.equal(counts.scheduled, 2);
      });

      it('keeps a target\'s deliverWithinMs, and clears it', async () => {
        await using handle = await factory.create();
        const base: NewTarget = {
          name: 'news', url: 'http://127.0.0.1:9000', protocol: 'json', signatureScheme: 'psched', signingSecret: null,
          tokenHash: null, ratePerSecond: null, burst: null, maxInFlight: null, deliverWithinMs: 3_600_000,
        };
        await handle.store.insertTarget(base, T);
        assert.equal((await handle.store.getTarget('news'))?.deliverWithinMs, 3_600_000);
        assert.equal((await handle.store.updateTarget('news', { deliverWithinMs: 60_000 }, T + 1))?.deliverWithinMs, 60_000);
        assert.equal((await handle.store.listTargets())[0]?.deliverWithinMs, 60_000);
        await handle.store.updateTarget('news', { deliverWithinMs: null }, T + 2);
        assert.equal((await handle.store.getTarget('news'))?.deliverWithinMs, null);
      });
    });

    describe('claimDue', () => {
      it('counts the owners whose lease holds: the dispatchers sharing the store', async () => {
        await using handle = await factory.create();
        assert.equal(await handle.store.countLiveOwners(T), 0);
        await handle.store.claimDue(OWNER, T, T, T + MINUTE, 10);
        await handle.store.claimDue(OTHER, T, T, T + 2 * MINUTE, 10);
        assert.equal(await handle.store.countLiveOwners(T + MINUTE), 2, 'a lease holds to its expiry');
        assert.equal(await handle.store.countLiveOwners(T + MINUTE + 1), 1);
        assert.equal(await handle.store.countLiveOwners(T + 3 * MINUTE), 0);
      });

      it('claims unclaimed messages due by dueBefore, in dueAt order, up to the limit', async () => {
        await using handle = await factory.create();
        const c = await insertOne(handle.store, { scheduledAt: T + 3000 });
        const a = await insertOne(handle.store, { scheduledAt: T + 1000 });
        const b = await insertOne(handle.store, { scheduledAt: T + 2000 });
        const notYet = await insertOne(handle.store, { scheduledAt: T + 3001 });
        const claimed = await handle.store.claimDue(OWNER, T + 3000, T, T + MINUTE, 2);
        assert.deepEqual(ids(claimed), [a.id, b.id]);
        for (const message of claimed) {
          assert.equal(message.leaseOwner, OWNER);
          assert.equal(message.leaseExpiresAt, T + MINUTE);
          assert.equal(message.status, 'scheduled');
        }
        assert.deepEqual(ids(await handle.store.claimDue(OWNER, T + 3000, T, T + MINUTE, 10)), [c.id]);
        assert.equal((await handle.store.get(notYet.id))?.leaseOwner, null);
        assert.equal((await handle.store.get(a.id))?.leaseOwner, OWNER);
      });

      it('leaves the skipped targets\' messages alone, unclaimed or held by a dead owner, and claims the rest up to the limit', async () => {
        await using handle = await factory.create();
        const throttled = await insertOne(handle.store, { scheduledAt: T, target: 'throttled' });
        const a = await insertOne(handle.store, { scheduledAt: T + 1000, target: 'other' });
        const b = await insertOne(handle.store, { scheduledAt: T + 2000 });
        const deadOwners = await insertOne(handle.store, { scheduledAt: T + 500, target: 'throttled' }, { owner: OTHER, leaseExpiresAt: T + 10_000, dueBefore: T + MINUTE });
        const claimed = await handle.store.claimDue(OWNER, T + MINUTE, T + 11_000, T + MINUTE, 2, ['throttled']);
        assert.deepEqual(ids(claimed), [a.id, b.id]);
        assert.equal((await handle.store.get(throttled.id))?.leaseOwner, null);
        assert.equal((await handle.store.get(deadOwners.id))?.leaseOwner, OTHER);
        assert.deepEqual(ids(await handle.store.claimDue(OWNER, T + MINUTE, T + 11_000, T + MINUTE, 10)), [throttled.id, deadOwners.id], 'claimed once not skipped');
      });

      it('skips messages another owner holds until their lease expires', async () => {
        await using handle = await factory.create();
        const held = await insertOne(handle.store, { scheduledAt: T }, { owner: OTHER, leaseExpiresAt: T + 10_000, dueBefore: T + MINUTE });
        assert.deepEqual(await handle.store.claimDue(OWNER, T + MINUTE, T + 9_000, T + MINUTE, 10), []);
        const taken = await handle.store.claimDue(OWNER, T + MINUTE, T + 11_000, T + 2 * MINUTE, 10);
        assert.deepEqual(ids(taken), [held.id]);
        assert.equal(taken[0]!.leaseOwner, OWNER);
        assert.equal(taken[0]!.leaseExpiresAt, T + 2 * MINUTE);
      });

      it("reclaims a dead owner's delivering message (lease expired) as scheduled", async () => {
        await using handle = await factory.create();
        const delivering = await insertDelivering(handle.store); // leased to OWNER until T + MINUTE
        assert.deepEqual(await handle.store.claimDue(OTHER, T + 2 * MINUTE, T + 30_000, T + 2 * MINUTE, 10), [], 'lease still valid');
        const [taken] = await handle.store.claimDue(OTHER, T + 2 * MINUTE, T + 61_000, T + 3 * MINUTE, 10);
        assert.equal(taken?.id, delivering.id);
        assert.equal(taken?.status, 'scheduled');
        assert.equal(taken?.leaseOwner, OTHER);
        assert.equal(taken?.attempts, 1);
        assert.equal(taken?.version, delivering.version);
        // the dead owner's late outcome no longer applies
        await handle.store.finishDeliveries(OWNER, [{ id: delivering.id, outcome: 'delivered', at: T + 62_000 }]);
        assert.equal((await handle.store.get(delivering.id))?.status, 'scheduled');
      });

      it('never hands an owner back its own claims, however late it renews; its claim extends its lease', async () => {
        await using handle = await factory.create();
        const mine = await insertOne(handle.store, { scheduledAt: T }, CLAIM_ALL); // OWNER's lease: T + MINUTE
        const delivering = await insertDelivering(handle.store, { scheduledAt: T });
        // long past its lease: a refill of its own takes nothing (both are in its buffer or pipeline already)...
        assert.deepEqual(await handle.store.claimDue(OWNER, T + 10 * MINUTE, T + 5 * MINUTE, T + 6 * MINUTE, 10), []);
        assert.equal((await handle.store.get(delivering.id))?.status, 'delivering');
        // ...and renewed its lease, so the others wait again
        assert.equal((await handle.store.get(mine.id))?.leaseExpiresAt, T + 6 * MINUTE);
        assert.deepEqual(await handle.store.claimDue(OTHER, T + 10 * MINUTE, T + 5 * MINUTE + 1, T + 7 * MINUTE, 10), []);
      });

      it('never claims delivered or dead messages', async () => {
        await using handle = await factory.create();
        await insertFinished(handle.store, 'delivered');
        await insertFinished(handle.store, 'dead');
        assert.deepEqual(await handle.store.claimDue(OTHER, Number.MAX_SAFE_INTEGER, T + 10 * MINUTE, T + 11 * MINUTE, 10), []);
      });

      it('two owners claiming at once never get the same message', async () => {
        await using handle = await factory.create();
        const inputs = Array.from({ length: 40 }, (_, i) => newMessage({ scheduledAt: T + i }));
        await handle.store.insert(inputs, T);
        const [forA, forB] = await Promise.all([
          handle.store.claimDue(OWNER, T + MINUTE, T, T + MINUTE, 25),
          handle.store.claimDue(OTHER, T + MINUTE, T, T + MINUTE, 25),
        ]);
        const claimedByA = new Set(ids(forA!));
        assert.ok(ids(forB!).every((id) => !claimedByA.has(id)), 'disjoint');
        assert.equal(forA!.length + forB!.length, 40);
        for (const message of await handle.store.list({ limit: 100 })) {
          assert.equal(message.leaseOwner, claimedByA.has(message.id) ? OWNER : OTHER);
        }
      });

      it('returns nothing for limit 0', async () => {
        await using handle = await factory.create();
        await insertOne(handle.store, { scheduledAt: T });
        assert.deepEqual(await handle.store.claimDue(OWNER, T + MINUTE, T, T + MINUTE, 0), []);
        assert.equal((await handle.store.list({ limit: 1 }))[0]?.leaseOwner, null);
      });
    });

    describe('leases', () => {
      it('renewLeases extends only the given owner\'s leases', async () => {
        await using handle = await factory.create();
        const mine = [await insertOne(handle.store, {}, CLAIM_ALL), await insertDelivering(handle.store)];
        const theirs = await insertOne(handle.store, {}, { ...CLAIM_ALL, owner: OTHER });
        assert.equal(await handle.store.renewLeases(OWNER, T + 5 * MINUTE), 2);
        for (const message of mine) assert.equal((await handle.store.get(message.id))?.leaseExpiresAt, T + 5 * MINUTE);
        assert.equal((await handle.store.get(theirs.id))?.leaseExpiresAt, T + MINUTE);
        // past the old expiry the renewed claims stay put; the unrenewed one goes to whoever claims
        assert.deepEqual(ids(await handle.store.claimDue('third', Number.MAX_SAFE_INTEGER, T + 2 * MINUTE, T + 6 * MINUTE, 10)), [theirs.id]);
        assert.equal(await handle.store.renewLeases('nobody', T + 5 * MINUTE), 0);
      });

      it('renews, delivers and purges thousands of messages completely', async () => {
        await using handle = await factory.create();
        const store = handle.store;
        const inputs = Array.from({ length: 2500 }, (_, i) => newMessage({ scheduledAt: T + i }));
        await store.insert(inputs, T, CLAIM_ALL);
        assert.equal(await store.renewLeases(OWNER, T + 9 * MINUTE), 2500);
        const claimedAfterOldExpiry = await store.claimDue(OTHER, Number.MAX_SAFE_INTEGER, T + 2 * MINUTE, T + 10 * MINUTE, 5000);
        assert.deepEqual(claimedAfterOldExpiry, [], 'every lease was extended');
        const started = await store.startDelivery(OWNER, inputs.map((m) => ({ id: m.id, version: 1 })), T + 3000);
        assert.equal(started.length, 2500);
        assert.deepEqual(ids(started), ids(inputs), 'in the order asked for');
        await store.finishDeliveries(OWNER, started.map((m) => ({ id: m.id, outcome: 'delivered' as const, at: T + 4000 })));
        assert.equal(await store.purgeDelivered(T + 4001), 2500);
        assert.deepEqual(await store.countByStatus(), { scheduled: 0, delivering: 0, delivered: 0, dead: 0, expired: 0 });
        assert.deepEqual(await store.list({ limit: 10 }), []);
      });

      it('releaseClaims hands everything back at once, delivering ones as scheduled', async () => {
        await using handle = await factory.create();
        const scheduled = await insertOne(handle.store, { scheduledAt: T }, CLAIM_ALL);
        const delivering = await insertDelivering(handle.store, { scheduledAt: T });
        const theirs = await insertOne(handle.store, { scheduledAt: T }, { ...CLAIM_ALL, owner: OTHER });
        assert.equal(await handle.store.releaseClaims(OWNER), 2);
        for (const id of [scheduled.id, delivering.id]) {
          const message = await handle.store.get(id);
          assert.equal(message?.status, 'scheduled');
          assert.equal(message?.leaseOwner, null);
          assert.equal(message?.leaseExpiresAt, null);
        }
        assert.equal((await handle.store.get(theirs.id))?.leaseOwner, OTHER);
        // claimable right away by another owner, long before the old lease would expire
        const taken = await handle.store.claimDue(OTHER, T + MINUTE, T + 1, T + MINUTE, 10);
        assert.deepEqual(new Set(ids(taken)), new Set([scheduled.id, delivering.id]));
        assert.equal(await handle.store.releaseClaims(OWNER), 0);
      });
    });

    describe('startDelivery', () => {
      it('moves leased messages of the right version to delivering, attempts+1', async () => {
        await using handle = await factory.create();
        const a = await insertOne(handle.store, {}, CLAIM_ALL);
        const b = await insertOne(handle.store, {}, CLAIM_ALL);
        const started = await handle.store.startDelivery(OWNER, [{ id: a.id, version: 1 }, { id: b.id, version: 1 }], T + 7);
        assert.deepEqual(new Set(ids(started)), new Set([a.id, b.id]));
        for (const message of started) {
          assert.equal(message.status, 'delivering');
          assert.equal(message.attempts, 1);
          assert.equal(message.version, 1);
          assert.equal(message.leaseOwner, OWNER);
          assert.deepEqual(await handle.store.get(message.id), message);
        }
      });

      it('does not start a changed, removed, foreign, unclaimed or already started message', async () => {
        await using handle = await factory.create();
        const changed = await insertOne(handle.store, {}, CLAIM_ALL);
        await handle.store.update(changed.id, { message: 'edited' }, T + 1, CLAIM_ALL); // version 2, still ours
        const removed = await insertOne(handle.store, {}, CLAIM_ALL);
        await handle.store.remove(removed.id);
        const foreign = await insertOne(handle.store, {}, { ...CLAIM_ALL, owner: OTHER });
        const unclaimed = await insertOne(handle.store);
        const started = await insertDelivering(handle.store);
        const outcome = await handle.store.startDelivery(OWNER, [
          { id: changed.id, version: 1 },
          { id: removed.id, version: 1 },
          { id: foreign.id, version: 1 },
          { id: unclaimed.id, version: 1 },
          { id: started.id, version: 1 },
        ], T + 5);
        assert.deepEqual(outcome, []);
        assert.equal((await handle.store.get(changed.id))?.status, 'scheduled');
        assert.equal((await handle.store.get(foreign.id))?.attempts, 0);
        assert.equal((await handle.store.get(started.id))?.attempts, 1);
        // the current version does start
        assert.deepEqual(ids(await handle.store.startDelivery(OWNER, [{ id: changed.id, version: 2 }], T + 6)), [changed.id]);
      });

      it('answers in the order asked for, and starts an id asked for twice once', async () => {
        await using handle = await factory.create();
        const a = await insertOne(handle.store, {}, CLAIM_ALL);
        const b = await insertOne(handle.store, {}, CLAIM_ALL);
        const c = await insertOne(handle.store, {}, CLAIM_ALL);
        // ids are time-ordered (a < b < c): ask against that order
        const started = await handle.store.startDelivery(OWNER, [{ id: c.id, version: 1 }, { id: a.id, version: 1 }], T + 7);
        assert.deepEqual(ids(started), [c.id, a.id]);
        const twice = await handle.store.startDelivery(OWNER, [{ id: b.id, version: 1 }, { id: b.id, version: 1 }], T + 8);
        assert.deepEqual(ids(twice), [b.id]);
        assert.equal((await handle.store.get(b.id))?.attempts, 1);
        assert.equal((await handle.store.countByStatus()).delivering, 3);
      });

      it('accepts an empty list', async () => {
        await using handle = await factory.create();
        assert.deepEqual(await handle.store.startDelivery(OWNER, [], T), []);
      });
    });

    describe('finishDeliveries', () => {
      it('records delivered, retry and dead outcomes', async () => {
        await using handle = await factory.create();
        const delivered = await insertDelivering(handle.store);
        const retried = await insertDelivering(handle.store);
        const dead = await insertDelivering(handle.store);
        await handle.store.finishDeliveries(OWNER, [
          { id: delivered.id, outcome: 'delivered', at: T + 100 },
          { id: retried.id, outcome: 'retry', at: T + 5000, error: 'HTTP 503' },
          { id: dead.id, outcome: 'dead', at: T + 100, error: 'HTTP 400' },
        ]);

        const d = await handle.store.get(delivered.id);
        assert.equal(d?.status, 'delivered');
        assert.equal(d?.deliveredAt, T + 100);
        assert.equal(d?.leaseOwner, null);
        assert.equal(d?.leaseExpiresAt, null);
        assert.equal(d?.attempts, 1);

        const r = await handle.store.get(retried.id);
        assert.equal(r?.status, 'scheduled');
        assert.equal(r?.dueAt, T + 5000);
        assert.equal(r?.scheduledAt, retried.scheduledAt);
        assert.equal(r?.lastError, 'HTTP 503');
        assert.equal(r?.leaseOwner, OWNER, 'still buffered by its owner');
        assert.equal(r?.deliveredAt, null);

        const x = await handle.store.get(dead.id);
        assert.equal(x?.status, 'dead');
        assert.equal(x?.lastError, 'HTTP 400');
        assert.equal(x?.leaseOwner, null);
        assert.equal(x?.deliveredAt, null);
      });

      it('a retried message can be started again by its owner', async () => {
        await using handle = await factory.create();
        const message = await insertDelivering(handle.store);
        await handle.store.finishDeliveries(OWNER, [{ id: message.id, outcome: 'retry', at: T + 5000, error: 'timeout' }]);
        const [again] = await handle.store.startDelivery(OWNER, [{ id: message.id, version: message.version }], T + 5000);
        assert.equal(again?.attempts, 2);
        assert.equal(again?.status, 'delivering');
      });

      it('a released retry is handed back: scheduled, unleased, claimable by anyone when it comes due', async () => {
        await using handle = await factory.create();
        const kept = await insertDelivering(handle.store);
        const released = await insertDelivering(handle.store);
        await handle.store.finishDeliveries(OWNER, [
          { id: kept.id, outcome: 'retry', at: T + 5000, error: 'busy' },
          { id: released.id, outcome: 'retry', at: T + 60_000, error: 'busy', release: true },
        ]);
        assert.equal((await handle.store.get(kept.id))?.leaseOwner, OWNER);
        const handedBack = await handle.store.get(released.id);
        assert.equal(handedBack?.status, 'scheduled');
        assert.equal(handedBack?.leaseOwner, null);
        assert.equal(handedBack?.dueAt, T + 60_000);
        const claimed = await handle.store.claimDue(OTHER, T + 60_000, T + 1, T + 90_000, 10);
        assert.deepEqual(claimed.map((message) => message.id), [released.id]);
      });

      it("ignores outcomes for messages the owner is not delivering", async () => {
        await using handle = await factory.create();
        const scheduled = await insertOne(handle.store, {}, CLAIM_ALL);
        const delivering = await insertDelivering(handle.store);
        await handle.store.finishDeliveries(OTHER, [{ id: delivering.id, outcome: 'dead', at: T + 9, error: 'no' }]);
        await handle.store.finishDeliveries(OWNER, [
          { id: scheduled.id, outcome: 'delivered', at: T + 9 },
          { id: uuidv7(), outcome: 'delivered', at: T + 9 },
        ]);
        assert.deepEqual(await handle.store.get(delivering.id), delivering);
        assert.deepEqual(await handle.store.get(scheduled.id), scheduled);
      });
    });

    describe('counting and purging', () => {
      it('countByStatus counts every status, zeros included', async () => {
        await using handle = await factory.create();
        assert.deepEqual(await handle.store.countByStatus(), { scheduled: 0, delivering: 0, delivered: 0, dead: 0, expired: 0 });
        await insertOne(handle.store);
        await insertOne(handle.store);
        await insertDelivering(handle.store);
        await insertFinished(handle.store, 'delivered');
        assert.deepEqual(await handle.store.countByStatus(), { scheduled: 2, delivering: 1, delivered: 1, dead: 0, expired: 0 });
      });

      it('countByStatus follows every kind of change', async () => {
        await using handle = await factory.create();
        const store = handle.store;
        const expectCountsMatchList = async (step: string) => {
          const tally = { scheduled: 0, delivering: 0, delivered: 0, dead: 0, expired: 0 };
          for (const message of await store.list({ limit: 1000 })) tally[message.status]++;
          assert.deepEqual(await store.countByStatus(), tally, `after ${step}`);
        };
        const batch = Array.from({ length: 8 }, () => newMessage({ scheduledAt: T }));
        batch.push(newMessage({ idempotencyKey: 'dup' }), newMessage({ idempotencyKey: 'dup' }));
        await store.insert(batch, T, CLAIM_ALL);
        await expectCountsMatchList('insert');
        await store.remove(batch[0]!.id);
        await store.update(batch[1]!.id, { message: 'x' }, T + 1, CLAIM_ALL);
        await expectCountsMatchList('remove, update');
        const toStart = batch.slice(1, 7).map((m) => ({ id: m.id, version: m.id === batch[1]!.id ? 2 : 1 }));
        assert.equal((await store.startDelivery(OWNER, toStart, T + 2)).length, 6);
        await expectCountsMatchList('startDelivery');
        await store.finishDeliveries(OWNER, [
          { id: batch[1]!.id, outcome: 'delivered', at: T + 3 },
          { id: batch[2]!.id, outcome: 'retry', at: T + 4, error: 'e' },
          { id: batch[3]!.id, outcome: 'dead', at: T + 3, error: 'e' },
          { id: batch[4]!.id, outcome: 'dead', at: T + 3, error: 'e' },
        ]);
        await expectCountsMatchList('finishDeliveries');
        await store.retry(batch[3]!.id, T + 5);
        await store.remove(batch[4]!.id);
        await expectCountsMatchList('retry, remove dead');
        // batch[5] is delivering under OWNER: lease expires, OTHER reclaims it
        const reclaimed = await store.claimDue(OTHER, Number.MAX_SAFE_INTEGER, T + 2 * MINUTE, T + 3 * MINUTE, 100);
        assert.ok(ids(reclaimed).includes(batch[5]!.id));
        await expectCountsMatchList('claimDue of expired deliveries');
        const [again] = await store.startDelivery(OTHER, [{ id: batch[5]!.id, version: 1 }], T + 2 * MINUTE);
        assert.ok(again);
        assert.ok(await store.releaseClaims(OTHER) > 0);
        await expectCountsMatchList('releaseClaims');
        assert.equal(await store.purgeDelivered(T + 10), 1);
        await expectCountsMatchList('purgeDelivered');
        const reopened = await handle.open();
        assert.deepEqual(await reopened.countByStatus(), await store.countByStatus(), 'after reopening');
        await reopened.close();
      });

      it('purgeDelivered deletes only messages delivered before the cutoff', async () => {
        await using handle = await factory.create();
        const old = await insertFinished(handle.store, 'delivered', T + 100);
        const recent = await insertFinished(handle.store, 'delivered', T + 200);
        const dead = await insertFinished(handle.store, 'dead', T + 50);
        const scheduled = await insertOne(handle.store, { scheduledAt: T });
        assert.equal(await handle.store.purgeDelivered(T + 200), 1);
        assert.equal(await handle.store.get(old.id), undefined);
        for (const kept of [recent, dead, scheduled]) assert.ok(await handle.store.get(kept.id));
        assert.equal(await handle.store.purgeDelivered(T + 200), 0);
      });
    });

    describe('schedules', () => {
      it('stores a schedule with every field, gets and lists it', async () => {
        await using handle = await factory.create();
        const input = newSchedule({ endAt: T + 3 * MINUTE, maxOccurrences: 5, idempotencyKey: 'sched-1', catchUp: 'all', catchUpMax: 7 });
        const { schedule, created } = await handle.store.insertSchedule(input, T);
        assert.equal(created, true);
        const expected: StoredSchedule = { ...input, target: 'default', occurrences: 0, lastFireAt: null, version: 1, createdAt: T, updatedAt: T };
        assert.deepEqual(schedule, expected);
        assert.deepEqual(await handle.store.getSchedule(input.id), expected);
        const every = await handle.store.insertSchedule(newSchedule({ cron: null, everyMs: 15 * MINUTE, paused: true }), T);
        assert.deepEqual(await handle.store.listSchedules({ limit: 10 }), [expected, every.schedule]);
        assert.deepEqual(await handle.store.listSchedules({ limit: 10, afterId: input.id }), [every.schedule]);
        assert.deepEqual(await handle.store.listSchedules({ limit: 1 }), [expected]);
        assert.equal(await handle.store.getSchedule('nope'), undefined);
      });

      it('returns the existing schedule for a known idempotency key', async () => {
        await using handle = await factory.create();
        const first = await handle.store.insertSchedule(newSchedule({ idempotencyKey: 'k' }), T);
        const again = await handle.store.insertSchedule(newSchedule({ idempotencyKey: 'k', message: 'other' }), T + 1);
        assert.equal(again.created, false);
        assert.deepEqual(again.schedule, first.schedule);
        assert.equal((await handle.store.listSchedules({ limit: 10 })).length, 1);
      });

      it('updateSchedule compares the version, bumps it, and cancels the withdrawn occurrences still scheduled', async () => {
        await using handle = await factory.create();
        const { schedule } = await handle.store.insertSchedule(newSchedule(), T);
        const pending = await insertOne(handle.store, { scheduledAt: T + MINUTE });
        const delivering = await insertDelivering(handle.store);
        const outcome = await handle.store.updateSchedule(schedule.id, 1, { message: 'changed', paused: true, endAt: null, nextFireAt: T + 2 * MINUTE }, T + 5, [pending.id, delivering.id, 'unknown']);
        assert.equal(outcome.kind, 'ok');
        const changed = (outcome as { schedule: StoredSchedule; withdrawn: number }).schedule;
        assert.equal((outcome as { withdrawn: number }).withdrawn, 1, 'only the one still scheduled');
        assert.deepEqual(changed, { ...schedule, message: 'changed', paused: true, nextFireAt: T + 2 * MINUTE, version: 2, updatedAt: T + 5 });
        assert.deepEqual(await handle.store.getSchedule(schedule.id), changed);
        assert.equal(await handle.store.get(pending.id), undefined);
        assert.equal((await handle.store.get(delivering.id))?.status, 'delivering');
        assert.equal((await handle.store.countByStatus()).scheduled, 0);
        assert.deepEqual(await handle.store.updateSchedule(schedule.id, 1, { message: 'stale' }, T + 6, []), { kind: 'conflict' });
        assert.deepEqual(await handle.store.updateSchedule('nope', 1, { message: 'x' }, T + 6, []), { kind: 'not_found' });
        assert.equal((await handle.store.getSchedule(schedule.id))?.message, 'changed');
      });

      it('updateSchedule takes only the occurrences it withdrew off the count, and moves lastFireAt back to now', async () => {
        await using handle = await factory.create();
        const { schedule } = await handle.store.insertSchedule(newSchedule({ nextFireAt: T + 1 }), T);
        const idOf = (s: StoredSchedule) => `${s.id}@${s.nextFireAt}`;
        // three occurrences materialised ahead: T+1, T+1+MINUTE, T+1+2*MINUTE
        for (let i = 0; i < 3; i++) await handle.store.materializeDue(T + 3 * MINUTE, 10, T, fireOnce(idOf));
        const ahead = (await handle.store.getSchedule(schedule.id))!;
        assert.equal(ahead.occurrences, 3);
        const [first, second, third] = [0, 1, 2].map((i) => `${schedule.id}@${T + 1 + i * MINUTE}`) as [string, string, string];
        const [claimed] = await handle.store.claimDue(OWNER, T + 2, T, T + MINUTE, 10);
        assert.equal(claimed?.id, first);
        assert.ok((await handle.store.startDelivery(OWNER, [{ id: first, version: claimed!.version }], T + 2))[0]);
        const outcome = await handle.store.updateSchedule(schedule.id, ahead.version, { paused: true }, T + 2, [first, second, third]);
        assert.equal(outcome.kind, 'ok');
        const { schedule: paused, withdrawn } = outcome as { schedule: StoredSchedule; withdrawn: number };
        assert.equal(withdrawn, 2, 'the one being delivered is not withdrawn');
        assert.equal(paused.occurrences, 1, 'it posts, so it counts');
        assert.equal(paused.lastFireAt, T + 2);
        assert.deepEqual(await handle.store.getSchedule(schedule.id), paused);
        // a second change finding the same ids withdraws (and subtracts) nothing
        const again = await handle.store.updateSchedule(schedule.id, paused.version, { paused: false }, T + 3, [second, third]);
        assert.equal((again as { withdrawn: number }).withdrawn, 0);
        assert.equal((again as { schedule: StoredSchedule }).schedule.occurrences, 1);
      });

      it('removeSchedule deletes it and the occurrences withdraw picks from the row as stored', async () => {
        await using handle = await factory.create();
        const { schedule } = await handle.store.insertSchedule(newSchedule(), T);
        const pending = await insertOne(handle.store);
        const seen: StoredSchedule[] = [];
        assert.equal(await handle.store.removeSchedule(schedule.id, (current) => {
          seen.push(current);
          return [pending.id];
        }), true);
        assert.deepEqual(seen, [schedule]);
        assert.equal(await handle.store.getSchedule(schedule.id), undefined);
        assert.equal(await handle.store.get(pending.id), undefined);
        assert.equal(await handle.store.removeSchedule(schedule.id, () => assert.fail('no row, nothing to withdraw')), false);
      });

      it('removeSchedule during a materialisation sees what it materialised: no occurrence survives the delete', async () => {
        await using handle = await factory.create();
        const { schedule } = await handle.store.insertSchedule(newSchedule(), T);
        const idOf = (s: StoredSchedule) => `${s.id}@${s.nextFireAt}`;
        let removing: Promise<boolean> | undefined;
        let seen: StoredSchedule | undefined;
        // the delete starts while the materialisation holds the schedule (PostgreSQL: its row lock; SQLite: its transaction)
        const result = await handle.store.materializeDue(T + MINUTE, 10, T, (due) => {
          removing = handle.store.removeSchedule(due.id, (current) => {
            seen = current;
            return current.lastFireAt === null ? [] : [`${current.id}@${current.lastFireAt}`];
          });
          return fireOnce(idOf)(due);
        });
        assert.deepEqual(ids(result.created), [`${schedule.id}@${T + MINUTE}`]);
        assert.equal(await removing, true);
        assert.equal(seen?.lastFireAt, T + MINUTE, 'the delete read the row as the materialisation left it');
        assert.equal(await handle.store.get(`${schedule.id}@${T + MINUTE}`), undefined);
        assert.equal((await handle.store.countByStatus()).scheduled, 0);
        assert.deepEqual(await handle.store.materializeDue(T + 10 * MINUTE, 10, T, fireOnce(idOf)), { schedules: 0, created: [] });
      });

      it('materializeDue inserts the planned occurrences unclaimed and advances each due schedule, earliest first', async () => {
        await using handle = await factory.create();
        const late = await handle.store.insertSchedule(newSchedule({ nextFireAt: T + 2 * MINUTE }), T);
        const early = await handle.store.insertSchedule(newSchedule({ nextFireAt: T + MINUTE }), T);
        await handle.store.insertSchedule(newSchedule({ nextFireAt: T + 10 * MINUTE }), T);
        await handle.store.insertSchedule(newSchedule({ nextFireAt: T, paused: true }), T);
        await handle.store.insertSchedule(newSchedule({ nextFireAt: null }), T);
        const seen: string[] = [];
        const idOf = (schedule: StoredSchedule) => `${schedule.id}@${schedule.nextFireAt}`;
        const result = await handle.store.materializeDue(T + 2 * MINUTE, 10, T + 7, (schedule) => {
          seen.push(schedule.id);
          return fireOnce(idOf)(schedule);
        });
        assert.deepEqual(seen, [early.schedule.id, late.schedule.id]);
        assert.equal(result.schedules, 2);
        assert.deepEqual(result.created.map((m) => [m.id, m.scheduledAt, m.dueAt, m.status, m.leaseOwner, m.createdAt]), [
          [`${early.schedule.id}@${T + MINUTE}`, T + MINUTE, T + MINUTE, 'scheduled', null, T + 7],
          [`${late.schedule.id}@${T + 2 * MINUTE}`, T + 2 * MINUTE, T + 2 * MINUTE, 'scheduled', null, T + 7],
        ]);
        for (const message of result.created) assert.deepEqual(await handle.store.get(message.id), message);
        const advanced = await handle.store.getSchedule(early.schedule.id);
        assert.deepEqual(advanced, { ...early.schedule, nextFireAt: T + 2 * MINUTE, lastFireAt: T + MINUTE, occurrences: 1, version: 2, updatedAt: T + 7 });
        assert.equal((await handle.store.countByStatus()).scheduled, 2);
        // the next call finds only what is due again
        const next = await handle.store.materializeDue(T + 2 * MINUTE, 10, T + 8, fireOnce(idOf));
        assert.deepEqual(next.created.map((m) => m.id), [`${early.schedule.id}@${T + 2 * MINUTE}`]);
      });

      it('materializeDue skips an occurrence whose id exists (a second materialisation is a no-op) and still advances', async () => {
        await using handle = await factory.create();
        const { schedule } = await handle.store.insertSchedule(newSchedule(), T);
        const already = await insertOne(handle.store, { scheduledAt: T + MINUTE });
        const result = await handle.store.materializeDue(T + MINUTE, 10, T + 1, fireOnce(() => already.id));
        assert.deepEqual(result, { schedules: 1, created: [] });
        assert.deepEqual(await handle.store.get(already.id), already);
        const advanced = await handle.store.getSchedule(schedule.id);
        assert.equal(advanced?.nextFireAt, T + 2 * MINUTE);
        assert.equal(advanced?.occurrences, 0, 'only the messages it created count');
        assert.equal((await handle.store.countByStatus()).scheduled, 1);
      });

      it('materializeDue takes at most limit schedules, and a plan may end a schedule or skip occurrences', async () => {
        await using handle = await factory.create();
        for (let i = 0; i < 3; i++) await handle.store.insertSchedule(newSchedule({ nextFireAt: T + i }), T);
        const ended = await handle.store.materializeDue(T + MINUTE, 2, T, (schedule) => ({ messages: [], nextFireAt: null, lastFireAt: schedule.lastFireAt }));
        assert.equal(ended.schedules, 2);
        const rest = await handle.store.materializeDue(T + MINUTE, 5, T, fireOnce((schedule) => `${schedule.id}@x`));
        assert.equal(rest.schedules, 1);
        const all = await handle.store.listSchedules({ limit: 10 });
        assert.deepEqual(all.map((s) => s.nextFireAt), [null, null, T + 2 + MINUTE]);
      });

      it('keeps schedules and their materialisations across close and reopen', async () => {
        await using handle = await factory.create();
        const first = await handle.open();
        const { schedule } = await first.insertSchedule(newSchedule(), T);
        await first.materializeDue(T + MINUTE, 10, T, fireOnce((s) => `${s.id}@${s.nextFireAt}`));
        await first.close();
        const reopened = await handle.open();
        assert.equal((await reopened.getSchedule(schedule.id))?.occurrences, 1);
        assert.ok(await reopened.get(`${schedule.id}@${T + MINUTE}`));
        await reopened.close();
      });
    });

    describe('lifecycle', () => {
      it('says whether other processes share it: a PostgreSQL pool does, a SQLite file is one process\'s', async () => {
        await using handle = await factory.create();
        assert.equal(handle.store.shared, factory.name === 'postgres');
      });

      it('migrate again is a no-op, from the same or another connection', async () => {
        await using handle = await factory.create();
        const message = await insertOne(handle.store);
        await handle.store.migrate();
        const other = await handle.open();
        await other.migrate();
        assert.deepEqual(await other.get(message.id), message);
        await other.close();
        assert.deepEqual(await handle.store.get(message.id), message);
      });

      it('keeps every resolved write across close and reopen', async () => {
        await using handle = await factory.create();
        const first = await handle.open();
        const kept = await insertOne(first, { message: 'kept 😀' });
        const changed = await insertOne(first);
        const removed = await insertOne(first);
        const dead = await insertFinished(first, 'dead');
        // not awaited one by one: these share group commits
        await Promise.all([
          first.update(changed.id, { message: 'changed' }, T + 1),
          first.remove(removed.id),
          first.retry(dead.id, T + 2),
        ]);
        await first.close();

        const reopened = await handle.open();
        assert.deepEqual(await reopened.get(kept.id), kept);
        assert.equal((await reopened.get(changed.id))?.message, 'changed');
        assert.equal(await reopened.get(removed.id), undefined);
        assert.equal((await reopened.get(dead.id))?.status, 'scheduled');
        await reopened.close();
      });

      it('onWake returns an unsubscribe function', async () => {
        await using handle = await factory.create();
        const unsubscribe = handle.store.onWake(() => {});
        assert.equal(typeof unsubscribe, 'function');
        unsubscribe();
      });
    });
  });
}
