import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dispatcherConfig } from '../src/config.ts';
import type { AttemptResult, Deliverer } from '../src/dispatcher/delivery.ts';
import type { NewTarget, StoredMessage } from '../src/dispatcher/store.ts';
import { TargetRegistry, type DeliverySettings } from '../src/dispatcher/targets.ts';
import { tokenHash } from '../src/protocol/targets.ts';
import { dispatcherStoreFactories } from './support/stores.ts';

/**
 * The TargetRegistry (src/dispatcher/targets.ts) on its own: which deliverer
 * each message goes to, when deliverers are made, rebuilt and closed, and
 * what it reads from the store. Recording deliverers stand in for HTTP.
 */

class Recording implements Deliverer {
  readonly delivered: string[] = [];
  closed = false;
  readonly settings: DeliverySettings | undefined;
  constructor(settings: DeliverySettings | undefined) {
    this.settings = settings;
  }
  async deliver(message: StoredMessage): Promise<AttemptResult> {
    this.delivered.push(message.id);
    return { kind: 'delivered', status: 200 };
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

const target = (name: string, overrides: Partial<NewTarget> = {}): NewTarget => ({
  name, url: `http://127.0.0.1:9/${name}`, protocol: 'json', signatureScheme: 'psched', signingSecret: null, tokenHash: null,
  ratePerSecond: null, burst: null, maxInFlight: null, deliverWithinMs: null, ...overrides,
});

const message = (id: string, targetName: string) => ({ id, target: targetName }) as StoredMessage;

describe('TargetRegistry', () => {
  const [factory] = dispatcherStoreFactories();
  it('delivers each message through its own target\'s deliverer, made lazily, rebuilt on change, closed on removal and at close', async () => {
    await using handle = await factory!.create();
    const { store } = handle;
    const made: Recording[] = [];
    const builtIn = new Recording(undefined);
    const registry = new TargetRegistry({
      store, config: dispatcherConfig({}, {}), defaultDeliverer: builtIn, refreshMs: 60_000,
      createDeliverer: (settings) => {
        const deliverer = new Recording(settings);
        made.push(deliverer);
        return deliverer;
      },
    });
    await store.insertTarget(target('shop'), 1);
    await registry.start();
    assert.equal(made.length, 0, 'no deliverer before the first delivery');

    await registry.deliver(message('m1', 'default'));
    await registry.deliver(message('m2', 'shop'));
    await registry.deliver(message('m3', 'shop'));
    assert.deepEqual(builtIn.delivered, ['m1']);
    assert.equal(made.length, 1);
    assert.deepEqual(made[0]!.delivered, ['m2', 'm3']);
    assert.equal(made[0]!.settings!.url, 'http://127.0.0.1:9/shop');

    // created elsewhere (another dispatcher of a pool): read from the store at its first message
    await store.insertTarget(target('blog'), 2);
    await registry.deliver(message('m4', 'blog'));
    assert.deepEqual(made[1]!.delivered, ['m4']);

    // changed: the old deliverer is closed, the next delivery makes one with the new settings
    await store.updateTarget('shop', { url: 'http://127.0.0.1:9/shop2' }, 3);
    await registry.refresh();
    assert.equal(made[0]!.closed, true);
    await registry.deliver(message('m5', 'shop'));
    assert.equal(made[2]!.settings!.url, 'http://127.0.0.1:9/shop2');

    // removed: closed, and its messages are dead naming it
    await store.removeTarget('blog');
    await registry.refresh();
    assert.equal(made[1]!.closed, true);
    const dead = await registry.deliver(message('m6', 'blog'));
    assert.equal(dead.kind, 'dead');
    assert.match((dead as { error: string }).error, /target "blog" does not exist/);

    await registry.close();
    assert.equal(builtIn.closed, true);
    assert.equal(made[2]!.closed, true);
  });

  it('applies a change and a removal made through this dispatcher at once, even within the same millisecond', async () => {
    await using handle = await factory!.create();
    const { store } = handle;
    const made: Recording[] = [];
    const registry = new TargetRegistry({ store, config: dispatcherConfig({}, {}), defaultDeliverer: new Recording(undefined), createDeliverer: (s) => { const d = new Recording(s); made.push(d); return d; }, refreshMs: 60_000 });
    await store.insertTarget(target('shop'), 5);
    await registry.start();
    await registry.deliver(message('m1', 'shop'));
    // changed at the same instant as it was made: a comparison of updatedAt alone would keep the old URL
    registry.learn((await store.updateTarget('shop', { url: 'http://127.0.0.1:9/moved' }, 5))!);
    assert.equal(made[0]!.closed, true);
    await registry.deliver(message('m2', 'shop'));
    assert.equal(made[1]!.settings!.url, 'http://127.0.0.1:9/moved');
    await store.removeTarget('shop');
    registry.removed('shop');
    assert.equal(made[1]!.closed, true);
    assert.equal((await registry.deliver(message('m3', 'shop'))).kind, 'dead');
    await registry.close();
  });

  it('finds a target by its token (read from the store on a miss), and forgets a token that was changed', async () => {
    await using handle = await factory!.create();
    const { store } = handle;
    const registry = new TargetRegistry({ store, config: dispatcherConfig({}, {}), defaultDeliverer: new Recording(undefined), createDeliverer: (s) => new Recording(s), refreshMs: 60_000 });
    await store.insertTarget(target('shop', { tokenHash: tokenHash('token-one-0123456789') }), 1);
    assert.equal((await registry.byToken('token-one-0123456789'))?.name, 'shop');
    assert.equal(await registry.byToken('token-two-0123456789'), undefined);
    await store.updateTarget('shop', { tokenHash: tokenHash('token-two-0123456789') }, 2);
    assert.equal((await registry.byToken('token-two-0123456789'))?.name, 'shop', 'a miss reads the store');
    assert.equal(await registry.byToken('token-one-0123456789'), undefined, 'the old token is no longer the shop\'s');
    assert.equal(await registry.exists('default'), true);
    assert.equal(await registry.exists('nope'), false);
    await registry.close();
  });
});
