import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { DISPATCHER_OPTIONS, MAIN_OPTIONS, optionsHelp } from '../src/config.ts';
import { startTestDispatcher } from './support/dispatcher.ts';
import { startTestMain } from './support/main.ts';
import { CAPTURED } from './support/original.ts';

/**
 * The original read a time without an offset in its host's local time (MySQL
 * NOW()); psched's legacy endpoints read it in --legacy-timezone, by default
 * --timezone when given, else the host's zone.
 */
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

/** The config a fresh process builds from `env` alone (TZ included), as `psched dispatcher` would. */
function configIn(env: Record<string, string>): { dispatcher: { timeZone: string; legacyTimeZone: string }; main: { timeZone: string; legacyTimeZone: string } } {
  const code = `import { dispatcherConfig, mainConfig } from ${JSON.stringify(new URL('../src/config.ts', import.meta.url).href)};
    const pick = ({ timeZone, legacyTimeZone }) => ({ timeZone, legacyTimeZone });
    console.log(JSON.stringify({ dispatcher: pick(dispatcherConfig()), main: pick(mainConfig()) }));`;
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PSCHED_') && key !== 'TZ'));
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', code], { env: { ...clean, ...env }, encoding: 'utf8' }));
}

describe('the zone of the original\'s times', () => {
  it('defaults to the host\'s zone, follows --timezone when given, and --legacy-timezone wins', () => {
    assert.deepEqual(configIn({ TZ: 'Asia/Tokyo' }).dispatcher, { timeZone: 'UTC', legacyTimeZone: 'Asia/Tokyo' });
    assert.deepEqual(configIn({ TZ: 'America/New_York' }).main, { timeZone: 'UTC', legacyTimeZone: 'America/New_York' });
    assert.deepEqual(configIn({ TZ: 'Asia/Tokyo', PSCHED_TIMEZONE: 'Europe/Berlin' }).dispatcher, { timeZone: 'Europe/Berlin', legacyTimeZone: 'Europe/Berlin' });
    assert.deepEqual(configIn({ TZ: 'Asia/Tokyo', PSCHED_TIMEZONE: 'Europe/Berlin', PSCHED_LEGACY_TIMEZONE: 'UTC' }).main, { timeZone: 'Europe/Berlin', legacyTimeZone: 'UTC' });
    // and --help says so, for a migrating user to find
    for (const specs of [DISPATCHER_OPTIONS, MAIN_OPTIONS]) {
      assert.match(optionsHelp(specs), /--legacy-timezone[^\n]*\n[^\n]*env PSCHED_LEGACY_TIMEZONE, default --timezone when given, else this host's zone/);
    }
  });

  it('reads the original main server\'s forward in --legacy-timezone, the JSON API in --timezone, and logs the zone at start', async () => {
    const lines: string[] = [];
    await using t = await startTestDispatcher({ legacyTimeZone: 'America/New_York' }, { logger: { stream: { write: (line) => { lines.push(line); } } } });
    assert.ok(lines.some((line) => /reads times without an offset in America\/New_York/.test(line)), lines.join(''));
    assert.equal((await t.request('POST', '/scheduleMessage.php', { body: CAPTURED.mainForward.body, headers: FORM })).statusCode, 200);
    const api = await t.request('POST', '/v1/messages', { body: { username: 'a', message: 'b', scheduledAt: '2026-12-02 16:30:00' } });
    assert.equal(api.statusCode, 201, api.body);
    const stored = (await t.dispatcher.store.list({ limit: 10 })).map((m) => m.scheduledAt).sort();
    // 16:30 in New York (EST, UTC-5) is 21:30Z; the API's 16:30 is UTC
    assert.deepEqual(stored, [Date.UTC(2026, 11, 2, 16, 30), Date.UTC(2026, 11, 2, 21, 30)]);
  });

  it('the main server sends its dispatchers an instant: its own zone decides, never the dispatcher\'s', async () => {
    await using d = await startTestDispatcher({ timeZone: 'Pacific/Auckland', legacyTimeZone: 'America/New_York' });
    const url = await d.dispatcher.listen();
    await using t = await startTestMain({ dispatcherUrls: url, legacyTimeZone: 'Asia/Tokyo' });
    const response = await t.form('/scheduleMessage.php', { username: 'a', message: 'b', time: '2099-08-01T13:30' });
    assert.equal(response.statusCode, 200, response.body);
    const [stored] = await d.dispatcher.store.list({ limit: 1 });
    assert.equal(stored!.scheduledAt, Date.UTC(2099, 7, 1, 4, 30));
  });
});
