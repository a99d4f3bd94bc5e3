// The layer cache: each layer is unpacked once into $DRYDOCK_ROOT/layers/<diffID hex>/ with
// overlay-style whiteouts, so it can serve directly as an overlayfs lower dir for every
// container and every build step that uses it.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ContentStore } from '../store/content-store.js';
import { parseDigest } from '../image/digest.js';
import { fsyncDir } from '../util/fs.js';
import { UserError } from '../util/errors.js';

export interface LayerRef { digest: string; diffID: string; mediaType: string }

export function layerCacheDir(store: ContentStore): string {
  return path.join(store.root, 'layers');
}

export function unpackedLayerDir(store: ContentStore, diffID: string): string {
  return path.join(layerCacheDir(store), parseDigest(diffID).hex);
}

/**
 * Unpacks every layer that is not in the cache yet and returns the dirs bottom to top.
 * Concurrent callers are safe: each extracts into its own temp dir and the first rename wins.
 */
export async function ensureLayersUnpacked(store: ContentStore, layers: LayerRef[]): Promise<string[]> {
  const dirs: string[] = [];
  for (const layer of layers) {
    const dir = unpackedLayerDir(store, layer.diffID);
    if (!(await isDir(dir))) await unpackLayer(store, layer, dir);
    dirs.push(dir);
  }
  return dirs;
}

async function isDir(p: string): Promise<boolean> {
  try { return (await fsp.stat(p)).isDirectory(); } catch { return false; }
}

async function unpackLayer(store: ContentStore, layer: LayerRef, dir: string): Promise<void> {
  const { applyLayer } = await import('../layer/index.js');
  const parent = path.dirname(dir);
  await fsp.mkdir(parent, { recursive: true });
  const tmp = path.join(parent, `.tmp-${path.basename(dir).slice(0, 12)}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await fsp.mkdir(tmp, { mode: 0o755 });
  try {
    const applied = await applyLayer(tmp, store.openBlob(parseDigest(layer.digest).value), { whiteouts: 'overlay' });
    if (applied.diffID !== layer.diffID) {
      throw new UserError(`layer ${layer.digest} is corrupt: its content hashes to ${applied.diffID}, the image config says ${layer.diffID}`);
    }
    try {
      await fsp.rename(tmp, dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // Another process unpacked the same layer first; theirs is identical.
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
      await fsp.rm(tmp, { recursive: true, force: true });
      return;
    }
    await fsyncDir(parent);
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Removes cached layer dirs whose diffID is not in `keep` (and stale temp dirs). Returns how many. */
export async function pruneLayerCache(store: ContentStore, keep: Set<string>): Promise<number> {
  const root = layerCacheDir(store);
  let removed = 0;
  for (const name of await fsp.readdir(root).catch(() => [] as string[])) {
    if (keep.has(`sha256:${name}`)) continue;
    await fsp.rm(path.join(root, name), { recursive: true, force: true });
    removed++;
  }
  return removed;
}
