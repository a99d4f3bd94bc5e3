// copy.ts: copyEntries' tree copy into an upper dir (synchronous calls, copyOneSync) lets the
// event loop in at least every SYNC_SLICE_MS: other stages' steps, progress and signals do not
// wait for a large tree. isArchive (ADD's check, run beside the step's mount): small gzip and
// plain archives are checked on the main thread, the rest through the decompressor stream; both
// must answer the same for tars, non-tars and corrupt input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, statSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { copyEntries, isArchive } from '../../src/builder/copy.js';
import { SourceTree } from '../../src/builder/context.js';
import { tempDir } from '../helpers/env.js';
import { makeTar, gzip, zstd } from '../helpers/tars.js';

test('a large tree copied into the upper dir lets the event loop run meanwhile', async () => {
  const ctx = tempDir('drydock-copy-ctx-');
  for (let d = 0; d < 12; d++) {
    await fsp.mkdir(path.join(ctx, 'tree', `d${d}`), { recursive: true });
    for (let f = 0; f < 8; f++) await fsp.writeFile(path.join(ctx, 'tree', `d${d}`, `f${f}`), randomBytes(512 * 1024));
  }
  // The rootfs is its own upper dir with no lowers: the copy takes the upper-dir path.
  const rootfs = tempDir('drydock-copy-rootfs-');
  const tree = new SourceTree(ctx);
  const entries = await tree.resolve(['tree'], 'COPY');
  let ticks = 0;
  let ticking = true;
  const tick = () => { if (!ticking) return; ticks++; setImmediate(tick); };
  setImmediate(tick);
  const started = performance.now();
  await copyEntries(tree, entries, rootfs, '/out', { uid: 0, gid: 0, instruction: 'COPY', overlay: { upper: rootfs, lowers: [] } });
  const took = performance.now() - started;
  ticking = false;
  assert.equal(statSync(path.join(rootfs, 'out/d11/f7')).size, 512 * 1024);
  // 48 MiB take well over three slices here; a copy that never yielded gives no tick at all.
  if (took >= 30) assert.ok(ticks >= 1, `no turn of the event loop in a ${took.toFixed(0)} ms copy`);
});

test('into the upper dir, small files (synchronous) and large ones (thread pool) get the same owner, mode and times', async () => {
  const ctx = tempDir('drydock-copy-meta-');
  const sizes = [10, 64 * 1024 - 1, 64 * 1024, 3 * 1024 * 1024];
  const mtime = new Date('2021-06-01T12:00:00Z');
  await fsp.mkdir(path.join(ctx, 'tree'));
  for (const size of sizes) {
    const file = path.join(ctx, 'tree', `f${size}`);
    await fsp.writeFile(file, randomBytes(size), { mode: 0o640 });
    await fsp.chmod(file, 0o640);
    await fsp.utimes(file, mtime, mtime);
  }
  for (const chmod of [undefined, 0o755]) {
    const rootfs = tempDir('drydock-copy-meta-rootfs-');
    const tree = new SourceTree(ctx);
    const entries = await tree.resolve(['tree'], 'COPY');
    await copyEntries(tree, entries, rootfs, '/out', { uid: 7, gid: 8, chmod, instruction: 'COPY', overlay: { upper: rootfs, lowers: [] } });
    for (const size of sizes) {
      const st = statSync(path.join(rootfs, 'out', `f${size}`));
      assert.deepEqual(
        { size: st.size, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, mtime: st.mtimeMs },
        { size, uid: 7, gid: 8, mode: chmod ?? 0o640, mtime: mtime.getTime() },
        `f${size} (chmod ${chmod?.toString(8)})`,
      );
    }
  }
});

test('large files that fail to copy on the thread pool fail the COPY with the first error, and none is left unhandled', async () => {
  const ctx = tempDir('drydock-copy-fail-');
  await fsp.mkdir(path.join(ctx, 'tree'));
  await fsp.writeFile(path.join(ctx, 'tree', 'big'), randomBytes(256 * 1024));
  const dirStat = statSync(path.join(ctx, 'tree'));
  const bigStat = statSync(path.join(ctx, 'tree', 'big'));
  // The walk saw twelve large files that are gone by the time they are copied: more than
  // FileCopies.LIMIT, so one is started after the first failure was recorded.
  const tree = { *walk() { for (let i = 0; i < 12; i++) yield { hostPath: path.join(ctx, 'gone', `f${i}`), rel: `tree/f${i}`, stat: bigStat }; } } as unknown as SourceTree;
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    const rootfs = tempDir('drydock-copy-fail-rootfs-');
    await assert.rejects(
      copyEntries(tree, [{ hostPath: path.join(ctx, 'tree'), rel: 'tree', stat: dirStat }], rootfs, '/out', { uid: 0, gid: 0, instruction: 'COPY', overlay: { upper: rootfs, lowers: [] } }),
      { code: 'ENOENT' },
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
  assert.deepEqual(unhandled, []);
});

test('isArchive: tars (plain, gzip, zstd; small and past 1 MiB) yes, other files no', async () => {
  const dir = tempDir('drydock-is-archive-');
  const small = makeTar([{ name: 'a/', type: 'directory' }, { name: 'a/f', body: 'x' }]);
  // Past the 1 MiB read-whole size, and a gzip start that expands past 1 MiB: the stream path.
  const large = makeTar([{ name: 'zeros', body: Buffer.alloc(3 * 1024 * 1024) }]);
  const noise = Buffer.from(Array.from({ length: 2 * 1024 * 1024 }, (_, i) => (i * 7919) % 251));
  const cases: [string, Buffer, boolean][] = [
    ['small.tar', small, true],
    ['small.tar.gz', gzip(small), true],
    ['small.tar.zst', zstd(small), true],
    ['large.tar.gz', gzip(large), true],
    ['large.tar', large, true],
    ['noise.tar.gz', gzip(Buffer.concat([makeTar([{ name: 'n', body: noise }])])), true],
    ['plain.gz', gzip(Buffer.from('not a tar\n')), false],
    ['text', Buffer.from('hello\n'), false],
    ['empty', Buffer.alloc(0), false],
    ['corrupt.gz', Buffer.concat([gzip(small).subarray(0, 10), Buffer.alloc(200, 0x55)]), false],
    ['big-not-tar.gz', gzip(Buffer.alloc(2 * 1024 * 1024, 0x61)), false],
  ];
  for (const [name, bytes, expected] of cases) {
    await fsp.writeFile(path.join(dir, name), bytes);
    assert.equal(await isArchive(path.join(dir, name)), expected, name);
  }
  assert.equal(await isArchive(path.join(dir, 'missing')), false);
  assert.equal(await isArchive(dir), false, 'a directory');
});
