import { isValidTimeZone } from './protocol/time.ts';
import { addressEntryProblem } from './allowlist.ts';
import { isLoopbackHost } from './loopback.ts';
import { standardWebhooksSecretProblem } from './protocol/signing.ts';
import type { LegacyPostEncoding } from './protocol/legacy.ts';
import { ENGINE_DEFAULTS, durationText } from './dispatcher/engine-defaults.ts';

/**
 * Every option of every service, read in one place: each has a flag, an
 * environment variable and a documented default. `parseOptions` validates and
 * returns a frozen config; the rest of the code receives it explicitly.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Kind = 'string' | 'int' | 'duration' | 'list' | 'boolean';

export interface OptionSpec {
  flag: string;
  env: string;
  kind: Kind;
  /** kind 'string' only: the values allowed (checked, and the parsed type is their union). */
  choices?: readonly string[];
  default: string | undefined;
  help: string;
  /** What --help shows as the default when it is not a fixed value. */
  defaultHelp?: string;
  /** Extra check on the parsed value; returns an error message or undefined. */
  check?: (value: unknown) => string | undefined;
}

/** The type an option parses to: from its kind (and choices), undefined only when it has no default. */
type ParsedOption<S extends OptionSpec> =
  | (S['kind'] extends 'int' | 'duration' ? number
    : S['kind'] extends 'list' ? string[]
    : S['kind'] extends 'boolean' ? boolean
    : S['choices'] extends readonly (infer C)[] ? C : string)
  | (S['default'] extends string ? never : undefined);

export type ParsedOptions<T extends Record<string, OptionSpec>> = { [N in keyof T]: ParsedOption<T[N]> };

const port = (value: unknown) => (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 65535 ? undefined : 'must be a port number 0-65535');
const positive = (value: unknown) => ((value as number) > 0 ? undefined : 'must be greater than 0');
const timeZone = (value: unknown) => (isValidTimeZone(value as string) ? undefined : 'must be an IANA time zone such as "UTC" or "Europe/Berlin"');
const httpUrl = (value: unknown) => {
  try {
    const url = new URL(value as string);
    return url.protocol === 'http:' || url.protocol === 'https:' ? undefined : 'must be an http(s) URL';
  } catch {
    return 'must be an http(s) URL';
  }
};

// a name or address as it appears in a Host header, without the port: psched.lan, 10.0.0.5, [fd00::1]
const hostName = (value: unknown) => (/^([a-z0-9_-]+(\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])$/i.test(value as string)
  ? undefined : 'must list host names without scheme or port, such as "psched.lan" or "[fd00::1]"');

const ALLOWED_HOSTS = {
  flag: 'allowed-hosts', env: 'PSCHED_ALLOWED_HOSTS', kind: 'list', default: undefined, check: hostName,
  help: 'comma-separated host names a service without a token answers besides localhost, 127.0.0.1 and [::1] (DNS rebinding guard)',
} satisfies OptionSpec;
const addressEntry = (value: unknown) => addressEntryProblem(value as string);

const LOG_LEVEL = { flag: 'log-level', env: 'PSCHED_LOG_LEVEL', kind: 'string', default: 'info', help: 'pino log level (fatal, error, warn, info, debug, silent)' } satisfies OptionSpec;

