import assert from 'node:assert/strict';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * Checks a service's GET /openapi.json answer: an OpenAPI 3.1 JSON document
 * that lists every operation in `expected` ("POST /v1/messages"), documents
 * only routes the app really serves, and has no $ref to a missing schema.
 */
export function assertOpenApiDocument(app: FastifyInstance, response: LightMyRequestResponse, expected: readonly string[]): void {
  assert.equal(response.statusCode, 200);
  assert.match(response.headers['content-type'] as string, /^application\/json/);
  const doc = JSON.parse(response.body) as Json;
  assert.equal(doc.openapi, '3.1.0');
  const operations = Object.entries(doc.paths as Json).flatMap(([path, item]) =>
    Object.keys(item as Json).filter((k) => k !== 'parameters').map((method) => ({ method: method.toUpperCase(), path })));
  for (const { method, path } of operations) {
    assert.ok(app.hasRoute({ method: method as 'GET', url: path.replace(/\{(\w+)\}/g, ':$1') }), `documented but not served: ${method} ${path}`);
  }
  const documented = new Set(operations.map(({ method, path }) => `${method} ${path}`));
  for (const operation of expected) assert.ok(documented.has(operation), `missing ${operation}`);
  for (const [, name] of response.body.matchAll(/"\$ref":"#\/components\/schemas\/(\w+)"/g)) {
    assert.ok(doc.components.schemas[name!], `dangling $ref ${name}`);
  }
}
