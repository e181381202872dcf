import { parseDuration } from '../config.ts';
import { deliverWithinText, type TargetJson } from '../protocol/targets.ts';
import { parseFlags, UsageError } from './args.ts';
import { call, devToken, errorText } from './client.ts';

/**
 * `psched targets list | show | add | update | remove`: the delivery targets
 * (main servers) of a dispatcher or pool, through the dispatcher's
 * /v1/targets. The operator's: it needs the dispatcher's --api-token. The
 * secrets are write-only: list and show say whether one is set, never what.
 */

const ACTIONS = ['list', 'show', 'add', 'update', 'remove'] as const;
type Action = (typeof ACTIONS)[number];

const OPTIONS = {
  url: { type: 'string', default: process.env.PSCHED_DISPATCHER_URL ?? 'http://127.0.0.1:8081' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean' },
  'main-url': { type: 'string' },
  protocol: { type: 'string' },
  'signing-secret': { type: 'string' },
  'no-signing-secret': { type: 'boolean' },
  'signature-scheme': { type: 'string' },
  'target-token': { type: 'string' },
  'no-target-token': { type: 'boolean' },
  rate: { type: 'string' },
  burst: { type: 'string' },
  'max-in-flight': { type: 'string' },
  'deliver-within': { type: 'string' },
} as const;

const USAGE = `Usage: psched targets list|show|add|update|remove [NAME] [options]

The main servers a dispatcher (or pool) delivers to. "default" is the
dispatcher's own --main-url and its flags: listed, not changed here.

  psched targets list
  psched targets add shop --main-url https://shop.example --signing-secret "$SECRET" --target-token "$(openssl rand -hex 32)"
  psched targets show shop
  psched targets update shop --rate 50 --burst 100 --max-in-flight 8
  psched targets update shop --deliver-within 1h   # a message not sent within 1h of its time expires unsent
  psched targets update shop --no-signing-secret --rate none
  psched targets remove shop     # refused while it has messages to deliver or schedules

Target options (add, update):
  --main-url URL              where its deliveries go ({URL}/v1/posts, or {URL}/postMessage.php with --protocol legacy)
  --protocol json|legacy      as the dispatcher's --main-protocol (default json)
  --signing-secret SECRET     signs its deliveries (write-only: never shown again); --no-signing-secret: unsigned
  --signature-scheme psched|standard-webhooks   as the dispatcher's --signature-scheme (standard-webhooks: a whsec_ secret)
  --target-token TOKEN        the bearer token its main server calls the dispatcher's API with, seeing only its own
                              messages (16+ characters, write-only); --no-target-token: none
  --rate N, --burst N, --max-in-flight N   its delivery limits, stored for flow control ("none" clears one)
  --deliver-within DURATION   its messages' default deliver-by (30m, 2h, 1d): one not sent that long after its
                              scheduled time is set expired instead, replayable like a dead letter ("none" clears it)
Options:
  --url URL        the dispatcher (env PSCHED_DISPATCHER_URL, default http://127.0.0.1:8081)
  --token TOKEN    the dispatcher's --api-token (env PSCHED_API_TOKEN; next to npm start's ./data folder, found by itself)
  --json           print the dispatcher's JSON answer as is`;

/** API fields as the flags that set them. */
const FIELD_FLAGS: Record<string, string> = {
  name: 'NAME', url: '--main-url', protocol: '--protocol', signingSecret: '--signing-secret', signatureScheme: '--signature-scheme',
  token: '--target-token', ratePerSecond: '--rate', burst: '--burst', maxInFlight: '--max-in-flight', deliverWithinMs: '--deliver-within',
};

const DISPATCHER = 'the dispatcher';

export async function runTargetsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags('targets', OPTIONS, args, true) as { values: Record<string, string | boolean | undefined>; positionals: string[] };
  if (values.help || positionals.length === 0) {
    console.log(USAGE);
    return values.help ? 0 : 1;
  }
  const [action, ...names] = positionals as [string, ...string[]];
  if (!(ACTIONS as readonly string[]).includes(action)) throw new UsageError(`psched targets: unknown action ${JSON.stringify(action)}: give one of ${ACTIONS.join(', ')}`);
  const url = values.url as string;
  const token = (values.token as string | undefined) ?? process.env.PSCHED_API_TOKEN ?? devToken();
  const request = async (method: string, path: string, body?: unknown) => {
    const answer = await call(url, token, method, path, body, DISPATCHER);
    if (answer.status >= 300) throw new UsageError(errorText(answer, FIELD_FLAGS, DISPATCHER));
    return answer.body;
  };
  const print = (body: unknown, text: () => string) => console.log(values.json ? JSON.stringify(body, null, 2) : text());

  if (action === 'list') {
    if (names.length > 0) throw new UsageError('psched targets list takes no name (psched targets show NAME shows one)');
    const body = await request('GET', '/v1/targets') as { items: TargetJson[] };
    print(body, () => targetsTable(body.items));
    return 0;
  }
  if (names.length !== 1) throw new UsageError(`psched targets ${action} takes one target name, e.g. psched targets ${action} shop`);
  const name = names[0]!;
  const path = `/v1/targets/${encodeURIComponent(name)}`;
  switch (action as Exclude<Action, 'list'>) {
    case 'show': {
      const body = await request('GET', path) as TargetJson;
      print(body, () => targetLines(body));
      return 0;
    }
    case 'add': {
      const fields = targetFields(values);
      if (fields.url === undefined) throw new UsageError('psched targets add needs --main-url URL: where its deliveries go');
      const body = await request('POST', '/v1/targets', { name, ...fields }) as TargetJson;
      print(body, () => `added ${body.name}: ${body.url} (${body.protocol}, ${body.signingSecretSet ? `signed ${body.signatureScheme}` : 'unsigned'}, ${body.tokenSet ? 'with' : 'no'} token)`);
      return 0;
    }
    case 'update': {
      const fields = targetFields(values);
      if (Object.keys(fields).length === 0) throw new UsageError('psched targets update needs something to change: --main-url, --protocol, --signing-secret, --rate, --deliver-within … (psched targets --help)');
      const body = await request('PATCH', path, fields) as TargetJson;
      print(body, () => `updated ${body.name}\n${targetLines(body)}`);
      return 0;
    }
    case 'remove':
      await request('DELETE', path);
      print({ removed: name }, () => `removed ${name}`);
      return 0;
  }
}

