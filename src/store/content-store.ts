// The local content store: an OCI image layout directory (oci-layout, index.json, blobs/<alg>/<hex>)
// that skopeo, umoci and `oci:` transports can read as it is. Extra drydock state lives in
// sibling folders (tmp/, roots/) that the layout spec lets readers ignore.
import { createReadStream, promises as fsp, readdir, readdirSync, readFileSync, statSync, openSync, closeSync, renameSync, mkdirSync, rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseDigest, digestOf, type DigestAlgorithm } from '../image/digest.js';
import { BlobVerificationError } from './errors.js';
import type { Descriptor, ImageIndex } from '../image/types.js';
import { MediaType } from '../image/media-types.js';
import { crashPoint, pausePoint } from '../util/crash-point.js';
import { lockFile } from './index-lock.js';
import { fsyncDir, fsyncFd, writeAllSync, readJsonIfExists, readJsonIfExistsSync, writeJsonAtomic, writeFileAtomic, stageFileAtomic, statSyncOrUndefined, STREAM_CHUNK } from '../util/fs.js';

export const REF_NAME_ANNOTATION = 'io.containerd.image.name';
export const OCI_REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

export { BlobVerificationError } from './errors.js';

export interface BlobWriteExpectation {
  digest?: string;
  size?: number;
  /** Algorithm to hash with when no digest is expected. */
  algorithm?: DigestAlgorithm;
}

export interface WrittenBlob {
  digest: string;
  size: number;
  /** True when this call added the blob (it was not in the store before): callers that
   * must undo a half-finished operation delete exactly these. */
  created?: boolean;
}

/** Default store root, honouring DRYDOCK_ROOT. */
export function defaultRoot(): string {
  if (process.env.DRYDOCK_ROOT) return path.resolve(process.env.DRYDOCK_ROOT);
  const dataHome = process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(dataHome, 'drydock');
}

export interface BlobCommitOptions {
  /**
   * Leave the fsync of the blob's directory to syncBlobDirs(), which a copy calls once before it
   * writes the manifest's tag: one directory fsync for all the blobs of an image, not one each.
   * The blob file itself is always fsynced before its rename.
   */
  deferDirSync?: boolean;
}

/** A verified blob in tmp/ (see ContentStore.ingestBlob). */
export interface IngestedBlob extends WrittenBlob {
  /** fsync, rename into blobs/ (and fsync the directory unless deferred). */
  commit(opts?: BlobCommitOptions): Promise<WrittenBlob>;
  /** Removes the temp file. */
  discard(): Promise<void>;
}


function emptyIndex(): ImageIndex {
  return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
}

/** The named references of index.json: full name (registry/repo:tag) and the manifest descriptor. */
function tagsOf(index: ImageIndex): { name: string; descriptor: Descriptor }[] {
  return index.manifests
    .filter((d) => d.annotations?.[REF_NAME_ANNOTATION])
    .map((d) => ({ name: d.annotations![REF_NAME_ANNOTATION]!, descriptor: d }));
}

/** The root files of roots/ in order, with their owners, optionally only those of `ownerPrefixes`. */
function rootFiles(files: string[], ownerPrefixes?: readonly string[]): [file: string, owner: string][] {
  const out: [string, string][] = [];
  for (const f of files.sort()) {
    if (f.startsWith('.tmp-')) continue;
    let owner = f;
    try { owner = decodeURIComponent(f); } catch { /* written by hand: keep the file name */ }
    if (ownerPrefixes && !ownerPrefixes.some((p) => owner.startsWith(p))) continue;
    out.push([f, owner]);
  }
  return out;
}

/** Blobs in memory up to this size are written with writeBytesInline (configs, manifests, indexes). */
const INLINE_BLOB_MAX = 4 << 20;

export class ContentStore {
  /** Blob directories renamed into without an fsync yet (BlobCommitOptions.deferDirSync). */
  private readonly unsyncedDirs = new Set<string>();
  /** The directory fsyncs syncBlobDirs() started that have not completed yet. */
  private readonly runningDirSyncs = new Map<string, Promise<void>>();
  /**
   * Every blob write of this store object defers its directory fsync (deferDirSync), and the
   * writes that publish blobs, setTag and a durable setRoot, run syncBlobDirs() first: one
   * fsync of blobs/sha256 covers an image's layer, config and manifest, instead of one after
   * each in a row. The builder sets it: its last layer, the config and the manifest are written
   * one after another on the path to the tag.
   */
  deferBlobDirSyncs = false;
  /** Blob directories known to exist (ensureDir). */
  private readonly madeDirs = new Set<string>();
  readonly blobsDir: string;
  readonly tmpDir: string;
  readonly indexPath: string;
  /** Digests other subsystems keep alive (build cache, containers); one file per root. */
  readonly rootsDir: string;

