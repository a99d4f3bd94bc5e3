// The build cache: one small JSON file per step key under $DRYDOCK_ROOT/cache/steps/, written
// atomically. A hit needs no filesystem work beyond reading that file and checking the layer
// blob is still in the store; the blobs an entry needs are registered as a store root
// ("buildcache/<key>") so `gc` keeps them.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { ContentStore } from '../store/content-store.js';
import { readJsonIfExistsSync, writeJsonAtomic } from '../util/fs.js';
import { crashPoint } from '../util/crash-point.js';
import { sha256Hex } from '../util/sha256.js';

export interface CachedLayer {
  digest: string;
  size: number;
  mediaType: string;
  diffID: string;
}

export interface CacheEntry {
  /** The history `created` time of the step, reused so a cached rebuild gives the same image ID. */
  created: string;
  /** The layer the step produced; absent for metadata-only steps. */
  layer?: CachedLayer;
}

/** Cache key of a step: its parent's key plus everything that determines its result. */
export function stepKey(parent: string, parts: unknown[]): string {
  return sha256Hex(JSON.stringify([parent, ...parts]));
}

export class BuildCache {
  readonly dir: string;
  constructor(readonly store: ContentStore) {
    this.dir = path.join(store.root, 'cache', 'steps');
  }

  private file(key: string): string {
    if (!/^[a-f0-9]{64}$/.test(key)) throw new Error(`invalid cache key ${key}`);
    return path.join(this.dir, key.slice(0, 2), `${key}.json`);
  }

  async get(key: string): Promise<CacheEntry | undefined> {
    // Synchronous: one small file and one stat, on the main thread. Through fs.promises each was
    // a thread-pool round trip (open, fstat, read, close, stat), and a cached build looks its
    // steps up one after another: on a loaded 2-core host each round trip waits for a CPU.
    let entry: CacheEntry | undefined;
    try { entry = readJsonIfExistsSync<CacheEntry>(this.file(key)); } catch { return undefined; }
    if (!entry) return undefined;
    // The blob may have been garbage-collected (e.g. after `rmi` + `gc` with a pruned cache).
    if (entry.layer && !this.store.hasBlobSync(entry.layer.digest)) return undefined;
    return entry;
  }

  /**
   * Not fsynced (the entry nor its root): a crash may lose either or leave it empty, and get()
   * then misses (an unreadable entry, or a blob that gc swept for want of its root) and the
   * step runs again. The layer's blob itself is durable before its entry is written.
   */
  async put(key: string, entry: CacheEntry): Promise<void> {
    if (entry.layer) await this.store.setRoot(`buildcache/${key}`, [entry.layer.digest], { durable: false });
    crashPoint('cache.root-written');
    await writeJsonAtomic(this.file(key), entry, { durable: false, inline: true });
  }

  /** Drops every entry (and its gc roots), and the build steps' intermediate images. */
  async prune(): Promise<number> {
    let n = 0;
    for (const r of await this.store.listRootEntries(['buildstep/'])) await this.store.removeRoot(r.owner);
    for (const sub of await fsp.readdir(this.dir).catch(() => [] as string[])) {
      for (const f of await fsp.readdir(path.join(this.dir, sub)).catch(() => [] as string[])) {
        const key = f.replace(/\.json$/, '');
        await this.store.removeRoot(`buildcache/${key}`);
        await fsp.rm(path.join(this.dir, sub, f), { force: true });
        n++;
      }
    }
    return n;
  }
}
