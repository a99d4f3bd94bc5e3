// createLayer: deterministic tars, digests computed in one pass, hardlinks, xattrs, overlay
// upper-dir conversion, and a faithful round trip through applyLayer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, lstatSync, createReadStream } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import path from 'node:path';
import { setAttribute, getAttribute } from '@napi-rs/xattr';
import tar from 'tar-stream';
import { Readable } from 'node:stream';
import { ContentStore } from '../../src/store/index.js';
import { createLayer, applyLayer } from '../../src/layer/index.js';
import { tempDir, requireRoot, requireTool } from '../helpers/env.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function makeTree(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, 'etc/app'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'bin'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'etc/app/config.yaml'), 'port: 8080\n');
  await fsp.writeFile(path.join(dir, 'bin/tool'), Buffer.alloc(3 * 1024 * 1024 + 17, 7), { mode: 0o755 });
  await fsp.link(path.join(dir, 'bin/tool'), path.join(dir, 'bin/tool-alias'));
  await fsp.symlink('tool', path.join(dir, 'bin/t'));
  await fsp.writeFile(path.join(dir, `${'long-name-'.repeat(15)}.txt`), 'long\n');
  await fsp.writeFile(path.join(dir, 'ünïcödé.txt'), 'utf8\n');
  await fsp.writeFile(path.join(dir, 'empty'), '');
}

async function entriesOf(blob: Buffer): Promise<tar.Header[]> {
  const ex = tar.extract();
  const out: tar.Header[] = [];
  const p = (async () => { for await (const e of ex) { out.push(e.header); e.resume(); } })();
  Readable.from([gunzipSync(blob)]).pipe(ex as unknown as NodeJS.WritableStream);
  await p;
  return out;
}

test('same tree, same bytes: the layer digest is reproducible', async () => {
  const store = await ContentStore.open(tempDir('drydock-layer-create-'));
  const a = tempDir('drydock-layer-tree-');
  const b = tempDir('drydock-layer-tree-');
  await makeTree(a);
  await new Promise((r) => setTimeout(r, 1100)); // different mtimes, clamped away by the epoch
  await makeTree(b);
  const la = await createLayer(store, { dir: a }, { sourceDateEpoch: 1000 });
  const lb = await createLayer(store, { dir: b }, { sourceDateEpoch: 1000 });
  assert.equal(la.digest, lb.digest);
  assert.equal(la.diffID, lb.diffID);
});

