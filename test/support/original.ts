import { startReceiver, type Receiver, type RecordedRequest } from './receiver.ts';

/**
 * Fakes of the PHP original, built from its documented rules
 * (/work/shared/ORIGINAL-PROTOCOL.md, "How values are encoded") and checked
 * against its captured requests in test/legacy-interop.test.ts. Written
 * byte by byte, apart from src/protocol/legacy.ts, so a test of psched's
 * encoding does not check that code against itself.
 */

/** The bodies the original put on the wire, as captured. */
export const CAPTURED = {
  /** The original main server forwarding message "C2 future: see you in 30 s", name "Ann", time "2026-12-02T16:30:00". */
  mainForward: {
    body: 'username=Ann&message=C2%2Bfuture%253A%2Bsee%2Byou%2Bin%2B30%2Bs&time=2026-12-02%2B16%253A30%253A00',
    fields: { username: 'Ann', message: 'C2 future: see you in 30 s', time: '2026-12-02T16:30:00' },
  },
  /** The original dispatcher's cron delivering "I'm scheduling a message!" from "Curl". */
  cronDelivery: {
    body: 'username=Curl&message=I%2527m%2Bscheduling%2Ba%2Bmessage%2521',
    fields: { username: 'Curl', message: "I'm scheduling a message!" },
  },
} as const;

/** Texts that break one encoding layer or another: `+`, `%`, `%41`, `&`, `=`, quotes, markup, emoji, accents, one character. */
export const HARD_TEXTS = [
  '1+1=2 & 100% sure, %41',
  `She said "it's fine"`,
  '<b>markup</b> & <script>alert(1)</script>',
  'emoji 😀👍🏽 and 🇩🇪',
  'accents: déjà vu, Ærøskøbing, Łódź, 日本語',
  'x',
  '%',
  '+',
  '100%25 %zz %4 a+b',
  'line one\nline two\ttab',
] as const;

/** PHP's urlencode: each UTF-8 byte except A-Z a-z 0-9 - _ . as %XX (upper case), a space as +. */
export function urlencode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const char = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.]/.test(char)) out += char;
    else if (byte === 0x20) out += '+';
    else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** PHP's urldecode: + is a space, %XX (two hex digits) a byte, anything else stays; the bytes read as UTF-8. */
export function urldecode(text: string): string {
  const bytes: number[] = [];
  const source = Buffer.from(text, 'utf8');
  for (let i = 0; i < source.length; i++) {
    const byte = source[i]!;
    const hex = source.subarray(i + 1, i + 3).toString('latin1');
    if (byte === 0x2b) bytes.push(0x20);
    else if (byte === 0x25 && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(byte);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** `http_build_query(["a" => urlencode(v), …])`: what every PHP sender of the original posted. */
export function phpSenderBody(fields: Record<string, string>): string {
  return Object.entries(fields).map(([key, value]) => `${key}=${urlencode(urlencode(value))}`).join('&');
}

/** The body the original main server's scheduleMessage.php forwards to a dispatcher: the datetime-local T replaced by a space. */
export function originalMainForward(fields: { username: string; message: string; time: string }): string {
  return phpSenderBody({ username: fields.username, message: fields.message, time: fields.time.replace('T', ' ') });
}

/** The body the original dispatcher's cron posts to a main server's postMessage.php. */
export function originalCronDelivery(fields: { username: string; message: string }): string {
  return phpSenderBody({ username: fields.username, message: fields.message });
}

/** How PHP fills $_POST from a form body, then what the original's endpoints did: `urldecode($_POST[field])`. */
export function originalEndpointReads(body: string, field: string): string | null {
  const value = new URLSearchParams(body).get(field);
  return value === null ? null : urldecode(value);
}

/** PHP's json_encode: `/` written as `\/`, anything past ASCII as \uXXXX. */
export function phpJsonEncode(value: unknown): string {
  return JSON.stringify(value)
    .replace(/\//g, '\\/')
    .replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export interface OriginalMain extends AsyncDisposable {
  readonly url: string;
  readonly receiver: Receiver;
  /** The feed: what its postMessage.php stored, in arrival order. */
  readonly posts: { username: string; message: string }[];
  /** Resolves with the next post stored. */
  nextPost(): Promise<{ username: string; message: string; request: RecordedRequest }>;
}

/**
 * A stand-in for the original main server's postMessage.php: reads each
 * field as `urldecode($_POST[field])` (one decoding more than the form's),
 * stores the post, and answers as it did: HTTP 200, Content-type text/html,
 * `{"received":{…},"result":"Success"}` from json_encode.
 */
export async function startOriginalMain(): Promise<OriginalMain> {
  const receiver = await startReceiver();
  const posts: { username: string; message: string }[] = [];
  receiver.fallback = (request) => {
    const username = originalEndpointReads(request.body, 'username');
    const message = originalEndpointReads(request.body, 'message');
    const received = { username, message };
    if (request.url !== '/postMessage.php') return { status: 404, body: 'Not Found', headers: { 'content-type': 'text/html' } };
    // the original's check, strlen (bytes) > 1: it refuses a one-byte name or message
    if (!username || !message || Buffer.byteLength(username) <= 1 || Buffer.byteLength(message) <= 1) {
      return { status: 200, headers: { 'content-type': 'text/html' }, body: phpJsonEncode({ received, result: 'Failure', failure: 'Invalid Post. Expected two non-zero strings (username, message)' }) };
    }
    posts.push({ username, message });
    return { status: 200, headers: { 'content-type': 'text/html' }, body: phpJsonEncode({ received, result: 'Success' }) };
  };
  return {
    url: receiver.url,
    receiver,
    posts,
    async nextPost() {
      const request = await receiver.nextRequest();
      return { username: originalEndpointReads(request.body, 'username') ?? '', message: originalEndpointReads(request.body, 'message') ?? '', request };
    },
    [Symbol.asyncDispose]: () => receiver.close(),
  };
}
