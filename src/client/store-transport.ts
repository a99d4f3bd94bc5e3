// The local content store as an ImageSource / ImageDestination, so pull and push are copies
// between the store and a registry. Blobs land through ContentStore.writeBlob (verified while
// streaming, renamed into place only when they match); the tag is set last, after every blob
// and manifest is in, so a failed copy never leaves a tag pointing at a partial image.
import type { Readable } from 'node:stream';
import { ContentStore, canonicalName } from '../store/index.js';
import { manifestMediaType } from '../image/partial.js';
import type { ImageDestination, ImageSource, RawManifest } from '../image/source.js';
import type { Descriptor } from '../image/types.js';
import { isDigest, parseDigest } from '../image/digest.js';
import { NotFoundError } from '../util/errors.js';

export class StoreImageSource implements ImageSource {
  readonly description: string;
  private top?: Descriptor;

  /** `name` is a store name ("busybox", "localhost:5000/a:1") or a manifest digest. */
  constructor(private readonly store: ContentStore, private readonly name: string) {
    this.description = `store:${name}`;
  }

  /** The descriptor the name resolves to (the tagged manifest or index). */
  async resolve(): Promise<Descriptor> {
    if (this.top) return this.top;
    if (isDigest(this.name)) {
      if (!(await this.store.hasBlob(this.name))) throw new NotFoundError(`image ${this.name} not found in the store`);
      const bytes = await this.store.readBlob(this.name);
      this.top = { digest: this.name, size: bytes.length, mediaType: manifestMediaType(bytes) };
      return this.top;
    }
    const full = canonicalName(this.name);
    const desc = await this.store.resolveTag(full);
    if (!desc) throw new NotFoundError(`image "${this.name}" not found in the store (looked for ${full})`);
    this.top = desc;
    return desc;
  }

  async getManifest(): Promise<RawManifest> {
    const d = await this.resolve();
    const bytes = await this.store.readBlob(d.digest);
    return { bytes, mediaType: manifestMediaType(bytes, d.mediaType), digest: d.digest };
  }

  async getManifestByDigest(digest: string): Promise<RawManifest> {
    const bytes = await this.store.readBlob(parseDigest(digest).value);
    return { bytes, mediaType: manifestMediaType(bytes), digest };
  }

  async openBlob(desc: Descriptor): Promise<Readable> {
    if (!(await this.store.hasBlob(desc.digest))) {
      throw new NotFoundError(`blob ${desc.digest} of ${this.name} is not in the store (the image was pulled for another platform or is incomplete)`);
    }
    return this.store.openBlob(desc.digest);
  }
}

export class StoreImageDestination implements ImageDestination {
  readonly description: string;
  /** The store key the image is tagged as (undefined: store by digest only). */
  readonly fullName?: string;
  private pendingTag?: Descriptor;
  /** Verified blobs whose fsync and rename run while the next download streams. */
  private readonly committing: Promise<unknown>[] = [];
  private previousTag?: Descriptor;

  /**
   * `store` may still be opening: a pull starts its registry round trips meanwhile, and the store
   * is first needed for the first blob.
   */
  constructor(private readonly store: ContentStore | Promise<ContentStore>, name: string | undefined) {
    this.fullName = name ? canonicalName(name) : undefined;
    this.description = `store:${this.fullName ?? '(untagged)'}`;
    // A store that fails to open is reported by the first method that needs it.
    if (store instanceof Promise) store.catch(() => {});
  }

  /** What the tag pointed at before commit() moved it (Docker's "Image is up to date"). */
  get previous(): Descriptor | undefined { return this.previousTag; }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    return (await (await this.store).statBlob(desc.digest)) === desc.size;
  }

  /**
   * Streams, hashes and verifies the blob into the store's tmp/, then leaves its fsync and rename
   * running: the copy's next download starts at once, and putManifest() waits for them all, so a
   * manifest never lands before the blobs it names.
   */
  async putBlob(desc: Descriptor, content: Readable): Promise<void> {
    const ingested = await (await this.store).ingestBlob(content, { digest: desc.digest, size: desc.size });
    const committed = ingested.commit({ deferDirSync: true });
    committed.catch(() => {}); // awaited (and reported) by putManifest or commit
    this.committing.push(committed);
  }

  private async blobsCommitted(): Promise<void> {
    await Promise.all(this.committing);
  }

  /**
   * Waits for the background commits, failed or not: a copy that failed on one blob returns only
   * after the others' temp files were renamed or removed.
   */
  async close(): Promise<void> {
    await Promise.allSettled(this.committing);
  }

  async putManifest(manifest: RawManifest, tag?: string): Promise<void> {
    await this.blobsCommitted();
    await (await this.store).writeBlob(manifest.bytes, { digest: manifest.digest, size: manifest.bytes.length }, { deferDirSync: true });
    if (tag !== undefined) this.pendingTag = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length };
  }

  /**
   * Tags the top-level manifest once everything it references is stored: the blob directories are
   * fsynced (once, for all the renames of this copy) before the tag is written.
   */
  async commit(): Promise<void> {
    const store = await this.store;
    await this.blobsCommitted();
    await store.syncBlobDirs();
    if (!this.pendingTag) return;
    if (this.fullName) this.previousTag = await store.setTag(this.fullName, this.pendingTag);
    else await store.setRoot(`pulled/${this.pendingTag.digest}`, [this.pendingTag.digest]);
  }
}