test('digest, size, diffID and uncompressedSize describe the stored blob', async () => {
  const store = await ContentStore.open(tempDir('drydock-layer-create-'));
  const dir = tempDir('drydock-layer-tree-');
  await makeTree(dir);
  const l = await createLayer(store, { dir });
  const blob = await store.readBlob(l.digest);
  assert.equal(sha256(blob), l.digest);
  assert.equal(blob.length, l.size);
  const raw = gunzipSync(blob);
  assert.equal(sha256(raw), l.diffID);
  assert.equal(raw.length, l.uncompressedSize);
  assert.equal(l.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
});

test('entries are sorted, numeric-owner, PAX for long and non-ASCII names; hardlinks by inode', async () => {
  const store = await ContentStore.open(tempDir('drydock-layer-create-'));
  const dir = tempDir('drydock-layer-tree-');
  await makeTree(dir);
  const l = await createLayer(store, { dir }, { sourceDateEpoch: 5 });
  const headers = await entriesOf(await store.readBlob(l.digest));
  const names = headers.map((h) => h.name);
  assert.deepEqual(names, [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
  assert.ok(names.includes(`${'long-name-'.repeat(15)}.txt`));
  assert.ok(names.includes('ünïcödé.txt'));
  const alias = headers.find((h) => h.name === 'bin/tool-alias')!;
  assert.equal(alias.type, 'link');
  assert.equal(alias.linkname, 'bin/tool');
  for (const h of headers) {
    assert.equal(h.uname, '');
    assert.equal(h.gname, '');
    assert.ok(h.mtime.getTime() <= 5000, `${h.name} mtime clamped`);
  }
  assert.equal(headers.find((h) => h.name === 'bin/t')!.linkname, 'tool');
});

test('zstd and uncompressed layers', async () => {
  requireTool('zstd');
  const store = await ContentStore.open(tempDir('drydock-layer-create-'));
  const dir = tempDir('drydock-layer-tree-');
  await makeTree(dir);
  const z = await createLayer(store, { dir }, { compression: 'zstd', sourceDateEpoch: 1 });
  const n = await createLayer(store, { dir }, { compression: 'none', sourceDateEpoch: 1 });
  const g = await createLayer(store, { dir }, { compression: 'gzip', sourceDateEpoch: 1 });
  assert.equal(z.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
  assert.equal(n.mediaType, 'application/vnd.oci.image.layer.v1.tar');
  assert.equal(n.digest, n.diffID);
  assert.equal(z.diffID, n.diffID);
  assert.equal(g.diffID, n.diffID);
  const raw = execFileSync('zstd', ['-d', '-c', store.blobPath(z.digest)], { maxBuffer: 1 << 28 });
  assert.equal(sha256(raw), z.diffID);
});

test('round trip: createLayer then applyLayer reproduces files, modes, links, owners and xattrs', async () => {
  requireRoot();
  const store = await ContentStore.open(tempDir('drydock-layer-create-'));
  const dir = tempDir('drydock-layer-tree-');
  await makeTree(dir);
  await fsp.chown(path.join(dir, 'etc/app/config.yaml'), 1234, 5678);
  await fsp.chmod(path.join(dir, 'etc/app'), 0o2750);
  await setAttribute(path.join(dir, 'etc/app/config.yaml'), 'user.origin', 'test');
  const l = await createLayer(store, { dir });
  const out = tempDir('drydock-layer-out-');
  const r = await applyLayer(out, store.openBlob(l.digest));
  assert.equal(r.diffID, l.diffID);
  const cfg = lstatSync(path.join(out, 'etc/app/config.yaml'));
  assert.deepEqual([cfg.uid, cfg.gid], [1234, 5678]);
  assert.equal(lstatSync(path.join(out, 'etc/app')).mode & 0o7777, 0o2750);
  assert.equal((await getAttribute(path.join(out, 'etc/app/config.yaml'), 'user.origin'))?.toString(), 'test');
  assert.equal(lstatSync(path.join(out, 'bin/tool')).ino, lstatSync(path.join(out, 'bin/tool-alias')).ino);
  assert.equal(await fsp.readlink(path.join(out, 'bin/t')), 'tool');
  assert.equal(lstatSync(path.join(out, 'bin/tool')).mode & 0o777, 0o755);
  const h = createHash('sha256');
  for await (const c of createReadStream(path.join(out, 'bin/tool'))) h.update(c as Buffer);
  assert.equal(h.digest('hex'), createHash('sha256').update(Buffer.alloc(3 * 1024 * 1024 + 17, 7)).digest('hex'));
});

test('overlayUpper: 0/0 char devices become .wh. files, opaque dirs get .wh..wh..opq', async () => {
  requireRoot();
  const store = await ContentStore.open(tempDir('drydock-layer-create-'));
  const upper = tempDir('drydock-layer-upper-');
  await fsp.mkdir(path.join(upper, 'etc'));
  execFileSync('mknod', [path.join(upper, 'etc/removed.conf'), 'c', '0', '0']);
  await fsp.mkdir(path.join(upper, 'var/cache'), { recursive: true });
  await setAttribute(path.join(upper, 'var/cache'), 'trusted.overlay.opaque', 'y');
  await fsp.writeFile(path.join(upper, 'var/cache/new'), 'n');
  const l = await createLayer(store, { dir: upper }, { overlayUpper: true });
  const names = (await entriesOf(await store.readBlob(l.digest))).map((h) => `${h.type}:${h.name}`);
  assert.deepEqual(names, ['directory:etc/', 'file:etc/.wh.removed.conf', 'directory:var/', 'directory:var/cache/', 'file:var/cache/.wh..wh..opq', 'file:var/cache/new']);
  // Applied on top of a lower layer, the whiteouts delete and hide.
  const root = tempDir('drydock-layer-stack-');
  await fsp.mkdir(path.join(root, 'etc'));
  await fsp.writeFile(path.join(root, 'etc/removed.conf'), 'old');
  await fsp.writeFile(path.join(root, 'etc/kept.conf'), 'k');
  await fsp.mkdir(path.join(root, 'var/cache'), { recursive: true });
  await fsp.writeFile(path.join(root, 'var/cache/old'), 'o');
  await applyLayer(root, store.openBlob(l.digest));
  assert.deepEqual((await fsp.readdir(path.join(root, 'etc'))).sort(), ['kept.conf']);
  assert.deepEqual((await fsp.readdir(path.join(root, 'var/cache'))).sort(), ['new']);
});

test('a missing source directory is a clear error and stores nothing', async () => {
  const root = tempDir('drydock-layer-create-');
  const store = await ContentStore.open(root);
  await assert.rejects(createLayer(store, { dir: path.join(root, 'nope') }), /is not a directory/);
  assert.deepEqual(await fsp.readdir(path.join(root, 'blobs/sha256')), []);
  assert.deepEqual(await fsp.readdir(store.tmpDir), []);
});

test('binary xattr values (security.capability-like) survive create, apply and export byte for byte', async () => {
  requireRoot();
  const { importRootfs, exportImage } = await import('../../src/archive/index.js');
  const { resolveImage } = await import('../../src/store/index.js');
  const root = tempDir('drydock-layer-xattr-');
  const store = await ContentStore.open(root);
  const dir = tempDir('drydock-layer-tree-');
  const value = Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0x80, 0x00, 0x00, 0xc3, 0x28]);
  await fsp.writeFile(path.join(dir, 'ping'), 'binary');
  await setAttribute(path.join(dir, 'ping'), 'trusted.drydock-test', value);
  await importRootfs(store, dir, { tag: 'xattr:1' });
  const out = tempDir('drydock-layer-out-');
  const img = await resolveImage(store, 'xattr:1');
  const { unpackImage } = await import('../../src/layer/index.js');
  await unpackImage(store, img, out);
  assert.deepEqual(await getAttribute(path.join(out, 'ping'), 'trusted.drydock-test'), value);
  const flat = path.join(tempDir(), 'flat.tar');
  await exportImage(store, img, flat);
  const again = tempDir('drydock-layer-out-');
  await applyLayer(again, createReadStream(flat));
  assert.deepEqual(await getAttribute(path.join(again, 'ping'), 'trusted.drydock-test'), value);
});
