import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  DISPATCHER_OPTIONS, MAIN_OPTIONS, dispatcherConfig, mainConfig, optionsHelp, type OptionSpec,
} from '../config.ts';
import { createDispatcher } from '../dispatcher/app.ts';
import { createMainServer } from '../main/app.ts';
import { parseFlags, UsageError } from './args.ts';

/** Runs the long-lived services until SIGINT/SIGTERM, then closes them cleanly. */

type Given = Record<string, string | undefined>;

const BOOLEAN_VALUE = /^(true|false|1|0|yes|no)$/i;

/**
 * Turns the option table into parseArgs options and back into `given` values
 * keyed by option name. A boolean option works bare (`--legacy-post-message`)
 * as well as with a value (`--legacy-post-message=false`, `--legacy-post-message no`).
 */
export function parseServiceFlags(command: string, specs: Record<string, OptionSpec>, args: string[]): { given: Given; help: boolean } {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const spec of Object.values(specs)) options[spec.flag] = { type: 'string' };
  const booleans = new Set(Object.values(specs).filter((spec) => spec.kind === 'boolean').map((spec) => `--${spec.flag}`));
  args = args.map((arg, i) => (booleans.has(arg) && !BOOLEAN_VALUE.test(args[i + 1] ?? '') ? `${arg}=true` : arg));
  const { values } = parseFlags(command, options, args, false);
  const given: Given = {};
  for (const [name, spec] of Object.entries(specs)) {
    const value = values[spec.flag];
    if (typeof value === 'string') given[name] = value;
  }
  return { given, help: values.help === true };
}

interface Closable {
  close(): Promise<void>;
}

/**
 * Listens, or closes everything started and says why in one line: a port in
 * use left `psched dev` printing EADDRINUSE and then running on, listening on nothing.
 */
async function listenOrClose(service: Closable & { listen(): Promise<string> }, started: Closable[], name: string, portFlag: string): Promise<string> {
  try {
    return await service.listen();
  } catch (err) {
    await Promise.allSettled(started.map((s) => s.close()));
    const cause = ((err as Error).cause ?? err) as { code?: string; port?: number; address?: string };
    if (cause.code === 'EADDRINUSE') throw new UsageError(`${name} cannot listen: port ${cause.port ?? ''} is already in use (another psched?); stop it or choose another with ${portFlag}`);
    if (cause.code === 'EACCES') throw new UsageError(`${name} cannot listen on port ${cause.port ?? ''}: permission denied (ports below 1024 need privileges); choose another with ${portFlag}`);
    throw err;
  }
}

