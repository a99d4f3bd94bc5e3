// import, save and load: round trips through every archive format, the legacy docker-archive
// layout podman writes, and bad input that must leave the store exactly as it was.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import {
  importRootfs, saveImages, loadArchive, exportImage, TarWriter, TarFile, OciLayoutSource, DirLayoutFiles,
  DockerArchiveSource, openArchiveSource,
} from '../../src/archive/index.js';
import { digestOf } from '../../src/image/index.js';
import { buildBusyboxRootfs } from '../../src/mkimage/busybox-rootfs.js';
import { tempDir, requireTool } from '../helpers/env.js';
import { makeTar, gzip, zstd } from '../helpers/tars.js';
import { storeSnapshot } from '../helpers/store-snapshot.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** path -> type/mode/owner/content hash of every entry of a plain tar (order-independent). */
export async function tarManifest(file: string): Promise<Map<string, string>> {
  const tar = await TarFile.open(file);
  const out = new Map<string, string>();
  for (const [name, e] of tar.entries) {
    let desc = `${e.type}`;
    if (e.type === 'file') {
      const h = createHash('sha256');
      for await (const c of tar.open(name)) h.update(c as Buffer);
      desc += `:${e.size}:${h.digest('hex')}`;
    }
    if (e.linkname) desc += `->${e.linkname}`;
    out.set(name, desc);
  }
  return out;
}

let rootfs: string;
let rootfsTar: string;
before(async () => {
  requireTool('busybox', 'apt-get install busybox-static');
  const dir = tempDir('drydock-archive-rootfs-');
  rootfs = path.join(dir, 'rootfs');
  await fsp.mkdir(rootfs);
  await buildBusyboxRootfs(rootfs);
  await fsp.writeFile(path.join(rootfs, 'etc/motd'), 'hello from drydock\n');
  rootfsTar = path.join(dir, 'rootfs.tar');
  const store = await ContentStore.open(tempDir('drydock-archive-scratch-'));
  const { layer } = await importRootfs(store, rootfs, { sourceDateEpoch: 1700000000 });
  // A plain tar of the rootfs (the uncompressed layer), to import in every compression.
  await fsp.writeFile(rootfsTar, (await import('node:zlib')).gunzipSync(await store.readBlob(layer.digest)));
});

test('import: plain, gzip and zstd tars, a directory and a stream give the same layer', async () => {
  requireTool('zstd');
  const store = await ContentStore.open(tempDir('drydock-archive-import-'));
  const plain = await fsp.readFile(rootfsTar);
  const gz = path.join(tempDir(), 'r.tar.gz');
  const zst = path.join(tempDir(), 'r.tar.zst');
  await fsp.writeFile(gz, gzip(plain));
  await fsp.writeFile(zst, zstd(plain));
  const diffIDs = new Set<string>();
  for (const src of [rootfsTar, gz, zst]) diffIDs.add((await importRootfs(store, src, { tag: 'x:1' })).layer.diffID);
  diffIDs.add((await importRootfs(store, createReadStream(gz), { tag: 'x:2' })).layer.diffID);
  diffIDs.add((await importRootfs(store, rootfs, { tag: 'x:3', sourceDateEpoch: 1700000000 })).layer.diffID);
  assert.equal(diffIDs.size, 1);
  assert.equal([...diffIDs][0], `sha256:${sha(plain)}`);
});

test('import applies --change and --message like docker import', async () => {
  const store = await ContentStore.open(tempDir('drydock-archive-import-'));
  const r = await importRootfs(store, rootfsTar, {
    tag: ['base:1', 'localhost:5000/base:1'], changes: ['CMD ["sh"]', 'ENV PATH=/bin:/usr/bin', 'WORKDIR /root', 'EXPOSE 8080'], message: 'nightly', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
  });
  const img = await resolveImage(store, 'localhost:5000/base:1', { os: 'linux', architecture: 'arm64' });
  assert.equal(img.configDigest, r.configDigest);
  assert.deepEqual(img.config.config, { Cmd: ['sh'], Env: ['PATH=/bin:/usr/bin'], WorkingDir: '/root', ExposedPorts: { '8080/tcp': {} } });
  assert.equal(img.config.history?.[0]?.comment, 'nightly');
  assert.deepEqual([img.config.architecture, img.config.variant], ['arm64', 'v8']);
  assert.deepEqual(r.names, ['docker.io/library/base:1', 'localhost:5000/base:1']);
});

