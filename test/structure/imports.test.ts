// The shape of src/'s import graph: no cycles between files (type-only and lazy `import()`
// edges count too: a lazy import in a library module usually hides a cycle), and no library
// module reaches up into the CLI. Read from the TypeScript sources, so a type import that
// the compiler erases still shows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../helpers/env.js';

const SRC = path.join(PROJECT_ROOT, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

/** Relative specifiers of static imports/re-exports (type-only included) and `import()`. */
export function importSpecifiers(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const re = /(?:^|[\n;])\s*(?:import|export)\b[^'"`;]*?\bfrom\s*['"](\.{1,2}\/[^'"]+)['"]|(?:^|[\n;])\s*import\s*['"](\.{1,2}\/[^'"]+)['"]|\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;
  return [...code.matchAll(re)].map((m) => (m[1] ?? m[2] ?? m[3])!);
}

function importGraph(): Map<string, string[]> {
  const files = sourceFiles(SRC);
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const deps = importSpecifiers(readFileSync(f, 'utf8'))
      .map((s) => path.resolve(path.dirname(f), s.replace(/\.js$/, '.ts')))
      .filter((d) => known.has(d));
    graph.set(f, [...new Set(deps)]);
  }
  return graph;
}

/** Strongly connected components with more than one file (Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next); low.set(v, next); next++;
    stack.push(v); onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do { w = stack.pop()!; onStack.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1 || graph.get(v)!.includes(v)) out.push(scc);
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

const rel = (f: string) => path.relative(SRC, f);

test('the import scanner sees static, type-only, re-export, side-effect and lazy imports, not comments', () => {
  const src = [
    "import { a } from './a.js';",
    "import type { B } from '../b/b.js';",
    "export { c } from './c.js';",
    "import './d.js';",
    "const e = await import('./e.js');",
    '// import { x } from "./commented.js";',
    "import {\n  f,\n  g,\n} from './fg.js';",
    "import fs from 'node:fs';",
  ].join('\n');
  assert.deepEqual(importSpecifiers(src), ['./a.js', '../b/b.js', './c.js', './d.js', './e.js', './fg.js']);
});

test('no import cycles between src/ files', () => {
  const found = cycles(importGraph()).map((c) => c.map(rel).sort().join(' <-> '));
  assert.deepEqual(found, [], `import cycles:\n${found.join('\n')}`);
});

test('no library module imports the CLI (src/cli is the top layer)', () => {
  const cli = path.join(SRC, 'cli') + path.sep;
  const edges = [...importGraph()].flatMap(([f, deps]) => f.startsWith(cli) ? [] : deps.filter((d) => d.startsWith(cli)).map((d) => `${rel(f)} -> ${rel(d)}`));
  assert.deepEqual(edges, []);
});