/** Resolves when the process is asked to stop; closes `services` in order, once. */
function closeOnSignal(services: Closable[]): Promise<void> {
  return new Promise((resolvePromise) => {
    let closing = false;
    const stop = (signal: string) => {
      if (closing) {
        console.error(`psched: ${signal} again, exiting at once`);
        process.exit(130);
      }
      closing = true;
      void (async () => {
        for (const service of services) await service.close();
        resolvePromise();
      })();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

export async function runServiceCommand(kind: 'dispatcher' | 'main', args: string[]): Promise<number> {
  const specs = kind === 'dispatcher' ? DISPATCHER_OPTIONS : MAIN_OPTIONS;
  const { given, help } = parseServiceFlags(kind, specs, args);
  if (help) {
    console.log(`Usage: psched ${kind} [options]\n\nOptions (flag, environment variable, default):\n${optionsHelp(specs)}`);
    return 0;
  }
  const service = kind === 'dispatcher'
    ? await createDispatcher(dispatcherConfig(given))
    : await createMainServer(mainConfig(given));
  const url = await listenOrClose(service, [service], kind === 'dispatcher' ? 'the dispatcher' : 'the main server', '--port');
  console.error(`psched ${kind} listening on ${url}`);
  if ('halted' in service) exitWhenHalted(service.halted);
  await closeOnSignal([service]);
  return 0;
}

/**
 * Crash-stop: a dispatcher whose store halted (a failed fsync) exits at once
 * with status 1, without the clean shutdown's writes, so that a supervisor
 * restarts it and the restart reads back what the disk really holds.
 */
function exitWhenHalted(halted: Promise<Error>): void {
  void halted.then((err) => {
    console.error(`psched: the dispatcher halted: ${err.message}`);
    process.exit(1);
  });
}

interface DevCredentials {
  apiToken: string;
  signingSecret: string;
}

/**
 * The dev mode's token and signing secret: generated on first start and kept
 * in the data folder (mode 0600) so that `psched schedule` and restarts use the same ones.
 */
function devCredentials(dir: string): DevCredentials {
  const file = join(dir, 'dev-credentials.json');
  try {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as Partial<DevCredentials>;
    if (typeof saved.apiToken === 'string' && typeof saved.signingSecret === 'string') {
      return { apiToken: saved.apiToken, signingSecret: saved.signingSecret };
    }
  } catch {
    // first start, or an unreadable file: make new ones
  }
  const credentials = { apiToken: randomBytes(24).toString('base64url'), signingSecret: randomBytes(32).toString('base64url') };
  writeFileSync(file, JSON.stringify(credentials, null, 2) + '\n', { mode: 0o600 });
  return credentials;
}

const DEV_USAGE = `Usage: psched dev [options]

Runs a main server and a dispatcher in one process, embedded SQLite under the data folder,
with a generated API token and signing secret shared by both.

  --main-port N         main server port (env PSCHED_MAIN_PORT, default 8080)
  --dispatcher-port N   dispatcher port (env PSCHED_DISPATCHER_PORT, default 8081)
  --dir PATH            data folder (env PSCHED_DEV_DIR, default ./data)
  --host HOST           interface for both (env PSCHED_HOST, default 127.0.0.1)
  --log-level LEVEL     pino log level (env PSCHED_LOG_LEVEL, default info)

Every other option of either service is read from its environment variable
(see psched dispatcher --help and psched main --help), except the databases,
which live in the data folder, and the tokens and secret, which are generated.`;

export async function runDev(args: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  const fromEnv = (name: string, fallback: string) => (env[name] ? env[name] : fallback);
  const { values } = parseFlags('dev', {
    'main-port': { type: 'string', default: fromEnv(MAIN_OPTIONS.port.env, MAIN_OPTIONS.port.default) },
    'dispatcher-port': { type: 'string', default: fromEnv(DISPATCHER_OPTIONS.port.env, DISPATCHER_OPTIONS.port.default) },
    dir: { type: 'string', default: fromEnv('PSCHED_DEV_DIR', './data') },
    host: { type: 'string', default: fromEnv(MAIN_OPTIONS.host.env, MAIN_OPTIONS.host.default) },
    'log-level': { type: 'string', default: fromEnv(MAIN_OPTIONS.logLevel.env, MAIN_OPTIONS.logLevel.default) },
    help: { type: 'boolean' },
  }, args, false);
  if (values.help) {
    console.log(DEV_USAGE);
    return 0;
  }
  const dir = resolve(values.dir);
  mkdirSync(dir, { recursive: true });
  const { apiToken, signingSecret } = devCredentials(dir);
  const host = values.host;
  const shared = { host, apiToken, signingSecret, logLevel: values['log-level'] };
  // Each variable means one thing for both services, so both read the rest of
  // their options from the environment; what dev decides (ports, databases,
  // the URLs between them, credentials) is given explicitly and wins.
  const serviceEnv = { ...env, PSCHED_API_TOKEN: undefined, PSCHED_ACCESS_TOKEN: undefined, PSCHED_SIGNING_SECRET: undefined };
  // both configurations first: a bad option must not leave the other service's store open
  const dispatcherOptions = dispatcherConfig({
    ...shared,
    port: values['dispatcher-port'],
    db: join(dir, 'dispatcher.db'),
    mainUrl: `http://${urlHost(host)}:${values['main-port']}`,
  }, serviceEnv);
  const mainOptions = mainConfig({
    ...shared,
    port: values['main-port'],
    db: join(dir, 'main.db'),
    dispatcherUrls: `http://${urlHost(host)}:${values['dispatcher-port']}`,
  }, serviceEnv);
  const dispatcher = await createDispatcher(dispatcherOptions);
  let main: Awaited<ReturnType<typeof createMainServer>>;
  try {
    main = await createMainServer(mainOptions);
  } catch (err) {
    await dispatcher.close(); // its store is open: the process could not exit
    throw err;
  }
  const mainUrl = await listenOrClose(main, [dispatcher, main], 'the main server', '--main-port');
  const dispatcherUrl = await listenOrClose(dispatcher, [dispatcher, main], 'the dispatcher', '--dispatcher-port');
  exitWhenHalted(dispatcher.halted);
  console.log(`
psched is running
  main server  ${mainUrl}    compose a message and watch the feed
  dispatcher   ${dispatcherUrl}    scheduled messages (user: anything, password: the API token)
  data         ${dir}
  API token    stored in ${join(dir, 'dev-credentials.json')}

Try:  curl --data "username=Curl&message=I'm scheduling a message!&time=2014-08-01 13:30:00" ${mainUrl}/scheduleMessage.php
Stop with Ctrl-C.
`);
  // The dispatcher stops first, so its in-flight deliveries still reach a live main server.
  await closeOnSignal([dispatcher, main]);
  return 0;
}

function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
