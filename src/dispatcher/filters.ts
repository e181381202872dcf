import { ValidationError } from '../errors.ts';
import { isValidTimeZone, parseUserTime } from '../protocol/time.ts';
import { LIMITS } from '../protocol/messages.ts';
import { TARGET_NAME } from '../protocol/targets.ts';
import type { MessageFilter } from './store.ts';

/**
 * The list filters as the API's query and the console's filter form both
 * give them (the same names, so a console URL is an API query too):
 * `target` (exactly this target), `user` (exactly this name), `q` (text contains, ignoring case), `dueFrom`
 * and `dueTo` (RFC 3339, or a wall-clock time read in `timeZone`, else the
 * dispatcher's --timezone; from inclusive, to exclusive). An empty value, as a
 * form sends an empty field, is no filter. Bad values are a ValidationError
 * naming the parameter.
 */

/** Longest text search: a phrase, not a document (the search is a scan). */
export const SEARCH_MAX = 200;

export function parseMessageFilter(query: Record<string, unknown>, defaultTimeZone: string): MessageFilter {
  const filter: MessageFilter = {};
  const target = single(query, 'target');
  if (target !== undefined) {
    if (target !== 'default' && !TARGET_NAME.test(target)) throw new ValidationError(`target must be a target's name (got ${JSON.stringify(target)})`, 'target');
    filter.target = target;
  }
  const user = single(query, 'user');
  if (user !== undefined) {
    if ([...user].length > LIMITS.usernameMax) throw new ValidationError(`user must be at most ${LIMITS.usernameMax} characters`, 'user');
    filter.username = user;
  }
  const text = single(query, 'q');
  if (text !== undefined) {
    if ([...text].length > SEARCH_MAX) throw new ValidationError(`q must be at most ${SEARCH_MAX} characters`, 'q');
    filter.text = text;
  }
  const zone = single(query, 'timeZone');
  if (zone !== undefined && !isValidTimeZone(zone)) throw new ValidationError('timeZone must be an IANA time zone such as "Europe/Berlin"', 'timeZone');
  const timeZone = zone ?? defaultTimeZone;
  const from = single(query, 'dueFrom');
  if (from !== undefined) filter.dueFrom = parseUserTime(from, timeZone, 'dueFrom');
  const to = single(query, 'dueTo');
  if (to !== undefined) filter.dueTo = parseUserTime(to, timeZone, 'dueTo');
  if (filter.dueFrom !== undefined && filter.dueTo !== undefined && filter.dueTo <= filter.dueFrom) {
    throw new ValidationError('dueTo must be later than dueFrom', 'dueTo');
  }
  return filter;
}

/** One string parameter; empty is absent; given twice is refused. */
function single(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw new ValidationError(`${name} must be given once`, name);
  return value;
}
