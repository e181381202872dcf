import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { init, parse } from 'es-module-lexer';

/**
 * The import graph of src/, as Node runs it: each file's types stripped
 * (type-only imports vanish, as at run time), its imports read by
 * es-module-lexer. (dependency-cruiser and madge parse TypeScript through the
 * compiler's JavaScript API, which TypeScript 7 no longer ships.)
 *
 * The rules: no cycles; the main server and the dispatcher share only
 * src/protocol and the common modules, never each other's internals; the
 * wire format (src/protocol) depends on neither; a store never loads the web
 * framework or the configuration (an SQLite store opened by a script must
 * not bring Fastify and pino along).
 */

const SRC = resolve(import.meta.dirname, '..', 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** file (relative to src) -> the src files and packages it imports at run time. */
async function importGraph(): Promise<Map<string, { local: string[]; packages: string[] }>> {
  await init();
  const graph = new Map<string, { local: string[]; packages: string[] }>();
  for (const file of sourceFiles(SRC)) {
    const [imports] = parse(stripTypeScriptTypes(readFileSync(file, 'utf8')));
    const local: string[] = [];
    const packages: string[] = [];
    for (const found of imports) {
      const specifier = found.type === 'import-meta' ? undefined : found.specifier;
      if (!specifier) continue;
      if (specifier.startsWith('.')) local.push(relative(SRC, resolve(dirname(file), specifier)));
      else packages.push(specifier);
    }
    graph.set(relative(SRC, file), { local, packages });
  }
  return graph;
}

function findCycle(graph: Map<string, { local: string[] }>): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>();
  const path: string[] = [];
  const visit = (file: string): string[] | undefined => {
    if (state.get(file) === 'done') return undefined;
    if (state.get(file) === 'visiting') return [...path.slice(path.indexOf(file)), file];
    state.set(file, 'visiting');
    path.push(file);
    for (const next of graph.get(file)?.local ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(file, 'done');
    return undefined;
  };
  for (const file of graph.keys()) {
    const cycle = visit(file);
    if (cycle) return cycle;
  }
  return undefined;
}

/** Every file `from` reaches through its imports, itself excluded. */
function reachable(graph: Map<string, { local: string[] }>, from: string): Set<string> {
  const seen = new Set<string>();
  const stack = [...(graph.get(from)?.local ?? [])];
  while (stack.length > 0) {
    const file = stack.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    stack.push(...(graph.get(file)?.local ?? []));
  }
  return seen;
}

const graph = await importGraph();
const under = (folder: string) => [...graph.keys()].filter((file) => file.startsWith(`${folder}/`));

describe('src/ import layering', () => {
  it('reads a real graph (the check cannot pass by reading nothing)', () => {
    assert.ok(graph.size > 40, `${graph.size} files`);
    assert.ok(graph.get('dispatcher/app.ts')!.local.includes('dispatcher/engine.ts'));
  });

  it('has no import cycle', () => {
    assert.equal(findCycle(graph)?.join(' -> '), undefined);
  });

  for (const [side, other] of [['main', 'dispatcher'], ['dispatcher', 'main']] as const) {
    it(`the ${side} server imports none of the ${other}'s modules`, () => {
      const leaks = under(side).flatMap((file) => graph.get(file)!.local.filter((to) => to.startsWith(`${other}/`)).map((to) => `${file} -> ${to}`));
      assert.deepEqual(leaks, []);
    });
  }

  it('the wire format depends on no service and no store', () => {
    const leaks = under('protocol').flatMap((file) => graph.get(file)!.local
      .filter((to) => /^(main|dispatcher|stores|cli)\//.test(to)).map((to) => `${file} -> ${to}`));
    assert.deepEqual(leaks, []);
  });

  it('the configuration does not load the web framework (the CLI checks options before any server exists)', () => {
    const loaded = ['config.ts', ...reachable(graph, 'config.ts')];
    assert.deepEqual(loaded.filter((f) => f === 'http.ts' || graph.get(f)!.packages.some((p) => p === 'fastify' || p.startsWith('@fastify/'))), []);
  });

  it('a store never loads the web framework or the configuration', () => {
    for (const file of under('stores')) {
      const loaded = [file, ...reachable(graph, file)];
      const http = loaded.filter((f) => f === 'http.ts' || f === 'config.ts' || graph.get(f)!.packages.some((p) => p === 'fastify' || p.startsWith('@fastify/')));
      assert.deepEqual(http, [], `${file} loads ${http.join(', ')}`);
    }
  });
});
