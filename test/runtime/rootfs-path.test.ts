// The rootfs path resolvers: the synchronous ones (a RUN step's WORKDIR, passwd and group reads,
// its WORKDIR's mkdir) answer as the async ones do, and neither leaves the rootfs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, mkdtempSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  resolveInRoot, resolveInRootSync, readFileInRoot, readFileInRootSync, checkWorkdir, checkWorkdirSync, mkdirInRootSync,
} from '../../src/runtime/rootfs-path.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'drydock-rootfs-path-'));
const outside = mkdtempSync(path.join(os.tmpdir(), 'drydock-rootfs-outside-'));
test.after(async () => {
  await fsp.rm(root, { recursive: true, force: true });
  await fsp.rm(outside, { recursive: true, force: true });
});

test.before(async () => {
  await fsp.mkdir(path.join(root, 'etc'), { recursive: true });
  await fsp.mkdir(path.join(root, 'srv/app'), { recursive: true });
  await fsp.writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await fsp.writeFile(path.join(outside, 'passwd'), 'host:x:0:0:host:/:/bin/sh\n');
  await fsp.symlink('/../../../../etc/passwd', path.join(root, 'abs-escape'));
  await fsp.symlink('../../../..' + outside, path.join(root, 'rel-escape'));
  await fsp.symlink(outside, path.join(root, 'host-dir'));
  await fsp.symlink('srv/app', path.join(root, 'app'));
  await fsp.symlink('/proc/self/fd/7', path.join(root, 'fdlink'));
  await fsp.symlink('loop-b', path.join(root, 'loop-a'));
  await fsp.symlink('loop-a', path.join(root, 'loop-b'));
  await fsp.writeFile(path.join(root, 'a-file'), 'x');
});

const cases = [
  ['/abs-escape', 'etc/passwd'],
  ['../../etc/passwd', 'etc/passwd'],
  ['/rel-escape/passwd', `${outside.slice(1)}/passwd`],
  ['/host-dir/passwd', `${outside.slice(1)}/passwd`],
  ['/app/missing/deeper', 'srv/app/missing/deeper'],
  ['/app/../etc/./passwd', 'srv/etc/passwd'],
  ['/', ''],
] as const;

test('resolveInRootSync answers as resolveInRoot does, inside the rootfs', async () => {
  for (const [inner, expected] of cases) {
    const want = path.join(root, expected);
    assert.equal(await resolveInRoot(root, inner), want, `async ${inner}`);
    assert.equal(resolveInRootSync(root, inner), want, `sync ${inner}`);
  }
  await assert.rejects(resolveInRoot(root, '/loop-a'), /too many levels of symbolic links/);
  assert.throws(() => resolveInRootSync(root, '/loop-a'), /too many levels of symbolic links/);
});

test('readFileInRootSync reads the image\'s file, not the host\'s, and a missing one is undefined', async () => {
  for (const inner of ['/etc/passwd', '/abs-escape', '/rel-escape/passwd', '/nope', '/a-file/below']) {
    assert.equal(readFileInRootSync(root, inner), await readFileInRoot(root, inner), inner);
  }
  assert.equal(readFileInRootSync(root, '/abs-escape'), 'root:x:0:0:root:/root:/bin/sh\n');
  assert.equal(readFileInRootSync(root, '/host-dir/passwd'), undefined, 'the host dir the link names is looked up inside the rootfs');
  assert.equal(readFileInRootSync(root, '/nope'), undefined);
});

test('checkWorkdirSync refuses what resolves under /proc, as checkWorkdir does', async () => {
  assert.equal(checkWorkdirSync(root, '/app'), '/srv/app');
  assert.equal(await checkWorkdir(root, '/app'), '/srv/app');
  assert.equal(checkWorkdirSync(root, 'app/'), '/srv/app');
  assert.throws(() => checkWorkdirSync(root, '/fdlink'), /resolves to \/proc\/self\/fd\/7 .* is refused/);
  await assert.rejects(checkWorkdir(root, '/fdlink'), /resolves to \/proc\/self\/fd\/7 .* is refused/);
});

test('mkdirInRootSync creates inside the rootfs through links, owned as asked, and refuses a file in the way', () => {
  mkdirInRootSync(root, '/app/new/deep', { uid: 1234, gid: 4321 });
  for (const made of ['srv/app/new', 'srv/app/new/deep']) {
    const st = statSync(path.join(root, made));
    assert.ok(st.isDirectory(), made);
    if (process.getuid?.() === 0) assert.deepEqual([st.uid, st.gid], [1234, 4321], made);
  }
  assert.notEqual(statSync(path.join(root, 'srv/app')).uid, 1234, 'an existing parent is not chowned');
  mkdirInRootSync(root, '/host-dir/made', { uid: 0, gid: 0 });
  assert.ok(statSync(path.join(root, outside, 'made')).isDirectory(), 'an absolute link is followed inside the rootfs');
  assert.throws(() => statSync(path.join(outside, 'made')), /ENOENT/, 'nothing is created on the host');
  assert.throws(() => mkdirInRootSync(root, '/a-file', { uid: 0, gid: 0 }), /a file with that name exists in the image/);
  mkdirInRootSync(root, '/srv/app', { uid: 1234, gid: 4321 });
  assert.notEqual(statSync(path.join(root, 'srv/app')).uid, 1234, 'an existing directory is left as it is');
});

test('resolveInRootSync resolves as resolveInRoot does: re-anchored symlinks, "..", missing ends, loops', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'drydock-rootfs-path-links-'));
  t.after(() => fsp.rm(root, { recursive: true, force: true }));
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