const badImports: { name: string; data: () => Buffer; error: RegExp }[] = [
  { name: 'corrupt gzip', data: () => { const g = gzip(makeTar([{ name: 'a', body: 'x'.repeat(3000) }])); g.fill(0x55, 10, 30); return g; }, error: /corrupt gzip data/ },
  { name: 'truncated tar', data: () => makeTar([{ name: 'bin/sh', body: Buffer.alloc(4096, 1) }]).subarray(0, 1536), error: /truncated tar archive/ },
  { name: '../../etc/passwd', data: () => makeTar([{ name: '../../etc/passwd', body: 'root::0:0:::\n' }]), error: /entry "\.\.\/\.\.\/etc\/passwd": "\.\." path components are refused/ },
  { name: 'symlink to /etc followed by a file under it', data: () => makeTar([{ name: 'etc', type: 'symlink', linkname: '/etc' }, { name: 'etc/cron.d/x', body: '* * * * * root sh\n' }]), error: /entry "etc\/cron\.d\/x": parent "etc" is a symlink/ },
  { name: 'hardlink to /etc/shadow', data: () => makeTar([{ name: 'shadow', type: 'link', linkname: '/etc/shadow' }]), error: /hardlink to absolute path "\/etc\/shadow" is refused/ },
  { name: 'not a tar at all', data: () => Buffer.from('<html>404 not found</html>'.repeat(50)), error: /not a valid tar archive|truncated tar/ },
];
for (const c of badImports) {
  test(`import refuses ${c.name} and leaves the store as it was`, async () => {
    const root = tempDir('drydock-archive-bad-');
    const store = await ContentStore.open(root);
    await importRootfs(store, rootfsTar, { tag: 'ok:1' });
    const before = await storeSnapshot(root);
    const file = path.join(tempDir(), 'bad.tar');
    await fsp.writeFile(file, c.data());
    await assert.rejects(importRootfs(store, file, { tag: 'bad:1' }), c.error);
    await assert.rejects(importRootfs(store, Readable.from([c.data()]), { tag: 'bad:2' }), c.error);
    assert.deepEqual(await storeSnapshot(root), before);
  });
}

for (const format of ['docker-archive', 'oci-archive', 'oci-dir'] as const) {
  test(`save --format ${format}, load into a fresh store: same image, same files`, async () => {
    const a = await ContentStore.open(tempDir('drydock-archive-a-'));
    await importRootfs(a, rootfsTar, { tag: 'app:1', changes: ['CMD ["sh"]'] });
    await importRootfs(a, rootfs, { tag: 'localhost:5000/tools/app:2', sourceDateEpoch: 1 });
    const out = path.join(tempDir(), format === 'oci-dir' ? 'layout' : 'images.tar');
    await saveImages(a, ['app:1', 'localhost:5000/tools/app:2'], out, { format });
    const b = await ContentStore.open(tempDir('drydock-archive-b-'));
    if (format === 'oci-dir') {
      // A layout dir is read through the oci: transport (load takes archives).
      const src = await openArchiveSource({ transport: 'oci', path: out, tag: '1' });
      const m = await src.getManifest();
      assert.equal(m.digest, (await resolveImage(a, 'app:1')).manifestDescriptor.digest);
      return;
    }
    const r = await loadArchive(b, out);
    assert.equal(r.format, format);
    assert.deepEqual(r.images.flatMap((i) => i.names).sort(), ['docker.io/library/app:1', 'localhost:5000/tools/app:2']);
    for (const name of ['app:1', 'localhost:5000/tools/app:2']) {
      const ia = await resolveImage(a, name);
      const ib = await resolveImage(b, name);
      assert.equal(ib.configDigest, ia.configDigest, 'image ID survives');
      assert.deepEqual(ib.config.config, ia.config.config);
      const ea = path.join(tempDir(), 'a.tar');
      const eb = path.join(tempDir(), 'b.tar');
      await exportImage(a, ia, ea);
      await exportImage(b, ib, eb);
      assert.deepEqual(await tarManifest(eb), await tarManifest(ea));
    }
  });
}

