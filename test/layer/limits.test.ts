// The expanded-size cap (issue 12, item 7): a gzip bomb (1 GiB of zeros in about 1 MiB) is
// refused by import, load, run's unpack (also after a push and pull), ADD and export when DRYDOCK_MAX_LAYER_SIZE is below
// it, and by the ratio check (DRYDOCK_MAX_LAYER_RATIO) with no size cap at all, each quickly
// (the size cap stops at the entry's header, the ratio within ~100 MiB) and leaving the
// store as it was. The cap is set low through the environment so the test stays small.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { ContentStore } from '../../src/store/index.js';
import { writeImage } from '../../src/store/write-image.js';
import { singleLayerConfig } from '../../src/image/config.js';
import { MediaType } from '../../src/image/media-types.js';
import { layerLimits, DEFAULT_MAX_LAYER_SIZE } from '../../src/layer/index.js';
import { startRegistry } from '../../src/registry/index.js';
import { tempDir, runCli, requireRoot, requireTool } from '../helpers/env.js';
import { storeSnapshot } from '../helpers/store-snapshot.js';
import { gzipBomb, dockerArchive, pythonTar } from '../helpers/python-tars.js';

const GiB = 1024 ** 3;
const CAP = { DRYDOCK_MAX_LAYER_SIZE: '64m' };
const RATIO = { DRYDOCK_MAX_LAYER_SIZE: '0', DRYDOCK_MAX_LAYER_RATIO: '100' };
const CAP_ERROR = /entry "zeros": layer expands beyond the 64 MiB cap on uncompressed layer size \(DRYDOCK_MAX_LAYER_SIZE/;
const RATIO_ERROR = /layer expands more than 100 times its compressed size .*DRYDOCK_MAX_LAYER_RATIO\): refusing a decompression bomb/;
const BOUND_MS = 60_000;

let root: string;
let bomb: string;
let bombImage: string;

before(async () => {
  requireRoot();
  requireTool('runc');
  root = tempDir('drydock-limits-');
  const dir = tempDir();
  bomb = path.join(dir, 'bomb.tar.gz');
  const bytes = gzipBomb(GiB);
  assert.ok(bytes.length < 2 << 20, `the bomb is ${bytes.length} bytes`);
  await fsp.writeFile(bomb, bytes);
  // The bomb as a pulled image: stored as is, as a pull stores layers (no tar checks).
  const store = await ContentStore.open(root);
  const w = await store.writeBlob(bytes);
  const diffID = `sha256:${createHash('sha256').update('not checked before the cap').digest('hex')}`;
  bombImage = 'bomb:pulled';
  await writeImage(store, {
    config: singleLayerConfig({ diffID, config: { Cmd: ['/zeros'] }, history: { created_by: 'test: a pulled bomb' } }),
    layers: [{ digest: w.digest, size: w.size, mediaType: MediaType.OciLayerGzip, diffID }],
    tag: bombImage,
  });
});

test('defaults: a 64 GiB cap, no ratio check; sizes take k/m/g/t; 0 turns the cap off; bad values are errors', () => {
  assert.deepEqual(layerLimits({}), { maxBytes: DEFAULT_MAX_LAYER_SIZE, maxRatio: 0 });
  assert.equal(DEFAULT_MAX_LAYER_SIZE, 64 * GiB);
  assert.deepEqual(layerLimits({ DRYDOCK_MAX_LAYER_SIZE: '1.5g', DRYDOCK_MAX_LAYER_RATIO: '200' }), { maxBytes: 1.5 * GiB, maxRatio: 200 });
  assert.equal(layerLimits({ DRYDOCK_MAX_LAYER_SIZE: '512MiB' }).maxBytes, 512 * 1024 ** 2);
  assert.equal(layerLimits({ DRYDOCK_MAX_LAYER_SIZE: '0' }).maxBytes, Number.POSITIVE_INFINITY);
  assert.throws(() => layerLimits({ DRYDOCK_MAX_LAYER_SIZE: 'lots' }), /DRYDOCK_MAX_LAYER_SIZE: "lots" is not a size/);
  assert.throws(() => layerLimits({ DRYDOCK_MAX_LAYER_RATIO: '-3' }), /DRYDOCK_MAX_LAYER_RATIO: "-3" is not a non-negative number/);
});

