import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDuration } from '../config.ts';
import { readError } from '../protocol/wire.ts';
import { parseFlags, UsageError } from './args.ts';

/**
 * `psched schedule | scheduled | cancel`: a small client of the main server's
 * JSON API (/v1/scheduled), for scripts and for trying psched from a terminal.
 */
const COMMON_OPTIONS = {
  url: { type: 'string', default: process.env.PSCHED_MAIN_URL ?? 'http://127.0.0.1:8080' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

const CLIENT_OPTIONS = {
  schedule: {
    ...COMMON_OPTIONS,
    at: { type: 'string' },
    in: { type: 'string' },
    user: { type: 'string', default: process.env.USER ?? 'psched' },
    timezone: { type: 'string' },
  },
  scheduled: {
    ...COMMON_OPTIONS,
    status: { type: 'string', default: 'scheduled' },
    timezone: { type: 'string' },
  },
  cancel: COMMON_OPTIONS,
} as const;

/** Rows `psched scheduled` prints: a screenful or a few. */
const LIST_LIMIT = 200;

const LOCAL_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;

const COMMON_HELP = `  --url URL        the main server (env PSCHED_MAIN_URL, default http://127.0.0.1:8080)
  --token TOKEN    the main server's --access-token, if it has one (env PSCHED_ACCESS_TOKEN; next to
                   npm start's ./data folder, the dev token is found by itself)
  --json           print the server's JSON answer as is`;

const CLIENT_USAGE: Record<ClientCommand, string> = {
  schedule: `Usage: psched schedule (--at TIME | --in DURATION) [--user NAME] TEXT

  psched schedule --at "2026-12-24 09:00" --user Ann "Merry Christmas"
  psched schedule --in 10m --user Ann "See you in ten minutes"

Options:
  --at TIME        when: "YYYY-MM-DD HH:MM[:SS]" in --timezone, or RFC 3339 with an offset
  --in DURATION    or how long from now, with a unit: 90s, 10m, 2h, 1d
  --user NAME      who posts it (default: $USER)
  --timezone ZONE  the zone --at is read in (default: this machine's, ${LOCAL_ZONE})
${COMMON_HELP}`,
  scheduled: `Usage: psched scheduled [--status STATUS] [--timezone ZONE]

Lists messages in due-time order, times in --timezone.

Options:
  --status STATUS  scheduled (default), delivering, delivered or dead
  --timezone ZONE  the zone times are shown in (default: this machine's, ${LOCAL_ZONE})
${COMMON_HELP}`,
  cancel: `Usage: psched cancel ID

Cancels a scheduled message (its id is in psched scheduled's first column).

Options:
${COMMON_HELP}`,
};

type ClientCommand = keyof typeof CLIENT_OPTIONS;

/** API fields as the flags that set them, so an error speaks the user's language. */
const FIELD_FLAGS: Record<string, string> = {
  scheduledAt: '--at', delaySeconds: '--in', username: '--user', message: 'the message text', timeZone: '--timezone', status: '--status',
};

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
    throw new UsageError(`cannot reach the main server at ${url}: ${(err as Error).cause ?? (err as Error).message}. Is it running (npm start)?`);
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
  const error = readError(answer.body);
  if (!error.message) return `the main server answered HTTP ${answer.status}: ${JSON.stringify(answer.body)}`;
  const flag = error.field ? FIELD_FLAGS[error.field] : undefined;
  // "scheduledAt must be in the future" -> "--at must be in the future"
  const message = flag && error.field ? error.message.replace(new RegExp(`\\b${error.field}\\b`, 'g'), flag) : error.message;
  return `${message} (HTTP ${answer.status})`;
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

/** "2026-12-24 09:00:00" in `timeZone`. */
function localTime(iso: string, timeZone: string): string {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-CA', {
    timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  }).formatToParts(new Date(iso)).map((part) => [part.type, part.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

/** One line per message under a header, columns padded; the text last, on one line. */
export function scheduledTable(items: ScheduledView[], timeZone: string): string {
  const rows = items.map((m) => [m.id, localTime(m.scheduledAt, timeZone), m.status, m.username, m.message.replace(/\s+/g, ' ')]);
  const header = ['ID', `DUE (${timeZone})`, 'STATUS', 'USER', 'MESSAGE'];
  const widths = header.slice(0, 4).map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i < 4 ? cell.padEnd(widths[i]!) : cell)).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

function checkTimeZone(zone: string): string {
  try {
    return new Intl.DateTimeFormat('en', { timeZone: zone }).resolvedOptions().timeZone;
  } catch {
    throw new UsageError(`--timezone must be an IANA zone such as Europe/Paris or UTC (got ${JSON.stringify(zone)})`);
  }
}

export async function runClientCommand(command: ClientCommand, args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(command, CLIENT_OPTIONS[command], args, true) as {
    values: Record<string, string | boolean | undefined>; positionals: string[];
  };
  if (values.help) {
    console.log(CLIENT_USAGE[command]);
    return 0;
  }
  // PSCHED_ACCESS_TOKEN: the variable the main server reads its --access-token from (PSCHED_API_TOKEN is the dispatchers' token)
  const token = (values.token as string | undefined) ?? process.env.PSCHED_ACCESS_TOKEN ?? devToken();
  const url = values.url as string;
  const timeZone = checkTimeZone((values.timezone as string | undefined) ?? LOCAL_ZONE);

  if (command === 'schedule') {
    const text = positionals.join(' ');
    if (!text) throw new UsageError('give the message text, e.g. psched schedule --in 10m "Hello"');
    if ((values.at === undefined) === (values.in === undefined)) throw new UsageError('give exactly one of --at TIME or --in DURATION');
    const body: Record<string, unknown> = { username: values.user, message: text };
    if (values.at !== undefined) {
      body.scheduledAt = values.at;
      body.timeZone = timeZone;
    } else {
      const given = values.in as string;
      const ms = parseDuration(given);
      if (ms === undefined) {
        throw new UsageError(/^\d+(\.\d+)?$/.test(given.trim())
          ? `--in needs a unit: ${given}s, ${given}m, ${given}h or ${given}d (a bare number is not a duration)`
          : `--in must be a duration such as 90s, 10m, 2h or 1d (got ${JSON.stringify(given)})`);
      }
      body.delaySeconds = ms / 1000;
    }
    const answer = await call(url, token, 'POST', '/v1/scheduled', body);
    if (answer.status >= 300) throw new UsageError(errorText(answer));
    const message = answer.body as Omit<ScheduledView, 'id'> & { id: string | null };
    // an original PHP dispatcher behind the main server (--dispatcher-protocol legacy) gives messages no id
    const what = message.id === null ? 'on an original dispatcher (it gives no id)' : message.id;
    console.log(values.json ? JSON.stringify(answer.body, null, 2) : `scheduled ${what} for ${localTime(message.scheduledAt, timeZone)} (${timeZone})`);
    return 0;
  }

  if (command === 'scheduled') {
    const answer = await call(url, token, 'GET', `/v1/scheduled?${new URLSearchParams({ status: values.status as string, limit: String(LIST_LIMIT) })}`);
    if (answer.status >= 300) throw new UsageError(errorText(answer));
    const page = answer.body as { items: ScheduledView[]; nextCursor: string | null };
    if (values.json) console.log(JSON.stringify(answer.body, null, 2));
    else if (page.items.length === 0) console.log(`no ${values.status} messages`);
    else console.log(scheduledTable(page.items, timeZone) + (page.nextCursor ? `\n(the first ${LIST_LIMIT}; more are ${values.status})` : ''));
    return 0;
  }

  if (positionals.length !== 1) throw new UsageError('give the id of one message to cancel: psched cancel ID');
  const id = positionals[0]!;
  const answer = await call(url, token, 'DELETE', `/v1/scheduled/${encodeURIComponent(id)}`);
  if (answer.status >= 300) throw new UsageError(errorText(answer));
  console.log(`cancelled ${id}`);
  return 0;
}
