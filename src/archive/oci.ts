// OCI image layouts as ImageSource/ImageDestination: a directory (`oci:DIR[:ref]`) or a tar of
// one (`oci-archive:FILE[:ref]`). The reference is the index.json entry's
// org.opencontainers.image.ref.name annotation, as skopeo and umoci use it.
import { createReadStream, promises as fsp } from 'node:fs';
import { Readable } from 'node:stream';
import path from 'node:path';
import { ContentStore, OCI_REF_NAME_ANNOTATION, REF_NAME_ANNOTATION } from '../store/content-store.js';
import { HashingTransform } from '../store/hashing-transform.js';
import { parseDigest, digestOf } from '../image/digest.js';
import { MediaType } from '../image/media-types.js';
import type { Descriptor, ImageIndex } from '../image/types.js';
import type { ImageDestination, ImageSource, RawManifest } from '../image/source.js';
import { MAX_MANIFEST_BYTES, manifestMediaType } from '../image/partial.js';
import { readJsonIfExists, writeJsonAtomic, STREAM_CHUNK } from '../util/fs.js';
import { ArchiveError, TarFile, TarWriter } from './tar-file.js';

export const OCI_LAYOUT_FILE = 'oci-layout';
export const OCI_LAYOUT_VERSION = { imageLayoutVersion: '1.0.0' };

/** "blobs/sha256/<hex>" for a validated digest. */
export function blobEntryName(digest: string): string {
  const d = parseDigest(digest);
  return `blobs/${d.algorithm}/${d.hex}`;
}

/** Read access to the files of a layout, wherever it lives. */
export interface LayoutFiles {
  readonly description: string;
  has(name: string): Promise<boolean>;
  size(name: string): Promise<number | undefined>;
  read(name: string, max?: number): Promise<Buffer>;
  open(name: string): Readable;
}

export class DirLayoutFiles implements LayoutFiles {
  constructor(readonly dir: string) {}
  get description(): string { return this.dir; }
  async has(name: string): Promise<boolean> { return (await this.size(name)) !== undefined; }
  async size(name: string): Promise<number | undefined> {
    const st = await fsp.lstat(path.join(this.dir, name)).catch(() => undefined);
    return st?.isFile() ? st.size : undefined;
  }
  async read(name: string, max = 16 << 20): Promise<Buffer> {
    const size = await this.size(name);
    if (size === undefined) throw new ArchiveError(`${this.dir}: no file "${name}"`);
    if (size > max) throw new ArchiveError(`${this.dir}: "${name}" is ${size} bytes, more than the ${max} expected for metadata`);
    return fsp.readFile(path.join(this.dir, name));
  }
  open(name: string): Readable {
    return createReadStream(path.join(this.dir, name), { highWaterMark: STREAM_CHUNK });
  }
}

export class TarLayoutFiles implements LayoutFiles {
  constructor(readonly tar: TarFile) {}
  get description(): string { return this.tar.file; }
  async has(name: string): Promise<boolean> { return this.tar.has(name); }
  async size(name: string): Promise<number | undefined> { return this.tar.get(name)?.size; }
  read(name: string, max?: number): Promise<Buffer> { return this.tar.read(name, max); }
  open(name: string): Readable { return this.tar.open(name); }
}

function mediaTypeOf(bytes: Buffer, declared?: string): string {
  try {
    return manifestMediaType(bytes, declared);
  } catch (e) {
    throw new ArchiveError('manifest is not valid JSON', { cause: e });
  }
}

/** Does an index.json entry answer to `ref` ("latest", "busybox:latest", a full name)? */
function entryMatches(d: Descriptor, ref: string): boolean {
  const a = d.annotations ?? {};
  return a[OCI_REF_NAME_ANNOTATION] === ref || a[REF_NAME_ANNOTATION] === ref || d.digest === ref;
}

export async function readLayoutIndex(files: LayoutFiles): Promise<ImageIndex> {
  if (!(await files.has('index.json'))) throw new ArchiveError(`${files.description}: not an OCI layout (no index.json)`);
  const index = JSON.parse((await files.read('index.json')).toString('utf8')) as ImageIndex;
  if (!Array.isArray(index.manifests)) throw new ArchiveError(`${files.description}: index.json has no manifests array`);
  for (const d of index.manifests) {
    try { parseDigest(d.digest); } catch (e) { throw new ArchiveError(`${files.description}: index.json: ${(e as Error).message}`); }
  }
  return index;
}

