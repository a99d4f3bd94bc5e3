// `drydock gc` sweeps the unpacked-layer cache too, but never a layer that an image, a container
// record or a live overlay mount still uses.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { runtimeFixture, type RuntimeFixture } from './helpers.js';
import { tempDir } from '../helpers/env.js';
import { overlayLowerDirs } from '../../src/runtime/layers.js';

let fx: RuntimeFixture;
before(async () => { fx = await runtimeFixture('lgc'); });
after(async () => { await fx?.cleanup(); });

const layerDirs = async () => (await fsp.readdir(path.join(fx.root, 'layers')).catch(() => [] as string[])).filter((n) => !n.startsWith('.'));

test('gc keeps layers of tagged images and of containers, removes them once nothing uses them', async () => {
  await fx.ok(['tag', 'busybox', 'other:1']);
  await fx.ok(['create', '--name', 'keeper', '--network', 'none', 'busybox', 'true']);
  const [layer] = await layerDirs();
  assert.ok(layer, 'create unpacked the busybox layer');

  // Tagged: kept, and the dry run says nothing about it.
  assert.doesNotMatch(await fx.ok(['gc', '--grace', '0', '--dry-run']), /delete unpacked layer/);
  // Only the container record refers to it now (untag both names: the container roots the manifest
  // blob, and its record names the layer dir).
  await fx.ok(['rmi', 'other:1']);
  await fx.ok(['rmi', '-f', 'busybox']);
  await fx.ok(['gc', '--grace', '0']);
  assert.deepEqual(await layerDirs(), [layer]);

  await fx.ok(['rm', 'keeper']);
  const dry = await fx.ok(['gc', '--grace', '0', '--dry-run']);
  assert.match(dry, new RegExp(`Would delete unpacked layer: sha256:${layer}\\n`));
  assert.deepEqual(await layerDirs(), [layer], 'a dry run deletes nothing');
  const out = await fx.ok(['gc', '--grace', '0']);
  assert.match(out, new RegExp(`Deleted unpacked layer: sha256:${layer}\\n`));
  assert.match(out, /Total reclaimed space: [\d.]+[kM]?B \(\d+ blobs and 1 unpacked layers removed/);
  assert.deepEqual(await layerDirs(), []);
});

/** Imports busybox, unpacks its layer through a container, then drops both: an unpacked layer nothing references. */
async function orphanedBusyboxLayer(name: string): Promise<string> {
  const { busyboxImage } = await import('../helpers/images.js');
  await busyboxImage(fx.root);
  await fx.ok(['create', '--name', name, '--network', 'none', 'busybox', 'true']);
  const [layer] = await layerDirs();
  await fx.ok(['rm', name]);
  await fx.ok(['rmi', '-f', 'busybox']);
  return layer!;
}

test('gc keeps a layer that a live overlay mount uses, and recent ones within the grace period', async () => {
  const layer = await orphanedBusyboxLayer('temp');

  // Default grace (10 minutes): just unpacked, so kept.
  await fx.ok(['gc']);
  assert.deepEqual(await layerDirs(), [layer]);

  // A build step or container of another store mounted on it: kept even with no grace.
  const work = tempDir('drydock-lgc-mnt-');
  for (const d of ['upper', 'work', 'merged']) await fsp.mkdir(path.join(work, d));
  const lower = path.join(fx.root, 'layers', layer);
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${work}/upper,workdir=${work}/work`, `${work}/merged`]);
  try {
    assert.ok((await overlayLowerDirs()).includes(lower));
    await fx.ok(['gc', '--grace', '0']);
    assert.ok(existsSync(lower));
  } finally {
    execFileSync('umount', [`${work}/merged`]);
  }
  const out = await fx.ok(['gc', '--grace', '0']);
  assert.ok(!existsSync(lower), out);
});

test('gc keeps a layer that an overlay names through a relative l/N symlink (long lower-dir lists)', async () => {
  const layer = await orphanedBusyboxLayer('rel');
  // The way mountOverlay mounts when the options would exceed a page: cwd is the mount point's
  // parent, lower dirs are l/0, l/1 ... symlinks to the layer dirs.
  const work = tempDir('drydock-lgc-rel-');
  for (const d of ['l', 'upper', 'work', 'merged']) await fsp.mkdir(path.join(work, d));
  const lower = path.join(fx.root, 'layers', layer);
  await fsp.symlink(lower, path.join(work, 'l', '0'));
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', 'lowerdir=l/0,upperdir=upper,workdir=work', 'merged'], { cwd: work });
  try {
    assert.ok((await overlayLowerDirs()).includes(path.join(work, 'l', '0')));
    await fx.ok(['gc', '--grace', '0']);
    assert.ok(existsSync(lower), 'a layer in use through a relative lower dir was swept');
  } finally {
    execFileSync('umount', [`${work}/merged`]);
  }
  await fx.ok(['gc', '--grace', '0']);
  assert.ok(!existsSync(lower));
});