export const DISPATCHER_OPTIONS = {
  port: { flag: 'port', env: 'PSCHED_DISPATCHER_PORT', kind: 'int', default: '8081', help: 'HTTP port', check: port },
  host: { flag: 'host', env: 'PSCHED_HOST', kind: 'string', default: '127.0.0.1', help: 'interface to listen on (a non-loopback host requires --api-token)' },
  db: { flag: 'db', env: 'PSCHED_DISPATCHER_DB', kind: 'string', default: './data/dispatcher.db', help: 'SQLite file path, or a postgres:// URL' },
  mainUrl: { flag: 'main-url', env: 'PSCHED_MAIN_URL', kind: 'string', default: 'http://127.0.0.1:8080', help: 'where due messages are delivered', check: httpUrl },
  mainProtocol: { flag: 'main-protocol', env: 'PSCHED_MAIN_PROTOCOL', kind: 'string', choices: ['json', 'legacy'] as const, default: 'json', help: 'json (signed POST /v1/posts) or legacy (form POST /postMessage.php)' },
  apiToken: { flag: 'api-token', env: 'PSCHED_API_TOKEN', kind: 'string', default: undefined, help: 'bearer token required on /v1, the legacy endpoints and the UI' },
  legacyAllow: { flag: 'legacy-allow', env: 'PSCHED_LEGACY_ALLOW', kind: 'list', default: undefined, defaultHelp: '(none: closed)', help: 'addresses (IPv4/IPv6, CIDR, comma-separated) that may call /scheduleMessage.php and /cron/checkScheduledMessages.php without the token: the original main server and cron cannot send one. Every other call still needs it', check: addressEntry },
  signingSecret: { flag: 'signing-secret', env: 'PSCHED_SIGNING_SECRET', kind: 'string', default: undefined, help: 'HMAC-SHA256 secret that signs deliveries' },
  signatureScheme: { flag: 'signature-scheme', env: 'PSCHED_SIGNATURE_SCHEME', kind: 'string', choices: ['psched', 'standard-webhooks'] as const, default: 'psched', help: 'how --main-protocol json deliveries are signed: psched (Psched-Signature) or standard-webhooks (webhook-id, webhook-timestamp, webhook-signature; the secret written whsec_<base64>)' },
  mainRate: { flag: 'main-rate', env: 'PSCHED_MAIN_RATE', kind: 'int', default: undefined, defaultHelp: '(none)', help: 'flow control for --main-url: deliveries started per second at most (a token bucket); a 429 or 503 with Retry-After pauses it whatever this says', check: positive },
  mainBurst: { flag: 'main-burst', env: 'PSCHED_MAIN_BURST', kind: 'int', default: undefined, defaultHelp: '(--main-rate)', help: 'with --main-rate: how many may start at once after a quiet spell', check: positive },
  mainMaxInFlight: { flag: 'main-max-in-flight', env: 'PSCHED_MAIN_MAX_IN_FLIGHT', kind: 'int', default: undefined, defaultHelp: '(--concurrency)', help: 'deliveries to --main-url started and not yet answered, at most', check: positive },
  mainDeliverWithin: { flag: 'main-deliver-within', env: 'PSCHED_MAIN_DELIVER_WITHIN', kind: 'duration', default: undefined, defaultHelp: '(none)', help: 'deliver-by of --main-url\'s messages that carry none: a message not started within this of its scheduled time is not sent but set expired (replayable like a dead letter)', check: positive },
  timeZone: { flag: 'timezone', env: 'PSCHED_TIMEZONE', kind: 'string', default: 'UTC', help: 'time zone for times given without an offset (the JSON API)', check: timeZone },
  legacyTimeZone: { flag: 'legacy-timezone', env: 'PSCHED_LEGACY_TIMEZONE', kind: 'string', default: undefined, defaultHelp: '--timezone when given, else this host\'s zone', help: 'time zone for times without an offset on the original\'s /scheduleMessage.php; default --timezone when that is given, else this host\'s zone, as the original read them (MySQL NOW())', check: timeZone },
  horizon: { flag: 'horizon', env: 'PSCHED_HORIZON', kind: 'duration', default: durationText(ENGINE_DEFAULTS.horizonMs), help: 'messages due within this window are held in memory', check: positive },
  maxBuffered: { flag: 'max-buffered', env: 'PSCHED_MAX_BUFFERED', kind: 'int', default: String(ENGINE_DEFAULTS.maxBuffered), help: 'cap on messages held in memory', check: positive },
  lease: { flag: 'lease', env: 'PSCHED_LEASE', kind: 'duration', default: durationText(ENGINE_DEFAULTS.leaseMs), help: 'how long a claim lasts without renewal (failover time in a pool)', check: positive },
  maxAttempts: { flag: 'max-attempts', env: 'PSCHED_MAX_ATTEMPTS', kind: 'int', default: String(ENGINE_DEFAULTS.maxAttempts), help: 'delivery attempts before a message goes to the dead letters', check: positive },
  retryBase: { flag: 'retry-base', env: 'PSCHED_RETRY_BASE', kind: 'duration', default: durationText(ENGINE_DEFAULTS.retryBaseMs), help: 'first retry backoff (doubles each attempt, equal jitter)', check: positive },
  retryMax: { flag: 'retry-max', env: 'PSCHED_RETRY_MAX', kind: 'duration', default: durationText(ENGINE_DEFAULTS.retryMaxMs), help: 'longest retry backoff', check: positive },
  deliveryTimeout: { flag: 'delivery-timeout', env: 'PSCHED_DELIVERY_TIMEOUT', kind: 'duration', default: '10s', help: 'a delivery not answered within this is retried', check: positive },
  concurrency: { flag: 'concurrency', env: 'PSCHED_CONCURRENCY', kind: 'int', default: String(ENGINE_DEFAULTS.concurrency), help: 'deliveries in flight at once (pipelined up to --pipelining per keep-alive connection; legacy: one each on a quarter as many connections)', check: positive },
  pipelining: { flag: 'pipelining', env: 'PSCHED_PIPELINING', kind: 'int', default: '32', help: 'JSON deliveries sent on one keep-alive connection before earlier ones are answered (1: none); --concurrency / this many connections per target', check: positive },
  retention: { flag: 'retention', env: 'PSCHED_RETENTION', kind: 'duration', default: durationText(ENGINE_DEFAULTS.retentionMs), help: 'how long delivered messages stay in the history', check: positive },
  allowedHosts: ALLOWED_HOSTS,
  logLevel: LOG_LEVEL,
} satisfies Record<string, OptionSpec>;

