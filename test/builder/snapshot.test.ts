// Snapshots: a step's result is its overlay upper dir, adopted as the layer cache entry of its
// diffID; the compressed blob is made in the same tar pass (snapshotLayer), or from the snapshot
// later for an earlier build's layer (compressSnapshot).
// The blob must hash to the snapshot's diffID, and a snapshot changed before compression is an
// error, never a wrong image.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { builderFixture, type Fixture } from './helpers.js';
import { compressSnapshot, snapshotDiffID } from '../../src/builder/rootfs.js';
import { BuildCache } from '../../src/builder/index.js';
import { unpackedLayerDir } from '../../src/runtime/index.js';
import { parseDigest } from '../../src/image/digest.js';
import { tempDir } from '../helpers/env.js';

let fx: Fixture;
before(async () => { fx = await builderFixture('snapshot'); });

test('each built layer is a snapshot in the layer cache whose diffID the compressed blob has; cache entries name the blob', async () => {
  const dir = await fx.context({
    Dockerfile: 'FROM busybox\nCOPY data/ /data/\nRUN rm /data/b.txt && echo changed > /data/a.txt && mkdir /new\n',
    'data/a.txt': 'a\n', 'data/b.txt': 'b\n',
  });
  const r = await fx.build(dir, { tags: ['snap:1'], noCache: true });
  const built = r.layers.slice(-2);
  assert.equal(built.length, 2);
  for (const l of built) {
    const snap = unpackedLayerDir(fx.store, l.diffID);
    assert.ok((await fsp.stat(snap)).isDirectory(), `snapshot of ${l.diffID} is in the layer cache`);
    assert.deepEqual((await snapshotDiffID(snap)).diffID, l.diffID);
    // The blob, decompressed by GNU gzip, is the tar whose sha256 is the diffID.
    const blob = path.join(fx.root, 'blobs', 'sha256', parseDigest(l.digest).hex);
    const tar = execFileSync('gzip', ['-dc', blob], { maxBuffer: 64 << 20 });
    const { createHash } = await import('node:crypto');
    assert.equal(`sha256:${createHash('sha256').update(tar).digest('hex')}`, l.diffID);
  }
  // The RUN's whiteout reached the blob as an OCI whiteout.
  const runBlob = path.join(fx.root, 'blobs', 'sha256', parseDigest(built[1]!.digest).hex);
  const names = execFileSync('tar', ['-tzf', runBlob], { encoding: 'utf8' }).split('\n');
  assert.ok(names.includes('data/.wh.b.txt'), names.join(' '));
  const cache = new BuildCache(fx.store);
  for (const step of r.steps.filter((s) => /^(COPY|RUN)/.test(s.instruction))) {
    const entry = await cache.get(step.key);
    assert.ok(entry?.layer && (await fx.store.hasBlob(entry.layer.digest)), `${step.instruction} has a cache entry with its blob`);
  }
});

test('a snapshot that changed before it was compressed is refused with a clear error', async () => {
  const dir = await fx.context({ Dockerfile: 'FROM busybox\nRUN echo original > /f\n' });
  const r = await fx.build(dir, { noCache: true });
  const layer = r.layers[r.layers.length - 1]!;
  // Same bytes again: the compressed blob is the stored one (deterministic).
  assert.deepEqual(await compressSnapshot(fx.store, layer.diffID), layer);
  const copy = tempDir('drydock-snapshot-copy-');
  const snap = unpackedLayerDir(fx.store, layer.diffID);
  execFileSync('cp', ['-a', `${snap}/.`, copy]);
  try {
    await fsp.writeFile(path.join(snap, 'f'), 'tampered\n');
    await assert.rejects(compressSnapshot(fx.store, layer.diffID), new RegExp(`layer snapshot ${layer.diffID} changed before it was compressed \\(it now hashes to sha256:[a-f0-9]{64}\\); run drydock builder prune and build again`));
  } finally {
    await fsp.rm(snap, { recursive: true, force: true });
    execFileSync('cp', ['-a', `${copy}/.`, snap]);
  }
});
