import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

/**
 * parseArgs with mistakes said in one line a person can act on: an unknown
 * flag names the closest valid one, a missing value names the flag, a stray
 * argument says the command takes none. Node's own texts ("Unknown option
 * '--tokn'. To specify a positional argument starting with a '-', place it at
 * the end of the command after '--'...") are for library users.
 */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseFlags<T extends ParseArgsOptionsConfig>(command: string, options: T, args: string[], allowPositionals: boolean) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    throw usageError(command, options, err as Error & { code?: string });
  }
}

function usageError(command: string, options: ParseArgsOptionsConfig, err: Error & { code?: string }): Error {
  const help = `(psched ${command} --help lists them)`;
  const flag = /'(-{1,2}[^' ]+)/.exec(err.message)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const closest = flag ? closestFlag(flag.replace(/^-+/, ''), Object.keys(options)) : undefined;
      return new UsageError(`psched ${command}: unknown flag ${flag ?? ''}${closest ? `; did you mean --${closest}?` : ''} ${help}`);
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const needsValue = /argument missing/.test(err.message);
      return new UsageError(needsValue ? `psched ${command}: ${flag ?? 'a flag'} needs a value` : `psched ${command}: ${flag ?? 'a flag'} takes no value`);
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL': {
      const given = /'([^']*)'/.exec(err.message)?.[1];
      return new UsageError(`psched ${command} takes flags only (got ${JSON.stringify(given ?? '')}) ${help}`);
    }
    default:
      return err;
  }
}

/** The valid flag nearest to `given` by edit distance, if it is near enough to be a typo. */
export function closestFlag(given: string, flags: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const flag of flags) {
    // a flag cut short ("--time" for "--timezone") is as good as one typo
    const distance = given.length >= 2 && flag.startsWith(given) ? 1 : editDistance(given, flag);
    if (distance < bestDistance) {
      best = flag;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(given.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
