// Registry semantics on top of a StorageDriver: repository-scoped blob links, resumable uploads
// that become visible only after digest verification, manifests, tags and referrers. The HTTP
// layer (server.ts) only translates requests into these calls.
import { createHash, randomUUID, type Hash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestError, parseDigest, type Digest } from '../image/digest.js';
import { MediaType, MANIFEST_MEDIA_TYPES, isIndexMediaType } from '../image/media-types.js';
import { isValidTag, isValidRepository } from '../image/reference.js';
import type { Descriptor } from '../image/types.js';
import { RegistryError } from './errors.js';
import { isNotFound, PathNotFoundError, type StorageDriver } from './storage/driver.js';
import { paths, REPOSITORIES } from './storage/paths.js';
import { MAX_MANIFEST_BYTES, manifestMediaType as declaredOrShapeMediaType } from '../image/partial.js';

export { MAX_MANIFEST_BYTES } from '../image/partial.js';
const UPLOAD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface StoredManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

export interface PutManifestResult {
  digest: string;
  subject?: string;
}

export interface BlobInfo {
  digest: string;
  size: number;
}

interface UploadState {
  hash?: Hash;
  hashedBytes: number;
}

/** A chunk's Content-Range: first and last byte offsets, inclusive. */
export interface ChunkRange { start: number; end: number }

function rangeMismatch(range: ChunkRange, received: number, more: boolean): RegistryError {
  return new RegistryError('RANGE_INVALID',
    `Content-Range ${range.start}-${range.end} announces ${range.end - range.start + 1} bytes but the body has ${more ? 'more' : received}`,
    { range: `${range.start}-${range.end}` });
}

interface CacheEntry<T> { value: T; expires: number }

/** A small TTL map: hot manifests by tag stay in memory, and changes made by another process
 * (gc, a second server on the same root) are seen after at most `ttlMs`. */
class TtlCache<T> {
  private readonly map = new Map<string, CacheEntry<T>>();
  constructor(private readonly ttlMs: number, private readonly maxEntries: number) {}
  get(key: string): T | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (e.expires < Date.now()) { this.map.delete(key); return undefined; }
    return e.value;
  }
  set(key: string, value: T): void {
    if (this.ttlMs <= 0) return;
    if (this.map.size >= this.maxEntries) this.map.delete(this.map.keys().next().value as string);
    this.map.set(key, { value, expires: Date.now() + this.ttlMs });
  }
  deletePrefix(prefix: string): void {
    for (const k of this.map.keys()) if (k.startsWith(prefix)) this.map.delete(k);
  }
  clear(): void { this.map.clear(); }
}

export interface RegistryStorageOptions {
  /** Manifest/tag cache lifetime; 0 disables. */
  cacheTtlMs?: number;
  deleteEnabled?: boolean;
}

export function validateName(name: string): void {
  if (!isValidRepository(name)) throw new RegistryError('NAME_INVALID', `invalid repository name "${name.slice(0, 300)}"`, { name: name.slice(0, 300) });
}

/** A digest from a URL or query; malformed or unsupported ones are DIGEST_INVALID (400). */
export function parseDigestParam(value: string | undefined | null): Digest {
  if (!value) throw new RegistryError('DIGEST_INVALID', 'digest parameter is missing');
  try {
    return parseDigest(value);
  } catch (e) {
    if (e instanceof DigestError) throw new RegistryError('DIGEST_INVALID', e.message, { digest: value.slice(0, 200) });
    throw e;
  }
}

function mediaTypeOnly(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  return contentType.split(';')[0]!.trim().toLowerCase() || undefined;
}

export class RegistryStorage {
  private readonly uploads = new Map<string, UploadState>();
  /** Upload ids a request in this process is writing, committing or cancelling. */
  private readonly uploadOwners = new Set<string>();
  private readonly manifestCache: TtlCache<StoredManifest>;
  readonly deleteEnabled: boolean;

