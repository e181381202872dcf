import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SERVICE_V8_SETTINGS } from '../src/cli/v8-settings.ts';
import { Processes } from './support/processes.ts';

/**
 * bin/psched.js starts the services with V8's young generation capped (the
 * dispatcher's memory target) and V8's background threads leaving a core to
 * the event loop (its lateness target), by replacing the process once with
 * the flags added, unless the user chose a setting of their own. Seen from outside: the
 * running process's command line (same pid).
 */

const procs = new Processes();
after(() => procs.cleanup());

function commandLine(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
}

describe('psched services and V8 memory', { skip: !existsSync('/proc/self/cmdline') && 'needs /proc (Linux)' }, () => {
  it('runs a dispatcher with the young generation capped at 32 MiB per semi-space and one core left to the event loop', async () => {
    const dir = procs.tempDir();
    const dispatcher = await procs.startService('dispatcher', { db: join(dir, 'd.db') });
    const args = commandLine(dispatcher.pid!);
    assert.ok(args.includes('--max-semi-space-size=32'), `command line: ${args.join(' ')}`);
    const poolSize = Math.max(1, Math.min(4, availableParallelism() - 1));
    assert.ok(args.includes(`--v8-pool-size=${poolSize}`), `command line: ${args.join(' ')}`);
    for (const setting of SERVICE_V8_SETTINGS) assert.ok(args.includes(setting), `${setting} missing: ${args.join(' ')}`);
    assert.ok(args.includes('dispatcher'), `still the dispatcher: ${args.join(' ')}`);
  });

  it('keeps a setting given in NODE_OPTIONS and adds only the other', async () => {
    const dir = procs.tempDir();
    const dispatcher = await procs.startService('dispatcher', { db: join(dir, 'd.db') }, undefined, { NODE_OPTIONS: '--max-semi-space-size=8' });
    const args = commandLine(dispatcher.pid!);
    assert.ok(!args.some((arg) => arg.startsWith('--max-semi-space-size')), `command line: ${args.join(' ')}`);
    assert.ok(args.some((arg) => arg.startsWith('--v8-pool-size=')), `command line: ${args.join(' ')}`);
  });
});
