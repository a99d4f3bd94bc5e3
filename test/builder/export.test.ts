// The image export's crash safety: a build killed (SIGKILL) at each point where one of its writes
// becomes visible leaves a store whose tag names the old image or the new one, complete; and
// under strace, every blob is fsynced before it is renamed in, and index.json is renamed in only
// after the blobs it names and their directory are fsynced.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir, requireRoot, requireTool, runCli, CLI_MAIN, PROJECT_ROOT } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import type { ImageIndex, ImageManifest, ImageConfig } from '../../src/image/types.js';

const base = tempDir('drydock-builder-export-');
const root = path.join(base, 'store');
const ctx = path.join(base, 'ctx');
const TAG = 'docker.io/library/crash:latest';

/** Like the bench's late-line case: a cached ADD-less prefix, a RUN whose line changes, metadata after it. */
const dockerfile = (late: string) => `FROM busybox\nRUN echo early > /early\nRUN echo ${late} > /late\nCMD ["sh"]\n`;

before(async () => {
  requireRoot();
  requireTool('runc');
  await busyboxImage(root);
  await fsp.mkdir(ctx, { recursive: true });
});

async function buildLate(late: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  await fsp.writeFile(path.join(ctx, 'Dockerfile'), dockerfile(late));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_MAIN, 'build', '-q', '-t', 'crash', ctx], {
      cwd: PROJECT_ROOT, env: { ...process.env, DRYDOCK_ROOT: root, ...env }, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

const blobFile = (digest: string) => path.join(root, 'blobs', 'sha256', digest.slice(7));

/** The blob is in the store and its bytes hash to its name. */
function checkBlob(digest: string, what: string): Buffer {
  let bytes: Buffer;
  try { bytes = readFileSync(blobFile(digest)); } catch { assert.fail(`${what} ${digest} is not in the store`); }
  assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, digest, `${what} ${digest} is torn`);
  return bytes;
}

/** Every tag of index.json names a manifest whose config and layers are all there, intact. */
function checkStore(): string {
  const index = JSON.parse(readFileSync(path.join(root, 'index.json'), 'utf8')) as ImageIndex;
  let tagged: string | undefined;
  for (const d of index.manifests) {
    const manifest = JSON.parse(checkBlob(d.digest, 'manifest').toString('utf8')) as ImageManifest;
    const config = JSON.parse(checkBlob(manifest.config.digest, 'config').toString('utf8')) as ImageConfig;
    assert.equal(config.rootfs.diff_ids.length, manifest.layers.length);
    for (const l of manifest.layers) checkBlob(l.digest, 'layer');
    if (d.annotations?.['io.containerd.image.name'] === TAG) tagged = d.digest;
  }
  assert.ok(tagged, `${TAG} is not tagged any more`);
  return tagged;
}

