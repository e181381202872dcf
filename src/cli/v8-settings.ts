import { availableParallelism } from 'node:os';

/**
 * The V8 settings the services run with (bin/psched.js adds them at start).
 * V8 reads them only when the process starts.
 *
 * --max-semi-space-size=32: V8's young generation capped at 32 MiB per
 * semi-space. On a machine with much memory V8 lets it grow to 64 MiB (128 MiB
 * committed), and more short-lived objects survive into the old generation,
 * where they wait for a full collection: with 1,000,000 messages scheduled in
 * batches, the dispatcher's resident memory peaked at 322-345 MB by default.
 * A smaller cap costs the other way: a scavenge pauses 3-5 ms however large
 * the semi-space (its cost is the survivors and the old-to-new references,
 * not the garbage), so at 16 MiB the targets phase of `npm run bench` (4,000
 * deliveries/s) paused ~30 times in 5 s (106-158 ms in all) and the healthy
 * targets' p99 was 9-51 ms (median of ten runs ~30); at 32 MiB 14 times
 * (49 ms) and p99 7-18 ms (median of six 11). The million pending peaked at
 * 259 MB with 32 and 291-314 MB with 16 (measured 2026-12-04).
 *
 * --v8-pool-size: V8's background threads (concurrent garbage collection)
 * leave one core to the event loop. By default four threads mark the heap at
 * once; on 2 cores they took both for 10-20 ms at a time, and every delivery
 * due meanwhile went out late (20,000 over 5 s: p99 11-16 ms, with the
 * deliveries started within 5 ms of their due time 98.6-99.3%; with one
 * thread p99 4-6 ms and 99.9-100%, measured).
 */
export const SERVICE_V8_SETTINGS: readonly string[] = [
  '--max-semi-space-size=32',
  `--v8-pool-size=${Math.max(1, Math.min(4, availableParallelism() - 1))}`,
];

/** The settings of SERVICE_V8_SETTINGS that `given` (node options) does not already set, to any value. */
export function missingV8Settings(given: readonly string[]): string[] {
  return SERVICE_V8_SETTINGS.filter((setting) => !given.some((option) => option.startsWith(setting.split('=')[0]!)));
}
