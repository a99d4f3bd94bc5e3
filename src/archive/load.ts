// `drydock load`: a docker-archive or oci-archive (detected from its contents; plain, gzip or
// zstd; a file or stdin) into the store. Everything is checked before anything is written,
// blobs are verified while they stream in, tags are set last, and a failure deletes the blobs
// this load added, so the store is left as it was.
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { PassThrough, Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ContentStore } from '../store/content-store.js';
import { OCI_REF_NAME_ANNOTATION, REF_NAME_ANNOTATION } from '../store/content-store.js';
import { HashingTransform } from '../store/hashing-transform.js';
import { canonicalName } from '../store/images.js';
import { digestOf, parseDigest } from '../image/digest.js';
import { MediaType, isIndexMediaType, isLayerMediaType, layerCompression, ociLayerMediaType, type Compression } from '../image/media-types.js';
import { parseReference, formatReference } from '../image/reference.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../image/types.js';
import { decompress, decompressor, detectCompression, peekStream } from '../layer/compression.js';
import { storeLayerStream } from '../layer/create.js';
import { ExpansionBudget, countCompressed } from '../layer/limits.js';
import { TarValidator } from '../layer/validate.js';
import { STREAM_CHUNK, discardStreamedFile } from '../util/fs.js';
import { ArchiveError, TarFile } from './tar-file.js';
import { readDockerArchive, digestFromBlobPath } from './docker.js';
import { TarLayoutFiles, readLayoutIndex, blobEntryName } from './oci.js';
import { describeTarError } from '../layer/validate.js';

export type ArchiveFormat = 'docker-archive' | 'oci-archive';

export interface LoadedImage {
  /** Canonical names tagged ("docker.io/library/busybox:latest"); empty when untagged. */
  names: string[];
  manifestDigest: string;
  configDigest: string;
}

export interface LoadResult {
  format: ArchiveFormat;
  images: LoadedImage[];
}

/** Undo log: blobs this load added to the store. */
class Added {
  readonly digests: string[] = [];
  note(w: { digest: string; created?: boolean }): void { if (w.created) this.digests.push(w.digest); }
  async rollback(store: ContentStore): Promise<void> {
    for (const d of this.digests) await fsp.rm(store.blobPath(d), { force: true });
  }
}

/** Makes `input` an uncompressed tar file on disk (spooled to the store's tmp/ when needed). */
async function materialise(store: ContentStore, input: string | Readable): Promise<{ file: string; cleanup: () => Promise<void> }> {
  if (typeof input === 'string') {
    const st = await fsp.stat(input).catch(() => undefined);
    if (!st) throw new ArchiveError(`${input}: no such file`);
    if (!st.isFile()) throw new ArchiveError(`${input}: not a file`);
    const fh = await fsp.open(input, 'r');
    const head = Buffer.alloc(6);
    try { await fh.read(head, 0, 6, 0); } finally { await fh.close(); }
    if (detectCompression(head) === 'none') return { file: input, cleanup: async () => {} };
    input = createReadStream(input, { highWaterMark: STREAM_CHUNK });
  }
  const tmp = path.join(store.tmpDir, `load-${process.pid}-${randomBytes(6).toString('hex')}.tar`);
  const cleanup = () => fsp.rm(tmp, { force: true });
  const out = createWriteStream(tmp, { flags: 'wx', highWaterMark: STREAM_CHUNK });
  try {
    const { stream } = await decompress(input, 'auto');
    await pipeline(stream, out);
  } catch (e) {
    await discardStreamedFile(out, tmp);
    throw describeTarError(e);
  }
  return { file: tmp, cleanup };
}

export function detectArchiveFormat(tar: TarFile): ArchiveFormat {
  if (tar.has('manifest.json')) return 'docker-archive';
  if (tar.has('index.json')) return 'oci-archive';
  throw new ArchiveError(`${tar.file}: not a docker-archive (no manifest.json) or oci-archive (no index.json)`);
}

/** Passes chunks through and also writes them to `side`, waiting for both to keep up. */
class SideTee extends Transform {
  constructor(private readonly side: Writable) {
    super({ highWaterMark: STREAM_CHUNK });
    side.on('error', (e) => this.destroy(e));
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    if (this.side.write(chunk)) cb(null, chunk);
    else this.side.once('drain', () => cb(null, chunk));
  }
  override _flush(cb: TransformCallback): void {
    this.side.end();
    cb();
  }
}

/**
 * Stores a layer blob as it is (compressed or not), decompressing it on the side to check it
 * with the same rules and expansion cap as extraction (layer/validate.ts) and, when `diffID` is
 * given, that it decompresses to it. A blob written before a check failed is noted in `added`,
 * so the rollback removes it.
 */