async function lateOf(): Promise<string> {
  const r = await runCli(['run', '--rm', 'crash', 'cat', '/late'], { root });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

test('a build killed at any point of its export leaves the old tag or the new complete image', async () => {
  assert.equal((await buildLate('v0')).code, 0);
  let current = 'v0';
  let tagged = checkStore();
  // Each point where a write of the late-line rebuild becomes visible; blobs are the layer's,
  // the step image's and the image's configs and manifests, in whatever order they finish.
  const points = ['export.start', 'blob.synced', 'blob.renamed', 'blob.synced:3', 'blob.renamed:3', 'blob.renamed:5',
    'cache.root-written', 'export.image-written', 'index.staged', 'index.written'];
  for (const [i, point] of points.entries()) {
    const late = `v${i + 1}`;
    const r = await buildLate(late, { DRYDOCK_TEST_CRASH_AT: point });
    assert.equal(r.signal, 'SIGKILL', `the build did not pass ${point}: ${r.code} ${r.stderr}`);
    const now = checkStore();
    const images = await runCli(['images'], { root });
    assert.equal(images.code, 0, images.stderr);
    assert.match(images.stdout, /^crash +latest /m);
    const seen = await lateOf();
    if (now === tagged) assert.equal(seen, current, `${point}: the old tag names another image`);
    else {
      assert.equal(seen, late, `${point}: the tag moved to an image that is not the new one`);
      current = late;
      tagged = now;
    }
    // Before the new index.json is renamed in the tag has not moved; after, it has. At the other
    // points it may have (the step image's blobs and the cache entries are written beside the tag).
    if (['export.start', 'index.staged'].includes(point)) assert.notEqual(seen, late, `${point}: the tag moved before index.json was renamed in`);
    if (['index.written', 'export.image-written'].includes(point)) assert.equal(seen, late, `${point}: the tag did not move`);
    // The next build after the crash completes, and the tag then names its image; a lock the
    // killed build held is broken at once (its holder is dead), not waited for.
    const started = Date.now();
    const again = await buildLate(`${late}b`);
    assert.equal(again.code, 0, `${point}: ${again.stderr}`);
    assert.ok(Date.now() - started < 15_000, `${point}: the build after the crash took ${Date.now() - started} ms`);
    tagged = checkStore();
    current = `${late}b`;
    assert.equal(await lateOf(), current);
  }
  assert.equal(execFileSync('findmnt', ['-rn', '-o', 'TARGET']).toString().split('\n').filter((m) => m.startsWith(root)).length, 0, 'mounts left behind');
});

test('under strace: each blob is fsynced before its rename, index.json is renamed in after its blobs and their directory are durable', async () => {
  requireTool('strace');
  assert.equal((await buildLate('s0')).code, 0);
  await fsp.writeFile(path.join(ctx, 'Dockerfile'), dockerfile('s1'));
  const log = path.join(base, 'strace.log');
  // One log for all threads, in the order the calls were made (-f without -ff), each call's
  // file descriptors named (-y). Each blob waits 300 ms between its fsync and its rename: an
  // index.json that did not wait for its blobs would be renamed in first.
  execFileSync('strace', ['-f', '-qq', '-y', '-o', log, '-e', 'trace=openat,rename,renameat2,fsync,fdatasync',
    process.execPath, CLI_MAIN, 'build', '-q', '-t', 'crash', ctx], { env: { ...process.env, DRYDOCK_ROOT: root, DRYDOCK_TEST_PAUSE_AT: 'blob.synced=300' }, stdio: ['ignore', 'ignore', 'pipe'] });
  // A call split by another thread's ("<unfinished ...>", "<... fsync resumed>") counts when it
  // completes: its start line names the file, its resumed line (same thread) ends it.
  // `start` is the line where the call was entered (its unfinished line, or the line itself when
  // strace printed it whole: nothing else happened meanwhile), `at` the line where it completed.
  type Call = { kind: 'fsync' | 'rename'; path: string; to?: string; start: number; at: number };
  const calls: Call[] = [];
  const pending = new Map<string, { line: string; n: number }>();
  const lines = (await fsp.readFile(log, 'utf8')).split('\n');
  for (const [n, raw] of lines.entries()) {
    const m = /^(\d+) +(.*)$/.exec(raw);
    if (!m) continue;
    const [, tid, rest] = m;
    let line = rest!;
    let start = n;
    if (line.endsWith('<unfinished ...>')) { pending.set(tid!, { line: line.replace(' <unfinished ...>', ''), n }); continue; }
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(line);
    if (resumed) {
      const p = pending.get(tid!);
      line = `${p?.line ?? ''}${resumed[2]}`;
      start = p?.n ?? n;
    }
    const fsync = /^f(?:data)?sync\(\d+<([^>]+)>\) += 0/.exec(line);
    if (fsync) calls.push({ kind: 'fsync', path: fsync[1]!, start, at: n });
    const rename = /^rename(?:at2)?\((?:AT_FDCWD, )?"([^"]+)", (?:AT_FDCWD, )?"([^"]+)".*\) += 0/.exec(line);
    if (rename) calls.push({ kind: 'rename', path: rename[1]!, to: rename[2]!, start, at: n });
  }
  const tagged = checkStore();
  const manifest = JSON.parse(readFileSync(blobFile(tagged), 'utf8')) as ImageManifest;
  const blobsDir = path.join(root, 'blobs', 'sha256');
  const indexRename = calls.find((c) => c.kind === 'rename' && c.to === path.join(root, 'index.json'));
  assert.ok(indexRename, 'index.json was not renamed in');
  assert.ok(calls.some((c) => c.kind === 'fsync' && c.path === indexRename.path && c.at < indexRename.start), 'the new index.json was not fsynced before its rename');
  assert.ok(calls.some((c) => c.kind === 'fsync' && c.path === root && c.start > indexRename.at), 'the store root was not fsynced after index.json was renamed in');
  // The manifest, its config and the new layer were written by this build: each renamed in
  // after its fsync, and a directory fsync after the last of them comes before the index's rename.
  const mine = [tagged, manifest.config.digest, manifest.layers[manifest.layers.length - 1]!.digest];
  let lastRename = -1;
  for (const d of mine) {
    const r = calls.find((c) => c.kind === 'rename' && c.to === blobFile(d));
    assert.ok(r, `${d} was not renamed in by this build`);
    assert.ok(calls.some((c) => c.kind === 'fsync' && c.path === r.path && c.at < r.start), `${d} was renamed in before its fsync`);
    lastRename = Math.max(lastRename, r.at);
  }
  assert.ok(lastRename < indexRename.at, 'a blob of the image was renamed in after index.json');
  assert.ok(calls.some((c) => c.kind === 'fsync' && c.path === blobsDir && c.start > lastRename && c.at < indexRename.start),
    'blobs/sha256 was not fsynced between the last blob rename and the rename of index.json');
});
