// The layer cache: each layer is unpacked once into $DRYDOCK_ROOT/layers/<diffID hex>/ with
// overlay-style whiteouts, so it can serve directly as an overlayfs lower dir for every
// container and every build step that uses it.
import { promises as fsp, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ContentStore } from '../store/content-store.js';
import { parseDigest } from '../image/digest.js';
import { fsyncDir } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import { bootId } from '../util/boot-id.js';

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
 * An entry adopted without fsync during an earlier boot is checked first (checkUnsyncedEntry).
 */
export async function ensureLayersUnpacked(store: ContentStore, layers: LayerRef[]): Promise<string[]> {
  const dirs: string[] = [];
  for (const layer of layers) {
    const dir = unpackedLayerDir(store, layer.diffID);
    if (!isDir(dir) || !(await checkUnsyncedEntry(store, layer, dir))) await unpackLayer(store, layer, dir);
    dirs.push(dir);
  }
  return dirs;
}

/**
 * Makes `dir` the cache entry of layer `diffID` (a rename, so `dir` must be on the store's
 * filesystem), durably: the directory is fsynced after the rename. Returns false (and removes
 * `dir`) when the layer is already cached.
 */
export async function adoptUnpackedLayer(store: ContentStore, dir: string, diffID: string): Promise<boolean> {
  const target = unpackedLayerDir(store, diffID);
  await fsp.mkdir(path.dirname(target), { recursive: true });
  try {
    await fsp.rename(dir, target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
    await fsp.rm(dir, { recursive: true, force: true });
    return false;
  }
  await fsyncDir(path.dirname(target));
  // A marker left by an entry this one replaced (checkUnsyncedEntry) is void now.
  await fsp.rm(unsyncedMarker(store, diffID), { force: true });
  return true;
}

/**
 * The builder's adopt: a step's overlay upper dir, tarred, becomes the cache entry of its diffID
 * (it already is the layer unpacked with overlay whiteouts, so the next build does not unpack the
 * blob again), in synchronous calls and without fsync. Synchronous: the adopts run beside the
 * export's fsyncs, which hold the thread pool, where each call waited behind them (8-19 ms an
 * adopt for microseconds of work). Without fsync: the snapshots are written through a volatile
 * overlay and never fsynced, and syncing would force ext4 to write out the whole snapshot in the
 * step's critical path (60-80 ms for 40 MB here); the blob, fsynced, is the layer's durable form.
 *
 * But after a power loss the renamed dir can be there with files whose data never reached the
 * disk (empty or short), and a later build would mount it as a lower dir. So the entry gets a
 * marker, layers/.unsynced/<hex>, holding this boot's id, created before the rename: journaling
 * filesystems commit metadata in order, so wherever the rename survived, the marker did too
 * (possibly empty). An entry whose marker names another boot is checked before use.
 *
 * Returns false when the layer is cached already; `dir` is then left for the caller to remove
 * (a whole tree: not something to do synchronously).
 */
export function adoptUnpackedLayerSync(store: ContentStore, dir: string, diffID: string): boolean {
  const target = unpackedLayerDir(store, diffID);
  const marker = unsyncedMarker(store, diffID);
  // Never re-mark an entry that is there already: its marker may name the boot it came from.
  if (isDir(target)) return false;
  mkdirSync(path.dirname(marker), { recursive: true });
  writeFileSync(marker, bootId());
  try {
    renameSync(dir, target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
    return false;
  }
  return true;
}

/** Where adoptUnpackedLayerSync marks an entry adopted without fsync. */
function unsyncedMarker(store: ContentStore, diffID: string): string {
  return path.join(layerCacheDir(store), UNSYNCED, parseDigest(diffID).hex);
}
const UNSYNCED = '.unsynced';

/**
 * Whether the cache entry `dir` can be mounted. Entries adopted durably, or without fsync during
 * this boot (the page cache holds what was written), can. One adopted without fsync before a
 * reboot or crash is tarred again: if it still hashes to its diffID it reached the disk whole
 * (it was read back from it), and its marker goes; otherwise it is removed, and false makes the
 * caller unpack the layer from its blob.
 */
async function checkUnsyncedEntry(store: ContentStore, layer: LayerRef, dir: string): Promise<boolean> {
  const marker = unsyncedMarker(store, layer.diffID);
  // Synchronous, as isDir: one per lower dir before every step's mount, almost always ENOENT.
  let boot: string | undefined;
  try { boot = readFileSync(marker, 'utf8'); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
  if (boot === undefined || (boot !== '' && boot === bootId())) return true;
  const { tarDiffID } = await import('../layer/create.js');
  const found = await tarDiffID(dir, { overlayUpper: true }).then((r) => r.diffID, () => undefined);
  if (found === layer.diffID) {
    await fsp.rm(marker, { force: true });
    return true;
  }
  if (!layer.digest) {
    throw new UserError(`the layer cache entry ${dir} was damaged by a crash (it hashes to ${found ?? 'nothing readable'}, not ${layer.diffID}) and no blob is known for it; run drydock builder prune and build again`);
  }
  // Out of the way first (a rename), so no other process mounts it while it is removed.
  const doomed = path.join(path.dirname(dir), `.tmp-${path.basename(dir).slice(0, 12)}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await fsp.rename(dir, doomed).then(() => fsp.rm(doomed, { recursive: true, force: true }), () => {});
  return false;
}

/** A stat on the main thread: one per layer before every step's mount, a round trip each as fs.promises. */
function isDir(p: string): boolean {
  try { return statSync(p).isDirectory(); } catch { return false; }
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
    // If another process unpacked the same layer first, theirs is identical and ours goes.
    await adoptUnpackedLayer(store, tmp, layer.diffID);
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

export interface LayerCacheGcResult {
  /** diffIDs of the unpacked layers removed (or that would be, with dryRun). */
  removed: string[];
  bytes: number;
  kept: number;
}

/**
 * Sweeps the unpacked-layer cache. A layer stays when any tagged or rooted image (build cache,
 * pulls, loads, containers) lists its diffID, when a container record names its dir (running
 * `--rm` containers hold no store root), when a live overlay mount uses it as a lower dir (a build
 * step or a container right now), or when it was unpacked within the grace period (a build or
 * run that has unpacked but not mounted yet). Anything else is re-unpacked from its blob on use.
 */
export async function gcLayerCache(store: ContentStore, opts: { dryRun?: boolean; graceMs?: number } = {}): Promise<LayerCacheGcResult> {
  const grace = opts.graceMs ?? 10 * 60_000;
  const root = layerCacheDir(store);
  const names = await fsp.readdir(root).catch(() => [] as string[]);
  if (names.length === 0) return { removed: [], bytes: 0, kept: 0 };
  const keep = await liveLayerDirs(store);
  const result: LayerCacheGcResult = { removed: [], bytes: 0, kept: 0 };
  const now = Date.now();
  for (const name of names.sort()) {
    if (name === UNSYNCED) continue;
    const dir = path.join(root, name);
    const st = await fsp.lstat(dir).catch(() => undefined);
    if (!st) continue;
    const temp = name.startsWith('.tmp-');
    if (!temp && keep.has(name)) { result.kept++; continue; }
    if (now - st.mtimeMs < grace) { result.kept++; continue; }
    if (!temp) result.removed.push(`sha256:${name}`);
    result.bytes += await treeSize(dir);
    if (!opts.dryRun) {
      await fsp.rm(dir, { recursive: true, force: true });
      if (!temp) await fsp.rm(path.join(root, UNSYNCED, name), { force: true });
    }
  }
  return result;
}

/** Hex names of the layer dirs something still uses (see gcLayerCache). */
async function liveLayerDirs(store: ContentStore): Promise<Set<string>> {
  const { listContainers } = await import('./containers.js');
  const keep = new Set<string>();
  // Manifests and indexes from every tag and root, down to their configs' diff_ids. Roots may
  // name a layer blob directly (build cache entries); those are not JSON and are skipped unread.
  const seen = new Set<string>();
  const visit = async (digest: string): Promise<void> => {
    if (seen.has(digest)) return;
    seen.add(digest);
    const doc = await readSmallJson(store, digest) as { manifests?: { digest?: unknown }[]; config?: { digest?: unknown } } | undefined;
    if (Array.isArray(doc?.manifests)) for (const m of doc.manifests) if (typeof m?.digest === 'string') await visit(m.digest);
    if (typeof doc?.config?.digest === 'string') {
      const config = await readSmallJson(store, doc.config.digest) as { rootfs?: { diff_ids?: unknown } } | undefined;
      const ids = config?.rootfs?.diff_ids;
      if (Array.isArray(ids)) for (const id of ids) if (typeof id === 'string') keep.add(id.replace(/^sha256:/, ''));
    }
  };
  for (const t of await store.listTags()) await visit(t.descriptor.digest);
  for (const d of await store.listRoots()) await visit(d);
  // Compared as real paths: a store root reached through a symlink, and the `l/N` symlinks that
  // mountOverlay uses for long lower-dir lists, must still match.
  const real = (p: string) => fsp.realpath(p).catch(() => p);
  const cacheRoots = [...new Set([layerCacheDir(store), await real(layerCacheDir(store))])].map((r) => r + path.sep);
  const addDir = async (dir: string) => {
    for (const d of new Set([dir, await real(dir)])) {
      const root = cacheRoots.find((r) => d.startsWith(r));
      if (root) keep.add(d.slice(root.length).split(path.sep)[0]!);
    }
  };
  for (const c of await listContainers(store.root).catch(() => [])) for (const d of c.record.LowerDirs ?? []) await addDir(d);
  for (const d of await overlayLowerDirs()) await addDir(d);
  return keep;
}

/** A manifest, index or config blob as JSON; undefined for layers (checked by their first byte, not read whole) and missing blobs. */
async function readSmallJson(store: ContentStore, digest: string): Promise<unknown> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(store.blobPath(digest), 'r');
    const st = await fh.stat();
    if (st.size > 4 * 1024 * 1024 || st.size === 0) return undefined;
    const first = Buffer.alloc(1);
    await fh.read(first, 0, 1, 0);
    if (first[0] !== 0x7b) return undefined;
    return JSON.parse((await fh.readFile()).toString('utf8'));
  } catch {
    return undefined;
  } finally {
    await fh?.close();
  }
}

/**
 * Lower dirs of every overlay mounted on the host right now (from /proc/self/mountinfo), as
 * absolute paths. The kernel shows lowerdir as it was given; mountOverlay gives long lists as
 * paths relative to the mount point's parent (its cwd for the mount), so those resolve there.
 */
export async function overlayLowerDirs(): Promise<string[]> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  // mountinfo escapes space, tab, newline and backslash as \ooo octal.
  const unescape = (f: string) => f.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const dirs: string[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const [fstype, , superOpts = ''] = line.slice(sep + 3).split(' ');
    if (fstype !== 'overlay') continue;
    const m = /(?:^|,)lowerdir=([^,]*)/.exec(superOpts);
    if (!m) continue;
    const mountParent = path.dirname(unescape(line.split(' ')[4] ?? '/'));
    for (const d of m[1]!.split(':')) dirs.push(path.resolve(mountParent, unescape(d)));
  }
  return dirs;
}

async function treeSize(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) total += (await fsp.lstat(p).catch(() => ({ size: 0 }))).size;
    }
  };
  await walk(dir);
  return total;
}
