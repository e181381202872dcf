import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDuration } from '../config.ts';
import { readError, type ScheduleJson } from '../protocol/wire.ts';
import { parseFlags, UsageError } from './args.ts';

/**
 * `psched schedule | scheduled | cancel | schedules`: a small client of the
 * main server's JSON API (/v1/scheduled, /v1/schedules), for scripts and for
 * trying psched from a terminal.
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
    every: { type: 'string' },
    cron: { type: 'string' },
    start: { type: 'string' },
    end: { type: 'string' },
    count: { type: 'string' },
    'dst-gap': { type: 'string' },
    'dst-overlap': { type: 'string' },
    'catch-up': { type: 'string' },
    preview: { type: 'boolean' },
    'deliver-by': { type: 'string' },
  },
  schedules: {
    ...COMMON_OPTIONS,
    timezone: { type: 'string' },
    preview: { type: 'string' },
    count: { type: 'string' },
    pause: { type: 'string' },
    resume: { type: 'string' },
    delete: { type: 'string' },
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
  schedule: `Usage: psched schedule (--at TIME | --in DURATION | --every DURATION | --cron RULE) [--user NAME] TEXT

  psched schedule --at "2026-12-24 09:00" --user Ann "Merry Christmas"
  psched schedule --in 10m --user Ann "See you in ten minutes"
  psched schedule --at "2026-12-24 09:00" --deliver-by "2026-12-24 12:00" --user Ann "Doors open at noon"
  psched schedule --cron "0 9 * * MON-FRI" --timezone Europe/Berlin --user Ann "Stand-up"
  psched schedule --every 15m --user Ann "Drink water"
  psched schedule --cron "30 2 * * *" --timezone America/New_York --preview   # the next fire times, nothing saved

Options:
  --at TIME        when: "YYYY-MM-DD HH:MM[:SS]" in --timezone, or RFC 3339 with an offset
  --in DURATION    or how long from now, with a unit: 90s, 10m, 2h, 1d
  --every DURATION or again and again, this much elapsed time apart (15m, 1h30m, 1d; not wall-clock time)
  --cron RULE      or at the times a cron rule names on --timezone's wall clock (5 fields, or 6 with seconds)
  --deliver-by TIME  one-off messages: not sent after this (read like --at); unsent by then it is set expired
                   instead, replayable on the dispatcher's page (default: its target's window, if any)
  --user NAME      who posts it (default: $USER)
  --timezone ZONE  the zone --at, --start, --end and --cron are read in (default: this machine's, ${LOCAL_ZONE})
Recurring messages only:
  --start TIME     not before (for --every: the first time)
  --end TIME       not after
  --count N        at most N times
  --dst-gap shift|skip            a time the clocks skip: moved forward by the gap (default), or skipped
  --dst-overlap first|last|both   a time that happens twice: the first (default), the second, or both
  --catch-up latest|all|none      after downtime: one post for what was missed (default), each, or none
  --preview        print the next 10 fire times (--count more or fewer) and save nothing
${COMMON_HELP}`,
  schedules: `Usage: psched schedules [--timezone ZONE] [--preview ID [--count N] | --pause ID | --resume ID | --delete ID]

Lists recurring messages with their next fire time in --timezone; or previews,
pauses, resumes or deletes one (its id is in the list's first column).

Options:
  --timezone ZONE  the zone times are shown in (default: this machine's, ${LOCAL_ZONE})
  --preview ID     the next fire times of one (10, or --count N)
  --pause ID, --resume ID, --delete ID
${COMMON_HELP}`,
  scheduled: `Usage: psched scheduled [--status STATUS] [--timezone ZONE]

Lists messages in due-time order, times in --timezone.

Options:
  --status STATUS  scheduled (default), delivering, delivered, dead or expired (not sent: past its deliver-by)
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
  every: '--every', cron: '--cron', startAt: '--start', endAt: '--end', maxOccurrences: '--count', count: '--count',
  'dstPolicy.gap': '--dst-gap', 'dstPolicy.overlap': '--dst-overlap', catchUp: '--catch-up', deliverBy: '--deliver-by',
};

export interface ApiAnswer {
  status: number;
  body: unknown;
}

/** One JSON request to a psched service (`service` names it in errors: the main server, or a dispatcher for `psched targets`). */
export async function call(url: string, token: string | undefined, method: string, path: string, body?: unknown, service = 'the main server'): Promise<ApiAnswer> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(new URL(path, url), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new UsageError(`cannot reach ${service} at ${url}: ${(err as Error).cause ?? (err as Error).message}. Is it running (npm start)?`);
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

/** An error answer in the flags' terms (`flags`: API field -> the flag that sets it). */
export function errorText(answer: ApiAnswer, flags: Record<string, string> = FIELD_FLAGS, service = 'the main server'): string {
  const error = readError(answer.body);
  if (!error.message) return `${service} answered HTTP ${answer.status}: ${JSON.stringify(answer.body)}`;
  const flag = error.field ? flags[error.field] : undefined;
  // "scheduledAt must be in the future" -> "--at must be in the future"
  const message = flag && error.field ? error.message.replace(new RegExp(`\\b${error.field.replace('.', '\\.')}\\b`, 'g'), flag) : error.message;
  return `${message} (HTTP ${answer.status})`;
}

/** The dev mode's token, when the client runs next to `npm start`'s data folder. */
export function devToken(): string | undefined {
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

  if (command === 'schedule' && (values.every !== undefined || values.cron !== undefined)) return recurring(url, token, values, positionals, timeZone);
  if (command === 'schedules') return schedulesCommand(url, token, values, timeZone);

  if (command === 'schedule') {
    const text = positionals.join(' ');
    if (!text) throw new UsageError('give the message text, e.g. psched schedule --in 10m "Hello"');
    if ((values.at === undefined) === (values.in === undefined)) throw new UsageError('give exactly one of --at TIME, --in DURATION, --every DURATION or --cron RULE');
    for (const flag of ['start', 'end', 'count', 'dst-gap', 'dst-overlap', 'catch-up', 'preview']) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag} is for recurring messages: give --every or --cron`);
    }
    const body: Record<string, unknown> = { username: values.user, message: text };
    // read in --timezone, like --at
    if (values['deliver-by'] !== undefined) Object.assign(body, { deliverBy: values['deliver-by'], timeZone });
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

type ScheduleView = Pick<ScheduleJson, 'id' | 'username' | 'message' | 'cron' | 'every' | 'timeZone' | 'status' | 'nextFireAt'>;

/** One line per schedule: id, rule, zone, next fire time in the viewer's zone, status, user, text. */
export function schedulesTable(items: ScheduleView[], timeZone: string): string {
  const rows = items.map((s) => [
    s.id, s.cron !== null ? `cron ${s.cron}` : `every ${s.every}`, s.timeZone, s.nextFireAt === null ? '-' : localTime(s.nextFireAt, timeZone),
    s.status, s.username, s.message.replace(/\s+/g, ' '),
  ]);
  const header = ['ID', 'RULE', 'ZONE', `NEXT (${timeZone})`, 'STATUS', 'USER', 'MESSAGE'];
  const widths = header.slice(0, 6).map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i < 6 ? cell.padEnd(widths[i]!) : cell)).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

/** The preview lines: the instant on the rule's wall clock with its offset, and in the viewer's zone when that differs. */
export function previewLines(preview: { timeZone: string; items: { at: string; local: string; utcOffset: string; note?: string }[] }, timeZone: string): string {
  if (preview.items.length === 0) return 'no more occurrences';
  return preview.items.map((item) => {
    const own = preview.timeZone === timeZone ? '' : `   = ${localTime(item.at, timeZone)} ${timeZone}`;
    return `${item.local} ${item.utcOffset} (${preview.timeZone})${own}${item.note ? `   [${item.note}]` : ''}`;
  }).join('\n');
}

function countFlag(values: Record<string, string | boolean | undefined>): number | undefined {
  if (values.count === undefined) return undefined;
  const text = String(values.count);
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`--count must be a whole number of at least 1 (got ${JSON.stringify(text)})`);
  return Number(text);
}

async function recurring(url: string, token: string | undefined, values: Record<string, string | boolean | undefined>, positionals: string[], timeZone: string): Promise<number> {
  if (values.every !== undefined && values.cron !== undefined) throw new UsageError('give either --every or --cron, not both');
  if (values.at !== undefined || values.in !== undefined) throw new UsageError('--at and --in are for one message; a recurring one starts at --start');
  if (values['deliver-by'] !== undefined) throw new UsageError('--deliver-by is for one message: a recurring one takes its target\'s window (psched targets … --deliver-within)');
  const body: Record<string, unknown> = { timeZone };
  if (values.every !== undefined) body.every = values.every;
  if (values.cron !== undefined) body.cron = values.cron;
  if (values.start !== undefined) body.startAt = values.start;
  if (values.end !== undefined) body.endAt = values.end;
  const count = countFlag(values);
  const dstPolicy: Record<string, unknown> = {};
  if (values['dst-gap'] !== undefined) dstPolicy.gap = values['dst-gap'];
  if (values['dst-overlap'] !== undefined) dstPolicy.overlap = values['dst-overlap'];
  if (Object.keys(dstPolicy).length > 0) body.dstPolicy = dstPolicy;
  if (values['catch-up'] !== undefined) body.catchUp = values['catch-up'];
  if (values.preview) {
    body.count = count ?? 10;
    const answer = await call(url, token, 'POST', '/v1/schedules/preview', body);
    if (answer.status >= 300) throw new UsageError(errorText(answer));
    console.log(values.json ? JSON.stringify(answer.body, null, 2) : previewLines(answer.body as Parameters<typeof previewLines>[0], timeZone));
    return 0;
  }
  const text = positionals.join(' ');
  if (!text) throw new UsageError('give the message text, e.g. psched schedule --every 1d "Hello" (or --preview to see the times)');
  if (count !== undefined) body.maxOccurrences = count;
  Object.assign(body, { username: values.user, message: text });
  const answer = await call(url, token, 'POST', '/v1/schedules', body);
  if (answer.status >= 300) throw new UsageError(errorText(answer));
  const schedule = answer.body as ScheduleView;
  console.log(values.json ? JSON.stringify(answer.body, null, 2)
    : `scheduled ${schedule.id}, ${schedule.cron !== null ? `cron ${schedule.cron}` : `every ${schedule.every}`} in ${schedule.timeZone}; next ${schedule.nextFireAt === null ? 'never' : `${localTime(schedule.nextFireAt, timeZone)} (${timeZone})`}`);
  return 0;
}

async function schedulesCommand(url: string, token: string | undefined, values: Record<string, string | boolean | undefined>, timeZone: string): Promise<number> {
  const actions = (['preview', 'pause', 'resume', 'delete'] as const).filter((flag) => values[flag] !== undefined);
  if (actions.length > 1) throw new UsageError(`give one of --${actions.join(', --')}`);
  const action = actions[0];
  if (action === undefined) {
    const answer = await call(url, token, 'GET', `/v1/schedules?limit=${LIST_LIMIT}`);
    if (answer.status >= 300) throw new UsageError(errorText(answer));
    const page = answer.body as { items: ScheduleView[]; nextCursor: string | null };
    if (values.json) console.log(JSON.stringify(answer.body, null, 2));
    else if (page.items.length === 0) console.log('no recurring messages');
    else console.log(schedulesTable(page.items, timeZone) + (page.nextCursor ? `\n(the first ${LIST_LIMIT})` : ''));
    return 0;
  }
  const id = encodeURIComponent(String(values[action]));
  if (action === 'preview') {
    const answer = await call(url, token, 'GET', `/v1/schedules/${id}/preview?count=${countFlag(values) ?? 10}`);
    if (answer.status >= 300) throw new UsageError(errorText(answer));
    console.log(values.json ? JSON.stringify(answer.body, null, 2) : previewLines(answer.body as Parameters<typeof previewLines>[0], timeZone));
    return 0;
  }
  const answer = action === 'delete'
    ? await call(url, token, 'DELETE', `/v1/schedules/${id}`)
    : await call(url, token, 'PATCH', `/v1/schedules/${id}`, { paused: action === 'pause' });
  if (answer.status >= 300) throw new UsageError(errorText(answer));
  console.log(values.json && answer.body ? JSON.stringify(answer.body, null, 2) : `${action === 'delete' ? 'deleted' : action === 'pause' ? 'paused' : 'resumed'} ${values[action]}`);
  return 0;
}
