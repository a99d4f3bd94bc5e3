// The one copy algorithm behind pull, push, copy, save and load: read the top-level manifest,
// pick platforms from an index, copy each image's blobs (in parallel, skipping what the
// destination has, mounting across repositories of one registry, retrying transient failures),
// then write manifests bottom-up so nothing references a blob that is not there yet.
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { isIndexMediaType, isManifestMediaType } from '../image/media-types.js';
import { formatPlatform, hostPlatform, platformMatches } from '../image/platform.js';
import type { ImageDestination, ImageSource, RawManifest } from '../image/source.js';
import type { Descriptor, ImageIndex, ImageManifest, Platform } from '../image/types.js';
import { UserError } from '../util/errors.js';
import { STREAM_CHUNK } from '../util/fs.js';
import { MAX_MANIFEST_BYTES } from '../image/partial.js';
import { ManifestTooLargeError } from './remote.js';
import { backoffMs, isTransientNetworkError, sleep } from './transport.js';
import { eachLimit } from '../util/concurrency.js';

export type BlobStatus = 'waiting' | 'exists' | 'mounted' | 'transferring' | 'verifying' | 'done' | 'retrying';

export type ProgressEvent =
  | { type: 'manifest'; digest: string; mediaType: string; size: number; platform?: string }
  | { type: 'blob'; digest: string; size: number; mediaType: string; status: BlobStatus; current?: number; from?: string; message?: string }
  | { type: 'done'; digest: string; mediaType: string; size: number; bytes: number; blobsCopied: number; blobsSkipped: number };

export interface CopyOptions {
  /** Platform to select from an index (default: the host's); ignored with `all`. */
  platform?: Platform;
  /** Copy every manifest of an index and the index itself. */
  all?: boolean;
  /** Blobs in flight at once (Docker: 3 for pulls, 5 for pushes). */
  concurrency?: number;
  /** Attempts after the first for a blob whose transfer fails transiently. */
  retries?: number;
  /** Tag passed to the destination for the top-level manifest (store name or registry tag). */
  tag?: string;
  onProgress?: (e: ProgressEvent) => void;
  signal?: AbortSignal;
}

export interface CopyResult {
  /** Digest of the top-level manifest written to the destination. */
  digest: string;
  mediaType: string;
  size: number;
  manifest: RawManifest;
  bytes: number;
  blobsCopied: number;
  blobsSkipped: number;
}

function parseManifestJson(m: RawManifest, where: string): ImageManifest | ImageIndex {
  if (m.bytes.length > MAX_MANIFEST_BYTES) throw new ManifestTooLargeError(`${where}: manifest is ${m.bytes.length} bytes, over the ${MAX_MANIFEST_BYTES} byte limit`);
  let doc: ImageManifest | ImageIndex;
  try { doc = JSON.parse(m.bytes.toString('utf8')); } catch { throw new UserError(`${where}: manifest ${m.digest} is not valid JSON`); }
  if (!doc || typeof doc !== 'object') throw new UserError(`${where}: manifest ${m.digest} is not a JSON object`);
  const isIdx = isIndexMediaType(m.mediaType) || Array.isArray((doc as ImageIndex).manifests);
  if (isIdx && !Array.isArray((doc as ImageIndex).manifests)) throw new UserError(`${where}: index ${m.digest} has no "manifests" array`);
  if (!isIdx && (!(doc as ImageManifest).config || !Array.isArray((doc as ImageManifest).layers))) {
    throw new UserError(`${where}: manifest ${m.digest} lacks "config" or "layers"`);
  }
  return doc;
}

