import { createServer } from 'node:http';
import { verifySignature } from '../src/protocol/signing.ts';

/**
 * The benchmark's stand-in for a main server, in its own process so it does not
 * share an event loop with the load generator: answers every delivery 200,
 * checks its signature, and records when each message arrived against when it
 * was due. The parent asks for the figures over IPC.
 */
const secret = process.env.BENCH_SIGNING_SECRET;
let lateness: number[] = [];
let arrivals: number[] = [];
/** Per delivery, the target its path names (`/t/<name>/v1/posts`; '' for the default target's `/v1/posts`). */
let targets: string[] = [];
let deliveries = 0;
let badSignatures = 0;
const seen = new Set<string>();
let duplicates = 0;

const server = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const now = Date.now();
    const raw = Buffer.concat(chunks).toString('utf8');
    if (secret && !verifySignature(secret, request.headers['psched-signature'] as string | undefined, raw, now).ok) {
      badSignatures++;
      response.writeHead(401).end();
      return;
    }
    const payload = JSON.parse(raw) as { id: string; scheduledAt: string };
    if (seen.has(payload.id)) duplicates++;
    else seen.add(payload.id);
    deliveries++;
    lateness.push(now - Date.parse(payload.scheduledAt));
    arrivals.push(now);
    targets.push(/^\/t\/([^/]+)\//.exec(request.url ?? '')?.[1] ?? '');
    response.writeHead(201, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
});

server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send!({ type: 'listening', port: typeof address === 'object' && address ? address.port : 0 });
});

process.on('message', (message: { type: string }) => {
  if (message.type === 'count') {
    // polled while waiting: cheap, unlike the full report with every lateness
    process.send!({ type: 'count', deliveries });
  } else if (message.type === 'report') {
    process.send!({ type: 'report', deliveries, duplicates, badSignatures, lateness, arrivals, targets });
  } else if (message.type === 'reset') {
    lateness = [];
    arrivals = [];
    targets = [];
    deliveries = 0;
    duplicates = 0;
    badSignatures = 0;
    seen.clear();
    process.send!({ type: 'reset' });
  } else if (message.type === 'stop') {
    server.close();
    process.exit(0);
  }
});
