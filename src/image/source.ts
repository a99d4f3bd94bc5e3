// go-containerregistry-style small interfaces. Every place an image can live (the local store,
// an OCI layout dir, a docker-archive, a registry) is an ImageSource and/or ImageDestination,
// so copy/save/load/pull/push are one generic algorithm over interchangeable ends.
import type { Readable } from 'node:stream';
import type { Descriptor } from './types.js';

export interface RawManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

/** A registry repository blobs can be mounted from without a copy. */
export interface BlobOrigin {
  registry: string;
  repository: string;
}

// Optional members are capabilities (like ggcr's optional interfaces found by assertion): copy
// asks for them instead of checking which class an end is.
export interface ImageSource {
  /** Human-readable name for messages ("docker://localhost:5000/a:b", "oci:dir:tag"). */
  readonly description: string;
  /** Set when this source's blobs live in a registry repository a destination may mount from. */
  readonly blobOrigin?: BlobOrigin;
  /** The top-level manifest (image manifest or index) this source points at. */
  getManifest(): Promise<RawManifest>;
  /** A manifest referenced by digest (child of an index). */
  getManifestByDigest(digest: string): Promise<RawManifest>;
  /** Opens a blob. The caller verifies the digest while streaming. */
  openBlob(desc: Descriptor): Promise<Readable>;
  close?(): Promise<void>;
}

export interface ImageDestination {
  readonly description: string;
  /** Parallel blob transfers this destination works best with (copy's default otherwise). */
  readonly concurrency?: number;
  /** Links a blob from `from` without copying it; false when it cannot (another registry, ...). */
  mountBlob?(desc: Descriptor, from: BlobOrigin): Promise<boolean>;
  /** True when the destination already holds the blob (skip the upload). */
  hasBlob(desc: Descriptor): Promise<boolean>;
  /** Stores a blob; implementations verify digest and size before it becomes visible. */
  putBlob(desc: Descriptor, content: Readable): Promise<void>;
  /** Stores a manifest by digest; `tag` also names it when this is the top level. */
  putManifest(manifest: RawManifest, tag?: string): Promise<void>;
  /** Finishes the write (e.g. writes index.json, closes an archive). */
  commit?(): Promise<void>;
  close?(): Promise<void>;
}
