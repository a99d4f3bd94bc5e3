// Hostile tars (issue 12, items 6 and 8), each made by Python's tarfile or patched by hand, run
// through every path a layer tar takes into or out of the store: `drydock import`, `drydock
// load` of a docker-archive (plain and gzip layer) and of an oci-archive, and the unpacker
// (`drydock run` of an image whose layer reached the store unchecked, as a pull stores it).
// Each path must refuse with the same message, naming the entry, within a bounded time (a
// negative PAX size used to make load seek backwards forever), and leave the store as it was.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { ContentStore } from '../../src/store/index.js';
import { writeImage } from '../../src/store/write-image.js';
import { singleLayerConfig } from '../../src/image/config.js';
import { MediaType } from '../../src/image/media-types.js';
import { importRootfs, loadArchive } from '../../src/archive/index.js';
import { ensureLayersUnpacked, layerCacheDir, unpackedLayerDir, type LayerRef } from '../../src/runtime/index.js';
import { tempDir, runCli, requireRoot, requireTool } from '../helpers/env.js';
import { storeSnapshot } from '../helpers/store-snapshot.js';
import { pythonTar, pythonTars, patchSizeField, dockerArchive, ociArchive, type PyEntry } from '../helpers/python-tars.js';

/** Far above what a refusal takes (well under a second), far below a test's patience. */
const BOUND_MS = 30_000;

let root: string;

type Path = 'import' | 'load docker-archive' | 'load docker-archive, gzip layer' | 'load oci-archive' | 'unpack (run)';
const PATHS: Path[] = ['import', 'load docker-archive', 'load docker-archive, gzip layer', 'load oci-archive', 'unpack (run)'];

let serial = 0;

/** Stores a layer the way pull does (blob as is, no tar checks) and tags an image for it. */
async function storeUnchecked(store: ContentStore, layer: Buffer, tag: string): Promise<LayerRef> {
  const blob = gzipSync(layer);
  const w = await store.writeBlob(blob);
  const diffID = `sha256:${createHash('sha256').update(layer).digest('hex')}`;
  await writeImage(store, {
    config: singleLayerConfig({ diffID, config: { Cmd: ['/x'] }, history: { created_by: 'test: stored unchecked, as a pull stores it' } }),
    layers: [{ digest: w.digest, size: w.size, mediaType: MediaType.OciLayerGzip, diffID }],
    tag,
  });
  return { digest: w.digest, mediaType: MediaType.OciLayerGzip, diffID };
}

function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const bound = new Promise<never>((_r, reject) => { timer = setTimeout(() => reject(new Error(`${what} ran into the ${BOUND_MS} ms bound: it loops`)), BOUND_MS); });
  return Promise.race([p, bound]).finally(() => clearTimeout(timer));
}

/**
 * Sends `layer` down one path, in process (the CLI's time-bounded runs are the index tests
 * below and the `drydock run` test); resolves with the refusal, if any, and whether the
 * store kept every blob and index.json byte as it was.
 */
async function attempt(p: Path, layer: Buffer): Promise<{ error?: Error; storeUnchanged: boolean; unpackedLeftovers: string[] }> {
  const store = await ContentStore.open(root);
  const tag = `hostile${++serial}:1`;
  let run: () => Promise<unknown>;
  let ref: LayerRef | undefined;
  if (p === 'unpack (run)') {
    // What `drydock run` does before runc: unpack each layer into the layer cache.
    ref = await storeUnchecked(store, layer, tag);
    run = () => ensureLayersUnpacked(store, [ref!]);
  } else {
    const file = path.join(tempDir(), 'in.tar');
    await fsp.writeFile(file, p === 'import' ? layer
      : p === 'load oci-archive' ? ociArchive(layer, { tag })
        : dockerArchive(layer, { tag, compress: p === 'load docker-archive, gzip layer' }));
    run = () => (p === 'import' ? importRootfs(store, file, { tag }) : loadArchive(store, file));
  }
  const before = await storeSnapshot(root);
  const error = await within(run(), p).then(() => undefined, (e: Error) => e);
  const after = await storeSnapshot(root);
  const cache = await fsp.readdir(layerCacheDir(store)).catch(() => [] as string[]);
  const unpackedLeftovers = cache.filter((n) => n.startsWith('.tmp-') || (error && ref && path.join(layerCacheDir(store), n) === unpackedLayerDir(store, ref.diffID)));
  return { error, storeUnchanged: JSON.stringify(before) === JSON.stringify(after), unpackedLeftovers };
}

