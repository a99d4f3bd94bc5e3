// A step's filesystem: the parent's layers as overlay lowers, a fresh upper dir, mounts that
// live exactly as long as the step (COPY --from sources, bind mounts of other stages), and the
// step's result. The result is the upper dir itself: the next step mounts it as a lower dir
// while one tar pass over it hashes the diffID and compresses the blob (snapshotLayer), and it
// becomes the layer cache entry of its diffID when the build ends. compressSnapshot makes the
// blob of an earlier build's snapshot.
import { promises as fsp, rmSync } from 'node:fs';
import { Readable, Transform, pipeline } from 'node:stream';
import path from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import type { Instruction } from '../dockerfile/index.js';
import type { ContentStore } from '../store/content-store.js';
import type { Compression } from '../image/media-types.js';
import { UserError } from '../util/errors.js';
import { digestOf } from '../image/digest.js';
import { STREAM_CHUNK } from '../util/fs.js';
import { span, traced } from '../util/trace.js';
import type { CachedLayer } from './cache.js';
import { SourceTree } from './context.js';
import type { BuildSession } from './session.js';
import type { ExecContext, BuildLayer, LowerLayer } from './vertex.js';

/**
 * A step's result while its snapshot is taken: the upper dir, unmounted and complete, stays in
 * the step's scratch dir (owned by this process, so a crash leaves nothing the next sweep does
 * not remove) and serves as the next step's lower dir at once, while `layer` (the tar that
 * hashes the diffID and feeds the compressor) reads it in the background. BuildKit does the
 * same: a step's cache key chains definitions, not the previous layer's digest. `adopt` moves
 * the dir into the layer cache once no step of the build can still mount it.
 */
export interface StepSnapshot {
  /** What the next step mounts: this dir, or (SOURCE_DATE_EPOCH) the layer unpacked from its blob. */
  lower: LowerLayer;
  layer: Promise<BuildLayer>;
  /** Renames the snapshot into the layer cache (or drops it) and removes the step's scratch dir. */
  adopt(): Promise<void>;
}

export type { LowerLayer };

/** The overlay lower dirs of `layers`, bottom to top, unpacking the ones not cached yet. */
export async function lowerDirs(s: BuildSession, layers: LowerLayer[]): Promise<string[]> {
  const { ensureLayersUnpacked } = await import('../runtime/layers.js');
  const byId = layers.filter((l): l is BuildLayer => !l.dir && l.diffID !== undefined);
  await fetchRemoteLayers(s, byId);
  const unpacked = await ensureLayersUnpacked(s.store, byId.map(layerRef));
  let i = 0;
  return layers.map((l) => l.dir ?? unpacked[i++]!);
}

/**
 * Mounts `layers` with a fresh upper dir, runs `fn`, unmounts, and starts the snapshot of the
 * upper dir (StepSnapshot). On failure everything is unmounted and removed.
 */
