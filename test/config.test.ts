import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, dispatcherConfig, mainConfig, parseDuration } from '../src/config.ts';

describe('config', () => {
  it('has documented defaults', () => {
    const config = dispatcherConfig({}, {});
    assert.equal(config.port, 8081);
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.db, './data/dispatcher.db');
    assert.equal(config.mainUrl, 'http://127.0.0.1:8080');
    assert.equal(config.mainProtocol, 'json');
    assert.equal(config.timeZone, 'UTC');
    assert.ok(Object.isFrozen(config));
    assert.equal(mainConfig({}, {}).port, 8080);
    assert.deepEqual(mainConfig({}, {}).dispatcherUrls, ['http://127.0.0.1:8081']);
  });

  it('takes flags over environment over defaults', () => {
    assert.equal(dispatcherConfig({}, { PSCHED_DISPATCHER_PORT: '9000' }).port, 9000);
    assert.equal(dispatcherConfig({ port: '9001' }, { PSCHED_DISPATCHER_PORT: '9000' }).port, 9001);
    assert.deepEqual(mainConfig({ dispatcherUrls: 'http://a:1/, http://b:2' }, {}).dispatcherUrls, ['http://a:1', 'http://b:2']);
    assert.equal(dispatcherConfig({ horizon: '2m' }, {}).horizonMs, 120_000);
  });

  it('reads variables that mean one thing each: one environment can hold both services\' ports and databases', () => {
    const env = { PSCHED_MAIN_PORT: '9080', PSCHED_DISPATCHER_PORT: '9081', PSCHED_MAIN_DB: 'm.db', PSCHED_DISPATCHER_DB: 'd.db' };
    assert.deepEqual([mainConfig({}, env).port, mainConfig({}, env).db], [9080, 'm.db']);
    assert.deepEqual([dispatcherConfig({}, env).port, dispatcherConfig({}, env).db], [9081, 'd.db']);
  });

  it('refuses the retired shared PSCHED_PORT and PSCHED_DB, naming what replaces them', () => {
    assert.throws(() => dispatcherConfig({}, { PSCHED_PORT: '9000' }), /PSCHED_PORT is no longer read .*set PSCHED_DISPATCHER_PORT for this dispatcher, and PSCHED_MAIN_PORT for the other/);
    assert.throws(() => mainConfig({}, { PSCHED_DB: 'x.db' }), /PSCHED_DB is no longer read .*set PSCHED_MAIN_DB for this main server/);
  });

  it('refuses bad values with a message naming the option', () => {
    assert.throws(() => dispatcherConfig({ port: 'eighty' }, {}), /--port must be a whole number/);
    assert.throws(() => dispatcherConfig({}, { PSCHED_MAIN_PROTOCOL: 'soap' }), /PSCHED_MAIN_PROTOCOL must be json or legacy/);
    assert.throws(() => mainConfig({ legacyPostEncoding: 'triple' }, {}), /--legacy-post-encoding must be double or single/);
    assert.throws(() => dispatcherConfig({ timeZone: 'Mars/Base' }, {}), /--timezone must be an IANA time zone/);
    assert.throws(() => mainConfig({ dispatcherUrls: 'ftp://x' }, {}), /--dispatcher-url must be an http/);
  });

  it('refuses to listen off loopback without a token', () => {
    assert.throws(() => dispatcherConfig({ host: '0.0.0.0' }, {}), (err: unknown) => err instanceof ConfigError && /api-token/.test(err.message));
    assert.equal(dispatcherConfig({ host: '0.0.0.0', apiToken: 't' }, {}).host, '0.0.0.0');
    assert.equal(dispatcherConfig({ host: '::1' }, {}).host, '::1');
  });

  it('refuses a main server off loopback with an access token but no signing secret', () => {
    // it would take unsigned deliveries (POST /v1/posts) from anyone who can reach it
    assert.throws(() => mainConfig({ host: '0.0.0.0', accessToken: 't' }, {}),
      (err: unknown) => err instanceof ConfigError && /--signing-secret/.test(err.message) && /PSCHED_SIGNING_SECRET/.test(err.message));
    assert.throws(() => mainConfig({ host: '0.0.0.0' }, { PSCHED_ACCESS_TOKEN: 't' }), ConfigError);
    assert.throws(() => mainConfig({ host: '0.0.0.0' }, {}), (err: unknown) => err instanceof ConfigError && /--access-token/.test(err.message));
    assert.equal(mainConfig({ host: '0.0.0.0', accessToken: 't', signingSecret: 's' }, {}).host, '0.0.0.0');
    // on loopback only this machine can deliver: allowed, as before
    assert.equal(mainConfig({ accessToken: 't' }, {}).signingSecret, undefined);
  });

  it('reads --allowed-hosts / PSCHED_ALLOWED_HOSTS as lower-case names, none by default', () => {
    assert.deepEqual(dispatcherConfig({}, {}).allowedHosts, []);
    assert.deepEqual(mainConfig({}, {}).allowedHosts, []);
    assert.deepEqual(dispatcherConfig({ allowedHosts: 'Psched.LAN, [fd00::1]' }, {}).allowedHosts, ['psched.lan', '[fd00::1]']);
    assert.deepEqual(mainConfig({}, { PSCHED_ALLOWED_HOSTS: 'a.lan,b.lan' }).allowedHosts, ['a.lan', 'b.lan']);
    for (const bad of ['http://psched.lan', 'psched.lan:8080', 'psched.lan/x', 'user@psched.lan', '*.lan']) {
      assert.throws(() => dispatcherConfig({ allowedHosts: bad }, {}), /--allowed-hosts must list host names/, bad);
    }
  });

  it('parses durations', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('7d'), 7 * 86_400_000);
    assert.equal(parseDuration('300'), undefined, 'a bare number has no unit');
    assert.equal(parseDuration('soon'), undefined);
  });
});
