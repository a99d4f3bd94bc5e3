// Writing a cache: the layer blobs the records' chains name, the cache config, and an OCI image
// manifest whose config is the cache config (BuildKit's image-manifest=true layout, which
// registries and skopeo take as an ordinary OCI artifact). Blobs come from the store, or, for a
// remote hit never downloaded, straight from where the hit was found (mounted when it is another
// repository of the same registry). Layers are uploaded several at once (util/concurrency.ts eachLimit).
import { Readable, type Writable } from 'node:stream';
import type { ContentStore } from '../../store/content-store.js';
import type { ImageDestination, RawManifest } from '../../image/source.js';
import type { Descriptor, ImageManifest } from '../../image/types.js';
import { MediaType } from '../../image/media-types.js';
import { digestOf } from '../../image/digest.js';
import type { ClientOptions } from '../../client/context.js';
import type { CachedLayer } from '../cache.js';
import { CACHE_CONFIG_MEDIA_TYPE, INLINE_CACHE_KEY, encodeCacheConfig, encodeInlineRecords, layerDescriptor, type StepRecord } from './format.js';
import type { CacheExportSpec } from './options.js';
import type { LayerOrigin } from './origin.js';
import { eachLimit } from '../../util/concurrency.js';

export interface ExportContext {
  store: ContentStore;
  origins: Map<string, LayerOrigin>;
  progress?: Writable;
  client?: ClientOptions;
}

/** The cache manifest and config for `steps`, ready to write. */
export function cacheManifest(steps: StepRecord[]): { manifest: RawManifest; config: Buffer; configDesc: Descriptor; layers: Descriptor[] } {
  const { config, layers } = encodeCacheConfig(steps);
  const created = new Map<string, string>();
  for (const s of steps) if (s.entry.layer && !created.has(s.entry.layer.digest)) created.set(s.entry.layer.digest, s.entry.created);
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDesc: Descriptor = { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: digestOf(configBytes), size: configBytes.length };
  const layerDescs = layers.map((l) => layerDescriptor(l, created.get(l.digest)));
  const doc: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers: layerDescs };
  const bytes = Buffer.from(JSON.stringify(doc));
  return { manifest: { bytes, mediaType: MediaType.OciManifest, digest: digestOf(bytes) }, config: configBytes, configDesc, layers: layerDescs };
}

async function openLayer(ctx: ExportContext, d: Descriptor): Promise<Readable> {
  if (await ctx.store.hasBlob(d.digest)) return ctx.store.openBlob(d.digest);
  const origin = ctx.origins.get(d.digest);
  if (!origin) throw new Error(`layer ${d.digest} is neither in the store nor in an imported cache`);
  return origin.open();
}

async function writeTo(dest: ImageDestination, ctx: ExportContext, steps: StepRecord[], tag: string): Promise<string> {
  const m = cacheManifest(steps);
  // Several layers at once, as many as the destination takes (a registry's 5, like a push).
  await eachLimit(m.layers, dest.concurrency ?? 3, async (d) => {
    if (await dest.hasBlob(d)) return;
    const origin = ctx.origins.get(d.digest);
    if (!(await ctx.store.hasBlob(d.digest)) && origin?.blobOrigin && dest.mountBlob && (await dest.mountBlob(d, origin.blobOrigin))) return;
    ctx.progress?.write(`writing layer ${d.digest}\n`);
    await dest.putBlob(d, await openLayer(ctx, d));
  });
  if (!(await dest.hasBlob(m.configDesc))) await dest.putBlob(m.configDesc, Readable.from([m.config]));
  ctx.progress?.write(`writing config ${m.configDesc.digest}\nwriting cache image manifest ${m.manifest.digest}\n`);
  await dest.putManifest(m.manifest, tag);
  await dest.commit?.();
  return m.manifest.digest;
}

export async function exportCache(spec: Exclude<CacheExportSpec, { type: 'inline' }>, steps: StepRecord[], ctx: ExportContext): Promise<string | undefined> {
  if (!steps.some((s) => s.entry.layer)) {
    // BuildKit's words: a build without layers has nothing to cache.
    ctx.progress?.write('skipping cache export for empty result\n');
    return undefined;
  }
  if (spec.type === 's3') {
    const { exportS3Cache } = await import('./s3.js');
    await exportS3Cache(spec, steps, (l) => openLayer(ctx, layerDescriptor(l)), ctx.progress);
    return undefined;
  }
  if (spec.type === 'local') {
    const { OciLayoutDestination } = await import('../../archive/oci.js');
    const dest = OciLayoutDestination.directory(spec.dest, spec.tag);
    try {
      return await writeTo(dest, ctx, steps, spec.tag);
    } finally {
      await dest.close();
    }
  }
  const { RegistryContext, RemoteImageDestination } = await import('../../client/index.js');
  const { parseReference } = await import('../../image/reference.js');
  const ref = parseReference(spec.ref);
  if (ref.digest && !ref.tag) throw new Error(`${spec.ref}: a cache is written under a tag, not a digest`);
  const rctx = await RegistryContext.create(ctx.client);
  try {
    return await writeTo(new RemoteImageDestination(rctx, ref), ctx, steps, ref.tag ?? 'latest');
  } finally {
    await rctx.close();
  }
}

/** The inline cache field for the final image config (records only, as BuildKit writes it). */
export function inlineConfigField(steps: StepRecord[], imageLayers: CachedLayer[]): Record<string, unknown> {
  if (!steps.some((s) => s.entry.layer)) return {};
  const records = encodeInlineRecords(steps, imageLayers);
  return { [INLINE_CACHE_KEY]: Buffer.from(JSON.stringify(records)).toString('base64') };
}
