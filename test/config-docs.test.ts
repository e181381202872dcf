import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DISPATCHER_OPTIONS, MAIN_OPTIONS, dispatcherConfig, parseDuration, type OptionSpec } from '../src/config.ts';
import { ENGINE_DEFAULTS, durationText } from '../src/dispatcher/engine-defaults.ts';
import { REPO_ROOT } from './support/processes.ts';

/**
 * The option tables in src/config.ts are the one source of every option's
 * flag, environment variable and default; the README's configuration tables
 * must say the same, row for row, or a user reads a default that is not one.
 */

const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

/** The rows of the table under `### <heading>`: flag -> [env, default]. */
function readmeTable(heading: string): Map<string, [string, string]> {
  const start = readme.indexOf(`### ${heading}\n`);
  assert.ok(start >= 0, `README has a "${heading}" section`);
  const end = readme.indexOf('\n#', start + heading.length + 5);
  const rows = new Map<string, [string, string]>();
  for (const line of readme.slice(start, end).split('\n')) {
    const cells = /^\| `--([a-z-]+)` \| `([A-Z_]+)` \| ([^|]+) \|/.exec(line);
    if (cells) rows.set(cells[1]!, [cells[2]!, cells[3]!.trim()]);
  }
  return rows;
}

/** How the README writes a default: `value`, or — when there is none (then it may say more). */
function documentedDefault(spec: OptionSpec): RegExp {
  if (spec.default === undefined) return spec.defaultHelp ? /./ : /^—/;
  return new RegExp(`^\`${spec.default.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\``);
}

for (const [heading, specs] of [['`psched dispatcher`', DISPATCHER_OPTIONS], ['`psched main`', MAIN_OPTIONS]] as const) {
  describe(`README's table for ${heading}`, () => {
    const table = readmeTable(heading);
    it('lists every option, and only those', () => {
      assert.deepEqual([...table.keys()].sort(), Object.values(specs).map((spec: OptionSpec) => spec.flag).sort());
    });
    for (const spec of Object.values(specs) as OptionSpec[]) {
      it(`--${spec.flag}: its environment variable and default`, () => {
        const [env, given] = table.get(spec.flag) ?? ['(missing)', ''];
        assert.equal(env, spec.env);
        assert.match(given, documentedDefault(spec));
      });
    }
  });
}

describe('the engine\'s own defaults', () => {
  it('are what the dispatcher\'s options apply, so a library user gets what a CLI user gets', () => {
    const config = dispatcherConfig({}, {});
    const { stopGraceMs: _stopGrace, ...configurable } = ENGINE_DEFAULTS; // not an option: the service's own shutdown
    assert.deepEqual(
      { horizonMs: config.horizonMs, maxBuffered: config.maxBuffered, leaseMs: config.leaseMs, maxAttempts: config.maxAttempts,
        retryBaseMs: config.retryBaseMs, retryMaxMs: config.retryMaxMs, concurrency: config.concurrency, retentionMs: config.retentionMs },
      configurable,
    );
  });

  it('are written as the CLI takes them', () => {
    assert.equal(durationText(60_000), '1m');
    assert.equal(durationText(10_000), '10s');
    assert.equal(durationText(7 * 24 * 3600_000), '7d');
    assert.equal(durationText(1500), '1500ms');
    for (const ms of [1500, 60_000, 90_000, 7 * 24 * 3600_000]) assert.equal(parseDuration(durationText(ms)), ms);
  });
});