export const MAIN_OPTIONS = {
  port: { flag: 'port', env: 'PSCHED_MAIN_PORT', kind: 'int', default: '8080', help: 'HTTP port', check: port },
  host: { flag: 'host', env: 'PSCHED_HOST', kind: 'string', default: '127.0.0.1', help: 'interface to listen on (a non-loopback host requires --access-token and --signing-secret)' },
  db: { flag: 'db', env: 'PSCHED_MAIN_DB', kind: 'string', default: './data/main.db', help: 'SQLite file path, or a postgres:// URL' },
  dispatcherUrls: { flag: 'dispatcher-url', env: 'PSCHED_DISPATCHER_URL', kind: 'list', default: 'http://127.0.0.1:8081', help: 'the dispatcher pool, comma-separated URLs' },
  dispatcherProtocol: { flag: 'dispatcher-protocol', env: 'PSCHED_DISPATCHER_PROTOCOL', kind: 'string', choices: ['json', 'legacy'] as const, default: 'json', help: 'how every --dispatcher-url is spoken to: json (psched\'s /v1/messages) or legacy (an original PHP dispatcher: form POST /scheduleMessage.php, times in --timezone)' },
  apiToken: { flag: 'api-token', env: 'PSCHED_API_TOKEN', kind: 'string', default: undefined, help: 'the dispatchers\' API token (their --api-token), sent with every request to them' },
  accessToken: { flag: 'access-token', env: 'PSCHED_ACCESS_TOKEN', kind: 'string', default: undefined, help: 'token this server\'s page, /ui and scheduling API require (Bearer, or the Basic password); the feed stays public' },
  signingSecret: { flag: 'signing-secret', env: 'PSCHED_SIGNING_SECRET', kind: 'string', default: undefined, help: 'secret that verifies deliveries (POST /v1/posts)' },
  legacyAllow: { flag: 'legacy-allow', env: 'PSCHED_LEGACY_ALLOW', kind: 'list', default: undefined, defaultHelp: '(none: closed)', help: 'addresses (IPv4/IPv6, CIDR, comma-separated) that may post unsigned to /postMessage.php (the original dispatcher) and use /scheduleMessage.php without the access token. Every other call still needs it', check: addressEntry },
  legacyPostMessage: { flag: 'legacy-post-message', env: 'PSCHED_LEGACY_POST_MESSAGE', kind: 'boolean', default: 'false', help: 'accept the original\'s unsigned POST /postMessage.php even with a signing secret set' },
  legacyPostEncoding: { flag: 'legacy-post-encoding', env: 'PSCHED_LEGACY_POST_ENCODING', kind: 'string', choices: ['double', 'single'] as const satisfies readonly LegacyPostEncoding[], default: 'double', help: 'how POST /postMessage.php reads its values: double (decoded once more, as the original did and as its dispatcher and psched --main-protocol legacy send them; a request typed by hand is taken as sent) or single (as the form parser decoded them)' },
  timeZone: { flag: 'timezone', env: 'PSCHED_TIMEZONE', kind: 'string', default: 'UTC', help: 'time zone for times given without an offset (the JSON API)', check: timeZone },
  legacyTimeZone: { flag: 'legacy-timezone', env: 'PSCHED_LEGACY_TIMEZONE', kind: 'string', default: undefined, defaultHelp: '--timezone when given, else this host\'s zone', help: 'time zone for times without an offset on the original\'s /scheduleMessage.php; default --timezone when that is given, else this host\'s zone, as the original read them (MySQL NOW())', check: timeZone },
  allowedHosts: ALLOWED_HOSTS,
  maxEventStreams: { flag: 'max-event-streams', env: 'PSCHED_MAX_EVENT_STREAMS', kind: 'int', default: '1000', help: 'live feed connections (GET /v1/events) at once; more are answered 503 (each holds at most 256 KiB its client has not read)', check: positive },
  logLevel: LOG_LEVEL,
} satisfies Record<string, OptionSpec>;

