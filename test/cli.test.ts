import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { closestFlag } from '../src/cli/args.ts';
import { scheduledTable } from '../src/cli/client.ts';
import { startTestDispatcher } from './support/dispatcher.ts';
import { startTestMain } from './support/main.ts';
import { PSCHED_BIN, Processes, freePort, freePorts, waitHealthy } from './support/processes.ts';

/**
 * Issue 13, items 4 and 5: the command line says what is wrong in one line,
 * in terms of its flags, and never starts half-way.
 */

const procs = new Processes();
after(() => procs.cleanup());

/** Runs psched to completion; the client needs no server for these. */
async function psched(...args: string[]) {
  const result = await procs.run(args, { cwd: procs.tempDir(), env: { PSCHED_MAIN_URL: 'http://127.0.0.1:9' } });
  return { ...result, lines: result.stderr.trim().split('\n') };
}

async function occupy(port: number): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}

describe('psched command line', () => {
  it('finds the flag a typo meant', () => {
    assert.equal(closestFlag('tokn', ['url', 'token', 'json']), 'token');
    assert.equal(closestFlag('stats', ['status', 'timezone']), 'status');
    assert.equal(closestFlag('time', ['timezone', 'at']), 'timezone');
    assert.equal(closestFlag('xyzzy', ['url', 'token']), undefined);
  });

  it('an unknown flag: one line naming the closest valid one', async () => {
    const result = await psched('schedule', '--tokn', 'x', 'hi');
    assert.equal(result.code, 1);
    assert.deepEqual(result.lines, ['psched schedule: unknown flag --tokn; did you mean --token? (psched schedule --help lists them)']);
    const service = await psched('dispatcher', '--leese', '2s');
    assert.match(service.stderr, /^psched dispatcher: unknown flag --leese; did you mean --lease\?/);
  });

  it('a duration without a unit is refused, saying so, for the client and the services', async () => {
    const client = await psched('schedule', '--in', '10', 'hi');
    assert.equal(client.code, 1);
    assert.deepEqual(client.lines, ['psched: --in needs a unit: 10s, 10m, 10h or 10d (a bare number is not a duration)']);
    const service = await psched('dispatcher', '--lease', '2000');
    assert.equal(service.code, 1);
    assert.deepEqual(service.lines, ['psched: --lease needs a unit: 500ms, 10s, 5m, 2h or 7d (got "2000")']);
  });

  it('a missing value, a stray argument and a bad zone each get one line', async () => {
    assert.deepEqual((await psched('dispatcher', '--port')).lines, ['psched dispatcher: --port needs a value']);
    assert.match((await psched('main', 'extra')).stderr, /^psched main takes flags only \(got "extra"\)/);
    assert.deepEqual((await psched('scheduled', '--timezone', 'Mars/Base')).lines,
      ['psched: --timezone must be an IANA zone such as Europe/Paris or UTC (got "Mars/Base")']);
  });

  it('each subcommand has its own help', async () => {
    const schedule = await psched('schedule', '--help');
    const scheduled = await psched('scheduled', '--help');
    assert.equal(schedule.code, 0);
    assert.match(schedule.stdout, /^Usage: psched schedule /);
    assert.match(schedule.stdout, /--in DURATION/);
    assert.match(scheduled.stdout, /^Usage: psched scheduled /);
    assert.match(scheduled.stdout, /--status STATUS/);
    assert.match(scheduled.stdout, /delivered, dead or expired/);
    assert.doesNotMatch(scheduled.stdout, /--in DURATION/);
    assert.match(schedule.stdout, /--deliver-by TIME/);
  });

  it('psched schedule --deliver-by: read like --at, stored by the dispatcher; refused for recurring messages and before the time', async () => {
    await using dispatcher = await startTestDispatcher();
    const dispatcherUrl = await dispatcher.dispatcher.listen();
    await using main = await startTestMain({ dispatcherUrls: dispatcherUrl });
    const url = await main.server.listen();
    const run = (...args: string[]) => procs.run([...args, '--url', url], { cwd: procs.tempDir(), env: { PSCHED_ACCESS_TOKEN: '' } });
    const made = await run('schedule', '--at', '2099-07-01 09:00', '--deliver-by', '2099-07-01 12:00', '--timezone', 'Europe/Berlin', '--user', 'Ann', '--json', 'Doors open at noon');
    assert.equal(made.code, 0, made.stderr);
    const body = JSON.parse(made.stdout);
    assert.equal(body.deliverBy, '2099-07-01T10:00:00.000Z');
    assert.equal((await dispatcher.dispatcher.store.get(body.id))!.deliverBy, Date.parse('2099-07-01T10:00:00Z'));
    const soon = await run('schedule', '--in', '1h', '--deliver-by', '2099-01-01 00:00', '--timezone', 'UTC', 'x');
    assert.equal(soon.code, 0, soon.stderr);
    const early = await run('schedule', '--at', '2099-07-01 09:00', '--deliver-by', '2099-07-01 08:00', '--timezone', 'UTC', 'x');
    assert.equal(early.code, 1);
    assert.match(early.stderr, /^psched: --deliver-by \(2099-07-01T08:00:00.000Z\) is before scheduledAt/);
    const recurring = await run('schedule', '--every', '1h', '--deliver-by', '2099-07-01 08:00', 'x');
    assert.equal(recurring.code, 1);
    assert.match(recurring.stderr, /--deliver-by is for one message/);
  });

  it('psched scheduled prints a table with a header, times in the chosen zone', () => {
    const table = scheduledTable([
      { id: 'a1', username: 'Ann', message: 'two\nlines', scheduledAt: '2030-01-01T01:00:00.000Z', status: 'scheduled' },
      { id: 'b22', username: 'Bartholomew', message: 'x', scheduledAt: '2030-06-01T12:00:30.000Z', status: 'dead' },
    ], 'Asia/Tokyo');
    assert.deepEqual(table.split('\n'), [
      'ID   DUE (Asia/Tokyo)     STATUS     USER         MESSAGE',
      'a1   2030-01-01 10:00:00  scheduled  Ann          two lines',
      'b22  2030-06-01 21:00:30  dead       Bartholomew  x',
    ]);
  });

  it('psched dev reads its ports and folder from the environment, and each service its other options', async () => {
    const [mainPort, dispatcherPort] = await freePorts(2);
    const dir = procs.tempDir();
    const env = { PSCHED_MAIN_PORT: String(mainPort), PSCHED_DISPATCHER_PORT: String(dispatcherPort), PSCHED_DEV_DIR: dir };
    const dev = procs.spawn(['dev'], { env });
    await waitHealthy(`http://127.0.0.1:${mainPort}`, dev);
    await waitHealthy(`http://127.0.0.1:${dispatcherPort}`, dev);
    assert.ok(existsSync(join(dir, 'dispatcher.db')) && existsSync(join(dir, 'main.db')), 'both databases in PSCHED_DEV_DIR');
    await dev.stop('SIGTERM');

    const refused = await procs.run(['dev'], { env: { ...env, PSCHED_MAX_EVENT_STREAMS: '0' } });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /PSCHED_MAX_EVENT_STREAMS must be greater than 0/, 'the main server read its option from the environment');
  });

  for (const taken of ['main', 'dispatcher'] as const) {
    it(`psched dev with the ${taken} port taken: exits 1 with one clear line, nothing left running`, async () => {
      const [mainPort, dispatcherPort] = [await freePort(), await freePort()];
      const blocker = await occupy(taken === 'main' ? mainPort : dispatcherPort);
      try {
        const dir = procs.tempDir();
        const result = await procs.run(['dev', '--main-port', String(mainPort), '--dispatcher-port', String(dispatcherPort), '--dir', dir], { timeoutMs: 30_000 });
        assert.equal(result.code, 1, result.stderr);
        const flag = taken === 'main' ? '--main-port' : '--dispatcher-port';
        assert.match(result.stderr, new RegExp(`^psched: the ${taken === 'main' ? 'main server' : 'dispatcher'} cannot listen: port ${taken === 'main' ? mainPort : dispatcherPort} is already in use .* ${flag}$`, 'm'));
        // the other port is free again: nothing kept it
        const other = await occupy(taken === 'main' ? dispatcherPort : mainPort);
        await new Promise<void>((resolve) => other.close(() => resolve()));
      } finally {
        await new Promise<void>((resolve) => blocker.close(() => resolve()));
      }
    });
  }

  const olderNode = ['/usr/bin/node', '/usr/local/bin/node'].find((path) => {
    try {
      return Number(execFileSync(path, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' })) < 24;
    } catch {
      return false;
    }
  });
  it('on an older Node.js, says which version to install instead of a stack', { skip: olderNode ? false : 'no Node.js older than 24 on this machine' }, () => {
    const result = spawnSync(olderNode!, [PSCHED_BIN, 'dev'], { encoding: 'utf8' });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^psched needs Node\.js 24 or newer .*; this is Node\.js \d+/);
    assert.doesNotMatch(result.stderr, /ERR_UNKNOWN_FILE_EXTENSION|at /);
  });
});
