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
  layers: ImageLayer[];
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
  const sizes = await Promise.all(opts.layers.map((l) => store.statBlob(l.digest)));
  for (const [i, l] of opts.layers.entries()) {
    const size = sizes[i];
    if (size === undefined) throw new BlobVerificationError(`layer ${l.digest} is not in the store`);
    if (size !== l.size) throw new BlobVerificationError(`layer ${l.digest} is ${size} bytes in the store, descriptor says ${l.size}`);
  }
  const config: ImageConfig = {
    ...opts.config,
    rootfs: { type: 'layers', diff_ids: opts.config.rootfs?.diff_ids?.length ? opts.config.rootfs.diff_ids : opts.layers.map((l) => l.diffID) },
  };
  if (config.rootfs.diff_ids.length !== opts.layers.length) {
    throw new Error(`image config lists ${config.rootfs.diff_ids.length} diff_ids for ${opts.layers.length} layers`);
  }
  const names = (Array.isArray(opts.tag) ? opts.tag : opts.tag ? [opts.tag] : []).map(canonicalName);
  // The config's digest comes from its bytes, so the manifest is made before either is written,
  // and both blobs are written at once: their fsyncs overlap instead of queueing (a few fsyncs
  // are most of an image write on a busy disk). Only a tag names the manifest, after both exist.
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDesc = { digest: digestOf(configBytes), size: configBytes.length };
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: configDesc.digest, size: configDesc.size },
    layers: opts.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, ...(l.annotations ? { annotations: l.annotations } : {}) })),
    ...(opts.annotations && Object.keys(opts.annotations).length ? { annotations: opts.annotations } : {}),
  };
  const [, manifestDesc] = await Promise.all([
    store.writeBytes(configBytes, MediaType.OciConfig),
    store.writeBytes(Buffer.from(JSON.stringify(manifest)), MediaType.OciManifest),
  ]);
  const descriptor: Descriptor = {
    mediaType: MediaType.OciManifest,
    digest: manifestDesc.digest,
    size: manifestDesc.size,
    platform: { architecture: config.architecture, os: config.os, ...(config.variant ? { variant: config.variant } : {}) },
  };
  for (const name of names) await store.setTag(name, descriptor);
  return { manifestDigest: manifestDesc.digest, configDigest: configDesc.digest, manifest: descriptor, names };
}