async function storeVerifiedLayer(store: ContentStore, stream: Readable, compression: Compression, expect: { diffID?: string; digest?: string; size?: number },
  what: string, added: Added) {
  const budget = new ExpansionBudget();
  const d = compression === 'none' ? new PassThrough({ highWaterMark: STREAM_CHUNK }) : decompressor(compression);
  const diffHasher = new HashingTransform(expect.diffID ? parseDigest(expect.diffID).algorithm : 'sha256');
  const verify = pipeline(d, new TarValidator(budget), diffHasher, new Writable({ write(_c, _e, cb) { cb(); } }));
  const tee = new SideTee(d);
  const counted = countCompressed(stream, budget);
  counted.on('error', (e) => tee.destroy(e));
  const [written, verified] = await Promise.allSettled([
    store.writeBlob(counted.pipe(tee), expect.digest ? { digest: expect.digest, size: expect.size } : undefined),
    verify,
  ]);
  if (written.status === 'fulfilled') added.note(written.value);
  if (verified.status === 'rejected') throw describeTarError(verified.reason);
  if (written.status === 'rejected') throw written.reason;
  const got = diffHasher.digester.digest();
  if (expect.diffID && got !== expect.diffID) throw new ArchiveError(`${what}: layer decompresses to ${got}, but the config expects ${expect.diffID}`);
  return written.value;
}

async function loadDocker(store: ContentStore, tar: TarFile, added: Added): Promise<{ image: LoadedImage; platform: Descriptor['platform']; manifest: Descriptor }[]> {
  const images = await readDockerArchive(tar);
  const out: { image: LoadedImage; platform: Descriptor['platform']; manifest: Descriptor }[] = [];
  for (const img of images) {
    // Names are checked before any blob is written.
    const names = img.repoTags.map((t) => canonicalName(t));
    const layers: Descriptor[] = [];
    for (const [i, p] of img.layerPaths.entries()) {
      const diffID = img.config.rootfs.diff_ids[i]!;
      const { head, stream } = await peekStream(tar.open(p), 6);
      const compression = detectCompression(head);
      if (compression === 'none') {
        const budget = new ExpansionBudget();
        const validator = new TarValidator(budget);
        stream.on('error', (e) => validator.destroy(e));
        const layer = await storeLayerStream(store, stream.pipe(validator), { compression: 'gzip' });
        added.note(layer);
        if (layer.diffID !== diffID) throw new ArchiveError(`${tar.file}: layer ${p} hashes to ${layer.diffID}, but the config expects ${diffID}`);
        layers.push({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size });
      } else {
        const expect = digestFromBlobPath(p);
        const w = await storeVerifiedLayer(store, stream, compression, { diffID }, `${tar.file}: ${p}`, added);
        if (expect && expect !== w.digest) throw new ArchiveError(`${tar.file}: ${p} does not match its digest (content hashes to ${w.digest})`);
        layers.push({ mediaType: ociLayerMediaType(compression), digest: w.digest, size: w.size });
      }
    }
    // The config keeps its exact bytes, so the image ID is the one docker/podman showed.
    const configDigest = digestOf(img.configBytes);
    added.note(await store.writeBlob(img.configBytes, { digest: configDigest, size: img.configBytes.length }));
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: configDigest, size: img.configBytes.length },
      layers,
    };
    const m = await store.writeJson(manifest, MediaType.OciManifest);
    added.note(m);
    out.push({
      image: { names, manifestDigest: m.digest, configDigest },
      platform: { architecture: img.config.architecture, os: img.config.os, ...(img.config.variant ? { variant: img.config.variant } : {}) },
      manifest: { mediaType: MediaType.OciManifest, digest: m.digest, size: m.size },
    });
  }
  return out;
}

/** The name an OCI index.json entry gives its image, if it is a full reference. */
function ociEntryName(d: Descriptor): string | undefined {
  const full = d.annotations?.[REF_NAME_ANNOTATION];
  const ref = d.annotations?.[OCI_REF_NAME_ANNOTATION];
  for (const candidate of [full, ref]) {
    // A bare tag ("latest") names no repository: such images load untagged.
    if (candidate && /[:/]/.test(candidate)) {
      try { return formatReference(parseReference(candidate)); } catch { /* not a reference */ }
    }
  }
  return undefined;
}

