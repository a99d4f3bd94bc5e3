// --cache-from / --cache-to: BuildKit-format build caches in a registry, an OCI layout directory
// or an image's config (inline). The builder sees one small interface (StepCacheHooks): it asks
// for a step key after a local miss, reports every step, and asks for layer blobs before it needs
// them. A remote hit records the layer's descriptor and where it lives, and downloads nothing;
// the blob is fetched when a later step mounts the rootfs or the image is written, so a runner
// with an empty store pulls only the layers its final image (or an executed step) needs.
import type { Writable } from 'node:stream';
import type { ContentStore } from '../../store/content-store.js';
import { UserError } from '../../util/errors.js';
import type { ImageIndex, ImageManifest, ImageConfig, Platform } from '../../image/types.js';
import type { LocalImage } from '../../store/images.js';
import type { RegistryContext } from '../../client/context.js';
import { BuildCache, type CacheEntry, type CachedLayer } from '../cache.js';
import { importCache, readBlob, type ImportedCache } from './import.js';
import { exportCache, inlineConfigField } from './export.js';
import { entryFor, type StepRecord, type RemoteEntry } from './format.js';
import type { CacheExportSpec, CacheImportSpec } from './options.js';

/** What the builder calls; everything is optional work for a build without remote caches. */
export interface StepCacheHooks {
  /** True when an imported cache has a record for the key (lookup may still refuse it). */
  has(key: string): boolean;
  /** A step's cache entry from a remote cache, after the local cache missed. */
  lookup(key: string, parentDiffIDs: string[]): Promise<CacheEntry | undefined>;
  /** Every resolved step (FROM, cached or executed). */
  onStep(step: SolvedStep): void;
  /** Makes sure these layers' blobs are in the store (fetching remote hits). */
  ensureLayers(layers: CachedLayer[]): Promise<void>;
  /** Extra top-level fields for the final image config (the inline cache). */
  finalImage(key: string, layers: CachedLayer[]): Promise<Record<string, unknown>>;
  /**
   * A base image that is not in the store, as manifest and config only: its layers are fetched
   * like remote hits, when a step or the image needs them. Undefined: pull it as usual.
   */
  resolveBase(name: string, platform: Platform): Promise<LocalImage | undefined>;
}

/** A step as the solver reports it: the blobs of its chain are asked for only when exported. */
export interface SolvedStep {
  key: string;
  parent?: string;
  created: string;
  /** The step added a layer (the last of `layers`). */
  hasLayer: boolean;
  layers(): Promise<CachedLayer[]>;
}

export type { LayerOrigin } from './origin.js';
import type { LayerOrigin } from './origin.js';

export interface RemoteCacheOptions {
  from: CacheImportSpec[];
  to: CacheExportSpec[];
  /** Progress lines ("importing cache manifest from ..."). */
  progress?: Writable;
  /** Warnings (a cache that cannot be read, an export that failed). */
  warn?: (message: string) => void;
  /** Registry client options (auth, insecure registries, mirrors). */
  client?: import('../../client/context.js').ClientOptions;
}

export class RemoteCache implements StepCacheHooks {
  private readonly entries = new Map<string, RemoteEntry>();
  readonly origins = new Map<string, LayerOrigin>();
  private readonly solved: SolvedStep[] = [];
  private readonly hits = new Map<string, CacheEntry>();
  /** The final image's key of each platform built. */
  private readonly finals: string[] = [];
  private readonly local: BuildCache;
  private readonly closers: (() => Promise<void>)[] = [];

  private constructor(readonly store: ContentStore, readonly opts: RemoteCacheOptions) {
    this.local = new BuildCache(store);
  }

  /** Reads every --cache-from. One that cannot be read is a warning, as in BuildKit. */
  static async open(store: ContentStore, opts: RemoteCacheOptions): Promise<RemoteCache> {
    const rc = new RemoteCache(store, opts);
    for (const spec of opts.from) {
      let got: ImportedCache;
      try {
        got = await importCache(spec, { progress: opts.progress, client: opts.client, warn: rc.warn });
      } catch (e) {
        rc.warn(`${(e as Error).message}`);
        continue;
      }
      rc.closers.push(got.close);
      for (const [k, v] of got.entries) if (!rc.entries.has(k)) rc.entries.set(k, v);
      for (const [d, o] of got.origins) if (!rc.origins.has(d)) rc.origins.set(d, o);
    }
    return rc;
  }

