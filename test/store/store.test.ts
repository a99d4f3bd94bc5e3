// The content store: verified atomic blob writes, concurrent writers, tags, resolution, rmi, gc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { Readable } from 'node:stream';
import path from 'node:path';
import {
  ContentStore, writeImage, resolveImage, listImages, removeImage, gcStore, canonicalName,
} from '../../src/store/index.js';
import { digestOf, MediaType } from '../../src/image/index.js';
import { tempDir } from '../helpers/env.js';

async function fresh(): Promise<ContentStore> {
  return ContentStore.open(tempDir('drydock-store-'));
}

async function blobNames(store: ContentStore): Promise<string[]> {
  return (await fsp.readdir(path.join(store.blobsDir, 'sha256'))).sort();
}

/** A tiny image with one fake layer blob (content need not be a tar for the store). */
async function tinyImage(store: ContentStore, layerText: string, tag?: string) {
  const layer = await store.writeBlob(Buffer.from(layerText));
  return writeImage(store, {
    config: { architecture: 'amd64', os: 'linux', created: '2024-01-01T00:00:00Z', rootfs: { type: 'layers', diff_ids: [] } },
    layers: [{ digest: layer.digest, size: layer.size, mediaType: MediaType.OciLayerGzip, diffID: digestOf(layerText) }],
    tag,
  });
}

test('the store is an OCI layout', async () => {
  const store = await fresh();
  assert.deepEqual(JSON.parse(await fsp.readFile(path.join(store.root, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  assert.deepEqual(JSON.parse(await fsp.readFile(store.indexPath, 'utf8')).manifests, []);
});

test('writeBlob verifies digest and size; a mismatch leaves nothing visible', async () => {
  const store = await fresh();
  const good = digestOf('hello');
  await assert.rejects(store.writeBlob(Buffer.from('hellO'), { digest: good }), /digest mismatch: expected sha256:2cf24dba/);
  await assert.rejects(store.writeBlob(Buffer.from('hello'), { digest: good, size: 4 }), /larger than the expected 4 bytes/);
  await assert.rejects(store.writeBlob(Readable.from([Buffer.from('hel')]), { digest: good, size: 5 }), /digest mismatch|size mismatch/);
  assert.deepEqual(await blobNames(store), []);
  assert.deepEqual(await fsp.readdir(store.tmpDir), []);
  const w = await store.writeBlob(Buffer.from('hello'), { digest: good, size: 5 });
  assert.deepEqual(w, { digest: good, size: 5, created: true });
  assert.equal((await store.writeBlob(Buffer.from('hello'))).created, false);
});

test('a failing source stream leaves no blob and no temp file', async () => {
  const store = await fresh();
  const src = new Readable({ read() { this.push(Buffer.alloc(1 << 20)); this.destroy(new Error('network reset')); } });
  await assert.rejects(store.writeBlob(src), /network reset/);
  assert.deepEqual(await blobNames(store), []);
  assert.deepEqual(await fsp.readdir(store.tmpDir), []);
});

test('concurrent writers of the same blob are safe', async () => {
  const store = await fresh();
  const data = Buffer.alloc(3 << 20, 1);
  const results = await Promise.all(Array.from({ length: 8 }, () => store.writeBlob(Readable.from([data.subarray(0, 1 << 20), data.subarray(1 << 20)]))));
  assert.equal(new Set(results.map((r) => r.digest)).size, 1);
  assert.deepEqual(await store.readBlob(results[0]!.digest), data);
  assert.deepEqual(await fsp.readdir(store.tmpDir), []);
});

test('blobPath refuses digests that are not strictly valid', async () => {
  const store = await fresh();
  assert.throws(() => store.blobPath('sha256:../../etc/passwd'), /expected algorithm:hex/);
  assert.throws(() => store.blobPath(`sha256:${'a'.repeat(40)}`), /needs 64 hex characters, got 40/);
});

test('concurrent tag updates all land (index.json is locked and replaced atomically)', async () => {
  const store = await fresh();
  const img = await tinyImage(store, 'layer');
  await Promise.all(Array.from({ length: 10 }, (_, i) => store.setTag(canonicalName(`app:v${i}`), img.manifest)));
  assert.equal((await store.listTags()).length, 10);
  await assert.rejects(store.setTag('docker.io/library/x:1', { ...img.manifest, digest: digestOf('missing') }), /is not in the store/);
});

test('resolveImage by name, short ID, full ID and manifest digest', async () => {
  const store = await fresh();
  const img = await tinyImage(store, 'layer-a', 'myapp:1');
  for (const q of ['myapp:1', 'docker.io/library/myapp:1', img.configDigest.slice(7, 19), img.configDigest, img.manifestDigest]) {
    const r = await resolveImage(store, q);
    assert.equal(r.configDigest, img.configDigest, q);
  }
  await assert.rejects(resolveImage(store, 'myapp:2'), /not found in the store/);
  await assert.rejects(resolveImage(store, 'Bad Name'), /invalid reference/);
  const list = await listImages(store);
  assert.equal(list.length, 1);
  assert.equal(list[0]!.repository, 'docker.io/library/myapp');
});

test('removeImage: untag a name; delete blobs nothing else uses; ID with several names needs force', async () => {
  const store = await fresh();
  const a = await tinyImage(store, 'shared-layer', 'a:1');
  await store.setTag(canonicalName('a:2'), a.manifest);
  await tinyImage(store, "other-layer", "b:1");
  const r1 = await removeImage(store, 'a:1');
  assert.deepEqual(r1, { untagged: ['docker.io/library/a:1'], deleted: [], bytes: 0 });
  const before = await blobNames(store);
  const r2 = await removeImage(store, 'a:2');
  assert.equal(r2.deleted.length, 3);
  assert.ok(r2.bytes > 0);
  assert.ok(!(await store.hasBlob(a.manifestDigest)));
  assert.ok(before.length > (await blobNames(store)).length);
  const c = await tinyImage(store, 'c-layer', 'c:1');
  await store.setTag(canonicalName('c:2'), c.manifest);
  await assert.rejects(removeImage(store, c.configDigest.slice(7, 19)), /must be forced.*referenced in multiple repositories/);
  const r3 = await removeImage(store, c.configDigest.slice(7, 19), { force: true });
  assert.deepEqual(r3.untagged.sort(), ['docker.io/library/c:1', 'docker.io/library/c:2']);
});

test('gc removes unreachable blobs, keeps tagged, rooted and recent ones', async () => {
  const store = await fresh();
  const kept = await tinyImage(store, 'kept', 'kept:1');
  const rooted = await tinyImage(store, 'rooted');
  await store.setRoot('cache/test', [rooted.manifestDigest]);
  const orphan = await store.writeBlob(Buffer.from('orphan'));
  const dry = await gcStore(store, { dryRun: true, graceMs: 0 });
  assert.deepEqual(dry.removed, [orphan.digest]);
  assert.ok(await store.hasBlob(orphan.digest));
  assert.deepEqual((await gcStore(store, { graceMs: 60_000 })).removed, [], 'young blobs survive the grace period');
  const r = await gcStore(store, { graceMs: 0 });
  assert.deepEqual(r.removed, [orphan.digest]);
  assert.ok(await store.hasBlob(kept.manifestDigest));
  assert.ok(await store.hasBlob(rooted.configDigest));
});
