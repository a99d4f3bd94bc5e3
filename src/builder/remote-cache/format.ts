// BuildKit's distributable cache format (cache/remotecache/v1 spec.go), mapped onto drydock's
// step keys. The cache config (media type application/vnd.buildkit.cacheconfig.v0) lists layer
// blobs as chains (`parent` is the index of the layer below, -1 at the bottom) and records: one
// per step, `digest` = "sha256:" + the step key, `inputs` = [[{link: parent step's record}]],
// and `layers: [{layer: i, createdAt}]`, where layer i is the top of the stage's rootfs chain
// after the step: one layer more than the parent's chain for RUN/COPY/ADD, the same chain for a
// metadata step (its createdAt keeps the history time, so the image ID survives the trip). Our
// step keys already chain their parent's key, so an import is a lookup by digest; `inputs` keeps
// the graph readable to BuildKit-shaped tools.
import type { Descriptor } from '../../image/types.js';
import type { CacheEntry, CachedLayer } from '../cache.js';
import type { LayerOrigin } from './origin.js';

export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.buildkit.cacheconfig.v0';
/** Image config key of the inline cache: base64 of the JSON records array, layers = the image's. */
export const INLINE_CACHE_KEY = 'moby.buildkit.cache.v0';
/** Layer descriptor annotations BuildKit writes in cache manifests. */
export const UNCOMPRESSED_ANNOTATION = 'containerd.io/uncompressed';
export const CREATED_AT_ANNOTATION = 'buildkit/createdat';

export interface CacheLayer {
  blob: string;
  parent?: number;
  annotations?: { mediaType?: string; diffID?: string; size?: number; createdAt?: string };
}
export interface CacheResult { layer: number; createdAt?: string }
export interface ChainedResult { layers: number[]; createdAt?: string }
export interface CacheInput { selector?: string; link: number }
export interface CacheRecord {
  digest: string;
  layers?: CacheResult[];
  chains?: ChainedResult[];
  inputs?: CacheInput[][];
}
export interface CacheConfig { layers?: CacheLayer[]; records?: CacheRecord[] }

/** What the builder reports for every step it resolved (run, cached, or FROM). */
export interface StepRecord {
  key: string;
  /** The key the step built on; absent for FROM (a root record). */
  parent?: string;
  entry: CacheEntry;
  /** The stage's layers after the step (the rootfs chain). */
  layers: CachedLayer[];
}

/** An imported record that maps to a step key: its result's rootfs chain, bottom first. */
export interface RemoteEntry {
  created: string;
  chain: CachedLayer[];
}

/**
 * The cache entry a remote record gives a step whose parent state has layers `parentDiffIDs`: a
 * new layer when the chain is one longer, none (a metadata step) when it is the same chain, and
 * no hit when the chain does not extend the parent's. diffIDs, since this build's own snapshots
 * have no compressed digest yet.
 */
export function entryFor(e: RemoteEntry, parentDiffIDs: string[]): CacheEntry | undefined {
  const n = parentDiffIDs.length;
  if (e.chain.length !== n && e.chain.length !== n + 1) return undefined;
  for (let i = 0; i < n; i++) if (e.chain[i]!.diffID !== parentDiffIDs[i]) return undefined;
  return e.chain.length === n ? { created: e.created } : { created: e.created, layer: e.chain[n]! };
}

export class CacheFormatError extends Error {
  override name = 'CacheFormatError';
}

/**
 * Builds the cache config for `steps` (in build order; a step's parent comes before it).
 * Returns the config and the layer descriptors to put in the manifest, in `layers` order.
 */
export function encodeCacheConfig(steps: StepRecord[]): { config: CacheConfig; layers: CachedLayer[] } {
  const layers: CacheLayer[] = [];
  const layerDescs: CachedLayer[] = [];
  const chainIndex = new Map<string, number>();
  // A chain's identity is its digests bottom to top, as BuildKit's marshalRemote keys them.
  const chainTop = (chain: CachedLayer[]): number => {
    let parent = -1;
    let id = '';
    for (const l of chain) {
      id += `${l.digest}|`;
      let idx = chainIndex.get(id);
      if (idx === undefined) {
        idx = layers.length;
        chainIndex.set(id, idx);
        layers.push({ blob: l.digest, parent });
        if (!layerDescs.some((d) => d.digest === l.digest)) layerDescs.push(l);
      }
      parent = idx;
    }
    return parent;
  };
  const records: CacheRecord[] = [];
  const recordIndex = new Map<string, number>();
  for (const s of steps) {
    if (recordIndex.has(s.key)) continue;
    const rec: CacheRecord = { digest: `sha256:${s.key}` };
    const parent = s.parent !== undefined ? recordIndex.get(s.parent) : undefined;
    if (parent !== undefined) rec.inputs = [[{ link: parent }]];
    if (s.layers.length) rec.layers = [{ layer: chainTop(s.layers), createdAt: s.entry.created }];
    recordIndex.set(s.key, records.length);
    records.push(rec);
  }
  return { config: { layers, records }, layers: layerDescs };
}

/** The manifest layer descriptor of a cache layer, annotated as BuildKit does. */
export function layerDescriptor(l: CachedLayer, createdAt?: string): Descriptor {
  return {
    mediaType: l.mediaType, digest: l.digest, size: l.size,
    annotations: { [UNCOMPRESSED_ANNOTATION]: l.diffID, ...(createdAt ? { [CREATED_AT_ANNOTATION]: createdAt } : {}) },
  };
}