async function loadOci(store: ContentStore, tar: TarFile, added: Added): Promise<{ image: LoadedImage; platform: Descriptor['platform']; manifest: Descriptor }[]> {
  const files = new TarLayoutFiles(tar);
  const index = await readLayoutIndex(files);
  const readDoc = async (d: Descriptor): Promise<Buffer> => {
    const name = blobEntryName(d.digest);
    if (!tar.has(name)) throw new ArchiveError(`${tar.file}: manifest ${d.digest} referenced by index.json is missing from the archive`);
    const bytes = await tar.read(name, 4 << 20);
    if (digestOf(bytes, parseDigest(d.digest).algorithm) !== d.digest) throw new ArchiveError(`${tar.file}: manifest ${d.digest} does not match its digest`);
    return bytes;
  };
  // Plan: every manifest parsed and every blob present before anything is written.
  type Plan = { desc: Descriptor; bytes: Buffer; children: { desc: Descriptor; bytes: Buffer; doc: ImageManifest }[] };
  const plans: Plan[] = [];
  for (const top of index.manifests) {
    const bytes = await readDoc(top);
    const doc = JSON.parse(bytes.toString('utf8')) as ImageManifest & ImageIndex;
    const children: Plan['children'] = [];
    if (isIndexMediaType(top.mediaType) || Array.isArray(doc.manifests)) {
      for (const c of doc.manifests) {
        if (!tar.has(blobEntryName(c.digest))) continue; // platforms not included in the archive
        const cb = await readDoc(c);
        children.push({ desc: c, bytes: cb, doc: JSON.parse(cb.toString('utf8')) as ImageManifest });
      }
      if (children.length === 0) throw new ArchiveError(`${tar.file}: index ${top.digest} has none of its manifests in the archive`);
    } else {
      children.push({ desc: top, bytes, doc });
    }
    for (const c of children) {
      if (!c.doc.config?.digest || !Array.isArray(c.doc.layers)) throw new ArchiveError(`${tar.file}: ${c.desc.digest} is not an image manifest`);
      for (const b of [c.doc.config, ...c.doc.layers]) {
        if (!tar.has(blobEntryName(b.digest))) throw new ArchiveError(`${tar.file}: blob ${b.digest} referenced by manifest ${c.desc.digest} is missing from the archive`);
      }
    }
    plans.push({ desc: top, bytes, children });
  }
  const out: { image: LoadedImage; platform: Descriptor['platform']; manifest: Descriptor }[] = [];
  for (const plan of plans) {
    for (const c of plan.children) {
      for (const b of [c.doc.config, ...c.doc.layers]) {
        if ((await store.statBlob(b.digest)) === b.size) continue;
        const stream = tar.open(blobEntryName(b.digest));
        if (b !== c.doc.config && isLayerMediaType(b.mediaType)) {
          await storeVerifiedLayer(store, stream, layerCompression(b.mediaType), { digest: b.digest, size: b.size }, `${tar.file}: layer ${b.digest}`, added);
        } else {
          added.note(await store.writeBlob(stream, { digest: b.digest, size: b.size }));
        }
      }
      if (c.bytes !== plan.bytes) added.note(await store.writeBlob(c.bytes, { digest: c.desc.digest, size: c.bytes.length }));
    }
    added.note(await store.writeBlob(plan.bytes, { digest: plan.desc.digest, size: plan.bytes.length }));
    const name = ociEntryName(plan.desc);
    const first = plan.children[0]!;
    out.push({
      image: { names: name ? [name] : [], manifestDigest: plan.desc.digest, configDigest: first.doc.config.digest },
      platform: plan.desc.platform,
      manifest: { mediaType: plan.desc.mediaType ?? (Array.isArray((JSON.parse(plan.bytes.toString()) as ImageIndex).manifests) ? MediaType.OciIndex : MediaType.OciManifest), digest: plan.desc.digest, size: plan.bytes.length },
    });
  }
  return out;
}

export async function loadArchive(store: ContentStore, input: string | Readable): Promise<LoadResult> {
  const { file, cleanup } = await materialise(store, input);
  const added = new Added();
  try {
    const tar = await TarFile.open(file);
    const format = detectArchiveFormat(tar);
    const loaded = format === 'docker-archive' ? await loadDocker(store, tar, added) : await loadOci(store, tar, added);
    // Tags last: a failed load never leaves a name pointing at a partial image.
    for (const l of loaded) {
      for (const n of l.image.names) await store.setTag(n, { ...l.manifest, ...(l.platform ? { platform: l.platform } : {}) });
      if (l.image.names.length === 0) await store.setRoot(`loaded/${l.image.manifestDigest}`, [l.image.manifestDigest]);
    }
    return { format, images: loaded.map((l) => l.image) };
  } catch (e) {
    await added.rollback(store);
    throw describeTarError(e);
  } finally {
    await cleanup();
  }
}
