import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startTestMain } from './support/main.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe("the main server's GET /openapi.json", () => {
  it('documents every route the server has, each one a route it really serves, with no dangling $ref', async () => {
    await using t = await startTestMain();
    const response = await t.request('GET', '/openapi.json');
    assert.equal(response.statusCode, 200);
    assert.match(response.headers['content-type'] as string, /^application\/json/);
    const doc = JSON.parse(response.body) as Json;
    assert.equal(doc.openapi, '3.1.0');
    const operations = Object.entries(doc.paths as Json).flatMap(([path, item]) =>
      Object.keys(item as Json).filter((k) => k !== 'parameters').map((method) => ({ method: method.toUpperCase(), path })));
    for (const { method, path } of operations) {
      assert.ok(t.server.app.hasRoute({ method: method as 'GET', url: path.replace(/\{(\w+)\}/g, ':$1') }), `documented but not served: ${method} ${path}`);
    }
    const documented = new Set(operations.map(({ method, path }) => `${method} ${path}`));
    for (const expected of [
      'POST /v1/scheduled', 'GET /v1/scheduled', 'PATCH /v1/scheduled/{id}', 'DELETE /v1/scheduled/{id}', 'POST /v1/posts', 'GET /v1/posts',
      'GET /v1/events', 'POST /scheduleMessage.php', 'POST /postMessage.php', 'GET /metrics', 'GET /healthz', 'GET /openapi.json', 'GET /',
    ]) assert.ok(documented.has(expected), `missing ${expected}`);
    for (const [, name] of response.body.matchAll(/"\$ref":"#\/components\/schemas\/(\w+)"/g)) {
      assert.ok(doc.components.schemas[name!], `dangling $ref ${name}`);
    }
  });
});