test('save output is byte-for-byte reproducible', async () => {
  const s = await ContentStore.open(tempDir('drydock-archive-repro-'));
  await importRootfs(s, rootfs, { tag: 'r:1', sourceDateEpoch: 1 });
  const x = path.join(tempDir(), 'x.tar');
  const y = path.join(tempDir(), 'y.tar');
  await saveImages(s, ['r:1'], x);
  await saveImages(s, ['r:1'], y);
  assert.equal(sha(await fsp.readFile(x)), sha(await fsp.readFile(y)));
});

/** The legacy docker-archive podman writes: uncompressed <hex>.tar layers, <id>/layer.tar symlinks, <hex>.json config. */
async function legacyArchive(layers: Buffer[], opts: { corruptDiffID?: boolean; dropLayer?: boolean; repoTags?: string[] } = {}): Promise<string> {
  const diffIDs = layers.map((l) => `sha256:${sha(l)}`);
  if (opts.corruptDiffID) diffIDs[diffIDs.length - 1] = `sha256:${sha('something else')}`;
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: diffIDs }, history: [] }));
  const file = path.join(tempDir('drydock-legacy-'), 'legacy.tar');
  const w = new TarWriter(file);
  const paths: string[] = [];
  for (const [i, l] of layers.entries()) {
    const p = `${sha(l)}.tar`;
    paths.push(`${sha(`id${i}`)}/layer.tar`);
    if (opts.dropLayer && i === layers.length - 1) continue;
    await w.addBuffer(p, l);
  }
  await w.addBuffer(`${sha(config)}.json`, config);
  const manifest = [{ Config: `${sha(config)}.json`, RepoTags: opts.repoTags ?? ['localhost/legacy:latest'], Layers: paths }];
  await w.addBuffer('manifest.json', Buffer.from(JSON.stringify(manifest)));
  await w.finish();
  // Append the <id>/layer.tar symlinks with a second writer pass: rebuild with them in place.
  const withLinks = path.join(path.dirname(file), 'with-links.tar');
  const parts: Buffer[] = [];
  const tar = await TarFile.open(file);
  const entries = [...tar.entries.values()].filter((e) => e.type === 'file');
  const { encodeHeader, paddingFor, END_OF_ARCHIVE } = await import('../../src/layer/tar-writer.js');
  for (const e of entries) {
    const data = await tar.read(e.name, 1 << 30);
    parts.push(encodeHeader({ name: e.name, type: 'file', mode: 0o444, uid: 0, gid: 0, size: data.length, mtime: 0 }), data, Buffer.alloc(paddingFor(data.length)));
  }
  for (const [i, l] of layers.entries()) {
    parts.push(encodeHeader({ name: `${sha(`id${i}`)}/layer.tar`, type: 'symlink', linkname: `../${sha(l)}.tar`, mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 0 }));
  }
  parts.push(END_OF_ARCHIVE);
  await fsp.writeFile(withLinks, Buffer.concat(parts));
  return withLinks;
}

