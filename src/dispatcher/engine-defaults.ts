/**
 * The engine's defaults, in one place: the engine falls back on them when an
 * option is not given (a library user), and the dispatcher's option table
 * (src/config.ts) shows and applies the same values to the CLI user. Why each
 * value was chosen is said on EngineOptions (./engine.ts).
 */
export const ENGINE_DEFAULTS = Object.freeze({
  horizonMs: 60_000,
  maxBuffered: 50_000,
  leaseMs: 10_000,
  maxAttempts: 10,
  retryBaseMs: 1000,
  retryMaxMs: 5 * 60_000,
  concurrency: 128,
  retentionMs: 7 * 24 * 3600_000,
  stopGraceMs: 10_000,
});

const UNITS: [string, number][] = [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]];

/** A duration in ms as the CLI takes it, in the largest unit that divides it: 60000 -> "1m", 1500 -> "1500ms". */
export function durationText(ms: number): string {
  for (const [unit, size] of UNITS) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}