  private readonly warn = (m: string): void => {
    if (this.opts.warn) this.opts.warn(m);
    else process.stderr.write(`WARNING: ${m}\n`);
  };

  has(key: string): boolean {
    return this.entries.has(key);
  }

  async lookup(key: string, parentDiffIDs: string[]): Promise<CacheEntry | undefined> {
    const e = this.entries.get(key);
    const entry = e && entryFor(e, parentDiffIDs);
    if (!entry) return undefined;
    // Its blob must be reachable: in the store already, or at the cache's origin.
    if (entry.layer && !this.origins.has(entry.layer.digest) && !(await this.store.hasBlob(entry.layer.digest))) return undefined;
    this.hits.set(key, entry);
    if (!entry.layer) await this.local.put(key, entry);
    return entry;
  }

  onStep(step: SolvedStep): void {
    this.solved.push(step);
  }

  /** The reported steps with their chains' blobs (compressed now, if this build made them). */
  async steps(): Promise<StepRecord[]> {
    // Stages finish in any order when they run concurrently: parents first, then by key, so the
    // same build always writes the same cache config (BuildKit sorts its config too).
    const byKey = new Map(this.solved.map((s) => [s.key, s]));
    const depth = (s: SolvedStep): number => (s.parent !== undefined && byKey.has(s.parent) ? depth(byKey.get(s.parent)!) + 1 : 0);
    const ordered = [...byKey.values()].map((s) => ({ s, d: depth(s) })).sort((a, b) => a.d - b.d || (a.s.key < b.s.key ? -1 : 1)).map((x) => x.s);
    return Promise.all(ordered.map(async (s) => {
      const layers = await s.layers();
      return { key: s.key, parent: s.parent, layers, entry: { created: s.created, ...(s.hasLayer ? { layer: layers[layers.length - 1]! } : {}) } };
    }));
  }

  async ensureLayers(layers: CachedLayer[]): Promise<void> {
    const missing: CachedLayer[] = [];
    for (const l of layers) if (!(await this.store.hasBlob(l.digest)) && this.origins.has(l.digest)) missing.push(l);
    // Three at a time, like a pull.
    const queue = [...missing];
    await Promise.all([0, 1, 2].map(async () => {
      for (let l = queue.shift(); l; l = queue.shift()) await this.fetch(l);
    }));
  }

  private async fetch(l: CachedLayer): Promise<void> {
    const origin = this.origins.get(l.digest)!;
    this.opts.progress?.write(`Downloading cached layer ${l.digest.slice(7, 19)} from ${origin.description}\n`);
    await this.store.writeBlob(await origin.open(), { digest: l.digest, size: l.size });
    // The hit becomes an ordinary local cache entry now that its blob is here.
    for (const [key, entry] of this.hits) if (entry.layer?.digest === l.digest) await this.local.put(key, entry);
  }

  async finalImage(key: string, layers: CachedLayer[]): Promise<Record<string, unknown>> {
    this.finals.push(key);
    if (!this.opts.to.some((t) => t.type === 'inline')) return {};
    // The inline cache of one platform's image holds that image's chain only.
    return inlineConfigField(chainsOf([key], await this.steps()), layers);
  }

  /**
   * The steps a mode exports: max = every step resolved; min = the final images' chains (one per
   * platform of a `--platform a,b` build, whose images all report here).
   */
  async recordsFor(mode: 'min' | 'max'): Promise<StepRecord[]> {
    const steps = await this.steps();
    if (mode === 'max' || this.finals.length === 0) return steps;
    return chainsOf(this.finals, steps);
  }

