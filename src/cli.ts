import { runServiceCommand, runDev } from './cli/services.ts';
import { runClientCommand } from './cli/client.ts';
import { runTargetsCommand } from './cli/targets.ts';
import { ConfigError } from './config.ts';
import { StoreInUseError } from './errors.ts';
import { UsageError } from './cli/args.ts';

/**
 * psched's command line: the two services, the all-in-one dev mode, and a small
 * client of the main server's API.
 */
const USAGE = `psched — a distributed message scheduler

Usage:
  psched dispatcher [options]     run a dispatcher (stores and delivers scheduled messages)
  psched main [options]           run a main server (compose form, feed, receives deliveries)
  psched dev [options]            run both on one machine: what \`npm start\` does
  psched schedule [options] TEXT  schedule a message (or a recurring one: --every, --cron) through a main server
  psched scheduled [options]      list scheduled messages
  psched cancel [options] ID      cancel a scheduled message
  psched schedules [options]      list recurring messages; preview, pause, resume or delete one
  psched targets ACTION [NAME]    list, show, add, update or remove a dispatcher's delivery targets (main servers)

Run \`psched <command> --help\` for a command's options.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'dispatcher':
    case 'main':
      return runServiceCommand(command, rest);
    case 'dev':
      return runDev(rest);
    case 'schedule':
    case 'scheduled':
    case 'cancel':
    case 'schedules':
      return runClientCommand(command, rest);
    case 'targets':
      return runTargetsCommand(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(USAGE);
      return command === undefined ? 1 : 0;
    default:
      console.error(`psched: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    // Configuration and usage mistakes get one clear line; anything else its stack too.
    const expected = err instanceof ConfigError || err instanceof StoreInUseError || err instanceof UsageError;
    const message = (err as Error).message;
    console.error(!expected ? err : message.startsWith('psched') ? message : `psched: ${message}`);
    process.exitCode = 1;
  },
);