/** The API body fields the target flags give. */
function targetFields(values: Record<string, string | boolean | undefined>): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  if (values['main-url'] !== undefined) fields.url = values['main-url'];
  if (values.protocol !== undefined) fields.protocol = values.protocol;
  if (values['signature-scheme'] !== undefined) fields.signatureScheme = values['signature-scheme'];
  if (values['signing-secret'] !== undefined && values['no-signing-secret']) throw new UsageError('give --signing-secret or --no-signing-secret, not both');
  if (values['signing-secret'] !== undefined) fields.signingSecret = values['signing-secret'];
  if (values['no-signing-secret']) fields.signingSecret = null;
  if (values['target-token'] !== undefined && values['no-target-token']) throw new UsageError('give --target-token or --no-target-token, not both');
  if (values['target-token'] !== undefined) fields.token = values['target-token'];
  if (values['no-target-token']) fields.token = null;
  for (const [flag, field] of [['rate', 'ratePerSecond'], ['burst', 'burst'], ['max-in-flight', 'maxInFlight']] as const) {
    const given = values[flag];
    if (given === undefined) continue;
    const text = String(given).trim();
    if (text === 'none') fields[field] = null;
    else if (/^\d+(\.\d+)?$/.test(text)) fields[field] = Number(text);
    else throw new UsageError(`--${flag} must be a number, or none to clear it (got ${JSON.stringify(text)})`);
  }
  const within = values['deliver-within'];
  if (within !== undefined) {
    const text = String(within).trim();
    const ms = text === 'none' ? null : parseDuration(text);
    if (ms === undefined) throw new UsageError(`--deliver-within must be a duration such as 30m, 2h or 1d, or none to clear it (got ${JSON.stringify(text)})`);
    fields.deliverWithinMs = ms;
  }
  return fields;
}

function limitsText(t: TargetJson): string {
  return [
    t.ratePerSecond !== null ? `${t.ratePerSecond}/s` : '', t.burst !== null ? `burst ${t.burst}` : '', t.maxInFlight !== null ? `max ${t.maxInFlight} in flight` : '',
    // as the dispatcher's page says it; absent from a dispatcher older than deliver-by
    t.deliverWithinMs != null ? `expires after ${deliverWithinText(t.deliverWithinMs)}` : '',
  ].filter(Boolean).join(', ') || '-';
}

/** One line per target under a header: name, URL, protocol, signing, token, limits. */
export function targetsTable(items: TargetJson[]): string {
  const rows = items.map((t) => [
    t.builtIn ? `${t.name} (built in)` : t.name, t.url, t.protocol, t.signingSecretSet ? t.signatureScheme : 'unsigned', t.tokenSet ? 'yes' : 'no', limitsText(t),
  ]);
  const header = ['NAME', 'URL', 'PROTOCOL', 'SIGNED', 'TOKEN', 'LIMITS'];
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i < row.length - 1 ? cell.padEnd(widths[i]!) : cell)).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

function targetLines(t: TargetJson): string {
  return [
    `name       ${t.name}${t.builtIn ? ' (built in: the dispatcher\'s --main-url and its flags)' : ''}`,
    `url        ${t.url}`,
    `protocol   ${t.protocol}`,
    `signed     ${t.signingSecretSet ? t.signatureScheme : 'no'}`,
    `token      ${t.tokenSet ? 'set' : 'none'}`,
    `limits     ${limitsText(t)}`,
    ...(t.createdAt ? [`created    ${t.createdAt}`, `changed    ${t.updatedAt}`] : []),
  ].join('\n');
}