  /**
   * Writes every --cache-to except inline (already in the image). A failure fails the build, as
   * in BuildKit, unless the spec says ignore-error=true; then it is a warning.
   */
  async export(): Promise<void> {
    for (const spec of this.opts.to) {
      if (spec.type === 'inline') continue;
      try {
        await exportCache(spec, await this.recordsFor(spec.mode), { store: this.store, origins: this.origins, progress: this.opts.progress, client: this.opts.client });
      } catch (e) {
        const where = spec.type === 'registry' ? spec.ref : spec.type === 's3' ? `s3://${spec.bucket}/${spec.prefix}${spec.manifestsPrefix}${spec.names[0]}` : spec.dest;
        const message = `failed to export cache to ${where}: ${(e as Error).message}`;
        if (spec.ignoreError) this.warn(message);
        else throw new UserError(message, { cause: e });
      }
    }
  }

  private registry?: Promise<RegistryContext>;
  private readonly bases = new Map<string, Promise<LocalImage | undefined>>();

  resolveBase(name: string, platform: Platform): Promise<LocalImage | undefined> {
    // Only worth it when a cache may make the base's layers unnecessary.
    if (this.entries.size === 0) return Promise.resolve(undefined);
    const key = `${name}|${platform.os}/${platform.architecture}/${platform.variant ?? ''}`;
    let p = this.bases.get(key);
    if (!p) this.bases.set(key, p = this.resolveBaseOnce(name, platform));
    return p;
  }

  private async resolveBaseOnce(name: string, platform: Platform): Promise<LocalImage | undefined> {
    const { RegistryContext, RemoteImageSource } = await import('../../client/index.js');
    const { parseReference, formatReference } = await import('../../image/reference.js');
    const { selectPlatform } = await import('../../image/platform.js');
    const { isIndexMediaType } = await import('../../image/media-types.js');
    this.registry ??= RegistryContext.create({ ...this.opts.client, onWarning: this.warn });
    const ctx = await this.registry;
    const ref = parseReference(name);
    const src = new RemoteImageSource(ctx, ref);
    let top = await src.getManifest();
    let index: LocalImage['index'];
    if (isIndexMediaType(top.mediaType)) {
      const doc = JSON.parse(top.bytes.toString('utf8')) as ImageIndex;
      const pick = selectPlatform(doc.manifests, platform);
      if (!pick) return undefined; // let the ordinary pull say which platforms there are
      index = { descriptor: { mediaType: top.mediaType, digest: top.digest, size: top.bytes.length }, index: doc };
      top = await src.getManifestByDigest(pick.digest);
    }
    const manifest = JSON.parse(top.bytes.toString('utf8')) as ImageManifest;
    if (!manifest.config || !Array.isArray(manifest.layers)) return undefined;
    const configBytes = await readBlob(src, manifest.config, 16 << 20);
    const config = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
    // Manifest and config go into the store (small, verified); the layers stay where they are.
    await this.store.writeBytes(top.bytes, top.mediaType);
    await this.store.writeBytes(configBytes, manifest.config.mediaType);
    const description = formatReference(ref);
    for (const l of manifest.layers) {
      if (!this.origins.has(l.digest)) this.origins.set(l.digest, { open: () => src.openBlob(l), blobOrigin: src.blobOrigin, description });
    }
    this.opts.progress?.write(`Resolved ${name} (${top.digest}); its layers are downloaded only if a step or the image needs them\n`);
    return {
      names: [], manifestDescriptor: { mediaType: top.mediaType, digest: top.digest, size: top.bytes.length }, manifest,
      ...(index ? { index } : {}), configDigest: manifest.config.digest, config,
    };
  }

  async close(): Promise<void> {
    if (this.registry) await (await this.registry).close().catch(() => {});
    for (const c of this.closers.splice(0)) await c().catch(() => {});
  }
}

/** The records of each key's chain (FROM first), each record once, parents before children. */
function chainsOf(keys: string[], steps: StepRecord[]): StepRecord[] {
  const byKey = new Map(steps.map((s) => [s.key, s]));
  const seen = new Set<string>();
  const out: StepRecord[] = [];
  for (const key of keys) {
    const chain: StepRecord[] = [];
    for (let s = byKey.get(key); s && !seen.has(s.key); s = s.parent !== undefined ? byKey.get(s.parent) : undefined) chain.unshift(s);
    for (const s of chain) { seen.add(s.key); out.push(s); }
  }
  return out;
}
