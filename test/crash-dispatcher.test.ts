import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { verifySignature } from '../src/protocol/signing.ts';
import { Processes, inParallel, requestJson, waitFor, type ServiceProcess } from './support/processes.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';

/**
 * Issue 2, "a restart after kill -9 that loses nothing": a real dispatcher
 * process on a temp SQLite file delivers to a recording receiver in this
 * process; it is killed with SIGKILL in the middle of a burst of deliveries
 * while clients are still scheduling, then restarted on the same file.
 */

const DUE_SOON = 300;
/**
 * The burst is spread over this window, starting FIRST_DUE_MS after scheduling
 * begins: later than scheduling takes on a busy machine, so the kill lands inside it.
 */
const SPREAD_MS = 2_000;
const FIRST_DUE_MS = 1_500;
const FAR_AHEAD = 20;
/** Kill once this many of the burst have been delivered: well inside the burst. */
const KILL_AFTER_DELIVERED = 100;

/**
 * A short lease and horizon so the restarted dispatcher (a new owner) can
 * take over the dead one's claims within seconds: claims expire `lease`
 * after the last renewal and refills run every horizon/4. With the defaults
 * (10 s, 60 s) the takeover would take up to 25 s, too long for a test.
 */
const LEASE = '2s';
const HORIZON = '8s';

describe('dispatcher killed with kill -9 during deliveries', () => {
  const procs = new Processes();
  let receiver: Receiver | undefined;
  after(async () => {
    await procs.cleanup();
    await receiver?.close();
  });

  it('delivers every acknowledged message after a restart, keeps every 201 and the far-ahead ones', async (t) => {
    receiver = await startReceiver();
    const token = randomBytes(16).toString('hex');
    const secret = randomBytes(32).toString('hex');
    const dir = procs.tempDir();
    const dispatcher = await procs.startService('dispatcher', {
      db: join(dir, 'dispatcher.db'),
      'main-url': receiver.url,
      'api-token': token,
      'signing-secret': secret,
      lease: LEASE,
      horizon: HORIZON,
    });

    const schedule = async (url: string, scheduledAt: number, message: string): Promise<string | undefined> => {
      const answer = await requestJson('POST', `${url}/v1/messages`, {
        token,
        body: { username: 'Crash', message, scheduledAt: new Date(scheduledAt).toISOString() },
      });
      return answer.status === 201 ? (answer.body as { id: string }).id : undefined;
    };

    // 1. the burst and some far-ahead messages, all acknowledged while the dispatcher is healthy
    const start = Date.now();
    const dueSoon = await inParallel(DUE_SOON, 16, (i) => schedule(dispatcher.url, start + FIRST_DUE_MS + (i * SPREAD_MS) / DUE_SOON, `burst ${i}`));
    const farAheadResults = await inParallel(FAR_AHEAD, 8, (i) => schedule(dispatcher.url, start + 86_400_000 + i, `tomorrow ${i}`));
    const dueSoonIds = new Set(acknowledged(dueSoon));
    const farAheadIds = new Set(acknowledged(farAheadResults));
    assert.equal(dueSoonIds.size, DUE_SOON, 'a healthy dispatcher acknowledges every burst message with 201');
    assert.equal(farAheadIds.size, FAR_AHEAD);
    t.diagnostic(`scheduled ${DUE_SOON + FAR_AHEAD} messages in ${Date.now() - start} ms`);

    // 2. clients keep scheduling (far ahead) right up to the kill: each 201 must survive it
    const lateAcks = new Map<string, number>(); // id -> when its 201 arrived
    let writing = true;
    const writers = inParallel(2, 2, async (w) => {
      for (let n = 0; writing; n++) {
        try {
          const id = await schedule(dispatcher.url, start + 3_600_000 + n, `writer ${w} #${n}`);
          if (id) lateAcks.set(id, Date.now());
        } catch {
          // the connection died with the process: not acknowledged, no promise made
        }
      }
    });

    // 3. kill -9 in the middle of the burst
    await waitFor(() => deliveredIds(receiver!).size >= KILL_AFTER_DELIVERED, {
      timeoutMs: FIRST_DUE_MS + SPREAD_MS + 10_000,
      intervalMs: 5,
      what: `${KILL_AFTER_DELIVERED} deliveries`,
    });
    const killedAt = Date.now();
    const exit = await dispatcher.kill9();
    assert.equal(exit.signal, 'SIGKILL');
    writing = false;
    await writers;
    const deliveredAtKill = deliveredIds(receiver).size;
    assert.ok(deliveredAtKill > 0 && deliveredAtKill < DUE_SOON, `killed midway (delivered ${deliveredAtKill} of ${DUE_SOON})`);
    // (a 201 may arrive a moment after the kill was sent: the process answered before it died)
    const lastAck = Math.max(...lateAcks.values()) - killedAt;
    assert.ok(lateAcks.size > 0 && lastAck > -500, `clients were still being answered just before the kill (last 201 at ${lastAck} ms from it)`);
    t.diagnostic(`killed after ${deliveredAtKill}/${DUE_SOON} deliveries; ${lateAcks.size} 201s while writing up to the kill, the last at ${lastAck} ms from it`);

    // 4. restart on the same file: every acknowledged burst message is delivered
    const restarted = await procs.restart(dispatcher);
    const restartedAt = Date.now();
    await waitFor(() => [...dueSoonIds].every((id) => deliveredIds(receiver!).has(id)), {
      timeoutMs: 30_000,
      intervalMs: 20,
      what: `all ${DUE_SOON} burst messages delivered (have ${deliveredIds(receiver).size})`,
    });
    t.diagnostic(`the rest of the burst was delivered ${Date.now() - restartedAt} ms after the restart was healthy`);

    // 5. the store agrees: the burst delivered (none stuck, none dead), everything else still scheduled
    const byStatus = await waitFor(async () => {
      const counts = await statusCounts(restarted, token);
      return counts.delivered === DUE_SOON && counts.delivering === 0 ? counts : undefined;
    }, { timeoutMs: 10_000, what: 'the store to record every delivery' });
    assert.equal(byStatus.dead, 0);
    const scheduled = await listIds(restarted, token, 'scheduled');
    for (const id of farAheadIds) assert.ok(scheduled.has(id), `far-ahead message ${id} is still scheduled`);
    const lost = [...lateAcks.keys()].filter((id) => !scheduled.has(id));
    assert.deepEqual(lost, [], 'every message acknowledged with 201 before the kill is stored');

    // 6. deliveries: only acknowledged burst messages, each properly signed; duplicates only around the kill
    const requests = receiver.requests;
    for (const request of requests) {
      const id = (JSON.parse(request.body) as { id: string }).id;
      assert.ok(dueSoonIds.has(id), `delivered ${id}, which is not a burst message`);
      assert.deepEqual(verifySignature(secret, request.headers['psched-signature'] as string, request.body, request.receivedAt), { ok: true });
    }
    t.diagnostic(`${requests.length} delivery requests for ${DUE_SOON} messages (${requests.length - DUE_SOON} redeliveries of messages in flight at the kill)`);
  });
});

