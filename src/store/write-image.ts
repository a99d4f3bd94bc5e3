// Writes a finished image into the store: config blob, OCI manifest, optional tag. Shared by
// import, the builder, commit and mkimage so every producer writes the same shape.
import type { ContentStore } from './content-store.js';
import { canonicalName } from './images.js';
import { MediaType } from '../image/media-types.js';
import type { Descriptor, ImageConfig, ImageManifest } from '../image/types.js';
import { BlobVerificationError } from './content-store.js';
import { digestOf } from '../image/digest.js';

/** What a layer producer hands over (createLayer's LayerInfo satisfies it). */
export interface ImageLayer {
  digest: string;
  size: number;
  mediaType: string;
  diffID: string;
  annotations?: Record<string, string>;
}

export interface WriteImageOptions {
  config: ImageConfig;
  /**
   * The layers, or a promise of them while their blobs are still being written (the builder's
   * last layer compresses while the export begins): then the config must list the diff_ids, and
   * its blob is written meanwhile. The manifest waits for the layers, the tag for all three.
   */
  layers: ImageLayer[] | Promise<ImageLayer[]>;
  /**
   * With `layers` a promise that may resolve before the layers' blobs are durable (their
   * descriptors known earlier): the blobs, durable. The manifest is written meanwhile; the layers
   * are checked, and the tag set, after it.
   */
  durable?: Promise<unknown>;
  /** Name to tag ("busybox", "localhost:5000/a:1"); normalised like Docker. */
  tag?: string | string[];
  annotations?: Record<string, string>;
}

export interface WrittenImage {
  manifestDigest: string;
  configDigest: string;
  /** Descriptor of the manifest (what index.json and registries point at). */
  manifest: Descriptor;
  /** Canonical names that were tagged. */
  names: string[];
}

export async function writeImage(store: ContentStore, opts: WriteImageOptions): Promise<WrittenImage> {
  const pending = opts.layers instanceof Promise;
  const given = opts.config.rootfs?.diff_ids;
  const diffIDs = pending ? given : given?.length ? given : (opts.layers as ImageLayer[]).map((l) => l.diffID);
  if (!diffIDs) throw new Error('writeImage: an image whose layers are still being written needs the diff_ids in its config');
  const config: ImageConfig = { ...opts.config, rootfs: { type: 'layers', diff_ids: diffIDs } };
  const names = (Array.isArray(opts.tag) ? opts.tag : opts.tag ? [opts.tag] : []).map(canonicalName);
  // The config's digest comes from its bytes and names only diffIDs: it is written at once, while
  // the layers' blobs may still be compressing, and the manifest as soon as they are in. The two
  // blobs' fsyncs overlap instead of queueing (a few fsyncs are most of an image write on a busy
  // disk). Only a tag names the manifest, after the config, the manifest and the layers are durable.
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDesc = { digest: digestOf(configBytes), size: configBytes.length };
  // Given layers are checked before anything is written; pending ones while the manifest is.
  if (!pending) checkLayers(store, diffIDs, opts.layers as ImageLayer[]);
  const configWritten = store.writeBytes(configBytes, MediaType.OciConfig);
  configWritten.catch(() => { /* awaited below, after the layers */ });
  const layers = await opts.layers;
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: configDesc.digest, size: configDesc.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, ...(l.annotations ? { annotations: l.annotations } : {}) })),
    ...(opts.annotations && Object.keys(opts.annotations).length ? { annotations: opts.annotations } : {}),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestDigest = digestOf(manifestBytes);
  const descriptor: Descriptor = {
    mediaType: MediaType.OciManifest,
    digest: manifestDigest,
    size: manifestBytes.length,
    platform: { architecture: config.architecture, os: config.os, ...(config.variant ? { variant: config.variant } : {}) },
  };
  const written = Promise.all([
    configWritten,
    store.writeBytes(manifestBytes, MediaType.OciManifest),
    pending ? (async () => { await opts.durable; checkLayers(store, diffIDs, layers); })() : undefined,
  ]);
  written.catch(() => { /* awaited below */ });
  // A tag that names this manifest already is left alone: no lock, no write, no fsync (a fully
  // cached rebuild writes nothing). The others get a new index.json prepared (written, fsynced)
  // while the blobs are written, renamed in once they are durable.
  const current = names.length ? new Map(store.listTagsSync().map((t) => [t.name, t.descriptor.digest])) : undefined;
  for (const name of names) {
    if (current!.get(name) !== manifestDigest) await store.setTag(name, descriptor, { written });
  }
  await written;
  return { manifestDigest, configDigest: configDesc.digest, manifest: descriptor, names };
}

/** The layers are in the store with the sizes their descriptors give, one per diff_id. */
function checkLayers(store: ContentStore, diffIDs: string[], layers: ImageLayer[]): void {
  if (diffIDs.length !== layers.length) {
    throw new Error(`image config lists ${diffIDs.length} diff_ids for ${layers.length} layers`);
  }
  // Synchronous stats: each is microseconds, and a thread-pool round trip here sits between the
  // layers' fsyncs and the tag's on the thread pool those fsyncs occupy.
  for (const l of layers) {
    const size = store.statBlobSync(l.digest);
    if (size === undefined) throw new BlobVerificationError(`layer ${l.digest} is not in the store`);
    if (size !== l.size) throw new BlobVerificationError(`layer ${l.digest} is ${size} bytes in the store, descriptor says ${l.size}`);
  }
}