  constructor(readonly driver: StorageDriver, opts: RegistryStorageOptions = {}) {
    this.manifestCache = new TtlCache(opts.cacheTtlMs ?? 5000, 10_000);
    this.deleteEnabled = opts.deleteEnabled ?? false;
  }

  // ---- repositories ----

  async repositoryExists(name: string): Promise<boolean> {
    try {
      return (await this.driver.stat(paths.repo(name))).isDir;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }

  /** Repositories that hold at least one manifest revision, sorted (for _catalog). */
  async repositories(): Promise<string[]> {
    const found: string[] = [];
    await this.driver.walk(REPOSITORIES, async (info) => {
      if (!info.isDir) return 'skip';
      const base = info.path.slice(info.path.lastIndexOf('/') + 1);
      if (base.startsWith('_')) {
        if (base === '_manifests') found.push(info.path.slice(REPOSITORIES.length + 1, -'/_manifests'.length));
        return 'skip';
      }
      return undefined;
    });
    return found.sort();
  }

  // ---- blobs ----

  async statBlob(name: string, digest: Digest): Promise<BlobInfo> {
    try {
      await this.driver.stat(paths.layerLink(name, digest));
      const info = await this.driver.stat(paths.blobData(digest));
      return { digest: digest.value, size: info.size };
    } catch (e) {
      if (isNotFound(e)) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest: digest.value });
      throw e;
    }
  }

  async openBlob(digest: Digest, start?: number, end?: number): Promise<Readable> {
    try {
      return await this.driver.reader(paths.blobData(digest), start, end);
    } catch (e) {
      if (isNotFound(e)) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest: digest.value });
      throw e;
    }
  }

  /** Opens a blob for sending: the driver's reused-buffer sender where it has one, else its stream piped. */
  async blobSender(digest: Digest, start?: number, end?: number): Promise<(dest: Writable) => Promise<void>> {
    if (!this.driver.sender) {
      const stream = await this.openBlob(digest, start, end);
      return (dest) => pipeline(stream, dest);
    }
    try {
      return await this.driver.sender(paths.blobData(digest), start, end);
    } catch (e) {
      if (isNotFound(e)) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest: digest.value });
      throw e;
    }
  }

  /** True when the blob content exists anywhere in the registry (regardless of repository). */
  async blobExistsGlobally(digest: Digest): Promise<boolean> {
    try {
      await this.driver.stat(paths.blobData(digest));
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }

  async linkBlob(name: string, digest: Digest): Promise<void> {
    // Only the link's existence matters, and a lost link costs the client one re-push, so it
    // skips the fsyncs that the blob data itself gets.
    await this.driver.putContent(paths.layerLink(name, digest), digest.value, { sync: false });
  }

  /**
   * Cross-repository mount: links the blob when `from` has it; false means "start an upload".
   * The link is written before the blob's existence is checked, so a concurrent gc either sees
   * the fresh link or has removed the blob, which this check then sees (gc.ts).
   */
  async mountBlob(name: string, from: string, digest: Digest): Promise<boolean> {
    try {
      await this.driver.stat(paths.layerLink(from, digest));
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
    await this.linkBlob(name, digest);
    return this.blobExistsGlobally(digest);
  }

  /**
   * For a manifest PUT: the blob must be linked in this repository; the link is rewritten (a
   * fresh "last referenced" time for gc) and only then is the blob's data checked, so a manifest
   * accepted while gc runs never loses a layer (gc.ts).
   */
  private async relinkBlob(name: string, digest: Digest): Promise<boolean> {
    return (await this.refreshLink(paths.layerLink(name, digest), digest)) && this.blobExistsGlobally(digest);
  }

  /** A fresh modification time for an existing link (touch, or a rewrite where the driver cannot); false when it is missing. */
  private async refreshLink(p: string, digest: Digest): Promise<boolean> {
    try {
      if (this.driver.touch) {
        await this.driver.touch(p);
      } else {
        await this.driver.stat(p);
        await this.driver.putContent(p, digest.value, { sync: false });
      }
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }

  async deleteBlob(name: string, digest: Digest): Promise<void> {
    if (!this.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deletion is disabled (storage.delete.enabled)');
    await this.statBlob(name, digest);
    await this.driver.delete(paths.layerLinkDir(name, digest));
  }

  // ---- uploads ----
  //
  // The upload state machine. An upload is a data file under _uploads/<id>/ that only grows
  // while exactly one request owns it: a PATCH (append), a PUT (optional last chunk, then
  // commit) or a DELETE. A request that finds the upload owned is refused with 416 at once,
  // before it reads a byte, so two writers never share the file and a commit never moves a file
  // that a PATCH is still appending to. The commit keeps ownership until the upload directory
  // is gone: of N concurrent PUTs one gets 201, the others 416 (still committing) or 404 (done).
  // Ownership is held in this process and between processes by the driver's lock: a lock file
  // on the filesystem, a lease object with conditional writes on S3 (ownUpload; docs/registry.md,
  // "Upload state machine" and "Replicas").

  private checkUploadId(id: string): void {
    if (!UPLOAD_ID.test(id)) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', undefined, { uuid: id.slice(0, 64) });
  }

  /**
   * Makes the caller the upload's only writer until the returned release() runs; 416 if another
   * request is. Within this process by a set of ids; between processes (several `serve` on one
   * root or bucket, --workers) by the driver's lockFile (the filesystem's O_EXCL file, S3's lease).
   */
  private async ownUpload(name: string, id: string): Promise<() => Promise<void>> {
    const busy = () => new RegistryError('RANGE_INVALID', 'another request is writing to this upload; retry when it has finished', { uuid: id });
    if (this.uploadOwners.has(id)) throw busy();
    this.uploadOwners.add(id);
    let unlock: (() => Promise<void>) | undefined;
    try {
      if (this.driver.lockFile) {
        unlock = await this.driver.lockFile(paths.uploadLock(name, id));
        if (!unlock) throw busy();
      }
    } catch (e) {
      this.uploadOwners.delete(id);
      if (isNotFound(e)) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', undefined, { uuid: id });
      throw e;
    }
    return async () => {
      try {
        await unlock?.();
      } finally {
        this.uploadOwners.delete(id);
      }
    };
  }

  async startUpload(name: string): Promise<string> {
    const id = randomUUID();
    // The data file appears with the first byte; until then the upload is at offset 0.
    await this.driver.putContent(paths.uploadStartedAt(name, id), new Date().toISOString(), { sync: false });
    this.uploads.set(id, { hash: createHash('sha256'), hashedBytes: 0 });
    return id;
  }

  /** Current size of an upload (the next chunk must start here). */
  async uploadOffset(name: string, id: string): Promise<number> {
    this.checkUploadId(id);
    try {
      return (await this.driver.stat(paths.uploadData(name, id))).size;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    try {
      await this.driver.stat(paths.uploadStartedAt(name, id));
      return 0;
    } catch (e) {
      if (isNotFound(e)) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', undefined, { uuid: id });
      throw e;
    }
  }

  /**
   * Appends a request body to an upload. With `range` (Content-Range) the chunk must start at
   * the current offset and the body must be exactly range.end - range.start + 1 bytes, or it is
   * refused with 416 and the upload is left as it was. A body without a range that breaks off
   * (client disconnect) keeps the bytes it did send, so the client can ask for the offset and
   * resume.
   */
  async appendUpload(name: string, id: string, body: Readable, range?: ChunkRange, maxBytes = Number.MAX_SAFE_INTEGER, sync = false): Promise<{ size: number; appended: number }> {
    this.checkUploadId(id);
    const release = await this.ownUpload(name, id);
    try {
      return await this.append(name, id, body, range, maxBytes, sync);
    } finally {
      await release();
    }
  }

  private async append(name: string, id: string, body: Readable, range: ChunkRange | undefined, maxBytes: number, sync: boolean): Promise<{ size: number; appended: number }> {
    const offset = await this.uploadOffset(name, id);
    if (range && range.start !== offset) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', `chunk starts at ${range.start} but the upload is at ${offset}`, { offset }, 416);
    }
    let state = this.uploads.get(id);
    if (!state) {
      // Server restarted since the upload began: the hash is rebuilt from disk at commit.
      state = { hash: undefined, hashedBytes: -1 };
      this.uploads.set(id, state);
    }
    if (state.hashedBytes !== offset) state.hash = undefined;
    const expected = range ? range.end - range.start + 1 : undefined;
    const writer = await this.driver.writer(paths.uploadData(name, id), true);
    let received = 0;
    let ok = false;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        received += chunk.length;
        // The limit is on the blob: chunks that each fit must not add up past it.
        if (offset + received > maxBytes) throw new RegistryError('SIZE_INVALID', `blob exceeds ${maxBytes} bytes (limits.maxuploadbytes)`, { limit: maxBytes }, 413);
        if (expected !== undefined && received > expected) throw rangeMismatch(range!, received, true);
        state.hash?.update(chunk);
        await writer.write(chunk);
      }
      if (expected !== undefined && received !== expected) throw rangeMismatch(range!, received, false);
      ok = true;
    } catch (e) {
      // A chunk that does not match its Content-Range is all or nothing.
      if (e instanceof RegistryError && e.status === 416) {
        state.hash = undefined;
        state.hashedBytes = -1;
        await writer.discard();
      }
      throw e;
    } finally {
      if (ok && sync) await writer.commit();
      else await writer.close();
      state.hashedBytes = state.hash && ok ? writer.size : -1;
      if (!ok) state.hash = undefined;
    }
    return { size: writer.size, appended: received };
  }

  /**
   * Ends an upload: appends the optional last chunk, syncs the file (closed for good: this
   * request is its only writer), verifies the digest, links the blob into the repository and
   * only then moves the file into the blob store. The link comes before the existence check so
   * a concurrent gc either sees the fresh link or has already removed the blob, which is then
   * moved in again (gc.ts, "Sweeping next to live pushes").
   */
  async commitUpload(name: string, id: string, digest: Digest, body?: Readable, range?: ChunkRange, maxBytes = Number.MAX_SAFE_INTEGER): Promise<BlobInfo & { appended: number }> {
    this.checkUploadId(id);
    const release = await this.ownUpload(name, id);
    try {
      let size: number;
      let appended = 0;
      if (body) ({ size, appended } = await this.append(name, id, body, range, maxBytes, true));
      else size = await this.uploadOffset(name, id);
      // Durable (fsync) before the move below, so even a power loss never exposes a blob path with
      // torn content; and before hashing, because an object store's upload is readable only once
      // committed (the S3 driver's multipart upload).
      if (!body || appended === 0) {
        const w = await this.driver.writer(paths.uploadData(name, id), true);
        await w.commit();
      }
      const state = this.uploads.get(id);
      let actual: string;
      if (state?.hash && state.hashedBytes === size && digest.algorithm === 'sha256') {
        actual = `sha256:${state.hash.digest('hex')}`;
        state.hash = undefined;
      } else {
        actual = await this.hashFile(paths.uploadData(name, id), digest.algorithm);
      }
      if (actual !== digest.value) {
        this.uploads.delete(id);
        await this.driver.delete(paths.uploadDir(name, id));
        throw new RegistryError('DIGEST_INVALID', `digest mismatch: content is ${actual}, request said ${digest.value}`, { digest: digest.value });
      }
      await this.linkBlob(name, digest);
      if (!(await this.blobExistsGlobally(digest))) await this.driver.move(paths.uploadData(name, id), paths.blobData(digest));
      await this.driver.delete(paths.uploadDir(name, id));
      this.uploads.delete(id);
      return { digest: digest.value, size, appended };
    } finally {
      await release();
    }
  }

  async cancelUpload(name: string, id: string): Promise<void> {
    this.checkUploadId(id);
    const release = await this.ownUpload(name, id);
    try {
      await this.uploadOffset(name, id);
      this.uploads.delete(id);
      await this.driver.delete(paths.uploadDir(name, id));
    } finally {
      await release();
    }
  }

  private async hashFile(p: string, algorithm: string): Promise<string> {
    const h = createHash(algorithm);
    const r = await this.driver.reader(p);
    for await (const chunk of r as AsyncIterable<Buffer>) h.update(chunk);
    return `${algorithm}:${h.digest('hex')}`;
  }

  /** Deletes uploads started before `olderThan` (distribution's uploadpurging). Returns their paths. */
  async purgeUploads(olderThan: Date, dryRun = false): Promise<string[]> {
    const purged: string[] = [];
    const uploadDirs: string[] = [];
    await this.driver.walk(REPOSITORIES, async (info) => {
      if (!info.isDir) return 'skip';
      const base = info.path.slice(info.path.lastIndexOf('/') + 1);
      if (base === '_uploads') {
        for (const d of await this.driver.list(info.path).catch(() => [])) uploadDirs.push(d);
        return 'skip';
      }
      return base.startsWith('_') ? 'skip' : undefined;
    });
    for (const dir of uploadDirs) {
      const id = dir.slice(dir.lastIndexOf('/') + 1);
      if (this.uploadOwners.has(id)) continue;
      let started: Date;
      try {
        started = new Date((await this.driver.getContent(`${dir}/startedat`)).toString('utf8'));
        if (Number.isNaN(started.getTime())) started = (await this.driver.stat(dir)).modTime;
      } catch {
        started = (await this.driver.stat(dir).catch(() => ({ modTime: new Date(0) }))).modTime;
      }
      if (started < olderThan) {
        purged.push(dir);
        if (!dryRun) {
          this.uploads.delete(id);
          await this.driver.delete(dir);
        }
      }
    }
    return purged;
  }

  // ---- manifests ----

  private async readLink(p: string): Promise<Digest | undefined> {
    try {
      return parseDigest((await this.driver.getContent(p)).toString('utf8').trim());
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async resolveTag(name: string, tag: string): Promise<Digest | undefined> {
    return this.readLink(paths.tagCurrent(name, tag));
  }

  /** By tag or digest. Throws MANIFEST_UNKNOWN (or NAME_UNKNOWN for a missing repository). */
  async getManifest(name: string, reference: string): Promise<StoredManifest> {
    const key = `${name}\n${reference}`;
    const cached = this.manifestCache.get(key);
    if (cached) return cached;
    let digest: Digest | undefined;
    if (reference.includes(':')) {
      digest = parseDigestParam(reference);
      if (!(await this.readLink(paths.revisionLink(name, digest)))) digest = undefined;
    } else {
      if (!isValidTag(reference)) throw new RegistryError('MANIFEST_UNKNOWN', `invalid tag "${reference.slice(0, 130)}"`, { tag: reference.slice(0, 130) });
      digest = await this.resolveTag(name, reference);
    }
    if (!digest) {
      if (!(await this.repositoryExists(name))) throw new RegistryError('NAME_UNKNOWN', undefined, { name });
      throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${reference.slice(0, 200)}`, reference.includes(':') ? { digest: reference } : { tag: reference });
    }
    let bytes: Buffer;
    try {
      bytes = await this.driver.getContent(paths.blobData(digest));
    } catch (e) {
      if (isNotFound(e)) throw new RegistryError('MANIFEST_UNKNOWN', 'manifest content is missing', { digest: digest.value });
      throw e;
    }
    if (bytes.length > MAX_MANIFEST_BYTES) {
      throw new RegistryError('SIZE_INVALID', `manifest is larger than ${MAX_MANIFEST_BYTES} bytes`, { size: bytes.length }, 413);
    }
    const m: StoredManifest = { bytes, mediaType: manifestMediaType(bytes), digest: digest.value };
    if (bytes.length <= 256 * 1024) this.manifestCache.set(key, m);
    return m;
  }

  async putManifest(name: string, reference: string, bytes: Buffer, contentType: string | undefined, opts: { skipReferenceCheck?: boolean } = {}): Promise<PutManifestResult> {
    if (bytes.length > MAX_MANIFEST_BYTES) {
      throw new RegistryError('SIZE_INVALID', `manifest is larger than ${MAX_MANIFEST_BYTES} bytes`, { size: bytes.length }, 413);
    }
    let refDigest: Digest | undefined;
    let tag: string | undefined;
    if (reference.includes(':')) refDigest = parseDigestParam(reference);
    else if (isValidTag(reference)) tag = reference;
    else throw new RegistryError('MANIFEST_INVALID', `invalid tag "${reference.slice(0, 130)}"`, { tag: reference.slice(0, 130) });

    const parsed = parseManifest(bytes, mediaTypeOnly(contentType));
    const algorithm = refDigest?.algorithm ?? 'sha256';
    const digest = parseDigest(`${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`);
    if (refDigest && refDigest.value !== digest.value) {
      throw new RegistryError('DIGEST_INVALID', `manifest digest is ${digest.value}, not ${refDigest.value}`, { digest: refDigest.value });
    }

    // Every blob and child manifest must already be in this repository (a pull-through cache
    // fetches them lazily instead). Each check rewrites the link before it looks at the data (relinkBlob).
    if (!opts.skipReferenceCheck) {
      await Promise.all([
        ...parsed.blobs.filter((d) => !(d.urls && d.urls.length > 0)).map(async (d) => { // foreign layers live elsewhere by definition
          if (!(await this.relinkBlob(name, parseDigest(d.digest)))) {
            throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `blob unknown to registry: ${d.digest}`, { digest: d.digest });
          }
        }),
        ...parsed.manifests.map(async (d) => {
          const child = parseDigest(d.digest);
          if (!(await this.refreshLink(paths.revisionLink(name, child), child)) || !(await this.blobExistsGlobally(child))) {
            throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `manifest unknown to registry: ${d.digest}`, { digest: d.digest });
          }
        }),
      ]);
    }

    // Revision link first, then the content: the same order as for blobs, for the same reason.
    await this.driver.putContent(paths.revisionLink(name, digest), digest.value);
    if (!(await this.blobExistsGlobally(digest))) await this.driver.putContent(paths.blobData(digest), bytes);
    if (parsed.subject) {
      const subject = parseDigest(parsed.subject.digest);
      const desc: Descriptor = { mediaType: parsed.mediaType, digest: digest.value, size: bytes.length };
      if (parsed.artifactType) desc.artifactType = parsed.artifactType;
      if (parsed.annotations) desc.annotations = parsed.annotations;
      await this.driver.putContent(paths.referrer(name, subject, digest), JSON.stringify(desc));
    }
    if (tag) {
      await this.driver.putContent(paths.tagIndexEntry(name, tag, digest), digest.value);
      await this.driver.putContent(paths.tagCurrent(name, tag), digest.value);
    }
    this.manifestCache.deletePrefix(`${name}\n`);
    return { digest: digest.value, subject: parsed.subject?.digest };
  }

  /** By digest: removes the revision, every tag pointing at it and its referrer entry. By tag: only the tag. */
  async deleteManifest(name: string, reference: string): Promise<void> {
    if (!this.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deletion is disabled (storage.delete.enabled)');
    try {
      if (!reference.includes(':')) {
        if (!isValidTag(reference) || !(await this.resolveTag(name, reference))) {
          throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${reference.slice(0, 130)}`, { tag: reference.slice(0, 130) });
        }
        await this.driver.delete(paths.tagDir(name, reference));
        return;
      }
      const digest = parseDigestParam(reference);
      if (!(await this.readLink(paths.revisionLink(name, digest)))) {
        throw new RegistryError('MANIFEST_UNKNOWN', undefined, { digest: digest.value });
      }
      for (const tag of await this.tags(name).catch(() => [] as string[])) {
        const d = await this.resolveTag(name, tag);
        if (d?.value === digest.value) await this.driver.delete(paths.tagDir(name, tag));
      }
      try {
        const bytes = await this.driver.getContent(paths.blobData(digest));
        const subject = (JSON.parse(bytes.toString('utf8')) as { subject?: { digest?: string } }).subject?.digest;
        if (subject) await this.driver.delete(paths.referrer(name, parseDigest(subject), digest));
      } catch { /* content already gone or not JSON: nothing to unlink */ }
      await this.driver.delete(paths.revisionDir(name, digest));
    } finally {
      this.manifestCache.deletePrefix(`${name}\n`);
    }
  }

  /** Sorted tag names; NAME_UNKNOWN when the repository does not exist. */
  async tags(name: string): Promise<string[]> {
    try {
      const entries = await this.driver.list(paths.tags(name));
      return entries.map((p) => p.slice(p.lastIndexOf('/') + 1)).sort();
    } catch (e) {
      if (!isNotFound(e)) throw e;
      if (await this.repositoryExists(name)) return [];
      throw new RegistryError('NAME_UNKNOWN', undefined, { name });
    }
  }

  async referrers(name: string, subject: Digest): Promise<Descriptor[]> {
    let entries: string[];
    try {
      entries = await this.driver.list(paths.referrersOf(name, subject));
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
    const out: Descriptor[] = [];
    for (const p of entries) {
      try {
        const desc = JSON.parse((await this.driver.getContent(p)).toString('utf8')) as Descriptor;
        // A referrer deleted by gc (or by digest) in another process: drop the stale entry.
        if (await this.readLink(paths.revisionLink(name, parseDigest(desc.digest)))) out.push(desc);
      } catch (e) {
        if (!(e instanceof PathNotFoundError)) continue;
      }
    }
    return out;
  }

  /** Drops cached manifests (after gc or an out-of-band change). */
  invalidateCaches(): void {
    this.manifestCache.clear();
  }
}

interface ParsedManifest {
  mediaType: string;
  artifactType?: string;
  annotations?: Record<string, string>;
  subject?: Descriptor;
  blobs: Descriptor[];
  manifests: Descriptor[];
}

function checkDescriptor(d: unknown, where: string): Descriptor {
  const desc = d as Descriptor;
  if (!desc || typeof desc !== 'object' || typeof desc.mediaType !== 'string' || typeof desc.digest !== 'string'
    || typeof desc.size !== 'number' || !Number.isSafeInteger(desc.size) || desc.size < 0) {
    throw new RegistryError('MANIFEST_INVALID', `${where}: descriptor needs mediaType, digest and a non-negative integer size`);
  }
  try {
    parseDigest(desc.digest);
  } catch (e) {
    throw new RegistryError('MANIFEST_INVALID', `${where}: ${(e as Error).message}`);
  }
  return desc;
}

/** The media type of stored manifest bytes: the body's own field, else inferred from its shape. */
export function manifestMediaType(bytes: Buffer): string {
  try {
    return declaredOrShapeMediaType(bytes);
  } catch {
    // Stored manifests were parsed when pushed; bytes that are not JSON are served as OCI's type.
    return MediaType.OciManifest;
  }
}

/** Manifests are a few levels deep; distribution's JSON decoder stops at 10000, drydock far sooner. */
export const MAX_MANIFEST_NESTING = 64;

/** Refuses JSON nested deeper than `max` before it is parsed (a linear scan that skips strings). */
function checkNesting(bytes: Buffer, max: number): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) throw new RegistryError('MANIFEST_INVALID', `manifest JSON is nested deeper than ${max} levels`);
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
}

