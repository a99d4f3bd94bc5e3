// The overlay rootfs is mounted and unmounted by this process's own mount(2)/umount2(2) calls
// (mount-syscall.ts), not by mount(8)/umount(8): the tests hide both tools from PATH. Long lower
// lists still go through mount(8) with relative paths.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { tempDir, requireRoot } from '../helpers/env.js';
import { mountRootfs, unmountPath, isMountPoint } from '../../src/runtime/overlay.js';

let dir: string;
const savedPath = process.env.PATH;
before(() => {
  requireRoot();
  dir = tempDir('drydock-overlay-');
});
after(async () => {
  process.env.PATH = savedPath;
  await fsp.rm(dir, { recursive: true, force: true });
});

/** Runs `fn` with mount(8) and umount(8) out of reach. */
async function withoutMountTools<T>(fn: () => Promise<T>): Promise<T> {
  process.env.PATH = path.join(dir, 'no-tools');
  try { return await fn(); } finally { process.env.PATH = savedPath; }
}

function lowerWith(name: string, file: string, text: string): string {
  const d = path.join(dir, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(path.join(d, file), text);
  return d;
}

test('an overlay is mounted, written through and unmounted without mount(8) or umount(8)', async () => {
  const bottom = lowerWith('bottom', 'a', 'bottom a');
  const top = lowerWith('top', 'a', 'top a');
  const m = await withoutMountTools(() => mountRootfs({ lowerDirs: [bottom, top], workDir: path.join(dir, 'c1'), volatile: true }));
  try {
    assert.ok(await isMountPoint(m.rootfs));
    assert.equal(await fsp.readFile(path.join(m.rootfs, 'a'), 'utf8'), 'top a', 'the last lower dir is the top one');
    await fsp.writeFile(path.join(m.rootfs, 'b'), 'new');
  } finally {
    await withoutMountTools(() => m.unmount());
  }
  assert.equal(await isMountPoint(m.rootfs), false);
  assert.equal(await fsp.readFile(path.join(m.upperDir, 'b'), 'utf8'), 'new', 'writes land in the upper dir');
  // Unmounting again is a no-op, as a cleanup after a crash expects.
  await withoutMountTools(() => unmountPath(m.rootfs));
});

test('a busy overlay is detached; a missing lower dir gives a clear error', async () => {
  const lower = lowerWith('busy-lower', 'f', 'x');
  const m = await mountRootfs({ lowerDirs: [lower], workDir: path.join(dir, 'c2'), volatile: true });
  const fh = await fsp.open(path.join(m.rootfs, 'f'), 'r');
  try {
    await withoutMountTools(() => m.unmount());
    assert.equal(await isMountPoint(m.rootfs), false, 'detached although a file below it is open');
  } finally {
    await fh.close();
  }
  await assert.rejects(
    withoutMountTools(() => mountRootfs({ lowerDirs: [path.join(dir, 'missing')], workDir: path.join(dir, 'c3') })),
    /cannot mount the container rootfs \(overlayfs\): mount: no such file or directory \(ENOENT\)/,
  );
});

test('a lower list longer than a page is mounted with relative paths', async () => {
  // 60 layers under a long directory name: the absolute list exceeds the kernel's page for mount data.
  const deep = path.join(dir, 'x'.repeat(80));
  const lowers = Array.from({ length: 60 }, (_, i) => {
    const d = path.join(deep, `layer-${String(i).padStart(3, '0')}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, `f${i}`), String(i));
    return d;
  });
  const m = await mountRootfs({ lowerDirs: lowers, workDir: path.join(dir, 'c4'), volatile: true });
  try {
    assert.equal((await fsp.readdir(m.rootfs)).length, 60);
  } finally {
    await m.unmount();
  }
});
