// resolveInRoot and its synchronous twin (copy.ts's tree copy into an upper dir) share one
// resolution: absolute symlink targets and ".." are re-anchored at the rootfs, missing trailing
// components are allowed, and a loop is an error, the same way in both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { resolveInRoot, resolveInRootSync } from '../../src/runtime/rootfs-path.js';
import { tempDir } from '../helpers/env.js';

test('resolveInRootSync resolves as resolveInRoot does, inside the rootfs', async () => {
  const root = tempDir('drydock-rootfs-path-');
  await fsp.mkdir(path.join(root, 'etc'), { recursive: true });
  await fsp.mkdir(path.join(root, 'real/sub'), { recursive: true });
  await fsp.symlink('/etc/shadow', path.join(root, 'escape'));
  await fsp.symlink('../../../../real', path.join(root, 'up'));
  await fsp.symlink('real/sub', path.join(root, 'rel'));
  await fsp.symlink('loop2', path.join(root, 'loop1'));
  await fsp.symlink('loop1', path.join(root, 'loop2'));
  const cases: [string, string][] = [
    ['/escape', 'etc/shadow'],
    ['../../etc/passwd', 'etc/passwd'],
    ['/up/sub/new/file', 'real/sub/new/file'],
    ['/rel/../x', 'real/x'],
    ['/./real//sub/', 'real/sub'],
    ['/', ''],
  ];
  for (const [inner, want] of cases) {
    assert.equal(await resolveInRoot(root, inner), path.join(root, want), inner);
    assert.equal(resolveInRootSync(root, inner), path.join(root, want), inner);
  }
  await assert.rejects(resolveInRoot(root, '/loop1/x'), /too many levels of symbolic links/);
  assert.throws(() => resolveInRootSync(root, '/loop1/x'), /too many levels of symbolic links/);
});