/** Structural validation of a pushed manifest (what distribution's schema2/ocischema handlers check, plus OCI 1.1 rules). */
export function parseManifest(bytes: Buffer, contentType: string | undefined): ParsedManifest {
  checkNesting(bytes, MAX_MANIFEST_NESTING);
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new RegistryError('MANIFEST_INVALID', `manifest is not valid JSON: ${(e as Error).message}`);
  }
  if (!m || typeof m !== 'object' || Array.isArray(m)) throw new RegistryError('MANIFEST_INVALID', 'manifest must be a JSON object');
  if (m.schemaVersion !== 2) {
    throw new RegistryError('MANIFEST_INVALID', m.schemaVersion === 1 ? 'schema1 manifests are not supported' : 'schemaVersion must be 2');
  }
  const hasManifests = m.manifests !== undefined;
  const hasImageFields = m.layers !== undefined || m.config !== undefined;
  if (hasManifests && hasImageFields) {
    throw new RegistryError('MANIFEST_INVALID', 'ambiguous manifest: it has both "manifests" and "layers"/"config"');
  }
  const bodyType = typeof m.mediaType === 'string' ? m.mediaType : undefined;
  if (m.mediaType !== undefined && typeof m.mediaType !== 'string') throw new RegistryError('MANIFEST_INVALID', 'mediaType must be a string');
  if (bodyType && contentType && contentType !== bodyType) {
    throw new RegistryError('MANIFEST_INVALID', `Content-Type ${contentType} does not match the manifest's mediaType ${bodyType}`);
  }
  // Docker's schema2 types require the field (only OCI's is optional): stored without it, the
  // bytes would read back as OCI. Refused with distribution's message.
  if (!bodyType && (contentType === MediaType.DockerManifest || contentType === MediaType.DockerManifestList)) {
    const what = contentType === MediaType.DockerManifest ? 'manifest' : 'manifest list';
    throw new RegistryError('MANIFEST_INVALID', `mediaType in ${what} should be '${contentType}' not ''`);
  }
  const mediaType = bodyType ?? (contentType && MANIFEST_MEDIA_TYPES.includes(contentType) ? contentType : (hasManifests ? MediaType.OciIndex : MediaType.OciManifest));
  if (!MANIFEST_MEDIA_TYPES.includes(mediaType)) throw new RegistryError('MANIFEST_INVALID', `unsupported manifest media type ${mediaType}`);
  const isIndex = isIndexMediaType(mediaType);
  if (isIndex ? hasImageFields : hasManifests) {
    throw new RegistryError('MANIFEST_INVALID', `manifest fields do not match its media type ${mediaType}`);
  }
  const out: ParsedManifest = { mediaType, blobs: [], manifests: [] };
  if (typeof m.artifactType === 'string') out.artifactType = m.artifactType;
  if (m.annotations && typeof m.annotations === 'object') out.annotations = m.annotations as Record<string, string>;
  if (m.subject !== undefined) out.subject = checkDescriptor(m.subject, 'subject');
  if (isIndex) {
    if (!Array.isArray(m.manifests)) throw new RegistryError('MANIFEST_INVALID', 'index needs a "manifests" array');
    out.manifests = m.manifests.map((d, i) => checkDescriptor(d, `manifests[${i}]`));
  } else {
    const config = checkDescriptor(m.config, 'config');
    if (!Array.isArray(m.layers)) throw new RegistryError('MANIFEST_INVALID', 'manifest needs a "layers" array');
    out.blobs = [config, ...m.layers.map((d, i) => checkDescriptor(d, `layers[${i}]`))];
    // OCI 1.1: a referrer without artifactType is listed under its config media type.
    if (!out.artifactType) out.artifactType = config.mediaType;
  }
  return out;
}
