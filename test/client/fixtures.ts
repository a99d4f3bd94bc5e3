// Small real images for client tests: gzipped tar layers with random files, a config with
// matching diff_ids, manifests and (optionally) a multi-platform index, written to a store.
import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { digestOf, MediaType, type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest, type Platform } from '../../src/image/index.js';
import { canonicalName, type ContentStore } from '../../src/store/index.js';

export async function tarOf(files: Record<string, Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, data] of Object.entries(files)) pack.entry({ name, size: data.length, mode: 0o644, mtime: new Date(0) }, data);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export interface TestImage {
  manifest: ImageManifest;
  manifestBytes: Buffer;
  descriptor: Descriptor;
  layers: { descriptor: Descriptor; bytes: Buffer }[];
  config: { descriptor: Descriptor; bytes: Buffer };
}

/** Builds an image in memory (tests only: layers are small). */
export async function buildImage(layerSizes: number[], platform: Platform = { os: 'linux', architecture: 'amd64' }): Promise<TestImage> {
  const layers: TestImage['layers'] = [];
  const diffIds: string[] = [];
  for (const [i, size] of layerSizes.entries()) {
    const raw = await tarOf({ [`layer${i}/data.bin`]: randomBytes(size) });
    diffIds.push(`sha256:${createHash('sha256').update(raw).digest('hex')}`);
    const gz = gzipSync(raw, { level: 1 });
    layers.push({ descriptor: { mediaType: MediaType.OciLayerGzip, digest: digestOf(gz), size: gz.length }, bytes: gz });
  }
  const config: ImageConfig = { architecture: platform.architecture, os: platform.os, created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: diffIds } };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDesc = { mediaType: MediaType.OciConfig, digest: digestOf(configBytes), size: configBytes.length };
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers: layers.map((l) => l.descriptor) };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  return {
    manifest, manifestBytes, layers,
    descriptor: { mediaType: MediaType.OciManifest, digest: digestOf(manifestBytes), size: manifestBytes.length, platform },
    config: { descriptor: configDesc, bytes: configBytes },
  };
}

export async function storeImage(store: ContentStore, img: TestImage, name?: string): Promise<void> {
  for (const l of img.layers) await store.writeBlob(l.bytes, { digest: l.descriptor.digest, size: l.descriptor.size });
  await store.writeBlob(img.config.bytes, { digest: img.config.descriptor.digest, size: img.config.descriptor.size });
  await store.writeBlob(img.manifestBytes, { digest: img.descriptor.digest, size: img.descriptor.size });
  if (name) await store.setTag(canonicalName(name), { mediaType: img.descriptor.mediaType, digest: img.descriptor.digest, size: img.descriptor.size });
}

export function indexOf(images: TestImage[]): { index: ImageIndex; bytes: Buffer; descriptor: Descriptor } {
  const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: images.map((i) => i.descriptor) };
  const bytes = Buffer.from(JSON.stringify(index));
  return { index, bytes, descriptor: { mediaType: MediaType.OciIndex, digest: digestOf(bytes), size: bytes.length } };
}

/** Stores a multi-platform index and its images, tagged as `name`. */
export async function storeIndex(store: ContentStore, images: TestImage[], name: string): Promise<Descriptor> {
  for (const img of images) await storeImage(store, img);
  const idx = indexOf(images);
  await store.writeBlob(idx.bytes, { digest: idx.descriptor.digest, size: idx.descriptor.size });
  await store.setTag(canonicalName(name), idx.descriptor);
  return idx.descriptor;
}