const DIGEST = /^sha256:[a-f0-9]{64}$/;

/**
 * Reads a cache config against the blobs the manifest lists. Every index is checked (a loop or
 * an out-of-range link is an error, as in BuildKit's parse.go); records whose digest is not one
 * of ours ("sha256:" + 64 hex) still parse and simply never match a step key.
 */
export function decodeCacheConfig(config: unknown, blobs: Map<string, { mediaType: string; size: number; diffID?: string }>): Map<string, RemoteEntry> {
  if (!config || typeof config !== 'object' || Array.isArray(config)) throw new CacheFormatError('cache config is not a JSON object');
  const cc = config as CacheConfig;
  const layers = cc.layers ?? [];
  const records = cc.records ?? [];
  if (!Array.isArray(layers) || !Array.isArray(records)) throw new CacheFormatError('cache config: "layers" and "records" must be arrays');
  const chains = new Map<number, CachedLayer[]>();
  const chainOf = (idx: number, seen: Set<number>): CachedLayer[] => {
    const cached = chains.get(idx);
    if (cached) return cached;
    if (!Number.isInteger(idx) || idx < 0 || idx >= layers.length) throw new CacheFormatError(`invalid layer index ${idx}`);
    if (seen.has(idx)) throw new CacheFormatError('invalid looping layer');
    seen.add(idx);
    const l = layers[idx]!;
    const blob = blobs.get(l.blob);
    if (!blob) throw new CacheFormatError(`missing blob for ${l.blob}`);
    const diffID = blob.diffID ?? l.annotations?.diffID;
    if (!diffID || !DIGEST.test(diffID)) throw new CacheFormatError(`layer ${l.blob} has no uncompressed digest (${UNCOMPRESSED_ANNOTATION} annotation)`);
    const parent = l.parent ?? 0;
    const below = parent === -1 ? [] : chainOf(parent, seen);
    const chain = [...below, { digest: l.blob, size: blob.size, mediaType: blob.mediaType, diffID }];
    chains.set(idx, chain);
    return chain;
  };
  const out = new Map<string, RemoteEntry>();
  for (const [i, r] of records.entries()) {
    if (!r || typeof r.digest !== 'string') throw new CacheFormatError(`record ${i} has no digest`);
    for (const inputs of r.inputs ?? []) {
      for (const inp of inputs) {
        if (!Number.isInteger(inp.link) || inp.link < 0 || inp.link >= records.length || inp.link === i) throw new CacheFormatError(`invalid record ID: ${inp.link}`);
      }
    }
    const result = r.layers?.[0];
    if (!result) continue;
    const chain = chainOf(result.layer, new Set());
    if (!DIGEST.test(r.digest) || typeof result.createdAt !== 'string' || !result.createdAt) continue;
    out.set(r.digest.slice('sha256:'.length), { created: result.createdAt, chain });
  }
  return out;
}

/** The inline form: records only, their result layer indexes counting the image's layers. */
export function encodeInlineRecords(steps: StepRecord[], imageLayers: CachedLayer[]): CacheRecord[] {
  const { config } = encodeCacheConfig(steps);
  const layers = config.layers ?? [];
  // Index of a chain in the image = its length - 1, when it is a prefix of the image's layers.
  const depth = (idx: number): number => (layers[idx]!.parent === -1 ? 0 : depth(layers[idx]!.parent!) + 1);
  const records = config.records ?? [];
  for (const r of records) {
    for (const res of r.layers ?? []) {
      const d = depth(res.layer);
      if (imageLayers[d]?.digest !== layers[res.layer]!.blob) throw new CacheFormatError('inline cache: a record\'s layer is not in the image');
      res.layer = d;
    }
  }
  return records;
}

/** Reads an image config's inline cache against the image's own layers. */
export function decodeInlineCache(imageConfig: Record<string, unknown>, layers: Descriptor[], diffIDs: string[]): Map<string, RemoteEntry> {
  const raw = imageConfig[INLINE_CACHE_KEY];
  if (raw === undefined) return new Map();
  if (typeof raw !== 'string') throw new CacheFormatError(`${INLINE_CACHE_KEY} is not a base64 string`);
  let records: unknown;
  try { records = JSON.parse(Buffer.from(raw, 'base64').toString('utf8')); } catch { throw new CacheFormatError(`${INLINE_CACHE_KEY} is not base64-encoded JSON`); }
  if (!Array.isArray(records)) throw new CacheFormatError(`${INLINE_CACHE_KEY} is not a records array`);
  const blobs = new Map(layers.map((l, i) => [l.digest, { mediaType: l.mediaType, size: l.size, diffID: diffIDs[i] }]));
  const cacheLayers: CacheLayer[] = layers.map((l, i) => ({ blob: l.digest, parent: i - 1 }));
  return decodeCacheConfig({ layers: cacheLayers, records }, blobs);
}

/** A cache read from a registry, a directory or a bucket: its records and where each layer's blob comes from. */
export interface ImportedCache {
  description: string;
  entries: Map<string, RemoteEntry>;
  origins: Map<string, LayerOrigin>;
  close(): Promise<void>;
}
