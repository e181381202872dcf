import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Processes } from './support/processes.ts';

/**
 * bin/psched.js starts the services with V8's young generation capped (the
 * dispatcher's memory target), by replacing the process once with the flag
 * added, unless the user chose a cap of their own. Seen from outside: the
 * running process's command line (same pid).
 */

const procs = new Processes();
after(() => procs.cleanup());

function commandLine(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
}

describe('psched services and V8 memory', { skip: !existsSync('/proc/self/cmdline') && 'needs /proc (Linux)' }, () => {
  it('runs a dispatcher with the young generation capped at 16 MiB per semi-space', async () => {
    const dir = procs.tempDir();
    const dispatcher = await procs.startService('dispatcher', { db: join(dir, 'd.db') });
    const args = commandLine(dispatcher.pid!);
    assert.ok(args.includes('--max-semi-space-size=16'), `command line: ${args.join(' ')}`);
    assert.ok(args.includes('dispatcher'), `still the dispatcher: ${args.join(' ')}`);
  });

  it('keeps a cap given in NODE_OPTIONS', async () => {
    const dir = procs.tempDir();
    const dispatcher = await procs.startService('dispatcher', { db: join(dir, 'd.db') }, undefined, { NODE_OPTIONS: '--max-semi-space-size=8' });
    const args = commandLine(dispatcher.pid!);
    assert.ok(!args.some((arg) => arg.startsWith('--max-semi-space-size')), `command line: ${args.join(' ')}`);
  });
});