async function refusedQuickly(args: string[], env: NodeJS.ProcessEnv, error: RegExp, opts: { storeUnchanged?: boolean; cwd?: string } = {}) {
  const before = await storeSnapshot(root);
  const t0 = Date.now();
  const r = await runCli(args, { root, env, timeoutMs: BOUND_MS, cwd: opts.cwd });
  const ms = Date.now() - t0;
  assert.ok(ms < BOUND_MS, `${args[0]} ran into the time bound`);
  assert.notEqual(r.code, 0, `${args[0]} accepted the bomb: ${r.stdout}`);
  assert.match(r.stderr, error);
  if (opts.storeUnchanged !== false) assert.deepEqual(await storeSnapshot(root), before, `${args[0]} changed the store`);
  return ms;
}

test('import refuses the bomb under the cap, at its entry header, and under the ratio check', async () => {
  await refusedQuickly(['import', bomb, 'bomb:imported'], CAP, CAP_ERROR);
  await refusedQuickly(['import', bomb, 'bomb:imported'], RATIO, RATIO_ERROR);
});

test('load refuses a docker-archive whose gzip layer is the bomb', async () => {
  const file = path.join(tempDir(), 'bomb-archive.tar');
  await fsp.writeFile(file, dockerArchive(await fsp.readFile(bomb), { tag: 'bomb:loaded', gzipped: { diffID: `sha256:${'0'.repeat(64)}` } }));
  await refusedQuickly(['load', '-i', file], CAP, CAP_ERROR);
  await refusedQuickly(['load', '-i', file], RATIO, RATIO_ERROR);
});

test('run refuses to unpack a pulled bomb and leaves no layer dir', async () => {
  await refusedQuickly(['run', '--rm', '--network', 'none', bombImage], CAP, CAP_ERROR, { storeUnchanged: false });
  await refusedQuickly(['run', '--rm', '--network', 'none', bombImage], RATIO, RATIO_ERROR, { storeUnchanged: false });
  const cache = await fsp.readdir(path.join(root, 'layers')).catch(() => [] as string[]);
  assert.deepEqual(cache.filter((n) => n.startsWith('.tmp-') || n.length === 64), []);
});

test('a bomb pushed to a registry and pulled from it is refused when the puller runs it', async () => {
  const reg = await startRegistry({ root: path.join(tempDir('drydock-limits-reg-'), 'data') });
  try {
    const name = `${reg.host}/team/bomb:1`;
    for (const args of [['tag', bombImage, name], ['push', name]]) {
      const r = await runCli(args, { root });
      assert.equal(r.code, 0, `${args[0]}: ${r.stderr}`);
    }
    // Pull stores the layer as the registry served it (digest-verified, not decompressed) ...
    const puller = tempDir('drydock-limits-puller-');
    const pulled = await runCli(['pull', name], { root: puller, env: CAP });
    assert.equal(pulled.code, 0, pulled.stderr);
    // ... and the cap meets it at the first unpack.
    const r = await runCli(['run', '--rm', '--network', 'none', name], { root: puller, env: CAP, timeoutMs: BOUND_MS });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, CAP_ERROR);
  } finally {
    await reg.close();
  }
});

test('export refuses to flatten a pulled bomb', async () => {
  const out = path.join(tempDir(), 'flat.tar');
  await refusedQuickly(['export', bombImage, '-o', out], CAP, CAP_ERROR);
  assert.equal(await fsp.stat(out).catch(() => undefined), undefined, 'no partial export file');
});

test('ADD of the bomb in a build is refused', async () => {
  const ctx = tempDir('drydock-limits-ctx-');
  await fsp.copyFile(bomb, path.join(ctx, 'bomb.tar.gz'));
  await fsp.writeFile(path.join(ctx, 'Dockerfile'), 'FROM scratch\nADD bomb.tar.gz /\n');
  await refusedQuickly(['build', '-t', 'bomb:built', ctx], CAP, /ADD failed: cannot extract bomb\.tar\.gz: entry "zeros": layer expands beyond the 64 MiB cap/, { storeUnchanged: false });
});

test('an ordinary layer is untouched by the ratio check and a cap above it', async () => {
  const file = path.join(tempDir(), 'ok.tar');
  await fsp.writeFile(file, pythonTar([{ name: 'etc/', type: 'dir' }, { name: 'etc/motd', body: 'hello\n'.repeat(1000) }]));
  const r = await runCli(['import', file, 'ok:1'], { root, env: { DRYDOCK_MAX_LAYER_SIZE: '1m', DRYDOCK_MAX_LAYER_RATIO: '2' } });
  assert.equal(r.code, 0, r.stderr);
});