export interface DispatcherConfig {
  port: number;
  host: string;
  db: string;
  mainUrl: string;
  mainProtocol: 'json' | 'legacy';
  apiToken: string | undefined;
  /** May call the legacy endpoints without the token. */
  legacyAllow: readonly string[];
  signingSecret: string | undefined;
  signatureScheme: 'psched' | 'standard-webhooks';
  /** Flow control of the default target (--main-url); unset: none. */
  mainRatePerSecond: number | undefined;
  mainBurst: number | undefined;
  mainMaxInFlight: number | undefined;
  /** Default deliver-by window of the default target's messages (ms after scheduledAt); unset: none. */
  mainDeliverWithinMs: number | undefined;
  timeZone: string;
  /** Reads the original's times without an offset (see legacyTimeZoneOf). */
  legacyTimeZone: string;
  horizonMs: number;
  maxBuffered: number;
  leaseMs: number;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  deliveryTimeoutMs: number;
  concurrency: number;
  pipelining: number;
  retentionMs: number;
  /** Host names answered besides the loopback ones while the Host check is on (see ./http.ts hostCheck), lower case. */
  allowedHosts: string[];
  logLevel: string;
}

export interface MainConfig {
  port: number;
  host: string;
  db: string;
  dispatcherUrls: string[];
  /** How every dispatcher of the pool is spoken to; legacy: original PHP dispatchers (src/main/original-dispatcher.ts). */
  dispatcherProtocol: 'json' | 'legacy';
  /** Sent to the dispatchers. */
  apiToken: string | undefined;
  /** Required by this server's own page and scheduling API, when set. */
  accessToken: string | undefined;
  signingSecret: string | undefined;
  legacyPostMessage: boolean;
  /** May post unsigned to postMessage.php and use scheduleMessage.php without the access token. */
  legacyAllow: readonly string[];
  legacyPostEncoding: LegacyPostEncoding;
  timeZone: string;
  /** As DispatcherConfig.allowedHosts. */
  allowedHosts: string[];
  /** Open GET /v1/events streams at most. */
  maxEventStreams: number;
  /** Reads the original's times without an offset (see legacyTimeZoneOf). */
  legacyTimeZone: string;
  logLevel: string;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "250ms", "10s", "5m", "2h", "7d". A bare number is refused: "--in 10" read as 10 ms surprised everyone. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  return Math.round(Number(match[1]) * UNIT_MS[match[2] ?? 'ms']!);
}

function parseValue(spec: OptionSpec, raw: string, source: string): unknown {
  const fail = (why: string): never => {
    throw new ConfigError(`${source} ${why} (got ${JSON.stringify(raw)})`);
  };
  let value: unknown;
  switch (spec.kind) {
    case 'string':
      if (spec.choices && !spec.choices.includes(raw)) fail(`must be ${spec.choices.slice(0, -1).join(', ')} or ${spec.choices.at(-1)}`);
      value = raw;
      break;
    case 'int':
      if (!/^\d+$/.test(raw.trim())) fail('must be a whole number');
      value = Number(raw);
      break;
    case 'duration':
      value = parseDuration(raw) ?? fail(/^\d+(\.\d+)?$/.test(raw.trim())
        ? 'needs a unit: 500ms, 10s, 5m, 2h or 7d' : 'must be a duration such as 500ms, 10s, 5m, 2h or 7d');
      break;
    case 'list':
      value = raw.split(',').map((s) => s.trim()).filter(Boolean);
      if ((value as string[]).length === 0) fail('must list at least one value');
      break;
    case 'boolean':
      if (!/^(true|false|1|0|yes|no)$/i.test(raw)) fail('must be true or false');
      value = /^(true|1|yes)$/i.test(raw);
      break;
  }
  const problem = spec.check && (Array.isArray(value) ? value.map(spec.check).find(Boolean) : spec.check(value));
  if (problem) fail(problem);
  return value;
}