async function expectRefused(p: Path, layer: Buffer, error: RegExp): Promise<void> {
  const r = await attempt(p, layer);
  assert.ok(r.error, `${p} accepted the archive`);
  assert.match(r.error.message, error);
  assert.doesNotMatch(r.error.message, /ran into the .* bound/);
  // A run leaves its image (stored on purpose, as a pull would) but no unpacked layer.
  if (p !== 'unpack (run)') assert.ok(r.storeUnchanged, `${p} changed the store`);
  else assert.deepEqual(r.unpackedLeftovers, [], 'a refused unpack left a layer dir behind');
}

// Every tar of the tables, made by one Python run in before().
const made = new Map<PyEntry[], Buffer>();
const tarOf = (entries: PyEntry[]) => made.get(entries)!;

// Item 6: sizes. An entry "evil" with a hostile size, then an ordinary entry after it.
const withPax = (size: string): PyEntry[] => [{ name: 'evil', body: 'hello', pax: { size } }, { name: 'after', body: 'x' }];
const plain: PyEntry[] = [{ name: 'evil', body: 'hello' }, { name: 'after', body: 'x' }];
const sizeField = (field: Buffer) => (t: Buffer) => patchSizeField(t, 0, field);
const sizeCases: { name: string; entries: PyEntry[]; patch?: (t: Buffer) => Buffer }[] = [
  { name: 'PAX size -1', entries: withPax('-1') },
  { name: 'PAX size -1536 (seeks back to its own PAX header)', entries: withPax('-1536') },
  { name: 'PAX size NaN ("abc")', entries: withPax('abc') },
  { name: 'PAX size fractional ("1.5")', entries: withPax('1.5') },
  { name: 'PAX size with exponent ("5e0")', entries: withPax('5e0') },
  { name: 'PAX size with a leading space', entries: withPax(' 5') },
  { name: 'PAX size past 2^53', entries: withPax('99999999999999999999') },
  { name: 'header size "-1" (not octal)', entries: plain, patch: sizeField(Buffer.from('-0000000001\0')) },
  { name: 'header size "zzz" (not a number)', entries: plain, patch: sizeField(Buffer.from('zzzzzzzzzzz\0')) },
  { name: 'header size base-256 negative', entries: plain, patch: sizeField(Buffer.alloc(12, 0xff)) },
  { name: 'header size base-256 past 2^53', entries: plain, patch: sizeField(Buffer.concat([Buffer.from([0x80]), Buffer.alloc(11, 0xff)])) },
];

const manifestWithPax = (size: string): PyEntry[] => [{ name: 'manifest.json', body: '[]', pax: { size } }];
const outerCases: { name: string; entries: PyEntry[]; patch?: (t: Buffer) => Buffer }[] = [
  { name: 'PAX size -1536, which made load loop forever at 100% CPU', entries: manifestWithPax('-1536') },
  { name: 'PAX size -1', entries: manifestWithPax('-1') },
  { name: 'PAX size "abc"', entries: manifestWithPax('abc') },
  { name: 'PAX size "1.5"', entries: manifestWithPax('1.5') },
  { name: 'header size base-256 negative', entries: [{ name: 'manifest.json', body: '[]' }], patch: sizeField(Buffer.alloc(12, 0xff)) },
];
const linkCases: { name: string; entries: PyEntry[]; error: RegExp }[] = [
  {
    name: 'a hardlink through a symlink planted earlier',
    entries: [{ name: 's', type: 'symlink', linkname: '/etc' }, { name: 'h', type: 'link', linkname: 's/passwd' }],
    error: /entry "h": parent "s" is a symlink; refusing to follow it/,
  },
  {
    name: 'a hardlink to a symlink, then a file beneath the hardlink',
    entries: [{ name: 's', type: 'symlink', linkname: '/etc' }, { name: 'l', type: 'link', linkname: 's' }, { name: 'l/cron.d/x', body: '* * * * * root sh\n' }],
    error: /entry "l\/cron\.d\/x": parent "l" is a symlink; refusing to follow it/,
  },
  { name: 'the whiteout name ".wh..." (deletes "..")', entries: [{ name: 'd/', type: 'dir' }, { name: 'd/.wh...' }], error: /entry "d\/\.wh\.\.\.": invalid whiteout name/ },
  { name: 'the whiteout name ".wh.." (deletes ".")', entries: [{ name: 'd/', type: 'dir' }, { name: 'd/.wh..' }], error: /entry "d\/\.wh\.\.": invalid whiteout name/ },
  { name: 'the whiteout name ".wh." (deletes nothing)', entries: [{ name: 'd/', type: 'dir' }, { name: 'd/.wh.' }], error: /entry "d\/\.wh\.": invalid whiteout name/ },
  { name: 'a whiteout of a whiteout (".wh..wh.x")', entries: [{ name: '.wh..wh.x' }], error: /entry "\.wh\.\.wh\.x": invalid whiteout name/ },
  {
    name: 'a whiteout beneath a symlink',
    entries: [{ name: 's', type: 'symlink', linkname: '/etc' }, { name: 's/.wh.passwd' }],
    error: /entry "s\/\.wh\.passwd": parent "s" is a symlink/,
  },
  { name: 'a hardlink to a target the layer does not have', entries: [{ name: 'h', type: 'link', linkname: 'nothere' }], error: /entry "h": hardlink target "nothere" does not exist in the layer stack/ },
  { name: 'a hardlink to a directory', entries: [{ name: 'd/', type: 'dir' }, { name: 'h', type: 'link', linkname: 'd' }], error: /entry "h": hardlink target "d" is a directory/ },
  { name: 'a file beneath a file', entries: [{ name: 'f', body: 'x' }, { name: 'f/x', body: 'y' }], error: /entry "f\/x": parent "f" is not a directory/ },
];