/** The index.json entry for `ref`, or the only entry when no ref is given. */
export function selectLayoutEntry(index: ImageIndex, ref: string | undefined, where: string): Descriptor {
  if (ref) {
    const hit = index.manifests.find((d) => entryMatches(d, ref));
    if (!hit) {
      const refs = index.manifests.map((d) => d.annotations?.[OCI_REF_NAME_ANNOTATION]).filter(Boolean);
      throw new ArchiveError(`${where}: no image named "${ref}" (available: ${refs.join(', ') || 'none'})`);
    }
    return hit;
  }
  if (index.manifests.length === 1) return index.manifests[0]!;
  if (index.manifests.length === 0) throw new ArchiveError(`${where}: the layout holds no images`);
  throw new ArchiveError(`${where}: holds ${index.manifests.length} images; name one (${index.manifests.map((d) => d.annotations?.[OCI_REF_NAME_ANNOTATION] ?? d.digest).join(', ')})`);
}

export class OciLayoutSource implements ImageSource {
  readonly description: string;
  constructor(private readonly files: LayoutFiles, private readonly ref?: string, private readonly transport = 'oci') {
    this.description = `${transport}:${files.description}${ref ? `:${ref}` : ''}`;
  }

  async getManifest(): Promise<RawManifest> {
    const entry = selectLayoutEntry(await readLayoutIndex(this.files), this.ref, this.description);
    const m = await this.getManifestByDigest(entry.digest);
    return { ...m, mediaType: entry.mediaType ?? m.mediaType };
  }

  async getManifestByDigest(digest: string): Promise<RawManifest> {
    const name = blobEntryName(digest);
    if (!(await this.files.has(name))) throw new ArchiveError(`${this.description}: manifest ${digest} is missing from the layout`);
    const bytes = await this.files.read(name, MAX_MANIFEST_BYTES);
    if (digestOf(bytes, parseDigest(digest).algorithm) !== digest) throw new ArchiveError(`${this.description}: manifest ${digest} does not match its digest`);
    return { bytes, mediaType: mediaTypeOf(bytes), digest };
  }

  async openBlob(desc: Descriptor): Promise<Readable> {
    const name = blobEntryName(desc.digest);
    if (!(await this.files.has(name))) throw new ArchiveError(`${this.description}: blob ${desc.digest} is missing from the layout`);
    return this.files.open(name);
  }
}

/** Where a layout destination puts its files: a directory or a tar being written. */
interface LayoutSink {
  hasBlob(desc: Descriptor): Promise<boolean>;
  putBlob(desc: Descriptor, content: Readable): Promise<void>;
  /** Writes index.json (merged with an existing one for a directory) and oci-layout. */
  finish(entries: Descriptor[]): Promise<void>;
  abort(): Promise<void>;
}

class DirLayoutSink implements LayoutSink {
  private store?: ContentStore;
  constructor(private readonly dir: string) {}
  private async open(): Promise<ContentStore> {
    // The store is an OCI layout already: reuse its verified, atomic blob writes.
    this.store ??= await ContentStore.open(this.dir);
    return this.store;
  }
  async hasBlob(desc: Descriptor): Promise<boolean> { return (await (await this.open()).statBlob(desc.digest)) === desc.size; }
  async putBlob(desc: Descriptor, content: Readable): Promise<void> {
    await (await this.open()).writeBlob(content, { digest: desc.digest, size: desc.size });
  }
  async finish(entries: Descriptor[]): Promise<void> {
    const store = await this.open();
    const indexPath = path.join(this.dir, 'index.json');
    const index = (await readJsonIfExists<ImageIndex>(indexPath)) ?? { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
    for (const e of entries) {
      const ref = e.annotations?.[OCI_REF_NAME_ANNOTATION];
      index.manifests = index.manifests.filter((d) => (ref ? d.annotations?.[OCI_REF_NAME_ANNOTATION] !== ref : d.digest !== e.digest));
      index.manifests.push(e);
    }
    await writeJsonAtomic(indexPath, index);
    await fsp.rmdir(store.tmpDir).catch(() => { /* not empty: another writer is active */ });
  }
  async abort(): Promise<void> { /* blobs written are complete and verified; harmless */ }
}

class TarLayoutSink implements LayoutSink {
  private readonly written = new Set<string>();
  private queue: Promise<void> = Promise.resolve();
  constructor(readonly writer: TarWriter, private readonly extraFiles?: (entries: Descriptor[]) => Promise<[string, Buffer][]>) {}
  async hasBlob(desc: Descriptor): Promise<boolean> { return this.written.has(desc.digest); }
  /** Archive entries are sequential: concurrent callers are queued. */
  putBlob(desc: Descriptor, content: Readable): Promise<void> {
    const run = async () => {
      if (this.written.has(desc.digest)) { content.destroy(); return; }
      const hasher = new HashingTransform(parseDigest(desc.digest).algorithm, desc.size);
      content.on('error', (e) => hasher.destroy(e));
      await this.writer.addStream(blobEntryName(desc.digest), desc.size, content.pipe(hasher));
      const got = hasher.digester.digest();
      if (got !== desc.digest) throw new ArchiveError(`blob ${desc.digest}: content hashes to ${got}`);
      this.written.add(desc.digest);
    };
    const p = this.queue.then(run);
    this.queue = p.catch(() => {});
    return p;
  }
  async finish(entries: Descriptor[]): Promise<void> {
    await this.queue;
    for (const [name, data] of (await this.extraFiles?.(entries)) ?? []) await this.writer.addBuffer(name, data);
    await this.writer.addBuffer('index.json', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: entries })));
    await this.writer.addBuffer(OCI_LAYOUT_FILE, Buffer.from(JSON.stringify(OCI_LAYOUT_VERSION)));
    await this.writer.finish();
  }
  async abort(): Promise<void> { await this.writer.abort(); }
}

