// Mark and sweep, like `registry garbage-collect`: mark every blob reachable from a manifest
// revision (with --delete-untagged, only from tagged manifests, their children and referrers),
// then delete unmarked blobs. A blob whose data is younger than the grace period is never swept:
// it may belong to a push in progress whose manifest has not arrived yet, so gc is safe to run
// next to a live server.
import { parseDigest, type Digest } from '../image/digest.js';
import type { StorageDriver } from './storage/driver.js';
import { BLOBS, REPOSITORIES, paths } from './storage/paths.js';
import { RegistryStorage } from './storage.js';

export interface GcOptions {
  dryRun?: boolean;
  deleteUntagged?: boolean;
  /** Blobs modified more recently than this are kept. Default 1 hour. */
  gracePeriodMs?: number;
  log?: (line: string) => void;
}

export interface GcResult {
  repositories: number;
  manifestsMarked: number;
  blobsMarked: number;
  manifestsDeleted: string[];
  blobsDeleted: string[];
  bytesFreed: number;
  blobsKeptByGrace: number;
}

interface ManifestJson {
  config?: { digest: string };
  layers?: { digest: string }[];
  manifests?: { digest: string }[];
  subject?: { digest: string };
}

export async function gcRegistry(driver: StorageDriver, opts: GcOptions = {}): Promise<GcResult> {
  const log = opts.log ?? (() => {});
  const grace = opts.gracePeriodMs ?? 3_600_000;
  const storage = new RegistryStorage(driver, { deleteEnabled: true, cacheTtlMs: 0 });
  const marked = new Set<string>();
  const result: GcResult = { repositories: 0, manifestsMarked: 0, blobsMarked: 0, manifestsDeleted: [], blobsDeleted: [], bytesFreed: 0, blobsKeptByGrace: 0 };
  const readManifest = async (d: Digest): Promise<ManifestJson | undefined> => {
    try {
      return JSON.parse((await driver.getContent(paths.blobData(d))).toString('utf8')) as ManifestJson;
    } catch {
      return undefined;
    }
  };

  const repos = await storage.repositories();
  result.repositories = repos.length;
  for (const repo of repos) {
    const revisions = await listDigests(driver, paths.revisions(repo));
    const revisionSet = new Set(revisions.map((d) => d.value));
    let keep: Set<string>;
    if (opts.deleteUntagged) {
      // Reachable from tags: the tagged manifests, children of tagged indexes, and (transitively) their referrers.
      keep = new Set();
      const queue: string[] = [];
      for (const tag of await storage.tags(repo).catch(() => [] as string[])) {
        const d = await storage.resolveTag(repo, tag);
        if (d && revisionSet.has(d.value)) queue.push(d.value);
      }
      const referrersOf = new Map<string, string[]>();
      for (const d of revisions) {
        const m = await readManifest(d);
        if (m?.subject?.digest) referrersOf.set(m.subject.digest, [...(referrersOf.get(m.subject.digest) ?? []), d.value]);
      }
      while (queue.length > 0) {
        const d = queue.pop()!;
        if (keep.has(d)) continue;
        keep.add(d);
        const m = await readManifest(parseDigest(d));
        for (const child of m?.manifests ?? []) if (revisionSet.has(child.digest)) queue.push(child.digest);
        for (const r of referrersOf.get(d) ?? []) queue.push(r);
      }
      for (const d of revisions) {
        if (keep.has(d.value)) continue;
        // A manifest pushed moments ago may be about to be tagged by its client: honour the grace period.
        const st = await driver.stat(paths.revisionLink(repo, d)).catch(() => undefined);
        if (st && Date.now() - st.modTime.getTime() < grace) { keep.add(d.value); continue; }
        result.manifestsDeleted.push(`${repo}@${d.value}`);
        log(`${opts.dryRun ? 'would delete' : 'deleting'} manifest ${repo}@${d.value}`);
        if (!opts.dryRun) await storage.deleteManifest(repo, d.value);
      }
    } else {
      keep = revisionSet;
    }
    for (const d of keep) {
      result.manifestsMarked++;
      marked.add(d);
      const m = await readManifest(parseDigest(d));
      if (m?.config?.digest) marked.add(m.config.digest);
      for (const l of m?.layers ?? []) marked.add(l.digest);
    }
  }
  result.blobsMarked = marked.size;

  for (const blob of await listAllBlobs(driver)) {
    if (marked.has(blob.digest.value)) continue;
    if (Date.now() - blob.modTime.getTime() < grace) { result.blobsKeptByGrace++; continue; }
    result.blobsDeleted.push(blob.digest.value);
    result.bytesFreed += blob.size;
    log(`${opts.dryRun ? 'would delete' : 'deleting'} blob ${blob.digest.value} (${blob.size} bytes)`);
    if (!opts.dryRun) await driver.delete(paths.blobDir(blob.digest));
  }
  if (!opts.dryRun && result.blobsDeleted.length > 0) {
    // Repository links to swept blobs would otherwise answer HEAD with a size for missing content.
    const swept = new Set(result.blobsDeleted);
    for (const repo of repos) {
      for (const d of await listDigests(driver, paths.layers(repo))) {
        if (swept.has(d.value)) await driver.delete(paths.layerLinkDir(repo, d));
      }
    }
  }
  return result;
}

async function listDigests(driver: StorageDriver, dir: string): Promise<Digest[]> {
  const out: Digest[] = [];
  for (const algDir of await driver.list(dir).catch(() => [] as string[])) {
    const alg = algDir.slice(algDir.lastIndexOf('/') + 1);
    for (const hexDir of await driver.list(algDir).catch(() => [] as string[])) {
      try {
        out.push(parseDigest(`${alg}:${hexDir.slice(hexDir.lastIndexOf('/') + 1)}`));
      } catch { /* not a digest directory */ }
    }
  }
  return out;
}

async function listAllBlobs(driver: StorageDriver): Promise<{ digest: Digest; size: number; modTime: Date }[]> {
  const out: { digest: Digest; size: number; modTime: Date }[] = [];
  for (const algDir of await driver.list(BLOBS).catch(() => [] as string[])) {
    const alg = algDir.slice(algDir.lastIndexOf('/') + 1);
    for (const prefixDir of await driver.list(algDir).catch(() => [] as string[])) {
      for (const hexDir of await driver.list(prefixDir).catch(() => [] as string[])) {
        let digest: Digest;
        try {
          digest = parseDigest(`${alg}:${hexDir.slice(hexDir.lastIndexOf('/') + 1)}`);
        } catch { continue; }
        const st = await driver.stat(`${hexDir}/data`).catch(() => undefined);
        if (!st) {
          // An empty blob directory (crash between mkdir and rename): nothing to keep.
          const dirSt = await driver.stat(hexDir).catch(() => undefined);
          out.push({ digest, size: 0, modTime: dirSt?.modTime ?? new Date(0) });
          continue;
        }
        out.push({ digest, size: st.size, modTime: st.modTime });
      }
    }
  }
  return out;
}

export { REPOSITORIES };