/**
 * Resolves each option from, in order: `given` (flags or code), `env`, the default.
 * Keys of `given` are the option names (camelCase); values are raw strings.
 */
export function resolveOptions<T extends Record<string, OptionSpec>>(
  specs: T,
  given: Partial<Record<keyof T, string | undefined>>,
  env: Record<string, string | undefined> = process.env,
): ParsedOptions<T> {
  const out = {} as Record<keyof T, unknown>;
  for (const [name, spec] of Object.entries(specs) as [keyof T & string, OptionSpec][]) {
    const fromFlag = given[name];
    const fromEnv = env[spec.env];
    if (fromFlag !== undefined) out[name] = parseValue(spec, fromFlag, `--${spec.flag}`);
    else if (fromEnv !== undefined && fromEnv !== '') out[name] = parseValue(spec, fromEnv, spec.env);
    else out[name] = spec.default === undefined ? undefined : parseValue(spec, spec.default, `default of --${spec.flag}`);
  }
  // parseValue made each value of its spec's kind, checked against its choices
  return out as ParsedOptions<T>;
}

function hostList(value: string[] | undefined): string[] {
  return (value ?? []).map((name) => name.toLowerCase());
}

/**
 * The zone the original's endpoints read a time without an offset in:
 * --legacy-timezone; else --timezone when one was given; else this host's
 * zone (TZ or the system's), since the original compared times with MySQL's
 * NOW(), the database host's local time, and its servers shared one zone.
 */
function legacyTimeZoneOf(o: { legacyTimeZone: string | undefined; timeZone: string }, timeZoneGiven: string | undefined): string {
  if (o.legacyTimeZone !== undefined) return o.legacyTimeZone;
  if (timeZoneGiven) return o.timeZone;
  return hostTimeZone();
}

/** This host's IANA zone; UTC when the runtime cannot tell. */
export function hostTimeZone(): string {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return zone && isValidTimeZone(zone) ? zone : 'UTC';
}

/**
 * Variables an earlier psched read for both services, each service taking its
 * own value from it: one machine's PSCHED_PORT was the other service's port
 * too. Refused rather than ignored, so a deployment that still sets one
 * learns the new name instead of starting on the default.
 */
const RETIRED_VARIABLES = { PSCHED_PORT: 'PORT', PSCHED_DB: 'DB' } as const;

function refuseRetiredVariables(env: Record<string, string | undefined>, service: 'dispatcher' | 'main'): void {
  for (const [name, suffix] of Object.entries(RETIRED_VARIABLES)) {
    if (env[name] === undefined || env[name] === '') continue;
    const [mine, other] = service === 'main' ? ['MAIN', 'DISPATCHER'] : ['DISPATCHER', 'MAIN'];
    throw new ConfigError(`${name} is no longer read (it meant a different value for each service): ` +
      `set PSCHED_${mine}_${suffix} for this ${service === 'main' ? 'main server' : 'dispatcher'}, and PSCHED_${other}_${suffix} for the other service`);
  }
}

function requireTokenOffLoopback(host: string, token: string | undefined, spec: OptionSpec, service: string): void {
  if (!token && !isLoopbackHost(host)) {
    throw new ConfigError(
      `refusing to listen on ${host} without a token: anyone on the network could schedule messages. ` +
        `Set --${spec.flag} (or ${spec.env}) for the ${service}, or listen on 127.0.0.1.`,
    );
  }
}

