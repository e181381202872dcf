import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { MainStore, NewPost, Post } from '../src/main/store.ts';
import { uuidv7 } from '../src/ids.ts';
import { mainStoreFactories } from './support/stores.ts';

/**
 * The MainStore contract (src/main/store.ts), run against every store through
 * the interface only.
 */

const T = Date.UTC(2030, 0, 1);

function newPost(overrides: Partial<NewPost> = {}): NewPost {
  return { id: uuidv7(), messageId: uuidv7(), username: 'ann', message: 'hello', postedAt: T, scheduledAt: T - 5, ...overrides };
}

async function addPosts(store: MainStore, posts: NewPost[]): Promise<Post[]> {
  const added: Post[] = [];
  for (const post of posts) added.push((await store.addPost(post)).post);
  return added;
}

function ids(posts: { id: string }[]): string[] {
  return posts.map((post) => post.id);
}

for (const factory of mainStoreFactories()) {
  describe(`MainStore contract: ${factory.name}`, () => {
    it('answers a ping while open, and refuses one once closed', async () => {
      const handle = await factory.create();
      await handle.store.ping();
      await handle[Symbol.asyncDispose]();
      await assert.rejects(handle.store.ping());
    });

    it('adds a post and lists it with every field', async () => {
      await using handle = await factory.create();
      const input = newPost();
      const outcome = await handle.store.addPost(input);
      assert.deepEqual(outcome, { post: input, created: true });
      assert.deepEqual(await handle.store.listPosts({ limit: 10 }), [input]);
      assert.equal(await handle.store.countPosts(), 1);
    });

    it('is idempotent on messageId: a redelivery returns the first post', async () => {
      await using handle = await factory.create();
      const first = newPost();
      await handle.store.addPost(first);
      const again = await handle.store.addPost(newPost({ messageId: first.messageId, postedAt: T + 1000, message: 'again' }));
      assert.deepEqual(again, { post: first, created: false });
      assert.equal(await handle.store.countPosts(), 1);
    });

    it('dedupes concurrent deliveries of the same message', async () => {
      await using handle = await factory.create();
      const messageId = uuidv7();
      const outcomes = await Promise.all([1, 2, 3].map((i) => handle.store.addPost(newPost({ messageId, postedAt: T + i }))));
      assert.equal(outcomes.filter((o) => o.created).length, 1);
      assert.equal(new Set(outcomes.map((o) => o.post.id)).size, 1);
      assert.equal(await handle.store.countPosts(), 1);
    });

    it('keeps every legacy post (no messageId)', async () => {
      await using handle = await factory.create();
      const outcomes = await Promise.all([handle.store.addPost(newPost({ messageId: null, scheduledAt: null })), handle.store.addPost(newPost({ messageId: null, scheduledAt: null }))]);
      assert.deepEqual(outcomes.map((o) => o.created), [true, true]);
      assert.equal(outcomes[0]!.post.messageId, null);
      assert.equal(outcomes[0]!.post.scheduledAt, null);
      assert.equal(await handle.store.countPosts(), 2);
    });

    it('a failing post does not take down concurrent ones', async () => {
      await using handle = await factory.create();
      const existing = newPost();
      await handle.store.addPost(existing);
      const good = newPost();
      const results = await Promise.allSettled([
        handle.store.addPost(newPost({ id: existing.id })), // same primary key, different message
        handle.store.addPost(good),
      ]);
      assert.deepEqual(results.map((r) => r.status), ['rejected', 'fulfilled']);
      assert.deepEqual(ids(await handle.store.listPosts({ limit: 10 })).sort(), [existing.id, good.id].sort());
    });

    it('stores text exactly as given', async () => {
      await using handle = await factory.create();
      const texts = ['emoji 😀👍🏽 中文', `quotes ' " \``, '<script>alert(1)</script>&amp;', "'; DROP TABLE posts; --", '😀'.repeat(2500), 'x'.repeat(5000)];
      const posts = await addPosts(handle.store, texts.map((message, i) => newPost({ message, username: `O'Brien ${i} 🙂`, postedAt: T + i })));
      const listed = await handle.store.listPosts({ limit: 100 });
      assert.deepEqual(listed, posts.toReversed());
    });

    it('lists newest first, ties on postedAt broken by id, up to the limit', async () => {
      await using handle = await factory.create();
      const a = newPost({ postedAt: T + 1 });
      const b = newPost({ postedAt: T + 2 });
      const c = newPost({ postedAt: T + 2 }); // same time, larger id than b
      const d = newPost({ postedAt: T + 3 });
      await addPosts(handle.store, [c, a, d, b]);
      assert.deepEqual(ids(await handle.store.listPosts({ limit: 10 })), [d.id, c.id, b.id, a.id]);
      assert.deepEqual(ids(await handle.store.listPosts({ limit: 2 })), [d.id, c.id]);
      assert.deepEqual(await handle.store.listPosts({ limit: 0 }), []);
    });

    it('pages with a keyset cursor', async () => {
      await using handle = await factory.create();
      const posts = Array.from({ length: 23 }, (_, i) => newPost({ postedAt: T + Math.floor(i / 3) }));
      await addPosts(handle.store, posts.toReversed());
      const seen: string[] = [];
      let before: { postedAt: number; id: string } | undefined;
      for (;;) {
        const page = await handle.store.listPosts({ limit: 5, before });
        seen.push(...ids(page));
        if (page.length < 5) break;
        const last = page.at(-1)!;
        before = { postedAt: last.postedAt, id: last.id };
      }
      assert.deepEqual(seen, ids(posts).toReversed());
    });

    it('countPosts starts at zero', async () => {
      await using handle = await factory.create();
      assert.equal(await handle.store.countPosts(), 0);
      assert.deepEqual(await handle.store.listPosts({ limit: 10 }), []);
    });

    it('migrate again is a no-op, from the same or another connection', async () => {
      await using handle = await factory.create();
      const post = newPost();
      await handle.store.addPost(post);
      await handle.store.migrate();
      const other = await handle.open();
      await other.migrate();
      assert.deepEqual(await other.listPosts({ limit: 10 }), [post]);
      await other.close();
    });

    it('keeps every resolved post across close and reopen', async () => {
      await using handle = await factory.create();
      const first = await handle.open();
      const posts = Array.from({ length: 20 }, (_, i) => newPost({ postedAt: T + i }));
      await Promise.all(posts.map((post) => first.addPost(post)));
      await first.close();
      const reopened = await handle.open();
      assert.equal(await reopened.countPosts(), 20);
      assert.deepEqual(await reopened.listPosts({ limit: 100 }), posts.toReversed());
      await reopened.close();
    });
  });
}
