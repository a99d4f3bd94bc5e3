// Layer conversion: three GNU tar layers (gzip, zstd, plain) → squashfs or erofs files,
// loop-mounted and stacked with a real overlayfs on this host. A file deleted by a whiteout and a directory made
// opaque must look exactly as they do inside `podman run` of the same image; a blob that does
// not match its digest or diffID writes nothing.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { getAttributeSync } from '@napi-rs/xattr';
import path from 'node:path';
import { requireRoot, requireTool, tempDir } from '../helpers/env.js';
import { podman, type Podman } from '../helpers/podman.js';
import { OsLayout, type LayerFormat } from '../../src/os/layout.js';
import { convertLayer } from '../../src/os/layers.js';
import { layerToSquashfs } from '../../src/os/layer-squashfs.js';
import { busyboxTree, ociLayout, tarLayer, writeTree, type LayerBlob } from './fixture-image.js';

const mounts: string[] = [];
let pm: Podman | undefined;
const cleanups: (() => void)[] = [];
after(async () => {
  for (const m of mounts.reverse()) { try { execFileSync('umount', [m]); } catch { /* already gone */ } }
  await pm?.cleanup();
  for (const c of cleanups) c();
});

function mount(args: string[], at: string): void {
  mkdirSync(at, { recursive: true });
  execFileSync('mount', [...args, at]);
  mounts.push(at);
}

/** What a process in the image sees: names (with type), and the contents of regular files. */
const LIST = 'cd / && for p in $(find a opq c | sort); do if [ -f "$p" ]; then echo "$p=$(cat "$p")"; elif [ -d "$p" ]; then echo "$p/"; else echo "$p?"; fi; done';

// The layer files' formats, bottom layer first: all squashfs (disks made before erofs), all
// erofs, and a squashfs disk upgraded after --layer-format erofs (the initramfs mounts each file
// by its name's ending, as this test does).
const STACKS: { name: string; formats: LayerFormat[] }[] = [
  { name: 'squashfs', formats: ['squashfs', 'squashfs', 'squashfs'] },
  { name: 'erofs', formats: ['erofs', 'erofs', 'erofs'] },
  { name: 'mixed', formats: ['squashfs', 'erofs', 'squashfs'] },
];

