// Interop with the real tools: skopeo and umoci read what drydock saves; podman loads and runs
// drydock's docker-archive; podman's own archives (both formats) load into drydock and export
// the same files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { saveImages, loadArchive, exportImage, TarFile } from '../../src/archive/index.js';
import { tempDir, requireTool, requireRoot } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import { podman, type Podman } from '../helpers/podman.js';
import { createHash } from 'node:crypto';

const run = promisify(execFile);

async function tarFiles(file: string): Promise<Map<string, string>> {
  const tar = await TarFile.open(file);
  const out = new Map<string, string>();
  for (const [name, e] of tar.entries) {
    let d = e.type;
    if (e.type === 'file') {
      const h = createHash('sha256');
      for await (const c of tar.open(name)) h.update(c as Buffer);
      d += `:${h.digest('hex')}`;
    }
    if (e.linkname) d += `->${e.linkname}`;
    out.set(name, d);
  }
  return out;
}

let root: string;
let store: ContentStore;
let pm: Podman;
before(async () => {
  requireRoot();
  for (const t of ['skopeo', 'umoci', 'podman', 'runc']) requireTool(t);
  root = tempDir('drydock-interop-');
  store = await ContentStore.open(root);
  await busyboxImage(root, 'interop/busybox:1');
  pm = await podman('drydock-foundation-podman-');
});
after(async () => { await pm?.cleanup(); });

test('skopeo inspect reads a drydock oci-archive and docker-archive', async () => {
  const img = await resolveImage(store, 'interop/busybox:1');
  const oci = path.join(tempDir(), 'bb.oci.tar');
  const docker = path.join(tempDir(), 'bb.docker.tar');
  await saveImages(store, ['interop/busybox:1'], oci, { format: 'oci-archive' });
  await saveImages(store, ['interop/busybox:1'], docker);
  const a = JSON.parse((await run('skopeo', ['inspect', `oci-archive:${oci}:1`])).stdout);
  assert.deepEqual(a.Layers, img.manifest.layers.map((l) => l.digest));
  assert.equal(a.Os, 'linux');
  const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', `oci-archive:${oci}`])).stdout);
  assert.equal(raw.config.digest, img.configDigest);
  const d = JSON.parse((await run('skopeo', ['inspect', '--config', `docker-archive:${docker}`])).stdout);
  assert.deepEqual(d.config.Cmd, ['sh']);
  assert.deepEqual(d.rootfs.diff_ids, img.config.rootfs.diff_ids);
});

test('umoci unpacks an image from a drydock OCI layout', async () => {
  const layout = path.join(tempDir(), 'layout');
  await saveImages(store, ['interop/busybox:1'], layout, { format: 'oci-dir' });
  const bundle = path.join(tempDir(), 'bundle');
  await run('umoci', ['unpack', '--image', `${layout}:1`, bundle]);
  const sh = await fsp.readlink(path.join(bundle, 'rootfs/bin/sh'));
  assert.equal(sh, '../bin/busybox');
  assert.ok((await fsp.stat(path.join(bundle, 'rootfs/bin/busybox'))).size > 100_000);
  const config = JSON.parse(await fsp.readFile(path.join(bundle, 'config.json'), 'utf8'));
  assert.deepEqual(config.process.args, ['sh']);
});

test('podman loads a drydock docker-archive and runs it', async () => {
  const docker = path.join(tempDir(), 'bb.docker.tar');
  await saveImages(store, ['interop/busybox:1'], docker);
  const loaded = await pm.run(['load', '-i', docker]);
  assert.match(loaded.stdout, /Loaded image: docker\.io\/interop\/busybox:1/);
  const out = await pm.run(['run', '--rm', '--network', 'none', 'interop/busybox:1', 'echo', 'hi']);
  assert.equal(out.stdout.trim(), 'hi');
});

for (const format of ['docker-archive', 'oci-archive'] as const) {
  test(`an image made by podman save --format ${format} loads into drydock and exports the same files`, async () => {
    const docker = path.join(tempDir(), 'src.tar');
    await saveImages(store, ['interop/busybox:1'], docker);
    await pm.run(['load', '-i', docker]);
    const fromPodman = path.join(tempDir(), `podman.${format}.tar`);
    await pm.run(['save', '--format', format, '-o', fromPodman, 'docker.io/interop/busybox:1']);
    const other = await ContentStore.open(tempDir('drydock-interop-load-'));
    const r = await loadArchive(other, fromPodman);
    assert.equal(r.format, format);
    assert.deepEqual(r.images[0]!.names, ['docker.io/interop/busybox:1']);
    const mine = path.join(tempDir(), 'mine.tar');
    const theirs = path.join(tempDir(), 'theirs.tar');
    await exportImage(store, await resolveImage(store, 'interop/busybox:1'), mine);
    await exportImage(other, await resolveImage(other, 'interop/busybox:1'), theirs);
    const [a, b] = [await tarFiles(mine), await tarFiles(theirs)];
    assert.ok(a.size > 100, 'busybox has its applets');
    assert.deepEqual(b, a);
  });
}
