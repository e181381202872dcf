import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for the original PHP dispatcher (/work/shared/ORIGINAL-PROTOCOL.md),
 * as a real HTTP server on 127.0.0.1, for the main server's
 * `--dispatcher-protocol legacy` tests. It answers as the original does:
 *
 * - `POST /scheduleMessage.php`: the form parsed as PHP fills $_POST (`+` a
 *   space, `%XX` a byte), then each field `urldecode`d once more, as the
 *   original's code does; stores (username, message, time) when all three are
 *   non-empty and answers `{"received":{…},"result":"Success"}`, else its
 *   "Failure", both with HTTP 200 and `Content-type: text/html`, written as
 *   PHP's json_encode writes (`\/`, `\uXXXX`).
 * - `GET /`: its "Scheduled Messages" page; any other path: an HTML 404 page,
 *   as Apache answers.
 *
 * `mode` makes scheduleMessage.php misbehave: `html` answers a 200 HTML page
 * (what a PHP warning or a web server's default page looks like), `empty` a
 * 200 with no body, `failure` its Failure JSON, `hang` never answers (the
 * request was read), `drop` closes the connection once the request is read.
 * Nothing is stored in any of them.
 */
export type OriginalMode = 'normal' | 'html' | 'empty' | 'failure' | 'hang' | 'drop';

export interface OriginalRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  /** The exact body bytes, as latin1 text (the form is ASCII). */
  body: string;
  /** The client's port: requests on one keep-alive connection share it. */
  remotePort: number;
}

export interface StoredOriginal {
  username: string;
  message: string;
  time: string;
}

export interface OriginalDispatcher extends AsyncDisposable {
  readonly url: string;
  /** Every request, in arrival order. */
  readonly requests: OriginalRequest[];
  /** What it stored, as its database would hold it. */
  readonly stored: StoredOriginal[];
  mode: OriginalMode;
  /** The original refused values of one character (`strlen > 1`); off unless asked for. */
  refuseOneCharacter: boolean;
  close(): Promise<void>;
}

const FAILURE = 'Invalid Post. Expected three non-zero strings (username, message, time).';

/** PHP's urldecode (and its $_POST parsing): `+` a space, `%XX` a byte, anything else as it is; the bytes read as UTF-8. */
export function phpUrldecode(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '+') bytes.push(0x20);
    else if (c === '%' && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(...Buffer.from(c, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** PHP's json_encode without flags: `/` as `\/`, every non-ASCII character as `\uXXXX`. */
export function phpJsonEncode(value: unknown): string {
  return JSON.stringify(value)
    .replaceAll('/', '\\/')
    .replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** $_POST as PHP fills it from a form body (the last of repeated names wins). */
function phpPost(body: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const pair of body.split('&')) {
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    const name = phpUrldecode(equals < 0 ? pair : pair.slice(0, equals));
    fields[name] = phpUrldecode(equals < 0 ? '' : pair.slice(equals + 1));
  }
  return fields;
}

const HTML_404 = '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>404 Not Found</title>\n</head><body>\n<h1>Not Found</h1>\n<p>The requested URL was not found on this server.</p>\n</body></html>\n';

export async function startOriginalDispatcher(): Promise<OriginalDispatcher> {
  const requests: OriginalRequest[] = [];
  const stored: StoredOriginal[] = [];
  const held = new Set<ServerResponse>();

  const html = (res: ServerResponse, status: number, text: string) => res.writeHead(status, { 'content-type': 'text/html; charset=UTF-8' }).end(text);

  const schedule = (body: string, res: ServerResponse) => {
    const post = phpPost(body);
    const received: Record<string, string | null> = {};
    let complete = true;
    for (const field of ['username', 'message', 'time']) {
      const value = post[field] === undefined ? null : phpUrldecode(post[field]);
      received[field] = value;
      if (value === null || Buffer.byteLength(value) <= (standIn.refuseOneCharacter ? 1 : 0)) complete = false;
    }
    const answer = (value: unknown) => res.writeHead(200, { 'content-type': 'text/html' }).end(phpJsonEncode(value));
    if (!complete || standIn.mode === 'failure') return answer({ received, result: 'Failure', failure: FAILURE });
    stored.push({ username: received.username!, message: received.message!, time: received.time! });
    answer({ received, result: 'Success' });
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('latin1');
      const path = req.url ?? '/';
      requests.push({ method: req.method ?? 'GET', path, headers: req.headers, body, remotePort: req.socket.remotePort ?? 0 });
      if (req.method === 'POST' && path === '/scheduleMessage.php') {
        switch (standIn.mode) {
          case 'html': return html(res, 200, '<html><body><h1>It works!</h1></body></html>');
          case 'empty': return res.writeHead(200, { 'content-type': 'text/html' }).end();
          case 'hang': held.add(res); return;
          case 'drop': req.socket.destroy(); return;
          default: return schedule(body, res);
        }
      }
      if (req.method === 'GET' && path === '/') {
        const items = stored.map((m) => `<li>${m.username} at ${m.time}: ${m.message}</li>`).join('');
        return html(res, 200, `<html><head><title>Scheduled Messages</title></head><body><h1>Scheduled Messages</h1><ul>${items}</ul></body></html>`);
      }
      html(res, 404, HTML_404);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  const close = async () => {
    if (!server.listening) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const res of held) res.destroy();
    server.closeAllConnections();
    await closed;
  };
  const standIn: OriginalDispatcher = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    stored,
    mode: 'normal',
    refuseOneCharacter: false,
    close,
    [Symbol.asyncDispose]: close,
  };
  return standIn;
}