export async function withRootfs(
  s: BuildSession, layers: LowerLayer[], x: Omit<ExecContext, 'rootfs' | 'lowers' | 'upper' | 'workDir' | 'defer'>,
  fn: (x: ExecContext) => Promise<void>,
): Promise<StepSnapshot> {
  // The runtime's modules a step uses, not its index (the container lifecycle, cp, volumes, ports).
  const [{ mountRootfs }, { adoptUnpackedLayerSync }, { createOwnedTempDir, clearOwnedDir, scratchRoot }] = await Promise.all([
    import('../runtime/overlay.js'), import('../runtime/layers.js'), import('../runtime/orphans.js'),
  ]);
  const lowers = await traced('step.unpack-lowers', () => lowerDirs(s, layers));
  // Owned by this process: if it is killed, the next build, run or gc sweeps mounts and container.
  const workDir = createOwnedTempDir(scratchRoot(s.store.root), `step-${process.pid}-`);
  let mounted: Awaited<ReturnType<typeof mountRootfs>> | undefined;
  const deferred: (() => Promise<void>)[] = [];
  // COPY --from sources first, then the step's own overlay; `mounted` clears only once unmounted.
  const unmountAll = async () => {
    for (const c of deferred.splice(0).reverse()) await c().catch(() => {});
    await mounted?.unmount();
    mounted = undefined;
  };
  const removeWorkDir = () => fsp.rm(workDir, { recursive: true, force: true }).catch(() => {});
  let kept = false;
  try {
    // volatile: the layer's durable form is its fsynced blob; the upper dir is at most a cache entry.
    mounted = await traced('step.mount', () => mountRootfs({ lowerDirs: lowers, workDir, volatile: true }));
    const endOp = span('step.op');
    await fn({ ...x, rootfs: mounted.rootfs, lowers, upper: mounted.upperDir, workDir, defer: (c) => { deferred.push(c); } });
    endOp();
    if (s.interrupted) throw new UserError('build interrupted', 130);
    const upper = mounted.upperDir;
    if (s.opts.sourceDateEpoch !== undefined) {
      // SOURCE_DATE_EPOCH clamps the blob's mtimes, so the upper dir is not the layer unpacked:
      // the blob is written now and unpacked when a later step needs it.
      const { createLayer } = await import('../layer/create.js');
      const info = await createLayer(s.store, { dir: upper }, { overlayUpper: true, sourceDateEpoch: s.opts.sourceDateEpoch, compression: s.opts.compression });
      const known: CachedLayer = { digest: info.digest, size: info.size, mediaType: info.mediaType, diffID: info.diffID };
      const layer: BuildLayer = { diffID: info.diffID, blob: Promise.resolve(known), known };
      return { lower: layer, layer: Promise.resolve(layer), adopt: async () => {} };
    }
    await traced('step.umount', unmountAll);
    kept = true;
    // The rest of the scratch dir (bundle, host files, the overlay's work dir: ~25 entries, five
    // levels deep) is removed on the thread pool while the snapshot is taken and the export
    // begins; the owner record goes last, once the upper dir is adopted (a crash before that
    // leaves a dir the next sweep removes).
    const cleared = clearOwnedDir(workDir, ['upper']);
    const endSnapshot = span('step.tar+hash');
    const layer = snapshotLayer(s.store, upper, s.opts.compression).then(({ diffID, blob, described }): BuildLayer => {
      endSnapshot();
      void traced('step.blob-written', () => blob).catch(() => {});
      return { diffID, blob, dir: upper, ...(described ? { described } : {}) };
    });
    layer.catch(() => { /* the solver reports it */ });
    let adopted: Promise<void> | undefined;
    return {
      lower: { dir: upper },
      layer,
      // The upper dir is the new layer unpacked (overlay whiteouts and all): it becomes the layer
      // cache entry, so a later build mounts it and nothing is unpacked.
      // Renamed, and the emptied work dir (the overlay's work dir, a RUN's bundle, mount points)
      // removed, with synchronous calls: the adopts run beside the export's fsyncs, which hold
      // the thread pool. A dir still holding the snapshot is removed through the pool.
      adopt: () => adopted ??= (async () => {
        const l = await layer.catch(() => undefined);
        let moved = false;
        if (l) {
          const end = span('step.adopt');
          try { moved = adoptUnpackedLayerSync(s.store, upper, l.diffID); } catch { /* left in the work dir, removed below */ }
          end();
          l.dir = undefined;
        }
        await cleared;
        // Only the owner record is left now: two calls, made here rather than as round trips.
        if (!moved) return removeWorkDir();
        try { rmSync(workDir, { recursive: true, force: true }); } catch { await removeWorkDir(); }
      })(),
    };
  } finally {
    await unmountAll().catch(() => {});
    if (!kept) await removeWorkDir();
  }
}

/** Remote cache hits are descriptors only; their blobs come in when a rootfs needs them. */
async function fetchRemoteLayers(s: BuildSession, layers: BuildLayer[]): Promise<void> {
  await s.opts.remoteCache?.ensureLayers(layers.flatMap((l) => (l.known ? [l.known] : [])));
}

function layerRef(l: BuildLayer): { digest: string; diffID: string; mediaType: string } {
  // A snapshot made by this build is in the layer cache already; only base layers need a blob.
  return { digest: l.known?.digest ?? '', diffID: l.diffID, mediaType: l.known?.mediaType ?? '' };
}