const realLayer: PyEntry[] = [
  { name: 'd/', type: 'dir' }, { name: 'd/a', body: 'a' }, { name: 'd/b', type: 'link', linkname: 'd/a' },
  { name: 's', type: 'symlink', linkname: 'd' }, { name: 's/', type: 'dir' }, { name: 's/x', body: 'x' },
  { name: '.wh.gone' }, { name: 'd/.wh..wh..opq' }, { name: 'l', type: 'link', linkname: 's/x' },
];
const runRefused: PyEntry[] = [{ name: 's', type: 'symlink', linkname: '/etc' }, { name: 'h', type: 'link', linkname: 's/shadow' }];

// After the tables: node runs a top-level before() as soon as the first test is declared.
before(async () => {
  requireRoot();
  requireTool('runc');
  root = tempDir('drydock-hostile-');
  const specs = [...sizeCases, ...outerCases, ...linkCases].map((c) => c.entries).concat([realLayer, runRefused]);
  const tars = pythonTars(specs);
  specs.forEach((spec, i) => made.set(spec, tars[i]!));
  // Something in the store, so "unchanged" means more than "still empty".
  const ok = path.join(tempDir(), 'ok.tar');
  await fsp.writeFile(ok, pythonTar([{ name: 'etc/', type: 'dir' }, { name: 'etc/motd', body: 'hi\n' }]));
  const r = await runCli(['import', ok, 'ok:1'], { root });
  assert.equal(r.code, 0, r.stderr);
});

for (const c of sizeCases) {
  for (const p of PATHS) {
    test(`${p} refuses ${c.name}, naming the entry, in bounded time`, async () => {
      const tar = tarOf(c.entries);
      await expectRefused(p, c.patch ? c.patch(tar) : tar, /entry "evil": invalid size .* \(a size must be a whole number of bytes/);
    });
  }
}

// The archive index (`load`'s own reader) on a docker-archive whose manifest.json entry has the size.
for (const c of outerCases) {
  test(`load refuses an archive whose own index has ${c.name}`, async () => {
    const file = path.join(tempDir(), 'evil.tar');
    await fsp.writeFile(file, c.patch ? c.patch(tarOf(c.entries)) : tarOf(c.entries));
    const before = await storeSnapshot(root);
    const t0 = Date.now();
    const r = await runCli(['load', '-i', file], { root, timeoutMs: BOUND_MS });
    assert.ok(Date.now() - t0 < BOUND_MS, 'load ran into the time bound (killed): it loops');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /evil\.tar: entry "manifest\.json": invalid size/);
    assert.deepEqual(await storeSnapshot(root), before);
  });
}

// Item 8: what the unpacker refuses, import and load refuse too, with the same message.
for (const c of linkCases) {
  for (const p of PATHS) {
    test(`${p} refuses ${c.name}`, async () => {
      await expectRefused(p, tarOf(c.entries), c.error);
    });
  }
}

test('the same rules accept what a real layer does: hardlinks within it, whiteouts, a symlink replaced by a directory', async () => {
  const layer = tarOf(realLayer);
  for (const p of PATHS) {
    const r = await attempt(p, layer);
    assert.equal(r.error, undefined, `${p}: ${r.error?.message}`);
  }
});

test('drydock run refuses a hostile layer that reached the store unchecked, in bounded time', async () => {
  const tag = `hostile${++serial}:1`;
  await storeUnchecked(await ContentStore.open(root), tarOf(runRefused), tag);
  const t0 = Date.now();
  const r = await runCli(['run', '--rm', '--network', 'none', tag], { root, timeoutMs: BOUND_MS });
  assert.ok(Date.now() - t0 < BOUND_MS, 'run ran into the time bound');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /entry "h": parent "s" is a symlink; refusing to follow it/);
});
