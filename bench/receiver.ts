import { createServer } from 'node:http';
import { verifySignature } from '../src/protocol/signing.ts';

/**
 * The benchmark's stand-in for a main server, in its own process so it does not
 * share an event loop with the load generator: answers every delivery 200,
 * checks its signature, and records when each message arrived against when it
 * was due. The parent asks for the figures over IPC.
 */
const secret = process.env.BENCH_SIGNING_SECRET;

/**
 * Numbers kept in a typed array that doubles when full: the figures of
 * 20,000 deliveries in a few objects instead of 60,000 heap numbers and
 * strings, so this stand-in's own garbage collections (6-11 ms pauses seen
 * with plain arrays) stay out of the lateness it measures.
 */
class Column {
  #values = new Float64Array(1 << 14);
  length = 0;

  push(value: number): void {
    if (this.length === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.length++] = value;
  }

  toArray(): number[] {
    return Array.from(this.#values.subarray(0, this.length));
  }
}

let lateness = new Column();
let arrivals = new Column();
/** Per delivery, its Psched-Sent-At (when the dispatcher sent it) minus its due time. */
let sentLateness = new Column();
/** Per delivery, the index in targetNames of the target its path names (`/t/<name>/v1/posts`; '' for the default target's `/v1/posts`). */
let targetIndexes = new Column();
const targetNames: string[] = [];
const targetIndex = new Map<string, number>();
let deliveries = 0;
let badSignatures = 0;
const seen = new Set<string>();
let duplicates = 0;

function indexOfTarget(url: string): number {
  const end = url.indexOf('/', 3);
  const name = url.startsWith('/t/') && end > 3 ? url.slice(3, end) : '';
  let index = targetIndex.get(name);
  if (index === undefined) {
    index = targetNames.push(name) - 1;
    targetIndex.set(name, index);
  }
  return index;
}

const server = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const now = Date.now();
    const raw = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8');
    if (secret && !verifySignature(secret, request.headers['psched-signature'] as string | undefined, raw, now).ok) {
      badSignatures++;
      response.writeHead(401).end();
      return;
    }
    const payload = JSON.parse(raw) as { id: string; scheduledAt: string };
    if (seen.has(payload.id)) duplicates++;
    else seen.add(payload.id);
    deliveries++;
    const dueAt = Date.parse(payload.scheduledAt);
    lateness.push(now - dueAt);
    arrivals.push(now);
    sentLateness.push(Date.parse(request.headers['psched-sent-at'] as string) - dueAt);
    targetIndexes.push(indexOfTarget(request.url ?? ''));
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
    const targets = targetIndexes.toArray().map((index) => targetNames[index]!);
    process.send!({ type: 'report', deliveries, duplicates, badSignatures, lateness: lateness.toArray(), arrivals: arrivals.toArray(), sent: sentLateness.toArray(), targets });
  } else if (message.type === 'reset') {
    lateness = new Column();
    arrivals = new Column();
    sentLateness = new Column();
    targetIndexes = new Column();
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