/**
 * A step's snapshot in one pass over its upper dir: the tar (as createLayer writes it) is hashed
 * into the diffID, resolved as soon as the tar ends (the upper dir is no longer read then, so it
 * can be adopted), and compressed into the store as the blob, resolved once it is written and
 * fsynced. Every snapshot's blob is needed (the image's and the steps' manifests name them), so
 * making it here saves the second tar pass over the same files that compressing later costs.
 * Where it runs is snapshot-worker.ts snapshotPlace's choice: a large tree in the snapshot worker
 * thread with 4 or more CPUs (and, once it runs, all but a tiny tree), through the worker's block
 * path on this thread with fewer; a small tree (a RUN's few files, an unpacked site of a few
 * hundred KiB) in memory; the rest streamed on this thread.
 */
export async function snapshotLayer(store: ContentStore, dir: string, compression: Compression = 'gzip'): Promise<{ diffID: string; blob: Promise<CachedLayer>; described?: CachedLayer }> {
  const { snapshotPlace } = await import('./snapshot-worker.js');
  const place = snapshotPlace(dir);
  if (place === 'memory' && compression !== 'zstd') return snapshotLayerInMemory(store, dir, compression);
  if (place === 'blocks' && compression === 'gzip') return snapshotLayerInBlocks(store, dir);
  return place === 'worker' ? snapshotLayerInWorker(store, dir, compression) : snapshotLayerInThread(store, dir, compression);
}

/**
 * snapshotLayer of a large tree on a machine of fewer than 4 CPUs (snapshot-worker.ts
 * snapshotPlace): the worker's block path (tar-blocks.ts) on this thread, a 1 MiB block a turn,
 * without the worker's start (~40 ms of CPU that a second isolate costs there).
 */
export async function snapshotLayerInBlocks(store: ContentStore, dir: string): Promise<{ diffID: string; blob: Promise<CachedLayer> }> {
  const { gzipSnapshotIntoFile } = await import('../layer/tar-blocks.js');
  const { ociLayerMediaType } = await import('../image/media-types.js');
  const file = store.tempBlobPath();
  let tarEnded!: (diffID: string) => void;
  let failed!: (e: Error) => void;
  const diffID = new Promise<string>((resolve, reject) => { tarEnded = resolve; failed = reject; });
  const written = gzipSnapshotIntoFile(dir, file, tarEnded);
  written.catch((e: Error) => failed(e));
  const blob = written.then((b) => store.adoptTempBlob(file, b)).then(async ({ digest, size }) => ({
    digest, size, mediaType: ociLayerMediaType('gzip'), diffID: await diffID,
  }));
  blob.catch(() => { /* awaited by the solver's blob() and the cache entry */ });
  return { diffID: await diffID, blob };
}

/**
 * snapshotLayer of a small tree (snapshot-worker.ts snapshotPlace): the tar in one buffer, its
 * diffID at once, the blob compressed here (gzipSync: the stream's very bytes) and written
 * inline. The diffID the step's state waits for comes without a stream tick, and the blob's
 * descriptor (`described`, for the manifest) before its write and fsync.
 */
export async function snapshotLayerInMemory(store: ContentStore, dir: string, compression: 'gzip' | 'none' = 'gzip'): Promise<{ diffID: string; blob: Promise<CachedLayer>; described: CachedLayer }> {
  const { tarDirectory } = await import('../layer/create.js');
  const { gzipSync } = await import('../layer/parallel-gzip.js');
  const { ociLayerMediaType } = await import('../image/media-types.js');
  const chunks: Buffer[] = [];
  for await (const chunk of tarDirectory(dir, { overlayUpper: true })) chunks.push(chunk);
  const tar = Buffer.concat(chunks);
  const diffID = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
  const bytes = compression === 'gzip' ? gzipSync(tar) : tar;
  const described: CachedLayer = { digest: digestOf(bytes), size: bytes.length, mediaType: ociLayerMediaType(compression), diffID };
  const blob = store.writeBlob(bytes, { digest: described.digest, size: described.size }).then(() => described);
  blob.catch(() => { /* awaited by the solver's blob() and the cache entry */ });
  return { diffID, blob, described };
}