/** Counts bytes for progress without copying them. */
class ProgressCounter extends Transform {
  private n = 0;
  private last = 0;
  constructor(private readonly report: (n: number) => void) {
    super({ highWaterMark: STREAM_CHUNK });
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.n += chunk.length;
    const now = Date.now();
    if (now - this.last >= 100) { this.last = now; this.report(this.n); }
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void { this.report(this.n); cb(); }
}

export async function copyImage(src: ImageSource, dest: ImageDestination, opts: CopyOptions = {}): Promise<CopyResult> {
  const emit = opts.onProgress ?? (() => {});
  const retries = opts.retries ?? 3;
  const concurrency = opts.concurrency ?? dest.concurrency ?? 3;
  const stats = { bytes: 0, copied: 0, skipped: 0 };
  // Blob digests already handled in this copy (indexes share layers between platforms).
  const inFlight = new Map<string, Promise<void>>();
  const origin = src.blobOrigin;

  const copyBlob = async (desc: Descriptor): Promise<void> => {
    const base = { type: 'blob' as const, digest: desc.digest, size: desc.size, mediaType: desc.mediaType };
    if (await dest.hasBlob(desc)) {
      stats.skipped++;
      emit({ ...base, status: 'exists' });
      return;
    }
    if (origin && dest.mountBlob && (await dest.mountBlob(desc, origin))) {
      stats.skipped++;
      emit({ ...base, status: 'mounted', from: origin.repository });
      return;
    }
    for (let attempt = 0; ; attempt++) {
      opts.signal?.throwIfAborted();
      let stream: Readable | undefined;
      try {
        stream = await src.openBlob(desc);
        emit({ ...base, status: 'transferring', current: 0 });
        // Byte counts only for someone who shows them: the counter is a stream hop per chunk.
        let body = stream;
        if (opts.onProgress) {
          body = stream.pipe(new ProgressCounter((n) => emit({ ...base, status: 'transferring', current: n })));
          stream.on('error', (e) => body.destroy(e));
        }
        await dest.putBlob(desc, body);
        stats.bytes += desc.size;
        stats.copied++;
        emit({ ...base, status: 'done' });
        return;
      } catch (e) {
        stream?.destroy();
        if (attempt >= retries || !isTransientNetworkError(e)) throw e;
        const wait = backoffMs(attempt, 500);
        emit({ ...base, status: 'retrying', message: `${(e as Error).message}; retrying in ${Math.ceil(wait / 1000)}s` });
        await sleep(wait);
      }
    }
  };

  const blobOnce = (desc: Descriptor): Promise<void> => {
    let p = inFlight.get(desc.digest);
    if (!p) { p = copyBlob(desc); inFlight.set(desc.digest, p); }
    return p;
  };

  /** Copies one image manifest's blobs, then the manifest itself. */
  const copyManifest = async (m: RawManifest, doc: ImageManifest, tag: string | undefined, platform?: string): Promise<void> => {
    emit({ type: 'manifest', digest: m.digest, mediaType: m.mediaType, size: m.bytes.length, platform });
    const blobs = [doc.config, ...doc.layers];
    for (const b of blobs) {
      if (!b || typeof b.digest !== 'string' || typeof b.size !== 'number') throw new UserError(`manifest ${m.digest} has an invalid descriptor`);
      emit({ type: 'blob', digest: b.digest, size: b.size, mediaType: b.mediaType, status: 'waiting' });
    }
    // Config first is not required; all blobs go through one pool, largest first for throughput.
    const order = [...blobs].sort((a, b) => b.size - a.size);
    await eachLimit(order, concurrency, blobOnce);
    await dest.putManifest(m, tag);
  };

  const top = await src.getManifest();
  const topDoc = parseManifestJson(top, src.description);
  let result: RawManifest;
  if (isIndexMediaType(top.mediaType) || Array.isArray((topDoc as ImageIndex).manifests)) {
    const index = topDoc as ImageIndex;
    if (opts.all) {
      const children = index.manifests.filter((d) => isManifestMediaType(d.mediaType) || isIndexMediaType(d.mediaType));
      await eachLimit(children, 2, async (d) => {
        const child = await src.getManifestByDigest(d.digest);
        if (child.digest !== d.digest) throw new UserError(`${src.description}: manifest ${d.digest} hashes to ${child.digest}`);
        const childDoc = parseManifestJson(child, src.description);
        if (Array.isArray((childDoc as ImageIndex).manifests)) throw new UserError(`${src.description}: nested indexes are not supported`);
        await copyManifest(child, childDoc as ImageManifest, undefined, d.platform ? formatPlatform(d.platform) : undefined);
      });
      await dest.putManifest(top, opts.tag);
      result = top;
    } else {
      const want = opts.platform ?? hostPlatform();
      const candidates = index.manifests.filter((d) => d.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest');
      const chosen = candidates.find((d) => platformMatches(want, d.platform))
        ?? (candidates.length === 1 && !candidates[0]!.platform ? candidates[0] : undefined);
      if (!chosen) {
        const have = candidates.map((d) => (d.platform ? formatPlatform(d.platform) : 'unknown')).join(', ');
        throw new UserError(`${src.description}: no image for platform ${formatPlatform(want)} in the index (available: ${have || 'none'})`);
      }
      const child = await src.getManifestByDigest(chosen.digest);
      if (child.digest !== chosen.digest) throw new UserError(`${src.description}: manifest ${chosen.digest} hashes to ${child.digest}`);
      const childDoc = parseManifestJson(child, src.description);
      if (Array.isArray((childDoc as ImageIndex).manifests)) throw new UserError(`${src.description}: nested indexes are not supported`);
      await copyManifest(child, childDoc as ImageManifest, opts.tag, formatPlatform(want));
      result = child;
    }
  } else {
    await copyManifest(top, topDoc as ImageManifest, opts.tag);
    result = top;
  }
  await dest.commit?.();
  emit({ type: 'done', digest: result.digest, mediaType: result.mediaType, size: result.bytes.length, bytes: stats.bytes, blobsCopied: stats.copied, blobsSkipped: stats.skipped });
  return { digest: result.digest, mediaType: result.mediaType, size: result.bytes.length, manifest: result, bytes: stats.bytes, blobsCopied: stats.copied, blobsSkipped: stats.skipped };
}
