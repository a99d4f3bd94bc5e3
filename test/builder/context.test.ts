// The build context's .dockerignore filtering and COPY source globs, through SourceTree (no root
// or runc needed): one matcher, patternmatcher's parent-directory rule, Go filepath.Match classes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/env.js';
import { SourceTree } from '../../src/builder/index.js';

async function context(files: Record<string, string>): Promise<SourceTree> {
  const dir = tempDir('drydock-context-');
  for (const [p, content] of Object.entries(files)) {
    await fsp.mkdir(path.dirname(path.join(dir, p)), { recursive: true });
    await fsp.writeFile(path.join(dir, p), content);
  }
  return SourceTree.openContext(dir);
}

async function walkAll(tree: SourceTree, src: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await tree.resolve([src], 'COPY')) {
    out.push(e.rel);
    if (e.stat.isDirectory()) for await (const c of tree.walk(e)) out.push(c.rel);
  }
  return out;
}

const nodeModules = {
  'app.js': 'a', 'node_modules/pkg/index.js': 'i', 'node_modules/pkg/keep.txt': 'k',
  'web/node_modules/x/y.js': 'y', 'web/main.js': 'm', 'docs/keep.txt': 'd',
};

test('**/node_modules excludes everything below any node_modules; COPY of a path inside it finds nothing', async () => {
  const tree = await context({ ...nodeModules, '.dockerignore': '**/node_modules\n' });
  await assert.rejects(tree.resolve(['node_modules/pkg'], 'COPY'), /COPY failed: file not found in build context: stat node_modules\/pkg: file does not exist/);
  await assert.rejects(tree.resolve(['web/node_modules/x/y.js'], 'COPY'), /file not found/);
  assert.deepEqual(await walkAll(tree, '.'), ['.', '.dockerignore', 'app.js', 'docs', 'docs/keep.txt', 'web', 'web/main.js']);
});

test('!**/keep.txt re-includes keep.txt files only, not the rest of node_modules', async () => {
  const tree = await context({ ...nodeModules, '.dockerignore': '**/node_modules\n!**/keep.txt\n' });
  const all = await walkAll(tree, '.');
  assert.ok(all.includes('node_modules/pkg/keep.txt'), all.join(' '));
  assert.ok(!all.includes('node_modules/pkg/index.js'), all.join(' '));
  assert.ok(!all.includes('web/node_modules/x/y.js'), all.join(' '));
});

test('COPY source globs use the same Go filepath.Match classes and escapes', async () => {
  const tree = await context({ ']x.txt': '1', 'ax.txt': '2', 'bx.txt': '3', '-y': '4', 'zy': '5', '*star': '6', 'xstar': '7' });
  const rels = async (src: string) => (await tree.resolve([src], 'COPY')).map((e) => e.rel);
  assert.deepEqual(await rels('[\\]a]x.txt'), [']x.txt', 'ax.txt']);
  assert.deepEqual(await rels('[\\-z]y'), ['-y', 'zy']);
  assert.deepEqual(await rels('[^a]x.txt'), [']x.txt', 'bx.txt']);
  assert.deepEqual(await rels('\\*star'), ['*star']);
  for (const bad of ['[]a]x.txt', '[x-]y', '[a-b-c]']) {
    await assert.rejects(tree.resolve([bad], 'COPY'), /syntax error in pattern/, bad);
  }
});

test('a malformed .dockerignore pattern is an error naming the file', async () => {
  await assert.rejects(context({ 'a': '1', '.dockerignore': 'ok\n[-]\n' }), /\.dockerignore: syntax error in pattern "\[-\]"/);
});

test('COPY --parents keeps source paths; --exclude drops matching entries (copyEntries into a plain directory)', async () => {
  const { copyEntries } = await import('../../src/builder/copy.js');
  const { PatternMatcher } = await import('../../src/dockerfile/index.js');
  const tree = await context({ 'x/a.txt': 'xa', 'y/a.txt': 'ya', 'y/b.md': 'yb', 'dir/keep.txt': 'k', 'dir/sub/drop.log': 'd', 'dir/sub/ok.txt': 'o' });
  const copy = async (srcs: string[], dest: string, opts: { parents?: boolean; exclude?: string[] }) => {
    const root = tempDir('drydock-copy-');
    const entries = await tree.resolve(srcs, 'COPY');
    await copyEntries(tree, entries, root, dest, {
      uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, instruction: 'COPY',
      parents: opts.parents, exclude: opts.exclude ? new PatternMatcher(opts.exclude) : undefined,
    });
    const out: string[] = [];
    const walk = async (d: string, rel: string) => {
      for (const n of (await fsp.readdir(d)).sort()) {
        const st = await fsp.stat(path.join(d, n));
        if (st.isDirectory()) await walk(path.join(d, n), `${rel}${n}/`); else out.push(`${rel}${n}`);
      }
    };
    await walk(root, '/');
    return out;
  };
  assert.deepEqual(await copy(['x/a.txt', 'y/a.txt'], '/parents/', { parents: true }), ['/parents/x/a.txt', '/parents/y/a.txt']);
  assert.deepEqual(await copy(['*/a.txt'], '/p/', { parents: true }), ['/p/x/a.txt', '/p/y/a.txt']);
  assert.deepEqual(await copy(['dir'], '/d/', { parents: true }), ['/d/dir/keep.txt', '/d/dir/sub/drop.log', '/d/dir/sub/ok.txt']);
  // .dockerignore syntax: "*.log" does not cross "/", "**/*.log" does.
  assert.deepEqual(await copy(['dir'], '/d/', { exclude: ['*.log'] }), ['/d/keep.txt', '/d/sub/drop.log', '/d/sub/ok.txt']);
  assert.deepEqual(await copy(['dir'], '/d/', { exclude: ['**/*.log'] }), ['/d/keep.txt', '/d/sub/ok.txt']);
  assert.deepEqual(await copy(['dir'], '/d/', { exclude: ['sub'] }), ['/d/keep.txt']);
  assert.deepEqual(await copy(['y/*'], '/e/', { exclude: ['*.md'] }), ['/e/a.txt']);
});
