#!/usr/bin/env node
// The CLI lives in TypeScript; Node 24 runs it directly through type stripping.
import process from 'node:process';
import { missingV8Settings } from '../src/cli/v8-settings.ts';

/**
 * The services run with V8 settings (src/cli/v8-settings.ts) that V8 reads
 * only at start, so the process replaces itself once with them added (same
 * pid, nothing forked). One the user gave (in the node options or
 * NODE_OPTIONS) is left as it is.
 */
const SERVICES = new Set(['dispatcher', 'main', 'dev']);

const missing = missingV8Settings([...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]);
if (SERVICES.has(process.argv[2] ?? '') && missing.length > 0 && typeof process.execve === 'function') {
  process.execve(process.execPath, [process.execPath, ...missing, ...process.execArgv, ...process.argv.slice(1)], process.env);
}

await import('../src/cli.ts');
