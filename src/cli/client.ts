import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseDuration } from '../config.ts';

/**
 * `psched schedule | scheduled | cancel`: a small client of the main server's
 * JSON API (/v1/scheduled), for scripts and for trying psched from a terminal.
 */
const CLIENT_OPTIONS = {
  url: { type: 'string', default: process.env.PSCHED_MAIN_URL ?? 'http://127.0.0.1:8080' },
  token: { type: 'string' },
  at: { type: 'string' },
  in: { type: 'string' },
  user: { type: 'string', default: process.env.USER ?? 'psched' },
  timezone: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

const CLIENT_USAGE = `Usage:
  psched schedule --at "2026-12-24 09:00" --user Ann "Merry Christmas"
  psched schedule --in 10m --user Ann "See you in ten minutes"
  psched scheduled
  psched cancel ID

Options:
  --url URL        the main server (env PSCHED_MAIN_URL, default http://127.0.0.1:8080)
  --token TOKEN    bearer token, if the server wants one (env PSCHED_API_TOKEN)
  --at TIME        when: "YYYY-MM-DD HH:MM[:SS]" in your time zone, or RFC 3339 with an offset
  --in DURATION    or how long from now: 90s, 10m, 2h, 1d
  --user NAME      who posts it (default: $USER)
  --timezone ZONE  the zone --at is read in (default: this machine's, ${Intl.DateTimeFormat().resolvedOptions().timeZone})
  --json           print the server's JSON answer as is`;

interface ApiAnswer {
  status: number;
  body: unknown;
}

async function call(url: string, token: string | undefined, method: string, path: string, body?: unknown): Promise<ApiAnswer> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(new URL(path, url), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new Error(`cannot reach the main server at ${url}: ${(err as Error).cause ?? (err as Error).message}. Is it running (npm start)?`);
  }
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // keep the text
  }
  return { status: response.status, body: parsed };
}

function errorText(answer: ApiAnswer): string {
  const error = (answer.body as { error?: { message?: string } } | null)?.error;
  return `HTTP ${answer.status}: ${error?.message ?? JSON.stringify(answer.body)}`;
}

/** The dev mode's token, when the client runs next to `npm start`'s data folder. */
function devToken(): string | undefined {
  try {
    return (JSON.parse(readFileSync(join('data', 'dev-credentials.json'), 'utf8')) as { apiToken?: string }).apiToken;
  } catch {
    return undefined;
  }
}

interface ScheduledView {
  id: string;
  username: string;
  message: string;
  scheduledAt: string;
  status: string;
}

function describe(message: ScheduledView): string {
  const when = new Date(message.scheduledAt);
  return `${message.id}  ${when.toLocaleString()}  ${message.status.padEnd(10)} ${message.username}: ${message.message}`;
}

export async function runClientCommand(command: 'schedule' | 'scheduled' | 'cancel', args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: CLIENT_OPTIONS, allowPositionals: true, strict: true });
  if (values.help) {
    console.log(CLIENT_USAGE);
    return 0;
  }
  const token = values.token ?? process.env.PSCHED_API_TOKEN ?? devToken();
  const url = values.url;

  if (command === 'schedule') {
    const text = positionals.join(' ');
    if (!text) throw new Error('give the message text, e.g. psched schedule --in 10m "Hello"');
    if ((values.at === undefined) === (values.in === undefined)) throw new Error('give exactly one of --at TIME or --in DURATION');
    const body: Record<string, unknown> = { username: values.user, message: text };
    if (values.at !== undefined) {
      body.scheduledAt = values.at;
      body.timeZone = values.timezone ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
    } else {
      const ms = parseDuration(values.in!);
      if (ms === undefined) throw new Error(`--in must be a duration such as 90s, 10m, 2h or 1d (got ${JSON.stringify(values.in)})`);
      body.delaySeconds = ms / 1000;
    }
    const answer = await call(url, token, 'POST', '/v1/scheduled', body);
    if (answer.status >= 300) throw new Error(errorText(answer));
    console.log(values.json ? JSON.stringify(answer.body, null, 2) : `scheduled ${describe(answer.body as ScheduledView)}`);
    return 0;
  }

  if (command === 'scheduled') {
    const answer = await call(url, token, 'GET', '/v1/scheduled?status=scheduled');
    if (answer.status >= 300) throw new Error(errorText(answer));
    const items = (answer.body as { items: ScheduledView[] }).items;
    if (values.json) console.log(JSON.stringify(answer.body, null, 2));
    else console.log(items.length === 0 ? 'nothing scheduled' : items.map(describe).join('\n'));
    return 0;
  }

  const id = positionals[0];
  if (!id) throw new Error('give the id of the message to cancel: psched cancel ID');
  const answer = await call(url, token, 'DELETE', `/v1/scheduled/${encodeURIComponent(id)}`);
  if (answer.status >= 300) throw new Error(errorText(answer));
  console.log(`cancelled ${id}`);
  return 0;
}