/** snapshotLayer in the snapshot worker thread: the main thread only renames the blob in. */
export async function snapshotLayerInWorker(store: ContentStore, dir: string, compression: Compression = 'gzip'): Promise<{ diffID: string; blob: Promise<CachedLayer> }> {
  const { snapshotInWorker } = await import('./snapshot-worker.js');
  const { ociLayerMediaType } = await import('../image/media-types.js');
  const snap = snapshotInWorker(store, dir, compression);
  const blob = snap.blob.then(async ({ digest, size }) => ({
    digest, size, mediaType: ociLayerMediaType(compression), diffID: await snap.diffID,
  }));
  blob.catch(() => { /* awaited by the solver's blob() and the cache entry */ });
  return { diffID: await snap.diffID, blob };
}

/** snapshotLayer on this thread. */
export async function snapshotLayerInThread(store: ContentStore, dir: string, compression: Compression = 'gzip'): Promise<{ diffID: string; blob: Promise<CachedLayer> }> {
  const { tarDirectory } = await import('../layer/create.js');
  const { compressor } = await import('../layer/compression.js');
  const { ociLayerMediaType } = await import('../image/media-types.js');
  const hash = createHash('sha256');
  let tarEnded!: (diffID: string) => void;
  let failed!: (e: Error) => void;
  const diffID = new Promise<string>((resolve, reject) => { tarEnded = resolve; failed = reject; });
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) { hash.update(chunk); cb(null, chunk); },
    flush(cb) { tarEnded(`sha256:${hash.digest('hex')}`); cb(); },
  });
  const tar = Readable.from(tarDirectory(dir, { overlayUpper: true }), { objectMode: false, highWaterMark: STREAM_CHUNK });
  const compressed = pipeline(tar, hasher, compressor(compression), (e) => { if (e) failed(e); });
  const blob = store.writeBlob(compressed as unknown as Readable).then(async ({ digest, size }) => ({
    digest, size, mediaType: ociLayerMediaType(compression), diffID: await diffID,
  }));
  blob.catch(() => { /* awaited by the solver's blob() and the cache entry */ });
  return { diffID: await diffID, blob };
}

/** The diffID of an overlay upper dir: its tar (as createLayer writes it) hashed, nothing stored. */
export async function snapshotDiffID(dir: string): Promise<{ diffID: string; size: number }> {
  const { tarDiffID } = await import('../layer/create.js');
  return tarDiffID(dir, { overlayUpper: true });
}

/**
 * The compressed blob of a snapshot taken by this (or an earlier) build: the layer cache entry
 * is tarred again, compressed into the store, and must hash to the same diffID.
 */
export async function compressSnapshot(store: ContentStore, diffID: string, compression?: Compression): Promise<CachedLayer> {
  const { unpackedLayerDir } = await import('../runtime/layers.js');
  const { createLayer } = await import('../layer/create.js');
  const info = await createLayer(store, { dir: unpackedLayerDir(store, diffID) }, { overlayUpper: true, compression });
  if (info.diffID !== diffID) {
    throw new Error(`layer snapshot ${diffID} changed before it was compressed (it now hashes to ${info.diffID}); run drydock builder prune and build again`);
  }
  return { digest: info.digest, size: info.size, mediaType: info.mediaType, diffID };
}

/** A read-only view of another stage's (or image's) rootfs, for COPY --from and bind mounts. */
export async function treeFor(s: BuildSession, x: ExecContext, inst: Instruction, from: string): Promise<SourceTree> {
  const st = s.stageRef(from, Infinity);
  let layers: LowerLayer[];
  let label: string;
  if (st) {
    layers = x.stageLayers(st.index);
    label = `stage ${st.name ?? st.index}`;
  } else {
    const img = await s.resolveBase(from, s.platform, inst);
    layers = img.manifest.layers.map((l, i) => {
      const known = { digest: l.digest, size: l.size, mediaType: l.mediaType, diffID: img.config.rootfs.diff_ids[i]! };
      return { diffID: known.diffID, blob: Promise.resolve(known), known };
    });
    label = `image ${from}`;
  }
  const { mountRootfs } = await import('../runtime/overlay.js');
  const lowers = await lowerDirs(s, layers);
  const m = await mountRootfs({ lowerDirs: lowers, workDir: path.join(x.workDir, `from-${randomBytes(4).toString('hex')}`), volatile: true });
  x.defer(() => m.unmount());
  return new SourceTree(m.rootfs, undefined, label, true);
}
