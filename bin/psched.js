#!/usr/bin/env node
// The CLI lives in TypeScript; Node 24 runs it directly through type stripping.
import process from 'node:process';

// Checked before any TypeScript is loaded: on an older Node the first .ts import
// fails with a raw ERR_UNKNOWN_FILE_EXTENSION stack that says nothing useful.
const NEEDED_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);
if (!(major >= NEEDED_MAJOR)) {
  console.error(`psched needs Node.js ${NEEDED_MAJOR} or newer (it runs its TypeScript directly); this is Node.js ${process.versions.node}.
Install Node.js ${NEEDED_MAJOR} LTS (https://nodejs.org, your package manager, or: npm install --prefix ~/.node24 node@${NEEDED_MAJOR}
and put ~/.node24/node_modules/.bin first on PATH), then run psched again.`);
  process.exit(1);
}

const { missingV8Settings } = await import('../src/cli/v8-settings.ts');

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