function acknowledged(results: PromiseSettledResult<string | undefined>[]): string[] {
  return results.flatMap((r) => (r.status === 'fulfilled' && r.value ? [r.value] : []));
}

/** The message ids the receiver has been sent so far (it dedupes by id, as a main server does). */
function deliveredIds(receiver: Receiver): Set<string> {
  return new Set(receiver.requests.map((request) => (JSON.parse(request.body) as { id: string }).id));
}

/** Every message id with `status`, through the keyset pagination of GET /v1/messages. */
async function listIds(dispatcher: ServiceProcess, token: string, status: string): Promise<Set<string>> {
  const ids = new Set<string>();
  let cursor: string | null = null;
  do {
    const query: string = new URLSearchParams({ status, limit: '1000', ...(cursor ? { cursor } : {}) }).toString();
    const answer = await requestJson('GET', `${dispatcher.url}/v1/messages?${query}`, { token });
    assert.equal(answer.status, 200);
    for (const item of answer.body.items as { id: string }[]) ids.add(item.id);
    cursor = answer.body.nextCursor;
  } while (cursor);
  return ids;
}

async function statusCounts(dispatcher: ServiceProcess, token: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const status of ['scheduled', 'delivering', 'delivered', 'dead']) counts[status] = (await listIds(dispatcher, token, status)).size;
  return counts;
}