  private constructor(readonly root: string) {
    this.blobsDir = path.join(root, 'blobs');
    this.tmpDir = path.join(root, 'tmp');
    this.indexPath = path.join(root, 'index.json');
    this.rootsDir = path.join(root, 'roots');
  }

  static async open(root: string = defaultRoot()): Promise<ContentStore> {
    const store = new ContentStore(path.resolve(root));
    const sha256 = path.join(store.blobsDir, 'sha256');
    const layoutFile = path.join(store.root, 'oci-layout');
    store.madeDirs.add(sha256);
    // A store that exists (every command but the first): four stats on the main thread, not
    // mkdirs and reads that are each a thread-pool round trip before a build's first step.
    if ([sha256, store.tmpDir, layoutFile, store.indexPath].every((p) => statSyncOrUndefined(p))) return store;
    await fsp.mkdir(sha256, { recursive: true });
    await fsp.mkdir(store.tmpDir, { recursive: true });
    // A new store's two files are written side by side: their fsyncs overlap.
    await Promise.all([
      readJsonIfExists(layoutFile).then((v) => v ? undefined : writeJsonAtomic(layoutFile, { imageLayoutVersion: '1.0.0' })),
      readJsonIfExists(store.indexPath).then((v) => v ? undefined : writeJsonAtomic(store.indexPath, { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] })),
    ]);
    return store;
  }

  /**
   * The store at `root` to read, as `drydock images` and `ps` do: nothing is created (a store
   * that does not exist yet lists as empty). With the *Sync readers below such a command reads
   * index.json and a few small blobs without fs.promises, whose loading and thread pool cost a
   * short-lived CLI more than the reads themselves.
   */
  static forReading(root: string = defaultRoot()): ContentStore {
    return new ContentStore(path.resolve(root));
  }

  /** Path of a blob; the digest is validated first so it can never traverse. */
  blobPath(digest: string): string {
    const d = parseDigest(digest);
    return path.join(this.blobsDir, d.algorithm, d.hex);
  }

  async statBlob(digest: string): Promise<number | undefined> {
    try {
      return (await fsp.stat(this.blobPath(digest))).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async hasBlob(digest: string): Promise<boolean> {
    return (await this.statBlob(digest)) !== undefined;
  }

  /** statBlob on this thread: for the checks between an image's writes and its tag (one stat each). */
  statBlobSync(digest: string): number | undefined {
    return statSync(this.blobPath(digest), { throwIfNoEntry: false })?.size;
  }

  hasBlobSync(digest: string): boolean {
    return this.statBlobSync(digest) !== undefined;
  }

  async readBlob(digest: string): Promise<Buffer> {
    try {
      return await fsp.readFile(this.blobPath(digest));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobVerificationError(`blob ${digest} is not in the store`);
      throw e;
    }
  }

  async readJsonBlob<T>(digest: string): Promise<T> {
    return JSON.parse((await this.readBlob(digest)).toString('utf8')) as T;
  }

  /** For small blobs (manifests, configs) read by a quick command; see forReading. */
  readBlobSync(digest: string): Buffer {
    try {
      return readFileSync(this.blobPath(digest));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobVerificationError(`blob ${digest} is not in the store`);
      throw e;
    }
  }

  readJsonBlobSync<T>(digest: string): T {
    return JSON.parse(this.readBlobSync(digest).toString('utf8')) as T;
  }

  openBlob(digest: string, range?: { start: number; end?: number }): Readable {
    return createReadStream(this.blobPath(digest), { highWaterMark: STREAM_CHUNK, ...range });
  }

  /**
   * Streams `source` into the store: hashed while copied to tmp/, checked against the expected
   * digest and size, fsynced, then renamed into blobs/ and the directory fsynced. A mismatch
   * leaves nothing visible. Concurrent writers of one blob are safe: each has its own temp file
   * and rename is atomic.
   */
  async writeBlob(source: Readable | Buffer | string, expect: BlobWriteExpectation = {}, opts: BlobCommitOptions = {}): Promise<WrittenBlob> {
    if (!(source instanceof Readable) && source.length <= INLINE_BLOB_MAX) return this.writeBytesInline(Buffer.from(source), expect, opts);
    return (await this.ingestBlob(source, expect)).commit(opts);
  }

  /**
   * writeBlob of bytes in memory (configs, manifests, indexes): hashed, then the stat, open,
   * write, rename and close on the main thread and only the fsyncs on the thread pool
   * (util/fs.ts InlineOption says why). The same checks and the same order as ingestBlob.
   */
  private async writeBytesInline(bytes: Buffer, expect: BlobWriteExpectation, opts: BlobCommitOptions): Promise<WrittenBlob> {
    if (expect.digest && expect.size !== undefined && statSyncOrUndefined(this.blobPath(expect.digest))?.size === expect.size) {
      return { digest: expect.digest, size: expect.size, created: false };
    }
    const algorithm = expect.digest ? parseDigest(expect.digest).algorithm : expect.algorithm ?? 'sha256';
    const digest = digestOf(bytes, algorithm);
    if (expect.size !== undefined && bytes.length > expect.size) throw new BlobVerificationError(`blob is larger than the expected ${expect.size} bytes`);
    if (expect.digest && digest !== expect.digest) {
      throw new BlobVerificationError(`digest mismatch: expected ${expect.digest}, content hashes to ${digest}`);
    }
    if (expect.size !== undefined && bytes.length !== expect.size) {
      throw new BlobVerificationError(`size mismatch for ${digest}: expected ${expect.size} bytes, got ${bytes.length}`);
    }
    const target = this.blobPath(digest);
    const tmp = this.tempBlobPath();
    const fd = openSync(tmp, 'wx');
    let existed: boolean;
    try {
      writeAllSync(fd, bytes);
      await fsyncFd(fd);
      crashPoint('blob.synced');
      const paused = pausePoint('blob.synced');
      if (paused) await paused;
      if (!this.madeDirs.has(path.dirname(target))) { mkdirSync(path.dirname(target), { recursive: true }); this.madeDirs.add(path.dirname(target)); }
      existed = statSyncOrUndefined(target) !== undefined;
      renameSync(tmp, target);
    } catch (e) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw e;
    }
    closeSync(fd);
    crashPoint('blob.renamed');
    if (opts.deferDirSync || this.deferBlobDirSyncs) this.unsyncedDirs.add(path.dirname(target));
    else await fsyncDir(path.dirname(target), { inline: true });
    return { digest, size: bytes.length, created: !existed };
  }

  /**
   * The first half of writeBlob: `source` streamed to a temp file in tmp/, hashed on the way and
   * checked against `expect`. Nothing is in blobs/ until commit() (fsync, rename); discard()
   * removes the temp file. A copy commits in the background while the next download runs.
   */
  async ingestBlob(source: Readable | Buffer | string, expect: BlobWriteExpectation = {}): Promise<IngestedBlob> {
    const algorithm = expect.digest ? parseDigest(expect.digest).algorithm : expect.algorithm ?? 'sha256';
    // The stream may fail while the stat and open below are awaited (load's side check destroys
    // it as soon as the tar is refused), before pipeline() listens: keep that error, not an
    // uncaught 'error' event.
    let early: Error | undefined;
    const keepEarly = (e: Error) => { early ??= e; };
    if (source instanceof Readable) source.on('error', keepEarly);
    if (expect.digest && expect.size !== undefined && (await this.statBlob(expect.digest)) === expect.size) {
      if (source instanceof Readable) source.destroy();
      const done: WrittenBlob = { digest: expect.digest, size: expect.size, created: false };
      return { ...done, commit: async () => done, discard: async () => {} };
    }
    const tmp = this.tempBlobPath();
    let fh: fsp.FileHandle;
    try { fh = await fsp.open(tmp, 'wx'); } catch (e) {
      if (source instanceof Readable) source.destroy();
      throw e;
    }
    const discard = async () => {
      await fh.close().catch(() => {});
      await fsp.rm(tmp, { force: true });
    };
    // Its own module, loaded on the first write: a class that extends Writable loads node:stream
    // when defined, which a listing (`drydock images`) need not pay (scripts/bundle-cli.mjs).
    const { BlobFileWriter } = await import('./blob-file-writer.js');
    const writer = new BlobFileWriter(fh, algorithm, expect.size);
    try {
      if (source instanceof Readable) {
        if (early) throw early;
        await pipeline(source, writer).finally(() => source.off('error', keepEarly));
      }
      else await writer.writeWhole(Buffer.from(source));
      const digest = writer.digester.digest();
      const size = writer.digester.size;
      if (expect.digest && digest !== expect.digest) {
        throw new BlobVerificationError(`digest mismatch: expected ${expect.digest}, content hashes to ${digest}`);
      }
      if (expect.size !== undefined && size !== expect.size) {
        throw new BlobVerificationError(`size mismatch for ${digest}: expected ${expect.size} bytes, got ${size}`);
      }
      const commit = async (o: BlobCommitOptions = {}): Promise<WrittenBlob> => {
        try {
          const target = this.blobPath(digest);
          // The same descriptor that wrote the data: no second open of the temp file. Whether the
          // blob was there is asked while the fsync runs (each await is a thread-pool round trip).
          const [, existed] = await Promise.all([
            fh.sync().then(() => fh.close()),
            this.ensureDir(path.dirname(target)).then(async () => (await this.statBlob(digest)) !== undefined),
          ]);
          crashPoint('blob.synced');
          const paused = pausePoint('blob.synced');
          if (paused) await paused;
          await fsp.rename(tmp, target);
          crashPoint('blob.renamed');
          if (o.deferDirSync || this.deferBlobDirSyncs) this.unsyncedDirs.add(path.dirname(target));
          else await fsyncDir(path.dirname(target));
          return { digest, size, created: !existed };
        } catch (e) {
          await discard();
          throw e;
        }
      };
      return { digest, size, commit, discard };
    } catch (e) {
      await writer.settled();
      await discard();
      throw e;
    }
  }

  /** mkdir -p of a blob directory, once per directory and store object (blobs/sha256 is made by open). */
  private ensureDir(dir: string): Promise<void> {
    if (this.madeDirs.has(dir)) return Promise.resolve();
    return fsp.mkdir(dir, { recursive: true }).then(() => { this.madeDirs.add(dir); });
  }

  /**
   * A fresh temp file name in tmp/ for a blob being written (by this store, or by another thread:
   * the build's snapshot worker), so a process killed mid-write leaves a file that gcStore's
   * sweep of tmp/ removes like any other.
   */
  tempBlobPath(): string {
    return path.join(this.tmpDir, `ingest-${process.pid}-${randomBytes(8).toString('hex')}`);
  }

  /**
   * Moves a finished temp file (from tempBlobPath, written and fsynced by its writer, which hashed
   * it on the way) into blobs/ as `digest`, then fsyncs the directory. The digest is the writer's
   * word, not hashed again here; the size is checked, so a torn or foreign file is refused (and
   * removed) instead of stored.
   */
  async adoptTempBlob(file: string, blob: { digest: string; size: number }): Promise<WrittenBlob> {
    if (path.dirname(file) !== this.tmpDir) throw new Error(`${file} is not a temp file of the store at ${this.root}`);
    try {
      const st = await fsp.lstat(file);
      if (!st.isFile() || st.size !== blob.size) {
        throw new BlobVerificationError(`size mismatch for ${blob.digest}: expected ${blob.size} bytes, the temp file ${file} has ${st.size}`);
      }
      const target = this.blobPath(blob.digest);
      await this.ensureDir(path.dirname(target));
      const existed = (await this.statBlob(blob.digest)) !== undefined;
      await fsp.rename(file, target);
      if (this.deferBlobDirSyncs) this.unsyncedDirs.add(path.dirname(target));
      else await fsyncDir(path.dirname(target));
      return { digest: blob.digest, size: blob.size, created: !existed };
    } catch (e) {
      await fsp.rm(file, { force: true });
      throw e;
    }
  }

  /** fsyncs the blob directories that writes with `deferDirSync` renamed into (once each). */
  async syncBlobDirs(): Promise<void> {
    for (const d of this.unsyncedDirs) {
      const running = fsyncDir(d, { inline: true });
      this.runningDirSyncs.set(d, running);
      void running.then(() => { if (this.runningDirSyncs.get(d) === running) this.runningDirSyncs.delete(d); });
    }
    this.unsyncedDirs.clear();
    // Also the fsyncs another caller started: the renames they cover may be this caller's.
    await Promise.all(this.runningDirSyncs.values());
  }

  /** Writes a JSON document as a blob and returns its descriptor. */
  async writeJson(value: unknown, mediaType: string): Promise<Descriptor & { bytes: Buffer; created?: boolean }> {
    const bytes = Buffer.from(JSON.stringify(value));
    const { digest, size, created } = await this.writeBlob(bytes, { digest: digestOf(bytes), size: bytes.length });
    return { mediaType, digest, size, bytes, created };
  }

  /** Raw bytes as a blob (manifests whose exact bytes must be preserved). */
  async writeBytes(bytes: Buffer, mediaType: string): Promise<Descriptor> {
    const { digest, size } = await this.writeBlob(bytes, { digest: digestOf(bytes), size: bytes.length });
    return { mediaType, digest, size };
  }

  // ---- tags -------------------------------------------------------------------------------

  async readIndex(): Promise<ImageIndex> {
    return (await readJsonIfExists<ImageIndex>(this.indexPath)) ?? emptyIndex();
  }

  readIndexSync(): ImageIndex {
    return readJsonIfExistsSync<ImageIndex>(this.indexPath) ?? emptyIndex();
  }

  /**
   * Serialises read-modify-write of index.json between processes. With `gate` (the blobs the new
   * index names, still being written), the new index is written and fsynced meanwhile and
   * renamed in only once the gate has resolved: the two fsyncs overlap, and a crash leaves the old
   * index or one whose blobs are durable. A gate that rejects leaves index.json as it was.
   */
  private async updateIndex<T>(fn: (index: ImageIndex) => T | Promise<T>, gate?: Promise<unknown>): Promise<T> {
    const release = await lockFile(this.indexPath);
    try {
      const index = this.readIndexSync();
      const result = await fn(index);
      const staged = await stageFileAtomic(this.indexPath, JSON.stringify(index, null, 2) + '\n', 0o644, { inline: true });
      crashPoint('index.staged');
      try {
        await gate;
      } catch (e) {
        await staged.discard();
        throw e;
      }
      await staged.commit();
      crashPoint('index.written');
      return result;
    } finally {
      await release();
    }
  }

  /** Lists the named references: full name (registry/repo:tag) and the manifest descriptor. */
  async listTags(): Promise<{ name: string; descriptor: Descriptor }[]> {
    return tagsOf(await this.readIndex());
  }

  listTagsSync(): { name: string; descriptor: Descriptor }[] {
    return tagsOf(this.readIndexSync());
  }

  async resolveTag(name: string): Promise<Descriptor | undefined> {
    return (await this.listTags()).find((t) => t.name === name)?.descriptor;
  }

  /**
   * Points `name` (full "registry/repo:tag") at a manifest. The manifest blob must already be in
   * the store, so a tag never dangles. Returns what the tag pointed at before, if anything.
   */
  async setTag(name: string, descriptor: Descriptor, opts: { written?: Promise<unknown> } = {}): Promise<Descriptor | undefined> {
    // `written`: the manifest (and what it names) is being written. The new index is prepared
    // meanwhile and renamed in only once that is durable and the manifest is there.
    const there = async () => {
      await opts.written;
      await this.syncBlobDirs();
      if (this.statBlobSync(descriptor.digest) === undefined) {
        throw new BlobVerificationError(`cannot tag ${name}: manifest ${descriptor.digest} is not in the store`);
      }
    };
    const gate = opts.written ? there() : undefined;
    gate?.catch(() => { /* awaited by updateIndex, or the lock failed first */ });
    if (!gate) await there();
    const tag = name.slice(name.lastIndexOf(':') + 1);
    return this.updateIndex((index) => {
      const previous = index.manifests.find((d) => d.annotations?.[REF_NAME_ANNOTATION] === name);
      index.manifests = index.manifests.filter((d) => d.annotations?.[REF_NAME_ANNOTATION] !== name);
      index.manifests.push({
        mediaType: descriptor.mediaType,
        digest: descriptor.digest,
        size: descriptor.size,
        ...(descriptor.platform ? { platform: descriptor.platform } : {}),
        annotations: { [REF_NAME_ANNOTATION]: name, [OCI_REF_NAME_ANNOTATION]: tag },
      });
      index.manifests.sort((a, b) => (a.annotations![REF_NAME_ANNOTATION]! < b.annotations![REF_NAME_ANNOTATION]! ? -1 : 1));
      return previous;
    }, gate);
  }

  /** Removes a tag; returns the descriptor it pointed at, if any. */
  async removeTag(name: string): Promise<Descriptor | undefined> {
    return this.updateIndex((index) => {
      const found = index.manifests.find((d) => d.annotations?.[REF_NAME_ANNOTATION] === name);
      index.manifests = index.manifests.filter((d) => d !== found);
      return found;
    });
  }

  // ---- roots kept alive by other subsystems -----------------------------------------------

  /**
   * Records that `owner` (e.g. "cache/<key>") needs `digests` kept across gc. `durable: false`
   * for a root whose owner is recreated when lost (the build cache's, a build step's image): a
   * crash may then lose it, or leave it empty, and gc sweep what it kept.
   */
  async setRoot(owner: string, digests: string[], opts: { durable?: boolean } = {}): Promise<void> {
    if (opts.durable !== false) await this.syncBlobDirs();
    const file = path.join(this.rootsDir, encodeURIComponent(owner));
    await writeFileAtomic(file, digests.map((d) => parseDigest(d).value).join('\n') + '\n', 0o644, { ...opts, inline: true });
  }

  async removeRoot(owner: string): Promise<void> {
    await fsp.rm(path.join(this.rootsDir, encodeURIComponent(owner)), { force: true });
  }

  async listRoots(): Promise<string[]> {
    return (await this.listRootEntries()).flatMap((r) => r.digests);
  }

  /**
   * Roots with their owners ("buildcache/<key>", "container/<id>", "pulled/<digest>", ...),
   * optionally only those whose owner starts with one of `ownerPrefixes` (the others' files are
   * not read: the build cache alone can hold thousands).
   */
  async listRootEntries(ownerPrefixes?: readonly string[]): Promise<{ owner: string; digests: string[] }[]> {
    let files: string[];
    try { files = await fsp.readdir(this.rootsDir); } catch { return []; }
    const out: { owner: string; digests: string[] }[] = [];
    for (const [f, owner] of rootFiles(files, ownerPrefixes)) {
      const text = await fsp.readFile(path.join(this.rootsDir, f), 'utf8').catch(() => '');
      out.push({ owner, digests: text.split('\n').filter(Boolean) });
    }
    return out;
  }

  listRootEntriesSync(ownerPrefixes?: readonly string[]): { owner: string; digests: string[] }[] {
    let files: string[];
    try { files = readdirSync(this.rootsDir); } catch { return []; }
    return rootFiles(files, ownerPrefixes).map(([f, owner]) => {
      let text = '';
      try { text = readFileSync(path.join(this.rootsDir, f), 'utf8'); } catch { /* removed meanwhile */ }
      return { owner, digests: text.split('\n').filter(Boolean) };
    });
  }

  /** The owners of the roots that start with one of `ownerPrefixes`, without reading the roots. */
  async listRootOwners(ownerPrefixes: readonly string[]): Promise<Set<string>> {
    // readdir's callback form: the export of a late RUN's build uses fs.promises nowhere else,
    // and its first use loads it (internal/fs/promises) on that path.
    const files = await new Promise<string[]>((resolve) => { readdir(this.rootsDir, (e, names) => resolve(e ? [] : names)); });
    const owners = new Set<string>();
    for (const f of files) {
      if (f.startsWith('.tmp-')) continue;
      let owner = f;
      try { owner = decodeURIComponent(f); } catch { /* written by hand: keep the file name */ }
      if (ownerPrefixes.some((p) => owner.startsWith(p))) owners.add(owner);
    }
    return owners;
  }

  async *listBlobs(): AsyncGenerator<{ digest: string; path: string }> {
    for (const alg of ['sha256', 'sha512']) {
      let names: string[];
      try { names = await fsp.readdir(path.join(this.blobsDir, alg)); } catch { continue; }
      for (const hex of names) yield { digest: `${alg}:${hex}`, path: path.join(this.blobsDir, alg, hex) };
    }
  }
}
