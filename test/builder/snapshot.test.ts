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
import { tempDir, requireTool } from '../helpers/env.js';

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

test('a step starts on its parent\'s snapshot while that is hashed and written; progress lines stay in order', async () => {
  // 24 MiB of random bytes: its tar, hash and gzip take long enough that the RUN after it runs
  // meanwhile, so its header and output are the lines that would come early if not held back.
  const { randomBytes } = await import('node:crypto');
  const dir = await fx.context({ Dockerfile: 'FROM busybox\nCOPY big.bin /big.bin\nRUN echo ran-after && wc -c < /big.bin\nRUN echo last\n' });
  await fsp.writeFile(path.join(dir, 'big.bin'), randomBytes(24 << 20));
  const r = await fx.build(dir, { tags: ['snap:order'], noCache: true });
  const lines = r.log.split('\n').filter(Boolean);
  const id = /^ ---> [0-9a-f]{12}$/;
  assert.equal(lines.length, 13, r.log);
  const expected = [/^Step 1\/4 : FROM busybox$/, id, /^Step 2\/4 : COPY/, id, /^Step 3\/4 : RUN/, /^ran-after$/, /^25165824$/, id,
    /^Step 4\/4 : RUN/, /^last$/, id, /^Successfully built/, /^Successfully tagged snap:order$/];
  expected.forEach((re, i) => assert.match(lines[i]!, re, r.log));
  // Every snapshot ended in the layer cache, and no step's scratch dir is left.
  for (const l of r.layers.slice(-3)) assert.equal((await snapshotDiffID(unpackedLayerDir(fx.store, l.diffID))).diffID, l.diffID);
  assert.deepEqual(await fsp.readdir(path.join(fx.root, 'builder')).catch(() => []), []);
});

test('a snapshot that fails while later steps run fails the build, names the step, and tags nothing', async () => {
  requireTool('chattr');
  const dir = await fx.context({ Dockerfile: 'FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n' });
  // An immutable blobs dir refuses the layer's blob (root included): the first step's snapshot
  // fails after the step itself succeeded, while the second step runs on it.
  const blobs = path.join(fx.root, 'blobs', 'sha256');
  execFileSync('chattr', ['+i', blobs]);
  try {
    await assert.rejects(fx.build(dir, { tags: ['snap:fails'], noCache: true }),
      /step 2\/3 "RUN echo one > \/one": writing the step's layer failed: .*(EPERM|operation not permitted)/);
  } finally {
    execFileSync('chattr', ['-i', blobs]);
  }
  assert.equal(await fx.store.resolveTag('docker.io/library/snap:fails'), undefined);
  assert.deepEqual(await fsp.readdir(path.join(fx.root, 'builder')).catch(() => []), [], 'no step dir is left');
  // Nothing half-made is reused: the same build succeeds now.
  const r = await fx.build(dir, { tags: ['snap:fails'] });
  assert.ok(await fx.store.resolveTag('docker.io/library/snap:fails'));
  assert.ok(r.steps.some((s) => !s.cached && s.instruction.startsWith('RUN echo one')), 'the failed step ran again');
});
