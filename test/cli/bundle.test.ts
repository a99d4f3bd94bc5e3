// The installed `drydock` bin runs the esbuild bundle that `npm run build` writes to dist/cli/
// (scripts/bundle-cli.mjs): the bundle is what users start, so it must behave as dist/src does —
// lazy command chunks, commander errors, and the detached monitor, a second entry that
// src/runtime/lifecycle.ts finds next to the code it runs from. Speed is bench/startup.ts's job.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { busyboxImage } from '../helpers/images.js';
import { PROJECT_ROOT, requireRoot, requireTool, tempDir } from '../helpers/env.js';

const BIN = path.join(PROJECT_ROOT, 'bin/drydock.js');

// Rebuilt here so the test checks today's sources, not whatever bundle the last build left.
const built = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'scripts/bundle-cli.mjs')], { encoding: 'utf8' });

/** Runs the bin and lists the drydock files Node's ESM loader opened (a loader hook on stderr). */
function bin(args: string[], root: string) {
  const hook = 'data:text/javascript,import{writeSync}from"node:fs";export async function resolve(s,c,n){const r=await n(s,c);writeSync(2,"LOADED "+r.url+"\\n");return r}';
  const r = spawnSync(process.execPath, ['--no-warnings', '--experimental-loader', hook, BIN, ...args], {
    encoding: 'utf8', env: { ...process.env, DRYDOCK_ROOT: root }, timeout: 120_000,
  });
  const loaded = [...r.stderr.matchAll(/^LOADED file:\/\/(\S+)$/gm)].map((m) => path.relative(PROJECT_ROOT, m[1]!));
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.replace(/^LOADED .*\n/gm, ''), loaded };
}

test('the bin runs the bundle in dist/cli, never the per-file dist/src', () => {
  assert.equal(built.status, 0, built.stderr);
  assert.ok(existsSync(path.join(PROJECT_ROOT, 'dist/cli/drydock.js')));
  const root = tempDir();
  const v = bin(['--version'], root);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
  // `--version` needs neither commander nor any command module: the entry and its own chunks.
  assert.ok(v.loaded.every((f) => f === 'bin/drydock.js' || f.startsWith('dist/cli/')), v.loaded.join(' '));
  assert.ok(v.loaded.length <= 4, `--version loads ${v.loaded.length} files: ${v.loaded.join(' ')}`);

  const images = bin(['images', '-q'], root);
  assert.equal(images.code, 0, images.stderr);
  assert.equal(images.stdout, '');
  assert.ok(images.loaded.every((f) => !f.startsWith('dist/src/') && !f.startsWith('node_modules/')), images.loaded.join(' '));

  // commander's own errors still end the process with its message and status.
  const bad = bin(['images', '--no-such-flag'], root);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /error: unknown option '--no-such-flag'/);
});

test('the bundled CLI starts a detached container through the bundled monitor', async () => {
  requireRoot();
  requireTool('runc');
  assert.equal(built.status, 0, built.stderr);
  const root = tempDir();
  await busyboxImage(root);
  const run = bin(['run', '-d', '--network', 'none', 'busybox', 'sh', '-c', 'echo from-the-monitor'], root);
  assert.equal(run.code, 0, run.stderr);
  const id = run.stdout.trim();
  const wait = bin(['wait', id], root);
  assert.equal(wait.stdout, '0\n', wait.stderr);
  assert.equal(bin(['logs', id], root).stdout, 'from-the-monitor\n');
  assert.equal(bin(['rm', id], root).code, 0);
});