export interface TopLevelImage {
  manifest: RawManifest;
  /** Short reference for org.opencontainers.image.ref.name (e.g. "latest" or "1.0"). */
  ref?: string;
  /** Full name for io.containerd.image.name (how Docker 25+ and containerd name images). */
  fullName?: string;
  platform?: Descriptor['platform'];
}

/**
 * Writes images into an OCI layout. Every putManifest with a tag becomes an index.json entry;
 * with none, the last manifest put is the top level (how a copy hands over an untagged image).
 */
export class OciLayoutDestination implements ImageDestination {
  readonly description: string;
  protected readonly tops: TopLevelImage[] = [];
  private lastManifest?: RawManifest;

  protected constructor(private readonly sink: LayoutSink, description: string, private readonly defaultRef?: string) {
    this.description = description;
  }

  static directory(dir: string, ref?: string): OciLayoutDestination {
    return new OciLayoutDestination(new DirLayoutSink(dir), `oci:${dir}${ref ? `:${ref}` : ''}`, ref);
  }

  static archive(file: string | NodeJS.WritableStream, ref?: string): OciLayoutDestination {
    const name = typeof file === 'string' ? file : '-';
    return new OciLayoutDestination(new TarLayoutSink(new TarWriter(file as string)), `oci-archive:${name}${ref ? `:${ref}` : ''}`, ref);
  }

  hasBlob(desc: Descriptor): Promise<boolean> { return this.sink.hasBlob(desc); }
  putBlob(desc: Descriptor, content: Readable): Promise<void> { return this.sink.putBlob(desc, content); }

  async putManifest(manifest: RawManifest, tag?: string): Promise<void> {
    await this.sink.putBlob({ mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length }, Readable.from([manifest.bytes]));
    this.lastManifest = manifest;
    if (tag !== undefined) this.addTopLevel({ manifest, ref: tag });
  }

  /** Declares an index.json entry explicitly (save uses this for several images at once). */
  addTopLevel(top: TopLevelImage): void {
    this.tops.push(top);
  }

  private committed = false;

  async commit(): Promise<void> {
    if (this.tops.length === 0 && this.lastManifest) this.tops.push({ manifest: this.lastManifest, ref: this.defaultRef });
    const entries = this.tops.map((t) => {
      const annotations: Record<string, string> = {};
      if (t.fullName) annotations[REF_NAME_ANNOTATION] = t.fullName;
      if (t.ref) annotations[OCI_REF_NAME_ANNOTATION] = t.ref;
      return {
        mediaType: t.manifest.mediaType,
        digest: t.manifest.digest,
        size: t.manifest.bytes.length,
        ...(t.platform ? { platform: t.platform } : {}),
        ...(Object.keys(annotations).length ? { annotations } : {}),
      } as Descriptor;
    });
    await this.sink.finish(entries);
    this.committed = true;
  }

  /** After commit() nothing to release; without it (a failed copy) the partial output goes. */
  async close(): Promise<void> {
    if (!this.committed) await this.abort();
  }

  /** Discards a partial archive (no-op for directories, whose blobs are verified and harmless). */
  async abort(): Promise<void> { await this.sink.abort(); }
}

export { DirLayoutSink, TarLayoutSink };
export type { LayoutSink };
