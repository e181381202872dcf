import { describe, it } from 'node:test';
import { startTestMain } from './support/main.ts';
import { assertOpenApiDocument } from './support/openapi.ts';

describe("the main server's GET /openapi.json", () => {
  it('documents every route the server has, each one a route it really serves, with no dangling $ref', async () => {
    await using t = await startTestMain();
    assertOpenApiDocument(t.server.app, await t.request('GET', '/openapi.json'), [
      'POST /v1/scheduled', 'GET /v1/scheduled', 'PATCH /v1/scheduled/{id}', 'DELETE /v1/scheduled/{id}', 'POST /v1/posts', 'GET /v1/posts',
      'GET /v1/events', 'POST /scheduleMessage.php', 'POST /postMessage.php', 'GET /metrics', 'GET /healthz', 'GET /openapi.json', 'GET /',
      'POST /v1/schedules', 'GET /v1/schedules', 'POST /v1/schedules/preview', 'GET /v1/schedules/{id}', 'PATCH /v1/schedules/{id}',
      'DELETE /v1/schedules/{id}', 'GET /v1/schedules/{id}/preview',
    ]);
  });
});
