import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A real local HTTP receiver for delivery tests: a node:http server on
 * 127.0.0.1 (a free port) that records every request and answers from a
 * script. Tests await `nextRequest()` instead of sleeping.
 *
 *   await using receiver = await startReceiver();
 *   receiver.script({ status: 503 }, { status: 200 });
 *   ... deliver to receiver.url ...
 *   const request = await receiver.nextRequest();
 */

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** The raw body, exactly as received. */
  body: string;
  /** Date.now() when the body was complete. */
  receivedAt: number;
  /** The client's port: requests on one keep-alive connection share it. */
  remotePort: number | undefined;
}

export interface ScriptedAnswer {
  status: number;
  headers?: Record<string, string>;
  /** A string is sent as is; anything else as JSON. Default: {"ok":true}. */
  body?: unknown;
  /** Never answer (the request hangs until the client gives up or the receiver closes). */
  hang?: boolean;
}

export interface Receiver {
  /** Base URL, e.g. http://127.0.0.1:54321 */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Queues answers for the next requests, in order; after them `fallback` answers. */
  script(...answers: ScriptedAnswer[]): void;
  /** The answer once the script is used up (default 200 {"ok":true}). */
  fallback: ScriptedAnswer | ((request: RecordedRequest) => ScriptedAnswer);
  /** Resolves with the next request not yet taken by an earlier call (the first one recorded, then the second…). */
  nextRequest(): Promise<RecordedRequest>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** The next `count` requests the receiver records, in order (awaiting each, no sleeping). */
export async function takeRequests(receiver: Pick<Receiver, 'nextRequest'>, count: number): Promise<RecordedRequest[]> {
  const requests: RecordedRequest[] = [];
  for (let i = 0; i < count; i++) requests.push(await receiver.nextRequest());
  return requests;
}

export async function startReceiver(): Promise<Receiver> {
  const requests: RecordedRequest[] = [];
  const scripted: ScriptedAnswer[] = [];
  const waiters: ((request: RecordedRequest) => void)[] = [];
  let taken = 0;

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        receivedAt: Date.now(),
        remotePort: req.socket.remotePort,
      };
      requests.push(recorded);
      const fallback = receiver.fallback;
      const answer = scripted.shift() ?? (typeof fallback === 'function' ? fallback(recorded) : fallback);
      const waiter = waiters.shift();
      if (waiter) {
        taken++;
        waiter(recorded);
      }
      if (answer.hang) return;
      const body = answer.body === undefined ? '{"ok":true}' : typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
      const contentType = typeof answer.body === 'string' ? 'text/plain; charset=utf-8' : 'application/json';
      res.writeHead(answer.status, { 'content-type': contentType, ...answer.headers });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const close = async (): Promise<void> => {
    if (!server.listening) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  };

  const receiver: Receiver = {
    url: `http://127.0.0.1:${port}`,
    requests,
    fallback: { status: 200 },
    script(...answers) {
      scripted.push(...answers);
    },
    nextRequest() {
      if (taken < requests.length) return Promise.resolve(requests[taken++]!);
      return new Promise((resolve) => waiters.push(resolve));
    },
    close,
    [Symbol.asyncDispose]: close,
  };
  return receiver;
}
