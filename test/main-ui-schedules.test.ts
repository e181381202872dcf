import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../src/clock.ts';
import { startTestDispatcher, type TestDispatcher } from './support/dispatcher.ts';
import { startTestMain, type TestMain } from './support/main.ts';

/** The main page's repeat choice (with a preview before saving) and its list of recurring messages. */

async function listeningDispatcher(): Promise<TestDispatcher & { url: string }> {
  const t = await startTestDispatcher();
  const url = await t.dispatcher.listen();
  return Object.assign(t, { url });
}

function form(fields: Record<string, string | string[]>): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) for (const one of ([] as string[]).concat(value)) params.append(name, one);
  return params.toString();
}

async function submit(t: TestMain, path: string, fields: Record<string, string | string[]>): Promise<string> {
  const response = await t.request('POST', path, { body: form(fields), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(response.statusCode, 303, response.body);
  return (await t.request('GET', response.headers.location as string)).body;
}

function section(page: string, id: string, closing = '</section>'): string {
  const start = page.indexOf(`id="${id}"`);
  assert.ok(start >= 0, `no #${id}`);
  return page.slice(start, page.indexOf(closing, start));
}

describe('the main page: repeating messages', () => {
  it('offers a repeat choice, previews the next posts with DST notes before saving, saves, lists, pauses, resumes and deletes', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url, timeZone: 'America/New_York' }, { clock: new FakeClock(Date.parse('2027-03-10T12:00:00Z')) });
    const home = (await t.request('GET', '/')).body;
    const repeat = section(home, 'compose-repeat', '</fieldset>');
    assert.match(repeat, /<select id="compose-repeat-kind" name="repeat"><option value="none" selected>Once<\/option>/);
    for (const day of ['MON', 'SUN']) assert.match(repeat, new RegExp(`name="days" value="${day}"`));
    assert.match(repeat, /name="dstGap"/);
    assert.match(section(home, 'compose', '</form>'), /name="action" value="preview"/);
    assert.match(section(home, 'schedules-card'), /No recurring messages/);

    const fields = {
      username: 'Ann', message: 'Water the plants', time: '2027-03-13T02:30', timezone: 'America/New_York', idempotencyKey: 'form-1',
      repeat: 'weekly', days: ['SAT', 'SUN'], rule: '', dstGap: 'shift', dstOverlap: 'first',
    };
    const previewed = await submit(t, '/ui/schedule', { ...fields, action: 'preview' });
    assert.match(previewed, /nothing is saved yet/);
    const preview = section(previewed, 'compose-preview', '</div>');
    const lines = [...preview.matchAll(/<li>(.*?)<\/li>/gs)].map((m) => m[1]!);
    assert.equal(lines.length, 5);
    assert.match(lines[0]!, /datetime="2027-03-13T07:30:00.000Z".*= 2027-03-13 02:30:00 -05:00 \(America\/New_York\)/s);
    assert.match(lines[1]!, /= 2027-03-14 03:30:00 -04:00 .*DST gap/s);
    assert.deepEqual((await d.request('GET', '/v1/schedules')).json().items, [], 'a preview saves nothing');
    // the form comes back as it was filled in
    assert.match(section(previewed, 'compose-repeat', '</fieldset>'), /value="weekly" selected/);
    assert.match(section(previewed, 'compose-repeat', '</fieldset>'), /value="SAT" checked/);

    const saved = await submit(t, '/ui/schedule', fields);
    assert.match(saved, /Repeating message saved: first post 2027-03-13 02:30:00 \(America\/New_York, UTC-05:00\)/);
    const stored = (await d.request('GET', '/v1/schedules')).json().items;
    assert.equal(stored.length, 1);
    assert.equal(stored[0].cron, '30 2 * * SAT,SUN');
    const list = section(saved, 'schedules-card');
    assert.match(list, /cron 30 2 \* \* SAT,SUN in America\/New_York/);
    assert.match(list, /next <time datetime="2027-03-13T07:30:00.000Z">.*= 2027-03-13 02:30:00 -05:00/s);
    const id = stored[0].id as string;
    assert.match(await submit(t, `/ui/schedules/${id}/pause`, {}), /Paused\./);
    assert.equal((await d.request('GET', `/v1/schedules/${id}`)).json().status, 'paused');
    assert.match(await submit(t, `/ui/schedules/${id}/resume`, {}), /Resumed/);
    assert.match(await submit(t, `/ui/schedules/${id}/delete`, {}), /Deleted/);
    assert.equal((await d.request('GET', `/v1/schedules/${id}`)).statusCode, 404);
  });

  it('a custom rule: "every 15m", or a cron rule; a bad one is refused with the form kept', async () => {
    await using d = await listeningDispatcher();
    await using t = await startTestMain({ dispatcherUrls: d.url }, { clock: new FakeClock(Date.parse('2027-01-01T00:00:00Z')) });
    const base = { username: 'Ann', message: 'tick', time: '2027-01-01T00:30', timezone: 'UTC', idempotencyKey: 'form-2', repeat: 'custom' };
    assert.match(await submit(t, '/ui/schedule', { ...base, rule: 'every 15m' }), /first post 2027-01-01 00:30:00/);
    const bad = await submit(t, '/ui/schedule', { ...base, idempotencyKey: 'form-3', rule: '61 * * * *' });
    assert.match(bad, /Not scheduled: cron is not a valid cron pattern/);
    assert.match(section(bad, 'compose-repeat', '</fieldset>'), /value="61 \* \* \* \*"/);
    assert.equal((await d.request('GET', '/v1/schedules')).json().items.length, 1);
  });
});
