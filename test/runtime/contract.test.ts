// The runtime ↔ builder contract on real runc and real overlayfs: a busybox rootfs as the lower
// dir, a container writes into the upper dir, users resolve from the image's /etc/passwd.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir, requireRoot, requireTool } from '../helpers/env.js';
import { buildBusyboxRootfs } from '../../src/mkimage/busybox-rootfs.js';
import { busyboxImage } from '../helpers/images.js';
import { ContentStore } from '../../src/store/index.js';
import { ensureLayersUnpacked, mountRootfs, createRuntimeSpec, runOnceCaptured, isMountPoint, resolveInRoot, type MountedRootfs, type RuntimeSpecOptions } from '../../src/runtime/index.js';

const root = tempDir('drydock-runtime-contract-');
process.env.DRYDOCK_ROOT = path.join(root, 'store');
const lower = path.join(root, 'lower');
let n = 0;

before(async () => {
  requireRoot();
  requireTool('runc');
  await buildBusyboxRootfs(lower);
  await fsp.writeFile(path.join(lower, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  await fsp.writeFile(path.join(lower, 'etc/group'), 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n');
  await fsp.symlink('/../../../../etc/shadow', path.join(lower, 'escape'));
});

async function runIn(rootfs: MountedRootfs, opts: Partial<RuntimeSpecOptions> & { args: string[] }): Promise<{ code: number; out: string; err: string }> {
  const spec = await createRuntimeSpec({ rootfs: rootfs.rootfs, env: [], cwd: '/', user: '', network: 'none', ...opts });
  const id = `runtime-contract-${process.pid}-${n++}`;
  const r = await runOnceCaptured({ id, bundleDir: path.join(root, 'bundles', id), spec });
  return { code: r.exitCode, out: r.stdout, err: r.stderr };
}

test('overlay rootfs: writes land in the upper dir, lower stays untouched; exit code propagates', async () => {
  const m = await mountRootfs({ lowerDirs: [lower], workDir: path.join(root, 'c1') });
  try {
    assert.equal(await isMountPoint(m.rootfs), true);
    const r = await runIn(m, { args: ['sh', '-c', 'echo hello > /made; rm /etc/nsswitch.conf; echo out; echo err >&2; exit 7'] });
    assert.equal(r.code, 7);
    assert.equal(r.out, 'out\n');
    assert.equal(r.err, 'err\n');
    assert.equal(await fsp.readFile(path.join(m.upperDir, 'made'), 'utf8'), 'hello\n');
    const wh = await fsp.lstat(path.join(m.upperDir, 'etc/nsswitch.conf'));
    assert.ok(wh.isCharacterDevice(), 'deletion is an overlay whiteout in the upper dir');
    assert.ok(await fsp.stat(path.join(lower, 'etc/nsswitch.conf')));
  } finally {
    await m.unmount();
  }
  assert.equal(await isMountPoint(path.join(root, 'c1/merged')), false);
});

test('more lower dirs than fit in one page of mount options still mount (relative names)', async () => {
  const cache = path.join(root, 'many-layers');
  const dirs: string[] = [];
  for (let i = 0; i < 70; i++) {
    const d = path.join(cache, i.toString(16).padStart(64, '0'));
    await fsp.mkdir(d, { recursive: true });
    await fsp.writeFile(path.join(d, `f${i}`), String(i));
    await fsp.writeFile(path.join(d, 'top'), String(i));
    dirs.push(d);
  }
  const m = await mountRootfs({ lowerDirs: dirs, workDir: path.join(root, 'c-many') });
  try {
    assert.equal((await fsp.readdir(m.rootfs)).length, 71);
    assert.equal(await fsp.readFile(path.join(m.rootfs, 'top'), 'utf8'), '69', 'the last dir is the top layer');
  } finally { await m.unmount(); }
});

test('empty lower list (FROM scratch) mounts', async () => {
  const m = await mountRootfs({ lowerDirs: [], workDir: path.join(root, 'c-scratch') });
  try {
    assert.deepEqual((await fsp.readdir(m.rootfs)).sort(), []);
  } finally { await m.unmount(); }
});

const userCases: { user: string; expect: string }[] = [
  { user: '', expect: '0 0 0' },
  { user: 'app', expect: '1000 1000 1000 2000' },
  { user: '1000', expect: '1000 1000 1000 2000' },
  { user: 'app:root', expect: '1000 0 0' },
  { user: '4242:4343', expect: '4242 4343 4343' },
];

test('users resolve from the image /etc/passwd and /etc/group; env, cwd, hostname', async () => {
  const m = await mountRootfs({ lowerDirs: [lower], workDir: path.join(root, 'c2') });
  try {
    for (const c of userCases) {
      const r = await runIn(m, { user: c.user, args: ['sh', '-c', 'echo $(id -u) $(id -g) $(id -G)'] });
      assert.equal(r.out.trim(), c.expect, `user "${c.user}"`);
    }
    const r = await runIn(m, { env: ['FOO=bar'], cwd: '/tmp', hostname: 'box1', args: ['sh', '-c', 'echo $FOO $(pwd) $(hostname) $PATH; cat /etc/hostname'] });
    assert.equal(r.out, 'bar /tmp box1 /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nbox1\n');
    await assert.rejects(createRuntimeSpec({ rootfs: m.rootfs, args: ['true'], env: [], cwd: '/', user: 'nosuch', network: 'none' }), /unable to find user nosuch/);
  } finally { await m.unmount(); }
});

test('network none has only lo; read-only rootfs refuses writes; capabilities are Docker defaults', async () => {
  const m = await mountRootfs({ lowerDirs: [lower], workDir: path.join(root, 'c3') });
  try {
    const net = await runIn(m, { args: ['sh', '-c', 'ls /sys/class/net'] });
    assert.equal(net.out.trim(), 'lo');
    const ro = await runIn(m, { readonlyRootfs: true, args: ['sh', '-c', 'touch /x'] });
    assert.notEqual(ro.code, 0);
    assert.match(ro.err, /Read-only file system/);
    const caps = await runIn(m, { args: ['sh', '-c', 'grep CapEff /proc/self/status'] });
    assert.match(caps.out, /CapEff:\s+00000000a80425fb/);
  } finally { await m.unmount(); }
});

test('a missing executable is a clear error with exit code 127', async () => {
  const m = await mountRootfs({ lowerDirs: [lower], workDir: path.join(root, 'c4') });
  try {
    await assert.rejects(runIn(m, { args: ['/nope'] }), (e: Error & { exitCode?: number }) => /executable file not found/.test(e.message) && e.exitCode === 127);
  } finally { await m.unmount(); }
});

test('resolveInRoot never leaves the rootfs', async () => {
  assert.equal(await resolveInRoot(lower, '/escape'), path.join(lower, 'etc/shadow'));
  assert.equal(await resolveInRoot(lower, '../../etc/passwd'), path.join(lower, 'etc/passwd'));
});

test('ensureLayersUnpacked unpacks once (also concurrently) and verifies the diffID', async () => {
  const img = await busyboxImage(process.env.DRYDOCK_ROOT!);
  const store = await ContentStore.open(process.env.DRYDOCK_ROOT!);
  const layers = img.manifest.layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType, diffID: img.config.rootfs.diff_ids[i]! }));
  const [a, b] = await Promise.all([ensureLayersUnpacked(store, layers), ensureLayersUnpacked(store, layers)]);
  assert.deepEqual(a, b);
  assert.equal(a[0], path.join(process.env.DRYDOCK_ROOT!, 'layers', layers[0]!.diffID.slice(7)));
  const inode = (await fsp.stat(path.join(a[0]!, 'bin/busybox'))).ino;
  await ensureLayersUnpacked(store, layers);
  assert.equal((await fsp.stat(path.join(a[0]!, 'bin/busybox'))).ino, inode, 'the second call reuses the cache');
  assert.deepEqual((await fsp.readdir(path.join(process.env.DRYDOCK_ROOT!, 'layers'))).filter((n) => n.startsWith('.tmp')), []);
  const wrong = [{ ...layers[0]!, diffID: `sha256:${'0'.repeat(64)}` }];
  await assert.rejects(ensureLayersUnpacked(store, wrong), /corrupt: its content hashes to/);
  // The image runs from the cached layers.
  const m = await mountRootfs({ lowerDirs: a, workDir: path.join(root, 'c-image') });
  try {
    const r = await runIn(m, { args: ['busybox', 'echo', 'from-layers'] });
    assert.equal(r.out, 'from-layers\n');
  } finally { await m.unmount(); }
});

