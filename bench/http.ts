import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { cpuSeconds, freePort } from './support.ts';

/**
 * `npm run bench:http`: single-message scheduling (POST /v1/messages, one
 * message per request, each durable before its 201) measured with wrk, a
 * client in C that takes a small share of the 2 cores a Node load generator
 * would take, against the ceiling on this machine: a null server (node:http
 * that reads the body, parses the JSON and answers 201 with an id, nothing
 * stored) under the same wrk.
 *
 *   npm run bench:http                       # 10 s each, 16 connections
 *   npm run bench:http -- --seconds 5 --connections 32
 *
 * Needs wrk (apt-get install -y wrk).
 */
const { values: opts } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '16' },
    'node-args': { type: 'string', default: process.env.PSCHED_BENCH_NODE_ARGS ?? '' },
  },
});
const root = join(import.meta.dirname, '..');
const TOKEN = randomBytes(16).toString('hex');
const children: ChildProcess[] = [];

/** The ceiling: what node:http does for such a request with no work behind it. */
const NULL_SERVER = `
const { createServer } = require('node:http');
const { randomUUID } = require('node:crypto');
createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.method !== 'POST') return res.writeHead(200).end();
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    const answer = JSON.stringify({ id: randomUUID(), username: body.username, message: body.message, scheduledAt: body.scheduledAt, status: 'scheduled' });
    res.writeHead(201, { 'content-type': 'application/json' }).end(answer);
  });
}).listen(Number(process.argv[1]), '127.0.0.1');
`;

/** One message per request, each text different (the same text twice is still two messages without a key). */
const WRK_SCRIPT = `
counter = 0
request = function()
  counter = counter + 1
  local body = '{"username":"wrk","message":"scheduled by wrk ' .. counter .. '","scheduledAt":"2099-01-01T00:00:00.000Z"}'
  return wrk.format("POST", "/v1/messages", { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer ${TOKEN}" }, body)
end
response = function(status, headers, body)
  if status ~= 201 then wrk.thread:stop() end
end
`;

async function waitForHealth(port: number, child: ChildProcess, path: string): Promise<void> {
  const client = new Pool(`http://127.0.0.1:${port}`);
  try {
    for (let i = 0; i < 300; i++) {
      if (child.exitCode !== null) throw new Error(`process exited with code ${child.exitCode}`);
      try {
        const res = await client.request({ path, method: 'GET' });
        await res.body.dump();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    throw new Error(`nothing answered on port ${port}`);
  } finally {
    await client.close();
  }
}

interface WrkResult {
  requestsPerSecond: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  errors: string;
}

function parseLatency(text: string, label: string): number {
  const match = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(text);
  if (!match) return Number.NaN;
  const value = Number(match[1]);
  return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
}

function runWrk(port: number, scriptPath: string): WrkResult {
  const out = execFileSync('wrk', ['-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency', '-s', scriptPath, `http://127.0.0.1:${port}`], { encoding: 'utf8' });
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN);
  return {
    requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN),
    requests,
    p50Ms: parseLatency(out, '50%'),
    p99Ms: parseLatency(out, '99%'),
    errors: [/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[0], /Socket errors: .*/.exec(out)?.[0]].filter(Boolean).join('; '),
  };
}

async function measure(label: string, port: number, child: ChildProcess, scriptPath: string): Promise<WrkResult> {
  const cpuBefore = cpuSeconds(child.pid!);
  const result = runWrk(port, scriptPath);
  const cpu = cpuSeconds(child.pid!) - cpuBefore;
  console.log(`${label.padEnd(34)} ${Math.round(result.requestsPerSecond).toLocaleString('en-US').padStart(7)} requests/s  `
    + `p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms  server CPU ${Math.round((cpu / result.requests) * 1e6)} µs/request`
    + (result.errors ? `  (${result.errors})` : ''));
  return result;
}

const dir = mkdtempSync(join(tmpdir(), 'psched-bench-http-'));
try {
  execFileSync('wrk', ['--version'], { stdio: 'ignore' });
} catch (err) {
  // wrk --version exits 1 after printing; only a missing binary is a problem
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('wrk is not installed: apt-get install -y wrk');
}
try {
  const scriptPath = join(dir, 'schedule.lua');
  writeFileSync(scriptPath, WRK_SCRIPT);
  console.log(`single-message scheduling, wrk -t1 -c${opts.connections} -d${opts.seconds}s, one message per POST /v1/messages`);

  const nullPort = await freePort();
  const nullServer = spawn(process.execPath, ['-e', NULL_SERVER, String(nullPort)], { stdio: ['ignore', 'inherit', 'inherit'] });
  children.push(nullServer);
  await waitForHealth(nullPort, nullServer, '/');
  const ceiling = await measure('null server (parse JSON, answer)', nullPort, nullServer, scriptPath);
  nullServer.kill('SIGTERM');

  const port = await freePort();
  const nodeArgs = opts['node-args']!.split(' ').filter(Boolean);
  const dispatcher = spawn(process.execPath, [...nodeArgs, join(root, 'bin/psched.js'), 'dispatcher',
    '--port', String(port), '--db', join(dir, 'dispatcher.db'), '--api-token', TOKEN, '--log-level', 'warn',
    '--main-url', 'http://127.0.0.1:9'], { stdio: ['ignore', 'inherit', 'inherit'] });
  children.push(dispatcher);
  await waitForHealth(port, dispatcher, '/healthz');
  const psched = await measure('psched dispatcher (SQLite, fsync)', port, dispatcher, scriptPath);
  console.log(`the dispatcher takes ${Math.round((psched.requestsPerSecond / ceiling.requestsPerSecond) * 100)}% of the null server's rate (target ≥ 60%)`);
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
