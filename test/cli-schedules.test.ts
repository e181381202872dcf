import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { startTestDispatcher } from './support/dispatcher.ts';
import { startTestMain } from './support/main.ts';
import { Processes } from './support/processes.ts';

/** psched schedule --every/--cron, psched schedules: the CLI against a real main server and dispatcher. */

const procs = new Processes();
after(() => procs.cleanup());

describe('psched schedule --every/--cron and psched schedules', () => {
  it('previews, creates, lists, pauses, resumes and deletes a recurring message; errors name the flags', async () => {
    await using dispatcher = await startTestDispatcher();
    const dispatcherUrl = await dispatcher.dispatcher.listen();
    await using main = await startTestMain({ dispatcherUrls: dispatcherUrl });
    const url = await main.server.listen();
    const psched = (...args: string[]) => procs.run([...args, '--url', url], { cwd: procs.tempDir(), env: { PSCHED_ACCESS_TOKEN: '' } });

    const preview = await psched('schedule', '--cron', '30 2 * * *', '--timezone', 'America/New_York', '--start', '2027-03-13 00:00', '--preview', '--count', '3');
    assert.equal(preview.code, 0, preview.stderr);
    assert.deepEqual(preview.stdout.trim().split('\n'), [
      '2027-03-13 02:30:00 -05:00 (America/New_York)',
      '2027-03-14 03:30:00 -04:00 (America/New_York)   [the wall-clock time does not exist that day (DST gap): moved forward by the gap]',
      '2027-03-15 02:30:00 -04:00 (America/New_York)',
    ]);

    const created = await psched('schedule', '--every', '1d', '--start', '2099-01-01 09:00', '--timezone', 'Europe/Berlin', '--user', 'Ann', 'Good morning');
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^scheduled \S+, every 1d in Europe\/Berlin; next 2099-01-01 09:00:00 \(Europe\/Berlin\)/);
    const id = /^scheduled (\S+),/.exec(created.stdout)![1]!;

    const list = await psched('schedules', '--timezone', 'UTC');
    assert.equal(list.code, 0, list.stderr);
    const lines = list.stdout.trim().split('\n');
    assert.match(lines[0]!, /^ID\s+RULE\s+ZONE\s+NEXT \(UTC\)\s+STATUS\s+USER\s+MESSAGE$/);
    assert.match(lines[1]!, new RegExp(`^${id}\\s+every 1d\\s+Europe/Berlin\\s+2099-01-01 08:00:00\\s+active\\s+Ann\\s+Good morning$`));

    const next = await psched('schedules', '--preview', id, '--count', '2', '--timezone', 'UTC');
    assert.deepEqual(next.stdout.trim().split('\n'), [
      '2099-01-01 09:00:00 +01:00 (Europe/Berlin)   = 2099-01-01 08:00:00 UTC',
      '2099-01-02 09:00:00 +01:00 (Europe/Berlin)   = 2099-01-02 08:00:00 UTC',
    ]);
    assert.equal((await psched('schedules', '--pause', id)).stdout.trim(), `paused ${id}`);
    assert.match((await psched('schedules')).stdout, /paused/);
    assert.equal((await psched('schedules', '--resume', id)).stdout.trim(), `resumed ${id}`);
    assert.equal((await psched('schedules', '--delete', id)).stdout.trim(), `deleted ${id}`);
    assert.equal((await psched('schedules')).stdout.trim(), 'no recurring messages');

    const bad = await psched('schedule', '--cron', '0 9 * *', 'x');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^psched: --cron must have five fields/);
    const badPolicy = await psched('schedule', '--every', '1h', '--dst-gap', 'later', 'x');
    assert.match(badPolicy.stderr, /^psched: --dst-gap must be one of shift, skip/);
    const both = await psched('schedule', '--every', '1h', '--at', '2099-01-01 00:00', 'x');
    assert.match(both.stderr, /--at and --in are for one message/);
  });
});
