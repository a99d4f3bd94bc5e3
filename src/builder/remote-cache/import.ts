// Reading a cache: the manifest (a registry ref or an OCI layout dir's tag), then its cache
// config. Three shapes are understood, as BuildKit's importer does: an OCI image manifest whose
// config is the cache config (image-manifest=true, BuildKit's default since v0.21), an index
// listing the layer blobs plus one cacheconfig.v0 descriptor (the older layout), and an ordinary
// image whose config carries the inline cache. Nothing but manifests and the config is fetched.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { ImageSource, RawManifest } from '../../image/source.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../../image/types.js';
import { isIndexMediaType } from '../../image/media-types.js';
import { digestOf } from '../../image/digest.js';
import { selectPlatform } from '../../image/platform.js';
import type { ClientOptions } from '../../client/context.js';
import { CACHE_CONFIG_MEDIA_TYPE, UNCOMPRESSED_ANNOTATION, decodeCacheConfig, decodeInlineCache, type RemoteEntry } from './format.js';
import type { CacheImportSpec } from './options.js';
import type { LayerOrigin } from './origin.js';

/** Cache configs are small; BuildKit's with thousands of records stay well below this. */
const MAX_CONFIG_BYTES = 16 << 20;

export interface ImportedCache {
  description: string;
  entries: Map<string, RemoteEntry>;
  origins: Map<string, LayerOrigin>;
  close(): Promise<void>;
}

export async function readBlob(src: ImageSource, desc: Descriptor, limit: number): Promise<Buffer> {
  if (desc.size > limit) throw new Error(`blob ${desc.digest} is ${desc.size} bytes, over the ${limit} byte limit`);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of await src.openBlob(desc)) {
    n += (c as Buffer).length;
    if (n > limit) throw new Error(`blob ${desc.digest} is over the ${limit} byte limit`);
    chunks.push(c as Buffer);
  }
  const bytes = Buffer.concat(chunks);
  if (digestOf(bytes) !== desc.digest) throw new Error(`blob ${desc.digest} does not match its digest`);
  return bytes;
}

function parseJson<T>(bytes: Buffer, what: string): T {
  try { return JSON.parse(bytes.toString('utf8')) as T; } catch { throw new Error(`${what} is not valid JSON`); }
}

/** Reads the cache behind `src`'s top-level manifest. */
export async function readCache(src: ImageSource, description: string): Promise<Omit<ImportedCache, 'close'>> {
  const top: RawManifest = await src.getManifest();
  const origins = new Map<string, LayerOrigin>();
  const addOrigin = (d: Descriptor) => {
    origins.set(d.digest, { open: () => src.openBlob(d), blobOrigin: src.blobOrigin, description });
  };
  const blobsOf = (descs: Descriptor[]) => new Map(descs.map((d) => [d.digest, { mediaType: d.mediaType, size: d.size, diffID: d.annotations?.[UNCOMPRESSED_ANNOTATION] }]));
  if (isIndexMediaType(top.mediaType)) {
    const index = parseJson<ImageIndex>(top.bytes, `${description}: index`);
    const configDesc = index.manifests.find((m) => m.mediaType === CACHE_CONFIG_MEDIA_TYPE);
    if (configDesc) {
      // The older layout: blobs listed as "manifests", plus the config.
      const layers = index.manifests.filter((m) => m !== configDesc);
      const config = parseJson<unknown>(await readBlob(src, configDesc, MAX_CONFIG_BYTES), `${description}: cache config`);
      for (const l of layers) addOrigin(l);
      return { description, entries: decodeCacheConfig(config, blobsOf(layers)), origins };
    }
    // An image index: the inline cache of the host platform's image.
    const pick = selectPlatform(index.manifests) ?? index.manifests[0];
    if (!pick) throw new Error(`${description}: empty index`);
    return inlineFrom(src, await src.getManifestByDigest(pick.digest), description, origins, addOrigin);
  }
  return inlineFrom(src, top, description, origins, addOrigin);
}

async function inlineFrom(src: ImageSource, m: RawManifest, description: string, origins: Map<string, LayerOrigin>, addOrigin: (d: Descriptor) => void): Promise<Omit<ImportedCache, 'close'>> {
  const manifest = parseJson<ImageManifest>(m.bytes, `${description}: manifest`);
  if (!manifest.config || !Array.isArray(manifest.layers)) throw new Error(`${description}: not a cache manifest or an image`);
  const configBytes = await readBlob(src, manifest.config, MAX_CONFIG_BYTES);
  const config = parseJson<Record<string, unknown>>(configBytes, `${description}: config`);
  for (const l of manifest.layers) addOrigin(l);
  if (manifest.config.mediaType === CACHE_CONFIG_MEDIA_TYPE) {
    const blobs = new Map(manifest.layers.map((d) => [d.digest, { mediaType: d.mediaType, size: d.size, diffID: d.annotations?.[UNCOMPRESSED_ANNOTATION] }]));
    return { description, entries: decodeCacheConfig(config, blobs), origins };
  }
  const diffIDs = (config.rootfs as { diff_ids?: string[] } | undefined)?.diff_ids ?? [];
  return { description, entries: decodeInlineCache(config, manifest.layers, diffIDs), origins };
}

export async function importCache(spec: CacheImportSpec, opts: { progress?: Writable; client?: ClientOptions; warn: (m: string) => void }): Promise<ImportedCache> {
  if (spec.type === 's3') {
    const { importS3Cache } = await import('./s3.js');
    return importS3Cache(spec, opts.progress);
  }
  if (spec.type === 'local') {
    const indexPath = path.join(spec.src, 'index.json');
    // buildx's own words for the first build, before the directory exists.
    await fsp.access(indexPath).catch((e: NodeJS.ErrnoException) => {
      throw new Error(`local cache import at ${spec.src} not found due to err: could not read ${indexPath}: open ${indexPath}: ${e.code === 'ENOENT' ? 'no such file or directory' : e.message}`);
    });
    const { OciLayoutSource, DirLayoutFiles } = await import('../../archive/oci.js');
    const src = new OciLayoutSource(new DirLayoutFiles(spec.src), spec.digest ? undefined : spec.tag);
    const what = `local cache ${spec.src}`;
    opts.progress?.write(`importing cache manifest from ${spec.src}\n`);
    try {
      const got = spec.digest ? await readCache(pinned(src, spec.digest), what) : await readCache(src, what);
      return { ...got, close: async () => {} };
    } catch (e) {
      throw new Error(`local cache import at ${spec.src} failed: ${(e as Error).message}`);
    }
  }
  const { RegistryContext, RemoteImageSource } = await import('../../client/index.js');
  const { parseReference } = await import('../../image/reference.js');
  opts.progress?.write(`importing cache manifest from ${spec.ref}\n`);
  const ctx = await RegistryContext.create({ ...opts.client, onWarning: opts.warn });
  try {
    const src = new RemoteImageSource(ctx, parseReference(spec.ref));
    const got = await readCache(src, spec.ref);
    return { ...got, close: () => ctx.close() };
  } catch (e) {
    await ctx.close();
    throw new Error(`failed to import cache manifest from ${spec.ref}: ${(e as Error).message}`);
  }
}

/** A layout source whose top-level manifest is the one `digest` names (cache-from digest=). */
function pinned(src: ImageSource, digest: string): ImageSource {
  return {
    description: src.description,
    getManifest: () => src.getManifestByDigest(digest),
    getManifestByDigest: (d) => src.getManifestByDigest(d),
    openBlob: (d) => src.openBlob(d),
  };
}
