import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { startTestDispatcher } from './support/dispatcher.ts';
import { Processes } from './support/processes.ts';

/** psched targets: the CLI against a real dispatcher's /v1/targets. */

const procs = new Processes();
after(() => procs.cleanup());

const OPERATOR = 'operator-token-0123456789';
const SECRET = 'cli-signing-secret-value';
const TARGET_TOKEN = 'cli-target-token-0123456789';

describe('psched targets', () => {
  it('adds, lists, shows, updates and removes a target; never prints a secret; errors name the flags', async () => {
    await using dispatcher = await startTestDispatcher({ apiToken: OPERATOR, mainUrl: 'http://127.0.0.1:9/main' });
    const url = await dispatcher.dispatcher.listen();
    const psched = (...args: string[]) => procs.run(['targets', ...args, '--url', url], { cwd: procs.tempDir(), env: { PSCHED_API_TOKEN: OPERATOR } });
    const outputs: string[] = [];
    const run = async (...args: string[]) => {
      const result = await psched(...args);
      outputs.push(result.stdout, result.stderr);
      return result;
    };

    const added = await run('add', 'shop', '--main-url', 'http://127.0.0.1:9/shop', '--signing-secret', SECRET, '--target-token', TARGET_TOKEN, '--rate', '2.5');
    assert.equal(added.code, 0, added.stderr);
    assert.equal(added.stdout.trim(), 'added shop: http://127.0.0.1:9/shop (json, signed psched, with token)');

    const list = await run('list');
    assert.equal(list.code, 0, list.stderr);
    const lines = list.stdout.trim().split('\n');
    assert.match(lines[0]!, /^NAME\s+URL\s+PROTOCOL\s+SIGNED\s+TOKEN\s+LIMITS$/);
    assert.match(lines[1]!, /^default \(built in\)\s+http:\/\/127\.0\.0\.1:9\/main\s+json\s+unsigned\s+yes\s+-$/);
    assert.match(lines[2]!, /^shop\s+http:\/\/127\.0\.0\.1:9\/shop\s+json\s+psched\s+yes\s+2\.5\/s$/);

    const updated = await run('update', 'shop', '--burst', '10', '--rate', 'none', '--no-signing-secret', '--deliver-within', '90m');
    assert.equal(updated.code, 0, updated.stderr);
    assert.match(updated.stdout, /signed\s+no/);
    assert.match(updated.stdout, /limits\s+burst 10, expires after 1h30m/);
    assert.match((await run('list')).stdout, /^shop\s.*\s+burst 10, expires after 1h30m$/m);
    const cleared = await run('update', 'shop', '--deliver-within', 'none');
    assert.equal(cleared.code, 0, cleared.stderr);
    assert.match(cleared.stdout, /limits\s+burst 10$/m);
    const badWithin = await run('update', 'shop', '--deliver-within', '90');
    assert.equal(badWithin.code, 1);
    assert.match(badWithin.stderr, /^psched: --deliver-within must be a duration such as 30m, 2h or 1d, or none to clear it \(got "90"\)/);
    const tooLong = await run('update', 'shop', '--deliver-within', '400d');
    assert.equal(tooLong.code, 1);
    assert.match(tooLong.stderr, /--deliver-within/, 'the dispatcher\'s refusal names the flag');

    const shown = await run('show', 'shop', '--json');
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(JSON.parse(shown.stdout).burst, 10);
    assert.equal(JSON.parse(shown.stdout).deliverWithinMs, null);
    const added2 = await run('add', 'blog', '--main-url', 'http://127.0.0.1:9/blog', '--deliver-within', '2h');
    assert.equal(added2.code, 0, added2.stderr);
    assert.match((await run('show', 'blog')).stdout, /limits\s+expires after 2h$/m);
    assert.equal((await run('remove', 'blog')).code, 0);

    const bad = await run('update', 'shop', '--main-url', 'ftp://nope');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^psched: --main-url must be an http\(s\) URL/);
    const badRate = await run('add', 'blog', '--main-url', 'http://x.example', '--rate', 'fast');
    assert.match(badRate.stderr, /--rate must be a number, or none/);
    const builtIn = await run('remove', 'default');
    assert.match(builtIn.stderr, /built in/);
    const wrongToken = await procs.run(['targets', 'list', '--url', url, '--token', 'wrong-token-0123456789'], { cwd: procs.tempDir(), env: {} });
    assert.equal(wrongToken.code, 1);
    assert.match(wrongToken.stderr, /HTTP 401/);

    const removed = await run('remove', 'shop');
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout.trim(), 'removed shop');
    assert.match((await run('show', 'shop')).stderr, /No target named "shop" \(HTTP 404\)/);

    for (const output of outputs) {
      assert.ok(!output.includes(SECRET) && !output.includes(TARGET_TOKEN), `printed a secret: ${output}`);
    }
  });
});