test('converted layers stacked by overlayfs match podman run of the same image, squashfs, erofs and mixed', async () => {
  requireRoot();
  requireTool('mksquashfs', 'apt-get install squashfs-tools');
  requireTool('mkfs.erofs', 'apt-get install erofs-utils');
  const dir = tempDir('drydock-os-layers-');
  const l1 = busyboxTree(writeTree(path.join(dir, 't1'), {
    'a/keep': 'keep', 'a/gone': 'gone', 'opq/old': 'old', 'opq/sub/deep': 'deep', 'c/': '',
  }));
  const t2 = writeTree(path.join(dir, 't2'), { 'a/.wh.gone': '', 'opq/.wh..wh..opq': '', 'opq/new': 'new' });
  const t3 = writeTree(path.join(dir, 't3'), { 'c/added': 'three', 'a/keep': 'kept by 3' });
  const layers: LayerBlob[] = [
    tarLayer(l1, path.join(dir, 'l1.tgz'), 'gzip'),
    tarLayer(t2, path.join(dir, 'l2.tzst'), 'zstd'),
    tarLayer(t3, path.join(dir, 'l3.tar'), 'none'),
  ];
  // podman names an oci: image after its path, and names must be lowercase.
  const ociDir = path.join(os.tmpdir(), `drydock-os-oci-${randomBytes(4).toString('hex')}`);
  cleanups.push(() => rmSync(ociDir, { recursive: true, force: true }));
  const img = ociLayout(ociDir, 'v1', layers);

  pm = await podman('drydock-os-layers-podman-');
  await pm.run(['pull', '-q', `oci:${img.dir}:v1`]);
  const want = (await pm.run(['run', '--rm', '--network', 'none', img.configDigest.slice(7), 'sh', '-c', LIST])).stdout;
  assert.match(want, /^a\/\na\/keep=kept by 3\n/);

  for (const c of STACKS) {
    const layout = new OsLayout(path.join(dir, `root-${c.name}`));
    await layout.create();
    const lowers: string[] = [];
    for (const [i, l] of layers.entries()) {
      const format = c.formats[i]!;
      const r = await convertLayer(layout, { mediaType: l.mediaType, digest: l.digest, size: l.size }, createReadStream(l.file), l.diffID, format);
      assert.equal(r.bytes, l.size);
      const found = await layout.findLayer(l.diffID);
      assert.deepEqual(found, { file: layout.layerPath(l.diffID, format), format }, c.name);
      assert.equal(execFileSync('blkid', ['-o', 'value', '-s', 'TYPE', found.file], { encoding: 'utf8' }).trim(), format, `${c.name}: layer ${i} is really ${format}`);
      const mnt = path.join(dir, `m-${c.name}-${i}`);
      mount(['-t', format, '-o', 'loop,ro', found.file], mnt);
      lowers.unshift(mnt);
    }
    // The whiteout is the overlay form in the layer file itself.
    assert.match(execFileSync('stat', ['-c', '%F %t:%T', path.join(lowers[1]!, 'a/gone')], { encoding: 'utf8' }), /character special file 0:0/, c.name);
    assert.equal(getAttributeSync(path.join(lowers[1]!, 'opq'), 'trusted.overlay.opaque')?.toString(), 'y', c.name);
    const merged = path.join(dir, `merged-${c.name}`);
    mount(['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lowers.join(':')}`], merged);
    const got = execFileSync('chroot', [merged, '/bin/sh', '-c', LIST], { encoding: 'utf8' });
    assert.equal(got, want, c.name);
    assert.doesNotMatch(got, /gone|old|deep/);
    // Owners, modes and mtimes as podman shows them (mkfs.erofs keeps per-file mtimes too).
    const meta = 'cd / && for p in $(find a opq c bin/busybox | sort); do busybox stat -c "%n %u:%g %a %Y" "$p"; done';
    assert.equal(execFileSync('chroot', [merged, '/bin/sh', '-c', meta], { encoding: 'utf8' }),
      (await pm.run(['run', '--rm', '--network', 'none', img.configDigest.slice(7), 'sh', '-c', meta])).stdout, `${c.name}: metadata`);
    assert.deepEqual(readdirSync(layout.layersDir).sort(), layers.map((l, i) => `${l.diffID.slice(7)}.${c.formats[i]}`).sort());
    assert.deepEqual(readdirSync(layout.tmpDir), [], 'the unpacked trees are removed');
  }
});

test('a blob that is not the layer it claims to be writes nothing', async () => {
  requireRoot();
  const dir = tempDir('drydock-os-layers-bad-');
  const l = tarLayer(writeTree(path.join(dir, 't'), { f: 'x' }), path.join(dir, 'l.tgz'), 'gzip');
  const layout = new OsLayout(path.join(dir, 'root'));
  await layout.create();
  const other = `sha256:${'0'.repeat(64)}`;
  const cases: { desc: { mediaType: string; digest: string; size: number }; diffID: string; want: RegExp }[] = [
    { desc: { mediaType: l.mediaType, digest: other, size: l.size }, diffID: l.diffID, want: /hashing to sha256:[0-9a-f]{64}; the manifest says/ },
    { desc: { mediaType: l.mediaType, digest: l.digest, size: l.size }, diffID: other, want: /uncompresses to .*but the image config expects sha256:0000/ },
    { desc: { mediaType: l.mediaType, digest: l.digest, size: l.size - 1 }, diffID: l.diffID, want: /larger than the expected/ },
  ];
  for (const c of cases) {
    await assert.rejects(convertLayer(layout, c.desc, createReadStream(l.file), c.diffID), c.want);
    assert.deepEqual(readdirSync(layout.layersDir), []);
    assert.deepEqual(readdirSync(layout.tmpDir), []);
  }
  writeFileSync(path.join(dir, 'garbage'), 'not a tar at all, not even close'.repeat(40));
  await assert.rejects(convertLayer(layout, { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l.digest, size: 1280 }, createReadStream(path.join(dir, 'garbage')), l.diffID));
  assert.deepEqual(readdirSync(layout.layersDir), []);
});

test('the disk builder\'s layerToSquashfs is the same conversion, and keeps a file already there', async () => {
  requireRoot();
  const dir = tempDir('drydock-os-layers-disk-');
  const l = tarLayer(writeTree(path.join(dir, 't'), { 'a/.wh.x': '', 'a/y': 'y' }), path.join(dir, 'l.tar'), 'none');
  const layout = new OsLayout(path.join(dir, 'root'));
  await layout.create();
  const r = await layerToSquashfs(createReadStream(l.file), layout.layersDir, path.join(dir, 'work'), { expectDiffID: l.diffID });
  assert.deepEqual([r.file, r.diffID, r.bytes], [layout.layerPath(l.diffID), l.diffID, statSync(path.join(dir, 'l.tar.tar')).size]);
  const mtime = statSync(r.file).mtimeMs;
  await layerToSquashfs(createReadStream(l.file), layout.layersDir, path.join(dir, 'work'));
  assert.equal(statSync(r.file).mtimeMs, mtime);
  await assert.rejects(layerToSquashfs(createReadStream(l.file), layout.layersDir, path.join(dir, 'work'), { expectDiffID: `sha256:${'1'.repeat(64)}` }), /but the image config expects sha256:1111/);
  assert.deepEqual(readdirSync(path.join(dir, 'work')), []);
});