export function dispatcherConfig(
  given: Partial<Record<keyof typeof DISPATCHER_OPTIONS, string | undefined>> = {},
  env: Record<string, string | undefined> = process.env,
): Readonly<DispatcherConfig> {
  refuseRetiredVariables(env, 'dispatcher');
  const o = resolveOptions(DISPATCHER_OPTIONS, given, env);
  const config: DispatcherConfig = {
    port: o.port,
    host: o.host,
    db: o.db,
    mainUrl: o.mainUrl.replace(/\/+$/, ''),
    mainProtocol: o.mainProtocol,
    apiToken: o.apiToken,
    legacyAllow: Object.freeze(o.legacyAllow ?? []),
    signingSecret: o.signingSecret,
    signatureScheme: o.signatureScheme,
    mainRatePerSecond: o.mainRate,
    mainBurst: o.mainBurst,
    mainMaxInFlight: o.mainMaxInFlight,
    mainDeliverWithinMs: o.mainDeliverWithin,
    timeZone: o.timeZone,
    legacyTimeZone: legacyTimeZoneOf(o, given.timeZone ?? env.PSCHED_TIMEZONE),
    horizonMs: o.horizon,
    maxBuffered: o.maxBuffered,
    leaseMs: o.lease,
    maxAttempts: o.maxAttempts,
    retryBaseMs: o.retryBase,
    retryMaxMs: o.retryMax,
    deliveryTimeoutMs: o.deliveryTimeout,
    concurrency: o.concurrency,
    pipelining: o.pipelining,
    retentionMs: o.retention,
    allowedHosts: hostList(o.allowedHosts),
    logLevel: o.logLevel,
  };
  requireTokenOffLoopback(config.host, config.apiToken, DISPATCHER_OPTIONS.apiToken, 'dispatcher');
  if (config.signatureScheme === 'standard-webhooks') {
    const problem = config.signingSecret === undefined ? 'is required with --signature-scheme standard-webhooks' : standardWebhooksSecretProblem(config.signingSecret);
    if (problem) throw new ConfigError(`--signing-secret ${problem}`);
  }
  return Object.freeze(config);
}

export function mainConfig(
  given: Partial<Record<keyof typeof MAIN_OPTIONS, string | undefined>> = {},
  env: Record<string, string | undefined> = process.env,
): Readonly<MainConfig> {
  refuseRetiredVariables(env, 'main');
  const o = resolveOptions(MAIN_OPTIONS, given, env);
  const config: MainConfig = {
    port: o.port,
    host: o.host,
    db: o.db,
    dispatcherUrls: o.dispatcherUrls.map((url) => url.replace(/\/+$/, '')),
    dispatcherProtocol: o.dispatcherProtocol,
    apiToken: o.apiToken,
    accessToken: o.accessToken,
    signingSecret: o.signingSecret,
    legacyPostMessage: o.legacyPostMessage,
    legacyAllow: Object.freeze(o.legacyAllow ?? []),
    legacyPostEncoding: o.legacyPostEncoding,
    timeZone: o.timeZone,
    allowedHosts: hostList(o.allowedHosts),
    maxEventStreams: o.maxEventStreams,
    legacyTimeZone: legacyTimeZoneOf(o, given.timeZone ?? env.PSCHED_TIMEZONE),
    logLevel: o.logLevel,
  };
  for (const url of config.dispatcherUrls) {
    const problem = httpUrl(url);
    if (problem) throw new ConfigError(`--dispatcher-url ${problem} (got ${JSON.stringify(url)})`);
  }
  requireTokenOffLoopback(config.host, config.accessToken, MAIN_OPTIONS.accessToken, 'main server');
  if (!config.signingSecret && !isLoopbackHost(config.host)) {
    const spec = MAIN_OPTIONS.signingSecret;
    throw new ConfigError(
      `refusing to listen on ${config.host} without a signing secret: anyone on the network could post to the feed (POST /v1/posts). ` +
        `Set --${spec.flag} (or ${spec.env}) to the dispatchers' secret, or listen on 127.0.0.1.`,
    );
  }
  return Object.freeze(config);
}

/** The --help text of a service: one line per option with its env var and default. */
export function optionsHelp(specs: Record<string, OptionSpec>): string {
  return Object.values(specs)
    .map((spec) => `  --${spec.flag.padEnd(22)} ${spec.help}\n  ${' '.repeat(24)} env ${spec.env}, default ${spec.defaultHelp ?? spec.default ?? '(none)'}`)
    .join('\n');
}