test('load reads the legacy docker-archive layout: uncompressed layers get gzipped, the image ID is kept', async () => {
  const l1 = makeTar([{ name: 'etc/', type: 'directory' }, { name: 'etc/a', body: 'one' }, { name: 'etc/b', body: 'gone soon' }]);
  const l2 = makeTar([{ name: 'etc/.wh.b' }, { name: 'etc/c', body: 'three' }]);
  const file = await legacyArchive([l1, l2]);
  const store = await ContentStore.open(tempDir('drydock-archive-legacy-'));
  const r = await loadArchive(store, file);
  assert.equal(r.format, 'docker-archive');
  assert.deepEqual(r.images[0]!.names, ['localhost/legacy:latest']);
  const img = await resolveImage(store, 'localhost/legacy:latest');
  assert.equal(img.manifest.layers.length, 2);
  for (const l of img.manifest.layers) assert.equal(l.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  assert.deepEqual(img.config.rootfs.diff_ids, [`sha256:${sha(l1)}`, `sha256:${sha(l2)}`]);
  const out = path.join(tempDir(), 'flat.tar');
  await exportImage(store, img, out);
  assert.deepEqual([...(await tarManifest(out)).keys()].sort(), ['etc', 'etc/a', 'etc/c']);
  // The same archive through the docker-archive: transport, for copy.
  const src = new DockerArchiveSource(await TarFile.open(file));
  const m = JSON.parse((await src.getManifest()).bytes.toString());
  assert.equal(m.layers[0].digest, `sha256:${sha(l1)}`);
  const blob = await src.openBlob(m.layers[1]);
  const chunks: Buffer[] = [];
  for await (const c of blob) chunks.push(c as Buffer);
  assert.equal(sha(Buffer.concat(chunks)), sha(l2));
});

test('load also takes a gzip-compressed archive from a stream', async () => {
  const file = await legacyArchive([makeTar([{ name: 'x', body: 'y' }])]);
  const store = await ContentStore.open(tempDir('drydock-archive-gz-'));
  const r = await loadArchive(store, Readable.from([gzip(await fsp.readFile(file))]));
  assert.deepEqual(r.images[0]!.names, ['localhost/legacy:latest']);
});

async function ociArchiveWith(edit: (index: any, dir: string) => Promise<void>): Promise<string> {
  const s = await ContentStore.open(tempDir('drydock-archive-src-'));
  await importRootfs(s, makeTarFile(), { tag: 'edit:1' });
  const dir = path.join(tempDir(), 'layout');
  await saveImages(s, ['edit:1'], dir, { format: 'oci-dir' });
  const index = JSON.parse(await fsp.readFile(path.join(dir, 'index.json'), 'utf8'));
  await edit(index, dir);
  await fsp.writeFile(path.join(dir, 'index.json'), JSON.stringify(index));
  const file = path.join(tempDir(), 'edited.tar');
  const w = new TarWriter(file);
  for (const rel of (await fsp.readdir(dir, { recursive: true })).map(String).sort()) {
    const st = await fsp.stat(path.join(dir, rel));
    if (st.isFile()) await w.addBuffer(rel, await fsp.readFile(path.join(dir, rel)));
  }
  await w.finish();
  return file;
}

function makeTarFile(): Readable {
  return Readable.from([makeTar([{ name: 'hello', body: 'world' }])]);
}

const badLoads: { name: string; make: () => Promise<string>; error: RegExp }[] = [
  { name: 'docker-archive whose manifest.json references a missing layer', make: () => legacyArchive([makeTar([{ name: 'a', body: '1' }]), makeTar([{ name: 'b', body: '2' }])], { dropLayer: true }), error: /archive is missing ".*\/layer\.tar" referenced by manifest\.json/ },
  { name: 'docker-archive layer that does not match its diff_id (fails after writing blobs)', make: () => legacyArchive([makeTar([{ name: 'a', body: '1' }]), makeTar([{ name: 'b', body: '2' }])], { corruptDiffID: true }), error: /hashes to sha256:[a-f0-9]{64}, but the config expects/ },
  {
    name: 'oci-archive whose manifest references a missing blob',
    make: () => ociArchiveWith(async (index, dir) => {
      const m = JSON.parse(await fsp.readFile(path.join(dir, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
      await fsp.rm(path.join(dir, 'blobs/sha256', m.layers[0].digest.slice(7)));
    }),
    error: /blob sha256:[a-f0-9]{64} referenced by manifest sha256:[a-f0-9]{64} is missing from the archive/,
  },
  { name: 'oci-archive index.json with a digest of wrong length', make: () => ociArchiveWith(async (index) => { index.manifests[0].digest = index.manifests[0].digest.slice(0, 50); }), error: /sha256 needs 64 hex characters, got 43/ },
  { name: 'neither format', make: async () => { const f = path.join(tempDir(), 'x.tar'); await fsp.writeFile(f, makeTar([{ name: 'random.txt', body: 'x' }])); return f; }, error: /not a docker-archive \(no manifest\.json\) or oci-archive \(no index\.json\)/ },
  { name: 'corrupt gzip archive', make: async () => { const f = path.join(tempDir(), 'x.tar.gz'); const g = gzip(makeTar([{ name: 'manifest.json', body: '[]' }])); g.fill(0x33, 10, 40); await fsp.writeFile(f, g); return f; }, error: /corrupt gzip data/ },
];
for (const c of badLoads) {
  test(`load refuses ${c.name} and leaves the store as it was`, async () => {
    const root = tempDir('drydock-archive-badload-');
    const store = await ContentStore.open(root);
    await importRootfs(store, makeTarFile(), { tag: 'existing:1' });
    const before = await storeSnapshot(root);
    await assert.rejects(loadArchive(store, await c.make()), c.error);
    assert.deepEqual(await storeSnapshot(root), before);
  });
}

test('oci: layout source serves manifests and blobs with digests checked', async () => {
  const s = await ContentStore.open(tempDir('drydock-archive-layout-'));
  const r = await importRootfs(s, makeTarFile(), { tag: 'lay:1' });
  const dir = path.join(tempDir(), 'layout');
  await saveImages(s, ['lay:1'], dir, { format: 'oci-dir' });
  const src = new OciLayoutSource(new DirLayoutFiles(dir), '1');
  const m = await src.getManifest();
  assert.equal(m.digest, r.manifestDigest);
  assert.equal(digestOf(m.bytes), r.manifestDigest);
  await assert.rejects(new OciLayoutSource(new DirLayoutFiles(dir), 'nope').getManifest(), /no image named "nope" \(available: 1\)/);
});

test('export of a layer stack matches unpacking it: whiteouts, opaque dirs, replaced parents', async () => {
  const { unpackImage, tarDirectory } = await import('../../src/layer/index.js');
  const { writeImage } = await import('../../src/store/index.js');
  const store = await ContentStore.open(tempDir('drydock-archive-export-'));
  const layerFiles = [
    makeTar([
      { name: 'a/', type: 'directory' }, { name: 'a/keep', body: '1' }, { name: 'a/drop', body: '2' },
      { name: 'o/', type: 'directory', mode: 0o700 }, { name: 'o/lower', body: 'l' },
      { name: 'p/', type: 'directory' }, { name: 'p/child', body: 'c' }, { name: 'hl', body: 'h' }, { name: 'hl2', type: 'link', linkname: 'hl' },
    ]),
    makeTar([
      { name: 'a/.wh.drop' }, { name: 'a/new', body: 'n' },
      { name: 'o/', type: 'directory', mode: 0o755 }, { name: 'o/.wh..wh..opq' }, { name: 'o/upper', body: 'u' },
      { name: 'p', type: 'symlink', linkname: 'a' },
    ]),
    makeTar([{ name: 'a/keep', body: 'overwritten' }]),
  ];
  const layers = [];
  for (const t of layerFiles) {
    const { importLayerStream } = await import('../../src/archive/index.js');
    layers.push(await importLayerStream(store, Readable.from([t])));
  }
  await writeImage(store, { config: { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }, layers, tag: 'stack:1' });
  const img = await resolveImage(store, 'stack:1');
  const streamed = path.join(tempDir(), 'streamed.tar');
  await exportImage(store, img, streamed);
  const dir = path.join(tempDir(), 'unpacked');
  await unpackImage(store, img, dir);
  const walked = path.join(tempDir(), 'walked.tar');
  const chunks: Buffer[] = [];
  for await (const c of tarDirectory(dir)) chunks.push(c);
  await fsp.writeFile(walked, Buffer.concat(chunks));
  assert.deepEqual(await tarManifest(streamed), await tarManifest(walked));
  assert.deepEqual([...(await tarManifest(streamed)).keys()].sort(), ['a', 'a/keep', 'a/new', 'hl', 'hl2', 'o', 'o/upper', 'p']);
});
