import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { PSCHED_BIN, Processes, REPO_ROOT, freePort, waitHealthy } from './support/processes.ts';

/**
 * The README's examples run as written after `npm start` (issue 13): its
 * quick-start shell blocks and the dispatcher API example, run by bash in a
 * folder where `psched dev` runs, as a newcomer would paste them. Only the
 * ports are changed (to free ones); `npx psched` finds this checkout's CLI.
 * curl is told to fail on an HTTP error (`fail-with-body` in a .curlrc), so
 * an example that answers 4xx or 5xx fails the test.
 */

const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

function shellBlocks(text: string): string[] {
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);
}

const quickStart = readme.slice(readme.indexOf('## Two commands'), readme.indexOf('## Screenshots'));
const examples = [
  ...shellBlocks(quickStart),
  ...shellBlocks(readme).filter((block) => block.includes('dev-credentials.json') && block.includes('/v1/messages')),
]
  // npm ci && npm start is what the test does itself; lines with <placeholders> are not meant to be pasted
  .map((block) => block.split('\n').filter((line) => line.trim() !== '' && !/^npm (ci|start|test)/.test(line) && !/<\w+>/.test(line)).join('\n'))
  .filter((block) => block !== '');

const procs = new Processes();
after(() => procs.cleanup());

describe("the README's examples", () => {
  it('were found: the curl example, the CLI examples, the API example', () => {
    assert.ok(examples.some((block) => block.includes('scheduleMessage.php')), 'the original\'s curl example');
    assert.ok(examples.some((block) => block.includes('npx psched schedule --in')), 'the CLI examples');
    assert.ok(examples.some((block) => block.includes('Authorization: Bearer $TOKEN')), 'the dispatcher API example');
  });

  it('run as written against npm start\'s system', { timeout: 120_000 }, async () => {
    const dir = procs.tempDir('psched-readme-');
    mkdirSync(join(dir, 'node_modules', '.bin'), { recursive: true });
    symlinkSync(PSCHED_BIN, join(dir, 'node_modules', '.bin', 'psched'));
    writeFileSync(join(dir, '.curlrc'), 'fail-with-body\nsilent\nshow-error\n');
    const [mainPort, dispatcherPort] = [await freePort(), await freePort()];
    const dev = procs.spawn(['dev', '--main-port', String(mainPort), '--dispatcher-port', String(dispatcherPort), '--dir', join(dir, 'data')]);
    await waitHealthy(`http://127.0.0.1:${mainPort}`, dev);
    await waitHealthy(`http://127.0.0.1:${dispatcherPort}`, dev);

    const env = { ...process.env, CURL_HOME: dir, PSCHED_MAIN_URL: `http://127.0.0.1:${mainPort}`, TZ: 'UTC' };
    for (const block of examples) {
      const script = `set -euo pipefail\n${block.replaceAll('localhost:8080', `localhost:${mainPort}`).replaceAll('localhost:8081', `localhost:${dispatcherPort}`)}`;
      try {
        const { stdout } = await promisify(execFile)('bash', ['-c', script], { cwd: dir, env, timeout: 60_000 });
        assert.doesNotMatch(stdout, /"result":"Failure"|"error":\{/, `${block}\nprinted: ${stdout}`);
      } catch (err) {
        const { stdout, stderr } = err as { stdout?: string; stderr?: string };
        assert.fail(`this README example failed:\n${block}\nstdout: ${stdout}\nstderr: ${stderr}`);
      }
    }

    // and they did what they say: the messages are there
    const { stdout } = await promisify(execFile)('bash', ['-c', 'npx psched scheduled --json'], { cwd: dir, env });
    const texts = (JSON.parse(stdout) as { items: { message: string }[] }).items.map((item) => item.message);
    for (const text of ['See you in ten minutes', 'Merry Christmas']) assert.ok(texts.includes(text), `${text} is scheduled: ${texts.join(', ')}`);
  });
});
