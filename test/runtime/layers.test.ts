// The layer cache after a power loss: the builder adopts its snapshots without fsync, so an entry
// made before a reboot may have lost file data. Such an entry is checked (re-hashed) before use
// and unpacked again from its blob when it no longer matches its diffID. A reboot is simulated
// with setBootIdForTesting; "lost data" is a truncated and a deleted file.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/env.js';
import { ContentStore } from '../../src/store/index.js';
import { adoptUnpackedLayerSync, ensureLayersUnpacked, gcLayerCache, unpackedLayerDir, type LayerRef } from '../../src/runtime/index.js';
import { snapshotLayerInThread } from '../../src/builder/rootfs.js';
import { bootId, setBootIdForTesting } from '../../src/util/boot-id.js';

const root = tempDir('drydock-layer-cache-');
let store: ContentStore;
let n = 0;

before(async () => { store = await ContentStore.open(path.join(root, 'store')); });
afterEach(() => setBootIdForTesting(undefined));
after(async () => { await fsp.rm(root, { recursive: true, force: true }); });

const FILES: Record<string, string> = {
  'etc/app.conf': 'listen 8080\n'.repeat(200),
  'usr/bin/tool': 'binary'.repeat(5000),
  'var/lib/app/state': 'built\n',
};

/** A step's upper dir as the builder leaves it: snapshotted (blob written) and adopted without fsync. */
async function adoptedSnapshot(): Promise<{ layer: LayerRef; dir: string }> {
  const upper = path.join(store.root, `upper-${n}`);
  for (const [name, text] of Object.entries(FILES)) {
    await fsp.mkdir(path.dirname(path.join(upper, name)), { recursive: true });
    // Distinct content per entry, so every test has its own diffID.
    await fsp.writeFile(path.join(upper, name), `${text}${n}`);
  }
  n++;
  const snap = await snapshotLayerInThread(store, upper, 'gzip');
  const blob = await snap.blob;
  assert.equal(adoptUnpackedLayerSync(store, upper, snap.diffID), true);
  return { layer: { digest: blob.digest, mediaType: blob.mediaType, diffID: snap.diffID }, dir: unpackedLayerDir(store, snap.diffID) };
}

const marker = (l: LayerRef) => path.join(store.root, 'layers', '.unsynced', l.diffID.slice(7));

async function damage(dir: string): Promise<void> {
  await fsp.truncate(path.join(dir, 'usr/bin/tool'), 100);
  await fsp.rm(path.join(dir, 'var/lib/app/state'));
}

async function assertIntact(dir: string, i: number): Promise<void> {
  for (const [name, text] of Object.entries(FILES)) assert.equal(await fsp.readFile(path.join(dir, name), 'utf8'), `${text}${i}`, name);
}

test('an entry adopted without fsync is marked with the boot it was made in, and used as is in that boot', async () => {
  const { layer, dir } = await adoptedSnapshot();
  assert.equal(await fsp.readFile(marker(layer), 'utf8'), bootId());
  const inode = (await fsp.stat(path.join(dir, 'usr/bin/tool'))).ino;
  assert.deepEqual(await ensureLayersUnpacked(store, [layer]), [dir]);
  assert.equal((await fsp.stat(path.join(dir, 'usr/bin/tool'))).ino, inode, 'not unpacked again');
  assert.ok(existsSync(marker(layer)), 'still unsynced: the marker stays');
});

test('after a reboot, an entry that lost data is unpacked again from its blob', async () => {
  const i = n;
  const { layer, dir } = await adoptedSnapshot();
  await damage(dir);
  setBootIdForTesting('rebooted-1');
  assert.deepEqual(await ensureLayersUnpacked(store, [layer]), [dir]);
  await assertIntact(dir, i);
  assert.equal(existsSync(marker(layer)), false, 'the re-unpacked entry is durable');
  assert.deepEqual((await fsp.readdir(path.dirname(dir))).filter((x) => x.startsWith('.tmp-')), []);
});

test('after a reboot, an entry that reached the disk whole is kept (checked once)', async () => {
  const i = n;
  const { layer, dir } = await adoptedSnapshot();
  const inode = (await fsp.stat(path.join(dir, 'usr/bin/tool'))).ino;
  setBootIdForTesting('rebooted-2');
  await ensureLayersUnpacked(store, [layer]);
  assert.equal((await fsp.stat(path.join(dir, 'usr/bin/tool'))).ino, inode, 'kept, not unpacked again');
  await assertIntact(dir, i);
  assert.equal(existsSync(marker(layer)), false, 'read back from the disk: no longer suspect');
});

test('a marker that lost its own data (empty) counts as another boot', async () => {
  const i = n;
  const { layer, dir } = await adoptedSnapshot();
  await fsp.writeFile(marker(layer), '');
  await damage(dir);
  await ensureLayersUnpacked(store, [layer]);
  await assertIntact(dir, i);
});

test('a damaged entry with no known blob is an error that says what to do', async () => {
  const { layer, dir } = await adoptedSnapshot();
  await damage(dir);
  setBootIdForTesting('rebooted-3');
  await assert.rejects(ensureLayersUnpacked(store, [{ ...layer, digest: '' }]), /damaged by a crash .*drydock builder prune/);
});

test('gc removes an entry together with its marker, and never treats the marker dir as a layer', async () => {
  const { layer, dir } = await adoptedSnapshot();
  const r = await gcLayerCache(store, { graceMs: 0 });
  assert.ok(r.removed.includes(layer.diffID));
  assert.ok(!r.removed.some((d) => d.includes('unsynced')));
  assert.equal(existsSync(dir), false);
  assert.equal(existsSync(marker(layer)), false);
  assert.ok(existsSync(path.dirname(marker(layer))));
});
